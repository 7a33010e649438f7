"""Presets and profiles: the YAML layers a :class:`~vmivae.config.Config` is assembled from.

Later layers win::

    Config defaults  <  profile (budget: steps, dataset, cadence)  <  preset (model, objective)  <  overrides

Presets and profiles are YAML files shipped inside the package (``vmivae/presets``, ``vmivae/profiles``);
a preset may ``extends:`` another one, and a preset may also be the path of your own YAML file.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .config import Config, check_keys, from_dict, parse_assignment
from .errors import ConfigError, unknown_name


def _yaml_names(folder: str) -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("vmivae").joinpath(folder).iterdir() if p.name.endswith(".yaml"))


def list_presets() -> list[str]:
    return _yaml_names("presets")


def list_profiles() -> list[str]:
    return _yaml_names("profiles")


def _parse_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{where} is not valid YAML{line}; fix the file") from None
    except ValueError:  # Python refuses to read an integer of more than 4300 digits
        raise ConfigError(f"{where} holds a number too long to read (over 4300 digits); give a smaller one") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping of config keys, e.g. 'lambda_cat: 0.01'")
    return data


def _read_yaml(folder: str, name: str, kind: str) -> dict[str, Any]:
    valid = _yaml_names(folder)
    if name not in valid:
        raise ConfigError(unknown_name(kind, name, valid))
    return _parse_yaml(resources.files("vmivae").joinpath(folder, f"{name}.yaml").read_text(), f"{kind} file '{name}.yaml'")


def is_preset_file(name: str) -> bool:
    """A preset given as a path to your own YAML file rather than a shipped name."""
    return name.endswith((".yaml", ".yml")) or "/" in name or os.sep in name


def _read_preset_file(path: Path) -> str:
    if path.is_dir():
        raise ConfigError(f"preset file {path} is a folder; give a .yaml file")
    if not path.is_file():
        raise ConfigError(f"preset file {path} does not exist; give a shipped preset name or an existing .yaml file")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"preset file {path} is not a text file (not UTF-8); give a YAML file of config keys") from None
    except OSError as exc:
        raise ConfigError(f"cannot read preset file {path} ({exc.strerror or type(exc).__name__})") from None


def _check_name(name: Any, kind: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a {kind} is a name (see `vmivae presets`){' or a .yaml path' if kind == 'preset' else ''}, got {name!r}")
    return name


def load_preset(name: str, _chain: tuple[str, ...] = (), _base: Path | None = None) -> dict[str, Any]:
    """The overrides a preset makes, with ``extends:`` resolved and ``description`` dropped.

    ``name`` is a shipped preset (see :func:`list_presets`) or the path of your own YAML file, which
    may itself ``extends:`` a shipped preset or another file (a relative path is looked up beside
    the file that names it first).
    """
    name = _check_name(name, "preset")
    folder = None
    if is_preset_file(name):
        path = Path(name).expanduser()
        if _base is not None and not path.is_absolute() and (_base / path).exists():
            path = _base / path
        key, folder = str(path.resolve()), path.resolve().parent
        data = _parse_yaml(_read_preset_file(path), f"preset file {path}")
    else:
        key = name
        data = _read_yaml("presets", name, "preset")
    if key in _chain:
        cycle = [*_chain[_chain.index(key):], key]
        what = "extends itself" if len(cycle) == 2 else f"extends itself through a circle of presets ({' -> '.join(cycle)})"
        raise ConfigError(f"preset '{key}' {what}; remove the circular 'extends'")
    data.pop("description", None)
    parent = data.pop("extends", None)
    if parent is not None and (not isinstance(parent, str) or not parent.strip()):
        raise ConfigError(f"'extends' in preset '{name}' must be one preset name or .yaml path, got {parent!r}")
    merged = {**(load_preset(parent, (*_chain, key), folder) if parent else {}), **data}
    check_keys(merged, f"preset '{name}'")
    return merged


def load_profile(name: str) -> dict[str, Any]:
    data = _read_yaml("profiles", name, "profile")
    data.pop("description", None)
    check_keys(data, f"profile '{name}'")
    return data


def describe(folder: str, name: str) -> str:
    """The one-line ``description`` of a preset or profile file."""
    return str(_read_yaml(folder, name, folder[:-1]).get("description", "")).strip()


def parse_overrides(assignments: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` strings (the CLI's ``--set``) as a dict of overrides."""
    overrides = {}
    for text in assignments:
        try:
            key, value = parse_assignment(text)
        except ConfigError:
            raise
        except ValueError:  # Python refuses to read an integer of more than 4300 digits
            key = text.partition("=")[0].strip()
            raise ConfigError(f"the value of config key '{key}' is a number too long to read (over 4300 digits); give a smaller one") from None
        overrides[key] = value
    return overrides


def make_config(preset: str | None = None, profile: str | None = None, overrides: dict[str, Any] | list[str] | None = None) -> Config:
    """Resolve a Config: defaults < profile < preset < overrides (a dict, or ``key=value`` strings)."""
    layers: dict[str, Any] = {}
    if profile is not None:
        layers.update(load_profile(_check_name(profile, "profile")))
    if preset is not None:
        layers.update(load_preset(preset))
    if isinstance(overrides, (list, tuple)):
        overrides = parse_overrides(overrides)
    if overrides:
        if not isinstance(overrides, dict):
            raise ConfigError(f"overrides must be a dict or a list of key=value strings, got {type(overrides).__name__}")
        layers.update(overrides)
    return from_dict(layers, "overrides")
