"""Errors a user can cause and fix.

Every error raised for bad input derives from :class:`VMIVAEError` and carries one sentence that
names the problem and the fix. The CLI prints that sentence and exits non-zero instead of showing a
traceback; anything that is *not* a ``VMIVAEError`` is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import os
import shlex
import sys


class VMIVAEError(Exception):
    """Base class for user-facing errors (bad configuration, data, files)."""


class ConfigError(VMIVAEError, ValueError):
    """A configuration key, value, preset or profile is invalid."""


class ConfigTypeError(ConfigError, TypeError):
    """A value of the wrong type (a string where a whole number belongs): still a ``TypeError`` for code that catches one."""


class DataError(VMIVAEError):
    """A dataset is unknown, missing on disk, or its contents are malformed."""


class CheckpointError(VMIVAEError):
    """A run directory or checkpoint file is missing, truncated, foreign or incompatible."""


class OutputError(VMIVAEError):
    """An output location cannot be written (exists already, read-only, ...)."""


class RunInUseError(OutputError):
    """A run folder is locked by another live process (training, resuming or evaluating it)."""


class TrainingError(VMIVAEError):
    """Training stopped because it can no longer be correct (e.g. a non-finite loss)."""


class Interrupted(VMIVAEError):
    """A command stopped on SIGINT/SIGTERM; ``signum`` gives its exit status (128 + signum) and the sentence says what was kept."""

    def __init__(self, signum: int, message: str):
        self.signum = signum
        super().__init__(message)

    def __reduce__(self):
        return type(self), (self.signum, str(self))


class TrainingInterrupted(Interrupted):
    """Training stopped on request (SIGINT/SIGTERM): after writing a checkpoint, or before anything was written.

    ``step`` is None when the signal came before the training loop started; ``detail`` replaces the
    default account of what was saved.
    """

    def __init__(self, step: int | None, signum: int, run_dir=None, detail: str | None = None):
        import signal

        self.step, self.signum, self.run_dir, self.detail = step, signum, run_dir, detail
        name = signal.Signals(signum).name
        when = f"at step {step}" if step is not None else "before training started"
        if detail is None:
            detail = (f"checkpoint written to {run_dir}; resume with: {resume_command(run_dir)}" if run_dir is not None
                      else "no run directory was given, so nothing was saved")
        super().__init__(signum, f"interrupted by {name} {when}; {detail}")

    def __reduce__(self):  # picklable, so that it can travel between processes
        return type(self), (self.step, self.signum, self.run_dir, self.detail)


def resume_command(run_dir) -> str:
    """The command that continues the run in ``run_dir``, quoted so that it can be pasted into a shell."""
    return f"vmivae train --resume {shlex.quote(str(run_dir))}"


def shown(value, *, typed: bool = False) -> str:
    """A value in words for a one-sentence message, short and on one line.

    An array by its shape (``a tensor of shape [3]``); ``None``, a number, a string or a short one-line list as
    written, cut at 40 characters, and with its type when ``typed`` (``42 (int)``: an argument of the wrong
    type); anything else by its type (``a dict``).
    """
    if value is None:
        return "None"
    shape = getattr(value, "shape", None)
    if shape is not None and not isinstance(value, (str, bytes, int, float)):
        return f"a {'tensor' if type(value).__name__ == 'Tensor' else type(value).__name__} of shape {list(shape)}"
    scalar = isinstance(value, (bool, int, float, complex, str, bytes))
    text = repr(value) if scalar or (isinstance(value, list) and not typed) else ""
    if "\n" in text or len(text) > 40:
        text = "" if typed or isinstance(value, list) else text[:37] + "..."
    if not text:
        return f"a {type(value).__name__}"
    return f"{text} ({type(value).__name__})" if typed else text


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> str:
    """Message for an unknown name, with the closest valid names first.

    >>> unknown_name("preset", "paper-jont", ["paper-joint", "paper-gaussian"])
    "unknown preset 'paper-jont' (did you mean 'paper-joint'?); valid: paper-gaussian, paper-joint"
    """
    close = difflib.get_close_matches(name, valid, n=1) if isinstance(name, str) else []
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; valid: {', '.join(sorted(valid))}"  # repr: one line, whatever was typed


def started_as_command() -> bool:
    """Whether this process is the ``vmivae`` command (``vmivae ...`` or ``python -m vmivae ...``), not a program importing it."""
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 == "-m":  # ``python -m``: the package is imported before its __main__ replaces argv[0]
        orig = getattr(sys, "orig_argv", [])
        return any(a == "-m" and b == "vmivae" for a, b in zip(orig, orig[1:])) or "-mvmivae" in orig
    return os.path.basename(argv0) == "vmivae"


def quiet_early_interrupt() -> None:
    """For the command only: Ctrl-C while Python is still importing (torch takes seconds) prints one line and exits 130.

    Installed as ``sys.excepthook`` before the package imports torch, because an interrupt there
    reaches no code of the command; a program that imports vmivae keeps its own handling.
    """
    if not started_as_command():
        return
    previous = sys.excepthook

    def hook(kind, value, traceback):
        if issubclass(kind, KeyboardInterrupt):
            print("vmivae: interrupted by Ctrl-C while starting; nothing was done", file=sys.stderr, flush=True)
            os._exit(130)
        previous(kind, value, traceback)

    sys.excepthook = hook
