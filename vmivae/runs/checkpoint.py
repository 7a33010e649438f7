"""The checkpoint file format: weights, optimiser states, step, RNG states and history in one file.

Checkpoints are read with ``torch.load(weights_only=True)``: only tensors and plain containers are
accepted, so a crafted file cannot execute code on load. Where a run keeps its checkpoint is
``vmivae.runs.folder``'s business; this module reads and writes the file it is given.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, shown
from ..steps import METRICS
from .files import Writer, os_reason

FORMAT = "vmivae-checkpoint"
FORMAT_VERSION = 3  # 2: the history gained recon_mse; 3: h_cat and codes_used
HISTORY_COLUMNS = ("step", *METRICS, "tau", "codes_used")  # the checkpoint's history tensor, one row per step


def checkpoint_writer(state: dict[str, Any]) -> Writer:
    """Writes a checkpoint dict to an open file (for ``files.write_group``)."""
    return lambda f: torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **state}, f)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; every way it can be wrong becomes one :class:`CheckpointError`.

    Training reads checkpoints to the CPU (the default) and lets each consumer move what it needs:
    RNG and generator states must stay CPU byte tensors whatever device the run uses.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train a run first (vmivae train --out DIR)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path} ({os_reason(exc)}); check the file's permissions") from None
    except Exception as exc:  # damaged bytes fail in many ways (EOFError, KeyError, UnpicklingError, ...)
        refused = re.search(r"GLOBAL (\S+)", str(exc), re.IGNORECASE) if isinstance(exc, pickle.UnpicklingError) else None
        if refused:  # weights_only met an object that is not a tensor or a plain container: foreign or malicious
            raise CheckpointError(f"{path} contains objects other than tensors and was not loaded (it asks for {refused.group(1)}); "
                                  "only load checkpoints written by vmivae") from None
        raise CheckpointError(f"{path} is truncated or not a PyTorch file ({type(exc).__name__}); resume from another copy or retrain") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("format_version", 0), int):
        raise CheckpointError(f"{path} is a PyTorch file but not a vmivae checkpoint; pass a run directory written by vmivae train")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer vmivae (format {state['format_version']}); upgrade vmivae")
    if state.get("format_version", 0) < FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by an older vmivae (format {state.get('format_version', 0)}, this one reads "
                              f"{FORMAT_VERSION}); train the run again")
    check_state(path, state)
    return state


# ---------------------------------------------------------------------------- what a checkpoint holds


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def damaged(path: Path, what: str, fix: str = "restore the file from a copy or train the run again") -> CheckpointError:
    """The one sentence for a run file that vmivae wrote but that no longer holds what it wrote."""
    return CheckpointError(f"{path} is damaged ({what}); {fix}")


def check_state(path: Path, state: dict[str, Any]) -> None:
    """Every entry a checkpoint needs, of the right kind, before anything reads it (load, resume)."""
    for key in ("step", "seconds", "vae", "q", "vae_opt", "q_opt", "sampler", "rng", "history"):
        if key not in state:
            raise damaged(path, f"it has no '{key}'")
    step = state["step"]
    if not is_int(step) or step < 0:
        raise damaged(path, f"its 'step' is {shown(step)}, not a whole number of steps")
    if not is_number(state["seconds"]) or state["seconds"] < 0:
        raise damaged(path, f"its 'seconds' is {shown(state['seconds'])}, not a duration")
    for key in ("vae", "q", "vae_opt", "q_opt", "sampler"):
        if not isinstance(state[key], dict):
            raise damaged(path, f"its '{key}' is {shown(state[key])}, not a state dictionary")
    sampler = state["sampler"]
    if not (isinstance(sampler.get("generator"), torch.Tensor) and isinstance(sampler.get("perm"), torch.Tensor) and is_int(sampler.get("pos"))):
        raise damaged(path, "its 'sampler' lacks the generator, permutation or position of the batch sampler")
    rng = state["rng"]
    if not isinstance(rng, list) or not rng or not all(isinstance(r, dict) and isinstance(r.get("torch"), torch.Tensor) for r in rng):
        raise damaged(path, f"its 'rng' is {shown(rng)}, not the random states of the processes that wrote it")
    history = state["history"]
    if not isinstance(history, torch.Tensor) or history.dim() != 2 or history.shape[1] != len(HISTORY_COLUMNS):
        raise damaged(path, f"its 'history' is {shown(history)}, not a table of {len(HISTORY_COLUMNS)} columns")
    if len(history) != step:
        raise damaged(path, f"its history has {len(history)} rows but its step is {step}")
    if "meta" in state and not isinstance(state["meta"], dict):
        raise damaged(path, f"its 'meta' is {shown(state['meta'])}, not the run's config.json")
