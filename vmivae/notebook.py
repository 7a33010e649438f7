"""One setup call for a chapter notebook: seeds, device, run cache, figure saver, display options.

A chapter's setup cell is then::

    from vmivae.notebook import setup
    nb = setup("03", profile, device, seed, workers, runs_dir, figures_dir)

and the chapter trains (or reuses) and measures its runs with ``nb.measured([...])``, shows and saves a
figure with ``nb.show(fig, name)`` and loads the profile's test split with ``nb.test_data()``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .config import Config
from .datasets import ImageData, load
from .plots import figure_saver
from .presets import make_config
from .run_cache import RunSpec, ensure_evaluations, ensure_measured_runs

# The MI estimator's budget for each training profile (names of vmivae.mi.SETTINGS).
ESTIMATOR_FOR_PROFILE = {"smoke": "smoke", "quick": "quick", "study": "quick", "full": "full"}


def _display_number(value: float) -> str:
    """How a table shows a float: integers as integers, NaN as a dash, three significant decimals otherwise."""
    if np.isnan(value):
        return "–"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value)}"
    return f"{value:.3g}" if abs(value) >= 1000 or abs(value) < 0.001 else f"{value:.3f}"


@dataclass
class Notebook:
    """What a chapter needs after its parameters cell; made by :func:`setup`."""

    prefix: str  # figure file prefix: the chapter number, "03"
    profile: str
    device: str
    seed: int
    workers: int
    runs_dir: str
    figures_dir: str
    estimator: str = field(init=False)

    def __post_init__(self):
        self.estimator = ESTIMATOR_FOR_PROFILE.get(self.profile, "quick")
        self._show = figure_saver(self.figures_dir, self.prefix)

    def show(self, fig, name: str) -> None:
        """Save ``fig`` as ``<figures_dir>/<prefix>_<name>.png`` and display it once."""
        self._show(fig, name)

    def spec(self, preset: str, name: str | None = None, **overrides: Any) -> RunSpec:
        """A run of ``preset`` under this chapter's profile, seeded with the chapter's seed unless overridden."""
        return RunSpec(preset, self.profile, {"seed": self.seed, **overrides}, name=name)

    def config(self, preset: str, **overrides: Any) -> Config:
        return self.spec(preset, **overrides).config

    def measured(self, specs: list[RunSpec], paths: tuple[str, ...] = ("generation",)) -> tuple[list, list[dict[str, Any]]]:
        """Train (or reuse from the run cache) and evaluate every run: ``(runs, evaluation results)``."""
        return ensure_measured_runs(specs, self.runs_dir, self.device, self.workers, self.estimator, paths)

    def evaluations(self, runs: list, paths: tuple[str, ...]) -> list[dict[str, Any]]:
        """Evaluations of trained runs on other MI paths (cached next to each run)."""
        return ensure_evaluations(runs, self.estimator, paths, self.workers)

    def test_data(self, preset: str = "paper-joint") -> ImageData:
        """The test split of the dataset this profile trains ``preset`` on."""
        config = self.config(preset)
        return load(config.dataset, "test", config.data_root)


def setup(prefix: str, profile: str = "quick", device: str = "auto", seed: int = 0, workers: int = 2,
          runs_dir: str = "../runs", figures_dir: str = "../figures") -> Notebook:
    """Seed every generator, set table display options, and return the chapter's :class:`Notebook`."""
    import pandas as pd

    make_config(None, profile)  # an unknown profile fails here, in one sentence, before anything trains
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    pd.set_option("display.float_format", _display_number)
    return Notebook(prefix, profile, device, seed, workers, runs_dir, figures_dir)
