"""Which library does the analysis: ``AnalysisEngine`` and ``get_analysis_engine``.

* estimators (the baselines' logistic regression and tree ensemble, UMAP, t-SNE): RAPIDS cuml when
  it imports (its estimators share scikit-learn's API and run on the GPU), else scikit-learn on the
  CPU (UMAP from umap-learn where installed);
* the simple parts, PCA by SVD and nearest neighbours by GEMM + top-k (``neighbors``): NumPy, or the
  same code on CuPy arrays where the backend is CuPy (a usable GPU: the Session's "auto" rule).

``str(engine)`` / ``engine.describe()`` says what was chosen and why; ``get_analysis_engine`` logs it.
"""

from __future__ import annotations

import importlib
import logging

import numpy as np

from ..backend import get_backend
from . import neighbors

_log = logging.getLogger("hugectr_lab")
ESTIMATORS = ("cuml", "scikit-learn")


def _importable(module):
    """(True, "") or (False, why not)."""
    try:
        importlib.import_module(module)
        return True, ""
    except Exception as exc:  # cuml raises more than ImportError where CUDA is missing
        return False, f"{module} does not import ({type(exc).__name__}: {exc})"


class AnalysisEngine:
    """``estimators``: "cuml" or "scikit-learn"; ``backend``: the Backend whose ``xp`` runs PCA and the
    nearest-neighbour search; ``reason``: how both were chosen."""

    def __init__(self, estimators, backend, reason):
        if estimators not in ESTIMATORS:
            raise ValueError(f"estimators must be one of {', '.join(ESTIMATORS)}, got {estimators!r}")
        self.estimators, self.backend, self.reason = estimators, backend, reason

    @property
    def name(self):
        """e.g. "scikit-learn + numpy" (estimators + the array module of PCA and kNN)."""
        return f"{self.estimators} + {self.backend.name}"

    def describe(self):
        return f"analysis engine: {self.name} ({self.reason})"

    __str__ = describe

    def __repr__(self):
        return f"<AnalysisEngine {self.name}>"

    # ---- estimators --------------------------------------------------------------------------

    def _module(self, sklearn_path, cuml_path):
        path = cuml_path if self.estimators == "cuml" else sklearn_path
        module, _, name = path.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError:
            hint = "see docs/install.md" if self.estimators == "cuml" else 'pip install "hugectr-lab[analysis]"'
            raise ImportError(f"{path} needs {self.estimators} ({hint})") from None

    def logistic_regression(self, **params):
        cls = self._module("sklearn.linear_model.LogisticRegression", "cuml.linear_model.LogisticRegression")
        return cls(**{"C": 1.0, "max_iter": 500, **params})

    def tree_ensemble(self, seed=0, **params):
        """A random forest (scikit-learn's or cuml's)."""
        cls = self._module("sklearn.ensemble.RandomForestClassifier", "cuml.ensemble.RandomForestClassifier")
        defaults = {"n_estimators": 100, "min_samples_leaf": 5, "random_state": seed}
        if self.estimators == "scikit-learn":
            defaults["n_jobs"] = -1
        return cls(**{**defaults, **params})

    def dense_input(self):
        """Whether the estimators need dense feature matrices (cuml's forest does)."""
        return self.estimators == "cuml"

    # ---- projections and neighbours ------------------------------------------------------------

    def pca(self, x, n_components=2):
        """``neighbors.pca`` on this engine's arrays; host (NumPy) results."""
        out = neighbors.pca(self.backend.xp, self.backend.asarray(x), n_components)
        return tuple(self.backend.to_host(a) for a in out)

    def nearest_neighbors(self, table, queries, k=10, metric="cosine", exclude=None):
        """``neighbors.nearest_neighbors`` on this engine's arrays; host (NumPy) results."""
        xp = self.backend.xp
        out = neighbors.nearest_neighbors(xp, self.backend.asarray(table), self.backend.asarray(queries), k, metric,
                                          None if exclude is None else self.backend.asarray(exclude))
        return tuple(self.backend.to_host(a) for a in out)

    def projection_methods(self):
        """The 2-D projections available here: "pca" always, "umap" and "tsne" where a library has them."""
        methods = ["pca"]
        if self.estimators == "cuml" or _importable("umap")[0]:
            methods.append("umap")
        if self.estimators == "cuml" or _importable("sklearn.manifold")[0]:
            methods.append("tsne")
        return methods

    def project(self, x, method="pca", n_components=2, seed=0, **params):
        """``x`` (N, D) → (N, n_components) float64 host array by "pca", "umap" or "tsne" (``params`` go to
        the UMAP / t-SNE estimator, e.g. ``max_iter``)."""
        if method == "pca":
            return self.pca(x, n_components)[0]
        if method not in ("umap", "tsne"):
            raise ValueError(f"method must be 'pca', 'umap' or 'tsne', got {method!r}")
        if method not in self.projection_methods():
            raise ImportError(f"{method} needs cuml or {'umap-learn' if method == 'umap' else 'scikit-learn'}")
        x = np.asarray(x, dtype=np.float32)
        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
        if self.estimators == "cuml":
            import cuml

            model = (cuml.UMAP(n_components=n_components, random_state=seed, **params) if method == "umap" else
                     cuml.TSNE(n_components=n_components, **{"perplexity": perplexity, "random_state": seed, **params}))
        elif method == "umap":
            import umap

            model = umap.UMAP(n_components=n_components, random_state=seed, **params)
        else:
            from sklearn.manifold import TSNE

            model = TSNE(n_components=n_components, **{"perplexity": perplexity, "init": "pca", "random_state": seed,
                                                       **params})
        out = model.fit_transform(x)
        return np.asarray(out.get() if hasattr(out, "get") else out, dtype=np.float64)


def get_analysis_engine(estimators="auto", backend=None) -> AnalysisEngine:
    """The engine for ``estimators`` ("auto": cuml when it imports, else scikit-learn; or either by name)
    and ``backend`` (the Session's rule: None/"auto" = CuPy on a usable GPU, else NumPy, or
    ``$HUGECTR_LAB_BACKEND``; a Backend object is used as is). Logs which and why."""
    if isinstance(estimators, AnalysisEngine):
        return estimators
    backend = get_backend(backend)
    if estimators == "auto":
        ok, why = _importable("cuml")
        estimators, reason = ("cuml", "cuml imports") if ok else ("scikit-learn", why.replace(" does not import",
                                                                                                " is not usable"))
        if not ok and "No module named" in why:
            reason = "cuml is not installed"
    elif estimators in ESTIMATORS:
        ok, why = _importable("cuml" if estimators == "cuml" else "sklearn")
        if not ok:
            raise ImportError(f"estimators={estimators!r}: {why} (docs/install.md)")
        reason = "asked for"
    else:
        raise ValueError(f"estimators must be 'auto', 'cuml' or 'scikit-learn', got {estimators!r}")
    engine = AnalysisEngine(estimators, backend, f"{reason}; PCA and kNN on {backend.name}: {backend.reason}")
    _log.info("%s", engine.describe())
    return engine
