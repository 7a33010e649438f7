"""Errors a user can cause and fix.

Every error raised for bad input derives from :class:`VMIVAEError` and carries one sentence that
names the problem and the fix. The CLI prints that sentence and exits non-zero instead of showing a
traceback; anything that is *not* a ``VMIVAEError`` is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib


class VMIVAEError(Exception):
    """Base class for user-facing errors (bad configuration, data, files)."""


class ConfigError(VMIVAEError, ValueError):
    """A configuration key, value, preset or profile is invalid."""


class DataError(VMIVAEError):
    """A dataset is unknown, missing on disk, or its contents are malformed."""


class CheckpointError(VMIVAEError):
    """A run directory or checkpoint file is missing, truncated, foreign or incompatible."""


class OutputError(VMIVAEError):
    """An output location cannot be written (exists already, read-only, ...)."""


class TrainingError(VMIVAEError):
    """Training stopped because it can no longer be correct (e.g. a non-finite loss)."""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> str:
    """Message for an unknown name, with the closest valid names first.

    >>> unknown_name("preset", "paper-jont", ["paper-joint", "paper-gaussian"])
    "unknown preset 'paper-jont' (did you mean 'paper-joint'?); valid: paper-gaussian, paper-joint"
    """
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} '{name}'{hint}; valid: {', '.join(sorted(valid))}"
