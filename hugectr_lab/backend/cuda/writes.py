"""The CUDA wrapper of ``write_table``: many small writes and copies in one launch of
``kernels/write_table.cu``, whose by-value argument -- a table -- carries the written bytes themselves.

``Backend.write`` and ``copy_into`` end here; inside ``Backend.writes_together`` a replayed step's per-step
numbers and batch copies arrive together, one call per device and stream.
"""

from __future__ import annotations

import struct

import numpy as np

from ..ops import kernel_op

MAX_WRITES, MAX_WRITE_BYTES, MAX_COPIES = 8, 128, 8   # per launch (kernels/write_table.cu's HCTR_* sizes)
_HEAD = 2 + MAX_WRITES                                  # counts, lengths, the writes' destinations
_COPIES = _HEAD + MAX_WRITE_BYTES // 8                  # first word of the copies' sources
_WORDS = _COPIES + 3 * MAX_COPIES                       # 50 words: sizeof(hctr_write_table_args)
# The kernel's struct as raw bytes: CuPy passes a one-element host array by value (a void dtype, which --
# unlike a structured one of 50 fields -- costs nothing to describe in its __array_interface__).
TABLE = np.dtype((np.void, 8 * _WORDS))
_BLOCK, _MAX_BLOCKS, _BYTES_PER_BLOCK = 256, 1024, 16 * 256 * 4
_pack = struct.Struct("<Q").pack_into


@kernel_op("write_table")
def write_table(xp, *pairs):
    from .loader import launch_grid   # CuPy; ``tables`` (the packing) is tested without it

    writes = []
    for dst, src in zip(pairs[::2], pairs[1::2]):
        if not dst.flags.c_contiguous or src.dtype != dst.dtype:
            dst[...] = src   # a cast or a strided destination: CuPy's own
        elif isinstance(src, np.ndarray) and src.nbytes <= 32 and src.size == dst.size:
            writes.append(("write", dst, np.ascontiguousarray(src)))   # its bytes travel with the launch
        elif isinstance(src, xp.ndarray) and src.shape == dst.shape and src.flags.c_contiguous:
            writes.append(("copy", dst, src))
        else:
            dst[...] = src
    if len(writes) == 1 and writes[0][0] == "copy":   # a lone copy: one async memcpy
        _, dst, src = writes[0]
        if dst.nbytes:
            dst.data.copy_from_device_async(src.data, dst.nbytes)
        return
    for table, blocks in tables(writes):
        launch_grid("write_table.cu", "hctr_write_table", blocks, _BLOCK, (table,))


def tables(entries):
    """(table, blocks) of each launch for ``entries`` -- ("write", dst, host values of dst's dtype) and
    ("copy", dst, src) with ``.data.ptr`` addresses -- in order, as many per table as fit. A table is a
    ``TABLE`` array of one element, packed with ``struct`` (a few µs for a step's dozen entries)."""
    table, writes, written, lengths, copies, blocks = None, 0, 0, 0, 0, 1
    for kind, dst, src in entries:
        size = dst.nbytes
        if table is None or (writes == MAX_WRITES or written + size > MAX_WRITE_BYTES if kind == "write"
                             else copies == MAX_COPIES):
            if table is not None:
                yield _finish(table, writes, lengths, copies), blocks
            table, writes, written, lengths, copies, blocks = bytearray(8 * _WORDS), 0, 0, 0, 0, 1
        if kind == "write":
            lengths |= size << (8 * writes)
            _pack(table, 8 * (2 + writes), dst.data.ptr)
            table[8 * _HEAD + written:8 * _HEAD + written + size] = src.tobytes()
            writes, written = writes + 1, written + size
        elif size:
            for k, value in enumerate((src.data.ptr, dst.data.ptr, size)):
                _pack(table, 8 * (_COPIES + k * MAX_COPIES + copies), value)
            copies += 1
            blocks = max(blocks, min(_MAX_BLOCKS, -(-size // _BYTES_PER_BLOCK)))
    if table is not None:
        yield _finish(table, writes, lengths, copies), blocks


def _finish(table, writes, lengths, copies):
    _pack(table, 0, writes | copies << 8)
    _pack(table, 8, lengths)
    return np.frombuffer(table, TABLE)
