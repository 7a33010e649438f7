"""The paper's convolutional VAE and the auxiliary network Q.

For 28x28 images the layers are exactly those of the reference code (see the book's model section):

* encoder: conv 4x4/2 C->64, LeakyReLU; conv 4x4/2 64->128, BN, LeakyReLU; flatten; FC 512, BN,
  LeakyReLU; FC -> 2 D + K latent parameters;
* decoder: FC 512, BN, LeakyReLU; FC 64*7*7, BN, LeakyReLU; convT 4x4/2 64->32, BN, LeakyReLU;
  convT 4x4/2 32->C; tanh;
* Q: the encoder's two convolutions (own weights); conv covering the whole 7x7 map -> 128, BN,
  LeakyReLU; 1x1 conv -> K logits and a mean and log-std per informative Gaussian dim.

Larger images get more stride-2 stages until the feature map is at most 8x8 (32 -> 8 in two stages,
64 -> 8 in three). Models return tensors in small named tuples; losses live in ``vmivae.objectives``.
Every layer is a plain ``torch.nn`` layer; training swaps two of them for matrix-product forms with the
same weights (``vmivae.perf.fast_layers``, config key ``matmul_layers``). A shape the networks cannot
take raises ``ValueError``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .latents import LatentSpec, gaussian_sample, gumbel_softmax_sample, one_hot_argmax, sample_prior

HIDDEN = 512  # width of the fully connected layers of encoder and decoder
Q_HIDDEN = 128  # width of Q's head
_SLOPE = 0.2  # LeakyReLU negative slope


class TrunkPlan(NamedTuple):
    """Layout of the stride-2 convolution stack for one image size."""

    channels: tuple[int, ...]  # output channels of each stage (64, 128, 256, ...)
    final_size: int  # side of the last feature map


def plan_trunk(size: int) -> TrunkPlan:
    """Halve ``size`` with stride-2 convs while it is even and above 8 (28 -> 14 -> 7, 64 -> 8)."""
    if size < 8:
        raise ValueError(f"images must be at least 8x8 pixels, got {size}x{size}; resize them first")
    channels: list[int] = []
    while size > 8 and size % 2 == 0:
        channels.append(min(64 * 2 ** len(channels), 256))
        size //= 2
    if len(channels) < 2:
        raise ValueError(f"image side {size * 2 ** len(channels)} cannot be halved twice; use a side such as 28, 32 or 64")
    return TrunkPlan(tuple(channels), size)


def check_image_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Validate a ``(C, H, W)`` image shape: square, 1 or 3 channels, halvable."""
    if len(image_shape) != 3:
        raise ValueError(f"image shape must be (channels, height, width), got {tuple(image_shape)}")
    c, h, w = (int(v) for v in image_shape)
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w}; crop or resize them to a square first")
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got {c}")
    plan_trunk(h)
    return c, h, w


def _conv_trunk(in_channels: int, plan: TrunkPlan) -> nn.Sequential:
    """Stride-2 4x4 convolutions; BatchNorm on every stage but the first (as in DCGAN/InfoGAN)."""
    layers: list[nn.Module] = []
    for i, out_channels in enumerate(plan.channels):
        layers.append(nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1))
        if i > 0:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.LeakyReLU(_SLOPE))
        in_channels = out_channels
    return nn.Sequential(*layers)


class Posterior(NamedTuple):
    """Encoder output: Gaussian ``mu, logvar [B, D]`` and categorical ``logits [B, K]`` (or None)."""

    mu: torch.Tensor
    logvar: torch.Tensor
    logits: torch.Tensor | None


class VAEOutput(NamedTuple):
    """One stochastic pass through the VAE.

    ``x_hat [B, C, H, W]`` in [-1, 1] is ``tanh(x_pre)``; ``z [B, D]`` is the reparameterised Gaussian
    sample and ``c [B, K]`` the relaxed one-hot sample that were decoded. When the pass also decodes
    ``n`` codes drawn from the prior, ``x_prior [n, C, H, W]`` are those images and ``z_prior [n, D]``,
    ``c_prior [n, K]`` (hard one-hot) the codes; otherwise the three are None.
    """

    x_hat: torch.Tensor
    x_pre: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    logits: torch.Tensor | None
    z: torch.Tensor
    c: torch.Tensor | None
    x_prior: torch.Tensor | None = None
    z_prior: torch.Tensor | None = None
    c_prior: torch.Tensor | None = None


class Encoder(nn.Module):
    """Image ``[B, C, H, W]`` -> latent parameters ``[B, 2 D + K]``."""

    def __init__(self, image_shape: tuple[int, int, int], latent: LatentSpec):
        super().__init__()
        c, h, _ = check_image_shape(image_shape)
        plan = plan_trunk(h)
        self.trunk = _conv_trunk(c, plan)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(plan.channels[-1] * plan.final_size**2, HIDDEN),
            nn.BatchNorm1d(HIDDEN),
            nn.LeakyReLU(_SLOPE),
            nn.Linear(HIDDEN, latent.n_params),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x)).float()  # latent parameters in fp32 even under autocast (KL, sampling)


class Decoder(nn.Module):
    """Latent ``[B, D + K]`` -> pre-tanh image ``[B, C, H, W]``."""

    def __init__(self, image_shape: tuple[int, int, int], latent: LatentSpec):
        super().__init__()
        c, h, _ = check_image_shape(image_shape)
        plan = plan_trunk(h)
        n_up = len(plan.channels)
        channels = [32 * 2 ** (n_up - 1 - i) for i in range(n_up)]  # 28x28: 64, 32 (reference)
        self.start = (channels[0], plan.final_size, plan.final_size)
        self.mlp = nn.Sequential(
            nn.Linear(latent.dim, HIDDEN),
            nn.BatchNorm1d(HIDDEN),
            nn.LeakyReLU(_SLOPE),
            nn.Linear(HIDDEN, channels[0] * plan.final_size**2),
            nn.BatchNorm1d(channels[0] * plan.final_size**2),
            nn.LeakyReLU(_SLOPE),
        )
        layers: list[nn.Module] = []
        for c_in, c_out in zip(channels, channels[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.LeakyReLU(_SLOPE)]
        layers.append(nn.ConvTranspose2d(channels[-1], c, 4, stride=2, padding=1))
        self.deconv = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.mlp(latent).view(-1, *self.start)).float()  # fp32 images for the losses


class VAE(nn.Module):
    """Encoder + decoder with a Gaussian and (optionally) a Gumbel-softmax categorical latent."""

    def __init__(self, image_shape: tuple[int, int, int], latent: LatentSpec):
        super().__init__()
        self.image_shape = check_image_shape(image_shape)
        self.latent = latent
        self.encoder = Encoder(self.image_shape, latent)
        self.decoder = Decoder(self.image_shape, latent)

    def encode(self, x: torch.Tensor) -> Posterior:
        """Posterior parameters for images ``x [B, C, H, W]`` in [-1, 1]."""
        return Posterior(*self.latent.split_params(self.encoder(x)))

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] ``[B, C, H, W]`` for latents ``[B, D + K]``."""
        return torch.tanh(self.decoder(latent))

    def forward(self, x: torch.Tensor, tau: float | torch.Tensor = 1.0, n_prior: int = 0,
                noise: dict[str, torch.Tensor] | None = None) -> VAEOutput:
        """Encode, sample (reparameterised Gaussian, Gumbel-softmax at temperature ``tau``), decode.

        With ``n_prior > 0`` the same decoder call also decodes ``n_prior`` codes drawn from the prior
        (one batch of ``B + n_prior`` latents: one pass, and BatchNorm sees both kinds of code).
        The sampling noise is drawn here, in this order, unless ``noise`` gives it: ``eps [B, D]``,
        ``gumbel [B, K]``, and the prior codes ``z_prior [n, D]``, ``c_prior [n, K]``.
        """
        noise = noise or {}
        mu, logvar, logits = self.encode(x)
        z = gaussian_sample(mu, logvar, noise.get("eps"))
        c = gumbel_softmax_sample(logits, tau, noise.get("gumbel")) if logits is not None else None
        latent = self.latent.join(z, c)
        if not n_prior:
            x_pre = self.decoder(latent)
            return VAEOutput(torch.tanh(x_pre), x_pre, mu, logvar, logits, z, c)
        if "z_prior" in noise:
            z_prior, c_prior = noise["z_prior"], noise.get("c_prior")
        else:
            z_prior, c_prior = sample_prior(self.latent, n_prior, x.device)
        x_pre_all = self.decoder(torch.cat([latent, self.latent.join(z_prior, c_prior)]))
        x_pre, x_pre_prior = x_pre_all[: len(x)], x_pre_all[len(x) :]
        return VAEOutput(torch.tanh(x_pre), x_pre, mu, logvar, logits, z, c, torch.tanh(x_pre_prior), z_prior, c_prior)

    @torch.no_grad()
    def deterministic_codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Evaluation codes: posterior means ``mu`` and the hard one-hot argmax code."""
        mu, _, logits = self.encode(x)
        return mu, (one_hot_argmax(logits) if logits is not None else None)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction from the evaluation codes."""
        return self.decode(self.latent.join(*self.deterministic_codes(x)))

    @torch.no_grad()
    def category_grid(self, per_category: int, seed: int = 0) -> torch.Tensor:
        """Images ``[K * per_category, C, H, W]``: block ``k`` decodes category ``k`` with the same ``per_category``
        Gaussian codes (drawn from the prior with ``seed``) as every other block, so blocks differ by the code alone."""
        k = self.latent.categorical
        if not k:
            raise ValueError("this model has no categorical code")
        device = next(self.parameters()).device
        z, _ = sample_prior(self.latent, per_category, device, torch.Generator().manual_seed(seed))
        codes = torch.eye(k, device=device).repeat_interleave(per_category, 0)
        return self.decode(self.latent.join(z.repeat(k, 1), codes))


class QOutput(NamedTuple):
    """Q's guess of the code behind an image: ``logits [B, K]`` and Gaussian ``mean, log_std [B, M]``."""

    logits: torch.Tensor | None
    mean: torch.Tensor | None
    log_std: torch.Tensor | None


class QNetwork(nn.Module):
    """Auxiliary network Q(c | x~) for the variational MI bound.

    Args:
        image_shape: ``(C, H, W)`` of the images it reads.
        categorical: number of categories of the code it recovers, or None.
        continuous: number of Gaussian dims it recovers (a mean and a log-std each).
    """

    def __init__(self, image_shape: tuple[int, int, int], categorical: int | None, continuous: int):
        super().__init__()
        c, h, _ = check_image_shape(image_shape)
        if not categorical and continuous <= 0:
            raise ValueError("Q needs at least one component to recover: a categorical code or a Gaussian dim")
        plan = plan_trunk(h)
        self.categorical = categorical or 0
        self.continuous = continuous
        self.net = nn.Sequential(
            _conv_trunk(c, plan),
            nn.Conv2d(plan.channels[-1], Q_HIDDEN, plan.final_size),  # one output position: the whole map
            nn.BatchNorm2d(Q_HIDDEN),
            nn.LeakyReLU(_SLOPE),
            nn.Conv2d(Q_HIDDEN, self.categorical + 2 * continuous, 1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> QOutput:
        h = self.net(x).float()  # fp32 log-likelihoods even under autocast
        k, m = self.categorical, self.continuous
        logits = h[:, :k] if k else None
        mean = h[:, k : k + m] if m else None
        log_std = h[:, k + m :] if m else None
        return QOutput(logits, mean, log_std)
