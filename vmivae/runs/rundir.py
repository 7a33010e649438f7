"""Run folders: who may write one (a lock), which folders may be replaced, and what is written when.

* **One writer per folder.** ``train``, ``--resume`` and ``evaluate`` hold ``<run>/.vmivae.lock`` while
  they work; a lock whose process is gone is stale and cleared by the next user (``vmivae.runs.runlock``).
* **Ownership.** A folder was written by vmivae when its ``config.json`` is a JSON object with
  ``vmivae_version`` and ``config``. ``--overwrite`` replaces only such a folder (or an empty one) and
  removes only vmivae's own files in it (:data:`RUN_FILES`, the ``eval-*.json`` results the run cache
  writes, stale temporary files); anything else in the folder stays. A vmivae folder that holds no
  checkpoint (a run that never reached one) holds nothing to lose and is reused without ``--overwrite``.
* **Nothing is written before there is something to keep.** Every check happens before the lock is
  taken, and :class:`RunWriter` writes nothing until training reaches its first checkpoint. That first
  write removes the files being replaced (``metrics.json`` first, so that nothing half-replaced looks
  finished) and puts the new config, checkpoint and history in place together (``files.write_group``).
  So a run that fails, or a resume that fails or is stopped before then, leaves the folder as it was,
  and a full disk during any checkpoint leaves the previous one intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import OutputError, RunInUseError
from .checkpoint import CHECKPOINT, CONFIG, HISTORY, METRICS, RUN_FILES, checkpoint_writer
from .files import TEMP, os_reason, remove_stale_temps, write_group, write_json
from .runlock import LOCK, RunLock, in_use_message, read_lock

__all__ = ["LOCK", "RunLock", "RunWriter", "check_out_dir", "check_output_file", "read_lock", "replaceable_files", "run_info"]

OLD_PROBE = ".vmivae-write-test"  # left by earlier versions' writability probe


def check_output_file(path: Path, flag: str, overwrite: bool = True, create_parents: bool = False) -> Path:
    """Check, before any long work, that a result file can be written to ``path`` (``flag`` names the option):
    its folder exists (or is created, with ``create_parents``) and takes a file (a probe, removed at once)."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; give a file name, e.g. {path / 'result.json'}")
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


# ---------------------------------------------------------------------------- ownership


def run_info(folder: Path) -> dict[str, Any] | None:
    """``config.json`` of a folder written by vmivae, or None when the folder has no such file."""
    try:
        info = json.loads((Path(folder) / CONFIG).read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return info if isinstance(info, dict) and "vmivae_version" in info and isinstance(info.get("config"), dict) else None


def _is_eval_result(path: Path) -> bool:
    """An ``eval-*.json`` that ``vmivae.runs.run_cache`` wrote beside the run (an ``evaluate`` result)."""
    if not (path.name.startswith("eval-") and path.suffix == ".json"):
        return False
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(result, dict) and {"mi", "n_test", "dataset"} <= set(result)


def _ignorable(entry: Path) -> bool:
    return entry.name in (LOCK, OLD_PROBE) or bool(TEMP.match(entry.name))


def replaceable_files(folder: Path) -> list[Path]:
    """The files ``--overwrite`` removes from a vmivae run folder: the run's own, nothing else."""
    folder = Path(folder)
    found = [folder / name for name in RUN_FILES if (folder / name).is_file()]
    return found + sorted(p for p in folder.glob("eval-*.json") if _is_eval_result(p))


def check_out_dir(folder: Path, overwrite: bool, locked: bool = False) -> list[Path]:
    """Check that a new run may be written to ``folder`` (nothing is written); returns the files it replaces.
    ``locked``: the caller holds the folder's lock (checked again under it)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"--out {folder} is a file, not a folder; choose another path")
    parent = next((p for p in folder.parents if p.exists()), None)
    if not folder.exists() and parent is not None and not parent.is_dir():
        raise OutputError(f"cannot create output folder {folder}: {parent} is a file; choose another path")
    if not folder.is_dir():
        return []
    holder = None if locked else read_lock(folder)
    if holder is not None:
        raise RunInUseError(in_use_message(folder, holder))
    try:
        entries = [e for e in folder.iterdir() if not _ignorable(e)]
    except OSError as exc:
        raise OutputError(f"cannot read output folder {folder} ({os_reason(exc)}); choose another folder") from None
    if not entries:
        return []
    info = run_info(folder)
    if info is None:
        if (folder / CONFIG).exists():
            raise OutputError(f"output folder {folder} holds a {CONFIG} that vmivae did not write; choose another folder "
                              "(--overwrite replaces only folders written by vmivae)")
        raise OutputError(f"output folder {folder} is not empty and holds no vmivae run; choose a new or empty folder "
                          "(--overwrite replaces only folders written by vmivae)")
    if not (folder / CHECKPOINT).exists() and not (folder / METRICS).exists():
        return replaceable_files(folder)  # a run that never reached a checkpoint: nothing to lose
    if not overwrite:
        state = "a finished run" if (folder / METRICS).exists() else "an unfinished run"
        raise OutputError(f"output folder {folder} holds {state} already; choose a new folder, pass --overwrite to replace it, "
                          f"or continue it with --resume")
    return replaceable_files(folder)


# ---------------------------------------------------------------------------- writing


class RunWriter:
    """Writes one run folder while it trains: nothing before the first checkpoint (see the module docstring).

    ``replaces``: files of an earlier run that the first checkpoint removes; ``step``: the step of the
    checkpoint already in the folder (a resumed run), if any; ``finished``: the folder holds a finished run.
    """

    def __init__(self, folder: Path, info: dict[str, Any], replaces: list[Path] = (), step: int | None = None, finished: bool = False):
        self.folder, self.info, self.replaces = Path(folder), info, list(replaces)
        self.step, self.finished, self.started = step, finished, False

    def where(self) -> str:
        """Where the last good checkpoint is, in words."""
        if self.step is None:
            return "no checkpoint was written"
        return f"the last good checkpoint is {self.folder / CHECKPOINT} (step {self.step})"

    def checkpoint(self, state: dict[str, Any], history_csv: bytes, step: int) -> None:
        writes = [(self.folder / CHECKPOINT, checkpoint_writer(state)), (self.folder / HISTORY, lambda f: f.write(history_csv))]
        remove: list[Path] = []
        if not self.started:  # the first checkpoint of this session: the folder becomes this run's
            writes.insert(0, (self.folder / CONFIG, lambda f: f.write((json.dumps(self.info, indent=2) + "\n").encode())))
            remove = [self.folder / METRICS, *(p for p in self.replaces if p.name not in (CONFIG, CHECKPOINT, HISTORY))]
        try:
            write_group(writes, remove)
        except OSError as exc:
            raise OutputError(f"cannot write the checkpoint of step {step} to {self.folder} ({os_reason(exc)}); {self._kept()}; "
                              "free space or fix the folder, then resume") from None
        self.started, self.step = True, step

    def finish(self, metrics: dict[str, Any]) -> None:
        try:
            write_json(self.folder / METRICS, metrics)
        except OSError as exc:
            raise OutputError(f"cannot write {self.folder / METRICS} ({os_reason(exc)}); {self._kept()}; free space, then "
                              "resume the run to finish it") from None

    def _kept(self) -> str:
        return self.where() + (", which is intact" if self.step is not None else "")

    def clean(self) -> None:
        """Remove temporary files that processes killed in this folder left behind."""
        remove_stale_temps(self.folder)
