"""Device choice, bf16 support and threads."""

import os

import pytest
import torch

from vmivae.errors import ConfigError
from vmivae.perf.device import native_bf16, resolve_amp, resolve_device, use_all_cores


def test_auto_picks_an_available_device():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_absent_cuda_is_a_clear_error():
    with pytest.raises(ConfigError, match="CUDA is not available here; use device=auto or cpu"):
        resolve_device("cuda:0")


def test_amp_choices():
    cpu = torch.device("cpu")
    assert resolve_amp("none", cpu) is None
    assert resolve_amp("bf16", cpu) is torch.bfloat16  # asked for explicitly: used even where emulated
    assert resolve_amp("auto", cpu) is (torch.bfloat16 if native_bf16(cpu) else None)
    assert resolve_amp("bf16", torch.device("meta")) is None  # no autocast for other device types


def test_use_all_cores_uses_the_affinity_mask():
    before = torch.get_num_threads()
    try:
        n = use_all_cores()
        assert n == len(os.sched_getaffinity(0)) == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
