"""The MI estimator: known-MI channels, fixed models, reproducibility."""

import math

import pytest
import torch

from vmivae.latents import LatentSpec
from vmivae.measure.mi import EstimatorSettings, component_names, estimate_mi, estimate_mi_refits
from vmivae.measure.validation import CleanChannel, ConfusedChannel, validate_estimator
from vmivae.runs.run import load_run

FAST = EstimatorSettings(max_steps=300, min_steps=100, batch_size=64, eval_every=50, n_val=500, n_eval=2000, n_boot=300)
TOLERANCE = 0.06  # nats


@pytest.fixture(scope="module")
def validation():
    return validate_estimator(FAST)


def test_estimates_are_close_to_the_known_mi(validation):
    errors = (validation["estimate"] - validation["truth"]).abs()
    assert (errors < TOLERANCE).all(), validation.to_string()


def test_estimates_are_never_significantly_above_the_truth(validation):
    """It is a lower bound: the 95% interval may reach the truth but must not lie entirely above it."""
    assert (validation["lo"] <= validation["truth"] + 1e-3).all(), validation.to_string()


def test_channel_truths():
    assert CleanChannel(0.5).truth() == {"categorical": math.log(10), "z0": pytest.approx(0.5 * math.log(5)), "z1": 0.0}
    assert 0 < ConfusedChannel(0.3).truth()["categorical"] < math.log(10)
    assert ConfusedChannel(0.9).truth()["categorical"] == pytest.approx(0.0, abs=1e-12)  # eps = 9/10: uniform rows


def test_fixed_vae_gets_a_bound_for_every_component(smoke_runs):
    run = load_run(smoke_runs["paper-joint"])
    estimate = estimate_mi(run, settings="smoke")
    assert list(estimate.components) == component_names(run.vae.latent) == ["categorical"] + [f"z{j}" for j in range(16)]
    cat = estimate.components["categorical"]
    assert cat.entropy == pytest.approx(math.log(10)) and cat.path == "generation"
    assert cat.ci95[0] <= cat.nats <= cat.ci95[1]
    assert cat.nats <= cat.entropy + 0.01
    assert estimate.q_steps > 0 and estimate.n_eval == 512
    again = estimate_mi(run, settings="smoke")
    assert again.components["z3"].nats == estimate.components["z3"].nats  # seeded: the same numbers


def test_reconstruction_path_uses_encoder_codes_of_real_images(smoke_runs):
    from vmivae import load

    run = load_run(smoke_runs["paper-joint"])
    train, test = load("mnist-5k", "train"), load("mnist-5k", "test")
    estimate = estimate_mi(run, path="reconstruction", data=train, eval_data=test, settings="smoke")
    cat = estimate.components["categorical"]
    assert cat.path == "reconstruction" and 0 <= cat.entropy <= math.log(10) + 1e-9
    with pytest.raises(ValueError, match="needs a VAE"):
        estimate_mi(run, path="reconstruction", settings="smoke")


def test_any_decoder_callable_can_be_measured():
    decoder = CleanChannel(1.0)
    estimate = estimate_mi(decoder, LatentSpec(2, 10), settings="smoke")
    assert set(estimate.components) == {"categorical", "z0", "z1"}
    with pytest.raises(ValueError, match="needs its latent spec"):
        estimate_mi(decoder, settings="smoke")
    with pytest.raises(ValueError, match="unknown path"):
        estimate_mi(decoder, LatentSpec(2, 10), path="prior", settings="smoke")


def test_refits_report_spread_across_seeds():
    result = estimate_mi_refits(CleanChannel(0.5), n_fits=2, settings="smoke", latent=LatentSpec(2, 10))
    assert set(result) == {"categorical", "z0", "z1"}
    z0 = result["z0"]
    assert len(z0["fits"]) == 2 and z0["ci95"][0] <= z0["mean"] <= z0["ci95"][1]


def test_estimation_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    estimate_mi(ConfusedChannel(0.3), LatentSpec(2, 10), settings="smoke")
    assert torch.equal(torch.rand(3), expected)
