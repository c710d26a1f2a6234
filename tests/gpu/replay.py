"""GPU test helper: a device step replayed from a CUDA graph gives the bits of its eager runs."""

import numpy as np


def assert_replays_the_eager_bits(step, to_host):
    """Runs ``step`` (no arguments; returns device arrays) eagerly twice, then three times through a
    ``CapturedCall`` (eager, captured, replayed): every run equals the first bit for bit. Returns the
    first run's host arrays."""
    from hugectr_lab.backend.cuda.graphs import CapturedCall

    eager = [to_host(a) for a in step()]
    again = [to_host(a) for a in step()]
    captured = CapturedCall(step, "the step under test")
    runs = [[to_host(a) for a in captured()] for _ in range(3)]
    assert captured.graph is not None and captured.failure is None, captured.failure
    for result in [again, *runs]:
        for got, want in zip(result, eager):
            np.testing.assert_array_equal(got, want)
    return eager
