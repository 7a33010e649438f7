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
    # the aggregate code entropy, written out here from its definition: H(mean over the batch of softmax(logits))
    probs = torch.softmax(out.logits, dim=1).mean(0) if out.logits is not None else None
    if probs is not None and objective.source == "both":
        probs = 0.5 * probs + 0.5 / probs.numel()
    entropy = -(probs * probs.log()).sum() if probs is not None else 0.0
    loss_vae = (recon + objective.kl_weight * (kl_cont + kl_cat) + objective.lambda_cat * ce_cat + objective.lambda_cont * ce_cont
                - objective.entropy_weight * entropy)
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
    ("paper-joint", {"aggregate_entropy": True}),  # + lambda_cat * H(c): two backward passes
    ("paper-joint", {"aggregate_entropy": True, "lambda_cont": 0.01}),  # + H(c) on the single-backward path
    ("paper-joint", {"aggregate_entropy": True, "mi_source": "both", "lambda_entropy": 0.03}),  # H of the mixture with the prior
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


@pytest.mark.parametrize("step_mode", ["fused", "alternating"])
def test_the_entropy_term_changes_only_the_encoder_gradient(step_mode):
    """H(c) depends on the encoder's logits alone: with it the encoder's gradient moves, the decoder's and Q's do not."""
    grads = {}
    for on in (False, True):
        config = make_config("paper-joint", "smoke", {"batch_size": 16, "aggregate_entropy": on, "lambda_entropy": 0.5, "step_mode": step_mode})
        torch.manual_seed(0)
        vae, q = build_networks((1, 28, 28), config)
        stepper = _frozen_stepper(vae, q, config)
        stepper.mode = step_mode
        torch.manual_seed(3)
        stepper(torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1, torch.tensor(0.7))
        grads[on] = {"encoder": vae.encoder.head[-1].weight.grad.clone(), "decoder": vae.decoder.mlp[0].weight.grad.clone(),
                     "q": q.net[-2].weight.grad.clone()}
    assert not torch.allclose(grads[True]["encoder"], grads[False]["encoder"])
    torch.testing.assert_close(grads[True]["decoder"], grads[False]["decoder"])
    if step_mode == "fused":  # the alternating step trains Q on a second forward pass, which the term does not enter either
        torch.testing.assert_close(grads[True]["q"], grads[False]["q"])


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
