"""Where and how to compute: device choice, bf16 support, CPU threads, and what ``auto`` means per device.

One place decides these so that training, the MI estimator and the benchmark make the same choices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is absent or malformed is an error."""
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str):
        raise ConfigError(f"a device is a string such as 'cpu' or 'cuda:0', got {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N, mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' was requested but CUDA is not available here; use device=auto or cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        raise ConfigError(f"device '{name}' was requested but this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device '{name}' was requested but MPS is not available here; use device=auto or cpu")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products natively (CUDA Ampere+, CPUs with AVX512-BF16/AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def emulated_bf16(device: torch.device) -> bool:
    """Whether bf16 on ``device`` would only be emulated: a CPU without bf16 units (~4x slower than fp32 on a 2-core AVX2 CPU)."""
    return device.type == "cpu" and not native_bf16(device)


@dataclass(frozen=True)
class DeviceDefaults:
    """What the ``auto`` settings choose on one device type (the measurements behind each choice are beside the table)."""

    amp: str  # amp: auto -> "native" (bf16 where the device computes it natively) or "none" (fp32)
    capture: str  # capture: auto -> "none" or "cuda-graph"
    channels_last: bool  # the faster layout measured here (channels_last is a plain config key; profiles set it)
    bench_groups: tuple[int, ...]  # group sizes `vmivae bench` measures by default (grouped rows)


# auto departs from the plain step (fp32, NCHW, eager) only where the departure measured faster (images/s of
# paper-joint at batch 124, `vmivae bench`). The step is small (0.14 GFLOP per image): on a GPU it is bound by
# kernel launches and Python, not arithmetic, so bf16 and NHWC only add cast and layout kernels there.
DEVICE_DEFAULTS: dict[str, DeviceDefaults] = {
    # CPUs: bf16 pays only where the CPU computes it natively. On the 2-core machine of benchmarks/cpu-2core-bf16.md
    # (bf16 peak 396 vs fp32 187 GFLOP/s) bf16 measured 1.34x faster (fused 918, fused + bf16 1229 images/s); on a
    # 2-core AVX2 EPYC without bf16 units (native_bf16 False) the same step ran 4x slower in bf16 (11 vs 45 images/s,
    # measured on a loaded machine), so auto keeps fp32 there. Layout: NCHW. NHWC gained 6% on the bf16 machine's
    # idle cores (976 vs 918) but lost 11% on the AVX2 one (372 vs 416, benchmarks/cpu-2core-avx2.md), and with
    # another process on one core it collapsed there (vmivae bench --contention).
    "cpu": DeviceDefaults(amp="native", capture="none", channels_last=False, bench_groups=(1, 4)),
    # NVIDIA H200, torch 2.11 (vmivae bench): fused 15,159 images/s, fused + bf16 13,190, fused + channels_last
    # 13,837 (the alternating, reference-style step 9,747), so auto never picks bf16 or NHWC on CUDA. capture: auto
    # stays off until scripts/gpu_check.py has measured the captured step faster (and equivalent) on a GPU; set
    # capture: cuda-graph to use it now.
    "cuda": DeviceDefaults(amp="none", capture="none", channels_last=False, bench_groups=(1, 4, 16)),
    # not measured: the plain step
    "mps": DeviceDefaults(amp="none", capture="none", channels_last=False, bench_groups=(1, 4)),
}


def device_defaults(device: torch.device) -> DeviceDefaults:
    return DEVICE_DEFAULTS.get(device.type, DEVICE_DEFAULTS["mps"])


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a config's ``amp`` on ``device`` (None: plain fp32); ``auto`` per :data:`DEVICE_DEFAULTS`."""
    if amp == "bf16" and device.type in ("cpu", "cuda"):
        return torch.bfloat16
    if amp == "auto" and device_defaults(device).amp == "native" and native_bf16(device):
        return torch.bfloat16
    return None


def resolve_capture(capture: str, device: torch.device, processes: int = 1) -> str:
    """What a config's ``capture`` means on ``device``: ``none`` or ``cuda-graph``.

    ``auto`` follows :data:`DEVICE_DEFAULTS` (and never captures with several processes); an explicit
    ``cuda-graph`` that this device or setup cannot capture is a :class:`ConfigError`, like an absent device.
    """
    if capture == "auto":
        return device_defaults(device).capture if device.type == "cuda" and processes == 1 else "none"
    if capture == "cuda-graph":
        if device.type != "cuda":
            raise ConfigError(f"capture: cuda-graph needs a CUDA device, but this run is on {device.type}; use capture: auto or none")
        if processes > 1:
            raise ConfigError(f"capture: cuda-graph trains one process; this run has {processes}; use capture: auto or none")
    return capture


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def use_all_cores() -> int:
    """Use every core this process may run on for CPU kernels; returns the thread count."""
    n = available_cores()
    torch.set_num_threads(n)
    return n


def hardware_name() -> str:
    """What a result was measured on, in words: the GPU's name, or the CPU's core count and architecture."""
    import platform

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
