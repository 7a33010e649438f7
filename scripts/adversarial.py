"""An adversarial pass against the ``vmivae`` command and its Python API, reproducible and self-judging.

Each case (``scripts/adversarial_cases.py``) runs in a fresh temporary folder that holds copies of tiny smoke
runs built once, and is judged by an oracle, in this order:

* ``hang``: it did not finish within its timeout;
* ``data loss``: a file that was there before (a run's checkpoint, config, metrics, history, a user's file)
  changed or vanished, where the command should have left it alone;
* ``traceback``: ``Traceback`` in its output (a bug: user errors are one sentence);
* ``misleading message``: the wrong exit status, or a message without the words that name the problem;
* ``ok`` otherwise.

    .venv/bin/python scripts/adversarial.py --out results/adversarial/ [--quick] [--only WORD ...] [--rerun CASES_CSV] [--jobs N]

writes ``cases.csv`` (case, class, outcome, seconds, first line of message) and ``summary.md`` (counts per
outcome and every case that is not ok). ``--quick`` runs a handful of cases that need no trained run.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
OUTCOMES = ("ok", "misleading message", "traceback", "data loss", "hang")
SIGNAL_GRACE = 120.0  # seconds a case has to exit once it was sent its signal, however long the wait for the moment took
SMOKE = ["--profile", "smoke", "--set", "steps=4", "--set", "log_every=2", "--set", "checkpoint_every=2", "--quiet"]
# Python API cases run inside this: a VMIVAEError is printed as the command prints it and exits 2, success exits 0,
# anything else keeps its traceback (exit 1)
WRAPPER = """
import sys
from pathlib import Path
tmp, run = Path({tmp!r}), Path({run!r})
try:
    import numpy as np, torch, vmivae
    from vmivae.errors import VMIVAEError
except KeyboardInterrupt:
    print("interrupted while importing", file=sys.stderr); sys.exit(130)
try:
{body}
except VMIVAEError as exc:
    print(f"vmivae: error: {{exc}}", file=sys.stderr); sys.exit(2)
"""


@dataclass
class Case:
    """One adversarial action and what a careful program does with it."""

    name: str
    group: str  # the kind of misuse: cli values, evaluate --out, resume/overwrite, damaged run, bad data, measuring api, signals, study
    argv: list[str] | None = None  # vmivae's arguments; {tmp}, {run}, {custom} are the case's folder and its runs
    code: str | None = None  # or Python code (indented by the harness), with tmp and run defined
    setup: Callable[[Path], None] | None = None  # prepares the case's folder (damage a run, write a file)
    rc: int | tuple[int, ...] = 2  # the exit status a careful program gives
    says: tuple[str, ...] = ()  # words the output must hold, case-insensitive
    keep: bool = True  # nothing that was there before may change (files under {tmp}/new/ are outputs)
    timeout: float = 240.0
    signal: tuple[int, Callable[[Path, int], bool]] | None = None  # send this signal once the condition holds
    fixtures: tuple[str, ...] = ("run",)  # runs copied in: run (a finished smoke run), custom (one trained on your own images)
    quick: bool = False
    env: dict[str, str] = field(default_factory=dict)


def torch_loading(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def lock_of_pid_1(folder: Path, host: str | None = None) -> None:
    """A lock file naming a live process (init), as a training in another terminal leaves it."""
    import json

    start = Path("/proc/1/stat").read_text().rsplit(")", 1)[1].split()[19]
    record = {"pid": 1, "start": start, "host": host or socket.gethostname(), "purpose": "vmivae train", "time": time.time()}
    (folder / ".vmivae.lock").write_text(json.dumps(record))


# ---------------------------------------------------------------------------- fixtures: built once, copied per case


def build_fixtures(work: Path, names: set[str]) -> dict[str, Path]:
    """Tiny smoke runs: ``run`` by the command, ``custom`` by fit() on random images; each evaluated once at smoke."""
    made = {}
    if "run" in names:
        made["run"] = work / "run"
        if not (made["run"] / "metrics.json").is_file():
            subprocess.run([PYTHON, "-m", "vmivae", "train", *SMOKE, "--out", str(made["run"])], check=True, cwd=work)
    if "custom" in names:
        made["custom"] = work / "custom"
        if not (made["custom"] / "metrics.json").is_file():
            code = ("import torch, vmivae; c = vmivae.make_config('paper-joint', 'smoke', ['steps=4', 'log_every=2']); "
                    f"vmivae.fit(c, data=torch.rand(256, 1, 28, 28), out={str(made['custom'])!r}, progress=False)")
            subprocess.run([PYTHON, "-c", code], check=True, cwd=work)
    return made


def hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, outputs (new/) and lock files aside."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith("new/") or path.name == ".vmivae.lock" or path.is_symlink() or not path.is_file():
            continue
        try:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            out[rel] = "unreadable"
    return out


# ---------------------------------------------------------------------------- one case


def _default_signals() -> None:
    """In the case's process before it starts: SIGINT and SIGTERM as a terminal gives them. A harness started from a background
    shell has SIGINT ignored, and an ignored disposition is inherited: the case would never see the Ctrl-C it is sent."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _fill(text: str, places: dict[str, str]) -> str:
    for key, value in places.items():
        text = text.replace("{" + key + "}", value)
    return text


def run_case(case: Case, fixtures: dict[str, Path], scratch: Path) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="case-", dir=scratch))
    (tmp / "new").mkdir()
    (tmp / "home").mkdir()
    for name in case.fixtures:
        if name in fixtures:
            shutil.copytree(fixtures[name], tmp / name)
    if case.setup is not None:
        case.setup(tmp)
    places = {"tmp": str(tmp), "run": str(tmp / "run"), "custom": str(tmp / "custom")}
    before = hashes(tmp) if case.keep else {}
    if case.argv is not None:
        command = [PYTHON, "-m", "vmivae", *(_fill(a, places) for a in case.argv)]
    else:
        body = "\n".join("    " + line for line in _fill(case.code, places).splitlines())
        command = [PYTHON, "-c", WRAPPER.format(tmp=str(tmp), run=str(tmp / "run"), body=body)]
    env = {**os.environ, "HOME": str(tmp / "home"), "PYTHONUNBUFFERED": "1", "VMIVAE_DATA": str(ROOT / "data"), **case.env}
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                               text=True, errors="replace", start_new_session=True, preexec_fn=_default_signals)
    hung, signalled = False, None
    if case.signal is not None:
        signum, when = case.signal
        while process.poll() is None and time.perf_counter() - started < case.timeout and not when(tmp, process.pid):
            time.sleep(0.02)
        if process.poll() is None:
            process.send_signal(signum)
            signalled = time.perf_counter()
    left = case.timeout - (time.perf_counter() - started)
    if signalled is not None:  # the wait for the moment to signal may take most of the timeout: the answer to it gets its own
        left = max(left, SIGNAL_GRACE)
    try:
        out, err = process.communicate(timeout=max(1.0, left))
    except subprocess.TimeoutExpired:
        hung = True
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
    seconds = time.perf_counter() - started
    after = hashes(tmp) if case.keep else {}
    changed = sorted(k for k in before if after.get(k) != before[k])
    text = f"{out}\n{err}"
    wanted = (case.rc,) if isinstance(case.rc, int) else case.rc
    missing = [w for w in case.says if _fill(w, places).lower() not in text.lower()]
    if hung:
        outcome, why = "hang", f"no exit within {time.perf_counter() - started:.0f} s" + \
            (f" ({time.perf_counter() - signalled:.0f} s after the signal)" if signalled is not None else "")
    elif changed:
        outcome, why = "data loss", f"changed or removed: {', '.join(changed[:4])}"
    elif "Traceback" in err:
        outcome, why = "traceback", ""
    elif process.returncode not in wanted or missing:
        outcome, why = "misleading message", f"exit {process.returncode} (wanted {'/'.join(map(str, wanted))})" + \
            (f", lacks {missing}" if missing else "")
    else:
        outcome, why = "ok", ""
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("vmivae: training ")]
    message = _message(lines) or next((line for line in out.splitlines() if line.strip()), "")
    shutil.rmtree(tmp, ignore_errors=True)
    return {"case": case.name, "class": case.group, "outcome": outcome, "seconds": round(seconds, 1), "message": message[:300],
            "exit": process.returncode, "why": why}


def _message(lines: list[str]) -> str:
    """The line that says what happened: the last of vmivae's own lines (after a signal's notice, its final word), else a
    traceback's last line, else the first line."""
    for line in reversed(lines):
        if line.startswith("vmivae: "):
            return line
    if any(line.startswith("Traceback") for line in lines):
        return lines[-1]
    return lines[0] if lines else ""


# ---------------------------------------------------------------------------- the pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/adversarial", help="folder for cases.csv and summary.md")
    parser.add_argument("--quick", action="store_true", help="only the few cases that need no trained run (seconds)")
    parser.add_argument("--only", action="append", default=None, help="only cases whose name or class holds this text (repeatable: any)")
    parser.add_argument("--rerun", default=None, metavar="CASES_CSV", help="only the cases not ok in this earlier cases.csv (and any --only)")
    parser.add_argument("--jobs", type=int, default=3, help="cases run at the same time (default: 3)")
    parser.add_argument("--work", default=None, help="folder for fixtures and case folders (default: a new temporary one)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from adversarial_cases import all_cases

    redo = None
    if args.rerun is not None:
        with open(args.rerun, newline="") as f:
            redo = {r["case"] for r in csv.DictReader(f) if r["outcome"] != "ok"}
    wanted = lambda c: (args.only is None and redo is None) or (redo is not None and c.name in redo) or \
        any(w in c.name or w in c.group for w in args.only or ())  # noqa: E731
    cases = [c for c in all_cases() if (c.quick or not args.quick) and wanted(c)]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names repeat"
    work = Path(args.work or tempfile.mkdtemp(prefix="vmivae-adversarial-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    fixtures = build_fixtures(work, {f for c in cases for f in c.fixtures})
    print(f"{len(cases)} cases, fixtures built in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    done: dict[str, dict[str, object]] = {}
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        for future in as_completed([pool.submit(run_case, c, fixtures, work) for c in cases]):
            row = future.result()
            done[row["case"]] = row
            print(f"[{len(done)}/{len(cases)}] {row['outcome']:<18} {row['seconds']:>6.1f}s  {row['case']}", file=sys.stderr, flush=True)
            rows = [done[n] for n in names if n in done]  # in the cases' order; written as they finish, so a cut-short pass keeps its results
            write(Path(args.out), rows, time.perf_counter() - started, quick=args.quick, of=len(cases))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    counts = Counter(r["outcome"] for r in rows)
    print(", ".join(f"{counts[o]} {o}" for o in OUTCOMES), file=sys.stderr)
    return 0


def write(out: Path, rows: list[dict[str, object]], seconds: float, quick: bool, of: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "cases.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, ["case", "class", "outcome", "seconds", "message"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    counts = Counter(r["outcome"] for r in rows)
    by_class = Counter((r["class"], r["outcome"]) for r in rows)
    classes = list(dict.fromkeys(r["class"] for r in rows))
    lines = ["# Adversarial pass", "",
             f"{len(rows)} of {of} cases{' (--quick)' if quick else ''}, {seconds / 60:.1f} min on {os.cpu_count()} cores (shared), "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Command: `.venv/bin/python scripts/adversarial.py {' '.join(sys.argv[1:])}`.",
             "",
             "| outcome | cases |", "|---|---|", *(f"| {o} | {counts[o]} |" for o in OUTCOMES), "",
             "| class | " + " | ".join(OUTCOMES) + " |", "|---" * (len(OUTCOMES) + 1) + "|",
             *(f"| {c} | " + " | ".join(str(by_class[c, o]) for o in OUTCOMES) + " |" for c in classes), "",
             "## Cases that are not ok", "", "| case | class | outcome | why | message |", "|---|---|---|---|---|"]
    for r in rows:
        if r["outcome"] != "ok":
            cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")[:220]  # noqa: E731
            lines.append(f"| {r['case']} | {r['class']} | {r['outcome']} | {cell(r['why'])} | {cell(r['message'])} |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
