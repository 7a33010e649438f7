"""One writer per folder: a lock file that names the process holding it.

``train``, ``--resume`` and ``evaluate`` hold a run folder's lock (where it lies is
``vmivae.runs.folder.RunFolder.lock_file``) while they work. It is created with
``O_CREAT | O_EXCL`` and holds the process id, the process's start time (so that a reused id is not
mistaken for the holder), the host and what the process is doing; the holder also keeps an ``flock``
on it. A lock whose process is gone (killed hard) is stale: the next user of the folder clears it, and
the ``flock`` makes sure that of two processes finding the same stale lock only one takes the folder.
A lock of another host cannot be checked from here and is respected.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: the lock file and its process id alone
    fcntl = None  # type: ignore[assignment]

from ..errors import OutputError, RunInUseError
from .files import os_reason, pid_alive

_HELD: set[str] = set()  # locks this process holds (a lock naming this process but not here was leaked)


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (Linux: clock ticks since boot), to tell a reused process id apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _describe(holder: dict[str, Any]) -> str:
    started = holder.get("time")
    since = f", since {time.strftime('%Y-%m-%d %H:%M', time.localtime(started))}" if isinstance(started, (int, float)) and started > 0 else ""
    return f"process {holder.get('pid', '?')} ({holder.get('purpose', 'vmivae')}{since})"


def read_lock(path: Path) -> dict[str, Any] | None:
    """The live holder of the lock file ``path``, or None when it is free or its lock is stale."""
    path = Path(path)
    try:
        holder = json.loads(path.read_text())
        if not isinstance(holder, dict):
            raise ValueError
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError):  # being written this instant, or damaged
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime < 10:
                return {"pid": "?", "purpose": "starting"}
        return None
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname():
        return holder  # another machine's process: it cannot be checked from here
    if not isinstance(pid, int) or not pid_alive(pid):
        return None
    if pid == os.getpid() and str(path.resolve()) not in _HELD:
        return None  # left by an earlier call in this process that was stopped before releasing it
    recorded, actual = holder.get("start"), _start_time(pid)
    return holder if recorded is None or actual is None or recorded == actual else None


def in_use_message(path: Path, holder: dict[str, Any]) -> str:
    """Why the folder of lock file ``path`` cannot be used now, and what to do."""
    other = "" if holder.get("host") in (None, socket.gethostname()) else f" on host {holder.get('host')}"
    return (f"run folder {Path(path).parent} is in use by {_describe(holder)}{other}; wait until it finishes (if that process is gone, "
            f"delete {path})")


class RunLock:
    """The lock file ``path`` of one folder, taken with ``O_CREAT | O_EXCL``; ``create`` makes the folder if needed.

    The holder also keeps an ``flock`` on the file, so that two processes that find the same stale lock
    cannot both take the folder: only one can clear it, and only while it is still the stale file.
    """

    def __init__(self, path: Path, purpose: str, create: bool = False, optional: bool = False):
        """``optional``: a folder this process cannot write to (a read-only copy) is used without a lock."""
        self.path, self.purpose, self.create, self.optional = Path(path), purpose, create, optional
        self.folder = self.path.parent
        self.held = self.created_folder = False
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        if self.create and not self.folder.exists():
            try:
                self.folder.mkdir(parents=True)
                self.created_folder = True
            except FileExistsError:
                pass
            except OSError as exc:
                raise OutputError(f"cannot create output folder {self.folder} ({os_reason(exc)}); choose a writable folder") from None
        record = {"pid": os.getpid(), "start": _start_time(os.getpid()), "host": socket.gethostname(), "purpose": self.purpose, "time": time.time()}
        for _ in range(40):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            except FileExistsError:
                holder = read_lock(self.path)
                if holder is not None:
                    self._undo_folder()
                    raise RunInUseError(in_use_message(self.path, holder)) from None
                if not self._clear_stale():
                    time.sleep(0.05)  # another process is clearing it, or its holder just started: look again
                continue
            except OSError as exc:
                self._undo_folder()
                if self.optional:
                    return self
                raise OutputError(f"cannot write to folder {self.folder} ({os_reason(exc)}); choose a writable folder") from None
            try:
                os.write(fd, json.dumps(record).encode())
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # blocks only while another process looks at it
                self.fd, self.held = fd, True
                _HELD.add(str(self.path.resolve()))
            except BaseException:
                self.path.unlink(missing_ok=True)
                os.close(fd)
                raise
            return self
        self._undo_folder()
        raise RunInUseError(f"run folder {self.folder} is being claimed by several processes at once; try again")

    def _clear_stale(self) -> bool:
        """Remove the lock file if its holder is gone; False when it could not be looked at now."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return False
            try:
                if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                    return True  # replaced meanwhile: look at the new one
            except FileNotFoundError:
                return True
            if read_lock(self.path) is not None:  # looked at again while no one else can clear it
                return False
            self.path.unlink(missing_ok=True)
            return True
        finally:
            os.close(fd)

    def release(self) -> None:
        if self.held:
            _HELD.discard(str(self.path.resolve()))
            with contextlib.suppress(OSError, ValueError):
                if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:  # still ours
                    self.path.unlink()
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.held, self.fd = False, None
        self._undo_folder()

    def _undo_folder(self) -> None:
        """Remove the folder again if this lock created it and nothing was written into it."""
        if self.created_folder:
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # fails, as it should, unless the folder is empty
            self.created_folder = self.folder.exists()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
