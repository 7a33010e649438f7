"""What ``auto`` chooses, as a user sees it: the numbers a short run trains to, and the errors.

Whether this CPU has bf16 units is read from ``/proc/cpuinfo``, not from torch, so the tests check
``native_bf16`` and ``amp: auto`` against the hardware rather than against themselves. On a GPU,
``scripts/gpu_check.py`` runs this file and the CUDA tests run too.
"""

from pathlib import Path

import pytest
import torch

import vmivae
from vmivae.errors import ConfigError
from vmivae.perf.device import emulated_bf16, native_bf16
from vmivae.trainer import Trainer

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cpu_has_bf16_units() -> bool | None:
    """True with AVX512-BF16 or AMX-BF16, False without AVX-512 (an AVX2 CPU), None where cpuinfo cannot tell."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), None)
    if flags is None:  # not x86 (ARM lists "Features")
        return None
    if flags & {"avx512_bf16", "amx_bf16"}:
        return True
    return False if "avx512bw" not in flags else None


def _config(amp: str, device: str = "cpu", **overrides):
    return vmivae.make_config("paper-joint", "smoke", {"amp": amp, "device": device, "steps": 3, **overrides})


@pytest.fixture(scope="module")
def trained():
    """Three-step CPU runs with amp auto, none and bf16, all else equal."""
    threads = torch.get_num_threads()
    return {amp: vmivae.fit(_config(amp, capture="auto"), progress=False, threads=threads) for amp in ("auto", "none", "bf16")}


def _same(a, b) -> bool:
    return a.history.equals(b.history)


def test_native_bf16_matches_the_cpus_flags():
    units = cpu_has_bf16_units()
    if units is None:
        pytest.skip("cpuinfo does not say whether this CPU has bf16 units")
    assert native_bf16(torch.device("cpu")) is units
    assert emulated_bf16(torch.device("cpu")) is (not units)  # the bench skips bf16 rows exactly where it would be emulated


def test_amp_auto_on_this_cpu_trains_in_bf16_only_where_the_cpu_has_bf16_units(trained):
    units = cpu_has_bf16_units()
    if units is None:
        pytest.skip("cpuinfo does not say whether this CPU has bf16 units")
    assert _same(trained["auto"], trained["bf16" if units else "none"])


def test_an_explicit_amp_is_used_whatever_the_cpu(trained):
    """amp: none is fp32 even where bf16 is native, amp: bf16 is bf16 even where it is only emulated: the runs differ."""
    assert not _same(trained["none"], trained["bf16"])
    fp32, bf16 = (trained[a].history["recon"].to_numpy() for a in ("none", "bf16"))
    assert abs(bf16 - fp32).max() < 0.05 * abs(fp32).max()  # the same training, rounded differently


def test_capture_auto_trains_the_plain_step_on_a_cpu(trained):
    assert trained["auto"].metrics["capture"] == "none"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_one_sentence_and_writes_nothing(tmp_path, device):
    with pytest.raises(ConfigError) as error:
        vmivae.fit(_config("auto", device), out=tmp_path / "run", progress=False)
    message = str(error.value)
    assert message == f"device '{device}' was requested but CUDA is not available here; use device=auto or cpu"
    assert not (tmp_path / "run").exists()


@CUDA
def test_on_cuda_auto_trains_the_plain_step_in_fp32():
    """bf16 and NHWC measured slower than fp32 NCHW on an H200, and the captured step is not yet measured: auto picks neither."""
    data, cuda = vmivae.load("mnist-5k"), torch.device("cuda")
    auto = Trainer(_config("auto", "cuda", capture="auto"), data, cuda)
    assert auto.amp_dtype is None and auto.capture == "none"
    assert Trainer(_config("bf16", "cuda"), data, cuda).amp_dtype is torch.bfloat16  # asked for: used


@CUDA
def test_a_cuda_index_beyond_the_machine_names_the_valid_ones():
    n = torch.cuda.device_count()
    with pytest.raises(ConfigError, match=rf"has {n} CUDA device\(s\), cuda:0 to cuda:{n - 1}"):
        vmivae.fit(_config("auto", f"cuda:{n}"), progress=False)
