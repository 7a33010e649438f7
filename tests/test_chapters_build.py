"""Chapters 1-3 build the method in front of the reader: their own networks, losses and training loops in
code cells, run at the top level, checked equal to vmivae with torch.testing.assert_close, with the
student's exercise functions run inside the loop. (Whether the two still agree is what the assert cells
check when the smoke book runs; these tests keep the cells from turning back into calls into the package.)"""

import ast
import inspect
import re
from pathlib import Path

import jupytext
import pytest

from vmivae.teaching import exercise_solutions
from vmivae.teaching.exercises import EXERCISES
from vmivae.teaching.show import show_code, source_of

ROOT = Path(__file__).resolve().parents[1]

BUILDS = {  # what each chapter writes itself, the loop it runs, the vmivae code it checks against
    "01_vae": {
        "classes": {"Encoder", "Decoder", "VAE"},
        "functions": {"kl_per_dim", "elbo_loss", "train"},
        "loop": "train",
        "checked_against": ("vmivae.models.VAE", "vmivae.steps.loss_terms", "vmivae.objectives.vae_loss"),
        "exercises": {"gaussian_kl"},
    },
    "02_mi_regularizer": {
        "classes": {"Q"},
        "functions": {"mi_cross_entropy", "vmi_step", "train_vmi"},
        "loop": "train_vmi",
        "checked_against": ("vmivae.steps.Stepper", "vmivae.steps.build_networks", 'mode="alternating"'),
        "exercises": {"gaussian_cross_entropy"},
    },
    "03_joint_discrete": {
        "classes": set(),
        "functions": {"gumbel_softmax_sample", "categorical_kl", "code_entropy", "joint_loss", "joint_step", "train_joint"},
        "loop": "train_joint",
        "checked_against": ("vmivae.steps.loss_terms", "vmivae.objectives.vae_loss"),
        "exercises": {"gumbel_softmax", "aggregate_entropy"},
    },
}


def _chapter(stem: str):
    nb = jupytext.read(ROOT / "notebooks" / f"{stem}.py")
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    return code, markdown, ast.parse("\n".join(code))


def _calls(node) -> set[str]:
    """Names of everything called inside ``node``: ``f(...)`` -> f, ``a.b.f(...)`` -> f."""
    names = set()
    for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
        f = call.func
        names.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return names


@pytest.mark.parametrize("stem", BUILDS)
def test_the_chapter_defines_its_networks_and_losses_in_code_cells(stem):
    _, _, tree = _chapter(stem)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert BUILDS[stem]["classes"] <= set(classes), f"{stem} no longer writes its networks"
    for cls in BUILDS[stem]["classes"]:
        assert any(ast.unparse(base).endswith("Module") for base in classes[cls].bases), f"{cls} is not an nn.Module"
        assert "forward" in {n.name for n in classes[cls].body if isinstance(n, ast.FunctionDef)}
    assert BUILDS[stem]["functions"] <= functions, f"{stem} no longer writes {BUILDS[stem]['functions'] - functions}"


@pytest.mark.parametrize("stem", BUILDS)
def test_the_chapter_runs_its_own_training_loop(stem):
    """The loop function iterates over a tqdm bar; it (or the step it calls) backpropagates and steps an
    optimiser; and a top-level statement calls it, so running the chapter trains."""
    _, _, tree = _chapter(stem)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    loop = functions[BUILDS[stem]["loop"]]
    fors = [n for n in ast.walk(loop) if isinstance(n, ast.For)]
    assert fors and any("tqdm" in _calls(f.iter) for f in fors), "the loop shows a tqdm progress bar"
    reached = _calls(loop) | {name for f in _calls(loop) & set(functions) for name in _calls(functions[f])}
    assert {"backward", "step", "zero_grad"} <= reached, f"{stem}'s loop does not train: {sorted(reached)}"
    top_level = [n for n in tree.body if not isinstance(n, ast.FunctionDef | ast.ClassDef)]
    assert any(BUILDS[stem]["loop"] in _calls(n) for n in top_level), f"{stem} defines its loop but never runs it"


@pytest.mark.parametrize("stem", BUILDS)
def test_the_chapter_asserts_its_code_equal_to_vmivae(stem):
    code, _, _ = _chapter(stem)
    loop = BUILDS[stem]["loop"]
    run_at = next(i for i, c in enumerate(code) if re.search(rf"^\S.*= {loop}\(", c, re.M))
    checks = [i for i, c in enumerate(code) if "torch.testing.assert_close(" in c
              and all(name in c for name in BUILDS[stem]["checked_against"])]
    assert checks, f"{stem} no longer checks its code against {BUILDS[stem]['checked_against']}"
    assert checks[0] > run_at, "the check follows the chapter's own run, on its weights"
    cell = code[checks[0]]
    assert cell.count("assert_close(") >= 2 and (".grad" in cell or "autograd.grad" in cell), "outputs, loss and gradients"


@pytest.mark.parametrize("stem", BUILDS)
def test_the_students_functions_run_in_the_loop(stem):
    code, _, tree = _chapter(stem)
    loop = BUILDS[stem]["loop"]
    stubs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)
             and any(isinstance(s, ast.Raise) and "NotImplementedError" in ast.unparse(s) for s in n.body)}
    assert stubs == BUILDS[stem]["exercises"]
    for name in stubs:
        assert any(f'exercises.check("{name}", {name})' in c for c in code)
        in_loop = [c for c in code if f'"{name}"' in c and "exercises.in_the_loop(" in c]
        assert in_loop and re.search(rf"{loop}\([^)]*={name}\)", in_loop[0]), f"{name} is not run inside {loop}"


CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("stem", BUILDS)
def test_package_code_is_shown_by_a_code_cell_not_a_directive(stem):
    code, _, _ = _chapter(stem)
    assert any(c.startswith("show_code(") for c in code)


@pytest.mark.parametrize("stem", CHAPTERS)
def test_no_chapter_includes_files_with_a_directive(stem):
    """Package source comes from show_code, a solution is written into the chapter: JupyterLab renders both."""
    _, markdown, _ = _chapter(stem)
    assert not [m for m in markdown if "literalinclude" in m], "JupyterLab shows a literalinclude as raw text"


def test_every_exercise_shows_its_reference_solution_written_in():
    fences = [block for stem in CHAPTERS for m in _chapter(stem)[1] if ":class: dropdown" in m
              for block in re.findall(r"```python\n(.*?)```", m, re.S)]
    for name in EXERCISES:
        shown = [f for f in fences if f.startswith(f"def {name}(")]
        assert shown == [inspect.getsource(getattr(exercise_solutions, name))], f"the dropdown for {name} differs"
        assert max(map(len, shown[0].splitlines())) <= 84, f"the solution of {name} is wider than a dropdown in the book"  # 664 px at 7.6 px a character


@pytest.mark.parametrize("stem", BUILDS)
def test_each_dropdown_solution_is_the_reference_solution(stem):
    """The solutions are written into the chapter (so JupyterLab shows them); they stay the tested ones."""
    _, markdown, _ = _chapter(stem)
    for name in BUILDS[stem]["exercises"]:
        fences = [block for m in markdown if ":class: dropdown" in m for block in re.findall(r"```python\n(.*?)```", m, re.S)]
        shown = [f for f in fences if f.startswith(f"def {name}(")]
        assert shown == [inspect.getsource(getattr(exercise_solutions, name))], f"the dropdown for {name} differs"
        assert name in EXERCISES


@pytest.mark.parametrize("stem", BUILDS)
def test_a_hosted_notebook_installs_vmivae_without_replacing_its_torch(stem):
    code, _, _ = _chapter(stem)
    first = code[1]  # the cell after the parameters
    guard = first.index('if importlib.util.find_spec("vmivae") is None:')
    assert guard < first.index("import vmivae")  # harmless where vmivae is importable: nothing runs
    installs = re.findall(r"subprocess\.run\(\[\*pip, (.*?)\]", first)
    assert installs and '"--no-deps"' in installs[0]
    assert not [i for i in installs if "torch" in i]


def test_show_code_renders_package_source_as_highlighted_python():
    from vmivae.objectives import reconstruction_loss

    class Local:
        def method(self):
            return 1

    code = show_code(reconstruction_loss)
    assert code.data == inspect.getsource(reconstruction_loss)
    html = code._repr_html_()
    assert "reconstruction_loss" in html and 'class="highlight' in html and "white-space: pre-wrap" in html  # wraps, never widens
    # a small stylesheet: only the token classes this listing uses, each rule scoped to the listing, no comments
    style = re.fullmatch(r"<style>(.*?)</style>.*", html, re.S).group(1)
    rules = re.findall(r"(\S+) \.([\w-]+) \{[^}]*\}", style)
    used = set(re.findall(r'<span class="([\w-]+)">', html))
    assert rules and {scope for scope, _ in rules} == {".vmivae-code"} and {cls for _, cls in rules} <= used
    assert "/*" not in style and "Generic" not in html and "Traceback" not in html and len(style) < 1500
    assert html.count("<style>") == 1 and show_code(Local)._repr_html_().count(".nf ") == 1
    assert source_of(Local.method) == "def method(self):\n    return 1\n"  # dedented: a method reads as code
    assert source_of(reconstruction_loss, Local.method).count("\n\n\ndef method") == 0  # one blank line between
    with pytest.raises(ValueError, match="at least one"):
        source_of()


SETTINGS_IN_PROSE = {"0.01", "0.2", "0.5", "0.005", "0.05", "0.975"}  # thresholds and weights the chapters choose


@pytest.mark.parametrize("stem", ["01_vae", "02_mi_regularizer", "03_joint_discrete", "05_results"])
def test_measured_numbers_reach_the_prose_only_through_glue(stem):
    """Outside math and code, a decimal number in a chapter's prose is a setting it chooses or an exercise's
    number; a measured one is written as {glue:text}`name`, from the cell that computes it (which asserts the
    claim it supports), so the text cannot drift from its numbers."""
    _, markdown, _ = _chapter(stem)
    prose = "\n".join(markdown)
    for pattern in (r"```python\n.*?```", r"\$\$.*?\$\$", r"\$[^$]*\$", r"`[^`]*`", r"[Ee]xercise \d+\.\d+"):
        prose = re.sub(pattern, "", prose, flags=re.S)
    numbers = set(re.findall(r"(?<![\w.])\d+\.\d+", prose))
    assert numbers <= SETTINGS_IN_PROSE, f"{stem} writes numbers into its prose: {sorted(numbers - SETTINGS_IN_PROSE)}"
    assert "{glue:text}`" in "\n".join(markdown)
