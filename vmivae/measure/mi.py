"""Measure I(c; x~) for any fixed generator: train a fresh Q, report the variational lower bound.

    I(c; x~) >= H(c) - E[-log Q(c | x~)]        (Barber & Agakov 2003)

The generator is frozen (eval mode, no gradients). A :class:`~vmivae.models.QNetwork` learns to
recover *every* latent component (the categorical code and each Gaussian dim, one head each) from the
decoded images; it is trained on fresh samples, checked on a validation set for early stopping, and
scored on a separate evaluation set. A trained run already carries a Q for the components that were in
its bound (``run.q``): Q starts from it (warm start; the other heads start at ``Q = N(0, 1)`` or uniform,
a bound of 0), which needs far fewer steps; at the end Q's last layer is refitted as the linear model it is
on Q's features (``n_fit`` fresh samples; see :func:`~vmivae.measure.q_fit.refit_head`). The bound holds for any
Q, so the start and the refits only change how tight it is: what keeps it a bound is that Q is scored on samples
it was never fitted on.

* ``path="generation"`` (primary): codes drawn from the prior, so ``H(c)`` is exact (``log K`` for the
  uniform K-way code, ``0.5 log(2 pi e)`` per N(0, 1) dim) and ``H(c) - CE`` is a true lower bound in
  nats, up to the sampling error reported by the confidence interval.
* ``path="reconstruction"``: hard codes of real images (posterior means, argmax category) are decoded;
  ``H(c)`` is estimated from the evaluation codes (plug-in for the category, m-spacing for Gaussian
  dims), so the result is an estimate of the bound, not a guaranteed bound.

For a Gaussian component ``H(c)`` is a *differential* entropy, which does not bound ``I(c; x~)``:
``I = h(c) - h(c | x~)``, and ``h(c | x~)`` turns negative once the image pins ``c`` down to a spread
below ``1 / sqrt(2 pi e)``; through a deterministic decoder that uses ``c`` the true MI is infinite. The
bound then measures how precisely Q reads ``c`` back: with a Gaussian Q of residual spread ``sigma``
(the prior's is 1), ``h(c) - CE = -log(sigma)``, so its ``fraction`` exceeds 1 once ``sigma < 0.24``.
For the categorical code ``H(c) = log K`` is a true ceiling and the fraction lies in [0, 1] up to noise.

Confidence intervals: percentile bootstrap over the evaluation samples (``n_boot`` resamples); it covers
the evaluation-set noise, not the variation between Q fits (``estimate_mi_refits`` measures that).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..datasets import ImageData
from ..latents import LatentSpec, gaussian_log_likelihood
from ..models import VAE, QNetwork
from ..objectives import mi_lower_bound, prior_entropy
from ..perf.device import resolve_amp
from ..perf.fast_layers import use_matmul_layers
from . import checks
from .metrics import discrete_entropy, spacing_entropy
from .q_fit import Source, calibrate, gain_is_small, refit_head, warm_start

PATHS = ("generation", "reconstruction")


@dataclass(frozen=True)
class EstimatorSettings:
    """How hard to train Q, when to stop, and how many samples to score it on."""

    max_steps: int = 2000  # Q updates at most
    min_steps: int = 200  # never stop before this many
    batch_size: int = 128  # images per Q update
    lr: float = 1e-3  # Adam learning rate of Q
    head_lr: float = 0.0  # of Q's last layer when Q is warm-started (0: lr)
    eval_every: int = 100  # validation check cadence (steps)
    patience: int = 3  # the window: stop when the bound gained too little over the last `patience` checks
    tol: float = 0.005  # nats: a gain below this is too little
    noise_z: float = 0.0  # ... and so is a gain below noise_z standard errors of the paired gain (0: tol only)
    n_val: int = 1000  # validation samples (early stopping), decoded once
    n_eval: int = 5000  # evaluation samples (the reported numbers)
    n_boot: int = 1000  # bootstrap resamples for the 95% intervals
    seed: int = 0  # seeds Q's weights and every sample
    amp: str = "none"  # "auto": train Q in bf16 where the device computes it natively (scoring is always fp32)
    ema: float = 0.99  # decay of the moving average of Q's weights that is validated and scored (0: off)
    warm_start: bool = True  # start from the run's own Q for the components it reads (a bare decoder: cold)
    calibrate: bool = True  # refit Q's last layer in closed form on the validation samples at each check
    n_fit: int = 0  # fresh samples on which Q's last layer is refitted as a linear model at the end (0: off)


SETTINGS = {
    "smoke": EstimatorSettings(max_steps=30, min_steps=10, batch_size=64, eval_every=10, n_val=256, n_eval=512, n_boot=200, amp="auto", n_fit=1000),
    "quick": EstimatorSettings(max_steps=300, min_steps=120, batch_size=64, head_lr=1e-2, eval_every=60, patience=2, noise_z=2.0, n_val=500,
                               n_eval=3000, amp="auto", ema=0.95, n_fit=3000),
    "full": EstimatorSettings(max_steps=5000, min_steps=500, batch_size=256, eval_every=250, n_val=5000, n_eval=20000, n_fit=20000),
    # the quick budget before warm starts and the noise-aware stop: a fresh Q for all 500 steps
    "quick-500": EstimatorSettings(max_steps=500, min_steps=300, batch_size=64, eval_every=50, n_val=1000, n_eval=3000, amp="auto",
                                   warm_start=False, calibrate=False),
}


@dataclass
class ComponentMI:
    """The bound for one latent component."""

    nats: float  # H(c) - CE on the evaluation set
    ci95: tuple[float, float]  # bootstrap percentile interval
    entropy: float  # H(c) used
    fraction: float  # nats / entropy; may exceed 1 for a Gaussian dim (differential entropy, see above)
    path: str  # generation | reconstruction
    cross_entropy: float  # mean -log Q(c | x~)


@dataclass
class MIEstimate:
    """Per-component bounds plus what it took to get them."""

    components: dict[str, ComponentMI]
    path: str
    q_steps: int  # Q updates taken
    converged: bool  # stopped by the validation criterion (not by max_steps)
    n_eval: int
    seconds: float
    validation: list[tuple[int, float]] = field(default_factory=list)  # (step, summed bound) per check
    settings: dict = field(default_factory=dict)
    warm_start: list[str] = field(default_factory=list)  # components whose head started from the run's own Q (empty: cold start)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["components"] = {k: {**asdict(v), "ci95": list(v.ci95)} for k, v in self.components.items()}
        return d


def component_names(latent: LatentSpec) -> list[str]:
    """``categorical`` (when the model has one) then ``z0``, ``z1``, ..."""
    return (["categorical"] if latent.categorical else []) + [f"z{j}" for j in range(latent.continuous)]


def _per_sample_ce(q: QNetwork, x: torch.Tensor, k: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
    """``-log Q(c | x~)`` per sample and component, ``[B, n_components]`` (categorical first)."""
    out = q(x)
    columns = []
    if k is not None:
        columns.append(torch.nn.functional.cross_entropy(out.logits, k, reduction="none")[:, None])
    columns.append(-gaussian_log_likelihood(z, out.mean, out.log_std))
    return torch.cat(columns, dim=1)


@torch.no_grad()
def _score(q: QNetwork, source: Source, n: int) -> tuple[torch.Tensor, list]:
    """Per-sample cross-entropies ``[n, n_components]`` on the source's fixed set, and its codes."""
    q.eval()
    rows, codes = [], []
    for x, k, z in source.passes(n):
        rows.append(_per_sample_ce(q, x, k, z).cpu())
        codes.append((None if k is None else k.cpu(), z.cpu()))
    q.train()
    return torch.cat(rows).double(), codes


def _bootstrap(values: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Percentile 95% interval of the column means of ``values [N, C]``."""
    rng = np.random.default_rng(seed)
    means = np.stack([values[rng.integers(0, len(values), len(values))].mean(axis=0) for _ in range(n_boot)])
    return np.percentile(means, 2.5, axis=0), np.percentile(means, 97.5, axis=0)


def _as_decoder(model) -> tuple[Callable, LatentSpec | None, Callable | None, torch.device]:
    """``(decode, latent spec or None, encode or None, device)`` of a Run, a VAE or a bare callable."""
    from ..runs.run import Run

    vae = model.vae if isinstance(model, Run) else model
    if isinstance(vae, VAE):
        vae.eval()
        return vae.decode, vae.latent, vae.encode, next(vae.parameters()).device
    return model, None, None, torch.device("cpu")


def _sources(decode, latent, encode, device, path, data, eval_data, s: EstimatorSettings) -> tuple[Source, Source, Source]:
    """Training, validation and evaluation sources for one path."""
    if path == "generation":
        return (Source(decode, latent, device), Source(decode, latent, device, fixed_seed=s.seed + 1),
                Source(decode, latent, device, fixed_seed=s.seed + 2))
    # reconstruction: Q trains on 90% of the training images, stops on the other 10%, is scored on eval_data
    perm = torch.randperm(len(data))
    n_val = min(s.n_val, len(data) // 10)
    images = data.images
    return (Source(decode, latent, device, encode, images[perm[n_val:]]), Source(decode, latent, device, encode, images[perm[:n_val]]),
            Source(decode, latent, device, encode, eval_data.images))


def _fit_q(q: QNetwork, train: Source, val: Source, n_val: int, s: EstimatorSettings, device, warm: bool) -> tuple[int, bool, list]:
    """Train ``q`` on fresh batches until the validation bound stops gaining; leave it at its best check.
    Returns ``(steps, stopped by the criterion, [(step, summed validation cross-entropy)] per check)``."""
    head = list(q.net[-2].parameters())
    body = [p for p in q.parameters() if all(p is not h for h in head)]
    opt = torch.optim.Adam([{"params": body}, {"params": head, "lr": s.head_lr if warm and s.head_lr else s.lr}], lr=s.lr)
    # Each check validates the current Q and an exponential moving average of its weights (and
    # BatchNorm statistics), and keeps whichever is best on the validation samples: single Adam
    # iterates of a many-headed Q are noisy, but early in training the average lags behind them.
    ema = AveragedModel(q, multi_avg_fn=get_ema_multi_avg_fn(s.ema), use_buffers=True) if s.ema else None
    candidates = [q] + ([ema.module] if ema is not None else [])
    best, best_state, best_ce, history, validation, step = float("inf"), None, None, [], [], 0
    amp_dtype = resolve_amp(s.amp, device)
    autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext()
    while step < s.max_steps:
        with autocast:  # how Q is trained only affects how tight the bound is, not whether it is one
            loss = _per_sample_ce(q, *train.batch(s.batch_size)).mean(0).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update_parameters(q)
        step += 1
        if step % s.eval_every == 0 or step == s.max_steps:
            scores = [(calibrate(c, val, n_val, autocast) if s.calibrate else _score(c, val, n_val)[0]).sum(1) for c in candidates]
            means = [float(v.mean()) for v in scores]
            i = means.index(min(means))
            validation.append((step, means[i]))
            if means[i] < best:
                best, best_state, best_ce = means[i], copy.deepcopy(candidates[i].state_dict()), scores[i]
            history.append(best_ce)
            if step >= s.min_steps and len(history) > s.patience and gain_is_small(history[-1], history[-1 - s.patience], s.tol, s.noise_z):
                break
    if best_state is not None:
        q.load_state_dict(best_state)
    if s.n_fit:
        refit_head(q, train, s.n_fit, val, n_val, autocast)
    return step, step < s.max_steps, validation


def estimate_mi(model, latent: LatentSpec | None = None, *, path: str = "generation", data: ImageData | None = None,
                eval_data: ImageData | None = None, settings: EstimatorSettings | str = "quick", device: str | torch.device | None = None) -> MIEstimate:
    """Lower-bound the MI between every latent component and the generated images of a fixed model.

    Args:
        model: a :class:`~vmivae.runs.run.Run` (whose own Q, if it has one, is the warm start), a
            :class:`~vmivae.models.VAE`, a run folder, or any decoder callable mapping latents ``[B, D + K]`` (Gaussian
            values, then one-hot) to images ``[B, C, H, W]``. Bad arguments raise a VMIVAEError before any work.
        latent: the latent spec; needed only for a bare callable.
        path: ``generation`` (prior codes, exact entropy) or ``reconstruction`` (encoder's hard codes of
            ``data`` to train Q, of ``eval_data`` to score it; needs a VAE).
        settings: an :class:`EstimatorSettings` or the name of one (``smoke``, ``quick``, ``full``, ``quick-500``).
        device: where Q trains; default: the model's device (cpu for a bare callable).
    """
    model, s, device, data, eval_data = checks.estimate_args(model, latent, path, data, eval_data, settings, device, SETTINGS, PATHS)  # before any work
    decode, model_latent, encode, model_device = _as_decoder(model)
    latent = latent or model_latent
    device = device or model_device
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(s.seed)
        train, val, evaluation = _sources(decode, latent, encode, device, path, data, eval_data, s)
        n_val = len(val) or s.n_val
        n_eval = min(s.n_eval, len(evaluation)) if len(evaluation) else s.n_eval
        q = QNetwork(tuple(train.batch(2)[0].shape[1:]), latent.categorical, latent.continuous).to(device)
        use_matmul_layers(q)  # the same weights, its head faster on a CPU (vmivae.perf.fast_layers)
        warm = warm_start(q, model) if s.warm_start else []
        step, converged, validation = _fit_q(q, train, val, n_val, s, device, bool(warm))
        ce, codes = _score(q, evaluation, n_eval)
    entropy = _entropies(latent, path, codes)
    values = mi_lower_bound(entropy[None, :], ce.numpy())
    lo, hi = _bootstrap(values, s.n_boot, s.seed)
    means = values.mean(axis=0)
    components = {
        name: ComponentMI(float(means[i]), (float(lo[i]), float(hi[i])), float(entropy[i]),
                          float(means[i] / entropy[i]) if entropy[i] > 0 else float("nan"), path, float(ce[:, i].mean()))
        for i, name in enumerate(component_names(latent))
    }
    curve = [(st, float(mi_lower_bound(entropy.sum(), v))) for st, v in validation]
    return MIEstimate(components, path, step, converged, n_eval, round(time.perf_counter() - start, 3), curve, asdict(s), warm)


def _entropies(latent: LatentSpec, path: str, codes: list) -> np.ndarray:
    """``H(c)`` per component: exact for prior codes, estimated from the codes on the reconstruction path."""
    if path == "generation":
        cat = [prior_entropy(categorical=latent.categorical)] if latent.categorical else []
        return np.array(cat + [prior_entropy(continuous=1)] * latent.continuous)
    z = torch.cat([zc for _, zc in codes]).numpy()
    cat = [discrete_entropy(torch.cat([k for k, _ in codes]).numpy())] if latent.categorical else []
    return np.array(cat + [spacing_entropy(z[:, j]) for j in range(z.shape[1])])


def t_interval(values: np.ndarray) -> tuple[float, float, tuple[float, float]]:
    """Mean, sample std and Student-t 95% interval of the mean of ``values [n]`` (nan interval for n < 2)."""
    from scipy import stats

    n, mean = len(values), float(np.mean(values))
    std = float(np.std(values, ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.975, n - 1)) * std / np.sqrt(n) if n > 1 else float("nan")
    return mean, std, (mean - half, mean + half)


def estimate_mi_refits(model, n_fits: int = 3, settings: EstimatorSettings | str = "quick", **kwargs) -> dict[str, dict]:
    """Repeat :func:`estimate_mi` with ``n_fits`` seeds: mean, std and a t-based 95% interval per component."""
    model, settings, kwargs = checks.refit_args(model, n_fits, settings, kwargs, SETTINGS, PATHS)  # before any work
    base = SETTINGS[settings] if isinstance(settings, str) else settings
    fits = [estimate_mi(model, settings=EstimatorSettings(**{**asdict(base), "seed": base.seed + i}), **kwargs) for i in range(n_fits)]
    out = {}
    for name in fits[0].components:
        v = np.array([f.components[name].nats for f in fits])
        mean, std, ci = t_interval(v)
        out[name] = {"mean": mean, "std": std, "ci95": list(ci), "fits": v.tolist()}
    return out
