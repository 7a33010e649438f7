"""How training speed holds up when another process keeps a core busy (``vmivae bench --contention``).

A laptop or a shared machine rarely gives a run every core. With several intra-op threads, every
operation waits at a barrier for its slowest thread, and a thread that shares its core with another
process is slow: on a 2-core machine a step can become several times slower, not twice. How long the
waiting threads spin before they sleep decides much of it (OpenMP's wait policy, which ``vmivae`` sets
to passive unless the user chose one). This module times a short training of a preset alone and then
beside a busy-loop process that keeps one core at 100%, for each candidate setting (threads, memory
layout, wait policy), each in a fresh process because OpenMP reads its wait policy when torch loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

BUSY_LOOP = "while True:\n    pass\n"  # one core at 100%, nothing else
WAIT_POLICIES = ("passive", "spin")  # spin: libgomp's default (spin ~300,000 times before sleeping)


@dataclass(frozen=True)
class Candidate:
    threads: int
    channels_last: bool
    wait_policy: str = "passive"

    @property
    def name(self) -> str:
        layout = "channels_last" if self.channels_last else "NCHW"
        return f"{self.threads} thread{'s' if self.threads > 1 else ''}, {layout}, {self.wait_policy} wait"


def default_candidates(cores: int) -> list[Candidate]:
    threads = sorted({1, cores})
    return [Candidate(t, cl, w) for w in WAIT_POLICIES for t in threads for cl in (False, True) if t > 1 or w == "passive"]


class BusyCore:
    """A child process that spins on one core for as long as the ``with`` block lasts."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
        time.sleep(0.5)  # let it be scheduled before timing starts
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def _images_per_second(trainer, steps: int, warmup: int) -> float:
    import torch

    x = trainer.images[: trainer.config.batch_size]
    tau = torch.tensor(0.7)
    for _ in range(warmup):
        trainer.stepper(x, tau)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.stepper(x, tau)
    return steps * len(x) / (time.perf_counter() - start)


def measure_here(preset: str, threads: int, channels_last: bool, steps: int, warmup: int, batch_size: int) -> dict:
    """One candidate in this process: images/s alone, then beside a busy core."""
    import torch

    from ..datasets import load
    from ..presets import make_config
    from ..trainer import Trainer

    torch.set_num_threads(threads)
    config = make_config(preset, "quick", {"channels_last": channels_last, "amp": "none", "batch_size": batch_size, "device": "cpu"})
    trainer = Trainer(config, load("mnist-5k"), torch.device("cpu"))
    alone = _images_per_second(trainer, steps, warmup)
    with BusyCore():
        busy = _images_per_second(trainer, steps, warmup)
    return {"alone": alone, "busy": busy}


# The child imports torch before vmivae, so that the policy in its environment (or its absence) is the one
# OpenMP reads, not vmivae's default; it reports the policy as torch saw it.
CHILD = """import sys, json, os
policy = os.environ.get("OMP_WAIT_POLICY")
import torch
from vmivae.perf.contention import measure_here
print(json.dumps({**measure_here(*json.loads(sys.argv[1])), "omp_wait_policy": policy}))
"""


def measure(preset: str = "paper-joint", candidates: list[Candidate] | None = None, steps: int = 20, warmup: int = 3,
            batch_size: int = 124) -> list[dict]:
    """Images/s of each candidate alone and beside a busy core, and their ratio (the slowdown)."""
    from .device import available_cores

    rows = []
    for c in candidates or default_candidates(available_cores()):
        if c.wait_policy not in WAIT_POLICIES:
            raise ValueError(f"unknown wait policy {c.wait_policy!r}; use one of {', '.join(WAIT_POLICIES)}")
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
        if c.wait_policy == "passive":
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        args = json.dumps([preset, c.threads, c.channels_last, steps, warmup, batch_size])
        out = subprocess.run([sys.executable, "-c", CHILD, args], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"the contention measurement of {c.name} failed: {out.stderr.strip().splitlines()[-1:]}")
        speed = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append({"preset": preset, **asdict(c), "setting": c.name, "alone": round(speed["alone"], 1), "busy": round(speed["busy"], 1),
                     "slowdown": round(speed["alone"] / speed["busy"], 2), "omp_wait_policy": speed["omp_wait_policy"]})
    return rows


def markdown(rows: list[dict], preset: str, steps: int) -> str:
    lines = [f"Contention: `{preset}`, fp32, {steps} timed steps per setting, alone and beside a process that keeps one core busy; "
             "each setting in a fresh process.", "",
             "| setting | alone (images/s) | one core busy (images/s) | slowdown |", "|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['alone']:.0f} | {r['busy']:.0f} | {r['slowdown']:.2f}x |" for r in rows]
    return "\n".join(lines) + "\n"
