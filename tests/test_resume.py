"""Runs that survive: bit-identical resume, real signals, non-finite losses, safe checkpoint loading."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vmivae
import vmivae.trainer
from vmivae.errors import CheckpointError, ConfigError, TrainingError
from vmivae.runs.checkpoint import load_checkpoint


def _params(run):
    return {**{f"vae.{k}": v for k, v in run.vae.state_dict().items()}, **{f"q.{k}": v for k, v in run.q.state_dict().items()}}


@pytest.mark.parametrize("preset", ["paper-joint", "paper-gaussian"])
def test_stop_and_resume_is_bit_identical_to_training_straight(tmp_path, preset):
    # on the CPU, where the kernels are deterministic (cuDNN's fastest convolution gradients are not: on a GPU
    # two uninterrupted runs differ in the last bits too, see tests/test_graphed.py)
    config = vmivae.make_config(preset, "smoke", {"steps": 16, "log_every": 3, "checkpoint_every": 5, "device": "cpu"})
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


class TrainingProcess:
    """``vmivae train`` in a real subprocess, its stderr collected live so the test can wait for what it says."""

    def __init__(self, out: Path, steps: int, *extra: str):
        import threading

        cmd = [sys.executable, "-m", "vmivae", "train", "--preset", "paper-joint", "--profile", "smoke", "--set", f"steps={steps}",
               "--set", "checkpoint_every=1000", "--set", "log_every=1", "--out", str(out), *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.seen: list[str] = []
        self.reader = threading.Thread(target=lambda: self.seen.extend(iter(lambda: self.proc.stderr.read(1), "")), daemon=True)
        self.reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.seen)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.time() + timeout
        while text not in self.stderr and self.proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)

    def wait_until_training(self) -> None:
        self.wait_for("loss=", 120)  # a logged step: the loop, and its signal handlers, are running
        assert "loss=" in self.stderr and self.proc.poll() is None, f"training did not start: {self.stderr[-500:]}"

    def finish(self) -> int:
        self.proc.wait(timeout=120)
        self.reader.join(timeout=5)
        return self.proc.returncode


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_writes_a_checkpoint_and_says_how_to_resume(tmp_path, signum, code):
    out = tmp_path / "run"
    run = TrainingProcess(out, 100_000)
    run.wait_until_training()
    run.proc.send_signal(signum)
    assert run.finish() == code, run.stderr[-500:]
    assert f"vmivae train --resume {out}" in run.stderr and "Traceback" not in run.stderr
    state = load_checkpoint(out / "checkpoint.pt")
    assert 0 < state["step"] < 100_000 and len(state["history"]) == state["step"]
    assert not (out / "metrics.json").exists()  # not finished, and it does not look finished
    finished = subprocess.run([sys.executable, "-m", "vmivae", "train", "--resume", str(out), "--set", f"steps={state['step'] + 3}", "--quiet"],
                              capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert vmivae.load_run(out).metrics["steps"] == state["step"] + 3


def _interrupt_twice(out: Path) -> tuple[int, str]:
    """Ctrl-C a training run, and Ctrl-C it again once the first one has been acknowledged."""
    run = TrainingProcess(out, 100_000, "--set", "batch_size=4000")  # slow steps (~2 s): the second signal lands mid-step
    run.wait_until_training()
    run.proc.send_signal(signal.SIGINT)
    run.wait_for("SIGINT received", 30)  # the first one was handled...
    if run.proc.poll() is None:
        run.proc.send_signal(signal.SIGINT)  # ...so this one is a second Ctrl-C, not a duplicate of the first
    return run.finish(), run.stderr


def test_a_second_ctrl_c_aborts_at_once(tmp_path):
    for attempt in range(3):
        out = tmp_path / f"run{attempt}"
        code, stderr = _interrupt_twice(out)
        if "aborted at once" in stderr:
            break
        # Inconclusive only if the first Ctrl-C's clean stop finished before the second one arrived.
        assert code == 130 and f"vmivae train --resume {out}" in stderr, stderr[-500:]
    assert code == 130 and "aborted at once" in stderr, stderr[-500:]
    assert not (out / "metrics.json").exists()
    assert not list(out.glob(".*.tmp"))  # nothing half-written is left behind


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_non_finite_loss_names_the_step_and_the_last_good_checkpoint(tmp_path, monkeypatch):
    images = vmivae.load("mnist-5k").images[:64].clone()
    data = vmivae.ImageData(images)
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 30, "batch_size": 32, "checkpoint_every": 4, "log_every": 2, "seed": 3})
    vmivae.fit(config.replace(steps=4), data=data, out=tmp_path / "run", progress=False)
    before = _files(tmp_path / "run")
    real = vmivae.trainer.Stepper.__call__
    monkeypatch.setattr(vmivae.trainer.Stepper, "__call__", lambda self, x, tau: real(self, x, tau) * float("nan"))  # the losses blow up
    with pytest.raises(TrainingError, match=r"non-finite \(nan or inf\) at step 5; the last good checkpoint is .*checkpoint.pt \(step 4\)"):
        vmivae.resume(tmp_path / "run", steps=30, data=data, progress=False)
    assert _files(tmp_path / "run") == before  # the failed resume left the finished run exactly as it was (metrics.json too)


def test_a_resume_that_fails_after_its_first_checkpoint_keeps_that_checkpoint(tmp_path, monkeypatch):
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 4, "checkpoint_every": 2, "log_every": 1})
    vmivae.fit(config, out=tmp_path / "run", progress=False)
    real, calls = vmivae.trainer.Stepper.__call__, {"n": 0}

    def late_nan(self, x, tau):
        calls["n"] += 1
        return real(self, x, tau) * (float("nan") if calls["n"] > 3 else 1.0)

    monkeypatch.setattr(vmivae.trainer.Stepper, "__call__", late_nan)
    with pytest.raises(TrainingError, match=r"at step 8; the last good checkpoint is .*checkpoint.pt \(step 6\)"):
        vmivae.resume(tmp_path / "run", steps=10, progress=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 6
    assert not (tmp_path / "run" / "metrics.json").exists()  # reopened at the first checkpoint: no stale "finished" marker
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["steps"] == 10


def test_a_checkpoint_for_another_config_is_refused(tmp_path):
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 2})
    vmivae.fit(config, out=tmp_path / "run", progress=False)
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    info["config"]["lambda_cat"] = 0.5  # edited by hand (or copied from another run)
    (tmp_path / "run" / "config.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="was written for another config than .*config.json .lambda_cat: 0.01 in the checkpoint, 0.5"):
        vmivae.resume(tmp_path / "run", steps=4, progress=False)


def test_resume_loads_the_checkpoint_to_the_cpu_and_restores_states_from_anywhere(tmp_path, monkeypatch):
    """On a GPU, a checkpoint read with map_location=cuda put the RNG states on the GPU, where
    Generator.set_state refuses them. Resume reads checkpoints to the CPU, and every RNG state is made a
    contiguous CPU byte tensor where it is restored: here the loader hands out strided, int64 states."""
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 8, "log_every": 2, "checkpoint_every": 2, "device": "cpu"})
    straight = vmivae.fit(config, progress=False)
    vmivae.fit(config.replace(steps=4), out=tmp_path / "split", progress=False)
    real_load, seen = torch.load, []

    def awkward(path, *args, **kwargs):
        seen.append(kwargs.get("map_location"))
        state = real_load(path, *args, **kwargs)
        strided = lambda t: torch.stack([t, t], 1)[:, 0].long()  # noqa: E731  (not contiguous, not bytes)
        state["sampler"]["generator"] = strided(state["sampler"]["generator"])
        state["rng"] = [{k: strided(v) for k, v in rng.items()} for rng in state["rng"]]
        return state

    monkeypatch.setattr(vmivae.runs.checkpoint.torch, "load", awkward)
    resumed = vmivae.resume(tmp_path / "split", steps=8, progress=False)
    assert seen and all(str(m) == "cpu" for m in seen)
    for name, value in _params(straight).items():
        assert torch.equal(value, _params(resumed)[name]), name


def test_batch_sampler_accepts_a_generator_state_that_is_not_a_contiguous_byte_tensor():
    from vmivae.batches import BatchSampler

    a, b = BatchSampler(100, 10, seed=1), BatchSampler(100, 10, seed=2)
    a.next()
    state = a.state_dict()
    state["generator"] = torch.stack([state["generator"]] * 2, 1)[:, 0].long()
    b.load_state_dict(state)
    assert all(torch.equal(a.next(), b.next()) for _ in range(25))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_a_gpu(tmp_path):
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 8, "log_every": 2, "checkpoint_every": 2, "device": "cuda"})
    vmivae.fit(config.replace(steps=4), out=tmp_path / "run", progress=False)
    resumed = vmivae.resume(tmp_path / "run", steps=8, progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert resumed.metrics["steps"] == 8 and state["step"] == 8 and "cuda" in state["rng"][0]
    assert len(resumed.history) == 8 and resumed.device.type == "cuda"


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_gradient_clipping_bounds_each_networks_gradient_norm(clip):
    from vmivae.steps import Stepper, build_networks
    from vmivae.trainer import objective_of

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
