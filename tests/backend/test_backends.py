import numpy as np
import pytest

from hugectr_lab.backend import (InProcessCommunicator, NumpyBackend, get_backend, reference_op,
                                 visible_gpu_count)
from hugectr_lab.backend import ops as ops_module


def test_numpy_backend_by_name_and_env(monkeypatch):
    assert get_backend("numpy").name == "numpy"
    monkeypatch.setenv("HUGECTR_LAB_BACKEND", "numpy")
    assert get_backend().name == "numpy"
    backend = NumpyBackend()
    assert get_backend(backend) is backend


@pytest.mark.skipif(visible_gpu_count() > 0, reason="checks the CPU-only answers")
def test_auto_falls_back_to_numpy_and_cupy_explains_itself(monkeypatch):
    auto = get_backend("auto")
    assert auto.name == "numpy"
    assert auto.reason.startswith("auto: ") and ("CuPy" in auto.reason or "probing" in auto.reason)
    with pytest.raises(RuntimeError, match="needs CuPy and a CUDA GPU; none is usable here \\((CuPy|probing)"):
        get_backend("cupy")
    monkeypatch.setenv("HUGECTR_LAB_BACKEND", "auto")
    assert get_backend().reason == auto.reason
    assert get_backend("numpy").reason == "argument"


def test_default_is_auto_and_the_environment_overrides_it(monkeypatch):
    monkeypatch.delenv("HUGECTR_LAB_BACKEND", raising=False)
    default = get_backend()
    assert default.name == ("cupy" if visible_gpu_count() else "numpy")
    assert default.reason == get_backend("auto").reason and default.reason.startswith("auto: ")
    monkeypatch.setenv("HUGECTR_LAB_BACKEND", "numpy")
    assert get_backend().name == "numpy" and get_backend().reason == "$HUGECTR_LAB_BACKEND"


def test_tests_run_pinned_to_numpy():
    """tests/conftest.py pins every test that is not gpu-marked to the NumPy backend."""
    import os
    assert os.environ["HUGECTR_LAB_BACKEND"] == "numpy"


@pytest.mark.gpu
def test_auto_picks_the_gpu_and_says_which():
    auto = get_backend("auto")
    assert auto.name == "cupy"
    assert auto.reason.startswith("auto: ") and "GPU 0 is " in auto.reason


def test_unknown_backend_is_named():
    with pytest.raises(ValueError, match="'tpu'"):
        get_backend("tpu")


def test_ops_bind_xp_and_report_missing(monkeypatch):
    monkeypatch.setattr(ops_module, "REFERENCES", dict(ops_module.REFERENCES))

    @reference_op
    def probe_axpy(xp, a, x, y):
        assert xp is np
        return a * x + y

    backend = get_backend("numpy")
    np.testing.assert_array_equal(backend.ops.probe_axpy(2.0, np.ones(3), np.arange(3.0)), [2, 3, 4])
    assert backend.ops.implementation("probe_axpy") == "reference"
    with pytest.raises(AttributeError, match="no operation named 'nope'"):
        backend.ops.nope


def test_reference_names_are_unique(monkeypatch):
    monkeypatch.setattr(ops_module, "REFERENCES", {})

    def twin(xp):
        return 1

    reference_op(twin)
    other = lambda xp: 2  # noqa: E731
    other.__name__ = "twin"
    with pytest.raises(ValueError, match="defined twice"):
        reference_op(other)


@pytest.mark.parametrize("g", [1, 2, 3])
def test_in_process_collectives(g):
    rng = np.random.default_rng(g)
    comm = InProcessCommunicator(g)
    b = 5
    parts = [rng.normal(size=(g * b, 4)) for _ in range(g)]
    total = sum(parts)
    for out in comm.all_reduce(parts):
        np.testing.assert_allclose(out, total)
    for d, out in enumerate(comm.reduce_scatter(parts)):
        np.testing.assert_allclose(out, total[d * b:(d + 1) * b])
    shards = [rng.normal(size=(b, 2)) for _ in range(g)]
    for out in comm.all_gather(shards):
        np.testing.assert_array_equal(out, np.concatenate(shards))
    sends = [[np.full(3, 10 * src + dst) for dst in range(g)] for src in range(g)]
    recv = comm.all_to_all(sends)
    for dst in range(g):
        for src in range(g):
            np.testing.assert_array_equal(recv[dst][src], 10 * src + dst)
    for out in comm.broadcast(shards, root=g - 1):
        np.testing.assert_array_equal(out, shards[g - 1])


def test_collectives_check_device_count():
    comm = InProcessCommunicator(2)
    with pytest.raises(ValueError, match="2 devices got 1"):
        comm.all_reduce([np.zeros(2)])
    with pytest.raises(ValueError, match="divide evenly"):
        comm.reduce_scatter([np.zeros((3, 1)), np.zeros((3, 1))])


@pytest.mark.parametrize("name", ["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_write_puts_host_numbers_into_device_arrays_exactly(name):
    """``Backend.write``: how per-step scalars reach the arrays a CUDA graph of the step reads."""
    backend = get_backend(name)
    xp = backend.xp
    hyper, step, rate = xp.zeros(3, xp.float64), xp.zeros((), xp.int64), xp.zeros((), xp.float32)
    backend.write(hyper, (0.001, 2 ** 40 + 3, 0.001 / 1024))
    backend.write(step, 12345)
    backend.write(rate, 0.1)
    assert backend.to_host(hyper).tolist() == [0.001, 2 ** 40 + 3, 0.001 / 1024]
    assert int(step) == 12345 and backend.to_host(rate) == np.float32(0.1)
    seed, halves = xp.zeros(1, xp.uint64), xp.zeros(3, xp.float16)   # a Dropout seed: all 62 bits
    backend.write(seed, (1 << 62) - 3)
    backend.write(halves, (0.1, -2.5, 65504.0))
    assert int(backend.to_host(seed)[0]) == (1 << 62) - 3
    assert backend.to_host(halves).tolist() == np.array([0.1, -2.5, 65504.0], np.float16).tolist()
    with pytest.raises(ValueError, match="2 values for an array of 3"):
        backend.write(hyper, (1.0, 2.0))


@pytest.mark.parametrize("name", ["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_writes_together_give_what_numpy_gives(name):
    """``Backend.writes_together``: the writes and copies made inside reach the device at its end (one launch
    per table of 8 writes, 128 written bytes and 8 copies on the GPU: 11 writes of 141 bytes and 10 copies
    here, aligned, unaligned and empty), with the values of the moment of each call."""
    backend = get_backend(name)
    xp = backend.xp
    rng = np.random.default_rng(5)
    scalars = [(xp.zeros(n, dtype), rng.normal(size=n) * 1000) for n, dtype in
               [(3, np.float64), (1, np.uint64), (4, np.float32), (2, np.int64), (1, np.float16), (4, np.float64),
                (3, np.int32), (1, np.float32), (4, np.float64), (2, np.uint8), (4, np.float64)]]
    host = [rng.integers(0, 255, size=n, dtype=np.uint8) for n in (4099, 1, 0, 77, 16 * 1000, 33, 5, 64, 3, 12345)]
    sources = [backend.asarray(h) for h in host]
    offsets = [3, 0, 0, 1, 0, 7, 0, 16, 2, 5]   # unaligned destinations too
    buffers = [xp.zeros(h.size + o, np.uint8) for h, o in zip(host, offsets)]
    want = [values.astype(dst.dtype) for dst, values in scalars]
    with backend.writes_together():
        for dst, values in scalars:
            backend.write(dst, values)
            values[...] = -1   # the values of the call are written, not those at the end
        with backend.writes_together():   # nested: held by the outer one
            for buf, o, src in zip(buffers, offsets, sources):
                backend.copy_into(buf[o:], src)
        if name == "numpy":   # nothing has reached the arrays yet
            assert not any(dst.any() for dst, _ in scalars) and not any(b.any() for b in buffers)
    for (dst, _), values in zip(scalars, want):
        np.testing.assert_array_equal(backend.to_host(dst), values)
    for buf, o, h in zip(buffers, offsets, host):
        got = backend.to_host(buf)
        np.testing.assert_array_equal(got[o:], h)
        assert not got[:o].any()


@pytest.mark.parametrize("name", ["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_copy_into_and_contiguous_give_what_numpy_gives(name):
    """``Backend.copy_into`` (a memcpy where it can, a cast or a strided write otherwise) and
    ``Backend.contiguous`` (a row-walking copy of a (B, S, E) view on the GPU)."""
    backend = get_backend(name)
    rng = np.random.default_rng(2)
    src = rng.normal(size=(37, 29)).astype(np.float32)
    for dst, want in ((backend.xp.zeros((37, 29), np.float32), src),            # one memcpy
                      (backend.xp.zeros((37, 29), np.float16), src.astype(np.float16)),   # a cast
                      (backend.xp.zeros((37, 40), np.float32)[:, 3:32], src)):  # a strided destination
        backend.copy_into(dst, backend.asarray(src))
        np.testing.assert_array_equal(backend.to_host(dst), want)
    keys = backend.xp.full(10, -1, np.int64)
    backend.copy_into(keys[:0], backend.asarray(np.zeros(0, np.int64)))        # nothing to copy
    assert backend.to_host(keys).tolist() == [-1] * 10
    wide = rng.normal(size=(7, 3 + 5 * 4)).astype(np.float16)
    view = backend.asarray(wide)[:, 3:].reshape(7, 5, 4)                      # (B, S, E) columns of a gradient
    got = backend.contiguous(view)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(backend.to_host(got).reshape(-1, 4), wide[:, 3:].reshape(-1, 4))
