"""Faults a careless user meets, in real processes: run locks, hard kills, stale files, a full disk, signals."""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

import vmivae
from vmivae.errors import OutputError, RunInUseError
from vmivae.runs.checkpoint import load_checkpoint
from vmivae.runs.files import pid_alive, remove_stale_temps, write_bytes, write_group
from vmivae.runs.folder import LOCK, RunFolder

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300


def cli(*args, timeout=TIMEOUT, script=None, cwd=None):
    """``vmivae ARGS`` in a fresh process (optionally through a script that patches something first)."""
    head = [sys.executable, str(script)] if script else [sys.executable, "-m", "vmivae"]
    return subprocess.run([*head, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def one_error(result, text):
    errors = [line for line in result.stderr.splitlines() if line.startswith("vmivae: error:")]
    assert result.returncode == 2 and len(errors) == 1 and text in errors[0], result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    return errors[0]


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    assert not pid_alive(proc.pid)
    return proc.pid


class Background:
    """A command in a real subprocess, its stderr read live so that the test can wait for what it says."""

    def __init__(self, *args, script=None):
        head = [sys.executable, str(script)] if script else [sys.executable, "-m", "vmivae"]
        self.proc = subprocess.Popen([*head, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.seen: list[str] = []
        self.reader = threading.Thread(target=lambda: self.seen.extend(iter(lambda: self.proc.stderr.read(1), "")), daemon=True)
        self.reader.start()

    @property
    def stderr(self) -> str:
        return "".join(self.seen)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while text not in self.stderr and self.proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert text in self.stderr, f"never saw {text!r}: {self.stderr[-1000:]}"

    def finish(self, timeout: float = 120) -> int:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.reader.join(timeout=5)
        return self.proc.returncode


def train_args(out, steps, *extra):
    return ["train", "--preset", "paper-joint", "--profile", "smoke", "--set", f"steps={steps}", "--set", "log_every=1", "--out", out, *extra]


# ---------------------------------------------------------------------------- one writer per run folder


def test_a_live_run_is_locked_and_a_killed_one_is_not(tmp_path):
    out = tmp_path / "run"
    run = Background(*train_args(out, 100_000, "--set", "checkpoint_every=3"))
    try:
        run.wait_for("loss=")
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        message = f"run folder {out} is in use by process {run.proc.pid} (vmivae train"
        one_error(cli(*train_args(out, 5, "--quiet")), message)
        one_error(cli(*train_args(out, 5, "--quiet", "--overwrite")), message)
        one_error(cli("train", "--resume", out, "--set", "steps=200000", "--quiet"), message)
        one_error(cli("evaluate", out, "--out", tmp_path / "e.json", "--profile", "smoke"), message)
        assert run.proc.poll() is None  # none of them disturbed the run
    finally:
        run.proc.send_signal(signal.SIGKILL)  # a hard kill: the lock stays behind, stale
        run.finish()
    assert (out / LOCK).exists() and RunFolder(out).holder() is None
    step = load_checkpoint(out / "checkpoint.pt")["step"]
    stale = out / f".checkpoint.pt.{dead_pid()}.abc123.tmp"  # what a kill during a checkpoint write leaves
    stale.write_bytes(b"half a checkpoint")
    result = cli("train", "--resume", out, "--set", f"steps={step + 2}", "--quiet")
    assert result.returncode == 0, result.stderr[-1500:]
    assert not (out / LOCK).exists() and not list(out.glob(".*.tmp"))
    assert vmivae.load_run(out).metrics["steps"] == step + 2


def test_a_run_killed_before_its_first_checkpoint_does_not_block_a_plain_rerun(tmp_path):
    out = tmp_path / "run"
    run = Background(*train_args(out, 100_000, "--set", "checkpoint_every=100000"))
    try:
        run.wait_for("loss=")
    finally:
        run.proc.send_signal(signal.SIGKILL)
        run.finish()
    assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing but the stale lock: no lone config.json
    result = cli(*train_args(out, 3, "--quiet"))
    assert result.returncode == 0, result.stderr[-1500:]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "history.csv", "metrics.json"]


def test_lock_records_and_stale_locks(tmp_path):
    folder = tmp_path / "run"
    with RunFolder(folder).lock("test", create=True) as lock:
        record = json.loads(lock.path.read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(RunInUseError, match="is in use by process"):
            RunFolder(folder).lock("second").acquire()  # a second claim in the same process is refused too
    assert not folder.exists()  # created for the run, nothing written: removed again
    folder.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cases = [({"pid": sleeper.pid, "host": socket.gethostname(), "time": 0}, True),   # alive: in use
                 ({"pid": dead_pid(), "host": socket.gethostname(), "time": 0}, False),  # its process is gone: stale
                 ({"pid": sleeper.pid, "host": socket.gethostname(), "start": "1", "time": 0}, False),  # id reused by another process
                 ({"pid": 1, "host": "elsewhere", "time": 0}, True)]  # another machine's: cannot be checked, so respected
        for record, in_use in cases:
            (folder / LOCK).write_text(json.dumps(record))
            if in_use:
                with pytest.raises(RunInUseError, match="is in use by"):
                    RunFolder(folder).lock("test").acquire()
            else:
                RunFolder(folder).lock("test").acquire().release()
                assert not (folder / LOCK).exists()
    finally:
        sleeper.kill()
        sleeper.wait(timeout=30)
    (folder / LOCK).write_text("")  # a lock left half-written long ago
    old = time.time() - 3600
    os.utime(folder / LOCK, (old, old))
    RunFolder(folder).lock("test").acquire().release()
    (folder / LOCK).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": 0}))  # leaked by this process
    RunFolder(folder).lock("test").acquire().release()


CLAIM = """
import sys, time
from pathlib import Path
from vmivae.errors import RunInUseError
from vmivae.runs.folder import RunFolder
folder, go = Path(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
try:
    lock = RunFolder(folder).lock("claim").acquire()
except RunInUseError:
    print("refused", flush=True)
else:
    print("took it", flush=True)
    time.sleep(3)
    lock.release()
"""


def test_of_several_processes_finding_one_stale_lock_only_one_takes_the_folder(tmp_path):
    folder, go = tmp_path / "run", tmp_path / "go"
    folder.mkdir()
    (folder / LOCK).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "time": 0}))
    script = tmp_path / "claim.py"
    script.write_text(CLAIM)
    procs = [subprocess.Popen([sys.executable, str(script), str(folder), str(go)], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    try:
        assert all(p.stdout.readline().strip() == "ready" for p in procs)
        go.touch()
        answers = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert answers == ["refused", "refused", "refused", "took it"]
    assert not (folder / LOCK).exists()


# ---------------------------------------------------------------------------- interrupted and failed resumes


def _finished_run(path: Path) -> dict[str, bytes]:
    vmivae.fit(vmivae.make_config("paper-joint", "smoke", {"steps": 3}), out=path, progress=False)
    return files(path)


def _patched_cli(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "patched_cli.py"
    script.write_text(textwrap.dedent(body) + "\nimport sys\nfrom vmivae.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    return script


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_resume_interrupted_while_it_starts_leaves_the_run_as_it_was(tmp_path, signum):
    run = tmp_path / "run"
    before = _finished_run(run)
    script = _patched_cli(tmp_path, """
        import sys, time
        import vmivae.training as training
        real = training.build_trainer
        def slow(*args):
            print("building the trainer", file=sys.stderr, flush=True)
            time.sleep(30)
            return real(*args)
        training.build_trainer = slow
    """)
    proc = Background("train", "--resume", run, "--set", "steps=50", script=script)
    proc.wait_for("building the trainer")
    proc.proc.send_signal(signum)
    assert proc.finish() == 128 + signum, proc.stderr[-1500:]
    assert f"interrupted by {signum.name} before training started; the run in {run} is unchanged" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert files(run) == before  # byte for byte, and no lock left behind


def test_a_finished_run_stays_finished_when_its_resume_is_stopped_before_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    before = _finished_run(run)
    proc = Background("train", "--resume", run, "--set", "steps=100000", "--set", "log_every=1", "--set", "checkpoint_every=100000")
    proc.wait_for("loss=")
    proc.proc.send_signal(signal.SIGINT)
    assert proc.finish() == 130, proc.stderr[-1500:]
    assert f"nothing of it was kept and the finished run in {run} is unchanged (step 3)" in proc.stderr
    assert files(run) == before


def test_the_resume_command_printed_on_an_interrupt_can_be_pasted(tmp_path):
    out = tmp_path / "my runs" / "it's mine"
    proc = Background(*train_args(out, 100_000, "--set", "checkpoint_every=1000"))
    proc.wait_for("loss=")
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.finish() == 143, proc.stderr[-1500:]
    command = proc.stderr.split("resume with: ", 1)[1].splitlines()[0].strip()
    assert command == f"vmivae train --resume {shlex.quote(str(out))}" and "'" in command
    step = load_checkpoint(out / "checkpoint.pt")["step"]
    vmivae_cmd = f"{shlex.quote(sys.executable)} -m {command} --set steps={step + 2} --quiet"  # pasted as printed
    result = subprocess.run(["bash", "-c", vmivae_cmd], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-1500:]
    assert vmivae.load_run(out).metrics["steps"] == step + 2


# ---------------------------------------------------------------------------- a full or unwritable disk

FULL_DISK = """
    import errno
    import vmivae.runs.files as files
    real, seen = files._stage, {{}}
    def failing(path, write):
        seen[path.name] = seen.get(path.name, 0) + 1
        if path.name == {name!r} and seen[path.name] == {nth}:
            def partial(f):
                f.write(b"x" * 4096)
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, partial)
        return real(path, write)
    files._stage = failing
"""


@pytest.mark.parametrize("name,nth,message", [
    ("checkpoint.pt", 2, "cannot write the checkpoint of step 4 to {out} (the disk is full: No space left on device); "
                         "the last good checkpoint is {out}/checkpoint.pt (step 2), which is intact"),
    ("metrics.json", 1, "cannot write {out}/metrics.json (the disk is full: No space left on device); "
                        "the last good checkpoint is {out}/checkpoint.pt (step 6), which is intact"),
])
def test_a_full_disk_names_the_cause_and_keeps_the_last_good_checkpoint(tmp_path, name, nth, message):
    out = tmp_path / "run"
    script = _patched_cli(tmp_path, FULL_DISK.format(name=name, nth=nth))
    result = cli(*train_args(out, 6, "--set", "checkpoint_every=2", "--quiet"), script=script)
    one_error(result, message.format(out=out))
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == (2 if name == "checkpoint.pt" else 6) and len(state["history"]) == state["step"]
    assert len((out / "history.csv").read_text().splitlines()) == state["step"] + 1  # the history matches its checkpoint
    assert not (out / "metrics.json").exists() and not list(out.glob(".*.tmp")) and not (out / LOCK).exists()
    result = cli("train", "--resume", out, "--quiet")  # space freed: the run finishes
    assert result.returncode == 0, result.stderr[-1500:]
    assert vmivae.load_run(out).metrics["steps"] == 6


def test_a_file_size_limit_stops_the_first_checkpoint_and_leaves_nothing(tmp_path):
    """A real limit (RLIMIT_FSIZE) rather than an injected error: every write past 64 KiB fails."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))

    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "vmivae", *train_args(out, 4, "--set", "checkpoint_every=2", "--quiet")],
                            capture_output=True, text=True, timeout=TIMEOUT, preexec_fn=limit)
    one_error(result, f"cannot write the checkpoint of step 2 to {out} (the file size limit is reached: File too large); no checkpoint was written")
    assert not out.exists()  # the folder this run created holds nothing, so it is gone again


def test_write_group_is_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    write_bytes(a, b"old a")
    write_bytes(b, b"old b")

    def fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_group([(a, lambda f: f.write(b"new a")), (b, fail)], remove=[a])
    assert a.read_bytes() == b"old a" and b.read_bytes() == b"old b" and sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]


def test_stale_temporary_files_are_removed_and_live_ones_kept(tmp_path):
    dead, live = tmp_path / f".x.json.{dead_pid()}.abc.tmp", tmp_path / f".x.json.{os.getpid()}.abc.tmp"
    dead.write_text("left by a killed process")
    live.write_text("being written right now")
    write_bytes(tmp_path / "x.json", b"{}")
    assert not dead.exists() and live.exists()
    assert remove_stale_temps(tmp_path) == []


def test_an_unwritable_run_folder_is_refused_before_training(tmp_path, monkeypatch):
    import errno

    import vmivae.runs.runlock

    run = tmp_path / "run"
    before = _finished_run(run)
    real_open = os.open

    def read_only(path, *args, **kwargs):  # what a read-only folder answers (root ignores permission bits, so inject it)
        if str(path).endswith(LOCK):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(vmivae.runs.runlock.os, "open", read_only)
    with pytest.raises(OutputError, match=f"cannot write to folder {run} .permission denied: Permission denied"):
        vmivae.resume(run, steps=6, progress=False)
    assert files(run) == before


# ---------------------------------------------------------------------------- the shapes cache


def test_a_corrupt_shapes_cache_is_rebuilt_not_reported(tmp_path):
    from vmivae.datasets.shapes import VERSION

    cache = tmp_path / "shapes" / f"shapes-32-v{VERSION}.pt"
    reference = vmivae.load("shapes", "train", tmp_path)
    for damage in (b"garbage", cache.read_bytes()[:5000], None):
        if damage is None:
            torch.save({"pixels": torch.zeros(3)}, cache)  # a PyTorch file of the wrong content
        else:
            cache.write_bytes(damage)
        again = vmivae.load("shapes", "train", tmp_path)
        assert torch.equal(again.images, reference.images)
        assert torch.load(cache, weights_only=True)["pixels"].shape[0] == 6144  # rewritten whole
