"""The parameter server: every embedding table of several models, on the host (HugeCTR spec 9.2).

For each model it reads the inference config's ``sparse_model_file`` list -- one file per embedding
layer, in layer order -- as v3.0 sparse model files (``key[, slot_id], vector`` rows; slot ids are
read and dropped for localized and one-hot types) or v3.1 directories. A table is a sorted key index
plus its vectors, so a batch lookup is one ``searchsorted``; keys it does not hold get the table's
``default_emb_vec_value`` in every element.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..config import parse_config
from ..embedding import EMBEDDING_TYPES as EMBEDDING_CLASSES
from ..embedding.files import read_sparse_model_dir, read_sparse_model_file
from ..fileio import check_snapshot_file
from ..embedding.hash_table import key_dtype, sentinel_key


class InferenceConfigError(ValueError):
    """Inference arguments that do not fit together (model names, key types, tables, devices)."""


def resolve_model_path(path, config_path):
    """A model file named in an inference config: as given when it exists (relative paths are relative
    to the working directory, as in HugeCTR), else relative to the config file's directory."""
    if os.path.isabs(path) or os.path.exists(path) or not config_path:
        return path
    beside = os.path.join(os.path.dirname(os.path.abspath(config_path)), path)
    return beside if os.path.exists(beside) else path


def load_inference_config(config_path, what):
    """Parse an inference config (``inference`` and ``layers`` clauses required)."""
    if not isinstance(config_path, (str, os.PathLike)):
        raise TypeError(f"{what}: a config path must be a string, got {type(config_path).__name__}")
    return parse_config(config_path, require=("inference", "layers"))


@dataclass(eq=False)
class EmbeddingTable:
    """One embedding table held by the parameter server."""

    name: str                  # the embedding layer's name (or top)
    keys: np.ndarray           # (V,) key dtype, ascending, distinct
    vectors: np.ndarray        # (V, E) float32
    default_value: float       # every element of an unknown key's vector
    source: str                # the file it was read from

    @property
    def vec_size(self):
        return self.vectors.shape[1]

    @property
    def rows(self):
        return self.keys.size

    def look_up(self, keys):
        """``keys`` (n,) → (vectors (n, E) float32, found (n,) bool); unknown keys get the default vector."""
        keys = np.asarray(keys, dtype=self.keys.dtype).reshape(-1)
        idx = np.searchsorted(self.keys, keys)
        found = idx < self.keys.size
        found[found] = self.keys[idx[found]] == keys[found]
        out = np.full((keys.size, self.vec_size), np.float32(self.default_value), dtype=np.float32)
        out[found] = self.vectors[idx[found]]
        return out, found


@dataclass(eq=False)
class ModelTables:
    """The tables of one model, in embedding-layer order, and the config they came from."""

    name: str
    config_path: str
    config: object             # the parsed ModelConfig
    tables: list


class ParameterServer:
    """``CreateParameterServer(model_config_path, model_name, i64_input_key)``: host copies of the
    embedding tables of every listed model (``ParameterServerBase`` in HugeCTR)."""

    framework_name = "Other"

    def __init__(self, model_config_path, model_name, i64_input_key):
        what = "CreateParameterServer"
        paths = _str_list(model_config_path, f"{what}(model_config_path=...)")
        names = _str_list(model_name, f"{what}(model_name=...)")
        if len(paths) != len(names):
            raise InferenceConfigError(f"{what}: model_config_path has {len(paths)} entries but model_name has "
                                       f"{len(names)}; give one name per config, in the same order")
        if len(set(names)) != len(names):
            raise InferenceConfigError(f"{what}: model_name lists a name twice: {names}")
        if not isinstance(i64_input_key, (bool, np.bool_)):
            raise TypeError(f"{what}(i64_input_key=...) must be True or False, got {i64_input_key!r}")
        self.i64_input_key = bool(i64_input_key)
        self.key_type = "I64" if self.i64_input_key else "I32"
        self.models = {}
        for path, name in zip(paths, names):
            self.models[name] = self._load_model(path, name)

    def _load_model(self, config_path, name):
        cfg = load_inference_config(config_path, "CreateParameterServer")
        if cfg.inference.input_key_type != self.key_type:
            raise InferenceConfigError(
                f"CreateParameterServer: model {name!r} ({config_path}) has inference.input_key_type "
                f"{cfg.inference.input_key_type!r} but i64_input_key={self.i64_input_key} means {self.key_type!r}")
        tables = []
        for i, (spec, path) in enumerate(zip(cfg.embeddings, cfg.inference.sparse_model_files)):
            resolved = resolve_model_path(path, config_path)
            if not os.path.exists(resolved):
                raise FileNotFoundError(f"model {name!r} table {i} ({spec.name or spec.top}): sparse model file "
                                        f"{path!r} not found (inference.sparse_model_file[{i}] in {config_path})")
            check_snapshot_file(resolved)
            if os.path.isdir(resolved):
                model = read_sparse_model_dir(resolved, vec_size=spec.embedding_vec_size, key_type=self.key_type)
            else:
                model = read_sparse_model_file(resolved, key_type=self.key_type, vec_size=spec.embedding_vec_size,
                                               with_slot_id=EMBEDDING_CLASSES[spec.type].has_slot_ids)
            keys, vectors = _first_occurrences(model.keys, model.vectors)
            if keys.size and int(keys[-1]) == sentinel_key(keys.dtype):
                raise InferenceConfigError(f"{resolved}: holds the reserved key {int(keys[-1])} (the cache's "
                                           "empty-entry marker, max of the key type)")
            tables.append(EmbeddingTable(spec.name or spec.top, keys, vectors, float(spec.default_emb_vec_value),
                                         resolved))
        return ModelTables(name, str(config_path), cfg, tables)

    def model(self, model_name):
        try:
            return self.models[model_name]
        except (KeyError, TypeError):
            raise KeyError(f"the parameter server holds no model named {model_name!r} "
                           f"(it holds {sorted(self.models)})") from None

    def table(self, model_name, table_id):
        tables = self.model(model_name).tables
        if not 0 <= table_id < len(tables):
            raise IndexError(f"model {model_name!r} has {len(tables)} embedding tables; no table {table_id}")
        return tables[table_id]

    def look_up(self, keys, model_name, table_id):
        """Vectors (n, E) float32 of ``keys`` in table ``table_id`` of ``model_name``, and a found
        mask (n,); unknown keys get the table's ``default_emb_vec_value``."""
        return self.table(model_name, table_id).look_up(keys)

    def __repr__(self):
        parts = ", ".join(f"{name}: {len(m.tables)} tables / {sum(t.rows for t in m.tables):,} rows"
                          for name, m in self.models.items())
        return f"<ParameterServer {self.key_type} ({parts})>"


def _str_list(value, what):
    if isinstance(value, (str, os.PathLike)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{what} must be a list of strings, got {type(value).__name__}")
    values = list(value)
    for i, v in enumerate(values):
        if not isinstance(v, (str, os.PathLike)):
            raise TypeError(f"{what}[{i}] must be a string, got {type(v).__name__}")
    if not values:
        raise InferenceConfigError(f"{what} is empty")
    return [os.fspath(v) for v in values]


def _first_occurrences(keys, vectors):
    """Sorted distinct keys and their vectors; a key that appears twice (localized dumps of several
    devices can hold one key in two slots) keeps its first row."""
    keys = np.asarray(keys, dtype=key_dtype(keys.dtype))
    uniq, first = np.unique(keys, return_index=True)
    return uniq, np.ascontiguousarray(vectors[first], dtype=np.float32)
