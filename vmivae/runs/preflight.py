"""Checks made before a run writes anything: arguments, data, the model's memory, a checkpoint's config.

``fit`` and ``resume`` call these before they lock or touch a run folder, so that every mistake that can
be found early is one sentence and leaves nothing behind (see ``vmivae.training``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..datasets import ImageData
from ..errors import ConfigError, DataError, OutputError
from ..models import check_image_shape
from ..perf import distributed
from ..trainer import Trainer
from ..version import __version__
from .checkpoint import FORMAT_VERSION
from .folder import RunFolder
from .stored import check_together


def fingerprint(data: ImageData) -> str:
    """A digest of the images, in order: a resumed run must see the same data."""
    return hashlib.sha256(np.ascontiguousarray(data.images.detach().cpu().numpy())).hexdigest()[:16]


def run_meta(config: Config, data: ImageData, extra: dict[str, Any] | None) -> dict[str, Any]:
    info = {"config": config.to_dict(), "config_hash": config.hash(), "image_shape": list(data.image_shape),
            "dataset": data.name, "vmivae_version": __version__,
            "checkpoint_format": FORMAT_VERSION, "torch_version": str(torch.__version__), **(extra or {})}
    if config.dataset == "custom":
        info["data_fingerprint"] = {"images": len(data), "sha256": fingerprint(data)}
    try:
        json.dumps(info)
    except (TypeError, ValueError):
        raise ConfigError("meta must hold only JSON values (strings, numbers, booleans, lists and dicts)") from None
    return info


def as_path(path: Any, what: str) -> Path | None:
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ConfigError(f"{what} must be a folder path (a string or pathlib.Path), got {path!r}")
    try:
        return Path(path).expanduser()  # "~/runs" means the home folder, as in a shell
    except RuntimeError:  # ~name of no user (pathlib cannot tell whose home it is)
        user = str(path)[1:].split("/", 1)[0].split(os.sep, 1)[0]
        raise OutputError(f"{what} {path} starts with ~{user}, but there is no user {user!r} whose home it could be; give the full path") from None


def check_args(threads: Any, meta: Any = None) -> None:
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
    if meta is not None and not isinstance(meta, dict):
        raise ConfigError(f"meta must be a dict of extra fields for config.json, got {type(meta).__name__}")


def check_data(config: Config, data: ImageData) -> None:
    try:
        check_image_shape(data.image_shape)
    except ValueError as exc:  # the model's own check, as a user's mistake
        raise ConfigError(str(exc)) from None
    if config.batch_size > len(data):
        raise DataError(f"batch_size {config.batch_size} is larger than the {len(data)} training images; lower batch_size")


def out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or (isinstance(exc, RuntimeError) and any(
        text in str(exc) for text in ("can't allocate memory", "not enough memory", "out of memory")))


def build_trainer(config: Config, data: ImageData, device: torch.device, dist: distributed.DistInfo) -> Trainer:
    try:
        return Trainer(config, data, device, dist)
    except (RuntimeError, MemoryError) as exc:
        if not (isinstance(exc, MemoryError) or out_of_memory(exc)):
            raise
        raise ConfigError(f"the model and the data do not fit in {device.type} memory; lower continuous, categorical or batch_size, "
                          "or use fewer images") from None


def check_checkpoint(folder: RunFolder, state: dict[str, Any], info: dict[str, Any]) -> None:
    """The checkpoint must belong to the config in config.json (same model, objective and data shape)."""
    check_together(folder.config, folder.checkpoint, state, info)
