"""Training: ``fit(config)`` for notebooks, the CLI and your own data; ``load_run(dir)`` to read a run back.

The loop is deliberately dull: data live on the device as one tensor, batches are drawn by a seeded
permutation, one :class:`~vmivae.steps.Stepper` call updates both networks, and the host reads the
per-step losses only every ``log_every`` steps (one sync), when it also checks them for NaN/inf,
updates the progress bar and extends the history.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import checkpoint as ckpt
from .config import Config, from_dict
from .data import BatchSampler, ImageData, as_image_data, load
from .errors import CheckpointError, ConfigError, TrainingError
from .latents import temperature_at
from .models import VAE, QNetwork
from .steps import METRICS, Objective, Stepper, build_networks

HISTORY_COLUMNS = ("step", *METRICS, "tau")
FINAL_WINDOW = 100  # metrics.json "final": mean over the last this-many steps


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' was requested but CUDA is not available here; use device=auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device '{name}' was requested but MPS is not available here; use device=auto or cpu")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products natively (CUDA Ampere+, CPUs with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a config's ``amp`` on ``device`` (None: plain fp32)."""
    if amp == "bf16" and device.type in ("cpu", "cuda"):
        return torch.bfloat16
    if amp == "auto" and native_bf16(device):
        return torch.bfloat16
    return None


def use_all_cores() -> int:
    """Use every core this process may run on for CPU kernels; returns the thread count."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def objective_of(config: Config) -> Objective:
    return Objective(config.components, config.mi_source, config.lambda_cat, config.lambda_cont, config.kl_weight, config.recon_loss)


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
        from .latents import sample_prior

        self.vae.eval()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            z, c = sample_prior(self.vae.latent, n)
        return self.vae.decode(self.vae.latent.join(z, c).to(self.device))


class Trainer:
    """Networks, optimisers, sampler and step counter of one run; ``state_dict`` captures all of it."""

    def __init__(self, config: Config, data: ImageData, device: torch.device, rank: int = 0, world_size: int = 1):
        self.config, self.device = config, device
        torch.manual_seed(config.seed)  # weights and sampling noise
        self.vae, self.q = build_networks(data.image_shape, config)
        self.vae.to(device)
        if self.q is not None:
            self.q.to(device)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        if config.channels_last:
            self.vae.to(memory_format=memory_format)
            if self.q is not None:
                self.q.to(memory_format=memory_format)
        self.images = data.images.to(device).contiguous(memory_format=memory_format)
        self.sampler = BatchSampler(len(data), config.batch_size, config.seed, device, rank, world_size)
        vae_params = list(self.vae.parameters())
        q_params = list(self.q.parameters()) if self.q is not None else []
        # fused=True: one kernel per parameter instead of a chain of temporaries (same update rule)
        self.vae_opt = torch.optim.Adam(vae_params, lr=config.lr, fused=True)
        self.q_opt = torch.optim.Adam(q_params, lr=config.q_lr, fused=True) if q_params else None
        vae_run, q_run = self._wrap(self.vae), (self._wrap(self.q) if self.q is not None else None)
        self.amp_dtype = resolve_amp(config.amp, device)
        self.stepper = Stepper(vae_run, q_run, vae_params, q_params, objective_of(config), self.vae_opt, self.q_opt,
                               config.step_mode, config.grad_clip, self.amp_dtype)
        self.step = 0
        self.seconds = 0.0
        self.history: list[np.ndarray] = []  # flushed blocks of [rows, len(HISTORY_COLUMNS)]
        self._tau_value = temperature_at(0, config.tau0, config.tau_min, config.tau_rate, config.tau_interval)
        self._tau = torch.tensor(self._tau_value, device=device)

    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        return torch.compile(module) if self.config.compile else module

    def tau_at(self, step: int) -> float:
        c = self.config
        return temperature_at(step, c.tau0, c.tau_min, c.tau_rate, c.tau_interval)

    # ------------------------------------------------------------------ the loop
    def train(self, until: int, on_flush=None, on_checkpoint=None) -> None:
        """Train until ``self.step == until``; ``on_flush(rows)`` after each history flush,
        ``on_checkpoint()`` every ``checkpoint_every`` steps."""
        c = self.config
        self.vae.train()
        if self.q is not None:
            self.q.train()
        buffer = torch.zeros(c.log_every, len(METRICS), device=self.device)
        taus: list[float] = []
        start = time.perf_counter()
        while self.step < until:
            tau = self.tau_at(self.step)
            if tau != self._tau_value:  # the device scalar changes only when the schedule does
                self._tau_value = tau
                self._tau.fill_(tau)
            x = self.images[self.sampler.next()]
            buffer[len(taus)] = self.stepper(x, self._tau)
            taus.append(tau)
            self.step += 1
            checkpoint_due = self.step % c.checkpoint_every == 0
            if len(taus) == c.log_every or checkpoint_due or self.step == until:
                rows = self._flush(buffer[: len(taus)], taus)
                taus = []
                self.seconds += time.perf_counter() - start
                if on_flush:
                    on_flush(rows)
                if checkpoint_due and on_checkpoint and self.step < until:
                    on_checkpoint()
                start = time.perf_counter()

    def _flush(self, block: torch.Tensor, taus: list[float]) -> np.ndarray:
        values = block.double().cpu().numpy()  # the one host sync of a log interval
        steps = np.arange(self.step - len(taus) + 1, self.step + 1)
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():
            bad = int(steps[np.argmin(finite)])
            name = METRICS[int(np.argmin(np.isfinite(values[np.argmin(finite)])))]
            raise TrainingError(f"the {name} loss became non-finite at step {bad}; lower lr or set grad_clip, then retrain or resume from the last checkpoint")
        rows = np.column_stack([steps, values, taus])
        self.history.append(rows)
        return rows

    def history_frame(self) -> pd.DataFrame:
        rows = np.concatenate(self.history) if self.history else np.zeros((0, len(HISTORY_COLUMNS)))
        frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
        frame["step"] = frame["step"].astype(int)
        return frame

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        history = np.concatenate(self.history) if self.history else np.zeros((0, len(HISTORY_COLUMNS)))
        return {
            "step": self.step,
            "seconds": self.seconds,
            "vae": self.vae.state_dict(),
            "q": self.q.state_dict() if self.q is not None else {},
            "vae_opt": self.vae_opt.state_dict(),
            "q_opt": self.q_opt.state_dict() if self.q_opt is not None else {},
            "sampler": self.sampler.state_dict(),
            "rng": rng,
            "history": torch.from_numpy(history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.vae.load_state_dict(state["vae"])
        if self.q is not None:
            self.q.load_state_dict(state["q"])
            self.q_opt.load_state_dict(state["q_opt"])
        self.vae_opt.load_state_dict(state["vae_opt"])
        self.sampler.load_state_dict(state["sampler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self.history = [state["history"].numpy()]

    def check_finite_weights(self) -> None:
        for module in (self.vae, self.q):
            if module is None:
                continue
            for name, tensor in module.state_dict().items():
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    raise TrainingError(f"weight {name} became non-finite at step {self.step}; no checkpoint was written for it")


# ---------------------------------------------------------------------------- fit / load_run


def final_metrics(history: pd.DataFrame, window: int = FINAL_WINDOW) -> dict[str, float]:
    """Mean of the last ``window`` steps: reconstruction MSE term, total KL, Q's cross-entropy."""
    tail = history.tail(window)
    return {
        "recon": float(tail["recon"].mean()),
        "kl": float((tail["kl_cont"] + tail["kl_cat"]).mean()),
        "mi_ce": float(tail["q_loss"].mean()),
    }


def _meta(config: Config, data: ImageData, extra: dict[str, Any] | None) -> dict[str, Any]:
    from . import __version__

    return {"config": config.to_dict(), "config_hash": config.hash(), "image_shape": list(data.image_shape),
            "dataset": data.name, "vmivae_version": __version__, "torch_version": str(torch.__version__), **(extra or {})}


def fit(config: Config, data: Any = None, out: str | os.PathLike | None = None, *, overwrite: bool = False,
        progress: bool = True, meta: dict[str, Any] | None = None, threads: int | None = None) -> Run:
    """Train a VMI-VAE (or, with lambdas 0, the vanilla baseline with Q tracking MI).

    Args:
        config: the run's :class:`Config` (see ``vmivae.make_config``).
        data: None to load ``config.dataset`` (train split), or your own images: a tensor/array
            ``[N, C, H, W]`` in [0, 1] or [-1, 1] (uint8 0..255 too), an :class:`ImageData`, or a torch
            ``Dataset`` of images or ``(image, label)`` pairs.
        out: run directory to write (config.json, checkpoint.pt, history.csv, metrics.json), or None.
        overwrite: allow ``out`` to be a non-empty folder (its run files are replaced).
        progress: show a progress bar and a start line on stderr.
        meta: extra fields to record in config.json (e.g. the preset and profile names).
        threads: CPU threads to use; default: every core this process may run on.
    """
    if not isinstance(config, Config):
        raise ConfigError(f"fit() needs a vmivae.Config, got {type(config).__name__}; build one with vmivae.make_config(...)")
    if data is None:
        data = load(config.dataset, "train", config.data_root)
    else:
        data = as_image_data(data)
        config = config.replace(dataset="custom") if data.name == "custom" else config
    device = resolve_device(config.device)
    if threads:
        torch.set_num_threads(threads)
    threads = (threads or use_all_cores()) if device.type == "cpu" else torch.get_num_threads()
    out_dir = ckpt.prepare_out_dir(Path(out), overwrite) if out is not None else None
    info = _meta(config, data, meta)
    trainer = Trainer(config, data, device)
    if out_dir:
        ckpt.write_json(out_dir / ckpt.CONFIG, info)
    return _train(trainer, config, out_dir, info, progress, threads, len(data))


def _train(trainer: Trainer, config: Config, out_dir: Path | None, info: dict[str, Any], progress: bool, threads: int, n_images: int) -> Run:
    from tqdm.auto import tqdm

    device = trainer.device
    if progress:
        where = f"{device.type} ({threads} threads)" if device.type == "cpu" else str(device)
        print(f"vmivae: training on {where}: {info['dataset']} ({n_images} images), steps {trainer.step}->{config.steps}, "
              f"batch {config.batch_size}, {config.step_mode} step", file=sys.stderr)
    bar = tqdm(total=config.steps, initial=trainer.step, unit="step", disable=not progress, mininterval=1.0, file=sys.stderr)

    def on_flush(rows: np.ndarray) -> None:
        bar.update(len(rows))
        last = dict(zip(HISTORY_COLUMNS, rows[-1]))
        bar.set_postfix(loss=f"{last['loss']:.4f}", recon=f"{last['recon']:.4f}", ce=f"{last['q_loss']:.3f}", tau=f"{last['tau']:.2f}", refresh=False)

    def save() -> None:
        if out_dir is not None:
            trainer.check_finite_weights()
            ckpt.save_checkpoint(out_dir / ckpt.CHECKPOINT, {**trainer.state_dict(), "meta": info})
            trainer.history_frame().to_csv(out_dir / ckpt.HISTORY, index=False)

    try:
        trainer.train(config.steps, on_flush, save)
    finally:
        bar.close()
    save()
    history = trainer.history_frame()
    images = config.steps * config.batch_size
    metrics = {
        "steps": trainer.step,
        "seconds": round(trainer.seconds, 3),
        "images_per_second": round(images / max(trainer.seconds, 1e-9), 1),
        "final": final_metrics(history),
        "final_window": min(FINAL_WINDOW, len(history)),
        "device": str(device),
        "threads": threads,
        "config_hash": config.hash(),
    }
    if out_dir is not None:
        ckpt.write_json(out_dir / ckpt.METRICS, metrics)
    if progress:
        print(f"vmivae: {trainer.step} steps in {trainer.seconds:.1f} s, {metrics['images_per_second']:.0f} images/s", file=sys.stderr)
    trainer.vae.eval()
    if trainer.q is not None:
        trainer.q.eval()
    return Run(config, trainer.vae, trainer.q, history, metrics, out_dir, info)


def load_run(path: str | os.PathLike, device: str = "cpu", allow_incomplete: bool = False) -> Run:
    """Read a run directory back: networks ready in eval mode, config, history and metrics."""
    path = ckpt.check_run_dir(Path(path))
    info = ckpt.read_json(path / ckpt.CONFIG, "the run's config")
    if "config" not in info or "image_shape" not in info:
        raise CheckpointError(f"{path / ckpt.CONFIG} lacks 'config' or 'image_shape'; it was not written by vmivae train")
    config = from_dict(info["config"], f"{path / ckpt.CONFIG}")
    finished = (path / ckpt.METRICS).is_file()
    if not finished and not allow_incomplete:
        raise CheckpointError(f"the run in {path} did not finish (no {ckpt.METRICS}); resume it with: vmivae train --resume {path}")
    dev = resolve_device(device)
    state = ckpt.load_checkpoint(path / ckpt.CHECKPOINT, dev)
    vae, q = build_networks(tuple(info["image_shape"]), config)
    try:
        vae.load_state_dict(state["vae"])
        if q is not None:
            q.load_state_dict(state["q"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0][:200]
        raise CheckpointError(f"{path / ckpt.CHECKPOINT} does not match the model in {ckpt.CONFIG} ({first}); the files come from different runs") from None
    vae.to(dev).eval()
    if q is not None:
        q.to(dev).eval()
    history = pd.DataFrame(state["history"].numpy(), columns=list(HISTORY_COLUMNS))
    history["step"] = history["step"].astype(int)
    metrics = ckpt.read_json(path / ckpt.METRICS, "the run's metrics") if finished else {}
    return Run(config, vae, q, history, metrics, path, info)
