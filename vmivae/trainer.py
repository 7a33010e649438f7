"""The state of one training run: networks, optimisers, batch sampler, step counter and history.

:class:`Trainer` builds everything a run needs from its config and the data, runs the inner loop of
steps, and captures all of it in ``state_dict`` so that a resumed run continues bit-identically. The
outer story (where files go, progress, checkpoints, interruption) is in ``vmivae.training``.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import numpy as np
import torch

from .batches import BatchSampler, cpu_bytes
from .config import Config
from .datasets import ImageData
from .errors import CheckpointError, TrainingError, TrainingInterrupted
from .latents import temperature_at
from .perf import distributed
from .perf.device import resolve_amp, resolve_capture
from .perf.fast_layers import use_matmul_layers
from .perf.graphed import make_step
from .runs.run import HISTORY_COLUMNS
from .steps import METRICS, Objective, Stepper, build_networks

CODE_USED_FRACTION = 0.01  # a category counts as used when it is the argmax of at least this share of images


def objective_of(config: Config) -> Objective:
    return Objective(config.components, config.mi_source, config.lambda_cat, config.lambda_cont, recon_loss=config.recon_loss,
                     entropy_weight=config.entropy_weight, **config.kl_levers)


class Trainer:
    """Networks, optimisers, sampler and step counter of one run; ``state_dict`` captures all of it."""

    def __init__(self, config: Config, data: ImageData, device: torch.device, dist: distributed.DistInfo | None = None):
        dist = dist or distributed.DistInfo()
        self.config, self.device, self.dist = config, device, dist
        # the one place a config's capture is resolved: an explicit cuda-graph off CUDA fails here, before any write
        self.capture = resolve_capture(config.capture, device, dist.world_size)  # "none" or "cuda-graph" (vmivae.perf.graphed)
        torch.manual_seed(config.seed)  # the same initial weights in every process
        self.vae, self.q = build_networks(data.image_shape, config)
        if config.matmul_layers:
            use_matmul_layers(self.vae, self.q)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        for module in (self.vae, self.q):
            if module is not None:
                module.to(device, memory_format=memory_format)
        if dist.enabled:  # each process draws its own sampling noise
            torch.manual_seed((config.seed * 1000 + dist.rank + 1) % 2**64)
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
        stepper = Stepper(vae_run, q_run, vae_params, q_params, objective_of(config), self.vae_opt, self.q_opt,
                          config.step_mode, config.grad_clip, self.amp_dtype)
        self.stepper, self._plain_stepper = make_step(stepper, self.capture, device), stepper
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
    def advance(self, until: int) -> tuple[np.ndarray, int | None]:
        """Train up to the next history flush: ``log_every`` steps, a checkpoint step (a multiple of
        ``checkpoint_every``), ``until``, or a requested stop, whichever comes first. Returns the flushed
        rows ``[steps, len(HISTORY_COLUMNS)]`` and the signal that asked to stop (on any process), or None."""
        c = self.config
        self.vae.train()
        if self.q is not None:
            self.q.train()
        rows = max(1, min(c.log_every, c.checkpoint_every, until - self.step))  # the most steps between two flushes
        buffer = torch.zeros(rows, len(METRICS) + (c.categorical or 0), device=self.device)
        taus: list[float] = []
        start = time.perf_counter()
        while True:
            tau = self.tau_at(self.step)
            if tau != self._tau_value:  # the device scalar changes only when the schedule does
                self._tau_value = tau
                self._tau.fill_(tau)
            x = self.images[self.sampler.next()]
            buffer[len(taus)] = self.stepper(x, self._tau)
            taus.append(tau)
            self.step += 1
            stop = distributed.any_true(self.stop_signal is not None, self.dist, self.device)
            if len(taus) == c.log_every or self.step % c.checkpoint_every == 0 or self.step == until or stop:
                rows = self._flush(buffer[: len(taus)], taus)
                self.seconds += time.perf_counter() - start
                return rows, (self.stop_signal or signal.SIGINT) if stop else None

    def train(self, until: int) -> None:
        """Train until ``self.step == until`` (no files, no progress: what benchmarks and tests call).
        Raises :class:`TrainingInterrupted` after the current step when a stop was requested."""
        while self.step < until:
            _, stop = self.advance(until)
            if stop is not None:
                raise TrainingInterrupted(self.step, stop)

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
        distributed.average_batchnorm_statistics((self.vae, self.q), self.dist)
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
        torch.set_rng_state(cpu_bytes(rng["torch"]))  # a loader may have put it on the GPU: RNG states are CPU bytes
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(cpu_bytes(rng["cuda"]), self.device)
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self._plain_stepper.set_step(self.step)  # a capacity schedule continues where it was
        self.history = [state["history"].cpu().numpy()]

    def check_finite_weights(self) -> None:
        for module in (self.vae, self.q):
            for name, tensor in (module.state_dict().items() if module is not None else ()):
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    raise TrainingError(f"weight {name} became non-finite at step {self.step}")
