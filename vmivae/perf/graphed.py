"""The training step replayed as one CUDA graph (``capture: cuda-graph``).

On a GPU the step of this small model (0.14 GFLOP per image) is bound by kernel launches and Python,
not arithmetic: every iteration launches hundreds of small kernels one by one. Captured once as a CUDA
graph, the whole iteration is replayed by one launch.

**What is captured**: one call of the ordinary :class:`~vmivae.steps.Stepper`, its code unchanged: the
VAE forward with its sampling noise, Q's forward, both backward passes, gradient clipping, both Adam
steps, BatchNorm's running statistics, and the step's metrics, written into a static output buffer.

**What is not**: everything the trainer does between steps stays on the host, as before: the batch
indices (the sampler's CPU generator), the gather of the batch, the temperature schedule, the history
flush every ``log_every`` steps with its NaN check, checkpoints and signals. Each call copies the batch
and the temperature into the graph's static input buffers, replays, and returns a copy of the metrics.

**Why it is the same training, step for step**:

* Random numbers come from the device's default CUDA generator, which ``torch.cuda.graph`` registers:
  each replay reads the generator's current seed and offset and advances the offset by what the
  captured kernels consume. A replay draws the numbers an eager step would draw, and the RNG state after
  it is the eager step's, so checkpoints (which store it) and resume work unchanged.
* Every call is one real update. The first ``warmup`` calls run the step eagerly on a side stream (as
  CUDA graphs require: it creates Adam's state, the cuBLAS/cuDNN handles and the autograd engine's
  streams); the next call captures (capture records kernels, it runs none) and then replays once.
* The graph reads and writes fixed addresses. Parameters, BatchNorm buffers and optimiser states are
  updated in place, so ``state_dict`` reads the live values and a module's ``load_state_dict`` copies
  into them. An optimiser's ``load_state_dict`` replaces its state tensors: the step notices (it keeps
  the state dicts it captured) and warms up and captures again. The gradients are set to None before
  each backward pass, as in eager mode, so capture allocates them in the graph's memory pool, where they
  stay (``.grad`` refers to them) and every replay writes them.
* Adam: the fused kernel reads its step count from a device tensor either way (``capturable`` only
  lifts Python's check); the foreach implementation is captured in its capturable form (step counts on
  the device). ``capturable`` is set only while capturing, so a checkpoint resumes eagerly as before.
* The step's host synchronisations and copies (``bincount``'s size check in the metrics, the index list of
  ``z[:, dims]``, ``log K`` as a new tensor) are replaced by equivalent forms (:class:`GraphSafeStepper`,
  ``vmivae.perf.capture_safe``), and autocast runs without its weight-cast cache.
* Capture fails loudly: an operation that synchronises with the host raises while capturing.

``capture: auto`` does not choose this yet (see ``vmivae.perf.device.DEVICE_DEFAULTS``): the equivalence and
the speed are checked on a GPU by ``scripts/gpu_check.py``. Several steps per replay are not captured:
with the whole step in one graph the host does a handful of launches per step, far below the graph's
own run time; the GPU check's bench rows show whether that holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from ..errors import ConfigError
from ..steps import Stepper
from . import capture_safe

WARMUP = 3  # eager steps before capture (PyTorch's CUDA-graph examples use 3)


class GraphSafeStepper(Stepper):
    """The same step with no host synchronisation (``vmivae.perf.capture_safe``), and autocast without its cache."""

    targets = staticmethod(capture_safe.mi_targets)
    entropy = staticmethod(capture_safe.code_entropy)
    counts = staticmethod(capture_safe.code_counts)

    @classmethod
    def of(cls, stepper: Stepper) -> GraphSafeStepper:
        safe = cls.__new__(cls)
        safe.__dict__.update(vars(stepper))
        return safe

    def _autocast(self, x: torch.Tensor):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=self.amp_dtype, cache_enabled=False)


class CudaGraphs:
    """Side-stream warm-up and capture on one CUDA device (tests substitute an eager imitation)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def warm(self, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        current = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            out = fn()
        current.wait_stream(self.stream)
        out.record_stream(current)  # the caller reads it on its stream
        return out

    def capture(self, fn: Callable[[], None]) -> Any:
        """A graph of ``fn``'s kernels (nothing runs); ``.replay()`` runs them."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            fn()
        return graph


@contextlib.contextmanager
def capturable(optimizers: list[torch.optim.Optimizer]):
    """Adam's capturable form while capturing: step counts on the parameters' device, the flag set, then restored."""
    saved = [(group, group.get("capturable", False)) for opt in optimizers for group in opt.param_groups]
    for opt in optimizers:
        for group in opt.param_groups:
            group["capturable"] = True
            for p in group["params"]:
                state = opt.state.get(p)
                if state and torch.is_tensor(state.get("step")) and state["step"].device != p.device:
                    state["step"] = state["step"].to(p.device, torch.float32)
    try:
        yield
    finally:
        for group, flag in saved:
            group["capturable"] = flag


class GraphedStep:
    """Called like a :class:`Stepper` (``step(x, tau) -> metrics``): warm-up calls, then one graph replay per call."""

    kind = "cuda-graph"

    def __init__(self, stepper: Stepper, device: torch.device, warmup: int = WARMUP, graphs: Any = None):
        if warmup < 1:
            raise ValueError(f"warmup must be at least 1 eager step, got {warmup}")
        self.eager = GraphSafeStepper.of(stepper)
        self.device, self.warmup = device, warmup
        self.graphs = graphs if graphs is not None else CudaGraphs(device)
        self.graph: Any = None
        self.warm_calls = self.captures = self.replays = 0
        self._states: tuple = ()  # the optimiser state dicts the graph was captured with
        self._out_like: torch.Tensor | None = None

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [opt for opt in (self.eager.vae_opt, self.eager.q_opt) if opt is not None]

    def _current(self, x: torch.Tensor) -> bool:
        """Whether the captured graph still fits: the same optimiser state dicts and the same batch shape."""
        states = tuple(opt.state for opt in self.optimizers)
        return (self.graph is not None and len(states) == len(self._states) and all(a is b for a, b in zip(states, self._states))
                and x.shape == self.static_x.shape and x.dtype == self.static_x.dtype)

    def __call__(self, x: torch.Tensor, tau: torch.Tensor | float) -> torch.Tensor:
        tau = torch.as_tensor(tau, dtype=torch.float32, device=x.device)
        if not self._current(x):
            if self.graph is not None:  # stale: warm up again (a loaded optimiser may lack state) and recapture
                self.graph, self.warm_calls = None, 0
            if self.warm_calls < self.warmup:
                self.warm_calls += 1
                out = self.graphs.warm(lambda: self.eager(x, tau))
                self._out_like = out
                return out
            self._capture(x, tau)
        self.static_x.copy_(x)
        self.static_tau.copy_(tau)
        self.graph.replay()
        self.replays += 1
        return self.static_out.clone()

    def _capture(self, x: torch.Tensor, tau: torch.Tensor) -> None:
        self.static_x, self.static_tau = torch.empty_like(x), torch.empty_like(tau)
        self.static_out = torch.empty_like(self._out_like)

        def body() -> None:
            self.static_out.copy_(self.eager(self.static_x, self.static_tau))

        with capturable(self.optimizers):
            self.graph = self.graphs.capture(body)
        self._states = tuple(opt.state for opt in self.optimizers)
        self.captures += 1


def make_step(stepper: Stepper, capture: str, device: torch.device) -> Stepper | GraphedStep:
    """The step a trainer calls: ``stepper`` itself, or for a resolved ``capture`` of ``cuda-graph`` its captured form
    (``vmivae.perf.device.resolve_capture`` turns a config's ``capture`` into one of the two)."""
    if capture == "none":
        return stepper
    if capture != "cuda-graph" or device.type != "cuda":
        raise ConfigError(f"capture {capture!r} cannot run on {device.type}; use capture: auto or none")
    return GraphedStep(stepper, device)
