"""The Data layer (``layers[0]``) ↔ ``DataSpec``.

Training configs need ``source``, ``check`` and, for Raw, ``num_samples``/``eval_num_samples``; inference
configs need none of them and may leave out the label's ``top``. Keys that belong to another format
(``num_samples`` with Norm, say) are ignored with a warning, as HugeCTR never reads them.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import Loc
from .fields import json_object, keys_of, list_of, read_fields, read_object, read_value, warn_unknown, write_fields
from .specs import DataSpec, DenseSpec, LabelSpec, SparseInputSpec

_COMMON = ("name", "format", "source", "eval_source", "check", "cache_eval_data", "num_workers")
FORMAT_KEYS = {
    "Norm": _COMMON,
    "Raw": (*_COMMON, "num_samples", "eval_num_samples", "slot_size_array", "float_label_dense"),
    "Parquet": (*_COMMON, "slot_size_array"),
}
_NESTED = ("label", "dense", "sparse")
_sparse_list = list_of(json_object, min_len=1, what="a list of sparse inputs")


def _training_keys(format_: str) -> tuple[str, ...]:
    return ("source", "check", *(("num_samples", "eval_num_samples") if format_ == "Raw" else ()))


def parse_data(obj: Mapping, loc: Loc, *, inference: bool) -> DataSpec:
    format_ = read_fields(DataSpec, obj, loc, names=("format",))["format"]
    names = FORMAT_KEYS[format_]
    values = read_fields(DataSpec, obj, loc, names=names, required=() if inference else _training_keys(format_))
    values["label"] = read_object(LabelSpec, read_value(obj, loc, "label", json_object), loc.child("label"),
                                  required=() if inference else ("top",))
    values["dense"] = read_object(DenseSpec, read_value(obj, loc, "dense", json_object), loc.child("dense"))
    values["sparse"] = tuple(read_object(SparseInputSpec, s, loc.child("sparse").child(i))
                             for i, s in enumerate(read_value(obj, loc, "sparse", _sparse_list)))
    spec = DataSpec(**values)
    if spec.slot_size_array is not None and len(spec.slot_size_array) != spec.total_slot_num:
        loc.child("slot_size_array").fail(f"has {len(spec.slot_size_array)} entries but the sparse inputs have "
                                          f"{spec.total_slot_num} slots in all")
    warn_unknown(obj, loc, keys_of(DataSpec, names) | {"type", *_NESTED})
    return spec


def data_to_json(spec: DataSpec) -> dict:
    head = {"name": spec.name} if spec.name else {}
    return {**head, "type": "Data", **write_fields(spec, names=set(FORMAT_KEYS[spec.format]) - {"name"}),
            "label": write_fields(spec.label), "dense": write_fields(spec.dense),
            "sparse": [write_fields(s) for s in spec.sparse]}

