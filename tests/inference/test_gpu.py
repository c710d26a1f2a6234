"""GPU lane: the embedding-cache kernels against their NumPy references on random streams, and
predict on the CuPy backend against the NumPy backend (``pytest -m gpu``)."""

import sys

import numpy as np
import pytest

from hugectr_lab.backend import get_backend
from hugectr_lab.inference import predict_inputs
from hugectr_lab.inference.cache_ops import WAYS, empty_key
from inference_helpers import SESSION_TESTS, Trained, open_session, predict_from_threads, run_predict, sample_config

sys.path.insert(0, str(SESSION_TESTS))
from session_helpers import dnn_config  # noqa: E402

pytestmark = pytest.mark.gpu


def _empty_caches(key_type, vec, num_sets, op):
    """The NumPy and CuPy ops (``op`` must run as a kernel) and one empty cache for each, ``[keys (C,),
    stamps (C,), values (C, vec)]`` on the host and on the device, and the key dtype."""
    import cupy

    from hugectr_lab.inference import cuda_cache  # noqa: F401  (registers the kernels)
    dtype = np.dtype(np.uint32 if key_type == "I32" else np.int64)
    ref, gpu = get_backend("numpy").ops, get_backend("cupy").ops
    assert gpu.implementation(op) == "kernel"
    size = num_sets * WAYS
    host = [np.full(size, empty_key(dtype), dtype), np.zeros(size, np.int64), np.zeros((size, vec), np.float32)]
    return ref, gpu, host, [cupy.asarray(a) for a in host], dtype


def _lookup_keys(rng, dtype):
    """One lookup's distinct keys: 700 Pareto-distributed draws over 5000 ranks, spread over the key range."""
    ranks = np.floor(rng.pareto(1.1, 700) * 40).astype(np.int64) % 5000
    return np.unique((ranks * 2654435761 - 2 ** 31 if dtype == np.int64 else ranks * 7919).astype(dtype))


@pytest.mark.parametrize("key_type", ["I32", "I64"])
@pytest.mark.parametrize("vec, num_sets", [(1, 1), (5, 3), (16, 37), (33, 8)])
def test_cache_kernels_equal_the_references_on_a_stream(key_type, vec, num_sets):
    import cupy

    ref, gpu, host, dev, dtype = _empty_caches(key_type, vec, num_sets, "embedding_cache_query")
    rng = np.random.default_rng(vec * 1000 + num_sets)
    for now in range(1, 25):
        keys = _lookup_keys(rng, dtype)
        values, slots = ref.embedding_cache_query(*host, keys, now)
        d_values, d_slots = gpu.embedding_cache_query(*dev, cupy.asarray(keys), now)
        np.testing.assert_array_equal(d_slots.get(), slots)
        np.testing.assert_array_equal(d_values.get(), values)
        np.testing.assert_array_equal(dev[1].get(), host[1])
        miss = keys[slots < 0]
        vectors = rng.standard_normal((miss.size, vec)).astype(np.float32)
        out = ref.embedding_cache_insert(*host, miss, vectors, now)
        d_out = gpu.embedding_cache_insert(*dev, cupy.asarray(miss), cupy.asarray(vectors), now)
        for a, b in zip(d_out, out):
            np.testing.assert_array_equal(a.get(), b)
        for a, b in zip(dev, host):
            np.testing.assert_array_equal(a.get(), b)
    np.testing.assert_array_equal(gpu.embedding_cache_set_index(cupy.asarray(keys), num_sets).get(),
                                  ref.embedding_cache_set_index(keys, num_sets))


@pytest.mark.parametrize("model", ["dcn", "wdl", "deepfm", "dnn-fp16"])
def test_predict_on_cupy_equals_numpy(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if model == "dnn-fp16":
        trained = Trained(dnn_config(batchnorm=True, combiner=1), steps=3, mixed=True, max_nnz=2)
    else:
        trained = Trained(sample_config(model), steps=3)
    config = trained.write_inference_config(max_batchsize=128)
    inputs = predict_inputs(trained.eval_samples())
    cpu, gpu = (open_session(config, percentage=0.3, backend=name) for name in ("numpy", "cupy"))
    assert gpu.backend.name == "cupy"
    for _ in range(2):   # a cold and a warm cache
        want = np.array(cpu.predict(*inputs[:3]), np.float32)
        got = np.array(gpu.predict(*inputs[:3]), np.float32)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-3 if model == "dnn-fp16" else 2e-5)
    # The cache kernels are deterministic: both backends saw the same hits, insertions and evictions.
    assert cpu.embedding_cache.stats() == gpu.embedding_cache.stats()
    trained.close()


@pytest.mark.parametrize("key_type", ["I32", "I64"])
@pytest.mark.parametrize("vec, num_sets, width", [(1, 1, 64), (5, 3, 128), (16, 37, 1 << 12)])
def test_tinylfu_kernels_equal_the_references_on_a_stream(key_type, vec, num_sets, width):
    import cupy

    ref, gpu, host, dev, dtype = _empty_caches(key_type, vec, num_sets, "embedding_cache_insert_tinylfu")
    sketch, d_sketch = np.zeros((4, width), np.uint32), cupy.zeros((4, width), np.uint32)
    rng = np.random.default_rng(vec * 1000 + num_sets)
    for now in range(1, 31):
        keys = _lookup_keys(rng, dtype)
        values, slots = ref.embedding_cache_query(*host, keys, now)
        gpu.embedding_cache_query(*dev, cupy.asarray(keys), now)
        halve = now % 7 == 0
        ref.embedding_cache_sketch_update(sketch, keys, halve)
        gpu.embedding_cache_sketch_update(d_sketch, cupy.asarray(keys), halve)
        np.testing.assert_array_equal(d_sketch.get(), sketch)
        np.testing.assert_array_equal(gpu.embedding_cache_frequency(d_sketch, cupy.asarray(keys)).get(),
                                      ref.embedding_cache_frequency(sketch, keys))
        miss = keys[slots < 0]
        vectors = rng.standard_normal((miss.size, vec)).astype(np.float32)
        out = ref.embedding_cache_insert_tinylfu(*host, sketch, miss, vectors, now)
        d_out = gpu.embedding_cache_insert_tinylfu(*dev, d_sketch, cupy.asarray(miss), cupy.asarray(vectors), now)
        for a, b in zip(d_out, out):
            np.testing.assert_array_equal(a.get(), b)
        for a, b in zip(dev, host):
            np.testing.assert_array_equal(a.get(), b)


def _policy_session(config, backend, policy, percentage, graph=True):
    import json
    obj = json.loads(open(config).read())
    obj["inference"]["cuda_graph"] = graph
    config = config.replace(".json", "_graph.json" if graph else "_eager.json")
    open(config, "w").write(json.dumps(obj))
    return open_session(config, percentage=percentage, backend=backend, cache_policy=policy)


@pytest.mark.parametrize("model", ["dcn", "wdl"])
@pytest.mark.parametrize("policy", ["lru", "tinylfu"])
def test_graph_path_equals_the_eager_path_and_numpy(model, policy, tmp_path, monkeypatch):
    """The captured predict path: same predictions, statistics and cache contents as NumPy's eager path,
    over buckets of several sizes, a request split in chunks and a cache that evicts."""
    monkeypatch.chdir(tmp_path)
    trained = Trained(sample_config(model), steps=3)
    config = trained.write_inference_config(max_batchsize=256)
    samples = trained.eval_samples()
    cpu = _policy_session(config, "numpy", policy, 0.05)
    gpu = _policy_session(config, "cupy", policy, 0.05)
    eager = _policy_session(config, "cupy", policy, 0.05, graph=False)
    assert gpu._graph is not None and eager._graph is None
    for start, size in [(0, 1), (1, 3), (4, 64), (68, 256), (324, 300), (0, 1), (624, 64), (700, 200), (0, 1024)]:
        inputs = predict_inputs(samples.take(start, start + size))
        want = np.asarray(cpu.predict(*inputs[:3]), np.float32)
        np.testing.assert_allclose(np.asarray(gpu.predict(*inputs[:3]), np.float32), want, rtol=0, atol=2e-5)
        np.testing.assert_allclose(np.asarray(eager.predict(*inputs[:3]), np.float32), want, rtol=0, atol=2e-5)
        assert gpu.embedding_cache.stats() == cpu.embedding_cache.stats() == eager.embedding_cache.stats()
    for t in range(cpu.embedding_cache.num_tables):
        np.testing.assert_array_equal(gpu.embedding_cache.cached_keys(t), cpu.embedding_cache.cached_keys(t))
    assert cpu.embedding_cache.stats()[0].evictions > 0
    assert all(b.call.graph is not None for b in gpu._graph.buckets.values() if b.call.calls > 1)
    trained.close()


def test_predict_from_several_threads_on_cupy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained = Trained(sample_config("dcn"), steps=2)
    config = trained.write_inference_config(max_batchsize=64)
    samples = trained.eval_samples()
    requests = [predict_inputs(samples.take(s, s + n)) for s, n in zip(range(0, 1024, 40), [1, 7, 64, 33, 100] * 6)]
    want = [run_predict(open_session(config, percentage=0.3, backend="numpy"), r) for r in requests]
    got = predict_from_threads(open_session(config, percentage=0.3, backend="cupy"), requests)
    for i, w in enumerate(want):
        np.testing.assert_allclose(got[i], w, rtol=0, atol=2e-5)
    trained.close()
