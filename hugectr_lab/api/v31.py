"""HugeCTR v3.1's Python API: ``CreateSolver``, ``DataReaderParams``, ``DataReaderSparseParam``,
``CreateOptimizer``, ``CreateMOS`` and ``Model(solver, reader_params, opt_params[, mos_params])``.

    solver = hugectr.CreateSolver(batchsize=512, lr=0.001, vvgpu=[[0]], repeat_dataset=True)
    reader = hugectr.DataReaderParams(data_reader_type=hugectr.DataReaderType_t.Norm, source=["train.txt"],
                                      eval_source="test.txt", check_type=hugectr.Check_t.Sum)
    model = hugectr.Model(solver, reader, hugectr.CreateOptimizer(optimizer_type=hugectr.Optimizer_t.Adam))
    model.add(hugectr.Input(label_dim=1, label_name="label", dense_dim=13, dense_name="dense",
                            data_reader_sparse_param_array=[hugectr.DataReaderSparseParam("data1", 2, False, 26)]))
    ...
    model.compile(); model.summary(); model.fit(max_iter=1000, display=100, eval_interval=500)

The learning-rate schedule lives in the solver, the data reader in ``DataReaderParams``, the embedding's
table size in ``workspace_size_per_gpu_in_mb`` and sparse models are written as v3.1 directories.
"""

from __future__ import annotations

import dataclasses
import enum
import tempfile
from dataclasses import dataclass

import numpy as np

from ..config import SolverParser, solver_parser_helper
from ..config.parse_embedding import EMBEDDING_KINDS
from .layers import enum_name
from .model import ModelBase
from .preview import data_layer_json, embedding_json, optimizer_spec

METRICS = ("AUC", "AverageLoss")

# v3.1's enums where they grew (the others are v3.0's); members this project lacks are refused where used.
Layer_t = enum.Enum("Layer_t", [(m, i) for i, m in enumerate(
    "BatchNorm BinaryCrossEntropyLoss Reshape Concat CrossEntropyLoss Dropout ELU InnerProduct FusedInnerProduct "
    "Interaction MultiCrossEntropyLoss ReLU ReLUHalf Sigmoid Slice WeightMultiply FmOrder2 Add ReduceSum MultiCross "
    "Cast DotProduct ElementwiseMultiply Softmax Gather PReLU_Dice GRU Scale FusedReshapeConcat "
    "FusedReshapeConcatGeneral Sub ReduceMean".split())], module=__name__)
Optimizer_t = enum.Enum("Optimizer_t", [(m, i) for i, m in enumerate("Adam AdaGrad MomentumSGD Nesterov SGD".split())],
                        module=__name__)
MetricsType = enum.Enum("MetricsType", [(m, i) for i, m in enumerate("AUC AverageLoss HitRate".split())],
                        module=__name__)
Embedding_t = enum.Enum("Embedding_t", [(m, i) for i, m in enumerate(
    "DistributedSlotSparseEmbeddingHash LocalizedSlotSparseEmbeddingHash LocalizedSlotSparseEmbeddingOneHot "
    "HybridSparseEmbedding".split())], module=__name__)
# Performance options of v3.1's CreateSolver (MLPerf DLRM) that change how, not what, is computed.
PERFORMANCE_OPTIONS = ("device_layout", "use_holistic_cuda_graph", "use_overlapped_pipeline", "all_reduce_algo",
                       "grouped_all_reduce", "num_iterations_statistics", "is_dlrm")


@dataclass(frozen=True)
class Solver:
    """What ``CreateSolver`` returns: the run settings (``parser``) and the learning-rate schedule."""

    parser: SolverParser
    schedule: dict

    def __getattr__(self, name):   # solver.max_eval_batches, solver.batchsize, ... as in HugeCTR
        if name in ("parser", "schedule"):
            raise AttributeError(name)
        return getattr(self.parser, name)

    @property
    def lr(self):
        return self.schedule["base_lr"]


def CreateSolver(seed=0, lr_policy="fixed", lr=0.001, warmup_steps=1, decay_start=0, decay_steps=1, decay_power=2.0,
                 end_lr=0.0, max_eval_batches=100, batchsize_eval=2048, batchsize=2048, vvgpu=((0,),),
                 repeat_dataset=True, use_mixed_precision=False, enable_tf32_compute=False, scaler=1.0,
                 metrics_spec=None, i64_input_key=False, use_algorithm_search=True, use_cuda_graph=True,
                 **performance_options):
    """``hugectr.CreateSolver`` (v3.1). ``metrics_spec``: ``{MetricsType.AUC: 1.0}`` by default; AUC and
    AverageLoss are supported (HitRate is not). The MLPerf options are accepted and have no effect here."""
    unknown = set(performance_options) - set(PERFORMANCE_OPTIONS)
    if unknown:
        raise TypeError(f"CreateSolver() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    enum_name(lr_policy, "CreateSolver(lr_policy=...)", ("fixed",))
    parser = solver_parser_helper(seed=seed, max_eval_batches=max_eval_batches, batchsize_eval=batchsize_eval,
                                  batchsize=batchsize, vvgpu=[list(node) for node in vvgpu],
                                  use_mixed_precision=use_mixed_precision, enable_tf32_compute=enable_tf32_compute,
                                  scaler=scaler, i64_input_key=i64_input_key,
                                  use_algorithm_search=use_algorithm_search, use_cuda_graph=use_cuda_graph,
                                  repeat_dataset=repeat_dataset)
    metrics = {"AUC": 1.0} if metrics_spec is None else {
        enum_name(k, "CreateSolver(metrics_spec=...) key", METRICS): float(v) for k, v in dict(metrics_spec).items()}
    if not metrics:
        raise ValueError("CreateSolver(metrics_spec=...) must name at least one metric")
    parser = parser._replace(metrics_spec=metrics)
    schedule = dict(base_lr=lr, warmup_steps=warmup_steps, decay_start=decay_start, decay_steps=decay_steps,
                    decay_power=decay_power, end_lr=end_lr)
    from ..optim import LearningRateScheduler

    LearningRateScheduler(**schedule)   # its constructor's checks, now rather than at compile()
    return Solver(parser, schedule)


@dataclass(frozen=True)
class DataReaderParams:
    """``hugectr.DataReaderParams`` (v3.1). ``source`` is a list of file lists (one per
    ``keyset`` with the model oversubscriber); ``float_label_dense`` defaults to False here."""

    data_reader_type: object
    source: list
    keyset: list = dataclasses.field(default_factory=list)
    eval_source: str = ""
    check_type: object = "Sum"
    cache_eval_data: int = 0
    num_samples: int = 0
    eval_num_samples: int = 0
    float_label_dense: bool = False
    num_workers: int = 12
    slot_size_array: list = dataclasses.field(default_factory=list)
    async_param: object = None   # the asynchronous Raw reader's tuning: accepted, no effect

    def __post_init__(self):
        object.__setattr__(self, "source", [self.source] if isinstance(self.source, str) else list(self.source))
        object.__setattr__(self, "keyset", [self.keyset] if isinstance(self.keyset, str) else list(self.keyset))
        if not self.source:
            raise ValueError("DataReaderParams(source=...) must name at least one file list")
        if self.keyset and len(self.keyset) != len(self.source):
            raise ValueError(f"DataReaderParams: keyset has {len(self.keyset)} files but source has "
                             f"{len(self.source)}; give one keyset per source")


@dataclass(frozen=True)
class DataReaderSparseParam:
    """``hugectr.DataReaderSparseParam(top_name, nnz_per_slot, is_fixed_length, slot_num)`` (v3.1):
    ``nnz_per_slot`` is one int for every slot or a list with one per slot."""

    top_name: str
    nnz_per_slot: object
    is_fixed_length: bool
    slot_num: int

    def __post_init__(self):
        nnz = self.nnz_per_slot
        nnz = [nnz] * self.slot_num if isinstance(nnz, int) else list(nnz)
        if len(nnz) != self.slot_num or not all(isinstance(n, int) and n > 0 for n in nnz):
            raise ValueError(f"DataReaderSparseParam({self.top_name!r}): nnz_per_slot must be a positive int or "
                             f"{self.slot_num} positive ints (one per slot), got {self.nnz_per_slot!r}")
        object.__setattr__(self, "nnz_per_slot", nnz)

    def to_json(self, slot_type):
        """The sparse input of the Data layer; ``slot_type``: "DistributedSlot" or "LocalizedSlot"."""
        return {"top": self.top_name, "type": slot_type, "max_feature_num_per_sample": sum(self.nnz_per_slot),
                "max_nnz": max(self.nnz_per_slot), "slot_num": self.slot_num}


class Input:
    """``hugectr.Input(label_dim, label_name, dense_dim, dense_name, data_reader_sparse_param_array)`` (v3.1).

    The Data layer's reader settings come from the Model's ``DataReaderParams``; each sparse input's
    slot type follows the embedding that reads it (distributed or localized)."""

    api_version = "3.1"

    def __init__(self, label_dim, label_name, dense_dim, dense_name, data_reader_sparse_param_array):
        self.label_dim, self.label_name, self.dense_dim, self.dense_name = label_dim, label_name, dense_dim, dense_name
        self.sparse = list(data_reader_sparse_param_array)
        if not all(isinstance(p, DataReaderSparseParam) for p in self.sparse):
            raise TypeError("Input(data_reader_sparse_param_array=...) takes v3.1 DataReaderSparseParam(top_name, "
                            "nnz_per_slot, is_fixed_length, slot_num) objects")

    def to_json(self, model):
        r = model.reader_params
        readers = {}
        for layer in model._layer_objects_after_input():
            if layer.get("type") in EMBEDDING_KINDS:   # (an unknown type is left to the config parser to name)
                readers[layer.get("bottom")] = EMBEDDING_KINDS[layer["type"]].sparse_input
        sparse = [p.to_json(readers.get(p.top_name, "DistributedSlot")) for p in self.sparse]
        return data_layer_json(r.data_reader_type, r.source[0], r.eval_source or None, r.check_type,
                               r.cache_eval_data, self.label_dim, self.label_name, self.dense_dim, self.dense_name,
                               r.num_samples or None, r.eval_num_samples or None, r.float_label_dense, r.num_workers,
                               r.slot_size_array, sparse)

    def __repr__(self):
        return f"Input(label_name={self.label_name!r}, dense_name={self.dense_name!r}, " \
               f"sparse={[p.top_name for p in self.sparse]})"


def vocabulary_size(workspace_size_per_gpu_in_mb, embedding_vec_size):
    """v3.1's table size: rows of ``embedding_vec_size`` float32 in the workspace."""
    return int(workspace_size_per_gpu_in_mb * 1024 * 1024 // (4 * embedding_vec_size))


class SparseEmbedding:
    """``hugectr.SparseEmbedding(embedding_type, workspace_size_per_gpu_in_mb, embedding_vec_size, combiner,
    sparse_embedding_name, bottom_name, slot_size_array=[], optimizer=None)`` (v3.1): ``combiner`` is
    "sum" or "mean"; ``optimizer`` (a ``CreateOptimizer`` result) gives the embedding its own
    optimizer, trained with the solver's learning rate."""

    api_version = "3.1"

    def __init__(self, embedding_type, workspace_size_per_gpu_in_mb, embedding_vec_size, combiner,
                 sparse_embedding_name, bottom_name, slot_size_array=(), optimizer=None, hybrid_embedding_param=None):
        if hybrid_embedding_param is not None:
            raise ValueError("SparseEmbedding(hybrid_embedding_param=...): HybridSparseEmbedding is not implemented "
                             "(docs/compat.md)")
        if combiner not in ("sum", "mean"):
            raise ValueError(f"SparseEmbedding(combiner=...) must be 'sum' or 'mean', got {combiner!r}")
        if not isinstance(workspace_size_per_gpu_in_mb, (int, float)) or workspace_size_per_gpu_in_mb <= 0:
            raise ValueError(f"SparseEmbedding(workspace_size_per_gpu_in_mb=...) must be positive, got "
                             f"{workspace_size_per_gpu_in_mb!r}")
        self.name, self.bottom_name = sparse_embedding_name, bottom_name
        self.optimizer = optimizer
        self._args = (embedding_type, vocabulary_size(workspace_size_per_gpu_in_mb, embedding_vec_size),
                      embedding_vec_size, combiner, sparse_embedding_name, bottom_name, slot_size_array)

    def to_json(self, model=None):
        # v3.1 sets the embedding's optimizer lr from the solver's schedule every step anyway.
        spec = None
        if self.optimizer is not None:
            lr = model.solver_v31.lr if model is not None else 0.001
            spec = dataclasses.replace(self.optimizer.spec, learning_rate=lr)
        return embedding_json(*self._args, optimizer=spec)

    def __repr__(self):
        return (f"SparseEmbedding({enum_name(self._args[0], 'type')}, name={self.name!r}, "
                f"bottom_name={self.bottom_name!r})")


@dataclass(frozen=True)
class OptParamsPy:
    """What ``CreateOptimizer`` returns (v3.1): the optimizer without learning rate (the solver's)."""

    spec: object

    @property
    def optimizer_type(self):
        return self.spec.type


def CreateOptimizer(optimizer_type="Adam", update_type="Global", beta1=0.9, beta2=0.999, epsilon=1e-7,
                    initial_accu_value=0.0, momentum_factor=0.0, atomic_update=True):
    """``hugectr.CreateOptimizer`` (v3.1): no learning rate or schedule (they are the solver's)."""
    return OptParamsPy(optimizer_spec(optimizer_type, update_type, what="CreateOptimizer", learning_rate=0.001,
                                      beta1=beta1, beta2=beta2, epsilon=epsilon,
                                      initial_accu_value=initial_accu_value, momentum_factor=momentum_factor,
                                      atomic_update=atomic_update))


@dataclass(frozen=True)
class MOSParams:
    """What ``CreateMOS`` returns."""

    train_from_scratch: bool
    use_host_memory_ps: bool = True
    trained_sparse_models: tuple = ()
    dest_sparse_models: tuple = ()


def CreateMOS(train_from_scratch, use_host_memory_ps=True, trained_sparse_models=(), dest_sparse_models=()):
    """``hugectr.CreateMOS`` (v3.1 model oversubscription): the host-side parameter store starts empty
    (``train_from_scratch``) or from ``trained_sparse_models``; ``save_params_to_files`` writes the whole
    tables to ``dest_sparse_models``. Host memory or SSD: both are our file-backed store."""
    if not train_from_scratch and not trained_sparse_models:
        raise ValueError("CreateMOS(train_from_scratch=False) needs trained_sparse_models (one per embedding)")
    return MOSParams(bool(train_from_scratch), bool(use_host_memory_ps), tuple(trained_sparse_models),
                     tuple(dest_sparse_models))


class Model(ModelBase):
    """``hugectr.Model(solver, reader_params, opt_params, mos_params=None)`` (v3.1)."""

    api_version = "3.1"

    sparse_format = "v3.1"

    def __init__(self, solver, reader_params, opt_params, mos_params=None, *, backend=None):
        for arg, value, cls, maker in (("solver", solver, Solver, "CreateSolver"),
                                       ("reader_params", reader_params, DataReaderParams, "DataReaderParams"),
                                       ("opt_params", opt_params, OptParamsPy, "CreateOptimizer")):
            if not isinstance(value, cls):
                raise TypeError(f"Model({arg}=...) needs the v3.1 {maker}(...) object, got {type(value).__name__}"
                                + (" (a v3.0 object? use `import hugectr.v31 as hugectr`)" if arg != "reader_params"
                                   else ""))
        if mos_params is not None and not isinstance(mos_params, MOSParams):
            raise TypeError(f"Model(mos_params=...) needs CreateMOS(...)'s result, got {type(mos_params).__name__}")
        if reader_params.keyset and mos_params is None:
            raise ValueError("DataReaderParams(keyset=...) needs a model oversubscriber: pass CreateMOS(...) to Model")
        super().__init__(backend=backend)
        self.solver_v31 = solver
        self.reader_params = reader_params
        self.opt_params = opt_params
        self.mos_params = mos_params
        self.optimizer_spec = dataclasses.replace(opt_params.spec, learning_rate=solver.lr)
        self._schedule = dict(solver.schedule)
        # the oversubscriber's host-side tables live in a private directory, removed with the model
        self._mos_dir = tempfile.TemporaryDirectory(prefix="hugectr_lab_mos_") if mos_params is not None else None
        self._oversubscribe = self._mos_dir.name if mos_params is not None else None
        files = mos_params.trained_sparse_models if mos_params and not mos_params.train_from_scratch else ()
        self.solver = solver.parser._replace(embedding_files=list(files))
        self._frozen = {"dense": False}

    def _layer_objects_after_input(self):
        return [layer.to_json(self) for layer in self._added if not isinstance(layer, Input)]

    # ---- high-level ---------------------------------------------------------------------------------

    def construct_from_json(self, graph_config_file, include_dense_network=True):
        """Add the layers of a graph JSON; as in v3.1 the Data layer keeps its tensors (label, dense,
        sparse) and takes its reader settings (sources, format, check, ...) from ``DataReaderParams``."""
        first = len(self._added)
        super().construct_from_json(graph_config_file, include_dense_network)
        data = self._json[first]
        r = self.reader_params
        reader = data_layer_json(r.data_reader_type, r.source[0], r.eval_source or None, r.check_type,
                                 r.cache_eval_data, data["label"]["label_dim"], data["label"].get("top"),
                                 data["dense"]["dense_dim"], data["dense"]["top"], r.num_samples or None,
                                 r.eval_num_samples or None, r.float_label_dense, r.num_workers, r.slot_size_array,
                                 data["sparse"])
        self._json[first] = {**reader, "name": data.get("name", "data")}

    def fit(self, num_epochs=0, max_iter=2000, display=200, eval_interval=1000, snapshot=10000, snapshot_prefix="",
            *, progress=None, dashboard=False, print_fn=None):
        """Train: ``max_iter`` iterations (``repeat_dataset=True``) or ``num_epochs`` passes over every
        source (with the model oversubscriber: each source after loading its keyset). Returns a FitResult."""
        epoch_mode = not self.solver.repeat_dataset
        sources = None
        if epoch_mode:
            keysets = self.reader_params.keyset or [None] * len(self.reader_params.source)
            sources = list(zip(self.reader_params.source, keysets))
        elif self.mos_params is not None and self.reader_params.keyset:
            self._require_session("fit").get_model_oversubscriber().update(self.reader_params.keyset[0])
        return self._fit(max_iter=0 if epoch_mode else max_iter, num_epochs=num_epochs if epoch_mode else 0,
                         display=display, eval_interval=eval_interval, snapshot=snapshot,
                         snapshot_prefix=snapshot_prefix, sources=sources, progress=progress, dashboard=dashboard,
                         print_fn=print_fn)

    def set_source(self, source=None, keyset=None, eval_source=None):
        """New training sources (and keysets) for the next ``fit``, and a new eval source."""
        changes = {}
        if source is not None:
            changes["source"] = [source] if isinstance(source, str) else list(source)
        if keyset is not None:
            changes["keyset"] = [keyset] if isinstance(keyset, str) else list(keyset)
        self.reader_params = dataclasses.replace(self.reader_params, **changes)
        if self.session is not None:
            if not self.solver.repeat_dataset:
                pass   # fit visits reader_params.source
            elif source is not None:
                self.session.get_data_reader_train().set_source(self.reader_params.source[0])
            if eval_source is not None:
                self.session.get_data_reader_eval().set_source(eval_source)
        elif eval_source is not None:
            self.reader_params = dataclasses.replace(self.reader_params, eval_source=eval_source)

    def reset_learning_rate_scheduler(self, base_lr, warmup_steps=1, decay_start=0, decay_steps=1, decay_power=2.0,
                                      end_lr=0.0):
        from ..optim import LearningRateScheduler

        self._schedule = dict(base_lr=base_lr, warmup_steps=warmup_steps, decay_start=decay_start,
                              decay_steps=decay_steps, decay_power=decay_power, end_lr=end_lr)
        self._lr_scheduler = LearningRateScheduler(**self._schedule)

    # ---- low-level ----------------------------------------------------------------------------------

    def eval(self, eval_batch=-1):
        """One evaluation batch with the current training weights (v3.1 has no separate copy step);
        ``eval_batch`` is HugeCTR's internal batch index and is not used."""
        session = self._require_session("eval")
        if self._evaluated_at != session.iteration:
            session.copy_weights_for_evaluation()
            self._evaluated_at = session.iteration
        return session.eval()

    def save_params_to_files(self, prefix, iter=0):
        """Dense model, optimizer states and one v3.1 sparse-model directory per embedding, HugeCTR's names
        (``<prefix>_dense_<iter>.model``, ``<prefix><i>_sparse_<iter>.model/``). With CreateMOS's
        ``dest_sparse_models`` the whole tables go there too."""
        session = self._require_session("save_params_to_files")
        result = session.download_params_to_files(prefix, iter, sparse_format="v3.1", allow_zero=True)
        mos = session.get_model_oversubscriber()
        if mos is not None and self.mos_params.dest_sparse_models:
            mos.store(list(self.mos_params.dest_sparse_models))
        return result

    def export_predictions(self, output_prediction_file_name, output_label_file_name):
        """Predictions and labels of one evaluation pass (``max_eval_batches`` batches from the start of the
        eval source, real samples only) as text, with the current weights."""
        session = self._require_session("export_predictions")
        session.copy_weights_for_evaluation()
        session.evaluation(output_prediction_file_name, output_label_file_name)

    def get_incremental_model(self):
        """Per embedding, ``(keys, vectors)`` of the rows that are new or changed since the last call
        (since compile() for the first): what a serving parameter server has to refresh."""
        session = self._require_session("get_incremental_model")
        before = getattr(self, "_last_tables", None)
        tables = [_dump(emb) for emb in session.embeddings]
        self._last_tables = tables
        out = []
        for i, (keys, vectors) in enumerate(tables):
            if before is None:
                out.append((keys, vectors))
                continue
            old_keys, old_vectors = before[i]
            pos = np.searchsorted(old_keys, keys).clip(0, max(len(old_keys) - 1, 0))
            known = (old_keys[pos] == keys) if len(old_keys) else np.zeros(len(keys), bool)
            changed = ~known | np.any(old_vectors[pos] != vectors, axis=1) if len(old_keys) else ~known
            out.append((keys[changed], vectors[changed]))
        return out

    def load_dense_weights(self, dense_model_file):
        self._require_session("load_dense_weights")._load_dense_weights(dense_model_file, None)
        self._evaluated_at = -1   # the next eval() copies the loaded weights

    def load_dense_optimizer_states(self, dense_opt_states_file):
        self._require_session("load_dense_optimizer_states")._load_dense_optimizer(dense_opt_states_file)

    def load_sparse_weights(self, sparse_embedding_files):
        files = [sparse_embedding_files] if isinstance(sparse_embedding_files, str) else list(sparse_embedding_files)
        self._require_session("load_sparse_weights")._load_sparse(files, [])

    def load_sparse_optimizer_states(self, sparse_opt_states_files):
        files = [sparse_opt_states_files] if isinstance(sparse_opt_states_files, str) else list(sparse_opt_states_files)
        self._require_session("load_sparse_optimizer_states")._load_sparse([], files)

    def freeze_dense(self):
        """Stop updating the dense weights (gradients still flow to the embeddings)."""
        self._require_session("freeze_dense").frozen_dense = True

    def unfreeze_dense(self):
        self._require_session("unfreeze_dense").frozen_dense = False

    def freeze_embedding(self, embedding_name=None):
        """Stop updating one embedding (by name) or, without a name, all of them."""
        self.session.frozen_embeddings |= self._embeddings_named(embedding_name, "freeze_embedding")

    def unfreeze_embedding(self, embedding_name=None):
        self.session.frozen_embeddings -= self._embeddings_named(embedding_name, "unfreeze_embedding")

    def _embeddings_named(self, name, what):
        """The indices of the embedding called ``name`` (all of them for None)."""
        session = self._require_session(what)
        names = [spec.name or spec.top for spec in session.config.embeddings]
        if name is None:
            return set(range(len(names)))
        if name not in names:
            raise ValueError(f"Model.{what}({name!r}): no embedding of that name; the model has {names}")
        return {names.index(name)}


def _dump(emb):
    """An embedding's table as key-sorted host arrays ``(keys (V,), vectors (V, E))``."""
    dumped = emb.dump()
    keys, vectors = np.asarray(dumped[0]), np.asarray(dumped[1], dtype=np.float32)
    order = np.argsort(keys, kind="stable")
    return keys[order], vectors[order]


__all__ = ["Layer_t", "Optimizer_t", "MetricsType", "Embedding_t", "CreateSolver", "DataReaderParams",
           "DataReaderSparseParam", "CreateOptimizer", "CreateMOS", "Input", "SparseEmbedding", "Model", "Solver",
           "OptParamsPy", "MOSParams", "vocabulary_size"]
