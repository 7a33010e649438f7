"""The benchmark's measurements: counted FLOPs match the architecture, the table is complete."""

import pytest
import torch

from vmivae import bench
from vmivae.datasets import load
from vmivae.presets import make_config
from vmivae.trainer import Trainer


def _flops(preset, **overrides):
    config = make_config(preset, "quick", {"amp": "none", "channels_last": False, **overrides})
    return bench.count_step_flops(Trainer(config, load("mnist-5k"), torch.device("cpu"))) / config.batch_size


def test_counted_flops_match_the_architecture():
    """Multiply-adds per image of the 28x28 networks, counted by hand from the layer shapes."""
    enc = 14 * 14 * 64 * 16 + 7 * 7 * 128 * 64 * 16 + 6272 * 512 + 512 * 42  # two convs, FC 512, FC to 2*16+10
    dec = 26 * 512 + 512 * 3136 + 7 * 7 * 64 * 32 * 16 + 14 * 14 * 32 * 16  # FC, FC, two transposed convs
    q = 14 * 14 * 64 * 16 + 7 * 7 * 128 * 64 * 16 + 128 * 128 * 49 + 128 * 14  # two convs, 7x7 conv, 1x1 head (10 + 2*2)
    forward = 2 * (enc + dec + q)  # FLOPs = 2 x multiply-adds
    fused = _flops("paper-joint", lambda_cont=0.01)  # one shared lambda: one backward pass
    # forward + backward (weights and inputs) of everything, minus the input gradient of the first convolution
    expected = 3 * forward - 2 * 14 * 14 * 64 * 16
    assert fused == pytest.approx(expected, rel=0.02)


def test_the_fused_step_does_less_work_than_the_alternating_one():
    alternating, fused = _flops("paper-joint", step_mode="alternating"), _flops("paper-joint")
    assert 1.3 < alternating / fused < 1.6  # the second VAE forward and Q's discarded gradients


def test_bench_runs_and_reports_every_column(tmp_path):
    settings = bench.BenchSettings(presets=("paper-joint",), batch_size=32, warmup=1, steps=2, repeats=2,
                                   variants=("alternating (reference-style)", "alternating + fused Adam", "fused"), estimator="smoke")
    result = bench.run_bench(settings)
    assert [r["variant"] for r in result["rows"]] == list(settings.variants)
    assert result["rows"][0]["ratio"] == 1.0 and result["rows"][1]["images_per_second"] > 0
    assert result["peak_gflops"]["fp32"] > 1 and result["peak_gflops"]["bf16"] > 1
    table = bench.to_markdown(result)
    assert "| paper-joint | fused |" in table and "estimate_mi" in table
    assert "paper-joint fused / alternating + fused Adam: " in table  # the like-for-like ratio
