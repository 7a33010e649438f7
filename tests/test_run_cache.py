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
