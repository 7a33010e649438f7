"""How training speed holds up when another process keeps a core busy (``vmivae bench --contention``).

A laptop or a shared machine rarely gives a run every core. With several intra-op threads, every
operation waits at a barrier for its slowest thread, and a thread that shares its core with another
process is slow: on a 2-core machine a step can become many times slower, not twice. This module times
a short training of a preset alone and then beside a busy-loop process that keeps one core at 100%,
for each candidate setting (thread count, memory layout), and reports the slowdown. The CPU defaults in
``vmivae.device`` are chosen from these measurements.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

import torch

from .datasets import load
from .presets import make_config
from .trainer import Trainer

BUSY_LOOP = "while True:\n    pass\n"  # one core at 100%, nothing else


@dataclass(frozen=True)
class Candidate:
    threads: int
    channels_last: bool

    @property
    def name(self) -> str:
        return f"{self.threads} thread{'s' if self.threads > 1 else ''}, {'channels_last' if self.channels_last else 'NCHW'}"


def _images_per_second(trainer: Trainer, steps: int, warmup: int) -> float:
    x = trainer.images[: trainer.config.batch_size]
    tau = torch.tensor(0.7)
    for _ in range(warmup):
        trainer.stepper(x, tau)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.stepper(x, tau)
    return steps * len(x) / (time.perf_counter() - start)


class BusyCore:
    """A child process that spins on one core for as long as the ``with`` block lasts."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
        time.sleep(0.5)  # let it be scheduled before timing starts
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def measure(preset: str = "paper-joint", candidates: list[Candidate] | None = None, steps: int = 20, warmup: int = 3,
            batch_size: int = 124) -> list[dict]:
    """Images/s of each candidate alone and beside a busy core, and their ratio (the slowdown)."""
    candidates = candidates or [Candidate(t, cl) for t in sorted({1, torch.get_num_threads()}) for cl in (False, True)]
    data = load("mnist-5k")
    previous = torch.get_num_threads()
    rows = []
    try:
        for c in candidates:
            torch.set_num_threads(c.threads)
            config = make_config(preset, "quick", {"channels_last": c.channels_last, "amp": "none", "batch_size": batch_size, "device": "cpu"})
            trainer = Trainer(config, data, torch.device("cpu"))
            alone = _images_per_second(trainer, steps, warmup)
            with BusyCore():
                busy = _images_per_second(trainer, steps, warmup)
            rows.append({"setting": c.name, "threads": c.threads, "channels_last": c.channels_last,
                         "alone (images/s)": round(alone, 1), "one core busy (images/s)": round(busy, 1), "slowdown": round(alone / busy, 2)})
    finally:
        torch.set_num_threads(previous)
    return rows


def markdown(rows: list[dict], preset: str, steps: int) -> str:
    lines = [f"Contention test: `{preset}`, {steps} timed steps per setting, alone and beside a process that keeps one core busy.", "",
             "| setting | alone (images/s) | one core busy (images/s) | slowdown |", "|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['alone (images/s)']:.0f} | {r['one core busy (images/s)']:.0f} | {r['slowdown']:.2f}x |" for r in rows]
    return "\n".join(lines) + "\n"
