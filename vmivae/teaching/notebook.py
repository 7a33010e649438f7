"""One setup call for a chapter notebook: seeds, device, run cache, figure saver, display options.

A chapter's setup cell is then::

    from vmivae.teaching.notebook import setup
    nb = setup("03", profile, device, seed, workers, runs_dir, figures_dir)

and the chapter trains (or reuses) and measures its runs with ``nb.measured([...])``, shows and saves a
figure with ``nb.show(fig, name, caption=..., alt=...)``, loads the profile's test split with
``nb.test_data()``, keeps the numbers its prose quotes with ``nb.glue(name=value)`` and ends with
``nb.timing()`` (how long the chapter took, how many runs it trained).
Tables (pandas DataFrames) show floats with three decimals, integers as integers, tiny and huge values in
scientific notation and missing values as a dash.
"""

from __future__ import annotations

import contextlib
import io
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..datasets import ImageData, load
from ..errors import CheckpointError
from ..perf.device import resolve_device
from ..plots import figure_saver
from ..presets import make_config
from ..runs.folder import RunFolder, read_json
from ..runs.run import load_run
from ..runs.run_cache import RunSpec, ensure

# The MI estimator's budget for each training profile (names of vmivae.measure.mi.SETTINGS).
ESTIMATOR_FOR_PROFILE = {"smoke": "smoke", "quick": "quick", "study": "quick", "full": "full"}


MISSING = "–"  # how a table shows a missing value
GLUE_PREFIX = "application/papermill.record/"  # MyST-NB's mime prefix for a glued value that is not displayed


def _display_number(value: float) -> str:
    """How a table shows a float: integers as integers, NaN as a dash, three decimals otherwise, and values
    below 0.001 or from 100,000 on in scientific notation (so no cell reads ``0.000``, ``-0.000`` or a
    long row of digits)."""
    if np.isnan(value):
        return MISSING
    if np.isinf(value):
        return "∞" if value > 0 else "-∞"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value)}"
    return f"{value:.2e}" if abs(value) >= 1e5 or abs(value) < 0.001 else f"{value:.3f}"


def _display_cell(value) -> str:
    """A Styler cell (``frame.style``): floats as :func:`_display_number`, anything else as its text."""
    return _display_number(value) if isinstance(value, float | np.floating) else str(value)


def _dataframe_html(frame) -> str:
    """A DataFrame's notebook HTML as pandas makes it, with missing values shown as :data:`MISSING`."""
    import pandas as pd

    text_columns = [i for i, dtype in enumerate(frame.dtypes) if pd.api.types.is_object_dtype(dtype)]
    if text_columns and frame.iloc[:, text_columns].isna().any().any():  # None (not only NaN) shows as the dash too
        frame = frame.copy()
        for i in text_columns:
            column = frame.iloc[:, i]
            frame.iloc[:, i] = column.where(column.notna(), np.nan)
    return frame.to_html(notebook=True, na_rep=MISSING, max_rows=pd.get_option("display.max_rows"),
                         max_cols=pd.get_option("display.max_columns"), show_dimensions=pd.get_option("display.show_dimensions"))


def _set_table_display() -> None:
    import pandas as pd

    pd.set_option("display.float_format", _display_number)
    pd.set_option("styler.format.formatter", _display_cell)  # frame.style shows numbers the same way
    pd.set_option("styler.format.na_rep", MISSING)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - notebooks always have IPython
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, _dataframe_html)


@contextlib.contextmanager
def _without_progress_lines():
    """The run cache's progress lines (``vmivae: training ...``) are for a terminal, not for the book: drop
    them from a chapter's output and pass anything else written to stderr (a warning) through."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        rest = "".join(line for line in captured.getvalue().splitlines(keepends=True) if not line.startswith("vmivae: "))
        if rest:
            sys.stderr.write(rest)


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
        self._started, self._started_wall = time.perf_counter(), time.time()
        self._runs: set[str] = set()  # run directories this chapter used
        self._evaluation_files: set[Path] = set()  # and the evaluations it read

    def show(self, fig, name: str, *, caption: str, alt: str) -> None:
        """Save ``fig`` as ``<figures_dir>/<prefix>_<name>.png`` and display it once, with its caption and alt text.

        ``caption``: what the figure shows and what to notice (shown under it). ``alt``: a description of the
        image for a reader who cannot see it (read by screen readers, shown if the image fails). Both are
        required plain text; see :func:`vmivae.plots.figure_saver`.
        """
        self._show(fig, name, caption=caption, alt=alt)

    def glue(self, **values: float) -> None:
        """Keep numbers for the chapter's prose: a markdown cell's ``{glue:text}`name:.2f``` shows in the book
        the value that this cell computed (MyST-NB's glue, stored hidden in the cell's output), so the text
        cannot drift from its numbers. JupyterLab does not render the role: the cell prints the same numbers.
        Each name is glued once per chapter; values are numbers (numpy and torch scalars become Python ones)."""
        from IPython.display import display

        for name, value in values.items():
            if isinstance(value, np.generic | np.ndarray | torch.Tensor) and value.ndim == 0:
                value = value.item()  # numpy and torch scalars as Python numbers
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"glue takes numbers; {name} is {type(value).__name__}")
            display({GLUE_PREFIX + "text/plain": repr(value)}, raw=True,
                    metadata={"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}})

    def spec(self, preset: str, name: str | None = None, **overrides: Any) -> RunSpec:
        """A run of ``preset`` under this chapter's profile, seeded with the chapter's seed unless overridden."""
        return RunSpec(preset, self.profile, {"seed": self.seed, **overrides}, name=name)

    def config(self, preset: str, **overrides: Any) -> Config:
        return self.spec(preset, **overrides).config

    def measured(self, specs: list[RunSpec], paths: tuple[str, ...] = ("generation",)) -> tuple[list, list[dict[str, Any]]]:
        """Train (or reuse from the run cache) and evaluate every run: ``(runs, evaluation results)``."""
        with _without_progress_lines():
            folders = ensure([(s, (paths,)) for s in specs], self.runs_dir, self.device, self.workers, self.estimator)
        runs = [load_run(f, device=self.device) for f in folders]
        self._runs.update(str(r.path) for r in runs if r.path is not None)
        self._evaluation_files.update(f.evaluation_file(self.estimator, paths) for f in folders)
        return runs, [f.read_evaluation(self.estimator, paths) for f in folders]

    def evaluations(self, runs: list, paths: tuple[str, ...]) -> list[dict[str, Any]]:
        """Evaluations of trained runs on other MI paths (cached next to each run)."""
        if any(run.path is None for run in runs):
            raise CheckpointError("evaluations need runs that live in a run directory (trained with out=...)")
        with _without_progress_lines():
            folders = ensure([(run.path, (paths,)) for run in runs], self.runs_dir, self.device, self.workers, self.estimator)
        self._evaluation_files.update(f.evaluation_file(self.estimator, paths) for f in folders)
        return [f.read_evaluation(self.estimator, paths) for f in folders]

    def timing(self) -> None:
        """Display, at the end of a chapter, how long it took, and the work done for it ahead of time: the
        training and measuring of the runs it read from the run cache (trained ahead by ``run_all.sh`` or
        earlier), as recorded in their files, so a reader can tell a fresh machine's cost from a warm cache's."""
        from IPython.display import display

        minutes = (time.perf_counter() - self._started) / 60
        here = lambda path: path.is_file() and path.stat().st_mtime >= self._started_wall  # noqa: E731
        cached = [RunFolder(run) for run in sorted(self._runs) if not here(RunFolder(run).metrics)]
        cached_evals = [p for p in self._evaluation_files if p.is_file() and not here(p)]
        train_min = sum(f.read_metrics().get("seconds", 0.0) for f in cached if f.metrics.is_file()) / 60
        eval_min = sum(read_json(p, "evaluation").get("seconds", 0.0) for p in cached_evals) / 60
        device = resolve_device(self.device)
        where = torch.cuda.get_device_name(0) if device.type == "cuda" else device.type.upper()
        text = (f"This chapter ran in {minutes:.1f} min on {where} (profile `{self.profile}`). Of the {len(self._runs)} "
                f"run(s) it uses it trained {len(self._runs) - len(cached)} itself; the work done for it ahead of time "
                f"and read from the run cache was {len(cached)} training(s), {train_min:.1f} min, and {len(cached_evals)} "
                f"MI evaluation(s), {eval_min:.1f} min (as recorded in their files).")
        display({"text/markdown": text, "text/plain": text}, raw=True)

    def test_data(self, preset: str = "paper-joint") -> ImageData:
        """The test split of the dataset this profile trains ``preset`` on."""
        config = self.config(preset)
        return load(config.dataset, "test", config.data_root)


def setup(prefix: str, profile: str = "quick", device: str = "auto", seed: int = 0, workers: int = 2,
          runs_dir: str = "../runs", figures_dir: str = "../figures") -> Notebook:
    """Seed every generator, set table display options, and return the chapter's :class:`Notebook`."""
    make_config(None, profile)  # an unknown profile fails here, in one sentence, before anything trains
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    _set_table_display()
    return Notebook(prefix, profile, device, seed, workers, runs_dir, figures_dir)
