"""The captured step (capture: cuda-graph): the same training as the eager step.

On a CPU the capture's bookkeeping runs against an eager imitation of a CUDA graph (capture records
the step without running it, replay runs it): warm-up calls, static buffers, one update per call,
recapture after an optimiser load, Adam's capturable flag. On a GPU the real graph is compared with
the eager step over whole runs, a resumed captured run with an uninterrupted one.
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import vmivae
from vmivae.datasets import load
from vmivae.errors import ConfigError
from vmivae.perf.device import resolve_capture
from vmivae.perf.graphed import WARMUP, GraphedStep, GraphSafeStepper, make_step
from vmivae.presets import make_config
from vmivae.steps import Stepper
from vmivae.trainer import Trainer

CPU = torch.device("cpu")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class EagerReplay:
    """A CUDA graph's contract on the CPU: warm-up runs the step, capture runs nothing, replay runs it."""

    def __init__(self):
        self.flags_at_capture = []

    def warm(self, fn):
        return fn()

    def capture(self, fn):
        self.flags_at_capture.append([g["capturable"] for opt in self.optimizers for g in opt.param_groups])
        return SimpleNamespace(replay=fn)


def _trainer(preset="paper-joint", **overrides):
    config = make_config(preset, "smoke", {"batch_size": 8, "log_every": 4, "channels_last": False, **overrides})
    return Trainer(config, load("mnist-5k"), CPU)


def _imitate(trainer, warmup=2):
    graphs = EagerReplay()
    trainer.stepper = GraphedStep(trainer.stepper, CPU, warmup=warmup, graphs=graphs)
    graphs.optimizers = trainer.stepper.optimizers
    return trainer.stepper


@pytest.mark.parametrize("preset,overrides", [("paper-joint", {}), ("paper-gaussian", {"step_mode": "alternating", "fused_adam": False})])
def test_one_update_per_call_through_warm_up_capture_and_replay(preset, overrides):
    eager = _trainer(preset, **overrides)  # a trainer draws its noise from the global generator it seeded: one at a time
    eager.train(5)
    graphed = _trainer(preset, **overrides)
    step = _imitate(graphed)
    graphed.train(5)
    assert (step.warm_calls, step.captures, step.replays) == (2, 1, 3)
    np.testing.assert_array_equal(graphed.history_rows(), eager.history_rows())  # the same operations on a CPU: bit for bit
    for a, b in zip(graphed.vae.state_dict().values(), eager.vae.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_loaded_optimiser_is_noticed_and_the_step_captured_again():
    eager = _trainer()
    eager.train(6)
    graphed = _trainer()
    step = _imitate(graphed, warmup=1)
    graphed.train(3)
    assert step.captures == 1
    graphed.load_state_dict(graphed.state_dict())  # new optimiser state tensors: the graph's addresses are gone
    graphed.train(6)
    assert step.captures == 2 and step.warm_calls == 1 and step.replays == 2 + 2
    # (codes_used, the last column, counts over a flush interval, and the intervals differ)
    np.testing.assert_array_equal(graphed.history_rows()[:, :-1], eager.history_rows()[:, :-1])


def test_adam_is_capturable_only_while_capturing():
    graphed = _trainer(fused_adam=False)
    step = _imitate(graphed)
    graphed.train(3)
    assert step.graphs.flags_at_capture == [[True, True]]
    assert [g["capturable"] for opt in step.optimizers for g in opt.param_groups] == [False, False]
    assert not graphed.vae_opt.state_dict()["param_groups"][0]["capturable"]  # a checkpoint resumes eagerly


@pytest.mark.parametrize("overrides", [{}, {"amp": "bf16"}, {"mi_source": "both"}, {"mi_source": "generation", "mi_dims": [3, 0, 1]}])
def test_the_graph_safe_step_returns_the_eager_metrics(overrides):
    a, b = _trainer(**overrides), _trainer(**overrides)
    x = a.images[:8]
    torch.manual_seed(5)
    expected = a.stepper(x, a._tau)
    torch.manual_seed(5)
    got = GraphSafeStepper.of(b.stepper)(x, b._tau)
    assert got.shape == expected.shape == (9 + 10,)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert got[9:].sum() == 8  # argmax counts: every image once


@pytest.mark.parametrize("source", ["reconstruction", "generation", "both"])
@pytest.mark.parametrize("dims", [(0,), (2, 3, 4), (5, 1, 2), (0, 2, 4, 5)])
def test_the_capture_safe_pieces_equal_the_plain_ones(source, dims):
    """Targets by slices, log K as a fill, argmax counts by comparison: the plain step's values, bit for bit."""
    from vmivae import steps
    from vmivae.latents import LatentSpec
    from vmivae.models import VAE
    from vmivae.objectives import MIComponents
    from vmivae.perf import capture_safe

    torch.manual_seed(0)
    out = VAE((1, 28, 28), LatentSpec(6, 4))(torch.rand(5, 1, 28, 28) * 2 - 1, 0.7, n_prior=5 if source != "reconstruction" else 0)
    objective = steps.Objective(MIComponents(True, dims), source)
    for got, plain in zip(capture_safe.mi_targets(out, objective), steps.mi_targets(out, objective)):
        torch.testing.assert_close(got, plain, rtol=0, atol=0)
    torch.testing.assert_close(capture_safe.code_entropy(out, objective), steps.code_entropy(out, objective), rtol=0, atol=0)
    logits = torch.randn(40, 7)
    torch.testing.assert_close(capture_safe.code_counts(logits), steps.code_counts(logits), rtol=0, atol=0)


def test_capture_off_cuda_is_a_config_error_and_auto_stays_eager(tmp_path):
    assert resolve_capture("auto", CPU) == resolve_capture("none", CPU) == "none"
    assert resolve_capture("auto", torch.device("cuda"), processes=2) == "none"
    trainer = _trainer(capture="auto")
    assert trainer.capture == "none" and type(trainer.stepper) is Stepper
    assert make_step(trainer.stepper, "none", CPU) is trainer.stepper
    with pytest.raises(ConfigError, match="capture: cuda-graph needs a CUDA device, but this run is on cpu"):
        vmivae.fit(make_config("paper-joint", "smoke", {"capture": "cuda-graph", "device": "cpu"}), out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    with pytest.raises(ConfigError, match="cuda-graph trains one process"):
        resolve_capture("cuda-graph", torch.device("cuda"), processes=2)
    with pytest.raises(ConfigError, match="cannot run on cpu"):
        make_step(trainer.stepper, "cuda-graph", CPU)
    with pytest.raises(ConfigError, match="unknown capture 'graph'"):
        make_config("paper-joint", "smoke", {"capture": "graph"})


def test_capture_is_operational_it_keeps_the_config_hash():
    config = make_config("paper-joint", "quick")
    assert config.replace(capture="cuda-graph").hash() == config.hash()


# ---------------------------------------------------------------------------- on a GPU
# Tolerance. A replay runs the eager step's kernels on the eager step's random numbers, so with
# deterministic kernels a captured run is the eager run to the last bit. Where a kernel is not
# deterministic, two eager runs differ too, and through Adam such differences grow (a 1-ulp change moves
# the losses of step 3 by up to 1% for some seeds). So a captured run must stay within 4 times the
# distance between two eager runs, plus 1e-5 of the scale: bit-identical or as close as eager is to itself.

STEPS = 40


@pytest.fixture
def deterministic():
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


def _cuda_run(preset, capture, **overrides):
    config = make_config(preset, "smoke", {"steps": STEPS, "log_every": 10, "checkpoint_every": STEPS, "device": "cuda",
                                           "capture": capture, **overrides})
    return vmivae.fit(config, progress=False)


def _same_run(got, eager, again):
    """``got`` (a Run) within 4x the distance of two eager Runs ``eager`` and ``again``, plus 1e-5 of the scale:
    every metric of every step (not codes_used, a count over a threshold) and every weight and running statistic."""
    pairs = [tuple(torch.tensor(r.history.values[:, :-1]) for r in (got, eager, again))]
    pairs += [tuple(r.vae.state_dict()[k].double() for r in (got, eager, again)) for k in eager.vae.state_dict()]
    pairs += [tuple(r.q.state_dict()[k].double() for r in (got, eager, again)) for k in eager.q.state_dict()]
    for name, (a, b, c) in enumerate(pairs):
        bound = 4 * (c - b).abs().max() + 1e-5 * b.abs().max()
        assert (a - b).abs().max() <= bound, f"item {name}: {(a - b).abs().max():.3g} > {bound:.3g}"


@CUDA
@pytest.mark.parametrize("preset,overrides", [
    ("paper-joint", {}),  # two lambdas: two backward passes
    ("paper-joint", {"lambda_cont": 0.01}),  # one backward pass through scale_grad
    ("paper-gaussian", {}),  # prior codes drawn inside the graph
    ("paper-joint", {"step_mode": "alternating", "fused_adam": False, "grad_clip": 1.0}),  # foreach Adam, captured capturable
    ("paper-joint", {"amp": "bf16", "channels_last": True}),
])
def test_a_captured_run_follows_the_eager_run(deterministic, preset, overrides):
    eager, again = _cuda_run(preset, "none", **overrides), _cuda_run(preset, "none", **overrides)
    graphed = _cuda_run(preset, "cuda-graph", **overrides)
    assert graphed.metrics["capture"] == "cuda-graph" and eager.metrics["capture"] == "none"
    _same_run(graphed, eager, again)


@CUDA
def test_the_trainer_replays_the_graph_after_the_warm_up(deterministic):
    config = make_config("paper-joint", "smoke", {"device": "cuda", "capture": "cuda-graph"})
    trainer = Trainer(config, load("mnist-5k"), torch.device("cuda"))
    trainer.train(WARMUP + 5)
    step = trainer.stepper
    assert isinstance(step, GraphedStep) and (step.warm_calls, step.captures, step.replays) == (WARMUP, 1, 5)
    assert torch.isfinite(torch.tensor(trainer.history_rows())).all()


@CUDA
def test_a_resumed_captured_run_matches_the_uninterrupted_one(deterministic, tmp_path):
    settings = {"steps": 24, "log_every": 4, "checkpoint_every": 12, "device": "cuda", "capture": "cuda-graph"}
    whole, again = (vmivae.fit(make_config("paper-joint", "smoke", settings), out=tmp_path / name, progress=False) for name in ("a", "b"))
    vmivae.fit(make_config("paper-joint", "smoke", {**settings, "steps": 12}), out=tmp_path / "halves", progress=False)
    resumed = vmivae.resume(tmp_path / "halves", steps=24, progress=False)
    assert resumed.metrics["capture"] == "cuda-graph"
    _same_run(resumed, whole, again)


@CUDA
def test_compiled_and_captured_follows_compiled_eager(deterministic):
    """torch.compile's kernels captured in the graph (inductor draws its random numbers from the same generator)."""
    eager, again = _cuda_run("paper-joint", "none", compile=True), _cuda_run("paper-joint", "none", compile=True)
    _same_run(_cuda_run("paper-joint", "cuda-graph", compile=True), eager, again)
