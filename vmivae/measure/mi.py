"""Measure I(c; x~) for any fixed generator: train a fresh Q, report the variational lower bound.

    I(c; x~) >= H(c) - E[-log Q(c | x~)]        (Barber & Agakov 2003)

The generator is frozen (eval mode, no gradients). A new :class:`~vmivae.models.QNetwork` learns to
recover *every* latent component (the categorical code and each Gaussian dim, one head each) from the
decoded images; it is trained on fresh samples, checked on a validation set for early stopping, and
scored on a separate evaluation set.

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
from ..latents import STANDARD_NORMAL_ENTROPY, LatentSpec, gaussian_log_likelihood, sample_prior
from ..models import VAE, QNetwork
from ..perf.device import resolve_amp
from ..perf.fast_layers import use_matmul_layers
from .metrics import discrete_entropy, spacing_entropy

PATHS = ("generation", "reconstruction")


@dataclass(frozen=True)
class EstimatorSettings:
    """How hard to train Q and how many samples to score it on."""

    max_steps: int = 2000  # Q updates at most
    min_steps: int = 200  # never stop before this many
    batch_size: int = 128  # images per Q update
    lr: float = 1e-3  # Adam learning rate of Q
    eval_every: int = 100  # validation check cadence (steps)
    patience: int = 3  # stop after this many checks without an improvement of at least tol
    tol: float = 0.005  # nats
    n_val: int = 1000  # validation samples (early stopping)
    n_eval: int = 5000  # evaluation samples (the reported numbers)
    n_boot: int = 1000  # bootstrap resamples for the 95% intervals
    seed: int = 0  # seeds Q's weights and every sample
    amp: str = "none"  # "auto": train Q in bf16 where the device computes it natively (scoring is always fp32)
    ema: float = 0.99  # decay of the moving average of Q's weights that is validated and scored (0: off)


SETTINGS = {
    "smoke": EstimatorSettings(max_steps=30, min_steps=10, batch_size=64, eval_every=10, n_val=256, n_eval=512, n_boot=200, amp="auto"),
    "quick": EstimatorSettings(max_steps=500, min_steps=300, batch_size=64, eval_every=50, n_val=1000, n_eval=3000, amp="auto"),
    "full": EstimatorSettings(max_steps=5000, min_steps=500, batch_size=256, eval_every=250, n_val=5000, n_eval=20000),
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
    q_steps: int
    converged: bool  # stopped by the validation criterion (not by max_steps)
    n_eval: int
    seconds: float
    validation: list[tuple[int, float]] = field(default_factory=list)  # (step, summed bound) per check
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["components"] = {k: {**asdict(v), "ci95": list(v.ci95)} for k, v in self.components.items()}
        return d


def component_names(latent: LatentSpec) -> list[str]:
    """``categorical`` (when the model has one) then ``z0``, ``z1``, ..."""
    return (["categorical"] if latent.categorical else []) + [f"z{j}" for j in range(latent.continuous)]


class _Source:
    """Draws ``(images, category index or None, Gaussian codes)`` batches.

    Prior codes when ``images`` is None (generation path), else the encoder's hard codes of those
    images (reconstruction path). ``fixed_seed`` makes every pass draw the same samples (the
    validation and evaluation sets); otherwise the global RNG draws fresh ones (training).
    """

    def __init__(self, decode: Callable, latent: LatentSpec, device, encode=None, images: torch.Tensor | None = None, fixed_seed: int | None = None):
        self.decode, self.latent, self.device, self.encode, self.images = decode, latent, device, encode, images
        self.fixed_seed = fixed_seed

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else 0

    @torch.no_grad()
    def batch(self, n: int, start: int | None = None, generator: torch.Generator | None = None):
        if self.images is None:
            z, c = sample_prior(self.latent, n, self.device, generator)
        else:
            index = torch.arange(start, start + n) if start is not None else torch.randint(len(self.images), (n,))
            mu, _, logits = self.encode(self.images[index].to(self.device))
            z, c = mu, None if logits is None else torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1]).float()
        x = self.decode(self.latent.join(z, c)).detach()
        return x, (None if c is None else c.argmax(1)), z

    def passes(self, n: int, chunk: int = 500):
        """Chunks of the fixed set of ``n`` samples (the same ones on every call)."""
        generator = torch.Generator().manual_seed(self.fixed_seed) if self.images is None else None
        for start in range(0, n, chunk):
            yield self.batch(min(chunk, n - start), None if self.images is None else start, generator)


def _per_sample_ce(q: QNetwork, x: torch.Tensor, k: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
    """``-log Q(c | x~)`` per sample and component, ``[B, n_components]`` (categorical first)."""
    out = q(x)
    columns = []
    if k is not None:
        columns.append(torch.nn.functional.cross_entropy(out.logits, k, reduction="none")[:, None])
    columns.append(-gaussian_log_likelihood(z, out.mean, out.log_std))
    return torch.cat(columns, dim=1)


@torch.no_grad()
def _score(q: QNetwork, source: _Source, n: int) -> tuple[torch.Tensor, list]:
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


def _sources(decode, latent, encode, device, path, data, eval_data, s: EstimatorSettings) -> tuple[_Source, _Source, _Source]:
    """Training, validation and evaluation sources for one path."""
    if path == "generation":
        return (_Source(decode, latent, device), _Source(decode, latent, device, fixed_seed=s.seed + 1),
                _Source(decode, latent, device, fixed_seed=s.seed + 2))
    # reconstruction: Q trains on 90% of the training images, stops on the other 10%, is scored on eval_data
    perm = torch.randperm(len(data))
    n_val = min(s.n_val, len(data) // 10)
    images = data.images
    return (_Source(decode, latent, device, encode, images[perm[n_val:]]), _Source(decode, latent, device, encode, images[perm[:n_val]]),
            _Source(decode, latent, device, encode, eval_data.images))


def estimate_mi(model, latent: LatentSpec | None = None, *, path: str = "generation", data: ImageData | None = None,
                eval_data: ImageData | None = None, settings: EstimatorSettings | str = "quick", device: str | torch.device | None = None) -> MIEstimate:
    """Lower-bound the MI between every latent component and the generated images of a fixed model.

    Args:
        model: a :class:`~vmivae.runs.run.Run`, a :class:`~vmivae.models.VAE`, or any decoder callable
            mapping latents ``[B, D + K]`` (Gaussian values, then one-hot) to images ``[B, C, H, W]``.
        latent: the latent spec; needed only for a bare callable.
        path: ``generation`` (prior codes, exact entropy) or ``reconstruction`` (encoder's hard codes of
            ``data`` to train Q, of ``eval_data`` to score it; needs a VAE).
        settings: an :class:`EstimatorSettings` or the name of one (``smoke``, ``quick``, ``full``).
        device: where Q trains; default: the model's device (cpu for a bare callable).
    """
    if path not in PATHS:
        raise ValueError(f"unknown path '{path}'; valid: {', '.join(PATHS)}")
    s = SETTINGS[settings] if isinstance(settings, str) else settings
    decode, model_latent, encode, model_device = _as_decoder(model)
    latent = latent or model_latent
    if latent is None:
        raise ValueError("a bare decoder callable needs its latent spec: estimate_mi(decoder, LatentSpec(...))")
    if path == "reconstruction" and (encode is None or data is None or eval_data is None):
        raise ValueError("the reconstruction path needs a VAE (or Run) and both data (train) and eval_data (test)")
    device = torch.device(device) if device is not None else model_device
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(s.seed)
        train, val, evaluation = _sources(decode, latent, encode, device, path, data, eval_data, s)
        n_val = len(val) or s.n_val
        n_eval = min(s.n_eval, len(evaluation)) if len(evaluation) else s.n_eval
        q = QNetwork(tuple(train.batch(2)[0].shape[1:]), latent.categorical, latent.continuous).to(device)
        use_matmul_layers(q)  # the same weights, its head faster on a CPU (vmivae.perf.fast_layers)
        opt = torch.optim.Adam(q.parameters(), lr=s.lr)
        # Each check validates the current Q and an exponential moving average of its weights (and
        # BatchNorm statistics), and keeps whichever is best on the validation samples: single Adam
        # iterates of a many-headed Q are noisy, but early in training the average lags behind them.
        ema = AveragedModel(q, multi_avg_fn=get_ema_multi_avg_fn(s.ema), use_buffers=True) if s.ema else None
        candidates = [q] + ([ema.module] if ema is not None else [])
        best, best_state, since, validation, step = float("inf"), None, 0, [], 0
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
                scores = [float(_score(c, val, n_val)[0].mean(0).sum()) for c in candidates]
                val_ce = min(scores)
                validation.append((step, val_ce))
                if val_ce < best - s.tol:
                    winner = candidates[scores.index(val_ce)]
                    best, best_state, since = val_ce, copy.deepcopy(winner.state_dict()), 0
                else:
                    since += 1
                if since >= s.patience and step >= s.min_steps:
                    break
        converged = step < s.max_steps
        if best_state is not None:
            q.load_state_dict(best_state)
        ce, codes = _score(q, evaluation, n_eval)
    entropy = _entropies(latent, path, codes)
    values = entropy[None, :] - ce.numpy()
    lo, hi = _bootstrap(values, s.n_boot, s.seed)
    means = values.mean(axis=0)
    components = {
        name: ComponentMI(float(means[i]), (float(lo[i]), float(hi[i])), float(entropy[i]),
                          float(means[i] / entropy[i]) if entropy[i] > 0 else float("nan"), path, float(ce[:, i].mean()))
        for i, name in enumerate(component_names(latent))
    }
    total_entropy = float(entropy.sum())
    curve = [(st, total_entropy - v) for st, v in validation]
    return MIEstimate(components, path, step, converged, n_eval, round(time.perf_counter() - start, 3), curve, asdict(s))


def _entropies(latent: LatentSpec, path: str, codes: list) -> np.ndarray:
    """``H(c)`` per component: exact for prior codes, estimated from the codes on the reconstruction path."""
    if path == "generation":
        cat = [np.log(latent.categorical)] if latent.categorical else []
        return np.array(cat + [STANDARD_NORMAL_ENTROPY] * latent.continuous)
    z = torch.cat([zc for _, zc in codes]).numpy()
    cat = [discrete_entropy(torch.cat([k for k, _ in codes]).numpy())] if latent.categorical else []
    return np.array(cat + [spacing_entropy(z[:, j]) for j in range(z.shape[1])])


def estimate_mi_refits(model, n_fits: int = 3, settings: EstimatorSettings | str = "quick", **kwargs) -> dict[str, dict]:
    """Repeat :func:`estimate_mi` with ``n_fits`` seeds: mean, std and a t-based 95% interval per component."""
    from scipy import stats

    base = SETTINGS[settings] if isinstance(settings, str) else settings
    fits = [estimate_mi(model, settings=EstimatorSettings(**{**asdict(base), "seed": base.seed + i}), **kwargs) for i in range(n_fits)]
    out = {}
    for name in fits[0].components:
        v = np.array([f.components[name].nats for f in fits])
        half = stats.t.ppf(0.975, n_fits - 1) * v.std(ddof=1) / np.sqrt(n_fits) if n_fits > 1 else float("nan")
        out[name] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if n_fits > 1 else 0.0,
                     "ci95": [float(v.mean() - half), float(v.mean() + half)], "fits": v.tolist()}
    return out
