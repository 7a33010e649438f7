"""environment.yml and pyproject.toml name the same packages with the same version ranges."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)$", requirement.strip()).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(r) for r in project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted.update(_split(r) for r in extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str) and not d.startswith(("python=", "pip"))]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = dict(_split(r) for r in conda + [p for p in pip if not p.startswith("-e")])
    assert listed == wanted
    assert "-e ." in pip  # the package itself


def test_torch_is_pinned_everywhere():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"torch==2.14.1"' in text and '"torchvision==0.29.1"' in text
    assert "torch==2.14.1" in (ROOT / "scripts" / "bootstrap.sh").read_text()


def test_ruff_is_clean():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- what the README and the book point at
DOCS = [ROOT / "README.md", *sorted((ROOT / "book").glob("*.md"))]
DOTTED = re.compile(r"(?<![\w./-])vmivae(?:\.[A-Za-z_]\w*)+")  # vmivae.perf.grouped.GroupTrainer, not .vmivae.lock
PATHS = re.compile(r"(?<![\w./-])vmivae/[\w./*-]*")


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def _run_fresh(code: str) -> None:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def test_every_import_in_the_readme_and_the_book_runs():
    """Each import statement of their python blocks, in a fresh interpreter, as a reader would paste it."""
    import ast

    statements = [ast.unparse(node) for doc in DOCS for block in _python_blocks(doc) for node in ast.walk(ast.parse(block))
                  if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert "import vmivae" in statements
    _run_fresh("\n".join(statements))


def test_every_vmivae_name_in_the_readme_and_the_book_exists():
    names = sorted({m.rstrip(".") for doc in DOCS for m in DOTTED.findall(doc.read_text())})
    assert "vmivae.perf.grouped.GroupTrainer" in names and "vmivae.measure.mi" in names
    _run_fresh(f"""
import importlib
for name in {names!r}:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
            break
        except ModuleNotFoundError:
            continue
    for attr in parts[cut:]:
        assert hasattr(obj, attr), f"{{name}}: {{obj.__name__}} has no {{attr}}"
        obj = getattr(obj, attr)
""")


def test_every_vmivae_path_in_the_readme_and_the_book_exists():
    missing = {f"{doc.name}: {p}" for doc in DOCS for p in PATHS.findall(doc.read_text()) if not list(ROOT.glob(p.rstrip(".")))}
    assert not missing


def test_the_readme_layout_names_every_module_and_nothing_that_is_gone():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Layout\n+```\n(.*?)```", text, re.S).group(1)
    package = block[block.index("vmivae/") : block.index("\nnotebooks/")]
    words = set(re.findall(r"[\w]+", package))
    modules = {p.stem for p in (ROOT / "vmivae").rglob("*.py") if p.stem != "__init__"}
    folders = {p.name for p in (ROOT / "vmivae").rglob("*") if p.is_dir() and p.name != "__pycache__"}
    assert (modules | folders) - words == set(), "modules or folders the Layout section does not name"
    named = set(re.findall(r"([\w]+\.py|[\w]+/)", package))
    gone = {n for n in named if not any((ROOT / "vmivae").rglob(n.rstrip("/")))} - {"vmivae/"}
    assert gone == set(), "the Layout section names files or folders that are gone"


def test_the_api_page_documents_modules_and_members_that_exist():
    text = (ROOT / "book" / "api.md").read_text()
    entries = re.findall(r"\.\. automodule:: (\S+)\n(?:\s+:members:(.*)\n)?", text)
    assert len(entries) > 20
    checks = {module: [m.strip() for m in members.split(",") if m.strip()] for module, members in entries}
    _run_fresh(f"""
import importlib
for module, members in {checks!r}.items():
    found = importlib.import_module(module)
    missing = [m for m in members if not hasattr(found, m)]
    assert not missing, f"{{module}} has no {{missing}}"
""")
