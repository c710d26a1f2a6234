"""ModelOversubscriber: train embedding tables larger than the device tables (HugeCTR v3.0 §8).

The full table of every embedding lives in a ``ParameterStore`` on the host: an in-memory index
key -> (slot id, row) and the rows in a file under ``temp_embedding_dir`` (float32 rows of E values,
HugeCTR's layout, memory-mapped, so the operating system keeps the hot part in host memory and the rest
on disk). The devices hold only the keys of the current sub-dataset (at most
``max_vocabulary_size_per_gpu`` per device):

* ``update(keyset)`` writes the device tables back to the store, clears and re-draws the device tables
  (``SparseEmbedding.reset``), then loads the store's rows of the keyset's keys (keys the store has never
  seen are skipped; they are inserted with fresh values when training meets them);
* ``store(files)`` writes the device tables back and one complete sparse model file per embedding.

Unlike HugeCTR (quirk 18), optimizer state follows its keys: the store keeps every key's state in
files beside the vectors and loads it back with the key, so training over several key sets equals
training with everything resident (for Local updates; Global/LazyGlobal updates touch resident rows only).

The store's files are removed by ``close()``, when the Session closes, or when the object is
garbage-collected.
"""

from __future__ import annotations

import os
import secrets
import string
import threading
import weakref
from os import PathLike

import numpy as np

from .data import read_keyset
from .embedding import (read_sparse_model_dir, read_sparse_model_file, read_sparse_optimizer_state,
                        write_sparse_model_file, write_sparse_optimizer_state)
from .embedding.hash_table import merge_sorted
from .fileio import MANIFEST_SUFFIX, Snapshot, check_snapshot_file

_NAME_CHARS = string.ascii_letters + string.digits


def _random_name():
    """12-20 alphanumeric characters, as HugeCTR names its temporary embedding files."""
    return "".join(secrets.choice(_NAME_CHARS) for _ in range(12 + secrets.randbelow(9)))


def _remove_files(paths):
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


class _RowFile:
    """A growable memory-mapped array of rows ``(capacity, *row_shape)`` in one file."""

    def __init__(self, path, row_shape, dtype):
        self.path, self.row_shape, self.dtype = path, tuple(row_shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.capacity = 0
        self._map = None
        open(path, "wb").close()

    def reserve(self, rows):
        if rows <= self.capacity:
            return
        capacity = max(rows, 2 * self.capacity, 1024)
        self._map = None  # unmap before the file grows
        with open(self.path, "r+b") as f:
            f.truncate(capacity * self.row_bytes)
        self.capacity = capacity
        self._map = np.memmap(self.path, self.dtype, "r+", shape=(capacity, *self.row_shape))

    @property
    def rows(self):
        return self._map

    def close(self):
        self._map = None


class ParameterStore:
    """The whole table of one embedding: keys -> rows in memory, vectors and optimizer state in files.

    ``state_template``: ``{name: (row_shape, dtype, initial row)}`` of the embedding's sparse optimizer;
    a key that enters the store without state gets the initial row.
    """

    def __init__(self, directory, vec_size, key_dtype, *, state_template=None, with_slot_ids=False):
        self.directory, self.vec_size, self.key_dtype = str(directory), int(vec_size), np.dtype(key_dtype)
        self.with_slot_ids = with_slot_ids
        self.num_rows = 0
        self._index = (np.empty(0, self.key_dtype), np.empty(0, np.int64))  # sorted keys, their rows
        self._keys = np.empty(0, self.key_dtype)  # (capacity,) key of each row
        self._slots = np.empty(0, np.uint64)  # (capacity,) slot id of each row
        base = os.path.join(self.directory, _random_name())
        self.vectors = _RowFile(base, (self.vec_size,), np.float32)  # HugeCTR's temp file: rows of E float32
        self._template = dict(state_template or {})
        self.states = {name: _RowFile(f"{base}.{name}", shape, dtype)
                       for name, (shape, dtype, _) in self._template.items()}

    @property
    def paths(self):
        return [self.vectors.path] + [f.path for f in self.states.values()]

    def __len__(self):
        return self.num_rows

    def find(self, keys) -> np.ndarray:
        """Rows of ``keys`` (N,); -1 where absent.  # (N,) int64"""
        index_keys, index_rows = self._index
        keys = np.asarray(keys, self.key_dtype)
        if not index_keys.size or not keys.size:
            return np.full(keys.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(index_keys, keys), index_keys.size - 1)
        return np.where(index_keys[pos] == keys, index_rows[pos], -1)

    def upsert(self, keys, vectors, slot_ids=None, states=None) -> np.ndarray:
        """Write ``vectors`` (N, E) (and ``states``: name -> (N, ...), if given) for distinct ``keys``
        (N,): rows of known keys are overwritten, new keys get the next rows. Returns the rows (N,)."""
        keys = np.asarray(keys, self.key_dtype)
        if not keys.size:
            return np.zeros(0, np.int64)
        rows = self.find(keys)
        new = np.flatnonzero(rows < 0)
        if new.size:
            first = self.num_rows
            rows[new] = first + np.arange(new.size)
            self._grow(first + new.size)
            self._keys[first:first + new.size] = keys[new]
            order = np.argsort(keys[new])
            self._index = merge_sorted(np, *self._index, keys[new][order], rows[new][order])
            for name, file in self.states.items():  # state rows start at the optimizer's initial value
                file.rows[first:first + new.size] = self._template[name][2]
            self.num_rows += new.size
        self.vectors.rows[rows] = np.asarray(vectors, np.float32).reshape(-1, self.vec_size)
        if self.with_slot_ids and slot_ids is not None:
            self._slots[rows] = np.asarray(slot_ids).astype(np.uint64)
        for name, array in (states or {}).items():
            self.states[name].rows[rows] = np.asarray(array)
        return rows

    def set_states(self, keys, states):
        """Set the optimizer state of ``keys`` already in the store; returns how many were not."""
        rows = self.find(keys)
        present = rows >= 0
        for name, array in states.items():
            self.states[name].rows[rows[present]] = np.asarray(array)[present]
        return int((~present).sum())

    def read(self, rows):
        """``(keys, vectors (N, E), slot ids or None, states)`` of ``rows`` (copies)."""
        rows = np.asarray(rows, np.int64)
        if not self.num_rows:  # nothing mapped yet
            self._grow(1)
        return (self._keys[rows].copy(), np.array(self.vectors.rows[rows]),
                self._slots[rows].copy() if self.with_slot_ids else None,
                {name: np.array(file.rows[rows]) for name, file in self.states.items()})

    def all_rows(self):
        """Everything in row order: ``(keys, vectors, slot ids or None, states)``."""
        return self.read(np.arange(self.num_rows))

    def _grow(self, rows):
        if rows > len(self._keys):
            capacity = max(rows, 2 * len(self._keys), 1024)
            self._keys = np.concatenate([self._keys, np.zeros(capacity - len(self._keys), self.key_dtype)])
            self._slots = np.concatenate([self._slots, np.zeros(capacity - len(self._slots), np.uint64)])
        for file in [self.vectors, *self.states.values()]:
            file.reserve(len(self._keys))

    def close(self):
        for file in [self.vectors, *self.states.values()]:
            file.close()
        _remove_files(self.paths)


class ModelOversubscriber:
    """HugeCTR's ModelOversubscriber over a Session's embeddings (``Session.get_model_oversubscriber()``).

    ``embedding_files`` (one per embedding, v3.0 files or v3.1 directories) fill the stores at
    construction; ``sparse_opt_states_files`` (our per-key state directories) give their optimizer
    state. The device tables stay as they are until the first ``update``.
    """

    def __init__(self, embeddings, temp_embedding_dir, *, embedding_files=(), sparse_opt_states_files=(), lock=None):
        self._lock = lock or threading.RLock()   # a Session passes its own (docs/reliability.md)
        if not temp_embedding_dir:
            raise ValueError("the model oversubscriber needs temp_embedding_dir: a writable directory for the "
                             "host-side embedding tables (Session(solver, config, True, temp_embedding_dir))")
        self.embeddings = list(embeddings)
        self.temp_embedding_dir = str(temp_embedding_dir)
        os.makedirs(self.temp_embedding_dir, exist_ok=True)
        for what, files in (("embedding_files", embedding_files), ("sparse_opt_states_file", sparse_opt_states_files)):
            if files and len(files) != len(self.embeddings):
                raise ValueError(f"with the model oversubscriber, solver {what} must list one file per embedding "
                                 f"({len(self.embeddings)}), got {len(files)}")
        self.stores = []
        self._finalizer = weakref.finalize(self, _remove_files, [])
        for emb in self.embeddings:
            template = {name: (a.shape[1:], a.dtype, np.array(a[0])) for name, a in
                        emb.optimizer.init_state(np, 1, emb.embedding_vec_size).items()}
            store = ParameterStore(self.temp_embedding_dir, emb.embedding_vec_size, emb.key_dtype,
                                   state_template=template, with_slot_ids=emb.has_slot_ids)
            self.stores.append(store)
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _remove_files, [p for s in self.stores for p in s.paths])
        for emb, store, path in zip(self.embeddings, self.stores, embedding_files):
            if not os.path.exists(path):
                raise FileNotFoundError(f"solver embedding_files: {path} does not exist")
            check_snapshot_file(path)
            if os.path.isdir(path):
                model = read_sparse_model_dir(path, vec_size=emb.embedding_vec_size, key_type=emb.key_dtype)
            else:
                model = read_sparse_model_file(path, key_type=emb.key_dtype, vec_size=emb.embedding_vec_size,
                                               with_slot_id=emb.has_slot_ids)
            store.upsert(model.keys, model.vectors, model.slot_ids)
        for emb, store, path in zip(self.embeddings, self.stores, sparse_opt_states_files):
            check_snapshot_file(path)
            saved = read_sparse_optimizer_state(path, key_type=emb.key_dtype)
            if saved.optimizer != emb.optimizer.type_name:
                raise ValueError(f"{path}: holds {saved.optimizer} state but embedding '{emb.name}' uses "
                                 f"{emb.optimizer.type_name}")
            store.set_states(saved.keys, saved.states)
            emb.step = int(saved.step)

    # ---- HugeCTR's API ------------------------------------------------------------------------

    def update(self, keyset_file):
        """Load the keys of the next sub-dataset: ``keyset_file`` (one keyset for every embedding) or a
        list with one keyset file per embedding."""
        with self._lock:   # the session's lock: never beside a training step
            if isinstance(keyset_file, (str, bytes, PathLike)):
                files = [keyset_file] * len(self.embeddings)
            else:
                files = list(keyset_file)
                if len(files) != len(self.embeddings):
                    raise ValueError(f"update(keyset_file_list): {len(files)} keyset files for "
                                     f"{len(self.embeddings)} embeddings (give one per embedding, or a single file)")
            keysets = [read_keyset(path, emb.key_dtype) for path, emb in zip(files, self.embeddings)]
            self._flush()
            for emb, store, keys in zip(self.embeddings, self.stores, keysets):
                emb.reset(keep_optimizer_state=False)
                rows = store.find(np.unique(keys))
                rows = np.sort(rows[rows >= 0])  # in store order, as HugeCTR loads them
                if rows.size:
                    keys, vectors, slot_ids, states = store.read(rows)
                    emb.load(keys, vectors, slot_ids)
                    if states:
                        emb.load_optimizer_state(keys, states, slot_ids)

    def store(self, snapshot_file_list, optimizer_state_files=None):
        """Write the device tables back to the host stores, then one complete sparse model file per
        embedding (HugeCTR v3.0 format, rows in store order); ``store([])`` only writes back.

        ``optimizer_state_files`` (an extension) also writes each embedding's per-key optimizer state
        directory (the ``sparse_opt_states_file`` format), so a later run can continue exactly.

        The files are committed together with ``<first file>.manifest.json`` (``fileio.Snapshot``): a
        crash or a full disk leaves all old files or all new ones.
        """
        with self._lock:   # the session's lock: never beside a training step
            files = list(snapshot_file_list)
            for what, names in (("snapshot_file_list", files), ("optimizer_state_files", optimizer_state_files or [])):
                if names and len(names) != len(self.embeddings):
                    raise ValueError(f"store({what}): {len(names)} files for {len(self.embeddings)} embeddings")
            self._flush()
            if self.embeddings and self.embeddings[0].comm.group.rank != 0:
                return   # across MPI processes every store holds the whole tables; process 0 writes them
            if not files and not optimizer_state_files:
                return
            with Snapshot(os.fspath((files or optimizer_state_files)[0]) + MANIFEST_SUFFIX):
                self._write_files(files, optimizer_state_files)

    def _write_files(self, files, optimizer_state_files):
        for emb, store, path in zip(self.embeddings, self.stores, files):
            keys, vectors, slot_ids, _ = store.all_rows()
            write_sparse_model_file(path, keys, vectors, slot_ids, key_type=emb.key_dtype)
        for emb, store, path in zip(self.embeddings, self.stores, optimizer_state_files or []):
            keys, _, slot_ids, states = store.all_rows()
            opt = emb.optimizer
            write_sparse_optimizer_state(path, keys, states, step=emb.step, optimizer=opt.type_name,
                                         update_type=opt.update_type, slot_ids=slot_ids)

    # ---- extras -------------------------------------------------------------------------------

    def num_keys(self):
        """Keys held in each embedding's host store (the full tables, as of the last write-back)."""
        return [len(store) for store in self.stores]

    def close(self):
        """Remove the store files (the object is unusable afterwards)."""
        for store in self.stores:
            store.close()
        self._finalizer.detach()

    def _flush(self):
        for emb, store in zip(self.embeddings, self.stores):
            keys, vectors, slot_ids = emb.dump()
            if keys.size:
                store.upsert(keys, vectors, slot_ids, emb.dump_optimizer_state())

    def __repr__(self):
        return (f"<ModelOversubscriber: {len(self.embeddings)} embeddings, {self.num_keys()} keys on the host, "
                f"files in {self.temp_embedding_dir!r}>")
