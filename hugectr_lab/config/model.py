"""``parse_config``: a whole HugeCTR JSON config → a frozen ``ModelConfig``, and ``ModelConfig.to_json`` back."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..input_files import located, read_text
from .errors import ConfigError, Loc
from .fields import warn_unknown
from .parse_data import data_to_json
from .parse_embedding import embedding_to_json
from .parse_inference import inference_to_json, parse_inference
from .parse_layers import layer_to_json, parse_layers
from .parse_optimizer import optimizer_to_json, parse_optimizer
from .parse_solver import parse_solver, solver_to_json
from .specs import (DataSpec, EmbeddingSpec, InferenceSpec, LayerSpec, OptimizerSpec, SolverSpec,
                    SparseInputSpec)

CLAUSES = ("solver", "optimizer", "layers", "inference")


@dataclass(frozen=True)
class ModelConfig:
    """A parsed config. ``mixed_precision`` is the precision the layers were checked for.

    ``parse_config(cfg.to_json()) == cfg`` whenever the precision came from the config itself (pass
    ``mixed_precision=cfg.mixed_precision`` otherwise); ``source_path`` does not take part in equality.
    """

    solver: SolverSpec | None
    optimizer: OptimizerSpec | None
    data: DataSpec | None
    embeddings: tuple[EmbeddingSpec, ...]
    layers: tuple[LayerSpec, ...]
    inference: InferenceSpec | None
    source_path: str | None = field(default=None, compare=False)
    mixed_precision: bool = False

    def sparse_input(self, name: str) -> SparseInputSpec:
        """The Data layer's sparse input whose top is ``name`` (KeyError if none)."""
        if self.data is None:
            raise KeyError(f"no sparse input named {name!r}: the config has no layers")
        return self.data.sparse_input(name)

    @property
    def total_slot_num(self) -> int:
        """Slots over all sparse inputs, i.e. categorical features per sample."""
        return self.data.total_slot_num if self.data is not None else 0

    def optimizer_for(self, embedding: EmbeddingSpec) -> OptimizerSpec | None:
        """The embedding's own optimizer, else the top-level one."""
        return embedding.optimizer or self.optimizer

    def to_json(self) -> dict[str, Any]:
        """HugeCTR-style JSON (nested ``fc_param``, combiner as 0/1, ``update_type`` spelled out)."""
        out: dict[str, Any] = {}
        if self.solver is not None:
            out["solver"] = solver_to_json(self.solver)
        if self.optimizer is not None:
            out["optimizer"] = optimizer_to_json(self.optimizer)
        if self.inference is not None:
            out["inference"] = inference_to_json(self.inference)
        if self.data is not None:
            out["layers"] = [data_to_json(self.data), *map(embedding_to_json, self.embeddings),
                             *map(layer_to_json, self.layers)]
        return out


def load_json(src: str | os.PathLike | Mapping) -> tuple[Mapping, str | None]:
    """The config object and the file it came from. ``src`` is a path, JSON text (starts with ``{``) or a dict."""
    if isinstance(src, Mapping):
        return src, None
    if isinstance(src, str) and src.lstrip().startswith("{"):
        text, file = src, None
    elif isinstance(src, (str, os.PathLike)):
        file = os.fspath(src)
        text = read_text(file, "JSON config", lambda offset, what: ConfigError(located(file, offset, what), file=file))
    else:
        raise TypeError(f"parse_config takes a path, JSON text or a dict, got {type(src).__name__}")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"invalid JSON: {e}" + (f" (in {file})" if file else ""), file=file) from None
    if not isinstance(obj, dict):
        Loc(file=file).fail(f"the top level must be a JSON object, got {type(obj).__name__}")
    return obj, file


def parse_optimizer_clause(src: str | os.PathLike | Mapping) -> OptimizerSpec:
    """The top-level ``optimizer`` clause of a config (path, JSON text or dict) as the learning-rate
    scheduler reads it (``parse_optimizer(..., schedule_only=True)``); no other clause is read."""
    obj, file = load_json(src)
    root = Loc(file=file)
    if "optimizer" not in obj:
        root.child("optimizer").fail("the clause is required here but missing")
    return parse_optimizer(obj["optimizer"], root.child("optimizer"), schedule_only=True)


def parse_config(src: str | os.PathLike | Mapping, *, mixed_precision: bool | None = None,
                 require: tuple[str, ...] = ("layers",), ignore: tuple[str, ...] = ()) -> ModelConfig:
    """Parse and check a HugeCTR config.

    ``mixed_precision`` (the Session passes its SolverParser's) overrides the config's own setting, which
    is the ``inference`` clause's in inference configs and the ``solver`` clause's otherwise. ``require``
    names the clauses that must be present; ``ignore`` names clauses to skip unread (HugeCTR's Session
    never reads the ``solver`` clause, so ``Session`` passes ``ignore=("solver",)``). A config with an
    ``inference`` clause is an inference config: its Data layer needs no sources, its embeddings no table
    sizes, and it may have no loss layer.
    """
    unknown = (set(require) | set(ignore)) - set(CLAUSES)
    if unknown:
        raise ValueError(f"unknown clause names {sorted(unknown)}; the clauses are {CLAUSES}")
    if mixed_precision is not None and not isinstance(mixed_precision, bool):
        raise TypeError(f"mixed_precision must be True, False or None, got {mixed_precision!r}")
    obj, file = load_json(src)
    obj = {k: v for k, v in obj.items() if k not in ignore}
    root = Loc(file=file)
    for clause in require:
        if clause not in obj:
            root.child(clause).fail("the clause is required here but missing")
    warn_unknown(obj, root, CLAUSES)
    solver = parse_solver(obj["solver"], root.child("solver")) if "solver" in obj else None
    optimizer = parse_optimizer(obj["optimizer"], root.child("optimizer")) if "optimizer" in obj else None
    inference = parse_inference(obj["inference"], root.child("inference")) if "inference" in obj else None
    if mixed_precision is None:
        owner = inference or solver
        mixed_precision = owner.use_mixed_precision if owner is not None else False
    data, embeddings, layers = None, (), ()
    if "layers" in obj:
        data, embeddings, layers = parse_layers(obj["layers"], root.child("layers"), mixed_precision=mixed_precision,
                                                inference=inference is not None, optimizer=optimizer)
        if inference is not None and len(inference.sparse_model_files) != len(embeddings):
            root.child("inference.sparse_model_file").fail(
                f"names {len(inference.sparse_model_files)} files but the config has {len(embeddings)} embedding "
                "layers (one sparse model file per embedding, in layer order)")
    return ModelConfig(solver, optimizer, data, embeddings, layers, inference, file, mixed_precision)
