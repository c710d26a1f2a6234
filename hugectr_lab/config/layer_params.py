"""Params of every dense and loss layer type, and the table of layer kinds (arity, JSON group, extra rules).

A params dataclass's fields are the layer constructor's keyword arguments. Nested JSON objects are
flattened: ``{"fc_param": {"num_output": 1024}}`` becomes ``InnerProductParams(num_output=1024)``.
Initializer fields hold None (HugeCTR's Default: the key left out) or one of ``INITIALIZERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .fields import (Invalid, any_number, got, int_range, key, list_of, non_negative_int, non_negative_number,
                     number, one_of, positive_int, positive_number)
from .specs import LayerSpec

INITIALIZERS = ("Uniform", "XavierNorm", "XavierUniform", "Zero")
initializer = one_of(*INITIALIZERS, hint=" (leave the key out for Default)")
regularizer = one_of("L1", "L2")


def slice_ranges(value):
    """2..5 half-open column ranges ``[start, end)``; each may overlap but not start or end before the previous one."""
    ranges = list_of(list_of(non_negative_int, min_len=2, max_len=2, what="a range [start, end]"),
                     min_len=2, max_len=5, what="a list of ranges")(value)
    for i, (start, end) in enumerate(ranges):
        if start >= end:
            raise Invalid(f"must have start < end, got {got([start, end])}", f"[{i}]")
        if i and (start < ranges[i - 1][0] or end < ranges[i - 1][1]):
            raise Invalid(f"must not start or end before the previous range {got(list(ranges[i - 1]))}", f"[{i}]")
    return ranges


@dataclass(frozen=True)
class NoParams:
    """ReLU, Sigmoid, Concat, Add, DotProduct, Interaction, Cast, ElementwiseMultiply, Softmax, Sub."""


@dataclass(frozen=True)
class InnerProductParams:
    """InnerProduct and FusedInnerProduct (JSON ``fc_param``)."""

    num_output: int = key(positive_int)
    weight_init: str | None = key(initializer, default=None)
    bias_init: str | None = key(initializer, default=None)


@dataclass(frozen=True)
class BatchNormParams:
    """JSON ``bn_param``; running = (1 - factor)·running + factor·batch statistic."""

    factor: float = key(number(0.0, 1.0))
    eps: float = key(positive_number)
    gamma_init: str | None = key(initializer, default=None)
    beta_init: str | None = key(initializer, default=None)


@dataclass(frozen=True)
class ELUParams:
    """JSON ``elu_param``."""

    alpha: float = key(any_number)


@dataclass(frozen=True)
class DropoutParams:
    rate: float = key(number(0.0, 1.0, hi_open=True), default=0.5)  # the drop probability


@dataclass(frozen=True)
class ReshapeParams:
    """At most one of the two: ``leading_dim`` (None: flatten to [dim0, rest]) or ``selected`` slot ids."""

    leading_dim: int | None = key(positive_int, default=None)
    selected: tuple[int, ...] | None = key(list_of(non_negative_int), default=None)


@dataclass(frozen=True)
class SliceParams:
    ranges: tuple[tuple[int, int], ...] = key(slice_ranges)


@dataclass(frozen=True)
class MultiCrossParams:
    """JSON ``mc_param``."""

    num_layers: int = key(positive_int)
    weight_init: str | None = key(initializer, default=None)
    bias_init: str | None = key(initializer, default=None)


@dataclass(frozen=True)
class FmOrder2Params:
    out_dim: int = key(positive_int)


@dataclass(frozen=True)
class WeightMultiplyParams:
    weight_dims: tuple[int, int] = key(list_of(positive_int, min_len=2, max_len=2, what="a list [slots, vec]"))
    weight_init: str | None = key(initializer, default=None)


@dataclass(frozen=True)
class ReduceParams:
    """ReduceSum and ReduceMean (v3.1): the axis of a 1-D to 3-D input."""

    axis: int = key(int_range(0, 2))


@dataclass(frozen=True)
class LossParams:
    """BinaryCrossEntropyLoss and CrossEntropyLoss; ``lambda_`` is JSON ``lambda``, required with a regularizer."""

    regularizer: str | None = key(regularizer, default=None)
    lambda_: float = key(non_negative_number, default=0.0, json="lambda")


@dataclass(frozen=True)
class MultiCrossEntropyLossParams:
    target_weight: tuple[float, ...] = key(list_of(any_number, min_len=1))
    regularizer: str | None = key(regularizer, default=None)
    lambda_: float = key(non_negative_number, default=0.0, json="lambda")


# A rule across keys: returns (key path relative to the layer, what is wrong), or None when fine.
Check = Callable[[LayerSpec, Mapping], tuple[str, str] | None]


def _fused_width(layer, raw):
    n = layer.params.num_output
    return None if n % 64 == 0 else ("fc_param.num_output", f"must be a multiple of 64 for FusedInnerProduct, got {n}")


def _reshape_mode(layer, raw):
    p = layer.params
    both = p.leading_dim is not None and p.selected is not None
    return ("selected", "cannot be combined with leading_dim; give one of them") if both else None


def _slice_outputs(layer, raw):
    n, m = len(layer.tops), len(layer.params.ranges)
    return None if n == m else ("top", f"names {n} tensors but ranges has {m}")


def _regularizer_lambda(layer, raw):
    missing = layer.params.regularizer is not None and "lambda" not in raw
    return ("lambda", "is required with a regularizer") if missing else None


@dataclass(frozen=True)
class LayerKind:
    params: type
    bottoms: tuple[int, int | None] = (1, 1)  # (min, max) tensor count; max None: unbounded
    tops: tuple[int, int] = (1, 1)
    group: str | None = None                  # the nested JSON object that holds the params
    check: Check | None = None


_TWO_OR_MORE = (2, None)
LAYER_KINDS: dict[str, LayerKind] = {
    "InnerProduct": LayerKind(InnerProductParams, group="fc_param"),
    "FusedInnerProduct": LayerKind(InnerProductParams, group="fc_param", check=_fused_width),
    "BatchNorm": LayerKind(BatchNormParams, group="bn_param"),
    "ELU": LayerKind(ELUParams, group="elu_param"),
    "Dropout": LayerKind(DropoutParams),
    "Reshape": LayerKind(ReshapeParams, check=_reshape_mode),
    "Slice": LayerKind(SliceParams, tops=(2, 5), check=_slice_outputs),
    "MultiCross": LayerKind(MultiCrossParams, group="mc_param"),
    "FmOrder2": LayerKind(FmOrder2Params),
    "WeightMultiply": LayerKind(WeightMultiplyParams),
    "ReduceSum": LayerKind(ReduceParams),
    "ReLU": LayerKind(NoParams),
    "Sigmoid": LayerKind(NoParams),
    "Cast": LayerKind(NoParams),
    "Concat": LayerKind(NoParams, bottoms=(2, 5)),  # HugeCTR's docs say 4, its code handles 5
    "Add": LayerKind(NoParams, bottoms=_TWO_OR_MORE),
    "DotProduct": LayerKind(NoParams, bottoms=_TWO_OR_MORE),
    "Interaction": LayerKind(NoParams, bottoms=(2, 2)),  # [mlp (B, E), embedding (B, S, E)]
    "BinaryCrossEntropyLoss": LayerKind(LossParams, bottoms=(2, 2), check=_regularizer_lambda),
    "CrossEntropyLoss": LayerKind(LossParams, bottoms=(2, 2), check=_regularizer_lambda),
    "MultiCrossEntropyLoss": LayerKind(MultiCrossEntropyLossParams, bottoms=(2, 2), check=_regularizer_lambda),
    # v3.1 layers, accepted in both precisions.
    "ElementwiseMultiply": LayerKind(NoParams, bottoms=_TWO_OR_MORE),
    "Softmax": LayerKind(NoParams),
    "Sub": LayerKind(NoParams, bottoms=(2, 2)),
    "ReduceMean": LayerKind(ReduceParams),
}

LOSS_TYPES = frozenset({"BinaryCrossEntropyLoss", "CrossEntropyLoss", "MultiCrossEntropyLoss"})
# v3.0 also refused MultiCross in mixed precision; v3.1 accepts it and so do we (the DCN samples with
# use_mixed_precision), see docs/compat.md.
FP32_ONLY = frozenset({"CrossEntropyLoss", "MultiCrossEntropyLoss"})
MIXED_ONLY = frozenset({"FusedInnerProduct"})
LAYER_TYPES_FP32 = frozenset(LAYER_KINDS) - MIXED_ONLY
LAYER_TYPES_MIXED = frozenset(LAYER_KINDS) - FP32_ONLY
