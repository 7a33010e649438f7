"""Pieces of fitting Q that :func:`vmivae.measure.mi.estimate_mi` puts together.

* :class:`Source`: fresh batches of decoded codes for training, or a fixed set, decoded once, for
  validation and evaluation.
* :func:`warm_start`: start Q from the run's own trained Q for the components that were in its bound.
* :func:`calibrate`: refit Q's last layer in closed form on the validation samples.
* :func:`refit_head`: fit Q's last layer as a linear model of its features on fresh training samples.
* :func:`gain_is_small`: the stopping test, the bound's gain over a window against its noise.

None of them can make the reported number exceed the bound: whatever Q is, ``H(c) - E[-log Q(c | x~)]``
is a lower bound on ``I(c; x~)`` when the expectation is over samples Q was not fitted on, and only the
training batches and the validation set ever shape Q, never the evaluation set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..latents import LatentSpec, gaussian_log_likelihood, sample_prior
from ..models import QNetwork


class Source:
    """Draws ``(images, category index or None, Gaussian codes)`` batches.

    Prior codes when ``images`` is None (generation path), else the encoder's hard codes of those
    images (reconstruction path). ``fixed_seed`` makes :meth:`passes` draw the same samples every time
    (the validation and evaluation sets); :meth:`batch` alone draws fresh ones from the global RNG (training).
    """

    def __init__(self, decode: Callable, latent: LatentSpec, device, encode=None, images: torch.Tensor | None = None, fixed_seed: int | None = None):
        self.decode, self.latent, self.device, self.encode, self.images = decode, latent, device, encode, images
        self.fixed_seed = fixed_seed
        # reconstruction path: each image's hard codes, filled in as images are first drawn (see _codes)
        self._z = self._k = None
        self._known = None if images is None else torch.zeros(len(images), dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else 0

    @torch.no_grad()
    def batch(self, n: int, start: int | None = None, generator: torch.Generator | None = None):
        if self.images is None:
            z, c = sample_prior(self.latent, n, self.device, generator)
        else:
            index = torch.arange(start, start + n) if start is not None else torch.randint(len(self.images), (n,))
            z, c = self._codes(index)
        x = self.decode(self.latent.join(z, c)).detach()
        return x, (None if c is None else c.argmax(1)), z

    def _codes(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The encoder's hard codes (posterior means, one-hot argmax) of ``images[index]``. Each image is encoded once
        and its codes kept: Q's training draws the same images many times, and the frozen encoder gives them the
        same codes every time (a drawn batch then costs a decode, not an encode as well)."""
        new = index[~self._known[index]].unique()
        if len(new):
            mu, _, logits = self.encode(self.images[new].to(self.device))
            if self._z is None:
                self._z = mu.new_zeros(len(self.images), mu.shape[1])
                self._k = None if logits is None else torch.zeros(len(self.images), dtype=torch.long, device=mu.device)
            self._z[new.to(mu.device)] = mu
            if logits is not None:
                self._k[new.to(mu.device)] = logits.argmax(1)
            self._known[new] = True
        on = index.to(self._z.device)
        k = None if self._k is None else torch.nn.functional.one_hot(self._k[on], self.latent.categorical).float()
        return self._z[on], k

    def passes(self, n: int, chunk: int = 500) -> list:
        """Chunks of the fixed set of ``n`` samples, decoded once and kept (the same ones on every call)."""
        if getattr(self, "_kept", (None, 0))[1] != n:
            generator = torch.Generator().manual_seed(self.fixed_seed) if self.images is None else None
            self._kept = ([self.batch(min(chunk, n - start), None if self.images is None else start, generator) for start in range(0, n, chunk)], n)
        return self._kept[0]


@torch.no_grad()
def warm_start(q: QNetwork, model) -> list[str]:
    """Start ``q`` from the run's own trained Q: every layer but the last as it is, the last layer's rows for
    the code and the Gaussian dims that were in the run's bound; the other rows at zero, so their heads
    start at a uniform category or N(0, 1) (a bound of 0). Returns the warm components (none for a model without Q)."""
    trained, components = getattr(model, "q", None), getattr(getattr(model, "config", None), "components", None)
    if trained is None or components is None:
        return []
    head, old = q.net[-2], trained.net[-2]  # the 1x1 convolution to logits, means and log-stds (Flatten is last)
    q.load_state_dict({k: v for k, v in trained.state_dict().items() if not k.startswith(f"net.{len(q.net) - 2}.")}, strict=False)
    k, d, k_old, m = q.categorical, q.continuous, trained.categorical, trained.continuous
    rows = ([(i, i) for i in range(k_old)] + [(k + j, k_old + i) for i, j in enumerate(components.dims)]
            + [(k + d + j, k_old + m + i) for i, j in enumerate(components.dims)])
    head.weight.zero_()
    head.bias.zero_()
    for new, source in rows:
        head.weight[new], head.bias[new] = old.weight[source], old.bias[source]
    return (["categorical"] if k_old else []) + [f"z{j}" for j in components.dims]


@torch.no_grad()
def calibrate(q: QNetwork, source: Source, n: int, autocast) -> torch.Tensor:
    """Refit ``q``'s last layer, in place, on the source's fixed set; per-sample cross-entropies ``[n, C]`` after.

    The layer is linear in Q's features, so these corrections are exact changes of its weights: a scale
    ``u >= 0`` of the logits (``u = 0``: the uniform category), and per Gaussian dim an affine map of the
    mean and one of the log-std (``alpha log s + beta``; ``alpha = 0``: one spread for every image, the
    residuals' RMS), fitted jointly (:func:`refit_gaussian`) to minimise the cross-entropy on these samples.
    Q learns the scale of its errors slowly; this gives it at once. Fitted on validation samples only, so
    the evaluation set stays unseen.
    """
    q.eval()
    with autocast:
        outs, ks, zs = zip(*[(q(x), k, z) for x, k, z in source.passes(n)])
    q.train()
    layer, k, d = q.net[-2], q.categorical, q.continuous
    weight, bias = layer.weight.view(layer.weight.shape[0], -1), layer.bias
    columns = []
    if k:
        logits, target = torch.cat([o.logits for o in outs]).double(), torch.cat(ks)
        grid = torch.cat([torch.zeros(1), torch.linspace(-3, 2, 51).exp()]).double()
        losses = torch.stack([torch.nn.functional.cross_entropy(logits * u, target) for u in grid])
        u = grid[losses.argmin()]
        weight[:k] *= u.to(weight.dtype)
        bias[:k] *= u.to(bias.dtype)
        columns.append(torch.nn.functional.cross_entropy(logits * u, target, reduction="none")[:, None])
    mean, log_std, z = torch.cat([o.mean for o in outs]).double(), torch.cat([o.log_std for o in outs]).double(), torch.cat(zs).double()
    a, c, alpha, beta = refit_gaussian(mean, log_std, z)
    weight[k : k + d] *= a[:, None].to(weight.dtype)
    bias[k : k + d] = (a * bias[k : k + d].double() + c).to(bias.dtype)
    weight[k + d :] *= alpha[:, None].to(weight.dtype)
    bias[k + d :] = (alpha * bias[k + d :].double() + beta).to(bias.dtype)
    columns.append(-gaussian_log_likelihood(z, a * mean + c, alpha * log_std + beta))
    return torch.cat([col.double() for col in columns], dim=1)


def refit_gaussian(mean: torch.Tensor, log_std: torch.Tensor, z: torch.Tensor, rounds: int = 3) -> tuple[torch.Tensor, ...]:
    """Per dim, ``(a, c, alpha, beta)`` of ``N(z; a m + c, exp(alpha l + beta))`` fitted to ``[n, D]`` samples.

    Alternates the two exact minimisations of the cross-entropy: for a fixed spread, the mean's weighted
    least-squares fit; for fixed residuals ``r``, ``alpha l + beta + r^2 exp(-2 (alpha l + beta)) / 2`` is
    convex in ``(alpha, beta)`` (Newton steps, from ``alpha = 1`` with the best offset and from ``alpha = 0``;
    the lower one is kept). Neither step raises the cross-entropy, so the fit is never looser on these samples
    than the plain offset ``beta = 0.5 log E[r^2 / s^2]``.
    """
    alpha, beta = torch.ones_like(mean[0]), torch.zeros_like(mean[0])
    for _ in range(rounds):
        w = torch.exp(-2 * (alpha * log_std + beta))
        sw, sm, sz, smm, smz = (w.sum(0), (w * mean).sum(0), (w * z).sum(0), (w * mean * mean).sum(0), (w * mean * z).sum(0))
        det = sw * smm - sm * sm + 1e-9 * sw
        a, c = (sw * smz - sm * sz) / det, (smm * sz - sm * smz) / det
        r2 = (z - a * mean - c) ** 2 + 1e-12
        starts = [(alpha, beta), (torch.ones_like(alpha), 0.5 * (r2 * torch.exp(-2 * log_std)).mean(0).log()),
                  (torch.zeros_like(alpha), 0.5 * r2.mean(0).log())]
        fits = [_newton_spread(log_std, r2, *start) for start in starts]
        losses = torch.stack([_spread_loss(log_std, r2, *fit) for fit in fits])
        pick = losses.argmin(0)
        alpha, beta = (torch.stack([fit[i] for fit in fits]).gather(0, pick[None])[0] for i in (0, 1))
    return a, c, alpha, beta


def _spread_loss(log_std, r2, alpha, beta):
    s = alpha * log_std + beta
    return (s + 0.5 * r2 * torch.exp(-2 * s)).mean(0)


def _newton_spread(log_std, r2, alpha, beta, steps: int = 8):
    """Newton steps on the convex ``(alpha, beta)`` loss (``alpha`` kept in [0, 4], the step halved up to
    twice where the full one overshoots); a step is taken only where it lowers the loss."""
    for _ in range(steps):
        e = r2 * torch.exp(-2 * (alpha * log_std + beta))
        ga, gb = (log_std * (1 - e)).mean(0), (1 - e).mean(0)
        haa, hab, hbb = (2 * log_std * log_std * e).mean(0) + 1e-6, (2 * log_std * e).mean(0), (2 * e).mean(0)
        det = haa * hbb - hab * hab
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        loss = _spread_loss(log_std, r2, alpha, beta)
        for scale in (1.0, 0.5, 0.25):
            na, nb = (alpha - scale * da).clamp(0, 4), beta - scale * db
            better = _spread_loss(log_std, r2, na, nb) < loss
            alpha, beta, loss = torch.where(better, na, alpha), torch.where(better, nb, beta), torch.minimum(loss, _spread_loss(log_std, r2, na, nb))
    return alpha, beta


@torch.no_grad()
def refit_head(q: QNetwork, fit: Source, n_fit: int, val: Source, n_val: int, autocast, ridge: float = 1e-2, l2: float = 1e-4) -> None:
    """Refit ``q``'s last layer, in place, as the generalised linear model it is on Q's features.

    On ``n_fit`` fresh training samples: the means by ridge regression (penalty ``ridge`` times the sample
    count), the logits by L2-penalised multinomial logistic regression (L-BFGS); both convex, so the
    optimum is found, not approached by gradient steps while the features move. Then :func:`calibrate` on
    the validation samples, and per component the head (its logits, or a dim's mean and log-std rows) that
    gives the lower validation cross-entropy is kept, the refitted or the trained one.
    """
    features, ks, zs = [], [], []
    q.eval()
    for start in range(0, n_fit, 500):
        x, k, z = fit.batch(min(500, n_fit - start))
        with autocast:
            features.append(q.net[:-2](x).flatten(1).double())
        ks.append(k)
        zs.append(z.double())
    q.train()
    f = torch.cat(features)
    f = torch.cat([f, torch.ones_like(f[:, :1])], 1)
    penalty = torch.eye(f.shape[1], dtype=f.dtype)
    penalty[-1, -1] = 0  # the bias is not penalised
    layer, k, d = q.net[-2], q.categorical, q.continuous
    new = torch.cat([layer.weight.view(layer.weight.shape[0], -1), layer.bias[:, None]], 1).double()  # [rows, features + 1]
    new[k : k + d] = torch.linalg.solve(f.T @ f + ridge * len(f) * penalty, f.T @ torch.cat(zs)).T
    if k:
        new[:k] = _logistic_regression(f, torch.cat(ks), new[:k].T.contiguous(), l2, penalty).T
    before = calibrate(q, val, n_val, autocast).mean(0)  # the trained head, calibrated (it was at its best check)
    calibrated = {name: p.clone() for name, p in layer.state_dict().items()}
    layer.weight.copy_(new[:, :-1].view_as(layer.weight))
    layer.bias.copy_(new[:, -1])
    after = calibrate(q, val, n_val, autocast).mean(0)
    keep = after > before  # per component: the trained head was better on the validation samples
    rows = torch.cat([keep[:1].expand(k), keep[-d:], keep[-d:]]) if k else torch.cat([keep, keep])
    for name, p in layer.state_dict().items():
        p[rows] = calibrated[name][rows]


def _logistic_regression(f: torch.Tensor, target: torch.Tensor, w: torch.Tensor, l2: float, penalty: torch.Tensor) -> torch.Tensor:
    """Weights ``[features, K]`` of the L2-penalised multinomial logistic regression, from ``w``."""
    w.requires_grad_(True)
    opt = torch.optim.LBFGS([w], max_iter=100, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        value = torch.nn.functional.cross_entropy(f @ w, target) + l2 * (penalty.diagonal()[:, None] * w * w).sum()
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(loss)
    return w.detach()


def gain_is_small(now: torch.Tensor, before: torch.Tensor, tol: float, noise_z: float) -> bool:
    """Whether the bound gained less than ``tol`` or ``noise_z`` standard errors from the validation
    cross-entropies ``before`` to ``now`` (``[n_val]`` each, summed over components, the same samples)."""
    gain = before - now
    return float(gain.mean()) < max(tol, noise_z * float(gain.std()) / len(gain) ** 0.5)
