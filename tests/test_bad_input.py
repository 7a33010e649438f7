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
    (["--set", "seed=18446744073709551616"], "seed must be between 0 and 18446744073709551615 (a 64-bit generator's seed)"),
    (["--set", "steps=100000000000000000000"], "steps is too large (100000000000000000000); it must be at most 9223372036854775807"),
    (["--set", "device=cuda:abc"], "unknown device 'cuda:abc'; valid: auto, cpu, cuda, cuda:N, mps"),
    (["--set", "device=gpu"], "unknown device 'gpu'"),
    (["--set", "device=cuda:"], "unknown device 'cuda:'"),
    (["--set", "continuous=2000000000"], "the model and the data do not fit in cpu memory"),
]


@pytest.mark.parametrize("args,message", TRAIN_ROWS, ids=[" ".join(a) for a, _ in TRAIN_ROWS])
def test_train_flags(tmp_path, capsys, monkeypatch, args, message, run_cli):
    monkeypatch.setenv("VMIVAE_DATA", str(tmp_path / "data"))
    out = tmp_path / "run"
    code, line = run_cli("train", "--profile", "smoke", "--quiet", "--out", out, *args)
    assert code == 2 and message in line, line
    assert not out.exists()  # every check comes before the first write: nothing blocks a corrected rerun


@pytest.mark.parametrize("content,message", [
    (None, "preset file {path} does not exist"),
    ("steps: [1, 2", "is not valid YAML"),
    ("- just\n- a list", "must hold a mapping of config keys"),
    ("stepz: 3", "unknown config key 'stepz' (did you mean 'steps'?)"),
    ("extends: paper-jont", "unknown preset 'paper-jont'"),
    ("extends: mine.yaml", "preset '{path}' extends itself; remove the circular 'extends'"),
    ("extends: other.yaml", "extends itself through a circle of presets ({path} -> {other} -> {path})"),
    ("extends: [paper-joint, paper-gaussian]", "'extends' in preset '{path}' must be one preset name or .yaml path, got ['paper-joint', 'paper-gaussian']"),
    ("extends: 3", "'extends' in preset '{path}' must be one preset name or .yaml path, got 3"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff", "preset file {path} is not a text file (not UTF-8)"),
    ("folder", "preset file {path} is a folder; give a .yaml file"),
])
def test_preset_files(tmp_path, capsys, content, message, run_cli):
    path, other = tmp_path / "mine.yaml", tmp_path / "other.yaml"
    other.write_text("extends: mine.yaml\n")  # for the circle
    if content == "folder":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    code, line = run_cli("train", "--preset", path, "--profile", "smoke", "--out", tmp_path / "run")
    assert code == 2 and message.format(path=path, other=other) in line, line
    assert not (tmp_path / "run").exists()


def test_a_preset_file_may_extend_a_file_beside_it(tmp_path, monkeypatch):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "base.yaml").write_text("extends: paper-joint\nlambda_cat: 0.07\n")
    (tmp_path / "presets" / "child.yaml").write_text("extends: base.yaml\nsteps: 2\n")
    monkeypatch.chdir(tmp_path / "..")  # not the presets' folder
    config = vmivae.make_config(str(tmp_path / "presets" / "child.yaml"), "smoke")
    assert config.lambda_cat == 0.07 and config.steps == 2


def test_a_preset_file_that_is_right_trains(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text("extends: paper-joint\nlambda_cat: 0.05\nsteps: 2\n")
    assert main(["train", "--preset", str(path), "--profile", "smoke", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert vmivae.load_run(tmp_path / "run").config.lambda_cat == 0.05


def test_existing_non_empty_out_needs_overwrite(tmp_path, capsys, run_cli):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        code, line = run_cli("train", "--profile", "smoke", "--out", out, *extra)
        assert code == 2 and "is not empty and holds no vmivae run; choose a new or empty folder" in line, line
    assert (out / "mine.txt").read_text() == "keep me" and sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_out_holding_someone_elses_config_json_is_never_replaced(tmp_path, capsys, run_cli):
    out = tmp_path / "app"
    out.mkdir()
    (out / "config.json").write_text('{"port": 8080}')
    code, line = run_cli("train", "--profile", "smoke", "--out", out, "--overwrite")
    assert code == 2 and "holds a config.json that vmivae did not write; choose another folder" in line, line
    assert (out / "config.json").read_text() == '{"port": 8080}'


def test_a_typo_with_overwrite_keeps_the_finished_run(finished_run, tmp_path, capsys, run_cli):
    run = copy_run(finished_run, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    for typo in ("batch_size=5000", "device=cuda:O", "seed=-1", "dataset=mnsit"):
        code, line = run_cli("train", "--profile", "smoke", "--quiet", "--out", run, "--overwrite", "--set", typo)
        assert code == 2, line
    code, line = run_cli("train", "--profile", "smoke", "--quiet", "--out", run)
    assert code == 2 and "holds a finished run already; choose a new folder, pass --overwrite to replace it" in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_with_overwrite_is_refused(finished_run, tmp_path, capsys, run_cli):
    code, line = run_cli("train", "--resume", copy_run(finished_run, tmp_path), "--overwrite")
    assert code == 2 and "drop --preset/--profile/--out/--overwrite" in line


def test_out_that_is_a_file(tmp_path, capsys, run_cli):
    out = tmp_path / "file"
    out.write_text("")
    code, line = run_cli("train", "--profile", "smoke", "--out", out)
    assert code == 2 and "is a file, not a folder" in line


def test_read_only_output_folder(tmp_path, capsys, run_cli):
    if os.geteuid() == 0:  # root writes through permission bits: use a read-only file system instead
        out = Path("/proc/vmivae-run")
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        out = tmp_path / "ro" / "run"
    code, line = run_cli("train", "--profile", "smoke", "--out", out)
    assert code == 2 and f"cannot create output folder {out}" in line and "choose a writable folder" in line


def test_resume_a_folder_that_is_not_a_run(tmp_path, capsys, run_cli):
    code, line = run_cli("train", "--resume", tmp_path)
    assert code == 2 and "is not a vmivae run directory" in line


def test_resume_cannot_change_the_model(finished_run, tmp_path, capsys, run_cli):
    code, line = run_cli("train", "--resume", copy_run(finished_run, tmp_path), "--set", "steps=6", "--set", "categorical=4")
    assert code == 2 and "cannot change categorical when resuming" in line


def test_resume_with_nothing_to_do(finished_run, tmp_path, capsys, run_cli):
    code, line = run_cli("train", "--resume", copy_run(finished_run, tmp_path))
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
def test_damaged_or_foreign_checkpoints(finished_run, tmp_path, capsys, damage, message, run_cli):
    run = copy_run(finished_run, tmp_path)
    damage(run / "checkpoint.pt")
    code, line = run_cli("evaluate", run, "--out", tmp_path / "e.json", "--profile", "smoke")
    assert code == 2 and message in line, line
    assert not (tmp_path / "e.json").exists()


def test_checkpoint_for_another_image_size(finished_run, tmp_path, capsys, run_cli):
    run = copy_run(finished_run, tmp_path)
    info = json.loads((run / "config.json").read_text())
    info["image_shape"] = [3, 32, 32]
    (run / "config.json").write_text(json.dumps(info))
    code, line = run_cli("evaluate", run, "--out", tmp_path / "e.json", "--profile", "smoke")
    assert code == 2 and "does not match the model in config.json" in line


def test_damaged_config_json(finished_run, tmp_path, capsys, run_cli):
    run = copy_run(finished_run, tmp_path)
    (run / "config.json").write_text("{ not json")
    code, line = run_cli("evaluate", run, "--out", tmp_path / "e.json")
    assert code == 2 and "is not valid JSON" in line


def test_unfinished_run_cannot_be_evaluated(finished_run, tmp_path, capsys, run_cli):
    run = copy_run(finished_run, tmp_path)
    (run / "metrics.json").unlink()
    code, line = run_cli("evaluate", run, "--out", tmp_path / "e.json")
    assert code == 2 and f"did not finish (no metrics.json); resume it with: vmivae train --resume {run}" in line


def test_evaluate_a_run_on_your_own_data_says_how(tmp_path, capsys, run_cli):
    run = tmp_path / "own"
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 2, "batch_size": 8})
    vmivae.fit(config, data=torch.rand(16, 1, 28, 28), out=run, progress=False)
    code, line = run_cli("evaluate", run, "--out", tmp_path / "e.json")
    assert code == 2 and "was trained on your own images, which vmivae evaluate cannot load; evaluate it from Python: " in line, line
    assert "vmivae.evaluate(vmivae.load_run(" in line and "unknown dataset" not in line


@pytest.mark.parametrize("where,message", [
    ("folder", "--out {out} is a folder; give a file name"),
    ("under a file", "cannot write --out {out}: {parent} is a file, not a folder"),
])
def test_evaluate_out_is_checked_first(finished_run, tmp_path, capsys, where, message, run_cli):
    if where == "folder":
        out = tmp_path / "results"
        out.mkdir()
    else:
        (tmp_path / "notes").write_text("")
        out = tmp_path / "notes" / "e.json"
    code, line = run_cli("evaluate", finished_run, "--out", out)
    assert code == 2 and message.format(out=out, parent=tmp_path / "notes") in line, line


@pytest.mark.parametrize("name", ["checkpoint.pt", "metrics.json", "config.json", "history.csv", "eval-quick-generation.json"])
def test_evaluate_never_writes_over_the_runs_own_files(finished_run, tmp_path, capsys, name, run_cli):
    run = copy_run(finished_run, tmp_path)
    (run / "eval-quick-generation.json").write_text("{}")
    before = (run / name).read_bytes()
    code, line = run_cli("evaluate", run, "--out", run / name, "--overwrite")
    assert code == 2 and f"--out {run / name} is " in line and "choose another file" in line, line
    assert (run / name).read_bytes() == before  # nothing replaced


def test_evaluate_out_must_be_a_regular_file(finished_run, tmp_path, capsys, run_cli):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    code, line = run_cli("evaluate", finished_run, "--out", fifo, "--overwrite")
    assert code == 2 and f"--out {fifo} is not a regular file" in line, line


BENCH_ROWS = [
    (["--presets", "paper-jont"], "unknown preset 'paper-jont'"),
    (["--presets", ","], "--presets ',' names no preset"),
    (["--batch", "0"], "--batch must be at least 2, got 0"),
    (["--batch", "5000"], "--batch 5000 is larger than the 4000 training images"),
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--repeats", "-2"], "--repeats must be at least 1, got -2"),
    (["--warmup", "-1"], "--warmup must be at least 0, got -1"),
    (["--device", "cuda:x"], "unknown device 'cuda:x'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--out", "{tmp}"], "--out {tmp} is a folder; give a file name"),
    (["--out", "{tmp}/notes/b.json"], "cannot write --out {tmp}/notes/b.json: {tmp}/notes is a file"),
    (["--out", "{tmp}/b.md", "--markdown", "{tmp}/b.md"], "--out and --markdown are the same file"),
]


@pytest.mark.parametrize("args,message", BENCH_ROWS, ids=[" ".join(a) for a, _ in BENCH_ROWS])
def test_bench_options_are_checked_before_it_runs(tmp_path, capsys, monkeypatch, args, message, run_cli):
    import vmivae.perf.bench

    monkeypatch.setattr(vmivae.perf.bench, "run_bench", lambda settings: pytest.fail("the benchmark started"))
    (tmp_path / "notes").write_text("")
    code, line = run_cli("bench", *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and message.format(tmp=tmp_path) in line, line


def test_bench_arguments_argparse_cannot_read_keep_its_usage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["bench", "--batch", "many"])
    assert info.value.code == 2 and "usage: vmivae bench" in capsys.readouterr().err


def _run_all_chapter_01(tmp_path, *options):
    """scripts/run_all.py on chapter 1 only, no book, every output and the data under ``tmp_path``."""
    env = {**os.environ, "VMIVAE_DATA": str(tmp_path / "data")}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "run_all.py"), "--only", "01", "--no-book", *options,
                           "--build-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs"), "--figures-dir", str(tmp_path / "figs")],
                          capture_output=True, text=True, env=env)


def test_papermill_parameter_errors_name_the_notebook_and_cell(tmp_path):
    """A bad notebook parameter stops the notebook in its first config cell; run_all says which."""
    result = _run_all_chapter_01(tmp_path, "--param", "profile=fast")
    assert result.returncode == 1
    assert "notebook 01_vae.py failed in cell" in result.stderr and "unknown profile 'fast'" in result.stderr
    assert (tmp_path / "executed" / "01_vae.ipynb").is_file()  # the partial notebook is kept for inspection


def test_run_all_leaves_a_bad_device_to_the_chapter_that_names_its_cell(tmp_path):
    result = _run_all_chapter_01(tmp_path, "--device", "tpu")
    assert result.returncode == 1
    assert "run_all: not training ahead (unknown device 'tpu'" in result.stderr
    assert "notebook 01_vae.py failed in cell" in result.stderr and not list((tmp_path / "runs").glob("*/metrics.json"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_run_all_stops_in_one_sentence_when_training_ahead_fails(tmp_path):
    result = _run_all_chapter_01(tmp_path, "--device", "cuda", "--profile", "smoke")
    assert result.returncode == 1
    assert "run_all: training the chapters' runs ahead stopped: " in result.stderr and "CUDA is not available" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "executed").exists()


def test_run_all_parameter_syntax(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_all.py"), "--param", "seeds", "--build-dir", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "--param expects KEY=VALUE" in result.stderr


def test_a_value_in_a_message_is_short_and_on_one_line():
    """One formatter for every message that quotes a value: an argument with its type, a stored value as written."""
    from vmivae.errors import shown

    assert shown(42, typed=True) == "42 (int)" and shown(None, typed=True) == "None" and shown("a" * 50, typed=True) == "a str"
    assert shown({"n_eval": 5}, typed=True) == "a dict" and shown([1, 2], typed=True) == "a list"
    assert shown(torch.zeros(3)) == shown(torch.zeros(3), typed=True) == "a tensor of shape [3]"
    assert shown(3.5) == "3.5" and shown([1, 2]) == "[1, 2]" and shown(list(range(30))) == "a list"
    assert shown("x" * 50) == "'" + "x" * 36 + "..." and shown("two\nlines") == "'two\\nlines'"
