"""Real (smoke-sized) training runs through the API and the CLI: outputs, reproducibility, errors."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

import vmivae
from vmivae.cli import main
from vmivae.errors import CheckpointError, ConfigError, OutputError, TrainingError

PRESETS = ("paper-joint", "paper-joint-baseline", "paper-gaussian", "paper-gaussian-baseline")


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    codes = {p: main(["train", "--preset", p, "--profile", "smoke", "--out", str(root / p), "--quiet"]) for p in PRESETS}
    return root, codes


@pytest.mark.parametrize("preset", PRESETS)
def test_smoke_run_through_the_cli_learns_and_writes_everything(cli_runs, preset):
    root, codes = cli_runs
    assert codes[preset] == 0
    run = root / preset
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json", "history.csv", "metrics.json"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"steps", "seconds", "images_per_second", "final"} <= set(metrics)
    assert {"recon_mse", "recon", "kl", "mi_ce"} <= set(metrics["final"]) and metrics["steps"] == 30
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 30 and history["step"].tolist() == list(range(1, 31))
    assert history["loss"].tail(5).mean() < 0.8 * history["loss"].head(5).mean()
    # Q is trained in every run, baselines included, so its cross-entropy falls too
    assert history["q_loss"].tail(5).mean() < history["q_loss"].head(5).mean()
    config = json.loads((run / "config.json").read_text())
    assert config["preset"] == preset and config["config"]["steps"] == 30


def test_load_run_returns_a_ready_model(cli_runs):
    root, _ = cli_runs
    run = vmivae.load_run(root / "paper-joint")
    assert not run.vae.training and run.config.categorical == 10
    x = vmivae.load("mnist-5k", "test").images[:8]
    assert run.vae.reconstruct(x).shape == x.shape
    assert run.generate(5).shape == (5, 1, 28, 28)
    assert len(run.history) == 30 and run.metrics["steps"] == 30


def test_same_seed_same_numbers_and_other_seed_other_numbers():
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 12, "log_every": 4})
    a = vmivae.fit(config, progress=False).history
    b = vmivae.fit(config, progress=False).history
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    c = vmivae.fit(config.replace(seed=1), progress=False).history
    assert not a["loss"].equals(c["loss"])


def test_alternating_step_trains_too():
    config = vmivae.make_config("paper-joint", "smoke", {"step_mode": "alternating"})
    history = vmivae.fit(config, progress=False).history
    assert history["loss"].tail(5).mean() < history["loss"].head(5).mean()


def test_fit_accepts_user_data(tmp_path):
    images = torch.rand(64, 3, 32, 32)  # [0, 1] colour images with labels, no dataset name
    labels = torch.arange(64) % 4
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 6, "batch_size": 16, "categorical": 4})
    run = vmivae.fit(config, data=torch.utils.data.TensorDataset(images, labels), out=tmp_path / "own", progress=False)
    assert run.config.dataset == "custom" and run.vae.image_shape == (3, 32, 32)
    again = vmivae.load_run(tmp_path / "own")
    assert again.config.dataset == "custom" and again.vae.image_shape == (3, 32, 32)


def test_non_finite_loss_stops_with_the_step_and_writes_no_checkpoint(tmp_path):
    images = torch.zeros(32, 1, 28, 28)
    images[5] = float("nan")
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 10, "batch_size": 32})
    with pytest.raises(TrainingError, match=r"non-finite \(nan or inf\) at step 1"):
        vmivae.fit(config, data=vmivae.ImageData(images), out=tmp_path / "nan", progress=False)
    assert not (tmp_path / "nan" / "checkpoint.pt").exists() and not (tmp_path / "nan" / "metrics.json").exists()


def test_out_must_be_empty_unless_overwrite(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 2})
    with pytest.raises(OutputError, match="not empty; choose a new folder or pass --overwrite"):
        vmivae.fit(config, out=out, progress=False)
    vmivae.fit(config, out=out, overwrite=True, progress=False)
    assert (out / "metrics.json").is_file() and (out / "notes.txt").read_text() == "mine"


def test_fit_rejects_a_non_config():
    with pytest.raises(ConfigError, match="needs a vmivae.Config"):
        vmivae.fit({"steps": 3})


@pytest.mark.parametrize("damage,message", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "truncated or not a PyTorch file"),
    (lambda p: torch.save({"weights": torch.zeros(2)}, p), "not a vmivae checkpoint"),
    (lambda p: p.write_text("hello"), "truncated or not a PyTorch file"),
])
def test_damaged_checkpoints_are_clear_errors(cli_runs, tmp_path, damage, message):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(cli_runs[0] / "paper-gaussian", run)
    damage(run / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=message):
        vmivae.load_run(run)


def test_run_directory_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        vmivae.load_run(tmp_path / "nothing")
    with pytest.raises(CheckpointError, match="is not a vmivae run directory"):
        vmivae.load_run(tmp_path)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "vmivae", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args,message", [
    (["--preset", "paper-jont"], "unknown preset 'paper-jont'"),
    (["--set", "dataset=mnsit"], "unknown dataset 'mnsit'"),
    (["--set", "lamda_cat=1"], "unknown config key 'lamda_cat'"),
    (["--set", "batch_size=big"], "'batch_size' must be an integer, got 'big'"),
    (["--set", "lambda_cat=-1"], "lambda_cat must be non-negative"),
    (["--preset", "paper-joint-fashion"], "fashion-mnist is not in"),
])
def test_cli_bad_input_is_one_line_exit_2_and_no_run_dir(tmp_path, args, message):
    out = tmp_path / "run"
    result = _cli("train", "--profile", "smoke", "--quiet", "--out", str(out), *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("vmivae: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_cli_help_for_every_command():
    for command in ("train", "datasets", "presets"):
        result = _cli(command, "--help")
        assert result.returncode == 0 and "usage: vmivae" in result.stdout


def test_cli_lists_datasets_and_presets(tmp_path):
    result = _cli("datasets", "--root", str(tmp_path))
    assert result.returncode == 0
    assert "mnist-5k       available" in result.stdout and "mnist          missing" in result.stdout
    assert "paper-joint-baseline" in _cli("presets").stdout
