"""Studies: the shipped grid is valid, a small grid runs end to end into result files, statistics are right."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from vmivae.errors import ConfigError
from vmivae.measure.study import COLUMNS, Study, Variant, contrast, load_study, read_results, run_study, summarize

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_study_compares_the_objectives_on_both_datasets():
    study = load_study("joint-objectives")
    names = {v.name for v in study.variants}
    assert {"baseline", "paper", "true-bound", "generation", "both-true-bound"} <= names
    assert set(study.datasets) == {"mnist-5k", "mnist"} and len(study.seeds) >= 3
    configs = {name: spec.config for _, name, seed, spec in study.specs(["mnist-5k"], [0])}
    assert configs["baseline"].lambda_cat == 0 and configs["paper"].entropy_weight == 0
    assert configs["true-bound"].entropy_weight == configs["true-bound"].lambda_cat > 0
    assert configs["generation"].mi_source == "generation" and configs["both-true-bound"].mi_source == "both"
    # every variant is the same model with the same budget: only the objective differs
    budget = {(c.continuous, c.categorical, c.steps, c.lr, c.batch_size, c.tau_rate) for c in configs.values()}
    assert len(budget) == 1


def test_unknown_study_or_dataset_is_one_sentence():
    with pytest.raises(ConfigError, match="unknown study 'joint'"):
        load_study("joint")
    with pytest.raises(ConfigError, match="unknown dataset of study 'joint-objectives' 'cifar10'"):
        load_study().specs(["cifar10"])


@pytest.mark.slow
def test_a_small_study_writes_its_results(tmp_path):
    study = Study("tiny", "", "smoke", (0,), {"mnist-5k": {"steps": 4, "log_every": 2}},
                  (Variant("baseline", "paper-joint-baseline", {}, "baseline"), Variant("true-bound", "paper-joint", {"aggregate_entropy": True}, "t")),
                  estimator="smoke")
    frame = run_study(study, tmp_path / "runs", tmp_path / "results", workers=1, device="cpu", command="pytest")
    runs, training, meta = read_results(tmp_path / "results")
    assert list(runs["variant"]) == ["baseline", "true-bound"] and set(COLUMNS) <= set(runs.columns)
    assert runs["codes_used"].between(1, 10).all() and runs["hungarian"].between(0, 1).all()
    pd.testing.assert_frame_equal(runs, frame, check_dtype=False, atol=1e-5)
    assert list(training.groupby("variant")["step"].apply(list)) == [[2, 4], [2, 4]]
    assert meta["command"] == "pytest" and meta["runs"] == 2 and meta["hardware"]


def test_summary_intervals_stay_in_the_metrics_range_and_contrasts_are_paired_by_seed():
    frame = pd.DataFrame({"dataset": "d", "variant": ["a"] * 3 + ["b"] * 3, "seed": [0, 1, 2] * 2,
                          **{m: 0.0 for m in COLUMNS}})
    frame.loc[:2, "hungarian"] = [0.5, 0.6, 0.7]
    frame.loc[3:, "hungarian"] = [0.2, 0.21, 0.19]
    frame.loc[:2, "codes_used"] = [1, 2, 8]  # a t interval of these leaves [0, 10]: 3.7 [-4.6, 11.9]
    summary = summarize(frame, ["hungarian", "codes_used"]).set_index(["variant", "metric"])
    row = summary.loc[("a", "hungarian")]
    assert row["mean"] == pytest.approx(0.6) and row["sd"] == pytest.approx(0.1) and row["n"] == 3
    assert 0.5 <= row["ci_low"] < 0.6 < row["ci_high"] <= 0.7
    assert row["interval"] == "95% percentile bootstrap CI of the mean over 3 seeds"
    codes = summary.loc[("a", "codes_used")]
    half = stats.t.ppf(0.975, 2) * np.std([1, 2, 8], ddof=1) / math.sqrt(3)
    assert codes["mean"] - half < 0 and 1 <= codes["ci_low"] and codes["ci_high"] <= 8
    separated = contrast(frame, "a", "b", "hungarian", "d")
    assert separated["difference"] == pytest.approx(0.4) and separated["same_sign"] and separated["p"] == 0.25
    frame.loc[3:, "hungarian"] = [0.4, 0.8, 0.6]  # differences +0.1, -0.2, +0.1: mixed signs
    mixed = contrast(frame, "a", "b", "hungarian", "d")
    assert not mixed["same_sign"] and mixed["ci_low"] < 0 < mixed["ci_high"] and mixed["p"] == 1.0


def test_a_contrast_pairs_runs_by_seed_not_by_row_order():
    """Seed 0 of one variant is compared with seed 0 of the other, whatever the row order, and a seed only one
    variant ran is left out."""
    frame = pd.DataFrame({"dataset": "d", "variant": ["vmi"] * 3 + ["base"] * 4, "seed": [2, 0, 1, 0, 1, 2, 3],
                          "mi_categorical": [0.6, 1.0, 0.8, 0.01, 0.02, 0.0, 5.0]})
    c = contrast(frame, "vmi", "base", "mi_categorical", "d")
    assert c["seeds"] == 3 and c["difference"] == pytest.approx((0.99 + 0.78 + 0.6) / 3)
    assert 0.6 <= c["ci_low"] < c["ci_high"] <= 0.99 and c["same_sign"] and c["p"] == 0.25


def test_missing_results_say_how_to_make_them(tmp_path):
    with pytest.raises(ConfigError, match=r"lacks runs.csv, training.csv, meta.json; run the study first: ./run_all.sh --profile study"):
        read_results(tmp_path)


@pytest.mark.parametrize("folder", ["study", "gaussian-mi"])
def test_the_committed_results_are_the_shipped_study(folder):
    """The book reads results/study and results/gaussian-mi: each must hold every run of its shipped grid, with finite numbers."""
    runs, training, meta = read_results(ROOT / "results" / folder)
    study = load_study(meta["study"])
    expected = {(d, v, s) for d, v, s, _ in study.specs()}
    assert set(zip(runs["dataset"], runs["variant"], runs["seed"])) == expected
    assert np.isfinite(runs[["mi_z0", "mi_z1", "linear_probe", "recon_mse"]].to_numpy()).all()
    if folder == "study":  # the joint model: a code, and its use over training
        assert np.isfinite(runs[["hungarian", "nmi", "codes_used"]].to_numpy()).all()
        assert set(zip(training["dataset"], training["variant"], training["seed"])) == expected
    for key in ("hardware", "date", "command", "train_seconds_sum"):
        assert meta[key]


def _verdict_frame(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for variant, per_seed in values.items():
        for seed, v in enumerate(per_seed):
            rows.append({"dataset": "d", "variant": variant, "seed": seed, "steps": 500, **{m: 0.0 for m in COLUMNS}, "hungarian": v})
    return pd.DataFrame(rows)


def test_three_seeds_describe_and_never_reproduce():
    from vmivae.measure.study import verdicts

    table = verdicts(_verdict_frame({"baseline": [0.30, 0.31, 0.29], "paper": [0.28, 0.36, 0.33], "true-bound": [0.50, 0.55, 0.52]}))
    table = table.set_index(["metric", "objective"])
    assert table.loc[("hungarian", "true-bound"), "verdict"] == "higher in every seed"
    assert table.loc[("hungarian", "true-bound"), "p"] == 0.25 and table.loc[("hungarian", "true-bound"), "p (Holm)"] == 1.0
    assert table.loc[("hungarian", "paper"), "verdict"] == "not reproduced"  # -0.02, +0.05, +0.04: mixed signs
    assert table.loc[("mi_categorical", "true-bound"), "verdict"] == "not reproduced"  # no difference at all
    assert (table["budget"] == "500 steps").all()


def test_enough_seeds_reproduce_under_holms_correction():
    """Six rows in the family: Holm needs p <= 0.05 / 6, which 8 seeds of the same sign give (2 / 2^8 = 0.0078)
    and 7 do not (0.0156)."""
    from vmivae.measure.study import verdicts

    for n, expected in ((8, "reproduced"), (7, "higher in every seed")):
        base = [0.30 + 0.01 * (s % 3) for s in range(n)]
        table = verdicts(_verdict_frame({"baseline": base, "paper": base, "true-bound": [b + 0.2 for b in base]}))
        row = table.set_index(["metric", "objective"]).loc[("hungarian", "true-bound")]
        assert row["verdict"] == expected and row["p"] == pytest.approx(2 / 2**n)


@pytest.mark.parametrize("args,message", [(["--datasets", "cifar"], "unknown dataset of study 'joint-objectives' 'cifar'"),
                                          (["--workers", "0"], "--workers must be at least 1"),
                                          (["--name", "joint"], "unknown study 'joint'")])
def test_study_command_mistakes_are_one_sentence(capsys, args, message):
    from vmivae.cli import main

    assert main(["study", *args]) == 2
    assert message in capsys.readouterr().err


FAILING = Study("tiny", "", "smoke", (0,), {"mnist-5k": {"steps": 4}},
                (Variant("diverges", "paper-joint", {"lr": 1e6, "steps": 40, "log_every": 2}, "d"), Variant("baseline", "paper-joint-baseline", {}, "b")),
                estimator="smoke")


@pytest.mark.parametrize("keep_going", [False, True])
def test_a_failing_run_stops_the_study_with_one_line_and_writes_no_results(capsys, monkeypatch, tmp_path, keep_going):
    from vmivae.cli import main
    from vmivae.measure import study

    monkeypatch.setattr(study, "load_study", lambda name: FAILING)
    args = ["study", "--runs-dir", tmp_path / "runs", "--results", tmp_path / "results", "--workers", "1", "--device", "cpu"]
    assert main([str(a) for a in args] + ["--keep-going"] * keep_going) == 2
    err = capsys.readouterr().err.splitlines()
    failed = [line for line in err if " failed: " in line]
    assert len(failed) == 1 and failed[0].startswith("vmivae: training tiny-diverges-mnist-5k-s0-smoke-") and "non-finite" in failed[0]
    assert err[-1].startswith("vmivae: error: ") and "fix the cause and run the same command again" in err[-1]
    assert ("add --keep-going" in err[-1]) != keep_going
    baseline = FAILING.specs()[1][-1].directory(tmp_path / "runs")
    assert (baseline / "metrics.json").is_file() == keep_going  # keep going: the other run is trained (and cached)
    assert not (tmp_path / "results").exists()
