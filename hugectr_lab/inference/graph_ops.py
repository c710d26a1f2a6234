"""The captured predict path's cache operations (NumPy references): de-duplicate, look up, insert.

``graph_path.GraphPredictor`` runs them per table inside one CUDA graph per padded batch, so no
per-call value passes through Python: a table's ``header`` (3,) int64 holds the call's stamp ``now``, the
sketch's halving flag and the call's key count, ``counters`` (5,) int64 collect the call's statistics
(``COUNTERS``), and every output is written into an array the caller owns. The kernels (``kernels/embedding_cache.cu``, "The
predict graph's lookup") take the same names and arguments.

A table's keys (K,), padded with the empty key, become an open-addressing set (P,) of distinct keys;
the lookup and the insert work per set entry, so a key that a request holds twice is fetched, counted
and inserted once, as the eager path (``EmbeddingCache.lookup``, which de-duplicates with ``unique``)
does. Together they give the eager path's results -- vectors, statistics, cache contents and stamps
(tests/inference/test_graph_ops.py).
"""

from __future__ import annotations

from ..backend import reference_op
from .cache_ops import embedding_cache_query, embedding_cache_sketch_update, empty_key, insert_with_policy, murmur3_32

COUNTERS = ("distinct keys", "hits", "unknown keys", "insertions", "replaced entries")   # counters (5,) per table
DEDUPE_SEED = 0x9E3779B9   # murmur3 seed of a key's home entry in the de-duplication set


def set_size(num_keys):
    """Entries of the de-duplication set for ``num_keys`` keys: a power of two, at least 64 and at least
    2 × num_keys (half full at most, so probe chains stay short)."""
    return 1 << max(6, int(2 * num_keys - 1).bit_length())


def check_dedupe(keys, set_keys, inverse):
    """Sizes ``infer_dedupe`` needs (host metadata only): a full set would make the kernel probe forever."""
    p = set_keys.size
    if p & (p - 1) or p <= keys.size:
        raise ValueError(f"infer_dedupe: set_keys has {p} entries; it needs a power of two above the "
                         f"{keys.size} keys (set_size gives one)")
    if inverse.shape != (keys.size,) or set_keys.dtype != keys.dtype:
        raise ValueError(f"infer_dedupe: inverse must be ({keys.size},) and set_keys of the keys' dtype "
                         f"{keys.dtype}; got {inverse.shape} and {set_keys.dtype}")


def hit_rate(counters):
    """A table's hit rate in a call from its (5,) counters: 1 − misses / distinct keys (1.0 for no keys),
    as ``EmbeddingCache.lookup`` computes it."""
    distinct, hits = int(counters[0]), int(counters[1])
    return 1.0 - (distinct - hits) / distinct if distinct else 1.0


def hit_rate_below(first_counters, threshold):
    """Whether a call refreshes the cache: the first table's ``hit_rate`` below ``threshold`` -- the eager
    path's rule."""
    return hit_rate(first_counters) < threshold


@reference_op
def infer_begin(xp, offsets, keys, dense, header, table, rejected, set_keys):
    """A table's first operation in a predict call, run for every table before any key is taken: empty the
    table's de-duplication set ``set_keys`` (P,) for ``infer_dedupe``, and check what the host leaves to the
    device (``InferenceSession._graph_checks_values``):

    * the staged row offsets ``offsets`` (R+2,) int64 -- R+1 row offsets, the last of them the CSR's key
      count k, then the padding row's end -- inside [0, k] and in order;
    * none of the call's ``header[table, 2]`` keys at the front of ``keys`` (K,) the empty key, max(Key),
      which no table can hold (the padding after them is);
    * with ``dense`` (the call's staged dense features; one table's begin takes them, the others None),
      every value finite.

    A failed check rejects the call: ``rejected`` (1,) int64 is set (``infer_dedupe`` then takes no key, so
    nothing is looked up, counted or inserted) and every table's halving flag, column 1 of ``header`` (T, 3),
    is cleared (the sketch stays as it was). Offsets outside [0, k] are clamped into it, so that the combiner
    reads inside its arrays whatever the request held. A call that passes is left as it was.
    """
    set_keys[...] = empty_key(set_keys.dtype)
    rows = offsets[:-1]                     # (R+1,) the request's offsets and the padding rows' fill
    k = rows[-1]
    outside = (rows < 0) | (rows > k)
    reserved = (keys[:int(header[table, 2])] == empty_key(keys.dtype)).any()
    if (outside.any() or (rows[1:] < rows[:-1]).any() or reserved
            or (dense is not None and not xp.isfinite(dense).all())):
        rejected[0] = 1
        header[:, 1] = 0
        xp.clip(rows, 0, k, out=rows)


@reference_op
def infer_dedupe(xp, keys, set_keys, inverse, rejected):
    """Put the distinct keys of ``keys`` (K,) into ``set_keys`` (P,) -- every entry the empty key
    (``infer_begin`` empties it), P a power of two above K (``set_size``) -- and write ``inverse`` (K,)
    int64: the entry of each key, -1 for padding (the empty key), which the combiner reads as a zero
    vector. ``rejected`` (1,) int64 (``infer_begin``; None: never) nonzero takes no key: the set stays
    empty and every inverse is -1.

    A key's home entry is murmur3_32(key, DEDUPE_SEED) & (P − 1); it probes forward (wrapping) to the
    first entry that is free or holds it. The kernel's threads claim entries concurrently, so which of
    two keys wins a contested entry depends on thread order; here the keys probe in lockstep rounds and
    the first (input order) of those wanting a free entry takes it -- one of the layouts the kernel can
    produce. Every layout has: each distinct real key in exactly one entry, every other entry empty,
    and ``set_keys[inverse[k]] == keys[k]`` for every real key.
    """
    check_dedupe(keys, set_keys, inverse)
    empty = empty_key(keys.dtype)
    mask = set_keys.size - 1
    inverse[...] = -1
    if rejected is not None and rejected[0]:
        return
    idx = xp.flatnonzero(keys != empty)                      # (k,) pending key occurrences, input order
    pending = keys[idx]
    slot = (murmur3_32(xp, pending, DEDUPE_SEED) & xp.uint32(mask)).astype(xp.int64)
    while idx.size:
        wanting = xp.flatnonzero(set_keys[slot] == empty)
        if wanting.size:
            _, first = xp.unique(slot[wanting], return_index=True)   # first wanting key per free entry
            winners = wanting[first]
            set_keys[slot[winners]] = pending[winners]
        done = set_keys[slot] == pending
        inverse[idx[done]] = slot[done]
        left = ~done
        idx, pending, slot = idx[left], pending[left], (slot[left] + 1) & mask


def ps_index(xp, ops, ps_keys):
    """The parameter server's key -> row index the lookup probes: ``(index_keys (Q,), index_rows (Q,) int32)``,
    an open-addressing table as ``infer_dedupe`` builds its set (Q = ``set_size(R)``; free entries hold
    the empty key). A probe costs one or two loads where a binary search over the R sorted keys waited
    for about log2(R) dependent ones (20 for the DCN sample's 840 k rows), the miss path's latency."""
    if ps_keys.size >= 2 ** 31:
        raise ValueError(f"a parameter-server table of {ps_keys.size} rows: the predict graph indexes rows as int32")
    index_keys = xp.full(set_size(ps_keys.size), empty_key(ps_keys.dtype), ps_keys.dtype)
    slots = xp.empty(ps_keys.size, xp.int64)
    ops.infer_dedupe(ps_keys, index_keys, slots, None)
    index_rows = xp.full(index_keys.size, -1, xp.int32)
    index_rows[slots] = xp.arange(ps_keys.size, dtype=xp.int32)
    return index_keys, index_rows


def check_index(index_keys, index_rows):
    """Sizes a probe of ``ps_index``'s table needs (host metadata only): a power of two, so that the probe
    wraps with a mask, with a free entry (``ps_index`` keeps it at most half full) to end it."""
    q = index_keys.size
    if q < 2 or q & (q - 1) or index_rows.shape != (q,):
        raise ValueError(f"infer_lookup: the parameter server's index has {q} keys and {index_rows.shape} rows; "
                         "it needs a power of two of each (ps_index builds it)")


def ps_rows(xp, index_keys, index_rows, keys):
    """(K,) int64: the parameter-server row of each of ``keys`` (K,), -1 for a key it does not hold --
    linear probing of ``ps_index``'s table from the key's home entry to the key or a free entry."""
    empty, mask = empty_key(keys.dtype), index_keys.size - 1
    slot = (murmur3_32(xp, keys, DEDUPE_SEED) & xp.uint32(mask)).astype(xp.int64)
    rows = xp.full(keys.size, -1, xp.int64)
    pending = xp.arange(keys.size)
    while pending.size:
        held = index_keys[slot[pending]]
        found = held == keys[pending]
        rows[pending[found]] = index_rows[slot[pending[found]]]
        pending = pending[~found & (held != empty)]
        slot[pending] = (slot[pending] + 1) & mask
    return rows


@reference_op
def infer_lookup(xp, set_keys, cache_keys, cache_stamps, cache_values, index_keys, index_rows, ps_vectors,
                 default_value, sketch, header, set_values, set_miss, counters):
    """Look every key of the set ``set_keys`` (P,) up, as ``EmbeddingCache.lookup`` looks up a table's
    distinct keys.

    First the sketch (4, W) uint32, if any, halves when ``header[1]`` is nonzero and counts each key
    once. A key cached in ``cache_keys`` (C,) / ``cache_stamps`` (C,) / ``cache_values`` (C, E) (None: the
    table has no cache) hits and takes the stamp ``header[0]``; a miss reads its row of the parameter
    server -- found through ``index_keys`` (Q,) / ``index_rows`` (Q,) int32 (``ps_index``) -- in
    ``ps_vectors`` (R, E) float32 (on the CuPy backend in device memory or in page-locked host memory),
    or ``default_value`` in every element for an unknown key. Writes, for the entries holding a key only,
    ``set_values`` (P, E) float32 and ``set_miss`` (P,) uint8 (1 = not cached), and adds the distinct
    keys, hits and unknown keys to ``counters[0:3]``.
    """
    check_index(index_keys, index_rows)
    h = xp.flatnonzero(set_keys != empty_key(set_keys.dtype))   # (U,) entries holding a key
    keys = set_keys[h]
    if sketch is not None:
        xp.right_shift(sketch, (header[1:2] != 0).astype(xp.uint32), out=sketch)
        embedding_cache_sketch_update(xp, sketch, keys, False)
    if cache_keys is not None:
        values, slots = embedding_cache_query(xp, cache_keys, cache_stamps, cache_values, keys, header[0])
        miss = slots < 0
    else:
        values = xp.zeros((keys.size, set_values.shape[1]), xp.float32)   # (U, E)
        miss = xp.ones(keys.size, bool)
    wanted = keys[miss]
    rows = ps_rows(xp, index_keys, index_rows, wanted)
    found = rows >= 0
    fetched = xp.full((wanted.size, set_values.shape[1]), xp.float32(default_value), xp.float32)
    fetched[found] = ps_vectors[rows[found]]
    values[miss] = fetched
    set_values[h] = values
    set_miss[h] = miss
    counters[0] += keys.size
    counters[1] += keys.size - int(miss.sum())
    counters[2] += wanted.size - int(found.sum())


@reference_op
def infer_insert(xp, set_keys, set_miss, set_values, first_counters, threshold, cache_keys, cache_stamps,
                 cache_values, sketch, header, counters, heads):
    """The refresh: when the hit rate in ``first_counters`` (5,) -- the first table's counters of this
    call -- is below ``threshold``, insert the keys of ``set_keys`` (P,) that missed (``set_miss``) with
    their vectors ``set_values`` (P, E) into the cache (``cache_keys`` (C,), ``cache_stamps`` (C,),
    ``cache_values`` (C, E)), in ascending key order -- the order of the eager path, whose misses come
    out of ``unique`` sorted -- under the LRU policy, or TinyLFU's when ``sketch`` (4, W) is given
    (``cache_ops``: at most 64 keys per set, TinyLFU's best 64 by estimate). New entries get the stamp
    ``header[0]``; insertions and replaced entries are added to ``counters[3:5]``. ``heads`` (C / 64,) int64,
    all -1, is the kernels' scratch (each set's chain of misses), which they leave all -1 again, so that it
    is allocated and filled once per table, not once per call; this reference does not need it.
    """
    if not hit_rate_below(first_counters, threshold):
        return
    empty = empty_key(set_keys.dtype)
    h = xp.flatnonzero((set_keys != empty) & (set_miss != 0))
    h = h[xp.argsort(set_keys[h])]
    slots, evicted = insert_with_policy(xp, cache_keys, cache_stamps, cache_values, sketch, set_keys[h],
                                        set_values[h], header[0])
    inserted = slots >= 0
    counters[3] += int(inserted.sum())
    counters[4] += int((inserted & (evicted != empty)).sum())

