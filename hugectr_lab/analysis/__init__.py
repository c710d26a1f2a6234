"""Analysis next to the deep model: baselines on the same features, projections of embedding tables
and nearest neighbours of a key.

* ``get_analysis_engine(estimators="auto", backend=None)`` -> ``AnalysisEngine``: RAPIDS cuml when it
  imports, else scikit-learn (CPU), for the estimators; PCA by SVD and kNN by GEMM + top-k run on the
  backend's arrays (CuPy on a usable GPU, else NumPy). ``print(engine)`` says which and why.
* ``fit_baselines(train, val)`` -> ``BaselineReport``: logistic regression and random forest AUCs on
  the dense features + one-hot sparse keys (``FeatureEncoder``); ``read_samples(config, split)``
  reads a config's data in any format.
* ``engine.project(vectors, "pca" | "umap" | "tsne")``; ``engine.nearest_neighbors(table, queries, k)``,
  and ``nearest_keys(keys, vectors, key, k)`` for "keys closest to this key".

The array functions ``neighbors.pca`` and ``neighbors.nearest_neighbors`` take ``xp`` first: NumPy is
the reference, CuPy runs the same code (parity tests in tests/analysis). Needs scikit-learn for the
baselines (``pip install "hugectr-lab[analysis]"``); cuml: docs/install.md.
"""

from .baselines import MODELS, BaselineReport, BaselineResult, FeatureEncoder, fit_baselines, read_samples
from .engine import AnalysisEngine, get_analysis_engine
from .neighbors import METRICS, nearest_neighbors, pca
from .tables import nearest_keys

__all__ = ["MODELS", "BaselineReport", "BaselineResult", "FeatureEncoder", "fit_baselines", "read_samples",
           "AnalysisEngine", "get_analysis_engine", "METRICS", "nearest_neighbors", "pca", "nearest_keys"]
