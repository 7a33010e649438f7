"""Screen of the joint model's levers: does the categorical code find the digits when the Gaussian part is held back?

Trains variants of the vmi-joint preset on full MNIST at a small budget and measures, on the test split,
Hungarian clustering accuracy, NMI, codes used, reconstruction MSE and the KL of each part (no MI estimate).
Each finished variant is written at once (results/levers/runs/<name>.json) and the tables
(results/levers/screen.csv, screen.md) are rebuilt from every finished variant; a variant whose result
exists is skipped, so the script can be stopped and started again.

    VMIVAE_DATA=/work/shared/data nice -n 15 .venv/bin/python scripts/lever_screen.py [--only NAME ...] [--steps 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import vmivae  # noqa: E402
from vmivae.datasets import load  # noqa: E402
from vmivae.measure import stats  # noqa: E402
from vmivae.measure.curves import code_measures  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "levers"
PRESET, PROFILE = "vmi-joint", "study"
# JointVAE (Dupont 2018) weighs |KL - C| by gamma = 30 against a summed Bernoulli likelihood; this model's
# reconstruction term is a per-pixel mean of squared errors on [-1, 1], about 1/392 of that scale in gradient
# (8/784 per pixel against at least 4 for the Bernoulli term), so gamma = 30/392 ~ 0.075; the paper's
# kl_weight 0.005 is a KL weight of ~2 on that scale.
GAMMA = 0.075


def variants(steps: int) -> dict[str, dict]:
    """Name -> (label, overrides). Capacities reach their end at half the budget (the temperature's floor is at 53%)."""
    ramp = max(1, steps // 2)
    return {
        "baseline": ("vmi-joint defaults (kl_weight 0.005 both parts)", {}),
        "cap-cont": (f"capacity on the Gaussian part: gamma {GAMMA} |KL_cont - C|, C 0 -> 5 nats over {ramp} steps; KL_cat weight 0.005",
                     {"capacity_cont_gamma": GAMMA, "capacity_cont_start": 0.0, "capacity_cont_end": 5.0, "capacity_cont_steps": ramp}),
        "kl-cont-x10": ("kl_weight_cont 0.05 (10x), kl_weight_cat 0.005", {"kl_weight_cont": 0.05, "kl_weight_cat": 0.005}),
        "cap-both": (f"JointVAE-like: gamma {GAMMA}, C_cont 0 -> 5 nats, C_cat 0 -> log 10 over {ramp} steps",
                     {"capacity_cont_gamma": GAMMA, "capacity_cont_start": 0.0, "capacity_cont_end": 5.0, "capacity_cont_steps": ramp,
                      "capacity_cat_gamma": GAMMA, "capacity_cat_start": 0.0, "capacity_cat_end": 2.302585, "capacity_cat_steps": ramp}),
        "kl-cont-x4": ("kl_weight_cont 0.02 (4x), kl_weight_cat 0.005", {"kl_weight_cont": 0.02, "kl_weight_cat": 0.005}),
        # On JointVAE's own scale: a summed Bernoulli likelihood, KL weight 1, gamma 30. The MI weights keep the paper's
        # ratio to the KL weight (lambda_cat 0.01 / kl_weight 0.005 = 2; lambda_cont 0.0005 / 0.005 = 0.1).
        "bern-elbo": ("Bernoulli likelihood (summed), kl_weight 1, lambda_cat 2, lambda_cont 0.1",
                      {"recon_loss": "bernoulli", "kl_weight": 1.0, **BERN_MI}),
        "bern-cap": (f"Bernoulli likelihood, JointVAE capacities: gamma 30, C_cont 0 -> 5 nats, C_cat 0 -> log 10 over {ramp} steps; "
                     "lambda_cat 2, lambda_cont 0.1",
                     {"recon_loss": "bernoulli", "kl_weight": 1.0, **BERN_MI, **capacities(30.0, 5.0, ramp)}),
        "bern-cap-c2": (f"as bern-cap with C_cont 0 -> 2 nats over {ramp} steps",
                        {"recon_loss": "bernoulli", "kl_weight": 1.0, **BERN_MI, **capacities(30.0, 2.0, ramp)}),
        "bern-klx4": ("Bernoulli likelihood, kl_weight_cont 4, kl_weight_cat 1, lambda_cat 2, lambda_cont 0.1",
                      {"recon_loss": "bernoulli", "kl_weight": 1.0, "kl_weight_cont": 4.0, "kl_weight_cat": 1.0, **BERN_MI}),
    }


BERN_MI = {"lambda_cat": 2.0, "lambda_cont": 0.1}


def capacities(gamma: float, cont_end: float, ramp: int) -> dict:
    """JointVAE's two capacity schedules, from 0 nats: the Gaussian part to ``cont_end``, the code to log 10."""
    return {"capacity_cont_gamma": gamma, "capacity_cont_start": 0.0, "capacity_cont_end": cont_end, "capacity_cont_steps": ramp,
            "capacity_cat_gamma": gamma, "capacity_cat_start": 0.0, "capacity_cat_end": 2.302585, "capacity_cat_steps": ramp}


def budget_overrides(steps: int) -> dict:
    """Full MNIST, the study profile's deviations, the temperature floor reached at 53% of ``steps``."""
    return {"dataset": "mnist", "steps": steps, "tau_interval": 10, "tau_rate": round(0.00456 * 500 / steps, 8),
            "log_every": 50, "checkpoint_every": 100}


def measure(run, test) -> dict:
    return code_measures(run, test)[0]


def run_variant(name: str, label: str, overrides: dict, steps: int, seed: int, test) -> dict:
    config = vmivae.make_config(PRESET, PROFILE, {**budget_overrides(steps), **overrides, "seed": seed})
    started = time.perf_counter()
    folder = Path(os.environ.get("LEVER_RUNS", "/tmp/lever_runs")) / f"{name}-s{seed}-{steps}"
    if (folder / "checkpoint.pt").exists() and json.loads((folder / "config.json").read_text()).get("config_hash") == config.hash():
        run = vmivae.resume(folder, progress=False, threads=1)  # a stopped run continues from its last checkpoint
    else:
        run = vmivae.fit(config, out=folder, overwrite=True, progress=False, threads=1)
    train_s = time.perf_counter() - started
    result = {"variant": name, "label": label, "seed": seed, "steps": steps, "overrides": overrides, **measure(run, test),
              "train_seconds": round(float(run.metrics.get("seconds", train_s)), 1), "total_seconds": round(time.perf_counter() - started, 1),
              "resumed": bool(run.info.get("resumed_from_step")) if isinstance(getattr(run, "info", None), dict) else None,
              "finished_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
              "config_hash": config.hash(), "amp": str(config.amp)}
    return result


COLUMNS = ("variant", "seed", "steps", "hungarian", "majority", "nmi", "codes_used", "recon_mse", "kl_cont", "active_dims", "kl_cat",
           "train_seconds", "total_seconds", "finished_utc", "label")


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def write_tables(results: list[dict], command: str) -> None:
    with open(OUT / "screen.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(results)
    lines = ["# Lever screen: vmi-joint on full MNIST, test split", "",
             f"- command: `{command}`",
             f"- hardware: {cpu_name()}, {os.cpu_count()} cores shared with other users' jobs, "
             f"1 torch thread, nice 15; torch {torch.__version__}; wall times are not benchmarks",
             f"- budget: preset {PRESET}, profile {PROFILE} with {budget_overrides(results[0]['steps']) if results else ''}",
             "- seeds per variant: " + ", ".join(f"{v} {n}" for v, n in Counter(r["variant"] for r in results).items())
             + "; with one seed, a difference smaller than the seed-to-seed spread means nothing",
             "- train s: the run's own training seconds (summed over a resume), with the cores shared: not comparable between variants", "",
             "| variant | seed | steps | Hungarian acc | NMI | codes used | test MSE | KL cont (nats) | active dims | KL cat (nats) | train s "
             "| finished (UTC) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['variant']} | {r['seed']} | {r['steps']} | {r['hungarian']:.3f} | {r['nmi']:.3f} | {r['codes_used']} | {r['recon_mse']:.4f} | "
                     f"{r['kl_cont']:.2f} | {r['active_dims']} | {r['kl_cat']:.3f} | {r['train_seconds']:.0f} | {r['finished_utc']} |")
    lines += contrast_lines(results)
    labels = {r["variant"]: r["label"] for r in results}
    lines += ["", "Variants:", ""] + [f"- **{name}**: {label}" for name, label in labels.items()]
    if (OUT / "notes.md").is_file():  # how the screen was run, by hand, kept across rebuilds of the tables
        lines += ["", (OUT / "notes.md").read_text().strip()]
    (OUT / "screen.md").write_text("\n".join(lines) + "\n")


def contrast_lines(results: list[dict]) -> list[str]:
    """Each variant minus the baseline, paired by seed (vmivae.measure.stats), where both have at least 2 seeds."""
    table: dict[str, dict[str, dict[int, float]]] = {}
    for r in results:
        for metric in ("hungarian", "nmi"):
            table.setdefault(metric, {}).setdefault(r["variant"], {})[r["seed"]] = r[metric]
    lines = []
    for metric, variants in table.items():
        paired = {v: seeds for v, seeds in variants.items() if len(set(seeds) & set(variants.get("baseline", {}))) >= 2}
        if "baseline" not in paired or len(paired) < 2:
            continue
        if not lines:
            lines = ["", "Paired contrasts against the baseline (the seeds both ran; Holm over the variants of one metric). With n seeds the "
                     "smallest possible p is 2 / 2^n (0.5 for 2) and a bootstrap interval of 2 differences only spans them: a description, "
                     "not evidence.", "",
                     "| metric | contrast | mean difference | interval | what the interval is | p | test | p (Holm) |", "|---|---|---|---|---|---|---|---|"]
        for c in stats.contrasts(paired, "baseline", 1.0):
            i = c.interval
            lines.append(f"| {metric} | {c.name} | {i.estimate:+.3f} | [{i.low:+.3f}, {i.high:+.3f}] | {i.label} | {c.p_value:.2f} | {c.test} "
                         f"| {c.p_holm:.2f} |")
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", help="variant names, in this order (default: all)")
    p.add_argument("--tables", action="store_true", help="only rebuild screen.csv and screen.md from the finished variants")
    args = p.parse_args()
    torch.set_num_threads(1)
    table = variants(args.steps)
    names = args.only or list(table)
    (OUT / "runs").mkdir(parents=True, exist_ok=True)
    # the variants ran by --only may be split over several invocations; each result depends on --steps and --seed only
    command = f"VMIVAE_DATA=/work/shared/data nice -n 15 .venv/bin/python scripts/lever_screen.py --steps {args.steps} --seed {args.seed}"
    if args.tables:
        names = []
    else:
        test = load("mnist", "test", os.environ.get("VMIVAE_DATA"))
    for name in names:
        path = OUT / "runs" / f"{name}-s{args.seed}-{args.steps}.json"
        if path.exists():
            print(f"{name}: done already ({path.name})", flush=True)
            continue
        label, overrides = table[name]
        print(f"{name}: training {args.steps} steps ...", flush=True)
        result = run_variant(name, label, overrides, args.steps, args.seed, test)
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"{name}: {json.dumps({k: result[k] for k in COLUMNS[3:12]})}", flush=True)
        write_tables(finished(args.steps), command)
    if args.tables:
        write_tables(finished(args.steps), command)
    return 0


def finished(steps: int) -> list[dict]:
    results = [json.loads(f.read_text()) for f in (OUT / "runs").glob(f"*-{steps}.json")]
    return sorted(results, key=lambda r: r["finished_utc"])


if __name__ == "__main__":
    sys.exit(main())
