"""The fused step computes exactly the gradients of the two separate objectives."""

import pytest
import torch

from vmivae.objectives import mi_batch, mi_cross_entropies
from vmivae.presets import make_config
from vmivae.steps import Stepper, build_networks, scale_grad, vae_forward
from vmivae.trainer import objective_of


def _separate_gradients(vae, q, objective, x, tau, seed):
    """The definition: VAE grads of loss_vae (Q fixed), Q grads of CE on detached images and targets."""
    torch.manual_seed(seed)
    out, recon, kl_cont, kl_cat = vae_forward(vae, x, tau, objective)
    images, c, z = mi_batch(out, objective.source, objective.components)
    ce_cat, ce_cont = mi_cross_entropies(*q(images), c, z)
    loss_vae = recon + objective.kl_weight * (kl_cont + kl_cat) + objective.lambda_cat * ce_cat + objective.lambda_cont * ce_cont
    vae_grads = torch.autograd.grad(loss_vae, list(vae.parameters()), retain_graph=True)
    detach = lambda t: None if t is None else t.detach()  # noqa: E731
    q_ce = sum(mi_cross_entropies(*q(images.detach()), detach(c), detach(z)))
    q_grads = torch.autograd.grad(q_ce, list(q.parameters()))
    return vae_grads, q_grads


def _frozen_stepper(vae, q, config) -> Stepper:
    """A fused Stepper whose optimisers run with lr = 0: the weights stay put, so gradients and outputs can be checked after a step."""
    opt_v = torch.optim.Adam(vae.parameters(), lr=0.0)
    opt_q = torch.optim.Adam(q.parameters(), lr=0.0)
    return Stepper(vae, q, list(vae.parameters()), list(q.parameters()), objective_of(config), opt_v, opt_q, "fused")


@pytest.mark.parametrize("preset,overrides", [
    ("paper-joint", {}),  # two different lambdas: two restricted backward passes
    ("paper-joint", {"lambda_cont": 0.01}),  # one shared lambda: the single-backward path
    ("paper-joint-baseline", {}),  # lambda = 0: Q's input detached
    ("paper-gaussian", {}),  # reconstructions and generations
    ("paper-joint", {"mi_source": "generation", "recon_loss": "bernoulli"}),
])
def test_fused_gradients_equal_the_separate_computations(preset, overrides):
    config = make_config(preset, "smoke", {"batch_size": 16, **overrides})
    torch.manual_seed(0)
    vae, q = build_networks((1, 28, 28), config)
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    tau = torch.tensor(0.7)
    expected_vae, expected_q = _separate_gradients(vae, q, objective_of(config), x, tau, seed=3)
    stepper = _frozen_stepper(vae, q, config)
    torch.manual_seed(3)
    stepper(x, tau)
    for p, g in zip(vae.parameters(), expected_vae):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-7)
    for p, g in zip(q.parameters(), expected_q):
        torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-7)


def test_the_mi_term_reaches_the_encoder_only_through_lambda():
    """With lambda > 0 the VAE gradient differs from the baseline's; with lambda = 0 it is the ELBO's."""
    grads = {}
    for preset in ("paper-joint", "paper-joint-baseline"):
        config = make_config(preset, "smoke", {"batch_size": 16})
        torch.manual_seed(0)
        vae, q = build_networks((1, 28, 28), config)
        x = torch.rand(16, 1, 28, 28) * 2 - 1
        grads[preset] = _separate_gradients(vae, q, objective_of(config), x, torch.tensor(0.7), seed=3)[0][0]
    assert not torch.allclose(grads["paper-joint"], grads["paper-joint-baseline"])


def test_scale_grad_is_identity_forward_and_scales_backward():
    x = torch.randn(5, requires_grad=True)
    y = scale_grad(x, 0.25)
    torch.testing.assert_close(y, x)
    (y * 2).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((5,), 0.5))


@pytest.mark.parametrize("recon_loss", ["mse", "bernoulli", "gaussian"])
def test_the_logged_recon_mse_is_the_mean_squared_error_whatever_the_loss(recon_loss):
    from vmivae.steps import METRICS

    config = make_config("paper-joint", "smoke", {"batch_size": 8, "recon_loss": recon_loss})
    torch.manual_seed(0)
    vae, q = build_networks((1, 28, 28), config)
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    stepper = _frozen_stepper(vae, q, config)  # a second forward with the same noise reproduces the step's x_hat
    torch.manual_seed(1)
    metrics = dict(zip(METRICS, stepper(x, torch.tensor(0.7)).tolist()))
    torch.manual_seed(1)
    out, recon, _, _ = vae_forward(vae, x, torch.tensor(0.7), objective_of(config))
    expected = torch.nn.functional.mse_loss(out.x_hat, x).item()
    assert metrics["recon_mse"] == pytest.approx(expected, rel=1e-5)
    assert metrics["recon"] == pytest.approx(recon.item(), rel=1e-5)
    assert (metrics["recon"] == pytest.approx(expected, rel=1e-5)) == (recon_loss == "mse")
