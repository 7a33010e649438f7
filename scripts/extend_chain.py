"""Continue one run of a curve study past the study's last stage and measure it at longer budgets.

A probe of where a learning curve goes next, for one (variant, seed): the study's run at its last stage is
copied (the study's own folder stays at its last stage, so its cache and records stay valid) and resumed to
each step given, measured as the study measures its stages (``vmivae.measure.curves.measure_stage``). Every
schedule depends on the step, not on the run's length, and a resume is bit-identical, so the run measured at
``b`` steps is the run a ``b``-step budget of the same profile trains. Each measured step is written at once
to ``<out>/stages/`` and never recomputed.

    VMIVAE_DATA=/work/shared/data .venv/bin/python scripts/extend_chain.py --variant jointvae-cap --seed 0 \
        --steps 8000 16000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from vmivae.datasets import load  # noqa: E402
from vmivae.errors import ConfigError  # noqa: E402
from vmivae.measure.curves import chain_folder, measure_stage, stage_file  # noqa: E402
from vmivae.measure.study import load_study  # noqa: E402
from vmivae.perf.device import hardware_name  # noqa: E402
from vmivae.runs.files import write_json  # noqa: E402
from vmivae.runs.folder import RunFolder  # noqa: E402
from vmivae.runs.run import load_run  # noqa: E402
from vmivae.training import resume  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default="joint-curves")
    p.add_argument("--variant", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--steps", type=int, nargs="+", required=True, help="budgets past the study's last stage")
    p.add_argument("--runs-dir", default="runs/curves", help="where the study's runs are")
    p.add_argument("--out", default=None, help="results folder (default results/<study>-long)")
    args = p.parse_args()
    study = load_study(args.study)
    last = max(study.stages)
    if min(args.steps) <= last:
        raise SystemExit(f"--steps must all be past the study's last stage, {last}")
    specs = {(v, s): spec for d, v, s, spec in study.specs([args.dataset], [args.seed])}
    if (args.variant, args.seed) not in specs:
        raise SystemExit(f"the study has no variant {args.variant!r}; it has {', '.join(v.name for v in study.variants)}")
    spec = specs[args.variant, args.seed]
    final = spec.config.replace(steps=last)
    source = chain_folder(spec, last, args.runs_dir)
    if not (source / "checkpoint.pt").is_file():
        raise SystemExit(f"{source} holds no run; run the study first: vmivae study --name {args.study} --runs-dir {args.runs_dir}")
    copy = Path(args.runs_dir) / "extended" / source.name
    if not copy.exists():
        shutil.copytree(source, copy)
    out = Path(args.out or f"results/{args.study}-long")
    test = load(final.dataset, "test", final.data_root)
    for step in sorted(args.steps):
        path = stage_file(out, args.dataset, args.variant, args.seed, step)
        if path.is_file():
            continue
        started = time.perf_counter()
        at = int(RunFolder(copy).load_checkpoint()["step"])
        if at > step:
            raise SystemExit(f"{copy} is already at step {at}, past {step}; remove it to extend the run again")
        # a stop after training and before its file leaves the run at this step: measure it as it is
        run = load_run(copy) if at == step else resume(copy, steps=step, progress=False, threads=1)
        measured, _ = measure_stage(run, test, study.estimator)
        row = {"dataset": args.dataset, "variant": args.variant, "seed": args.seed, "step": step, **measured,
               "train_seconds": run.metrics.get("seconds"), "stage_seconds": round(time.perf_counter() - started, 1), "threads": 1,
               "config_hash": final.hash(), "resumed_from": last, "hardware": hardware_name(), "finished": time.strftime("%Y-%m-%d %H:%M"),
               "command": "scripts/extend_chain.py " + " ".join(sys.argv[1:])}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, row)
        print(json.dumps({k: row[k] for k in ("step", "hungarian", "codes_used", "recon_mse", "mi_categorical", "stage_seconds")}), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConfigError as e:
        sys.exit(f"extend_chain: {e}")
