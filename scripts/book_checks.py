"""Presentation checks on the built book's HTML: what a reader must never see.

    python scripts/book_checks.py build/book/_build/html      # lists every defect, exit status 1 if any

Each check reads one rendered page (its ``article``) and returns the defects it finds as sentences:

* ``warnings``: warnings in cell outputs (``...Warning``, ``warnings.warn``) and docutils error messages;
* ``local_paths``: paths of the machine that built the book (``/work/``, ``/tmp/``, ``site-packages`` ...);
* ``logs``: progress logs (``vmivae: training``), tracebacks, stderr output blocks, terminal colour codes;
* ``raw_tex``: TeX delimiters outside the math that MathJax renders (``$$``, ``\\(``, ``\\begin{``, ``$x$``);
* ``tables``: DataFrame cells with more than three decimals, ``-0.000``, ``nan`` or ``None``;
* ``figures``: images without alt text, figures without a caption.

``tests/test_book_build.py`` runs them on the smoke build; ``scripts/run_all.py`` reports their count after
building the book. The browser tests (``tests/test_book.py``) check what needs a layout: widths and MathJax.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

from bs4 import BeautifulSoup, Tag

NOT_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
WARNING_IN_OUTPUT = re.compile(r"\bWarning\b|warnings\.warn|\b[A-Z]\w*Warning\b")
WARNING_ANYWHERE = re.compile(r"warnings\.warn|\b(?:Tqdm|Runtime|User|Future|Deprecation|Pending|Resource|Syntax|Import|Bytes|Unicode)Warning\b")
LOCAL_PATHS = ("/work/", "/tmp/", "site-packages", ".venv/", "/.venv", "/root/", "/home/", "/Users/", "C:\\")
LOGS = ("vmivae: training", "vmivae: evaluating", "Traceback (most recent call last)")
ANSI = re.compile(r"\x1b\[|\[0;3\dm|\[1;3\dm|\[0m")
TEX = ("$$", "\\(", "\\)", "\\[", "\\]", "\\begin{")
INLINE_DOLLARS = re.compile(r"\$[^$\n]+\$")
NUMBER = re.compile(r"-?\d+(\.\d{1,3})?(e[+-]\d+)?")
MISSING = {"–", ""}
BAD_CELLS = {"nan", "none", "nat", "<na>", "-0", "-0.0", "-0.00", "-0.000", "inf", "-inf"}


def article(html: str) -> Tag:
    """The page's content: sphinx-book-theme's ``article.bd-article`` (the whole body for other themes)."""
    soup = BeautifulSoup(html, "html.parser")
    return soup.select_one("article.bd-article") or soup.body or soup


def _text(node: Tag) -> str:
    return node.get_text(" ", strip=False)


def _outputs(node: Tag) -> list[Tag]:
    return node.select("div.cell_output")


def _short(text: str, at: int, width: int = 70) -> str:
    return " ".join(text[max(0, at - width // 2) : at + width // 2].split())


def check_warnings(node: Tag) -> list[str]:
    found = []
    for output in _outputs(node):
        if m := WARNING_IN_OUTPUT.search(text := _text(output)):
            found.append(f"a warning in a cell output: '{_short(text, m.start())}'")
    if m := WARNING_ANYWHERE.search(text := _text(node)):
        found.append(f"a warning: '{_short(text, m.start())}'")
    found += [f"a docutils message: '{_short(_text(m), 0)}'" for m in node.select(".system-message, .problematic")]
    return found


def check_local_paths(node: Tag) -> list[str]:
    found = []
    text = _text(node)
    for needle in LOCAL_PATHS:
        if (at := text.find(needle)) >= 0:
            found.append(f"a local path ('{needle}'): '{_short(text, at)}'")
    for tag in node.find_all(True):
        for attribute in ("href", "src"):
            value = tag.get(attribute) or ""
            if not value.startswith("data:") and any(needle in value for needle in LOCAL_PATHS):
                found.append(f"a local path in a link: {attribute}='{value[:80]}'")
    return found


def check_logs(node: Tag) -> list[str]:
    found = []
    text = _text(node)
    found += [f"a log line: '{_short(text, text.find(log))}'" for log in LOGS if log in text]
    for block in node.select("div.output.stderr, div.stderr, .output.traceback, div.output.error"):
        found.append(f"a stderr/error output block: '{_short(_text(block), 0)}'")
    if m := ANSI.search(text):
        found.append(f"terminal colour codes: '{_short(text, m.start())}'")
    return found


def _prose(node: Tag) -> str:
    """The text MathJax does not typeset: everything but code, scripts and math elements."""
    copy = BeautifulSoup(str(node), "html.parser")
    for tag in copy.select("script, style, pre, code, .math, mjx-container, div.highlight, span.pre, div.cell_input"):
        tag.decompose()
    return _text(copy)


def check_raw_tex(node: Tag) -> list[str]:
    text = _prose(node)
    found = [f"raw TeX '{d}': '{_short(text, text.find(d))}'" for d in TEX if d in text]
    if m := INLINE_DOLLARS.search(text):
        found.append(f"raw TeX in dollars: '{_short(text, m.start())}'")
    return found


def bad_cell(text: str) -> bool:
    """A table cell that shows a number badly: more than three decimals, a negative zero, nan or None."""
    value = text.strip()
    if value in MISSING:
        return False
    if value.lower() in BAD_CELLS or re.fullmatch(r"-0\.0*", value):
        return True
    try:
        float(value)
    except ValueError:
        return False  # a label, not a number
    return not NUMBER.fullmatch(value)


def check_tables(node: Tag) -> list[str]:
    found = []
    tables = {id(t): t for t in node.select("table.dataframe") + [t for o in _outputs(node) for t in o.select("table")]}
    for table in tables.values():
        cells = [c.get_text(strip=True) for c in table.select("tbody td, tbody th")]
        bad = [c for c in cells if bad_cell(c)]
        if bad:
            found.append(f"a table shows {len(bad)} badly formatted number(s), e.g. {', '.join(repr(b) for b in bad[:4])}")
    return found


def check_figures(node: Tag) -> list[str]:
    found = []
    for img in node.find_all("img"):
        src = (img.get("src") or "")[:60]
        if not (img.get("alt") or "").strip():
            found.append(f"an image without alt text ({src})")
        figure = img.find_parent("figure")
        caption = figure.find("figcaption") if figure else None
        if caption is None or not caption.get_text(strip=True):
            found.append(f"a figure without a caption ({src})")
    return found


CHECKS: dict[str, Callable[[Tag], list[str]]] = {
    "warnings": check_warnings, "local_paths": check_local_paths, "logs": check_logs,
    "raw_tex": check_raw_tex, "tables": check_tables, "figures": check_figures,
}


def pages(html_dir: str | Path) -> list[Path]:
    """The book's pages: every HTML file but the index, search and theme files."""
    root = Path(html_dir)
    return sorted(p for p in root.rglob("*.html") if p.name not in NOT_PAGES and not p.relative_to(root).parts[0].startswith("_"))


def scan_page(html: str, checks: list[str] | None = None) -> dict[str, list[str]]:
    node = article(html)
    return {name: found for name, check in CHECKS.items() if (checks is None or name in checks) and (found := check(node))}


def scan_book(html_dir: str | Path, checks: list[str] | None = None) -> dict[str, dict[str, list[str]]]:
    """``{page: {check: [defects]}}`` for every page with a defect."""
    root = Path(html_dir)
    report = {}
    for path in pages(root):
        if found := scan_page(path.read_text(encoding="utf-8"), checks):
            report[path.relative_to(root).with_suffix("").as_posix()] = found
    return report


def format_report(report: dict[str, dict[str, list[str]]]) -> str:
    lines = []
    for page, found in report.items():
        for check, defects in found.items():
            lines += [f"{page}: [{check}] {d}" for d in defects]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    report = scan_book(args[0])
    print(format_report(report) or "no presentation defects")
    return 1 if report else 0


if __name__ == "__main__":
    raise SystemExit(main())
