"""GPU lane: a capture that fails names where it broke (``CapturedCall.mark``), and the call still runs
eagerly with the right result."""

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def test_a_failed_capture_names_the_part_that_broke_it():
    cupy = pytest.importorskip("cupy")
    from hugectr_lab.backend.cuda.graphs import CapturedCall

    x = cupy.arange(8, dtype=cupy.float32)

    def fn():
        y = x + 1
        call.mark("the addition")
        total = float(y.sum())   # a device-to-host read: not allowed while capturing
        call.mark("the read")
        return y * total

    call = CapturedCall(fn, "a test call")
    first, second = call(), call()   # eager, then the failed capture (which runs fn eagerly again)
    assert call.graph is None
    assert "raised after the addition" in call.failure, call.failure
    np.testing.assert_array_equal(cupy.asnumpy(first), cupy.asnumpy(second))
    np.testing.assert_array_equal(cupy.asnumpy(call()), (np.arange(8) + 1) * 36.0)


def test_marks_outside_a_capture_change_nothing():
    cupy = pytest.importorskip("cupy")
    from hugectr_lab.backend.cuda.graphs import CapturedCall

    x = cupy.ones(4, dtype=cupy.float32)

    def fn():
        y = x * 2
        call.mark("the product")
        return y

    call = CapturedCall(fn, "a test call")
    for _ in range(3):
        np.testing.assert_array_equal(cupy.asnumpy(call()), 2.0)
    assert call.graph is not None and call.failure is None, call.failure


class _SynchronisesWhenCollected:
    """Cyclic garbage whose finalizer waits for the device, as a dropped session's stream or pinned buffer may."""

    def __init__(self, cupy):
        self.cupy, self.myself = cupy, self

    def __del__(self):
        self.cupy.cuda.Device().synchronize()


def test_garbage_collected_during_a_capture_cannot_invalidate_it():
    cupy = pytest.importorskip("cupy")
    import gc

    from hugectr_lab.backend.cuda.graphs import CapturedCall

    x = cupy.arange(8, dtype=cupy.float32)

    def fn():
        _SynchronisesWhenCollected(cupy)   # garbage at once; with the threshold 1 the collector runs inside fn
        [object() for _ in range(10)]
        return x * 3

    thresholds = gc.get_threshold()
    gc.set_threshold(1)
    try:
        call = CapturedCall(fn, "a test call")
        for _ in range(3):
            np.testing.assert_array_equal(cupy.asnumpy(call()), np.arange(8) * 3.0)
    finally:
        gc.set_threshold(*thresholds)
    assert call.graph is not None and call.failure is None, call.failure
    assert gc.isenabled()
