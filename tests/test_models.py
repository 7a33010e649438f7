"""Shapes of the VAE and Q for every supported image size and latent spec; the matrix-product layers against the plain ones."""

import numpy as np
import pytest
import torch
from torch import nn

from vmivae.latents import LatentSpec, sample_prior
from vmivae.models import VAE, QNetwork, plan_trunk
from vmivae.perf.fast_layers import FewChannelConvTranspose2d, WholeMapConv2d, use_matmul_layers


@pytest.mark.parametrize("image_shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64), (1, 32, 32)])
@pytest.mark.parametrize("latent", [LatentSpec(32), LatentSpec(16, 10), LatentSpec(2, 3)])
def test_vae_shapes(image_shape, latent):
    torch.manual_seed(0)
    vae = VAE(image_shape, latent)
    x = torch.rand(5, *image_shape) * 2 - 1
    out = vae(x, tau=0.7, n_prior=3)
    assert out.x_hat.shape == x.shape and out.x_prior.shape == (3, *image_shape)
    assert out.x_hat.abs().max() <= 1.0
    assert out.mu.shape == out.logvar.shape == out.z.shape == (5, latent.continuous)
    if latent.categorical:
        assert out.logits.shape == out.c.shape == (5, latent.categorical)
        assert out.c_prior.shape == (3, latent.categorical)
    else:
        assert out.logits is None and out.c is None and out.c_prior is None
    vae.eval()
    assert vae.reconstruct(x).shape == x.shape
    mu, c = vae.deterministic_codes(x)
    assert mu.shape == (5, latent.continuous)


@pytest.mark.parametrize("image_shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
@pytest.mark.parametrize("categorical,continuous", [(10, 2), (None, 2), (3, 0), (None, 32)])
def test_q_shapes(image_shape, categorical, continuous):
    q = QNetwork(image_shape, categorical, continuous)
    out = q(torch.rand(4, *image_shape))
    assert (out.logits is None) == (categorical is None)
    if categorical:
        assert out.logits.shape == (4, categorical)
    if continuous:
        assert out.mean.shape == out.log_std.shape == (4, continuous)
    else:
        assert out.mean is None


@pytest.mark.parametrize("n_prior", [0, 4])
def test_a_pass_with_its_noise_given_is_the_pass_that_draws_it(n_prior):
    """The noise in the order VAE.forward draws it (what a group of runs hands each member) gives the same pass, bit for bit."""
    from vmivae.latents import gumbel_noise, sample_prior

    torch.manual_seed(0)
    vae, latent = VAE((1, 28, 28), LatentSpec(6, 4)), LatentSpec(6, 4)
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    torch.manual_seed(1)
    drawn = vae(x, 0.7, n_prior=n_prior)
    torch.manual_seed(1)
    noise = {"eps": torch.randn(5, 6), "gumbel": gumbel_noise((5, 4))}
    if n_prior:
        noise["z_prior"], noise["c_prior"] = sample_prior(latent, n_prior)
    given = vae(x, 0.7, n_prior=n_prior, noise=noise)
    for a, b in zip(given, drawn):
        assert (a is None and b is None) or torch.equal(a, b)


def test_reference_architecture_for_mnist():
    """28x28: two stride-2 convs to a 7x7x128 map, FC 512; decoder from 64x7x7 (the reference's layers)."""
    assert plan_trunk(28) == ((64, 128), 7)
    vae = VAE((1, 28, 28), LatentSpec(16, 10))
    assert vae.encoder.head[1].in_features == 128 * 7 * 7 and vae.encoder.head[1].out_features == 512
    assert vae.decoder.start == (64, 7, 7)
    assert plan_trunk(64) == ((64, 128, 256), 8)


@pytest.mark.parametrize("shape,message", [
    ((1, 28, 32), "must be square"),
    ((2, 28, 28), "1 or 3 channels"),
    ((1, 6, 6), "at least 8x8"),
    ((1, 9, 9), "cannot be halved twice"),
])
def test_bad_image_shapes_are_clear_errors(shape, message):
    with pytest.raises(ValueError, match=message):
        VAE(shape, LatentSpec(4))


def test_q_needs_a_component():
    with pytest.raises(ValueError, match="at least one component"):
        QNetwork((1, 28, 28), None, 0)


def test_the_networks_are_built_from_plain_layers():
    """What the book shows: nn.Conv2d / nn.ConvTranspose2d, no matrix-product forms until the trainer asks for them."""
    vae, q = VAE((1, 28, 28), LatentSpec(16, 10)), QNetwork((1, 28, 28), 10, 2)
    kinds = {type(m) for net in (vae, q) for m in net.modules()}
    assert nn.Conv2d in kinds and nn.ConvTranspose2d in kinds and not kinds & {WholeMapConv2d, FewChannelConvTranspose2d}


@pytest.mark.parametrize("c_in,c_out,size", [(32, 1, 14), (32, 3, 16), (64, 32, 7)])
def test_fold_transposed_convolution_equals_the_convolution_kernel(c_in, c_out, size):
    torch.manual_seed(0)
    fast, reference = FewChannelConvTranspose2d(c_in, c_out, 4, 2, 1), nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)
    reference.load_state_dict(fast.state_dict())  # the same parameters, so checkpoints are interchangeable
    x = torch.randn(3, c_in, size, size, requires_grad=True)
    torch.testing.assert_close(fast(x), reference(x), rtol=1e-5, atol=1e-5)
    (g_fast,) = torch.autograd.grad(fast(x).pow(2).sum(), x)
    (g_ref,) = torch.autograd.grad(reference(x).pow(2).sum(), x)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-4)


def test_whole_map_convolution_equals_the_convolution_kernel():
    torch.manual_seed(0)
    fast, reference = WholeMapConv2d(16, 8, 7), nn.Conv2d(16, 8, 7)
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(4, 16, 7, 7)
    torch.testing.assert_close(fast(x), reference(x), rtol=1e-5, atol=1e-5)
    wider = torch.randn(2, 16, 9, 9)  # a map larger than the kernel: the ordinary convolution
    torch.testing.assert_close(fast(wider), reference(wider))


@pytest.mark.parametrize("image_shape", [(1, 28, 28), (3, 64, 64)])
def test_matmul_layers_give_the_plain_networks_outputs_and_gradients(image_shape):
    """Swapped in place: the same parameters and state_dict keys, the same outputs and gradients to float rounding."""
    torch.manual_seed(0)
    plain_vae, plain_q = VAE(image_shape, LatentSpec(6, 4)), QNetwork(image_shape, 4, 2)
    fast_vae, fast_q = VAE(image_shape, LatentSpec(6, 4)), QNetwork(image_shape, 4, 2)
    fast_vae.load_state_dict(plain_vae.state_dict())
    fast_q.load_state_dict(plain_q.state_dict())
    keys = list(fast_vae.state_dict()), list(fast_q.state_dict())
    use_matmul_layers(fast_vae, fast_q, None)
    assert (list(fast_vae.state_dict()), list(fast_q.state_dict())) == keys
    assert type(fast_vae.decoder.deconv[-1]) is FewChannelConvTranspose2d
    assert [type(m) for m in fast_q.net if isinstance(m, nn.Conv2d)][-2:] == [WholeMapConv2d, WholeMapConv2d]
    assert all(type(m) is nn.Conv2d for m in fast_vae.encoder.trunk if isinstance(m, nn.Conv2d))  # padded: left as they are
    latent = torch.randn(5, 10)
    x = torch.rand(5, *image_shape) * 2 - 1
    outputs = {}
    for name, vae, q in (("plain", plain_vae, plain_q), ("fast", fast_vae, fast_q)):
        images = vae.decode(latent)
        loss = images.pow(2).mean() + sum(t.pow(2).mean() for t in q(x))
        grads = torch.autograd.grad(loss, [*vae.decoder.parameters(), *q.parameters()])
        outputs[name] = (images, *q(x), *grads)
    for fast, plain in zip(outputs["fast"], outputs["plain"]):
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)


def test_the_config_selects_the_layers_a_run_trains_with():
    """matmul_layers (default true) swaps the matrix-product forms in; false trains the plain layers, to float rounding the same run."""
    from vmivae.datasets import load
    from vmivae.presets import make_config
    from vmivae.trainer import Trainer

    config = make_config("paper-joint", "smoke", {"batch_size": 8, "amp": "none", "channels_last": False})
    assert config.matmul_layers and config.replace(matmul_layers=False).hash() == config.hash()  # operational: the same run
    runs = {}
    for on in (True, False):  # a trainer draws its noise from the global generator it seeded: one at a time
        runs[on] = Trainer(config.replace(matmul_layers=on), load("mnist-5k"), torch.device("cpu"))
        runs[on].train(1)  # step 1: the initial weights and the same noise (Adam would amplify rounding after it)
    assert type(runs[True].q.net[-2]) is WholeMapConv2d and type(runs[False].q.net[-2]) is nn.Conv2d
    assert type(runs[True].vae.decoder.deconv[-1]) is FewChannelConvTranspose2d
    np.testing.assert_allclose(runs[True].history_rows(), runs[False].history_rows(), rtol=1e-4, atol=1e-6)


def test_category_grid_blocks_differ_by_the_code_alone():
    torch.manual_seed(0)
    vae = VAE((1, 28, 28), LatentSpec(6, 4)).eval()
    grid = vae.category_grid(3, seed=5)
    assert grid.shape == (12, 1, 28, 28)
    z, _ = sample_prior(vae.latent, 3, "cpu", torch.Generator().manual_seed(5))
    for k in range(4):
        code = torch.nn.functional.one_hot(torch.full((3,), k), 4).float()
        torch.testing.assert_close(grid[3 * k:3 * k + 3], vae.decode(vae.latent.join(z, code)))
    assert not torch.equal(grid[:3], grid[3:6])  # another code, another image from the same Gaussian codes
    torch.testing.assert_close(vae.category_grid(3, seed=5), grid)  # the seed fixes the Gaussian codes
    with pytest.raises(ValueError, match="no categorical code"):
        VAE((1, 28, 28), LatentSpec(6)).category_grid(3)
