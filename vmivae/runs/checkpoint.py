"""The checkpoint file format: weights, optimiser states, step, RNG states and history in one file.

Checkpoints are read with ``torch.load(weights_only=True)``: only tensors and plain containers are
accepted, so a crafted file cannot execute code on load. Where a run keeps its checkpoint is
``vmivae.runs.folder``'s business; this module reads and writes the file it is given.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .files import Writer, os_reason

FORMAT = "vmivae-checkpoint"
FORMAT_VERSION = 3  # 2: the history gained recon_mse; 3: h_cat and codes_used


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
    return state
