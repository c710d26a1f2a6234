"""GPU lane: the predict graph's kernels (``infer_dedupe``, ``infer_lookup``, ``infer_insert`` in
kernels/embedding_cache.cu) against their NumPy references (hugectr_lab/inference/graph_ops.py) on
odd sizes, duplicate keys, keys the parameter server does not hold and padding; then the captured
predict path against the eager CuPy path and the NumPy path at batch 1, 63, 64, 1000 and 1024."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from hugectr_lab.backend import get_backend
from hugectr_lab.inference import predict_inputs
from hugectr_lab.inference.cache_ops import SKETCH_DEPTH, WAYS, empty_key
from hugectr_lab.inference.graph_ops import (infer_begin, infer_dedupe, infer_insert, infer_lookup, ps_index, ps_rows,
                                          set_size)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from inference_helpers import (Trained, check_dedupe_set, open_session, predict_from_threads, run_predict,  # noqa: E402
                               sample_config, two_table_model, two_table_request)

pytestmark = pytest.mark.gpu


def _gpu_ops(op):
    from hugectr_lab.inference import cuda_cache  # noqa: F401  (registers the kernels)
    ops = get_backend("cupy").ops
    assert ops.implementation(op) == "kernel"
    return ops


def _keys(rng, count, dtype, universe):
    """``count`` keys, Pareto-distributed ranks over ``universe`` (many duplicates), spread over the key
    range (I64: negative keys too), about 1 in 9 of them padding (the empty key)."""
    ranks = np.minimum(np.floor(rng.pareto(1.1, count) * 30).astype(np.int64), universe - 1)
    keys = (ranks * 2654435761 - 2 ** 40 if dtype == np.int64 else ranks * 7919).astype(dtype)
    keys[rng.random(count) < 0.11] = empty_key(dtype)
    return keys


@pytest.mark.parametrize("dtype", [np.uint32, np.int64])
@pytest.mark.parametrize("num_keys", [1, 63, 1001, 40961])
def test_infer_dedupe_kernel_builds_the_references_set(dtype, num_keys):
    import cupy

    ops = _gpu_ops("infer_dedupe")
    keys = _keys(np.random.default_rng(num_keys), num_keys, dtype, max(2, num_keys // 2))
    set_keys = cupy.full(set_size(num_keys), empty_key(dtype), dtype)
    inverse = cupy.full(num_keys, -7, cupy.int64)
    ops.infer_dedupe(cupy.asarray(keys), set_keys, inverse, None)
    got = set_keys.get()
    check_dedupe_set(keys, got, inverse.get())        # a valid layout (which entry a key takes may differ)
    want = np.full(set_keys.size, empty_key(dtype))
    infer_dedupe(np, keys, want, np.zeros(num_keys, np.int64), None)
    np.testing.assert_array_equal(np.sort(got), np.sort(want))


@pytest.mark.parametrize("dtype", [np.uint32, np.int64])
@pytest.mark.parametrize("rows, set_entries, bad", [(37, 64, None), (37, 64, "offsets"), (3001, 8192, "offsets"),
                                                    (3001, 1024, None), (1, 64, "offsets"), (37, 64, "key"),
                                                    (3001, 64, "dense"), (37, 8192, "last key")])
def test_infer_begin_kernel_equals_the_reference(dtype, rows, set_entries, bad):
    """The set emptied, the flags, the halving flags and the clamped offsets, bit for bit: a valid call, and
    one with a descent and offsets outside [0, k], the reserved key among the real keys (padding after them
    is not), a non-finite dense value (more offsets than set entries, and fewer)."""
    import cupy

    ops = _gpu_ops("infer_begin")
    rng = np.random.default_rng(rows + set_entries)
    offsets = np.concatenate([[0], np.cumsum(rng.integers(0, 4, rows)), [10 ** 6]]).astype(np.int64)
    k = int(offsets[-2])
    keys = np.append(rng.integers(0, 99, k), np.full(k // 3 + 5, empty_key(dtype))).astype(dtype)   # then padding
    dense = rng.normal(size=(rows, 13)).astype(np.float32)
    if bad == "offsets":
        picks = rng.choice(rows, min(rows, 3), replace=False)
        offsets[picks] += np.array([-10 ** 4, 3, 10 ** 7])[:picks.size]   # a negative one at least: rejected
    elif bad in ("key", "last key"):
        keys[k - 1 if bad == "last key" else k // 2] = empty_key(dtype)
    elif bad == "dense":
        dense[rows // 2, 7] = np.nan
    header, rejected = np.array([[3, 1, 0], [5, 1, k], [7, 0, 0]], np.int64), np.zeros(1, np.int64)
    set_keys = rng.integers(0, 99, set_entries).astype(dtype)
    arrays = (offsets, keys, dense, header, rejected, set_keys)
    d = [cupy.asarray(a) for a in arrays]
    infer_begin(np, offsets, keys, dense, header, 1, rejected, set_keys)
    ops.infer_begin(d[0], d[1], d[2], d[3], 1, d[4], d[5])
    for got, want in zip(d, arrays):
        np.testing.assert_array_equal(got.get(), want)
    assert rejected[0] == (bad is not None) and (set_keys == empty_key(dtype)).all()


@pytest.mark.parametrize("dtype", [np.uint32, np.int64])
def test_the_parameter_servers_index_built_by_the_kernel_finds_every_row(dtype):
    """``ps_index`` on CuPy (the dedupe kernel places the keys, in an order of its own): probing it finds
    each parameter-server key's row and no other key."""
    import cupy

    rng = np.random.default_rng(3)
    universe = rng.choice(np.arange(1, 10 ** 6), 40_001, replace=False).astype(dtype)
    ps_keys = np.sort(universe[:30_011])
    index = [a.get() for a in ps_index(cupy, get_backend("cupy").ops, cupy.asarray(ps_keys))]
    rows = ps_rows(np, *index, universe)
    np.testing.assert_array_equal(rows[:30_011], np.searchsorted(ps_keys, universe[:30_011]))
    assert (rows[30_011:] == -1).all()


@pytest.mark.parametrize("key_type", ["I32", "I64"])
@pytest.mark.parametrize("policy", ["lru", "tinylfu"])
@pytest.mark.parametrize("vec, num_sets, pinned", [(1, 1, False), (5, 3, True), (33, 7, True), (16, 0, True)])
def test_infer_lookup_and_insert_kernels_equal_the_references(key_type, policy, vec, num_sets, pinned):
    """A stream of calls over one table: the same de-duplicated set on both sides, then lookup (cache,
    parameter server in device or page-locked host memory, unknown keys, sketch aging) and insert
    (refresh or not), compared bit for bit: set values, misses, counters, cache arrays, sketch."""
    import cupy

    from hugectr_lab.inference.graph_path import mapped_copy
    ops = _gpu_ops("infer_lookup")
    dtype = np.dtype(np.uint32 if key_type == "I32" else np.int64)
    rng = np.random.default_rng(vec * 100 + num_sets)
    universe = 3000
    ps_keys = np.unique(_keys(rng, 5000, dtype, universe))
    ps_keys = ps_keys[ps_keys != empty_key(dtype)][::2].copy()          # about half of the keys drawn: unknown
    ps_vectors = rng.standard_normal((ps_keys.size, vec)).astype(np.float32)
    index = ps_index(np, get_backend("numpy").ops, ps_keys)     # one layout on both sides
    d_index = [cupy.asarray(a) for a in index]
    d_ps_vectors = mapped_copy(ps_vectors) if pinned else cupy.asarray(ps_vectors)
    size = num_sets * WAYS
    cache = [np.full(size, empty_key(dtype), dtype), np.zeros(size, np.int64), np.zeros((size, vec), np.float32)]
    d_cache = [cupy.asarray(a) for a in cache]
    if not num_sets:
        cache = d_cache = [None, None, None]
    sketch = np.zeros((SKETCH_DEPTH, 512), np.uint32) if policy == "tinylfu" and num_sets else None
    d_sketch = None if sketch is None else cupy.asarray(sketch)
    totals = np.zeros(5, np.int64)
    d_heads = cupy.full(num_sets, -1, cupy.int64)   # one for every call, as graph_path keeps it
    for now in range(1, 22):
        keys = _keys(rng, 777, dtype, universe)
        set_keys, inverse = np.full(set_size(keys.size), empty_key(dtype)), np.zeros(keys.size, np.int64)
        infer_dedupe(np, keys, set_keys, inverse, None)
        header = np.array([now, now % 6 == 0], np.int64)
        counters = np.zeros(5, np.int64)
        set_values = np.full((set_keys.size, vec), 7.5, np.float32)
        set_miss = np.full(set_keys.size, 9, np.uint8)
        d = {name: cupy.asarray(a) for name, a in dict(set_keys=set_keys, header=header, counters=counters,
                                                          set_values=set_values, set_miss=set_miss).items()}
        infer_lookup(np, set_keys, *cache, *index, ps_vectors, -0.5, sketch, header, set_values, set_miss, counters)
        ops.infer_lookup(d["set_keys"], *d_cache, *d_index, d_ps_vectors, -0.5, d_sketch, d["header"],
                         d["set_values"], d["set_miss"], d["counters"])
        np.testing.assert_array_equal(d["set_values"].get(), set_values)
        np.testing.assert_array_equal(d["set_miss"].get(), set_miss)
        np.testing.assert_array_equal(d["counters"].get(), counters)
        if sketch is not None:
            np.testing.assert_array_equal(d_sketch.get(), sketch)
        if num_sets:
            threshold = 1.0 if now % 4 else 0.2      # every fourth call only refreshes below a hit rate of 0.2
            infer_insert(np, set_keys, set_miss, set_values, counters, threshold, *cache, sketch, header, counters,
                         None)
            ops.infer_insert(d["set_keys"], d["set_miss"], d["set_values"], d["counters"], threshold, *d_cache,
                             d_sketch, d["header"], d["counters"], d_heads)
            assert (d_heads.get() == -1).all()   # left as found: the next call's chains start empty
            np.testing.assert_array_equal(d["counters"].get(), counters)
            for got, want in zip(d_cache, cache):
                np.testing.assert_array_equal(got.get(), want)
        totals += counters
    assert totals[2] > 0                                     # unknown keys got the default value
    if num_sets:
        assert totals[1] > 0 and totals[3] > 0               # hits, insertions
        assert totals[4] > 0 or policy == "tinylfu"          # LRU replaced entries


def _graph_sessions(config, policy, percentage, **inference):
    """NumPy, CuPy with the captured path, CuPy eager: three sessions on ``config`` (its inference clause
    updated with ``inference``), each its own cache."""
    obj = json.loads(Path(config).read_text())
    obj["inference"].update(inference)
    paths = {}
    for graph in (True, False):
        obj["inference"]["cuda_graph"] = graph
        paths[graph] = Path(config).with_name(f"{Path(config).stem}_{'graph' if graph else 'eager'}.json")
        paths[graph].write_text(json.dumps(obj))
    i64 = obj["inference"].get("input_key_type") == "I64"
    cpu, gpu, eager = (open_session(str(paths[g]), percentage=percentage, i64=i64, backend=b, cache_policy=policy)
                       for b, g in (("numpy", False), ("cupy", True), ("cupy", False)))
    assert gpu._graph is not None and eager._graph is None
    return cpu, gpu, eager


BATCHES = (1, 63, 64, 1000, 1024)


def _compare(cpu, gpu, eager, requests, atol):
    for args in requests:
        want = cpu.predict_array(*args)
        np.testing.assert_allclose(gpu.predict_array(*args), want, rtol=0, atol=atol)
        np.testing.assert_allclose(eager.predict_array(*args), want, rtol=0, atol=atol)
        assert gpu.embedding_cache.stats() == cpu.embedding_cache.stats() == eager.embedding_cache.stats()
    for t in range(cpu.embedding_cache.num_tables):
        np.testing.assert_array_equal(gpu.embedding_cache.cached_keys(t), cpu.embedding_cache.cached_keys(t))
        np.testing.assert_array_equal(eager.embedding_cache.cached_keys(t), cpu.embedding_cache.cached_keys(t))
    assert cpu.embedding_cache.stats()[0].evictions > 0
    # every bucket ran at least three times: eagerly, captured, replayed -- none fell back to eager
    assert gpu._graph.captured() == {1: "graph", 64: "graph", 1024: "graph"}


@pytest.mark.parametrize("policy, fp32_gemm", [("lru", "fp32"), ("tinylfu", "fp32"), ("lru", "tf32x3")])
def test_graph_path_equals_eager_and_numpy_on_dcn(policy, fp32_gemm, tmp_path, monkeypatch):
    """tf32x3: the batch-1024 bucket's two wide FCs (1024 rows) run as 3xTF32 on the GPU, plain float32 on NumPy."""
    monkeypatch.chdir(tmp_path)
    width = 256 if fp32_gemm == "tf32x3" else 32          # 3xTF32 from 256 outputs (TF32X3_MIN_EXTENT)
    trained = Trained(sample_config("dcn", width=width), steps=3)          # 1024 eval samples
    config = trained.write_inference_config(max_batchsize=1024)
    samples = trained.eval_samples()
    cpu, gpu, eager = _graph_sessions(config, policy, 0.05, fp32_gemm=fp32_gemm)
    split = [fc.tf32x3 for fc in gpu._network(1024).layers if fc.type_name == "InnerProduct"]
    assert split.count(True) == (2 if fp32_gemm == "tf32x3" else 0)
    requests = [predict_inputs(samples.take(start, start + n))[:3]
                for n in BATCHES for start in (min(s, len(samples) - n) for s in (0, 11, 500))]
    _compare(cpu, gpu, eager, requests, 2e-5)
    trained.close()


@pytest.mark.parametrize("policy, key_type", [("lru", "I64"), ("tinylfu", "I32")])
def test_graph_path_equals_eager_and_numpy_on_two_tables(policy, key_type, tmp_path, monkeypatch):
    """Two tables (sum and mean combiners), duplicate and unknown keys, empty slots, padding; one-hot requests
    between the others, so that each bucket captures and replays both of its graphs (general, one-hot)."""
    from hugectr_lab.inference import graph_path

    monkeypatch.setattr(graph_path, "ONE_HOT_MIN_ROWS", 1)       # every size checked for one-hot rows
    config = two_table_model(tmp_path, key_type, max_batchsize=1024)
    cpu, gpu, eager = _graph_sessions(config, policy, 0.1)
    rng = np.random.default_rng(3)
    extra = (True,) if key_type == "I64" else ()
    requests = [two_table_request(rng, n, key_type, one_hot=i % 2 == 1) + extra for n in BATCHES for i in range(4)]
    _compare(cpu, gpu, eager, requests, 1e-5)
    assert all(sorted(bucket.calls) == [False, True] for bucket in gpu._graph.buckets.values())
    assert cpu.embedding_cache.stats()[1].unknown_keys > 0


def test_graph_path_from_several_threads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained = Trained(sample_config("dcn"), steps=2)
    config = trained.write_inference_config(max_batchsize=64)
    samples = trained.eval_samples()
    cpu, gpu, _ = _graph_sessions(config, "lru", 0.3)
    requests = [predict_inputs(samples.take(s, s + n)) for s, n in zip(range(0, 1024, 40), [1, 7, 64, 33, 100] * 6)]
    want = [run_predict(cpu, r) for r in requests]
    got = predict_from_threads(gpu, requests)
    for i, w in enumerate(want):
        np.testing.assert_allclose(got[i], w, rtol=0, atol=2e-5)
    assert set(gpu._graph.captured().values()) == {"graph"}
    trained.close()


def test_the_captured_graph_rejects_bad_values_without_touching_the_cache(tmp_path):
    """The device's value checks (``infer_begin``) in a replayed graph: a descent, a negative offset, one
    past the keys, a NaN dense feature and the reserved key raise NumPy's error and leave the cache, sketch
    and statistics as they were; valid requests around them give NumPy's answers (no false rejection)."""
    from hugectr_lab.inference import PredictInputError
    from inference_helpers import table, tiny_model

    config = tiny_model(tmp_path, [table(300)], slots=[3], max_batchsize=8)
    cpu, gpu, _ = _graph_sessions(config, "tinylfu", 0.5)
    rng = np.random.default_rng(1)

    def request(ptrs):
        return rng.random(2 * 4).astype(np.float32), rng.integers(0, 400, ptrs[-1]).astype(np.uint32), ptrs

    good = np.array([0, 1, 3, 3, 4, 6, 7, 7, 9, 10, 11, 12, 12])
    for _ in range(4):     # eager, captured, replayed
        args = request(good)
        np.testing.assert_allclose(gpu.predict_array(*args), cpu.predict_array(*args), rtol=0, atol=1e-6)
    assert gpu._graph.captured() == {4: "graph"}
    before = gpu.embedding_cache.stats()
    arrays = [getattr(gpu.embedding_cache._tables[0], n).get() for n in ("keys", "stamps", "values", "sketch")]
    bad = [(request(np.array(ptrs)), "row_ptrs must be non-decreasing") for ptrs in (
        [0, 1, 3, 2, 4, 6, 7, 7, 9, 10, 11, 12, 12], [0, 1, -3, 3, 4, 6, 7, 7, 9, 10, 11, 12, 12],
        [0, 1, 3, 99, 4, 6, 7, 7, 9, 10, 11, 12, 12], [0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])]
    nan_dense = request(good)
    nan_dense[0][5] = np.nan
    reserved = request(good)
    reserved[1][11] = empty_key(np.uint32)
    bad += [(nan_dense, r"dense_feature\[5\] = nan"), (reserved, "is the reserved key")]
    for args, message in bad:
        with pytest.raises(PredictInputError, match=message):
            gpu.predict_array(*args)
        assert gpu.embedding_cache.stats() == before
        for name, want in zip(("keys", "stamps", "values", "sketch"), arrays):
            np.testing.assert_array_equal(getattr(gpu.embedding_cache._tables[0], name).get(), want, err_msg=name)
    for _ in range(2):
        args = request(good)
        np.testing.assert_allclose(gpu.predict_array(*args), cpu.predict_array(*args), rtol=0, atol=1e-6)
    assert gpu.embedding_cache.stats() == cpu.embedding_cache.stats()
