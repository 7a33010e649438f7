"""Shared fixtures: small real training runs, trained once per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vmivae

# Tests share two cores with nothing else; keep torch from oversubscribing when xdist runs workers.
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _data_root(tmp_path_factory, monkeypatch):
    """Datasets that cache (shapes) write into a per-session folder, never into the checkout."""
    monkeypatch.setenv("VMIVAE_DATA", os.environ.get("VMIVAE_TEST_DATA") or str(tmp_path_factory.getbasetemp() / "data"))


@pytest.fixture
def run_cli(capsys):
    """Run the ``vmivae`` command in this process: ``run_cli(*args)`` gives ``(exit code, its first 'vmivae: error:' line,
    or all of stderr when there is none)``; a traceback on stderr fails the test."""
    from vmivae.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.startswith("vmivae: error:")]
        return code, (lines[0] if lines else err)

    return run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 3-step smoke run of paper-joint, trained once per test module; a test that changes it copies it first."""
    path = tmp_path_factory.mktemp("run") / "run"
    vmivae.fit(vmivae.make_config("paper-joint", "smoke", {"steps": 3}), out=path, progress=False)
    return path


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """``{preset: run_dir}`` of real smoke-profile runs of the two paper presets and their baselines."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for preset in ("paper-joint", "paper-joint-baseline", "paper-gaussian"):
        config = vmivae.make_config(preset, "smoke", {"steps": 20})
        vmivae.fit(config, out=root / preset, progress=False, meta={"preset": preset, "profile": "smoke"})
        runs[preset] = root / preset
    return runs


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory):
    """Every notebook executed under the smoke profile and the book built from them (a few minutes).

    ``VMIVAE_TEST_BUILD=<dir>`` reuses a build made earlier with ``scripts/run_all.py --profile smoke
    --build-dir <dir>/build --figures-dir <dir>/figures --runs-dir <dir>/runs``.
    """
    reuse = os.environ.get("VMIVAE_TEST_BUILD")
    base = Path(reuse) if reuse else tmp_path_factory.mktemp("smoke-build")
    paths = {"build": base / "build", "figures": base / "figures", "runs": base / "runs"}
    if not reuse:
        env = {**os.environ, "VMIVAE_DATA": str(base / "data")}
        cmd = [sys.executable, str(ROOT / "scripts" / "run_all.py"), "--profile", "smoke", "--build-dir", str(paths["build"]),
               "--figures-dir", str(paths["figures"]), "--runs-dir", str(paths["runs"])]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr[-6000:]
        (base / "run_all.stderr").write_text(result.stderr)
    paths["stderr"] = base / "run_all.stderr"  # what a user's terminal showed (absent for a reused build)
    paths["html"] = paths["build"] / "book" / "_build" / "html"
    return paths
