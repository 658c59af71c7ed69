"""Errors a user sees. Each one is a single line that names the file and the fix.

The CLI catches `NextpatchError` and prints `error: <message>` (exit code 2); anything else is a bug.
"""
from __future__ import annotations

from pathlib import Path


class NextpatchError(Exception):
    """Base class for errors caused by the user's input, not by a bug."""


class DataError(NextpatchError):
    """A folder or dataset layout that cannot be used (missing, empty, wrong layout)."""


class ImageError(NextpatchError):
    """One image or mask file that cannot be used. `path` names it."""

    def __init__(self, path: str | Path, reason: str, fix: str = ""):
        self.path = Path(path)
        self.reason = reason
        self.fix = fix
        msg = f"{self.path}: {reason}"
        if fix:
            msg += f" ({fix})"
        super().__init__(msg)


class ModelFileError(NextpatchError):
    """A model directory or weight file that cannot be loaded."""


class ConfigError(NextpatchError):
    """A configuration value or file that is invalid."""
