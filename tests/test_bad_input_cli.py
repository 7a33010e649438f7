"""The command line under careless use: Ctrl-C while starting, empty or odd paths and names, folders checked before work."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import vmivae
from vmivae.cli import main
from vmivae.config import FIELDS
from vmivae.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    return code, err


def one_error(code, err):
    """Exit status 2 and one line, ``vmivae: error: ...``; returns that line."""
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("vmivae: error: "), (code, err)
    return err[len("vmivae: error: "):]


# ---------------------------------------------------------------------------- Ctrl-C while Python imports torch


def torch_is_loading(pid: int) -> bool:
    """Whether the process has begun importing torch (its shared library is mapped): vmivae's own code has started."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("after", [0.0, 0.3])
def test_ctrl_c_while_starting_prints_one_line_and_exits_130(tmp_path, after):
    """A real process: SIGINT arrives while ``import vmivae`` is still loading torch, before the command's own code runs.

    The signal waits for torch to be mapped: before that, Python itself is starting (its ``site`` module,
    0.05 s idle, over 0.5 s on a busy machine), where no code of vmivae can catch anything.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "vmivae", "train", "--profile", "smoke", "--out", str(tmp_path / "run")],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a background shell would ignore it
    deadline = time.monotonic() + 60
    while not torch_is_loading(process.pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(after)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert "Traceback" not in err and process.returncode == 130, (process.returncode, err)
    assert err.strip() in ("vmivae: interrupted by Ctrl-C while starting; nothing was done",
                           "vmivae: aborted at once by Ctrl-C; the last checkpoint written, if any, is intact"), err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_evaluate_interrupted_says_so_in_one_line_and_writes_nothing(tmp_path, signum):
    """A real process: the signal arrives while ``vmivae evaluate`` measures (it holds the run's lock); it exits 128 + signum."""
    run, out = tmp_path / "run", tmp_path / "e.json"
    vmivae.fit(vmivae.make_config("paper-joint", "smoke", {"steps": 2, "log_every": 1}), out=run, progress=False)
    before = sorted(p.name for p in run.iterdir())
    process = subprocess.Popen([sys.executable, "-m", "vmivae", "evaluate", str(run), "--profile", "smoke", "--out", str(out)],
                               cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (run / ".vmivae.lock").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1.0)  # past reading the run: measuring (a smoke evaluation takes well over a second)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    name = signal.Signals(signum).name
    assert process.returncode == 128 + signum and "Traceback" not in err, (process.returncode, err)
    assert err.strip() == (f"vmivae: interrupted by {name} while evaluating {run}; nothing was written to {out} and the run is unchanged: "
                           "run the same command again to evaluate it"), err
    assert sorted(p.name for p in run.iterdir()) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no lock, no part file


def test_a_program_that_imports_vmivae_keeps_its_own_interrupt_handling():
    code = "import sys, vmivae; print(sys.excepthook is sys.__excepthook__)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert out.stdout.strip() == "True", out.stderr


# ---------------------------------------------------------------------------- empty names and paths are not the defaults


@pytest.mark.parametrize("args,message", [
    (["train", "--preset", "", "--out", "{tmp}/o"], "a preset is a name (see `vmivae presets`) or a .yaml path, got ''"),
    (["train", "--profile", "", "--out", "{tmp}/o"], "a profile is a name (see `vmivae presets`), got ''"),
    (["train", "--preset", " ", "--out", "{tmp}/o"], "a preset is a name (see `vmivae presets`) or a .yaml path, got ' '"),
    (["train", "--out", ""], "--out is empty; give a path"),
    (["train", "--resume", ""], "--resume is empty; give a path"),
    (["train", "--resume", "{tmp}/o", "--preset", ""], "--resume continues a run with its own config in its own folder"),
    (["evaluate", "", "--out", "{tmp}/e.json"], "RUN_DIR is empty; give a path"),
    (["datasets", "--root", ""], "--root is empty; give a path"),
    (["study", "--runs-dir", ""], "--runs-dir is empty; give a path"),
    (["train", "--set", "steps=" + "9" * 5000, "--out", "{tmp}/o"],
     "the value of config key 'steps' is a number too long to read (over 4300 digits); give a smaller one"),
])
def test_empty_names_and_paths_are_refused_not_defaulted(capsys, tmp_path, args, message):
    said = one_error(*run_cli(capsys, *(a.format(tmp=tmp_path) for a in args)))
    assert said.startswith(message), said
    assert not (tmp_path / "o").exists()


def test_a_preset_file_with_a_number_too_long_to_read(capsys, tmp_path):
    (tmp_path / "big.yaml").write_text("steps: " + "9" * 5000 + "\n")
    said = one_error(*run_cli(capsys, "train", "--preset", tmp_path / "big.yaml", "--out", tmp_path / "o"))
    assert said == f"preset file {tmp_path / 'big.yaml'} holds a number too long to read (over 4300 digits); give a smaller one"


# ---------------------------------------------------------------------------- ~ in a path


def test_tilde_is_the_home_folder_in_every_path_option(capsys, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    said = one_error(*run_cli(capsys, "evaluate", "~/missing", "--out", "~/e.json"))
    assert said.startswith(f"run directory {home / 'missing'} does not exist"), said
    code, err = run_cli(capsys, "train", "--profile", "smoke", "--quiet", "--set", "steps=1", "--out", "~/run")
    assert code == 0, err
    assert (home / "run" / "metrics.json").is_file() and not (tmp_path / "~").exists()


def test_tilde_of_an_unknown_user_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    said = one_error(*run_cli(capsys, "train", "--out", "~nosuchuserxyz/run"))
    assert said == "--out ~nosuchuserxyz/run starts with ~nosuchuserxyz, but there is no user 'nosuchuserxyz' whose home it could be; " \
                   "give the full path"
    assert not (tmp_path / "~nosuchuserxyz").exists()


# ---------------------------------------------------------------------------- study folders, checked before any training


@pytest.fixture
def no_training(monkeypatch):
    from vmivae.measure import study

    def refuse(*args, **kwargs):
        raise AssertionError("the study started")

    monkeypatch.setattr(study, "run_study", refuse)


@pytest.mark.parametrize("flag", ["--runs-dir", "--results"])
def test_study_folders_that_are_files_or_unwritable_are_refused_first(capsys, tmp_path, no_training, flag):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    said = one_error(*run_cli(capsys, "study", flag, a_file))
    assert said == f"{flag} {a_file} is a file, not a folder; give a folder"
    said = one_error(*run_cli(capsys, "study", flag, a_file / "sub" / "dir"))
    assert said == f"cannot create {flag} {a_file / 'sub' / 'dir'}: {a_file} is a file, not a folder; give a folder elsewhere"
    said = one_error(*run_cli(capsys, "study", flag, "/proc/vmivae/x"))
    assert said == f"cannot create {flag} /proc/vmivae/x: no folder can be made in /proc (No such file or directory); choose a writable location"
    assert a_file.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # the probe left nothing


def test_study_device_is_checked_before_any_run(capsys, no_training):
    said = one_error(*run_cli(capsys, "study", "--device", "gpu"))
    assert said.startswith("unknown device 'gpu'; valid: auto, cpu, cuda, cuda:N, mps"), said


# ---------------------------------------------------------------------------- anything typed: a config or one sentence


KEYS = sorted(FIELDS)
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00") | st.sampled_from("=[]{}:,'\"\udcff~ "), max_size=30)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(text=st.one_of(TEXT, st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), TEXT)))
def test_any_set_text_gives_a_config_or_one_sentence(text):
    try:
        config = vmivae.make_config("paper-joint", "smoke", [text])
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert config.steps >= 1


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00/") | st.sampled_from("~/.\udcff "), max_size=20))
def test_any_run_dir_text_gives_one_sentence(capsys, tmp_path, monkeypatch, path):
    """What a shell can pass as RUN_DIR (no NUL, undecodable bytes as surrogates): one sentence and status 2, nothing created.
    A text that starts with '-' reads as an option (argparse's usage message); such a folder is passed after ``--``."""
    assume(not path.startswith("-"))
    capsys.readouterr()  # nothing left over from an earlier example
    monkeypatch.chdir(tmp_path)
    one_error(*run_cli(capsys, "evaluate", path, "--out", tmp_path / "e.json"))
    assert not (tmp_path / "e.json").exists()


def test_a_newline_in_a_path_is_escaped_so_the_error_stays_one_line(capsys, tmp_path):
    said = one_error(*run_cli(capsys, "evaluate", tmp_path / "a\nb", "--out", tmp_path / "e.json"))
    assert said.startswith(f"run directory {tmp_path}/a\\nb does not exist"), said


def test_a_data_root_that_is_a_file_is_refused(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    said = one_error(*run_cli(capsys, "datasets", "--root", tmp_path / "notes.txt"))
    assert said == f"--root {tmp_path / 'notes.txt'} is a file, not a folder; give the folder that holds the datasets"
    code, err = run_cli(capsys, "datasets", "--root", tmp_path / "nothing-here")  # a missing root lists every dataset as missing
    assert code == 0 and not (tmp_path / "nothing-here").exists()


def test_the_python_api_expands_tilde_in_out_as_the_command_does(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 1, "batch_size": 2})
    vmivae.fit(config, data=torch.rand(4, 1, 28, 28), out="~/run", progress=False)
    assert (tmp_path / "home" / "run" / "metrics.json").is_file() and not (tmp_path / "~").exists()
