"""The set-associative embedding cache's operations: set index, query, insert (NumPy references).

The cache of one embedding table is three flat arrays of C = sets × 64 entries; entry ``set*64 + way``
belongs to set ``set``:

* ``cache_keys``   (C,) key dtype (uint32 for I32, int64 for I64); a free entry holds the empty key
  max(TypeKey) (HugeCTR reserves that key value, quirk 24, so no real key can look free);
* ``cache_stamps`` (C,) int64: the lookup call that last touched the entry (0 = free, calls count from 1);
* ``cache_values`` (C, E) float32.

A key lives in set ``murmur3_32(key bytes, seed 0) mod sets`` (HugeCTR: MurmurHash3_32 mod sets as
well), in any of the set's 64 ways. Replacement is least-recently-used within the set: the victim
order of a set is its ways sorted by (stamp, way), so free entries go first (lowest way first), then
the entry touched longest ago. ``kernels/embedding_cache.cu`` implements the same three operations
(same names and signatures on the CuPy backend, bit-identical results).

The frequency-aware policy ("tinylfu") adds a count-min sketch per table, ``sketch`` (4, W) uint32
(W a power of two): row d counts a key at column ``murmur3_32(key, seed d + 1) mod W``, and a key's
estimated frequency is the minimum of its 4 counters. Each lookup counts its distinct keys once;
``halve`` (aging, chosen by the caller every ``sample_size`` counted keys) first halves every counter,
so old traffic fades. Insertion then admits a new key into its set only where it beats the entry it
would replace: the set's new keys by estimate (highest first, ties in input order) meet its ways in
victim order -- free ways first, then lowest estimate, then least recently used, then lowest way --
and the r-th new key takes the r-th victim if that way is free or its key's estimate is strictly lower.
"""

from __future__ import annotations

import numpy as np

from ..backend import reference_op
from ..embedding.hash_table import sentinel_key

WAYS = 64          # entries per set (HugeCTR: SET_ASSOCIATIVITY 2 × SLAB_SIZE 32)
SKETCH_DEPTH = 4   # rows of the count-min sketch (independent hashes, seeds 1..4)
_QUERY_CHUNK = 1 << 16  # keys compared per step in the reference (bounds its (U, 64) temporaries)

_C1, _C2 = 0xCC9E2D51, 0x1B873593


def empty_key(dtype):
    """The free-entry marker of a key dtype (max of TypeKey), as a NumPy scalar of that dtype."""
    dtype = np.dtype(dtype)
    return dtype.type(sentinel_key(dtype))


def _rotl32(xp, x, r):
    return (x << xp.uint32(r)) | (x >> xp.uint32(32 - r))


def _murmur_block(xp, h, k):
    k = k * xp.uint32(_C1)
    k = _rotl32(xp, k, 15) * xp.uint32(_C2)
    h = _rotl32(xp, h ^ k, 13)
    return h * xp.uint32(5) + xp.uint32(0xE6546B64)


def murmur3_32(xp, keys, seed=0):
    """(K,) uint32: MurmurHash3_x86_32 of each key's little-endian bytes (4 for uint32, 8 for int64)."""
    if keys.dtype == np.uint32:
        h = _murmur_block(xp, xp.full(keys.shape, seed, xp.uint32), keys)
        length = 4
    elif keys.dtype == np.int64:
        u = keys.view(xp.uint64)
        h = _murmur_block(xp, xp.full(keys.shape, seed, xp.uint32), (u & xp.uint64(0xFFFFFFFF)).astype(xp.uint32))
        h = _murmur_block(xp, h, (u >> xp.uint64(32)).astype(xp.uint32))
        length = 8
    else:
        raise TypeError(f"cache keys must be uint32 (I32) or int64 (I64), got {keys.dtype}")
    h = h ^ xp.uint32(length)
    h = (h ^ (h >> xp.uint32(16))) * xp.uint32(0x85EBCA6B)
    h = (h ^ (h >> xp.uint32(13))) * xp.uint32(0xC2B2AE35)
    return h ^ (h >> xp.uint32(16))


@reference_op
def embedding_cache_set_index(xp, keys, num_sets):
    """(K,) int64: the set of each key, murmur3_32(key) mod ``num_sets``."""
    return murmur3_32(xp, keys).astype(xp.int64) % xp.int64(num_sets)


@reference_op
def embedding_cache_query(xp, cache_keys, cache_stamps, cache_values, keys, now):
    """Look ``keys`` (U,) up; every hit's stamp becomes ``now``.

    Returns ``values`` (U, E) float32 (the cached vector, zeros for a miss) and ``slots`` (U,) int64
    (the entry, -1 for a miss). The empty key never hits. Keys may repeat (each occurrence is looked up).
    """
    num_sets = cache_keys.size // WAYS
    vec = cache_values.shape[1]
    values = xp.zeros((keys.size, vec), dtype=xp.float32)   # (U, E)
    slots = xp.full(keys.size, -1, dtype=xp.int64)          # (U,)
    table = cache_keys.reshape(num_sets, WAYS)
    empty = empty_key(cache_keys.dtype)
    for start in range(0, keys.size, _QUERY_CHUNK):
        part = keys[start:start + _QUERY_CHUNK]
        sets = embedding_cache_set_index(xp, part, num_sets)
        match = (table[sets] == part[:, None]) & (part != empty)[:, None]   # (u, 64)
        hit = match.any(axis=1)
        found = sets[hit] * WAYS + match[hit].argmax(axis=1)
        slots[start:start + part.size][hit] = found
        values[start:start + part.size][hit] = cache_values[found]
    hits = slots[slots >= 0]
    cache_stamps[hits] = now
    return values, slots


def _set_groups(xp, sets, order):
    """The new keys grouped by set: ``order`` (N,) sorts them by set, and within a set in the order they
    claim its victims. Returns ``group`` (N,) and ``rank`` (N,), the group of each sorted key and its
    position within the group, and ``touched`` (T,), each group's set."""
    sorted_sets = sets[order]
    first = xp.ones(order.size, dtype=bool)
    first[1:] = sorted_sets[1:] != sorted_sets[:-1]
    starts = xp.flatnonzero(first)
    group = xp.cumsum(first) - 1
    rank = xp.arange(order.size, dtype=xp.int64) - starts[group]
    return group, rank, sorted_sets[starts]


def insert_with_policy(xp, cache_keys, cache_stamps, cache_values, sketch, keys, values, now):
    """Both insertion policies (module docstring): LRU where ``sketch`` is None, else TinyLFU. Per set,
    the new keys in claim order (LRU: input order; TinyLFU: estimate descending, then input order) meet
    the ways in victim order ((estimate, stamp, way) ascending; LRU: every estimate 0, so free entries,
    whose stamp is 0, go first), the r-th key the r-th way, at most 64; TinyLFU admits a key only over
    a way of strictly lower estimate (a free way's is -1)."""
    n = keys.size
    slots = xp.full(n, -1, dtype=xp.int64)
    evicted = xp.full(n, empty_key(cache_keys.dtype), dtype=cache_keys.dtype)
    if n == 0:
        return slots, evicted
    sets = embedding_cache_set_index(xp, keys, cache_keys.size // WAYS)
    arange = xp.arange(n, dtype=xp.int64)
    if sketch is None:
        order = xp.argsort(sets * n + arange)     # by set, input order within (a distinct sort key)
    else:
        freq = embedding_cache_frequency(xp, sketch, keys).astype(xp.int64)
        order = xp.lexsort(xp.stack([arange, -freq, sets]))   # by set, estimate desc., input order
    group, rank, touched = _set_groups(xp, sets, order)
    ways = touched[:, None] * WAYS + xp.arange(WAYS, dtype=xp.int64)  # (T, 64) entries
    if sketch is None:
        way_order = xp.argsort(cache_stamps[ways] * WAYS + xp.arange(WAYS, dtype=xp.int64), axis=1)
    else:
        way_keys = cache_keys[ways]
        way_freq = xp.where(way_keys == empty_key(cache_keys.dtype), -1,
                            embedding_cache_frequency(xp, sketch, way_keys.reshape(-1)).reshape(ways.shape)
                            .astype(xp.int64))
        way_order = xp.lexsort(xp.stack([xp.broadcast_to(xp.arange(WAYS), ways.shape), cache_stamps[ways],
                                         way_freq]))
    ok = xp.flatnonzero(rank < WAYS)          # (T, 64) ways in victim order; a set takes 64 keys at most
    g = group[ok]
    way = way_order[g, rank[ok]]
    if sketch is not None:
        admit = way_freq[g, way] < freq[order[ok]]
        ok, g, way = ok[admit], g[admit], way[admit]
    target = touched[g] * WAYS + way
    picked = order[ok]
    slots[picked] = target
    evicted[picked] = cache_keys[target]
    cache_keys[target] = keys[picked]
    cache_stamps[target] = now
    cache_values[target] = values[picked]
    return slots, evicted


@reference_op
def embedding_cache_insert(xp, cache_keys, cache_stamps, cache_values, keys, values, now):
    """Insert ``keys`` (N,) with ``values`` (N, E); the keys must be distinct and not in the cache.

    The new keys of one set, in input order, take the set's entries in victim order (free entries
    first, then least recently used; ties by way). A set takes at most 64 new keys per call: the
    rest are not inserted. Inserted entries get stamp ``now``. Returns ``slots`` (N,) int64 (the
    entry, -1 when not inserted) and ``evicted`` (N,) key dtype (the key the entry held before, the
    empty key when it was free or nothing was inserted).
    """
    return insert_with_policy(xp, cache_keys, cache_stamps, cache_values, None, keys, values, now)


def sketch_columns(xp, keys, width):
    """(4, N) int64: the column of each key in each sketch row."""
    return xp.stack([(murmur3_32(xp, keys, d + 1) & xp.uint32(width - 1)).astype(xp.int64)
                     for d in range(SKETCH_DEPTH)])


@reference_op
def embedding_cache_sketch_update(xp, sketch, keys, halve):
    """Count ``keys`` (U,) once each in ``sketch`` (4, W) uint32, after halving every counter if ``halve``."""
    if halve:
        sketch >>= xp.uint32(1)
    if keys.size:
        cols = sketch_columns(xp, keys, sketch.shape[1])
        for d in range(SKETCH_DEPTH):
            xp.add.at(sketch[d], cols[d], xp.uint32(1))


@reference_op
def embedding_cache_frequency(xp, sketch, keys):
    """(N,) uint32: each key's estimated frequency, the minimum of its counters in ``sketch`` (4, W)."""
    if keys.size == 0:
        return xp.zeros(0, dtype=xp.uint32)
    cols = sketch_columns(xp, keys, sketch.shape[1])
    return sketch[xp.arange(SKETCH_DEPTH)[:, None], cols].min(axis=0)


@reference_op
def embedding_cache_insert_tinylfu(xp, cache_keys, cache_stamps, cache_values, sketch, keys, values, now):
    """``embedding_cache_insert`` behind the frequency gate (module docstring): ``keys`` (N,) distinct and
    not cached, ``values`` (N, E), ``sketch`` (4, W). Same results: ``slots`` (N,) int64 (-1 = not
    admitted) and ``evicted`` (N,) key dtype."""
    return insert_with_policy(xp, cache_keys, cache_stamps, cache_values, sketch, keys, values, now)
