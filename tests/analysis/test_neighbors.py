"""PCA by SVD and nearest neighbours by GEMM + top-k: against scikit-learn and brute force on odd
sizes, and the CuPy run of the same code against the NumPy reference (gpu lane)."""

import numpy as np
import pytest

from hugectr_lab.analysis import nearest_neighbors, pca


def table(rows=37, dim=7, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, dim))


def test_pca_matches_scikit_learn():
    from sklearn.decomposition import PCA

    x = table(53, 9)
    projected, components, ratio = pca(np, x, 3)
    ref = PCA(3, svd_solver="full").fit(x)
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, rtol=1e-10)
    # each component is unique up to sign; ours makes the largest coefficient positive
    signs = np.sign(ref.components_[np.arange(3), np.abs(ref.components_).argmax(1)])
    np.testing.assert_allclose(components, ref.components_ * signs[:, None], atol=1e-10)
    np.testing.assert_allclose(projected, ref.transform(x) * signs, atol=1e-10)


def test_pca_with_fewer_rows_than_columns_and_bad_input():
    projected, components, ratio = pca(np, table(3, 11), 5)
    assert projected.shape == (3, 3) and components.shape == (3, 11)
    assert ratio.sum() == pytest.approx(1.0) and ratio[-1] == pytest.approx(0.0, abs=1e-12)   # 3 centred rows: rank 2
    with pytest.raises(ValueError, match="N >= 2 rows"):
        pca(np, np.ones((1, 4)))
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        pca(np, table(), 0)


def brute_force(t, q, k, metric, exclude=None):
    if metric == "cosine":
        score = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (t / np.linalg.norm(t, axis=1, keepdims=True)).T
    elif metric == "dot":
        score = q @ t.T
    else:
        score = -np.linalg.norm(q[:, None, :] - t[None, :, :], axis=2)
    if exclude is not None:
        score[np.arange(len(q)), exclude] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(len(t)), score.shape), -score), axis=1)[:, :k]
    picked = np.take_along_axis(score, order, axis=1)
    return order, (-picked if metric == "euclidean" else picked)


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_nearest_neighbors_match_brute_force(metric):
    t = table(41, 5)
    q = t[[3, 17, 40]] + 0.01
    index, score = nearest_neighbors(np, t, q, 6, metric)
    want_index, want_score = brute_force(t, q, 6, metric)
    np.testing.assert_array_equal(index, want_index)
    np.testing.assert_allclose(score, want_score, rtol=1e-9, atol=1e-9)
    own, _ = nearest_neighbors(np, t, t[[3, 17]], 4, metric, exclude=[3, 17])
    assert 3 not in own[0] and 17 not in own[1]
    np.testing.assert_array_equal(own, brute_force(t, t[[3, 17]], 4, metric, exclude=np.array([3, 17]))[0])


def test_ties_go_to_the_lower_index_and_k_is_capped():
    t = np.array([[1.0, 0], [0, 1], [1, 0], [1, 0], [0, 1]])
    index, score = nearest_neighbors(np, t, t[:1], 2, "dot", exclude=[0])
    np.testing.assert_array_equal(index, [[2, 3]])   # rows 2 and 3 tie with row 0's vector
    index, _ = nearest_neighbors(np, t, t[:1], 99, "cosine", exclude=[0])
    np.testing.assert_array_equal(index, [[2, 3, 1, 4]])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="metric must be one of"):
        nearest_neighbors(np, table(), table()[:1], 3, "manhattan")
    with pytest.raises(ValueError, match=r"must share E, got \(37, 7\) and \(1, 4\)"):
        nearest_neighbors(np, table(), np.ones((1, 4)), 3)


def test_cupy_runs_the_same_code(xp):
    """On odd sizes the CuPy run matches the NumPy reference (the xp fixture: numpy always, cupy on a GPU)."""
    t, q = table(1031, 13, seed=3), table(7, 13, seed=4)
    for metric in ("cosine", "dot", "euclidean"):
        ref_index, ref_score = nearest_neighbors(np, t, q, 11, metric, exclude=np.arange(7))
        index, score = nearest_neighbors(xp, xp.asarray(t), xp.asarray(q), 11, metric, exclude=xp.asarray(np.arange(7)))
        np.testing.assert_array_equal(to_numpy(index), ref_index)
        np.testing.assert_allclose(to_numpy(score), ref_score, rtol=1e-9, atol=1e-9)
    ref = pca(np, t, 3)
    for got, want in zip(pca(xp, xp.asarray(t), 3), ref):
        np.testing.assert_allclose(to_numpy(got), want, rtol=1e-8, atol=1e-8)


def to_numpy(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)
