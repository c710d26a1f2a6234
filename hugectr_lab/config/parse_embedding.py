"""Embedding layers ↔ ``EmbeddingSpec``, and the rules that tie an embedding to its sparse input and optimizer.

Inference configs only need ``embedding_vec_size`` and ``combiner`` (HugeCTR's inference parser ignores
the table sizes), so the size keys are required only for training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from .errors import Loc
from .fields import json_object, keys_of, read_fields, read_value, tensor_names, warn_unknown, write_fields
from .parse_optimizer import optimizer_to_json, parse_optimizer
from .specs import EmbeddingSpec, OptimizerSpec, SparseInputSpec

HPARAM = "sparse_embedding_hparam"
_SIZES = ("max_vocabulary_size_per_gpu", "slot_size_array")
_VECTOR = ("embedding_vec_size", "combiner", "default_emb_vec_value")


class EmbeddingKind(NamedTuple):
    sparse_input: str                 # the sparse-input type that feeds it (the reader routes by slot or by key)
    hparam_keys: tuple[str, ...]      # the keys of sparse_embedding_hparam it reads
    training_keys: tuple[str, ...]    # of those, the ones a training config must give
    top_keys: tuple[str, ...]         # top-level keys besides the graph's


# The one table of embedding types (the embedding classes register under the same names).
EMBEDDING_KINDS = {
    "DistributedSlotSparseEmbeddingHash": EmbeddingKind("DistributedSlot", ("max_vocabulary_size_per_gpu", *_VECTOR),
                                                        ("max_vocabulary_size_per_gpu",), ("name",)),
    "LocalizedSlotSparseEmbeddingHash": EmbeddingKind("LocalizedSlot", (*_SIZES, *_VECTOR), (), ("name", "plan_file")),
    "LocalizedSlotSparseEmbeddingOneHot": EmbeddingKind("LocalizedSlot", (*_SIZES, *_VECTOR), ("slot_size_array",),
                                                        ("name",)),
}
EMBEDDING_TYPES = frozenset(EMBEDDING_KINDS)
_one_tensor = tensor_names(1, 1)


def parse_embedding(obj: Mapping, loc: Loc, type_: str, *, inference: bool) -> EmbeddingSpec:
    _, hparam_keys, training_keys, top_keys = EMBEDDING_KINDS[type_]
    hloc = loc.child(HPARAM)
    hparam = read_value(obj, loc, HPARAM, json_object)
    values = read_fields(EmbeddingSpec, hparam, hloc, names=hparam_keys, required=() if inference else training_keys)
    if (type_ == "LocalizedSlotSparseEmbeddingHash" and not inference
            and values["max_vocabulary_size_per_gpu"] is None and values["slot_size_array"] is None):
        hloc.fail("needs max_vocabulary_size_per_gpu or slot_size_array")
    values.update(read_fields(EmbeddingSpec, obj, loc, names=top_keys))
    if "optimizer" in obj:
        values["optimizer"] = parse_optimizer(obj["optimizer"], loc.child("optimizer"))
    warn_unknown(hparam, hloc, keys_of(EmbeddingSpec, hparam_keys))
    warn_unknown(obj, loc, {"type", "bottom", "top", HPARAM, "optimizer", *top_keys})
    return EmbeddingSpec(type=type_, bottom=read_value(obj, loc, "bottom", _one_tensor)[0],
                         top=read_value(obj, loc, "top", _one_tensor)[0], **values)


def check_embedding(emb: EmbeddingSpec, sparse: SparseInputSpec, optimizer: OptimizerSpec | None, loc: Loc, *,
                    inference: bool) -> None:
    """The rules between an embedding, the sparse input it reads and (training only) its optimizer."""
    needed = EMBEDDING_KINDS[emb.type].sparse_input
    if sparse.type != needed:
        loc.child("bottom").fail(f'"{emb.bottom}" is a {sparse.type} sparse input; {emb.type} reads {needed} ones')
    if emb.slot_size_array is not None and len(emb.slot_size_array) != sparse.slot_num:
        loc.child(HPARAM).child("slot_size_array").fail(
            f'has {len(emb.slot_size_array)} entries but "{emb.bottom}" has slot_num {sparse.slot_num}')
    own = emb.optimizer is not None
    opt = emb.optimizer if own else optimizer
    if (emb.type == "LocalizedSlotSparseEmbeddingOneHot" and not inference and opt is not None
            and not (opt.type == "SGD" and opt.atomic_update)):
        (loc.child("optimizer") if own else loc).fail(
            f"LocalizedSlotSparseEmbeddingOneHot only supports the SGD optimizer with atomic_update: true, got "
            f"{opt.type}{'' if opt.type != 'SGD' else ' with atomic_update: false'}"
            f"{'' if own else ' from the top-level optimizer clause'}")


def embedding_to_json(emb: EmbeddingSpec) -> dict:
    _, hparam_keys, _, top_keys = EMBEDDING_KINDS[emb.type]
    head = {"name": emb.name} if emb.name else {}
    out = {**head, "type": emb.type, "bottom": emb.bottom, "top": emb.top,
           HPARAM: write_fields(emb, names=hparam_keys)}
    if emb.optimizer is not None:
        out["optimizer"] = optimizer_to_json(emb.optimizer)
    return {**out, **write_fields(emb, names=set(top_keys) - {"name"})}
