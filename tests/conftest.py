"""Shared fixtures: one test body runs with ``xp=numpy`` always and ``xp=cupy`` in the gpu lane.

The default backend is "auto" (CuPy where a usable GPU is). Every test that is not gpu-marked -- the
notebooks under nbval included -- runs with ``HUGECTR_LAB_BACKEND=numpy``, so the CPU suite asks the
same of every machine; gpu-marked tests see the environment as the user set it, so the gpu lane
exercises the real default (auto -> CuPy) unless they name a backend themselves.
"""

import importlib
import os

import pytest

from hugectr_lab.backend import visible_gpu_count
from hugectr_lab.backend.backends import ENV_VAR


def pytest_collection_modifyitems(config, items):
    if visible_gpu_count() > 0:
        return
    skip = pytest.mark.skip(reason="no usable CUDA GPU (the gpu lane runs on the GPU machine: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Pin the NumPy backend around a non-gpu test's setup, call and teardown (a hook rather than an
    autouse fixture so that nbval's notebook kernels, started in their first cell's setup, inherit it)."""
    if "gpu" in item.keywords:
        yield
        return
    before = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = "numpy"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = before


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module under test."""
    return importlib.import_module(request.param)
