"""nextpatch: find defects on industrial parts having seen only good ones."""
__version__ = "0.1.0"
