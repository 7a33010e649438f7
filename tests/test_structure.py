"""The package's shape: imported from this checkout, the layout's direction, no import circles, modules short enough to read.

The direction: the method (latents -> models -> objectives -> steps) needs only torch, numpy, the standard
library and itself; the training loop may pick faster variants from ``vmivae.perf`` and write through
``vmivae.runs``; measurement never reaches into the chapters' support; and the top of ``vmivae/`` holds
only the method, the loop and the entry points, so new plumbing goes into the subpackage it belongs to.
"""

import ast
import subprocess
import sys
from pathlib import Path

import vmivae

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vmivae"
MAX_LINES = 300

METHOD = ("vmivae.latents", "vmivae.models", "vmivae.objectives", "vmivae.steps")  # in pipeline order
METHOD_LIBRARIES = {"torch", "numpy"}  # beside the standard library
# the one package module the method may import: its typed errors (ConfigError for a bad LatentSpec), so that a mistake is
# one sentence in the command and a VMIVAEError in Python; vmivae.errors itself imports only the standard library
METHOD_ERRORS = "vmivae.errors"
NOT_THE_METHOD = ("vmivae.perf", "vmivae.runs", "vmivae.measure", "vmivae.teaching", "vmivae.plots")
TOP_LEVEL = {
    # the method
    "latents.py", "models.py", "objectives.py", "steps.py",
    # the loop: the typed config and its YAML layers, batches, a run's state, fit / resume, the errors it raises
    "config.py", "presets.py", "presets", "profiles", "batches.py", "trainer.py", "training.py", "errors.py",
    # the entry points
    "__init__.py", "__main__.py", "cli.py", "version.py",
    # the subpackages, each named for what it is
    "datasets", "plots", "measure", "runs", "perf", "teaching",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """The vmivae modules an import statement in ``module`` loads (function-level imports included)."""
    modules = _modules()
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.startswith("vmivae")]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if not target.startswith("vmivae"):
        return []
    found = []
    for alias in node.names:  # `from . import checkpoint` loads the module vmivae.runs.checkpoint
        sub = f"{target}.{alias.name}"
        found.append(sub if sub in modules else target)
    return found


def _imports(path: Path) -> list[ast.Import | ast.ImportFrom]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in _modules().items():
        edges = set()
        for node in _imports(path):
            edges.update(_resolve(name, node, path.name == "__init__.py"))
        edges.discard(name)
        # a package's __init__ importing its own submodules (to re-export them) is not a dependency of theirs
        graph[name] = edges
    return graph


def outside_imports() -> dict[str, set[str]]:
    """The top-level names of everything outside vmivae each module imports (``torch`` for ``torch.nn.functional``)."""
    found = {}
    for name, path in _modules().items():
        names = set()
        for node in _imports(path):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif not node.level:
                names.add((node.module or "").split(".")[0])
        found[name] = names - {"vmivae"}
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that importing ``start`` loads, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _within(module: str, packages) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def method_outside_its_libraries(graph: dict[str, set[str]], outside: dict[str, set[str]]) -> dict[str, set[str]]:
    """What each method module imports besides torch, numpy, the standard library and the other method modules."""
    allowed = METHOD_LIBRARIES | set(sys.stdlib_module_names)
    found = {m: (outside.get(m, set()) - allowed) | (graph.get(m, set()) - set(METHOD) - {METHOD_ERRORS}) for m in METHOD}
    # the errors module the method may import: the standard library only, no other module of the package
    found[METHOD_ERRORS] = (outside.get(METHOD_ERRORS, set()) - set(sys.stdlib_module_names)) | graph.get(METHOD_ERRORS, set())
    return {m: extra for m, extra in found.items() if extra}


def method_reaching_beyond(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The measurement, plumbing, performance, teaching or figure modules the method loads, even through another module."""
    found = {m: {d for d in reachable(graph, m) if _within(d, NOT_THE_METHOD)} for m in METHOD}
    return {m: deps for m, deps in found.items() if deps}


def measurement_reaching_teaching(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    found = {m: {d for d in reachable(graph, m) if _within(d, ["vmivae.teaching"])} for m in graph if _within(m, ["vmivae.measure"])}
    return {m: deps for m, deps in found.items() if deps}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):  # a package re-exporting its submodules
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if state.get(nxt) is None and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if state.get(node) is None and (found := visit(node)):
            return found
    return None


def test_the_package_is_imported_from_this_checkout():
    assert Path(vmivae.__file__).resolve().parent == PACKAGE
    # a fresh interpreter started at the root, without the test's sys.path, finds the same package
    out = subprocess.run([sys.executable, "-c", "import vmivae; print(vmivae.__file__)"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).resolve().parent == PACKAGE


def test_the_method_imports_only_torch_numpy_the_standard_library_and_itself():
    graph, outside = import_graph(), outside_imports()
    assert set(METHOD) <= set(graph), "a method module was moved or renamed: update METHOD"
    assert "torch" in outside["vmivae.models"] and "vmivae.latents" in graph["vmivae.models"]  # the walk sees both kinds
    assert method_outside_its_libraries(graph, outside) == {}


def test_the_method_never_loads_measurement_plumbing_performance_teaching_or_figures():
    assert method_reaching_beyond(import_graph()) == {}


def test_measurement_never_loads_the_chapters_support():
    graph = import_graph()
    assert "vmivae.measure.evaluation" in graph and "vmivae.runs.run" in reachable(graph, "vmivae.measure.evaluation")
    assert measurement_reaching_teaching(graph) == {}


def test_the_top_of_the_package_holds_only_the_method_the_loop_and_the_entry_points():
    here = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__" and not p.name.startswith(".")}
    assert here - TOP_LEVEL == set(), "new modules go into the subpackage they belong to (measure, runs, perf, teaching, ...)"
    assert {m.split(".")[1] + ".py" for m in METHOD} <= here


def test_the_package_docstring_is_a_reading_list_of_the_layout():
    """``help(vmivae)`` names the method modules in the order they run, then every subpackage."""
    doc = vmivae.__doc__
    positions = [doc.find(f"``{m.split('.')[1]}``") for m in METHOD]
    assert -1 not in positions and positions == sorted(positions), "the method modules, in pipeline order"
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert {s for s in subpackages if f"``{s}``" not in doc} == set()


def test_the_rules_catch_what_they_forbid():
    """Each rule, given a package that breaks it, names the offending module."""
    graph = {"vmivae.latents": set(), "vmivae.models": {"vmivae.latents", "vmivae.errors"}, "vmivae.objectives": {"vmivae.models"},
             "vmivae.steps": {"vmivae.objectives"}, "vmivae.errors": {"vmivae.runs.files"}, "vmivae.runs.files": set(),
             "vmivae.measure.mi": {"vmivae.plots"}, "vmivae.plots": {"vmivae.teaching.notebook"}, "vmivae.teaching.notebook": set()}
    outside = {"vmivae.latents": {"math", "torch"}, "vmivae.models": {"torch", "yaml"}, "vmivae.errors": {"os", "numpy"}}
    graph["vmivae.objectives"] = {"vmivae.models", "vmivae.config"}
    assert method_outside_its_libraries(graph, outside) == {"vmivae.models": {"yaml"}, "vmivae.objectives": {"vmivae.config"},
                                                            "vmivae.errors": {"numpy", "vmivae.runs.files"}}
    assert method_reaching_beyond(graph) == {m: {"vmivae.runs.files"} for m in ("vmivae.models", "vmivae.objectives", "vmivae.steps")}
    assert measurement_reaching_teaching(graph) == {"vmivae.measure.mi": {"vmivae.teaching.notebook"}}


def test_import_graph_has_no_cycle():
    graph = import_graph()
    assert "vmivae.datasets.registry" in graph and "vmivae.datasets.base" in graph["vmivae.datasets.registry"]  # the walk sees edges
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_no_module_imports_its_own_package():
    """Lower modules never import upward: a submodule reading its package's __init__ would close a circle."""
    upward = [(name, dep) for name, deps in import_graph().items() for dep in deps if name.startswith(dep + ".")]
    assert not upward


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_is_longer_than_a_sitting():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
