"""A run folder: the one module that knows what a run keeps where.

A run folder holds::

    config.json      the resolved config, the image shape, preset/profile names (written first)
    checkpoint.pt    weights, optimiser states, step, RNG states, history (rewritten atomically)
    history.csv      one row per training step: a readable copy of the checkpoint's history, never read back
                     (load_run, evaluate and resume take the history from checkpoint.pt; each checkpoint rewrites it)
    metrics.json     written last: its presence marks a finished run; derived from the checkpoint, so a resume
                     that trains further writes it anew (load_run and evaluate refuse a damaged one)
    eval-*.json      evaluations the run cache keeps beside the run (``vmivae.runs.run_cache``); also any
                     evaluation of this run written here (``vmivae evaluate RUN --out RUN/eval.json``)
    .vmivae.lock     while a process trains, resumes or evaluates it (``vmivae.runs.runlock``)

:class:`RunFolder` names these files, reads them, holds the folder's lock, says which folders a new run
may replace and writes a checkpoint's files together. ``config.json`` is read one way (:meth:`RunFolder.stored_info`)
and judged three: strictly to load or resume a run (``vmivae.runs.stored``), as a mark of ownership, and as a cache key.

* **Ownership.** A folder was written by vmivae when its ``config.json`` is a JSON object with
  ``vmivae_version`` and ``config``. ``--overwrite`` replaces only such a folder (or an empty one) and
  removes only vmivae's own files in it (the run files, every evaluation of the old model kept in it,
  stale temporary files); anything else in the folder stays. A vmivae folder that holds no checkpoint (a run that never
  reached one) holds nothing to lose and is reused without ``--overwrite``.
* **Writing.** The first checkpoint of a session removes the files being replaced (``metrics.json`` first,
  so that nothing half-replaced looks finished) and puts the new config, checkpoint and history in place
  together (``files.write_group``); when to write is :class:`vmivae.runs.rundir.RunWriter`'s business.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import CheckpointError, OutputError, RunInUseError, shown
from .checkpoint import FORMAT_VERSION, checkpoint_writer, load_checkpoint
from .files import TEMP, os_reason, remove_stale_temps, write_group, write_json
from .runlock import RunLock, in_use_message, read_lock
from .stored import check_info, check_metrics

CONFIG, CHECKPOINT, HISTORY, METRICS = "config.json", "checkpoint.pt", "history.csv", "metrics.json"
RUN_FILES = (CONFIG, CHECKPOINT, HISTORY, METRICS)
EVALUATIONS = "*.json"  # evaluations kept beside the run: the run cache's eval-*.json, vmivae evaluate's --out RUN/eval.json
CACHED_EVALUATIONS = "eval-*.json"  # those the run cache writes (RunFolder.evaluation_path)
LOCK = ".vmivae.lock"
OLD_PROBE = ".vmivae-write-test"  # left by earlier versions' writability probe


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; a missing, damaged or unreadable file is one :class:`CheckpointError`."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; is {Path(path).parent} a vmivae run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not valid JSON ({what} is damaged); retrain or restore it") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({os_reason(exc)}); check the file's permissions") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object ({what} is damaged); restore it from a copy or train the run again")
    return data


def _is_evaluation(path: Path, folder: Path) -> bool:
    """An evaluation of the run in ``folder`` kept in it: the run cache's ``eval-*.json``, or what
    ``vmivae evaluate RUN --out RUN/eval.json`` wrote (any JSON there holding an evaluation of this run)."""
    if path.suffix != ".json" or path.name in RUN_FILES or not path.is_file():
        return False
    try:
        result = read_json(path, "an evaluation")
    except CheckpointError:
        return False
    if not {"mi", "n_test", "dataset"} <= set(result):
        return False
    run = result.get("run")  # where the evaluated run was; an evaluation of another, existing run is not derived from this one
    if path.name.startswith("eval-") or not isinstance(run, str) or not run:
        return True
    try:
        return Path(run).resolve() == folder.resolve() or not (Path(run) / CONFIG).is_file()
    except (OSError, RuntimeError, ValueError):
        return True


class RunFolder:
    """One run folder: where its files are, what they say, its lock, and writing a checkpoint's files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config, self.checkpoint = self.path / CONFIG, self.path / CHECKPOINT
        self.history, self.metrics, self.lock_file = self.path / HISTORY, self.path / METRICS, self.path / LOCK

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @classmethod
    def existing(cls, path: str | Path) -> RunFolder:
        """A path that must be an existing run folder (config.json + checkpoint.pt)."""
        if not isinstance(path, (str, os.PathLike)):
            raise CheckpointError(f"a run folder path (a string or pathlib.Path) was expected, got {shown(path, typed=True)}; "
                                  "pass the --out folder of a vmivae train run")
        folder = cls(path)
        path = folder.path
        if path.exists() and not path.is_dir():
            raise CheckpointError(f"{path} is a file, not a run directory; pass the --out folder of a vmivae train run")
        if not path.is_dir():
            raise CheckpointError(f"run directory {path} does not exist; pass the --out folder of a vmivae train run")
        if not folder.config.is_file() or not folder.checkpoint.is_file():
            holder = folder.holder()  # a run still training towards its first checkpoint holds no files yet
            if holder is not None:
                raise RunInUseError(in_use_message(folder.lock_file, holder))
            raise CheckpointError(f"{path} is not a vmivae run directory (it needs {CONFIG} and {CHECKPOINT})")
        return folder

    # ------------------------------------------------------------------ reading
    @property
    def finished(self) -> bool:
        return self.metrics.is_file()

    def stored_info(self) -> dict[str, Any]:
        """``config.json`` as stored (a JSON object); :class:`CheckpointError` when it is missing or damaged."""
        return read_json(self.config, "the run's config")

    def read_config(self) -> tuple[dict[str, Any], Config]:
        """``config.json`` of a run to load or resume, and the Config in it, validated."""
        info = self.stored_info()
        return info, check_info(self.config, info)

    def owner_info(self) -> dict[str, Any] | None:
        """``config.json`` when vmivae wrote this folder, else None (no such file, or someone else's)."""
        try:
            info = self.stored_info()
        except CheckpointError:
            return None
        return info if "vmivae_version" in info and isinstance(info.get("config"), dict) else None

    def reusable_for(self, config: Config) -> bool:
        """A finished run of exactly ``config`` (its hash), in this version's checkpoint format: the run cache's key."""
        if not self.finished or not self.config.is_file():
            return False
        try:
            stored = self.stored_info()
        except CheckpointError:
            return False
        return stored.get("config_hash") == config.hash() and stored.get("checkpoint_format") == FORMAT_VERSION

    def read_metrics(self) -> dict[str, Any]:
        """``metrics.json`` of a finished run, its entries checked."""
        return check_metrics(self.metrics, read_json(self.metrics, "the run's metrics"))

    def load_checkpoint(self) -> dict[str, Any]:
        """The checkpoint, to the CPU: RNG and generator states must stay CPU byte tensors."""
        return load_checkpoint(self.checkpoint)

    def evaluation_file(self, settings: str, paths: tuple[str, ...]) -> Path:
        """Where the run cache keeps this run's evaluation with MI estimator ``settings`` on MI ``paths``."""
        return self.path / CACHED_EVALUATIONS.replace("*", f"{settings}-{'-'.join(paths)}")

    def read_evaluation(self, settings: str, paths: tuple[str, ...]) -> dict[str, Any]:
        return json.loads(self.evaluation_file(settings, paths).read_text())

    # ------------------------------------------------------------------ the lock
    def lock(self, purpose: str, create: bool = False, optional: bool = False) -> RunLock:
        """The folder's lock (not yet taken); ``create`` makes the folder, ``optional`` skips a read-only one."""
        return RunLock(self.lock_file, purpose, create=create, optional=optional)

    def holder(self) -> dict[str, Any] | None:
        """The live process holding the folder's lock, or None."""
        return read_lock(self.lock_file)

    # ------------------------------------------------------------------ replacing a run
    def replaceable_files(self) -> list[Path]:
        """The files ``--overwrite`` removes from a vmivae run folder: the run's own, nothing else."""
        found = [self.path / name for name in RUN_FILES if (self.path / name).is_file()]
        return found + sorted(p for p in self.path.glob(EVALUATIONS) if _is_evaluation(p, self.path))

    def check_new_run(self, overwrite: bool, locked: bool = False) -> list[Path]:
        """Check that a new run may be written here (nothing is written); returns the files it replaces.
        ``locked``: the caller holds the folder's lock (checked again under it)."""
        folder = self.path
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"--out {folder} is a file, not a folder; choose another path")
        parent = next((p for p in folder.parents if p.exists()), None)
        if not folder.exists() and parent is not None and not parent.is_dir():
            raise OutputError(f"cannot create output folder {folder}: {parent} is a file; choose another path")
        if not folder.is_dir():
            return []
        holder = None if locked else self.holder()
        if holder is not None:
            raise RunInUseError(in_use_message(self.lock_file, holder))
        try:
            entries = [e for e in folder.iterdir() if not (e.name in (LOCK, OLD_PROBE) or TEMP.match(e.name))]
        except OSError as exc:
            raise OutputError(f"cannot read output folder {folder} ({os_reason(exc)}); choose another folder") from None
        if not entries:
            return []
        if self.owner_info() is None:
            if self.config.exists():
                raise OutputError(f"output folder {folder} holds a {CONFIG} that vmivae did not write; choose another folder "
                                  "(--overwrite replaces only folders written by vmivae)")
            raise OutputError(f"output folder {folder} is not empty and holds no vmivae run; choose a new or empty folder "
                              "(--overwrite replaces only folders written by vmivae)")
        if not self.checkpoint.exists() and not self.metrics.exists():
            return self.replaceable_files()  # a run that never reached a checkpoint: nothing to lose
        if not overwrite:
            state = "a finished run" if self.metrics.exists() else "an unfinished run"
            raise OutputError(f"output folder {folder} holds {state} already; choose a new folder, pass --overwrite to replace it, "
                              f"or continue it with --resume")
        return self.replaceable_files()

    # ------------------------------------------------------------------ writing
    def write_checkpoint(self, state: dict[str, Any], history_csv: bytes, info: dict[str, Any] | None = None,
                         replaces: list[Path] = ()) -> None:
        """Checkpoint and history as one group. With ``info`` (a session's first checkpoint) config.json too, and the
        replaced run's other files go, ``metrics.json`` first. An ``OSError`` leaves the previous files intact."""
        writes = [(self.checkpoint, checkpoint_writer(state)), (self.history, lambda f: f.write(history_csv))]
        remove: list[Path] = []
        if info is not None:
            writes.insert(0, (self.config, lambda f: f.write((json.dumps(info, indent=2) + "\n").encode())))
            remove = [self.metrics, *(p for p in replaces if p.name not in (CONFIG, CHECKPOINT, HISTORY))]
        write_group(writes, remove)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """``metrics.json``: written last, it marks the run finished."""
        write_json(self.metrics, metrics)

    def write_evaluation(self, settings: str, paths: tuple[str, ...], result: dict[str, Any]) -> Path:
        path = self.evaluation_file(settings, paths)
        write_json(path, result)
        return path

    def remove_stale_temps(self) -> None:
        """Remove temporary files that processes killed in this folder left behind."""
        remove_stale_temps(self.path)
