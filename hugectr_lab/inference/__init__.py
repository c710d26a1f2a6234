"""Inference: a host parameter server, a per-device embedding cache, and InferenceSession.predict.

HugeCTR v3.0's ``hugectr.inference`` API (spec 9), on the NumPy backend (anywhere) and the CuPy
backend (the cache's kernels in ``kernels/embedding_cache.cu``)::

    ps = CreateParameterServer([config], [name], False)
    cache = CreateEmbeddingCache(ps, 0, True, 0.2, config, name, False)
    session = InferenceSession(config, 0, cache)
    predictions = session.predict(dense_features, embedding_columns, row_ptrs)

``CreateEmbeddingCache`` and ``InferenceSession`` take ``backend=`` ("auto" by default -- CuPy where a
usable GPU is, else NumPy -- or from ``HUGECTR_LAB_BACKEND``, "numpy", "cupy"). Cache statistics: ``cache.stats()`` and the
``CacheStats`` events on ``cache.events``. See docs/inference.md.
"""

import enum

from ..events import CacheStats
from . import cache_ops, graph_ops  # noqa: F401  (register the cache's and the predict graph's reference ops)
from .cache import EmbeddingCache, TableLookup
from .configs import inference_config
from .data_file import PredictInputs, predict_inputs, read_inference_data, write_inference_data
from .parameter_server import EmbeddingTable, InferenceConfigError, ParameterServer
from .session import InferenceSession, PredictInputError

InferType = enum.Enum("InferType", [("Triton", 0), ("Other", 1)], module=__name__)

# HugeCTR's class names for the objects the factories return.
ParameterServerBase = ParameterServer
EmbeddingCacheInterface = EmbeddingCache


def CreateParameterServer(model_config_path, model_name, i64_input_key):
    """A ``ParameterServer`` holding the embedding tables of every model (configs and names in one order)."""
    return ParameterServer(model_config_path, model_name, i64_input_key)


def CreateEmbeddingCache(parameter_server, cuda_dev_id, use_gpu_embedding_cache, cache_size_percentage,
                         model_config_path, model_name, i64_input_key, *, backend=None, cache_policy=None):
    """An ``EmbeddingCache`` for one model of ``parameter_server`` on device ``cuda_dev_id``
    (``cache_policy``: "lru", "tinylfu", or None for the config's ``inference.cache_policy``)."""
    return EmbeddingCache(parameter_server, cuda_dev_id, use_gpu_embedding_cache, cache_size_percentage,
                          model_config_path, model_name, i64_input_key, backend=backend, cache_policy=cache_policy)


__all__ = [
    "CreateParameterServer", "CreateEmbeddingCache", "InferenceSession", "InferType", "ParameterServer",
    "ParameterServerBase", "EmbeddingCache", "EmbeddingCacheInterface", "EmbeddingTable", "TableLookup",
    "CacheStats", "InferenceConfigError", "PredictInputError", "PredictInputs", "predict_inputs",
    "read_inference_data", "write_inference_data", "inference_config",
]
