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
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ..errors import ConfigError, unknown_name
from ..perf.device import hardware_name
from ..runs.files import write_bytes, write_json
from ..runs.run import load_run
from ..runs.run_cache import RunFailed, RunSpec, ensure
from . import stats

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
    "rank_z0": lambda r: _rank(r["mi"], "z0"),
    "rank_z1": lambda r: _rank(r["mi"], "z1"),
    "mi_gaussian_median": lambda r: float(np.median([v["nats"] for k, v in r["mi"].items() if k.startswith("z")])),
    "linear_probe": lambda r: r["linear_probe_accuracy"],
    "recon_mse": lambda r: r["recon_mse"],
}


def _rank(mi: dict, dim: str) -> int:
    """Rank of ``dim``'s MI among the Gaussian dims (1: the most informative)."""
    nats = {k: v["nats"] for k, v in mi.items() if k.startswith("z")}
    return 1 + sum(v > nats[dim] for v in nats.values())


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
    stages: tuple[int, ...] = ()  # a learning-curve study: each run measured at these steps (vmivae.measure.curves)

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

    def meta(self, command: str, started: float, **extra: Any) -> dict[str, Any]:
        """A result folder's ``meta.json``: the study, the machine and the call that wrote it (``started``:
        its ``time.perf_counter()``), and ``extra``."""
        return {"study": self.name, "profile": self.profile, "estimator": self.estimator, "hardware": hardware_name(),
                "date": time.strftime("%Y-%m-%d"), "command": command, "wall_seconds_this_call": round(time.perf_counter() - started, 1),
                **extra, "torch": __import__("torch").__version__, "python": sys.version.split()[0],
                "variants": {v.name: {"preset": v.preset, "overrides": v.overrides, "label": v.label} for v in self.variants},
                "datasets": self.datasets}


def list_studies() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("vmivae.measure").joinpath("studies").iterdir() if p.name.endswith(".yaml"))


def load_study(name: str = "joint-objectives") -> Study:
    """A study shipped with the package, checked: every run of its grid must be a valid config."""
    if name not in list_studies():
        raise ConfigError(unknown_name("study", name, list_studies()))
    data = yaml.safe_load(resources.files("vmivae.measure").joinpath("studies", f"{name}.yaml").read_text())
    variants = tuple(Variant(k, v["preset"], dict(v.get("overrides") or {}), v.get("label", k)) for k, v in data["variants"].items())
    study = Study(name, str(data.get("description", "")).strip(), data["profile"], tuple(data["seeds"]),
                  {k: dict(v or {}) for k, v in data["datasets"].items()}, variants, data.get("estimator", "quick"),
                  tuple(int(s) for s in data.get("stages") or ()))
    for *_, spec in study.specs():
        spec.config  # noqa: B018 (validates the config; raises ConfigError with one sentence)
    return study



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
    meta = study.meta(command or "vmivae study", started, train_seconds_sum=round(float(frame["train_seconds"].sum()), 1), runs=len(frame))
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


# The range of each per-run metric (None: open on that side). An interval of a mean over seeds stays inside it, and a
# paired difference inside [-(high - low), high - low].
K_CODES = 10
RANGES = {"hungarian": (0.0, 1.0), "majority": (0.0, 1.0), "nmi": (0.0, 1.0), "codes_used": (0.0, float(K_CODES)),
          "mi_categorical": (None, None), "mi_z0": (None, None), "mi_z1": (None, None), "rank_z0": (1.0, None), "rank_z1": (1.0, None),
          "mi_gaussian_median": (None, None), "linear_probe": (0.0, 1.0), "recon_mse": (0.0, None)}


def _span(metric: str) -> float | None:
    low, high = RANGES.get(metric, (None, None))
    return None if low is None or high is None else high - low


def summarize(frame: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Per dataset and variant: mean, sample sd, n and a 95% percentile bootstrap interval of the mean of each metric
    over seeds (:func:`vmivae.measure.stats.mean_interval`: inside the values' own range, so inside the metric's).
    The ``interval`` column says what the interval is."""
    metrics = metrics or [m for m in COLUMNS if m in frame]  # results written before a column existed lack it
    rows = []
    for (dataset, variant), group in frame.groupby(["dataset", "variant"], sort=False):
        for m in metrics:
            v = group[m].dropna().to_numpy(float)
            ci = stats.mean_interval(v, *RANGES.get(m, (None, None))) if len(v) else None
            rows.append({"dataset": dataset, "variant": variant, "metric": m, "mean": ci.estimate if ci else np.nan,
                         "sd": v.std(ddof=1) if len(v) > 1 else np.nan, "n": len(v), "ci_low": ci.low if ci else np.nan,
                         "ci_high": ci.high if ci else np.nan, "interval": ci.label if ci else "no runs"})
    return pd.DataFrame(rows)


def _by_seed(frame: pd.DataFrame, dataset: str, variant: str, metric: str) -> dict[int, float]:
    pick = frame[(frame.dataset == dataset) & (frame.variant == variant)].dropna(subset=[metric])
    return dict(zip(pick["seed"].astype(int), pick[metric].astype(float)))


def contrast(frame: pd.DataFrame, variant: str, reference: str, metric: str, dataset: str) -> dict[str, Any]:
    """``variant`` minus ``reference`` on one metric and dataset, paired by seed (every variant of a study trains
    with the same seeds, so what a seed does to both runs cancels): the mean paired difference, its 95%
    percentile bootstrap interval (inside the metric's span), the exact two-sided sign-flip p-value, and
    ``same_sign``: the difference has the same sign in every seed, which is when that interval excludes 0."""
    a, b = _by_seed(frame, dataset, variant, metric), _by_seed(frame, dataset, reference, metric)
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        diff = float(np.mean([a[s] - b[s] for s in shared])) if shared else np.nan
        return {"difference": diff, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan, "seeds": len(shared), "same_sign": False,
                "interval": "fewer than 2 shared seeds: no interval"}
    c = stats.paired_difference(a, b, _span(metric), name=f"{variant} - {reference}")  # paired by seed
    d = np.array([a[s] - b[s] for s in shared])
    return {"difference": c.interval.estimate, "ci_low": c.interval.low, "ci_high": c.interval.high, "p": c.p_value, "seeds": len(shared),
            "same_sign": bool((d > 0).all() or (d < 0).all()), "interval": c.interval.label}


# The paper's measurable claims: (claim, metric, variant compared with the baseline).
CLAIMS = (
    ("the MI term makes the categorical code informative", "mi_categorical"),
    ("the MI term makes the chosen Gaussian dims z0, z1 informative", "mi_z0"),
    ("the categorical code captures digit identity (clustering improves)", "hungarian"),
)
ALPHA = 0.05  # family-wise error rate of the verdicts (Holm)


def verdicts(frame: pd.DataFrame, variants: tuple[str, ...] = ("paper", "true-bound"), reference: str = "baseline") -> pd.DataFrame:
    """One row per (claim, variant, dataset): the paired difference from ``reference`` over the shared seeds, its
    95% bootstrap interval and exact sign-flip p-value, Holm-adjusted over the whole table (one family at
    ``ALPHA``), the budget it was measured at, and a verdict:

    * ``reproduced``: Holm rejects "no difference" and the difference is positive;
    * ``higher in every seed``: positive in every seed, but the family's test cannot reject: a description, not a test
      (with n seeds the smallest sign-flip p is ``2 / 2^n``: 0.25 for 3 seeds, so no verdict can pass at 3 seeds);
    * ``not reproduced``: a difference of mixed sign across seeds, or negative.
    """
    rows = []
    for claim, metric in CLAIMS:
        for variant in variants:
            for dataset in dict.fromkeys(frame["dataset"]):
                if not ((frame.dataset == dataset) & (frame.variant == variant)).any():
                    continue
                c = contrast(frame, variant, reference, metric, dataset)
                ours = frame[(frame.dataset == dataset) & (frame.variant == variant)]
                steps = sorted(set(ours["steps"].astype(int))) if "steps" in ours else []
                rows.append({"claim": claim, "objective": variant, "dataset": dataset, "metric": metric, "ours (mean)": ours[metric].mean(),
                             "minus baseline": c["difference"], "95% CI low": c["ci_low"], "95% CI high": c["ci_high"], "p": c["p"],
                             "seeds": c["seeds"], "budget": ", ".join(f"{s} steps" for s in steps), "same_sign": c["same_sign"]})
    table = pd.DataFrame(rows)
    finite = table["p"].notna()
    table["p (Holm)"] = np.nan
    table["rejected"] = False
    if finite.any():
        adjusted = stats.holm(table.loc[finite, "p"].tolist(), ALPHA)
        table.loc[finite, "p (Holm)"] = [q for q, _ in adjusted]
        table.loc[finite, "rejected"] = [r for _, r in adjusted]
    positive = table["minus baseline"] > 0
    table["verdict"] = np.where(table["rejected"] & positive, "reproduced",
                                np.where(table["same_sign"] & positive, "higher in every seed", "not reproduced"))
    return table.drop(columns=["same_sign", "rejected"])


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
    if study.stages:  # a learning-curve study
        from .curves import curves_command

        return curves_command(study, args, command)
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
