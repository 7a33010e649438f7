"""Channels whose mutual information is known exactly, to validate :func:`vmivae.measure.mi.estimate_mi`.

Each channel is a "decoder" from a latent code (2 Gaussian dims + a 10-way code) to 28x28 images:

* ``clean``: the left half of the image shows one of 10 fixed random binary patterns, picked by the
  code (invertible: ``I = log 10``); the right half is a flat patch of brightness ``z0 + sigma * noise``
  (a Gaussian channel: ``I = 0.5 log(1 + 1 / sigma^2)``); ``z1`` is ignored (``I = 0``).
* ``confused``: the pattern shown is the code's with probability ``1 - eps`` and each other one with
  probability ``eps / 9``; ``I`` follows exactly from the confusion matrix. ``z0`` and ``z1`` are ignored.

An estimator that works lands close to the truth and never significantly above it (it is a bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..latents import LatentSpec
from . import checks
from .metrics import categorical_mi_exact
from .mi import EstimatorSettings, estimate_mi

K = 10
SPEC = LatentSpec(continuous=2, categorical=K)
SIZE = 28


def _patterns(seed: int = 0) -> torch.Tensor:
    """10 distinct random binary patterns for the left half of a 28x28 image, ``[K, 1, 28, 28]`` in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    left = (torch.rand(K, 1, SIZE, SIZE // 2, generator=g) > 0.5).float() * 2 - 1
    return torch.cat([left, torch.full((K, 1, SIZE, SIZE // 2), -1.0)], dim=3)


@dataclass
class CleanChannel:
    """Invertible code, Gaussian channel on z0 with noise ``sigma``, z1 ignored."""

    sigma: float = 0.5

    def __post_init__(self):
        self.patterns = _patterns()
        self.patch = torch.zeros(1, 1, SIZE, SIZE)
        self.patch[..., SIZE // 2 :] = 1.0

    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        z0, code = latent[:, 0], latent[:, SPEC.continuous :].argmax(1)
        brightness = z0 + self.sigma * torch.randn_like(z0)
        return self.patterns.to(latent.device)[code] + brightness[:, None, None, None] * self.patch.to(latent.device)

    def truth(self) -> dict[str, float]:
        return {"categorical": math.log(K), "z0": 0.5 * math.log(1 + 1 / self.sigma**2), "z1": 0.0}


@dataclass
class ConfusedChannel:
    """The code's pattern with probability ``1 - eps``, each other pattern with ``eps / (K - 1)``."""

    eps: float = 0.3

    def __post_init__(self):
        self.patterns = _patterns()

    @property
    def confusion(self) -> np.ndarray:
        return np.full((K, K), self.eps / (K - 1)) + np.eye(K) * (1 - self.eps - self.eps / (K - 1))

    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        code = latent[:, SPEC.continuous :].argmax(1)
        confused = torch.multinomial(torch.as_tensor(self.confusion, dtype=torch.float32, device=latent.device)[code], 1)[:, 0]
        return self.patterns.to(latent.device)[confused]

    def truth(self) -> dict[str, float]:
        return {"categorical": categorical_mi_exact(np.full(K, 1 / K), self.confusion), "z0": 0.0, "z1": 0.0}


def validate_estimator(settings: EstimatorSettings | str = "quick", sigma: float = 0.5, eps: float = 0.3) -> pd.DataFrame:
    """Estimate every component of both channels; one row per (channel, component) with the truth."""
    checks.validation_args(sigma, eps)  # before any work (the settings: by estimate_mi, before its work)
    rows = []
    for name, channel in ((f"clean (sigma={sigma:g})", CleanChannel(sigma)), (f"confused (eps={eps:g})", ConfusedChannel(eps))):
        estimate = estimate_mi(channel, SPEC, settings=settings)
        for component, truth in channel.truth().items():
            c = estimate.components[component]
            rows.append({"channel": name, "component": component, "truth": truth, "estimate": c.nats, "lo": c.ci95[0], "hi": c.ci95[1],
                         "q_steps": estimate.q_steps, "seconds": estimate.seconds})
    return pd.DataFrame(rows)
