import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from model_api_helpers import make_data  # noqa: E402


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory with a small Criteo-shaped dataset: ``data/train.txt`` / ``data/test.txt``
    (13 dense features; sparse inputs of 2 and 8 slots)."""
    monkeypatch.chdir(tmp_path)
    make_data(tmp_path)
    return tmp_path
