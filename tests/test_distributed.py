"""Data-parallel training with torchrun (2 CPU processes, gloo): correct gradients, one model, resume."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vmivae

WORKER = Path(__file__).with_name("ddp_worker.py")


def torchrun(*args, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), str(WORKER), *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.parametrize("preset,overrides", [
    ("paper-joint", []),  # two lambdas: two restricted backward passes through two DDP modules
    ("paper-joint", ["lambda_cont=0.01"]),  # one shared lambda: a single backward pass
    ("paper-joint-baseline", []),
    ("paper-gaussian", []),
    ("paper-joint", ["step_mode=alternating"]),  # the VAE update of the reference schedule
])
def test_ddp_gradients_are_the_average_of_the_per_process_gradients(tmp_path, preset, overrides):
    torchrun("grads", tmp_path, preset, *overrides)
    assert float((tmp_path / "grad_error.txt").read_text()) < 1e-5


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    torchrun("fit", out, 12, "amp=none", "lr=0.0002", "q_lr=0.0002", "checkpoint_every=6")
    return out


def test_two_processes_train_one_model(ddp_run):
    a, b = torch.load(ddp_run / "rank0.pt"), torch.load(ddp_run / "rank1.pt")
    for net in ("vae", "q"):
        for name in a[net]:
            assert torch.equal(a[net][name], b[net][name]), name  # weights and averaged BatchNorm statistics
    losses = a["loss"]
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    metrics = json.loads((ddp_run / "run" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 12


def test_data_parallel_matches_one_process_with_the_same_effective_batch(ddp_run):
    config = vmivae.make_config("paper-joint", "smoke", {"steps": 12, "amp": "none", "lr": 2e-4, "q_lr": 2e-4})
    single = vmivae.fit(config, progress=False).history["loss"].tolist()
    ddp = torch.load(ddp_run / "rank0.pt")["loss"]
    # different sampling noise and per-process BatchNorm statistics: close, not equal
    assert abs(sum(ddp[-4:]) - sum(single[-4:])) / sum(single[-4:]) < 0.1, (ddp, single)


def test_resume_under_torchrun_continues_the_same_run(ddp_run, tmp_path):
    """6 steps, stop, resume to 12 (both with 2 processes) == 12 steps straight, to the bit."""
    torchrun("fit", tmp_path, 6, "amp=none", "lr=0.0002", "q_lr=0.0002", "checkpoint_every=6")
    torchrun("resume", tmp_path, 12)
    split = tmp_path
    straight, resumed = torch.load(ddp_run / "rank0.pt"), torch.load(split / "rank0.pt")
    assert straight["loss"] == resumed["loss"]
    for net in ("vae", "q"):
        for name in straight[net]:
            assert torch.equal(straight[net][name], resumed[net][name]), name
