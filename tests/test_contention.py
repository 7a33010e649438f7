"""The contention measurement: each setting in its own process, with the OpenMP wait policy it names."""

import os
import subprocess
import sys

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
    for r in rows:
        assert r["alone"] > 0 and r["busy"] > 0 and r["slowdown"] == pytest.approx(r["alone"] / r["busy"], abs=0.01)
    assert "| 1 thread, NCHW, spin wait |" in contention.markdown(rows, "paper-joint", 1)
    with pytest.raises(ValueError, match="unknown wait policy 'eager'"):
        contention.measure("paper-joint", [contention.Candidate(1, False, "eager")])


@pytest.mark.parametrize(("given", "seen"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_importing_vmivae_makes_openmp_wait_passively_unless_the_user_chose(given, seen):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": given} if given else {})
    code = "import os, vmivae; print(os.environ['OMP_WAIT_POLICY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == seen
