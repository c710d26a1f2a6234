"""Baselines on the deep model's own features: does the DCN beat a linear model, a forest?

``FeatureEncoder`` turns ``Samples`` (labels, dense, one CSR per sparse input) into one sparse matrix
per split: the dense features standardised with the training split's mean and std, then one column
per distinct sparse key of the training split (one-hot; a key that occurs twice in a sample counts
2; keys unseen in training are dropped, like an out-of-vocabulary bucket). With ``n_buckets`` the keys
are hashed into that many buckets first (for vocabularies too large to keep one column per key).

``fit_baselines(train, val)`` fits a logistic regression and a random forest with the analysis engine
(cuml or scikit-learn) and reports each one's validation AUC (the exact AUC of ``hugectr_lab.metrics``,
the number the Session reports), ready to sit beside the deep model's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..data import DataReader32, DataReader64, Samples
from ..metrics import auc
from .engine import get_analysis_engine

MODELS = ("logistic regression", "random forest")
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)   # Fibonacci hashing: spreads consecutive keys over the buckets


class FeatureEncoder:
    """``FeatureEncoder(n_buckets=None).fit(train)``; ``transform(samples)`` → scipy CSR (N, D + C) float32."""

    def __init__(self, n_buckets=None):
        if n_buckets is not None and int(n_buckets) < 1:
            raise ValueError(f"n_buckets must be None or >= 1, got {n_buckets!r}")
        self.n_buckets = None if n_buckets is None else int(n_buckets)
        self.mean = self.std = self.columns = None

    def _ids(self, samples):
        """(sample row (K,), feature id (K,)) of every key of every sparse input; ids of input i are
        tagged with i so two inputs' equal keys stay apart."""
        n = len(samples)
        rows, ids = [], []
        for i, csr in enumerate(samples.sparse):
            slots = csr.num_rows // n if n else 0
            per_row = np.diff(csr.row_offsets)
            rows.append(np.repeat(np.arange(n * slots, dtype=np.int64) // max(slots, 1), per_row))
            keys = np.asarray(csr.keys).astype(np.uint64)
            if self.n_buckets is not None:
                with np.errstate(over="ignore"):
                    keys = (keys * _GOLDEN) % np.uint64(self.n_buckets)
            ids.append(keys.astype(np.int64) * len(samples.sparse) + i)
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(rows), np.concatenate(ids)

    def fit(self, train: Samples):
        if len(train) < 2:
            raise ValueError(f"the training split needs at least 2 samples, got {len(train)}")
        dense = train.dense.astype(np.float64)
        self.mean, self.std = dense.mean(axis=0), dense.std(axis=0)
        self.std[self.std == 0] = 1.0
        self.columns = np.unique(self._ids(train)[1])    # sorted feature ids seen in training
        return self

    @property
    def width(self):
        return len(self.mean) + len(self.columns)

    def transform(self, samples: Samples):
        from scipy import sparse

        if self.columns is None:
            raise RuntimeError("FeatureEncoder.transform before fit")
        n, d = len(samples), len(self.mean)
        if samples.dense.shape[1] != d:
            raise ValueError(f"samples have {samples.dense.shape[1]} dense features, the encoder was fitted on {d}")
        dense = ((samples.dense - self.mean) / self.std).astype(np.float32)
        rows, ids = self._ids(samples)
        where = np.searchsorted(self.columns, ids)
        known = (where < len(self.columns)) & (self.columns[np.minimum(where, len(self.columns) - 1)] == ids)
        onehot = sparse.csr_matrix((np.ones(int(known.sum()), np.float32), (rows[known], where[known])),
                                   shape=(n, len(self.columns)))   # duplicates add up
        return sparse.hstack([sparse.csr_matrix(dense), onehot], format="csr")


@dataclass(frozen=True)
class BaselineResult:
    name: str
    auc: float
    seconds: float
    scores: np.ndarray = field(default=None, repr=False, compare=False)   # (N_val,) predicted probabilities


@dataclass
class BaselineReport:
    """Validation AUCs of the baselines; ``engine`` names the library that fitted them."""

    engine: str
    train_samples: int
    val_samples: int
    features: int
    results: list = field(default_factory=list)

    @property
    def aucs(self) -> dict:
        return {r.name: r.auc for r in self.results}

    def to_json(self) -> dict:
        return {"engine": self.engine, "train_samples": self.train_samples, "val_samples": self.val_samples,
                "features": self.features, "auc": self.aucs,
                "seconds": {r.name: round(r.seconds, 3) for r in self.results}}

    def table(self, models=None) -> str:
        """A text table of the baselines, with ``models`` ({name: AUC}, e.g. the deep models) above them."""
        rows = [(name, value, "") for name, value in (models or {}).items()]
        rows += [(r.name, r.auc, f"{r.seconds:.1f} s") for r in self.results]
        width = max(len(name) for name, _, _ in rows)
        lines = [f"{'model':<{width}}  AUC     fit", *(f"{n:<{width}}  {a:.4f}  {s}" for n, a, s in rows)]
        return "\n".join(lines + [f"({self.engine}; {self.train_samples} training / {self.val_samples} validation "
                                  f"samples, {self.features} features)"])

    __str__ = table


def fit_baselines(train: Samples, val: Samples, *, engine=None, models=MODELS, n_buckets=None, seed=0,
                  params=None) -> BaselineReport:
    """Fit ``models`` (names from ``MODELS``) on ``train`` and report their AUC on ``val``.

    ``engine``: an ``AnalysisEngine`` or what ``get_analysis_engine`` takes (default "auto").
    ``params``: {model name: estimator keyword arguments}. Labels are the first label column (> 0.5 is
    a positive)."""
    engine = get_analysis_engine("auto" if engine is None else engine)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"models must be among {MODELS}, got {unknown}")
    for name, split in (("train", train), ("val", val)):
        labels = split.labels[:, 0] > 0.5
        if len(split) == 0 or labels.all() or not labels.any():
            raise ValueError(f"the {name} split needs samples of both classes, got {int(labels.sum())} positive "
                             f"of {len(split)}")
    encoder = FeatureEncoder(n_buckets).fit(train)
    x_train, x_val = encoder.transform(train), encoder.transform(val)
    y_train = (train.labels[:, 0] > 0.5).astype(np.int32)
    if engine.dense_input():
        x_train, x_val = x_train.toarray(), x_val.toarray()
    report = BaselineReport(engine.name, len(train), len(val), encoder.width)
    for name in models:
        kwargs = dict((params or {}).get(name, {}))
        model = (engine.logistic_regression(**kwargs) if name == "logistic regression"
                 else engine.tree_ensemble(seed=seed, **kwargs))
        start = time.perf_counter()
        model.fit(x_train, y_train)
        scores = model.predict_proba(x_val)
        scores = np.asarray(scores.get() if hasattr(scores, "get") else scores)[:, 1]
        report.results.append(BaselineResult(name, float(auc(scores, val.labels[:, 0])), time.perf_counter() - start,
                                             scores))
    return report


def read_samples(config, split="train", max_samples=None, batchsize=4096) -> Samples:
    """All samples (or the first ``max_samples``) of a config's training or evaluation source, in any
    format the Data layer names. ``config``: a path, JSON text, dict or ``ModelConfig``; relative paths
    in it are relative to the working directory, as in HugeCTR."""
    from ..config import parse_config

    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    cfg = config if hasattr(config, "data") else parse_config(config)
    cls = DataReader64 if getattr(cfg.solver, "input_key_type", "I32") == "I64" else DataReader32   # as the Session
    reader = cls.from_data_spec(cfg.data, batchsize, repeat=False, eval=split == "eval", seed=0)
    parts, total = [], 0
    try:
        reader.start()
        while max_samples is None or total < max_samples:
            batch = reader.read_a_batch()
            if batch is None or batch.size == 0:
                break
            parts.append(batch.take(0, batch.size))
            total += batch.size
    finally:
        reader.close()
    if not parts:
        raise ValueError(f"the {split} source of the config holds no samples")
    samples = Samples.concat(parts)
    return samples if max_samples is None else samples.take(0, min(max_samples, len(samples)))
