import os
import sys

import matplotlib
import pytest

matplotlib.use("Agg", force=True)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "session"))

from session_helpers import make_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def agg_backend():
    """Static PNG figures in every test, whatever an earlier import switched the backend to."""
    matplotlib.use("Agg", force=True)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory holding a small generated dataset (config paths are relative to it)."""
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path)
    return tmp_path
