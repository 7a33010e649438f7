"""The run cache reuses a finished run exactly when its config hash (and checkpoint format) match."""

import json

import pytest

from vmivae.runs.run_cache import RunSpec, ensure

SPEC = RunSpec("paper-joint", "smoke", {"steps": 4, "seed": 0})
GENERATION = (("generation",),)


@pytest.fixture()
def cached(tmp_path):
    (folder,) = ensure([(SPEC, ())], tmp_path, device="cpu")  # no MI path sets: train only
    return tmp_path, folder.path


def _retrains(runs_dir, spec, capsys) -> bool:
    capsys.readouterr()
    ensure([(spec, ())], runs_dir, device="cpu")
    return "training 1 run(s)" in capsys.readouterr().err


def test_the_same_config_is_reused_and_a_changed_one_is_not(cached, capsys):
    runs_dir, path = cached
    stamp = (path / "checkpoint.pt").stat().st_mtime_ns
    assert not _retrains(runs_dir, SPEC, capsys)
    assert (path / "checkpoint.pt").stat().st_mtime_ns == stamp  # untouched
    changed = RunSpec("paper-joint", "smoke", {"steps": 4, "seed": 1})
    assert _retrains(runs_dir, changed, capsys)
    assert changed.directory(runs_dir) != path and path.is_dir()  # a new directory; the old run is kept


def test_the_hash_decides_not_the_directory_name(cached, capsys):
    runs_dir, path = cached
    info = json.loads((path / "config.json").read_text())
    info["config_hash"] = "0" * 12  # the stored config no longer matches the one asked for
    (path / "config.json").write_text(json.dumps(info))
    assert _retrains(runs_dir, SPEC, capsys)
    assert json.loads((path / "config.json").read_text())["config_hash"] == SPEC.config.hash()


@pytest.mark.parametrize("damage", ["unfinished", "older format"])
def test_unfinished_or_older_runs_are_trained_again(cached, capsys, damage):
    runs_dir, path = cached
    if damage == "unfinished":
        (path / "metrics.json").unlink()
    else:
        info = json.loads((path / "config.json").read_text())
        info["checkpoint_format"] -= 1
        (path / "config.json").write_text(json.dumps(info))
    assert _retrains(runs_dir, SPEC, capsys)
    assert (path / "metrics.json").is_file()


def test_evaluations_are_cached_next_to_the_run(cached, capsys):
    runs_dir, path = cached
    capsys.readouterr()
    (folder,) = ensure([(path, GENERATION)], runs_dir, settings="smoke")  # a trained run's folder: evaluated, not trained
    assert "training 0 run(s), evaluating 1 run(s)" in capsys.readouterr().err
    first = json.loads((path / "eval-smoke-generation.json").read_text())
    assert folder.path == path and folder.read_evaluation("smoke", ("generation",)) == first
    (again,) = ensure([(SPEC, GENERATION)], runs_dir, device="cpu", settings="smoke")  # the same run asked by its spec
    assert again.path == path and again.read_evaluation("smoke", ("generation",)) == first
    assert "vmivae:" not in capsys.readouterr().err  # nothing to train or evaluate


def test_a_config_asked_twice_is_trained_once_and_leaves_nothing_for_later_requests(tmp_path, capsys):
    renamed = RunSpec("paper-joint", "smoke", {"steps": 4, "seed": 0}, name="same-config-other-name")
    plan = [(SPEC, GENERATION), (renamed, (("generation",), ("reconstruction",)))]
    first = ensure(plan, tmp_path, device="cpu", settings="smoke")
    assert "training 1 run(s), evaluating 1 run(s)" in capsys.readouterr().err  # one config, both path sets
    assert first[0].path == first[1].path
    assert sorted(p.name for p in tmp_path.glob("*/eval-*.json")) == ["eval-smoke-generation.json", "eval-smoke-reconstruction.json"]
    assert [f.path for f in ensure(plan, tmp_path, device="cpu", settings="smoke")] == [f.path for f in first]
    assert "vmivae:" not in capsys.readouterr().err  # the later request found everything in the cache


def test_two_workers_evaluate_each_run_after_training_it(tmp_path):
    other = RunSpec("paper-joint", "smoke", {"steps": 4, "seed": 1})
    plan = [(SPEC, (("generation",), ("reconstruction",))), (other, GENERATION)]
    folders = ensure(plan, tmp_path, device="cpu", workers=2, settings="smoke")
    assert len({f.path for f in folders}) == 2
    for folder, (_, path_sets) in zip(folders, plan):
        trained = folder.metrics.stat().st_mtime_ns
        evaluated = [folder.evaluation_file("smoke", p).stat().st_mtime_ns for p in path_sets]
        assert min(evaluated) > trained


# ---------------------------------------------------------------------------- a failing run is said at once


# costs most, so it is scheduled first; it fails at step 2
BAD = RunSpec("paper-joint", "smoke", {"steps": 10**6, "lr": 1e6, "seed": 0, "log_every": 2, "batch_size": 16}, name="diverges")


def test_a_failing_run_stops_the_work_at_once_and_says_how_to_rerun(tmp_path, capsys):
    from vmivae.runs.run_cache import RunFailed

    with pytest.raises(RunFailed, match=r"1 of 4 task\(s\) failed, 3 left undone \(first: training diverges-smoke-\w+: 'loss' became "
                                        r"non-finite.*reused: fix the cause and run the same command again$"):
        ensure([(BAD, GENERATION), (SPEC, GENERATION)], tmp_path, device="cpu", settings="smoke")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("vmivae: training 2 run(s)") and len(lines) == 2
    assert lines[1].startswith("vmivae: training diverges-smoke-") and lines[1].endswith("at step 2; no checkpoint was written; lower lr or "
                                                                                       "set grad_clip, then retrain or resume; stopping the other work")
    assert not SPEC.directory(tmp_path).exists()  # never started


def test_keep_going_does_the_other_work_then_fails_and_the_next_call_reuses_it(tmp_path, capsys):
    from vmivae.runs.run_cache import RunFailed

    with pytest.raises(RunFailed, match=r"^1 of 2 task\(s\) failed \(first: training diverges"):
        ensure([(BAD, ()), (SPEC, ())], tmp_path, device="cpu", keep_going=True)
    err = capsys.readouterr().err
    assert "failed: 'loss' became non-finite" in err and "going on with the other runs" in err and "1/2 trained" in err
    ensure([(SPEC, ())], tmp_path, device="cpu")
    assert "vmivae:" not in capsys.readouterr().err  # trained by the failed call: nothing left to do


def test_with_workers_a_failure_stops_the_run_in_progress_and_starts_nothing_new(tmp_path, capsys):
    from vmivae.runs.run_cache import RunFailed

    others = [RunSpec("paper-joint", "smoke", {"steps": 5000, "seed": s}) for s in (1, 2, 3)]  # minutes each: none can finish
    with pytest.raises(RunFailed, match=r"^1 of 4 task\(s\) failed, 3 left undone \(first: training diverges"):
        ensure([(BAD, ())] + [(o, ()) for o in others], tmp_path, device="cpu", workers=2)
    assert "failed: 'loss' became non-finite" in capsys.readouterr().err
    assert not any((o.directory(tmp_path) / "metrics.json").exists() for o in others)  # the one in progress was stopped
    assert not others[1].directory(tmp_path).exists() and not others[2].directory(tmp_path).exists()  # the queue never started


def _workers() -> list[int]:
    """This process's pool workers (spawned children running multiprocessing.spawn)."""
    import os
    from pathlib import Path

    children = [int(pid) for task in Path(f"/proc/{os.getpid()}/task").iterdir() for pid in (task / "children").read_text().split()]
    return [pid for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_a_killed_worker_is_one_line_and_stops_the_work(tmp_path, capsys):
    import os
    import signal
    import threading
    import time

    from vmivae.runs.run_cache import RunFailed

    long = [RunSpec("paper-joint", "smoke", {"steps": 5000, "seed": s}) for s in (7, 8)]

    def kill_a_worker_once_training():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any((o.directory(tmp_path) / "checkpoint.pt").is_file() for o in long):
            time.sleep(0.2)
        os.kill(_workers()[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_a_worker_once_training, daemon=True)
    killer.start()
    with pytest.raises(RunFailed, match=r"its worker process ended abruptly \(killed by a signal, or out of memory\)"):
        ensure([(o, ()) for o in long], tmp_path, device="cpu", workers=2)
    assert not any((o.directory(tmp_path) / "metrics.json").exists() for o in long)  # stopped, not waited for
    err = capsys.readouterr().err
    assert "failed: its worker process ended abruptly" in err and "Traceback" not in err
