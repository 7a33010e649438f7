"""Comparisons over seeds with known answers: Holm, Wilson, exact tests, intervals inside the metric's range."""

import math

import numpy as np
import pytest

from vmivae.measure.stats import StatsError, contrasts, holm, mean_interval, paired_difference, sign_flip_p, spread, unpaired_difference, wilson


def test_holm_on_a_textbook_example():
    # four tests at alpha 0.05: sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005, 3 x 0.01, 2 x 0.03, max(1 x 0.04, 0.06)
    result = holm([0.01, 0.04, 0.03, 0.005])
    assert [q for q, _ in result] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [r for _, r in result] == [True, False, False, True]
    assert holm({"a": 0.2, "b": 0.01}, alpha=0.05) == [(0.2, False), (0.02, True)]
    with pytest.raises(StatsError, match="p-values in"):
        holm([0.5, 1.5])


def test_wilson_interval_matches_the_formula_and_stays_in_zero_one():
    i = wilson(8, 10)
    assert (i.low, i.high) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert "Wilson" in i.label and i.n == 10
    assert wilson(0, 20).low == 0.0 and wilson(20, 20).high == 1.0


@pytest.mark.parametrize("values", [[1, 1, 1], [0, 0, 0, 0], [0, 1, 1, 0, 1], [1.0, 0.0]])
def test_the_bootstrap_interval_of_values_in_zero_one_stays_in_zero_one(values):
    i = mean_interval(values, 0, 1)
    assert 0 <= i.low <= i.estimate <= i.high <= 1
    assert i.label == f"95% percentile bootstrap CI of the mean over {len(values)} seeds"
    if len(set(values)) == 1:
        assert i.low == i.high == values[0]  # no spread, no interval width (a normal-theory interval would say the same, a t interval nan)


def test_counts_stay_within_zero_and_k():
    i = mean_interval([10, 10, 9, 10, 3], 0, 10)
    assert 3 <= i.low <= i.high <= 10
    with pytest.raises(StatsError, match=r"leave the metric's range \[0, 10\]"):
        mean_interval([11, 3], 0, 10)


def test_one_seed_gives_no_interval_and_spread_is_labelled_as_not_a_ci():
    one = mean_interval([0.5])
    assert one.estimate == 0.5 and math.isnan(one.low) and one.label == "one seed: no interval"
    s = spread([0.2, 0.4, 0.6])
    assert (s.estimate, s.high - s.estimate) == pytest.approx((0.4, 0.2)) and "not a CI" in s.label


def test_the_exact_sign_flip_test_has_its_known_smallest_p_values():
    assert sign_flip_p(np.array([0.1, 0.2, 0.3])) == pytest.approx(2 / 8)
    assert sign_flip_p(np.array([0.1, 0.2, 0.3, 0.1, 0.2])) == pytest.approx(2 / 32)
    assert sign_flip_p(np.array([0.1, -0.1, 0.2, -0.2])) == 1.0


def test_pairing_by_seed_removes_the_seed_effect_that_an_unpaired_comparison_cannot():
    rng = np.random.default_rng(0)
    seed_effect = rng.uniform(0.2, 0.8, size=8)  # what a seed does to both variants
    a = {s: float(v + 0.03) for s, v in enumerate(seed_effect)}  # a is better by 0.03 on every seed
    b = {s: float(v) for s, v in enumerate(seed_effect)}
    paired, unpaired = paired_difference(a, b, 1.0), unpaired_difference(list(a.values()), list(b.values()), 1.0)
    assert paired.interval.estimate == pytest.approx(0.03) == unpaired.interval.estimate
    assert paired.interval.low == pytest.approx(0.03) and paired.p_value == pytest.approx(2 / 2**8)
    assert unpaired.interval.low < 0 < unpaired.interval.high and unpaired.p_value > 0.5
    assert "paired difference over 8 seeds" in paired.interval.label and "unpaired" in unpaired.interval.label


def test_paired_differences_use_the_seeds_both_variants_have_and_stay_within_the_span():
    c = paired_difference({0: 1.0, 1: 1.0, 2: 0.0, 7: 0.5}, {0: 0.0, 1: 0.0, 2: 1.0}, 1.0)
    assert c.seeds == (0, 1, 2)
    assert -1 <= c.interval.low <= c.interval.estimate <= c.interval.high <= 1
    with pytest.raises(StatsError, match="at least 2 seeds run by both"):
        paired_difference({0: 0.1, 1: 0.2}, {1: 0.3, 2: 0.4})


def test_a_family_of_contrasts_against_the_baseline_is_holm_adjusted():
    table = {"baseline": {s: 0.5 for s in range(6)}, "better": {s: 0.6 + 0.01 * s for s in range(6)},
             "same": {s: 0.5 + (0.01 if s % 2 else -0.01) for s in range(6)}}
    found = {c.name: c for c in contrasts(table, "baseline", 1.0)}
    assert set(found) == {"better - baseline", "same - baseline"}
    assert found["better - baseline"].p_value == pytest.approx(2 / 64) and found["better - baseline"].p_holm == pytest.approx(4 / 64)
    assert found["better - baseline"].rejected is False  # 6 seeds and two contrasts: 0.0625 > 0.05, honest about the few seeds
    assert found["same - baseline"].rejected is False and found["same - baseline"].p_holm == 1.0
    with pytest.raises(StatsError, match="baseline 'nope' is not among"):
        contrasts(table, "nope")
