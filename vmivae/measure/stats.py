"""Comparisons of runs over seeds: intervals that stay in a metric's range, paired contrasts, Holm's correction.

A study trains every variant with the same seeds, so two variants are compared seed by seed (a *paired*
contrast): what a seed does to both runs (its initial weights, its batches) cancels in the difference.
Every interval comes with a ``label`` that says what it is. The intervals cannot leave the metric's range
by construction: a percentile bootstrap of a mean resamples the observed values, and the mean of values
in ``[low, high]`` lies in ``[low, high]``; the mean of paired differences of such values lies in
``[-(high - low), high - low]``. With the few seeds a study affords (3 to 5), these intervals are wide
and the exact tests coarse: with n seeds the smallest two-sided p-value of the sign-flip test is ``2 / 2^n``
(0.25 for 3 seeds, 0.0625 for 5), so a family of contrasts can only pass Holm's correction with enough seeds.

API::

    mean_interval(values, low=0, high=1)              -> Interval   percentile bootstrap CI of the mean
    spread(values)                                     -> Interval   mean +- sd (not a confidence interval)
    wilson(successes, n)                               -> Interval   Wilson score interval of a proportion
    paired_difference(a, b, span=1)                    -> Contrast   a - b over the seeds both have
    unpaired_difference(a, b, span=1)                  -> Contrast   a - b, groups resampled independently
    holm(p_values, alpha=0.05)                         -> list[(adjusted p, rejected)]
    contrasts(table, baseline, span=1)                 -> list[Contrast]  each variant against the baseline, Holm-adjusted
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.stats import norm

from ..errors import VMIVAEError

N_BOOT = 10_000
EXACT_UP_TO = 16  # seeds: the sign-flip and permutation tests enumerate every arrangement up to this many


class StatsError(VMIVAEError, ValueError):
    """Values a comparison cannot be made from."""


@dataclass(frozen=True)
class Interval:
    """An estimate with an interval around it and what that interval is."""

    estimate: float
    low: float
    high: float
    n: int
    label: str  # e.g. "95% percentile bootstrap CI of the mean over 5 seeds"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Contrast:
    """``a - b``: the mean difference, its interval, a two-sided p-value and (after :func:`contrasts`) Holm's adjustment."""

    name: str
    interval: Interval
    p_value: float
    test: str  # what the p-value comes from
    seeds: tuple = ()  # the seeds compared (paired contrasts)
    p_holm: float | None = None
    rejected: bool | None = None  # by Holm at the family's alpha

    def to_dict(self) -> dict:
        return {**asdict(self), "interval": self.interval.to_dict(), "seeds": list(self.seeds)}


def _values(values, what: str = "values") -> np.ndarray:
    x = np.asarray(list(values.values()) if isinstance(values, Mapping) else values, dtype=float).ravel()
    if x.size == 0:
        raise StatsError(f"no {what} to summarise; give at least one value")
    if not np.isfinite(x).all():
        raise StatsError(f"the {what} hold nan or inf ({x.tolist()}); drop the failed runs first")
    return x


def _bootstrap_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    return x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)


def _percentiles(means: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise StatsError(f"level must be between 0 and 1 (e.g. 0.95), got {level}")


def mean_interval(values, low: float | None = None, high: float | None = None, *, level: float = 0.95, unit: str = "seeds",
                  n_boot: int = N_BOOT, seed: int = 0) -> Interval:
    """Percentile bootstrap CI of the mean of ``values`` (one per seed); inside ``[min, max]`` of the values, so
    inside any range they respect. ``low``/``high``, when given, are checked (a value outside is an error)."""
    _check_level(level)
    x = _values(values)
    if (low is not None and x.min() < low) or (high is not None and x.max() > high):
        raise StatsError(f"values {x.tolist()} leave the metric's range [{low}, {high}]; check the metric or its range")
    if x.size == 1:
        return Interval(float(x[0]), math.nan, math.nan, 1, f"one {unit.rstrip('s')}: no interval")
    lo, hi = _percentiles(_bootstrap_means(x, n_boot, np.random.default_rng(seed)), level)
    return Interval(float(x.mean()), lo, hi, x.size, f"{level:.0%} percentile bootstrap CI of the mean over {x.size} {unit}")


def spread(values, *, unit: str = "seeds") -> Interval:
    """Mean +- sample standard deviation (ddof 1): a description of the spread, not a confidence interval (may leave the range)."""
    x = _values(values)
    sd = float(x.std(ddof=1)) if x.size > 1 else math.nan
    return Interval(float(x.mean()), float(x.mean()) - sd, float(x.mean()) + sd, x.size, f"mean +- sd over {x.size} {unit} (not a CI)")


def wilson(successes: int, n: int, *, level: float = 0.95) -> Interval:
    """Wilson score interval of a proportion (e.g. test images assigned correctly); always within [0, 1]."""
    _check_level(level)
    if n < 1 or not 0 <= successes <= n:
        raise StatsError(f"wilson needs 0 <= successes <= n and n >= 1, got {successes} of {n}")
    z, p = float(norm.ppf((1 + level) / 2)), successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n, f"{level:.0%} Wilson score interval of a proportion of {n}")


# ---------------------------------------------------------------------------- two variants


def _shared(a, b) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Aligned values of ``a`` and ``b``: by seed for mappings (the seeds both have), else by position."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        seeds = tuple(sorted(set(a) & set(b)))
        if len(seeds) < 2:
            raise StatsError(f"a paired comparison needs at least 2 seeds run by both variants, got {list(seeds)}; run more seeds")
        return _values([a[s] for s in seeds]), _values([b[s] for s in seeds]), seeds
    x, y = _values(a), _values(b)
    if x.size != y.size or x.size < 2:
        raise StatsError(f"a paired comparison needs two equally long lists of at least 2 values (one per seed), got {x.size} and {y.size}")
    return x, y, tuple(range(x.size))


def sign_flip_p(d: np.ndarray, n_perm: int = N_BOOT, seed: int = 0) -> float:
    """Two-sided p-value of the paired randomization test: how often flipping signs gives a mean difference at least
    as far from 0 as observed; exact (every sign pattern) up to ``EXACT_UP_TO`` pairs."""
    d = np.asarray(d, dtype=float)
    if d.size <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_perm, d.size))
        signs[0] = 1.0  # the observed arrangement counts
    flipped = np.abs((signs * d).mean(axis=1))
    return float(np.mean(flipped >= abs(d.mean()) - 1e-12))


def paired_difference(a, b, span: float | None = None, *, name: str = "a - b", level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> Contrast:
    """Mean of the per-seed differences ``a - b``, its percentile bootstrap CI (within ``[-span, span]`` when the
    values lie in a range of width ``span``) and the exact sign-flip p-value. Mappings are paired by seed."""
    _check_level(level)
    x, y, seeds = _shared(a, b)
    d = x - y
    if span is not None and np.abs(d).max() > span:
        raise StatsError(f"paired differences {d.tolist()} exceed the metric's span {span}; check the metric or its range")
    lo, hi = _percentiles(_bootstrap_means(d, n_boot, np.random.default_rng(seed)), level)
    interval = Interval(float(d.mean()), lo, hi, d.size, f"{level:.0%} percentile bootstrap CI of the mean paired difference over {d.size} seeds")
    exact = "exact" if d.size <= EXACT_UP_TO else f"{N_BOOT}-draw"
    return Contrast(name, interval, sign_flip_p(d, seed=seed), f"two-sided {exact} sign-flip test of the mean paired difference", seeds)


def unpaired_difference(a, b, span: float | None = None, *, name: str = "a - b", level: float = 0.95, n_boot: int = N_BOOT,
                        seed: int = 0) -> Contrast:
    """Difference of the means with each group resampled on its own (for runs that share no seeds), and the
    two-sided permutation test of the group labels (exact when there are at most ``EXACT_UP_TO`` runs)."""
    _check_level(level)
    x, y = _values(a), _values(b)
    if x.size < 2 or y.size < 2:
        raise StatsError(f"an unpaired comparison needs at least 2 values per group, got {x.size} and {y.size}")
    rng = np.random.default_rng(seed)
    lo, hi = _percentiles(_bootstrap_means(x, n_boot, rng) - _bootstrap_means(y, n_boot, rng), level)
    observed = x.mean() - y.mean()
    if span is not None and abs(observed) > span:
        raise StatsError(f"the difference {observed} exceeds the metric's span {span}; check the metric or its range")
    pooled, n = np.concatenate([x, y]), x.size + y.size
    if n <= EXACT_UP_TO:
        groups = [list(c) for c in itertools.combinations(range(n), x.size)]
    else:
        groups = [rng.permutation(n)[: x.size] for _ in range(n_boot)]
    mask = np.zeros((len(groups), n), dtype=bool)
    for i, g in enumerate(groups):
        mask[i, g] = True
    diffs = (mask * pooled).sum(1) / x.size - (~mask * pooled).sum(1) / y.size
    p = float(np.mean(np.abs(diffs) >= abs(observed) - 1e-12))
    interval = Interval(float(observed), lo, hi, n, f"{level:.0%} percentile bootstrap CI of the difference of means ({x.size} and {y.size} runs, unpaired)")
    return Contrast(name, interval, p, "two-sided permutation test of the group labels")


# ---------------------------------------------------------------------------- families of contrasts


def holm(p_values: Sequence[float] | Mapping[str, float], alpha: float = 0.05) -> list[tuple[float, bool]]:
    """Holm-Bonferroni step-down: ``(adjusted p, rejected)`` per p-value, in the order given. The family-wise
    error rate (any true null rejected) stays at most ``alpha``; adjusted ``p_(i) = max_{j<=i} min(1, (m - j + 1) p_(j))``."""
    p = np.asarray(list(p_values.values()) if isinstance(p_values, Mapping) else p_values, dtype=float)
    if p.size == 0 or not ((p >= 0) & (p <= 1)).all():
        raise StatsError(f"holm needs p-values in [0, 1], got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    m = p.size
    adjusted_sorted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return [(float(q), bool(q <= alpha)) for q in adjusted]


def contrasts(table: Mapping[str, Mapping], baseline: str, span: float | None = None, *, alpha: float = 0.05, level: float = 0.95,
              seed: int = 0) -> list[Contrast]:
    """Every variant of ``table`` (``{variant: {seed: value}}``) against ``baseline``, paired by seed, as one family
    under Holm's correction at ``alpha``."""
    if baseline not in table:
        raise StatsError(f"the baseline '{baseline}' is not among the variants {sorted(table)}; name one of them")
    found = [paired_difference(table[v], table[baseline], span, name=f"{v} - {baseline}", level=level, seed=seed) for v in table if v != baseline]
    if not found:
        return []
    return [replace(c, p_holm=q, rejected=r) for c, (q, r) in zip(found, holm([c.p_value for c in found], alpha))]
