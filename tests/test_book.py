"""The built book in a real browser (Debian chromium driven by Playwright), served on 127.0.0.1."""

import functools
import http.server
import re
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PAGES = ["intro", "executed/01_vae", "executed/02_mi_regularizer", "executed/03_joint_discrete", "executed/04_measuring_mi",
         "executed/05_results", "executed/06_training_on_a_gpu", "method_code", "glossary", "api", "reproducing", "errors", "bibliography"]
WITH_MATHS = {"intro", "executed/01_vae", "executed/02_mi_regularizer", "executed/03_joint_discrete", "executed/04_measuring_mi",
              "executed/05_results", "executed/06_training_on_a_gpu", "method_code", "glossary", "reproducing"}
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
PHONE_ARTIFACTS = ROOT / "test-artifacts" / "screenshots-phone"
MIN_SCALE = 0.6  # an image shown at less than 60% of its natural width is a figure too large to read

# The text MathJax leaves: everything in main but code, scripts and typeset maths.
PROSE_JS = """() => { const main = document.querySelector('main').cloneNode(true);
  main.querySelectorAll('pre, code, script, style, mjx-container, .math, div.highlight').forEach(e => e.remove());
  return main.textContent; }"""
# Horizontal overflow at the desktop width: main itself, code blocks, tables; images too large or shrunk too far.
LAYOUT_JS = """() => { const main = document.querySelector('main');
  const visible = e => e.getClientRects().length > 0 && e.getBoundingClientRect().width > 0;
  const column = (document.querySelector('article.bd-article') || main).getBoundingClientRect().width;
  const name = e => (e.closest('[id]') ? '#' + e.closest('[id]').id + ' ' : '') + e.tagName.toLowerCase();
  const out = {main: main.scrollWidth > main.clientWidth + 1 ? [main.scrollWidth, main.clientWidth] : null, pre: [], tables: [],
               wide: [], shrunk: []};
  main.querySelectorAll('pre').forEach(p => { if (visible(p) && p.scrollWidth > p.clientWidth + 1)
    out.pre.push([name(p), p.scrollWidth, p.clientWidth, p.textContent.split('\\n').reduce((a, l) => Math.max(a, l.length), 0)]); });
  main.querySelectorAll('table').forEach(t => { if (visible(t) && t.getBoundingClientRect().width > column + 1)
    out.tables.push([name(t), Math.round(t.getBoundingClientRect().width), Math.round(column)]); });
  main.querySelectorAll('img').forEach(i => { if (!visible(i)) return; const w = i.getBoundingClientRect().width;
    const src = i.src.startsWith('data:') ? (i.alt || 'inline image').slice(0, 60) : i.src.split('/').pop();
    if (w > column + 1) out.wide.push([src, Math.round(w), Math.round(column)]);
    if (i.naturalWidth > 0 && w < """ + str(MIN_SCALE) + """ * i.naturalWidth) out.shrunk.push([src, i.naturalWidth, Math.round(w)]); });
  return out; }"""

pytestmark = pytest.mark.browser


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def server(smoke_build):
    handler = functools.partial(_QuietHandler, directory=str(smoke_build["html"]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); ./run_tests.sh does it as root")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def _open(browser, url, width=1280):
    """Load a page; return it with the lists of failed requests and error responses it saw."""
    page = browser.new_page(viewport={"width": width, "height": 900})
    failed = []
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
    page.goto(url, wait_until="networkidle")
    return page, failed


def _typeset(page):
    """Wait until MathJax has typeset the page (formulas in collapsed cells included, visible or not)."""
    page.wait_for_selector("mjx-container", state="attached", timeout=20_000)
    page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise ? MathJax.startup.promise.then(() => true) : true")


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_completely(server, browser, name):
    page, failed = _open(browser, f"{server}/{name}.html")
    try:
        assert page.title()
        assert not failed, failed
        broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        assert not broken, broken
        if name in WITH_MATHS:
            _typeset(page)
            assert page.locator("mjx-container").count() > 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name.replace('/', '_')}.png"), full_page=False)
    finally:
        page.close()


@pytest.mark.parametrize("name", PAGES)
def test_no_raw_tex_is_left_after_mathjax(server, browser, name):
    page, _ = _open(browser, f"{server}/{name}.html")
    try:
        if name in WITH_MATHS:
            _typeset(page)
        text = page.evaluate(PROSE_JS)
        left = [d for d in ("$$", "\\(", "\\)", "\\[", "\\]", "\\begin{") if d in text]
        pair = re.search(r"\$[^$\n]+\$", text)
        assert not left and not pair, (left, pair and pair.group(0)[:80])
    finally:
        page.close()


@pytest.mark.parametrize("name", PAGES)
def test_the_column_never_overflows_and_figures_are_legible(server, browser, name):
    """At 1280 px: nothing wider than the main column (code wraps at about 88 characters or fits, tables fit),
    and every image at most the column's width and shown at 60% of its natural width or more."""
    page, _ = _open(browser, f"{server}/{name}.html")
    try:
        page.wait_for_timeout(300)  # images decoded, fonts applied
        layout = page.evaluate(LAYOUT_JS)
        problems = {k: v for k, v in layout.items() if v}
        assert not problems, problems
    finally:
        page.close()


@pytest.mark.parametrize("name", PAGES)
def test_phone_screenshot(server, browser, name):
    """Every page at a phone's width (390 px), for a person to look at (test-artifacts/screenshots-phone)."""
    page, failed = _open(browser, f"{server}/{name}.html", width=390)
    try:
        PHONE_ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = PHONE_ARTIFACTS / f"{name.replace('/', '_')}.png"
        page.screenshot(path=str(path), full_page=False)
        assert path.stat().st_size > 5_000 and not failed, failed
        assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # the page itself never scrolls sideways
    finally:
        page.close()


def test_figures_show_in_the_notebook_pages(server, browser):
    page, _ = _open(browser, f"{server}/executed/03_joint_discrete.html")
    try:
        assert page.evaluate("Array.from(document.images).filter(i => i.naturalWidth > 100).length") >= 6
    finally:
        page.close()


def test_next_links_walk_the_whole_book(server, browser):
    page, failed = _open(browser, f"{server}/intro.html")
    try:
        for expected in PAGES[1:]:
            page.click("a.right-next")
            page.wait_for_load_state("networkidle")
            assert page.url.endswith(f"{expected}.html"), page.url
        assert not failed, failed
    finally:
        page.close()


def test_results_page_shows_the_results_table(server, browser):
    page, _ = _open(browser, f"{server}/executed/05_results.html")
    try:
        tables = page.locator("table.dataframe")
        headers = " ".join(tables.nth(i).inner_text() for i in range(tables.count()))
        for preset in ("paper-joint", "paper-joint-baseline"):  # the study's objectives
            assert preset in headers
        assert "reproduced" in headers and "not reproduced" in headers  # the verdict table
        assert "JointVAE (Dupont 2018)" in headers and "shape accuracy (Hungarian)" in headers
    finally:
        page.close()


def test_reproducing_page_shows_timings_and_the_benchmark_table(server, browser):
    page, _ = _open(browser, f"{server}/reproducing.html")
    try:
        text = " ".join(page.locator("table").nth(i).inner_text() for i in range(page.locator("table").count()))
        assert "all notebooks" in text  # this build's wall times
        assert "images/s" in text and "alternating (reference-style)" in text and "GFLOP/image" in text
    finally:
        page.close()


def test_injected_parameters_are_collapsed(server, browser):
    page, _ = _open(browser, f"{server}/executed/01_vae.html")
    try:
        cell = page.locator("div.cell.tag_injected-parameters")
        assert cell.count() == 1
        assert "tag_hide-cell" in cell.get_attribute("class")
        assert not page.locator("div.cell.tag_injected-parameters .cell_input").first.is_visible()
    finally:
        page.close()


def test_search_finds_pages(server, browser):
    page, failed = _open(browser, f"{server}/search.html?q=Gumbel")
    try:
        page.wait_for_selector("#search-results li", timeout=20_000)
        assert page.locator("#search-results li").count() >= 1
        assert not failed, failed
    finally:
        page.close()
