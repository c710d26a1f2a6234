"""The captured predict path's operations (``graph_ops``: ``infer_dedupe``, the parameter server's index,
``infer_lookup``, ``infer_insert``) as NumPy references: on their own, and composed by ``GraphPredictor`` -- staging,
padding, counters, accounting -- against the plain eager predict path (``EmbeddingCache.lookup`` +
combine), which must give the same predictions, statistics and cache arrays bit for bit. The kernels
against these references: tests/gpu/test_inference_kernels.py."""

import json

import numpy as np
import pytest

from hugectr_lab.inference.cache_ops import empty_key
from hugectr_lab.backend import get_backend
from hugectr_lab.inference.graph_ops import (check_dedupe, check_index, infer_begin, infer_dedupe, ps_index,
                                          ps_rows, set_size)
from hugectr_lab.inference.graph_path import GraphPredictor
from inference_helpers import check_dedupe_set, open_session, two_table_model, two_table_request


@pytest.mark.parametrize("dtype", [np.uint32, np.int64])
@pytest.mark.parametrize("num_keys", [1, 63, 1001])
def test_infer_dedupe_reference_builds_a_probe_set(dtype, num_keys):
    rng = np.random.default_rng(num_keys)
    keys = rng.integers(0, max(2, num_keys // 3), num_keys).astype(dtype)     # many duplicates
    if dtype == np.int64:
        keys = keys * np.int64(2654435761) - np.int64(2 ** 40)               # negative keys too
    keys[rng.random(num_keys) < 0.2] = empty_key(dtype)                      # padding
    set_keys = np.full(set_size(num_keys), empty_key(dtype))
    inverse = np.full(num_keys, -7, np.int64)
    infer_dedupe(np, keys, set_keys, inverse, None)
    check_dedupe_set(keys, set_keys, inverse)


def test_infer_dedupe_refuses_a_set_that_could_fill():
    keys = np.arange(64, dtype=np.uint32)
    with pytest.raises(ValueError, match="power of two above the 64 keys"):
        check_dedupe(keys, np.zeros(64, np.uint32), np.zeros(64, np.int64))
    with pytest.raises(ValueError, match="power of two"):
        infer_dedupe(np, keys, np.zeros(96, np.uint32), np.zeros(64, np.int64), None)
    with pytest.raises(ValueError, match="inverse must be"):
        check_dedupe(keys, np.zeros(128, np.uint32), np.zeros(63, np.int64))


@pytest.mark.parametrize("dtype", [np.uint32, np.int64])
@pytest.mark.parametrize("rows", [0, 1, 5, 4097])
def test_the_parameter_servers_index_finds_every_row_and_no_other_key(dtype, rows):
    """``ps_index`` + ``ps_rows`` (the lookup's probe) give what a search of the sorted keys gives."""
    rng = np.random.default_rng(rows)
    universe = rng.choice(np.arange(1, 50_000), 2 * rows + 50, replace=False).astype(dtype)
    if dtype == np.int64:
        universe = universe * np.int64(-2654435761)                          # negative keys too
    ps_keys = np.sort(universe[:rows])
    index_keys, index_rows = ps_index(np, get_backend("numpy").ops, ps_keys)
    assert index_keys.size == set_size(rows) and index_rows.dtype == np.int32
    queried = rng.permutation(universe)                                      # held and unknown keys
    want = np.searchsorted(ps_keys, queried)
    want = np.where((want < rows) & (ps_keys[np.minimum(want, max(rows - 1, 0))] == queried) if rows else False,
                    want, -1)
    np.testing.assert_array_equal(ps_rows(np, index_keys, index_rows, queried), want)
    with pytest.raises(ValueError, match="power of two"):
        check_index(index_keys[:-1], index_rows[:-1])


def assert_same_cache(a, b):
    for ta, tb in zip(a.embedding_cache._tables, b.embedding_cache._tables):
        for name in ("keys", "stamps", "values", "sketch"):
            x, y = getattr(ta, name), getattr(tb, name)
            assert (x is None) == (y is None), name
            if x is not None:
                np.testing.assert_array_equal(x, y, err_msg=name)
        assert (ta.now, ta.counted) == (tb.now, tb.counted)


@pytest.mark.parametrize("policy, threshold, percentage, key_type", [
    ("lru", 1.0, 0.1, "I32"), ("tinylfu", 1.0, 0.1, "I64"), ("lru", 0.45, 0.1, "I64"), ("tinylfu", 0.6, 0.1, "I32")])
def test_graph_path_references_equal_the_eager_path(policy, threshold, percentage, key_type, tmp_path):
    config = two_table_model(tmp_path, key_type)
    obj = json.loads(open(config).read())
    obj["inference"]["hit_rate_threshold"] = threshold
    open(config, "w").write(json.dumps(obj))
    i64 = key_type == "I64"
    eager = open_session(config, percentage=percentage, i64=i64, backend="numpy", cache_policy=policy)
    graph = open_session(config, percentage=percentage, i64=i64, backend="numpy", cache_policy=policy)
    graph._graph = GraphPredictor(graph)
    captured_calls = []
    graph._graph.predict_chunk = lambda *a, chunk=graph._graph.predict_chunk: captured_calls.append(1) or chunk(*a)
    graph.embedding_cache._tables[0].sample_size = eager.embedding_cache._tables[0].sample_size = 600   # aging
    rng = np.random.default_rng(5)
    sizes = [1, 63, 64, 100, 5, 64, 1, 17, 33, 64, 2, 40, 64, 64, 9]
    for i, n in enumerate(sizes):
        args = two_table_request(rng, n, key_type, crowd_table=i == 6)
        extra = (True,) if i64 else ()
        want = eager.predict_array(*args, *extra)
        got = graph.predict_array(*args, *extra)
        np.testing.assert_array_equal(got, want)
        assert graph.embedding_cache.stats() == eager.embedding_cache.stats()
        assert_same_cache(graph, eager)
    stats = eager.embedding_cache.stats()
    assert all(s.evictions > 0 and s.unknown_keys > 0 for s in stats)
    assert 0 < stats[0].refreshes < stats[0].calls or threshold == 1.0   # some calls do not refresh
    assert len(captured_calls) == len(sizes)     # 100 samples: two chunks; the crowded one: eager
    assert sorted(graph._graph.buckets) == [1, 2, 8, 16, 32, 64]
    if policy == "tinylfu":
        assert eager.embedding_cache._tables[0].counted < stats[0].lookups   # the sketch was halved
    assert set(graph._graph.captured().values()) == {"eager"}    # NumPy has no graphs


def test_one_hot_requests_upload_no_offsets_and_equal_the_eager_path(tmp_path, monkeypatch):
    """A request whose every slot holds one key runs the bucket's one-hot variant (constant row offsets on
    the device, none staged or uploaded; padding rows hold one padding key); requests of either kind, in any
    order on the same buckets, give the eager path's predictions, statistics and cache bit for bit (table 1
    has the mean combiner, which reads the offsets)."""
    from hugectr_lab.inference import graph_path

    monkeypatch.setattr(graph_path, "ONE_HOT_MIN_ROWS", 5 * 4)   # from 4 samples of 5 slots
    config = two_table_model(tmp_path, "I32")
    eager = open_session(config, backend="numpy")
    graph = open_session(config, backend="numpy")
    graph._graph = GraphPredictor(graph)
    rng = np.random.default_rng(8)
    for n, one_hot in [(1, True), (5, True), (5, False), (64, True), (100, True), (64, False), (17, True), (3, False),
                       (4, True), (3, True), (64, True)]:
        args = two_table_request(rng, n, "I32", one_hot=one_hot)
        np.testing.assert_array_equal(graph.predict_array(*args), eager.predict_array(*args))
        assert graph.embedding_cache.stats() == eager.embedding_cache.stats()
        assert_same_cache(graph, eager)
        last = n - 64 * ((n - 1) // 64)               # the last chunk's samples (100: 64 + 36)
        assert graph._graph.bucket(last).one_hot == (one_hot and last >= 4)
    buckets = graph._graph.buckets
    assert sorted(buckets[8].calls) == [False, True] and sorted(buckets[1].calls) == [False]   # 1 sample: 5 rows
    assert sorted(buckets[64].calls) == [False, True]
    np.testing.assert_array_equal(buckets[8].one_hot_offsets[0], np.append(np.arange(8 * 3 + 1), 8 * 12))
    staged = buckets[8].h["offsets1"]
    staged[:] = -99                                    # a one-hot call neither stages nor reads them
    args = two_table_request(rng, 6, "I32", one_hot=True)
    np.testing.assert_array_equal(graph.predict_array(*args), eager.predict_array(*args))
    assert (staged == -99).all()


def test_graph_path_without_a_cache_reads_the_parameter_server(tmp_path):
    config = two_table_model(tmp_path, "I32")
    eager = open_session(config, use_cache=False, backend="numpy")
    graph = open_session(config, use_cache=False, backend="numpy")
    graph._graph = GraphPredictor(graph)
    rng = np.random.default_rng(2)
    for n in (1, 37, 64):
        args = two_table_request(rng, n, "I32")
        np.testing.assert_array_equal(graph.predict_array(*args), eager.predict_array(*args))
    assert graph.embedding_cache.stats() == eager.embedding_cache.stats()
    assert graph.embedding_cache.stats()[0].hits == 0


def test_a_chunk_above_its_bucket_is_refused(tmp_path):
    session = open_session(two_table_model(tmp_path, "I32"), backend="numpy")
    predictor = GraphPredictor(session)
    dense, keys, row_ptrs = two_table_request(np.random.default_rng(0), 65, "I32")
    parts = session._split_tables(session._keys(keys), row_ptrs, 65)
    assert not predictor.fits(parts, 65)
    with pytest.raises(ValueError, match="predict graph of batch 64: got a chunk of 65 samples"):
        predictor.predict_chunk(dense.reshape(65, 2), parts, 65, np.empty((65, 1), np.float32))


def test_bench_host_phases_call_predicts_phases_as_predict_does(tmp_path):
    """``bench.inference.host_phases`` times the captured path's phases by calling them one by one: the
    calls must change the cache exactly as ``predict`` does, or the phases time another path."""
    from bench.inference import PHASES, host_phases

    config = two_table_model(tmp_path, "I32")
    eager = open_session(config, backend="numpy")
    graph = open_session(config, backend="numpy")
    graph._graph = GraphPredictor(graph)
    rng = np.random.default_rng(3)
    requests = [two_table_request(rng, 64, "I32") for _ in range(3)]
    phases = host_phases(graph, requests, 7)
    for i in range(7):
        eager.predict_array(*requests[i % 3])
    assert list(phases) == list(PHASES) and all(v > 0 for v in phases.values())
    assert graph.embedding_cache.stats() == eager.embedding_cache.stats()
    assert_same_cache(graph, eager)


def test_the_graph_rejects_bad_values_without_touching_the_cache(tmp_path):
    """One table over every slot: the host leaves the request's values to the graph (``infer_begin``). A
    descent in row_ptrs, a negative offset or one past the keys -- in a request without keys too, where no
    counter could tell a rejected call --, a NaN or infinite dense feature, the reserved key (first or last)
    raise the eager path's error, and the call looks nothing up: cache arrays, sketch (whose halving was due), statistics and stamps stay as they were,
    and the next request gives the eager path's predictions and cache bit for bit."""
    from hugectr_lab.inference import PredictInputError
    from inference_helpers import table, tiny_model

    config = tiny_model(tmp_path, [table(300)], slots=[3], max_batchsize=8)
    eager = open_session(config, backend="numpy", cache_policy="tinylfu")
    graph = open_session(config, backend="numpy", cache_policy="tinylfu")
    graph._graph = GraphPredictor(graph)
    for session in (eager, graph):
        session.embedding_cache._tables[0].sample_size = 10   # a halving due at every call
    ptrs = np.arange(13)
    assert graph._graph_checks_values(4, ptrs[:12], ptrs) and not eager._graph_checks_values(4, ptrs[:12], ptrs)
    rng = np.random.default_rng(1)

    def request(ptrs, dense=None, key=None):
        keys = rng.integers(0, 400, ptrs[-1]).astype(np.uint32)
        if key is not None:
            keys[key] = empty_key(np.uint32)
        return rng.random(2 * 4).astype(np.float32) if dense is None else np.array(dense, np.float32), keys, ptrs

    good = np.array([0, 1, 3, 3, 4, 6, 7, 7, 9, 10, 11, 12, 12])
    for _ in range(3):
        args = request(good)
        np.testing.assert_array_equal(graph.predict_array(*args), eager.predict_array(*args))
    before = graph.embedding_cache.stats()
    halving = graph.embedding_cache._tables[0].halving_due
    bad_rows = [np.array([0, 1, 3, 2, 4, 6, 7, 7, 9, 10, 11, 12, 12]),      # a descent
                np.array([0, 1, -3, 3, 4, 6, 7, 7, 9, 10, 11, 12, 12]),     # negative
                np.array([0, 1, 3, 99, 4, 6, 7, 7, 9, 10, 11, 12, 12]),     # past the keys
                np.array([0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])]          # past the keys, and no key at all
    bad = [(request(ptrs), "row_ptrs must be non-decreasing") for ptrs in bad_rows] + [
        (request(good, dense=[0.5, 0.1, float("nan"), 1, 1, 1, 1, 1]), r"dense_feature\[2\] = nan"),
        (request(good, dense=[0.5, 0.1, 1, 1, 1, 1, 1, float("-inf")]), r"dense_feature\[7\] = -inf"),
        (request(good, key=11), r"embeddingcolumns\[11\] = 4294967295 is the reserved key"),
        (request(good, key=0), r"embeddingcolumns\[0\] = 4294967295 is the reserved key")]
    for args, message in bad:
        with pytest.raises(PredictInputError) as want:
            eager.predict_array(*args)
        with pytest.raises(PredictInputError, match=message) as got:
            graph.predict_array(*args)
        assert str(got.value) == str(want.value)
        assert graph.embedding_cache.stats() == before and graph.embedding_cache._tables[0].halving_due == halving
        assert_same_cache(graph, eager)
    args = request(good)
    np.testing.assert_array_equal(graph.predict_array(*args), eager.predict_array(*args))
    assert_same_cache(graph, eager)
    assert graph.embedding_cache.stats() == eager.embedding_cache.stats()


def test_infer_begin_reference_empties_the_set_flags_and_clamps():
    ok = np.array([0, 2, 2, 5, 7, 7, 30], np.int64)          # rows' offsets (k = 7), then the padding row's end
    header, rejected = np.array([[4, 1, 7], [4, 1, 0]]), np.zeros(1, np.int64)
    keys = np.append(np.arange(7, dtype=np.uint32), [empty_key(np.uint32)] * 3)   # 7 keys, then padding
    dense = np.ones((2, 3), np.float32)
    set_keys = np.arange(64, dtype=np.uint32)                 # the last call's keys
    infer_begin(np, ok, keys, dense, header, 0, rejected, set_keys)
    assert rejected[0] == 0 and header[:, 1].tolist() == [1, 1] and (set_keys == empty_key(np.uint32)).all()
    np.testing.assert_array_equal(ok, [0, 2, 2, 5, 7, 7, 30])
    for reject in ("key", "dense"):
        header[:, 1], rejected[0] = 1, 0
        bad_keys, bad_dense = keys.copy(), dense.copy()
        if reject == "key":
            bad_keys[6] = empty_key(np.uint32)                # the last real key
        else:
            bad_dense[1, 2] = np.inf
        infer_begin(np, ok, bad_keys, bad_dense, header, 0, rejected, set_keys)
        assert rejected[0] == 1 and header[:, 1].tolist() == [0, 0], reject
    header[:, 1], rejected[0] = 1, 0
    bad = np.array([0, 9, -4, 5, 3, 7, 30], np.int64)
    infer_begin(np, bad, keys, None, header, 0, rejected, set_keys)
    assert rejected[0] == 1 and header[:, 1].tolist() == [0, 0] and header[:, 0].tolist() == [4, 4]
    np.testing.assert_array_equal(bad, [0, 7, 0, 5, 3, 7, 30])   # inside [0, k]; the padding row's end kept
    keys, inverse = np.array([3, 5, 3], np.uint32), np.zeros(3, np.int64)
    infer_dedupe(np, keys, set_keys, inverse, rejected)
    assert (inverse == -1).all() and (set_keys == empty_key(np.uint32)).all()


def test_bench_host_only_times_the_host_share_of_a_captured_call():
    """``python -m bench.inference --host-only``: a median per batch size (a stubbed call read as a rejection
    would raise: the host finds the requests in order)."""
    from bench.inference import main

    times = main(["--host-only", "--quick", "--batches", "1", "64"])
    assert sorted(times) == [1, 64] and all(0 < t < 1e6 for t in times.values())
