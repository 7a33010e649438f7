"""Time the MI estimator before and after the warm start, on one thread, on the book's quick runs.

    .venv/bin/python scripts/bench_mi.py                      # trains the two quick runs once, into runs/bench-mi
    .venv/bin/python scripts/bench_mi.py --runs-dir runs/bench-mi --repeats 2

"Before" is ``settings="quick-500"``: a fresh Q trained for all 500 steps, as the quick estimator did
(its validation set is now decoded once instead of at every check, and on the reconstruction path each
real image is encoded once, so it is faster than it was and the ratios are, if anything, conservative). "After" is ``settings="quick"``: Q warm-started
from the run's own Q, refitted in closed form at each check, at most 300 steps, its last layer refitted as a
linear model of its features at the end. Each (run, path) pair
runs before and after back to back in one process on one thread. Besides wall-clock seconds it reports
the process's CPU seconds, which other processes on a shared machine barely change; the ratio
after/before of CPU seconds is the number to read.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import vmivae
from vmivae.measure.mi import estimate_mi
from vmivae.measure.validation import SPEC, CleanChannel

PRESETS = ("vmi-joint", "vmi-joint-baseline")
PATHS = ("generation", "reconstruction")
SETTINGS = {"before": "quick-500", "after": "quick"}


def quick_run(preset: str, runs_dir: Path) -> vmivae.Run:
    """The quick-profile run of ``preset``, trained on first use (an interrupted one is continued)."""
    out = runs_dir / preset
    if (out / "checkpoint.pt").is_file() and not (out / "metrics.json").is_file():
        vmivae.resume(out, progress=False)
    elif not (out / "metrics.json").is_file():
        vmivae.fit(vmivae.make_config(preset, "quick"), out=out, progress=False)
    return vmivae.load_run(out)


def fmt(component) -> str:
    return f"{component.nats:.3f} [{component.ci95[0]:.3f}, {component.ci95[1]:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs-dir", default="runs/bench-mi", help="where the quick runs are trained or reused")
    parser.add_argument("--repeats", type=int, default=1, help="before/after pairs per run and path")
    parser.add_argument("--presets", nargs="+", default=PRESETS, choices=PRESETS, help="the runs to measure")
    parser.add_argument("--paths", nargs="+", default=PATHS, choices=PATHS, help="the paths to measure")
    args = parser.parse_args()
    runs = {preset: quick_run(preset, Path(args.runs_dir)) for preset in args.presets}
    torch.set_num_threads(1)
    estimate_mi(CleanChannel(), SPEC, settings="smoke")  # first-call imports and allocations, outside the timings
    rows = []
    for preset, run in runs.items():
        train, test = (vmivae.load(run.config.dataset, split, run.config.data_root) for split in ("train", "test"))
        for path in args.paths:
            for repeat in range(args.repeats):
                pair = {}
                for when, settings in SETTINGS.items():
                    wall, cpu = time.perf_counter(), time.process_time()
                    estimate = estimate_mi(run, path=path, data=train, eval_data=test, settings=settings)
                    pair[when] = (time.process_time() - cpu, time.perf_counter() - wall, estimate)
                rows.append((preset, path, pair))
                print(f"{preset} {path} #{repeat}: " + ", ".join(f"{w} {cpu:.1f} s CPU" for w, (cpu, _, _) in pair.items()), flush=True)
    print("\n| run | path | estimator | warm start | Q steps | CPU s | wall s | after / before (CPU) "
          "| categorical (nats, 95% CI) | z0 | z1 | sum of z0..z15 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for preset, path, pair in rows:
        for when, (cpu, wall, e) in pair.items():
            c = e.components
            ratio = f"{cpu / pair['before'][0]:.2f}" if when == "after" else ""
            z_sum = sum(v.nats for name, v in c.items() if name != "categorical")
            print(f"| {preset} | {path} | {when} ({SETTINGS[when]}) | {', '.join(e.warm_start) or 'no'} | {e.q_steps} | {cpu:.1f} | {wall:.1f} "
                  f"| {ratio} | {fmt(c['categorical'])} | {fmt(c['z0'])} | {fmt(c['z1'])} | {z_sum:.2f} |")
    print("\nAfter against before per component: after - before (nats), in units of after's CI half-width; "
          "'looser' lists the components where after < before - half-width.\n")
    print("| run | path | worst component | after - before | in half-widths | looser |")
    print("|---|---|---|---|---|---|")
    for preset, path, pair in rows:
        before, after = pair["before"][2].components, pair["after"][2].components
        gaps = {name: (a.nats - before[name].nats, (a.ci95[1] - a.ci95[0]) / 2) for name, a in after.items()}
        worst = min(gaps, key=lambda name: gaps[name][0] / gaps[name][1])
        looser = [name for name, (gap, half) in gaps.items() if gap < -half]
        print(f"| {preset} | {path} | {worst} | {gaps[worst][0]:+.3f} | {gaps[worst][0] / gaps[worst][1]:+.2f} | {', '.join(looser) or 'none'} |")

if __name__ == "__main__":
    main()
