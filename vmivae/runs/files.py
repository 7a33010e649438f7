"""Files that are never half-written: write to a temporary file in the same folder, then rename.

Used for every file vmivae writes (run files, checkpoints, dataset caches, evaluation JSON), so a reader
never sees half a file, whatever stops the writer.

* A temporary file is named ``.<name>.<pid>.<random>.tmp``. Any failure removes it; a process killed
  hard (SIGKILL, power loss) cannot, so the next write to the same name, and every run that starts in
  a folder (:func:`remove_stale_temps`), removes those whose process is gone.
* :func:`write_group` writes files that belong together (a checkpoint, its history and config): all of
  them go to temporary files first, and only when every one is complete are obsolete files removed
  and the new ones renamed into place, with SIGINT/SIGTERM held back for those few renames. A full
  disk therefore leaves the previous files exactly as they were.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)
TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[a-z0-9_]+\.tmp$")
REASONS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded", errno.EROFS: "the file system is read-only",
           errno.EACCES: "permission denied", errno.EPERM: "permission denied", errno.EIO: "the disk reported an input/output error",
           errno.EFBIG: "the file size limit is reached"}

Writer = Callable[[BinaryIO], Any]


def os_reason(exc: OSError) -> str:
    """What went wrong, in words: ``the disk is full: No space left on device``."""
    text = exc.strerror or (os.strerror(exc.errno) if exc.errno else type(exc).__name__)
    return f"{REASONS[exc.errno]}: {text}" if exc.errno in REASONS else text


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (one of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def remove_stale_temps(folder: Path, name: str | None = None) -> list[Path]:
    """Remove temporary files in ``folder`` (of ``name`` only, if given) whose writing process is gone."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = TEMP.match(entry.name)
        if match and (name is None or match["name"] == name) and not pid_alive(int(match["pid"])):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


class _Guarded:
    """A file that remembers why a write failed (a full disk, a size limit)."""

    def __init__(self, f: BinaryIO):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.f.flush()


def _stage(path: Path, write: Writer) -> Path:
    """Write ``path``'s new content to a temporary file beside it; returns the temporary file."""
    path = Path(path)
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            guarded = _Guarded(f)
            try:
                write(guarded)
            except Exception:
                if guarded.error is not None:  # torch.save reports a failed write as a RuntimeError without its cause
                    raise guarded.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT/SIGTERM back (main thread only) and deliver them when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        for s in dict.fromkeys(pending):
            signal.raise_signal(s)


def write_group(writes: Iterable[tuple[Path, Writer]], remove: Iterable[Path] = ()) -> None:
    """Write several files as one: stage all, then remove ``remove`` and rename the new files into place."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in writes:
            staged.append((_stage(path, write), Path(path)))
        with signals_deferred():
            for old in remove:
                Path(old).unlink(missing_ok=True)
            for tmp, path in staged:
                os.replace(tmp, path)
        folders, staged = dict.fromkeys(path.parent for _, path in staged), []
        for folder in folders:  # the renames themselves reach the disk
            _sync_folder(folder)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic(path: Path, write: Writer) -> None:
    write_group([(Path(path), write)])


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda f: f.write(data))


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())  # keep insertion order (z0, z1, ..., z10)


def save_tensors(path: Path, obj: Any) -> None:
    """Atomically ``torch.save`` tensors and plain containers (checkpoints, dataset caches)."""
    _atomic(path, lambda f: torch.save(obj, f))
