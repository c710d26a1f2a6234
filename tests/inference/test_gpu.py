"""GPU lane: the embedding-cache kernels against their NumPy references on random streams, and
predict on the CuPy backend against the NumPy backend (``pytest -m gpu``)."""

import sys

import numpy as np
import pytest

from hugectr_lab.backend import get_backend
from hugectr_lab.inference import CreateEmbeddingCache, CreateParameterServer, InferenceSession, predict_inputs
from hugectr_lab.inference.cache_ops import WAYS, empty_key
from inference_helpers import SESSION_TESTS, Trained, sample_config

sys.path.insert(0, str(SESSION_TESTS))
from session_helpers import dnn_config  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("key_type", ["I32", "I64"])
@pytest.mark.parametrize("vec, num_sets", [(1, 1), (5, 3), (16, 37), (33, 8)])
def test_cache_kernels_equal_the_references_on_a_stream(key_type, vec, num_sets):
    import cupy

    from hugectr_lab.inference import cuda_cache  # noqa: F401
    dtype = np.dtype(np.uint32 if key_type == "I32" else np.int64)
    ref, gpu = get_backend("numpy").ops, get_backend("cupy").ops
    assert gpu.implementation("embedding_cache_query") == "kernel"
    size = num_sets * WAYS
    host = [np.full(size, empty_key(dtype), dtype), np.zeros(size, np.int64), np.zeros((size, vec), np.float32)]
    dev = [cupy.asarray(a) for a in host]
    rng = np.random.default_rng(vec * 1000 + num_sets)
    for now in range(1, 25):
        ranks = np.floor(rng.pareto(1.1, 700) * 40).astype(np.int64) % 5000
        keys = np.unique((ranks * 2654435761 - 2 ** 31 if dtype == np.int64 else ranks * 7919).astype(dtype))
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


def _session(config, backend, percentage=0.3):
    ps = CreateParameterServer([config], ["m"], False)
    return InferenceSession(config, 0, CreateEmbeddingCache(ps, 0, True, percentage, config, "m", False,
                                                            backend=backend))


@pytest.mark.parametrize("model", ["dcn", "wdl", "deepfm", "dnn-fp16"])
def test_predict_on_cupy_equals_numpy(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if model == "dnn-fp16":
        trained = Trained(dnn_config(batchnorm=True, combiner=1), steps=3, mixed=True, max_nnz=2)
    else:
        trained = Trained(sample_config(model), steps=3)
    config = trained.write_inference_config(max_batchsize=128)
    inputs = predict_inputs(trained.eval_samples())
    cpu, gpu = _session(config, "numpy"), _session(config, "cupy")
    assert gpu.backend.name == "cupy"
    for _ in range(2):   # a cold and a warm cache
        want = np.array(cpu.predict(*inputs[:3]), np.float32)
        got = np.array(gpu.predict(*inputs[:3]), np.float32)
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-3 if model == "dnn-fp16" else 2e-5)
    # The cache kernels are deterministic: both backends saw the same hits, insertions and evictions.
    assert cpu.embedding_cache.stats() == gpu.embedding_cache.stats()
    trained.close()
