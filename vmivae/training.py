"""Training: ``fit(config)`` for notebooks, the CLI and your own data; ``resume(run_dir)`` to continue.

The loop is deliberately dull: data live on the device as one tensor, batches are drawn by a seeded
permutation, one :class:`~vmivae.steps.Stepper` call updates both networks, and the host reads the
per-step losses only every ``log_every`` steps (one sync), when it also checks them for NaN/inf,
updates the progress bar and extends the history.

Runs survive interruption: checkpoints (weights, optimiser states, sampler and RNG states, history)
are written atomically every ``checkpoint_every`` steps; SIGINT/SIGTERM finish the current step,
write a checkpoint and stop (a second Ctrl-C aborts at once); ``resume`` continues bit-identically.

Nothing is written before everything that can be checked has been: ``fit`` and ``resume`` check the
config, the data (image shape, batch versus dataset size), the device and the run folder
(:class:`vmivae.runs.folder.RunFolder`) and build the networks; only then do they lock the folder, and
``resume`` reads the checkpoint under the lock (so nobody changes it meanwhile) and checks it against
``config.json``. Files are written from the first checkpoint on (:class:`vmivae.runs.rundir.RunWriter`),
so a failure before it leaves the folder as it was.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np
import torch

from .config import Config
from .datasets import as_image_data, load
from .errors import CheckpointError, ConfigError, DataError, RunInUseError, TrainingError, TrainingInterrupted, resume_command
from .perf import distributed
from .perf.device import resolve_device, use_all_cores
from .runs.folder import RunFolder
from .runs.preflight import RESUMABLE_KEYS, as_path, build_trainer, check_args, check_checkpoint, check_data, fingerprint, out_of_memory, run_meta
from .runs.run import HISTORY_COLUMNS, Run, history_frame
from .runs.rundir import RunWriter
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
    if not threads and dist.enabled and device.type == "cpu":  # share the cores among this machine's processes
        threads = max(1, use_all_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", dist.world_size)))
    if threads:
        torch.set_num_threads(threads)
    n_threads = (threads or use_all_cores()) if device.type == "cpu" else torch.get_num_threads()
    return dist, device, n_threads


def _claim(lock, dist: distributed.DistInfo, inspect) -> Any:
    """Take ``lock`` on the main process and run ``inspect()`` under it; its result (or error) on every process."""
    box: list[Any] = [None]

    def action() -> None:
        lock.acquire()
        box[0] = inspect()

    distributed.on_main(dist, action)
    return box[0]


def _writer(folder: RunFolder, info: dict[str, Any], dist: distributed.DistInfo, **session: Any) -> RunWriter | None:
    """The writer of ``folder`` on the main process (None elsewhere), after clearing what killed processes left there."""
    if not dist.is_main:
        return None
    folder.remove_stale_temps()
    return RunWriter(folder, info, **session)


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
    folder = RunFolder(out_dir) if out_dir is not None else None
    check_args(threads, meta)
    if folder is not None:
        folder.check_new_run(bool(overwrite))  # before the data load: an obvious mistake fails fast
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
        lock = folder.lock("vmivae train", create=True) if folder is not None else None
        try:
            trainer = build_trainer(config, data, device, dist)
            writer = None
            if folder is not None:
                replaces = _claim(lock, dist, lambda: folder.check_new_run(bool(overwrite), locked=True))
                writer = _writer(folder, info, dist, replaces=replaces)
            return _train(trainer, config, folder, writer, info, progress and dist.is_main, n_threads, len(data), detail)
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
    folder = RunFolder.existing(as_path(path, "the run directory"))
    path = folder.path
    check_args(threads)
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"overrides must be a dict of config keys, got {type(overrides).__name__}")
    before, config = folder.read_config()
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
        lock = folder.lock("vmivae train --resume")
        try:
            trainer = build_trainer(config, data, device, dist)
            claimed = _claim(lock, dist, lambda: _inspect(folder, before))  # (state, finished) on the main process
            finished = bool(distributed.from_main(claimed[1] if claimed else None, dist))
            state = claimed[0] if claimed else folder.load_checkpoint()
            step = int(state["step"])
            if step > config.steps or (step == config.steps and finished):
                raise ConfigError(f"the run in {path} is at step {step}, which reaches steps={config.steps}; "
                                  "pass a larger --set steps=N to train longer")
            try:
                trainer.load_state_dict(state)
            except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
                raise CheckpointError(f"{folder.checkpoint} does not fit the model in {folder.config.name} "
                                      f"({str(exc).splitlines()[0][:160]})") from None
            info = {**before, "config": config.to_dict(), "config_hash": config.hash(), "resumed_from_step": step}
            writer = _writer(folder, info, dist, step=step, finished=finished)
            return _train(trainer, config, folder, writer, info, progress and dist.is_main, n_threads, len(data), detail, keep_finished=finished)
        finally:
            lock.release()
            distributed.teardown(dist)


def _inspect(folder: RunFolder, before: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Under the resume's lock: the run as it was read, its checkpoint (to the CPU: RNG states must stay there), finished or not."""
    info, _ = folder.read_config()
    if info != before:
        raise RunInUseError(f"the run in {folder.path} changed while this resume was starting; try again")
    state = folder.load_checkpoint()
    check_checkpoint(folder, state, info)
    return state, folder.finished


def _train(trainer: Trainer, config: Config, folder: RunFolder | None, writer: RunWriter | None, info: dict[str, Any], progress: bool,
           threads: int, n_images: int, detail: dict[str, str], keep_finished: bool = False) -> Run:
    """The training loop: step, log, checkpoint, stop; then the metrics. ``writer`` writes ``folder`` (on the main
    process only); ``keep_finished``: a stop before this session's first checkpoint keeps the finished run as it was."""
    from tqdm import tqdm  # plain text on stderr: a notebook kernel gets no widget (and no TqdmWarning)

    out_dir = folder.path if folder is not None else None
    if progress:
        print(_start_line(trainer, config, info, threads, n_images), file=sys.stderr)
    bar = tqdm(total=config.steps, initial=trainer.step, unit="step", disable=not progress, mininterval=1.0, file=sys.stderr)
    first_step, checkpoints = trainer.step, 0
    try:
        with stop_on_signals(trainer, progress or trainer.dist.is_main):  # also while the stop's checkpoint is written
            while trainer.step < config.steps:
                rows, stop = trainer.advance(config.steps)  # to the next log line, checkpoint step or requested stop
                _log(bar, rows)
                if stop is not None:
                    bar.close()
                    if keep_finished and checkpoints == 0:  # nothing of this session is kept: the finished run stands
                        raise TrainingInterrupted(trainer.step, stop, out_dir, detail=(
                            f"this session reached no checkpoint, so nothing of it was kept and the finished run in {out_dir} is "
                            f"unchanged (step {first_step})"))
                    _checkpoint(trainer, folder, writer, info)
                    raise TrainingInterrupted(trainer.step, stop, out_dir)
                if trainer.step % config.checkpoint_every == 0 and trainer.step < config.steps:
                    _checkpoint(trainer, folder, writer, info)
                    checkpoints += 1
        detail.update(step=trainer.step, text=f"the run was not finished; {resume_command(out_dir)} finishes it" if out_dir is not None
                      else "nothing was saved (fit was given no out=)")
        _checkpoint(trainer, folder, writer, info)
    except TrainingError as exc:
        raise TrainingError(f"{exc}; {_where_saved(folder, writer)}; lower lr or set grad_clip, then retrain or resume") from None
    except (RuntimeError, MemoryError) as exc:
        if not (isinstance(exc, MemoryError) or out_of_memory(exc)):
            raise
        raise TrainingError(f"ran out of {trainer.device.type} memory at step {trainer.step}; {_where_saved(folder, writer)}; "
                            "lower batch_size, then retrain or resume") from None
    finally:
        bar.close()
    metrics = _metrics(trainer, config, threads)
    if folder is not None:
        distributed.on_main(trainer.dist, lambda: writer.finish(metrics))  # metrics.json last: the run is finished
    if progress:
        print(f"vmivae: {trainer.step} steps in {trainer.seconds:.1f} s, {metrics['images_per_second']:.0f} images/s "
              f"({(config.steps - first_step) * config.batch_size} images this session)", file=sys.stderr)
    trainer.vae.eval()
    if trainer.q is not None:
        trainer.q.eval()
    return Run(config, trainer.vae, trainer.q, history_frame(trainer.history_rows()), metrics, out_dir, info)


# ---------------------------------------------------------------------------- what the loop calls


def _start_line(trainer: Trainer, config: Config, info: dict[str, Any], threads: int, n_images: int) -> str:
    device, dist = trainer.device, trainer.dist
    where = f"{device.type} ({threads} threads)" if device.type == "cpu" else str(device)
    scale = f", {dist.world_size} processes of {config.batch_size // dist.world_size}" if dist.enabled else ""
    return (f"vmivae: training on {where}: {info['dataset']} ({n_images} images), steps {trainer.step}->{config.steps}, "
            f"batch {config.batch_size}{scale}, {config.step_mode} step{' (one CUDA graph)' if trainer.capture != 'none' else ''}")


def _log(bar, rows: np.ndarray) -> None:
    """The progress bar after a history flush: the steps done and the last step's losses."""
    bar.update(len(rows))
    last = dict(zip(HISTORY_COLUMNS, rows[-1]))
    bar.set_postfix(loss=f"{last['loss']:.4f}", recon=f"{last['recon']:.4f}", ce=f"{last['q_loss']:.3f}", tau=f"{last['tau']:.2f}", refresh=False)


def _checkpoint(trainer: Trainer, folder: RunFolder | None, writer: RunWriter | None, info: dict[str, Any]) -> None:
    """Check the weights, then write a checkpoint: the state is gathered on every process, written on the main one."""
    trainer.check_finite_weights()
    state = trainer.state_dict()  # collective under distribution: every process calls it
    if folder is not None:
        distributed.on_main(trainer.dist, lambda: writer.checkpoint(
            {**state, "meta": info}, history_frame(trainer.history_rows()).to_csv(index=False).encode(), trainer.step))


def _where_saved(folder: RunFolder | None, writer: RunWriter | None) -> str:
    if folder is None:
        return "no checkpoint was written (fit was given no out=)"
    return writer.where() if writer is not None else f"see {folder.path}"


def _metrics(trainer: Trainer, config: Config, threads: int) -> dict[str, Any]:
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
