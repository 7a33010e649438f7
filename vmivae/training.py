"""Training: ``fit(config)`` for notebooks, the CLI and your own data; ``resume(run_dir)`` to continue.

The loop is deliberately dull: data live on the device as one tensor, batches are drawn by a seeded
permutation, one :class:`~vmivae.steps.Stepper` call updates both networks, and the host reads the
per-step losses only every ``log_every`` steps (one sync), when it also checks them for NaN/inf,
updates the progress bar and extends the history.

Runs survive interruption: checkpoints (weights, optimiser states, sampler and RNG states, history)
are written atomically every ``checkpoint_every`` steps; SIGINT/SIGTERM finish the current step,
write a checkpoint and stop (a second Ctrl-C aborts at once); ``resume`` continues bit-identically.
A stop before the first checkpoint of a session that would replace a run (``overwrite``, or resuming a finished
run) writes nothing: the run that was there stays as it was.

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

from .config import Config
from .datasets import as_image_data, load
from .errors import CheckpointError, ConfigError, DataError, RunInUseError, TrainingError, TrainingInterrupted, resume_command
from .perf import distributed
from .runs.folder import RunFolder
from .runs.preflight import as_path, build_trainer, check_args, check_checkpoint, check_data, fingerprint, out_of_memory, run_meta
from .runs.run import Run, history_frame
from .runs.rundir import RunWriter
from .runs.session import claim, run_metrics, setup, show_progress, start_line, where_saved, writer_of
from .runs.signals import interrupt_outside_loop, stop_on_signals
from .runs.stored import RESUMABLE_KEYS
from .trainer import Trainer


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
        dist, device, n_threads = setup(config, threads)
        lock = folder.lock("vmivae train", create=True) if folder is not None else None
        try:
            trainer = build_trainer(config, data, device, dist)
            writer = None
            if folder is not None:
                replaces = claim(lock, dist, lambda: folder.check_new_run(bool(overwrite), locked=True))
                writer = writer_of(folder, info, dist, replaces=replaces)
            keep = distributed.from_main(writer.kept_on_stop() if writer is not None else None, dist) if folder is not None else None
            return _train(trainer, config, folder, writer, info, progress and dist.is_main, n_threads, len(data), detail, keep)
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
        given = "the images given are" if config.dataset == "custom" else f"{config.dataset} holds"
        raise CheckpointError(f"{folder.config} says the run was trained on {tuple(before['image_shape'])} images but {given} "
                              f"{tuple(data.image_shape)} images; pass the images it was trained on, or restore {folder.config.name} from a copy")
    check_data(config, data)
    detail = {"text": f"the run in {path} is unchanged; resume with the same command to continue it"}
    with interrupt_outside_loop(detail):
        dist, device, n_threads = setup(config, threads)
        lock = folder.lock("vmivae train --resume")
        try:
            trainer = build_trainer(config, data, device, dist)
            claimed = claim(lock, dist, lambda: _inspect(folder, before))  # (state, finished) on the main process
            finished = bool(distributed.from_main(claimed[1] if claimed else None, dist))
            state = claimed[0] if claimed else folder.load_checkpoint()
            step = state["step"]  # a whole number: the checkpoint was checked where it was read
            if step > config.steps or (step == config.steps and finished):
                raise ConfigError(f"the run in {path} is at step {step}, which reaches steps={config.steps}; "
                                  "pass a larger --set steps=N to train longer")
            try:
                trainer.load_state_dict(state)
            except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
                raise CheckpointError(f"{folder.checkpoint} does not fit the model in {folder.config.name} "
                                      f"({str(exc).splitlines()[0][:160]})") from None
            info = {**before, "config": config.to_dict(), "config_hash": config.hash(), "resumed_from_step": step}
            writer = writer_of(folder, info, dist, step=step, finished=finished)
            keep = distributed.from_main(writer.kept_on_stop() if writer is not None else None, dist)
            return _train(trainer, config, folder, writer, info, progress and dist.is_main, n_threads, len(data), detail, keep)
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
           threads: int, n_images: int, detail: dict[str, str], keep: str | None = None) -> Run:
    """The training loop: step, log, checkpoint, stop; then the metrics. ``writer`` writes ``folder`` (on the main
    process only); ``keep``: a stop before this session's first checkpoint writes nothing, and this says what stands."""
    from tqdm import tqdm  # plain text on stderr: a notebook kernel gets no widget (and no TqdmWarning)

    out_dir = folder.path if folder is not None else None
    if progress:
        print(start_line(trainer, config, info, threads, n_images), file=sys.stderr)
    bar = tqdm(total=config.steps, initial=trainer.step, unit="step", disable=not progress, mininterval=1.0, file=sys.stderr)
    first_step, checkpoints = trainer.step, 0
    try:
        with stop_on_signals(trainer, progress or trainer.dist.is_main):  # also while the stop's checkpoint is written
            while trainer.step < config.steps:
                rows, stop = trainer.advance(config.steps)  # to the next log line, checkpoint step or requested stop
                show_progress(bar, rows)
                if stop is not None:
                    bar.close()
                    if keep and checkpoints == 0:  # nothing of this session is kept: the run it would replace stands
                        raise TrainingInterrupted(trainer.step, stop, out_dir, detail=keep)
                    _checkpoint(trainer, folder, writer, info)
                    raise TrainingInterrupted(trainer.step, stop, out_dir)
                if trainer.step % config.checkpoint_every == 0 and trainer.step < config.steps:
                    _checkpoint(trainer, folder, writer, info)
                    checkpoints += 1
        detail.update(step=trainer.step, text=f"the run was not finished; {resume_command(out_dir)} finishes it" if out_dir is not None
                      else "nothing was saved (fit was given no out=)")
        _checkpoint(trainer, folder, writer, info)
    except TrainingError as exc:
        raise TrainingError(f"{exc}; {where_saved(folder, writer)}; lower lr or set grad_clip, then retrain or resume") from None
    except (RuntimeError, MemoryError) as exc:
        if not (isinstance(exc, MemoryError) or out_of_memory(exc)):
            raise
        raise TrainingError(f"ran out of {trainer.device.type} memory at step {trainer.step}; {where_saved(folder, writer)}; "
                            "lower batch_size, then retrain or resume") from None
    finally:
        bar.close()
    metrics = run_metrics(trainer, config, threads)
    if folder is not None:
        distributed.on_main(trainer.dist, lambda: writer.finish(metrics))  # metrics.json last: the run is finished
    if progress:
        print(f"vmivae: {trainer.step} steps in {trainer.seconds:.1f} s, {metrics['images_per_second']:.0f} images/s "
              f"({(config.steps - first_step) * config.batch_size} images this session)", file=sys.stderr)
    trainer.vae.eval()
    if trainer.q is not None:
        trainer.q.eval()
    return Run(config, trainer.vae, trainer.q, history_frame(trainer.history_rows()), metrics, out_dir, info)


def _checkpoint(trainer: Trainer, folder: RunFolder | None, writer: RunWriter | None, info: dict[str, Any]) -> None:
    """Check the weights, then write a checkpoint: the state is gathered on every process, written on the main one."""
    trainer.check_finite_weights()
    state = trainer.state_dict()  # collective under distribution: every process calls it
    if folder is not None:
        distributed.on_main(trainer.dist, lambda: writer.checkpoint(
            {**state, "meta": info}, history_frame(trainer.history_rows()).to_csv(index=False).encode(), trainer.step))


