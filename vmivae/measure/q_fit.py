"""Pieces of fitting Q that :func:`vmivae.measure.mi.estimate_mi` puts together.

* :class:`Source`: fresh batches of decoded codes for training, or a fixed set, decoded once, for
  validation and evaluation.
* :func:`warm_start`: start Q from the run's own trained Q for the components that were in its bound.
* :func:`calibrate`: refit Q's last layer in closed form on the validation samples.
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

    The layer is linear in Q's features, so three corrections are exact changes of its weights: a
    temperature for the logits (the best of a grid), and per Gaussian dim the weighted least-squares
    affine map of the mean and the log-std offset ``0.5 log E[r^2]`` (``r``: the standardised residual)
    that minimise the cross-entropy on these samples. Q learns the scale of its errors slowly; this
    gives it at once. Fitted on validation samples only, so the evaluation set stays unseen.
    """
    q.eval()
    with autocast:
        outs, ks, zs = zip(*[(q(x), k, z) for x, k, z in source.passes(n)])
    q.train()
    layer, k, d = q.net[-2], q.categorical, q.continuous
    weight, bias = layer.weight.view(layer.weight.shape[0], -1), layer.bias
    columns = []
    if k:
        logits, target = torch.cat([o.logits for o in outs]), torch.cat(ks)
        grid = torch.linspace(-2, 2, 41).exp()
        losses = torch.stack([torch.nn.functional.cross_entropy(logits / t, target) for t in grid])
        t = grid[losses.argmin()]
        weight[:k] /= t
        bias[:k] /= t
        columns.append(torch.nn.functional.cross_entropy(logits / t, target, reduction="none")[:, None])
    mean, log_std, z = torch.cat([o.mean for o in outs]).double(), torch.cat([o.log_std for o in outs]).double(), torch.cat(zs).double()
    w = torch.exp(-2 * log_std)  # 1 / s^2
    sw, sm, sz, smm, smz = (w.sum(0), (w * mean).sum(0), (w * z).sum(0), (w * mean * mean).sum(0), (w * mean * z).sum(0))
    det = sw * smm - sm * sm + 1e-9 * sw
    a, c = (sw * smz - sm * sz) / det, (smm * sz - sm * smz) / det
    offset = 0.5 * (w * (z - a * mean - c) ** 2).mean(0).log()
    weight[k : k + d] *= a[:, None].to(weight.dtype)
    bias[k : k + d] = a.to(bias.dtype) * bias[k : k + d] + c.to(bias.dtype)
    bias[k + d :] += offset.to(bias.dtype)
    columns.append(-gaussian_log_likelihood(z, a * mean + c, log_std + offset))
    return torch.cat([col.double() for col in columns], dim=1)


def gain_is_small(now: torch.Tensor, before: torch.Tensor, tol: float, noise_z: float) -> bool:
    """Whether the bound gained less than ``tol`` or ``noise_z`` standard errors from the validation
    cross-entropies ``before`` to ``now`` (``[n_val]`` each, summed over components, the same samples)."""
    gain = before - now
    return float(gain.mean()) < max(tol, noise_z * float(gain.std()) / len(gain) ** 0.5)
