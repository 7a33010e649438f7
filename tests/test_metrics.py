"""Metric functions against hand-computed cases."""

import math

import numpy as np
import pytest

from vmivae.measure import metrics


def test_a_relabelled_perfect_clustering_scores_one():
    labels = np.repeat(np.arange(4), 25)
    clusters = (labels + 1) % 4  # same partition, other names
    assert metrics.cluster_accuracy(clusters, labels) == {"hungarian": 1.0, "majority": 1.0}
    assert metrics.nmi(clusters, labels) == pytest.approx(1.0)
    assert metrics.ari(clusters, labels) == pytest.approx(1.0)


def test_hungarian_is_one_to_one_and_majority_many_to_one():
    labels = np.array([0, 0, 1, 1, 2, 2])
    clusters = np.array([0, 0, 0, 0, 1, 1])  # clusters 0 holds two classes
    acc = metrics.cluster_accuracy(clusters, labels)
    assert acc["hungarian"] == pytest.approx(4 / 6)  # cluster 0 -> label 0 (2), cluster 1 -> label 2 (2)
    assert acc["majority"] == pytest.approx(4 / 6)
    clusters = np.array([0, 1, 2, 3, 4, 5])  # over-clustering: majority is perfect, Hungarian is not
    acc = metrics.cluster_accuracy(clusters, labels)
    assert acc["majority"] == 1.0 and acc["hungarian"] == pytest.approx(3 / 6)


def test_unrelated_clustering_scores_chance():
    rng = np.random.default_rng(0)
    labels, clusters = rng.integers(0, 10, 20_000), rng.integers(0, 10, 20_000)
    assert metrics.ari(clusters, labels) == pytest.approx(0.0, abs=0.01)
    assert metrics.nmi(clusters, labels) < 0.01
    assert metrics.cluster_accuracy(clusters, labels)["hungarian"] < 0.12


def test_linear_probe_separates_separable_codes():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    x = np.eye(3)[y] * 4 + rng.normal(size=(600, 3))
    assert metrics.linear_probe_accuracy(x[:400], y[:400], x[400:], y[400:]) > 0.95
    noise = rng.normal(size=(600, 3))
    assert metrics.linear_probe_accuracy(noise[:400], y[:400], noise[400:], y[400:]) < 0.5


def test_entropies():
    assert metrics.discrete_entropy([0, 1, 2, 3] * 10) == pytest.approx(math.log(4))
    assert metrics.discrete_entropy([5] * 7) == 0.0
    rng = np.random.default_rng(0)
    assert metrics.spacing_entropy(rng.normal(size=20_000)) == pytest.approx(0.5 * math.log(2 * math.pi * math.e), abs=0.02)
    assert metrics.spacing_entropy(rng.uniform(0, 3, 20_000)) == pytest.approx(math.log(3), abs=0.02)


def test_exact_categorical_mi_from_a_confusion_matrix():
    k = 4
    prior = np.full(k, 1 / k)
    assert metrics.categorical_mi_exact(prior, np.eye(k)) == pytest.approx(math.log(k))
    assert metrics.categorical_mi_exact(prior, np.full((k, k), 1 / k)) == pytest.approx(0.0)
    # binary symmetric channel with flip probability e: log 2 - H_b(e)
    e = 0.1
    hb = -(e * math.log(e) + (1 - e) * math.log(1 - e))
    assert metrics.categorical_mi_exact([0.5, 0.5], [[1 - e, e], [e, 1 - e]]) == pytest.approx(math.log(2) - hb)


def test_mig_of_a_perfectly_disentangled_code_is_one_and_of_a_shuffled_one_is_low():
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 8, size=(5000, 2))
    codes = np.column_stack([factors[:, 0] + rng.normal(0, 0.01, 5000), factors[:, 1] + rng.normal(0, 0.01, 5000), rng.normal(size=5000)])
    result = metrics.mig(codes, factors)
    assert result["mig"] == pytest.approx(1.0, abs=0.02)
    assert np.array(result["matrix"]).shape == (3, 2)
    entangled = np.column_stack([factors.sum(1), factors.sum(1)]) + rng.normal(0, 0.01, (5000, 2))
    assert metrics.mig(entangled, factors)["mig"] < 0.05  # both dims equally informative: no gap


def test_histogram_discretize_matches_disentanglement_lib():
    x = np.array([[0.0], [0.5], [1.0], [0.25]])
    assert metrics.histogram_discretize(x, n_bins=2)[:, 0].tolist() == [1, 2, 2, 1]


def test_codes_used_counts_categories_above_the_threshold():
    from vmivae.measure.metrics import codes_used

    clusters = np.array([0] * 90 + [1] * 9 + [2] * 1)  # 90%, 9%, 1% of the images; category 3 unused
    assert codes_used(clusters, 4) == 3
    assert codes_used(clusters, 4, fraction=0.05) == 2
    assert codes_used(np.zeros(50, dtype=int), 10) == 1  # a collapsed code
