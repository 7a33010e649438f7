"""One training iteration of VMI-VAE: the fused step and the reference's alternating step.

Both minimise the same two objectives, ``objectives.vae_loss`` and ``objectives.q_loss``::

    VAE:  recon + kl_weight * KL + lambda_cat * CE_cat + lambda_cont * CE_cont - entropy_weight * H(c)   (Q's weights fixed)
    Q:    CE_cat + CE_cont                                                                            (images detached)

Every step computes their terms with :func:`loss_terms` (one VAE pass and Q on its images).

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
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import objectives
from .models import VAE, QNetwork, VAEOutput
from .objectives import LossTerms, LossWeights, MIComponents, aggregate_code_entropy, elbo_terms, mi_batch, mi_cross_entropies, q_loss, vae_loss

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


def _scaled(t: torch.Tensor, scale: float) -> torch.Tensor:
    """``scale_grad`` that detaches outright for a zero scale (no backward work at all)."""
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
    kl_weight_cat: float | None = None  # weight of KL_cat alone (kl_weight then weighs KL_cont); None: kl_weight weighs both
    capacity_cont: tuple[float, float, int, float] | None = None  # (start, end, steps, gamma): gamma |KL_cont - C(t)| in place of its KL
    capacity_cat: tuple[float, float, int, float] | None = None  # the same for KL_cat

    @property
    def weights(self) -> LossWeights:
        """The loss weights (at step 0 when a capacity is scheduled: see :meth:`weights_at`)."""
        return self.weights_at(0)

    @property
    def scheduled(self) -> bool:
        """Whether the loss changes with the step (a capacity schedule)."""
        return self.capacity_cont is not None or self.capacity_cat is not None

    def weights_at(self, step: int | torch.Tensor) -> LossWeights:
        """The loss weights at training step ``step`` (a device scalar in training: no host sync)."""
        def capacity(spec):
            if spec is None:
                return None
            start, end, steps, gamma = spec
            return objectives.Capacity(gamma, objectives.capacity_at(step, start, end, steps))

        return LossWeights(self.kl_weight, self.lambda_cat, self.lambda_cont, self.entropy_weight, self.kl_weight_cat,
                           capacity(self.capacity_cont), capacity(self.capacity_cat))

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


# ----------------------------------------------------------------------------- the passes and their terms


def vae_forward(vae: nn.Module, x: torch.Tensor, tau: torch.Tensor, objective: Objective) -> tuple[VAEOutput, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One VAE pass and its ELBO terms: ``(out, recon, kl_cont, kl_cat)``."""
    out = vae(x, tau, n_prior=objective.n_prior * len(x))
    return (out, *elbo_terms(out, x, objective.recon_loss))


def code_entropy(out: VAEOutput, objective: Objective) -> torch.Tensor:
    """Batch estimate of H(c) for the categorical codes in the bound (0 for a model without a code)."""
    if out.logits is None:
        return out.mu.new_zeros(())
    h = aggregate_code_entropy(out.logits, objective.source)
    return h if objective.entropy_weight else h.detach()


def mi_targets(out: VAEOutput, objective: Objective) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The images in the bound and the codes Q must recover from them (:func:`~vmivae.objectives.mi_batch`)."""
    return mi_batch(out, objective.source, objective.components)


def q_forward(q: nn.Module, images: torch.Tensor, c_target: torch.Tensor | None, z_target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Q's cross-entropies ``(CE_cat, CE_cont)`` on ``images``."""
    return mi_cross_entropies(*q(images), c_target, z_target)


def loss_terms(vae: nn.Module, q: nn.Module | None, x: torch.Tensor, tau: torch.Tensor, objective: Objective,
               scale: Callable[[torch.Tensor], torch.Tensor] | None = None, targets=mi_targets, entropy=code_entropy) -> tuple[VAEOutput, LossTerms]:
    """One VAE pass and Q on its decoded images: every term of both losses (zero CEs when ``q`` is None).

    ``scale``, when given, is applied to Q's images and targets (the single backward pass routes its
    gradients with it); ``targets`` and ``entropy`` are :func:`mi_targets` and :func:`code_entropy`.
    """
    out, recon, kl_cont, kl_cat = vae_forward(vae, x, tau, objective)
    h_cat = entropy(out, objective)
    if q is None:
        zero = recon.new_zeros(()).detach()
        return out, LossTerms(recon, kl_cont, kl_cat, zero, zero, h_cat)
    images, c_target, z_target = targets(out, objective)
    if scale is not None:
        images, c_target, z_target = (None if t is None else scale(t) for t in (images, c_target, z_target))
    ce_cat, ce_cont = q_forward(q, images, c_target, z_target)
    return out, LossTerms(recon, kl_cont, kl_cat, ce_cat, ce_cont, h_cat)


def metric_values(out: VAEOutput, x: torch.Tensor, loss: torch.Tensor, terms: LossTerms, loss_q: torch.Tensor, recon_loss: str) -> torch.Tensor:
    """The step's ``METRICS`` as one detached float tensor ``[len(METRICS)]`` (no host sync)."""
    with torch.no_grad():  # for the paper's loss the MSE is the reconstruction term itself: no extra work
        mse = terms.recon if recon_loss == "mse" else F.mse_loss(out.x_hat.float(), x.float())
        t = terms
        return torch.stack([loss, t.recon, t.kl_cont, t.kl_cat, t.ce_cat, t.ce_cont, loss_q, mse, t.h_cat]).detach().float()


def code_counts(logits: torch.Tensor) -> torch.Tensor:
    """How many of the ``B`` images have each category as their most probable one, ``[K]``."""
    return torch.bincount(logits.argmax(dim=1), minlength=logits.shape[1])


class Stepper:
    """Owns the two networks and their optimisers and performs one iteration per call.

    ``vae`` and ``q`` may be wrapped (``torch.compile``, DistributedDataParallel); the parameter lists
    come from the unwrapped modules. ``q`` is None for a plain VAE with nothing in the bound.
    """

    # The captured step (vmivae.perf.graphed) replaces these by forms that never synchronise with the host.
    targets = staticmethod(mi_targets)
    entropy = staticmethod(code_entropy)
    counts = staticmethod(code_counts)

    def __init__(self, vae: nn.Module, q: nn.Module | None, vae_params: list, q_params: list, objective: Objective,
                 vae_opt: torch.optim.Optimizer, q_opt: torch.optim.Optimizer | None, mode: str = "fused", grad_clip: float | None = None,
                 amp_dtype: torch.dtype | None = None):
        self.vae, self.q, self.objective = vae, q, objective
        self.vae_params, self.q_params = vae_params, q_params
        self.vae_opt, self.q_opt = vae_opt, q_opt
        self.mode, self.grad_clip, self.amp_dtype = mode, grad_clip, amp_dtype
        # steps taken, counted on the device (read by a capacity schedule; a captured step replays the increment)
        self.step_count = torch.zeros((), dtype=torch.long, device=vae_params[0].device) if objective.scheduled else None

    def set_step(self, step: int) -> None:
        """Set the step counter (a resumed run continues its capacity schedule)."""
        if self.step_count is not None:
            self.step_count.fill_(step)

    def _autocast(self, x: torch.Tensor):
        """Mixed precision for the forward passes only (backward runs in the forward's dtypes)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=self.amp_dtype)

    def __call__(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """Update both networks on batch ``x``; returns the detached ``METRICS`` (then the K argmax counts) as one tensor."""
        if self.q is None:
            metrics = self._vae_only(x, tau)
        else:
            metrics = self._fused(x, tau) if self.mode == "fused" else self._alternating(x, tau)
        if self.step_count is not None:
            self.step_count.add_(1)
        return metrics

    # ---------------------------------------------------------------- helpers
    def _weights(self) -> LossWeights:
        return self.objective.weights if self.step_count is None else self.objective.weights_at(self.step_count)

    def _terms(self, x, tau, scale=None) -> tuple[VAEOutput, LossTerms]:
        return loss_terms(self.vae, self.q, x, tau, self.objective, scale, self.targets, self.entropy)

    def _update(self, optimizer: torch.optim.Optimizer, params: list) -> None:
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        optimizer.step()

    def _metrics(self, out, x, loss, terms, loss_q) -> torch.Tensor:
        values = metric_values(out, x, loss, terms, loss_q, self.objective.recon_loss)
        if out.logits is None:
            return values
        with torch.no_grad():
            return torch.cat([values, self.counts(out.logits).float()])

    # ---------------------------------------------------------------- the three steps
    def _vae_only(self, x, tau):
        with self._autocast(x):
            out, terms = self._terms(x, tau)
            loss = vae_loss(terms, self._weights())
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        self._update(self.vae_opt, self.vae_params)
        return self._metrics(out, x, loss, terms, q_loss(terms.ce_cat, terms.ce_cont))

    def _fused(self, x, tau):
        o = self.objective
        lam = o.shared_lambda
        with self._autocast(x):
            # One shared lambda: Q reads the images and targets (the encoder's samples carry gradient too) through scale_grad.
            out, terms = self._terms(x, tau, (lambda t: _scaled(t, lam)) if lam is not None else None)
            weights = self._weights()
            loss, loss_q = vae_loss(terms, weights), q_loss(terms.ce_cat, terms.ce_cont)
        self.vae_opt.zero_grad(set_to_none=True)
        self.q_opt.zero_grad(set_to_none=True)
        if lam is not None:  # one backward pass serves both networks
            # lambda = 1 here and lambda in scale_grad: the VAE receives lambda dCE/dx~ (d loss_vae), Q dCE/dQ (d loss_q).
            vae_loss(terms, weights._replace(lambda_cat=1.0, lambda_cont=1.0)).backward()
        else:
            torch.autograd.backward(loss, inputs=self.vae_params, retain_graph=True)
            torch.autograd.backward(loss_q, inputs=self.q_params)
        self._update(self.vae_opt, self.vae_params)
        self._update(self.q_opt, self.q_params)
        return self._metrics(out, x, loss, terms, loss_q)

    def _alternating(self, x, tau):
        o = self.objective
        # VAE update (the reference's update_vae): Q's weights get gradients too, which are discarded.
        with self._autocast(x):
            out, terms = self._terms(x, tau)
            loss = vae_loss(terms, self._weights())
        self.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        self._update(self.vae_opt, self.vae_params)
        # Q update (the reference's update_dis): a second VAE forward, without gradients.
        with self._autocast(x):
            with torch.no_grad():
                out2 = self.vae(x, tau, n_prior=o.n_prior * len(x))
                images2, c2, z2 = self.targets(out2, o)
            loss_q = q_loss(*q_forward(self.q, images2, c2, z2))
        self.q_opt.zero_grad(set_to_none=True)
        loss_q.backward()
        self._update(self.q_opt, self.q_params)
        return self._metrics(out, x, loss, terms, loss_q)


def build_networks(image_shape: tuple[int, int, int], config) -> tuple[VAE, QNetwork | None]:
    """The VAE and (when anything is in the bound) Q for a run config, with the plain layers of ``vmivae.models``."""
    vae = VAE(image_shape, config.latent)
    comps = config.components
    q = None if comps.empty else QNetwork(image_shape, config.categorical if comps.categorical else None, len(comps.dims))
    return vae, q
