"""Reference solutions of the book's coding exercises (shown in the book in hidden dropdowns).

Each is written as a student would, from the formula in the chapter, not by calling the package.
"""

from __future__ import annotations

import numpy as np
import torch


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Exercise 1.1: KL(N(mu, sigma^2) || N(0, 1)) for every element."""
    return 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar)


def gaussian_cross_entropy(
    mean: torch.Tensor, log_std: torch.Tensor, z: torch.Tensor
) -> torch.Tensor:
    """Exercise 2.1: -log N(z; mean, std^2), summed over the dims, batch mean."""
    std = log_std.exp()
    nll = 0.5 * ((z - mean) / std) ** 2 + log_std + 0.5 * np.log(2 * np.pi)
    return nll.sum(dim=1).mean()


def gumbel_softmax(
    logits: torch.Tensor, tau: float, u: torch.Tensor
) -> torch.Tensor:
    """Exercise 3.1: softmax((logits + g) / tau), g = -log(-log u), u ~ U(0, 1)."""
    g = -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-7)))
    return torch.softmax((logits + g) / tau, dim=-1)


def aggregate_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Exercise 3.2: H(mean_b softmax(logits_b)), the mean posterior's entropy."""
    p = torch.softmax(logits, dim=-1).mean(dim=0)
    return -(p * torch.log(p.clamp_min(1e-12))).sum()


def mi_from_confusion(prior: np.ndarray, confusion: np.ndarray) -> float:
    """Exercise 4.1: I(c; c') = sum_kl p(k) P(l|k) log(P(l|k) / p(l)).

    p(l) = sum_k p(k) P(l|k) is the distribution of the received pattern.
    """
    joint = prior[:, None] * confusion
    marginal = joint.sum(axis=0)
    nonzero = joint > 0
    ratio = (confusion / marginal[None, :])[nonzero]
    return float((joint[nonzero] * np.log(ratio)).sum())


def sign_flip_p(d: np.ndarray) -> float:
    """Exercise 5.1: the exact two-sided sign-flip p-value of paired differences d.

    Under "no difference" each seed's sign is a coin flip.
    """
    import itertools

    signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(d))))
    flipped = np.abs((signs * d).mean(axis=1))  # every sign pattern
    return float(np.mean(flipped >= abs(d.mean()) - 1e-12))
