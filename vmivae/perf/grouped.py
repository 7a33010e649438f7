"""Several independent runs of one architecture trained together in one process (:class:`GroupTrainer`).

G runs that share the architecture and the training setup but differ in their seed and objective
weights (``GROUP_KEYS``: a 3-seed study, a lambda sweep) take one batched step: the members' parameters,
BatchNorm buffers and Adam states are stacked along a leading dimension (``torch.func.stack_module_state``)
and ``torch.func.vmap(functional_call)`` runs the fused step of every member at once. On a GPU, where one
run's step is bound by kernel launches, G runs cost about the launches of one.

Each member is the run it would be alone (``tests/test_grouped.py`` compares it with the Trainer):

* the same initial weights, built under ``torch.manual_seed(seed)`` as the Trainer builds them, and the
  same batches, from its own ``BatchSampler(seed)``;
* the same sampling noise: its own generator starts from the state the Trainer's generator has after
  initialisation and draws the same tensors in the same order (Gaussian noise, Gumbel noise, prior codes);
  ``VAE.forward`` takes them as its ``noise``;
* the same objective and metrics: ``vmivae.steps``' ``loss_terms`` and ``metric_values`` and
  ``vmivae.objectives``' ``vae_loss`` and ``q_loss``, with the member's weights as tensors; the single
  backward pass (gradients into the VAE scaled by lambda, written as ``t.detach() + lam * (t - t.detach())``,
  which vmap can batch) when every member has one shared lambda, else the two restricted backward passes;
* BatchNorm per member: batch statistics of its own batch, and its running statistics updated in place
  in the stacked buffers (vmap writes through to them; ``replace_all_batch_norm_modules_`` would drop them);
* Adam is elementwise and every member takes every step, so one Adam over the stacked tensors is G Adams
  (its state tensors are ``[G, ...]``: member g's is slice g); gradient clipping per member.

They differ by float rounding only: batched convolutions sum in another order (``channels_last`` is not
applied: vmap lays out the batched convolutions). Not here: checkpoints and resume, the alternating step,
compile and CUDA graphs, several processes.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap

from ..batches import BatchSampler
from ..config import FIELDS, LEVER_KEYS, OPERATIONAL_KEYS, Config
from ..datasets import ImageData
from ..errors import ConfigError, TrainingError
from ..latents import gumbel_noise, sample_prior, temperature_at
from ..objectives import LossWeights, q_loss, vae_loss
from ..runs.run import Run, history_frame
from ..steps import METRICS, build_networks, loss_terms, metric_values
from ..trainer import CODE_USED_FRACTION, objective_of
from .capture_safe import code_counts
from .device import resolve_amp
from .fast_layers import use_matmul_layers

GROUP_KEYS = ("seed", "lambda_cat", "lambda_cont", "kl_weight", "aggregate_entropy", "lambda_entropy")  # may differ within a group


def check_group(configs: list[Config]) -> None:
    """Runs can be trained as one group when they differ only in ``GROUP_KEYS`` (and operational keys)."""
    if not configs:
        raise ConfigError("a group needs at least one run config")
    first = configs[0].to_dict()
    for i, config in enumerate(configs[1:], 1):
        d = config.to_dict()
        differ = [k for k in first if k not in GROUP_KEYS + OPERATIONAL_KEYS and d[k] != first[k]]
        if differ:
            raise ConfigError(f"runs trained as one group may differ only in {', '.join(GROUP_KEYS)}; run {i} differs from run 0 in "
                              + ", ".join(differ))
    levers = [k for k in LEVER_KEYS if any(getattr(config, k) != FIELDS[k].default for config in configs)]
    if levers:
        raise ConfigError(f"a group trains with one KL weight and no capacity schedule; train runs that set {', '.join(levers)} one by one")
    if configs[0].step_mode != "fused":
        raise ConfigError("a group trains with the fused step; set step_mode: fused")
    if configs[0].compile:
        raise ConfigError("a group is not compiled; set compile: false")


def _scaled(t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``steps.scale_grad`` in a form vmap batches (an autograd.Function with a per-member ``lam`` does not):
    the same values, the gradient times ``lam``."""
    return t.detach() + lam * (t - t.detach())


class GroupTrainer:
    """G runs of one architecture (``configs`` differing only in ``GROUP_KEYS``) trained by one batched step."""

    def __init__(self, configs: list[Config], data: ImageData, device: torch.device):
        check_group(configs)
        self.configs, self.device, c = list(configs), device, configs[0]
        objectives = [objective_of(config) for config in self.configs]
        # the structure (components, source, losses; H(c) gets a gradient if any member weighs it); the weights are per member
        self.objective = dataclasses.replace(objectives[0], entropy_weight=max(o.entropy_weight for o in objectives))
        vaes, qs, self.generators = [], [], []
        for config in self.configs:
            torch.manual_seed(config.seed)  # as the Trainer: weights, then the sampling noise, from this seed
            vae, q = build_networks(data.image_shape, config)
            if c.matmul_layers:
                use_matmul_layers(vae, q)
            vaes.append(vae.to(device))
            qs.append(q.to(device) if q is not None else None)
            generator = torch.Generator(device)
            if device.type == "cpu":  # the Trainer draws from the global generator, which initialisation has advanced
                generator.set_state(torch.get_rng_state())
            else:  # the device's generator, which the CPU initialisation has not touched
                generator.manual_seed(config.seed)
            self.generators.append(generator)
        self.vae_base, self.q_base = copy.deepcopy(vaes[0]).to("meta"), (copy.deepcopy(qs[0]).to("meta") if qs[0] is not None else None)
        self.vae_params, self.vae_buffers = stack_module_state(vaes)
        self.q_params, self.q_buffers = stack_module_state(qs) if qs[0] is not None else ({}, {})
        self.single = qs[0] is not None and all(o.shared_lambda is not None for o in objectives)  # one backward pass
        self.weights = torch.tensor([[o.lambda_cat, o.lambda_cont, o.kl_weight, o.entropy_weight, o.shared_lambda or 0.0] for o in objectives],
                                    device=device)
        self.images = data.images.to(device)
        self.samplers = [BatchSampler(len(data), config.batch_size, config.seed, device) for config in self.configs]
        adam = {"fused": True} if c.fused_adam else {}
        self.vae_opt = torch.optim.Adam(list(self.vae_params.values()), lr=c.lr, **adam)
        self.q_opt = torch.optim.Adam(list(self.q_params.values()), lr=c.q_lr, **adam) if self.q_params else None
        self.amp_dtype = resolve_amp(c.amp, device)
        self.step, self.seconds = 0, 0.0
        self.histories: list[list[np.ndarray]] = [[] for _ in self.configs]
        self._tau_value = self.tau_at(0)
        self._tau = torch.tensor(self._tau_value, device=device)

    def __len__(self) -> int:
        return len(self.configs)

    def tau_at(self, step: int) -> float:
        c = self.configs[0]
        return temperature_at(step, c.tau0, c.tau_min, c.tau_rate, c.tau_interval)

    # ------------------------------------------------------------------ one step
    def _noise(self, batch: int) -> dict[str, torch.Tensor]:
        """Each member's noise, drawn from its own generator in the order ``VAE.forward`` draws it: [G, ...].

        vmap cannot draw it: its random draws are neither per-member generators nor the lone runs' numbers.
        """
        latent, n, dev = self.vae_base.latent, self.objective.n_prior * batch, self.device
        draws: dict[str, list[torch.Tensor]] = {}
        for gen in self.generators:
            draws.setdefault("eps", []).append(torch.randn(batch, latent.continuous, generator=gen, device=dev))
            if latent.categorical:
                draws.setdefault("gumbel", []).append(gumbel_noise((batch, latent.categorical), dev, generator=gen))
            if n:
                z_prior, c_prior = sample_prior(latent, n, dev, gen)
                draws.setdefault("z_prior", []).append(z_prior)
                if c_prior is not None:
                    draws.setdefault("c_prior", []).append(c_prior)
        return {key: torch.stack(values) for key, values in draws.items()}

    def _member(self, vae_p, vae_b, q_p, q_b, x, noise, w, tau):
        """One member's fused step up to its losses (vmapped): ``(backward loss, Q loss, METRICS values, argmax counts)``."""
        o = self.objective
        lam_cat, lam_cont, kl_weight, entropy_weight, lam = w.unbind()
        weights = LossWeights(kl_weight, lam_cat, lam_cont, entropy_weight)

        def vae(t, tau, n_prior):
            return functional_call(self.vae_base, {**vae_p, **vae_b}, (t, tau), {"n_prior": n_prior, "noise": noise})

        q = (lambda t: functional_call(self.q_base, {**q_p, **q_b}, (t,))) if self.q_base is not None else None
        scale = (lambda t: _scaled(t, lam)) if self.single else None
        out, terms = loss_terms(vae, q, x, tau, o, scale)
        loss, loss_q = vae_loss(terms, weights), q_loss(terms.ce_cat, terms.ce_cont)
        # as Stepper._fused: lambda = 1 here and lambda in _scaled
        backward = vae_loss(terms, weights._replace(lambda_cat=1.0, lambda_cont=1.0)) if self.single else loss
        values = metric_values(out, x, loss, terms, loss_q, o.recon_loss)
        counts = code_counts(out.logits.detach()) if out.logits is not None else out.mu.new_zeros(0)
        return backward, loss_q, values, counts

    def train_step(self) -> torch.Tensor:
        """Update every member on its next batch; returns ``[G, METRICS + K counts]`` (no host sync)."""
        x = self.images[torch.stack([s.next() for s in self.samplers])]
        noise = self._noise(x.shape[1])
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        with autocast:
            backward, loss_q, values, counts = vmap(self._member, in_dims=(0, 0, 0, 0, 0, 0, 0, None))(
                self.vae_params, self.vae_buffers, self.q_params, self.q_buffers, x, noise, self.weights, self._tau)
        vae_params, q_params = list(self.vae_params.values()), list(self.q_params.values())
        for opt in (self.vae_opt, self.q_opt):
            if opt is not None:
                opt.zero_grad(set_to_none=True)
        if self.single or not q_params:
            backward.sum().backward()  # members are independent: the sum's gradient is each member's own
        else:
            torch.autograd.backward(backward.sum(), inputs=vae_params, retain_graph=True)
            torch.autograd.backward(loss_q.sum(), inputs=q_params)
        for opt, params in ((self.vae_opt, vae_params), (self.q_opt, q_params)):
            if opt is not None:
                self._clip(params)
                opt.step()
        return torch.cat([values, counts.float()], dim=1)

    def _clip(self, params: list[torch.Tensor]) -> None:
        """``clip_grad_norm_`` per member: each member's global norm over its slices of the stacked gradients."""
        max_norm = self.configs[0].grad_clip
        grads = [p.grad for p in params if p.grad is not None]
        if max_norm is None or not grads:
            return
        norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])  # [P, G]
        coef = (max_norm / (torch.linalg.vector_norm(norms, dim=0) + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))

    # ------------------------------------------------------------------ the loop and the results
    def train(self, until: int) -> None:
        """Train every member until ``self.step == until``; the host reads the metrics every ``log_every`` steps."""
        c = self.configs[0]
        for module in (self.vae_base, self.q_base):
            if module is not None:
                module.train()
        buffer = torch.zeros(max(1, min(c.log_every, until - self.step)), len(self), len(METRICS) + (c.categorical or 0), device=self.device)
        taus: list[float] = []
        start = time.perf_counter()
        while self.step < until:
            tau = self.tau_at(self.step)
            if tau != self._tau_value:
                self._tau_value = tau
                self._tau.fill_(tau)
            buffer[len(taus)] = self.train_step()
            taus.append(tau)
            self.step += 1
            if len(taus) == len(buffer) or self.step == until:
                self._flush(buffer[: len(taus)], taus)
                taus = []
        self.seconds += time.perf_counter() - start

    def _flush(self, block: torch.Tensor, taus: list[float]) -> None:
        block = block.double().cpu().numpy()
        steps = np.arange(self.step - len(taus) + 1, self.step + 1)
        for g in range(len(self)):
            values, counts = block[:, g, : len(METRICS)], block[:, g, len(METRICS) :].sum(axis=0)
            codes_used = float((counts >= CODE_USED_FRACTION * counts.sum()).sum()) if counts.size else float("nan")
            finite = np.isfinite(values).all(axis=1)
            if not finite.all():
                first = int(np.argmin(finite))
                name = METRICS[int(np.argmin(np.isfinite(values[first])))]
                raise TrainingError(f"run {g} of the group (seed {self.configs[g].seed}): '{name}' became non-finite at step {int(steps[first])}")
            self.histories[g].append(np.column_stack([steps, values, taus, np.full(len(steps), codes_used)]))

    def history_rows(self, g: int) -> np.ndarray:
        return np.concatenate(self.histories[g])

    def member_state(self, g: int) -> dict[str, dict[str, torch.Tensor]]:
        """Member ``g``'s weights as ordinary ``VAE`` and ``QNetwork`` state dicts (slice g of the stacks)."""
        def unstack(base, params, buffers):
            stacked = {**params, **buffers}
            return {k: stacked[k][g].detach().clone() for k in base.state_dict()} if base is not None else {}
        return {"vae": unstack(self.vae_base, self.vae_params, self.vae_buffers), "q": unstack(self.q_base, self.q_params, self.q_buffers)}

    def runs(self) -> list[Run]:
        """Every member as a :class:`Run` (networks in eval mode, on the group's device; no run folder)."""
        result = []
        for g, config in enumerate(self.configs):
            vae, q = build_networks(self.vae_base.image_shape, config)
            state = self.member_state(g)
            vae.load_state_dict(state["vae"])
            if q is not None:
                q.load_state_dict(state["q"])
            metrics: dict[str, Any] = {"steps": self.step, "seconds": round(self.seconds, 3), "group": len(self), "device": str(self.device),
                                       "images_per_second": round(self.step * config.batch_size / max(self.seconds, 1e-9), 1)}
            result.append(Run(config, vae.to(self.device).eval(), q.to(self.device).eval() if q is not None else None,
                              history_frame(self.history_rows(g)), metrics))
        return result
