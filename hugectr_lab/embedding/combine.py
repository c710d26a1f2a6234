"""Embedding gather + combine (forward) and per-key gradient reduction (backward).

A device sees its part of the batch as CSR: ``row_offsets`` (R+1,) over R (sample, slot) rows and,
per key occurrence, the table row it maps to (-1 = no row: the key contributes the zero vector and
receives no gradient). Sums accumulate in float32 whatever the output dtype, as HugeCTR does in fp16.
"""

from __future__ import annotations

import numpy as np

from ..backend import reference_op

COMBINERS = {0: "sum", 1: "mean", "sum": "sum", "mean": "mean"}


def combiner_name(combiner):
    """0 / "sum" -> "sum", 1 / "mean" -> "mean" (JSON uses ints, the v3.1 Python API strings)."""
    try:
        return COMBINERS[combiner]
    except (KeyError, TypeError):
        raise ValueError(f"combiner must be 0 (sum) or 1 (mean), got {combiner!r}") from None


@reference_op
def csr_row_ids(xp, row_offsets, num_keys):
    """(K,) int64: the CSR row of every key occurrence (R for keys past ``row_offsets[R]``: padding)."""
    if xp is np and _one_key_per_row(row_offsets, num_keys):
        return np.arange(num_keys)
    return xp.searchsorted(row_offsets, xp.arange(num_keys), side="right") - 1


def _one_key_per_row(row_offsets, num_keys):
    """NumPy: whether every CSR row holds exactly one key (one-hot slots, as in Criteo)."""
    return row_offsets.size - 1 == num_keys and bool((row_offsets[1:] - row_offsets[:-1] == 1).all())


def mean_row_scale(xp, counts):
    """(R,) float32 multipliers of the mean combiner: 1/count where count > 1, else 1."""
    return (1.0 / xp.maximum(counts, 1)).astype(xp.float32)


def segment_sum(xp, data, segment_ids, num_segments):
    """(num_segments, E) float32: the rows of ``data`` (K, E) summed per ``segment_ids`` (K,).

    Equals ``xp.add.at`` up to float rounding; on NumPy a sort plus ``add.reduceat`` does it an order of
    magnitude faster than ``add.at``.
    """
    out = xp.zeros((num_segments, data.shape[1]), dtype=xp.float32)
    if segment_ids.size == 0:
        return out
    data = data.astype(xp.float32, copy=False)
    if xp is not np:
        xp.add.at(out, segment_ids, data)
        return out
    segment_ids, data, starts = _grouped(data, segment_ids, num_segments)
    out[segment_ids[starts]] = np.add.reduceat(data, starts, axis=0)
    return out


def fold_segments(start, data, segment_ids):
    """NumPy: ``np.add.at(start, segment_ids, data)`` -- each row of ``data`` (K, E) added onto
    ``start[segment_ids[k]]`` ((N, E), in place) in occurrence order, so bit for bit the same -- an order
    of magnitude faster: round r adds the r-th occurrence of every row that has one."""
    segment_ids, data, starts = _grouped(data, segment_ids, start.shape[0])
    counts = np.diff(np.r_[starts, segment_ids.size])
    ids = segment_ids[starts]
    sums = start[ids]
    pending, r = np.arange(ids.size), 0
    while pending.size:
        sums[pending] += data[starts[pending] + r]
        r += 1
        pending = pending[counts[pending] > r]
    start[ids] = sums


def _grouped(data, segment_ids, num_segments):
    """``(segment_ids, data, starts)``: both in stable order of the ids, and where each id's run starts."""
    if (segment_ids[1:] < segment_ids[:-1]).any():
        order = _stable_order(segment_ids, num_segments)
        segment_ids, data = segment_ids[order], data.take(order, axis=0)
    return segment_ids, data, np.flatnonzero(np.r_[True, segment_ids[1:] != segment_ids[:-1]])


def _stable_order(ids, bound):
    """``np.argsort(ids, kind="stable")`` for ids (n,) int64 in [0, bound): an unstable (SIMD) sort of
    the distinct composite keys id·n + position gives the same permutation, several times faster."""
    n = ids.size
    if bound * n >= 1 << 62:
        return np.argsort(ids, kind="stable")
    composite = ids.astype(np.int64) * n
    composite += np.arange(n)
    composite.sort()
    return composite % n


@reference_op
def embedding_combine_fwd(xp, values, rows, row_offsets, row_scale, out_dtype):
    """Per CSR row, the sum of ``values[rows[k]]`` over its keys, times ``row_scale`` (mean) if given.

    values (V, E) float32; rows (K,) int64, -1 = zero vector; row_offsets (R+1,) int64;
    row_scale (R,) float32 or None. Returns (R, E) in ``out_dtype``, accumulated in float32.
    """
    if xp is np and _one_key_per_row(row_offsets, rows.size):
        # a gather: the same values as the sum of one row
        out = values.take(xp.maximum(rows, 0), axis=0)
        out[rows < 0] = 0
    else:
        hit = rows >= 0
        row_ids = csr_row_ids(xp, row_offsets, rows.size)
        out = segment_sum(xp, values[rows[hit]], row_ids[hit], row_offsets.size - 1)
    if row_scale is not None:
        out *= row_scale[:, None]
    return out.astype(out_dtype, copy=False)


@reference_op
def embedding_reduce_grad(xp, wgrad, row_ids, inverse, num_unique, scaler):
    """Gradient per distinct key: g[u] = sum of ``wgrad[row_ids[k]]`` over occurrences k with inverse[k] = u, / S.

    wgrad (R, E) compute dtype (already scaled for mean rows); row_ids, inverse (K,) int64, inverse -1 =
    an occurrence without a row (skipped). Returns (U, E) float32, U = ``num_unique`` (zero where no
    occurrence points).
    """
    hit = inverse >= 0
    g = segment_sum(xp, wgrad[row_ids[hit]], inverse[hit], num_unique)
    g /= xp.float32(scaler)
    return g


@reference_op
def scatter_rows(xp, dst, rows, src):
    """``dst[rows[i]] = src[i]`` for every i with ``rows[i] >= 0`` (those rows distinct); the others are
    padding. dst (V, ...), rows (N,) int64, src (N, ...) with dst's trailing shape; dst changes in place."""
    hit = rows >= 0
    dst[rows[hit]] = src[hit]
