"""``vmivae bench`` rows beyond one run's eager step: grouped runs (``vmivae.perf.grouped``) and the captured step.

Kept apart from ``vmivae.perf.bench`` (which imports this module) so that each stays short.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import torch

from ..presets import make_config
from .device import emulated_bf16
from .grouped import GroupTrainer


def unavailable(preset: str, variant: str, overrides: dict[str, Any], device: torch.device, emulated: bool = False) -> dict[str, Any] | None:
    """The row of a variant this device cannot run (``capture: cuda-graph`` off CUDA), or, unless ``emulated``,
    would only emulate (bf16 on a CPU without bf16 units: a 2-core AVX2 CPU ran it ~4x slower, so one bench took
    longer than all the others together, and ``amp: auto`` never picks it there); None if it runs."""
    if device.type != "cuda" and overrides.get("capture", "none") not in ("none", "auto"):
        return {"preset": preset, "variant": variant, "images_per_second": None, "note": f"n/a on {device.type}"}
    if not emulated and overrides.get("amp") == "bf16" and emulated_bf16(device):
        return {"preset": preset, "variant": variant, "images_per_second": None, "note": "skipped: no native bf16 on this CPU (--all runs it)"}
    return None


def group_label(size: int) -> str:
    """The variant name of ``size`` runs trained as one group."""
    return f"fused, {size} run{'s' if size > 1 else ''} grouped"


def measured_row(measure, preset: str, variant: str, *args) -> dict[str, Any]:
    """``measure(preset, *args)``'s row, or, if it fails, a row that says how: one failing option must not cost the whole table."""
    try:
        return measure(preset, *args)
    except Exception as exc:  # noqa: BLE001 - reported in the table and on stderr
        reason = (str(exc).strip().splitlines() or [""])[0][:160]
        print(f"bench: {preset} / {variant} failed: {type(exc).__name__}: {reason}", file=sys.stderr, flush=True)
        return {"preset": preset, "variant": variant, "images_per_second": None, "note": f"failed ({type(exc).__name__}: {reason})"}


def bench_group(preset: str, base: dict[str, Any], size: int, data, s, device: torch.device) -> dict[str, Any]:
    """``size`` runs of ``preset`` (seeds 0..size-1) trained as one group: images/s summed over the runs, and per run."""
    from torch.utils.flop_counter import FlopCounterMode

    settings = {**base, "batch_size": s.batch_size, "log_every": s.steps, "device": str(device)}
    configs = [make_config(preset, "quick", {**settings, "seed": seed}) for seed in range(size)]
    group = GroupTrainer(configs, data, device)
    started = time.perf_counter()
    group.train(s.warmup)
    warmup_seconds = time.perf_counter() - started
    speeds = []
    for _ in range(s.repeats):
        start = time.perf_counter()
        group.train(group.step + s.steps)  # ends with a host sync (the history flush)
        speeds.append(size * s.steps * s.batch_size / (time.perf_counter() - start))
    # the useful arithmetic: one member's step, counted on a group of one (vmap's batched kernels are counted differently)
    with FlopCounterMode(display=False) as counter:
        GroupTrainer(configs[:1], data, device).train_step()
    flops = float(counter.get_total_flops())
    median = statistics.median(speeds)
    return {"preset": preset, "variant": group_label(size), "runs": size, "images_per_second": median,
            "per_run": median / size, "min": min(speeds), "max": max(speeds), "flops_per_image": flops / s.batch_size,
            "achieved_gflops": flops * median / s.batch_size / 1e9, "warmup_seconds": warmup_seconds}
