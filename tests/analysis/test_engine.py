"""Engine choice (cuml, else scikit-learn; CuPy or NumPy arrays), projections and nearest keys."""

import importlib.util

import numpy as np
import pytest

from hugectr_lab.analysis import get_analysis_engine, nearest_keys
from hugectr_lab.backend import get_backend

HAS_CUML = importlib.util.find_spec("cuml") is not None


@pytest.mark.skipif(HAS_CUML, reason="checks the answer where cuml is missing")
def test_auto_falls_back_to_scikit_learn_and_says_why(caplog):
    with caplog.at_level("INFO", logger="hugectr_lab"):
        engine = get_analysis_engine()
    assert engine.estimators == "scikit-learn" and engine.backend.name == "numpy"   # tests pin NumPy
    assert engine.name == "scikit-learn + numpy"
    assert str(engine) == engine.describe() == ("analysis engine: scikit-learn + numpy (cuml is not installed; "
                                                "PCA and kNN on numpy: $HUGECTR_LAB_BACKEND)")
    assert engine.describe() in caplog.text
    with pytest.raises(ImportError, match="estimators='cuml': cuml does not import .*docs/install.md"):
        get_analysis_engine("cuml")
    with pytest.raises(ValueError, match="estimators must be 'auto', 'cuml' or 'scikit-learn'"):
        get_analysis_engine("xgboost")
    assert get_analysis_engine(engine) is engine


def test_projections():
    engine = get_analysis_engine("scikit-learn", backend="numpy")
    x = np.random.default_rng(1).normal(size=(45, 6))
    assert "pca" in engine.projection_methods() and "tsne" in engine.projection_methods()
    np.testing.assert_allclose(engine.project(x, "pca"), engine.pca(x)[0])
    tsne = engine.project(x, "tsne", max_iter=250)
    assert tsne.shape == (45, 2) and np.isfinite(tsne).all()
    with pytest.raises(ValueError, match="method must be 'pca', 'umap' or 'tsne'"):
        engine.project(x, "isomap")


def test_nearest_keys_by_key():
    keys = np.array([7, 3, 11, 5], dtype=np.uint32)
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert [k for k, _ in nearest_keys(keys, vectors, 7, k=3)] == [3, 11, 5]
    (key, score), = nearest_keys(keys, vectors, 7, k=1, metric="euclidean")
    assert key == 3 and score == pytest.approx(np.hypot(0.1, 0.1))
    with pytest.raises(KeyError, match="key 8 is not in the table"):
        nearest_keys(keys, vectors, 8)


@pytest.mark.gpu
def test_cupy_engine_finds_the_same_neighbours_as_numpy():
    rng = np.random.default_rng(2)
    keys, vectors = np.arange(5003, dtype=np.int64) * 3, rng.normal(size=(5003, 17)).astype(np.float32)
    on_gpu = get_analysis_engine("scikit-learn", backend="cupy")
    on_cpu = get_analysis_engine("scikit-learn", backend=get_backend("numpy"))
    assert on_gpu.backend.name == "cupy"
    for key in (0, 3 * 2500, 3 * 5002):
        gpu, cpu = nearest_keys(keys, vectors, key, 9, engine=on_gpu), nearest_keys(keys, vectors, key, 9, engine=on_cpu)
        assert [k for k, _ in gpu] == [k for k, _ in cpu]
        np.testing.assert_allclose([s for _, s in gpu], [s for _, s in cpu], rtol=1e-9)
    np.testing.assert_allclose(on_gpu.pca(vectors, 2)[0], on_cpu.pca(vectors, 2)[0], rtol=1e-7, atol=1e-7)
