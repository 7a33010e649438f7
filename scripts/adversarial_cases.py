"""The cases of ``scripts/adversarial.py``: the command's values, outputs, run folders and signals.

The Python API's cases (bad data for fit, measuring misuse) are in ``adversarial_api.py``.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from adversarial import Case, lock_of_pid_1, torch_loading
from adversarial_api import api_cases

TRAIN = ["train", "--profile", "smoke", "--set", "steps=2", "--set", "log_every=1", "--quiet"]
EVAL = ["evaluate", "{run}", "--profile", "smoke"]


def write(rel: str, text: str | bytes) -> callable:
    def setup(tmp: Path) -> None:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return setup


def both(*setups):
    def setup(tmp: Path) -> None:
        for s in setups:
            s(tmp)
    return setup


def edit_json(rel: str, change) -> callable:
    def setup(tmp: Path) -> None:
        data = json.loads((tmp / rel).read_text())
        change(data)
        (tmp / rel).write_text(json.dumps(data))
    return setup


def truncate(rel: str, keep: float) -> callable:
    def setup(tmp: Path) -> None:
        data = (tmp / rel).read_bytes()
        (tmp / rel).write_bytes(data[: int(len(data) * keep)])
    return setup


def remove(rel: str) -> callable:
    return lambda tmp: (tmp / rel).unlink()


def foreign_checkpoint(tmp: Path) -> None:
    import torch

    torch.save({"model": {"weight": torch.zeros(3)}, "epoch": 7}, tmp / "run" / "checkpoint.pt")


def symlink(rel: str, target: str) -> callable:
    return lambda tmp: os.symlink(tmp / target, tmp / rel)


def cli_value_cases() -> list[Case]:
    out = "{tmp}/new/o"
    cases = []
    for i, preset in enumerate(["nosuch", "paper-jont", "", " ", "../../etc/passwd", "{tmp}/missing.yaml", "{tmp}/bad.yaml",
                                "{tmp}/list.yaml", "{tmp}/unknown-key.yaml", "-", "päper-joint"]):
        setup = both(write("bad.yaml", "steps: [unclosed\n"), write("list.yaml", "- 1\n- 2\n"), write("unknown-key.yaml", "stepz: 3\n"))
        cases.append(Case(f"train --preset {preset!r}", "cli values", ["train", "--preset", preset, "--profile", "smoke", "--out", out],
                          setup=setup, says=("preset",), fixtures=(), quick=i == 0))
    for profile in ["nosuch", "", "smok", "-1", "{tmp}/p.yaml"]:
        cases.append(Case(f"train --profile {profile!r}", "cli values", ["train", "--profile", profile, "--out", out], says=("profile",),
                          setup=write("p.yaml", "steps: 2\n"), fixtures=()))
    sets = {"steps=-1": "steps", "steps=abc": "steps", "steps=1e999": "steps", "steps=": "steps", "=5": "key", "nokey=1": "nokey",
            "lr=nan": "lr", "lr=-1": "lr", "batch_size=0": "batch_size", "dataset=nosuch": "dataset", "steps": "steps",
            "device=gpu": "device", "categorical=0": "categorical", "steps=" + "9" * 40: "steps", "dataset=mnist": "mnist",
            "device=cuda": "cuda", "steps=3\nlr=1": "steps", "steps=None": "steps"}
    for text, word in sets.items():
        cases.append(Case(f"train --set {text!r}", "cli values", TRAIN + ["--set", text, "--out", out], says=(word,), fixtures=(),
                          quick=text == "nokey=1"))
    for label, path, rc, says, setup in [
        ("empty", "", 2, ("empty",), None), ("~ of no user", "~nosuchuserxyz/run", 2, ("no user",), None), ("~ home", "~/run", 0, (), None),
        ("dash", "-", 0, (), None), ("spaces", "{tmp}/new/my run", 0, (), None), ("unicode", "{tmp}/new/läufe ✓", 0, (), None),
        ("an existing file", "{tmp}/notes.txt", 2, ("file",), write("notes.txt", "mine")),
        ("under a file", "{tmp}/notes.txt/sub", 2, ("file",), write("notes.txt", "mine")),
        ("/proc", "/proc/vmivae-run", 2, ("/proc",), None), ("/sys (read-only)", "/sys/vmivae-run", 2, ("/sys",), None),
        ("/dev/null", "/dev/null", 2, ("/dev/null",), None),
        ("a finished run, no --overwrite", "{run}", 2, ("overwrite",), None),
        ("a folder of someone else's files", "{tmp}/mine", 2, ("mine",), write("mine/thesis.tex", "years of work")),
        ("newline in the name", "{tmp}/new/a\nb", 0, (), None)]:
        cases.append(Case(f"train --out {label}", "cli values", TRAIN + ["--out", path], rc=rc, says=says, setup=setup,
                          fixtures=("run",) if "{run}" in path else ()))
    cases.append(Case("train --out someone's folder --overwrite", "cli values", TRAIN + ["--out", "{tmp}/mine", "--overwrite"],
                      says=("mine",), setup=write("mine/thesis.tex", "years of work"), fixtures=()))
    for label, argv, rc, says, setup in [
        ("no command", [], 2, ("command",), None), ("unknown command", ["trian"], 2, ("invalid choice",), None),
        ("train without --out", ["train", "--profile", "smoke"], 2, ("--out",), None),
        ("datasets --root a file", ["datasets", "--root", "{tmp}/notes.txt"], 2, ("file",), write("notes.txt", "x")),
        ("datasets --root nowhere", ["datasets", "--root", "{tmp}/nowhere"], 0, ("missing",), None),
        ("datasets --root empty", ["datasets", "--root", ""], 2, ("empty",), None),
        ("presets", ["presets"], 0, ("paper-joint", "smoke"), None),
        ("evaluate --profile nosuch", EVAL + ["--profile", "nosuch", "--out", "{tmp}/new/e.json"], 2, ("invalid choice",), None),
        ("evaluate --path nosuch", EVAL + ["--path", "nosuch", "--out", "{tmp}/new/e.json"], 2, ("invalid choice",), None),
        ("bench --steps 0", ["bench", "--steps", "0", "--presets", "paper-joint"], 2, ("steps",), None),
        ("bench --batch -1", ["bench", "--batch", "-1", "--presets", "paper-joint"], 2, ("batch",), None),
        ("bench --presets nosuch", ["bench", "--presets", "nosuch"], 2, ("nosuch",), None),
        ("bench --device gpu", ["bench", "--device", "gpu"], 2, ("gpu",), None),
        ("bench --out a folder", ["bench", "--steps", "1", "--repeats", "1", "--warmup", "0", "--groups", "none", "--presets", "paper-joint",
                                  "--out", "{tmp}/new"], 2, ("folder",), None)]:
        cases.append(Case(label, "cli values", argv, rc=rc, says=says, setup=setup, fixtures=("run",) if "{run}" in str(argv) else (),
                          quick=label == "no command", timeout=90 if argv[:1] == ["bench"] else 240))
    return cases


def evaluate_out_cases() -> list[Case]:
    cases = []
    for label, out, rc, says, setup in [
        ("the run's checkpoint", "{run}/checkpoint.pt", 2, ("checkpoint.pt",), None),
        ("the run's config", "{run}/config.json", 2, ("config.json",), None),
        ("the run's metrics", "{run}/metrics.json", 2, ("metrics.json",), None),
        ("the run's history", "{run}/history.csv", 2, ("history.csv",), None),
        ("the run's lock", "{run}/.vmivae.lock", 2, ("lock",), None),
        ("a cached evaluation", "{run}/eval-smoke-generation.json", 2, ("exists already",), write("run/eval-smoke-generation.json", "{}")),
        ("the run's folder", "{run}", 2, ("folder",), None), ("a folder", "{tmp}/new", 2, ("folder",), None),
        ("/dev/null", "/dev/null", 2, ("/dev/null",), None), ("/dev/full", "/dev/full", 2, ("/dev/full",), None),
        ("/dev/stdout", "/dev/stdout", 2, ("/dev/stdout",), None), ("dash", "-", (0, 2), (), None), ("empty", "", 2, ("empty",), None),
        ("a symlink to the checkpoint", "{tmp}/link.json", 2, ("exists already",), symlink("link.json", "run/checkpoint.pt")),
        ("a user's file, no --overwrite", "{tmp}/mine.json", 2, ("overwrite",), write("mine.json", '{"mine": 1}')),
        ("under a file", "{tmp}/notes.txt/e.json", 2, ("notes.txt",), write("notes.txt", "x")),
        ("a missing folder", "{tmp}/new/no/such/e.json", (0, 2), (), None), ("/proc", "/proc/e.json", 2, ("/proc",), None),
        ("~ of no user", "~nosuchuserxyz/e.json", 2, ("no user",), None), ("a fine file", "{tmp}/new/e.json", 0, ("written to",), None),
        ("checkpoint with --overwrite", "{run}/checkpoint.pt", 2, ("checkpoint.pt",), None)]:
        extra = ["--overwrite"] if "overwrite" in label and "no --overwrite" not in label else []
        cases.append(Case(f"evaluate --out {label}", "evaluate --out", EVAL + ["--out", out, *extra], rc=rc, says=says, setup=setup))
    for label, run, says, setup in [("nonexistent", "{tmp}/nope", ("nope",), None), ("a file", "{tmp}/notes.txt", ("notes.txt",), write("notes.txt", "x")),
                                    ("an empty folder", "{tmp}/new", ("new",), None), ("dash", "-", ("-",), None),
                                    ("someone's folder", "{tmp}/mine", ("mine",), write("mine/thesis.tex", "work")),
                                    ("a run on custom images", "{custom}", ("vmivae.evaluate",), None)]:
        cases.append(Case(f"evaluate RUN_DIR {label}", "evaluate --out", ["evaluate", run, "--profile", "smoke", "--out", "{tmp}/new/e.json"],
                          says=says, setup=setup, fixtures=("custom",) if run == "{custom}" else (), quick=label == "nonexistent"))
    return cases


def resume_cases() -> list[Case]:
    resume = ["train", "--quiet", "--resume", "{run}"]
    cases = []
    for label, extra, rc, says, keep, setup in [
        ("a finished run as it is", [], (0, 2), ("steps",), True, None),
        ("a finished run, more steps", ["--set", "steps=6"], 0, ("continued",), False, None),
        ("a finished run, fewer steps", ["--set", "steps=2"], 2, ("steps",), True, None),
        ("a finished run, another lr", ["--set", "lr=0.1"], 2, ("lr",), True, None),
        ("a finished run, another dataset", ["--set", "dataset=shapes"], 2, ("dataset",), True, None),
        ("an unfinished run", [], 0, ("continued",), False, remove("run/metrics.json")),
        ("a run locked by a live process", ["--set", "steps=6"], 2, ("in use",), True, lambda t: lock_of_pid_1(t / "run")),
        ("a run locked on another host", ["--set", "steps=6"], 2, ("host",), True, lambda t: lock_of_pid_1(t / "run", "elsewhere.example")),
        ("a stale lock", ["--set", "steps=6"], 0, (), False, write("run/.vmivae.lock", json.dumps({"pid": 999999, "start": "1",
                                                                                                 "host": os.uname().nodename}))),
        ("with --preset", ["--preset", "paper-joint"], 2, ("--resume",), True, None),
        ("with --overwrite", ["--overwrite"], 2, ("--resume",), True, None)]:
        cases.append(Case(f"resume {label}", "resume/overwrite", resume + extra, rc=rc, says=says, keep=keep, setup=setup))
    for label, argv, rc, says, setup in [
        ("resume nonexistent", ["train", "--resume", "{tmp}/nope"], 2, ("nope",), None),
        ("resume a file", ["train", "--resume", "{tmp}/notes.txt"], 2, ("notes.txt",), write("notes.txt", "x")),
        ("resume an empty folder", ["train", "--resume", "{tmp}/new"], 2, ("new",), None),
        ("resume someone's folder", ["train", "--resume", "{tmp}/mine"], 2, ("mine",), write("mine/thesis.tex", "work")),
        ("resume empty", ["train", "--resume", ""], 2, ("empty",), None),
        ("overwrite a locked run", TRAIN + ["--out", "{run}", "--overwrite"], 2, ("in use",), lambda t: lock_of_pid_1(t / "run")),
        ("evaluate a locked run", EVAL + ["--out", "{tmp}/new/e.json"], 2, ("in use",), lambda t: lock_of_pid_1(t / "run")),
        ("overwrite a run with user files in it", TRAIN + ["--out", "{run}", "--overwrite"], 0, (), write("run/notes.md", "mine"))]:
        cases.append(Case(label, "resume/overwrite", argv, rc=rc, says=says, setup=setup, keep=label != "overwrite a run with user files in it"))
    return cases


DAMAGES = {
    "truncated checkpoint": (truncate("run/checkpoint.pt", 0.5), "checkpoint.pt"),
    "empty checkpoint": (write("run/checkpoint.pt", b""), "checkpoint.pt"),
    "foreign checkpoint": (foreign_checkpoint, "checkpoint.pt"),
    "no checkpoint": (remove("run/checkpoint.pt"), "checkpoint.pt"),
    "config not JSON": (write("run/config.json", "{not json"), "config.json"),
    "config a list": (write("run/config.json", "[1, 2]"), "config.json"),
    "config without its config": (edit_json("run/config.json", lambda d: d.pop("config")), "config.json"),
    "config with a bad value": (edit_json("run/config.json", lambda d: d["config"].update(steps=-1)), "steps"),
    "config with an unknown key": (edit_json("run/config.json", lambda d: d["config"].update(stepz=3)), "stepz"),
    "metrics not JSON": (write("run/metrics.json", "{nope"), "metrics.json"),
    "history garbage": (write("run/history.csv", b"\x00\xff garbage\n1,2,3\n"), "history.csv"),
}


# Damages a run does not depend on. history.csv is a readable copy of the checkpoint's history, never read back: evaluate
# and load_run succeed, and a resume rewrites it from the checkpoint. metrics.json is derived from the checkpoint: a resume
# asked for more steps trains on and writes it anew (evaluate and load_run, which read it, refuse it).
HARMLESS = {("evaluate", "history garbage"), ("load_run", "history garbage"), ("resume", "history garbage"), ("resume", "metrics not JSON")}


def damaged_cases() -> list[Case]:
    cases = []
    for label, (setup, word) in DAMAGES.items():
        for kind, argv, code in [("evaluate", EVAL + ["--out", "{tmp}/new/e.json"], None),
                                 ("resume", ["train", "--quiet", "--resume", "{run}", "--set", "steps=6"], None),
                                 ("load_run", None, "vmivae.load_run(run)")]:
            harmless = (kind, label) in HARMLESS
            says = ("continued",) if harmless and kind == "resume" else () if harmless else (word,)
            cases.append(Case(f"{kind}: {label}", "damaged run", argv, code=code, says=says, setup=setup, rc=0 if harmless else 2,
                              keep=not (harmless and kind == "resume")))  # a resume that trains on rewrites the run's files
    return cases


def _checkpointed(tmp: Path, pid: int) -> bool:
    return (tmp / "new" / "o" / "checkpoint.pt").is_file()


def _working(tmp: Path, pid: int, since: dict = {}) -> bool:  # noqa: B006 (remembers, per process, when it took the run's lock)
    """The command holds the run's lock (it has started its work, past the imports) since 2 s."""
    import time

    if (tmp / "run" / ".vmivae.lock").exists():
        since.setdefault(pid, time.monotonic())
    return pid in since and time.monotonic() - since[pid] > 2


def _study_training(tmp: Path, pid: int, since: dict = {}) -> bool:  # noqa: B006 (as _working, for any run of the study)
    """A run of the study holds its lock (it trains) since 2 s: the study's first checkpoint comes minutes later."""
    import time

    if any((tmp / "new" / "runs").glob("*/.vmivae.lock")):
        since.setdefault(pid, time.monotonic())
    return pid in since and time.monotonic() - since[pid] > 2


def signal_cases() -> list[Case]:
    long = ["train", "--profile", "smoke", "--set", "steps=100000", "--set", "checkpoint_every=2", "--quiet", "--out", "{tmp}/new/o"]
    return [
        # before Python has started, SIGINT ends the process as it ends any program (-2: nothing done, nothing to say);
        # from the moment vmivae's code runs it says so and exits 130 (the next case)
        Case("SIGINT at once", "signals", long, rc=(130, -2), signal=(signal.SIGINT, lambda t, p: True), fixtures=()),
        Case("SIGINT while torch loads", "signals", long, rc=130, says=("Ctrl-C",), signal=(signal.SIGINT, lambda t, p: torch_loading(p)),
             fixtures=()),
        Case("SIGINT while training", "signals", long, rc=130, says=("resume with",), signal=(signal.SIGINT, _checkpointed), fixtures=()),
        Case("SIGTERM while training", "signals", long, rc=143, says=("resume with",), signal=(signal.SIGTERM, _checkpointed), fixtures=()),
        Case("SIGINT while resuming", "signals", ["train", "--quiet", "--resume", "{run}", "--set", "steps=100000"], rc=130,
             says=("resume with",), keep=False, signal=(signal.SIGINT, _working)),
        Case("SIGINT while evaluating", "signals", EVAL + ["--out", "{tmp}/new/e.json"], rc=130, says=("interrupt",),
             signal=(signal.SIGINT, _working)),
        Case("SIGTERM while evaluating", "signals", EVAL + ["--out", "{tmp}/new/e.json"], rc=143, says=("SIGTERM",),
             signal=(signal.SIGTERM, _working)),
        Case("SIGINT in fit() from Python", "signals", code="vmivae.fit(vmivae.make_config('paper-joint', 'smoke', ['steps=100000', "
             "'checkpoint_every=2']), out=tmp / 'new' / 'o', progress=False)", rc=2, says=("resume with",),
             signal=(signal.SIGINT, _checkpointed), fixtures=()),
        Case("SIGINT during a study", "signals", ["study", "--runs-dir", "{tmp}/new/runs", "--results", "{tmp}/new/res", "--datasets", "mnist-5k",
                                                   "--seeds", "0", "--workers", "1"], rc=130, says=("interrupt",),
             signal=(signal.SIGINT, _study_training), fixtures=()),
    ]


def study_cases() -> list[Case]:
    study = ["study", "--runs-dir", "{tmp}/new/runs", "--results", "{tmp}/new/res"]
    return [Case(f"study {label}", "study", argv, rc=rc, says=says, setup=setup, fixtures=(), timeout=120, quick=label == "--runs-dir a file")
            for label, argv, rc, says, setup in [
                ("--runs-dir a file", ["study", "--runs-dir", "{tmp}/notes.txt"], 2, ("file",), write("notes.txt", "x")),
                ("--results a file", ["study", "--results", "{tmp}/notes.txt"], 2, ("file",), write("notes.txt", "x")),
                ("--runs-dir under a file", ["study", "--runs-dir", "{tmp}/notes.txt/r"], 2, ("file",), write("notes.txt", "x")),
                ("--results /proc", ["study", "--results", "/proc/r"], 2, ("/proc",), None),
                ("--runs-dir /sys", ["study", "--runs-dir", "/sys/r"], 2, ("/sys",), None),
                ("--runs-dir empty", ["study", "--runs-dir", ""], 2, ("empty",), None),
                ("--results ~ of no user", ["study", "--results", "~nosuchuserxyz/r"], 2, ("no user",), None),
                ("--name nosuch", study + ["--name", "nosuch"], 2, ("nosuch",), None),
                ("--datasets cifar", study + ["--datasets", "cifar"], 2, ("cifar",), None),
                ("--seeds x", study + ["--seeds", "x"], 2, ("seeds",), None), ("--seeds none", study + ["--seeds"], 2, ("seeds",), None),
                ("--workers 0", study + ["--workers", "0"], 2, ("workers",), None),
                ("--workers -1", study + ["--workers", "-1"], 2, ("workers",), None),
                ("--device gpu", study + ["--device", "gpu"], 2, ("gpu",), None),
                ("--device cuda", study + ["--device", "cuda"], 2, ("cuda",), None),
                ("--keep-going --name nosuch", study + ["--keep-going", "--name", "nosuch"], 2, ("nosuch",), None)]]


def all_cases() -> list[Case]:
    return cli_value_cases() + evaluate_out_cases() + resume_cases() + damaged_cases() + api_cases() + signal_cases() + study_cases()
