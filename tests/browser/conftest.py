"""Fixtures of the real-browser tests: JupyterLab + headless Chromium, skipped (with the reason) only
when Chromium, Playwright or JupyterLab is missing.

Install them with README's command (b): Chromium from apt (``apt-get install chromium``), Playwright
and JupyterLab from the ``dev`` extra. Playwright's browser downloads (``playwright install``) are
never used: the tests launch ``/usr/bin/chromium``.
"""

import importlib.util
from pathlib import Path

import pytest

from lab_driver import LabServer, chromium_path, open_browser

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "05_dashboards.ipynb"


def missing_tools():
    missing = []
    if chromium_path() is None:
        missing.append("Chromium (/usr/bin/chromium; apt-get install chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("Playwright (pip install playwright)")
    if importlib.util.find_spec("jupyterlab") is None:
        missing.append("JupyterLab (pip install jupyterlab)")
    return missing


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    missing = missing_tools()
    if missing:
        pytest.skip("real-browser test needs " + ", ".join(missing))
    server = LabServer(tmp_path_factory.mktemp("jupyterlab"), [NOTEBOOK])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser_context(lab_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, context = open_browser(playwright)
        try:
            yield context
        finally:
            context.close()
            browser.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Where screenshots go (always); HUGECTR_LAB_SCREENSHOTS names a second place (docs/images)."""
    return tmp_path_factory.mktemp("browser-artifacts")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the JupyterLab server's log (it holds the kernel's stderr too)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "lab_server" in getattr(item, "funcargs", {}):
        server = item.funcargs["lab_server"]
        report.sections.append(("jupyter server log (tail)", server.log_tail()))
