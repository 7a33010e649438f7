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

from .errors import ConfigError, Interrupted, OutputError, VMIVAEError

EXIT_BAD_INPUT = 2


def _say(message: str) -> None:
    """Print once per job: only rank 0 speaks when launched by torchrun."""
    if os.environ.get("RANK", "0") == "0":
        print(message)


def _train(args: argparse.Namespace) -> int:
    from .presets import make_config, parse_overrides
    from .training import fit, resume

    if args.resume is not None:
        if any(v is not None for v in (args.preset, args.profile, args.out)) or args.overwrite:
            raise ConfigError("--resume continues a run with its own config in its own folder; drop --preset/--profile/--out/--overwrite "
                              "(change steps with --set steps=N)")
        overrides = parse_overrides(args.set)
        resume(args.resume, overrides=overrides, progress=not args.quiet)
        _say(f"run continued in {args.resume}")
        return 0
    # None means not given; an empty --preset '' is refused by make_config rather than taken for the default
    preset = "paper-joint" if args.preset is None else args.preset
    profile = "quick" if args.profile is None else args.profile
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


# options that name a file or folder, by their argparse dest, in the order a user types them
PATH_OPTIONS = {"run_dir": "RUN_DIR", "resume": "--resume", "out": "--out", "markdown": "--markdown", "root": "--root",
                "runs_dir": "--runs-dir", "results": "--results"}


def _paths(args: argparse.Namespace) -> None:
    """Refuse empty paths and expand ``~`` in every path option (a quoted ``--out '~/x'`` or ``--out=~/x`` reaches us unexpanded)."""
    for dest, flag in PATH_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if not value.strip():
            raise ConfigError(f"{flag} is empty; give a path")
        if value.startswith("~"):
            expanded = os.path.expanduser(value)
            if expanded.startswith("~"):
                user = value[1:].split("/", 1)[0]
                raise ConfigError(f"{flag} {value} starts with ~{user}, but there is no user {user!r} whose home it could be; give the full path")
            setattr(args, dest, expanded)


def _writable_folder(flag: str, path: str) -> None:
    """Refuse, before any work, a folder option that names a file or lies where no folder can be created.

    Where the folder does not exist yet, a folder is made and removed in its nearest existing parent:
    permissions alone do not tell (root may write anywhere, but not under /proc or on a read-only disk).
    """
    import tempfile
    from pathlib import Path

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{flag} {path} is a file, not a folder; give a folder")
    parent = folder
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot create {flag} {path}: {parent} is a file, not a folder; give a folder elsewhere")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".vmivae-probe-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot create {flag} {path}: no folder can be made in {parent} ({exc.strerror or type(exc).__name__}); "
                          "choose a writable location") from None


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The checks that need no import of torch: done before any command starts its work."""
    _paths(args)
    if args.command == "train" and args.out is None and args.resume is None:
        parser.error("--out is required (or --resume RUN_DIR to continue a run)")
    if args.command == "datasets" and args.root is not None and os.path.exists(args.root) and not os.path.isdir(args.root):
        raise ConfigError(f"--root {args.root} is a file, not a folder; give the folder that holds the datasets")
    if args.command == "study":
        from .perf.device import resolve_device

        _writable_folder("--runs-dir", args.runs_dir)
        _writable_folder("--results", args.results)
        resolve_device(args.device)  # a malformed or absent --device, before the first run starts


def _one_line(text: str) -> str:
    """Control and unprintable characters (a newline typed into a path) escaped as Python writes them: the error stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        _check(parser, args)
        return args.func(args)
    except Interrupted as stop:
        print(f"vmivae: {stop}", file=sys.stderr)
        return 128 + stop.signum
    except VMIVAEError as exc:
        print(f"vmivae: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("vmivae: aborted at once by Ctrl-C; the last checkpoint written, if any, is intact", file=sys.stderr)
        return 130
