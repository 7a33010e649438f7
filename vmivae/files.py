"""Files that are never half-written: write to a temporary file in the same folder, then rename.

Used for every file vmivae writes (run files, checkpoints, dataset caches, evaluation JSON), so a reader
never sees half a file, whatever stops the writer.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda f: f.write(data))


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())  # keep insertion order (z0, z1, ..., z10)


def save_tensors(path: Path, obj: Any) -> None:
    """Atomically ``torch.save`` tensors and plain containers (checkpoints, dataset caches)."""
    _atomic(path, lambda f: torch.save(obj, f))
