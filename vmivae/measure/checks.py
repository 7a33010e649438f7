"""The measuring functions' arguments, checked before any work: every mistake is one sentence (a VMIVAEError).

Each public function of ``vmivae.measure`` calls one function here on its first line, which returns
the arguments ready to use (a run folder loaded, a settings name resolved, the device resolved, data
turned into :class:`~vmivae.datasets.ImageData`). The model is probed once on a small batch: the
decoder must give finite float images ``[B, C, H, W]`` that Q can read, on the device Q trains on.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import fields

import torch

from ..errors import CheckpointError, ConfigError, DataError, VMIVAEError, shown, unknown_name
from ..latents import LatentSpec, sample_prior
from ..models import VAE, check_image_shape

PROBE = 8  # latents decoded to check a decoder (at least one per category)
MAX_SEED = 2**63 - 1
INTS = {"max_steps": 1, "min_steps": 0, "batch_size": 2, "eval_every": 1, "patience": 1, "n_val": 2, "n_eval": 2, "n_boot": 1, "seed": 0}
REALS = {"lr": (0.0, False), "head_lr": (0.0, True), "tol": (0.0, True), "noise_z": (0.0, True), "ema": (0.0, True)}  # (lowest, allowed)
AMP = ("none", "auto", "bf16")


def settings(value, budgets: dict, budget_names_only: bool = False):
    """The :class:`~vmivae.measure.mi.EstimatorSettings` that ``value`` names (in ``budgets``) or is, every field in range.

    ``budgets`` is ``vmivae.measure.mi.SETTINGS``, passed in: ``mi`` imports this module, not the other way round.
    """
    quick = budgets["quick"]
    if isinstance(value, str):
        if value not in budgets:
            raise ConfigError(unknown_name("MI estimator budget", value, list(budgets)))
        return budgets[value]
    if budget_names_only or not isinstance(value, type(quick)):
        also = "" if budget_names_only else " or a vmivae.measure.mi.EstimatorSettings"
        raise ConfigError(f"settings must name an MI estimator budget ({', '.join(budgets)}){also}, got {shown(value, typed=True)}")
    for f in fields(value):
        v, default = getattr(value, f.name), getattr(quick, f.name)
        example = f"the quick budget has {f.name}={default!r}"
        if f.name in INTS or (type(default) is int and f.name not in REALS):  # a field added later: a count, 0 or more
            least = INTS.get(f.name, 0)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not least <= v <= MAX_SEED:
                raise ConfigError(f"estimator setting {f.name} must be a whole number of at least {least}, got {v!r}; {example}")
        elif f.name in REALS or type(default) is float:
            low, equal = REALS.get(f.name, (0.0, True))
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and (v >= low if equal else v > low)
            if not ok or (f.name == "ema" and v >= 1):
                rule = "in [0, 1)" if f.name == "ema" else f"a finite number {'of at least' if equal else 'above'} {low:g}"
                raise ConfigError(f"estimator setting {f.name} must be {rule}, got {v!r}; {example}")
        elif f.name == "amp" and v not in AMP:
            raise ConfigError(f"estimator setting amp must be one of {', '.join(AMP)}, got {v!r}; {example}")
        elif type(default) is bool and not isinstance(v, bool):
            raise ConfigError(f"estimator setting {f.name} must be True or False, got {v!r}; {example}")
    return value


def _model(model, device):
    """A Run, a VAE or a decoder callable; a run folder is loaded (onto ``device``, default cpu)."""
    from ..config import Config
    from ..runs.run import Run, load_run

    if isinstance(model, (str, os.PathLike)):
        return load_run(model, device="cpu" if device is None else str(device))
    if isinstance(model, Config):
        raise ConfigError("model is a Config, which holds no trained weights; train it first with run = vmivae.fit(config, out=...) and pass run")
    if isinstance(model, (Run, VAE)) or (callable(model) and not isinstance(model, type)):
        return model
    raise ConfigError(f"model must be a Run, a run folder (as vmivae.load_run reads it), a VAE, or a decoder function with latent=LatentSpec(...), "
                      f"got {shown(model, typed=True) if not isinstance(model, type) else 'the class ' + model.__name__}")


def _run_matches_config(run) -> None:
    """A Run's networks must be those its config describes (a Run put together by hand may mix two runs)."""
    config, vae, q = run.config, run.vae, run.q
    if not isinstance(vae, VAE) or vae.latent != config.latent:
        have = vae.latent if isinstance(vae, VAE) else shown(vae, typed=True)
        raise CheckpointError(f"the Run's VAE has {have} but its config describes {config.latent}; load the run again with vmivae.load_run(path)")
    comps = config.components
    want = (config.categorical if comps.categorical else 0, len(comps.dims))
    if q is not None and (getattr(q, "categorical", None), getattr(q, "continuous", None)) != want:
        raise CheckpointError(f"the Run's Q reads {getattr(q, 'categorical', '?')} categories and {getattr(q, 'continuous', '?')} Gaussian dims but its "
                              f"config's bound has {want[0]} and {want[1]}; load the run again with vmivae.load_run(path)")


def _device(device, vae: VAE | None) -> torch.device | None:
    """Where Q trains: the model's device unless another is asked for (which must exist, and hold a VAE's weights)."""
    from ..perf.device import resolve_device

    own = next(vae.parameters()).device if vae is not None else None
    if device is None or (device == "auto" and own is not None):
        return own
    asked = resolve_device(device)  # a malformed or absent device: one sentence, with the fix
    if own is not None and (asked.type != own.type or (asked.index is not None and asked.index != own.index)):
        raise ConfigError(f"the model's weights are on {own} but device={str(device)!r} was asked for; move the model first "
                          f"(vmivae.load_run(path, device={str(device)!r}) or model.to({str(device)!r})) or leave device out")
    return own if own is not None else asked


def data(value, name: str, image_shape, least: int):
    """``value`` as an ImageData of ``image_shape`` with at least ``least`` images (anything fit() accepts)."""
    from ..datasets import as_image_data

    split = "test" if name in ("eval_data", "test") else "train"
    if isinstance(value, (str, os.PathLike)):
        raise DataError(f"{name} takes images, not a path ({str(value)!r}); load them first, e.g. {name}=vmivae.load('mnist', '{split}') "
                        "or an array [N, C, H, W]")
    if value is None:
        raise ConfigError(f"{name} is missing, and the reconstruction path needs a VAE (or run) with images for both data= and eval_data=; "
                          f"pass e.g. {name}=vmivae.load('mnist', '{split}')")
    try:
        value = as_image_data(value)
    except VMIVAEError as exc:
        raise DataError(f"{name}: {exc}") from None
    if tuple(value.image_shape) != tuple(image_shape):
        raise DataError(f"{name} holds images of shape {tuple(value.image_shape)} but the model reads {tuple(image_shape)}; "
                        "pass images like those it was trained on")
    if len(value) < least:
        raise DataError(f"{name} holds {len(value)} images, too few to measure on; give at least {least}")
    return value


@torch.no_grad()
def probe(decode, latent: LatentSpec, device: torch.device, encode=None, images=None) -> None:
    """Decode a few prior codes (every category once) and check the images; encode a few images when given."""
    n = max(PROBE, latent.categorical or 0)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        z, _ = sample_prior(latent, n, "cpu", torch.Generator().manual_seed(0))
        c = None if latent.categorical is None else torch.nn.functional.one_hot(torch.arange(n) % latent.categorical, latent.categorical).float()
        codes = latent.join(z, c).to(device)
        try:
            x = decode(codes)
            posterior = None if encode is None else encode(images[:PROBE].to(device))
        except Exception as exc:  # noqa: BLE001 - the user's decoder: its error, in one line, with the likely fix
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ConfigError(f"the decoder failed on latents of shape {tuple(codes.shape)} ({latent.continuous} Gaussian values, then a "
                              f"{latent.categorical or 0}-way one-hot) with {type(exc).__name__}: {first}; make latent= match the decoder's input") from exc
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"the decoder returned {shown(x, typed=True)}, not images; it must return a torch tensor [B, C, H, W]")
    if not x.dtype.is_floating_point:
        raise ConfigError(f"the decoder returned {x.dtype} values; return float images, e.g. x.float() / 127.5 - 1 for pixels 0..255")
    if x.dim() != 4 or x.shape[0] != n:
        raise ConfigError(f"the decoder returned shape {tuple(x.shape)} for {n} latents; it must return {n} images [{n}, C, H, W]")
    try:
        check_image_shape(tuple(x.shape[1:]))
    except ValueError as exc:
        raise ConfigError(f"the decoder returns images of shape {tuple(x.shape[1:])}, which Q cannot read: {exc}") from None
    if x.device != device:
        raise ConfigError(f"the decoder returned images on {x.device} but Q trains on {device}; pass device={str(x.device)!r}")
    bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
    if bad:
        raise ConfigError(f"the decoder returned NaN or inf values in {bad} of {n} images decoded from prior codes; fix the decoder "
                          "(a trained model with non-finite weights needs retraining)")
    if posterior is not None and not all(bool(torch.isfinite(t).all()) for t in posterior if t is not None):
        raise ConfigError("the encoder returned NaN or inf codes for the first images of data; fix the model (retrain it) or the images")


def estimate_args(model, latent, path, data_, eval_data, settings_, device, budgets: dict, paths: tuple):
    """``estimate_mi``'s arguments checked; returns ``(model, settings, device or None, data, eval_data)``.

    ``budgets`` and ``paths`` are ``vmivae.measure.mi``'s ``SETTINGS`` and ``PATHS``.
    """
    from ..runs.run import Run

    if not isinstance(path, str) or path not in paths:
        raise ConfigError(unknown_name("path", path, paths))
    s = settings(settings_, budgets)
    if latent is not None and not isinstance(latent, LatentSpec):
        raise ConfigError(f"latent must be a vmivae.latents.LatentSpec, e.g. LatentSpec(continuous=2, categorical=10), got {shown(latent, typed=True)}")
    model = _model(model, device)
    if isinstance(model, Run):
        _run_matches_config(model)
    vae = model.vae if isinstance(model, Run) else model if isinstance(model, VAE) else None
    if vae is not None and latent is not None and latent != vae.latent:
        raise ConfigError(f"latent={latent} differs from the model's own {vae.latent}; leave latent out (it is read from the model)")
    latent = vae.latent if vae is not None else latent
    if latent is None:
        raise ConfigError("a decoder function needs its latent spec: estimate_mi(decoder, LatentSpec(continuous=D, categorical=K)), "
                          "for a decoder that takes D Gaussian values then a K-way one-hot")
    if latent.continuous == 0:
        raise ConfigError(f"the MI estimator needs at least one Gaussian dim, but {latent} has none; give the decoder one Gaussian input it ignores")
    if path == "reconstruction" and vae is None:
        raise ConfigError("the reconstruction path encodes real images, so it needs a run (vmivae.load_run(path)) or a VAE, not a bare decoder, "
                          "with data= and eval_data= images; use path='generation' for a decoder")
    where = _device(device, vae)
    where_probe = where if where is not None else torch.device("cpu")
    if path == "reconstruction":
        data_ = data(data_, "data", vae.image_shape, 20)  # Q stops on a tenth of them: at least 2
        eval_data = data(eval_data, "eval_data", vae.image_shape, 2)
    if vae is not None:
        vae.eval()
    probe(vae.decode if vae is not None else model, latent, where_probe, vae.encode if path == "reconstruction" else None,
          data_.images if path == "reconstruction" else None)
    return model, s, where, data_, eval_data


REFIT_KEYS = ("latent", "path", "data", "eval_data", "device")


def refit_args(model, n_fits, settings_, kwargs: dict, budgets: dict, paths: tuple):
    """``estimate_mi_refits``'s arguments checked; returns ``(model, settings, kwargs)`` with a run folder loaded once."""
    for key in kwargs:
        if key not in REFIT_KEYS:
            raise ConfigError(unknown_name("argument of estimate_mi_refits", key, REFIT_KEYS))
    if isinstance(n_fits, bool) or not isinstance(n_fits, numbers.Integral) or n_fits < 2:
        raise ConfigError(f"n_fits must be a whole number of at least 2 (an interval needs two fits), got {n_fits!r}; e.g. n_fits=3")
    model, s, device, data_, eval_data = estimate_args(model, kwargs.get("latent"), kwargs.get("path", "generation"), kwargs.get("data"),
                                                       kwargs.get("eval_data"), settings_, kwargs.get("device"), budgets, paths)
    if s.seed + n_fits - 1 > MAX_SEED:
        raise ConfigError(f"seeds {s.seed} to {s.seed + n_fits - 1} pass the largest seed {MAX_SEED}; lower settings.seed")
    return model, s, {**kwargs, "device": device, "data": data_, "eval_data": eval_data}


def evaluate_args(run, train, test, settings_, paths, budgets: dict, valid_paths: tuple):
    """``evaluate``'s arguments checked; returns ``(run, train, test)``, each split None where the run's dataset fills it."""
    from ..runs.run import Run, load_run

    settings(settings_, budgets, budget_names_only=True)
    if isinstance(paths, str) or not isinstance(paths, (tuple, list)) or not paths:
        raise ConfigError(f"paths must be a tuple of MI paths ({', '.join(valid_paths)}), e.g. paths=('generation',), got {paths!r}")
    for p in paths:
        if not isinstance(p, str) or p not in valid_paths:
            raise ConfigError(unknown_name("path", p, valid_paths))
    if len(set(paths)) != len(paths):
        raise ConfigError(f"paths {tuple(paths)} names a path twice; name each once, e.g. paths=('generation', 'reconstruction')")
    if not isinstance(run, (Run, str, os.PathLike)):
        raise ConfigError(f"run must be a Run or a run folder (as vmivae.load_run reads it), got {shown(run, typed=True)}")
    run = run if isinstance(run, Run) else load_run(run)
    _run_matches_config(run)
    if run.config.dataset == "custom" and (train is None or test is None):
        raise ConfigError("the run was trained on your own images, so evaluate cannot load its data; pass them: vmivae.evaluate(run, train=..., test=...)")
    shape = run.vae.image_shape
    train = None if train is None else data(train, "train", shape, 20 if "reconstruction" in paths else 2)
    test = None if test is None else data(test, "test", shape, 2)
    run.vae.eval()
    probe(run.vae.decode, run.vae.latent, run.device)
    return run, train, test


def validation_args(sigma, eps) -> None:
    """``validate_estimator``'s channel parameters: a noise level above 0, a confusion probability in [0, 1]."""
    for name, v, rule, ok in (("sigma", sigma, "a finite number above 0", lambda v: 0 < v < math.inf),
                              ("eps", eps, "a probability in [0, 1]", lambda v: 0 <= v <= 1)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not ok(v):
            raise ConfigError(f"{name} must be {rule}, got {v!r}; e.g. the defaults sigma=0.5, eps=0.3")
