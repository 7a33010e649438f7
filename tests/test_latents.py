"""Latent distributions against torch.distributions, Monte Carlo and closed forms."""

import math

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from vmivae.latents import (
    STANDARD_NORMAL_ENTROPY,
    LatentSpec,
    categorical_kl_uniform,
    categorical_log_likelihood,
    gaussian_kl,
    gaussian_kl_per_dim,
    gaussian_log_likelihood,
    gaussian_sample,
    gumbel_noise,
    gumbel_softmax_sample,
    one_hot_argmax,
    sample_prior,
    temperature_at,
)


@pytest.fixture
def gen():
    return torch.manual_seed(0)


def test_gaussian_kl_matches_torch_distributions(gen):
    mu, logvar = torch.randn(64, 8), torch.randn(64, 8)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))
    torch.testing.assert_close(gaussian_kl_per_dim(mu, logvar), expected)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected.sum(1).mean())


def test_gaussian_kl_is_zero_only_at_the_prior():
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0
    assert gaussian_kl(torch.full((3, 4), 0.1), torch.zeros(3, 4)).item() > 0.0


def test_gaussian_log_likelihood_matches_normal_log_prob(gen):
    x, mean, log_std = torch.randn(32, 5), torch.randn(32, 5), torch.randn(32, 5)
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, log_std), Normal(mean, log_std.exp()).log_prob(x))


def test_gaussian_sample_has_the_posterior_moments_and_gradients(gen):
    mu = torch.tensor([1.5, -2.0]).repeat(200_000, 1).requires_grad_()
    logvar = torch.tensor([0.0, math.log(0.25)]).repeat(200_000, 1).requires_grad_()
    z = gaussian_sample(mu, logvar)
    torch.testing.assert_close(z.mean(0), torch.tensor([1.5, -2.0]), atol=0.01, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 0.5]), atol=0.01, rtol=0)
    z.sum().backward()
    assert mu.grad is not None and logvar.grad is not None


def test_monte_carlo_kl_agrees_with_closed_form(gen):
    mu, logvar = torch.tensor([[0.7, -0.3]]), torch.tensor([[-0.5, 0.4]])
    z = gaussian_sample(mu.repeat(400_000, 1), logvar.repeat(400_000, 1))
    q = Normal(mu, (0.5 * logvar).exp())
    mc = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(1).mean()
    assert abs(mc.item() - gaussian_kl(mu, logvar).item()) < 0.01


def test_categorical_kl_to_uniform_matches_torch_distributions(gen):
    logits = torch.randn(50, 10) * 3
    uniform = Categorical(logits=torch.zeros(50, 10))
    torch.testing.assert_close(categorical_kl_uniform(logits), kl_divergence(Categorical(logits=logits), uniform))
    assert categorical_kl_uniform(torch.zeros(4, 10)).abs().max().item() < 1e-6
    # a one-hot posterior is log K away from uniform
    assert abs(categorical_kl_uniform(torch.tensor([[100.0, 0.0, 0.0, 0.0]])).item() - math.log(4)) < 1e-5


def test_categorical_log_likelihood_matches_log_prob_for_one_hot(gen):
    logits = torch.randn(30, 6)
    k = torch.randint(6, (30,))
    one_hot = torch.nn.functional.one_hot(k, 6).float()
    torch.testing.assert_close(categorical_log_likelihood(one_hot, logits), Categorical(logits=logits).log_prob(k))


def test_gumbel_softmax_is_a_distribution_and_matches_softmax_frequencies(gen):
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])).repeat(200_000, 1)
    y = gumbel_softmax_sample(logits, tau=0.1)
    torch.testing.assert_close(y.sum(1), torch.ones(len(y)))
    assert (y >= 0).all()
    # The Gumbel-max trick: argmax of the sample is distributed as softmax(logits), whatever tau.
    freq = torch.bincount(y.argmax(1), minlength=4).float() / len(y)
    torch.testing.assert_close(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.005, rtol=0)
    # Low temperature: nearly one-hot; high temperature: nearly uniform.
    assert y.max(1).values.mean() > 0.95
    assert gumbel_softmax_sample(logits[:1000], tau=100.0).max(1).values.max() < 0.35


def test_gumbel_softmax_is_differentiable(gen):
    logits = torch.randn(8, 5, requires_grad=True)
    (gumbel_softmax_sample(logits, 0.5)[:, 0]).sum().backward()
    assert logits.grad.abs().sum() > 0


def test_one_hot_argmax():
    torch.testing.assert_close(one_hot_argmax(torch.tensor([[0.1, 2.0, -1.0]])), torch.tensor([[0.0, 1.0, 0.0]]))


def test_temperature_schedule_values():
    assert temperature_at(0) == 1.0
    # refreshed every 1000 steps: constant inside an interval
    assert temperature_at(999, rate=1e-3, tau_min=0.1) == 1.0
    assert temperature_at(1000, rate=1e-3, tau_min=0.1) == pytest.approx(math.exp(-1.0))
    assert temperature_at(1999, rate=1e-3, tau_min=0.1) == pytest.approx(math.exp(-1.0))
    # the paper's joint schedule reaches its floor 0.3 after ln(1/0.3)/1.5e-5 ~ 80k steps
    assert temperature_at(60_000, 1.0, 0.3, 1.5e-5, 1000) == pytest.approx(math.exp(-0.9))
    assert temperature_at(150_000, 1.0, 0.3, 1.5e-5, 1000) == 0.3
    # monotone non-increasing
    taus = [temperature_at(t, 1.0, 0.5, 1.5e-5, 1000) for t in range(0, 150_000, 500)]
    assert all(a >= b for a, b in zip(taus, taus[1:]))


def test_sample_prior_and_spec(gen):
    spec = LatentSpec(continuous=3, categorical=4)
    assert spec.dim == 7 and spec.n_params == 10
    z, c = sample_prior(spec, 40_000)
    assert z.shape == (40_000, 3) and c.shape == (40_000, 4)
    torch.testing.assert_close(c.sum(1), torch.ones(40_000))
    torch.testing.assert_close(c.mean(0), torch.full((4,), 0.25), atol=0.01, rtol=0)
    assert abs(z.std().item() - 1.0) < 0.01
    mu, logvar, logits = spec.split_params(torch.arange(10.0).repeat(2, 1))
    assert mu.tolist()[0] == [0, 1, 2] and logvar.tolist()[0] == [3, 4, 5] and logits.tolist()[0] == [6, 7, 8, 9]


def test_given_noise_is_the_noise_that_would_have_been_drawn():
    """A sample with its noise given (as a group of runs gives it) equals the sample that draws it, draw for draw."""
    mu, logvar, logits = torch.randn(5, 3), torch.randn(5, 3), torch.randn(5, 4)
    torch.manual_seed(1)
    drawn = gaussian_sample(mu, logvar), gumbel_softmax_sample(logits, 0.7)
    torch.manual_seed(1)
    eps, g = torch.randn(5, 3), gumbel_noise((5, 4))
    torch.testing.assert_close(gaussian_sample(mu, logvar, eps), drawn[0], rtol=0, atol=0)
    torch.testing.assert_close(gumbel_softmax_sample(logits, 0.7, g), drawn[1], rtol=0, atol=0)
    assert gumbel_noise((200_000,)).mean().item() == pytest.approx(0.5772, abs=0.01)  # the Euler-Mascheroni constant


def test_sample_prior_with_a_generator_is_reproducible_and_leaves_the_global_generator_alone():
    spec = LatentSpec(continuous=3, categorical=4)
    torch.manual_seed(2)
    state = torch.get_rng_state()
    first = sample_prior(spec, 6, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    second = sample_prior(spec, 6, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_standard_normal_entropy_constant():
    assert STANDARD_NORMAL_ENTROPY == pytest.approx(Normal(0.0, 1.0).entropy().item())
