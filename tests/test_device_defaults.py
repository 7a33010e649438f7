"""What ``auto`` chooses per device type, and that every choice is backed by a measurement."""

import pytest
import torch

from vmivae.errors import ConfigError
from vmivae.perf.device import DEVICE_DEFAULTS, native_bf16, resolve_amp, resolve_capture


def test_auto_never_picks_bf16_on_cuda():
    """bf16 measured slower than fp32 on the H200 (13,190 vs 15,159 images/s): amp auto is fp32 on CUDA, bf16 on request only."""
    cuda = torch.device("cuda")  # resolve_amp needs no GPU for this: the table decides before the hardware is asked
    assert resolve_amp("auto", cuda) is None
    assert resolve_amp("bf16", cuda) is torch.bfloat16 and resolve_amp("none", cuda) is None


def test_auto_on_a_cpu_is_bf16_only_where_the_cpu_computes_it_natively():
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) is (torch.bfloat16 if native_bf16(cpu) else None)


def test_capture_auto_stays_off_until_measured():
    for kind in ("cpu", "cuda", "mps"):
        assert resolve_capture("auto", torch.device(kind)) == "none"
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        resolve_capture("cuda-graph", torch.device("mps"))
    assert resolve_capture("cuda-graph", torch.device("cuda")) == "cuda-graph"


@pytest.mark.parametrize("kind", sorted(DEVICE_DEFAULTS))
def test_auto_departs_from_the_plain_step_only_where_that_measured_faster(kind):
    """The plain step is fp32, NCHW, eager; each departure the table makes must have measured faster on that device."""
    d = DEVICE_DEFAULTS[kind]
    assert d.amp in ("native", "none") and d.capture in ("none", "cuda-graph") and min(d.bench_groups) == 1
    departures = {"fused + bf16": d.amp != "none", "fused + channels_last": d.channels_last, "fused + cuda-graph": d.capture != "none"}
    for variant, chosen in departures.items():
        if chosen:
            assert d.source and d.measured[variant] > d.measured["fused"], f"{kind}: {variant} is chosen but did not measure faster"


def test_the_cuda_choices_cite_the_h200_measurements():
    m = DEVICE_DEFAULTS["cuda"].measured
    assert m["fused + bf16"] < m["fused"] and m["fused + channels_last"] < m["fused"]  # why auto picks neither
    assert "H200" in DEVICE_DEFAULTS["cuda"].source


def test_bf16_is_emulated_only_on_a_cpu_without_bf16_units():
    from vmivae.perf.device import emulated_bf16, native_bf16

    assert emulated_bf16(torch.device("cpu")) is (not native_bf16(torch.device("cpu")))
    assert emulated_bf16(torch.device("cuda")) is False and emulated_bf16(torch.device("mps")) is False
