"""Config, presets, profiles and the key=value syntax."""

import json

import pytest

import vmivae
from vmivae.config import Config, from_dict, parse_assignment
from vmivae.errors import ConfigError
from vmivae.presets import list_presets, list_profiles, load_preset, make_config


def test_presets_and_profiles_exist():
    assert {"paper-gaussian", "paper-gaussian-baseline", "paper-joint", "paper-joint-baseline"} <= set(list_presets())
    assert {"smoke", "quick", "full"} <= set(list_profiles())


def test_paper_joint_matches_the_paper():
    c = make_config("paper-joint", "full")
    assert (c.continuous, c.categorical, c.mi_categorical, c.mi_dims) == (16, 10, True, (0, 1))
    assert (c.lambda_cat, c.lambda_cont, c.kl_weight, c.lr, c.batch_size, c.steps) == (0.01, 0.0005, 0.005, 1e-4, 124, 150_000)
    assert c.mi_source == "reconstruction" and c.tau_min == 0.3 and c.dataset == "mnist"


def test_the_paper_presets_keep_the_papers_objective_and_vmi_joint_adds_the_entropy():
    paper, vmi = make_config("paper-joint", "quick"), make_config("vmi-joint", "quick")
    assert paper.entropy_weight == 0 and not paper.aggregate_entropy
    assert vmi.aggregate_entropy and vmi.entropy_weight == vmi.lambda_cat == paper.lambda_cat
    assert vmi.replace(aggregate_entropy=False) == paper  # the one difference
    # the twin is the very same run as the paper's baseline, so the run cache trains it once
    assert make_config("vmi-joint-baseline", "quick").hash() == make_config("paper-joint-baseline", "quick").hash()


def test_aggregate_entropy_is_checked():
    with pytest.raises(ConfigError, match="aggregate_entropy has no effect on the generation path"):
        make_config("vmi-joint", "smoke", {"mi_source": "generation"})
    with pytest.raises(ConfigError, match="set mi_categorical: true"):
        make_config("paper-gaussian", "smoke", {"aggregate_entropy": True})
    assert make_config("vmi-joint", "smoke", {"lambda_entropy": 0.2}).entropy_weight == 0.2


def test_paper_gaussian_matches_the_paper():
    c = make_config("paper-gaussian", "full")
    assert (c.continuous, c.categorical, c.mi_dims, c.mi_source, c.lambda_cont) == (32, None, (0, 1), "both", 0.0005)


@pytest.mark.parametrize("preset", ["paper-joint", "paper-gaussian", "paper-joint-fashion"])
def test_baseline_twins_differ_only_in_lambda(preset):
    vmi, base = make_config(preset, "quick"), make_config(f"{preset}-baseline", "quick")
    assert base.lambda_cat == base.lambda_cont == 0.0
    assert base.replace(lambda_cat=vmi.lambda_cat, lambda_cont=vmi.lambda_cont) == vmi


def test_layers_override_in_order():
    c = make_config("paper-joint", "smoke", ["lambda_cat=0.05", "mi_dims=[0, 3]", "categorical=4"])
    assert (c.lambda_cat, c.mi_dims, c.categorical, c.steps) == (0.05, (0, 3), 4, make_config(profile="smoke").steps)
    assert make_config("paper-joint-fashion", "quick").dataset == "fashion-mnist"  # preset beats profile
    assert make_config("paper-joint", "quick").dataset == "mnist-5k"


def test_unknown_names_list_the_valid_choices():
    with pytest.raises(ConfigError, match=r"unknown preset 'paper-jont' \(did you mean 'paper-joint'\?\); valid: .*paper-gaussian"):
        make_config("paper-jont")
    with pytest.raises(ConfigError, match="unknown profile 'fast'.*valid: full, medium, quick, smoke"):
        make_config("paper-joint", "fast")
    with pytest.raises(ConfigError, match=r"unknown config key 'lamda_cat' \(did you mean 'lambda_cat'\?\).*batch_size"):
        make_config("paper-joint", overrides={"lamda_cat": 1})
    with pytest.raises(ConfigError, match="unknown dataset 'mnsit'.*mnist-5k"):
        make_config(overrides={"dataset": "mnsit"})


@pytest.mark.parametrize("key,value,message", [
    ("batch_size", "abc", "must be an integer, got 'abc'"),
    ("batch_size", 12.5, "must be an integer"),
    ("lr", "fast", "must be a number"),
    ("lr", "inf", "must be a finite number"),
    ("lambda_cat", float("nan"), "must be a finite number"),
    ("compile", 1, "must be true or false"),
    ("mi_dims", [0, "a"], "must be a list of integers"),
    ("steps", None, "cannot be null"),
    ("lambda_cat", -0.1, "lambda_cat must be non-negative"),
    ("tau_min", 2.0, r"tau_min \(2.0\) must not exceed tau0"),
    ("batch_size", 0, "batch_size must be at least 2"),
    ("steps", 0, "steps must be at least 1"),
    ("mi_dims", [0, 40], r"mi_dims \[40\] are outside"),
    ("mi_source", "prior", "unknown mi_source 'prior'"),
    ("device", "tpu", "unknown device 'tpu'"),
])
def test_bad_values_are_one_clear_sentence(key, value, message):
    with pytest.raises(ConfigError, match=message):
        make_config("paper-joint", "smoke", {key: value})


def test_inconsistent_settings_are_refused():
    with pytest.raises(ConfigError, match="no categorical code"):
        make_config("paper-gaussian", overrides={"mi_categorical": True})
    with pytest.raises(ConfigError, match="lambda_cont > 0 needs Gaussian dims"):
        make_config("paper-joint", overrides={"mi_dims": []})


def test_exponent_notation_is_a_number():
    assert make_config("paper-joint", overrides=["lambda_cat=1e-3", "lr=2E-4"]).lambda_cat == 0.001


def test_parse_assignment():
    assert parse_assignment("lambda_cat=0.01") == ("lambda_cat", 0.01)
    assert parse_assignment("mi_dims=[0, 1]") == ("mi_dims", [0, 1])
    assert parse_assignment("categorical=null") == ("categorical", None)
    assert parse_assignment("dataset=mnist-5k") == ("dataset", "mnist-5k")
    for bad in ("lambda_cat", "=3", "nokey=1"):
        with pytest.raises(ConfigError):
            parse_assignment(bad)


def test_round_trip_and_hash():
    c = make_config("paper-joint", "quick")
    again = from_dict(json.loads(json.dumps(c.to_dict())))
    assert again == c and again.hash() == c.hash()
    assert c.replace(device="cpu").hash() == c.hash()  # operational keys do not change the hash
    assert c.replace(seed=1).hash() != c.hash()


def test_preset_files_are_mappings_of_known_keys():
    for name in list_presets():
        assert set(load_preset(name)) <= set(Config.__dataclass_fields__)


def test_public_api_is_importable():
    for name in vmivae.__all__:
        assert hasattr(vmivae, name)
