"""``vmivae bench``: training-step throughput, counted FLOPs and the machine's practical peak.

Every variant trains the same architecture on the same device-resident batches (``mnist-5k``, batch 124
by default). Per variant: a warm-up, then ``repeats`` timed blocks of ``steps`` steps; the table reports
the median images/s with the min-max spread, the ratio to the reference-style alternating step, the
FLOPs of one step counted by ``torch.utils.flop_counter`` (per image), the achieved GFLOP/s and that as
a fraction of a large fp32 matrix product measured on the same machine. ``estimate_mi`` is timed too.

Rows beyond one eager run (``vmivae.perf.bench_group``): the step captured as one CUDA graph (on CUDA only;
elsewhere the row says "n/a"), and G runs trained as one group (``--groups``), images/s summed over them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..datasets import load
from ..presets import make_config
from ..trainer import Trainer
from .bench_group import bench_group, group_label, measured_row, unavailable
from .device import device_defaults, emulated_bf16, resolve_device, use_all_cores

# Every variant starts from this (fp32, NCHW, eager, fused Adam, the fused step) and changes one thing.
BASE = {"amp": "none", "channels_last": False, "compile": False, "fused_adam": True, "step_mode": "fused", "capture": "none"}
# name -> config overrides. The first is the baseline of the ratio column: the reference code's
# schedule and defaults (two VAE forwards per step, NCHW, PyTorch's default Adam, fp32).
VARIANTS: dict[str, dict[str, Any]] = {
    "alternating (reference-style)": {"step_mode": "alternating", "fused_adam": False},
    "alternating + fused Adam": {"step_mode": "alternating"},
    "fused": {},
    "fused + channels_last": {"channels_last": True},
    "fused + compile": {"compile": True},
    "fused + bf16": {"amp": "bf16"},
    "fused + channels_last + bf16": {"channels_last": True, "amp": "bf16"},
    # the same options on the alternating step: the like-for-like ratio of the fastest configuration
    "alternating + channels_last + bf16": {"step_mode": "alternating", "channels_last": True, "amp": "bf16"},
    # the whole step replayed as one CUDA graph (vmivae.perf.graphed); "n/a" off CUDA
    "fused + cuda-graph": {"capture": "cuda-graph"},
    "fused + cuda-graph + bf16": {"capture": "cuda-graph", "amp": "bf16"},
    "alternating + fused Adam + cuda-graph": {"step_mode": "alternating", "capture": "cuda-graph"},
    "fused + compile + cuda-graph": {"compile": True, "capture": "cuda-graph"},
}
# (fused, alternating) pairs that differ only in the step: same precision, layout and optimiser
LIKE_FOR_LIKE = [("fused", "alternating + fused Adam"), ("fused + channels_last + bf16", "alternating + channels_last + bf16"),
                 ("fused + cuda-graph", "alternating + fused Adam + cuda-graph")]
SLOW_VARIANTS = ("fused + compile", "fused + compile + cuda-graph")  # compilation takes a minute on a small CPU: only with --all


@dataclass
class BenchSettings:
    presets: tuple[str, ...] = ("paper-joint", "paper-gaussian")
    batch_size: int = 124
    warmup: int = 5
    steps: int = 20
    repeats: int = 5
    device: str = "auto"
    variants: tuple[str, ...] = tuple(v for v in VARIANTS if v not in SLOW_VARIANTS)
    estimator: str = "quick"  # budget of the timed estimate_mi call
    groups: tuple[int, ...] = ()  # grouped rows: G runs trained as one group, for each G
    emulated: bool = False  # also bf16 rows on a CPU that only emulates bf16 (slow)


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, n: int | None = None, seconds: float = 1.0) -> float:
    """Achieved GFLOP/s of an ``n x n`` matrix product (the practical peak the step is compared with)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
        _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def conv_peak(device: torch.device, dtype: torch.dtype = torch.float32, seconds: float = 1.0) -> float:
    """Achieved GFLOP/s of a large 3x3 convolution (oneDNN / cuDNN): on some CPUs faster than the matmul."""
    x = torch.randn(64, 256, 28, 28, device=device, dtype=dtype)
    w = torch.randn(256, 256, 3, 3, device=device, dtype=dtype)
    conv = lambda: torch.nn.functional.conv2d(x, w, padding=1)  # noqa: E731
    for _ in range(2):
        conv()
    _sync(device)
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        conv()
        reps += 1
        _sync(device)
    return 2 * 64 * 256 * 256 * 9 * 28 * 28 * reps / (time.perf_counter() - start) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_step_flops(trainer: Trainer) -> float:
    """FLOPs of one training step (forward and backward, every matmul and convolution), counted."""
    from torch.utils.flop_counter import FlopCounterMode

    x = trainer.images[trainer.sampler.next()]
    with FlopCounterMode(display=False) as counter:
        trainer.stepper(x, trainer._tau)
    return float(counter.get_total_flops())


def bench_variant(preset: str, overrides: dict[str, Any], data, s: BenchSettings, device: torch.device) -> dict[str, Any]:
    config = make_config(preset, "quick", {**BASE, "batch_size": s.batch_size, "log_every": s.steps, "device": str(device), **overrides})
    trainer = Trainer(config, data, device)
    started = time.perf_counter()
    trainer.train(s.warmup)  # includes compilation when compile=True
    warmup_seconds = time.perf_counter() - started
    speeds = []
    for _ in range(s.repeats):
        start = time.perf_counter()
        trainer.train(trainer.step + s.steps)  # ends with a host sync (the history flush)
        speeds.append(s.steps * s.batch_size / (time.perf_counter() - start))
    # compilation and capture fuse or replay kernels but do the same arithmetic: count it on the eager twin of the step
    eager = not config.compile and config.capture == "none"
    counted = trainer if eager else Trainer(dataclasses.replace(config, compile=False, capture="none"), data, device)
    flops = count_step_flops(counted)
    median = statistics.median(speeds)
    return {"preset": preset, "images_per_second": median, "min": min(speeds), "max": max(speeds), "flops_per_image": flops / s.batch_size,
            "achieved_gflops": flops * median / s.batch_size / 1e9, "warmup_seconds": warmup_seconds}


def bench_estimator(device: torch.device, settings: str = "quick") -> dict[str, Any]:
    """Time ``estimate_mi`` on a freshly initialised paper-joint model."""
    from ..measure.mi import estimate_mi
    from ..models import VAE

    torch.manual_seed(0)
    vae = VAE((1, 28, 28), make_config("paper-joint").latent).to(device)
    estimate = estimate_mi(vae, settings=settings, device=device)
    return {"settings": settings, "seconds": estimate.seconds, "q_steps": estimate.q_steps, "batch_size": estimate.settings["batch_size"],
            "n_eval": estimate.n_eval}


def run_bench(s: BenchSettings) -> dict[str, Any]:
    device = resolve_device(s.device)
    threads = use_all_cores() if device.type == "cpu" else torch.get_num_threads()
    data = load("mnist-5k", "train")
    # bf16 peak only where bf16 rows run: an emulated 2048^3 bf16 product alone takes tens of seconds
    dtypes = (torch.float32,) if emulated_bf16(device) and not s.emulated else (torch.float32, torch.bfloat16)
    peaks = {dtype: {"matmul": matmul_peak(device, dtype), "conv": conv_peak(device, dtype)} for dtype in dtypes}
    peak, peak_bf16 = (max(peaks[d].values()) if d in peaks else None for d in (torch.float32, torch.bfloat16))
    rows = []
    for preset in s.presets:
        for name in s.variants:
            print(f"bench: {preset} / {name} ...", file=sys.stderr, flush=True)
            row = unavailable(preset, name, VARIANTS[name], device, s.emulated) or measured_row(bench_variant, preset, name, VARIANTS[name], data, s, device)
            rows.append({"variant": name, **row})
        for size in s.groups:
            print(f"bench: {preset} / {size} runs grouped ...", file=sys.stderr, flush=True)
            rows.append(measured_row(bench_group, preset, group_label(size), BASE, size, data, s, device))
        base = next(r["images_per_second"] for r in rows if r["preset"] == preset and r["variant"] == s.variants[0])
        for r in rows:
            if r["preset"] == preset and r["images_per_second"] is not None and base:
                r["ratio"] = r["images_per_second"] / base
                r["peak_fraction"] = r["achieved_gflops"] / (peak_bf16 if "bf16" in r["variant"] else peak)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {threads} threads"
    return {"device": device_name, "threads": threads, "torch": str(torch.__version__), "batch_size": s.batch_size,
            "warmup": s.warmup, "steps": s.steps, "repeats": s.repeats, "peak_gflops": {"fp32": peak, "bf16": peak_bf16},
            "peaks_measured": {str(d).split(".")[-1]: v for d, v in peaks.items()},
            "rows": rows, "estimate_mi": bench_estimator(device, s.estimator)}


def to_markdown(result: dict[str, Any]) -> str:
    peak = result["peak_gflops"]
    lines = [f"Measured on {result['device']} (torch {result['torch']}), batch {result['batch_size']}: {result['warmup']} warm-up steps, "
             f"then {result['repeats']} blocks of {result['steps']} steps; median images/s with the min-max range. Ratio: against the "
             f"reference-style alternating step. Peak: the faster of a large matrix product and a large 3x3 convolution on this machine, "
             f"{peak['fp32']:.0f} GFLOP/s fp32" + (f" and {peak['bf16']:.0f} GFLOP/s bf16" if peak["bf16"] else "")
             + ". FLOPs counted with torch.utils.flop_counter.",
             "", "| preset | variant | images/s | range | ratio | GFLOP/image | GFLOP/s | of peak |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        if r["images_per_second"] is None:
            lines.append(f"| {r['preset']} | {r['variant']} | {r['note']} | - | - | - | - | - |")
            continue
        lines.append(f"| {r['preset']} | {r['variant']} | {r['images_per_second']:.0f} | {r['min']:.0f}-{r['max']:.0f} | {r['ratio']:.2f}x | "
                     f"{r['flops_per_image'] / 1e9:.3f} | {r['achieved_gflops']:.0f} | {100 * r['peak_fraction']:.0f}% |")
    grouped = [r for r in result["rows"] if "runs" in r]
    if grouped:
        lines += ["", "Grouped rows: G runs of the preset (seeds 0 to G-1) trained by one batched step (vmivae.perf.grouped), images/s "
                  "summed over the runs; per run: " + "; ".join(f"{r['preset']} x{r['runs']}: {r['per_run']:.0f}" for r in grouped) + "."]
    speed = {(r["preset"], r["variant"]): r["images_per_second"] for r in result["rows"] if r["images_per_second"] is not None}
    pairs = [(p, f, a) for p in dict.fromkeys(r["preset"] for r in result["rows"]) for f, a in LIKE_FOR_LIKE
             if (p, f) in speed and (p, a) in speed]
    if pairs:
        lines += ["", "Like for like (the same options, only the step differs): "
                  + "; ".join(f"{p} {f} / {a}: {speed[p, f] / speed[p, a]:.2f}x" for p, f, a in pairs) + "."]
    e = result["estimate_mi"]
    lines += ["", f"`estimate_mi` (budget '{e['settings']}', batch {e['batch_size']}): {e['seconds']:.1f} s for {e['q_steps']} Q steps "
                  f"and {e['n_eval']} evaluation samples."]
    return "\n".join(lines) + "\n"


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark the training step variants", description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="paper-joint,paper-gaussian", help="comma-separated presets (default: both paper presets)")
    p.add_argument("--batch", type=int, default=124)
    p.add_argument("--steps", type=int, default=20, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks per variant")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--all", action="store_true", help="include the slow variants (torch.compile, and bf16 on a CPU without bf16 units)")
    p.add_argument("--groups", default="auto", help="grouped rows: comma-separated group sizes, e.g. 1,4,16; none: no grouped rows; "
                   "auto: the device's default (1,4 on a CPU, 1,4,16 on CUDA)")
    p.add_argument("--contention", action="store_true", help="instead of the variants: each CPU setting (threads, layout, OpenMP wait "
                   "policy) alone and beside a process that keeps one core busy (vmivae.perf.contention)")
    p.add_argument("--out", default=None, help="write the results as JSON")
    p.add_argument("--markdown", default=None, help="write the table as Markdown")
    p.set_defaults(func=_command)


def check_options(args: argparse.Namespace) -> tuple[str, ...]:
    """Every ``vmivae bench`` option checked before the benchmark starts; returns the presets."""
    from ..errors import ConfigError, OutputError, unknown_name
    from ..presets import list_presets
    from ..runs.rundir import check_output_file

    presets = tuple(p.strip() for p in args.presets.split(",") if p.strip())
    if not presets:
        raise ConfigError(f"--presets {args.presets!r} names no preset; e.g. --presets paper-joint")
    for preset in presets:
        if preset not in list_presets():
            raise ConfigError(unknown_name("preset", preset, list_presets()))
    for flag, value, low in (("--batch", args.batch, 2), ("--steps", args.steps, 1), ("--repeats", args.repeats, 1), ("--warmup", args.warmup, 0)):
        if value < low:
            raise ConfigError(f"{flag} must be at least {low}, got {value}")
    n = len(load("mnist-5k", "train"))
    if args.batch > n:
        raise ConfigError(f"--batch {args.batch} is larger than the {n} training images the benchmark uses; lower --batch")
    group_sizes(args.groups, resolve_device(args.device))
    outputs = [(flag, Path(path)) for flag, path in (("--out", args.out), ("--markdown", args.markdown)) if path]
    for flag, path in outputs:
        check_output_file(path, flag, create_parents=True)
    if len(outputs) == 2 and outputs[0][1].resolve() == outputs[1][1].resolve():
        raise OutputError(f"--out and --markdown are the same file ({args.out}); give two paths")
    return presets


def group_sizes(text: str, device: torch.device) -> tuple[int, ...]:
    """``--groups``: ``auto`` (the device's default, ``vmivae.perf.device.DEVICE_DEFAULTS``), ``none``, or sizes such as ``1,4,16``."""
    from ..errors import ConfigError

    if text.strip() == "auto":
        return device_defaults(device).bench_groups
    if text.strip() in ("none", ""):
        return ()
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--groups {text!r} must be auto, none or group sizes of at least 1 such as 1,4,16")
    return sizes


def _command(args: argparse.Namespace) -> int:
    presets = check_options(args)
    if args.contention:
        from . import contention

        rows = [row for preset in presets for row in contention.measure(preset, steps=args.steps, warmup=args.warmup, batch_size=args.batch)]
        result, table = {"contention": rows}, "\n".join(contention.markdown([r for r in rows if r["preset"] == p], p, args.steps) for p in presets)
        return _write(args, result, table)
    variants = tuple(VARIANTS) if args.all else BenchSettings().variants
    groups = group_sizes(args.groups, resolve_device(args.device))
    result = run_bench(BenchSettings(presets, args.batch, args.warmup, args.steps, args.repeats, args.device, variants, groups=groups,
                                     emulated=args.all))
    return _write(args, result, to_markdown(result))


def _write(args: argparse.Namespace, result: dict[str, Any], table: str) -> int:
    from ..errors import OutputError
    from ..runs.files import os_reason, write_bytes

    print(table)
    for path, text in ((args.out, json.dumps(result, indent=2)), (args.markdown, table)):
        if path:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                write_bytes(Path(path), text.encode())
            except OSError as exc:
                raise OutputError(f"cannot write {path} ({os_reason(exc)}); the table is printed above") from None
    return 0
