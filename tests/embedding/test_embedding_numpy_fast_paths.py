"""The NumPy backend's fast paths of the embedding ops against their plain definitions."""

import numpy as np
import pytest

from hugectr_lab.embedding.combine import (_stable_order, embedding_combine_fwd, embedding_reduce_grad,
                                           mean_row_scale)
from hugectr_lab.embedding.sparse_optimizers import _touched, sparse_adam_update
from hugectr_lab.rules.optimizers import adam_step_size


def combine_by_add_at(values, rows, row_offsets, row_scale):
    out = np.zeros((row_offsets.size - 1, values.shape[1]), np.float32)
    row_ids = np.repeat(np.arange(row_offsets.size - 1), np.diff(row_offsets))
    hit = rows >= 0
    np.add.at(out, row_ids[hit], values[rows[hit]])
    return out if row_scale is None else out * row_scale[:, None]


@pytest.mark.parametrize("mean", [False, True])
@pytest.mark.parametrize("one_hot", [True, False])
def test_combine_equals_add_at(one_hot, mean):
    rng = np.random.default_rng(1)
    counts = np.ones(301, np.int64) if one_hot else rng.integers(0, 3, 301)
    row_offsets = np.concatenate([[0], np.cumsum(counts)])
    values = rng.normal(size=(41, 7)).astype(np.float32)
    rows = rng.integers(-1, 41, row_offsets[-1])                   # -1: a key without a row
    scale = mean_row_scale(np, counts) if mean else None
    got = embedding_combine_fwd(np, values, rows, row_offsets, scale, np.float32)
    want = combine_by_add_at(values, rows, row_offsets, scale)
    if one_hot:
        np.testing.assert_array_equal(got, want)                  # one key per row: a gather, exactly
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_stable_order_is_the_stable_argsort():
    rng = np.random.default_rng(2)
    for n, bound in ((0, 1), (1, 1), (1000, 7), (26624, 9000)):
        ids = rng.integers(0, bound, n)
        np.testing.assert_array_equal(_stable_order(ids, bound), np.argsort(ids, kind="stable"))


def test_reduce_grad_sums_each_keys_occurrences_in_order():
    rng = np.random.default_rng(3)
    wgrad = rng.normal(size=(50, 4)).astype(np.float32)
    row_ids, inverse = rng.integers(0, 50, 200), rng.integers(-1, 30, 200)
    want = np.zeros((30, 4), np.float32)
    for k in range(200):                                          # occurrence order, float32 adds
        if inverse[k] >= 0:
            want[inverse[k]] += wgrad[row_ids[k]]
    np.testing.assert_allclose(embedding_reduce_grad(np, wgrad, row_ids, inverse, 30, 2.0), want / 2,
                               rtol=1e-6, atol=1e-6)


def test_touched_rows_are_views_when_the_padding_is_a_suffix():
    g = np.arange(12.0).reshape(6, 2)
    rows, grads = _touched(np.array([4, 0, 2, -1, -1, -1]), g)
    assert np.shares_memory(grads, g) and rows.tolist() == [4, 0, 2]
    rows, grads = _touched(np.array([4, -1, 2, -1, 1, -1]), g)
    assert rows.tolist() == [4, 2, 1] and grads.tolist() == [[0, 1], [4, 5], [8, 9]]


def test_sparse_adam_update_follows_the_formula():
    rng = np.random.default_rng(4)
    values, m = rng.normal(size=(20, 3)).astype(np.float32), rng.normal(size=(20, 3)).astype(np.float32)
    v = np.abs(rng.normal(size=(20, 3))).astype(np.float32)
    rows, g = np.array([3, 7, 11, -1]), rng.normal(size=(4, 3)).astype(np.float32)
    w0, m0, v0 = values.copy(), m.copy(), v.copy()
    sparse_adam_update(np, values, m, v, rows, g, lr=0.01, beta1=0.9, beta2=0.999, epsilon=1e-7, step=3)
    r = rows[:3]
    m_r = 0.9 * m0[r] + (1 - 0.9) * g[:3]
    v_r = 0.999 * v0[r] + (1 - 0.999) * g[:3] * g[:3]
    np.testing.assert_array_equal(m[r], m_r)
    np.testing.assert_array_equal(v[r], v_r)
    np.testing.assert_array_equal(values[r], w0[r] - adam_step_size(0.01, 0.9, 0.999, 3) * m_r / (np.sqrt(v_r) + 1e-7))
    untouched = np.setdiff1d(np.arange(20), r)
    np.testing.assert_array_equal(values[untouched], w0[untouched])


def test_atomic_sgd_equals_add_at_bit_for_bit():
    from hugectr_lab.embedding.sparse_optimizers import sparse_sgd_atomic_update

    rng = np.random.default_rng(5)
    values = rng.normal(size=(40, 6)).astype(np.float32)
    rows = np.minimum(rng.zipf(1.3, 500), 40) - 1                 # repeated rows, some run long
    rows[::9] = -1
    row_ids, wgrad = rng.integers(0, 100, 500), rng.normal(size=(100, 6)).astype(np.float32)
    want = values.copy()
    hit = rows >= 0
    np.add.at(want, rows[hit], -0.25 * wgrad[row_ids[hit]])
    sparse_sgd_atomic_update(np, values, rows, row_ids, wgrad, 0.25)
    np.testing.assert_array_equal(values, want)


@pytest.mark.parametrize("dtype", [np.uint32, np.int64])
def test_first_occurrences_equal_uniques_first_index(dtype):
    from hugectr_lab.embedding.hash_table import first_occurrences

    rng = np.random.default_rng(6)
    for n in (1, 2, 9, 3000):
        keys = rng.integers(0, max(2, n // 3), n).astype(dtype)
        keys[::4] = np.iinfo(dtype).max                           # the padding key repeats too
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        np.testing.assert_array_equal(first_occurrences(np, keys), first[inverse])
