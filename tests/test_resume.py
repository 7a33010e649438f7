"""Runs that survive: bit-identical resume, real signals, non-finite losses, safe checkpoint loading."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vmivae
from vmivae.checkpoint import load_checkpoint
from vmivae.errors import CheckpointError, ConfigError, TrainingError


def _params(run):
    return {**{f"vae.{k}": v for k, v in run.vae.state_dict().items()}, **{f"q.{k}": v for k, v in run.q.state_dict().items()}}


@pytest.mark.parametrize("preset", ["paper-joint", "paper-gaussian"])
def test_stop_and_resume_is_bit_identical_to_training_straight(tmp_path, preset):
    config = vmivae.make_config(preset, "smoke", {"steps": 16, "log_every": 3, "checkpoint_every": 5})
    straight = vmivae.fit(config, out=tmp_path / "straight", progress=False)
    vmivae.fit(config.replace(steps=8), out=tmp_path / "split", progress=False)
    resumed = vmivae.resume(tmp_path / "split", steps=16, progress=False)
    for name, value in _params(straight).items():
        assert torch.equal(value, _params(resumed)[name]), name
    assert straight.history.equals(resumed.history)
    state = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert state["step"] == 16 and (tmp_path / "split" / "metrics.json").is_file()


def test_resume_refuses_to_change_the_model_or_to_do_nothing(tmp_path):
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 4})
    vmivae.fit(config, out=tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="cannot change lambda_cat when resuming"):
        vmivae.resume(tmp_path / "run", steps=8, overrides={"lambda_cat": 0.5}, progress=False)
    with pytest.raises(ConfigError, match="is at step 4, which reaches steps=4"):
        vmivae.resume(tmp_path / "run", progress=False)


def _train_cli(out: Path, steps: int, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vmivae", "train", "--preset", "paper-joint", "--profile", "smoke", "--set", f"steps={steps}",
           "--set", "checkpoint_every=1000", "--set", "log_every=1", "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_training(out: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until the progress bar shows steps (the run is inside its training loop)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / "config.json").is_file() and proc.poll() is None:
            time.sleep(4)  # past model construction and into the loop
            return
        time.sleep(0.2)
    raise AssertionError("training did not start")


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_writes_a_checkpoint_and_says_how_to_resume(tmp_path, signum, code):
    out = tmp_path / "run"
    proc = _train_cli(out, 100_000)
    _wait_for_training(out, proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert f"vmivae train --resume {out}" in stderr and "Traceback" not in stderr
    state = load_checkpoint(out / "checkpoint.pt")
    assert 0 < state["step"] < 100_000 and len(state["history"]) == state["step"]
    assert not (out / "metrics.json").exists()  # not finished, and it does not look finished
    finished = subprocess.run([sys.executable, "-m", "vmivae", "train", "--resume", str(out), "--set", f"steps={state['step'] + 3}", "--quiet"],
                              capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert vmivae.load_run(out).metrics["steps"] == state["step"] + 3


def test_a_second_ctrl_c_aborts_at_once(tmp_path):
    import threading

    out = tmp_path / "run"
    proc = _train_cli(out, 100_000, "--set", "batch_size=2000")  # slow steps: the second signal lands mid-step
    _wait_for_training(out, proc)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    proc.send_signal(signal.SIGINT)
    deadline = time.time() + 30
    while "SIGINT received" not in "".join(seen) and time.time() < deadline:  # the first one was handled...
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # ...so this one is a second Ctrl-C, not a duplicate of the first
    proc.wait(timeout=60)
    reader.join(timeout=5)
    stderr = "".join(seen)
    assert proc.returncode == 130 and "aborted at once" in stderr, stderr[-500:]
    assert not (out / "metrics.json").exists()
    assert not list(out.glob(".*.tmp"))  # nothing half-written is left behind


def test_non_finite_loss_names_the_step_and_the_last_good_checkpoint(tmp_path):
    images = vmivae.load("mnist-5k").images[:64].clone()
    data = vmivae.ImageData(images)
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 30, "batch_size": 32, "checkpoint_every": 4, "log_every": 2, "seed": 3})
    vmivae.fit(config.replace(steps=4), data=data, out=tmp_path / "run", progress=False)
    data.images[:] = float("inf")  # the same run continues on corrupted data
    with pytest.raises(TrainingError, match=r"non-finite \(nan or inf\) at step 5; the last good checkpoint is .*checkpoint.pt \(step 4\)"):
        vmivae.resume(tmp_path / "run", steps=30, data=data, progress=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 4  # untouched by the bad steps


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_gradient_clipping_bounds_each_networks_gradient_norm(clip):
    from vmivae.steps import Stepper, build_networks
    from vmivae.training import objective_of

    config = vmivae.make_config("paper-joint", "smoke", {"batch_size": 16, "grad_clip": clip})
    torch.manual_seed(0)
    vae, q = build_networks((1, 28, 28), config)
    opt_v, opt_q = torch.optim.Adam(vae.parameters()), torch.optim.Adam(q.parameters())
    Stepper(vae, q, list(vae.parameters()), list(q.parameters()), objective_of(config), opt_v, opt_q, "fused", clip)(
        torch.rand(16, 1, 28, 28) * 2 - 1, torch.tensor(1.0))
    for net in (vae, q):
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in net.parameters()])).item()
        assert (norm <= 1e-3 * 1.001) if clip else (norm > 1e-2)


def test_a_crafted_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    run = tmp_path / "run"
    vmivae.fit(vmivae.make_config("paper-joint", "smoke", {"steps": 2}), out=run, progress=False)
    torch.save({"format": "vmivae-checkpoint", "payload": Payload()}, run / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="contains objects other than tensors.*posix.system|contains objects other than tensors"):
        vmivae.load_run(run)
    assert not marker.exists()
