"""The packing of ``hctr_write_table``'s argument (``hugectr_lab/backend/cuda/writes.py``, kernels/write_table.cu) on the CPU: host
arrays stand in for device arrays (their addresses are real), and ``run_table`` does what the kernel does
with a table, byte for byte, so that the split into tables and every offset are checked without a GPU
(the kernel itself: tests/backend/test_backends.py::test_writes_together_give_what_numpy_gives[cupy])."""

import ctypes
from types import SimpleNamespace

import numpy as np

from hugectr_lab.backend.cuda import writes


def device_view(a):
    """What ``_tables`` reads of a CuPy array, for the host array ``a``."""
    return SimpleNamespace(nbytes=a.nbytes, data=SimpleNamespace(ptr=a.ctypes.data))


def run_table(table):
    """The kernel on the host: each write's bytes to its destination, each copy."""
    assert table.dtype == writes.TABLE and table.shape == (1,)
    words = table.view(np.uint64)
    count, lengths = int(words[0]), int(words[1])
    n_writes, n_copies = count & 0xFF, (count >> 8) & 0xFF
    assert n_writes <= writes.MAX_WRITES and n_copies <= writes.MAX_COPIES
    payload = table.view(np.uint8)[8 * writes._HEAD:8 * writes._COPIES]
    start = 0
    for e in range(n_writes):
        size = (lengths >> (8 * e)) & 0xFF
        assert 0 < size <= 32
        ctypes.memmove(int(words[2 + e]), payload[start:start + size].ctypes.data, size)
        start += size
    assert start <= writes.MAX_WRITE_BYTES
    for c in range(n_copies):
        src, dst, size = (int(words[writes._COPIES + k * writes.MAX_COPIES + c]) for k in range(3))
        ctypes.memmove(dst, src, size)
    return n_writes, n_copies


def test_tables_carry_every_write_and_copy_in_order():
    rng = np.random.default_rng(11)
    entries, want = [], []
    for i in range(23):   # writes of 1 to 32 bytes and copies, interleaved: several tables of each limit
        if i % 3 == 2:
            src = rng.integers(0, 255, size=int(rng.integers(0, 50000)), dtype=np.uint8)
            dst = np.zeros(src.size, np.uint8)
            entries.append(("copy", dst, src))
        else:
            dtype = [np.float64, np.float32, np.uint64, np.float16, np.int32][i % 5]
            src = (rng.normal(size=int(rng.integers(1, 5))) * 100).astype(dtype)
            dst = np.zeros(src.size, dtype)
            entries.append(("write", dst, src))
        want.append((dst, src.copy()))
    group = [(kind, device_view(dst), src if kind == "write" else device_view(src)) for kind, dst, src in entries]
    tables = list(writes.tables(group))
    assert len(tables) >= 2
    done = [run_table(table) for table, _ in tables]
    assert sum(w for w, _ in done) == sum(kind == "write" for kind, _, _ in entries)
    assert sum(c for _, c in done) == sum(kind == "copy" and src.size > 0 for kind, _, src in entries)
    for dst, src in want:
        np.testing.assert_array_equal(dst, src)
    assert all(1 <= blocks <= writes._MAX_BLOCKS for _, blocks in tables)
    assert writes.TABLE.itemsize == 8 * writes._WORDS == 400   # kernels/write_table.cu's static_assert
