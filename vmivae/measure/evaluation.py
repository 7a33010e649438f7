"""``evaluate``: every measurement of a trained run in one JSON document (and ``vmivae evaluate``).

Measured on the test split with the model in eval mode (posterior means, argmax category), unlike
the reference code, which scored clustering on the training set with BatchNorm in training mode.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets import ImageData, load
from ..latents import categorical_kl_uniform, gaussian_kl_per_dim
from ..runs.run import Run
from . import checks, metrics
from .mi import PATHS, SETTINGS, estimate_mi


@torch.no_grad()
def encode_dataset(run: Run, data: ImageData, chunk: int = 1000) -> dict[str, np.ndarray]:
    """Evaluation codes and per-image quantities: ``mu [N, D]``, ``cluster [N]`` (or None),
    ``kl [N, D]``, ``kl_cat [N]``, ``mse [N]`` (deterministic reconstruction)."""
    vae = run.vae.eval()
    out: dict[str, list] = {"mu": [], "cluster": [], "kl": [], "kl_cat": [], "mse": []}
    for start in range(0, len(data), chunk):
        x = data.images[start : start + chunk].to(run.device)
        mu, logvar, logits = vae.encode(x)
        c = None if logits is None else torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1]).float()
        x_hat = vae.decode(vae.latent.join(mu, c))
        out["mu"].append(mu)
        out["kl"].append(gaussian_kl_per_dim(mu, logvar))
        out["mse"].append((x_hat - x).pow(2).flatten(1).mean(1))
        if logits is not None:
            out["cluster"].append(logits.argmax(1))
            out["kl_cat"].append(categorical_kl_uniform(logits))
    return {k: (torch.cat(v).cpu().numpy() if v else None) for k, v in out.items()}


def evaluate(run: Run | str | os.PathLike, train: ImageData | None = None, test: ImageData | None = None, *,
             settings: str = "quick", paths: tuple[str, ...] = ("generation",)) -> dict[str, Any]:
    """Measure a run: MI per component with 95% intervals, clustering, probes, reconstruction, KL, MIG.

    ``train``/``test`` default to the run's dataset splits (a run on custom data must pass them).
    ``settings`` names the MI estimator budget (smoke | quick | full). ``paths`` chooses the MI paths;
    the first fills ``mi``, a second one fills ``mi_<path>``. Bad arguments raise a VMIVAEError before any work.
    """
    started = time.perf_counter()
    run, train, test = checks.evaluate_args(run, train, test, settings, paths, SETTINGS, PATHS)  # before any work; a run folder is loaded
    if train is None or test is None:
        root = run.config.data_root
        train = train or load(run.config.dataset, "train", root)
        test = test or load(run.config.dataset, "test", root)
    codes_train, codes_test = encode_dataset(run, train), encode_dataset(run, test)
    result: dict[str, Any] = {"run": str(run.path) if run.path else None, "dataset": run.config.dataset, "n_test": len(test)}
    for i, path in enumerate(paths):
        estimate = estimate_mi(run, path=path, data=train, eval_data=test, settings=settings)
        key = "mi" if i == 0 else f"mi_{path}"
        result[key] = estimate.to_dict()["components"]
        if i == 0:
            result.update(q_steps=estimate.q_steps, n_eval=estimate.n_eval, q_converged=estimate.converged, q_warm_start=estimate.warm_start,
                          mi_seconds=estimate.seconds, estimator={"settings": settings, **estimate.settings,
                                                                  "ci": "percentile bootstrap over evaluation samples"})
    result["recon_mse"] = float(codes_test["mse"].mean())
    result["kl_per_dim"] = codes_test["kl"].mean(0).tolist()
    result["kl_categorical"] = float(codes_test["kl_cat"].mean()) if codes_test["kl_cat"] is not None else None
    labels_train = None if train.labels is None else train.labels.numpy()
    labels_test = None if test.labels is None else test.labels.numpy()
    clusters = codes_test["cluster"]
    has_clusters = clusters is not None and labels_test is not None
    result["codes_used"] = metrics.codes_used(clusters, run.vae.latent.categorical) if clusters is not None else None
    result["cluster_accuracy"] = metrics.cluster_accuracy(clusters, labels_test) if has_clusters else None
    result["nmi"] = metrics.nmi(clusters, labels_test) if has_clusters else None
    result["ari"] = metrics.ari(clusters, labels_test) if has_clusters else None
    result["linear_probe_accuracy"] = (metrics.linear_probe_accuracy(codes_train["mu"], labels_train, codes_test["mu"], labels_test)
                                       if labels_train is not None and labels_test is not None else None)
    if test.factors is not None and test.factor_names:
        features = codes_test["mu"] if clusters is None else np.column_stack([codes_test["mu"], clusters])
        m = metrics.mig(features, test.factors.numpy())
        result["mig"] = m["mig"]
        result["mig_per_factor"] = dict(zip(test.factor_names, m["per_factor"]))
        names = [f"z{j}" for j in range(run.vae.latent.continuous)] + (["categorical"] if clusters is not None else [])
        result["factor_mi"] = {"latents": names, "factors": list(test.factor_names), "nats": m["matrix"], "factor_entropy": m["entropy"]}
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


# ---------------------------------------------------------------------------- reporting


def format_table(result: dict[str, Any]) -> str:
    """A readable plain-text summary of an ``evaluate`` result."""
    warm = ", warm-started from the run's Q" if result.get("q_warm_start") else ""
    lines = [f"MI lower bounds, {next(iter(result['mi'].values()))['path']} path ({result['q_steps']} Q steps{warm}, {result['n_eval']} samples):",
             f"  {'component':<12}{'nats':>8}  {'95% CI':>17}  {'H(c)':>7}  {'fraction':>8}"]
    for name, c in result["mi"].items():
        lines.append(f"  {name:<12}{c['nats']:>8.3f}  [{c['ci95'][0]:>7.3f}, {c['ci95'][1]:>7.3f}]  {c['entropy']:>7.3f}  {c['fraction']:>8.1%}")
    if any(name != "categorical" for name in result["mi"]):
        lines += ["  note: for a Gaussian dim H(c) is a differential entropy, not a ceiling; its bound is",
                  "  -log(spread left after reading it back), so a fraction above 100% is expected"]

    def fmt(value: Any) -> str:
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"

    acc = result["cluster_accuracy"] or {}
    lines += [
        f"cluster accuracy (Hungarian) {fmt(acc.get('hungarian'))}   (majority) {fmt(acc.get('majority'))}   "
        f"codes used (>= 1% of test images) {result['codes_used'] if result.get('codes_used') is not None else 'n/a'}",
        f"NMI {fmt(result['nmi'])}   ARI {fmt(result['ari'])}   linear probe accuracy {fmt(result['linear_probe_accuracy'])}",
        f"reconstruction MSE {fmt(result['recon_mse'])}   KL per Gaussian dim (sum {sum(result['kl_per_dim']):.3f}), "
        f"active dims (KL > 0.01): {sum(k > 0.01 for k in result['kl_per_dim'])}/{len(result['kl_per_dim'])}",
    ]
    if "mig" in result:
        lines.append(f"MIG {result['mig']:.4f}   per factor: " + ", ".join(f"{k} {v:.3f}" for k, v in result["mig_per_factor"].items()))
    lines.append(f"took {result['seconds']:.1f} s")
    return "\n".join(lines)


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="measure a trained run (MI per component, clustering, probes, MIG)",
                       description="Train a fresh Q on a frozen run to lower-bound the MI of every latent component, and compute "
                                   "representation metrics on the test split. Writes JSON and prints a table.")
    p.add_argument("run_dir", help="run directory written by vmivae train")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--profile", default="quick", choices=sorted(SETTINGS), help="MI estimator budget: smoke | quick | full (default: quick)")
    p.add_argument("--path", default="generation", choices=["generation", "reconstruction", "both"], help="MI path (default: generation)")
    p.set_defaults(func=_evaluate_command)


def _evaluate_command(args: argparse.Namespace) -> int:
    import signal

    from ..errors import CheckpointError, Interrupted, OutputError
    from ..runs.files import os_reason, write_json
    from ..runs.folder import LOCK, RUN_FILES, RunFolder
    from ..runs.rundir import check_output_file
    from ..runs.signals import interrupt_as

    out = check_output_file(Path(args.out), "--out", overwrite=args.overwrite)
    folder = RunFolder.existing(args.run_dir)
    run_dir = folder.path
    own = [name for name in (*RUN_FILES, LOCK) if out.resolve() == (run_dir / name).resolve()]
    if own or (out.resolve().parent == run_dir.resolve() and out.name.startswith("eval-")):
        what = f"the run's own {own[0]}" if own else "one of the run's cached evaluations"
        raise OutputError(f"--out {out} is {what}, which the evaluation would replace; choose another file, "
                          f"e.g. {run_dir / 'eval.json'}")

    def stopped(signum: int) -> Interrupted:
        return Interrupted(signum, f"interrupted by {signal.Signals(signum).name} while evaluating {run_dir}; nothing was written to {out} "
                                   "and the run is unchanged: run the same command again to evaluate it")

    with interrupt_as(stopped) as state, folder.lock("vmivae evaluate", optional=True):  # nobody trains or resumes it meanwhile
        _, config = folder.read_config()
        if config.dataset == "custom":
            raise CheckpointError(f"the run in {run_dir} was trained on your own images, which vmivae evaluate cannot load; evaluate it "
                                  f"from Python: vmivae.evaluate(vmivae.load_run({str(run_dir)!r}), train=..., test=...) "
                                  "with your train and test images (any form fit() accepts, through vmivae.datasets.as_image_data)")
        paths = ("generation", "reconstruction") if args.path == "both" else (args.path,)
        result = evaluate(run_dir, settings=args.profile, paths=paths)
        state["defer"] = True  # the file is written whole (atomically) or not at all; a signal now is answered after it
        try:
            write_json(out, result)
        except OSError as exc:
            raise OutputError(f"cannot write {out} ({os_reason(exc)}); choose a writable location") from None
    if state["signum"] is not None:
        raise Interrupted(state["signum"], f"interrupted by {signal.Signals(state['signum']).name} as the evaluation ended; "
                                           f"it was written to {out} in full")
    print(format_table(result))
    print(f"written to {out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- tables across runs

HEADLINE = {  # column name -> how to read it from an evaluate() result
    "MI categorical (nats)": lambda r: r["mi"].get("categorical", {}).get("nats"),
    "MI z0 (nats)": lambda r: r["mi"]["z0"]["nats"],
    "MI z1 (nats)": lambda r: r["mi"]["z1"]["nats"],
    "accuracy (Hungarian)": lambda r: (r["cluster_accuracy"] or {}).get("hungarian"),
    "accuracy (majority)": lambda r: (r["cluster_accuracy"] or {}).get("majority"),
    "codes used": lambda r: r.get("codes_used"),
    "NMI": lambda r: r["nmi"],
    "ARI": lambda r: r["ari"],
    "linear probe": lambda r: r["linear_probe_accuracy"],
    "recon MSE": lambda r: r["recon_mse"],
    "active dims": lambda r: sum(k > 0.01 for k in r["kl_per_dim"]),
}


def headline(result: dict[str, Any]) -> dict[str, float | None]:
    """The numbers of one evaluation that the results tables report."""
    return {name: read(result) for name, read in HEADLINE.items()}
