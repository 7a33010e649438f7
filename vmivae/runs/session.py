"""The plumbing around the training loop of ``vmivae.training``: processes and threads, the folder's lock and writer,
what the terminal shows, and ``metrics.json``."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..perf import distributed
from ..perf.device import resolve_device, use_all_cores
from ..trainer import Trainer
from .folder import RunFolder
from .run import HISTORY_COLUMNS, history_frame
from .rundir import RunWriter

FINAL_WINDOW = 100  # metrics.json "final": mean over the last this-many steps


def final_metrics(rows: np.ndarray, window: int = FINAL_WINDOW) -> dict[str, float]:
    """Mean of the last ``window`` steps: reconstruction MSE and loss term, total KL, Q's cross-entropy."""
    tail = history_frame(rows).tail(window)
    return {"recon_mse": float(tail["recon_mse"].mean()), "recon": float(tail["recon"].mean()),
            "kl": float((tail["kl_cont"] + tail["kl_cat"]).mean()), "mi_ce": float(tail["q_loss"].mean())}


def setup(config: Config, threads: int | None) -> tuple[distributed.DistInfo, torch.device, int]:
    device = resolve_device(config.device)
    dist, device = distributed.setup(device)
    if not threads and dist.enabled and device.type == "cpu":  # share the cores among this machine's processes
        threads = max(1, use_all_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", dist.world_size)))
    if threads:
        torch.set_num_threads(threads)
    n_threads = (threads or use_all_cores()) if device.type == "cpu" else torch.get_num_threads()
    return dist, device, n_threads


def claim(lock, dist: distributed.DistInfo, inspect) -> Any:
    """Take ``lock`` on the main process and run ``inspect()`` under it; its result (or error) on every process."""
    box: list[Any] = [None]

    def action() -> None:
        lock.acquire()
        box[0] = inspect()

    distributed.on_main(dist, action)
    return box[0]


def writer_of(folder: RunFolder, info: dict[str, Any], dist: distributed.DistInfo, **session: Any) -> RunWriter | None:
    """The writer of ``folder`` on the main process (None elsewhere), after clearing what killed processes left there."""
    if not dist.is_main:
        return None
    folder.remove_stale_temps()
    return RunWriter(folder, info, **session)



def start_line(trainer: Trainer, config: Config, info: dict[str, Any], threads: int, n_images: int) -> str:
    device, dist = trainer.device, trainer.dist
    where = f"{device.type} ({threads} threads)" if device.type == "cpu" else str(device)
    scale = f", {dist.world_size} processes of {config.batch_size // dist.world_size}" if dist.enabled else ""
    return (f"vmivae: training on {where}: {info['dataset']} ({n_images} images), steps {trainer.step}->{config.steps}, "
            f"batch {config.batch_size}{scale}, {config.step_mode} step{' (one CUDA graph)' if trainer.capture != 'none' else ''}")


def show_progress(bar, rows: np.ndarray) -> None:
    """The progress bar after a history flush: the steps done and the last step's losses."""
    bar.update(len(rows))
    last = dict(zip(HISTORY_COLUMNS, rows[-1]))
    bar.set_postfix(loss=f"{last['loss']:.4f}", recon=f"{last['recon']:.4f}", ce=f"{last['q_loss']:.3f}", tau=f"{last['tau']:.2f}", refresh=False)


def where_saved(folder: RunFolder | None, writer: RunWriter | None) -> str:
    if folder is None:
        return "no checkpoint was written (fit was given no out=)"
    return writer.where() if writer is not None else f"see {folder.path}"


def run_metrics(trainer: Trainer, config: Config, threads: int) -> dict[str, Any]:
    """``metrics.json``: how long, how fast, where, and the final losses (mean of the last :data:`FINAL_WINDOW` steps)."""
    return {
        "steps": trainer.step,
        "seconds": round(trainer.seconds, 3),
        "images_per_second": round(config.steps * config.batch_size / max(trainer.seconds, 1e-9), 1),
        "final": final_metrics(trainer.history_rows()),
        "final_window": min(FINAL_WINDOW, trainer.step),
        "device": str(trainer.device),
        "threads": threads,
        "processes": trainer.dist.world_size,
        "capture": trainer.capture,
        "config_hash": config.hash(),
    }
