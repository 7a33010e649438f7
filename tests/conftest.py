"""Shared fixtures: small real training runs, trained once per test session."""

from __future__ import annotations

import os

import pytest
import torch

import vmivae

# Tests share two cores with nothing else; keep torch from oversubscribing when xdist runs workers.
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _data_root(tmp_path_factory, monkeypatch):
    """Datasets that cache (shapes) write into a per-session folder, never into the checkout."""
    monkeypatch.setenv("VMIVAE_DATA", os.environ.get("VMIVAE_TEST_DATA") or str(tmp_path_factory.getbasetemp() / "data"))


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
