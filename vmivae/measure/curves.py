"""Learning curves: how each objective's measurements move with the training budget.

A curve study is a study (``vmivae.measure.study``) with ``stages``: every (variant, dataset, seed) is one run
trained to the first stage, measured on its test split, resumed to the next stage, measured again, and so on.
Every schedule (temperature, capacities) is a function of the step, not of the run's length, and a resume is
bit-identical to an uninterrupted run, so the run measured at stage ``b`` is exactly the run a budget of ``b``
steps under the same profile trains: one chain of runs costs its longest stage, not the sum of its stages.

Each measured stage is written at once to a file of its own in ``<results>/stages/``, named by variant,
dataset, seed and step, and is never recomputed; :func:`run_curves` then writes ``curves.csv`` (one row per run and stage) and ``meta.json``.
A study stopped at any point continues where it stopped, and the stage files can be committed as they come.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..errors import ConfigError
from ..runs.files import write_bytes, write_json
from ..runs.folder import RunFolder
from ..runs.run_cache import RunSpec

CURVE_FILES = ("curves.csv", "meta.json")


def stage_file(results_dir: str | os.PathLike, dataset: str, variant: str, seed: int, step: int) -> Path:
    return Path(results_dir) / "stages" / f"{variant}-{dataset}-s{seed}-{step}.json"


def final_file(results_dir: str | os.PathLike, dataset: str, variant: str, seed: int) -> Path:
    return Path(results_dir) / "final" / f"{variant}-{dataset}-s{seed}.npz"


def chain_folder(spec: RunSpec, last_stage: int, runs_dir: str | os.PathLike) -> Path:
    """The folder of one chain's run: named by the run and the hash of its config at the chain's last stage."""
    return Path(runs_dir) / f"{spec.name}-{spec.config.replace(steps=last_stage).hash()}"


@torch.no_grad()
def write_final(run, test, out: Path, clusters: np.ndarray, per_category: int = 8) -> None:
    """What a figure of the longest stage needs, kept as data: the code of every test image (``clusters``, as
    measured) with its label (a confusion table) and the category grid of ``VAE.category_grid`` (row k decodes
    category k with the same Gaussian codes in every row), as 8-bit images."""
    run.vae.eval()
    images = run.vae.category_grid(per_category).float().cpu()
    grid = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, clusters=np.asarray(clusters).astype(np.uint8), labels=test.labels.numpy().astype(np.uint8),
                        grid=grid, per_category=per_category)
    write_bytes(out, buffer.getvalue())


def read_final(results_dir: str | os.PathLike, dataset: str, variant: str, seed: int) -> dict[str, Any]:
    """The longest stage's record of one run: ``clusters`` and ``labels`` of the test split, and ``grid``, the
    category grid as images in [-1, 1] (``[K * n, C, H, W]``, ``n = per_category``), for :mod:`vmivae.plots`."""
    path = final_file(results_dir, dataset, variant, seed)
    if not path.is_file():
        raise ConfigError(f"{path} is missing; run the curve study first: ./run_all.sh --profile study")
    with np.load(path) as f:
        return {"clusters": f["clusters"].astype(int), "labels": f["labels"].astype(int), "per_category": int(f["per_category"]),
                "grid": torch.from_numpy(f["grid"].astype(np.float32) / 127.5 - 1.0)}


def code_measures(run, test) -> tuple[dict[str, Any], np.ndarray]:
    """The code's clustering of the digits on the test split, the codes in use, reconstruction and the KL of each
    part (one pass of the encoder); with the code of every test image."""
    from . import metrics
    from .evaluation import encode_dataset

    codes = encode_dataset(run, test)
    clusters, labels = codes["cluster"], test.labels.numpy()
    kl = codes["kl"].mean(0)
    accuracy = metrics.cluster_accuracy(clusters, labels)
    return {"hungarian": accuracy["hungarian"], "majority": accuracy["majority"], "nmi": metrics.nmi(clusters, labels),
            "codes_used": metrics.codes_used(clusters, run.vae.latent.categorical), "recon_mse": float(codes["mse"].mean()),
            "kl_cont": float(kl.sum()), "active_dims": int((kl > 0.01).sum()), "kl_cat": float(codes["kl_cat"].mean())}, clusters


def measure_stage(run, test, settings: str) -> tuple[dict[str, Any], np.ndarray]:
    """What a learning curve tracks: :func:`code_measures` and the MI bound of every component on the generation
    path (exact H(c)); with the code of every test image, for the last stage's record."""
    from .mi import estimate_mi

    measured, clusters = code_measures(run, test)
    mi = estimate_mi(run, path="generation", eval_data=test, settings=settings).components
    return {**measured, "mi_categorical": mi["categorical"].nats, "mi_z0": mi["z0"].nats, "mi_z1": mi["z1"].nats}, clusters


def run_chain(spec: RunSpec, stages: tuple[int, ...], runs_dir: str, results_dir: str, keys: tuple[str, str, int],
              settings: str, device: str = "auto", threads: int = 1) -> list[dict[str, Any]]:
    """Train ``spec`` stage by stage (fit to the first, resume to each next), measuring each stage once."""
    from ..datasets import load
    from ..training import fit, resume

    if threads:
        torch.set_num_threads(threads)
    dataset, variant, seed = keys
    final = spec.config.replace(steps=stages[-1], device=device)  # the device is not part of the config's hash
    folder = RunFolder(chain_folder(spec, stages[-1], runs_dir))
    test = None
    rows = []
    for step in stages:
        out = stage_file(results_dir, dataset, variant, seed, step)
        if out.is_file():
            rows.append(json.loads(out.read_text()))
            continue
        started = time.perf_counter()
        at = _step_of(folder)
        if at is None:
            run = fit(final.replace(steps=step), out=folder.path, overwrite=True, progress=False, threads=threads or None,
                      meta={"preset": spec.preset, "profile": spec.profile, "overrides": spec.overrides})
        elif at > step:
            raise ConfigError(f"{folder.path} is already at step {at}, past the stage {step} it lacks; "
                              f"remove the folder to retrain this chain from the start")
        else:
            run = resume(folder.path, steps=step, progress=False, threads=threads or None)
        test = test if test is not None else load(final.dataset, "test", final.data_root)
        measured, clusters = measure_stage(run, test, settings)
        row = {"dataset": dataset, "variant": variant, "seed": seed, "step": step, **measured,
               "train_seconds": run.metrics.get("seconds"), "stage_seconds": round(time.perf_counter() - started, 1),
               "threads": threads, "config_hash": final.hash(), "finished": time.strftime("%Y-%m-%d %H:%M")}
        out.parent.mkdir(parents=True, exist_ok=True)
        if step == stages[-1]:
            write_final(run, test, final_file(results_dir, dataset, variant, seed), clusters)
        write_json(out, row)  # last: a stage with its file is complete
        rows.append(row)
        print(f"curve {variant} {dataset} s{seed} at {step} steps: Hungarian {row['hungarian']:.3f}, {row['codes_used']} codes, "
              f"MSE {row['recon_mse']:.4f}, MI(code) {row['mi_categorical']:.3f} nats ({row['stage_seconds']:.0f} s)", file=sys.stderr, flush=True)
    record = final_file(results_dir, dataset, variant, seed)
    if not record.is_file():  # a chain measured before the record existed: its run is at the last stage
        from ..runs.run import load_run

        if _step_of(folder) != stages[-1]:
            raise ConfigError(f"{record} is missing and {folder.path} holds no run at step {stages[-1]} to make it from; "
                              "remove this chain's stage files "
                              f"({stage_file(results_dir, dataset, variant, seed, stages[-1]).parent}/{variant}-{dataset}-s{seed}-*.json) "
                              "to retrain it")
        from .evaluation import encode_dataset

        run, test = load_run(folder.path, device=device), load(final.dataset, "test", final.data_root)
        write_final(run, test, record, encode_dataset(run, test)["cluster"])
    return rows


def _step_of(folder: RunFolder) -> int | None:
    """The step of the run's last checkpoint, or None where nothing has been trained yet."""
    if not folder.checkpoint.is_file():
        return None
    return int(folder.load_checkpoint()["step"])


def run_curves(study, runs_dir: str | os.PathLike = "runs", results_dir: str | os.PathLike = "results/curves", *,
               datasets: list[str] | None = None, seeds: list[int] | None = None, workers: int = 2, device: str = "auto",
               command: str | None = None) -> pd.DataFrame:
    """Every chain of a curve study (one process per chain, ``workers`` at a time), then ``curves.csv`` and ``meta.json``."""
    stages = tuple(sorted(study.stages))
    started = time.perf_counter()
    grid = study.specs(datasets, seeds)
    jobs = [(spec, stages, str(runs_dir), str(results_dir), (dataset, variant, seed), study.estimator, device) for dataset, variant, seed, spec in grid]
    if workers == 1:
        chains = [run_chain(*job) for job in jobs]
    else:
        with ProcessPoolExecutor(workers) as pool:
            chains = list(pool.map(run_chain, *zip(*jobs)))
    frame = pd.DataFrame([row for chain in chains for row in chain])
    out = Path(results_dir)
    write_bytes(out / "curves.csv", frame.to_csv(index=False, float_format="%.6g").encode())
    write_json(out / "meta.json", study.meta(command or f"vmivae study --name {study.name}", started, stages=list(stages), runs=len(grid)))
    return frame


def curves_command(study, args, command: str) -> int:
    """``vmivae study --name <curve study>``: its results go to ``results/<name>`` unless ``--results`` says otherwise."""
    results = args.results if args.results != "results/study" else f"results/{study.name}"
    frame = run_curves(study, args.runs_dir, results, datasets=args.datasets, seeds=args.seeds, workers=args.workers,
                       device=args.device, command=command)
    print(frame.groupby(["variant", "step"], sort=False)[["hungarian", "codes_used", "recon_mse"]].mean().round(3).to_string())
    print(f"written to {results}", file=sys.stderr)
    return 0


def read_curves(results_dir: str | os.PathLike = "results/curves") -> tuple[pd.DataFrame, dict[str, Any]]:
    """``(curves, meta)`` of a curve study written by :func:`run_curves`."""
    folder = Path(results_dir)
    missing = [f for f in CURVE_FILES if not (folder / f).is_file()]
    if missing:
        raise ConfigError(f"{folder} lacks {', '.join(missing)}; run the curve study first: ./run_all.sh --profile study")
    return pd.read_csv(folder / "curves.csv"), json.loads((folder / "meta.json").read_text())
