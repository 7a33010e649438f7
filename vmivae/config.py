"""The typed run configuration: one frozen :class:`Config` per run, checked key by key.

Every key is checked against the dataclass: an unknown key, a wrong type or an out-of-range value
raises :class:`ConfigError` with one sentence that lists the valid choices. Presets and profiles (the
YAML layers a Config is assembled from) are in ``vmivae.presets``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, fields
from typing import Any

import yaml

from .datasets import DATASET_NAMES
from .errors import ConfigError, unknown_name
from .latents import LatentSpec
from .objectives import RECON_LOSSES, MIComponents

MI_SOURCES = ("reconstruction", "generation", "both")
STEP_MODES = ("fused", "alternating")
AMP_MODES = ("none", "bf16", "auto")
CAPTURE_MODES = ("none", "cuda-graph", "auto")
# Keys that change how a run is operated or logged but not what it computes. fused_adam, capture and
# matmul_layers change the order of floating-point operations at most (the same random numbers; the GPU
# check, tests/test_graphed.py, compares a captured run with an eager one step by step; tests/test_models.py
# the matrix-product layers with the plain ones).
OPERATIONAL_KEYS = ("device", "data_root", "log_every", "checkpoint_every", "fused_adam", "capture", "matmul_layers")
INT_MAX = 2**63 - 1  # integers are counted in 64-bit tensors
SEED_MAX = 2**64 - 1  # the range of torch's 64-bit generator seed
DEVICE_PATTERN = re.compile(r"auto|(cpu|cuda|mps)(:[0-9]+)?")
PARTS = ("cont", "cat")  # the two KL terms' parts: the Gaussian dims and the categorical code
CAPACITY_FIELDS = ("gamma", "start", "end", "steps")
# Keys added after the paper's presets: at their defaults they leave the loss as it was and stay out of the
# config hash, so the runs already trained and cached keep their hash.
LEVER_KEYS = ("kl_weight_cont", "kl_weight_cat") + tuple(f"capacity_{p}_{f}" for p in PARTS for f in CAPACITY_FIELDS)


@dataclass(frozen=True)
class Config:
    """Everything that defines a training run. Defaults are the paper's (Gaussian model, MNIST)."""

    # --- data
    dataset: str = "mnist-5k"  # dataset name (see `vmivae datasets`), or "custom" for data given to fit()
    data_root: str | None = None  # where downloadable datasets live; None -> $VMIVAE_DATA or ./data
    # --- latent space
    continuous: int = 32  # number of Gaussian latent dims D
    categorical: int | None = None  # categories K of the one discrete code; None for no code
    # --- the MI regulariser
    mi_categorical: bool = False  # the categorical code enters the MI bound
    mi_dims: tuple[int, ...] = ()  # Gaussian dims that enter the MI bound
    mi_source: str = "reconstruction"  # images in the bound: reconstruction | generation | both
    lambda_cat: float = 0.0  # weight of CE_cat in the VAE loss (0 = vanilla VAE, Q still trained)
    lambda_cont: float = 0.0  # weight of CE_cont in the VAE loss
    aggregate_entropy: bool = False  # add + H(c) of the aggregate code (batch estimate) so the code's term is a true bound
    lambda_entropy: float | None = None  # weight of that H(c) term; null: lambda_cat (the term is then lambda_cat * (H - CE))
    # --- the ELBO
    recon_loss: str = "mse"  # mse (paper, mean-reduced) | gaussian | bernoulli (summed NLLs)
    kl_weight: float = 0.005  # weight of the KL terms
    kl_weight_cont: float | None = None  # weight of the Gaussian part's KL alone; null: kl_weight
    kl_weight_cat: float | None = None  # weight of the categorical code's KL alone; null: kl_weight
    # --- capacities (JointVAE, Dupont 2018): a part's weighted KL becomes gamma * |KL - C(t)|, C rising linearly
    # from start to end nats over `steps` steps, then held; gamma 0: off (the paper's loss)
    capacity_cont_gamma: float = 0.0  # of the Gaussian part's KL (summed over dims)
    capacity_cont_start: float = 0.0  # nats
    capacity_cont_end: float = 0.0  # nats
    capacity_cont_steps: int = 1  # steps from start to end
    capacity_cat_gamma: float = 0.0  # of the categorical code's KL from the uniform prior (at most log K)
    capacity_cat_start: float = 0.0
    capacity_cat_end: float = 0.0
    capacity_cat_steps: int = 1
    # --- Gumbel-softmax temperature: tau_t = max(tau0 * exp(-tau_rate * t), tau_min)
    tau0: float = 1.0  # initial temperature
    tau_min: float = 0.5  # temperature floor (paper: 0.3 joint model, 0.5 otherwise)
    tau_rate: float = 1.5e-5  # exponential decay rate per step
    tau_interval: int = 1000  # the temperature is refreshed every tau_interval steps
    # --- optimisation (Adam, default betas)
    steps: int = 150_000  # training iterations
    batch_size: int = 124  # images per iteration (the effective batch, summed over processes)
    lr: float = 1e-4  # learning rate of the VAE
    q_lr: float = 1e-4  # learning rate of Q
    grad_clip: float | None = None  # clip the global gradient norm of each network to this; None: off
    step_mode: str = "fused"  # fused (one forward per step) | alternating (the reference schedule)
    # --- engineering
    seed: int = 0  # seeds weights, sampling noise and batch order
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
    compile: bool = False  # torch.compile the training step's forward passes
    fused_adam: bool = True  # Adam as one fused kernel per parameter (false: PyTorch's default foreach Adam)
    amp: str = "none"  # none (fp32) | bf16 (autocast) | auto (bf16 where the device computes it natively)
    channels_last: bool = False  # NHWC memory format for the convolutions
    matmul_layers: bool = True  # Q's whole-map convs and the decoder's last convT as matrix products (vmivae.perf.fast_layers; same weights)
    capture: str = "none"  # none | cuda-graph (the whole step replayed as one CUDA graph) | auto (per device: vmivae.perf.device)
    log_every: int = 50  # host sync, progress bar and history flush every N steps
    checkpoint_every: int = 1000  # write a checkpoint every N steps (and at the end)

    # ------------------------------------------------------------------ derived views
    @property
    def latent(self) -> LatentSpec:
        return LatentSpec(self.continuous, self.categorical)

    @property
    def entropy_weight(self) -> float:
        """Weight of the aggregate code entropy in the VAE's objective (0 unless ``aggregate_entropy``)."""
        if not self.aggregate_entropy:
            return 0.0
        return self.lambda_cat if self.lambda_entropy is None else self.lambda_entropy

    @property
    def kl_levers(self) -> dict[str, Any]:
        """The KL part of the objective as ``vmivae.steps.Objective`` keywords: ``kl_weight`` (of KL_cont, and of
        KL_cat unless ``kl_weight_cat`` is given), ``kl_weight_cat``, ``capacity_cont``/``capacity_cat`` as
        ``(start, end, steps, gamma)`` or None. At the defaults: the paper's single weight and no capacity."""
        cont = self.kl_weight if self.kl_weight_cont is None else self.kl_weight_cont
        cat = self.kl_weight if self.kl_weight_cat is None else self.kl_weight_cat

        capacity = {f"capacity_{p}": tuple(getattr(self, f"capacity_{p}_{f}") for f in ("start", "end", "steps", "gamma")) for p in PARTS}
        return {"kl_weight": cont, "kl_weight_cat": None if cat == cont else cat, **{k: (v if v[3] else None) for k, v in capacity.items()}}

    @property
    def components(self) -> MIComponents:
        return MIComponents(self.mi_categorical, tuple(self.mi_dims))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mi_dims"] = list(self.mi_dims)
        return d

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` applied, checked like any other input."""
        return from_dict({**self.to_dict(), **changes})

    def hash(self) -> str:
        """Short digest of every key that changes what a run computes (not device, paths, cadence)."""
        d = {k: v for k, v in self.to_dict().items() if k not in OPERATIONAL_KEYS and not (k in LEVER_KEYS and v == FIELDS[k].default)}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in fields(Config)}
_HINTS = typing.get_type_hints(Config)


# ---------------------------------------------------------------------------- type checking


def _coerce(key: str, value: Any) -> Any:
    """Check ``value`` against the annotation of ``key`` and convert lists/ints where lossless."""
    hint = _HINTS[key]
    args = typing.get_args(hint)
    optional = isinstance(hint, types.UnionType) and type(None) in args
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key '{key}' cannot be null; give {_describe(hint)}")
    base = next(a for a in args if a is not type(None)) if optional else hint
    if base is bool:
        if isinstance(value, bool):
            return value
    elif base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif base is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            with contextlib.suppress(ValueError):
                number = float(value)
        if number is not None:
            if not math.isfinite(number):
                raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")
            return number
    elif base is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(base) is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
    raise ConfigError(f"config key '{key}' must be {_describe(hint)}, got {value!r}")


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return "a list of integers"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    optional = isinstance(hint, types.UnionType)
    base = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    return names.get(base, str(base)) + (" or null" if optional else "")


def check_keys(d: dict[str, Any], where: str) -> None:
    for key in d:
        if key not in FIELDS:
            raise ConfigError(f"{where}: {unknown_name('config key', str(key), list(FIELDS))}")


def _validate(c: Config) -> None:
    """Range and consistency checks; one sentence per problem."""
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    need(c.dataset in DATASET_NAMES or c.dataset == "custom", unknown_name("dataset", c.dataset, list(DATASET_NAMES)))
    need(c.continuous >= 1, f"continuous must be at least 1 Gaussian dim, got {c.continuous}")
    need(c.categorical is None or c.categorical >= 2, f"categorical must be null or at least 2 categories, got {c.categorical}")
    need(not c.mi_categorical or c.categorical, "mi_categorical is true but the model has no categorical code; set categorical")
    bad = [d for d in c.mi_dims if not 0 <= d < c.continuous]
    need(not bad, f"mi_dims {bad} are outside the Gaussian dims 0..{c.continuous - 1}")
    need(len(set(c.mi_dims)) == len(c.mi_dims), f"mi_dims has repeated dims: {list(c.mi_dims)}")
    need(c.mi_source in MI_SOURCES, unknown_name("mi_source", c.mi_source, MI_SOURCES))
    need(c.recon_loss in RECON_LOSSES, unknown_name("recon_loss", c.recon_loss, RECON_LOSSES))
    need(c.step_mode in STEP_MODES, unknown_name("step_mode", c.step_mode, STEP_MODES))
    need(c.amp in AMP_MODES, unknown_name("amp", c.amp, AMP_MODES))
    need(c.capture in CAPTURE_MODES, unknown_name("capture", c.capture, CAPTURE_MODES))
    for key in ("lambda_cat", "lambda_cont", "kl_weight", "tau_rate"):
        need(getattr(c, key) >= 0, f"{key} must be non-negative, got {getattr(c, key)}")
    need(c.lambda_cat == 0 or c.mi_categorical, "lambda_cat > 0 needs the categorical code in the bound: set mi_categorical: true")
    need(not c.aggregate_entropy or c.mi_categorical, "aggregate_entropy is the entropy of the categorical code in the bound: set mi_categorical: true")
    need(not c.aggregate_entropy or c.mi_source != "generation",
         "aggregate_entropy has no effect on the generation path (its codes come from the prior, H(c) = log K); use reconstruction or both")
    need(c.lambda_entropy is None or c.lambda_entropy >= 0, f"lambda_entropy must be null or non-negative, got {c.lambda_entropy}")
    need(c.lambda_cont == 0 or c.mi_dims, "lambda_cont > 0 needs Gaussian dims in the bound: set mi_dims, e.g. [0, 1]")
    need(c.tau0 > 0 and c.tau_min > 0, f"temperatures must be positive, got tau0={c.tau0}, tau_min={c.tau_min}")
    need(c.tau_min <= c.tau0, f"tau_min ({c.tau_min}) must not exceed tau0 ({c.tau0})")
    _validate_levers(c, need)
    for key in ("steps", "tau_interval", "log_every", "checkpoint_every"):
        need(getattr(c, key) >= 1, f"{key} must be at least 1, got {getattr(c, key)}")
    need(c.batch_size >= 2, f"batch_size must be at least 2 (BatchNorm needs two images), got {c.batch_size}")
    need(c.lr > 0 and c.q_lr > 0, f"learning rates must be positive, got lr={c.lr}, q_lr={c.q_lr}")
    need(c.grad_clip is None or c.grad_clip > 0, f"grad_clip must be null or positive, got {c.grad_clip}")
    need(0 <= c.seed <= SEED_MAX, f"seed must be between 0 and {SEED_MAX} (a 64-bit generator's seed), got {c.seed}")
    for f in fields(c):
        value = getattr(c, f.name)
        values = value if isinstance(value, tuple) else (value,)
        need(f.name == "seed" or all(not isinstance(v, int) or isinstance(v, bool) or abs(v) <= INT_MAX for v in values),
             f"{f.name} is too large ({value}); it must be at most {INT_MAX}")
    need(bool(DEVICE_PATTERN.fullmatch(c.device)), f"unknown device {c.device!r}; valid: auto, cpu, cuda, cuda:N, mps")


def _validate_levers(c: Config, need) -> None:
    """The separate KL weights and the capacity schedules."""
    for part in PARTS:
        key = f"kl_weight_{part}"
        need(getattr(c, key) is None or getattr(c, key) >= 0, f"{key} must be null or non-negative, got {getattr(c, key)}")
        gamma, start, end, steps = (getattr(c, f"capacity_{part}_{f}") for f in CAPACITY_FIELDS)
        name = f"capacity_{part}"
        need(gamma >= 0 and start >= 0 and end >= 0, f"{name}_gamma, _start and _end must be non-negative, got {gamma}, {start}, {end}")
        need(steps >= 1, f"{name}_steps must be at least 1, got {steps}")
        need(gamma > 0 or (start, end, steps) == (0.0, 0.0, 1),
             f"{name}_start, _end and _steps have no effect while {name}_gamma is 0; set {name}_gamma, e.g. 0.075")
        need(gamma == 0 or getattr(c, key) is None,
             f"{key} has no effect with a capacity on that part (gamma |KL - C| replaces the weighted KL); drop {key} or {name}_gamma")
    need(c.kl_weight_cat is None or c.categorical, "kl_weight_cat weighs the categorical code's KL but the model has none; set categorical")
    need(c.capacity_cat_gamma == 0 or c.categorical, "capacity_cat_gamma needs a categorical code; set categorical")
    if c.capacity_cat_gamma > 0 and c.categorical:
        log_k = math.log(c.categorical)
        need(max(c.capacity_cat_start, c.capacity_cat_end) <= log_k + 1e-6,
             f"capacity_cat_start and _end must not exceed log K = {log_k:.4f} nats, the largest KL of a {c.categorical}-way code from the uniform prior")


def from_dict(d: dict[str, Any], where: str = "config") -> Config:
    """Build and validate a Config from a plain dict (e.g. a saved ``config.json``)."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a mapping of config keys to values, got {type(d).__name__}")
    check_keys(d, where)
    config = Config(**{k: _coerce(k, v) for k, v in d.items()})
    _validate(config)
    return config


_YAML_ERROR = object()


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (the CLI's ``--set``); the value is read as YAML (``0.01``, ``[0, 1]``, ``null``)."""
    if not isinstance(text, str):
        raise ConfigError(f"expected a 'key=value' string, got {text!r}; e.g. 'lambda_cat=0.01'")
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"expected key=value, got {text!r}; e.g. --set lambda_cat=0.01")
    if key not in FIELDS:
        raise ConfigError(unknown_name("config key", key, list(FIELDS)))
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = _YAML_ERROR
    if str in typing.get_args(_HINTS[key]) + (_HINTS[key],) and (value is _YAML_ERROR or isinstance(value, (dict, list))):
        value = raw.strip()  # a string key: 'cuda:' or 'a: b' is the text typed, not YAML structure
    if value is _YAML_ERROR:
        raise ConfigError(f"cannot read the value of '{key}' in {text!r}; quote strings, write lists as [0, 1]")
    return key, value
