import pytest

from session_helpers import make_dataset


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory holding a small generated dataset (config paths are relative to it)."""
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path)
    return tmp_path
