"""Studies: a grid of runs (objective variants x datasets x seeds) trained, measured and saved as data.

A study is a YAML file shipped in ``vmivae/measure/studies`` (see :func:`load_study`)::

    profile: study                       # the training budget every run starts from
    seeds: [0, 1, 2]
    datasets: {mnist-5k: {steps: 1500}, mnist: {steps: 3000}}    # per-dataset overrides
    variants: {paper: {preset: paper-joint, label: ...}, ...}    # preset + overrides per variant

:func:`run_study` trains what the run cache lacks (``vmivae.runs.run_cache``), evaluates every run on its
test split and writes three files that the book reads, so that the book can show a study it did not
rerun: ``runs.csv`` (one row per run), ``training.csv`` (codes used and H(c) over training) and
``meta.json`` (hardware, command, date, wall time). ``./run_all.sh --profile study`` or ``vmivae study``
regenerates them.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ..errors import ConfigError, unknown_name
from ..runs.files import write_bytes, write_json
from ..runs.run import load_run
from ..runs.run_cache import RunFailed, RunSpec, ensure

RESULT_FILES = ("runs.csv", "training.csv", "meta.json")
# evaluate() result -> the per-run columns of runs.csv
COLUMNS = {
    "hungarian": lambda r: (r["cluster_accuracy"] or {}).get("hungarian"),
    "majority": lambda r: (r["cluster_accuracy"] or {}).get("majority"),
    "nmi": lambda r: r["nmi"],
    "codes_used": lambda r: r.get("codes_used"),
    "mi_categorical": lambda r: r["mi"].get("categorical", {}).get("nats"),
    "mi_z0": lambda r: r["mi"]["z0"]["nats"],
    "mi_z1": lambda r: r["mi"]["z1"]["nats"],
    "linear_probe": lambda r: r["linear_probe_accuracy"],
    "recon_mse": lambda r: r["recon_mse"],
}


@dataclass(frozen=True)
class Variant:
    name: str
    preset: str
    overrides: dict[str, Any]
    label: str


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    profile: str
    seeds: tuple[int, ...]
    datasets: dict[str, dict[str, Any]]  # dataset -> config overrides for runs on it
    variants: tuple[Variant, ...]
    estimator: str = "quick"  # the MI estimator's budget for every run (vmivae.measure.mi.SETTINGS)

    def specs(self, datasets: list[str] | None = None, seeds: list[int] | None = None) -> list[tuple[str, str, int, RunSpec]]:
        """``(dataset, variant, seed, RunSpec)`` for every run of the grid (optionally a part of it)."""
        for d in datasets or []:
            if d not in self.datasets:
                raise ConfigError(unknown_name(f"dataset of study '{self.name}'", d, list(self.datasets)))
        out = []
        for dataset in datasets or list(self.datasets):
            for v in self.variants:
                for seed in seeds if seeds is not None else self.seeds:
                    overrides = {**self.datasets[dataset], **v.overrides, "dataset": dataset, "seed": seed}
                    out.append((dataset, v.name, seed, RunSpec(v.preset, self.profile, overrides, name=f"{self.name}-{v.name}-{dataset}-s{seed}")))
        return out


def list_studies() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("vmivae.measure").joinpath("studies").iterdir() if p.name.endswith(".yaml"))


def load_study(name: str = "joint-objectives") -> Study:
    """A study shipped with the package, checked: every run of its grid must be a valid config."""
    if name not in list_studies():
        raise ConfigError(unknown_name("study", name, list_studies()))
    data = yaml.safe_load(resources.files("vmivae.measure").joinpath("studies", f"{name}.yaml").read_text())
    variants = tuple(Variant(k, v["preset"], dict(v.get("overrides") or {}), v.get("label", k)) for k, v in data["variants"].items())
    study = Study(name, str(data.get("description", "")).strip(), data["profile"], tuple(data["seeds"]),
                  {k: dict(v or {}) for k, v in data["datasets"].items()}, variants, data.get("estimator", "quick"))
    for *_, spec in study.specs():
        spec.config  # noqa: B018 (validates the config; raises ConfigError with one sentence)
    return study


def _hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


def run_study(study: Study, runs_dir: str | os.PathLike = "runs", results_dir: str | os.PathLike = "results/study", *,
              datasets: list[str] | None = None, seeds: list[int] | None = None, workers: int = 2, device: str = "auto",
              command: str | None = None, keep_going: bool = False) -> pd.DataFrame:
    """Train and evaluate every run of ``study`` (reusing cached ones) and write its result files.

    A run that fails stops the study at once (:class:`vmivae.runs.run_cache.RunFailed`), or with
    ``keep_going`` after the other runs; either way no result file is written and the runs that finished
    are reused by the next call."""
    grid = study.specs(datasets, seeds)
    started = time.perf_counter()
    folders = ensure([(g[-1], (("generation",),)) for g in grid], runs_dir, device, workers, study.estimator, keep_going=keep_going)
    runs = [load_run(f, device=device) for f in folders]
    results = [f.read_evaluation(study.estimator, ("generation",)) for f in folders]
    rows, curves = [], []
    for (dataset, variant, seed, _), run, result in zip(grid, runs, results):
        rows.append({"dataset": dataset, "variant": variant, "seed": seed, "steps": run.config.steps,
                     **{k: read(result) for k, read in COLUMNS.items()},
                     "train_seconds": run.metrics.get("seconds"), "train_device": run.metrics.get("device"),
                     "train_threads": run.metrics.get("threads"), "config_hash": run.config.hash()})
        h = run.history.dropna(subset=["codes_used"])
        h = h[h["step"] % run.config.log_every == 0]  # one row per log interval
        curves.append(pd.DataFrame({"dataset": dataset, "variant": variant, "seed": seed, "step": h["step"],
                                    "codes_used": h["codes_used"], "h_cat": h["h_cat"]}))
    frame = pd.DataFrame(rows)
    meta = {"study": study.name, "profile": study.profile, "estimator": study.estimator, "hardware": _hardware(), "date": time.strftime("%Y-%m-%d"),
            "command": command or "vmivae study", "wall_seconds_this_call": round(time.perf_counter() - started, 1),
            "train_seconds_sum": round(float(frame["train_seconds"].sum()), 1), "runs": len(frame),
            "torch": __import__("torch").__version__, "python": sys.version.split()[0],
            "variants": {v.name: {"preset": v.preset, "overrides": v.overrides, "label": v.label} for v in study.variants},
            "datasets": study.datasets}
    out = Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes(out / "runs.csv", frame.to_csv(index=False, float_format="%.6g").encode())
    write_bytes(out / "training.csv", pd.concat(curves).to_csv(index=False, float_format="%.6g").encode())
    write_json(out / "meta.json", meta)
    return frame


def read_results(results_dir: str | os.PathLike = "results/study") -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """``(runs, training curves, meta)`` of a study written by :func:`run_study`."""
    folder = Path(results_dir)
    missing = [f for f in RESULT_FILES if not (folder / f).is_file()]
    if missing:
        raise ConfigError(f"{folder} lacks {', '.join(missing)}; run the study first: ./run_all.sh --profile study")
    return pd.read_csv(folder / "runs.csv"), pd.read_csv(folder / "training.csv"), json.loads((folder / "meta.json").read_text())


def summarize(frame: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Per dataset and variant: mean, sample sd, n and a t-based 95% interval of each metric over seeds."""
    from scipy import stats

    metrics = metrics or list(COLUMNS)
    rows = []
    for (dataset, variant), group in frame.groupby(["dataset", "variant"], sort=False):
        for m in metrics:
            v = group[m].dropna().to_numpy(float)
            n = len(v)
            half = stats.t.ppf(0.975, n - 1) * v.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
            rows.append({"dataset": dataset, "variant": variant, "metric": m, "mean": v.mean() if n else np.nan,
                         "sd": v.std(ddof=1) if n > 1 else np.nan, "n": n, "ci_low": v.mean() - half, "ci_high": v.mean() + half})
    return pd.DataFrame(rows)


def contrast(frame: pd.DataFrame, variant: str, reference: str, metric: str, dataset: str) -> dict[str, float | bool]:
    """``variant`` minus ``reference`` on one metric and dataset: difference and Welch 95% interval over seeds."""
    from scipy import stats

    pick = lambda name: frame[(frame.dataset == dataset) & (frame.variant == name)][metric].dropna().to_numpy(float)  # noqa: E731
    a, b = pick(variant), pick(reference)
    diff = a.mean() - b.mean()
    if len(a) < 2 or len(b) < 2:
        return {"difference": diff, "ci_low": np.nan, "ci_high": np.nan, "resolved": False}
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        lo = hi = diff
    else:
        with warnings.catch_warnings():  # one constant side (e.g. all 10 codes used) is a valid Welch case, not a precision loss
            warnings.simplefilter("ignore", RuntimeWarning)
            lo, hi = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return {"difference": diff, "ci_low": float(lo), "ci_high": float(hi), "resolved": bool(lo > 0 or hi < 0)}


# The paper's measurable claims: (claim, metric, variant compared with the baseline).
CLAIMS = (
    ("the MI term makes the categorical code informative", "mi_categorical"),
    ("the MI term makes the chosen Gaussian dims z0, z1 informative", "mi_z0"),
    ("the categorical code captures digit identity (clustering improves)", "hungarian"),
)


def verdicts(frame: pd.DataFrame, variants: tuple[str, ...] = ("paper", "true-bound"), reference: str = "baseline") -> pd.DataFrame:
    """One row per (claim, variant, dataset): the difference from ``reference`` over seeds with its Welch 95%
    interval, and a verdict: ``reproduced`` where the interval lies above zero, ``not reproduced`` where it
    does not (an effect this many seeds cannot tell from zero, or one in the other direction)."""
    rows = []
    for claim, metric in CLAIMS:
        for variant in variants:
            for dataset in dict.fromkeys(frame["dataset"]):
                if not ((frame.dataset == dataset) & (frame.variant == variant)).any():
                    continue
                c = contrast(frame, variant, reference, metric, dataset)
                ours = frame[(frame.dataset == dataset) & (frame.variant == variant)][metric]
                rows.append({"claim": claim, "objective": variant, "dataset": dataset, "metric": metric, "ours (mean)": ours.mean(),
                             "minus baseline": c["difference"], "95% CI low": c["ci_low"], "95% CI high": c["ci_high"],
                             "verdict": "reproduced" if c["resolved"] and c["difference"] > 0 else "not reproduced"})
    return pd.DataFrame(rows)


# Unsupervised accuracy of a 10-way code on full MNIST, as published by the authors (not rerun here).
PUBLISHED_MNIST_ACCURACY = (
    ("JointVAE (Dupont 2018)", 0.887, "VAE, continuous + 10-way code, capacity schedule"),
    ("VaDE (Jiang et al. 2017)", 0.945, "VAE with a Gaussian-mixture prior, pretrained"),
    ("InfoGAN (Chen et al. 2016)", 0.95, "GAN with a 10-way MI code (5% error reported)"),
    ("IMSAT (Hu et al. 2017)", 0.984, "classifier, H(Y) - H(Y|X) with augmentation invariance"),
    ("IIC (Ji et al. 2019)", 0.992, "classifier, MI between two augmented views"),
)


def published_comparison(frame: pd.DataFrame, labels: dict[str, str], budget: dict[str, str]) -> pd.DataFrame:
    """Published full-MNIST accuracies next to ours: mean ± sd over seeds per (dataset, variant) in ``labels``."""
    rows = [{"method": m, "dataset": "mnist (full)", "Hungarian accuracy": f"{100 * acc:.1f}%", "what it uses": what}
            for m, acc, what in PUBLISHED_MNIST_ACCURACY]
    for dataset in dict.fromkeys(frame["dataset"]):
        for variant, label in labels.items():
            v = frame[(frame.dataset == dataset) & (frame.variant == variant)]["hungarian"]
            if len(v):
                rows.append({"method": f"{label}, this book", "dataset": dataset, "Hungarian accuracy":
                             f"{100 * v.mean():.1f}% ± {100 * v.std(ddof=1):.1f} ({len(v)} seeds)", "what it uses": budget.get(dataset, "")})
    return pd.DataFrame(rows).set_index("method")


def add_command(sub) -> None:
    p = sub.add_parser("study", help="train and measure a study's grid of runs, and write its results as data",
                       description="Train (or reuse from the run cache) every run of a study, evaluate each on its test split and write "
                                   "runs.csv, training.csv and meta.json. The shipped study took 104 minutes on a 2-core CPU.")
    p.add_argument("--name", default="joint-objectives", help="the study (default: joint-objectives)")
    p.add_argument("--datasets", nargs="+", default=None, help="only these datasets of the study")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="only these seeds")
    p.add_argument("--runs-dir", default="runs", help="the run cache (default: runs)")
    p.add_argument("--results", default="results/study", help="folder for the result files (default: results/study)")
    p.add_argument("--workers", type=int, default=2, help="parallel training processes (default: 2)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    p.add_argument("--keep-going", action="store_true",
                   help="when a run fails, train and evaluate the others before stopping (default: stop at the first failure)")
    p.set_defaults(func=_study_command)


def _study_command(args) -> int:
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    study = load_study(args.name)
    command = "vmivae study " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "vmivae study"
    try:
        frame = run_study(study, args.runs_dir, args.results, datasets=args.datasets, seeds=args.seeds, workers=args.workers,
                          device=args.device, command=command, keep_going=args.keep_going)
    except RunFailed as exc:
        hint = "" if args.keep_going else " (add --keep-going to train the other runs first)"
        raise RunFailed(f"{exc}{hint}") from exc
    table = frame.groupby(["dataset", "variant"], sort=False)[["hungarian", "codes_used", "nmi", "recon_mse"]].agg(["mean", "std"])
    print(table.round(3).to_string())
    print(f"written to {args.results}", file=sys.stderr)
    return 0
