"""The ``layers`` list: the Data layer, then the embeddings, then dense and loss layers, under the graph rules."""

from __future__ import annotations

from collections.abc import Mapping

from .errors import Loc
from .fields import (got, json_object, keys_of, list_of, nonempty_string, read_fields, read_value, tensor_names,
                     validate, warn_unknown, write_fields)
from .graph import TensorRegistry
from .layer_params import FP32_ONLY, LAYER_KINDS, LOSS_TYPES, MIXED_ONLY, LayerKind
from .parse_data import parse_data
from .parse_embedding import EMBEDDING_TYPES, check_embedding, parse_embedding
from .specs import DataSpec, EmbeddingSpec, LayerSpec, OptimizerSpec

_GRAPH_KEYS = {"name", "type", "bottom", "top"}
_layer_list = list_of(json_object, min_len=1, what="a non-empty list of layer objects")


def _label(type_: str, obj: Mapping) -> str:
    name = obj.get("name")
    return f'{type_} "{name}"' if isinstance(name, str) and name else type_


def _kind(type_: str, loc: Loc, mixed_precision: bool) -> LayerKind:
    tloc = loc.child("type")
    if type_ == "Data":
        tloc.fail("only layers[0] may be the Data layer")
    if type_ in EMBEDDING_TYPES:
        loc.fail("embedding layers must come right after the Data layer, before every dense layer")
    if type_ == "Multiply":
        tloc.fail('"Multiply" was renamed "WeightMultiply" in HugeCTR v3.0')
    if type_ not in LAYER_KINDS:
        tloc.fail(f"unknown layer type {got(type_)}; known: {', '.join(sorted(LAYER_KINDS))}")
    if mixed_precision and type_ in FP32_ONLY:
        tloc.fail(f"{type_} is FP32-only in HugeCTR v3.0, but mixed precision is on")
    if not mixed_precision and type_ in MIXED_ONLY:
        tloc.fail(f"{type_} needs mixed precision (solver.mixed_precision, or use_mixed_precision=True)")
    return LAYER_KINDS[type_]


def parse_dense_layer(obj: Mapping, loc: Loc, type_: str, *, mixed_precision: bool) -> LayerSpec:
    kind = _kind(type_, loc, mixed_precision)
    raw = read_value(obj, loc, kind.group, json_object) if kind.group else obj
    params_loc = loc.child(kind.group or "")
    layer = LayerSpec(type_, read_value(obj, loc, "name", nonempty_string, None),
                      read_value(obj, loc, "bottom", tensor_names(*kind.bottoms)),
                      read_value(obj, loc, "top", tensor_names(*kind.tops)),
                      kind.params(**read_fields(kind.params, raw, params_loc)))
    problem = kind.check(layer, raw) if kind.check else None
    if problem:
        loc.child(problem[0]).fail(problem[1])
    if kind.group:
        warn_unknown(raw, params_loc, keys_of(kind.params))
    warn_unknown(obj, loc, _GRAPH_KEYS | ({kind.group} if kind.group else keys_of(kind.params)))
    return layer


def _one_or_list(names: tuple[str, ...]) -> str | list[str]:
    return names[0] if len(names) == 1 else list(names)


def layer_to_json(layer: LayerSpec) -> dict:
    kind = LAYER_KINDS[layer.type]
    # A regularizer requires "lambda" even when it equals its default.
    params = write_fields(layer.params, always=("lambda_",) if getattr(layer.params, "regularizer", None) else ())
    head = {"name": layer.name} if layer.name else {}
    out = {**head, "type": layer.type, "bottom": _one_or_list(layer.bottoms), "top": _one_or_list(layer.tops)}
    return {**out, kind.group: params} if kind.group else {**out, **params}


def parse_layers(value, loc: Loc, *, mixed_precision: bool, inference: bool, optimizer: OptimizerSpec | None
                 ) -> tuple[DataSpec, tuple[EmbeddingSpec, ...], tuple[LayerSpec, ...]]:
    """Parse and check the whole graph. A training graph needs exactly one loss layer; inference at most one."""
    objs = validate(value, _layer_list, loc)
    tensors = TensorRegistry()
    data = _parse_data_layer(objs[0], loc.child(0), tensors, inference=inference)
    embeddings, dense = [], []
    for i, obj in enumerate(objs[1:], start=1):
        owner = loc.child(i).path
        type_ = read_value(obj, loc.child(i), "type", nonempty_string)
        lloc = loc.child(i).labelled(_label(type_, obj))
        if type_ in EMBEDDING_TYPES and not dense:
            emb = parse_embedding(obj, lloc, type_, inference=inference)
            tensors.consume(emb.bottom, lloc.child("bottom"), owner, sparse=True)
            check_embedding(emb, data.sparse_input(emb.bottom), optimizer, lloc, inference=inference)
            tensors.define(emb.top, lloc.child("top"), owner)
            embeddings.append(emb)
            continue
        layer = parse_dense_layer(obj, lloc, type_, mixed_precision=mixed_precision)
        if set(layer.bottoms) & set(layer.tops):
            lloc.child("top").fail("names the same tensor as bottom")
        for name in layer.bottoms:
            tensors.consume(name, lloc.child("bottom"), owner)
        if type_ not in LOSS_TYPES:  # a loss layer's top is only a name; it defines no tensor
            for name in layer.tops:
                tensors.define(name, lloc.child("top"), owner)
        dense.append(layer)
    losses = [layer for layer in dense if layer.type in LOSS_TYPES]
    if len(losses) > 1 or (not inference and not losses):
        loc.fail(f"needs {'at most' if inference else 'exactly'} one loss layer "
                 f"({', '.join(sorted(LOSS_TYPES))}), found {len(losses)}")
    return data, tuple(embeddings), tuple(dense)


def _parse_data_layer(obj: Mapping, loc: Loc, tensors: TensorRegistry, *, inference: bool) -> DataSpec:
    if obj.get("type") != "Data":
        loc.child("type").fail(f'the first layer must be the Data layer (type "Data"), got {got(obj.get("type"))}')
    loc = loc.labelled(_label("Data", obj))
    data = parse_data(obj, loc, inference=inference)
    owner = loc.path
    if data.label.top is not None:
        tensors.define(data.label.top, loc.child("label.top"), owner)
    tensors.define(data.dense.top, loc.child("dense.top"), owner)
    for i, s in enumerate(data.sparse):
        tensors.define(s.top, loc.child(f"sparse[{i}].top"), owner, sparse=True)
    return data

