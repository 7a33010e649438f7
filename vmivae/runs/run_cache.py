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
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..errors import TrainingInterrupted, VMIVAEError
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


class RunFailed(VMIVAEError):
    """Some of a plan's trainings or evaluations failed; the work that finished is cached and reused next time."""


def _reason(exc: BaseException) -> str:
    """One line for what went wrong in a task: a user error's sentence, a bug's type and message, a dead worker."""
    if isinstance(exc, BrokenProcessPool):
        return "its worker process ended abruptly (killed by a signal, or out of memory)"
    text = str(exc) if isinstance(exc, VMIVAEError) else f"{type(exc).__name__}: {exc}"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


class _Failures:
    """The tasks that failed: each said at once on stderr, in one line; all of them raised at the end."""

    def __init__(self, keep_going: bool, runs_dir: Path):
        self.keep_going, self.runs_dir, self.items = keep_going, runs_dir, []

    def add(self, what: str, exc: BaseException) -> None:
        self.items.append((what, exc))
        then = "going on with the other runs" if self.keep_going else "stopping the other work"
        print(f"vmivae: {what} failed: {_reason(exc)}; {then}", file=sys.stderr, flush=True)

    @property
    def stop(self) -> bool:
        return bool(self.items) and not self.keep_going

    def raise_any(self, total: int, skipped: int) -> None:
        """Raise for the failures, if any: a bug (not a VMIVAEError) as itself, to keep its traceback; else one sentence."""
        if not self.items:
            return
        for _, exc in self.items:
            if not isinstance(exc, (VMIVAEError, BrokenProcessPool)):
                raise exc
        what, exc = self.items[0]
        left = f", {skipped} left undone" if skipped else ""
        raise RunFailed(f"{len(self.items)} of {total} task(s) failed{left} (first: {what}: {_reason(exc)}); the runs and evaluations "
                        f"that finished are kept in {self.runs_dir} and reused: fix the cause and run the same command again")


def _name(folder: RunFolder, paths: tuple[str, ...] | None) -> str:
    return f"training {folder.path.name}" if paths is None else f"evaluating {folder.path.name} on {'+'.join(paths)}"


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Stop the tasks in progress now: SIGTERM makes a training write its checkpoint and stop after its step."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle on the workers before Python 3.14
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(30)
        if process.is_alive():
            process.kill()


def ensure(plan: Plan, runs_dir: str | os.PathLike = "runs", device: str = "auto", workers: int = 1,
           settings: str = "quick", keep_going: bool = False) -> list[RunFolder]:
    """Train and evaluate whatever the cache lacks of ``plan``; returns each item's :class:`RunFolder`, in order.

    Each item of ``plan`` is a run (a :class:`RunSpec`, or the folder of a run trained already) and the MI
    path sets to evaluate it on with the estimator budget ``settings`` (none: train only). The same config
    asked twice (e.g. under two names) is trained once. ``workers > 1`` runs the work in that many processes,
    each with ``cores // workers`` threads: on a small CPU two single-threaded runs get more done than one run
    on two threads. One pool for all of it keeps every worker busy: trainings go first, longest first, and
    each evaluation is its own task, queued when its run is trained, so the pool ends on short tasks and the
    workers finish close together.

    A task that fails (a bad value, a non-finite loss, a killed worker) is said on stderr at once, in one
    line. Then nothing new starts, the tasks in progress are stopped, and :class:`RunFailed` is raised (a
    bug's own exception, to keep its traceback); what finished stays cached. ``keep_going=True`` instead
    does all the work the failures leave possible and raises at the end.
    """
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
    # equal costs in the plan's order, so that the order of work does not depend on set iteration
    trainings = sorted((k for k in merged if k in untrained), key=lambda key: _cost(merged[key][0]), reverse=True)
    evaluations = [(key, p) for key in merged if key not in untrained for p in missing[key]]
    todo = sum(1 for key in merged if key in untrained or missing[key])
    if todo:
        print(f"vmivae: training {len(trainings)} run(s), evaluating {sum(1 for key in merged if missing[key])} run(s), "
              f"reusing {len(merged) - todo}", file=sys.stderr, flush=True)
    total = len(trainings) + len(evaluations) + sum(len(missing[k]) for k in trainings)
    progress = _Progress(len(trainings), total - len(trainings))
    failures = _Failures(keep_going, runs_dir)
    if todo < 2 or workers < 2:  # in this process, on every core
        for key in trainings:
            try:
                _train_one(merged[key][0], str(runs_dir), device, 0)
            except TrainingInterrupted:
                raise  # Ctrl-C or SIGTERM for this process: not a failure of the run
            except Exception as exc:
                failures.add(_name(merged[key][1], None), exc)
                if failures.stop:
                    break
                continue
            evaluations += [(key, p) for p in missing[key]]
            progress.done(training=True)
        for key, paths in evaluations if not failures.stop else ():
            try:
                _evaluate_one(str(merged[key][1].path), settings, paths, 0)
            except TrainingInterrupted:
                raise
            except Exception as exc:
                failures.add(_name(merged[key][1], paths), exc)
                if failures.stop:
                    break
                continue
            progress.done(training=False)
        failures.raise_any(total, total - sum(progress.finished.values()) - len(failures.items))
        return [merged[key][1] for key in keys]
    threads = max(1, use_all_cores() // workers)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    running: dict = {}  # future -> (key, None for a training or the MI paths of an evaluation)
    try:
        while (trainings or evaluations or running) and not failures.stop:
            while len(running) < workers and (trainings or evaluations):
                if trainings:
                    key = trainings.pop(0)
                    running[pool.submit(_train_one, merged[key][0], str(runs_dir), device, threads)] = (key, None)
                else:
                    key, paths = evaluations.pop(0)
                    running[pool.submit(_evaluate_one, str(merged[key][1].path), settings, paths, threads)] = (key, paths)
            done, _ = wait(running, timeout=progress.every, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                key, paths = running.pop(future)
                if future.exception() is not None:
                    failures.add(_name(merged[key][1], paths), future.exception())
                    broken |= isinstance(future.exception(), BrokenProcessPool)
                    continue
                if paths is None:  # a training finished: its evaluations can start
                    evaluations += [(key, p) for p in missing[key]]
                progress.done(training=paths is None)
            if broken and not failures.stop:  # a dead worker breaks the pool: a new one for the work that is left
                pool.shutdown(wait=True)
                pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            if not done:
                progress.report()
    finally:
        if running:  # stopped early (a failure, or Ctrl-C): end the tasks in progress instead of waiting for them
            _stop_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)
    failures.raise_any(total, total - sum(progress.finished.values()) - len(failures.items))
    return [merged[key][1] for key in keys]
