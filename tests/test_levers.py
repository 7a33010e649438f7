"""The KL levers beyond the paper: separate KL weights per part and JointVAE capacity schedules.

At their defaults the loss, the training step and the config hash are the paper's, bit for bit.
"""

import math

import pytest
import torch

from vmivae.config import FIELDS, LEVER_KEYS
from vmivae.errors import ConfigError
from vmivae.objectives import Capacity, LossTerms, LossWeights, capacity_at, capacity_penalty, elbo_terms, kl_terms, vae_loss
from vmivae.perf.grouped import check_group
from vmivae.presets import list_presets, make_config
from vmivae.steps import Stepper, build_networks
from vmivae.trainer import objective_of

TERMS = LossTerms(*(torch.tensor(v) for v in (0.5, 3.0, 2.0, 1.5, 4.0, 0.8)))  # recon, KL_cont, KL_cat, CE_cat, CE_cont, H(c)

# Config.hash() of every shipped preset under the smoke profile before the levers existed (computed from the
# package as it was): runs already trained and cached keep their hash.
HASHES_BEFORE = {"paper-gaussian": "ee9f8230ff6d", "paper-gaussian-baseline": "a96e913548fa", "paper-joint": "c8b68c618502",
                 "paper-joint-baseline": "ed6341a61e62", "paper-joint-fashion": "43e1f48276a5", "paper-joint-fashion-baseline": "2260cd7186fc",
                 "shapes-joint": "a3b44921e45a", "shapes-joint-baseline": "7ab0d2d2e9b9", "vmi-joint": "2667b230f29f",
                 "vmi-joint-baseline": "ed6341a61e62"}


def _paper_loss(t: LossTerms, w: LossWeights) -> torch.Tensor:
    """The VAE loss exactly as written before the levers (the same operations in the same order)."""
    return t.recon + w.kl_weight * (t.kl_cont + t.kl_cat) + w.lambda_cat * t.ce_cat + w.lambda_cont * t.ce_cont - w.entropy_weight * t.h_cat


def test_separate_kl_weights_weigh_each_part():
    w = LossWeights(0.05, 0.01, 0.0005, 0.01, kl_weight_cat=0.005)
    assert kl_terms(TERMS, w).item() == pytest.approx(0.05 * 3.0 + 0.005 * 2.0)
    assert vae_loss(TERMS, w).item() == pytest.approx(0.5 + 0.05 * 3.0 + 0.005 * 2.0 + 0.01 * 1.5 + 0.0005 * 4.0 - 0.01 * 0.8)


def test_a_capacity_replaces_its_parts_weighted_kl_by_gamma_times_the_distance():
    cont = Capacity(30.0, 5.0)  # KL_cont = 3 is 2 nats below C = 5
    assert capacity_penalty(TERMS.kl_cont, cont).item() == pytest.approx(60.0)
    assert kl_terms(TERMS, LossWeights(0.005, 0, 0, 0, capacity_cont=cont)).item() == pytest.approx(60.0 + 0.005 * 2.0)
    assert kl_terms(TERMS, LossWeights(0.005, 0, 0, 0, kl_weight_cat=0.1, capacity_cont=cont)).item() == pytest.approx(60.0 + 0.1 * 2.0)
    cat = Capacity(2.0, 1.5)  # KL_cat = 2 is 0.5 nats above C
    assert kl_terms(TERMS, LossWeights(0.005, 0, 0, 0, capacity_cat=cat)).item() == pytest.approx(0.005 * 3.0 + 1.0)
    assert kl_terms(TERMS, LossWeights(0.005, 0, 0, 0, capacity_cont=cont, capacity_cat=cat)).item() == pytest.approx(61.0)
    # the gradient pushes KL towards C from either side, with slope gamma
    kl = torch.tensor([3.0, 7.0], requires_grad=True)
    capacity_penalty(kl, Capacity(30.0, 5.0)).sum().backward()
    assert kl.grad.tolist() == [-30.0, 30.0]


def test_the_capacity_rises_linearly_then_holds_also_on_a_device_step_counter():
    assert [capacity_at(t, 0.0, 5.0, 100) for t in (0, 50, 100, 250)] == [0.0, 2.5, 5.0, 5.0]
    assert capacity_at(10, 1.0, 0.0, 20) == pytest.approx(0.5)  # a falling schedule too
    steps = torch.tensor([0, 25, 100, 400])
    assert capacity_at(steps, 0.0, 5.0, 100).tolist() == [0.0, 1.25, 5.0, 5.0]


@pytest.mark.parametrize("preset", list_presets())
def test_with_the_defaults_every_presets_loss_is_bit_identical_to_the_papers(preset):
    config = make_config(preset, "smoke")
    objective = objective_of(config)
    assert objective.weights == LossWeights(config.kl_weight, config.lambda_cat, config.lambda_cont, config.entropy_weight)
    assert not objective.scheduled
    torch.manual_seed(0)
    vae, _ = build_networks((1, 28, 28), config)
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    recon, kl_cont, kl_cat = elbo_terms(vae(x, 0.5), x)
    terms = LossTerms(recon, kl_cont, kl_cat, torch.tensor(2.3), torch.tensor(4.1), torch.tensor(1.7))
    assert torch.equal(vae_loss(terms, objective.weights), _paper_loss(terms, objective.weights))
    # equal separate weights are the paper's one weight: the same single product
    same = objective_of(config.replace(kl_weight_cont=config.kl_weight, **({"kl_weight_cat": config.kl_weight} if config.categorical else {})))
    assert same == objective


@pytest.mark.parametrize("preset", list_presets())
def test_the_levers_at_their_defaults_leave_every_presets_hash_as_it_was(preset):
    assert make_config(preset, "smoke").hash() == HASHES_BEFORE[preset]
    assert make_config(preset, "smoke", {"kl_weight_cont": 0.05}).hash() != HASHES_BEFORE[preset]


def _stepper(config, lr=1e-3):
    torch.manual_seed(0)
    vae, q = build_networks((1, 28, 28), config)
    ov, oq = torch.optim.Adam(vae.parameters(), lr=lr), torch.optim.Adam(q.parameters(), lr=lr)
    return Stepper(vae, q, list(vae.parameters()), list(q.parameters()), objective_of(config), ov, oq, config.step_mode)


@pytest.mark.parametrize("mode", ["fused", "alternating"])
def test_equal_separate_weights_train_exactly_as_the_one_weight(mode):
    base = make_config("vmi-joint", "smoke", {"batch_size": 8, "step_mode": mode})
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    runs = []
    for config in (base, base.replace(kl_weight_cont=0.005, kl_weight_cat=0.005)):
        stepper = _stepper(config)
        torch.manual_seed(5)
        runs.append(torch.stack([stepper(x, torch.tensor(0.7)) for _ in range(2)]))
    assert torch.equal(runs[0], runs[1])


def test_the_step_reads_the_capacity_of_its_own_step_from_a_device_counter():
    config = make_config("vmi-joint", "smoke", {"batch_size": 8, "capacity_cont_gamma": 2.0, "capacity_cont_end": 4.0, "capacity_cont_steps": 2,
                                                "kl_weight_cat": 0.01})
    stepper = _stepper(config, lr=0.0)  # lr 0: the weights stay put, so each step's loss can be recomputed
    assert stepper.step_count.item() == 0
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for step, target in enumerate((0.0, 2.0, 4.0, 4.0)):
        torch.manual_seed(step)
        metrics = stepper(x, torch.tensor(0.7))
        loss, recon, kl_cont, kl_cat, ce_cat, ce_cont, _, _, h_cat = metrics[:9].tolist()
        expected = recon + 2.0 * abs(kl_cont - target) + 0.01 * kl_cat + 0.01 * ce_cat + 0.0005 * ce_cont - 0.01 * h_cat
        assert loss == pytest.approx(expected, rel=1e-5)
        assert stepper.step_count.item() == step + 1
    stepper.set_step(1)  # a resumed run continues its schedule where it was
    assert stepper.step_count.item() == 1
    assert _stepper(make_config("vmi-joint", "smoke")).step_count is None  # no schedule, no counter


def test_a_resumed_trainer_continues_the_capacity_schedule():
    from vmivae.datasets import ImageData
    from vmivae.trainer import Trainer
    config = make_config("vmi-joint", "smoke", {"batch_size": 8, "capacity_cat_gamma": 1.0, "capacity_cat_end": 1.0, "capacity_cat_steps": 10,
                                                "device": "cpu", "log_every": 2, "checkpoint_every": 2})
    data = ImageData(torch.rand(32, 1, 28, 28) * 2 - 1, name="custom")
    first = Trainer(config.replace(dataset="custom"), data, torch.device("cpu"))
    first.train(3)
    second = Trainer(config.replace(dataset="custom"), data, torch.device("cpu"))
    second.load_state_dict(first.state_dict())
    assert second.stepper.step_count.item() == first.stepper.step_count.item() == 3


@pytest.mark.parametrize("overrides,message", [
    ({"kl_weight_cont": -0.1}, "kl_weight_cont must be null or non-negative"),
    ({"kl_weight_cat": -1}, "kl_weight_cat must be null or non-negative"),
    ({"capacity_cont_gamma": -1.0}, "capacity_cont_gamma, _start and _end must be non-negative"),
    ({"capacity_cont_gamma": 1.0, "capacity_cont_end": -5.0}, "must be non-negative"),
    ({"capacity_cont_gamma": 1.0, "capacity_cont_steps": 0}, "capacity_cont_steps must be at least 1"),
    ({"capacity_cont_end": 5.0}, "have no effect while capacity_cont_gamma is 0"),
    ({"capacity_cont_gamma": 1.0, "kl_weight_cont": 0.01}, "kl_weight_cont has no effect with a capacity on that part"),
    ({"capacity_cat_gamma": 1.0, "capacity_cat_end": 5.0}, r"must not exceed log K = 2\.3026 nats"),
    ({"capacity_cont_gamma": "a lot"}, "capacity_cont_gamma' must be a number"),
])
def test_bad_lever_values_are_one_clear_sentence(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config("vmi-joint", "smoke", overrides)


def test_levers_on_the_categorical_part_need_a_code():
    for overrides in ({"kl_weight_cat": 0.01}, {"capacity_cat_gamma": 1.0, "capacity_cat_end": 1.0}):
        with pytest.raises(ConfigError, match="set categorical"):
            make_config("paper-gaussian", "smoke", overrides)
    ok = make_config("vmi-joint", "smoke", {"capacity_cat_gamma": 1.0, "capacity_cat_end": math.log(10)})
    assert objective_of(ok).capacity_cat == (0.0, math.log(10), 1, 1.0)


def test_a_group_refuses_the_levers_it_does_not_train():
    configs = [make_config("vmi-joint", "smoke", {"seed": s, "kl_weight_cat": 0.01}) for s in (0, 1)]
    with pytest.raises(ConfigError, match="train runs that set kl_weight_cat one by one"):
        check_group(configs)
    check_group([make_config("vmi-joint", "smoke", {"seed": s}) for s in (0, 1)])
    assert all(FIELDS[k].default in (None, 0.0, 1) for k in LEVER_KEYS)
