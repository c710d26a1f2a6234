"""What the three embedding types share: per-device tables, the train step, model and state I/O.

One ``SparseEmbedding`` owns the tables of this process's devices (``comm.local_devices``, global ids
out of G; all G unless the run spans MPI processes) and exchanges partial results through a
``Communicator``. A training step is ``forward(row_offsets, keys, True)`` -> ``backward(d_outputs)``
-> ``update(lr)``; the subclasses decide where keys live (``_route``, ``_place``) and how partial
results travel between devices (``_exchange_forward``, ``_exchange_backward``).

Per device: ``values`` (V, E) float32 master table, rows drawn at build time; a ``HashTable`` key -> row
(not for OneHot); ``slot_ids`` (V,) for localized types; optimizer state arrays in the compute dtype.
Optimizer state is addressed by key at every boundary (dump, load, reset), never by internal row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import Communicator, InProcessCommunicator, backend_object, to_host
from ..rules import precision
from .combine import combiner_name, mean_row_scale
from .hash_table import HashTable, as_keys, key_dtype, sentinel_key
from .sparse_optimizers import SparseAdam, SparseOptimizer

EMBEDDING_TYPES: dict = {}
MAX_VEC_SIZE = 1024
INIT_BOUND = 0.05   # default table init: Uniform(-0.05, 0.05)


@dataclass
class Shard:
    """One device's part of a global batch, as CSR over the device's (sample, slot) rows."""

    keys: Any          # (K_g,) key dtype
    row_offsets: Any   # (R_g+1,) int64
    row_ids: Any       # (K_g,) int64, CSR row of each key
    row_scale: Any     # (R_g,) float32 mean multipliers, or None for sum
    slots: Any = None  # (K_g,) int64 global slot of each key (localized types)


@dataclass
class Device:
    """Tables and per-step data of one logical device."""

    values: Any                      # (V, E) float32
    state: dict                      # optimizer state arrays
    stash: StateStash
    table: HashTable | None = None
    slot_ids: Any = None             # (V,) int64, -1 = unassigned
    batch: tuple | None = None       # (Shard, Lookup) of the last training forward
    wgrad: Any = None                # (R_g, E) from backward, consumed by update
    hyper: Any = None                # (3,) float64: lr, step, lr/S of the next update (``prepare_update``)
    rng: np.random.Generator = field(default=None, repr=False)


class StateStash:
    """Optimizer state of keys that are not in the table: saved by ``reset`` (so a key that comes back
    continues with its state) or loaded before the key itself. One per device, sorted by key."""

    def __init__(self, xp):
        self.xp = xp
        self.keys = None
        self.arrays = {}

    def put(self, keys, arrays):
        """Remember ``arrays`` (name -> (N, ...)) for ``keys`` (N,); newer entries win."""
        xp = self.xp
        if self.keys is not None:
            keys = xp.concatenate([self.keys, keys])
            arrays = {n: xp.concatenate([self.arrays[n], a]) for n, a in arrays.items()}
        order = xp.argsort(keys, kind="stable")
        keys = keys[order]
        last = xp.ones(keys.size, dtype=bool)
        last[:-1] = keys[1:] != keys[:-1]      # of equal keys keep the newest (stable sort keeps it last)
        self.keys = keys[last]
        self.arrays = {n: a[order][last] for n, a in arrays.items()}

    def arrays_in_use(self):
        """The stash's arrays (none while empty), which a lookup reads."""
        return [] if self.keys is None else [self.keys, *self.arrays.values()]

    def restore(self, keys, rows, state, ops):
        """Copy the stashed state of ``keys`` (N,) into ``state`` rows ``rows`` (N,) where stashed; a -1
        row is padding. Fixed-size (``ops.scatter_rows``), so it does not read the device."""
        if self.keys is None or not self.keys.size:
            return
        xp = self.xp
        pos = xp.minimum(xp.searchsorted(self.keys, keys), self.keys.size - 1)
        target = xp.where(self.keys[pos] == keys, rows, -1)
        for name, array in self.arrays.items():
            ops.scatter_rows(state[name], target, array[pos])


class SparseEmbedding(ABC):
    """Base of the embedding types; see the module docstring. Constructors only check and store.

    ``comm`` is a ``Communicator`` or a device count G (in-process devices). ``key_type`` "I32"
    (uint32 keys) or "I64" (int64). ``mixed_precision`` makes outputs, gradients and optimizer state
    float16 (tables stay float32); ``scaler`` is the loss scaling factor S that gradients arrive
    multiplied by. ``seed`` (int or ``numpy.random.SeedSequence``) seeds one host generator per device.
    """

    type_name = ""
    uses_hash_table = True
    has_slot_ids = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.type_name:
            EMBEDDING_TYPES[cls.type_name] = cls

    def __init__(self, *, slot_num, embedding_vec_size, combiner=0, max_vocabulary_size_per_gpu=None,
                 slot_size_array=None, optimizer=None, name="sparse_embedding", comm=1, backend=None,
                 key_type="I32", mixed_precision=False, scaler=1.0, seed=0):
        self.name = name
        self.slot_num = _positive_int(slot_num, "slot_num", name)
        self.embedding_vec_size = _positive_int(embedding_vec_size, "embedding_vec_size", name)
        if self.embedding_vec_size > MAX_VEC_SIZE:
            raise ValueError(f"embedding '{name}': embedding_vec_size must be <= {MAX_VEC_SIZE}, "
                             f"got {embedding_vec_size}")
        self.combiner = combiner_name(combiner)
        self.max_vocabulary_size_per_gpu = (None if max_vocabulary_size_per_gpu is None else
                                            _positive_int(max_vocabulary_size_per_gpu,
                                                          "max_vocabulary_size_per_gpu", name))
        self.slot_size_array = tuple(int(s) for s in slot_size_array) if slot_size_array else None
        self.optimizer = optimizer if optimizer is not None else SparseAdam()
        self.comm = comm if isinstance(comm, Communicator) else InProcessCommunicator(int(comm))
        self.num_devices = self.comm.size              # G, over all processes
        self.local_devices = self.comm.local_devices   # global ids of the devices held here
        self.backend = backend_object(backend, f"embedding '{name}'")
        self.key_dtype = key_dtype(key_type)
        self.compute_dtype = precision.compute_dtype(mixed_precision)
        self.scaler = float(scaler)
        self.seed = seed
        self.step = 0   # update calls so far; Adam's bias correction uses it (HugeCTR's `times`)
        self._devices = None
        self._check_config()

    @classmethod
    def from_spec(cls, spec, optimizer_spec=None, *, plan=None, **kwargs):
        """Build from a config object with HugeCTR's embedding attributes (``type``, ``name``/``top``,
        ``embedding_vec_size``, ``combiner``, ``max_vocabulary_size_per_gpu``, ``slot_size_array``,
        ``optimizer``); ``optimizer_spec`` is used when the embedding has no optimizer of its own.
        ``plan``: a Session's ``RunPlan``, which gives ``backend``, ``key_type``, ``mixed_precision`` and
        ``scaler``. ``kwargs``: ``slot_num`` and the other run-time arguments of the constructor."""
        if plan is not None:
            kwargs = dict(backend=plan.backend, key_type=plan.key_type, mixed_precision=plan.mixed_precision,
                          scaler=plan.loss_scale, **kwargs)
        target = EMBEDDING_TYPES.get(spec.type)
        if target is None or not issubclass(target, cls):
            raise ValueError(f"embedding '{getattr(spec, 'name', None) or spec.top}': unknown embedding type "
                             f"{spec.type!r} (known: {', '.join(EMBEDDING_TYPES)})")
        opt_spec = getattr(spec, "optimizer", None) or optimizer_spec
        return target(
            name=getattr(spec, "name", None) or spec.top,
            embedding_vec_size=spec.embedding_vec_size,
            combiner=spec.combiner,
            max_vocabulary_size_per_gpu=getattr(spec, "max_vocabulary_size_per_gpu", None),
            slot_size_array=getattr(spec, "slot_size_array", None),
            optimizer=SparseOptimizer.from_spec(opt_spec) if opt_spec is not None else None,
            **kwargs)

    # ---- subclass hooks -------------------------------------------------------------------------

    def _check_config(self):
        """Validate the constructor arguments (cheap; no arrays)."""

    @abstractmethod
    def _vocabulary_size(self, device):
        """Rows V of the value table on ``device``."""

    def _init_values(self, device, rng):
        """(V, E) float32 host array of initial values for ``device``."""
        return _uniform(rng, (self._vocabulary_size(device), self.embedding_vec_size), INIT_BOUND)

    @abstractmethod
    def _route(self, device, row_offsets, keys):
        """The ``Shard`` of global device ``device``: the whole batch's CSR (on that device) with the keys
        it does not own replaced by the padding key, or a static selection -- fixed sizes either way,
        so routing never waits for the device."""

    def _row_ids(self, row_offsets, keys):
        """(K,) int64: the CSR row of each key (``csr_row_ids``; a kernel on CuPy)."""
        return self.backend.ops.csr_row_ids(row_offsets, keys.size)

    def _shard(self, row_offsets, keys, row_ids, owned=None, slots=None):
        """The whole batch's CSR as a ``Shard``; keys where ``owned`` (K,) is False become the padding
        key (no row, no gradient). A mean row divides by its key count over every device."""
        xp = self.backend.xp
        if owned is not None:
            keys = xp.where(owned, keys, self.key_dtype.type(sentinel_key(self.key_dtype)))
        row_scale = mean_row_scale(xp, row_offsets[1:] - row_offsets[:-1]) if self.combiner == "mean" else None
        return Shard(keys, row_offsets, row_ids, row_scale, slots)

    def _partial(self, device, combined):
        """The shard's combined rows (R_g, E) -> what ``_exchange_forward`` takes from ``device``."""
        return combined

    def _shard_rows(self, device, shard, wgrad):
        """What ``_exchange_backward`` gave ``device`` -> gradients (R_g, E) of the shard's CSR rows."""
        return wgrad

    @abstractmethod
    def _place(self, keys, slot_ids):
        """For model loading, on host arrays: (device of each key (N,), global slot of each key (N,) or None)."""

    @abstractmethod
    def _exchange_forward(self, partials):
        """Per-device combined rows -> per-device outputs (b, S, E)."""

    @abstractmethod
    def _exchange_backward(self, d_outputs):
        """Per-device output gradients (b, S, E) -> per-device row gradients (R_g, E)."""

    def _lookup(self, device, keys, slots, insert):
        """``Lookup`` of ``keys`` on ``device``; hash types insert new keys when ``insert``."""
        dev = self._dev(device)
        ops = self.backend.ops

        def on_insert(keys, new_rows):   # (K,) each; new_rows -1 except at new keys' first occurrences
            if dev.slot_ids is not None and slots is not None:
                ops.scatter_rows(dev.slot_ids, new_rows, slots)
            dev.stash.restore(keys, new_rows, dev.state, ops)
        return dev.table.lookup(keys, insert, on_insert if insert else None)

    def _keys_and_rows(self, device):
        """(keys, rows) held by ``device``, in row order."""
        return self._dev(device).table.keys_and_rows()

    # ---- build ----------------------------------------------------------------------------------

    @property
    def devices(self):
        """The tables of the local devices (in ``local_devices`` order), built and randomly initialised
        on first use. Device g's generator is the g-th of G spawned from the seed, wherever g lives."""
        if self._devices is None:
            seed = self.seed if isinstance(self.seed, np.random.SeedSequence) else np.random.SeedSequence(self.seed)
            seeds = seed.spawn(self.num_devices)
            self._devices = []
            for g in self.local_devices:
                with self.comm.scope(g):
                    self._devices.append(self._build_device(g, np.random.default_rng(seeds[g])))
        return self._devices

    def _dev(self, device):
        """The ``Device`` of global device id ``device`` (one of ``local_devices``)."""
        return self.devices[self.comm.local_index(device)]

    def _local(self):
        """``(global id, Device)`` of every local device."""
        return zip(self.local_devices, self.devices)

    def _build_device(self, device, rng):
        xp = self.backend.xp
        rows = self._vocabulary_size(device)
        dev = Device(values=self.backend.asarray(self._init_values(device, rng)),
                     state=self.optimizer.init_state(xp, rows, self.embedding_vec_size),
                     stash=StateStash(xp), rng=rng, hyper=xp.zeros(3, dtype=xp.float64))
        if self.uses_hash_table:
            dev.table = HashTable(rows, self.key_dtype, self.backend)
        if self.has_slot_ids:
            dev.slot_ids = xp.full(rows, -1, dtype=xp.int64)
        return dev

    # ---- training step --------------------------------------------------------------------------

    def forward(self, row_offsets, keys, training=True):
        """Embed a global batch: CSR ``row_offsets`` (B*S+1,), ``keys`` (K,) with row = sample*S + slot.

        Returns one (b, S, E) array per local device in the compute dtype (b = B/G). Training inserts new
        keys; evaluation (``training=False``) does not, and an unseen key contributes the zero vector.
        """
        return self.forward_staged(self.stage(row_offsets, keys), training)

    def stage(self, row_offsets, keys):
        """Check a global batch's CSR and copy it to every local device (each gets the whole batch and
        keeps its share): ``[(row_offsets, keys) on device g for g in local_devices]``. Staging every
        input of a step before launching its kernels lets the devices run the step concurrently."""
        self._check_batch(row_offsets, keys)   # on the host arrays, before the upload: no device read
        on_host = not hasattr(keys, "__cuda_array_interface__")
        if on_host:   # convert and check once, then copy
            keys = as_keys(None, keys, self.key_dtype)
        staged = []
        for g in self.local_devices:
            with self.comm.scope(g):
                staged.append((self.backend.asarray(row_offsets, dtype=np.int64).reshape(-1),
                               self.backend.asarray(keys) if on_host else as_keys(self.backend, keys, self.key_dtype)))
        return staged

    def forward_staged(self, staged, training=True):
        """``forward`` of a batch that ``stage`` put on the devices."""
        ops = self.backend.ops
        partials = []
        for (g, dev), (offsets_g, keys_g) in zip(self._local(), staged):
            with self.comm.scope(g):
                shard = self._route(g, offsets_g, keys_g)
                lookup = self._lookup(g, shard.keys, shard.slots, insert=training)
                combined = ops.embedding_combine_fwd(dev.values, lookup.rows, shard.row_offsets, shard.row_scale,
                                                     self.compute_dtype)
                partials.append(self._partial(g, combined))
            if training:
                dev.batch, dev.wgrad = (shard, lookup), None
        return self._exchange_forward(partials)

    def backward(self, d_outputs):
        """Take the gradients of the outputs, one (b, S, E) per local device (compute dtype, times S)."""
        if len(d_outputs) != len(self.local_devices):
            raise ValueError(f"embedding '{self.name}': backward needs one gradient per device "
                             f"({len(self.local_devices)}), got {len(d_outputs)}")
        if any(dev.batch is None for dev in self.devices):
            raise RuntimeError(f"embedding '{self.name}': backward() needs a training forward() first")
        converted = []
        for g, d in zip(self.local_devices, d_outputs):
            with self.comm.scope(g):
                converted.append(self.backend.asarray(d, dtype=self.compute_dtype))
        for (g, dev), wgrad in zip(self._local(), self._exchange_backward(converted)):
            row_scale = dev.batch[0].row_scale
            with self.comm.scope(g):
                wgrad = self._shard_rows(g, dev.batch[0], wgrad)
                if row_scale is not None:
                    wgrad = (wgrad * row_scale[:, None]).astype(self.compute_dtype)
            dev.wgrad = wgrad

    def update(self, lr=None):
        """Apply the sparse optimizer to the gradients of the last ``backward`` (``lr`` sets the rate):
        ``prepare_update`` then ``apply_update``."""
        if lr is not None:
            self.set_learning_rate(lr)
        self._require_backward()
        self.prepare_update()
        self.apply_update()

    def prepare_update(self):
        """The host half of ``update``: count the step and write the update's learning rate, step and
        lr/S into each local device's ``hyper`` scalars, which the update kernels read -- so a CUDA graph
        of the step (``apply_update`` inside) replays with the current values."""
        self.step += 1
        lr = self.optimizer.learning_rate
        for g, dev in self._local():
            with self.comm.scope(g):
                self.backend.write(dev.hyper, (lr, self.step, lr / self.scaler))

    def apply_update(self):
        """The device half of ``update``, after ``prepare_update``: nothing here reads the host's state."""
        self._require_backward()
        for g, dev in self._local():
            shard, lookup = dev.batch
            with self.comm.scope(g):
                self.optimizer.apply(self.backend.ops, dev.values, dev.state, lookup, shard.row_ids, dev.wgrad,
                                     dev.hyper, self.scaler)
            dev.batch, dev.wgrad = None, None

    def persistent_arrays(self):
        """The device arrays the training step keeps across steps on the local devices -- table, optimizer
        state, per-step scalars, slot ids, hash-table slots and counters, the stash -- in a fixed order:
        what a CUDA graph of the step holds (``reset`` and a rehash replace some of them)."""
        arrays = []
        for dev in self.devices:
            arrays += [dev.values, dev.hyper, *dev.state.values()]
            if dev.slot_ids is not None:
                arrays.append(dev.slot_ids)
            if dev.table is not None:
                arrays += dev.table.arrays()
            arrays += dev.stash.arrays_in_use()
        return arrays

    def _require_backward(self):
        if any(dev.wgrad is None for dev in self.devices):
            raise RuntimeError(f"embedding '{self.name}': update() needs a backward() first")

    def set_learning_rate(self, lr):
        """Set the optimizer's learning rate (HugeCTR overrides the embedding's own lr this way)."""
        self.optimizer.learning_rate = float(lr)

    # ---- bookkeeping ----------------------------------------------------------------------------

    def check_overflow(self):
        """Raise ``EmbeddingOverflowError`` if any local device was offered more keys than it can hold."""
        for g, dev in self._local():
            if dev.table is not None:
                dev.table.check_overflow(f"embedding '{self.name}' on device {g}")

    def grow_refused_memory(self):
        """``HashTable.grow_refused_memory`` on each local table (reads the devices)."""
        for g, dev in self._local():
            if getattr(dev, "table", None) is not None:
                with self.comm.scope(g):
                    dev.table.grow_refused_memory()

    def refused_keys(self):
        """``{global device id: (capacity, (low, high), message)}`` for each local table that refused
        keys: bounds of the distinct keys refused and ``check_overflow``'s message (reads the devices)."""
        report = {}
        for g, dev in self._local():
            table = getattr(dev, "table", None)
            if table is not None:
                message = table.overflow_message(f"embedding '{self.name}' on device {g}")
                if message:
                    report[g] = (table.capacity, table.refused_keys(), message)
        return report

    def num_keys(self):
        """Keys held over all devices of all processes (``get_params_num`` counts num_keys() * E)."""
        return sum(self.comm.group.allgather(sum(len(dev.table) for dev in self.devices)))

    def reset(self, keep_optimizer_state=True):
        """Clear the hash tables and re-draw every value (model oversubscription between key sets).

        The optimizer state of the cleared keys is kept per key and restored when a key is inserted
        or loaded again (HugeCTR keeps the state arrays by row, so they no longer match their keys).
        ``keep_optimizer_state=False`` forgets it instead (the model oversubscriber keeps it on the host).
        """
        for g, dev in self._local():
            with self.comm.scope(g):
                self._reset_device(g, dev, keep_optimizer_state)

    def _reset_device(self, g, dev, keep_optimizer_state):
        keys, rows = self._keys_and_rows(g)
        if not keep_optimizer_state:
            dev.stash = StateStash(self.backend.xp)
        elif dev.state and keys.size:
            dev.stash.put(keys, {n: a[rows] for n, a in dev.state.items()})
        dev.state = self.optimizer.init_state(self.backend.xp, dev.values.shape[0], self.embedding_vec_size)
        dev.values = self.backend.asarray(self._init_values(g, dev.rng))
        if dev.table is not None:
            dev.table.clear()
        if dev.slot_ids is not None and dev.table is not None:
            dev.slot_ids[...] = -1
        dev.batch, dev.wgrad = None, None

    # ---- model and optimizer-state I/O ----------------------------------------------------------

    def dump(self):
        """Host arrays ``(keys (N,), vectors (N, E) float32, slot_ids (N,) uint64 or None)``:
        device 0's keys, then device 1's, ... each in row (insertion) order; every process gets all."""
        parts = []
        for g, dev in self._local():
            with self.comm.scope(g):
                k, rows = self._keys_and_rows(g)
                parts.append((self.backend.to_host(k), self.backend.to_host(dev.values[rows]),
                              None if dev.slot_ids is None else
                              self.backend.to_host(dev.slot_ids[rows]).astype(np.uint64)))
        parts = [p for per_process in self.comm.group.allgather(parts) for p in per_process]
        return (np.concatenate([k for k, _, _ in parts]),
                np.concatenate([v for _, v, _ in parts]).reshape(-1, self.embedding_vec_size),
                np.concatenate([s for _, _, s in parts]) if self.has_slot_ids else None)

    def load(self, keys, vectors, slot_ids=None):
        """Put ``vectors`` (N, E) for ``keys`` (N,) into the tables (localized types need ``slot_ids``).

        New keys get the next free rows in the given order; keys already present are overwritten.
        """
        keys = self._host_keys(keys)
        vectors = np.asarray(to_host(vectors), dtype=np.float32).reshape(-1, self.embedding_vec_size)
        if vectors.shape[0] != keys.size:
            raise ValueError(f"embedding '{self.name}': load got {keys.size} keys but {vectors.shape[0]} vectors")
        for g, sel, device_keys, slots in self._per_device(keys, slot_ids):
            dev = self._dev(g)
            rows = self._lookup(g, device_keys, slots, insert=True).rows
            if dev.table is not None:
                dev.table.check_overflow(f"embedding '{self.name}' on device {g} (loading a sparse model)")
            dev.values[rows] = self.backend.asarray(vectors[sel])
            if dev.slot_ids is not None:
                dev.slot_ids[rows] = slots

    def dump_optimizer_state(self):
        """``{state name: host array (N, ...)}`` aligned with ``dump()``'s keys (empty for SGD)."""
        names = self.optimizer.state_names
        local = []
        for g, dev in self._local():
            with self.comm.scope(g):
                _, rows = self._keys_and_rows(g)
                local.append({n: self.backend.to_host(dev.state[n][rows]) for n in names})
        parts = [p for per_process in self.comm.group.allgather(local) for p in per_process]
        return {n: np.concatenate([p[n] for p in parts]) for n in names}

    def load_optimizer_state(self, keys, states, slot_ids=None, step=None):
        """Set the optimizer state of ``keys`` (N,) from ``states`` (name -> (N, ...)).

        Keys not in the table yet keep their state until they are inserted or loaded. ``step`` sets
        the update counter (Adam's bias correction).
        """
        expected = set(self.optimizer.state_names)
        if set(states) != expected:
            raise ValueError(f"embedding '{self.name}': optimizer state has arrays {sorted(states)}, but "
                             f"{self.optimizer!r} needs {sorted(expected)}")
        keys = self._host_keys(keys)
        states = {n: np.asarray(to_host(a)) for n, a in states.items()}
        for g, sel, device_keys, slots in self._per_device(keys, slot_ids):
            dev = self._dev(g)
            rows = self._lookup(g, device_keys, slots, insert=False).rows
            present = rows >= 0
            device_states = {n: self.backend.asarray(a[sel]) for n, a in states.items()}
            for n, a in device_states.items():
                dev.state[n][rows[present]] = a[present]
            if not bool(present.all()):
                dev.stash.put(device_keys[~present], {n: a[~present] for n, a in device_states.items()})
        if step is not None:
            self.step = int(step)

    def _host_keys(self, keys):
        return as_keys(None, to_host(keys), self.key_dtype)   # key placement for loading is on the host

    def _per_device(self, keys, slot_ids):
        """For host ``keys`` placed by ``_place``, yield ``(local device, host selection, the selected keys
        and their slots (or None) on the device)``, with that device current."""
        slot_ids = None if slot_ids is None else np.asarray(to_host(slot_ids)).astype(np.int64).reshape(-1)
        if slot_ids is not None and slot_ids.size != keys.size:
            raise ValueError(f"embedding '{self.name}': got {keys.size} keys but {slot_ids.size} slot ids")
        device_of, slots = self._place(keys, slot_ids)
        for g in self.local_devices:
            sel = np.flatnonzero(device_of == g)
            with self.comm.scope(g):
                yield (g, sel, self.backend.asarray(keys[sel]),
                       None if slots is None else self.backend.asarray(slots[sel]))

    # ---- helpers --------------------------------------------------------------------------------

    def _check_batch(self, row_offsets, keys):
        """Check the CSR shape before upload. Host arrays (the data readers') are read on the host;
        device arrays cost one device read."""
        if not hasattr(row_offsets, "__cuda_array_interface__"):
            row_offsets = np.asarray(row_offsets)
        row_offsets = row_offsets.reshape(-1)
        num_keys = int(np.size(keys))
        rows = row_offsets.size - 1
        if rows < 0 or rows % self.slot_num:
            raise ValueError(f"embedding '{self.name}': row_offsets has {row_offsets.size} entries; expected "
                             f"B*S+1 with S={self.slot_num} slots")
        batch = rows // self.slot_num
        if batch % self.num_devices:
            raise ValueError(f"embedding '{self.name}': batch size {batch} is not divisible by the "
                             f"{self.num_devices} devices")
        first, last = int(row_offsets[0]), int(row_offsets[-1])
        if first != 0 or last != num_keys:
            raise ValueError(f"embedding '{self.name}': row_offsets must run from 0 to the number of keys "
                             f"({num_keys}), got {first}..{last}")

    def __repr__(self):
        return (f"{type(self).__name__}(name={self.name!r}, slot_num={self.slot_num}, "
                f"embedding_vec_size={self.embedding_vec_size}, combiner={self.combiner!r}, "
                f"devices={self.num_devices}, optimizer={self.optimizer!r})")


def _positive_int(value, what, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"embedding '{name}': {what} must be a positive integer, got {value!r}")
    return int(value)


def _uniform(rng, shape, bound):
    """Uniform(-bound, bound) float32 drawn in float32 (no float64 temporary for large tables)."""
    values = rng.random(shape, dtype=np.float32)
    values *= 2 * bound
    values -= bound
    return values
