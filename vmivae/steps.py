"""One training iteration of VMI-VAE: the fused step and the reference's alternating step.

Both minimise the same two objectives (see ``vmivae.objectives``)::

    VAE:  recon + kl_weight * KL + lambda_cat * CE_cat + lambda_cont * CE_cont   (Q's weights fixed)
    Q:    CE_cat + CE_cont                                                      (images detached)

* ``alternating`` (the reference code's schedule): a VAE update, then a second VAE forward pass
  without gradients and a Q update on those images. Two VAE forwards per iteration.
* ``fused``: one VAE forward; Q reads the decoded images once and both losses come from that one
  pass. When every component in the bound has the same weight lambda (or lambda = 0), a single
  backward pass suffices: the images enter Q through :func:`scale_grad`, which is the identity forward
  and multiplies the gradient flowing back into the decoder by lambda. Q's weights then receive
  exactly dCE/dQ (as if the images were detached) and the VAE receives lambda * dCE/dx~. With two
  different lambdas the step runs two backward passes restricted to each network's parameters.
  ``tests/test_steps.py`` checks that these gradients equal the separately computed ones.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .latents import categorical_kl_uniform, gaussian_kl
from .models import VAE, QNetwork, VAEOutput
from .objectives import MIComponents, aggregate_code_entropy, mi_batch, mi_cross_entropies, reconstruction_loss

# Order of the per-step metrics a step returns (one small tensor, no host sync).
METRICS = ("loss", "recon", "kl_cont", "kl_cat", "ce_cat", "ce_cont", "q_loss", "recon_mse", "h_cat")
# recon_mse is the per-pixel MSE of the reconstructions whatever the reconstruction loss: comparable across runs.
# h_cat is the batch estimate of H(c) of the codes in the bound (aggregate_code_entropy), tracked for every
# model with a categorical code whether or not the loss uses it: it shows a collapsing code.
# After METRICS a step returns, for a model with a K-way code, how many images of the batch had each
# category as their most probable one (K counts): the trainer sums them into "codes used".


class _ScaleGrad(torch.autograd.Function):
    """Identity in the forward pass, gradient times ``scale`` in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` unchanged, but the gradient flowing back through it is multiplied by ``scale``."""
    return _ScaleGrad.apply(x, scale)


def _scaled(t: torch.Tensor | None, scale: float) -> torch.Tensor | None:
    """``scale_grad`` that detaches outright for a zero scale (no backward work at all)."""
    if t is None:
        return None
    return t.detach() if scale == 0 else scale_grad(t, scale)


@dataclass(frozen=True)
class Objective:
    """The numbers that define the loss (a view of the run config)."""

    components: MIComponents
    source: str = "reconstruction"
    lambda_cat: float = 0.0
    lambda_cont: float = 0.0
    kl_weight: float = 0.005
    recon_loss: str = "mse"
    entropy_weight: float = 0.0  # weight of + H(c) (aggregate_code_entropy) in the VAE's objective; 0: the paper's loss

    @property
    def shared_lambda(self) -> float | None:
        """The one weight shared by every component in the bound, or None if they differ."""
        weights = {self.lambda_cat} if self.components.categorical else set()
        if self.components.dims:
            weights.add(self.lambda_cont)
        return weights.pop() if len(weights) == 1 else None

    @property
    def n_prior(self) -> int:
        """How many prior codes each pass decodes, per image in the batch (0 or 1)."""
        return int(self.source in ("generation", "both"))


def vae_forward(vae: nn.Module, x: torch.Tensor, tau: torch.Tensor, objective: Objective) -> tuple[VAEOutput, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One VAE pass and its ELBO terms: ``(out, recon, kl_cont, kl_cat)``."""
    out = vae(x, tau, n_prior=objective.n_prior * len(x))
    recon = reconstruction_loss(out.x_hat, out.x_pre, x, objective.recon_loss)
    kl_cont = gaussian_kl(out.mu, out.logvar)
    kl_cat = categorical_kl_uniform(out.logits).mean() if out.logits is not None else recon.new_zeros(())
    return out, recon, kl_cont, kl_cat


def code_entropy(out: VAEOutput, objective: Objective) -> torch.Tensor:
    """Batch estimate of H(c) for the categorical codes in the bound (0 for a model without a code)."""
    if out.logits is None:
        return out.mu.new_zeros(())
    h = aggregate_code_entropy(out.logits, objective.source)
    return h if objective.entropy_weight else h.detach()


def q_forward(q: nn.Module, images: torch.Tensor, c_target: torch.Tensor | None, z_target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Q's cross-entropies ``(CE_cat, CE_cont)`` on ``images``."""
    return mi_cross_entropies(*q(images), c_target, z_target)


class Stepper:
    """Owns the two networks and their optimisers and performs one iteration per call.

    ``vae`` and ``q`` may be wrapped (``torch.compile``, DistributedDataParallel); the parameter lists
    come from the unwrapped modules. ``q`` is None for a plain VAE with nothing in the bound.
    """

    def __init__(self, vae: nn.Module, q: nn.Module | None, vae_params: list, q_params: list, objective: Objective,
                 vae_opt: torch.optim.Optimizer, q_opt: torch.optim.Optimizer | None, mode: str = "fused", grad_clip: float | None = None,
                 amp_dtype: torch.dtype | None = None):
        self.vae, self.q, self.objective = vae, q, objective
        self.vae_params, self.q_params = vae_params, q_params
        self.vae_opt, self.q_opt = vae_opt, q_opt
        self.mode, self.grad_clip, self.amp_dtype = mode, grad_clip, amp_dtype

    def _autocast(self, x: torch.Tensor):
        """Mixed precision for the forward passes only (backward runs in the forward's dtypes)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=self.amp_dtype)

    def __call__(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """Update both networks on batch ``x``; returns the detached ``METRICS`` (then the K argmax counts) as one tensor."""
        if self.q is None:
            return self._vae_only(x, tau)
        return self._fused(x, tau) if self.mode == "fused" else self._alternating(x, tau)

    # ---------------------------------------------------------------- helpers
    def _vae_loss(self, recon, kl_cont, kl_cat, ce_cat, ce_cont, h_cat) -> torch.Tensor:
        o = self.objective
        return recon + o.kl_weight * (kl_cont + kl_cat) + o.lambda_cat * ce_cat + o.lambda_cont * ce_cont - o.entropy_weight * h_cat

    def _update(self, optimizer: torch.optim.Optimizer, params: list) -> None:
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        optimizer.step()

    def _metrics(self, out, x, loss, recon, kl_cont, kl_cat, ce_cat, ce_cont, q_loss, h_cat) -> torch.Tensor:
        with torch.no_grad():  # for the paper's loss the MSE is the reconstruction term itself: no extra work
            mse = recon if self.objective.recon_loss == "mse" else F.mse_loss(out.x_hat.float(), x.float())
            values = torch.stack([loss, recon, kl_cont, kl_cat, ce_cat, ce_cont, q_loss, mse, h_cat]).detach().float()
            if out.logits is None:
                return values
            counts = torch.bincount(out.logits.argmax(dim=1), minlength=out.logits.shape[1])
            return torch.cat([values, counts.float()])

    # ---------------------------------------------------------------- the three steps
    def _vae_only(self, x, tau):
        with self._autocast(x):
            out, recon, kl_cont, kl_cat = vae_forward(self.vae, x, tau, self.objective)
            zero = recon.new_zeros(()).detach()
            h_cat = code_entropy(out, self.objective)
            loss = self._vae_loss(recon, kl_cont, kl_cat, zero, zero, h_cat)
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        self._update(self.vae_opt, self.vae_params)
        return self._metrics(out, x, loss, recon, kl_cont, kl_cat, zero, zero, zero, h_cat)

    def _fused(self, x, tau):
        o = self.objective
        lam = o.shared_lambda
        with self._autocast(x):
            out, recon, kl_cont, kl_cat = vae_forward(self.vae, x, tau, o)
            h_cat = code_entropy(out, o)
            images, c_target, z_target = mi_batch(out, o.source, o.components)
            if lam is not None:  # one backward pass serves both networks
                # The targets (the encoder's samples) carry gradient into the encoder too: scale them alike.
                images, c_target, z_target = (_scaled(t, lam) for t in (images, c_target, z_target))
            ce_cat, ce_cont = q_forward(self.q, images, c_target, z_target)
            q_loss = ce_cat + ce_cont
            loss = self._vae_loss(recon, kl_cont, kl_cat, ce_cat, ce_cont, h_cat)
        self.vae_opt.zero_grad(set_to_none=True)
        self.q_opt.zero_grad(set_to_none=True)
        if lam is not None:
            (recon + o.kl_weight * (kl_cont + kl_cat) + q_loss - o.entropy_weight * h_cat).backward()
        else:
            torch.autograd.backward(loss, inputs=self.vae_params, retain_graph=True)
            torch.autograd.backward(q_loss, inputs=self.q_params)
        self._update(self.vae_opt, self.vae_params)
        self._update(self.q_opt, self.q_params)
        return self._metrics(out, x, loss, recon, kl_cont, kl_cat, ce_cat, ce_cont, q_loss, h_cat)

    def _alternating(self, x, tau):
        o = self.objective
        # VAE update (the reference's update_vae): Q's weights get gradients too, which are discarded.
        with self._autocast(x):
            out, recon, kl_cont, kl_cat = vae_forward(self.vae, x, tau, o)
            h_cat = code_entropy(out, o)
            images, c_target, z_target = mi_batch(out, o.source, o.components)
            ce_cat, ce_cont = q_forward(self.q, images, c_target, z_target)
            loss = self._vae_loss(recon, kl_cont, kl_cat, ce_cat, ce_cont, h_cat)
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        self._update(self.vae_opt, self.vae_params)
        # Q update (the reference's update_dis): a second VAE forward, without gradients.
        with self._autocast(x):
            with torch.no_grad():
                out2 = self.vae(x, tau, n_prior=o.n_prior * len(x))
                images2, c2, z2 = mi_batch(out2, o.source, o.components)
            q_ce_cat, q_ce_cont = q_forward(self.q, images2, c2, z2)
            q_loss = q_ce_cat + q_ce_cont
        self.q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        self._update(self.q_opt, self.q_params)
        return self._metrics(out, x, loss, recon, kl_cont, kl_cat, ce_cat, ce_cont, q_loss, h_cat)


def build_networks(image_shape: tuple[int, int, int], config) -> tuple[VAE, QNetwork | None]:
    """The VAE and (when anything is in the bound) Q for a run config."""
    vae = VAE(image_shape, config.latent)
    comps = config.components
    q = None if comps.empty else QNetwork(image_shape, config.categorical if comps.categorical else None, len(comps.dims))
    return vae, q
