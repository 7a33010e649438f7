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


def test_non_finite_loss_stops_with_the_step_and_writes_nothing(tmp_path, monkeypatch):
    import vmivae.trainer

    real = vmivae.trainer.Stepper.__call__
    monkeypatch.setattr(vmivae.trainer.Stepper, "__call__", lambda self, x, tau: real(self, x, tau) * float("nan"))
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 10, "batch_size": 32})
    with pytest.raises(TrainingError, match=r"non-finite \(nan or inf\) at step 1; no checkpoint was written"):
        vmivae.fit(config, data=torch.rand(32, 1, 28, 28), out=tmp_path / "nan", progress=False)
    assert not (tmp_path / "nan").exists()  # nothing was written, so a plain rerun is not blocked


def test_overwrite_replaces_only_vmivae_runs_and_only_their_files(tmp_path):
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 2})
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # not written by vmivae: refused either way
        with pytest.raises(OutputError, match="is not empty and holds no vmivae run; choose a new or empty folder"):
            vmivae.fit(config, out=busy, overwrite=overwrite, progress=False)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    (busy / "config.json").write_text('{"name": "somebody else\'s app"}')
    with pytest.raises(OutputError, match="holds a config.json that vmivae did not write"):
        vmivae.fit(config, out=busy, overwrite=True, progress=False)
    assert (busy / "config.json").read_text() == '{"name": "somebody else\'s app"}'

    run = tmp_path / "run"
    vmivae.fit(config, out=run, progress=False)
    (run / "notes.txt").write_text("mine")
    (run / "eval-quick-generation.json").write_text(json.dumps({"mi": {}, "n_test": 1, "dataset": "mnist-5k"}))  # the run cache's
    (run / "eval-mine.json").write_text("{}")  # looks similar, but vmivae did not write it
    with pytest.raises(OutputError, match="holds a finished run already; choose a new folder, pass --overwrite to replace it"):
        vmivae.fit(config, out=run, progress=False)
    vmivae.fit(config.replace(seed=1), out=run, overwrite=True, progress=False)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json", "eval-mine.json", "history.csv", "metrics.json", "notes.txt"]
    assert vmivae.load_run(run).config.seed == 1


def test_a_late_mistake_with_overwrite_keeps_the_finished_run(tmp_path):
    run = tmp_path / "run"
    vmivae.fit(vmivae.make_config("paper-joint", "smoke", {"steps": 2}), out=run, progress=False)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(vmivae.VMIVAEError, match="batch_size 5000 is larger than the 4000 training images"):
        vmivae.fit(vmivae.make_config("paper-joint", "smoke", {"batch_size": 5000}), out=run, overwrite=True, progress=False)
    with pytest.raises(vmivae.VMIVAEError, match="images must be square"):
        vmivae.fit(vmivae.make_config("paper-joint", "smoke", {"batch_size": 4}), data=torch.rand(8, 1, 28, 32), out=run, overwrite=True,
                   progress=False)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


@pytest.mark.parametrize("form", ["dataloader", "images only", "channels last uint8", "one-hot labels", "list of pairs", "iterable"])
def test_fit_accepts_data_in_the_forms_users_have(tmp_path, form):
    images, labels = torch.rand(16, 1, 28, 28), torch.arange(16) % 4
    data = {
        "dataloader": lambda: torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=5),
        "images only": lambda: torch.utils.data.TensorDataset(images),
        "channels last uint8": lambda: (images.permute(0, 2, 3, 1) * 255).to(torch.uint8).numpy(),
        "one-hot labels": lambda: (images, torch.nn.functional.one_hot(labels)),
        "list of pairs": lambda: [(x.numpy(), int(y)) for x, y in zip(images, labels)],
        "iterable": lambda: (x for x in images),
    }[form]()
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 2, "batch_size": 8})
    run = vmivae.fit(config, data=data, out=tmp_path / "own", progress=False)
    assert run.vae.image_shape == (1, 28, 28) and run.metrics["steps"] == 2
    expected = vmivae.datasets.as_image_data(images).images
    own = vmivae.datasets.as_image_data(data if form not in ("dataloader", "iterable") else images).images
    assert torch.allclose(own, expected, atol=2.01 / 255 if "uint8" in form else 0)  # [-1, 1] spans 2


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
