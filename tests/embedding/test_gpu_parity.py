"""GPU lane: the CuPy backend trains every embedding type to the same tables as NumPy."""

import numpy as np
import pytest
from embedding_cases import ALL_TYPES, batch_for, make_embedding, sorted_dump

from hugectr_lab.backend import get_backend
from hugectr_lab.embedding import SparseAdam, SparseSGD


@pytest.mark.gpu
@pytest.mark.parametrize("cls", ALL_TYPES)
def test_cupy_matches_numpy(cls):
    results = []
    for backend in ("numpy", "cupy"):
        rng = np.random.default_rng(0)
        one_hot = cls.__name__.endswith("OneHot")
        optimizer = SparseSGD(0.1, atomic_update=True) if one_hot else SparseAdam(0.05, "LazyGlobal")
        emb = make_embedding(cls, G=2, combiner="mean", optimizer=optimizer, backend=get_backend(backend), seed=3)
        outputs = []
        for _ in range(3):
            row_offsets, keys = batch_for(cls, rng, 8)
            out = emb.forward(row_offsets, keys)
            outputs.append(np.concatenate([emb.backend.to_host(o) for o in out]))
            emb.backward([rng.standard_normal(o.shape).astype(np.float32) for o in out])
            emb.update()
        results.append((outputs, sorted_dump(emb)))
    (out_np, dump_np), (out_cp, dump_cp) = results
    for a, b in zip(out_np, out_cp):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(dump_cp[0], dump_np[0])
    np.testing.assert_allclose(dump_cp[1], dump_np[1], rtol=1e-5, atol=1e-6)
