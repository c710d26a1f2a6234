"""Embedding tables by key: the keys closest to a key."""

from __future__ import annotations

import numpy as np

from .engine import get_analysis_engine


def nearest_keys(keys, vectors, key, k=10, metric="cosine", engine=None):
    """The ``k`` keys whose vectors are closest to ``key``'s, closest first, as [(key, score)].

    ``keys`` (N,) and ``vectors`` (N, E): a table as ``SparseEmbedding.dump()`` gives it. ``score``:
    cosine similarity, inner product or Euclidean distance (``metric``). The key itself is left out.
    Raises KeyError naming the key when the table does not hold it."""
    keys = np.asarray(keys).reshape(-1)
    vectors = np.asarray(vectors)
    if len(keys) != len(vectors):
        raise ValueError(f"keys ({len(keys)}) and vectors ({len(vectors)}) must have one row per key")
    row = np.flatnonzero(keys == key)
    if row.size == 0:
        raise KeyError(f"key {key} is not in the table ({len(keys)} keys)")
    engine = get_analysis_engine("auto" if engine is None else engine)
    index, score = engine.nearest_neighbors(vectors, vectors[row[:1]], k, metric, exclude=row[:1])
    return [(keys[i].item(), float(s)) for i, s in zip(index[0], score[0])]
