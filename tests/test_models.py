"""Shapes of the VAE and Q for every supported image size and latent spec."""

import pytest
import torch

from vmivae.errors import ConfigError
from vmivae.latents import LatentSpec
from vmivae.models import VAE, QNetwork, plan_trunk


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
    with pytest.raises(ConfigError, match=message):
        VAE(shape, LatentSpec(4))


def test_q_needs_a_component():
    with pytest.raises(ConfigError, match="at least one component"):
        QNetwork((1, 28, 28), None, 0)


@pytest.mark.parametrize("c_in,c_out,size", [(32, 1, 14), (32, 3, 16), (64, 32, 7)])
def test_fold_transposed_convolution_equals_the_convolution_kernel(c_in, c_out, size):
    from torch import nn

    from vmivae.models import SingleChannelConvTranspose2d

    torch.manual_seed(0)
    fast, reference = SingleChannelConvTranspose2d(c_in, c_out, 4, 2, 1), nn.ConvTranspose2d(c_in, c_out, 4, 2, 1)
    reference.load_state_dict(fast.state_dict())  # the same parameters, so checkpoints are interchangeable
    x = torch.randn(3, c_in, size, size, requires_grad=True)
    torch.testing.assert_close(fast(x), reference(x), rtol=1e-5, atol=1e-5)
    (g_fast,) = torch.autograd.grad(fast(x).pow(2).sum(), x)
    (g_ref,) = torch.autograd.grad(reference(x).pow(2).sum(), x)
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-4)


def test_whole_map_convolution_equals_the_convolution_kernel():
    from torch import nn

    from vmivae.models import WholeMapConv2d

    torch.manual_seed(0)
    fast, reference = WholeMapConv2d(16, 8, 7), nn.Conv2d(16, 8, 7)
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(4, 16, 7, 7)
    torch.testing.assert_close(fast(x), reference(x), rtol=1e-5, atol=1e-5)
    wider = torch.randn(2, 16, 9, 9)  # a map larger than the kernel: the ordinary convolution
    torch.testing.assert_close(fast(wider), reference(wider))
