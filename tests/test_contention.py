"""The contention measurement: each setting in its own process, with the OpenMP wait policy it names."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmivae.perf import contention


def test_the_candidates_cover_threads_layouts_and_wait_policies():
    names = [c.name for c in contention.default_candidates(2)]
    assert names == ["1 thread, NCHW, passive wait", "1 thread, channels_last, passive wait", "2 threads, NCHW, passive wait",
                     "2 threads, channels_last, passive wait", "2 threads, NCHW, spin wait", "2 threads, channels_last, spin wait"]
    assert all(c.threads == 1 for c in contention.default_candidates(1))


def test_a_measurement_runs_each_setting_with_its_wait_policy():
    rows = contention.measure("paper-joint", [contention.Candidate(1, False, "passive"), contention.Candidate(1, False, "spin")],
                              steps=1, warmup=1, batch_size=8)
    assert [r["omp_wait_policy"] for r in rows] == ["PASSIVE", None]  # spin: no policy set, libgomp's default
    assert all(r["alone"] > 0 and r["busy"] > 0 for r in rows)
    assert "| 1 thread, NCHW, spin wait |" in contention.markdown(rows, "paper-joint", 1)
    with pytest.raises(ValueError, match="unknown wait policy 'eager'"):
        contention.measure("paper-joint", [contention.Candidate(1, False, "eager")])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
def test_the_busy_core_burns_cpu_while_measured_and_is_gone_after():
    with contention.BusyCore() as busy:
        start = _cpu_seconds(busy.proc.pid)
        time.sleep(0.5)
        assert _cpu_seconds(busy.proc.pid) - start > 0.1  # a core at work, not a sleeping process
    assert busy.proc.poll() is not None  # no busy loop is left behind to slow what runs next


@pytest.mark.parametrize(("given", "seen"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_importing_vmivae_makes_openmp_wait_passively_unless_the_user_chose(given, seen):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": given} if given else {})
    code = "import os, vmivae; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == seen
