"""The package's shape: imported from this checkout, no import circles, modules short enough to read."""

import ast
import subprocess
import sys
from pathlib import Path

import vmivae

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vmivae"
MAX_LINES = 300


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


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(_resolve(name, node, path.name == "__init__.py"))
        edges.discard(name)
        # a package's __init__ importing its own submodules (to re-export them) is not a dependency of theirs
        graph[name] = edges
    return graph


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
