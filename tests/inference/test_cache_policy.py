"""The frequency-aware cache policy ("tinylfu"): the count-min sketch, the admission gate, and how it
behaves in an EmbeddingCache next to HugeCTR's LRU. Operation tests take the ``xp`` fixture (NumPy
runs the references, CuPy in the gpu lane the kernels)."""

import json

import numpy as np
import pytest

from hugectr_lab.inference import CreateEmbeddingCache, CreateParameterServer
from hugectr_lab.inference.cache_ops import SKETCH_DEPTH, murmur3_32
from inference_helpers import table, tiny_model
from test_cache import host, murmur3_x86_32, new_cache, ops_for


def test_seeded_murmur3_is_the_reference_hash():
    keys = np.array([0, 7, 0xFFFFFFFE], np.uint32)
    for seed in (1, 4):
        want = [murmur3_x86_32(int(k).to_bytes(4, "little"), seed) for k in keys]
        assert murmur3_32(np, keys, seed).tolist() == want


def count_by_hand(keys_per_call, width, halve_before=()):
    """The sketch as plain Python: row d counts key k at murmur3(k, d + 1) mod width."""
    sketch = np.zeros((SKETCH_DEPTH, width), np.int64)
    for call, keys in enumerate(keys_per_call):
        if call in halve_before:
            sketch //= 2
        for k in keys:
            for d in range(SKETCH_DEPTH):
                sketch[d, murmur3_x86_32(int(k).to_bytes(4, "little"), d + 1) % width] += 1
    return sketch


def test_sketch_counts_and_halves(xp):
    ops = ops_for(xp)
    width = 64
    sketch = xp.zeros((SKETCH_DEPTH, width), xp.uint32)
    calls = [np.arange(0, 300, 3, dtype=np.uint32), np.arange(0, 90, dtype=np.uint32),
             np.array([5, 6, 7], np.uint32)]
    for i, keys in enumerate(calls):
        ops.embedding_cache_sketch_update(sketch, xp.asarray(keys), i == 2)
    expected = count_by_hand(calls, width, halve_before=(2,))
    np.testing.assert_array_equal(host(sketch), expected)
    query = np.array([0, 3, 5, 1000], np.uint32)
    cols = [[murmur3_x86_32(int(k).to_bytes(4, "little"), d + 1) % width for d in range(SKETCH_DEPTH)] for k in query]
    want = [min(expected[d, c[d]] for d in range(SKETCH_DEPTH)) for c in cols]
    assert host(ops.embedding_cache_frequency(sketch, xp.asarray(query))).tolist() == want


def test_tinylfu_admits_only_keys_more_frequent_than_the_victim(xp):
    ops = ops_for(xp)
    cache = new_cache(xp, 1, vec=2)
    sketch = xp.zeros((SKETCH_DEPTH, 1 << 12), xp.uint32)
    counts = {k: c for k, c in zip(range(1000, 1064), [3] * 32 + [1] * 32)}   # 64 keys fill the set
    for rounds in range(3):
        ops.embedding_cache_sketch_update(sketch, xp.asarray(np.array([k for k, c in counts.items() if c > rounds],
                                                                       np.uint32)), False)
    first = np.array(list(counts), np.uint32)
    slots, _ = ops.embedding_cache_insert_tinylfu(*cache, sketch, xp.asarray(first),
                                                  xp.asarray(np.ones((64, 2), np.float32)), 1)
    assert (host(slots) >= 0).all()                          # free ways admit anything
    # Three new keys: seen 2, 1 and 0 times. Only the first beats a victim (the 32 keys seen once).
    for k in (7, 7, 8):
        ops.embedding_cache_sketch_update(sketch, xp.asarray(np.array([k], np.uint32)), False)
    new = np.array([8, 7, 9], np.uint32)
    slots, evicted = ops.embedding_cache_insert_tinylfu(*cache, sketch, xp.asarray(new),
                                                        xp.asarray(np.full((3, 2), 5, np.float32)), 2)
    slots, evicted = host(slots), host(evicted)
    assert slots[0] == -1 and slots[2] == -1 and slots[1] >= 0
    assert 1032 <= int(evicted[1]) < 1064                    # a key seen once left; those seen 3 times stay
    keys = set(host(cache[0]).tolist())
    assert 7 in keys and 8 not in keys and all(k in keys for k in range(1000, 1032))
    np.testing.assert_array_equal(host(cache[2])[slots[1]], [5, 5])
    assert host(cache[1])[slots[1]] == 2


def test_tinylfu_ranks_new_keys_by_frequency_then_input_order(xp):
    ops = ops_for(xp)
    cache = new_cache(xp, 1, vec=1)
    sketch = xp.zeros((SKETCH_DEPTH, 1 << 12), xp.uint32)
    keys = np.arange(100, 200, dtype=np.uint32)               # 100 new keys for one set of 64 ways
    hot = keys[::-3]                                         # a third of them seen twice
    for _ in range(2):
        ops.embedding_cache_sketch_update(sketch, xp.asarray(hot), False)
    slots, _ = ops.embedding_cache_insert_tinylfu(*cache, sketch, xp.asarray(keys),
                                                  xp.asarray(np.zeros((100, 1), np.float32)), 1)
    inserted = keys[host(slots) >= 0]
    expected = np.concatenate([np.sort(hot), np.setdiff1d(keys, hot)[:64 - hot.size]])
    np.testing.assert_array_equal(np.sort(inserted), np.sort(expected))


def policy_cache(tmp_path, policy, *, via_config):
    config = tiny_model(tmp_path, [table(64 * 20)], threshold=1.0)
    if via_config:
        obj = json.loads(open(config).read())
        obj["inference"]["cache_policy"] = policy
        open(config, "w").write(json.dumps(obj))
    ps = CreateParameterServer([config], ["m"], False)
    return CreateEmbeddingCache(ps, 0, True, 0.05, config, "m", False, backend="numpy",
                                cache_policy=None if via_config else policy)


@pytest.mark.parametrize("via_config", [True, False])
def test_a_frequent_key_survives_a_scan_under_tinylfu_not_lru(tmp_path, via_config):
    """One set of 64 ways; 32 keys asked in every request, then one-off scans of 100 new keys."""
    hits = {}
    for policy in ("lru", "tinylfu"):
        cache = policy_cache(tmp_path, policy, via_config=via_config)
        assert cache.policy == policy and cache.capacity() == 64
        hot = np.arange(32, dtype=np.uint32)
        for _ in range(5):
            cache.lookup([hot])
        for scan in range(3):
            cache.lookup([np.arange(100 + 100 * scan, 200 + 100 * scan, dtype=np.uint32)])
        hits[policy] = cache.lookup([hot])[0].hit_rate
    assert hits == {"lru": 0.0, "tinylfu": 1.0}


def test_unknown_policy_is_rejected(tmp_path):
    config = tiny_model(tmp_path, [table(100)])
    ps = CreateParameterServer([config], ["m"], False)
    with pytest.raises(ValueError, match=r"cache_policy=\.\.\.\) must be one of 'lru', 'tinylfu', got 'lfu'"):
        CreateEmbeddingCache(ps, 0, True, 0.2, config, "m", False, cache_policy="lfu")
    obj = json.loads(open(config).read())
    obj["inference"]["cache_policy"] = "arc"
    open(config, "w").write(json.dumps(obj))
    with pytest.raises(ValueError, match="inference.cache_policy"):
        CreateParameterServer([config], ["m"], False)
