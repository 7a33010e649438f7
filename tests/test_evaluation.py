"""``evaluate`` and ``vmivae evaluate``: the full schema on real smoke runs, MIG on shapes, errors."""

import json
import math

import pytest

import vmivae
from vmivae.cli import main
from vmivae.evaluation import evaluate, format_table

SCHEMA = {"mi", "cluster_accuracy", "nmi", "ari", "linear_probe_accuracy", "recon_mse", "kl_per_dim", "q_steps", "n_eval"}


def test_cli_writes_the_full_schema_and_prints_a_table(smoke_runs, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(smoke_runs["paper-joint"]), "--out", str(out), "--profile", "smoke"]) == 0
    result = json.loads(out.read_text())
    assert SCHEMA <= set(result)
    assert set(result["mi"]) == {"categorical"} | {f"z{j}" for j in range(16)}
    for component in result["mi"].values():
        assert {"nats", "ci95", "entropy", "fraction", "path"} <= set(component)
        assert component["ci95"][0] <= component["nats"] <= component["ci95"][1]
    assert set(result["cluster_accuracy"]) == {"hungarian", "majority"}
    assert 0 <= result["cluster_accuracy"]["hungarian"] <= result["cluster_accuracy"]["majority"] <= 1
    assert len(result["kl_per_dim"]) == 16 and result["n_test"] == 1000
    printed = capsys.readouterr().out
    assert "categorical" in printed and "cluster accuracy (Hungarian)" in printed


def test_gaussian_model_has_no_clustering(smoke_runs):
    result = evaluate(smoke_runs["paper-gaussian"], settings="smoke")
    assert result["cluster_accuracy"] is None and result["nmi"] is None and "categorical" not in result["mi"]
    assert 0 < result["linear_probe_accuracy"] <= 1
    assert "n/a" in format_table(result)


def test_both_paths_and_mig_on_shapes(tmp_path):
    config = vmivae.make_config("paper-joint", "smoke", {"dataset": "shapes", "categorical": 3, "continuous": 6, "steps": 10})
    run = vmivae.fit(config, out=tmp_path / "shapes", progress=False)
    result = evaluate(run, settings="smoke", paths=("generation", "reconstruction"))
    assert result["mi_reconstruction"]["categorical"]["path"] == "reconstruction"
    assert 0 <= result["mig"] <= 1 and set(result["mig_per_factor"]) == {"shape", "scale", "rotation", "x", "y"}
    matrix = result["factor_mi"]["nats"]
    assert len(matrix) == 7 and len(matrix[0]) == 5  # 6 Gaussian dims + the code, 5 factors
    assert result["factor_mi"]["factor_entropy"][0] == pytest.approx(math.log(3), abs=0.01)


def test_cli_evaluate_errors(smoke_runs, tmp_path, capsys):
    out = tmp_path / "exists.json"
    out.write_text("{}")
    assert main(["evaluate", str(smoke_runs["paper-joint"]), "--out", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nope"), "--out", str(tmp_path / "e.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(smoke_runs["paper-joint"]), "--out", str(tmp_path / "no" / "e.json")]) == 2
    assert "does not exist; create it first" in capsys.readouterr().err


def _fake_result(cat_mi, mse):
    return {"mi": {"categorical": {"nats": cat_mi}, "z0": {"nats": 0.1}, "z1": {"nats": 0.2}},
            "cluster_accuracy": {"hungarian": 0.5, "majority": 0.5}, "nmi": 0.3, "ari": 0.2,
            "linear_probe_accuracy": 0.9, "recon_mse": mse, "kl_per_dim": [0.5, 0.0]}


def test_contrast_gives_the_welch_interval_of_the_difference():
    from vmivae.evaluation import contrast

    groups = {"vmi": [_fake_result(m, e) for m, e in [(1.0, 0.070), (0.8, 0.072), (0.6, 0.071)]],
              "base": [_fake_result(m, e) for m, e in [(0.01, 0.071), (0.02, 0.069), (0.0, 0.073)]]}
    table = contrast(groups, "vmi", "base")
    cat = table.loc["MI categorical (nats)"]
    assert cat["difference"] == pytest.approx(0.79)
    # Welch by hand: standard error from the two sample variances, Welch-Satterthwaite degrees of freedom
    from scipy import stats
    va, vb = 0.04 / 3, 0.0001 / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert (cat["ci95 low"], cat["ci95 high"]) == pytest.approx((0.79 - half, 0.79 + half))
    assert cat["resolved"]
    assert not table.loc["recon MSE", "resolved"]  # 0.071 vs 0.071: within noise
    assert table.loc["NMI", "difference"] == 0 and not table.loc["NMI", "resolved"]  # constant metrics
