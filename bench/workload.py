"""The benchmark workloads: the sample graphs at full size, Criteo Kaggle cardinalities, Zipf keys.

``workload("dcn" | "deepfm" | "dlrm", precision)`` gives the HugeCTR JSON config (from the repository's sample
configs, data layer pointed nowhere: batches are handed to the step directly), the solver settings
and host batches. Keys of slot s are ``offset_s + rank`` with rank ~ Zipf(1.1) over the slot's
cardinality (``hugectr_lab.data.generator.draw_ranks``), one key per slot as in Criteo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hugectr_lab.data.generator import draw_ranks

CONFIGS = Path(__file__).resolve().parents[1] / "tests" / "config" / "configs"
# Criteo Kaggle (Display Advertising Challenge) categorical cardinalities, C1..C26.
CRITEO_KAGGLE = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27, 14992,
                 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)
PRECISIONS = ("fp32", "tf32", "fp16")
MODELS = {"dcn": dict(config="dcn.json", batch=16384),
          "deepfm": dict(config="deepfm.json", batch=16384),
          "dlrm": dict(config="dlrm_{}.json", batch=65536)}
DENSE, SLOTS, ZIPF = 13, len(CRITEO_KAGGLE), 1.1


@dataclass
class HostBatch:
    dense: np.ndarray    # (B, 13) float32
    labels: np.ndarray   # (B, 1) float32
    keys: np.ndarray     # (B*26,) uint32, row = sample*26 + slot, one key per row


@dataclass
class Workload:
    model: str
    precision: str
    batch: int
    config: dict
    solver: dict          # solver_parser_helper keyword arguments
    batches: list         # HostBatch, rotated through by the timed steps
    cardinalities: tuple
    vec: int

    @property
    def num_keys(self):
        return int(sum(self.cardinalities))


def offsets(cardinalities):
    return np.concatenate([[0], np.cumsum(cardinalities)[:-1]]).astype(np.int64)


def host_batches(batch, count, seed=0, cardinalities=CRITEO_KAGGLE):
    rng = np.random.default_rng(seed)
    vocab = np.tile(np.asarray(cardinalities, np.int64), batch)
    first = offsets(cardinalities)
    out = []
    for _ in range(count):
        keys = np.tile(first, batch) + draw_ranks(rng, vocab, ZIPF)
        out.append(HostBatch(rng.random((batch, DENSE), dtype=np.float32),
                             rng.integers(0, 2, (batch, 1)).astype(np.float32), keys.astype(np.uint32)))
    return out


def workload(model, precision, num_batches=8, *, batch=None, gpus=1, process_per_gpu=False, cuda_graph=True,
             cardinalities=CRITEO_KAGGLE):
    """The benchmark at its sample batch size (or global ``batch``) on GPUs 0..gpus-1: one node list
    (one process drives them all) or, with ``process_per_gpu``, one node list per GPU (one MPI process
    each). ``cuda_graph`` is the solver's ``use_cuda_graph``; ``cardinalities`` the 26 slots' key counts
    (smaller ones: a smaller DLRM table)."""
    spec = MODELS[model]
    batch = batch or spec["batch"]
    fp16 = precision == "fp16"
    config = json.loads((CONFIGS / spec["config"].format("fp16" if fp16 else "fp32")).read_text())
    batches = host_batches(batch, num_batches, cardinalities=cardinalities)
    data = next(layer for layer in config["layers"] if layer["type"] == "Data")
    for key in ("format", "num_samples", "eval_num_samples", "cache_eval_data", "slot_size_array"):
        data.pop(key, None)
    data.update(source="unused_file_list.txt", eval_source="")
    emb = next(layer for layer in config["layers"] if "sparse_embedding_hparam" in layer)
    hparam = emb["sparse_embedding_hparam"]
    if model == "dlrm":
        hparam["slot_size_array"] = list(cardinalities)
    else:
        # One GPU holds every key the timed batches bring (the sample spreads 4 x 361938 over 4 GPUs).
        distinct = np.unique(np.concatenate([b.keys for b in batches])).size
        hparam["max_vocabulary_size_per_gpu"] = int(max(distinct, 4 * 361938))
        # Local Adam: the same update as PyTorch's SparseAdam (touched rows only) in the baseline.
        config["optimizer"]["update_type"] = "Local"
    vvgpu = [[g] for g in range(gpus)] if process_per_gpu else [list(range(gpus))]
    solver = dict(batchsize=batch, batchsize_eval=batch, max_eval_batches=1, vvgpu=vvgpu, seed=1,
                  use_cuda_graph=cuda_graph, use_mixed_precision=fp16, scaler=1024.0 if fp16 else 1.0, enable_tf32_compute=precision == "tf32",
                  repeat_dataset=True)
    return Workload(model, precision, batch, config, solver, batches, tuple(cardinalities),
                    hparam["embedding_vec_size"])


def traffic(model, precision, vec):
    """(bytes, FLOPs) per training sample of a minimal implementation (what docs/gpu.md calls the
    roofline): the embedding rows read, combined, their gradient read and the optimizer's read-modify-
    write of the touched rows and state; every dense activation that a GEMM or cross layer produces
    written and read once forward, its gradient written and read once backward; 6 FLOPs per GEMM
    multiply-add (forward, data gradient, weight gradient)."""
    act = 2 if precision == "fp16" else 4
    state = act                          # optimizer state in the compute dtype
    if model == "dcn":                   # Adam: w, m, v read + written per touched element
        emb = SLOTS * vec * (4 + act + act + 2 * 4 + 4 * state)
        width = SLOTS * vec + DENSE
        acts = width + 1024 + 1024 + width + 1            # x0, fc1, fc2, cross out, logit
        macs = width * 1024 + 1024 * 1024 + (1024 + width) * 1 + 6 * 2 * width
    else:                                # SGD: w read + written
        emb = SLOTS * vec * (4 + act + act + 2 * 4)
        n = SLOTS + 1
        inter = vec + n * (n - 1) // 2 + 1
        acts = DENSE + 512 + 256 + 128 + inter + 1024 + 1024 + 512 + 256 + 1
        macs = (13 * 512 + 512 * 256 + 256 * 128 + inter * 1024 + 1024 * 1024 + 1024 * 512 + 512 * 256 + 256
                + n * (n - 1) // 2 * vec)
    return emb + 4 * acts * act, 6 * macs
