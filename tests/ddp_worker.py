"""Run under torchrun by tests/test_distributed.py.

    python -m torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py fit OUT STEPS KEY=VALUE...
    python -m torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py resume OUT STEPS
    python -m torch.distributed.run --nproc_per_node=2 tests/ddp_worker.py grads OUT PRESET KEY=VALUE...

``fit``/``resume`` train (or continue) ``OUT/run`` and save this rank's weights to ``OUT/rank<r>.pt``;
``grads`` compares the gradients of one DDP step with the average of per-process gradients computed
without DDP on the same samples, and saves the largest normalised difference.
"""

import os
import sys
from pathlib import Path

import torch

import vmivae
from vmivae.config import parse_assignment

mode, out = sys.argv[1], Path(sys.argv[2])
rank = int(os.environ["RANK"])


def save(run):
    torch.save({"vae": run.vae.state_dict(), "q": run.q.state_dict(), "loss": run.history["loss"].tolist()}, out / f"rank{rank}.pt")


if mode == "fit":
    overrides = dict(parse_assignment(a) for a in sys.argv[4:])
    save(vmivae.fit(vmivae.make_config("paper-joint", "smoke", {"steps": int(sys.argv[3]), **overrides}), out=out / "run", progress=False))
elif mode == "resume":
    save(vmivae.resume(out / "run", steps=int(sys.argv[3]), progress=False))
elif mode == "grads":
    import torch.distributed as dist

    from vmivae.objectives import mi_batch, mi_cross_entropies
    from vmivae.perf import distributed
    from vmivae.steps import vae_forward
    from vmivae.trainer import Trainer

    overrides = {"batch_size": 32, "amp": "none", **dict(parse_assignment(a) for a in sys.argv[4:])}
    config = vmivae.make_config(sys.argv[3], "smoke", overrides)
    info, device = distributed.setup(torch.device("cpu"))
    trainer = Trainer(config, vmivae.load("mnist-5k"), device, info)
    o = trainer.stepper.objective
    x = trainer.images[trainer.sampler.next()]
    rng = torch.get_rng_state()
    out_, recon, kl_cont, kl_cat = vae_forward(trainer.vae, x, trainer._tau, o)  # plain modules, no DDP
    images, c, z = mi_batch(out_, o.source, o.components)
    ce_cat, ce_cont = mi_cross_entropies(*trainer.q(images), c, z)
    loss_vae = recon + o.kl_weight * (kl_cont + kl_cat) + o.lambda_cat * ce_cat + o.lambda_cont * ce_cont
    expected = list(torch.autograd.grad(loss_vae, list(trainer.vae.parameters()), retain_graph=True))
    detach = lambda t: None if t is None else t.detach()  # noqa: E731
    expected += torch.autograd.grad(sum(mi_cross_entropies(*trainer.q(images.detach()), detach(c), detach(z))), list(trainer.q.parameters()))
    for g in expected:
        dist.all_reduce(g)
        g /= info.world_size
    for group in (trainer.vae_opt, trainer.q_opt):  # read the gradients without moving the weights
        group.param_groups[0]["lr"] = 0.0
    torch.set_rng_state(rng)
    trainer.stepper(x, trainer._tau)
    params = list(trainer.vae.parameters()) + list(trainer.q.parameters())
    if config.step_mode == "alternating":  # its Q update uses a second forward pass: compare the VAE's gradients
        params, expected = params[: len(list(trainer.vae.parameters()))], expected[: len(list(trainer.vae.parameters()))]
    scale = max(g.abs().max().item() for g in expected)
    error = max((p.grad - g).abs().max().item() for p, g in zip(params, expected)) / scale
    if rank == 0:
        (out / "grad_error.txt").write_text(str(error))
    distributed.teardown(info)
