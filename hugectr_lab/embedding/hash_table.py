"""Per-device hash table: embedding key -> row index of the device's value table.

HugeCTR keeps an open-addressing GPU hash table whose values are row indices handed out by an atomic
counter. Here the table is a sorted key index (``searchsorted`` lookups) that gives the same observable
mapping: a new key gets the next free row, in the order of first occurrence in the batch. New keys go
to a small sorted "delta" index that is merged into the main index once it grows, so an insertion
costs O(delta) instead of O(table).

Keys that arrive when the table already holds ``capacity`` keys are refused: they map to row -1 (the
embedding reads the zero vector for them and drops their gradient) and are counted, and
``check_overflow`` raises ``EmbeddingOverflowError`` -- HugeCTR raises OutOfBound in the same place.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import get_backend, reference_op

KEY_DTYPES = {"I32": np.dtype(np.uint32), "I64": np.dtype(np.int64)}

# The delta index is merged into the main index when it exceeds this size or 1/8 of the main index.
_MIN_DELTA = 1 << 14


def key_dtype(key_type):
    """``"I32"`` -> uint32, ``"I64"`` -> int64 (HugeCTR's TypeKey); dtypes are accepted as they are."""
    if isinstance(key_type, str):
        try:
            return KEY_DTYPES[key_type.upper()]
        except KeyError:
            raise ValueError(f"key type must be 'I32' or 'I64', got {key_type!r}") from None
    dtype = np.dtype(key_type)
    if dtype not in KEY_DTYPES.values():
        raise ValueError(f"key dtype must be uint32 (I32) or int64 (I64), got {dtype}")
    return dtype


def key_type_name(dtype):
    """uint32 -> ``"I32"``, int64 -> ``"I64"``."""
    return "I32" if np.dtype(dtype) == np.uint32 else "I64"


def sentinel_key(dtype):
    """The empty-key marker of HugeCTR's hash table (max of TypeKey); that key value is unusable."""
    return int(np.iinfo(dtype).max)


def as_keys(backend, keys, dtype):
    """``keys`` as a flat array of key dtype on ``backend``; a value that does not fit is an error."""
    keys = backend.asarray(keys).reshape(-1)
    if keys.dtype == dtype:
        return keys
    if keys.size:
        info = np.iinfo(dtype)
        low, high = int(keys.min()), int(keys.max())
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise ValueError(f"key {bad} does not fit key type {key_type_name(dtype)} ({dtype}); "
                             "64-bit keys need key type I64 (i64_input_key)")
    return keys.astype(dtype)


class EmbeddingOverflowError(OverflowError):
    """More distinct keys reached a device than ``max_vocabulary_size_per_gpu`` allows."""


class Lookup(NamedTuple):
    """Rows for one batch of keys on one device; -1 = no row (unseen in eval, or refused)."""

    rows: object          # (K,) int64, per key occurrence
    unique_rows: object   # (U,) int64, per distinct key (keys in ascending order)
    inverse: object       # (K,) int64, index of each occurrence into unique_rows


@reference_op
def hash_table_lookup(xp, index_keys, index_rows, keys):
    """Rows of ``keys`` (K,) in a sorted index ``index_keys`` (N,) / ``index_rows`` (N,); -1 where absent."""
    if index_keys.size == 0 or keys.size == 0:
        return xp.full(keys.shape, -1, dtype=xp.int64)
    pos = xp.minimum(xp.searchsorted(index_keys, keys), index_keys.size - 1)
    return xp.where(index_keys[pos] == keys, index_rows[pos], -1)


@reference_op
def hash_table_insert(xp, index_keys, index_rows, new_keys, next_row, capacity):
    """Give distinct absent ``new_keys`` (N,) rows ``next_row, next_row+1, ...`` in their given order.

    Keys that would get a row >= ``capacity`` are refused (row -1). Returns the grown sorted index
    ``(index_keys, index_rows)`` and ``new_rows`` (N,) int64.
    """
    new_rows = next_row + xp.arange(new_keys.size, dtype=xp.int64)
    new_rows[new_rows >= capacity] = -1
    accepted = new_rows >= 0
    order = xp.argsort(new_keys[accepted])
    keys, rows = merge_sorted(xp, index_keys, index_rows, new_keys[accepted][order], new_rows[accepted][order])
    return keys, rows, new_rows


def merge_sorted(xp, a_keys, a_rows, b_keys, b_rows):
    """Merge two sorted indexes with disjoint keys into one sorted index, in O(len(a) + len(b))."""
    n = a_keys.size + b_keys.size
    pos_b = xp.searchsorted(a_keys, b_keys) + xp.arange(b_keys.size)
    from_b = xp.zeros(n, dtype=bool)
    from_b[pos_b] = True
    keys = xp.empty(n, dtype=a_keys.dtype)
    rows = xp.empty(n, dtype=xp.int64)
    keys[pos_b], rows[pos_b] = b_keys, b_rows
    keys[~from_b], rows[~from_b] = a_keys, a_rows
    return keys, rows


class HashTable:
    """Key -> row map of one device, at most ``capacity`` (= max_vocabulary_size_per_gpu) keys.

    ``get(keys)`` never inserts (missing -> -1); ``get_insert(keys)`` inserts new keys with sequential
    rows in first-occurrence order. ``lookup(keys, insert)`` also returns the distinct-key view that the
    backward pass reuses.
    """

    def __init__(self, capacity, key_type="I64", backend="numpy"):
        if int(capacity) < 1:
            raise ValueError(f"hash table capacity (max_vocabulary_size_per_gpu) must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.key_dtype = key_dtype(key_type)
        self.backend = get_backend(backend)
        self.clear()

    def clear(self):
        """Forget every key; rows are handed out from 0 again."""
        xp = self.backend.xp
        empty_keys, empty_rows = xp.empty(0, self.key_dtype), xp.empty(0, xp.int64)
        self._main = (empty_keys, empty_rows)
        self._delta = (empty_keys, empty_rows)
        self._refused = empty_keys   # sorted distinct keys refused for lack of capacity
        self.size = 0

    def __len__(self):
        return self.size

    @property
    def overflow(self):
        """Number of distinct keys refused because the table was full."""
        return int(self._refused.size)

    def get(self, keys):
        """Rows (K,) int64 of ``keys``; -1 for keys not in the table."""
        return self.lookup(keys, insert=False).rows

    def get_insert(self, keys):
        """Rows (K,) int64 of ``keys``, inserting new ones (sequential rows, first-occurrence order)."""
        return self.lookup(keys, insert=True).rows

    def lookup(self, keys, insert, on_insert=None):
        """``Lookup`` of ``keys`` (K,); with ``insert`` new keys get rows first.

        ``on_insert(new_keys, new_rows, first_positions)`` is told about accepted new keys
        (``first_positions`` index ``keys``), so the owner can initialise per-row data.
        """
        xp, ops = self.backend.xp, self.backend.ops
        keys = as_keys(self.backend, keys, self.key_dtype)
        uniq, first, inverse = xp.unique(keys, return_index=True, return_inverse=True)
        rows = self._find(uniq)
        if insert:
            missing = xp.flatnonzero(rows < 0)
            if missing.size:
                if int(uniq[-1]) == sentinel_key(self.key_dtype):
                    raise ValueError(f"key {sentinel_key(self.key_dtype)} is reserved as the empty-key marker "
                                     f"for key type {key_type_name(self.key_dtype)} (the maximum key value) "
                                     "and cannot be used as a feature key")
                missing = missing[xp.argsort(first[missing])]   # first-occurrence order
                new_keys = uniq[missing]
                delta_keys, delta_rows, new_rows = ops.hash_table_insert(
                    *self._delta, new_keys, self.size, self.capacity)
                self._delta = (delta_keys, delta_rows)
                accepted = new_rows >= 0
                self.size += int(accepted.sum())
                if not bool(accepted.all()):
                    self._refused = xp.unique(xp.concatenate([self._refused, new_keys[~accepted]]))
                rows[missing] = new_rows
                if on_insert is not None and bool(accepted.any()):
                    on_insert(new_keys[accepted], new_rows[accepted], first[missing][accepted])
                self._maybe_merge()
        return Lookup(rows[inverse], rows, inverse.reshape(-1))

    def keys_and_rows(self):
        """All ``(keys, rows)`` in row (= insertion) order."""
        xp = self.backend.xp
        keys = xp.concatenate([self._main[0], self._delta[0]])
        rows = xp.concatenate([self._main[1], self._delta[1]])
        order = xp.argsort(rows)
        return keys[order], rows[order]

    def check_overflow(self, what="hash table"):
        """Raise ``EmbeddingOverflowError`` if keys were refused; ``what`` names the table in the message."""
        if self.overflow:
            raise EmbeddingOverflowError(
                f"{what}: {self.size + self.overflow} keys exceed max_vocabulary_size_per_gpu={self.capacity} "
                f"({self.overflow} keys got no row and were embedded as zero vectors)")

    def _find(self, uniq):
        ops = self.backend.ops
        rows = ops.hash_table_lookup(*self._main, uniq)
        if self._delta[0].size:
            rows = self.backend.xp.where(rows >= 0, rows, ops.hash_table_lookup(*self._delta, uniq))
        return rows

    def _maybe_merge(self):
        delta_size = self._delta[0].size
        if delta_size > max(_MIN_DELTA, self._main[0].size // 8):
            xp = self.backend.xp
            self._main = merge_sorted(xp, *self._main, *self._delta)
            self._delta = (xp.empty(0, self.key_dtype), xp.empty(0, xp.int64))
