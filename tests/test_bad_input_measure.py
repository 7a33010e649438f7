"""Bad input to the measuring API (estimate_mi, estimate_mi_refits, evaluate, validate_estimator, LatentSpec):
one typed sentence that names the problem and the fix, raised before any work (the work is replaced by a trap)."""

import dataclasses
import re

import numpy as np
import pytest
import torch

import vmivae
from vmivae.cli import main
from vmivae.errors import CheckpointError, ConfigError, DataError, OutputError, VMIVAEError
from vmivae.latents import LatentSpec
from vmivae.measure import checks, evaluation, mi
from vmivae.measure.mi import SETTINGS, estimate_mi, estimate_mi_refits
from vmivae.measure.validation import SPEC, validate_estimator
from vmivae.runs.preflight import as_path
from vmivae.runs.run import Run, load_run

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def one_sentence(exc: BaseException, *words: str) -> str:
    """The message: one line, one sentence (no '. X' inside), holding every word given."""
    text = str(exc)
    assert "\n" not in text and not re.search(r"(?<!e\.g)[.!?]\s+[A-Z]", text), text
    for word in words:
        assert word in text, (word, text)
    return text


class WorkStarted(AssertionError):
    """Raised by the trap: the function began its work before refusing the input."""


@pytest.fixture
def no_work(monkeypatch):
    """Every expensive step of the estimator and of evaluate fails the test if it is reached."""

    def trap(*args, **kwargs):
        raise WorkStarted("work started before the input was checked")

    for module, name in ((mi, "_sources"), (mi, "_fit_q"), (mi, "QNetwork"), (evaluation, "encode_dataset"), (evaluation, "estimate_mi"),
                         (evaluation, "load")):
        monkeypatch.setattr(module, name, trap)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("measure") / "run"
    vmivae.fit(vmivae.make_config("paper-joint", "smoke", {"steps": 2}), out=path, progress=False)
    return path


@pytest.fixture(scope="module")
def run(run_dir):
    return load_run(run_dir)


def decoder(z):
    """A tiny decoder of LatentSpec(2, 10) latents: finite [B, 1, 28, 28] images."""
    return torch.tanh(z[:, :1, None, None]).expand(-1, 1, 28, 28).contiguous()


# ---------------------------------------------------------------------------- the model argument


def test_a_path_is_loaded_as_a_run_folder(run_dir, no_work):
    model = checks.estimate_args(str(run_dir), None, "generation", None, None, "smoke", None, SETTINGS, mi.PATHS)[0]
    assert isinstance(model, Run) and model.path.resolve() == run_dir.resolve()
    with pytest.raises(CheckpointError) as info:
        estimate_mi(str(run_dir / "nope"), settings="smoke")
    one_sentence(info.value, "does not exist")


@pytest.mark.parametrize("model, words", [(None, "got None"), (5, "got 5 (int)"), ({"a": 1}, "got a dict"), (LatentSpec, "got the class LatentSpec")])
def test_a_model_that_is_none_of_the_accepted_kinds(no_work, model, words):
    with pytest.raises(ConfigError) as info:
        estimate_mi(model, SPEC, settings="smoke")
    one_sentence(info.value, "model must be a Run, a run folder", "decoder function", words)


def test_a_config_is_not_a_trained_model(no_work):
    with pytest.raises(ConfigError) as info:
        estimate_mi(vmivae.make_config("paper-joint", "smoke"), settings="smoke")
    one_sentence(info.value, "holds no trained weights", "vmivae.fit(config")


def test_a_run_put_together_from_two_models(run, no_work):
    other = dataclasses.replace(run, config=vmivae.make_config("paper-gaussian", "smoke"))
    with pytest.raises(CheckpointError) as info:
        estimate_mi(other, settings="smoke")
    one_sentence(info.value, "its config describes", "vmivae.load_run(path)")
    with pytest.raises(CheckpointError):
        evaluation.evaluate(other, settings="smoke")


# ---------------------------------------------------------------------------- path, settings, device


@pytest.mark.parametrize("path", ["bogus", None, 3])
def test_an_unknown_path(no_work, path):
    with pytest.raises(ConfigError) as info:
        estimate_mi(decoder, SPEC, path=path, settings="smoke")
    one_sentence(info.value, "unknown path", "valid: generation, reconstruction")


@pytest.mark.parametrize("settings, words", [("bogus", "valid: full, quick, quick-500, smoke"), (None, "got None"), ({"n_eval": 5}, "got a dict")])
def test_unknown_or_wrong_typed_settings(no_work, settings, words):
    with pytest.raises(ConfigError) as info:
        estimate_mi(decoder, SPEC, settings=settings)
    one_sentence(info.value, words)


@pytest.mark.parametrize("field, value", [("n_eval", -5), ("n_eval", 0), ("n_boot", 0), ("seed", "1"), ("seed", -1), ("batch_size", 1),
                                          ("max_steps", 2.5), ("lr", float("nan")), ("lr", 0), ("ema", 1.0), ("amp", "fp16"),
                                          ("warm_start", "yes"), ("n_val", True)])
def test_settings_out_of_range(no_work, field, value):
    settings = dataclasses.replace(SETTINGS["smoke"], **{field: value})
    with pytest.raises(ConfigError) as info:
        estimate_mi(decoder, SPEC, settings=settings)
    one_sentence(info.value, f"estimator setting {field} must be", "the quick budget has")


def test_cuda_without_a_gpu(no_work, monkeypatch, run):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as info:
        estimate_mi(decoder, SPEC, settings="smoke", device="cuda")
    one_sentence(info.value, "CUDA is not available", "use device=auto or cpu")
    with pytest.raises(ConfigError):
        estimate_mi(run, settings="smoke", device="gpu")


def test_a_device_that_does_not_hold_the_models_weights(no_work, monkeypatch, run):
    monkeypatch.setattr("vmivae.perf.device.resolve_device", lambda name: torch.device("cuda"))  # as on a machine with a GPU
    with pytest.raises(ConfigError) as info:
        estimate_mi(run, settings="smoke", device="cuda")
    one_sentence(info.value, "the model's weights are on cpu", "leave device out")


# ---------------------------------------------------------------------------- latent spec


@pytest.mark.parametrize("args, kind, words", [((-1,), ValueError, "must be 0 or more"), ((0,), ValueError, "no latent component"),
                                               ((0, 1), ValueError, "at least 2 or None"), ((2, 0), ValueError, "at least 2 or None"),
                                               (("a", 2), TypeError, "whole number"), ((True, 10), TypeError, "whole number"),
                                               ((2, 10.0), TypeError, "whole number")])
def test_latent_spec_refuses_what_no_model_can_have(args, kind, words):
    with pytest.raises(kind) as info:
        LatentSpec(*args)
    assert isinstance(info.value, ConfigError)  # a VMIVAEError: the command prints its sentence, no traceback
    one_sentence(info.value, "LatentSpec", words)
    assert LatentSpec(0, 10).dim == 10 and type(LatentSpec(np.int64(3), 4).continuous) is int


def test_what_is_not_a_run_folder_path_is_one_sentence():
    with pytest.raises(CheckpointError) as info:
        load_run(42)
    one_sentence(info.value, "a run folder path", "got 42 (int)")
    with pytest.raises(OutputError) as info:  # pathlib's own RuntimeError ("Could not determine home directory") before
        as_path("~nosuchuserxyz/r", "out")
    one_sentence(info.value, "no user 'nosuchuserxyz'", "full path")


def test_latent_must_be_a_spec_that_fits_the_model(no_work, run):
    for latent, words in (((2, 10), "must be a vmivae.latents.LatentSpec"), (LatentSpec(0, 10), "at least one Gaussian dim")):
        with pytest.raises(ConfigError) as info:
            estimate_mi(decoder, latent, settings="smoke")
        one_sentence(info.value, words)
    with pytest.raises(ConfigError) as info:
        estimate_mi(run, LatentSpec(2, 10), settings="smoke")
    one_sentence(info.value, "differs from the model's own", "leave latent out")
    with pytest.raises(ConfigError) as info:
        estimate_mi(decoder, settings="smoke")
    one_sentence(info.value, "needs its latent spec", "LatentSpec(continuous=D, categorical=K)")


# ---------------------------------------------------------------------------- the reconstruction path


def test_reconstruction_needs_a_run_and_images(no_work, run):
    with pytest.raises(ConfigError) as info:
        estimate_mi(decoder, SPEC, path="reconstruction", settings="smoke")
    one_sentence(info.value, "needs a run", "vmivae.load_run(path)", "path='generation'")
    with pytest.raises(ConfigError) as info:
        estimate_mi(run, path="reconstruction", settings="smoke")
    one_sentence(info.value, "data is missing", "data=vmivae.load(")


def test_reconstruction_takes_plain_tensors_of_the_models_shape(no_work, run):
    images = torch.rand(40, 1, 28, 28)
    _, _, _, data, eval_data = checks.estimate_args(run, None, "reconstruction", images, images[:4], "smoke", None, SETTINGS, mi.PATHS)
    assert isinstance(data, vmivae.ImageData) and len(eval_data) == 4 and float(data.images.min()) >= -1
    for bad, kind, words in ((torch.rand(40, 3, 32, 32), DataError, "the model reads (1, 28, 28)"), (images[:5], DataError, "give at least 20"),
                             (torch.full((40, 1, 28, 28), float("nan")), DataError, "NaN or inf")):
        with pytest.raises(kind) as info:
            estimate_mi(run, path="reconstruction", data=bad, eval_data=images, settings="smoke")
        one_sentence(info.value, "data", words)


# ---------------------------------------------------------------------------- what the decoder returns


@pytest.mark.parametrize("bad, words", [
    (lambda z: decoder(z) * float("nan"), "NaN or inf values in 10 of 10 images"),
    (lambda z: decoder(z).masked_fill(z[:, 2:3, None, None].bool(), float("inf")), "NaN or inf values in 1 of 10 images"),  # category 0 only
    (lambda z: decoder(z).flatten(1), "it must return 10 images [10, C, H, W]"),
    (lambda z: decoder(z)[:2], "for 10 latents"),
    (lambda z: torch.zeros(len(z), 1, 30, 30), "image side 30 cannot be halved twice"),
    (lambda z: (decoder(z) * 127 + 128).to(torch.uint8), "return float images"),
    (lambda z: decoder(z).numpy(), "not images"),
    (lambda z: z @ torch.ones(3, 4), "make latent= match the decoder's input"),
])
def test_decoder_output_is_checked_on_a_first_batch(no_work, bad, words):
    with pytest.raises(ConfigError) as info:
        estimate_mi(bad, SPEC, settings="smoke")
    one_sentence(info.value, "the decoder", words)


def test_a_run_with_non_finite_weights(run, no_work):
    broken = dataclasses.replace(run, vae=vmivae.models.VAE(run.vae.image_shape, run.vae.latent))
    with torch.no_grad():
        next(broken.vae.decoder.parameters()).fill_(float("nan"))
    with pytest.raises(ConfigError) as info:
        estimate_mi(broken, settings="smoke")
    one_sentence(info.value, "NaN or inf", "retraining")
    with pytest.raises(ConfigError):
        evaluation.evaluate(broken, settings="smoke")


def test_the_probe_leaves_the_model_in_eval_mode_and_the_callers_rng_alone(run):
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    run.vae.train()
    checks.estimate_args(run, None, "generation", None, None, "smoke", None, SETTINGS, mi.PATHS)
    assert torch.equal(torch.rand(2), expected) and not run.vae.training


# ---------------------------------------------------------------------------- refits, evaluate, validation


@pytest.mark.parametrize("kwargs, words", [({"n_fits": 1}, "at least 2"), ({"n_fits": True}, "n_fits must be"), ({"bogus": 1}, "unknown argument"),
                                           ({"settings": "bogus"}, "unknown MI estimator budget"),
                                           ({"settings": dataclasses.replace(SETTINGS["smoke"], seed=2**63 - 2)}, "lower settings.seed")])
def test_refit_arguments(no_work, monkeypatch, kwargs, words):
    monkeypatch.setattr(mi, "estimate_mi", lambda *a, **k: (_ for _ in ()).throw(WorkStarted("fit started")))
    with pytest.raises(ConfigError) as info:
        estimate_mi_refits(decoder, latent=SPEC, **{"settings": "smoke", **kwargs})
    one_sentence(info.value, words)


@pytest.mark.parametrize("kwargs, words", [({"settings": "bogus"}, "valid: full, quick, quick-500, smoke"),
                                           ({"settings": SETTINGS["smoke"]}, "must name an MI estimator budget"),
                                           ({"paths": ("bogus",)}, "unknown path 'bogus'"), ({"paths": "generation"}, "paths=('generation',)"),
                                           ({"paths": ()}, "must be a tuple"), ({"paths": ("generation", "generation")}, "names a path twice")])
def test_evaluate_arguments_before_the_run_is_even_loaded(no_work, monkeypatch, run_dir, kwargs, words):
    monkeypatch.setattr("vmivae.runs.run.load_run", lambda *a, **k: (_ for _ in ()).throw(WorkStarted("the run was loaded")))
    with pytest.raises(ConfigError) as info:
        evaluation.evaluate(run_dir, **kwargs)
    one_sentence(info.value, words)


@pytest.mark.parametrize("train, test, kind, words", [
    (torch.rand(40, 3, 32, 32), None, DataError, "train holds images of shape (3, 32, 32)"),
    (None, torch.full((40, 1, 28, 28), float("nan")), DataError, "test: the images contain NaN"),
    (None, torch.rand(1, 1, 28, 28), DataError, "give at least 2"),
    (None, "data/x", DataError, "test takes images, not a path"),
])
def test_evaluate_data(no_work, run, train, test, kind, words):
    with pytest.raises(kind) as info:
        evaluation.evaluate(run, train, test, settings="smoke")
    one_sentence(info.value, words)


def test_evaluate_takes_a_run_or_its_folder(no_work, run):
    with pytest.raises(ConfigError) as info:
        evaluation.evaluate(None)
    one_sentence(info.value, "run must be a Run or a run folder", "got None")
    custom = dataclasses.replace(run, config=dataclasses.replace(run.config, dataset="custom"))
    with pytest.raises(ConfigError) as info:
        evaluation.evaluate(custom, test=torch.rand(8, 1, 28, 28))
    one_sentence(info.value, "your own images", "train=..., test=...")


@pytest.mark.parametrize("kwargs, words", [({"sigma": 0}, "sigma must be a finite number above 0"), ({"eps": 2}, "eps must be a probability"),
                                           ({"settings": "bogus"}, "unknown MI estimator budget")])
def test_validate_estimator_arguments(no_work, kwargs, words):
    with pytest.raises(ConfigError) as info:
        validate_estimator(**kwargs)
    one_sentence(info.value, words)


def test_every_error_above_is_a_vmivae_error():
    assert all(issubclass(kind, VMIVAEError) for kind in (ConfigError, DataError, CheckpointError)) and issubclass(ConfigError, ValueError)


# ---------------------------------------------------------------------------- the command


def test_cli_evaluate_of_a_run_with_non_finite_weights_prints_one_sentence(run_dir, tmp_path, capsys, no_work):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    state = torch.load(copy / "checkpoint.pt", weights_only=True)
    for key, value in state["vae"].items():
        if key.startswith("decoder.") and value.is_floating_point():
            value.fill_(float("nan"))
    torch.save(state, copy / "checkpoint.pt")
    assert main(["evaluate", str(copy), "--out", str(tmp_path / "e.json"), "--profile", "smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vmivae: error: the decoder returned NaN or inf values") and "\n" not in err, err
    assert not (tmp_path / "e.json").exists()
