"""Command-line interface: ``vmivae train | datasets | presets | evaluate | bench | study``.

Each command is a thin wrapper over the Python API. A :class:`~vmivae.errors.VMIVAEError` (bad
input) is printed as one line and exits with status 2; an interruption exits with 128 + the signal
number; anything else is a bug and keeps its traceback. Mistakes in the arguments themselves are
argparse's: usage and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import ConfigError, TrainingInterrupted, VMIVAEError

EXIT_BAD_INPUT = 2


def _say(message: str) -> None:
    """Print once per job: only rank 0 speaks when launched by torchrun."""
    if os.environ.get("RANK", "0") == "0":
        print(message)


def _train(args: argparse.Namespace) -> int:
    from .config import parse_assignment
    from .presets import make_config
    from .training import fit, resume

    if args.resume:
        if args.preset or args.profile or args.out or args.overwrite:
            raise ConfigError("--resume continues a run with its own config in its own folder; drop --preset/--profile/--out/--overwrite "
                              "(change steps with --set steps=N)")
        overrides = dict(parse_assignment(a) for a in args.set)
        resume(args.resume, overrides=overrides, progress=not args.quiet)
        _say(f"run continued in {args.resume}")
        return 0
    preset, profile = args.preset or "paper-joint", args.profile or "quick"
    config = make_config(preset, profile, args.set)
    meta = {"preset": preset, "profile": profile, "overrides": args.set}
    fit(config, out=args.out, overwrite=args.overwrite, progress=not args.quiet, meta=meta)
    _say(f"run written to {args.out}")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from .datasets import REGISTRY, data_root, is_available

    root = data_root(args.root)
    print(f"data root: {root}  (set with --root or $VMIVAE_DATA)")
    width = max(map(len, REGISTRY))
    for name, info in REGISTRY.items():
        status = "available" if is_available(name, root) else "missing  "
        folder = info.where(root)
        where = f"  [{folder}]" if folder is not None else ""
        print(f"  {name:<{width}}  {status}  {info.source}{where}")
    return 0


def _presets(args: argparse.Namespace) -> int:
    from .presets import describe, list_presets, list_profiles

    for title, folder, names in (("presets", "presets", list_presets()), ("profiles", "profiles", list_profiles())):
        print(f"{title}:")
        width = max(map(len, names))
        for name in names:
            print(f"  {name:<{width}}  {describe(folder, name)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vmivae", description="VMI-VAE: train, measure and benchmark VAEs with an MI-regularised latent code.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a model from a preset", description="Train a VMI-VAE (or its baseline) and write a run directory.")
    train.add_argument("--preset", default=None, help="preset name (see `vmivae presets`) or your own .yaml file (default: paper-joint)")
    train.add_argument("--profile", default=None, help="budget profile: smoke | quick | full (default: quick)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key, e.g. --set lambda_cat=0.05 (repeatable)")
    train.add_argument("--out", default=None, help="run directory to create")
    train.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue this run from its last checkpoint (e.g. with --set steps=N)")
    train.add_argument("--overwrite", action="store_true", help="replace the run files in a non-empty --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    datasets = sub.add_parser("datasets", help="list datasets and whether they are available",
                              description="List every dataset, where it is read from and whether it is available now.")
    datasets.add_argument("--root", default=None, help="data root (default: $VMIVAE_DATA or ./data)")
    datasets.set_defaults(func=_datasets)

    presets = sub.add_parser("presets", help="list presets and profiles", description="List the shipped presets and profiles.")
    presets.set_defaults(func=_presets)

    from .measure.evaluation import add_command as add_evaluate
    from .measure.study import add_command as add_study
    from .perf.bench import add_command as add_bench

    add_evaluate(sub)
    add_bench(sub)
    add_study(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train" and not args.out and not args.resume:
        parser.error("--out is required (or --resume RUN_DIR to continue a run)")
    try:
        return args.func(args)
    except TrainingInterrupted as stop:
        print(f"vmivae: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except VMIVAEError as exc:
        print(f"vmivae: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("vmivae: aborted at once by Ctrl-C; the last checkpoint written, if any, is intact", file=sys.stderr)
        return 130
