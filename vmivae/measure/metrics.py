"""Representation-quality metrics on arrays: clustering, probes, entropies, MIG.

All functions take NumPy arrays (or tensors) of codes and labels and return plain floats; they know
nothing about models. Natural logarithms: every MI and entropy is in nats.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score, mutual_info_score, normalized_mutual_info_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def contingency(clusters, labels) -> np.ndarray:
    """Counts ``[n_clusters, n_labels]`` of (cluster, label) pairs; sizes from the largest index seen."""
    c, y = _np(clusters).astype(int), _np(labels).astype(int)
    table = np.zeros((c.max() + 1, y.max() + 1), dtype=np.int64)
    np.add.at(table, (c, y), 1)
    return table


def cluster_accuracy(clusters, labels) -> dict[str, float]:
    """Unsupervised accuracy of a clustering against class labels.

    * ``hungarian``: the best one-to-one map from clusters to labels (Kuhn-Munkres on the contingency
      table); unmatched clusters count as errors. A relabelled perfect clustering scores 1.0.
    * ``majority``: every cluster maps to its most frequent label (many-to-one, the reference code's
      way); never below ``hungarian``.
    """
    table = contingency(clusters, labels)
    rows, cols = linear_sum_assignment(-table)
    n = table.sum()
    return {"hungarian": float(table[rows, cols].sum() / n), "majority": float(table.max(axis=1).sum() / n)}


def codes_used(clusters, n_codes: int, fraction: float = 0.01) -> int:
    """How many of ``n_codes`` categories are the assigned code of at least ``fraction`` of the images.

    A collapsed code uses few; a code that spreads the data over every category uses all ``n_codes``.
    """
    counts = np.bincount(_np(clusters).astype(int), minlength=n_codes)
    return int((counts >= fraction * counts.sum()).sum())


def nmi(clusters, labels) -> float:
    """Normalised mutual information (arithmetic normalisation, as scikit-learn)."""
    return float(normalized_mutual_info_score(_np(labels), _np(clusters)))


def ari(clusters, labels) -> float:
    """Adjusted Rand index: 0 for chance agreement, 1 for identical partitions."""
    return float(adjusted_rand_score(_np(labels), _np(clusters)))


def linear_probe_accuracy(train_x, train_y, test_x, test_y, seed: int = 0) -> float:
    """Test accuracy of a logistic regression fitted on standardised train codes."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    probe.fit(_np(train_x), _np(train_y))
    return float(probe.score(_np(test_x), _np(test_y)))


def discrete_entropy(labels) -> float:
    """Plug-in entropy in nats of integer labels: ``-sum p log p`` over their empirical frequencies."""
    counts = np.bincount(_np(labels).astype(int))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def spacing_entropy(x, m: int | None = None) -> float:
    """Vasicek's m-spacing estimate of the differential entropy (nats) of 1-D samples.

    ``H ~= mean_i log(n / (2 m) * (x_(i+m) - x_(i-m)))`` over order statistics, indices clipped at the
    ends; consistent for any continuous density, with ``m ~ sqrt(n)``.
    """
    x = np.sort(_np(x).astype(np.float64).ravel())
    n = len(x)
    m = m or max(1, int(round(np.sqrt(n))))
    upper, lower = x[np.minimum(np.arange(n) + m, n - 1)], x[np.maximum(np.arange(n) - m, 0)]
    gaps = np.maximum(upper - lower, 1e-12)
    return float(np.mean(np.log(n / (2 * m) * gaps)))


def histogram_discretize(x, n_bins: int = 20) -> np.ndarray:
    """Each column of ``x [N, D]`` cut into ``n_bins`` equal-width bins over its range (disentanglement_lib)."""
    x = _np(x)
    out = np.zeros(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        edges = np.histogram(x[:, j], n_bins)[1]
        out[:, j] = np.digitize(x[:, j], edges[:-1])
    return out


def factor_mi_matrix(codes, factors, n_bins: int = 20) -> np.ndarray:
    """MI in nats ``[D, F]`` between every (discretised) latent dim and every discrete factor."""
    binned, f = histogram_discretize(codes, n_bins), _np(factors).astype(int)
    return np.array([[mutual_info_score(f[:, k], binned[:, j]) for k in range(f.shape[1])] for j in range(binned.shape[1])])


def mig(codes, factors, n_bins: int = 20) -> dict[str, object]:
    """Mutual information gap (Chen et al. 2018, as in disentanglement_lib).

    For every factor ``k``: the gap between the two latent dims with the largest MI with ``k``,
    divided by the factor's entropy ``H(v_k)``; MIG is the mean over factors. Codes are discretised
    into ``n_bins`` equal-width histogram bins. Needs at least two latent dims.

    Returns ``{"mig": float, "per_factor": [F], "matrix": [D][F] MI in nats, "entropy": [F]}``.
    """
    matrix = factor_mi_matrix(codes, factors, n_bins)
    if matrix.shape[0] < 2:
        raise ValueError("MIG needs at least two latent dims")
    entropy = np.array([discrete_entropy(col) for col in _np(factors).astype(int).T])
    top = np.sort(matrix, axis=0)[::-1]
    per_factor = (top[0] - top[1]) / np.maximum(entropy, 1e-12)
    return {"mig": float(per_factor.mean()), "per_factor": per_factor.tolist(), "matrix": matrix.tolist(), "entropy": entropy.tolist()}


def categorical_mi_exact(prior, confusion) -> float:
    """Exact I(c; c') in nats for ``c ~ prior [K]`` sent through a channel ``confusion [K, K']`` = P(c' | c)."""
    prior, confusion = np.asarray(prior, float), np.asarray(confusion, float)
    joint = prior[:, None] * confusion
    marginal = joint.sum(axis=0)
    mask = joint > 0
    return float((joint[mask] * np.log(joint[mask] / (prior[:, None] * marginal[None, :])[mask])).sum())
