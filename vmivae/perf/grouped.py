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
  the VAE pass takes them as inputs (:class:`_Pass`: ``VAE.forward`` with the noise given);
* the same objective: ``vmivae.steps``' ``vae_forward``, ``mi_batch`` and ``q_forward`` with the member's
  weights as tensors; the single backward pass (gradients into the VAE scaled by lambda, written as
  ``t.detach() + lam * (t - t.detach())``, which vmap can batch) when every member has one shared lambda,
  else the two restricted backward passes;
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
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from ..batches import BatchSampler
from ..config import OPERATIONAL_KEYS, Config
from ..datasets import ImageData
from ..errors import ConfigError, TrainingError
from ..latents import temperature_at
from ..models import VAEOutput
from ..objectives import aggregate_code_entropy, mi_batch
from ..runs.run import Run, history_frame
from ..steps import METRICS, build_networks, q_forward, vae_forward
from ..trainer import CODE_USED_FRACTION, objective_of
from .device import resolve_amp

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
    if configs[0].step_mode != "fused":
        raise ConfigError("a group trains with the fused step; set step_mode: fused")
    if configs[0].compile:
        raise ConfigError("a group is not compiled; set compile: false")


class _Pass:
    """``VAE.forward`` with its sampling noise given (what vmap batches per member); called by ``steps.vae_forward``."""

    def __init__(self, encoder, decoder, latent, noise: dict[str, torch.Tensor]):
        self.encoder, self.decoder, self.latent, self.noise = encoder, decoder, latent, noise

    def __call__(self, x: torch.Tensor, tau: torch.Tensor, n_prior: int = 0) -> VAEOutput:
        mu, logvar, logits = self.latent.split_params(self.encoder(x))
        z = mu + torch.exp(0.5 * logvar) * self.noise["eps"]  # latents.gaussian_sample
        c = F.softmax((logits + -self.noise["exp"].log()) / tau, dim=-1) if logits is not None else None  # latents.gumbel_softmax_sample
        latent = self.latent.join(z, c)
        if not n_prior:
            x_pre = self.decoder(latent)
            return VAEOutput(torch.tanh(x_pre), x_pre, mu, logvar, logits, z, c)
        z_prior, c_prior = self.noise["z_prior"], self.noise.get("c_prior")
        x_pre_all = self.decoder(torch.cat([latent, self.latent.join(z_prior, c_prior)]))
        x_pre, x_pre_prior = x_pre_all[: len(x)], x_pre_all[len(x) :]
        return VAEOutput(torch.tanh(x_pre), x_pre, mu, logvar, logits, z, c, torch.tanh(x_pre_prior), z_prior, c_prior)


def _sub(params: dict, buffers: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for d in (params, buffers) for k, v in d.items() if k.startswith(prefix)}


def _scaled(t: torch.Tensor | None, lam: torch.Tensor) -> torch.Tensor | None:
    """``steps.scale_grad`` in a form vmap batches: the same values, the gradient times ``lam`` (a per-member tensor)."""
    return None if t is None else t.detach() + lam * (t - t.detach())


class GroupTrainer:
    """G runs of one architecture (``configs`` differing only in ``GROUP_KEYS``) trained by one batched step."""

    def __init__(self, configs: list[Config], data: ImageData, device: torch.device):
        check_group(configs)
        self.configs, self.device, c = list(configs), device, configs[0]
        self.objective = objective_of(c)  # the structure (components, source, losses); the weights are per member
        vaes, qs, self.generators = [], [], []
        for config in self.configs:
            torch.manual_seed(config.seed)  # as the Trainer: weights, then the sampling noise, from this seed
            vae, q = build_networks(data.image_shape, config)
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
        objectives = [objective_of(config) for config in self.configs]
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
        """Each member's noise, drawn from its own generator in the order ``VAE.forward`` draws it: [G, ...]."""
        latent, n, dev = self.vae_base.latent, self.objective.n_prior * batch, self.device
        draws: dict[str, list[torch.Tensor]] = {}
        for gen in self.generators:
            draws.setdefault("eps", []).append(torch.randn(batch, latent.continuous, generator=gen, device=dev))
            if latent.categorical:
                draws.setdefault("exp", []).append(torch.empty(batch, latent.categorical, device=dev).exponential_(generator=gen))
            if n:  # latents.sample_prior
                draws.setdefault("z_prior", []).append(torch.randn(n, latent.continuous, generator=gen, device=dev))
                if latent.categorical:
                    k = torch.randint(latent.categorical, (n,), generator=gen, device=dev)
                    draws.setdefault("c_prior", []).append(F.one_hot(k, latent.categorical).float())
        return {key: torch.stack(values) for key, values in draws.items()}

    def _member(self, vae_p, vae_b, q_p, q_b, x, noise, w, tau):
        """One member's fused step up to its losses (vmapped): ``(backward loss, Q loss, METRICS values, logits)``."""
        o = self.objective
        lam_cat, lam_cont, kl_weight, entropy_weight, lam = w.unbind()
        vae = _Pass(lambda t: functional_call(self.vae_base.encoder, _sub(vae_p, vae_b, "encoder."), (t,)),
                    lambda t: functional_call(self.vae_base.decoder, _sub(vae_p, vae_b, "decoder."), (t,)), self.vae_base.latent, noise)
        out, recon, kl_cont, kl_cat = vae_forward(vae, x, tau, o)
        h_cat = aggregate_code_entropy(out.logits, o.source) if out.logits is not None else recon.new_zeros(())
        zero = recon.new_zeros(())
        ce_cat = ce_cont = zero
        if self.q_base is not None:
            images, c_target, z_target = mi_batch(out, o.source, o.components)
            if self.single:
                images, c_target, z_target = (_scaled(t, lam) for t in (images, c_target, z_target))
            ce_cat, ce_cont = q_forward(lambda t: functional_call(self.q_base, {**q_p, **q_b}, (t,)), images, c_target, z_target)
        q_loss = ce_cat + ce_cont
        elbo = recon + kl_weight * (kl_cont + kl_cat)
        loss = elbo + lam_cat * ce_cat + lam_cont * ce_cont - entropy_weight * h_cat
        backward = elbo + q_loss - entropy_weight * h_cat if self.single else loss
        with torch.no_grad():
            mse = recon if o.recon_loss == "mse" else F.mse_loss(out.x_hat.float(), x.float())
            values = torch.stack([loss, recon, kl_cont, kl_cat, ce_cat, ce_cont, q_loss, mse, h_cat]).detach().float()
        logits = out.logits if out.logits is not None else out.mu[:, :0]
        return backward, q_loss, values, logits.detach()

    def train_step(self) -> torch.Tensor:
        """Update every member on its next batch; returns ``[G, METRICS + K counts]`` (no host sync)."""
        x = self.images[torch.stack([s.next() for s in self.samplers])]
        noise = self._noise(x.shape[1])
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else contextlib.nullcontext()
        with autocast:
            backward, q_loss, values, logits = vmap(self._member, in_dims=(0, 0, 0, 0, 0, 0, 0, None))(
                self.vae_params, self.vae_buffers, self.q_params, self.q_buffers, x, noise, self.weights, self._tau)
        vae_params, q_params = list(self.vae_params.values()), list(self.q_params.values())
        for opt in (self.vae_opt, self.q_opt):
            if opt is not None:
                opt.zero_grad(set_to_none=True)
        if self.single or not q_params:
            backward.sum().backward()  # members are independent: the sum's gradient is each member's own
        else:
            torch.autograd.backward(backward.sum(), inputs=vae_params, retain_graph=True)
            torch.autograd.backward(q_loss.sum(), inputs=q_params)
        for opt, params in ((self.vae_opt, vae_params), (self.q_opt, q_params)):
            if opt is not None:
                self._clip(params)
                opt.step()
        if logits.shape[-1] == 0:
            return values
        k = logits.shape[-1]
        counts = (logits.argmax(dim=-1, keepdim=True) == torch.arange(k, device=logits.device)).sum(dim=1)
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
