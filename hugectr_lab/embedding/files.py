"""Sparse model files (HugeCTR v3.0 file, v3.1 directory) and our per-key optimizer-state directory.

v3.0 sparse model file: rows ``(key: TypeKey, [slot_id: uint64,] vector: float32[E])``, little-endian,
no header, no padding; TypeKey is uint32 (I32) or int64 (I64) and the file does not say which.
Localized and one-hot embeddings write the slot id, the distributed embedding does not.

v3.1 sparse model directory: parallel raw arrays ``key`` (int64 always), ``emb_vector`` (float32 [n, E])
and, for localized types, ``slot_id`` (uint64).

Sparse optimizer state (ours, see docs/embeddings.md): a directory with ``meta.json``, ``key`` (int64),
optional ``slot_id`` (uint64) and one raw array per state (``m``, ``v``, ``momentum``, ...) aligned
with the keys -- state follows keys, unlike HugeCTR v3.0's dump indexed by internal table row.

Every writer replaces its target atomically: it writes a temporary sibling and renames it into place.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import numpy as np

from ..fileio import atomic_write, write_dir_atomic
from .hash_table import key_dtype, key_type_name

STATE_FORMAT = "hugectr-lab sparse optimizer state"
STATE_VERSION = 1


class SparseModelFileError(ValueError):
    """A sparse model or optimizer-state file that does not match what the embedding expects."""


class SparseModel(NamedTuple):
    keys: np.ndarray              # (n,) key dtype
    vectors: np.ndarray           # (n, E) float32
    slot_ids: np.ndarray | None   # (n,) uint64, localized types only


class SparseOptimizerState(NamedTuple):
    keys: np.ndarray              # (n,) key dtype
    states: dict                  # name -> (n, ...) array
    slot_ids: np.ndarray | None   # (n,) uint64
    step: int                     # update calls so far (Adam's bias correction)
    optimizer: str                # e.g. "Adam"
    update_type: str


# ---- v3.0 sparse model file -----------------------------------------------------------------------

def sparse_row_dtype(key_type, vec_size, with_slot_id):
    """Packed numpy dtype of one v3.0 sparse model row."""
    fields = [("key", key_dtype(key_type).newbyteorder("<"))]
    if with_slot_id:
        fields.append(("slot_id", "<u8"))
    fields.append(("vector", "<f4", (int(vec_size),)))
    return np.dtype(fields)


def write_sparse_model_file(path, keys, vectors, slot_ids=None, *, key_type):
    """Write a v3.0 sparse model file (slot ids given = localized row layout)."""
    keys, vectors = np.asarray(keys), np.asarray(vectors, dtype=np.float32)
    rows = np.empty(keys.size, dtype=sparse_row_dtype(key_type, vectors.shape[1], slot_ids is not None))
    rows["key"] = keys
    if slot_ids is not None:
        rows["slot_id"] = slot_ids
    rows["vector"] = vectors
    with atomic_write(path) as f:
        rows.tofile(f)


def read_sparse_model_file(path, *, key_type, vec_size, with_slot_id):
    """Read a v3.0 sparse model file; its size must be a whole number of rows."""
    dtype = sparse_row_dtype(key_type, vec_size, with_slot_id)
    size = _file_size(path)
    if size % dtype.itemsize:
        layout = "key, slot_id, vector" if with_slot_id else "key, vector"
        raise SparseModelFileError(
            f"{path}: {size} bytes is not a multiple of the row size {dtype.itemsize} for key type "
            f"{key_type_name(key_dtype(key_type))} and vec {vec_size} (rows: {layout}); check i64_input_key, "
            "embedding_vec_size and the embedding type")
    rows = np.fromfile(path, dtype=dtype)
    return SparseModel(rows["key"].astype(key_dtype(key_type)), np.ascontiguousarray(rows["vector"]),
                       rows["slot_id"].astype(np.uint64) if with_slot_id else None)


# ---- v3.1 sparse model directory ------------------------------------------------------------------

def write_sparse_model_dir(path, keys, vectors, slot_ids=None):
    """Write a v3.1 sparse model directory (``key`` int64, ``emb_vector`` float32, [``slot_id`` uint64])."""
    arrays = {"key": np.asarray(keys).astype("<i8"), "emb_vector": np.asarray(vectors, dtype="<f4")}
    if slot_ids is not None:
        arrays["slot_id"] = np.asarray(slot_ids).astype("<u8")
    write_dir_atomic(path, arrays)


def read_sparse_model_dir(path, *, vec_size, key_type="I64"):
    """Read a v3.1 sparse model directory; keys are converted to ``key_type`` (I32 keys must fit uint32)."""
    keys = _read_keys(path, key_type)
    vectors = _read_aligned(path, "emb_vector", "<f4", (keys.size, int(vec_size)), f"vec {vec_size}")
    slot_ids = None
    if os.path.exists(os.path.join(path, "slot_id")):
        slot_ids = _read_aligned(path, "slot_id", "<u8", (keys.size,), "one uint64 per key")
    return SparseModel(keys, vectors, slot_ids)


# ---- per-key sparse optimizer state ---------------------------------------------------------------

def write_sparse_optimizer_state(path, keys, states, *, step, optimizer, update_type, slot_ids=None):
    """Write our optimizer-state directory: meta.json, key, [slot_id], one file per state array."""
    keys = np.asarray(keys)
    arrays = {"key": keys.astype("<i8")}
    if slot_ids is not None:
        arrays["slot_id"] = np.asarray(slot_ids).astype("<u8")
    meta_states = {}
    for name, array in states.items():
        array = np.asarray(array)
        if name in ("key", "slot_id", "meta.json") or array.shape[0] != keys.size:
            raise ValueError(f"optimizer state {name!r}: bad name or {array.shape[0]} rows for {keys.size} keys")
        arrays[name] = array.astype(array.dtype.newbyteorder("<"))
        meta_states[name] = {"dtype": array.dtype.name, "shape": list(array.shape)}
    meta = {"format": STATE_FORMAT, "version": STATE_VERSION, "optimizer": optimizer, "update_type": update_type,
            "step": int(step), "num_keys": int(keys.size), "slot_id": slot_ids is not None, "states": meta_states}
    arrays["meta.json"] = json.dumps(meta, indent=2).encode()
    write_dir_atomic(path, arrays)


def read_sparse_optimizer_state(path, *, key_type="I64"):
    """Read our optimizer-state directory (checks the format tag, version and every file size)."""
    meta_path = os.path.join(path, "meta.json")
    try:
        with open(meta_path, "rb") as f:
            meta = json.loads(f.read())
    except FileNotFoundError:
        raise SparseModelFileError(f"{path}: not a sparse optimizer-state directory (no meta.json)") from None
    except ValueError as err:
        raise SparseModelFileError(f"{meta_path}: not valid JSON ({err})") from None
    if meta.get("format") != STATE_FORMAT or meta.get("version") != STATE_VERSION:
        raise SparseModelFileError(f"{meta_path}: expected format {STATE_FORMAT!r} version {STATE_VERSION}, got "
                                   f"{meta.get('format')!r} version {meta.get('version')!r}")
    keys = _read_keys(path, key_type)
    if keys.size != meta["num_keys"]:
        raise SparseModelFileError(f"{path}: meta.json says {meta['num_keys']} keys, the key file holds {keys.size}")
    states = {name: _read_aligned(path, name, np.dtype(info["dtype"]).newbyteorder("<"), tuple(info["shape"]),
                                  info["dtype"])
              for name, info in meta["states"].items()}
    slot_ids = _read_aligned(path, "slot_id", "<u8", (keys.size,), "one uint64 per key") if meta["slot_id"] else None
    return SparseOptimizerState(keys, states, slot_ids, meta["step"], meta["optimizer"], meta["update_type"])


# ---- embedding-level helpers ----------------------------------------------------------------------

def save_sparse_model(embedding, path, directory=False):
    """Write ``embedding.dump()`` as a v3.0 file, or a v3.1 directory when ``directory``. Over several
    MPI processes every process calls it (the dump is collective) and process 0 writes."""
    keys, vectors, slot_ids = embedding.dump()
    if embedding.comm.group.rank != 0:
        return
    if directory:
        write_sparse_model_dir(path, keys, vectors, slot_ids)
    else:
        write_sparse_model_file(path, keys, vectors, slot_ids, key_type=embedding.key_dtype)


def load_sparse_model(embedding, path):
    """Load a v3.0 file or v3.1 directory (told apart by ``path`` being a directory) into ``embedding``."""
    if os.path.isdir(path):
        model = read_sparse_model_dir(path, vec_size=embedding.embedding_vec_size, key_type=embedding.key_dtype)
    else:
        model = read_sparse_model_file(path, key_type=embedding.key_dtype, vec_size=embedding.embedding_vec_size,
                                       with_slot_id=embedding.has_slot_ids)
    embedding.load(*model)


def save_sparse_optimizer_state(embedding, path):
    """Write the embedding's optimizer state per key (aligned with ``dump()``); collective like
    ``save_sparse_model``."""
    keys, _, slot_ids = embedding.dump()
    states = embedding.dump_optimizer_state()
    if embedding.comm.group.rank != 0:
        return
    opt = embedding.optimizer
    write_sparse_optimizer_state(path, keys, states, step=embedding.step,
                                 optimizer=opt.type_name, update_type=opt.update_type, slot_ids=slot_ids)


def load_sparse_optimizer_state(embedding, path):
    """Load a state directory written by ``save_sparse_optimizer_state`` into ``embedding``."""
    saved = read_sparse_optimizer_state(path, key_type=embedding.key_dtype)
    opt = embedding.optimizer
    if saved.optimizer != opt.type_name:
        raise SparseModelFileError(f"{path}: holds {saved.optimizer} state but embedding '{embedding.name}' "
                                   f"uses {opt.type_name}")
    embedding.load_optimizer_state(saved.keys, saved.states, saved.slot_ids, step=saved.step)


# ---- helpers --------------------------------------------------------------------------------------

def _file_size(path):
    try:
        return os.path.getsize(path)
    except OSError as err:
        raise SparseModelFileError(f"{path}: cannot read ({err.strerror})") from None


def _read_keys(path, key_type):
    file = os.path.join(path, "key")
    size = _file_size(file)
    if size % 8:
        raise SparseModelFileError(f"{file}: {size} bytes is not a multiple of 8 (int64 keys)")
    keys = np.fromfile(file, dtype="<i8")
    dtype = key_dtype(key_type)
    if dtype == np.uint32 and keys.size and (keys.min() < 0 or keys.max() > np.iinfo(np.uint32).max):
        bad = keys.min() if keys.min() < 0 else keys.max()
        raise SparseModelFileError(f"{file}: key {int(bad)} does not fit key type I32 (uint32); "
                                   "load it with i64_input_key")
    return keys.astype(dtype)


def _read_aligned(path, name, dtype, shape, what):
    file = os.path.join(path, name)
    dtype = np.dtype(dtype)
    expected = int(np.prod(shape)) * dtype.itemsize
    size = _file_size(file)
    if size != expected:
        raise SparseModelFileError(f"{file}: {size} bytes, expected {expected} ({shape[0]} keys, {what})")
    return np.fromfile(file, dtype=dtype).reshape(shape)
