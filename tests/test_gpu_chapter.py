"""Chapter 6, training on a GPU, executed with papermill at its fastest parameters on the CPU: it measures its
loops and the bench live, shows the committed GPU tables in place of its GPU-only cells, and trains no run."""

import ast
import json
import re
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "notebooks" / "06_training_on_a_gpu.py"
FASTEST = {"profile": "smoke", "device": "cpu", "loop_steps": 1, "bench_steps": 1}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    import papermill

    base = tmp_path_factory.mktemp("chapter6")
    notebook, output = base / "input.ipynb", base / "executed.ipynb"
    jupytext.write(jupytext.read(CHAPTER), notebook)
    parameters = {**FASTEST, "runs_dir": str(base / "runs"), "figures_dir": str(base / "figures"),
                  "benchmarks_dir": str(ROOT / "benchmarks"), "results_dir": str(ROOT / "results" / "study")}
    papermill.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3", cwd=str(ROOT / "notebooks"),
                               progress_bar=False)
    cells = json.loads(output.read_text())["cells"]
    return {"base": base, "cells": cells}


def _outputs(cells, kind=None):
    return [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", []) if kind is None or o.get("output_type") == kind]


def _text(cells) -> str:
    """Every text the executed chapter shows: printed lines, Markdown sentences, tables."""
    parts = []
    for o in _outputs(cells):
        parts.append("".join(o.get("text", "")))
        for mime in ("text/markdown", "text/html", "text/plain"):
            parts.append("".join(o.get("data", {}).get(mime, "")))
    return "\n".join(parts)


def test_the_chapter_runs_on_a_cpu_without_errors_warnings_or_training(executed):
    assert not _outputs(executed["cells"], "error")
    stderr = [o for o in _outputs(executed["cells"], "stream") if o["name"] == "stderr"]
    assert not stderr, stderr  # no warning or log line reaches the book
    assert not list((executed["base"] / "runs").glob("*/metrics.json"))  # the full-budget run is for a GPU only
    figures = {p.stem for p in (executed["base"] / "figures").glob("*.png")}
    assert figures == {"06_throughput", "06_loop_times"}, figures


def test_the_gpu_only_cells_show_the_committed_measurements_instead(executed):
    text = _text(executed["cells"])
    assert "no GPU here" in text and "CUDA available: False" in text
    assert "NVIDIA H100 80GB HBM3" in text  # the committed table, labelled with its hardware
    assert "2026-11-26" in text  # and its date
    assert "no full-budget GPU run is committed" in text  # no invented numbers for the full budget
    assert "the true bound on reconstructions (vmi-joint), mean of 3 seeds" in text  # the longest committed training instead


def test_the_live_measurements_sit_beside_the_committed_tables(executed):
    text = _text(executed["cells"])
    table = next(o["data"]["text/html"] for o in _outputs(executed["cells"], "execute_result")
                 if "this machine" in "".join(o.get("data", {}).get("text/html", "")) and "H100" in "".join(o["data"]["text/html"]))
    table = "".join(table)
    for column in ("this machine", "H100", "2-core CPU"):
        assert column in table
    for row in ("alternating (reference-style)", "fused + cuda-graph", "fused, 16 runs grouped"):
        assert row in table
    ops = int(re.search(r"one fused step of paper-joint: (\d+) tensor operations", text).group(1))
    assert 100 < ops < 5000  # hundreds of launches for a step of 0.14 GFLOP per image
    assert re.search(r"peak on CPU: fp32 \d+ GFLOP/s", text)
    assert "the capture-safe forms give the plain forms' values" in text
    assert "8 processes: batch_size 124 must be divisible by the 8 processes" in text


def test_the_gpu_cells_are_guarded_and_the_hosted_cell_keeps_the_hosts_torch():
    nb = jupytext.read(CHAPTER)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    first = code[1]  # the cell after the parameters
    assert first.index('if importlib.util.find_spec("vmivae") is None:') < first.index("import vmivae")
    installs = re.findall(r"subprocess\.run\(\[\*pip, (.*?)\]", first)
    assert installs and '"--no-deps"' in installs[0] and not [i for i in installs if "torch" in i]
    assert "torch.cuda.is_available()" in first  # and says whether it found a GPU
    tree = ast.parse("\n".join(code))
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}

    def guarded(node) -> bool:
        """Inside a definition (runs nothing by itself) or in the body of `if on_gpu` / `... if on_gpu else ...`."""
        while node in parents:
            parent = parents[node]
            if isinstance(parent, ast.FunctionDef | ast.ClassDef):
                return True
            if isinstance(parent, ast.If | ast.IfExp) and ast.unparse(parent.test).startswith("on_gpu"):
                if node is parent.body or (isinstance(parent.body, list) and node in parent.body):
                    return True
            node = parent
        return False

    needs_gpu = [n for n in ast.walk(tree) if (isinstance(n, ast.Attribute) and ast.unparse(n).startswith("torch.cuda.")
                                                and n.attr != "is_available")
                 or (isinstance(n, ast.Call) and ast.unparse(n.func) == "captured_loop")]
    assert len(needs_gpu) > 5
    assert not [ast.unparse(n) for n in needs_gpu if not guarded(n)]
    assert "GPU only" in "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_the_chapter_is_in_the_book():
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert files.index("executed/06_training_on_a_gpu") == files.index("executed/05_results") + 1
