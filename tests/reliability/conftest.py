import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "session"))   # session_helpers

from session_helpers import make_dataset  # noqa: E402


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory holding a small generated dataset (config paths are relative to it)."""
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path, samples=512)
    return tmp_path
