"""Device choice and threads."""

import os

import pytest
import torch

from vmivae.errors import ConfigError
from vmivae.perf.device import resolve_device, use_all_cores


def test_auto_picks_a_device_this_machine_computes_on_and_prefers_cuda():
    device = resolve_device("auto")
    assert torch.arange(4.0, device=device).sum().item() == 6.0
    assert (device.type == "cuda") is torch.cuda.is_available()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_absent_cuda_is_a_clear_error():
    with pytest.raises(ConfigError, match="CUDA is not available here; use device=auto or cpu"):
        resolve_device("cuda:0")


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs two cores to pin to one")
def test_use_all_cores_uses_only_the_cores_this_process_may_run_on():
    """A process pinned to one core (taskset, a container's cpuset) gets one thread, not one per core of the machine."""
    mask, threads = os.sched_getaffinity(0), torch.get_num_threads()
    try:
        os.sched_setaffinity(0, {min(mask)})
        assert use_all_cores() == 1 == torch.get_num_threads()
        os.sched_setaffinity(0, mask)
        assert use_all_cores() == len(mask) == torch.get_num_threads()
    finally:
        os.sched_setaffinity(0, mask)
        torch.set_num_threads(threads)
