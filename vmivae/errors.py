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


class TrainingInterrupted(VMIVAEError):
    """Training stopped on request (SIGINT/SIGTERM) after writing a checkpoint."""

    def __init__(self, step: int, signum: int, run_dir=None):
        import signal

        self.step, self.signum, self.run_dir = step, signum, run_dir
        name = signal.Signals(signum).name
        where = (f"checkpoint written to {run_dir}; resume with: vmivae train --resume {run_dir}" if run_dir is not None
                 else "no run directory was given, so nothing was saved")
        super().__init__(f"interrupted by {name} at step {step}; {where}")


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> str:
    """Message for an unknown name, with the closest valid names first.

    >>> unknown_name("preset", "paper-jont", ["paper-joint", "paper-gaussian"])
    "unknown preset 'paper-jont' (did you mean 'paper-joint'?); valid: paper-gaussian, paper-joint"
    """
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; valid: {', '.join(sorted(valid))}"  # repr: one line, whatever was typed
