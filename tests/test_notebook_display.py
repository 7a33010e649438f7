"""How a chapter shows numbers and figures: vmivae.teaching.notebook's table formats and Notebook.show."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vmivae import plots
from vmivae.teaching.notebook import MISSING, Notebook, _dataframe_html, _display_number, _set_table_display

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ("display.float_format", "styler.format.formatter", "styler.format.na_rep")


def _checks():
    spec = importlib.util.spec_from_file_location("book_checks", ROOT / "scripts" / "book_checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def table_display():
    _set_table_display()
    yield
    for option in OPTIONS:
        pd.reset_option(option)


@pytest.mark.parametrize("value, shown", [(0.12345, "0.123"), (2.0, "2"), (-0.0, "0"), (600.0, "600"), (np.nan, "–"),
                                          (1e-4, "1.00e-04"), (-0.0004, "-4.00e-04"), (0.0012, "0.001"), (1234.5678, "1234.568"),
                                          (123456.7, "1.23e+05"), (-12.3456, "-12.346")])
def test_numbers_show_three_decimals_integers_as_integers_and_missing_as_a_dash(value, shown):
    assert _display_number(value) == shown


def test_no_number_shows_as_a_bad_table_cell():
    """Whatever the value, the book's table check accepts how it is shown (no -0.000, no 4 decimals, no nan)."""
    bad_cell = _checks().bad_cell
    values = np.concatenate([np.geomspace(1e-9, 1e12, 400), -np.geomspace(1e-9, 1e12, 400), [0.0, -0.0, np.nan, 0.0005, -0.0005, 0.9995]])
    assert not [(v, _display_number(v)) for v in values if bad_cell(_display_number(v))]


def test_dataframe_html_shows_none_and_nan_as_a_dash(table_display):
    frame = pd.DataFrame({"variant": ["paper", None], "accuracy": [0.12345, np.nan], "steps": [600, 600], "note": [1.5, None]})
    frame.columns = ["variant", "accuracy", "steps", "variant"]  # duplicate names are allowed in a table
    cells = re.findall(r"<td>([^<]*)</td>", _dataframe_html(frame))
    assert cells == ["paper", "0.123", "600", "1.500", MISSING, MISSING, "600", MISSING]
    assert '<table border="1" class="dataframe">' in _dataframe_html(frame)


def test_styled_tables_show_numbers_the_same_way(table_display):
    frame = pd.DataFrame({"difference": [0.009, -0.0004, np.nan], "label": ["a", "b", None], "n": [3, 3, 3]})
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", frame.style.set_caption("VMI minus baseline").to_html())
    assert cells == ["0.009", "a", "3", "-4.00e-04", "b", "3", MISSING, MISSING, "3"]


def test_setup_registers_the_table_html_in_a_notebook(table_display):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        _set_table_display()
        shell.display_formatter.formatters["text/html"].enabled = True
        data, _ = shell.display_formatter.format(pd.DataFrame({"a": [np.nan, 0.5]}))
        assert re.findall(r"<td>([^<]*)</td>", data["text/html"]) == [MISSING, "0.500"]
    finally:
        InteractiveShell.clear_instance()


def test_notebook_show_saves_and_displays_a_captioned_figure(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append(obj))
    nb = Notebook("03", "smoke", "cpu", 0, 1, str(tmp_path / "runs"), str(tmp_path / "figures"))
    nb.show(plots.kl_per_dim({"VMI": [0.1, 0.5]}), "kl", caption="The KL of each dimension.", alt="Two bars.")
    assert (tmp_path / "figures" / "03_kl.png").is_file()
    assert "<figcaption>The KL of each dimension.</figcaption>" in shown[0]["text/html"] and 'alt="Two bars."' in shown[0]["text/html"]
    with pytest.raises(TypeError, match="caption"):
        nb.show(plots.kl_per_dim({"VMI": [0.1]}), "kl")


def test_progress_lines_stay_out_of_a_chapter_and_warnings_do_not(capsys):
    from vmivae.teaching.notebook import _without_progress_lines

    with _without_progress_lines():
        print("vmivae: training and/or evaluating 2 run(s), reusing 0", file=sys.stderr)
        print("UserWarning: something to see", file=sys.stderr)
    assert capsys.readouterr().err == "UserWarning: something to see\n"


def test_timing_says_how_long_the_chapter_took_and_the_work_done_ahead(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append(obj))
    nb = Notebook("03", "smoke", "cpu", 0, 1, str(tmp_path / "runs"), str(tmp_path / "figures"))
    past = time.time() - 3600
    for name, seconds, age in (("cached", 90, 3600), ("fresh", 30, 0)):  # trained an hour ago / by this chapter
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        for file, content in (("metrics.json", {"steps": 30, "seconds": seconds, "final": {}}), ("eval-smoke-generation.json", {"seconds": seconds / 3})):
            (folder / file).write_text(json.dumps(content))
            if age:
                os.utime(folder / file, (past, past))
            if file.startswith("eval"):
                nb._evaluation_files.add(folder / file)
        nb._runs.add(str(folder))
    nb.timing()
    text = shown[0]["text/markdown"]
    assert re.fullmatch(r"This chapter ran in \d+\.\d min on CPU \(profile `smoke`\)\. Of the 2 run\(s\) it uses it trained 1 itself; "
                        r"the work done for it ahead of time and read from the run cache was 1 training\(s\), 1\.5 min, and 1 MI "
                        r"evaluation\(s\), 0\.5 min \(as recorded in their files\)\.", text), text
    assert str(tmp_path) not in text


def test_glue_keeps_numbers_for_the_prose_as_myst_nb_does(tmp_path, monkeypatch):
    """nb.glue stores what myst_nb.glue(..., display=False) stores (hidden in the book, read by {glue:text}),
    with numpy scalars as Python numbers (their repr would not format), and refuses what is not a number."""
    from myst_nb import glue

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append((obj, kw)))
    monkeypatch.setattr("myst_nb.ext.glue.ipy_display", lambda obj, **kw: shown.append((obj, kw)))
    nb = Notebook("01", "smoke", "cpu", 0, 1, str(tmp_path / "runs"), str(tmp_path / "figures"))
    nb.glue(kl_total=torch.tensor(12.5), active=np.int64(32))
    glue("kl_total", 12.5, display=False)
    glue("active", 32, display=False)
    assert shown[:2] == shown[2:]
    assert shown[0][0] == {"application/papermill.record/text/plain": "12.5"} and shown[1][0]["application/papermill.record/text/plain"] == "32"
    for bad in ("12.5", True, [1.0], torch.ones(2)):
        with pytest.raises(TypeError, match="glue takes numbers; x is"):
            nb.glue(x=bad)
