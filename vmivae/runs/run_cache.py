"""Shared, cached runs and evaluations for notebooks: train once, reuse while the config matches.

A run lives in ``<runs_dir>/<name>-<config hash>``. ``ensure_runs`` loads a finished run whose stored
config hash equals the requested one and trains everything else (in parallel worker processes when
asked), so a later notebook reuses an earlier notebook's training exactly when the config is the same.
A directory whose config no longer matches is never reused: its name carries the hash, so a changed
config simply gets a new directory. Evaluations are cached next to the run, keyed by their settings.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..errors import CheckpointError
from ..presets import make_config
from . import checkpoint as ckpt
from .files import write_json


@dataclass(frozen=True)
class RunSpec:
    """One run to have: a preset, a profile and overrides (e.g. the seed)."""

    preset: str
    profile: str = "quick"
    overrides: dict[str, Any] = field(default_factory=dict)
    name: str | None = None  # directory prefix; default: preset[-s<seed>]

    @property
    def config(self) -> Config:
        return make_config(self.preset, self.profile, self.overrides)

    def directory(self, runs_dir: str | os.PathLike) -> Path:
        """Where this run lives: a finished run with the same config hash under any name, else a new folder."""
        config_hash = self.config.hash()
        for existing in sorted(Path(runs_dir).glob(f"*-{config_hash}")):
            if _finished(existing, self.config):
                return existing
        prefix = self.name or self.preset + (f"-s{self.overrides['seed']}" if "seed" in self.overrides else "")
        return Path(runs_dir) / f"{prefix}-{self.profile}-{config_hash}"


def _cost(spec: RunSpec) -> float:
    """Relative training cost, to start the longest runs first (decoding prior codes doubles the batch)."""
    config = spec.config
    return config.steps * config.batch_size * (1 + (config.mi_source != "reconstruction"))


def _finished(path: Path, config: Config) -> bool:
    """A finished run (metrics.json) with the requested config hash, written in this version's checkpoint format."""
    if not (path / ckpt.METRICS).is_file() or not (path / ckpt.CONFIG).is_file():
        return False
    try:
        stored = json.loads((path / ckpt.CONFIG).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return stored.get("config_hash") == config.hash() and stored.get("checkpoint_format") == ckpt.FORMAT_VERSION


def _train_one(spec: RunSpec, runs_dir: str, device: str, threads: int) -> str:
    """Worker: train one run (a fresh process when run in parallel)."""
    from ..training import fit

    if threads:
        torch.set_num_threads(threads)
    config = spec.config.replace(device=device)
    path = spec.directory(runs_dir)
    fit(config, out=path, overwrite=True, progress=False, meta={"preset": spec.preset, "profile": spec.profile, "overrides": spec.overrides},
        threads=threads or None)
    return str(path)


def ensure_runs(specs: list[RunSpec], runs_dir: str | os.PathLike = "runs", device: str = "auto", workers: int = 1) -> list:
    """Load every requested run, training the ones that are missing or stale; returns Runs in order.

    ``workers > 1`` trains independent runs in that many processes, each with ``cores // workers``
    threads: on a small CPU two single-threaded runs get more done than one run on two threads.
    """
    from ..perf.device import use_all_cores
    from .run import load_run

    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    todo = sorted({s.config.hash(): s for s in specs if not _finished(s.directory(runs_dir), s.config)}.values(),  # each config once,
                  key=_cost, reverse=True)  # longest first
    if todo:
        print(f"vmivae: training {len(todo)} run(s), reusing {len(specs) - len(todo)}", file=sys.stderr, flush=True)
    if len(todo) > 1 and workers > 1:
        threads = max(1, use_all_cores() // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_train_one, todo, [str(runs_dir)] * len(todo), [device] * len(todo), [threads] * len(todo)))
    else:
        for spec in todo:
            _train_one(spec, str(runs_dir), device, 0)
    return [load_run(s.directory(runs_dir), device=device) for s in specs]


def ensure_run(preset: str, profile: str = "quick", runs_dir: str | os.PathLike = "runs", device: str = "auto", **overrides: Any):
    """One cached run (see :func:`ensure_runs`)."""
    return ensure_runs([RunSpec(preset, profile, overrides)], runs_dir, device)[0]


# ---------------------------------------------------------------------------- evaluations


def _evaluate_one(run_dir: str, settings: str, paths: tuple[str, ...], threads: int) -> str:
    from ..measure.evaluation import evaluate

    if threads:
        torch.set_num_threads(threads)
    result = evaluate(run_dir, settings=settings, paths=paths)
    out = Path(run_dir) / _eval_name(settings, paths)
    write_json(out, result)
    return str(out)


def _eval_name(settings: str, paths: tuple[str, ...]) -> str:
    return f"eval-{settings}-{'-'.join(paths)}.json"


def ensure_evaluations(runs: list, settings: str = "quick", paths: tuple[str, ...] = ("generation",), workers: int = 1) -> list[dict[str, Any]]:
    """``evaluate`` every run once; results are cached as JSON inside each run directory."""
    from ..perf.device import use_all_cores

    for run in runs:
        if run.path is None:
            raise CheckpointError("ensure_evaluations needs runs that live in a run directory (trained with out=...)")
    todo = [str(r.path) for r in runs if not (r.path / _eval_name(settings, paths)).is_file()]
    if todo:
        print(f"vmivae: evaluating {len(todo)} run(s)", file=sys.stderr, flush=True)
    if len(todo) > 1 and workers > 1:
        threads = max(1, use_all_cores() // workers)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_evaluate_one, todo, [settings] * len(todo), [paths] * len(todo), [threads] * len(todo)))
    else:
        for path in todo:
            _evaluate_one(path, settings, paths, 0)
    return [json.loads((r.path / _eval_name(settings, paths)).read_text()) for r in runs]


def prefetch(plan: list[tuple[RunSpec, tuple[tuple[str, ...], ...]]], runs_dir: str | os.PathLike = "runs", device: str = "auto",
             workers: int = 1, settings: str = "quick") -> int:
    """Train and evaluate every run of ``plan`` (a run and the MI path sets to evaluate it on) that the
    cache lacks, all in one pool; returns how many runs needed work.

    A pipeline that asks for its runs piece by piece leaves a core idle whenever one piece has a single run
    to train; one pool over all of them keeps every worker busy. Trainings go first, longest first, and each
    evaluation is its own task, queued when its run is trained: the pool ends on short tasks, so the
    workers finish close together. The later requests then find everything in the cache.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    from ..perf.device import use_all_cores

    if any(not path_sets for _, path_sets in plan):
        raise ValueError("prefetch: give every run at least one set of MI paths to evaluate it on, e.g. (('generation',),)")
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    merged: dict[str, tuple[RunSpec, tuple[tuple[str, ...], ...]]] = {}  # by config hash
    for spec, path_sets in plan:  # the same config asked twice (e.g. under two names) is trained once
        earlier = merged.get(key := spec.config.hash(), (spec, ()))
        merged[key] = (earlier[0], earlier[1] + tuple(p for p in path_sets if p not in earlier[1]))
    where = {key: spec.directory(runs_dir) for key, (spec, _) in merged.items()}  # a run trained below lands here too
    untrained = {key for key, (spec, _) in merged.items() if not _finished(where[key], spec.config)}
    missing = {key: [p for p in sets if key in untrained or not (where[key] / _eval_name(settings, p)).is_file()]
               for key, (_, sets) in merged.items()}  # training a run again removes its evaluations
    todo = sum(1 for key in merged if missing[key])
    if todo:
        print(f"vmivae: training and/or evaluating {todo} run(s), reusing {len(merged) - todo}", file=sys.stderr, flush=True)
    trainings = sorted(untrained, key=lambda key: _cost(merged[key][0]), reverse=True)
    evaluations = [(key, p) for key in merged if key not in untrained for p in missing[key]]
    if todo < 2 or workers < 2:  # in this process, on every core
        for key in trainings:
            _train_one(merged[key][0], str(runs_dir), device, 0)
        for key, paths in evaluations + [(k, p) for k in trainings for p in missing[k]]:
            _evaluate_one(str(where[key]), settings, paths, 0)
        return todo
    threads = max(1, use_all_cores() // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        running: dict = {}  # future -> the config hash of a training, None for an evaluation
        while trainings or evaluations or running:
            while len(running) < workers and (trainings or evaluations):
                if trainings:
                    key = trainings.pop(0)
                    running[pool.submit(_train_one, merged[key][0], str(runs_dir), device, threads)] = key
                else:
                    key, paths = evaluations.pop(0)
                    running[pool.submit(_evaluate_one, str(where[key]), settings, paths, threads)] = None
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                key = running.pop(future)
                future.result()  # a worker's error stops the pipeline here, with its message
                if key is not None:  # a training finished: its evaluations can start
                    evaluations += [(key, p) for p in missing[key]]
    return todo


def ensure_measured_runs(specs: list[RunSpec], runs_dir: str | os.PathLike = "runs", device: str = "auto", workers: int = 1,
                         settings: str = "quick", paths: tuple[str, ...] = ("generation",)) -> tuple[list, list[dict[str, Any]]]:
    """:func:`ensure_runs` and :func:`ensure_evaluations` in one pool (:func:`prefetch`): ``(runs, evaluation
    results)``. Evaluations overlap the remaining trainings instead of waiting for the slowest of them."""
    from .run import load_run

    prefetch([(s, (paths,)) for s in specs], runs_dir, device, workers, settings)
    runs = [load_run(s.directory(runs_dir), device=device) for s in specs]
    return runs, [json.loads((r.path / _eval_name(settings, paths)).read_text()) for r in runs]
