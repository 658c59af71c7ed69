"""The REST service and its web page (extra nextpatch[serve])."""
