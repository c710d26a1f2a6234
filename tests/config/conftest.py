import copy
import json
from pathlib import Path

import pytest

CONFIG_DIR = Path(__file__).parent / "configs"
_CACHE = {}


def _load_sample(name: str) -> dict:
    if name not in _CACHE:
        _CACHE[name] = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    return copy.deepcopy(_CACHE[name])


@pytest.fixture
def sample():
    """``sample("dcn")``: a fresh, mutable copy of tests/config/configs/dcn.json."""
    return _load_sample
