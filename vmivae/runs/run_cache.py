"""Shared, cached runs and their evaluations: train once, reuse while the config matches.

A run lives in ``<runs_dir>/<name>-<profile>-<config hash>``. A finished run whose stored config hash
equals the requested one is reused, under whatever name it was trained; a changed config gets a new
folder (its name carries the hash), so a stale run is never reused. Evaluations are kept beside the run,
named by their settings (``RunFolder.evaluation_file``).

:func:`ensure` is the one scheduler, for the chapters, the study and ``scripts/run_all.py`` alike: given a
plan (each run and the MI path sets to evaluate it on) it trains and evaluates whatever the cache lacks,
in this process or in one pool of worker processes, and returns each run's folder.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..presets import make_config
from .folder import RunFolder


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
            if RunFolder(existing).reusable_for(self.config):
                return existing
        prefix = self.name or self.preset + (f"-s{self.overrides['seed']}" if "seed" in self.overrides else "")
        return Path(runs_dir) / f"{prefix}-{self.profile}-{config_hash}"


Plan = list[tuple["RunSpec | str | os.PathLike", tuple[tuple[str, ...], ...]]]  # a run and the MI path sets to evaluate it on


def _cost(spec: RunSpec) -> float:
    """Relative training cost, to start the longest runs first (decoding prior codes doubles the batch)."""
    config = spec.config
    return config.steps * config.batch_size * (1 + (config.mi_source != "reconstruction"))


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


def _evaluate_one(run_dir: str, settings: str, paths: tuple[str, ...], threads: int) -> str:
    """Worker: evaluate one trained run on one set of MI paths and keep the result beside it."""
    from ..measure.evaluation import evaluate

    if threads:
        torch.set_num_threads(threads)
    result = evaluate(run_dir, settings=settings, paths=paths)
    return str(RunFolder(run_dir).write_evaluation(settings, paths, result))


class _Progress:
    """One line on stderr per finished task and at least every ``every`` seconds: tasks done of total, time
    elapsed and an estimate of what is left (a training counted as three evaluations, as measured on a CPU)."""

    every = 30.0
    TRAINING_WEIGHT = 3.0

    def __init__(self, trainings: int, evaluations: int):
        self.total = {True: trainings, False: evaluations}
        self.finished = {True: 0, False: 0}
        self.started = time.perf_counter()

    def _work(self, counts: dict[bool, int]) -> float:
        return self.TRAINING_WEIGHT * counts[True] + counts[False]

    def done(self, training: bool) -> None:
        self.finished[training] += 1
        self.report()

    def report(self) -> None:
        elapsed = time.perf_counter() - self.started
        done, total = self._work(self.finished), self._work(self.total)
        left = f", about {elapsed * (total - done) / done / 60:.1f} min left" if 0 < done < total else ""
        print(f"vmivae: {self.finished[True]}/{self.total[True]} trained, {self.finished[False]}/{self.total[False]} evaluated, "
              f"{elapsed / 60:.1f} min elapsed{left}", file=sys.stderr, flush=True)


def ensure(plan: Plan, runs_dir: str | os.PathLike = "runs", device: str = "auto", workers: int = 1,
           settings: str = "quick") -> list[RunFolder]:
    """Train and evaluate whatever the cache lacks of ``plan``; returns each item's :class:`RunFolder`, in order.

    Each item of ``plan`` is a run (a :class:`RunSpec`, or the folder of a run trained already) and the MI
    path sets to evaluate it on with the estimator budget ``settings`` (none: train only). The same config
    asked twice (e.g. under two names) is trained once. ``workers > 1`` runs the work in that many processes,
    each with ``cores // workers`` threads: on a small CPU two single-threaded runs get more done than one run
    on two threads. One pool for all of it keeps every worker busy: trainings go first, longest first, and
    each evaluation is its own task, queued when its run is trained, so the pool ends on short tasks and the
    workers finish close together.
    """
    from concurrent.futures import FIRST_COMPLETED, wait

    from ..perf.device import use_all_cores

    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    merged: dict[str, tuple[RunSpec | None, RunFolder, tuple[tuple[str, ...], ...]]] = {}  # by config hash, or folder
    keys = []
    for run, path_sets in plan:
        key = run.config.hash() if isinstance(run, RunSpec) else str(Path(run))
        if key not in merged:
            merged[key] = (run, RunFolder(run.directory(runs_dir)), ()) if isinstance(run, RunSpec) else (None, RunFolder(run), ())
        spec, folder, earlier = merged[key]
        merged[key] = (spec, folder, earlier + tuple(p for p in path_sets if p not in earlier))
        keys.append(key)
    untrained = {key for key, (spec, folder, _) in merged.items() if spec is not None and not folder.reusable_for(spec.config)}
    missing = {key: [p for p in sets if key in untrained or not folder.evaluation_file(settings, p).is_file()]
               for key, (_, folder, sets) in merged.items()}  # training a run again removes its evaluations
    trainings = sorted(untrained, key=lambda key: _cost(merged[key][0]), reverse=True)
    evaluations = [(key, p) for key in merged if key not in untrained for p in missing[key]]
    todo = sum(1 for key in merged if key in untrained or missing[key])
    if todo:
        print(f"vmivae: training {len(trainings)} run(s), evaluating {sum(1 for key in merged if missing[key])} run(s), "
              f"reusing {len(merged) - todo}", file=sys.stderr, flush=True)
    progress = _Progress(len(trainings), len(evaluations) + sum(len(missing[k]) for k in trainings))
    if todo < 2 or workers < 2:  # in this process, on every core
        for key in trainings:
            _train_one(merged[key][0], str(runs_dir), device, 0)
            progress.done(training=True)
        for key, paths in evaluations + [(k, p) for k in trainings for p in missing[k]]:
            _evaluate_one(str(merged[key][1].path), settings, paths, 0)
            progress.done(training=False)
        return [merged[key][1] for key in keys]
    threads = max(1, use_all_cores() // workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        running: dict = {}  # future -> the key of a training, None for an evaluation
        while trainings or evaluations or running:
            while len(running) < workers and (trainings or evaluations):
                if trainings:
                    key = trainings.pop(0)
                    running[pool.submit(_train_one, merged[key][0], str(runs_dir), device, threads)] = key
                else:
                    key, paths = evaluations.pop(0)
                    running[pool.submit(_evaluate_one, str(merged[key][1].path), settings, paths, threads)] = None
            done, _ = wait(running, timeout=progress.every, return_when=FIRST_COMPLETED)
            for future in done:
                key = running.pop(future)
                future.result()  # a worker's error stops the pipeline here, with its message
                if key is not None:  # a training finished: its evaluations can start
                    evaluations += [(key, p) for p in missing[key]]
                progress.done(training=key is not None)
            if not done:
                progress.report()
    return [merged[key][1] for key in keys]
