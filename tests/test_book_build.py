"""The book's build: presentation checks on every page of the smoke build, and a small book built from stub
notebooks (no notebook executed) for the book's own machinery: launch and download buttons, citations, glossary
terms and literalinclude blocks from a notebook's markdown, captioned figures and formatted tables."""

from __future__ import annotations

import base64
import importlib.util
import io
import re
import struct
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from bs4 import BeautifulSoup

from vmivae.plots import figure_html
from vmivae.teaching.notebook import _dataframe_html, _set_table_display

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "https://github.com/example-org/vmivae"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


checks = _module("book_checks")
run_all = _module("run_all")


def _page(html_dir: Path, name: str) -> BeautifulSoup:
    return BeautifulSoup((html_dir / f"{name}.html").read_text(encoding="utf-8"), "html.parser")


# ---------------------------------------------------------------- the scanner finds what it looks for


CLEAN = """<article class="bd-article"><p>The bound <span class="math notranslate nohighlight">\\(I(c; x)\\)</span> costs $5.</p>
<div class="cell_output"><table class="dataframe"><tbody><tr><th>paper-joint</th><td>0.123</td><td>–</td><td>12</td><td>1.00e-04</td>
<td>digits</td></tr></tbody></table></div><figure><img src="data:image/png;base64,AA" alt="bars"><figcaption>Two bars.</figcaption>
</figure><div class="highlight"><pre>x = "$$" + "\\\\begin{"</pre></div></article>"""

DIRTY = {
    "warnings": '<div class="cell_output"><pre>/x.py:3: UserWarning: careful\n  warnings.warn(</pre></div>',
    "local_paths": '<div class="cell_output"><pre>saved to /tmp/runs/abc</pre></div>',
    "logs": '<div class="output stderr"><pre>vmivae: training run 1</pre></div>',
    "raw_tex": "<p>the bound $I(c; x)$ holds</p>",
    "tables": '<table class="dataframe"><tbody><tr><td>0.12345</td><td>-0.000</td><td>NaN</td></tr></tbody></table>',
    "figures": '<div class="cell_output"><img src="_images/a.png"></div>',
}


def test_the_scanner_passes_a_clean_page():
    assert checks.scan_page(CLEAN) == {}


@pytest.mark.parametrize("check", sorted(DIRTY))
def test_the_scanner_finds_each_kind_of_defect(check):
    found = checks.scan_page(f'<article class="bd-article">{DIRTY[check]}</article>')
    assert check in found, found


@pytest.mark.parametrize("cell, bad", [("0.123", False), ("12", False), ("1.00e-04", False), ("–", False), ("paper", False),
                                       ("0.1234", True), ("-0.000", True), ("nan", True), ("None", True), ("-0", True)])
def test_table_cells(cell, bad):
    assert checks.bad_cell(cell) is bad


# ---------------------------------------------------------------- the smoke build: what the notebooks render


@pytest.fixture(scope="module")
def smoke_report(smoke_build):
    return checks.scan_book(smoke_build["html"])


def test_the_scan_sees_every_page_of_the_book(smoke_build):
    scanned = {p.relative_to(smoke_build["html"]).with_suffix("").as_posix() for p in checks.pages(smoke_build["html"])}
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    listed = {toc["root"]} | {c["file"] for part in toc["parts"] for c in part["chapters"]}
    assert listed <= scanned


@pytest.mark.parametrize("check", sorted(checks.CHECKS))
def test_the_smoke_book_has_no_presentation_defects(smoke_report, check):
    """Warnings, local paths, logs, raw TeX, badly formatted tables, figures without alt text or caption."""
    found = {page: defects[check] for page, defects in smoke_report.items() if check in defects}
    assert not found, "\n" + "\n".join(f"{page}: {d}" for page, ds in found.items() for d in ds)


def test_every_number_the_prose_quotes_is_glued_by_its_chapter(smoke_build):
    """A chapter's markdown quotes computed numbers through MyST-NB's {glue:text} role: every key it names is
    glued by a code cell of the same notebook (or the book would show nothing there), and the pages show the
    values, not the roles."""
    quoted_anywhere = False
    for path in sorted((smoke_build["build"] / "executed").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        glued = {o["metadata"]["scrapbook"]["name"] for c in nb.cells if c.cell_type == "code"
                 for o in c.get("outputs", []) if "scrapbook" in o.get("metadata", {})}
        quoted = {key for c in nb.cells if c.cell_type == "markdown"
                  for key in re.findall(r"\{glue:text\}`([^`:]+)(?::[^`]*)?`", c.source)}
        assert quoted <= glued, f"{path.name} quotes numbers no cell glued: {sorted(quoted - glued)}"
        quoted_anywhere |= bool(quoted)
        page = _page(smoke_build["html"], f"executed/{path.stem}")
        for code in page.select("div.cell_input, div.cell_output, pre"):
            code.decompose()
        prose = page.get_text(" ")
        assert "{glue" not in prose and "glue:text" not in prose, f"{path.stem} shows a glue role as text"
        assert not quoted or len(page.select("span.pasted-text")) >= len(quoted), f"{path.stem}: values not pasted"
    assert quoted_anywhere


def test_what_the_chapters_print_fits_the_books_column(smoke_build):
    """Printed lines (a cell's stdout, shown in a <pre>) of at most 87 characters: a wider one would hide behind
    a horizontal scroll bar in the book. Figure captions and tables are HTML and wrap."""
    wide = []
    for path in sorted((smoke_build["build"] / "executed").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for c in nb.cells:
            for o in c.get("outputs", []) if c.cell_type == "code" else []:
                if o.get("output_type") == "stream" and o.get("name") == "stdout":
                    wide += [(path.stem, line) for line in o["text"].splitlines() if len(line) > 87]
    assert not wide, wide


def test_without_a_repository_url_the_book_has_no_launch_or_repository_buttons(smoke_build, tmp_path):
    html = (smoke_build["html"] / "executed" / "01_vae.html").read_text(encoding="utf-8")
    assert "launch-buttons" not in html and "mybinder.org" not in html and "colab.research" not in html
    assert "repository-button" not in html
    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    assert "repository" not in config and not config["launch_buttons"]["binderhub_url"] and not config["launch_buttons"]["colab_url"]
    (tmp_path / "_config.yml").write_text((ROOT / "book" / "_config.yml").read_text())
    run_all.configure_book(tmp_path, None)
    assert (tmp_path / "_config.yml").read_text() == (ROOT / "book" / "_config.yml").read_text()


# ---------------------------------------------------------------- a small book from stub notebooks


def _png() -> bytes:
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.plot([0, 1], [0, 1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


STUB_MARKDOWN = """# A stub chapter

VMI-VAE {cite:p}`serdega2020vmi` maximises the bound of {cite:t}`barber2003im`, a {term}`variational lower bound`
added to the {term}`ELBO`.

```{literalinclude} /_src/vmivae/objectives.py
:language: python
:pyobject: mi_lower_bound
```
"""


def _stub_notebooks(folder: Path) -> None:
    """One stub per chapter of the table of contents; the first has citations, a figure and a table."""
    folder.mkdir(parents=True)
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    chapters = [c["file"] for part in toc["parts"] for c in part["chapters"] if c["file"].startswith("executed/")]
    frame = pd.DataFrame({"variant": ["paper", "baseline"], "accuracy": [0.12345, np.nan], "steps": [600, 600],
                          "mi": [1e-4, -0.0003], "note": ["ok", None]})
    png = _png()
    for i, chapter in enumerate(chapters):
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
        if i == 0:
            injected = nbformat.v4.new_code_cell('# Parameters\nprofile = "smoke"\nruns_dir = "/tmp/stub-machine/runs"\n',
                                                 metadata={"tags": ["injected-parameters", "hide-cell"]})
            figure = nbformat.v4.new_code_cell("nb.show(fig, 'line', caption=..., alt=...)", outputs=[nbformat.v4.new_output(
                "display_data", data={"text/html": figure_html(png, "A straight line: the caption.", "A line rising from left to right."),
                                      "image/png": base64.b64encode(png).decode(), "text/plain": "A straight line"})])
            table = nbformat.v4.new_code_cell("frame", outputs=[nbformat.v4.new_output(
                "execute_result", data={"text/html": _dataframe_html(frame), "text/plain": "frame"}, execution_count=1)])
            nb.cells = [injected, nbformat.v4.new_markdown_cell(STUB_MARKDOWN), figure, table]
        else:
            nb.cells = [nbformat.v4.new_markdown_cell(f"# Stub chapter {i + 1}\n\nNothing here.")]
        nbformat.write(nb, folder / f"{Path(chapter).name}.ipynb")


@pytest.fixture(scope="module")
def small_book(tmp_path_factory):
    """The book built by run_all's build_book from stub notebooks, with a repository URL (about a minute)."""
    _set_table_display()
    build = tmp_path_factory.mktemp("small-book")
    _stub_notebooks(build / "executed")
    return run_all.build_book(build, {}, "smoke", None, repository_url=REPOSITORY, branch="main")


def test_launch_buttons_open_the_repository_notebooks(small_book):
    links = [a.get("href", "") for a in _page(small_book, "executed/01_vae").select("a")]
    binder = "https://mybinder.org/v2/gh/example-org/vmivae/main?urlpath=tree/notebooks/01_vae.ipynb"
    colab = "https://colab.research.google.com/github/example-org/vmivae/blob/main/notebooks/01_vae.ipynb"
    assert binder in links and colab in links, [link for link in links if link.startswith("http")]
    assert (ROOT / "notebooks" / "01_vae.ipynb").is_file()  # the path they open exists in the repository
    assert REPOSITORY in links  # the repository button
    assert not [link for link in links if "executed/" in link and link.startswith("http")]


def test_download_buttons_offer_the_notebook_and_the_page_source(small_book):
    for page, source in (("executed/01_vae", "_sources/executed/01_vae.ipynb"), ("intro", "_sources/intro.md")):
        buttons = _page(small_book, page).select("a.btn[href]")
        targets = [b["href"].split("_sources/")[-1] for b in buttons if "_sources/" in b["href"]]
        assert source.removeprefix("_sources/") in targets, (page, targets)
        assert (small_book / source).is_file()


def test_citations_and_terms_in_a_notebook_cell_resolve(small_book):
    page = _page(small_book, "executed/01_vae")
    cites = [a.get_text(" ", strip=True) for a in page.select("a[href*='bibliography.html#']")]
    assert "Serdega and Kim, 2020" in cites and "2003" in cites, cites  # {cite:p} and {cite:t}
    assert re.search(r"Barber and Agakov \[ ?2003 ?\]", page.get_text(" ", strip=True))
    terms = {a["href"].split("#")[1] for a in page.select("a[href*='glossary.html#term-']")}
    assert {"term-ELBO", "term-variational-lower-bound"} <= terms, terms


def test_the_bibliography_lists_every_reference(small_book):
    keys = re.findall(r"^@\w+\{(\w+),", (ROOT / "book" / "references.bib").read_text(), flags=re.M)
    assert len(keys) == 18
    page = _page(small_book, "bibliography")
    assert len(page.select("div.citation")) == len(keys)
    text = " ".join(page.get_text(" ").split())
    for fragment in ("Andriy Serdega and Dae-Shik Kim", "Variational mutual information maximization framework for VAE latent codes",
                     "The IM algorithm", "InfoGAN", "Concrete distribution", "Fashion-MNIST", "PyTorch", "Naval Research Logistics"):
        assert fragment in text, fragment


def test_glossary_defines_every_term(small_book):
    page = _page(small_book, "glossary")
    for link in page.select("dl.glossary dt a.headerlink"):
        link.decompose()
    terms = {dt.get_text(" ", strip=True) for dt in page.select("dl.glossary dt")}
    for term in ("ELBO", "aggregate posterior", "mutual information", "differential entropy", "variational lower bound",
                 "Barber-Agakov bound", "auxiliary network Q", "Gumbel-softmax", "Concrete distribution", "temperature",
                 "reparameterisation trick", "posterior collapse", "code collapse", "Hungarian matching", "majority-vote accuracy",
                 "NMI", "linear probe", "MIG", "bootstrap confidence interval", "paired comparison", "fused step"):
        assert term in terms, term


def test_literalinclude_shows_the_package_source(small_book):
    notebook = _page(small_book, "executed/01_vae").get_text()
    assert "def mi_lower_bound(" in notebook and "return entropy - cross_entropy" in notebook
    method = _page(small_book, "method_code").get_text()
    for line in ("def reconstruction_loss(", "def categorical_cross_entropy(", "def gaussian_cross_entropy(", "def aggregate_code_entropy(",
                 "def mi_lower_bound(", "def gumbel_softmax_sample(", "def temperature_at(", "def gaussian_kl_per_dim(",
                 "def categorical_kl_uniform(", "class QNetwork(", "class _ScaleGrad(", "def scale_grad(", "def _fused(",
                 "def _per_sample_ce("):
        assert line in method, line
    assert "def _alternating(" not in method  # :pyobject: includes one object, not the rest of the file


def test_a_shown_figure_has_its_caption_alt_text_and_natural_width(small_book):
    figure = _page(small_book, "executed/01_vae").select_one("figure.vmivae-figure")
    img = figure.select_one("img")
    assert img["alt"] == "A line rising from left to right."
    assert figure.select_one("figcaption").get_text(strip=True) == "A straight line: the caption."
    png = base64.b64decode(img["src"].split(",", 1)[1])
    assert int(img["width"]) == struct.unpack(">II", png[16:24])[0] == 400


def test_tables_show_three_decimals_and_a_dash_for_missing_values(small_book):
    table = _page(small_book, "executed/01_vae").select_one("table.dataframe")
    cells = [td.get_text(strip=True) for td in table.select("tbody td")]
    assert cells == ["paper", "0.123", "600", "1.00e-04", "ok", "baseline", "–", "600", "-3.00e-04", "–"]


def test_the_book_shows_no_local_path_of_the_building_machine(small_book):
    page = _page(small_book, "executed/01_vae").get_text()
    assert 'runs_dir = "runs"' in page and "/tmp/" not in page
    assert "/tmp/" not in (small_book / "_sources" / "executed" / "01_vae.ipynb").read_text()


def test_the_books_own_pages_have_no_presentation_defects(small_book):
    assert checks.scan_book(small_book) == {}


def test_the_pages_workflow_gives_the_book_its_repository():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    step = next(s for s in workflow["jobs"]["build"]["steps"] if "run_all.sh" in s.get("run", ""))
    assert step["env"]["VMIVAE_REPOSITORY_URL"] == "${{ github.server_url }}/${{ github.repository }}"
    assert "--repository-url" in (ROOT / "scripts" / "run_all.py").read_text()
