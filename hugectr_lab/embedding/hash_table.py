"""Per-device hash table: embedding key -> row index of the device's value table.

As in HugeCTR, an open-addressing table whose values are rows handed out by a counter: ``slot_keys``
(C,) of the key dtype (``sentinel_key`` marks an empty slot) and ``slot_rows`` (C,) int64, with
C = 2 * capacity + 1024 slots, linear probing from a splitmix64 hash of the key. A new key gets the
next free row in the order of first occurrence in the batch (row = count + rank of its first
occurrence among the batch's new keys), so the key -> row map does not depend on where keys land.

Keys that arrive when the table already holds ``capacity`` keys are refused: they map to row -1 (the
embedding reads the zero vector for them and drops their gradient) and are counted once, and
``check_overflow`` raises ``EmbeddingOverflowError`` -- HugeCTR raises OutOfBound in the same place.
A refused key is remembered in a slot with row -1 while the table has room for it (load <= 3/4:
capacity/2 + 768 refused keys); past that a refused key is counted again in each later batch that
holds it, so ``overflow`` can over-count, but only once the table is far over capacity. Where the
host reads the counters anyway, ``grow_refused_memory`` doubles the slots once half that room is
used (twice at most, and by at most ``GROWTH_BYTES``), so refused keys go on being counted once
(``refused_keys`` gives the distinct count, or bounds when a stretch of batches refused more keys
than the table could remember).

A key equal to ``sentinel_key(dtype)`` (the largest key value) is padding: row -1, never inserted,
never counted. A real input key with that value is an error where keys enter, on the host
(``as_keys``); device arrays are not read, so their sentinel keys simply act as padding.

The table's counters (keys held, keys refused, refused keys remembered) live on the device, so a
training lookup never waits for the device; ``len(table)``, ``overflow`` and ``check_overflow`` read
them. Every lookup returns fixed-size (K,) arrays (``Lookup``) for the same reason.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..backend import backend_object, reference_op
from ..rules.keys import key_dtype, key_type_name, refused_room, sentinel_key

EXTRA_SLOTS = 1024          # slots beyond 2 * capacity (room for refused keys in small tables)
MAX_CAPACITY = (1 << 31) - EXTRA_SLOTS   # keeps C < 2**32 (the slot of a hash is (h >> 32) * C >> 32)
# Growing to remember refused keys: at most 4x the slots, and at most this many extra bytes per table
# (an overflowing run must not run out of device memory for the sake of an exact count).
GROWTH_BYTES = 256 << 20
_MISSING = -2               # internal probe result: the key is not in the table
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)   # splitmix64 finalizer


def as_keys(backend, keys, dtype, padding=False):
    """``keys`` as a flat array of key dtype on ``backend`` (None: a NumPy array, on the host).

    Host input (NumPy arrays, lists) is checked on the host, before it is uploaded: a value that does
    not fit the key type is an error, and so is the reserved ``sentinel_key`` unless ``padding`` (then
    it marks a padding entry). Device arrays of the key dtype are passed through unread (no host
    synchronisation; sentinel keys in them are padding); of another dtype they are range-checked,
    which reads the device.
    """
    if hasattr(keys, "__cuda_array_interface__"):
        keys = backend.asarray(keys).reshape(-1)
        if keys.dtype != dtype:
            _check_fits(keys, dtype)
            keys = keys.astype(dtype)
        return keys
    keys = np.asarray(keys).reshape(-1)
    if keys.dtype != dtype:
        _check_fits(keys, dtype)
        keys = keys.astype(dtype)
    if not padding and keys.size and int(keys.max()) == sentinel_key(dtype):
        raise ValueError(f"key {sentinel_key(dtype)} is reserved as the empty-key marker for key type "
                         f"{key_type_name(dtype)} (the maximum key value) and cannot be used as a feature key")
    return keys if backend is None else backend.asarray(keys)


def _check_fits(keys, dtype):
    if keys.size:
        info = np.iinfo(dtype)
        low, high = int(keys.min()), int(keys.max())
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise ValueError(f"key {bad} does not fit key type {key_type_name(dtype)} ({dtype}); "
                             "64-bit keys need key type I64 (i64_input_key)")


class EmbeddingOverflowError(OverflowError):
    """More distinct keys reached a device than ``max_vocabulary_size_per_gpu`` allows."""


class VocabularyOverflowWarning(RuntimeWarning):
    """A table refused keys in training (they read the zero vector and learn nothing); issued once per
    embedding and device. The solver's ``on_vocabulary_overflow="error"`` raises instead."""


class Lookup(NamedTuple):
    """Rows for one batch of K keys on one device, every array (K,) int64 whatever the batch holds.

    ``rows``: per key occurrence, -1 = no row (padding, unseen in eval, or refused). ``unique_rows``:
    the rows of the distinct keys that have one, in order of first occurrence, then -1 up to K.
    ``inverse``: per occurrence, its index into ``unique_rows``; -1 where ``rows`` is -1. Evaluation
    lookups (no insertion) leave ``unique_rows`` and ``inverse`` None.
    """

    rows: object
    unique_rows: object
    inverse: object


def hash_slot(xp, keys, num_slots):
    """(K,) int64 home slot of each key in a table of ``num_slots`` (< 2**32) slots: the splitmix64
    finalizer of the key's 64 bits (uint32 keys zero-extended), scaled to [0, num_slots)."""
    x = keys.astype(xp.int64).view(xp.uint64)
    x = (x ^ (x >> xp.uint64(30))) * _MIX1
    x = (x ^ (x >> xp.uint64(27))) * _MIX2
    x = x ^ (x >> xp.uint64(31))
    return (((x >> xp.uint64(32)) * xp.uint64(num_slots)) >> xp.uint64(32)).astype(xp.int64)


def _probe(xp, slot_keys, slot_rows, keys):
    """Per key: its slot's row (>= 0, or -1 for a remembered refused key), -1 for padding, or
    ``_MISSING``. Vectorised linear probing: each round moves every unresolved key one slot on."""
    n = slot_keys.size
    empty = slot_keys.dtype.type(sentinel_key(slot_keys.dtype))
    out = xp.full(keys.size, _MISSING, dtype=xp.int64)
    out[keys == empty] = -1
    pos = hash_slot(xp, keys, n)
    active = xp.flatnonzero(keys != empty)
    for _ in range(n):
        if active.size == 0:
            break
        p = pos[active]
        found = slot_keys[p]
        hit = found == keys[active]
        out[active[hit]] = slot_rows[p[hit]]
        go_on = ~hit & (found != empty)
        active, p = active[go_on], p[go_on] + 1
        pos[active] = xp.where(p == n, 0, p)
    return out


def _place(xp, slot_keys, slot_rows, keys, rows):
    """Store distinct absent ``keys`` with ``rows`` by linear probing. Each round, of the keys that
    reach one free slot the first (lowest index) takes it and the others probe on."""
    n = slot_keys.size
    empty = slot_keys.dtype.type(sentinel_key(slot_keys.dtype))
    pos = hash_slot(xp, keys, n)
    pending = xp.arange(keys.size)
    placed = xp.zeros(keys.size, dtype=bool)
    for _ in range(n):
        if pending.size == 0:
            break
        p = pos[pending]
        free = slot_keys[p] == empty
        slots, first = xp.unique(p[free], return_index=True)
        winners = pending[free][first]
        slot_keys[slots], slot_rows[slots] = keys[winners], rows[winners]
        placed[winners] = True
        pending = pending[~placed[pending]]
        p = pos[pending] + 1
        pos[pending] = xp.where(p == n, 0, p)


def first_occurrences(xp, keys):
    """(K,) int64: for every occurrence in ``keys`` (K,), the index of its key's first occurrence.
    On NumPy with 32-bit keys one SIMD sort of the distinct composite keys key·K + index replaces
    ``unique``'s stable sort (same result, several times faster)."""
    k = keys.size
    if xp is np and keys.dtype.itemsize <= 4 and 0 < k < 1 << 31:
        composite = keys.astype(np.int64) * k
        composite += np.arange(k)
        composite.sort()
        position = composite % k
        starts = np.flatnonzero(np.r_[True, composite[1:] // k != composite[:-1] // k])
        first = np.empty(k, np.int64)
        first[position] = np.repeat(position[starts], np.diff(np.r_[starts, k]))
        return first
    _, first, inv = xp.unique(keys, return_index=True, return_inverse=True)
    return first[inv.reshape(-1)]


@reference_op
def hash_table_lookup(xp, slot_keys, slot_rows, keys):
    """Rows (K,) int64 of ``keys`` (K,) in the table ``slot_keys`` / ``slot_rows`` (C,); -1 where a key
    has none (absent, refused, or padding). Never inserts."""
    rows = _probe(xp, slot_keys, slot_rows, keys)
    rows[rows == _MISSING] = -1
    return rows


@reference_op
def hash_table_lookup_insert(xp, slot_keys, slot_rows, counters, keys, capacity):
    """Look ``keys`` (K,) up, inserting new ones; returns ``(rows, unique_rows, inverse, new_rows)``,
    each (K,) int64.

    ``counters`` (3,) int64 = (keys held, keys refused, refused keys remembered), updated in place like
    the slots. A new key's row is count + the rank of its first occurrence among the batch's new keys;
    rows >= ``capacity`` are refused (-1) and remembered while ``refused_room`` allows. ``rows``,
    ``unique_rows``, ``inverse`` as in ``Lookup``; ``new_rows`` holds, at the first occurrence of each
    key this call gave a row, that row, and -1 everywhere else. Padding (sentinel) keys get -1.
    """
    k = keys.size
    rows = _probe(xp, slot_keys, slot_rows, keys)
    if k == 0:
        return rows, rows.copy(), rows.copy(), rows.copy()
    first = first_occurrences(xp, keys)                  # first occurrence of every occurrence's key
    is_first = first == xp.arange(k)
    new = is_first & (rows == _MISSING)
    rank = xp.cumsum(new) - new                          # among the batch's new keys, by first occurrence
    size, _, kept = (int(c) for c in counters)
    row = size + rank
    accepted = new & (row < capacity)
    remembered = new & ~accepted & (kept + row - capacity < refused_room(slot_keys.size, capacity))
    put = accepted | remembered
    new_rows = xp.where(accepted, row, -1)
    _place(xp, slot_keys, slot_rows, keys[put], new_rows[put])
    rows = xp.where(new, new_rows, rows)
    rows = xp.where(rows == _MISSING, rows[first], rows)
    counters += xp.asarray([int(accepted.sum()), int((new & ~accepted).sum()), int(remembered.sum())],
                           dtype=counters.dtype)
    has_row = rows >= 0
    first_with_row = is_first & has_row
    unique_rank = xp.cumsum(first_with_row) - first_with_row
    inverse = xp.where(has_row, unique_rank[first], -1)
    unique_rows = xp.full(k, -1, dtype=xp.int64)
    unique_rows[unique_rank[first_with_row]] = rows[first_with_row]
    return rows, unique_rows, inverse, new_rows


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
    backward pass reuses. On CuPy none of these waits for the device.
    """

    def __init__(self, capacity, key_type="I64", backend=None):
        if int(capacity) < 1:
            raise ValueError(f"hash table capacity (max_vocabulary_size_per_gpu) must be >= 1, got {capacity}")
        if int(capacity) > MAX_CAPACITY:
            raise ValueError(f"hash table capacity (max_vocabulary_size_per_gpu) must be <= {MAX_CAPACITY}, "
                             f"got {capacity}")
        self.capacity = int(capacity)
        self.num_slots = 2 * self.capacity + EXTRA_SLOTS
        self.key_dtype = key_dtype(key_type)
        self.backend = backend_object(backend, "HashTable")
        self.clear()

    def clear(self):
        """Forget every key; rows are handed out from 0 again."""
        xp = self.backend.xp
        self._slot_keys = xp.full(self.num_slots, sentinel_key(self.key_dtype), dtype=self.key_dtype)
        self._slot_rows = xp.full(self.num_slots, -1, dtype=xp.int64)
        self._counters = xp.zeros(3, dtype=xp.int64)   # keys held, keys refused, refused keys remembered

    def __len__(self):
        return int(self._counters[0])

    def arrays(self):
        """The slot keys, slot rows and counters (device arrays a lookup reads and writes in place;
        ``clear`` and ``grow_refused_memory`` replace them)."""
        return [self._slot_keys, self._slot_rows, self._counters]

    @property
    def size(self):
        """Number of keys held (reads the device)."""
        return len(self)

    @property
    def overflow(self):
        """Refusals: distinct keys refused because the table was full, while the table remembers them
        (``refused_room``); past that a refused key counts again in each batch (reads the device)."""
        return int(self._counters[1])

    def grow_refused_memory(self):
        """Double the slots once half the room for refused keys is used, so that they go on being
        counted once (up to 4x the slots and ``GROWTH_BYTES`` more memory). Rows -- and the embedding
        values they index -- do not move; only the key -> row slots are rebuilt. Reads the device and
        rehashes (synchronising): call it where the host waits anyway. Returns whether the table grew."""
        remembered = int(self.backend.to_host(self._counters[2:3])[0])
        initial, slots = 2 * self.capacity + EXTRA_SLOTS, 2 * self.num_slots
        extra_bytes = (slots - initial) * (self.key_dtype.itemsize + 8)
        if (2 * remembered < refused_room(self.num_slots, self.capacity) or slots > min(4 * initial, (1 << 32) - 1)
                or extra_bytes > GROWTH_BYTES):
            return False
        xp = self.backend.xp
        used = self._slot_keys != self.key_dtype.type(sentinel_key(self.key_dtype))
        keys, rows = self._slot_keys[used], self._slot_rows[used]
        self.num_slots = slots
        self._slot_keys = xp.full(slots, sentinel_key(self.key_dtype), dtype=self.key_dtype)
        self._slot_rows = xp.full(slots, -1, dtype=xp.int64)
        _place(xp, self._slot_keys, self._slot_rows, keys, rows)
        return True

    def refused_keys(self):
        """``(low, high)`` bounds of the number of distinct keys refused so far (reads the device): equal
        while the table remembered every refused key; once a batch refused more than it could remember,
        ``low`` = the keys remembered and ``high`` = the refusals (a key forgotten then counts again)."""
        _, refusals, remembered = (int(c) for c in self.backend.to_host(self._counters))
        return (remembered, refusals)

    def get(self, keys):
        """Rows (K,) int64 of ``keys``; -1 for keys not in the table."""
        return self.lookup(keys, insert=False).rows

    def get_insert(self, keys):
        """Rows (K,) int64 of ``keys``, inserting new ones (sequential rows, first-occurrence order)."""
        return self.lookup(keys, insert=True).rows

    def lookup(self, keys, insert, on_insert=None):
        """``Lookup`` of ``keys`` (K,); with ``insert`` new keys get rows first.

        ``on_insert(keys, new_rows)`` (both (K,)) is told, after every inserting lookup, the row given
        at the first occurrence of each new key (-1 elsewhere), so the owner can initialise per-row
        data without reading the device.
        """
        ops = self.backend.ops
        keys = as_keys(self.backend, keys, self.key_dtype, padding=True)
        if not insert:
            return Lookup(ops.hash_table_lookup(self._slot_keys, self._slot_rows, keys), None, None)
        rows, unique_rows, inverse, new_rows = ops.hash_table_lookup_insert(
            self._slot_keys, self._slot_rows, self._counters, keys, self.capacity)
        if on_insert is not None:
            on_insert(keys, new_rows)
        return Lookup(rows, unique_rows, inverse)

    def keys_and_rows(self):
        """All ``(keys, rows)`` in row (= insertion) order."""
        xp = self.backend.xp
        held = self._slot_rows >= 0
        keys, rows = self._slot_keys[held], self._slot_rows[held]
        order = xp.argsort(rows)
        return keys[order], rows[order]

    def check_overflow(self, what="hash table"):
        """Raise ``EmbeddingOverflowError`` if keys were refused; ``what`` names the table in the message."""
        message = self.overflow_message(what)
        if message:
            raise EmbeddingOverflowError(message)

    def overflow_message(self, what="hash table"):
        """What ``check_overflow`` says (distinct keys refused, capacity), or None when none was refused."""
        low, high = self.refused_keys()
        if not high:
            return None
        size = len(self)
        if low == high:
            return (f"{what}: {size + low} keys exceed max_vocabulary_size_per_gpu={self.capacity} ({low} distinct "
                    "keys got no row and were embedded as zero vectors)")
        return (f"{what}: at least {size + low} keys exceed max_vocabulary_size_per_gpu={self.capacity} ({low} to "
                f"{high} distinct keys got no row and were embedded as zero vectors; a batch refused more keys "
                "than the table could remember, and a key it forgot counts again at each lookup)")
