"""HugeCTR v3.0's "preview" high-level API: ``Model(solver_parser, opt_params)`` with ``Input``,
``SparseEmbedding``, ``DenseLayer`` and ``optimizer.CreateOptimizer`` -- the binding's keywords and
defaults, including its documented differences from the JSON defaults (``CreateOptimizer``:
``update_type=Global`` and ``atomic_update=True``; ``Input``: ``float_label_dense=True``).

    solver = hugectr.solver_parser_helper(batchsize=512, max_iter=1000, display=100, eval_interval=500)
    optimizer = hugectr.optimizer.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.Adam, use_mixed_precision=False)
    model = hugectr.Model(solver, optimizer)
    model.add(hugectr.Input(...)); model.add(hugectr.SparseEmbedding(...)); model.add(hugectr.DenseLayer(...))
    model.compile(); model.summary(); model.fit()
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import EMBEDDING_TYPES, OPTIMIZER_TYPES, UPDATE_TYPES, OptimizerSpec, SolverParser
from ..config.parse_data import FORMAT_KEYS
from .layers import enum_name, name_list
from .model import ModelBase

_REQUIRED = object()


def _require(what, **values):
    missing = [k for k, v in values.items() if v is _REQUIRED]
    if missing:
        raise TypeError(f"{what} missing required argument(s): {', '.join(missing)}")


@dataclass(frozen=True)
class OptParamsBase:
    """What ``optimizer.CreateOptimizer`` returns: the optimizer spec, its schedule and the precision."""

    spec: OptimizerSpec
    schedule: dict = field(default_factory=dict)
    use_mixed_precision: bool = False

    @property
    def optimizer_type(self):
        return self.spec.type

    @property
    def learning_rate(self):
        return self.spec.learning_rate


def optimizer_spec(optimizer_type, update_type, *, what, **hparams) -> OptimizerSpec:
    return OptimizerSpec(type=enum_name(optimizer_type, f"{what}(optimizer_type=...)", OPTIMIZER_TYPES),
                         update_type=enum_name(update_type, f"{what}(update_type=...)", UPDATE_TYPES), **hparams)


def CreateOptimizer(optimizer_type="Adam", update_type="Global", learning_rate=0.001, warmup_steps=1, decay_start=0,
                    decay_steps=1, decay_power=2.0, end_lr=0.0, beta1=0.9, beta2=0.999, epsilon=1e-7,
                    momentum_factor=0.0, atomic_update=True, use_mixed_precision=_REQUIRED):
    """``hugectr.optimizer.CreateOptimizer`` (v3.0): ``momentum_factor`` is MomentumSGD's factor and Nesterov's mu;
    ``use_mixed_precision`` is required and must equal the solver's."""
    _require("CreateOptimizer()", use_mixed_precision=use_mixed_precision)
    schedule = dict(warmup_steps=warmup_steps, decay_start=decay_start, decay_steps=decay_steps,
                    decay_power=decay_power, end_lr=end_lr)
    spec = optimizer_spec(optimizer_type, update_type, what="CreateOptimizer", learning_rate=learning_rate,
                          beta1=beta1, beta2=beta2, epsilon=epsilon, momentum_factor=momentum_factor,
                          atomic_update=atomic_update, **schedule)
    return OptParamsBase(spec, {"base_lr": learning_rate, **schedule}, bool(use_mixed_precision))


def data_layer_json(data_reader_type, source, eval_source, check_type, cache_eval_data, label_dim, label_name,
                    dense_dim, dense_name, num_samples, eval_num_samples, float_label_dense, num_workers,
                    slot_size_array, sparse) -> dict:
    """The Data layer's JSON from the reader arguments of either version; only the keys its format reads."""
    fmt = enum_name(data_reader_type, "data_reader_type", ("Norm", "Raw", "Parquet"))
    check = enum_name(check_type, "check_type", ("Sum", "Non", "None"))
    obj = {"name": "data", "type": "Data", "format": fmt, "source": source, "eval_source": eval_source,
           "check": "None" if check == "Non" else check, "cache_eval_data": cache_eval_data,
           "num_samples": num_samples, "eval_num_samples": eval_num_samples,
           "float_label_dense": float_label_dense, "num_workers": num_workers,
           "slot_size_array": list(slot_size_array) or None}
    if fmt == "Parquet":   # HugeCTR forces one worker per local GPU
        obj.pop("num_workers")
    obj = {k: v for k, v in obj.items() if k in ("type", *FORMAT_KEYS[fmt]) and v is not None}
    return {**obj, "label": {"top": label_name, "label_dim": label_dim},
            "dense": {"top": dense_name, "dense_dim": dense_dim}, "sparse": sparse}


class Input:
    """``hugectr.Input`` (v3.0): the data reader and the label, dense and sparse tensors."""

    api_version = "3.0"

    def __init__(self, data_reader_type, source, eval_source, check_type, cache_eval_data=0, label_dim=_REQUIRED,
                 label_name=_REQUIRED, dense_dim=_REQUIRED, dense_name=_REQUIRED, num_samples=0, eval_num_samples=0,
                 float_label_dense=True, num_workers=12, slot_size_array=(), data_reader_sparse_param_array=_REQUIRED,
                 sparse_names=_REQUIRED):
        _require("Input()", label_dim=label_dim, label_name=label_name, dense_dim=dense_dim, dense_name=dense_name,
                 data_reader_sparse_param_array=data_reader_sparse_param_array, sparse_names=sparse_names)
        params, names = list(data_reader_sparse_param_array), name_list(sparse_names, "Input(sparse_names=...)")
        if len(params) != len(names):
            raise ValueError(f"Input(): data_reader_sparse_param_array has {len(params)} entries but sparse_names "
                             f"has {len(names)}; give one name per sparse input")
        sparse = [{"top": name, "type": enum_name(p.type, "DataReaderSparseParam.type", ("Distributed", "Localized"))
                   + "Slot", "max_feature_num_per_sample": p.max_feature_num, "max_nnz": p.max_nnz,
                   "slot_num": p.slot_num} for p, name in zip(params, names)]
        self.label_name, self.dense_name, self.sparse_names = label_name, dense_name, names
        self._json = data_layer_json(data_reader_type, source, eval_source, check_type, cache_eval_data, label_dim,
                                     label_name, dense_dim, dense_name, num_samples, eval_num_samples,
                                     float_label_dense, num_workers, slot_size_array, sparse)

    def to_json(self, model=None):
        return dict(self._json)

    def __repr__(self):
        return (f"Input(label_name={self.label_name!r}, dense_name={self.dense_name!r}, "
                f"sparse_names={self.sparse_names})")


def embedding_json(embedding_type, max_vocabulary_size_per_gpu, embedding_vec_size, combiner, name, bottom_name,
                   slot_size_array, optimizer=None) -> dict:
    """An embedding layer's JSON; ``combiner`` is "sum"/"mean" or HugeCTR v3.0's 0/1."""
    kind = enum_name(embedding_type, "SparseEmbedding(embedding_type=...)", sorted(EMBEDDING_TYPES))
    if combiner in ("sum", "mean"):
        combiner = ("sum", "mean").index(combiner)
    hparam = {"max_vocabulary_size_per_gpu": max_vocabulary_size_per_gpu, "embedding_vec_size": embedding_vec_size,
              "combiner": combiner}
    if kind == "LocalizedSlotSparseEmbeddingOneHot" or slot_size_array:
        hparam["slot_size_array"] = list(slot_size_array)
    if kind == "DistributedSlotSparseEmbeddingHash":
        hparam.pop("slot_size_array", None)
    obj = {"name": name, "type": kind, "bottom": bottom_name, "top": name, "sparse_embedding_hparam": hparam}
    if optimizer is not None:
        from ..config.parse_optimizer import optimizer_to_json

        obj["optimizer"] = optimizer_to_json(optimizer)
    return obj


class SparseEmbedding:
    """``hugectr.SparseEmbedding`` (v3.0): ``combiner`` is 0 (sum) or 1 (mean)."""

    api_version = "3.0"

    def __init__(self, embedding_type, max_vocabulary_size_per_gpu, embedding_vec_size, combiner,
                 sparse_embedding_name, bottom_name, slot_size_array=()):
        self.name, self.bottom_name = sparse_embedding_name, bottom_name
        self._json = embedding_json(embedding_type, max_vocabulary_size_per_gpu, embedding_vec_size, combiner,
                                    sparse_embedding_name, bottom_name, slot_size_array)

    def to_json(self, model=None):
        return dict(self._json)

    def __repr__(self):
        return f"SparseEmbedding({self._json['type']}, name={self.name!r}, bottom_name={self.bottom_name!r})"


class Model(ModelBase):
    """``hugectr.Model(solver_parser, opt_params)`` (v3.0 preview).

    ``fit()`` runs the solver's settings (max_iter or num_epochs, display, eval_interval, snapshot) with
    HugeCTR's snapshot prefix "./"; its keywords ``progress`` and ``dashboard`` choose the view.
    """

    api_version = "3.0"

    def __init__(self, solver_parser, opt_params, *, backend=None):
        if not isinstance(solver_parser, SolverParser):
            raise TypeError(f"Model(solver_parser=...) needs solver_parser_helper(...)'s result, got "
                            f"{type(solver_parser).__name__}")
        if not isinstance(opt_params, OptParamsBase):
            raise TypeError(f"Model(opt_params=...) needs optimizer.CreateOptimizer(...)'s result, got "
                            f"{type(opt_params).__name__}")
        if solver_parser.use_mixed_precision != opt_params.use_mixed_precision:
            raise ValueError(f"Model(): the solver's use_mixed_precision ({solver_parser.use_mixed_precision}) and "
                             f"CreateOptimizer's ({opt_params.use_mixed_precision}) must be equal")
        super().__init__(backend=backend)
        self.solver = solver_parser
        self.opt_params = opt_params
        self.optimizer_spec = opt_params.spec
        self._schedule = opt_params.schedule
        self._oversubscribe = solver_parser.temp_embedding_dir if solver_parser.use_model_oversubscriber else None

    def fit(self, *, progress=None, dashboard=False, print_fn=None):
        """Train with the solver's settings; returns a ``hugectr_lab.fit.FitResult``."""
        s = self.solver
        return self._fit(max_iter=s.max_iter, num_epochs=s.num_epochs, display=s.display,
                         eval_interval=s.eval_interval, snapshot=s.snapshot, snapshot_prefix="./",
                         progress=progress, dashboard=dashboard, print_fn=print_fn)


__all__ = ["Model", "Input", "SparseEmbedding", "CreateOptimizer", "OptParamsBase"]
