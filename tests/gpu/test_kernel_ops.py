"""GPU lane: every CUDA kernel op against its NumPy reference on the same inputs (tests/gpu/op_cases.py)."""

import copy
import inspect

import numpy as np
import pytest
from op_cases import CASES

from hugectr_lab.backend import KERNELS, REFERENCES, get_backend

pytestmark = pytest.mark.gpu

PARAMS = [pytest.param(case, dtype, id=f"{case.op}-{case.id + '-' if case.id else ''}{dtype}")
          for case in CASES for dtype in case.dtypes]


def run(backend, case, args, kwargs):
    """Outputs of the op, then the arrays it changed in place, as host arrays."""
    args = [backend.asarray(a) if isinstance(a, np.ndarray) else a for a in copy.deepcopy(args)]
    out = getattr(backend.ops, case.op)(*args, **kwargs)
    outs = list(out) if isinstance(out, tuple) else [] if out is None else [out]
    return [backend.to_host(a) for a in outs + [args[i] for i in case.mutates]]


@pytest.mark.parametrize("case,dtype", PARAMS)
def test_kernel_matches_reference(case, dtype):
    cupy_backend = get_backend("cupy")
    assert cupy_backend.ops.implementation(case.op) == "kernel"
    args, kwargs = case.build(np.random.default_rng(7), dtype)
    want = run(get_backend("numpy"), case, args, kwargs)
    got = run(cupy_backend, case, args, kwargs)
    if case.canon is not None:
        want, got = case.canon(want), case.canon(got)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        if case.exact_fp32 and dtype == "float32":
            np.testing.assert_array_equal(g, w)
            continue
        rtol = case.extra.get("rtol", 1e-5 if dtype == "float32" else 2e-3)
        w64 = w.astype(np.float64)
        np.testing.assert_allclose(g.astype(np.float64), w64, rtol=rtol, atol=rtol * max(1.0, np.abs(w64).max()))


def test_every_kernel_is_tested_and_keeps_the_reference_signature():
    get_backend("cupy")  # registers the wrappers
    ours = {name: fn for name, fn in KERNELS.items() if fn.__module__.startswith("hugectr_lab.backend.cuda.")}
    assert set(ours) == {case.op for case in CASES}
    for name, fn in ours.items():
        assert inspect.signature(fn) == inspect.signature(REFERENCES[name]), name


def test_float64_falls_back_to_the_reference():
    backend = get_backend("cupy")
    x = backend.asarray(np.arange(12.0).reshape(3, 4))
    out = backend.ops.fm_order2_fwd(x, 2)
    assert out.dtype == np.float64
    np.testing.assert_allclose(backend.to_host(out), REFERENCES["fm_order2_fwd"](np, np.arange(12.0).reshape(3, 4), 2))
