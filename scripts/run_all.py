"""Execute every notebook with papermill, collect the figures, build the book. Called by ./run_all.sh.

    python scripts/run_all.py [--profile smoke|quick|study|full] [--only NN ...] [--device auto|cpu|cuda] [--build-dir build]

The notebooks' ``.py`` files (jupytext percent format) are the source: each is converted to a fresh
notebook under ``<build>/input``, executed into ``<build>/executed`` with its parameters injected (the
paired notebooks in ``notebooks/`` are never written), and the executed notebooks are copied with the
book sources into ``<build>/book`` and built there with Jupyter Book (warnings are errors).

``--repository-url URL`` (or the environment variable ``VMIVAE_REPOSITORY_URL``; the Pages workflow sets it
to the GitHub repository) gives the book a repository button and Binder and Colab launch buttons on every
notebook page, pointing at the repository's ``notebooks/``; unset, the book has none. ``--book-only``
rebuilds the book from the notebooks executed earlier, without running any.

``--profile study`` first runs the studies (``vmivae.measure.study``: hours on a 2-core CPU) and writes their result
files to ``results/study``, ``results/gaussian-mi`` and ``results/joint-curves`` (learning curves), then executes
the notebooks under the ``quick`` profile: the results chapter reads the studies from those files, so every other
profile shows the committed ones.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PROFILES = ("smoke", "quick", "study", "full")
RESULTS = ROOT / "results" / "study"
COMMITTED_BENCH = ROOT / "benchmarks" / "cpu-2core-avx2.md"  # the 2-core CPU whose times the reproducing page reports


def notebooks(only: list[str]) -> list[Path]:
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if only:
        wanted = {o.zfill(2) for o in only}
        unknown = wanted - {p.name[:2] for p in found}
        if unknown:
            sys.exit(f"run_all: no notebook numbered {', '.join(sorted(unknown))}; have {', '.join(p.name[:2] for p in found)}")
        found = [p for p in found if p.name[:2] in wanted]
    return found


def settle_carriage_returns(text: str) -> str:
    """What a terminal would show of ``text``: on each line, only what was written after its last carriage
    return (a progress bar's final state, not every update it drew over the previous one)."""
    return "\n".join(next((part for part in reversed(line.split("\r")) if part), "") for line in text.split("\n"))


def hide_injected_parameters(path: Path) -> None:
    """Collapse papermill's injected-parameters cell in the book (Jupyter Book's hide-cell tag), and keep of
    each progress bar its final state."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            cell["metadata"]["tags"] = tags + ["hide-cell"]
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and "\r" in output.get("text", ""):
                output["text"] = settle_carriage_returns(output["text"])
    nbformat.write(nb, path)


def execute(source: Path, build: Path, parameters: dict) -> float:
    """Run one notebook; on failure say which cell failed and keep the partial output."""
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    name = source.stem
    (build / "input").mkdir(parents=True, exist_ok=True)
    (build / "executed").mkdir(parents=True, exist_ok=True)
    notebook = build / "input" / f"{name}.ipynb"
    jupytext.write(jupytext.read(source), notebook)
    output = build / "executed" / f"{name}.ipynb"
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3", cwd=str(NOTEBOOKS),
                                   progress_bar=False, log_output=False, kernel_manager_class=_local_kernel_manager())
    except PapermillExecutionError as exc:
        print(f"run_all: notebook {source.name} failed in cell {exc.cell_index} (execution count {exc.exec_count}): {exc.ename}: {exc.evalue}",
              file=sys.stderr)
        print(f"run_all: the partially executed notebook is {output}", file=sys.stderr)
        sys.exit(1)
    hide_injected_parameters(output)
    return time.perf_counter() - start


GENERATION, RECONSTRUCTION = ("generation",), ("reconstruction",)
def _local_kernel_manager():
    """A kernel manager that talks to the chapter's kernel over a local socket file (IPC) instead of TCP:
    nothing listens on a port, and the kernel has no reason to warn about unencrypted TCP."""
    import tempfile
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class LocalKernelManager(AsyncKernelManager):
        @default("transport")
        def _default_transport(self):
            return "ipc"

        @default("ip")
        def _default_ip(self):  # the sockets' file prefix, out of the notebooks' folder
            return str(Path(tempfile.gettempdir()) / f"vmivae-kernel-{uuid.uuid4().hex[:12]}")

    return LocalKernelManager


AHEAD = "(every chapter's runs, trained ahead)"  # its timing row; sorts before the notebooks


def chapter_runs(profile: str, seed: int = 0) -> dict[str, list]:
    """The runs each chapter trains and the MI paths it measures them on, at the chapters' default
    parameters (``seed`` aside): what ``--prefetch`` trains ahead. The chapters never read this list; each
    names its own runs and trains whatever the run cache lacks, so a list that falls behind a chapter
    costs time, not correctness (``tests/test_notebooks.py`` checks that after it no chapter trains)."""
    from vmivae.runs.run_cache import RunSpec

    def run(preset: str, *paths: tuple[str, ...], name: str | None = None, **overrides):
        return RunSpec(preset, profile, {"seed": seed, **overrides}, name=name), paths or (GENERATION,)

    joint = [run("paper-joint-baseline", GENERATION, RECONSTRUCTION), run("paper-joint", GENERATION, RECONSTRUCTION, lambda_cat=0.01),
             run("vmi-joint", GENERATION, RECONSTRUCTION, lambda_cat=0.01)]
    return {
        "01": [run("paper-gaussian-baseline")],
        "02": [run("paper-gaussian", lambda_cont=0.0005), run("paper-gaussian-baseline")],
        "03": joint,
        "04": [*joint, run("paper-gaussian"), run("paper-gaussian-baseline")],
        "05": [run("vmi-joint", name=f"sweep-x{s:g}", lambda_cat=0.01 * s, lambda_cont=0.0005 * s) for s in (0.1, 1.0, 10.0)]
        + [run("paper-joint-baseline"), run("shapes-joint", aggregate_entropy=True), run("shapes-joint-baseline")],
    }


def prefetch(selected: list[Path], parameters: dict) -> dict[str, float]:
    """Train and evaluate the selected chapters' runs in one pool before any chapter executes.

    Chapter by chapter, a chapter with a single run keeps one worker busy and the other idle, and
    each chapter's pool drains to its last run; one pool over the runs of every chapter keeps both workers
    busy until the end. Returns the timing row: seconds and runs trained.
    """
    from vmivae.errors import ConfigError, VMIVAEError
    from vmivae.runs.run_cache import ensure
    from vmivae.teaching.notebook import ESTIMATOR_FOR_PROFILE

    try:
        plan = chapter_runs(parameters["profile"], int(parameters.get("seed", 0)))
        for spec, _ in (item for runs in plan.values() for item in runs):
            spec.config.replace(device=parameters["device"])  # a bad parameter fails here, not in a worker
    except (ConfigError, TypeError, ValueError) as exc:  # the first chapter reports it, naming its cell
        print(f"run_all: not training ahead ({exc}); the chapters train their own runs", file=sys.stderr, flush=True)
        return {"seconds": 0.0, "trained": 0, "evaluated": 0}
    wanted = [item for source in selected for item in plan.get(source.name[:2], [])]
    runs_dir = Path(parameters["runs_dir"])
    before, start = cache_state(runs_dir), time.perf_counter()
    try:
        ensure(wanted, runs_dir, parameters["device"], parameters["workers"], ESTIMATOR_FOR_PROFILE.get(parameters["profile"], "quick"))
    except VMIVAEError as exc:  # e.g. no CUDA, missing data: one sentence, not a worker's traceback
        sys.exit(f"run_all: training the chapters' runs ahead stopped: {exc}")
    return work_done(runs_dir, before, time.perf_counter() - start)


def finished_runs(runs_dir: Path, pattern: str | None = None) -> set[tuple[str, int]]:
    """(file, time it was written) of every run's ``pattern`` file (default ``metrics.json``; ``eval-*.json``: its
    evaluations): a retrained run counts as new."""
    from vmivae.runs.folder import METRICS

    return {(str(m), m.stat().st_mtime_ns) for m in runs_dir.glob(f"*/{pattern or METRICS}")}


def work_done(runs_dir: Path, before: tuple[set, set], seconds: float) -> dict[str, float]:
    """A timing row: seconds, runs trained and evaluations written since ``before`` (:func:`cache_state`)."""
    runs, evaluations = cache_state(runs_dir)
    return {"seconds": round(seconds, 1), "trained": len(runs - before[0]), "evaluated": len(evaluations - before[1])}


def cache_state(runs_dir: Path) -> tuple[set, set]:
    from vmivae.runs.folder import CACHED_EVALUATIONS  # the run cache's evaluations (a run folder may hold other JSON)

    return finished_runs(runs_dir), finished_runs(runs_dir, CACHED_EVALUATIONS)


def write_generated(book: Path, timings: dict[str, dict[str, float]], profile: str, bench_md: Path | None) -> None:
    import platform

    import torch

    generated = book / "generated"
    generated.mkdir(parents=True, exist_ok=True)
    cpu = platform.processor() or platform.machine()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU only ({os.cpu_count()} cores, {cpu})"
    lines = [f"Profile `{profile}`, built {time.strftime('%Y-%m-%d %H:%M')} on {device}, torch {torch.__version__}. "
             "The first row trains and measures every chapter's runs in one pool before any chapter runs; a "
             "notebook then trains only what is still missing from the run cache (`runs/`). These are "
             "fresh-machine times only where the first row trained every run the book uses.", "",
             "| notebook | wall time | runs trained in it |", "|---|---|---|"]
    lines += [f"| {name} | {t['seconds'] / 60:.1f} min ({t['seconds']:.0f} s) | {t['trained']} |" for name, t in timings.items()]
    total = sum(t["seconds"] for t in timings.values())
    lines.append(f"| **all notebooks** | **{total / 60:.1f} min** | {sum(t['trained'] for t in timings.values())} |")
    (generated / "timings.md").write_text("\n".join(lines) + "\n")
    if bench_md is not None:
        bench = bench_md.read_text()
    elif COMMITTED_BENCH.is_file():  # the measurement that ships with the repository, labelled as such
        bench = (f"Not re-measured in this build: the table committed in `{COMMITTED_BENCH.relative_to(ROOT)}` "
                 f"(`vmivae bench`; `run_all.sh --bench FILE.md` shows your own).\n\n" + COMMITTED_BENCH.read_text())
    else:
        bench = "No benchmark was run in this build (`vmivae bench` produces one).\n"
    (generated / "bench.md").write_text(bench)


BINDER_URL = "https://mybinder.org"
COLAB_URL = "https://colab.research.google.com"


def copy_sources(book: Path) -> None:
    """The package's modules into ``<book>/_src/vmivae``: literalinclude blocks read ``/_src/vmivae/<module>.py``."""
    for source in (ROOT / "vmivae").rglob("*.py"):
        target = book / "_src" / source.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _shortened(value: str) -> str:
    """An absolute path as the book shows it: relative to the repository, else only its last part."""
    path = Path(value)
    if not path.is_absolute():
        return value
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def strip_local_paths(notebook: Path) -> None:
    """The book's copy of an executed notebook without the building machine's paths: papermill's injected
    parameters (``runs_dir = "/home/..."``) and its metadata show them relative to the repository."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = re.sub(r'"(/[^"\n]*)"', lambda m: json.dumps(_shortened(m.group(1))), cell["source"])
    papermill = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if isinstance(papermill.get(key), str):
            papermill[key] = _shortened(papermill[key])
    for key, value in papermill.get("parameters", {}).items():
        if isinstance(value, str):
            papermill["parameters"][key] = _shortened(value)
    nbformat.write(nb, notebook)


def report_presentation(html: Path) -> None:
    """Count the defects ``scripts/book_checks.py`` finds in the built pages (warnings, paths, raw TeX ...)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from book_checks import scan_book

    report = scan_book(html)
    if report:
        n = sum(len(d) for found in report.values() for d in found.values())
        print(f"run_all: {n} presentation defect(s) on {len(report)} page(s); list them with: "
              f"python scripts/book_checks.py {html}", file=sys.stderr)


def configure_book(book: Path, repository_url: str | None, branch: str = "main") -> None:
    """Write the repository settings into the copied ``_config.yml``: with a URL, the repository button and
    Binder and Colab launch buttons (sphinx-book-theme; the book's extension points them at ``notebooks/``);
    without one, the committed configuration (no repository or launch buttons)."""
    if not repository_url:
        return
    path = book / "_config.yml"
    config = yaml.safe_load(path.read_text())
    config["repository"] = {"url": repository_url.rstrip("/"), "branch": branch, "path_to_book": "book"}
    config.setdefault("html", {})["use_repository_button"] = True
    config["launch_buttons"] = {**config.get("launch_buttons", {}), "binderhub_url": BINDER_URL, "colab_url": COLAB_URL}
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def build_book(build: Path, timings: dict[str, dict[str, float]], profile: str, bench_md: Path | None,
               repository_url: str | None = None, branch: str = "main") -> Path:
    book = build / "book"
    if book.exists():
        shutil.rmtree(book)
    shutil.copytree(ROOT / "book", book, ignore=shutil.ignore_patterns("_build", "executed", "generated", "_src", "__pycache__"))
    shutil.copytree(build / "executed", book / "executed")
    for notebook in (book / "executed").glob("*.ipynb"):
        strip_local_paths(notebook)
    copy_sources(book)
    configure_book(book, repository_url, branch)
    write_generated(book, timings, profile, bench_md)
    jb = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jb), "build", str(book), "-W", "--keep-going", "-q"], capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout[-4000:], result.stderr[-4000:], sep="\n", file=sys.stderr)
        sys.exit("run_all: the book did not build cleanly (warnings are errors); see the messages above")
    return book / "_build" / "html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Execute every notebook and build the book.")
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--only", action="append", default=[], metavar="NN", help="only this notebook (repeatable), e.g. --only 03")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2, help="parallel training/evaluation processes (default 2)")
    parser.add_argument("--build-dir", default=str(ROOT / "build"))
    parser.add_argument("--runs-dir", default=str(ROOT / "runs"))
    parser.add_argument("--figures-dir", default=str(ROOT / "figures"))
    parser.add_argument("--bench", default=None, help="markdown benchmark table to show on the reproducing page "
                        "(default: the committed benchmarks/cpu-2core-avx2.md)")
    parser.add_argument("--no-prefetch", dest="prefetch", action="store_false",
                        help="let each chapter train its own runs instead of training every chapter's runs ahead in one pool")
    parser.add_argument("--no-book", action="store_true", help="execute the notebooks only")
    parser.add_argument("--book-only", action="store_true", help="rebuild the book from the notebooks executed earlier")
    parser.add_argument("--repository-url", default=os.environ.get("VMIVAE_REPOSITORY_URL") or None,
                        help="the repository the book links to, e.g. https://github.com/ORG/vmivae: adds the repository "
                        "button and Binder/Colab launch buttons (default: $VMIVAE_REPOSITORY_URL; unset: no such buttons)")
    parser.add_argument("--repository-branch", default=os.environ.get("VMIVAE_REPOSITORY_BRANCH") or "main",
                        help="the branch launch buttons open (default: $VMIVAE_REPOSITORY_BRANCH or main)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="set a notebook parameter (value read as YAML), e.g. --param 'seeds=[0, 1]'")
    args = parser.parse_args(argv)
    extra = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--param expects KEY=VALUE, got '{item}'")
        extra[key] = yaml.safe_load(value)
    if args.profile == "study" and not args.book_only:  # the long runs, then the quick book that shows them
        from vmivae.measure.curves import run_curves
        from vmivae.measure.study import load_study, run_study

        print("run_all: running the study (long: see the reproducing page for its cost) ...", file=sys.stderr, flush=True)
        for name, results in (("joint-objectives", RESULTS), ("gaussian-mi", RESULTS.parent / "gaussian-mi")):
            run_study(load_study(name), args.runs_dir, results, workers=args.workers, device=args.device, command="./run_all.sh --profile study")
        run_curves(load_study("joint-curves"), args.runs_dir, RESULTS.parent / "joint-curves", workers=args.workers, device=args.device,
                   command="./run_all.sh --profile study")
        args.profile = "quick"
    build = Path(args.build_dir).resolve()
    selected = notebooks(args.only)
    timings_file = build / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() and (args.only or args.book_only) else {}
    timings = {k: v for k, v in timings.items() if isinstance(v, dict)}  # entries of an older layout are dropped
    parameters = {"profile": args.profile, "device": args.device, "workers": args.workers,
                  "runs_dir": str(Path(args.runs_dir).resolve()), "figures_dir": str(Path(args.figures_dir).resolve()), **extra}
    started = time.perf_counter()
    if args.prefetch and not args.book_only:
        print(f"run_all: training and measuring the runs of {len(selected)} chapter(s) ahead ...", file=sys.stderr, flush=True)
        timings[AHEAD] = prefetch(selected, parameters)
        print(f"run_all: {timings[AHEAD]['trained']} run(s) trained ahead in {timings[AHEAD]['seconds']:.0f} s", file=sys.stderr, flush=True)
    for i, source in enumerate([] if args.book_only else selected, 1):
        print(f"run_all: [{i}/{len(selected)}] {source.stem} (profile {args.profile}) ...", file=sys.stderr, flush=True)
        before = cache_state(Path(parameters["runs_dir"]))
        seconds = execute(source, build, parameters)
        timings[source.stem] = work_done(Path(parameters["runs_dir"]), before, seconds)
        print(f"run_all: [{i}/{len(selected)}] {source.stem} done in {seconds:.0f} s, {timings[source.stem]['trained']} run(s) trained "
              f"({(time.perf_counter() - started) / 60:.1f} min so far)", file=sys.stderr, flush=True)
        timings_file.write_text(json.dumps(timings, indent=2))
    if not args.no_book:
        missing = [p.stem for p in notebooks([]) if not (build / "executed" / f"{p.stem}.ipynb").is_file()]
        if missing:
            sys.exit(f"run_all: cannot build the book: {', '.join(missing)} not executed yet; run without --only first")
        html = build_book(build, dict(sorted(timings.items())), args.profile, Path(args.bench) if args.bench else None,
                          args.repository_url, args.repository_branch)
        print(f"run_all: book built: {html / 'index.html'}", file=sys.stderr)
        report_presentation(html)
    print(f"run_all: finished in {(time.perf_counter() - started) / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
