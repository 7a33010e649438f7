"""The book's coding exercises: a checker for each, and the reference solutions the book shows.

In a chapter, a student writes one piece of the method and runs ``check("name", their_function)``: it
compares the function with the package's own implementation on random inputs and prints one line that
says whether it is right (or what is wrong). Then the chapter runs the student's function inside its own
training loop and ``in_the_loop`` compares that run with the chapter's, step by step, in one more line: a
wrong answer shows up in the losses. A function that still raises ``NotImplementedError`` is reported as
not attempted, so an unsolved exercise never stops a notebook. The solutions live in
``vmivae/teaching/exercise_solutions.py``; each chapter shows its solution in a hidden dropdown (a test keeps
the two the same). The tests run every solution through its checker and every checker against a wrong answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..latents import gaussian_kl_per_dim
from ..measure.metrics import categorical_mi_exact
from ..objectives import aggregate_code_entropy, gaussian_cross_entropy


@dataclass(frozen=True)
class Exercise:
    title: str
    check: Callable[[Callable], str | None]  # None when right, else what is wrong


def _close(got, want, what: str, tol: float = 1e-4) -> str | None:
    got, want = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(want, dtype=torch.float64)
    if got.shape != want.shape:
        return f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    err = float((got - want).abs().max()) if got.numel() else 0.0
    return None if err <= tol * (1 + float(want.abs().max())) else f"{what} is off by up to {err:.3g}"


def _check_gaussian_kl(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    return _close(fn(mu, logvar), gaussian_kl_per_dim(mu, logvar), "KL(N(mu, sigma^2) || N(0, 1)) per element")


def _check_gaussian_cross_entropy(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    mean, log_std, z = (torch.randn(64, 2, generator=g) for _ in range(3))
    return _close(fn(mean, log_std, z), gaussian_cross_entropy(mean, log_std, z), "CE_cont (summed over dims, batch mean)")


def _check_gumbel_softmax(fn) -> str | None:
    """Shape, simplex, the temperature limit, and argmax frequencies equal to softmax(logits).

    ``fn(logits, tau, u)`` gets its uniform noise ``u`` from the caller (so that a run can be repeated exactly).
    """
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = probs.log().repeat(20_000, 1)
    u = torch.rand(logits.shape, generator=torch.Generator().manual_seed(0))
    y = fn(logits, 0.5, u)
    if tuple(y.shape) != tuple(logits.shape):
        return f"the sample has shape {tuple(y.shape)}, expected {tuple(logits.shape)}"
    if (y < 0).any() or not torch.allclose(y.sum(-1), torch.ones(len(y)), atol=1e-4):
        return "each sample must be a point of the simplex (non-negative, summing to 1)"
    freq = torch.bincount(y.argmax(-1), minlength=4).double() / len(y)
    if (freq - probs.double()).abs().max() > 0.02:
        return f"argmax frequencies {freq.numpy().round(3).tolist()} do not match the probabilities {probs.tolist()}: is the noise Gumbel?"
    cold = fn(logits[:200], 0.01, u[:200])
    if (cold.max(-1).values < 0.99).float().mean() > 0.05:
        return "at a temperature near 0 the samples should be (nearly) one-hot: divide by tau"
    return None


def _check_aggregate_entropy(fn) -> str | None:
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(124, 10, generator=g)
    problem = _close(fn(logits), aggregate_code_entropy(logits), "H(mean of softmax(logits))")
    if problem and abs(float(fn(logits)) - float(-(F.softmax(logits, -1) * F.log_softmax(logits, -1)).sum(-1).mean())) < 1e-4:
        return "that is the mean entropy of each posterior, E_x H(q(c|x)); the bound needs the entropy of their mean, H(E_x q(c|x))"
    return problem


def _check_mi_from_confusion(fn) -> str | None:
    rng = np.random.default_rng(0)
    for k in (2, 5, 10):
        prior = rng.dirichlet(np.ones(k))
        confusion = rng.dirichlet(np.ones(k), size=k)
        problem = _close(fn(prior, confusion), categorical_mi_exact(prior, confusion), f"I(c; c') for K = {k}")
        if problem:
            return problem
    eye = np.eye(4)
    return _close(fn(np.full(4, 0.25), eye), math.log(4), "I for a noiseless channel (should be log K)")


def _check_sign_flip_p(fn) -> str | None:
    from ..measure.stats import sign_flip_p

    for d in (np.array([0.21, 0.19, 0.20]), np.array([0.05, -0.02, 0.11, 0.04]), np.array([0.3, -0.1, 0.2, 0.1, 0.25])):
        problem = _close(float(fn(d)), sign_flip_p(d), f"the two-sided sign-flip p-value of d = {d.tolist()}")
        if problem:
            return problem
    return None


EXERCISES = {
    "gaussian_kl": Exercise("1.1 the Gaussian KL per dimension", _check_gaussian_kl),
    "gaussian_cross_entropy": Exercise("2.1 Q's Gaussian cross-entropy", _check_gaussian_cross_entropy),
    "gumbel_softmax": Exercise("3.1 a Gumbel-softmax sample", _check_gumbel_softmax),
    "aggregate_entropy": Exercise("3.2 the aggregate code entropy", _check_aggregate_entropy),
    "mi_from_confusion": Exercise("4.1 the MI of a noisy channel", _check_mi_from_confusion),
    "sign_flip_p": Exercise("5.1 an exact paired test over seeds", _check_sign_flip_p),
}


def verdict(name: str, fn: Callable) -> tuple[bool | None, str]:
    """``(True, message)`` if right, ``(False, what is wrong)``, ``(None, ...)`` if not attempted yet."""
    exercise = EXERCISES[name]
    try:
        problem = exercise.check(fn)
    except NotImplementedError:
        return None, f"Exercise {exercise.title}: not attempted yet.\nWrite the function above and run this cell again."
    except Exception as exc:  # a student's bug: report it in one line, never stop the notebook
        return False, f"Exercise {exercise.title}: your function raised {type(exc).__name__}: {exc}"
    if problem:
        return False, f"Exercise {exercise.title}: not yet right: {problem}."
    return True, f"Exercise {exercise.title}: correct."


def check(name: str, fn: Callable) -> None:
    """Print whether ``fn`` solves exercise ``name`` (one line)."""
    print(verdict(name, fn)[1])


def loop_verdict(name: str, run: Callable[[], list[float]], reference: list[float], tol: float = 1e-2) -> tuple[bool | None, str]:
    """Run the chapter's loop with the student's function (``run()`` returns one number per step, e.g. the
    term that function computes) and compare with the same numbers of the chapter's own run, ``reference``.

    ``(True, ...)`` when every number matches within ``tol`` (relative), ``(False, where they part)``, ``(None, ...)``
    when the function is not written yet. The tolerance is loose on purpose: a right function written in
    another order rounds differently, and Adam lets rounding grow from step to step; a mistake in one of
    the book's exercises moves the number by several percent at the first step.
    """
    title = EXERCISES[name].title
    try:
        values = [float(v) for v in run()]
    except NotImplementedError:
        return None, f"Exercise {title}, in the loop: not attempted yet."
    except Exception as exc:  # a student's bug: one line, never a stopped notebook
        return False, f"Exercise {title}, in the loop: the run raised {type(exc).__name__}: {exc}"
    want = [float(v) for v in reference[: len(values)]]
    for step, (got, ref) in enumerate(zip(values, want)):
        if not math.isfinite(got) or abs(got - ref) > tol * (1 + abs(ref)):
            return False, (f"Exercise {title}, in the loop: not yet right: the run parts from the chapter's at step {step} "
                           f"(yours {got:.5g}, the chapter's {ref:.5g}).")
    gap = max((abs(g - r) for g, r in zip(values, want)), default=0.0)
    return True, (f"Exercise {title}, in the loop: correct: your {len(values)} training steps reproduce the chapter's run "
                  f"(largest difference {gap:.1e}).")


def in_the_loop(name: str, run: Callable[[], list[float]], reference: list[float], tol: float = 1e-2) -> None:
    """Print how the student's function did inside the chapter's training loop (one line; see :func:`loop_verdict`)."""
    print(loop_verdict(name, run, reference, tol)[1])
