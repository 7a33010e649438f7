"""Writing a run folder while it trains (:class:`RunWriter`), and checking a result file's path before long work.

**Nothing is written before there is something to keep.** Every check happens before the lock is taken
(``RunFolder.check_new_run``), and :class:`RunWriter` writes nothing until training reaches its first
checkpoint; that checkpoint puts the new config, checkpoint and history in place together and removes the
run being replaced (``RunFolder.write_checkpoint``). So a run that fails, or a resume that fails or is
stopped before then, leaves the folder as it was, and a full disk during any checkpoint leaves the
previous one intact. What the folder holds is ``vmivae.runs.folder``'s business.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import OutputError, resume_command
from .files import os_reason
from .folder import RunFolder


def check_output_file(path: Path, flag: str, overwrite: bool = True, create_parents: bool = False) -> Path:
    """Check, before any long work, that a result file can be written to ``path`` (``flag`` names the option):
    its folder exists (or is created, with ``create_parents``) and takes a file (a probe, removed at once)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; give a file name, e.g. {path / 'result.json'}")
    if path.exists() and not path.is_file():  # a pipe, a device, a socket: writing there loses or hangs
        raise OutputError(f"{flag} {path} is not a regular file; give the name of a file to write")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists already; choose another {flag} or pass --overwrite")
    existing = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputError(f"cannot write {flag} {path}: {existing} is a file, not a folder; choose another path")
    if not path.parent.is_dir() and not create_parents:
        raise OutputError(f"folder {path.parent} for {flag} does not exist; create it first")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write {flag} {path} ({os_reason(exc)}); choose a writable location") from None
    return path


# ---------------------------------------------------------------------------- writing


class RunWriter:
    """Writes one run folder while it trains: nothing before the first checkpoint (see the module docstring).

    ``replaces``: files of an earlier run that the first checkpoint removes; ``step``: the step of the
    checkpoint already in the folder (a resumed run), if any; ``finished``: the folder holds a finished run.
    """

    def __init__(self, folder: RunFolder, info: dict[str, Any], replaces: list[Path] = (), step: int | None = None, finished: bool = False):
        self.folder, self.info, self.replaces = folder, info, list(replaces)
        self.step, self.finished, self.started = step, finished, False
        # the earlier run that --overwrite replaces at the first checkpoint, which stands until then
        self.previous = "finished" if folder.metrics in self.replaces else "unfinished" if folder.checkpoint in self.replaces else None

    def where(self) -> str:
        """Where the last good checkpoint is, in words."""
        if self.step is None:
            return "no checkpoint was written" + (f" and the {self.previous} run in {self.folder.path} that it was to replace is unchanged"
                                                  if self.previous and not self.started else "")
        return f"the last good checkpoint is {self.folder.checkpoint} (step {self.step})"

    def kept_on_stop(self) -> str | None:
        """What stands in the folder when this session stops before its first checkpoint, if that is worth more than
        the few steps trained (a finished run being resumed, or a run that ``--overwrite`` is to replace); None otherwise."""
        if self.started:
            return None
        if self.step is not None and self.finished:
            return (f"this session reached no checkpoint, so nothing of it was kept and the finished run in {self.folder.path} is unchanged "
                    f"(step {self.step}); resume with: {resume_command(self.folder.path)} --set steps=N to train it further")
        if self.step is None and self.previous:
            return (f"this run reached no checkpoint, so nothing of it was kept and the {self.previous} run in {self.folder.path} "
                    "that it was to replace is unchanged")
        return None

    def checkpoint(self, state: dict[str, Any], history_csv: bytes, step: int) -> None:
        first = None if self.started else self.info  # the first checkpoint of this session: the folder becomes this run's
        try:
            self.folder.write_checkpoint(state, history_csv, first, self.replaces)
        except OSError as exc:
            fix = "free space or fix the folder, then resume" if self.step is not None else "free space or fix the folder, then start the run again"
            raise OutputError(f"cannot write the checkpoint of step {step} to {self.folder.path} ({os_reason(exc)}); {self._kept()}; {fix}") from None
        self.started, self.step = True, step

    def finish(self, metrics: dict[str, Any]) -> None:
        try:
            self.folder.write_metrics(metrics)
        except OSError as exc:
            raise OutputError(f"cannot write {self.folder.metrics} ({os_reason(exc)}); {self._kept()}; free space, then "
                              "resume the run to finish it") from None

    def _kept(self) -> str:
        if self.step is None and not self.previous:
            return "no checkpoint was written, so nothing of this run was kept"
        return self.where() + (", which is intact" if self.step is not None else "")
