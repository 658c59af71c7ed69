"""`nextpatch serve`: the verb's parser and command (FastAPI and uvicorn import only when it runs)."""
from __future__ import annotations


def add_parser(sub) -> None:
    """Register `serve` on the CLI's subparsers (placeholder until the service lands)."""
