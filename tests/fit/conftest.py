import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "session"))

from session_helpers import make_dataset  # noqa: E402


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory holding a small generated dataset (config paths are relative to it)."""
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path)
    return tmp_path
