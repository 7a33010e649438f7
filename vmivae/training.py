"""Training: ``fit(config)`` for notebooks, the CLI and your own data; ``resume(run_dir)`` to continue.

The loop is deliberately dull: data live on the device as one tensor, batches are drawn by a seeded
permutation, one :class:`~vmivae.steps.Stepper` call updates both networks, and the host reads the
per-step losses only every ``log_every`` steps (one sync), when it also checks them for NaN/inf,
updates the progress bar and extends the history.

Runs survive interruption: checkpoints (weights, optimiser states, sampler and RNG states, history)
are written atomically every ``checkpoint_every`` steps; SIGINT/SIGTERM finish the current step,
write a checkpoint and stop (a second Ctrl-C aborts at once); ``resume`` continues bit-identically.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoint as ckpt
from . import distributed
from .config import Config
from .datasets import ImageData, as_image_data, load
from .device import resolve_device, use_all_cores
from .errors import CheckpointError, ConfigError, TrainingError, TrainingInterrupted
from .files import write_json
from .run import HISTORY_COLUMNS, Run, history_frame, read_run_info
from .signals import stop_on_signals
from .trainer import Trainer
from .version import __version__

FINAL_WINDOW = 100  # metrics.json "final": mean over the last this-many steps
RESUMABLE_KEYS = ("steps", "device", "data_root", "log_every", "checkpoint_every")  # may change on resume



def final_metrics(rows: np.ndarray, window: int = FINAL_WINDOW) -> dict[str, float]:
    """Mean of the last ``window`` steps: reconstruction MSE and loss term, total KL, Q's cross-entropy."""
    tail = history_frame(rows).tail(window)
    return {"recon_mse": float(tail["recon_mse"].mean()), "recon": float(tail["recon"].mean()),
            "kl": float((tail["kl_cont"] + tail["kl_cat"]).mean()), "mi_ce": float(tail["q_loss"].mean())}


def _meta(config: Config, data: ImageData, extra: dict[str, Any] | None) -> dict[str, Any]:
    return {"config": config.to_dict(), "config_hash": config.hash(), "image_shape": list(data.image_shape),
            "dataset": data.name, "vmivae_version": __version__,
            "checkpoint_format": ckpt.FORMAT_VERSION, "torch_version": str(torch.__version__), **(extra or {})}


def _setup(config: Config, threads: int | None) -> tuple[distributed.DistInfo, torch.device, int]:
    device = resolve_device(config.device)
    dist, device = distributed.setup(device)
    if not threads and dist.enabled and device.type == "cpu":  # share the cores among this machine's processes
        threads = max(1, use_all_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", dist.world_size)))
    if threads:
        torch.set_num_threads(threads)
    n_threads = (threads or use_all_cores()) if device.type == "cpu" else torch.get_num_threads()
    return dist, device, n_threads


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

    Launched by ``torchrun`` with several processes, it trains data-parallel (see ``vmivae.distributed``).
    """
    if not isinstance(config, Config):
        raise ConfigError(f"fit() needs a vmivae.Config, got {type(config).__name__}; build one with vmivae.make_config(...)")
    if data is None:
        data = load(config.dataset, "train", config.data_root)
    else:
        data = as_image_data(data)
        config = config.replace(dataset="custom") if data.name == "custom" else config
    dist, device, n_threads = _setup(config, threads)
    try:
        out_dir = Path(out) if out is not None else None
        info = _meta(config, data, meta)
        if out_dir is not None:
            distributed.on_main(dist, lambda: (ckpt.prepare_out_dir(out_dir, overwrite), write_json(out_dir / ckpt.CONFIG, info)))
        trainer = Trainer(config, data, device, dist)
        return _train(trainer, config, out_dir, info, progress and dist.is_main, n_threads, len(data))
    finally:
        distributed.teardown(dist)


def resume(path: str | os.PathLike, steps: int | None = None, *, data: Any = None, progress: bool = True,
           overrides: dict[str, Any] | None = None, threads: int | None = None) -> Run:
    """Continue a run from its last checkpoint, to ``steps`` (default: the run's own target).

    Only operational keys may change on resume (``steps``, ``device``, ``data_root``, ``log_every``,
    ``checkpoint_every``); the result is bit-identical to an uninterrupted run on the same machine.
    A run trained on your own data needs the same ``data`` again.
    """
    path = ckpt.check_run_dir(Path(path))
    info, config = read_run_info(path)
    changes = dict(overrides or {})
    if steps is not None:
        changes["steps"] = steps
    fixed = sorted(set(changes) - set(RESUMABLE_KEYS))
    if fixed:
        raise ConfigError(f"cannot change {', '.join(fixed)} when resuming (the run would no longer be one run); "
                          f"resumable keys: {', '.join(RESUMABLE_KEYS)}")
    config = config.replace(**changes)
    if config.dataset == "custom":
        if data is None:
            raise ConfigError(f"the run in {path} was trained on your own data; pass the same images: resume(path, data=...)")
        data = as_image_data(data)
    else:
        data = load(config.dataset, "train", config.data_root)
    if list(data.image_shape) != list(info["image_shape"]):
        raise CheckpointError(f"the run in {path} was trained on {tuple(info['image_shape'])} images but the data are {data.image_shape}")
    dist, device, n_threads = _setup(config, threads)
    try:
        state = ckpt.load_checkpoint(path / ckpt.CHECKPOINT, device)
        if int(state["step"]) >= config.steps:
            raise ConfigError(f"the run in {path} is at step {int(state['step'])}, which reaches steps={config.steps}; "
                              "pass a larger --set steps=N to train longer")
        trainer = Trainer(config, data, device, dist)
        try:
            trainer.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{path / ckpt.CHECKPOINT} does not fit the model in {ckpt.CONFIG} ({str(exc).splitlines()[0][:160]})") from None
        info = {**info, "config": config.to_dict(), "resumed_from_step": int(state["step"])}

        def reopen() -> None:  # the run is unfinished again until it completes
            (path / ckpt.METRICS).unlink(missing_ok=True)
            write_json(path / ckpt.CONFIG, info)

        distributed.on_main(dist, reopen)
        return _train(trainer, config, path, info, progress and dist.is_main, n_threads, len(data))
    finally:
        distributed.teardown(dist)


def _train(trainer: Trainer, config: Config, out_dir: Path | None, info: dict[str, Any], progress: bool, threads: int, n_images: int) -> Run:
    from tqdm import tqdm  # plain text on stderr: a notebook kernel gets no widget (and no TqdmWarning)

    device, dist = trainer.device, trainer.dist
    if progress:
        where = f"{device.type} ({threads} threads)" if device.type == "cpu" else str(device)
        scale = f", {dist.world_size} processes of {config.batch_size // dist.world_size}" if dist.enabled else ""
        print(f"vmivae: training on {where}: {info['dataset']} ({n_images} images), steps {trainer.step}->{config.steps}, "
              f"batch {config.batch_size}{scale}, {config.step_mode} step", file=sys.stderr)
    bar = tqdm(total=config.steps, initial=trainer.step, unit="step", disable=not progress, mininterval=1.0, file=sys.stderr)
    last_checkpoint = {"step": trainer.step or None}  # a resumed run starts from a checkpoint

    def on_flush(rows: np.ndarray) -> None:
        bar.update(len(rows))
        last = dict(zip(HISTORY_COLUMNS, rows[-1]))
        bar.set_postfix(loss=f"{last['loss']:.4f}", recon=f"{last['recon']:.4f}", ce=f"{last['q_loss']:.3f}", tau=f"{last['tau']:.2f}", refresh=False)

    def save() -> None:
        trainer.check_finite_weights()
        state = trainer.state_dict()  # collective under distribution: every process calls it
        if out_dir is not None and dist.is_main:
            ckpt.save_checkpoint(out_dir / ckpt.CHECKPOINT, {**state, "meta": info})
            history_frame(trainer.history_rows()).to_csv(out_dir / ckpt.HISTORY, index=False)
        last_checkpoint["step"] = trainer.step

    def where_saved() -> str:
        if out_dir is None or last_checkpoint["step"] is None:
            return "no checkpoint was written" + (" (fit was given no out=)" if out_dir is None else "")
        return f"the last good checkpoint is {out_dir / ckpt.CHECKPOINT} (step {last_checkpoint['step']})"

    try:
        with stop_on_signals(trainer, progress or dist.is_main):
            trainer.train(config.steps, on_flush, save)
    except TrainingInterrupted as stop:
        bar.close()
        save()
        raise TrainingInterrupted(stop.step, stop.signum, out_dir) from None
    except TrainingError as exc:
        bar.close()
        raise TrainingError(f"{exc}; {where_saved()}; lower lr or set grad_clip, then retrain or resume") from None
    finally:
        bar.close()
    save()
    images = (config.steps - int(info.get("resumed_from_step", 0))) * config.batch_size
    metrics = {
        "steps": trainer.step,
        "seconds": round(trainer.seconds, 3),
        "images_per_second": round(config.steps * config.batch_size / max(trainer.seconds, 1e-9), 1),
        "final": final_metrics(trainer.history_rows()),
        "final_window": min(FINAL_WINDOW, trainer.step),
        "device": str(device),
        "threads": threads,
        "processes": dist.world_size,
        "config_hash": config.hash(),
    }
    if out_dir is not None and dist.is_main:
        write_json(out_dir / ckpt.METRICS, metrics)
    if progress:
        print(f"vmivae: {trainer.step} steps in {trainer.seconds:.1f} s, {metrics['images_per_second']:.0f} images/s "
              f"({images} images this session)", file=sys.stderr)
    trainer.vae.eval()
    if trainer.q is not None:
        trainer.q.eval()
    return Run(config, trainer.vae, trainer.q, history_frame(trainer.history_rows()), metrics, out_dir, info)
