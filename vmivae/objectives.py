"""The VMI-VAE objective as pure tensor functions, each written once.

The VAE minimises (paper, reference code; :func:`vae_loss`)::

    loss_vae = recon(x_hat, x) + kl_weight * (KL_cont + KL_cat) + lambda_cat * CE_cat + lambda_cont * CE_cont
               - entropy_weight * H(c)          (0 in the paper's loss)

Two levers beyond the paper (:func:`kl_terms`; off by default, and then the loss is the paper's bit for bit):
a separate weight for each part's KL, and a capacity per part (JointVAE, Dupont 2018): the part's
weighted KL becomes ``gamma * |KL - C(t)|`` with ``C`` rising linearly from ``start`` to ``end`` nats.

and Q minimises ``CE_cat + CE_cont`` on detached images (:func:`q_loss`). The cross-entropies come from the variational
lower bound on the mutual information between a latent component ``c`` and the decoded image ``x~``
(Barber & Agakov 2003; InfoGAN, Chen et al. 2016)::

    I(c; x~) = H(c) - H(c | x~) >= H(c) + E_{c, x~}[log Q(c | x~)] = H(c) - CE

for any distribution Q, with equality when Q(c | x~) is the true posterior p(c | x~).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .latents import STANDARD_NORMAL_ENTROPY, categorical_kl_uniform, categorical_log_likelihood, gaussian_kl, gaussian_log_likelihood
from .models import VAEOutput

RECON_LOSSES = ("mse", "gaussian", "bernoulli")
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def reconstruction_loss(x_hat: torch.Tensor, x_pre: torch.Tensor, x: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Reconstruction term for images ``x`` in [-1, 1], a scalar.

    * ``mse``: mean squared error over every pixel (the paper's choice; note it is *mean*-reduced,
      which is why the paper's KL weight of 0.005 is small).
    * ``gaussian``: negative log-likelihood of ``x`` under N(x_hat, 1) per pixel, summed over pixels
      and averaged over the batch, in nats.
    * ``bernoulli``: negative log-likelihood of ``(x + 1) / 2`` under Bernoulli(sigmoid(2 x_pre)),
      summed over pixels and averaged over the batch. ``sigmoid(2 a) = (tanh(a) + 1) / 2``, so the
      Bernoulli mean is exactly the decoder's tanh output mapped to [0, 1].
    """
    if kind == "mse":
        return F.mse_loss(x_hat, x)
    per_image = x[0].numel()
    if kind == "gaussian":
        return 0.5 * (x_hat - x).pow(2).sum() / x.shape[0] + per_image * _HALF_LOG_2PI
    if kind == "bernoulli":
        bce = F.binary_cross_entropy_with_logits(2.0 * x_pre, (x + 1.0) / 2.0, reduction="sum")
        return bce / x.shape[0]
    raise ValueError(f"unknown reconstruction loss '{kind}'; valid: {', '.join(RECON_LOSSES)}")


def categorical_cross_entropy(q_logits: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``CE_cat = -E[sum_k c_k log Q(k | x~)]``, batch mean, for one-hot or relaxed targets ``c [B, K]``."""
    return -categorical_log_likelihood(c, q_logits).mean()


def gaussian_cross_entropy(q_mean: torch.Tensor, q_log_std: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``CE_cont = -E[sum_j log N(z_j; mean_j, std_j^2)]``: summed over the ``M`` dims, batch mean."""
    return -gaussian_log_likelihood(z, q_mean, q_log_std).sum(dim=1).mean()


def aggregate_code_entropy(logits: torch.Tensor, source: str = "reconstruction") -> torch.Tensor:
    """Batch estimate of ``H(c)`` for the categorical codes Q must recover, in nats (a scalar).

    On the reconstruction path the codes are the encoder's samples, distributed as the aggregate
    posterior ``q(c) = E_x q(c | x)``; the estimate is the entropy of the batch mean of the posteriors,
    ``H(mean_b softmax(logits_b))``. With ``source="both"`` half of the codes come from the uniform
    prior, so their mixture ``(q(c) + 1/K) / 2`` is used; ``source="generation"`` gives ``log K`` exactly.

    ``I(c; x~) >= H(c) - CE`` needs this term: the paper's loss drops it as a constant, but on the
    reconstruction path it is not one, and without it an encoder lowers CE by using fewer categories.
    The entropy is concave, so for a batch of ``B`` images the estimate is biased low (Jensen), to first
    order in ``1 / B`` by ``sum_k Var_x[q(k | x)] / (2 B q(k))`` nats, which is largest for hard posteriors:
    ``(K - 1) / (2 B)``, 0.036 nats for K = 10 at the paper's batch of 124 (more for small batches).
    """
    k = logits.shape[-1]
    if source == "generation":
        return logits.new_tensor(prior_entropy(k))
    mean = F.softmax(logits.float(), dim=-1).mean(dim=0)
    if source == "both":
        mean = 0.5 * mean + 0.5 / k
    return -(mean * mean.clamp_min(1e-12).log()).sum()


def mi_lower_bound(entropy: float | torch.Tensor, cross_entropy: float | torch.Tensor) -> float | torch.Tensor:
    """Variational lower bound ``I(c; x~) >= H(c) - CE`` in nats.

    A true bound only when ``entropy`` is the exact entropy of the codes that were decoded, e.g.
    codes drawn from the prior: see :func:`prior_entropy`.
    """
    return entropy - cross_entropy


def prior_entropy(categorical: int | None = None, continuous: int = 0) -> float:
    """Entropy in nats of codes drawn from the prior: ``log K`` for a uniform K-way code plus
    ``0.5 log(2 pi e)`` per N(0, 1) Gaussian dim."""
    return (math.log(categorical) if categorical else 0.0) + continuous * STANDARD_NORMAL_ENTROPY


@dataclass(frozen=True)
class MIComponents:
    """Which latent components enter the MI bound.

    Attributes:
        categorical: whether the categorical code is in the bound.
        dims: indices of the Gaussian dims in the bound.
    """

    categorical: bool = False
    dims: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.categorical and not self.dims


def mi_cross_entropies(
    q_logits: torch.Tensor | None,
    q_mean: torch.Tensor | None,
    q_log_std: torch.Tensor | None,
    c_target: torch.Tensor | None,
    z_target: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(CE_cat, CE_cont)`` for whichever components are present; an absent one is a zero scalar."""
    ref = q_logits if q_logits is not None else q_mean
    zero = ref.new_zeros(())
    ce_cat = categorical_cross_entropy(q_logits, c_target) if q_logits is not None else zero
    ce_cont = gaussian_cross_entropy(q_mean, q_log_std, z_target) if q_mean is not None else zero
    return ce_cat, ce_cont


def decoded_codes(out: VAEOutput, source: str) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """The images that enter the bound and every code behind them.

    ``source`` picks the images: ``reconstruction`` (codes: the encoder's relaxed sample ``c`` and
    Gaussian sample ``z``, as in the reference joint model), ``generation`` (codes: the prior codes,
    whose entropy is known exactly), or ``both`` (concatenated, as in the reference Gaussian model).
    Returns ``(images [N, C, H, W], c [N, K] or None, z [N, D])``.
    """
    parts = []
    if source in ("reconstruction", "both"):
        parts.append((out.x_hat, out.c, out.z))
    if source in ("generation", "both"):
        if out.x_prior is None:
            raise ValueError("source includes generation but the VAE pass decoded no prior codes (n_prior=0)")
        parts.append((out.x_prior, out.c_prior, out.z_prior))
    if not parts:
        raise ValueError(f"unknown MI source '{source}'; valid: reconstruction, generation, both")
    if len(parts) == 1:
        return parts[0]
    images, c, z = zip(*parts)
    return torch.cat(images), (torch.cat(c) if c[0] is not None else None), torch.cat(z)


def mi_batch(out: VAEOutput, source: str, components: MIComponents) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The images that enter the bound (:func:`decoded_codes`) and the codes Q must recover from them.

    Returns ``(images [N, C, H, W], c_target [N, K] or None, z_target [N, M] or None)``, ``M = len(components.dims)``.
    """
    images, c, z = decoded_codes(out, source)
    c_target = c if components.categorical else None
    z_target = z[:, list(components.dims)] if components.dims else None
    return images, c_target, z_target


# ----------------------------------------------------------------------------- the two losses


class LossTerms(NamedTuple):
    """The scalar terms of one step's losses: the ELBO's, Q's cross-entropies, and the batch estimate of H(c)."""

    recon: torch.Tensor
    kl_cont: torch.Tensor
    kl_cat: torch.Tensor
    ce_cat: torch.Tensor
    ce_cont: torch.Tensor
    h_cat: torch.Tensor


class Capacity(NamedTuple):
    """A capacity term ``gamma * |KL - target|`` at one step (JointVAE): numbers or device scalars."""

    gamma: float | torch.Tensor
    target: float | torch.Tensor  # C(t) in nats, from capacity_at


def capacity_at(step: float | torch.Tensor, start: float, end: float, steps: int) -> float | torch.Tensor:
    """``C(t) = start + (end - start) * min(t / steps, 1)`` nats: linear over ``steps`` steps, then held at ``end``.

    ``step`` may be a device scalar (the training step counts on the device, so a captured step never reads the host).
    """
    fraction = step / steps
    fraction = fraction.clamp(max=1.0) if isinstance(fraction, torch.Tensor) else min(fraction, 1.0)
    return start + (end - start) * fraction


def capacity_penalty(kl: torch.Tensor, capacity: Capacity) -> torch.Tensor:
    """``gamma * |KL - C|``: pulls the KL towards the capacity from either side."""
    return capacity.gamma * (kl - capacity.target).abs()


class LossWeights(NamedTuple):
    """The weights of the VAE's loss: numbers, or one tensor per run when runs train as a group.

    ``kl_weight`` weighs both KL terms unless ``kl_weight_cat`` is given, then it weighs KL_cont only;
    a part with a :class:`Capacity` has ``gamma * |KL - C|`` in place of its weighted KL.
    """

    kl_weight: float | torch.Tensor
    lambda_cat: float | torch.Tensor
    lambda_cont: float | torch.Tensor
    entropy_weight: float | torch.Tensor  # of + H(c): 0 is the paper's loss, lambda_cat the true bound on the code
    kl_weight_cat: float | torch.Tensor | None = None  # None: kl_weight on KL_cont + KL_cat (one product, the paper's loss)
    capacity_cont: Capacity | None = None
    capacity_cat: Capacity | None = None


def elbo_terms(out: VAEOutput, x: torch.Tensor, recon_loss: str = "mse") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The negative ELBO's terms for one VAE pass on images ``x``: ``(recon, KL_cont, KL_cat)``, scalars (KL_cat 0 without a code)."""
    recon = reconstruction_loss(out.x_hat, out.x_pre, x, recon_loss)
    kl_cont = gaussian_kl(out.mu, out.logvar)
    kl_cat = categorical_kl_uniform(out.logits).mean() if out.logits is not None else recon.new_zeros(())
    return recon, kl_cont, kl_cat


def kl_terms(terms: LossTerms, weights: LossWeights) -> torch.Tensor:
    """The KL part of the VAE's loss: ``kl_weight (KL_cont + KL_cat)`` (the paper's), or per part
    ``kl_weight KL_cont`` / ``kl_weight_cat KL_cat``, a part with a capacity contributing ``gamma |KL - C|`` instead."""
    w = weights
    if w.kl_weight_cat is None and w.capacity_cont is None and w.capacity_cat is None:
        return w.kl_weight * (terms.kl_cont + terms.kl_cat)
    cont = capacity_penalty(terms.kl_cont, w.capacity_cont) if w.capacity_cont is not None else w.kl_weight * terms.kl_cont
    if w.capacity_cat is not None:
        return cont + capacity_penalty(terms.kl_cat, w.capacity_cat)
    return cont + (w.kl_weight if w.kl_weight_cat is None else w.kl_weight_cat) * terms.kl_cat


def vae_loss(terms: LossTerms, weights: LossWeights) -> torch.Tensor:
    """``recon + kl_weight (KL_cont + KL_cat) + lambda_cat CE_cat + lambda_cont CE_cont - entropy_weight H(c)``
    (the KL part per :func:`kl_terms`).

    With ``entropy_weight = lambda_cat`` the code's part is ``-lambda_cat (H(c) - CE_cat)``: minus lambda
    times the lower bound on ``I(c; x~)``.
    """
    w = weights
    return (terms.recon + kl_terms(terms, w) + w.lambda_cat * terms.ce_cat
            + w.lambda_cont * terms.ce_cont - w.entropy_weight * terms.h_cat)


def q_loss(ce_cat: torch.Tensor, ce_cont: torch.Tensor) -> torch.Tensor:
    """Q's loss ``CE_cat + CE_cont``: both cross-entropies, unweighted (Q only tightens the bound)."""
    return ce_cat + ce_cont
