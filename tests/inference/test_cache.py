"""The embedding cache: its three operations (set index, query, insert) against hand-worked cases, and
the EmbeddingCache's refresh rule and statistics on hand-built key streams.

The operation tests take the ``xp`` fixture: NumPy runs the references, CuPy (gpu lane) the kernels.
"""

import numpy as np
import pytest

from hugectr_lab.backend import get_backend
from hugectr_lab.events import CacheStats
from hugectr_lab.inference import CreateEmbeddingCache, CreateParameterServer
from hugectr_lab.inference.cache_ops import WAYS, empty_key, murmur3_32
from inference_helpers import table, tiny_model


def ops_for(xp):
    backend = get_backend("numpy" if xp is np else "cupy")
    if backend.name == "cupy":
        from hugectr_lab.inference import cuda_cache  # noqa: F401
    return backend.ops


def new_cache(xp, num_sets, vec=3, dtype=np.uint32):
    return (xp.full(num_sets * WAYS, empty_key(dtype), dtype=dtype), xp.zeros(num_sets * WAYS, dtype=xp.int64),
            xp.zeros((num_sets * WAYS, vec), dtype=xp.float32))


def host(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def murmur3_x86_32(data: bytes, seed=0):
    """Plain-Python MurmurHash3_x86_32 (Austin Appleby's reference), the oracle of the set index."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed
    rotl = lambda x, r: ((x << r) | (x >> (32 - r))) & mask  # noqa: E731
    for i in range(0, len(data) // 4 * 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = rotl((k * c1) & mask, 15) * c2 & mask
        h = (rotl(h ^ k, 13) * 5 + 0xE6546B64) & mask
    h ^= len(data)
    h = ((h ^ (h >> 16)) * 0x85EBCA6B) & mask
    h = ((h ^ (h >> 13)) * 0xC2B2AE35) & mask
    return h ^ (h >> 16)


def test_set_index_is_murmur3_of_the_key_bytes(xp):
    # Published MurmurHash3_x86_32 vectors (seed 0): 4 zero bytes, 4 x 0xff, bytes 21 43 65 87.
    known = murmur3_32(np, np.array([0, 0xFFFFFFFF, 0x87654321], np.uint32))
    assert [hex(int(h)) for h in known] == ["0x2362f9de", "0x76293b50", "0xf55b516b"]
    rng = np.random.default_rng(1)
    k32 = rng.integers(0, 2 ** 32 - 1, 300, dtype=np.uint64).astype(np.uint32)
    k64 = rng.integers(-2 ** 63, 2 ** 63 - 1, 300, dtype=np.int64)
    ops = ops_for(xp)
    for keys, size in ((k32, 4), (k64, 8)):
        expected = [murmur3_x86_32(int(k).to_bytes(size, "little", signed=keys.dtype.kind == "i")) % 97 for k in keys]
        assert host(ops.embedding_cache_set_index(xp.asarray(keys), 97)).tolist() == expected


def test_query_hits_misses_and_stamps(xp):
    ops = ops_for(xp)
    keys_c, stamps, values = new_cache(xp, 4)
    new = xp.asarray(np.array([3, 17, 42, 1000], np.uint32))
    vectors = xp.asarray(np.arange(12, dtype=np.float32).reshape(4, 3))
    slots, evicted = ops.embedding_cache_insert(keys_c, stamps, values, new, vectors, 1)
    assert (host(slots) >= 0).all() and (host(evicted) == 0xFFFFFFFF).all()
    query = xp.asarray(np.array([42, 5, 3, 0xFFFFFFFF], np.uint32))
    got, where = ops.embedding_cache_query(keys_c, stamps, values, query, 7)
    got, where = host(got), host(where)
    assert where[1] == -1 and where[3] == -1                 # a miss, and the empty key never hits
    assert where[0] == host(slots)[2] and where[2] == host(slots)[0]
    np.testing.assert_array_equal(got, [[6, 7, 8], [0, 0, 0], [0, 1, 2], [0, 0, 0]])
    stamps = host(stamps)
    assert stamps[where[0]] == stamps[where[2]] == 7          # hits became the most recent
    assert stamps[host(slots)[1]] == stamps[host(slots)[3]] == 1


def test_lru_eviction_order_within_a_set(xp):
    ops = ops_for(xp)
    keys_c, stamps, values = new_cache(xp, 1)
    first = np.arange(64, dtype=np.uint32)
    slots, _ = ops.embedding_cache_insert(keys_c, stamps, values, xp.asarray(first),
                                          xp.asarray(np.ones((64, 3), np.float32)), 1)
    assert host(slots).tolist() == list(range(64))            # free ways in order, keys in input order
    ops.embedding_cache_query(keys_c, stamps, values, xp.asarray(np.array([5, 10, 20], np.uint32)), 2)
    new = np.array([100, 101, 102], np.uint32)
    slots, evicted = ops.embedding_cache_insert(keys_c, stamps, values, xp.asarray(new),
                                                xp.asarray(np.full((3, 3), 2, np.float32)), 3)
    assert host(evicted).tolist() == [0, 1, 2]               # least recently used, lowest way first
    assert host(slots).tolist() == [0, 1, 2]
    more = np.arange(200, 261, dtype=np.uint32)              # 61 keys: every stamp-1 entry, then 5, 10, 20
    _, evicted = ops.embedding_cache_insert(keys_c, stamps, values, xp.asarray(more),
                                            xp.asarray(np.zeros((61, 3), np.float32)), 4)
    stale = [k for k in range(3, 64) if k not in (5, 10, 20)]
    assert host(evicted).tolist() == stale + [5, 10, 20]
    assert sorted(host(keys_c).tolist()) == [100, 101, 102] + list(range(200, 261))


def test_a_set_takes_at_most_64_new_keys_per_call(xp):
    ops = ops_for(xp)
    keys_c, stamps, values = new_cache(xp, 1, dtype=np.int64)
    new = np.arange(-50, 20, dtype=np.int64)                 # 70 keys, I64 with negatives
    slots, evicted = ops.embedding_cache_insert(keys_c, stamps, values, xp.asarray(new),
                                                xp.asarray(np.zeros((70, 3), np.float32)), 1)
    slots, evicted = host(slots), host(evicted)
    assert (slots[:64] >= 0).all() and (slots[64:] == -1).all()
    assert (evicted == 2 ** 63 - 1).all()
    assert sorted(host(keys_c).tolist()) == new[:64].tolist()


def test_insert_then_query_many_sets(xp):
    ops = ops_for(xp)
    rng = np.random.default_rng(4)
    keys_c, stamps, values = new_cache(xp, 7, vec=5)
    for now in range(1, 6):
        cached = host(keys_c)
        new = np.setdiff1d(rng.choice(3000, 400, replace=False).astype(np.uint32), cached)
        vec = rng.standard_normal((new.size, 5)).astype(np.float32)
        slots, _ = ops.embedding_cache_insert(keys_c, stamps, values, xp.asarray(new), xp.asarray(vec), now)
        slots = host(slots)
        sets = host(ops.embedding_cache_set_index(xp.asarray(new), 7))
        assert (slots[slots >= 0] // WAYS == sets[slots >= 0]).all()       # a key only lives in its set
        got, where = ops.embedding_cache_query(keys_c, stamps, values, xp.asarray(new), now)
        assert (host(where) == slots).all()
        np.testing.assert_array_equal(host(got)[slots >= 0], vec[slots >= 0])
    assert np.unique(host(keys_c)).size == 7 * WAYS


# ---- EmbeddingCache: refresh rule, statistics, events ------------------------------------------------

@pytest.fixture
def single_set(tmp_path):
    """A 640-row table cached at 10 %: 64 entries, one set, so every key competes for it."""
    config = tiny_model(tmp_path, [table(640)], default=0.25)
    ps = CreateParameterServer([config], ["tiny"], False)
    return CreateEmbeddingCache(ps, 0, True, 0.1, config, "tiny", False), ps


def lookup(cache, keys):
    return cache.lookup([np.asarray(keys, np.uint32)])[0]


def test_statistics_on_a_hand_built_stream(single_set):
    cache, ps = single_set
    seen = []
    cache.events.subscribe(seen.append)
    assert cache.capacity() == 64
    lookup(cache, [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9])      # 10 distinct, all miss: refresh inserts them
    assert lookup(cache, list(range(15))).hit_rate == pytest.approx(10 / 15)   # >= 0.5: no refresh
    assert lookup(cache, list(range(20, 90))).hit_rate == 0.0  # 70 new keys, one set: the first 64 go in
    (s,) = cache.stats()
    assert (s.calls, s.lookups, s.hits, s.insertions, s.evictions, s.occupied, s.capacity, s.refreshes,
            s.unknown_keys) == (3, 95, 10, 74, 10, 64, 64, 2, 0)
    assert s.hit_rate == pytest.approx(10 / 95) and s.last_hit_rate == 0.0 and s.occupancy == 1.0
    assert cache.cached_keys().tolist() == list(range(20, 84))
    # Keys 20..73 took the free ways 10..63, keys 74..83 the ways of 0..9; 20 is touched again, so the
    # two unknown keys evict the stamp-3 entries of the lowest ways: 74 and 75.
    found = lookup(cache, [700, 20, 701])
    assert found.hit_rate == pytest.approx(1 / 3)
    rows = found.values[found.inverse]                       # values are per distinct key, ascending
    np.testing.assert_array_equal(rows[[0, 2]], np.full((2, 4), 0.25, np.float32))  # default vectors
    np.testing.assert_array_equal(rows[1], ps.look_up(np.array([20], np.uint32), "tiny", 0)[0][0])
    assert sorted(set(range(20, 84)) - set(cache.cached_keys().tolist())) == [74, 75]
    (s,) = cache.stats()
    assert (s.evictions, s.unknown_keys, s.refreshes, s.calls) == (12, 2, 3, 4)
    assert len(seen) == 4 and all(isinstance(e, CacheStats) for e in seen) and seen[-1] == s
    cache.reset_stats()
    assert cache.stats()[0].lookups == 0 and cache.stats()[0].occupied == 64


def test_refresh_follows_the_first_tables_hit_rate_only(tmp_path):
    config = tiny_model(tmp_path, [table(6400), table(6400, vec=2, seed=1)], threshold=0.5)
    ps = CreateParameterServer([config], ["two"], False)
    cache = CreateEmbeddingCache(ps, 0, True, 0.5, config, "two", False)
    first = np.arange(10, dtype=np.uint32)
    cache.lookup([first, first])                              # table 0 misses: both tables refresh
    assert cache.cached_keys(1).tolist() == list(range(10))
    rates = [found.hit_rate for found in cache.lookup([first, np.arange(100, 110, dtype=np.uint32)])]
    assert rates == [1.0, 0.0]
    assert cache.cached_keys(1).tolist() == list(range(10))   # table 1's misses are not inserted
    cache.lookup([np.arange(500, 510, dtype=np.uint32), np.arange(100, 110, dtype=np.uint32)])
    assert cache.cached_keys(1).tolist() == list(range(10)) + list(range(100, 110))
    no_keys = cache.lookup([np.zeros(0, np.uint32), np.arange(200, 205, dtype=np.uint32)])
    assert no_keys[0].hit_rate == 1.0 and 200 not in cache.cached_keys(1)   # no keys: rate 1.0, no refresh
    assert [s.refreshes for s in cache.stats()] == [2, 2]


def test_disabled_cache_goes_to_the_parameter_server(tmp_path):
    config = tiny_model(tmp_path, [table(100)], default=-1.0)
    ps = CreateParameterServer([config], ["tiny"], False)
    cache = CreateEmbeddingCache(ps, 0, False, 0.0, config, "tiny", False)
    for _ in range(3):
        found = lookup(cache, [5, 5, 99, 100])
        assert found.hit_rate == 0.0
    np.testing.assert_array_equal(found.values[:2], ps.look_up(np.array([5, 99], np.uint32), "tiny", 0)[0])
    np.testing.assert_array_equal(found.values[2], [-1.0] * 4)
    assert found.inverse.tolist() == [0, 0, 1, 2]
    (s,) = cache.stats()
    assert (s.enabled, s.capacity, s.occupied, s.lookups, s.hits, s.insertions, s.unknown_keys) == \
        (False, 0, 0, 9, 0, 0, 3)
    assert cache.cached_keys().size == 0


@pytest.mark.parametrize("percentage, entries", [(0.2, 192), (0.05, 64), (0.0, 64), (1.0, 960)])
def test_capacity_follows_hugectrs_formula(tmp_path, percentage, entries):
    # floor(floor(p * rows) / 64) sets of 64 entries, at least one set.
    config = tiny_model(tmp_path, [table(1000)])
    cache = CreateEmbeddingCache(CreateParameterServer([config], ["m"], False), 0, True, percentage, config, "m",
                                 False)
    assert cache.capacity() == entries


def test_cache_arguments_are_checked(tmp_path):
    config = tiny_model(tmp_path, [table(100)])
    ps = CreateParameterServer([config], ["m"], False)
    with pytest.raises(ValueError, match="cache_size_percentage"):
        CreateEmbeddingCache(ps, 0, True, 20, config, "m", False)
    with pytest.raises(KeyError, match="no model named 'other'"):
        CreateEmbeddingCache(ps, 0, True, 0.2, config, "other", False)
    with pytest.raises(ValueError, match="i64_input_key"):
        CreateEmbeddingCache(ps, 0, True, 0.2, config, "m", True)
    with pytest.raises(TypeError, match="use_gpu_embedding_cache"):
        CreateEmbeddingCache(ps, 0, "yes", 0.2, config, "m", False)
