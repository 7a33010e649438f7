"""A trained run as an object (:class:`Run`) and reading one back from its directory (:func:`load_run`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..config import Config
from ..errors import CheckpointError, resume_command
from ..models import VAE, QNetwork
from ..perf.fast_layers import use_matmul_layers
from ..steps import build_networks
from .checkpoint import HISTORY_COLUMNS, damaged
from .folder import CONFIG, RunFolder
from .stored import check_together

__all__ = ["HISTORY_COLUMNS", "Run", "history_frame", "load_networks", "load_run"]


def history_frame(rows: Any) -> pd.DataFrame:
    """The per-step history ``[steps, len(HISTORY_COLUMNS)]`` as a DataFrame with integer steps."""
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    frame["step"] = frame["step"].astype(int)
    return frame


@dataclass
class Run:
    """A trained model with its config, history and metrics (what ``fit`` and ``load_run`` return)."""

    config: Config
    vae: VAE
    q: QNetwork | None
    history: pd.DataFrame
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @torch.no_grad()
    def generate(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` images decoded from prior codes (eval mode), ``[n, C, H, W]`` in [-1, 1]."""
        from ..latents import sample_prior

        self.vae.eval()
        z, c = sample_prior(self.vae.latent, n, self.device, torch.Generator().manual_seed(seed))
        return self.vae.decode(self.vae.latent.join(z, c))


def load_networks(state: dict[str, Any], image_shape: tuple[int, int, int], config: Config, where: Path) -> tuple[VAE, QNetwork | None]:
    """Build the networks of ``config`` and load a checkpoint's weights into them."""
    vae, q = build_networks(tuple(image_shape), config)
    if config.matmul_layers:
        use_matmul_layers(vae, q)
    try:
        vae.load_state_dict(state["vae"])
        if q is not None:
            q.load_state_dict(state["q"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise CheckpointError(f"{where} does not match the model in {CONFIG} ({first}); the files come from different runs") from None
    return vae, q


def load_run(path: str | os.PathLike, device: str = "cpu", allow_incomplete: bool = False) -> Run:
    """Read a run directory back: networks ready in eval mode, config, history and metrics."""
    from ..perf.device import resolve_device

    folder = RunFolder.existing(path)
    info, config = folder.read_config()
    finished = folder.finished
    if not finished and not allow_incomplete:
        raise CheckpointError(f"the run in {folder.path} did not finish (no {folder.metrics.name}); "
                              f"resume it with: {resume_command(folder.path)}")
    dev = resolve_device(device)
    state = folder.load_checkpoint()  # to the CPU, every entry checked; the networks move to the device below
    check_together(folder.config, folder.checkpoint, state, info)
    metrics = folder.read_metrics() if finished else {}
    if finished and metrics["steps"] != state["step"]:
        raise damaged(folder.metrics, f"it says the run finished at step {metrics['steps']} but {folder.checkpoint.name} holds step "
                      f"{state['step']}, so the two come from different runs", "restore the run's files from one copy or train the run again")
    vae, q = load_networks(state, info["image_shape"], config, folder.checkpoint)
    vae.to(dev).eval()
    if q is not None:
        q.to(dev).eval()
    return Run(config, vae, q, history_frame(state["history"].numpy()), metrics, folder.path, info)
