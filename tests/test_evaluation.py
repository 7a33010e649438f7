"""``evaluate`` and ``vmivae evaluate``: the full schema on real smoke runs, MIG on shapes, errors."""

import json
import math

import pytest

import vmivae
from vmivae.cli import main
from vmivae.measure.evaluation import evaluate, format_table

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
    assert result["q_warm_start"] == ["categorical", "z0", "z1"]  # paper-joint's own Q reads the code and dims 0-1
    printed = capsys.readouterr().out
    assert "categorical" in printed and "cluster accuracy (Hungarian)" in printed and "warm-started from the run's Q" in printed


def test_gaussian_model_has_no_clustering(smoke_runs):
    result = evaluate(smoke_runs["paper-gaussian"], settings="smoke")
    assert result["cluster_accuracy"] is None and result["nmi"] is None and "categorical" not in result["mi"]
    assert result["q_warm_start"] == ["z0", "z1"]
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
