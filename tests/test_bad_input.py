"""One test per row of the bad-input table (book/errors.md): one clear sentence, exit 2, nothing half-written."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vmivae
from vmivae.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("vmivae: error:")]
    return code, (lines[0] if lines else err)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "run"
    vmivae.fit(vmivae.make_config("paper-joint", "smoke", {"steps": 3}), out=path, progress=False)
    return path


def copy_run(finished_run, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(finished_run, target)
    return target


TRAIN_ROWS = [
    (["--preset", "paper-jont"], "unknown preset 'paper-jont' (did you mean 'paper-joint'?)"),
    (["--profile", "fast"], "unknown profile 'fast'"),
    (["--set", "lambda_cat"], "expected key=value, got 'lambda_cat'"),
    (["--set", "lamda_cat=1"], "unknown config key 'lamda_cat' (did you mean 'lambda_cat'?)"),
    (["--set", "batch_size=abc"], "'batch_size' must be an integer, got 'abc'"),
    (["--set", "lambda_cat=-0.1"], "lambda_cat must be non-negative"),
    (["--set", "tau_min=2"], "tau_min (2.0) must not exceed tau0 (1.0)"),
    (["--set", "batch_size=0"], "batch_size must be at least 2"),
    (["--set", "mi_dims=[0, 99]"], "mi_dims [99] are outside the Gaussian dims"),
    (["--preset", "paper-gaussian", "--set", "mi_categorical=true"], "the model has no categorical code"),
    (["--set", "device=cuda"], "CUDA is not available"),
    (["--set", "dataset=mnsit"], "unknown dataset 'mnsit'"),
    (["--set", "dataset=celeba"], "CelebA is not in"),
    (["--set", "batch_size=5000"], "batch_size 5000 is larger than the 4000 training images"),
]


@pytest.mark.parametrize("args,message", TRAIN_ROWS, ids=[" ".join(a) for a, _ in TRAIN_ROWS])
def test_train_flags(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setenv("VMIVAE_DATA", str(tmp_path / "data"))
    out = tmp_path / "run"
    code, line = run_cli(capsys, "train", "--profile", "smoke", "--quiet", "--out", out, *args)
    assert code == 2 and message in line, line
    assert not (out / "metrics.json").exists() and not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("content,message", [
    (None, "preset file {path} does not exist"),
    ("steps: [1, 2", "is not valid YAML"),
    ("- just\n- a list", "must hold a mapping of config keys"),
    ("stepz: 3", "unknown config key 'stepz' (did you mean 'steps'?)"),
    ("extends: paper-jont", "unknown preset 'paper-jont'"),
])
def test_preset_files(tmp_path, capsys, content, message):
    path = tmp_path / "mine.yaml"
    if content is not None:
        path.write_text(content)
    code, line = run_cli(capsys, "train", "--preset", path, "--profile", "smoke", "--out", tmp_path / "run")
    assert code == 2 and message.format(path=path) in line, line


def test_a_preset_file_that_is_right_trains(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: paper-joint\nlambda_cat: 0.05\nsteps: 2\n")
    assert main(["train", "--preset", str(path), "--profile", "smoke", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert vmivae.load_run(tmp_path / "run").config.lambda_cat == 0.05


def test_existing_non_empty_out_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, line = run_cli(capsys, "train", "--profile", "smoke", "--out", out)
    assert code == 2 and "is not empty; choose a new folder or pass --overwrite" in line
    assert (out / "mine.txt").read_text() == "keep me"


def test_out_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("")
    code, line = run_cli(capsys, "train", "--profile", "smoke", "--out", out)
    assert code == 2 and "is a file, not a folder" in line


def test_read_only_output_folder(tmp_path, capsys):
    if os.geteuid() == 0:  # root writes through permission bits: use a read-only file system instead
        out = Path("/proc/vmivae-run")
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        out = tmp_path / "ro" / "run"
    code, line = run_cli(capsys, "train", "--profile", "smoke", "--out", out)
    assert code == 2 and f"cannot write to output folder {out}" in line


def test_resume_a_folder_that_is_not_a_run(tmp_path, capsys):
    code, line = run_cli(capsys, "train", "--resume", tmp_path)
    assert code == 2 and "is not a vmivae run directory" in line


def test_resume_cannot_change_the_model(finished_run, tmp_path, capsys):
    code, line = run_cli(capsys, "train", "--resume", copy_run(finished_run, tmp_path), "--set", "steps=6", "--set", "categorical=4")
    assert code == 2 and "cannot change categorical when resuming" in line


def test_resume_with_nothing_to_do(finished_run, tmp_path, capsys):
    code, line = run_cli(capsys, "train", "--resume", copy_run(finished_run, tmp_path))
    assert code == 2 and "pass a larger --set steps=N" in line


def test_resume_needs_resume_or_out(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--profile", "smoke"])
    assert info.value.code == 2 and "--out is required" in capsys.readouterr().err


@pytest.mark.parametrize("damage,message", [
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "is truncated or not a PyTorch file"),
    (lambda p: p.write_text("not a checkpoint"), "is truncated or not a PyTorch file"),
    (lambda p: torch.save({"weights": torch.zeros(3)}, p), "is a PyTorch file but not a vmivae checkpoint"),
    (lambda p: torch.save({"format": "vmivae-checkpoint", "format_version": 99}, p), "written by a newer vmivae"),
    (lambda p: torch.save({"format": "vmivae-checkpoint", "format_version": 1}, p), "written by an older vmivae"),
])
def test_damaged_or_foreign_checkpoints(finished_run, tmp_path, capsys, damage, message):
    run = copy_run(finished_run, tmp_path)
    damage(run / "checkpoint.pt")
    code, line = run_cli(capsys, "evaluate", run, "--out", tmp_path / "e.json", "--profile", "smoke")
    assert code == 2 and message in line, line
    assert not (tmp_path / "e.json").exists()


def test_checkpoint_for_another_image_size(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    info = json.loads((run / "config.json").read_text())
    info["image_shape"] = [3, 32, 32]
    (run / "config.json").write_text(json.dumps(info))
    code, line = run_cli(capsys, "evaluate", run, "--out", tmp_path / "e.json", "--profile", "smoke")
    assert code == 2 and "does not match the model in config.json" in line


def test_damaged_config_json(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    (run / "config.json").write_text("{ not json")
    code, line = run_cli(capsys, "evaluate", run, "--out", tmp_path / "e.json")
    assert code == 2 and "is not valid JSON" in line


def test_unfinished_run_cannot_be_evaluated(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    (run / "metrics.json").unlink()
    code, line = run_cli(capsys, "evaluate", run, "--out", tmp_path / "e.json")
    assert code == 2 and f"did not finish (no metrics.json); resume it with: vmivae train --resume {run}" in line


def test_bench_unknown_preset(capsys):
    code, line = run_cli(capsys, "bench", "--presets", "paper-jont")
    assert code == 2 and "unknown preset 'paper-jont'" in line


def test_papermill_parameter_errors_name_the_notebook_and_cell(tmp_path):
    """A bad notebook parameter stops the notebook in its first config cell; run_all says which."""
    env = {**os.environ, "VMIVAE_DATA": str(tmp_path / "data")}
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_all.py"), "--only", "01", "--no-book", "--param", "profile=fast",
                             "--build-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs"), "--figures-dir", str(tmp_path / "figs")],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert "notebook 01_vae.py failed in cell" in result.stderr and "unknown profile 'fast'" in result.stderr
    assert (tmp_path / "executed" / "01_vae.ipynb").is_file()  # the partial notebook is kept for inspection


def test_run_all_parameter_syntax(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_all.py"), "--param", "seeds", "--build-dir", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "--param expects KEY=VALUE" in result.stderr
