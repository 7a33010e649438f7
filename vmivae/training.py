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

import contextlib
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoint as ckpt
from . import distributed
from .batches import BatchSampler
from .config import Config
from .datasets import ImageData, as_image_data, load
from .device import resolve_amp, resolve_device, use_all_cores
from .errors import CheckpointError, ConfigError, TrainingError, TrainingInterrupted
from .files import write_json
from .latents import temperature_at
from .run import HISTORY_COLUMNS, Run, history_frame, read_run_info
from .steps import METRICS, Objective, Stepper, build_networks

CODE_USED_FRACTION = 0.01  # a category counts as used when it is the argmax of at least this share of images
FINAL_WINDOW = 100  # metrics.json "final": mean over the last this-many steps
RESUMABLE_KEYS = ("steps", "device", "data_root", "log_every", "checkpoint_every")  # may change on resume


def objective_of(config: Config) -> Objective:
    return Objective(config.components, config.mi_source, config.lambda_cat, config.lambda_cont, config.kl_weight, config.recon_loss,
                     config.entropy_weight)


class Trainer:
    """Networks, optimisers, sampler and step counter of one run; ``state_dict`` captures all of it."""

    def __init__(self, config: Config, data: ImageData, device: torch.device, dist: distributed.DistInfo | None = None):
        dist = dist or distributed.DistInfo()
        self.config, self.device, self.dist = config, device, dist
        torch.manual_seed(config.seed)  # the same initial weights in every process
        self.vae, self.q = build_networks(data.image_shape, config)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        for module in (self.vae, self.q):
            if module is not None:
                module.to(device, memory_format=memory_format)
        if dist.enabled:  # each process draws its own sampling noise
            torch.manual_seed(config.seed * 1000 + dist.rank + 1)
        self.images = data.images.to(device).contiguous(memory_format=memory_format)
        self.sampler = BatchSampler(len(data), config.batch_size, config.seed, device, dist.rank, dist.world_size)
        vae_params = list(self.vae.parameters())
        q_params = list(self.q.parameters()) if self.q is not None else []
        # fused=True: one kernel per parameter instead of a chain of temporaries (the same update rule)
        adam = {"fused": True} if config.fused_adam else {}
        self.vae_opt = torch.optim.Adam(vae_params, lr=config.lr, **adam)
        self.q_opt = torch.optim.Adam(q_params, lr=config.q_lr, **adam) if q_params else None
        vae_run, q_run = self._wrap(self.vae), (self._wrap(self.q) if self.q is not None else None)
        self.amp_dtype = resolve_amp(config.amp, device)
        self.stepper = Stepper(vae_run, q_run, vae_params, q_params, objective_of(config), self.vae_opt, self.q_opt,
                               config.step_mode, config.grad_clip, self.amp_dtype)
        self.step = 0
        self.seconds = 0.0
        self.history: list[np.ndarray] = []  # flushed blocks of [rows, len(HISTORY_COLUMNS)]
        self.stop_signal: int | None = None  # set by a signal handler: stop after the current step
        self._tau_value = temperature_at(0, config.tau0, config.tau_min, config.tau_rate, config.tau_interval)
        self._tau = torch.tensor(self._tau_value, device=device)

    def _wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        module = distributed.wrap(module, self.dist, self.device)
        return torch.compile(module) if self.config.compile else module

    def tau_at(self, step: int) -> float:
        c = self.config
        return temperature_at(step, c.tau0, c.tau_min, c.tau_rate, c.tau_interval)

    # ------------------------------------------------------------------ the loop
    def train(self, until: int, on_flush=None, on_checkpoint=None) -> None:
        """Train until ``self.step == until``; ``on_flush(rows)`` after each history flush,
        ``on_checkpoint()`` every ``checkpoint_every`` steps. Raises :class:`TrainingInterrupted`
        after the current step when a stop was requested (the history is flushed first)."""
        c = self.config
        self.vae.train()
        if self.q is not None:
            self.q.train()
        buffer = torch.zeros(c.log_every, len(METRICS) + (c.categorical or 0), device=self.device)
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
            stop = distributed.any_true(self.stop_signal is not None, self.dist, self.device)
            checkpoint_due = self.step % c.checkpoint_every == 0
            if len(taus) == c.log_every or checkpoint_due or self.step == until or stop:
                rows = self._flush(buffer[: len(taus)], taus)
                taus = []
                self.seconds += time.perf_counter() - start
                if on_flush:
                    on_flush(rows)
                if stop:
                    raise TrainingInterrupted(self.step, self.stop_signal or signal.SIGINT)
                if checkpoint_due and on_checkpoint and self.step < until:
                    on_checkpoint()
                start = time.perf_counter()

    def _flush(self, block: torch.Tensor, taus: list[float]) -> np.ndarray:
        block = distributed.mean_(block.clone(), self.dist).double().cpu().numpy()  # the one host sync of a log interval
        values, counts = block[:, : len(METRICS)], block[:, len(METRICS) :].sum(axis=0)
        # categories that were the most probable one for >= 1% of this interval's training images
        codes_used = float((counts >= CODE_USED_FRACTION * counts.sum()).sum()) if counts.size else float("nan")
        steps = np.arange(self.step - len(taus) + 1, self.step + 1)
        finite = np.isfinite(values).all(axis=1)
        if not finite.all():
            first = int(np.argmin(finite))
            name = METRICS[int(np.argmin(np.isfinite(values[first])))]
            raise TrainingError(f"'{name}' became non-finite (nan or inf) at step {int(steps[first])}")
        rows = np.column_stack([steps, values, taus, np.full(len(steps), codes_used)])
        self.history.append(rows)
        return rows

    def history_rows(self) -> np.ndarray:
        return np.concatenate(self.history) if self.history else np.zeros((0, len(HISTORY_COLUMNS)))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically (a collective call under distribution)."""
        self._average_batchnorm_statistics()
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "step": self.step,
            "seconds": self.seconds,
            "vae": self.vae.state_dict(),
            "q": self.q.state_dict() if self.q is not None else {},
            "vae_opt": self.vae_opt.state_dict(),
            "q_opt": self.q_opt.state_dict() if self.q_opt is not None else {},
            "sampler": self.sampler.state_dict(),
            "rng": distributed.gather(rng, self.dist),  # one entry per process
            "history": torch.from_numpy(self.history_rows()),
        }

    def _average_batchnorm_statistics(self) -> None:
        """Under DDP each process keeps BatchNorm running statistics of its own shard; a checkpoint (and the
        returned model) gets their average, so that every process holds the same evaluation model."""
        if not self.dist.enabled:
            return
        for module in (self.vae, self.q):
            for m in (module.modules() if module is not None else ()):
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                    distributed.mean_(m.running_mean, self.dist)
                    distributed.mean_(m.running_var, self.dist)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.vae.load_state_dict(state["vae"])
        if self.q is not None:
            self.q.load_state_dict(state["q"])
            self.q_opt.load_state_dict(state["q_opt"])
        self.vae_opt.load_state_dict(state["vae_opt"])
        self.sampler.load_state_dict(state["sampler"])
        if len(state["rng"]) != self.dist.world_size:
            raise CheckpointError(f"the checkpoint was written by {len(state['rng'])} process(es); resume it with as many, not {self.dist.world_size}")
        rng = state["rng"][self.dist.rank]
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self.history = [state["history"].numpy()]

    def check_finite_weights(self) -> None:
        for module in (self.vae, self.q):
            for name, tensor in (module.state_dict().items() if module is not None else ()):
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    raise TrainingError(f"weight {name} became non-finite at step {self.step}")


# ---------------------------------------------------------------------------- signals


@contextlib.contextmanager
def stop_on_signals(trainer: Trainer, announce: bool):
    """SIGINT/SIGTERM ask the trainer to stop after the current step; a second Ctrl-C aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if trainer.stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.stop_signal = signum
        if announce:
            print(f"\nvmivae: {signal.Signals(signum).name} received: stopping after this step and writing a checkpoint "
                  "(Ctrl-C again aborts at once)", file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------- fit / resume


def final_metrics(rows: np.ndarray, window: int = FINAL_WINDOW) -> dict[str, float]:
    """Mean of the last ``window`` steps: reconstruction MSE and loss term, total KL, Q's cross-entropy."""
    tail = history_frame(rows).tail(window)
    return {"recon_mse": float(tail["recon_mse"].mean()), "recon": float(tail["recon"].mean()),
            "kl": float((tail["kl_cont"] + tail["kl_cat"]).mean()), "mi_ce": float(tail["q_loss"].mean())}


def _meta(config: Config, data: ImageData, extra: dict[str, Any] | None) -> dict[str, Any]:
    from . import __version__

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


def _on_main(dist: distributed.DistInfo, action):
    """Run ``action`` on rank 0; a failure there is raised on every process (nobody waits forever)."""
    error = None
    if dist.is_main:
        try:
            action()
        except Exception as exc:  # re-raised below, on all ranks
            error = exc
    error = distributed.from_main(error, dist) if dist.enabled else error
    if error is not None:
        raise error


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
            _on_main(dist, lambda: (ckpt.prepare_out_dir(out_dir, overwrite), write_json(out_dir / ckpt.CONFIG, info)))
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

        _on_main(dist, reopen)
        return _train(trainer, config, path, info, progress and dist.is_main, n_threads, len(data))
    finally:
        distributed.teardown(dist)


def _train(trainer: Trainer, config: Config, out_dir: Path | None, info: dict[str, Any], progress: bool, threads: int, n_images: int) -> Run:
    from tqdm.auto import tqdm

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
