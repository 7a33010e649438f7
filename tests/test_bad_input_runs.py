"""Damaged run folders and replaced runs: every file vmivae reads back is checked, and --overwrite loses nothing early.

A run folder whose config.json, checkpoint.pt or metrics.json no longer holds what vmivae wrote is one sentence
naming that file and what is wrong with it, from ``load_run``, ``vmivae train --resume`` and ``vmivae evaluate``.
``--overwrite`` keeps the run it replaces until the new run writes its first checkpoint, and then removes every
file derived from the old model (its evaluations too).
"""

import errno
import json
import shutil
import signal
import time

import pytest
import torch
from test_faults import Background, cli, files, one_error, train_args

import vmivae
import vmivae.runs.files as run_files
from vmivae.errors import CheckpointError, OutputError, RunInUseError
from vmivae.runs.folder import LOCK, RunFolder


@pytest.fixture
def run_copy(finished_run, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(finished_run, target)
    yield target
    shutil.rmtree(target, ignore_errors=True)  # a checkpoint is tens of MB: do not keep one per case


def edit_json(name, **changes):
    def edit(run):
        data = json.loads((run / name).read_text())
        for key, value in changes.items():
            if value is None:
                data.pop(key)
            else:
                data[key] = value(data) if callable(value) else value
        (run / name).write_text(json.dumps(data))
    return edit


def edit_checkpoint(**changes):
    def edit(run):
        state = torch.load(run / "checkpoint.pt", weights_only=True)
        for key, value in changes.items():
            if value is None:
                state.pop(key)
            else:
                state[key] = value
        torch.save(state, run / "checkpoint.pt")
    return edit


def config_key(key, value):
    def change(info):
        config = {k: v for k, v in info["config"].items() if k != key}
        return config if value is None else {**config, key: value}
    return edit_json("config.json", config=change)


DAMAGE = {
    "image_shape text": (edit_json("config.json", image_shape="abc"), "config.json is damaged (its 'image_shape' is 'abc', not an image shape"),
    "image_shape [-1]": (edit_json("config.json", image_shape=[-1]), "config.json is damaged (its 'image_shape' is [-1], not an image shape"),
    "image_shape letters": (edit_json("config.json", image_shape=["a", "b", "c"]), "config.json is damaged (its 'image_shape' is ['a', 'b', 'c']"),
    "no image_shape": (edit_json("config.json", image_shape=None), "config.json is damaged (it has no 'image_shape')"),
    "no dataset": (edit_json("config.json", dataset=None), "config.json is damaged (it has no 'dataset')"),
    "config a list": (edit_json("config.json", config=[1, 2]), "config.json is damaged (its 'config' is [1, 2], not an object of config keys)"),
    "steps missing": (config_key("steps", None), "config.json is damaged (its config lacks 'steps')"),
    "steps text": (config_key("steps", "abc"), "config.json is damaged (config key 'steps' must be an integer, got 'abc')"),
    "unknown key": (config_key("colour", "red"), "config.json is damaged (its config has the unknown key 'colour')"),
    "fingerprint": (edit_json("config.json", data_fingerprint=3), "config.json is damaged (its 'data_fingerprint' is 3"),
    "no history": (edit_checkpoint(history=None), "checkpoint.pt is damaged (it has no 'history')"),
    "no step": (edit_checkpoint(step=None), "checkpoint.pt is damaged (it has no 'step')"),
    "step text": (edit_checkpoint(step="x"), "checkpoint.pt is damaged (its 'step' is 'x', not a whole number of steps)"),
    "step fraction": (edit_checkpoint(step=2.5), "checkpoint.pt is damaged (its 'step' is 2.5, not a whole number of steps)"),
    "history rows": (edit_checkpoint(history=torch.zeros(2, 12, dtype=torch.float64)), "checkpoint.pt is damaged (its history has 2 rows but its step is 3)"),
    "history flat": (edit_checkpoint(history=torch.zeros(3)), "checkpoint.pt is damaged (its 'history' is a tensor of shape [3], not a table"),
    "no rng": (edit_checkpoint(rng=[]), "checkpoint.pt is damaged (its 'rng' is [], not the random states"),
    "seconds text": (edit_checkpoint(seconds="x"), "checkpoint.pt is damaged (its 'seconds' is 'x', not a duration)"),
    "no optimiser": (edit_checkpoint(vae_opt=None), "checkpoint.pt is damaged (it has no 'vae_opt')"),
    "sampler": (edit_checkpoint(sampler={"pos": 0}), "checkpoint.pt is damaged (its 'sampler' lacks the generator"),
    "meta a list": (edit_checkpoint(meta=[1]), "checkpoint.pt is damaged (its 'meta' is [1], not the run's config.json)"),
    "metrics empty": (edit_json("metrics.json", steps=None), "metrics.json is damaged (it has no 'steps')"),
    "metrics steps": (edit_json("metrics.json", steps="x"), "metrics.json is damaged (its 'steps' is 'x', not a whole number)"),
    "metrics seconds": (edit_json("metrics.json", seconds=[1]), "metrics.json is damaged (its 'seconds' is [1], not a non-negative number)"),
    "metrics final": (edit_json("metrics.json", final="good"), "metrics.json is damaged (its 'final' is 'good', not an object of numbers)"),
    "metrics other run": (edit_json("metrics.json", steps=7), "metrics.json is damaged (it says the run finished at step 7 but checkpoint.pt holds step 3"),
}
RESUMED_ANYWAY = {"metrics empty", "metrics steps", "metrics seconds", "metrics final", "metrics other run"}  # resume rewrites metrics.json


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_run_file_is_named_by_load_resume_and_evaluate(run_copy, tmp_path, capsys, case, run_cli):
    damage, message = DAMAGE[case]
    damage(run_copy)
    before = files(run_copy)
    with pytest.raises(CheckpointError) as info:
        vmivae.load_run(run_copy)
    text = str(info.value)
    assert text.startswith(str(run_copy)) and message in text and text.count("; ") <= 2, text
    assert "restore" in text and ("train the run again" in text or "retrain" in text or "vmivae that wrote it" in text), text
    code, line = run_cli("evaluate", run_copy, "--out", tmp_path / "e.json", "--profile", "smoke")
    assert code == 2 and message in line, line
    assert not (tmp_path / "e.json").exists()
    if case not in RESUMED_ANYWAY:
        code, line = run_cli("train", "--resume", run_copy, "--set", "steps=5")
        assert code == 2 and message in line, line
        assert files(run_copy) == before  # nothing written, no lock left behind


def test_an_image_shape_that_disagrees_with_the_dataset_names_config_json(run_copy, capsys, run_cli):
    edit_json("config.json", image_shape=[3, 32, 32])(run_copy)
    code, line = run_cli("train", "--resume", run_copy, "--set", "steps=5")
    assert code == 2 and f"{run_copy}/config.json says the run was trained on (3, 32, 32) images but mnist-5k holds (1, 28, 28) images" in line
    assert "restore config.json from a copy" in line


# ---------------------------------------------------------------------------- --overwrite keeps the old run until it may go


def evaluation_of(run, path):
    """What ``vmivae evaluate RUN --out PATH`` writes (its keys; the numbers do not matter here)."""
    path.write_text(json.dumps({"run": str(run), "dataset": "mnist-5k", "n_test": 1000, "mi": {"categorical": {"nats": 0.1}}}))


def test_an_overwrite_stopped_before_its_first_checkpoint_keeps_the_finished_run(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    evaluation_of(run, run / "eval.json")
    before = files(run)
    proc = Background(*train_args(run, 100_000, "--set", "checkpoint_every=100000", "--overwrite"))
    proc.wait_for("loss=")
    proc.proc.send_signal(signal.SIGINT)
    assert proc.finish() == 130, proc.stderr[-1500:]
    assert ("this run reached no checkpoint, so nothing of it was kept and the finished run in "
            f"{run} that it was to replace is unchanged") in proc.stderr
    assert "Traceback" not in proc.stderr and "resume with" not in proc.stderr
    assert files(run) == before  # byte for byte: the finished run, its evaluation, no lock
    assert vmivae.load_run(run).metrics["steps"] == 3


def test_an_overwrite_stopped_after_its_first_checkpoint_keeps_the_new_run(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    proc = Background(*train_args(run, 100_000, "--set", "checkpoint_every=2", "--overwrite"))
    deadline = time.time() + 120
    while (run / "metrics.json").exists() and time.time() < deadline:  # the first checkpoint retires the finished run
        time.sleep(0.05)
    proc.proc.send_signal(signal.SIGINT)
    assert proc.finish() == 130, proc.stderr[-1500:]
    assert "checkpoint written to" in proc.stderr and "resume with" in proc.stderr
    assert not (run / "metrics.json").exists() and vmivae.load_run(run, allow_incomplete=True).config.steps == 100_000


def test_overwrite_removes_every_evaluation_of_the_old_model(finished_run, tmp_path):
    run, other = tmp_path / "run", tmp_path / "other"
    shutil.copytree(finished_run, run)
    shutil.copytree(finished_run, other)
    evaluation_of(run, run / "eval.json")  # vmivae evaluate RUN --out RUN/eval.json
    evaluation_of(run, run / "eval-quick-generation.json")  # the run cache's
    evaluation_of(tmp_path / "moved-away", run / "before-the-move.json")  # the run was evaluated where it was before a move
    evaluation_of(other, run / "other-run.json")  # another run's evaluation, kept here on purpose
    (run / "notes.json").write_text('{"mine": true}')
    assert {p.name for p in RunFolder(run).replaceable_files()} >= {"eval.json", "eval-quick-generation.json", "before-the-move.json"}
    vmivae.fit(vmivae.make_config("paper-joint", "smoke", {"steps": 2}), out=run, overwrite=True, progress=False)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json", "history.csv", "metrics.json", "notes.json", "other-run.json"]
    assert vmivae.load_run(run).metrics["steps"] == 2


# ---------------------------------------------------------------------------- a run in use, a full disk


def test_a_run_training_towards_its_first_checkpoint_is_in_use_not_missing(tmp_path):
    out = tmp_path / "run"
    run = Background(*train_args(out, 100_000, "--set", "checkpoint_every=100000"))
    try:
        run.wait_for("loss=")
        assert not (out / "checkpoint.pt").exists()
        message = f"run folder {out} is in use by process {run.proc.pid} (vmivae train"
        one_error(cli("train", "--resume", out, "--set", "steps=200000", "--quiet"), message)
        one_error(cli("evaluate", out, "--out", tmp_path / "e.json", "--profile", "smoke"), message)
        with pytest.raises(RunInUseError, match="is in use by process"):
            vmivae.load_run(out)
    finally:
        run.proc.send_signal(signal.SIGKILL)
        run.finish()
    one_error(cli("train", "--resume", out, "--quiet"), "is not a vmivae run directory")  # its process gone: nothing there


def fill_disk_at(monkeypatch, name):
    real = run_files._stage

    def failing(path, write):
        if path.name == name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(run_files, "_stage", failing)


def test_a_full_disk_on_a_fresh_runs_first_checkpoint_says_start_again(tmp_path, monkeypatch):
    out = tmp_path / "run"
    fill_disk_at(monkeypatch, "checkpoint.pt")
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 4, "checkpoint_every": 2})
    with pytest.raises(OutputError) as info:
        vmivae.fit(config, out=out, progress=False)
    text = str(info.value)
    assert text == (f"cannot write the checkpoint of step 2 to {out} (the disk is full: No space left on device); no checkpoint was written, "
                    "so nothing of this run was kept; free space or fix the folder, then start the run again")
    assert "resume" not in text and not out.exists()


def test_a_full_disk_on_an_overwrite_says_the_old_run_stands(finished_run, tmp_path, monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    before = files(out)
    fill_disk_at(monkeypatch, "checkpoint.pt")
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 4, "checkpoint_every": 2})
    with pytest.raises(OutputError, match=f"no checkpoint was written and the finished run in {out} that it was to replace is unchanged; "
                                          "free space or fix the folder, then start the run again"):
        vmivae.fit(config, out=out, overwrite=True, progress=False)
    assert files(out) == before and not (out / LOCK).exists()
