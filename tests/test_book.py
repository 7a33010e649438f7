"""The built book in a real browser (Debian chromium driven by Playwright), served on 127.0.0.1."""

import functools
import http.server
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PAGES = ["intro", "executed/01_vae", "executed/02_mi_regularizer", "executed/03_joint_discrete", "executed/04_measuring_mi",
         "executed/05_results", "api", "reproducing", "errors"]
WITH_MATHS = {"intro", "executed/01_vae", "executed/02_mi_regularizer", "executed/03_joint_discrete", "executed/04_measuring_mi",
              "executed/05_results", "reproducing"}
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"

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


def _open(browser, url):
    """Load a page; return it with the lists of failed requests and error responses it saw."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    failed = []
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
    page.goto(url, wait_until="networkidle")
    return page, failed


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_completely(server, browser, name):
    page, failed = _open(browser, f"{server}/{name}.html")
    try:
        assert page.title()
        assert not failed, failed
        broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        assert not broken, broken
        if name in WITH_MATHS:
            page.wait_for_selector("mjx-container", timeout=20_000)
            assert page.locator("mjx-container").count() > 0
            text = page.inner_text("main")
            assert "\\[" not in text and "$$" not in text and "\\begin{" not in text
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name.replace('/', '_')}.png"), full_page=False)
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
        assert "MI categorical (nats)" in headers and "accuracy (Hungarian)" in headers
        for preset in ("paper-joint", "paper-joint-baseline", "paper-gaussian", "paper-gaussian-baseline"):
            assert preset in headers
        assert "JointVAE (Dupont 2018)" in headers
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
