"""Training: ``fit(config)`` for notebooks, the CLI and your own data; ``resume(run_dir)`` to continue.

The loop is deliberately dull: data live on the device as one tensor, batches are drawn by a seeded
permutation, one :class:`~vmivae.steps.Stepper` call updates both networks, and the host reads the
per-step losses only every ``log_every`` steps (one sync), when it also checks them for NaN/inf,
updates the progress bar and extends the history.

Runs survive interruption: checkpoints (weights, optimiser states, sampler and RNG states, history)
are written atomically every ``checkpoint_every`` steps; SIGINT/SIGTERM finish the current step,
write a checkpoint and stop (a second Ctrl-C aborts at once); ``resume`` continues bit-identically.

Nothing is written before everything that can be checked has been: ``fit`` checks the config, the
data (image shape, batch versus dataset size), the device and the output folder, builds the networks,
and only then locks the folder; ``resume`` locks the run first (so nobody else changes it) and checks
the checkpoint against ``config.json`` and the data. Files are written from the first checkpoint on
(:class:`vmivae.runs.rundir.RunWriter`), so a failure before it leaves the folder as it was.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import Config
from .datasets import as_image_data, load
from .errors import CheckpointError, ConfigError, DataError, RunInUseError, TrainingError, TrainingInterrupted, resume_command
from .perf import distributed
from .perf.device import resolve_capture, resolve_device, use_all_cores
from .runs import checkpoint as ckpt
from .runs.preflight import RESUMABLE_KEYS, as_path, build_trainer, check_args, check_checkpoint, check_data, fingerprint, out_of_memory, run_meta
from .runs.run import HISTORY_COLUMNS, Run, history_frame, read_run_info
from .runs.rundir import RunLock, RunWriter, check_out_dir
from .runs.signals import interrupt_outside_loop, stop_on_signals
from .trainer import Trainer

FINAL_WINDOW = 100  # metrics.json "final": mean over the last this-many steps


def final_metrics(rows: np.ndarray, window: int = FINAL_WINDOW) -> dict[str, float]:
    """Mean of the last ``window`` steps: reconstruction MSE and loss term, total KL, Q's cross-entropy."""
    tail = history_frame(rows).tail(window)
    return {"recon_mse": float(tail["recon_mse"].mean()), "recon": float(tail["recon"].mean()),
            "kl": float((tail["kl_cont"] + tail["kl_cat"]).mean()), "mi_ce": float(tail["q_loss"].mean())}


def _setup(config: Config, threads: int | None) -> tuple[distributed.DistInfo, torch.device, int]:
    device = resolve_device(config.device)
    dist, device = distributed.setup(device)
    resolve_capture(config.capture, device, dist.world_size)  # capture: cuda-graph off CUDA fails here, before any write
    if not threads and dist.enabled and device.type == "cpu":  # share the cores among this machine's processes
        threads = max(1, use_all_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", dist.world_size)))
    if threads:
        torch.set_num_threads(threads)
    n_threads = (threads or use_all_cores()) if device.type == "cpu" else torch.get_num_threads()
    return dist, device, n_threads


def _claim(lock: RunLock, dist: distributed.DistInfo, inspect) -> Any:
    """Take ``lock`` on the main process and run ``inspect()`` under it; its result (or error) on every process."""
    box: list[Any] = [None]

    def action() -> None:
        lock.acquire()
        box[0] = inspect()

    distributed.on_main(dist, action)
    return box[0]


def fit(config: Config, data: Any = None, out: str | os.PathLike | None = None, *, overwrite: bool = False,
        progress: bool = True, meta: dict[str, Any] | None = None, threads: int | None = None) -> Run:
    """Train a VMI-VAE (or, with lambdas 0, the vanilla baseline with Q tracking MI).

    Args:
        config: the run's :class:`Config` (see ``vmivae.make_config``).
        data: None to load ``config.dataset`` (train split), or your own images: a tensor/array
            ``[N, C, H, W]`` in [0, 1] or [-1, 1] (uint8 0..255 too), an :class:`ImageData`, a torch
            ``Dataset``/``DataLoader`` of images or ``(image, label)`` pairs (see ``as_image_data``).
        out: run directory to write (config.json, checkpoint.pt, history.csv, metrics.json), or None.
        overwrite: allow ``out`` to hold a run already (its run files are replaced, nothing else).
        progress: show a progress bar and a start line on stderr.
        meta: extra fields to record in config.json (e.g. the preset and profile names).
        threads: CPU threads to use; default: every core this process may run on.

    Launched by ``torchrun`` with several processes, it trains data-parallel (see ``vmivae.perf.distributed``).
    """
    if not isinstance(config, Config):
        raise ConfigError(f"fit() needs a vmivae.Config, got {type(config).__name__}; build one with vmivae.make_config(...)")
    config = config.replace()  # checks a Config built by hand too
    out_dir = as_path(out, "out")
    check_args(threads, meta)
    if out_dir is not None:
        check_out_dir(out_dir, bool(overwrite))  # before the data load: an obvious mistake fails fast
    if data is None:
        data = load(config.dataset, "train", config.data_root)
    else:
        data = as_image_data(data)
        config = config.replace(dataset="custom") if data.name == "custom" else config
    check_data(config, data)
    info = run_meta(config, data, meta)
    detail = {"text": "nothing was written"}
    with interrupt_outside_loop(detail):
        dist, device, n_threads = _setup(config, threads)
        lock = RunLock(out_dir, "vmivae train", create=True) if out_dir is not None else None
        try:
            trainer = build_trainer(config, data, device, dist)
            writer = None
            if lock is not None:
                replaces = _claim(lock, dist, lambda: check_out_dir(out_dir, bool(overwrite), locked=True))
                writer = RunWriter(out_dir, info, replaces) if dist.is_main else None
                if writer is not None:
                    writer.clean()
            return _train(trainer, config, out_dir, writer, info, progress and dist.is_main, n_threads, len(data), detail)
        finally:
            if lock is not None:
                lock.release()
            distributed.teardown(dist)


def resume(path: str | os.PathLike, steps: int | None = None, *, data: Any = None, progress: bool = True,
           overrides: dict[str, Any] | None = None, threads: int | None = None) -> Run:
    """Continue a run from its last checkpoint, to ``steps`` (default: the run's own target).

    Only operational keys may change on resume (``steps``, ``device``, ``data_root``, ``log_every``,
    ``checkpoint_every``); the result is bit-identical to an uninterrupted run on the same machine.
    A run trained on your own data needs the same ``data`` again. A resume that fails, or is stopped
    before its first checkpoint, leaves the run as it was (a finished run stays finished).
    """
    path = ckpt.check_run_dir(as_path(path, "the run directory"))
    check_args(threads)
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"overrides must be a dict of config keys, got {type(overrides).__name__}")
    before, config = read_run_info(path)
    changes = dict(overrides or {})
    if steps is not None:
        changes["steps"] = steps
    fixed = sorted(map(str, set(changes) - set(RESUMABLE_KEYS)))
    if fixed:
        raise ConfigError(f"cannot change {', '.join(fixed)} when resuming (the run would no longer be one run); "
                          f"resumable keys: {', '.join(RESUMABLE_KEYS)}")
    config = config.replace(**changes)
    if config.dataset == "custom":
        if data is None:
            raise ConfigError(f"the run in {path} was trained on your own data; pass the same images: resume(path, data=...)")
        data = as_image_data(data)
        stored = before.get("data_fingerprint")
        if isinstance(stored, dict) and (stored.get("images"), stored.get("sha256")) != (len(data), fingerprint(data)):
            raise DataError(f"the images given are not those the run in {path} was trained on ({stored.get('images')} images); "
                            "pass the same images in the same order")
    else:
        data = load(config.dataset, "train", config.data_root)
    if list(data.image_shape) != list(before["image_shape"]):
        raise CheckpointError(f"the run in {path} was trained on {tuple(before['image_shape'])} images but the data are {data.image_shape}")
    check_data(config, data)
    detail = {"text": f"the run in {path} is unchanged"}
    with interrupt_outside_loop(detail):
        dist, device, n_threads = _setup(config, threads)
        lock = RunLock(path, "vmivae train --resume")
        try:
            def inspect() -> tuple[dict[str, Any], bool]:
                info, _ = read_run_info(path)
                if info != before:
                    raise RunInUseError(f"the run in {path} changed while this resume was starting; try again")
                state = ckpt.load_checkpoint(path / ckpt.CHECKPOINT)  # to the CPU: RNG states must stay there
                check_checkpoint(path, state, info)
                return state, (path / ckpt.METRICS).is_file()

            claimed = _claim(lock, dist, inspect)  # (state, finished) on the main process
            finished = bool(distributed.from_main(claimed[1] if claimed else None, dist))
            state = claimed[0] if claimed else ckpt.load_checkpoint(path / ckpt.CHECKPOINT)
            step = int(state["step"])
            if step > config.steps or (step == config.steps and finished):
                raise ConfigError(f"the run in {path} is at step {step}, which reaches steps={config.steps}; "
                                  "pass a larger --set steps=N to train longer")
            trainer = build_trainer(config, data, device, dist)
            try:
                trainer.load_state_dict(state)
            except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
                raise CheckpointError(f"{path / ckpt.CHECKPOINT} does not fit the model in {ckpt.CONFIG} ({str(exc).splitlines()[0][:160]})") from None
            info = {**before, "config": config.to_dict(), "config_hash": config.hash(), "resumed_from_step": step}
            writer = RunWriter(path, info, step=step, finished=finished) if dist.is_main else None
            if writer is not None:
                writer.clean()
            return _train(trainer, config, path, writer, info, progress and dist.is_main, n_threads, len(data), detail, keep_finished=finished)
        finally:
            lock.release()
            distributed.teardown(dist)


def _train(trainer: Trainer, config: Config, out_dir: Path | None, writer: RunWriter | None, info: dict[str, Any], progress: bool,
           threads: int, n_images: int, detail: dict[str, str], keep_finished: bool = False) -> Run:
    """The loop with its checkpoints; ``writer`` writes the run folder (on the main process only).
    ``keep_finished``: a stop before this session's first checkpoint keeps the finished run as it was."""
    from tqdm import tqdm  # plain text on stderr: a notebook kernel gets no widget (and no TqdmWarning)

    device, dist = trainer.device, trainer.dist
    if progress:
        where = f"{device.type} ({threads} threads)" if device.type == "cpu" else str(device)
        scale = f", {dist.world_size} processes of {config.batch_size // dist.world_size}" if dist.enabled else ""
        print(f"vmivae: training on {where}: {info['dataset']} ({n_images} images), steps {trainer.step}->{config.steps}, "
              f"batch {config.batch_size}{scale}, {config.step_mode} step{' (one CUDA graph)' if trainer.capture != 'none' else ''}", file=sys.stderr)
    bar = tqdm(total=config.steps, initial=trainer.step, unit="step", disable=not progress, mininterval=1.0, file=sys.stderr)
    first_step, saved = trainer.step, {"any": False}

    def on_flush(rows: np.ndarray) -> None:
        bar.update(len(rows))
        last = dict(zip(HISTORY_COLUMNS, rows[-1]))
        bar.set_postfix(loss=f"{last['loss']:.4f}", recon=f"{last['recon']:.4f}", ce=f"{last['q_loss']:.3f}", tau=f"{last['tau']:.2f}", refresh=False)

    def save() -> None:
        trainer.check_finite_weights()
        state = trainer.state_dict()  # collective under distribution: every process calls it
        if out_dir is not None:
            def write() -> None:
                csv = history_frame(trainer.history_rows()).to_csv(index=False).encode()
                writer.checkpoint({**state, "meta": info}, csv, trainer.step)

            distributed.on_main(dist, write)
        saved["any"] = True

    def where_saved() -> str:
        if out_dir is None:
            return "no checkpoint was written (fit was given no out=)"
        return writer.where() if writer is not None else f"see {out_dir}"

    try:
        with stop_on_signals(trainer, progress or dist.is_main):  # also while the stop's checkpoint is written
            try:
                trainer.train(config.steps, on_flush, save)
            except TrainingInterrupted as stop:
                bar.close()
                if keep_finished and not saved["any"]:
                    raise TrainingInterrupted(stop.step, stop.signum, out_dir, detail=(
                        f"this session reached no checkpoint, so nothing of it was kept and the finished run in {out_dir} is unchanged "
                        f"(step {first_step})")) from None
                save()
                raise TrainingInterrupted(stop.step, stop.signum, out_dir) from None
        detail.update(step=trainer.step, text=f"the run was not finished; {resume_command(out_dir)} finishes it" if out_dir is not None
                      else "nothing was saved (fit was given no out=)")
        save()
    except TrainingError as exc:
        raise TrainingError(f"{exc}; {where_saved()}; lower lr or set grad_clip, then retrain or resume") from None
    except (RuntimeError, MemoryError) as exc:
        if not (isinstance(exc, MemoryError) or out_of_memory(exc)):
            raise
        raise TrainingError(f"ran out of {device.type} memory at step {trainer.step}; {where_saved()}; lower batch_size, then retrain "
                            "or resume") from None
    finally:
        bar.close()
    images = (config.steps - first_step) * config.batch_size
    metrics = {
        "steps": trainer.step,
        "seconds": round(trainer.seconds, 3),
        "images_per_second": round(config.steps * config.batch_size / max(trainer.seconds, 1e-9), 1),
        "final": final_metrics(trainer.history_rows()),
        "final_window": min(FINAL_WINDOW, trainer.step),
        "device": str(device),
        "threads": threads,
        "processes": dist.world_size,
        "capture": trainer.capture,
        "config_hash": config.hash(),
    }
    if out_dir is not None:
        distributed.on_main(dist, lambda: writer.finish(metrics))
    if progress:
        print(f"vmivae: {trainer.step} steps in {trainer.seconds:.1f} s, {metrics['images_per_second']:.0f} images/s "
              f"({images} images this session)", file=sys.stderr)
    trainer.vae.eval()
    if trainer.q is not None:
        trainer.q.eval()
    return Run(config, trainer.vae, trainer.q, history_frame(trainer.history_rows()), metrics, out_dir, info)
