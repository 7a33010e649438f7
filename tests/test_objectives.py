"""The VMI objective: reconstruction terms, cross-entropies and the MI lower bound on known channels."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal

from vmivae.latents import LatentSpec
from vmivae.models import VAE
from vmivae.objectives import (
    LossTerms,
    LossWeights,
    MIComponents,
    aggregate_code_entropy,
    categorical_cross_entropy,
    elbo_terms,
    gaussian_cross_entropy,
    mi_batch,
    mi_cross_entropies,
    mi_lower_bound,
    prior_entropy,
    q_loss,
    reconstruction_loss,
    vae_loss,
)

K = 10


@pytest.fixture
def codes():
    torch.manual_seed(0)
    return F.one_hot(torch.randint(K, (4096,)), K).float()


def test_bound_equals_entropy_for_a_perfect_q_on_an_invertible_channel(codes):
    q_logits = 60.0 * codes  # Q reads the code straight off the (invertible) observation
    bound = mi_lower_bound(prior_entropy(categorical=K), categorical_cross_entropy(q_logits, codes))
    assert bound == pytest.approx(math.log(K), abs=1e-6)


def test_bound_is_zero_when_q_is_the_prior(codes):
    bound = mi_lower_bound(prior_entropy(categorical=K), categorical_cross_entropy(torch.zeros_like(codes), codes))
    assert bound == pytest.approx(0.0, abs=1e-6)


def test_bound_is_below_entropy_for_an_imperfect_q(codes):
    q_logits = 1.0 * codes  # right direction, under-confident
    assert 0.0 < mi_lower_bound(prior_entropy(categorical=K), categorical_cross_entropy(q_logits, codes)) < math.log(K)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_fitted_gaussian_q_recovers_the_gaussian_channel_mi(sigma):
    """c ~ N(0, 1), x = c + sigma * noise: I(c; x) = 0.5 log(1 + 1 / sigma^2).

    Q(c | x) = N(a x + b, exp(s)^2) is fitted by Adam on 20k samples and scored on 200k fresh ones; the
    optimum (a = 1 / (1 + sigma^2), exp(2 s) = sigma^2 / (1 + sigma^2)) attains the MI exactly, so the
    bound must land within 0.02 nats of it and never significantly above.
    """
    torch.manual_seed(1)
    truth = 0.5 * math.log(1 + 1 / sigma**2)
    params = torch.zeros(3, requires_grad=True)  # a, b, s
    opt = torch.optim.Adam([params], lr=0.05)
    c = torch.randn(20_000, 1)
    x = c + sigma * torch.randn_like(c)
    for _ in range(600):
        opt.zero_grad()
        gaussian_cross_entropy(params[0] * x + params[1], params[2].expand_as(x), c).backward()
        opt.step()
    c = torch.randn(200_000, 1)
    x = c + sigma * torch.randn_like(c)
    with torch.no_grad():
        ce = gaussian_cross_entropy(params[0] * x + params[1], params[2].expand_as(x), c)
    bound = mi_lower_bound(prior_entropy(continuous=1), ce).item()
    assert bound == pytest.approx(truth, abs=0.02)
    assert bound < truth + 0.01


def test_cross_entropies_match_torch_distributions():
    torch.manual_seed(2)
    mean, log_std, z = torch.randn(64, 3), torch.randn(64, 3) * 0.3, torch.randn(64, 3)
    expected = -Normal(mean, log_std.exp()).log_prob(z).sum(1).mean()
    torch.testing.assert_close(gaussian_cross_entropy(mean, log_std, z), expected)
    logits, c = torch.randn(64, 5), torch.softmax(torch.randn(64, 5), 1)  # relaxed targets are allowed
    torch.testing.assert_close(categorical_cross_entropy(logits, c), -(c * logits.log_softmax(1)).sum(1).mean())
    ce_cat, ce_cont = mi_cross_entropies(None, mean, log_std, None, z)
    assert ce_cat.item() == 0.0 and ce_cont.item() == pytest.approx(expected.item())


def test_reconstruction_losses():
    torch.manual_seed(3)
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    x_pre = torch.randn(8, 1, 28, 28)
    x_hat = torch.tanh(x_pre)
    torch.testing.assert_close(reconstruction_loss(x_hat, x_pre, x, "mse"), ((x_hat - x) ** 2).mean())
    gauss = -Normal(x_hat, 1.0).log_prob(x).sum() / 8
    torch.testing.assert_close(reconstruction_loss(x_hat, x_pre, x, "gaussian"), gauss)
    # Bernoulli with mean (tanh(a) + 1) / 2 on targets in [0, 1]
    bern = -Bernoulli(probs=(x_hat + 1) / 2, validate_args=False).log_prob((x + 1) / 2).sum() / 8
    torch.testing.assert_close(reconstruction_loss(x_hat, x_pre, x, "bernoulli"), bern, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="unknown reconstruction loss 'l1'"):
        reconstruction_loss(x_hat, x_pre, x, "l1")


@pytest.mark.parametrize("source,n", [("reconstruction", 6), ("generation", 6), ("both", 12)])
def test_mi_batch_selects_images_and_targets(source, n):
    torch.manual_seed(4)
    vae = VAE((1, 28, 28), LatentSpec(4, 3))
    out = vae(torch.rand(6, 1, 28, 28) * 2 - 1, 0.5, n_prior=6 if source != "reconstruction" else 0)
    images, c, z = mi_batch(out, source, MIComponents(categorical=True, dims=(0, 2)))
    assert images.shape == (n, 1, 28, 28) and c.shape == (n, 3) and z.shape == (n, 2)
    if source == "generation":  # prior codes are hard one-hot and are exactly what was decoded
        torch.testing.assert_close(c, out.c_prior)
        torch.testing.assert_close(z, out.z_prior[:, [0, 2]])
    if source == "reconstruction":
        torch.testing.assert_close(z, out.z[:, [0, 2]])
    images, c, z = mi_batch(out, source, MIComponents(categorical=False, dims=(1,)))
    assert c is None and z.shape == (n, 1)
    if source == "reconstruction":
        with pytest.raises(ValueError, match="no prior codes"):
            mi_batch(out, "generation", MIComponents(True, ()))


def test_aggregate_code_entropy_is_the_entropy_of_the_batch_mean_posterior():
    probs = torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.1, 0.1, 0.2, 0.6]]) + 1e-9
    mean = probs.mean(0) / probs.mean(0).sum()  # [0.4, 0.15, 0.15, 0.3]
    expected = -(mean * mean.log()).sum()
    torch.testing.assert_close(aggregate_code_entropy(probs.log()), expected, rtol=1e-5, atol=1e-6)
    # confident posteriors on one category: H = 0, although every per-image posterior is sharp
    collapsed = torch.tensor([[20.0, 0.0, 0.0]]).repeat(8, 1)
    assert aggregate_code_entropy(collapsed).item() == pytest.approx(0.0, abs=1e-6)
    # confident posteriors spread evenly over the categories: H = log K
    spread = 20.0 * torch.eye(4).repeat(2, 1)
    assert aggregate_code_entropy(spread).item() == pytest.approx(math.log(4), abs=1e-6)


def test_aggregate_code_entropy_on_the_other_paths():
    collapsed = torch.tensor([[20.0, 0.0, 0.0, 0.0]]).repeat(8, 1)
    # generation: the codes come from the uniform prior, exactly log K whatever the encoder does
    assert aggregate_code_entropy(collapsed, "generation").item() == pytest.approx(math.log(4))
    # both: half the codes from the collapsed encoder, half uniform -> p = (0.625, 0.125, 0.125, 0.125)
    p = torch.tensor([0.625, 0.125, 0.125, 0.125])
    assert aggregate_code_entropy(collapsed, "both").item() == pytest.approx(float(-(p * p.log()).sum()), abs=1e-5)


def test_the_batch_estimate_of_the_aggregate_entropy_is_biased_low_as_documented():
    """E[H(batch mean)] < H(population mean) (Jensen); for hard posteriors the gap is (K - 1) / (2 B) to first order."""
    torch.manual_seed(0)
    k, batch = 10, 124
    logits = 30.0 * F.one_hot(torch.randint(k, (200 * batch,)), k).float()  # hard posteriors, nearly uniform aggregate
    population = aggregate_code_entropy(logits).item()
    batches = torch.stack([aggregate_code_entropy(chunk) for chunk in logits.split(batch)]).mean().item()
    assert population - batches == pytest.approx((k - 1) / (2 * batch), rel=0.15)



def _train_toy_code(true_bound: bool, seed: int, steps: int = 300) -> int:
    """A 4-way code of four separable clusters; Q reads the point itself (a perfect reconstruction).

    Q starts with a slight preference for category 0: CE alone is then lowered by moving codes onto fewer
    categories, and nothing in it pulls them back. Returns the categories in use (>= 2 of 200 points).
    """
    torch.manual_seed(seed)  # the Gumbel noise
    g = torch.Generator().manual_seed(0)
    corners = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    x = corners.repeat_interleave(50, 0) + 0.1 * torch.randn(200, 2, generator=g)
    encoder, q = torch.nn.Linear(2, 4), torch.nn.Linear(2, 4)
    with torch.no_grad():
        for layer in (encoder, q):
            layer.weight.copy_(0.01 * torch.randn(4, 2, generator=g))
            layer.bias.zero_()
        q.bias[0] = 1.0
    opt = torch.optim.Adam([*encoder.parameters(), *q.parameters()], lr=0.05)
    for _ in range(steps):
        logits = encoder(x)
        c = F.gumbel_softmax(logits, tau=0.5, hard=False)  # the code the decoder would see
        ce = categorical_cross_entropy(q(x), c)
        loss = ce - aggregate_code_entropy(logits) if true_bound else ce  # lambda (CE - H) vs the paper's lambda CE
        opt.zero_grad()
        loss.backward()
        opt.step()
    return int((torch.bincount(encoder(x).argmax(1), minlength=4) >= 2).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_on_a_toy_problem_the_paper_loss_drops_categories_and_the_true_bound_keeps_every_one(seed):
    assert _train_toy_code(true_bound=False, seed=seed) < 4  # measured: 3, 2, 3 categories
    assert _train_toy_code(true_bound=True, seed=seed) == 4


def test_the_vae_loss_weighs_each_term_as_the_paper_and_the_true_bound_say():
    terms = LossTerms(*(torch.tensor(v) for v in (0.5, 3.0, 2.0, 1.5, 4.0, 0.8)))  # recon, KL_cont, KL_cat, CE_cat, CE_cont, H(c)
    paper = vae_loss(terms, LossWeights(kl_weight=0.005, lambda_cat=0.01, lambda_cont=0.0005, entropy_weight=0.0))
    assert paper.item() == pytest.approx(0.5 + 0.005 * 5.0 + 0.01 * 1.5 + 0.0005 * 4.0)
    true_bound = vae_loss(terms, LossWeights(0.005, 0.01, 0.0005, entropy_weight=0.01))  # - lambda (H - CE): minus lambda times the bound
    assert true_bound.item() == pytest.approx(0.5 + 0.005 * 5.0 - 0.01 * (0.8 - 1.5) + 0.0005 * 4.0)
    assert vae_loss(terms, LossWeights(*(torch.tensor(w) for w in (0.005, 0.01, 0.0005, 0.01)))).item() == pytest.approx(true_bound.item())
    assert q_loss(terms.ce_cat, terms.ce_cont).item() == pytest.approx(5.5)  # Q's loss carries no lambda


def test_elbo_terms_are_the_reconstruction_and_the_closed_form_kls():
    torch.manual_seed(5)
    vae = VAE((1, 28, 28), LatentSpec(4, 3))
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    out = vae(x, 0.5)
    recon, kl_cont, kl_cat = elbo_terms(out, x, "gaussian")
    torch.testing.assert_close(recon, reconstruction_loss(out.x_hat, out.x_pre, x, "gaussian"))
    posterior, prior = Normal(out.mu, (0.5 * out.logvar).exp()), Normal(0.0, 1.0)
    torch.testing.assert_close(kl_cont, torch.distributions.kl_divergence(posterior, prior).sum(1).mean())
    p = out.logits.softmax(1)
    torch.testing.assert_close(kl_cat, (p * (p * 3).log()).sum(1).mean())
    no_code = VAE((1, 28, 28), LatentSpec(4))(x, 0.5)
    assert elbo_terms(no_code, x)[2].item() == 0.0


