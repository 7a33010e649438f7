"""Learning curves: a chain of stages is the run a straight budget trains, stages are measured once, the shipped
curve study is valid and its committed results cover its grid."""

import json
import math
from pathlib import Path

import pytest
import torch

import vmivae
from vmivae.errors import ConfigError
from vmivae.latents import sample_prior
from vmivae.measure import metrics
from vmivae.measure.curves import final_file, read_curves, read_final, run_curves, stage_file
from vmivae.measure.study import Study, Variant, load_study
from vmivae.runs.run import load_run

ROOT = Path(__file__).resolve().parents[1]
TINY = Study("tiny", "", "smoke", (0,), {"mnist-5k": {"log_every": 2, "checkpoint_every": 4}},
             (Variant("tb", "vmi-joint", {}, "true bound"),), estimator="smoke", stages=(4, 8))


def _same_weights(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.vae.state_dict().values(), b.vae.state_dict().values()))


@pytest.mark.slow
def test_a_chain_of_stages_is_the_run_a_straight_budget_trains_is_measured_once_and_is_repaired_or_refused(tmp_path):
    frame = run_curves(TINY, tmp_path / "runs", tmp_path / "res", workers=1, command="pytest")
    assert list(frame["step"]) == [4, 8] and frame["hungarian"].between(0, 1).all() and frame["codes_used"].between(1, 10).all()
    assert frame["mi_categorical"].notna().all() and frame["recon_mse"].gt(0).all()
    chained = load_run(next((tmp_path / "runs").iterdir()))
    config = vmivae.make_config("vmi-joint", "smoke", {"dataset": "mnist-5k", "log_every": 2, "checkpoint_every": 4, "seed": 0, "steps": 8})
    straight = vmivae.fit(config, out=tmp_path / "straight", progress=False, threads=1)  # the chain trains on one thread
    assert _same_weights(chained, straight)
    # a second call measures nothing again: the stage files stand, the run is not touched
    stage = stage_file(tmp_path / "res", "mnist-5k", "tb", 0, 8)
    before = (stage.read_text(), chained.path.joinpath("checkpoint.pt").stat().st_mtime_ns)
    again = run_curves(TINY, tmp_path / "runs", tmp_path / "res", workers=1)
    assert (stage.read_text(), chained.path.joinpath("checkpoint.pt").stat().st_mtime_ns) == before
    assert again["hungarian"].tolist() == frame["hungarian"].tolist()
    curves, meta = read_curves(tmp_path / "res")
    assert meta["stages"] == [4, 8] and meta["runs"] == 1 and len(curves) == 2
    # the last stage's record: the test split's codes and labels, and a category grid decoded by the run
    record = read_final(tmp_path / "res", "mnist-5k", "tb", 0)
    assert len(record["clusters"]) == len(record["labels"]) == 1000 and record["grid"].shape == (10 * 8, 1, 28, 28)
    assert metrics.cluster_accuracy(record["clusters"], record["labels"])["hungarian"] == pytest.approx(frame["hungarian"].iloc[-1])
    z, _ = sample_prior(chained.vae.latent, 8, "cpu", torch.Generator().manual_seed(0))
    third = torch.zeros(8, 10)
    third[:, 3] = 1  # row 3 of the grid: category 3 with the grid's 8 Gaussian codes
    with torch.no_grad():
        decoded = chained.vae.decode(chained.vae.latent.join(z, third))
    assert (record["grid"][24:32] - decoded).abs().max() <= 1 / 127.5 + 1e-6  # 8-bit rounding only
    _a_lost_record_is_remade_and_a_run_past_a_missing_stage_says_how_to_retrain_it(tmp_path)


def _a_lost_record_is_remade_and_a_run_past_a_missing_stage_says_how_to_retrain_it(tmp_path):
    record = final_file(tmp_path / "res", "mnist-5k", "tb", 0)
    first = read_final(tmp_path / "res", "mnist-5k", "tb", 0)
    record.unlink()
    run_curves(TINY, tmp_path / "runs", tmp_path / "res", workers=1)  # remade from the run at its last stage
    again = read_final(tmp_path / "res", "mnist-5k", "tb", 0)
    assert torch.equal(first["grid"], again["grid"]) and (first["clusters"] == again["clusters"]).all()
    stage_file(tmp_path / "res", "mnist-5k", "tb", 0, 4).unlink()  # its stage-4 measurement lost, the run at step 8
    with pytest.raises(ConfigError, match=r"already at step 8, past the stage 4 it lacks; remove the folder"):
        run_curves(TINY, tmp_path / "runs", tmp_path / "res", workers=1)
    record.unlink()
    for run in (tmp_path / "runs").iterdir():
        (run / "checkpoint.pt").unlink()
    with pytest.raises(ConfigError, match=r"is missing and .* holds no run at step 8 to make it from; remove this chain's stage files"):
        run_curves(TINY, tmp_path / "runs", tmp_path / "res", workers=1)


def test_missing_curve_results_name_the_command(tmp_path):
    with pytest.raises(ConfigError, match=r"lacks curves.csv, meta.json; run the curve study first"):
        read_curves(tmp_path)


def test_the_shipped_curve_study_is_one_budget_measured_at_its_stages():
    study = load_study("joint-curves")
    assert study.profile == "medium" and study.stages == (500, 1000, 2000, 4000) and len(study.seeds) >= 3
    configs = {name: spec.config for _, name, _, spec in study.specs(seeds=[0])}
    assert configs["baseline"].lambda_cat == 0 and configs["true-bound"].entropy_weight > 0
    assert configs["kl-cont-x4"].kl_weight_cont == pytest.approx(4 * configs["true-bound"].kl_weight)
    # JointVAE's loss on its own scale: the MI weights keep the paper's ratio to the KL weight, the capacities
    # reach their end (log 10 for the code, the most a 10-way code can carry) at half the budget
    cap, tb = configs["jointvae-cap"], configs["true-bound"]
    assert cap.recon_loss == "bernoulli" and cap.capacity_cont_gamma == cap.capacity_cat_gamma == 30
    assert cap.lambda_cat / cap.kl_weight == pytest.approx(tb.lambda_cat / tb.kl_weight)
    assert cap.lambda_cont / cap.kl_weight == pytest.approx(tb.lambda_cont / tb.kl_weight)
    assert cap.capacity_cat_end == pytest.approx(math.log(10), abs=1e-6) and cap.capacity_cont_end == 5
    assert cap.capacity_cont_steps == cap.capacity_cat_steps == cap.steps // 2 and cap.entropy_weight == cap.lambda_cat
    medium = configs["true-bound"]
    assert medium.steps == 4000 and medium.dataset == "mnist"
    # the temperature reaches its floor at the paper's fraction of training (53%), as in the quick and study profiles
    floor_step = math.log(1.0 / 0.3) / medium.tau_rate
    assert 0.50 < floor_step / medium.steps < 0.56


def test_the_committed_curves_cover_the_grid():
    curves, meta = read_curves(ROOT / "results" / "joint-curves")
    study = load_study("joint-curves")
    expected = {(v.name, s, b) for v in study.variants for s in study.seeds for b in study.stages}
    assert set(zip(curves["variant"], curves["seed"], curves["step"])) == expected
    assert curves["hungarian"].between(0, 1).all() and curves["codes_used"].between(1, 10).all()
    assert meta["hardware"] and meta["command"].startswith("vmivae study --name joint-curves")
    for row in curves.itertuples():  # every row is the stage file written when it was measured
        stage = json.loads(stage_file(ROOT / "results" / "joint-curves", row.dataset, row.variant, row.seed, row.step).read_text())
        assert stage["hungarian"] == pytest.approx(row.hungarian, abs=1e-5)
