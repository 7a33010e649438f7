"""The MI estimator: known-MI channels, warm starts from a run's Q, the refit and the stop, the intervals."""

import contextlib
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from vmivae.latents import LatentSpec
from vmivae.measure.mi import SETTINGS, _bootstrap, _per_sample_ce, component_names, estimate_mi, estimate_mi_refits, t_interval
from vmivae.measure.q_fit import Source, calibrate, gain_is_small, refit_gaussian, refit_head, warm_start
from vmivae.measure.validation import SPEC, CleanChannel, ConfusedChannel, validate_estimator
from vmivae.models import QNetwork
from vmivae.runs.run import load_run

FAST = replace(SETTINGS["quick"], n_eval=2000, n_boot=300)
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


def test_warm_start_reads_the_code_as_the_runs_q_does(smoke_runs):
    """paper-joint's Q reads the code and dims 0-1: those heads answer as the run's Q; the rest start at a bound of 0."""
    run = load_run(smoke_runs["paper-joint"])
    q = QNetwork((1, 28, 28), 10, 16)
    assert warm_start(q, run) == ["categorical", "z0", "z1"]
    assert warm_start(QNetwork((1, 28, 28), 10, 16), run.vae) == []  # a bare VAE carries no Q
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        ours, theirs = q.eval()(x), run.q.eval()(x)
    torch.testing.assert_close(ours.logits, theirs.logits)
    torch.testing.assert_close(ours.mean[:, :2], theirs.mean)
    torch.testing.assert_close(ours.log_std[:, :2], theirs.log_std)
    assert torch.equal(ours.mean[:, 2:], torch.zeros(8, 14)) and torch.equal(ours.log_std[:, 2:], torch.zeros(8, 14))


def test_the_refit_is_exact_and_never_loosens_the_fit():
    """calibrate changes only Q's last layer: the cross-entropies it returns are those of the changed Q, and on
    its samples they are below those of a badly scaled Q (over-confident logits, too wide Gaussians)."""
    torch.manual_seed(0)
    q = QNetwork((1, 28, 28), 10, 2)
    with torch.no_grad():
        q.net[-2].weight[:10] *= 50
        q.net[-2].bias[12:] += 2.0
    source = Source(CleanChannel(0.5), SPEC, "cpu", fixed_seed=1)
    before = torch.cat([_per_sample_ce(q.eval(), *batch) for batch in source.passes(600)]).double()
    after = calibrate(q, source, 600, contextlib.nullcontext())
    with torch.no_grad():
        rescored = torch.cat([_per_sample_ce(q.eval(), *batch) for batch in source.passes(600)]).double()
    torch.testing.assert_close(after, rescored, atol=1e-4, rtol=1e-4)
    assert (after.mean(0) < before.mean(0) - 0.1).all(), (before.mean(0), after.mean(0))


def test_the_gaussian_refit_recovers_the_mean_map_and_the_spread():
    """Samples from N(1.3 m + 0.2, exp(0.6 l - 0.5)): the refit finds those four numbers per dim; with a constant
    log-std it returns one spread, the residuals' RMS."""
    g = torch.Generator().manual_seed(0)
    m, log_std = torch.randn(4000, 3, generator=g).double(), 0.5 * torch.randn(4000, 3, generator=g).double()
    z = 1.3 * m + 0.2 + torch.exp(0.6 * log_std - 0.5) * torch.randn(4000, 3, generator=g).double()
    a, c, alpha, beta = refit_gaussian(m, log_std, z)
    for got, want in ((a, 1.3), (c, 0.2), (alpha, 0.6), (beta, -0.5)):
        torch.testing.assert_close(got, torch.full((3,), want, dtype=torch.double), atol=0.06, rtol=0)
    a, c, alpha, beta = refit_gaussian(m, torch.zeros_like(log_std), z)
    assert torch.equal(alpha, torch.ones(3, dtype=torch.double))  # a constant log-std: only its offset matters
    torch.testing.assert_close(beta, 0.5 * ((z - a * m - c) ** 2).mean(0).log())


def test_the_head_refit_reads_what_the_features_hold():
    """An untrained Q's random features still carry the code and z0 of the clean channel: refitting its last layer
    on fresh samples gives a far tighter bound on unseen samples than the calibration alone, and on the validation
    samples no component is looser than with the trained head."""
    torch.manual_seed(0)
    q = QNetwork((1, 28, 28), 10, 2)
    fit, val, test = (Source(CleanChannel(0.5), SPEC, "cpu", fixed_seed=seed) for seed in (1, 2, 3))
    none = contextlib.nullcontext()
    calibrated = calibrate(q, val, 500, none).mean(0)
    on_test = torch.cat([_per_sample_ce(q.eval(), *b) for b in test.passes(1000)]).double().mean(0)
    refit_head(q, fit, 3000, val, 500, none)
    q.eval()
    with torch.no_grad():
        refitted = torch.cat([_per_sample_ce(q, *b) for b in val.passes(500)]).double().mean(0)
        on_test_after = torch.cat([_per_sample_ce(q, *b) for b in test.passes(1000)]).double().mean(0)
    assert (refitted <= calibrated + 1e-4).all(), (calibrated, refitted)
    assert on_test_after[0] < on_test[0] - 0.3 and on_test_after[1] < on_test[1] - 0.1, (on_test, on_test_after)


def test_the_stop_weighs_the_gain_against_its_noise():
    signs = torch.tensor([1.0, -1.0]).repeat(200)  # 400 paired gains with an exact mean and std
    now = torch.zeros(400)
    assert gain_is_small(now, now + 0.05 + signs, tol=0.005, noise_z=2.0)  # 0.05 < 2 * 1 / sqrt(400)
    assert not gain_is_small(now, now + 0.5 + signs, tol=0.005, noise_z=2.0)
    assert not gain_is_small(now, now + 0.05 + 0.01 * signs, tol=0.005, noise_z=2.0)  # small but sure
    assert gain_is_small(now, now + 0.004, tol=0.005, noise_z=0.0)  # below tol


def test_warm_start_is_at_least_as_tight_as_a_longer_cold_fit(smoke_runs):
    """On a real run, the quick estimator (warm start, refits, half the steps) is at least as tight as a cold Q
    trained twice as long for every component, within its interval, and stays below the code's entropy (a smoke
    run's own Q has had only 20 steps, so this is the least a warm start gives; scripts/bench_mi.py measures
    the quick runs)."""
    run = load_run(smoke_runs["paper-joint"])
    warm = estimate_mi(run, settings=replace(SETTINGS["quick"], max_steps=100, min_steps=100, eval_every=25, n_eval=1000, n_boot=200, n_fit=2000))
    cold = estimate_mi(run, settings=replace(SETTINGS["quick-500"], max_steps=200, min_steps=200, n_val=500, n_eval=1000, n_boot=200))
    assert warm.warm_start == ["categorical", "z0", "z1"] and cold.warm_start == [] and warm.q_steps == 100
    for name, c in warm.components.items():
        assert c.nats >= cold.components[name].nats - (c.ci95[1] - c.ci95[0]) / 2, (name, c.nats, cold.components[name].nats)
    assert warm.components["categorical"].ci95[0] <= math.log(10)


def test_fixed_vae_gets_a_bound_for_every_component(smoke_runs):
    run = load_run(smoke_runs["paper-joint"])
    estimate = estimate_mi(run, settings="smoke")
    assert list(estimate.components) == component_names(run.vae.latent) == ["categorical"] + [f"z{j}" for j in range(16)]
    cat = estimate.components["categorical"]
    assert cat.entropy == pytest.approx(math.log(10)) and cat.path == "generation"
    assert cat.nats <= cat.entropy + 0.01
    assert estimate.q_steps > 0 and estimate.n_eval == 512 and estimate.warm_start == ["categorical", "z0", "z1"]
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
    assert set(estimate.components) == {"categorical", "z0", "z1"} and estimate.warm_start == []
    with pytest.raises(ValueError, match="needs its latent spec"):
        estimate_mi(decoder, settings="smoke")
    with pytest.raises(ValueError, match="unknown path"):
        estimate_mi(decoder, LatentSpec(2, 10), path="prior", settings="smoke")


def test_the_t_interval_covers_the_mean_95_percent_of_the_time():
    """Over 4000 draws of three N(1, 2^2) values (the refits' case), the interval holds 1 in 95% of them."""
    rng = np.random.default_rng(0)
    hits = [lo <= 1.0 <= hi for lo, hi in (t_interval(rng.normal(1.0, 2.0, 3))[2] for _ in range(4000))]
    assert 0.935 <= np.mean(hits) <= 0.965
    assert t_interval(np.array([1.0, 3.0]))[2] == pytest.approx((2 - 12.7062, 2 + 12.7062), abs=1e-4)  # t(0.975, 1) * sqrt(2) / sqrt(2)


def test_the_bootstrap_interval_covers_the_mean_about_95_percent_of_the_time():
    """The percentile bootstrap of 200 exponential(1) samples: near-nominal coverage of the true mean 1."""
    rng = np.random.default_rng(1)
    hits = []
    for i in range(300):
        lo, hi = _bootstrap(rng.exponential(1.0, (200, 1)), 200, i)
        hits.append(lo[0] <= 1.0 <= hi[0])
    assert 0.88 <= np.mean(hits) <= 0.99


def test_refits_report_spread_across_seeds():
    result = estimate_mi_refits(CleanChannel(0.5), n_fits=2, settings="smoke", latent=LatentSpec(2, 10))
    assert set(result) == {"categorical", "z0", "z1"}
    z0 = result["z0"]
    assert len(z0["fits"]) == 2 and z0["mean"] == pytest.approx(np.mean(z0["fits"]))


def test_estimation_leaves_the_callers_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    estimate_mi(ConfusedChannel(0.3), LatentSpec(2, 10), settings="smoke")
    assert torch.equal(torch.rand(3), expected)


def test_the_reconstruction_source_encodes_each_image_once_and_keeps_its_codes(smoke_runs):
    """Q's training draws the same real images many times; the frozen encoder is run once per image and the
    codes drawn are exactly the encoder's hard codes of those images (posterior mean, argmax category)."""
    from vmivae import load

    vae = load_run(smoke_runs["paper-joint"]).vae.eval()
    images = load("mnist-5k", "test").images[:100]
    encoded = []

    def encode(x):
        encoded.append(len(x))
        return vae.encode(x)

    source = Source(vae.decode, vae.latent, torch.device("cpu"), encode, images)
    torch.manual_seed(0)
    for _ in range(20):  # 1,280 draws of 100 images
        source.batch(64)
    assert sum(encoded) == 100
    with torch.no_grad():
        mu, _, logits = vae.encode(images[40:50])
        _, k, z = source.batch(10, start=40)
    assert sum(encoded) == 100
    assert torch.allclose(z, mu, atol=1e-5) and torch.equal(k, logits.argmax(1))
