"""Runs trained as one group (vmap over stacked weights) are the runs trained alone.

Tolerances. The first step is computed from the initial weights, the member's batch and its noise: its
metrics agree to float32 rounding (rtol 1e-5). Gradients and the steps after the first are as sensitive
to rounding as the model is: for some seeds a change of memory layout alone (channels_last) moves Q's
first-layer gradients by 2% and, through Adam, the losses of step 3 by 1%. Those are compared with the
lone run within 4 times the difference that the layout change makes to it (plus 1e-5 of the scale).
"""

import numpy as np
import pytest
import torch

from vmivae.datasets import load
from vmivae.errors import ConfigError
from vmivae.models import VAE, QNetwork
from vmivae.perf.grouped import GroupTrainer, check_group
from vmivae.presets import make_config
from vmivae.trainer import Trainer

DEVICES = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def _configs(preset, members, **shared):
    """fp32 (the smoke profile's amp: auto is bf16 on a CPU with bf16 units, whose rounding would swamp the comparison)."""
    return [make_config(preset, "smoke", {"batch_size": 8, "log_every": 10, "channels_last": False, "amp": "none", **shared, **m})
            for m in members]


def _alone(config, device, steps, channels_last=False):
    trainer = Trainer(config.replace(channels_last=channels_last), load("mnist-5k"), device)
    trainer.train(steps)
    return trainer


def _within(got, alone, moved, scale):
    """``|got - alone| <= 4 |moved - alone| + 5e-3 scale`` (maxima), where ``moved`` is the lone run after a layout change.

    The floor of 5e-3 of the scale: on a CPU whose kernels give the same bits in both layouts (AVX-512 ones do)
    the layout change moves nothing, yet a batched convolution still sums in another order than a lone one;
    measured there, up to 1.3e-3 of the scale on first-layer gradients. A member computed with
    another member's weights, batch or noise is off by the whole scale."""
    bound = 4 * (moved - alone).abs().max() + 5e-3 * scale
    assert (got - alone).abs().max() <= bound, f"{(got - alone).abs().max():.3g} > {bound:.3g}"


@pytest.fixture
def exact_fp32():
    """cuDNN convolves fp32 in TF32 by default (a 10-bit mantissa): a batched and a lone convolution then differ by
    ~1e-4 relative at the first step. The comparison is of the arithmetic, so in full fp32."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize("device", DEVICES, ids=str)
@pytest.mark.parametrize("preset,members,shared", [
    # two different lambdas per member: two restricted backward passes; the members differ in seed, lambda_cat, kl_weight
    ("paper-joint", [{"seed": 0}, {"seed": 1, "lambda_cat": 0.05}, {"seed": 2, "kl_weight": 0.01}], {}),
    # one lambda each (lambda 0 for the baseline twin), reconstructions and prior codes: one backward pass; clipped per member
    ("paper-gaussian", [{"seed": 0}, {"seed": 1, "lambda_cont": 0.0}], {"grad_clip": 0.5}),
])
def test_each_member_is_its_run_trained_alone(exact_fp32, device, preset, members, shared):
    configs, steps = _configs(preset, members, **shared), 3
    group = GroupTrainer(configs, load("mnist-5k"), device)
    group.train(1)
    grads = [{k: p.grad[g].clone() for k, p in {**group.vae_params, **group.q_params}.items()} for g in range(len(group))]
    moments = [{k: group.vae_opt.state[p]["exp_avg"][g].clone() for k, p in group.vae_params.items()} for g in range(len(group))]
    group.train(steps)
    first_losses = []
    for g, config in enumerate(configs):
        one = _alone(config, device, 1)
        moved = _alone(config, device, 1, channels_last=True)
        got, alone = group.history_rows(g), one.history_rows()
        np.testing.assert_allclose(got[0, :-1], alone[0, :-1], rtol=1e-5, atol=1e-5)  # step 1: init, batch, noise, weights
        first_losses.append(alone[0, 1])
        named = {**dict(one.vae.named_parameters()), **{f"q.{k}": p for k, p in one.q.named_parameters()}}
        named_moved = {**dict(moved.vae.named_parameters()), **{f"q.{k}": p for k, p in moved.q.named_parameters()}}
        scale = max(p.grad.abs().max() for p in named.values())
        for name, p in named.items():
            _within(grads[g][name.removeprefix("q.")], p.grad, named_moved[name].grad, scale)
        # one Adam over the stacked tensors: member g's moments are slice g, those of the lone run's Adam
        for name, p in one.vae.named_parameters():
            _within(moments[g][name], one.vae_opt.state[p]["exp_avg"], moved.vae_opt.state[named_moved[name]]["exp_avg"], 0.1 * scale)
        one.train(steps)
        moved.train(steps)
        rows = lambda t: torch.tensor(t.history_rows()[:, 1:-2])  # noqa: E731  every metric but tau and codes_used
        _within(torch.tensor(got[:, 1:-2]), rows(one), rows(moved), rows(one).abs().max())
        state = group.member_state(g)  # an ordinary state dict, loadable into the ordinary modules
        VAE((1, 28, 28), config.latent).load_state_dict(state["vae"])
        QNetwork((1, 28, 28), config.categorical if config.mi_categorical else None, len(config.mi_dims)).load_state_dict(state["q"])
        torch.testing.assert_close(state["vae"]["encoder.trunk.0.weight"], group.vae_params["encoder.trunk.0.weight"][g].detach())
    assert len(set(np.round(first_losses, 4))) == len(configs)  # the members are different runs


def test_running_statistics_are_each_members_own():
    configs = _configs("paper-joint", [{"seed": 0}, {"seed": 1}])
    group = GroupTrainer(configs, load("mnist-5k"), torch.device("cpu"))
    group.train(2)
    for g, config in enumerate(configs):
        alone = _alone(config, torch.device("cpu"), 2)
        mine = group.member_state(g)["vae"]
        for key in ("encoder.trunk.3.running_var", "decoder.mlp.4.running_mean", "encoder.trunk.3.num_batches_tracked"):
            # a batched convolution's summation order moves a few near-zero means by ~1e-4 (measured on AVX-512)
            torch.testing.assert_close(mine[key], alone.vae.state_dict()[key], rtol=1e-3, atol=3e-4)


def test_runs_come_back_as_ordinary_runs():
    configs = _configs("paper-joint", [{"seed": 0}, {"seed": 1}], log_every=2)
    group = GroupTrainer(configs, load("mnist-5k"), torch.device("cpu"))
    group.train(3)
    runs = group.runs()
    assert [r.config.seed for r in runs] == [0, 1] and all(len(r.history) == 3 for r in runs)
    assert list(runs[0].history["step"]) == [1, 2, 3] and runs[0].metrics["group"] == 2
    x = load("mnist-5k").images[:4]
    assert runs[0].vae.reconstruct(x).shape == x.shape and not torch.equal(runs[0].vae.reconstruct(x), runs[1].vae.reconstruct(x))


def test_only_seeds_and_objective_weights_may_differ():
    check_group(_configs("paper-joint", [{"seed": 0}, {"seed": 5, "lambda_cat": 0.1, "aggregate_entropy": True, "device": "cpu"}]))
    with pytest.raises(ConfigError, match="run 1 differs from run 0 in batch_size"):
        check_group(_configs("paper-joint", [{}, {"batch_size": 16}]))
    with pytest.raises(ConfigError, match="differs from run 0 in mi_source"):
        check_group(_configs("paper-joint", [{}, {"mi_source": "generation"}]))
    with pytest.raises(ConfigError, match="fused step"):
        check_group(_configs("paper-joint", [{"step_mode": "alternating"}]))
    with pytest.raises(ConfigError, match="at least one"):
        check_group([])
