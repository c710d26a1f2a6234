"""Datasets whose sub-datasets use different keys (as days of click logs do), for oversubscription tests.

Part p of ``make_parts`` draws slot k's keys from ``[k*W + p*V, k*W + p*V + V + OVERLAP)`` (W = the
slot's key range over all parts), so consecutive parts share a few keys and all parts together hold
``parts`` times more keys than any one of them. Files, lists and keysets follow HugeCTR's layout:
``file_list.<p>.txt`` + ``file_list.<p>.keyset``; part ``parts`` (if ``eval_part``) draws from every part's
keys and serves as the evaluation list.
"""

import json

import numpy as np

from hugectr_lab.data import CSR, Samples, write_file_list, write_keyset, write_norm_file

SLOTS, DENSE = 4, 3
VOCAB, OVERLAP = 30, 6  # keys per slot and part, keys shared with the next part


def slot_width(parts):
    return parts * VOCAB + OVERLAP


def part_samples(p, f, n, parts, seed, every_part=False):
    rng = np.random.default_rng([seed, p, f])
    width = slot_width(parts)
    if every_part:
        local = rng.integers(0, width, (n, SLOTS))
    else:
        local = p * VOCAB + rng.integers(0, VOCAB + OVERLAP, (n, SLOTS))
    keys = local + np.arange(SLOTS) * width  # (n, S)
    dense = rng.random((n, DENSE), dtype=np.float32)
    logit = 2 * (dense[:, 0] - 0.5) + np.where(keys % 3 == 0, 0.8, -0.4).sum(axis=1)
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)[:, None]
    return Samples(labels, dense, (CSR(np.arange(n * SLOTS + 1, dtype=np.int64), keys.reshape(-1).astype(np.uint32)),))


def make_parts(base, parts=5, files_per_part=2, samples_per_file=256, seed=0, eval_part=True):
    """Write ``file_list.<p>.txt`` / ``.keyset`` for p < parts (+ the eval part); returns the total key count."""
    (base / "data").mkdir(parents=True, exist_ok=True)
    all_keys = []
    for p in range(parts + (1 if eval_part else 0)):
        files, keys = [], []
        for f in range(files_per_part):
            samples = part_samples(p, f, samples_per_file, parts, seed, every_part=p == parts)
            path = base / "data" / f"part{p}_{f}.data"
            write_norm_file(path, samples, check="Sum")
            files.append(f"data/part{p}_{f}.data")
            keys.append(samples.sparse[0].keys)
        write_file_list(base / f"file_list.{p}.txt", files)
        write_keyset(base / f"file_list.{p}.keyset", np.unique(np.concatenate(keys)), "I32")
        if p < parts:
            all_keys.append(np.unique(np.concatenate(keys)))
    return int(np.unique(np.concatenate(all_keys)).size)


def config(capacity, *, embedding="DistributedSlotSparseEmbeddingHash", opt="Adam", lr=0.01, vec=8,
           source="file_list.0.txt", eval_source="file_list.5.txt"):
    sparse_type = "DistributedSlot" if embedding.startswith("Distributed") else "LocalizedSlot"
    hparam = {"Adam": ("adam_hparam", {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7}),
              "SGD": ("sgd_hparam", {"atomic_update": True}),
              "MomentumSGD": ("momentum_sgd_hparam", {"momentum_factor": 0.9})}[opt]
    return {
        "optimizer": {"type": opt, "update_type": "Local", hparam[0]: {"learning_rate": lr, **hparam[1]}},
        "layers": [
            {"name": "data", "type": "Data", "source": source, "eval_source": eval_source, "check": "Sum",
             "num_workers": 1, "label": {"top": "label", "label_dim": 1}, "dense": {"top": "dense", "dense_dim": DENSE},
             "sparse": [{"top": "data1", "type": sparse_type, "max_feature_num_per_sample": SLOTS, "slot_num": SLOTS}]},
            {"name": "emb", "type": embedding, "bottom": "data1", "top": "emb",
             "sparse_embedding_hparam": {"max_vocabulary_size_per_gpu": capacity, "embedding_vec_size": vec,
                                         "combiner": 0}},
            {"name": "reshape", "type": "Reshape", "bottom": "emb", "top": "reshape", "leading_dim": SLOTS * vec},
            {"name": "concat", "type": "Concat", "bottom": ["reshape", "dense"], "top": "concat"},
            {"name": "fc1", "type": "InnerProduct", "bottom": "concat", "top": "fc1", "fc_param": {"num_output": 16}},
            {"name": "relu", "type": "ReLU", "bottom": "fc1", "top": "relu"},
            {"name": "fc2", "type": "InnerProduct", "bottom": "relu", "top": "fc2", "fc_param": {"num_output": 1}},
            {"name": "loss", "type": "BinaryCrossEntropyLoss", "bottom": ["fc2", "label"], "top": "loss"},
        ]}


def write_config(path, cfg):
    path.write_text(json.dumps(cfg, indent=1))
    return str(path)
