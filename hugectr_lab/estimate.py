"""Memory estimate of a training run, per device, from a config and its solver settings.

The terms follow the data structures the Session allocates (sizes in bytes, per device g of G):

* **embedding tables**: each embedding's value table, V rows × E float32, allocated in full up front
  (V = ``max_vocabulary_size_per_gpu``, or the slot sizes a localized/one-hot device owns);
* **embedding optimizer states**: the sparse optimizer's ``state_names`` arrays, V × E float32 each;
* **hash tables**: 2·V + 1024 slots of one key (4 or 8 bytes) and one int64 row each, plus the int64
  slot id per row of the localized types;
* **dense parameters**: the flat master weights (float32), the gradients (compute dtype) and, with
  mixed precision, the fp16 compute copy -- for the training and the evaluation copy of the network;
* **dense optimizer states**: ``state_names`` arrays of N float32;
* **activations**: every tensor the network's layers allocate in a training forward at b = B/G (views
  -- Reshape, Slice, eval Dropout -- allocate nothing; Dropout adds its mask, BatchNorm its normalised
  copy, MultiCross its per-layer row dots hₗ), the backward's gradients of the widest tensors and
  of the network inputs, and the evaluation copy's forward at batchsize_eval/G;
* **workspace**: the embedding's per-batch arrays (keys, rows, offsets, the output and its gradient),
  the AUC buffers (max_eval_batches × batchsize_eval predictions and labels) and, on CuPy, cuBLAS's
  32 MiB per stream (two with ``use_cuda_graph``: the graph's stream and the evaluation's; the graph's
  memory pool holds the training activations instead of the default pool, counted once either way);
* **data readers** (host memory on CuPy): ``prefetch`` + 1 batches of the train and eval readers.

On the CuPy backend the memory pool rounds every block up to 512 bytes; the estimate rounds the same
way. ``estimate_memory(...).table()`` prints it; ``max_vocabulary(...)`` finds the largest
``max_vocabulary_size_per_gpu`` that still fits a device memory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .config import parse_config
from .data.norm import DEFAULT_CHUNK_BYTES
from .run_plan import RunPlan

CUBLAS_WORKSPACE = 32 << 20
POOL_BLOCK = 512
READER_PREFETCH = 4
# The HashTable's slots beyond 2·capacity.
HASH_EXTRA_SLOTS = 1024
# The NumPy reference updates of a Global sparse optimizer make this many table-sized temporaries at
# their peak (Adam: the decayed m and v, then m·step, sqrt(v), sqrt(v) + eps and the quotient at once).
_UPDATE_TEMPORARIES = {("Adam", "Global"): 5, ("MomentumSGD", "Global"): 2}
# Forward allocations of a layer type, in units of its output size (views allocate nothing).
_FORWARD_COPIES = {"Reshape": 0, "Slice": 0, "Dropout": 2, "BatchNorm": 3, "Cast": 1}


@dataclass
class MemoryEstimate:
    """Per-device bytes by category; ``host`` is memory that stays on the host with CuPy."""

    backend: str
    num_devices: int
    device: dict = field(default_factory=dict)   # category -> bytes per device
    host: dict = field(default_factory=dict)     # category -> bytes (on NumPy: part of the device total)

    @property
    def per_device(self) -> int:
        return sum(self.device.values())

    @property
    def total(self) -> int:
        """Bytes of one process: every device's share plus the host part."""
        return self.per_device * self.num_devices + sum(self.host.values())

    def table(self) -> str:
        where = "per GPU (CuPy)" if self.backend == "cupy" else "per logical device (NumPy, host memory)"
        lines = [f"memory estimate, {where}, {self.num_devices} device(s):"]
        for name, size in self.device.items():
            lines.append(f"  {name:<28} {_mib(size):>12}")
        lines.append(f"  {'total per device':<28} {_mib(self.per_device):>12}")
        for name, size in self.host.items():
            lines.append(f"  {name + ' (host)':<28} {_mib(size):>12}")
        return "\n".join(lines)


def _mib(n):
    return f"{n / 2**20:,.2f} MiB"


def _round(n, backend):
    return -(-int(n) // POOL_BLOCK) * POOL_BLOCK if backend == "cupy" else int(n)


def _training_config(config, solver):
    """``config`` as a ModelConfig: a ModelConfig as it is, else (path, JSON text or dict) parsed as
    training reads it, with ``solver``'s precision."""
    return config if hasattr(config, "embeddings") else parse_config(
        config, mixed_precision=solver.use_mixed_precision, require=("layers", "optimizer"), ignore=("solver",))


def estimate_memory(config, solver, *, backend="numpy") -> MemoryEstimate:
    """The estimate for ``config`` (path, JSON text, dict or ModelConfig) trained with ``solver``
    (a SolverParser: batch sizes, devices, precision, key type)."""
    from .embedding import SparseEmbedding, SparseOptimizer
    from .layers import BuildContext, Network, network_inputs
    from .optim import create_dense_optimizer

    if backend not in ("numpy", "cupy"):
        raise ValueError(f"estimate_memory(backend=...) must be 'numpy' or 'cupy', got {backend!r}")
    cfg = _training_config(config, solver)
    plan = RunPlan.derive(solver)
    G, mixed = plan.num_devices, plan.mixed_precision
    c = plan.compute_dtype.itemsize
    key = plan.key_dtype.itemsize
    b, b_eval = plan.device_batch(), plan.device_batch(eval=True)
    r = lambda n: _round(n, backend)              # noqa: E731  (one pool block per array)
    est = MemoryEstimate(backend, G)
    d = est.device
    host = est.host if backend == "cupy" else est.device

    tables = states = hashes = workspace = update = 0
    for spec in cfg.embeddings:
        sparse = cfg.sparse_input(spec.bottom)
        emb = SparseEmbedding.from_spec(spec, cfg.optimizer, plan=plan, slot_num=sparse.slot_num, comm=G)
        rows = max(emb._vocabulary_size(g) for g in range(G))
        e = spec.embedding_vec_size
        opt = emb.optimizer if emb.optimizer is not None else SparseOptimizer.from_spec(cfg.optimizer)
        tables += r(rows * e * 4)
        states += len(opt.state_names) * r(rows * e * 4)
        if backend == "numpy":   # the CuPy kernels update in place; the NumPy reference makes table-sized temporaries
            update = max(update, _UPDATE_TEMPORARIES.get((opt.type_name, opt.update_type), 0) * rows * e * 4)
        if emb.uses_hash_table:
            slots = 2 * rows + HASH_EXTRA_SLOTS
            hashes += r(slots * key) + r(slots * 8)
        if emb.has_slot_ids:
            hashes += r(rows * 8)
        # per batch: the output (b, S, E) and its gradient, the row gradients, and per key of the
        # global batch its key, CSR row, table row and unique/inverse indices (int64)
        keys = solver.batchsize * sparse.max_feature_num_per_sample
        workspace += 3 * r(b * sparse.slot_num * e * c) + r(keys * (key + 4 * 8))
    d["embedding tables"] = tables
    d["embedding optimizer states"] = states
    d["hash tables"] = hashes

    train = Network(cfg.layers, network_inputs(cfg, b), BuildContext(compute_dtype=plan.compute_dtype),
                    first_index=1 + len(cfg.embeddings))
    n = train.num_params
    d["dense parameters"] = 2 * (r(n * 4) + r(n * c) + (r(n * 2) if mixed else 0))
    opt = create_dense_optimizer(cfg.optimizer.type, learning_rate=cfg.optimizer.learning_rate)
    d["dense optimizer states"] = len(opt.state_names) * r(n * 4)
    d["activations"] = _activations(train, c, r, training=True) + _activations(
        Network(cfg.layers, network_inputs(cfg, b_eval), BuildContext(
            compute_dtype=plan.compute_dtype, training=False), first_index=1 + len(cfg.embeddings)),
        c, r, training=False)
    auc = max(solver.max_eval_batches * solver.batchsize_eval, 1) * 2 * 4 if "AUC" in solver.metrics_spec else 0
    streams = 2 if solver.use_cuda_graph else 1
    d["workspace"] = workspace + update + r(auc) + (streams * CUBLAS_WORKSPACE if backend == "cupy" else 0)
    data = cfg.data
    per_sample = 4 * (data.label.label_dim + data.dense.dense_dim) + sum(
        s.max_feature_num_per_sample * key + s.slot_num * 8 for s in data.sparse)
    samples = solver.batchsize + (solver.batchsize_eval if data.eval_source else 0)
    batches = (READER_PREFETCH + 1) * per_sample * samples
    # a Norm reader holds its read buffer (parsing it makes short-lived copies, off the training peak)
    buffers = DEFAULT_CHUNK_BYTES * (2 if data.eval_source else 1) if data.format == "Norm" else 0
    host["data readers"] = int(batches + buffers) // (G if backend == "numpy" else 1)
    return est


def _activations(net, c, r, *, training):
    """Bytes a forward (and, in training, the backward) of ``net`` keeps alive."""
    sizes = {name: int(np.prod(shape)) for name, shape in net.shapes.items()}
    total = sum(r(sizes[name] * c) for name in net.input_shapes)
    widest = [0, 0]
    for node in net.nodes:
        if node.layer.is_loss:
            total += r(sizes[node.bottoms[0]] * 4)   # predictions
            continue
        kind = type(node.layer).__name__
        out = sum(sizes[t] for t in node.tops)
        copies = _FORWARD_COPIES.get(kind, 1)
        if not training and kind == "Dropout":
            copies = 0
        if kind == "Reshape" and getattr(node.layer, "selected", None) is not None:
            copies = 1
        if kind == "MultiCross" and training:
            total += r(node.layer.num_layers * net.shapes[node.tops[0]][0] * 4)   # the kept h_l, float32
        total += copies * r(out * c)
        widest = sorted(widest + [out])[-2:]
    if training:   # the gradients in flight: the two widest tensors, and the network inputs' (kept)
        total += sum(r(w * c) for w in widest) + sum(r(sizes[name] * c) for name in net.input_shapes)
    return total


def max_vocabulary(config, solver, device_memory, *, backend="cupy", embedding=0):
    """The largest ``max_vocabulary_size_per_gpu`` of embedding ``embedding`` with which the estimate
    still fits ``device_memory`` bytes per device (0 if nothing fits; binary search over the estimate)."""
    cfg = _training_config(config, solver)
    if not cfg.embeddings:
        raise ValueError("the config has no embedding layer")
    if not 0 <= embedding < len(cfg.embeddings):
        raise ValueError(f"embedding index {embedding} out of range: the config has {len(cfg.embeddings)}")
    if cfg.embeddings[embedding].type == "LocalizedSlotSparseEmbeddingOneHot":
        raise ValueError(f"embedding {embedding} is a one-hot embedding: its size is its slot_size_array, "
                         "not a vocabulary to search")

    def fits(v):
        embs = list(cfg.embeddings)
        embs[embedding] = dataclasses.replace(embs[embedding], max_vocabulary_size_per_gpu=v, slot_size_array=None)
        return estimate_memory(dataclasses.replace(cfg, embeddings=tuple(embs)), solver,
                               backend=backend).per_device <= device_memory

    if not fits(1):
        return 0
    lo, hi = 1, 2
    while fits(hi):
        lo, hi = hi, hi * 2
        if hi > 1 << 40:
            return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo
