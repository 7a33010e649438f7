"""Latent distributions: diagonal Gaussian and K-way categorical (Gumbel-softmax).

Everything here is a pure tensor function. Shapes: ``B`` batch, ``D`` Gaussian dims, ``K`` categories.
Natural logarithms throughout, so every entropy, KL and likelihood is in nats.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import ConfigError, ConfigTypeError  # the standard library only: a method module may raise them

# Differential entropy of N(0, 1): 0.5 * log(2 * pi * e) ~= 1.4189 nats.
STANDARD_NORMAL_ENTROPY = 0.5 * math.log(2 * math.pi * math.e)
_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class LatentSpec:
    """Which latent variables a model has.

    Attributes:
        continuous: number of Gaussian dims ``D`` (prior N(0, I)).
        categorical: number of categories ``K`` of the one discrete code, or None for no code.
    """

    continuous: int
    categorical: int | None = None

    def __post_init__(self):
        """Refuse, when built, a spec that no model can have (ConfigTypeError, a TypeError, or ConfigError, a ValueError: one sentence each)."""
        for name, value in (("continuous", self.continuous), ("categorical", self.categorical)):
            if value is None and name == "categorical":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigTypeError(f"LatentSpec {name} must be a whole number, got {value!r}; e.g. LatentSpec(continuous=16, categorical=10)")
            object.__setattr__(self, name, int(value))  # numpy integers become plain ints
        if self.continuous < 0:
            raise ConfigError(f"LatentSpec continuous (the number of Gaussian dims) must be 0 or more, got {self.continuous}")
        if self.categorical is not None and self.categorical < 2:
            raise ConfigError(f"LatentSpec categorical (the categories K of the code) must be at least 2 or None for no code, got {self.categorical}")
        if not self.continuous and self.categorical is None:
            raise ConfigError("LatentSpec(0) has no latent component; give at least one Gaussian dim or a categorical code, e.g. LatentSpec(0, 10)")

    @property
    def dim(self) -> int:
        """Size of the decoder input: ``D`` Gaussian values then ``K`` (relaxed) one-hot values."""
        return self.continuous + (self.categorical or 0)

    @property
    def n_params(self) -> int:
        """Encoder output size: ``mu`` and ``logvar`` per Gaussian dim, then ``K`` logits."""
        return 2 * self.continuous + (self.categorical or 0)

    def split_params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Split an encoder output ``[B, n_params]`` into ``mu [B, D]``, ``logvar [B, D]``, ``logits [B, K]``."""
        d = self.continuous
        logits = h[:, 2 * d :] if self.categorical else None
        return h[:, :d], h[:, d : 2 * d], logits

    def join(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """Decoder input ``[B, dim]`` from Gaussian values ``z`` and the (relaxed) one-hot code ``c``."""
        return z if c is None else torch.cat([z, c], dim=1)


# ----------------------------------------------------------------------------- Gaussian


def gaussian_sample(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """Reparameterised sample ``mu + sigma * eps``, ``eps ~ N(0, I)``; differentiable in mu and logvar.

    ``eps [B, D]`` is drawn here unless given.
    """
    eps = torch.randn_like(mu) if eps is None else eps
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) for every element, ``[B, D]``.

    Closed form (Kingma & Welling 2014, appendix B): 0.5 * (mu^2 + sigma^2 - 1 - log sigma^2).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL to the N(0, I) prior summed over dims and averaged over the batch (a scalar)."""
    return gaussian_kl_per_dim(mu, logvar).sum(dim=1).mean()


def gaussian_log_likelihood(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mean, exp(log_std)^2), same shape as ``x``."""
    return -0.5 * ((x - mean) * torch.exp(-log_std)).pow(2) - log_std - 0.5 * _LOG_2PI


# ----------------------------------------------------------------------------- categorical


def gumbel_noise(shape: tuple[int, ...], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel(0, 1) draws ``g = -log E``, ``E ~ Exp(1)``: unlike ``-log(-log U)`` it never takes log(0)."""
    return -torch.empty(shape, device=device, dtype=dtype).exponential_(generator=generator).log()


def gumbel_softmax_sample(logits: torch.Tensor, tau: float | torch.Tensor, gumbel: torch.Tensor | None = None) -> torch.Tensor:
    """Relaxed one-hot sample ``softmax((logits + g) / tau)`` with Gumbel noise ``g``, ``[B, K]``.

    Maddison et al. 2017 / Jang et al. 2017. ``g [B, K]`` (:func:`gumbel_noise`) is drawn here unless
    given. As ``tau -> 0`` the sample approaches ``one_hot(argmax(logits + g))``.
    """
    gumbel = gumbel_noise(logits.shape, logits.device, logits.dtype) if gumbel is None else gumbel
    return F.softmax((logits + gumbel) / tau, dim=-1)


def one_hot_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Hard one-hot code of the most probable category (used at evaluation), ``[B, K]``."""
    return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)


def categorical_kl_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits) || Uniform(K)) = sum_k p_k (log p_k + log K), per sample ``[B]``."""
    log_p = F.log_softmax(logits, dim=-1)
    return (log_p.exp() * (log_p + math.log(logits.shape[-1]))).sum(dim=-1)


def categorical_log_likelihood(c: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``sum_k c_k log softmax(logits)_k`` per sample ``[B]``; ``c`` may be one-hot or relaxed."""
    return (c * F.log_softmax(logits, dim=-1)).sum(dim=-1)


# ----------------------------------------------------------------------------- prior and schedule


def sample_prior(spec: LatentSpec, n: int, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Draw ``n`` latents from the prior: ``z ~ N(0, I)`` ``[n, D]`` and a uniform hard one-hot ``c`` ``[n, K]``.

    With a ``generator`` the draw is reproducible independently of the global RNG: it is made on the
    generator's device, then moved to ``device``.
    """
    where = generator.device if generator is not None else device
    z = torch.randn(n, spec.continuous, generator=generator, device=where).to(device)
    c = None
    if spec.categorical:
        k = torch.randint(spec.categorical, (n,), generator=generator, device=where).to(device)
        c = F.one_hot(k, spec.categorical).float()
    return z, c


def temperature_at(step: int, tau0: float = 1.0, tau_min: float = 0.5, rate: float = 1.5e-5, interval: int = 1000) -> float:
    """Gumbel-softmax temperature at a training step: ``max(tau0 * exp(-rate * t), tau_min)``.

    ``t`` is the step rounded down to a multiple of ``interval``: the temperature is refreshed every
    ``interval`` steps, as in the paper. (The reference code meant this schedule but returned ``tau0``
    on almost every step; see the book's list of deviations.)
    """
    t = (step // interval) * interval
    return max(tau0 * math.exp(-rate * t), tau_min)
