"""The notebooks: paired with their .py files, the plumbing kept in the package, executed end to end under the smoke profile."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
EXPECTED_FIGURES = {
    "01": ["data", "loop_curves", "training_curves", "reconstructions", "samples", "traversal_z0", "traversal_z1", "kl_per_dim"],
    "02": ["loop_mi_curve", "training_mi_curves", "traversal_vmi_z0", "traversal_baseline_z1", "grid_vmi", "grid_baseline", "mi_profile"],
    "03": ["gumbel_softmax", "temperature_schedule", "loop_curves", "codes_used", "categories_baseline", "categories_paper_objective",
           "categories_true_bound", "confusion_baseline", "confusion_paper_objective", "confusion_true_bound"],
    "04": ["validation", "profile_joint", "profile_gaussian"],
    "05": ["study_accuracy", "study_codes_used", "study_codes_used_curves", "tradeoff", "shapes_factor_mi"],
    "06": ["throughput", "loop_times"],
}
# The chapter about training speed measures with the performance tooling it teaches (vmivae.perf); run folders,
# locks and pools stay in the package there too.
TEACHES_PERF = {"06_training_on_a_gpu"}


def test_there_are_six_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_paired_notebook_is_in_sync(source):
    paired = jupytext.read(source.with_suffix(".ipynb"))
    text = jupytext.read(source)
    assert [c.source for c in paired.cells] == [c.source for c in text.cells], f"run: jupytext --sync {source}"
    assert paired.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("source", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_keeps_the_plumbing_in_the_package(source):
    """Prose, one parameters cell of literals, the method in view (chapters 1-3 write it in cells), and no plumbing:
    run folders, locks, caches, process pools and the performance tooling stay in the package."""
    nb = jupytext.read(source)
    code = [c for c in nb.cells if c.cell_type == "code"]
    parameters = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1
    for node in ast.parse(parameters[0].source).body:
        assert isinstance(node, ast.Assign) and isinstance(node.value, (ast.Constant, ast.List)), ast.dump(node)
    tree = ast.parse("\n".join(c.source for c in code))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    prefixes = ("vmivae.runs", "multiprocessing", "concurrent") + (() if source.stem in TEACHES_PERF else ("vmivae.perf",))
    plumbing = {m for m in imported if m.startswith(prefixes)}
    assert not plumbing, f"{source.name} imports plumbing: {sorted(plumbing)}"
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        assert fn.end_lineno - fn.lineno <= 30, f"function {fn.name} is longer than a screen: split it or move it into the package"
    setup_cell = next(c for c in code if "setup(" in c.source)
    assert "from vmivae" in setup_cell.source or "import vmivae" in setup_cell.source
    assert nb.cells[0].cell_type == "markdown" and "{admonition} Learning objectives" in nb.cells[0].source
    prose = [c for c in nb.cells if c.cell_type == "markdown"]
    assert "## Key takeaways" in prose[-1].source  # the chapter ends on what to remember
    assert nb.cells[-1].source.strip() == "nb.timing()"  # then its cost: wall time and runs trained


def test_every_notebook_executes_under_smoke(smoke_build):
    executed = sorted((smoke_build["build"] / "executed").glob("*.ipynb"))
    assert [p.stem for p in executed] == [p.stem for p in NOTEBOOKS]
    for path in executed:
        nb = json.loads(path.read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, path.name
        injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
        assert len(injected) == 1 and "hide-cell" in injected[0]["metadata"]["tags"]
        assert 'profile = "smoke"' in "".join(injected[0]["source"])
    timings = json.loads((smoke_build["build"] / "timings.json").read_text())
    # the smoke profile stays a few minutes (measured 316 s on 2 cores: five chapters, nine short trainings)
    assert sum(t["seconds"] for t in timings.values()) < 420, timings
    # a cold run cache: run_all trains and measures every run ahead, once; the chapters' own list of runs and
    # evaluations matches that plan, so no chapter trains or evaluates anything itself
    ahead = timings.pop("(every chapter's runs, trained ahead)")
    assert ahead["trained"] == len(list(smoke_build["runs"].glob("*/metrics.json"))) == 9, ahead
    assert ahead["evaluated"] == len(list(smoke_build["runs"].glob("*/eval-*.json"))) == 12, ahead
    assert [(t["trained"], t["evaluated"]) for t in timings.values()] == [(0, 0)] * len(NOTEBOOKS), timings


def test_the_terminal_talks_and_shows_no_kernel_warnings(smoke_build):
    if not smoke_build["stderr"].is_file():
        pytest.skip("a reused build keeps no terminal output")
    stderr = smoke_build["stderr"].read_text()
    assert "Kernel is running over TCP" not in stderr and "[IPKernelApp]" not in stderr, stderr[-3000:]
    # while runs train ahead: one line per finished task with what is left (and at least every 30 s)
    progress = [line for line in stderr.splitlines() if line.startswith("vmivae: ") and " trained, " in line]
    assert progress and progress[-1].startswith("vmivae: 9/9 trained, 12/12 evaluated"), stderr[-3000:]
    assert any("min left" in line for line in progress)


def test_figures_are_written_with_stable_names(smoke_build):
    written = {p.stem for p in smoke_build["figures"].glob("*.png")}
    for prefix, names in EXPECTED_FIGURES.items():
        for name in names:
            assert f"{prefix}_{name}" in written


def test_paired_notebooks_were_not_touched(smoke_build):
    for source in NOTEBOOKS:
        nb = json.loads(source.with_suffix(".ipynb").read_text())
        assert not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), source.name


def test_run_all_names_a_failing_notebook(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_all.py"), "--only", "09", "--build-dir", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "no notebook numbered 09" in result.stderr


def test_code_cells_fit_the_books_column():
    """Code lines of at most 88 characters: a wider line would hide behind a horizontal scroll bar in the book."""
    import jupytext

    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        code = [line for cell in jupytext.read(path).cells if cell.cell_type == "code" for line in cell.source.splitlines()]
        long = [line for line in code if len(line) > 88]  # comments included: they show in the cell too
        assert not long, f"{path.name}: code lines longer than 88 characters: {long}"
