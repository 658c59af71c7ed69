"""`nextpatch export`: the verb's parser and command (onnx imports only when it runs)."""
from __future__ import annotations


def add_parser(sub) -> None:
    """Register `export` on the CLI's subparsers (placeholder until the export lands)."""
