"""Shared fixtures: one test body runs with ``xp=numpy`` always and ``xp=cupy`` in the gpu lane."""

import importlib

import pytest

from hugectr_lab.backend import visible_gpu_count


def pytest_collection_modifyitems(config, items):
    if visible_gpu_count() > 0:
        return
    skip = pytest.mark.skip(reason="no usable CUDA GPU (the gpu lane runs on the GPU machine: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module under test."""
    return importlib.import_module(request.param)
