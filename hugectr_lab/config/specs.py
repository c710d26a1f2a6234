"""Frozen specs of the ``solver``, ``optimizer`` and ``inference`` clauses, the Data layer and the embeddings.

Fields declared with ``key(...)`` are read and written by the table-driven helpers in ``fields``; the
others are read by hand in the ``parse_*`` module of their clause. Dense layers are ``LayerSpec`` with a
per-type params dataclass from ``layer_params``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .fields import (any_number, boolean, int_range, is_int, expected, key, list_of, non_negative_int,
                     non_negative_number, nonempty_string, number, one_of, positive_int, positive_number,
                     str_or_list, string)

# The embedding and optimizer type tables are parse_embedding.EMBEDDING_KINDS and parse_optimizer.HPARAMS.
UPDATE_TYPES = ("Local", "Global", "LazyGlobal")
SCALERS = (128, 256, 512, 1024)  # the loss scales HugeCTR accepts as "mixed_precision"
COMBINERS = ("sum", "mean")      # JSON spells them 0 and 1
# How a float32 inference FC's GEMM runs (``inference.fp32_gemm``, ``BuildContext.fp32_gemm``): "fp32" on the
# CUDA cores, or "tf32x3" -- float32-accurate on TF32 tensor cores, each operand split in two
# (layers/inner_product.py). A hugectr-lab extension; HugeCTR multiplies in plain float32.
FP32_GEMMS = ("fp32", "tf32x3")

key_type = one_of("I32", "I64")
scaler = one_of(*SCALERS)


def combiner(value):
    if is_int(value) and value in (0, 1):
        return COMBINERS[value]
    raise expected("0 (sum) or 1 (mean)", value)


def plan_file(value):
    """One plan file (single process) or one per MPI process."""
    return value if isinstance(value, str) else list_of(string, min_len=1, what="a string or a list of strings")(value)


class _KeyTypeAndPrecision:
    """Derived flags shared by the solver and inference clauses."""

    input_key_type: str
    mixed_precision: int | None

    @property
    def i64_input_key(self) -> bool:
        return self.input_key_type == "I64"

    @property
    def use_mixed_precision(self) -> bool:
        return self.mixed_precision is not None

    @property
    def scaler(self) -> float:
        return float(self.mixed_precision or 1.0)


@dataclass(frozen=True, kw_only=True)
class SolverSpec(_KeyTypeAndPrecision):
    """The ``solver`` clause. Exactly one of max_iter (non-epoch mode) and num_epochs (epoch mode) is > 0."""

    seed: int = key(non_negative_int, default=0)
    lr_policy: str = key(one_of("fixed"))
    display: int = key(positive_int)
    max_iter: int = 0
    num_epochs: int = 0
    snapshot: int = key(positive_int)
    snapshot_prefix: str = key(string)
    batchsize: int = key(positive_int)
    batchsize_eval: int | None = key(positive_int, default=None)  # None: same as batchsize
    max_eval_batches: int
    max_eval_samples: int | None = None  # kept only to write the clause back as it was given
    eval_interval: int = key(non_negative_int, default=0)
    dense_model_file: str = key(string, default="")
    dense_opt_states_file: str = key(string, default="")
    sparse_model_files: tuple[str, ...] = key(str_or_list(), default=(), json="sparse_model_file")
    sparse_opt_states_files: tuple[str, ...] = key(str_or_list(), default=(), json="sparse_opt_states_file")
    mixed_precision: int | None = key(scaler, default=None)
    enable_tf32_compute: bool = key(boolean, default=False)
    vvgpu: tuple[tuple[int, ...], ...]
    eval_metrics: tuple[tuple[str, float], ...] = (("AUC", 1.0),)  # AverageLoss carries 0.0
    input_key_type: str = key(key_type, default="I32")
    algorithm_search: bool = key(boolean, default=True)
    cuda_graph: bool = key(boolean, default=True)
    export_predictions_prefix: str | None = key(string, default=None)
    # hugectr-lab extensions (docs/reliability.md): mixed-precision loss scaling and vocabulary overflow
    loss_scaling: str = key(one_of("static", "dynamic"), default="static")
    loss_scale_growth_interval: int = key(positive_int, default=2000)
    on_vocabulary_overflow: str = key(one_of("warn", "error"), default="warn")

    def __post_init__(self):
        if self.batchsize_eval is None:
            object.__setattr__(self, "batchsize_eval", self.batchsize)
        if self.max_iter == 0 and self.num_epochs == 0:  # HugeCTR: neither given means one epoch
            object.__setattr__(self, "num_epochs", 1)

    @property
    def repeat_dataset(self) -> bool:
        return self.num_epochs == 0

    @property
    def metrics_spec(self) -> dict[str, float]:
        return dict(self.eval_metrics)

    @property
    def num_gpus(self) -> int:
        return sum(len(node) for node in self.vvgpu)


@dataclass(frozen=True, kw_only=True)
class OptimizerSpec:
    """The ``optimizer`` clause (top level or per embedding). Keys of other optimizer types keep their defaults.

    The defaults are HugeCTR's internal ones; the JSON requires every key its type uses except
    ``atomic_update`` (SGD, default false) and the learning-rate scheduler keys.
    """

    type: str
    update_type: str = "Local"
    learning_rate: float = key(positive_number)
    beta1: float = key(number(0.0, 1.0, hi_open=True), default=0.9)
    beta2: float = key(number(0.0, 1.0, hi_open=True), default=0.999)
    epsilon: float = key(non_negative_number, default=1e-7)
    momentum_factor: float = key(non_negative_number, default=0.0)
    atomic_update: bool = key(boolean, default=False)
    initial_accu_value: float = key(non_negative_number, default=0.0)
    # The learning-rate scheduler reads these from the same hparam object (they obey its constructor's rules).
    warmup_steps: int = key(positive_int, default=1)
    decay_start: int = key(non_negative_int, default=0)
    decay_steps: int = key(positive_int, default=1)
    decay_power: float = key(number(1.0, what="a number >= 1"), default=2.0)
    end_lr: float = key(non_negative_number, default=0.0)


@dataclass(frozen=True, kw_only=True)
class LabelSpec:
    label_dim: int = key(positive_int)
    top: str | None = key(nonempty_string, default=None)  # may be left out in inference configs


@dataclass(frozen=True, kw_only=True)
class DenseSpec:
    top: str = key(nonempty_string)
    dense_dim: int = key(non_negative_int)


@dataclass(frozen=True, kw_only=True)
class SparseInputSpec:
    """One entry of the Data layer's ``sparse`` list; it owns ``slot_num`` consecutive slots of the data."""

    top: str = key(nonempty_string)
    type: str = key(one_of("DistributedSlot", "LocalizedSlot"))
    max_feature_num_per_sample: int = key(positive_int)
    slot_num: int = key(positive_int)
    max_nnz: int | None = key(positive_int, default=None)  # None: max_feature_num_per_sample

    def __post_init__(self):
        if self.max_nnz is None:
            object.__setattr__(self, "max_nnz", self.max_feature_num_per_sample)


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """The Data layer (``layers[0]``). Raw-only and Raw/Parquet-only keys stay None/default for other formats."""

    name: str | None = key(nonempty_string, default=None)
    format: str = key(one_of("Norm", "Raw", "Parquet"), default="Norm")
    source: str | None = key(string, default=None)        # None only in inference configs
    eval_source: str | None = key(string, default=None)
    check: str | None = key(one_of("Sum", "None"), default=None)  # None only in inference configs
    cache_eval_data: int = key(non_negative_int, default=0)
    num_workers: int | None = key(positive_int, default=None)  # None: 12, or the local GPU count for Parquet
    label: LabelSpec
    dense: DenseSpec
    sparse: tuple[SparseInputSpec, ...]
    num_samples: int | None = key(positive_int, default=None)              # Raw
    eval_num_samples: int | None = key(non_negative_int, default=None)     # Raw
    slot_size_array: tuple[int, ...] | None = key(list_of(positive_int, min_len=1), default=None)  # Raw, Parquet
    float_label_dense: bool = key(boolean, default=False)                  # Raw

    @property
    def total_slot_num(self) -> int:
        return sum(s.slot_num for s in self.sparse)

    @property
    def slot_offsets(self) -> tuple[int, ...]:
        """Exclusive prefix sums of slot_size_array, added to each slot's keys by the Raw/Parquet readers."""
        offsets, total = [], 0
        for size in self.slot_size_array or ():
            offsets.append(total)
            total += size
        return tuple(offsets)

    def sparse_input(self, top: str) -> SparseInputSpec:
        for s in self.sparse:
            if s.top == top:
                return s
        raise KeyError(f"no sparse input named {top!r}; the Data layer has {[s.top for s in self.sparse]}")


@dataclass(frozen=True, kw_only=True)
class EmbeddingSpec:
    """An embedding layer. ``combiner`` is "sum" or "mean" (JSON 0 / 1); ``optimizer`` None uses the top-level one."""

    type: str
    name: str | None = key(nonempty_string, default=None)
    bottom: str
    top: str
    max_vocabulary_size_per_gpu: int | None = key(positive_int, default=None)
    embedding_vec_size: int = key(int_range(1, 1024))
    combiner: str = key(combiner, dump=COMBINERS.index)
    slot_size_array: tuple[int, ...] | None = key(list_of(positive_int, min_len=1), default=None)
    optimizer: OptimizerSpec | None = None
    plan_file: str | tuple[str, ...] | None = key(plan_file, default=None)
    default_emb_vec_value: float = key(any_number, default=0.0)  # inference: the vector of unknown keys


@dataclass(frozen=True)
class LayerSpec:
    """A dense or loss layer; ``params`` is the type's params dataclass (``layer_params``)."""

    type: str
    name: str | None
    bottoms: tuple[str, ...]
    tops: tuple[str, ...]
    params: Any


@dataclass(frozen=True, kw_only=True)
class InferenceSpec(_KeyTypeAndPrecision):
    """The ``inference`` clause. ``max_batchsize`` defaults to 1024 (HugeCTR's session parser's default)."""

    max_batchsize: int = key(positive_int, default=1024)
    hit_rate_threshold: float = key(number(0.0, 1.0), default=0.5)
    # hugectr-lab extension: "lru" (HugeCTR's cache) or "tinylfu" (frequency-aware; docs/inference.md)
    cache_policy: str = key(one_of("lru", "tinylfu"), default="lru")
    dense_model_file: str = key(string)
    sparse_model_files: tuple[str, ...] = key(str_or_list(), json="sparse_model_file")
    input_key_type: str = key(key_type, default="I32")
    mixed_precision: int | None = key(scaler, default=None)
    algorithm_search: bool = key(boolean, default=True)
    # the captured predict path (inference/graph_path.py), HugeCTR's default; verified by the GPU lane
    # (tests/gpu/test_inference_kernels.py, H100, 2026-12-07)
    cuda_graph: bool = key(boolean, default=True)
    # hugectr-lab extension: the CuPy backend's float32 FC GEMMs (FP32_GEMMS above); "tf32x3" is opt-in until
    # the GPU lane has run it (tests/gpu/test_gemm_epilogue.py, test_inference_kernels.py)
    fp32_gemm: str = key(one_of(*FP32_GEMMS), default="fp32")
