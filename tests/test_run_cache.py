"""The run cache reuses a finished run exactly when its config hash (and checkpoint format) match."""

import json

import pytest

from vmivae.runs.run_cache import RunSpec, ensure_evaluations, ensure_measured_runs, ensure_runs, prefetch

SPEC = RunSpec("paper-joint", "smoke", {"steps": 4, "seed": 0})


@pytest.fixture()
def cached(tmp_path):
    run = ensure_runs([SPEC], tmp_path, device="cpu")[0]
    return tmp_path, run.path


def _retrains(runs_dir, spec, capsys) -> bool:
    capsys.readouterr()
    ensure_runs([spec], runs_dir, device="cpu")
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
    run = ensure_runs([SPEC], runs_dir, device="cpu")[0]
    first = ensure_evaluations([run], settings="smoke")[0]
    assert "evaluating 1 run(s)" in capsys.readouterr().err
    assert (path / "eval-smoke-generation.json").is_file()
    assert ensure_evaluations([run], settings="smoke")[0] == first
    assert "evaluating" not in capsys.readouterr().err


def test_prefetch_trains_a_config_once_and_leaves_nothing_for_later_requests(tmp_path, capsys):
    renamed = RunSpec("paper-joint", "smoke", {"steps": 4, "seed": 0}, name="same-config-other-name")
    plan = [(SPEC, (("generation",),)), (renamed, (("generation",), ("reconstruction",)))]
    assert prefetch(plan, tmp_path, device="cpu", settings="smoke") == 1  # one config, both path sets
    assert sorted(p.name for p in tmp_path.glob("*/eval-*.json")) == ["eval-smoke-generation.json", "eval-smoke-reconstruction.json"]
    capsys.readouterr()
    assert prefetch(plan, tmp_path, device="cpu", settings="smoke") == 0
    ensure_measured_runs([SPEC], tmp_path, device="cpu", settings="smoke")
    assert "training" not in capsys.readouterr().err  # the later request found everything in the cache


def test_prefetch_wants_a_path_set_for_every_run(tmp_path):
    with pytest.raises(ValueError, match="at least one set of MI paths"):
        prefetch([(SPEC, ())], tmp_path, device="cpu")


def test_prefetch_with_two_workers_evaluates_each_run_after_training_it(tmp_path):
    other = RunSpec("paper-joint", "smoke", {"steps": 4, "seed": 1})
    plan = [(SPEC, (("generation",), ("reconstruction",))), (other, (("generation",),))]
    assert prefetch(plan, tmp_path, device="cpu", workers=2, settings="smoke") == 2
    for spec, path_sets in plan:
        run_dir = spec.directory(tmp_path)
        trained = (run_dir / "metrics.json").stat().st_mtime_ns
        evaluated = [(run_dir / f"eval-smoke-{p[0]}.json").stat().st_mtime_ns for p in path_sets]
        assert min(evaluated) > trained
