"""What a run folder's files must hold, checked whenever a run is loaded, resumed or evaluated.

A file that vmivae wrote but that no longer holds what it wrote (edited by hand, half-copied, from
another run) is one :class:`CheckpointError` naming that file and what is wrong with it, never a
``KeyError`` from deep inside, nor a message about something else. The checkpoint's own entries are
checked where it is read (``vmivae.runs.checkpoint.check_state``); here ``config.json``, ``metrics.json``
and whether the files belong together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import FIELDS, LEVER_KEYS, OPERATIONAL_KEYS, Config, from_dict
from ..errors import CheckpointError, ConfigError, shown
from ..models import check_image_shape
from .checkpoint import damaged, is_int, is_number

RESUMABLE_KEYS = ("steps", "device", "data_root", "log_every", "checkpoint_every")  # may change on resume
# a run's config names every key that decides what it computes (the KL levers came later and default to off)
REQUIRED_KEYS = tuple(k for k in FIELDS if k not in OPERATIONAL_KEYS and k not in LEVER_KEYS)
METRIC_KINDS = {"steps": "whole", "seconds": "number", "images_per_second": "number", "final": "table", "final_window": "whole",
                "device": "text", "threads": "whole", "processes": "whole", "capture": "text", "config_hash": "text"}


def check_info(path: Path, info: dict[str, Any]) -> Config:
    """``config.json`` of a run to load or resume (a JSON object): its entries checked, its Config returned."""
    for key in ("config", "image_shape", "dataset"):
        if key not in info:
            raise damaged(path, f"it has no '{key}'")
    stored = info["config"]
    if not isinstance(stored, dict):
        raise damaged(path, f"its 'config' is {shown(stored)}, not an object of config keys")
    unknown = sorted(map(str, set(stored) - set(FIELDS)))
    if unknown:
        raise damaged(path, f"its config has the unknown key {unknown[0]!r}", "restore the file from a copy, or use the vmivae that wrote it")
    missing = [k for k in REQUIRED_KEYS if k not in stored]
    if missing:
        raise damaged(path, f"its config lacks {missing[0]!r}")
    try:
        config = from_dict(stored, "its config")
    except ConfigError as exc:
        raise damaged(path, str(exc).split("; ")[0]) from None
    shape = info["image_shape"]
    ok = isinstance(shape, list) and len(shape) == 3 and all(is_int(v) and v > 0 for v in shape)
    try:
        ok = ok and check_image_shape(tuple(shape)) is not None
    except ValueError:
        ok = False
    if not ok:
        raise damaged(path, f"its 'image_shape' is {shown(shape)}, not an image shape [channels, height, width] that vmivae trains on")
    if not isinstance(info["dataset"], str) or not info["dataset"]:
        raise damaged(path, f"its 'dataset' is {shown(info['dataset'])}, not a dataset name")
    stamp = info.get("data_fingerprint")
    if stamp is not None and not (isinstance(stamp, dict) and is_int(stamp.get("images")) and isinstance(stamp.get("sha256"), str)):
        raise damaged(path, f"its 'data_fingerprint' is {shown(stamp)}, not a count of images and their digest")
    return config


def check_metrics(path: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics.json`` of a finished run (a JSON object): every entry vmivae writes, of the right kind."""
    for key, kind in METRIC_KINDS.items():
        if key not in metrics:
            if key in ("steps", "seconds", "final"):
                raise damaged(path, f"it has no '{key}'")
            continue
        value = metrics[key]
        good = {"whole": lambda v: is_int(v) and v >= 0, "number": lambda v: is_number(v) and v >= 0, "text": lambda v: isinstance(v, str),
                "table": lambda v: isinstance(v, dict) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v.values())}[kind]
        if not good(value):
            what = {"whole": "a whole number", "number": "a non-negative number", "text": "text", "table": "an object of numbers"}[kind]
            raise damaged(path, f"its '{key}' is {shown(value)}, not {what}")
    return metrics


def check_together(config_file: Path, checkpoint_file: Path, state: dict[str, Any], info: dict[str, Any]) -> None:
    """The checkpoint must belong to the config in config.json (same model, objective and data shape)."""
    stored = state.get("meta") if isinstance(state.get("meta"), dict) else {}
    if "config" not in stored:
        return
    mine = check_info(config_file, info).to_dict()
    try:
        theirs = check_info(checkpoint_file, stored).to_dict()
    except CheckpointError:  # the copy of config.json inside the checkpoint is damaged: the checkpoint is
        raise damaged(checkpoint_file, "the copy of config.json it holds is not a run's config") from None
    differ = [k for k in mine if k not in RESUMABLE_KEYS and k not in ("fused_adam",) and mine[k] != theirs.get(k)]
    if not differ and list(stored["image_shape"]) != list(info["image_shape"]):
        raise CheckpointError(f"{checkpoint_file} does not match the model in {config_file.name} (it was written for {tuple(stored['image_shape'])} "
                              f"images, {config_file.name} says {tuple(info['image_shape'])}); the files come from different runs or "
                              "config.json was edited; restore the matching config.json or retrain")
    if differ:
        what = ", ".join(f"{k}: {theirs.get(k)!r} in the checkpoint, {mine[k]!r} in {config_file.name}" for k in differ[:3])
        raise CheckpointError(f"{checkpoint_file} was written for another config than {config_file} ({what}); "
                              "the files come from different runs or config.json was edited; restore the matching config.json or retrain")
