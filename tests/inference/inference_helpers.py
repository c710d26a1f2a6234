"""Test helpers: small models (trained with a Session on generated data, or written directly), their
inference configs, requests, and checks."""

import json
import threading
from pathlib import Path

import numpy as np

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.data import data_layer_options, generate_dataset, read_norm_file, resolve_file_list
from hugectr_lab.data.batch import Samples
from hugectr_lab.inference import CreateEmbeddingCache, CreateParameterServer, InferenceSession, inference_config
from hugectr_lab.inference.cache_ops import empty_key, murmur3_32
from hugectr_lab.inference.graph_ops import DEDUPE_SEED
from hugectr_lab.session import Session

SAMPLES = Path(__file__).resolve().parents[1] / "config" / "configs"
SESSION_TESTS = Path(__file__).resolve().parents[1] / "session"


def sample_config(name, *, width=32, vocab_cap=20000):
    """HugeCTR's sample graph ``name`` (dcn, wdl, deepfm) with hidden layers narrowed to ``width``."""
    config = json.loads((SAMPLES / f"{name}.json").read_text())
    for layer in config["layers"]:
        if layer["type"] == "Data":
            layer["num_workers"] = 1
        hparam = layer.get("sparse_embedding_hparam")
        if hparam:
            hparam["max_vocabulary_size_per_gpu"] = min(hparam["max_vocabulary_size_per_gpu"], vocab_cap)
        fc = layer.get("fc_param")
        if fc and fc["num_output"] > 1:
            fc["num_output"] = width
    config.pop("solver", None)
    return config


class Trained:
    """A Session trained a few steps in the working directory, its model files and its eval data."""

    def __init__(self, config, *, steps=4, batchsize=256, eval_batches=4, mixed=False, vocab=200, max_nnz=1,
                 seed=3, key_type="I32", prefix="./model"):
        self.config = config
        Path("train.json").write_text(json.dumps(config))
        options = {**data_layer_options("train.json"), "key_type": key_type}
        self.summary = generate_dataset(**options, num_files=1, samples_per_file=batchsize * eval_batches,
                                        vocab_sizes=vocab, max_nnz=max_nnz, min_nnz=1, seed=seed)
        solver = solver_parser_helper(seed=11, batchsize=batchsize, batchsize_eval=batchsize, vvgpu=[[0]],
                                      repeat_dataset=True, max_eval_batches=eval_batches,
                                      use_mixed_precision=mixed, scaler=1024.0 if mixed else 1.0,
                                      i64_input_key=key_type == "I64")
        self.session = sess = Session(solver, "train.json")
        sess.start_data_reading()
        for _ in range(steps):
            sess.train()
        sess.download_params_to_files(prefix, steps)
        sess.copy_weights_for_evaluation()
        self.eval_batches, self.batchsize, self.key_type = eval_batches, batchsize, key_type
        self.dense_file = f"{prefix}_dense_{steps}.model"
        self.sparse_files = [f"{prefix}{i}_sparse_{steps}.model" for i in range(len(sess.embeddings))]

    def eval_predictions(self):
        """The eval network's predictions over the eval batches (raw float32, sample order)."""
        sess = self.session
        sess.get_data_reader_eval().set_source()
        preds = []
        for _ in range(self.eval_batches):
            assert sess.eval()
            preds.append(sess.backend.to_host(sess.eval_networks[0].predictions)[:, 0].astype(np.float32))
        sess.get_data_reader_eval().set_source()
        sess.get_eval_metrics()
        return np.concatenate(preds)

    def eval_samples(self) -> Samples:
        data = self.session.config.data
        files = resolve_file_list(data.eval_source)
        parts = [read_norm_file(f, self.key_type, slot_nums=[s.slot_num for s in data.sparse],
                                max_feature_nums=[s.max_feature_num_per_sample for s in data.sparse]) for f in files]
        return Samples.concat(parts).take(0, self.eval_batches * self.batchsize)

    def write_inference_config(self, path="infer.json", **options):
        cfg = inference_config("train.json", self.dense_file, self.sparse_files, **options)
        if self.key_type == "I64":
            cfg["inference"]["input_key_type"] = "I64"
        if self.session.solver.use_mixed_precision:
            cfg["inference"]["mixed_precision"] = 1024
        Path(path).write_text(json.dumps(cfg, indent=1))
        return path

    def close(self):
        self.session.close()


def tiny_model(directory, tables, *, slots=None, dense_dim=2, threshold=0.5, default=0.0, key_type="I32",
               max_batchsize=64, name="tiny"):
    """An inference config (and model files) without training: one embedding per entry of ``tables``
    (``(keys, vectors)`` pairs, sum combiner), reshaped and concatenated with the dense input into one
    FC-1 and a Sigmoid. ``slots``: slots per table (default 2 each)."""
    from hugectr_lab.embedding import write_sparse_model_file

    directory = Path(directory)
    slots = slots or [2] * len(tables)
    sparse, layers, files, width = [], [], [], dense_dim
    for t, ((keys, vectors), s) in enumerate(zip(tables, slots)):
        vec = np.asarray(vectors).shape[1]
        sparse.append({"top": f"data{t}", "type": "DistributedSlot", "max_feature_num_per_sample": 4 * s,
                       "slot_num": s})
        layers.append({"name": f"emb{t}", "type": "DistributedSlotSparseEmbeddingHash", "bottom": f"data{t}",
                       "top": f"emb{t}", "sparse_embedding_hparam": {"embedding_vec_size": vec, "combiner": 0,
                                                                     "default_emb_vec_value": default}})
        files.append(str(directory / f"{name}{t}_sparse.model"))
        write_sparse_model_file(files[-1], keys, vectors, key_type=key_type)
        width += s * vec
    layers += [{"name": f"reshape{t}", "type": "Reshape", "bottom": f"emb{t}", "top": f"reshape{t}",
                "leading_dim": s * np.asarray(v).shape[1]} for t, ((_, v), s) in enumerate(zip(tables, slots))]
    layers += [{"name": "concat", "type": "Concat", "bottom": [f"reshape{t}" for t in range(len(tables))] + ["dense"],
                "top": "concat"},
               {"name": "fc", "type": "InnerProduct", "bottom": "concat", "top": "fc", "fc_param": {"num_output": 1}},
               {"name": "sigmoid", "type": "Sigmoid", "bottom": "fc", "top": "sigmoid"}]
    dense_file = directory / f"{name}_dense.model"
    np.random.default_rng(0).uniform(-0.5, 0.5, width + 1).astype(np.float32).tofile(dense_file)
    config = {"inference": {"max_batchsize": max_batchsize, "hit_rate_threshold": threshold,
                            "dense_model_file": str(dense_file), "sparse_model_file": files,
                            "input_key_type": key_type},
              "layers": [{"name": "data", "type": "Data", "label": {"label_dim": 1},
                          "dense": {"top": "dense", "dense_dim": dense_dim}, "sparse": sparse}] + layers}
    path = directory / f"{name}.json"
    path.write_text(json.dumps(config, indent=1))
    return str(path)


def table(rows, vec=4, start=0, seed=0, dtype=np.uint32):
    """``rows`` consecutive keys from ``start`` with random vectors."""
    keys = np.arange(start, start + rows).astype(dtype)
    return keys, np.random.default_rng(seed).uniform(-1, 1, (rows, vec)).astype(np.float32)


def open_session(config, name="model", percentage=0.5, use_cache=True, i64=False, **cache_options):
    """An InferenceSession on ``config`` with its own parameter server and embedding cache
    (``cache_options``: CreateEmbeddingCache's ``backend``, ``cache_policy``)."""
    ps = CreateParameterServer([config], [name], i64)
    cache = CreateEmbeddingCache(ps, 0, use_cache, percentage, config, name, i64, **cache_options)
    return InferenceSession(config, 0, cache)


def run_predict(session, inputs, *extra):
    """``session.predict`` on ``inputs`` (a ``predict_inputs`` result) as float32 NumPy, (N,) or (N, L)."""
    return np.asarray(session.predict(inputs.dense_feature, inputs.embeddingcolumns, inputs.row_ptrs, *extra),
                      dtype=np.float32)


def predict_from_threads(session, requests, threads=4):
    """``{i: run_predict(session, requests[i])}`` with one ``session`` shared by ``threads`` threads
    (request i on thread i mod ``threads``); fails if any worker raised."""
    got, errors = {}, []

    def worker(w):
        try:
            for i in range(w, len(requests), threads):
                got[i] = run_predict(session, requests[i])
        except Exception as e:   # noqa: BLE001  (reported below)
            errors.append(e)

    workers = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert not errors, errors
    return got


def check_dedupe_set(keys, set_keys, inverse):
    """What every layout of infer_dedupe has: each distinct real key once, the rest empty, inverse pointing
    at each key's entry (-1 for padding), and each key reachable from its home entry by linear probing."""
    empty = empty_key(keys.dtype)
    real = keys != empty
    held = set_keys[set_keys != empty]
    assert held.size == np.unique(held).size
    np.testing.assert_array_equal(np.sort(held), np.unique(keys[real]))
    np.testing.assert_array_equal(set_keys[inverse[real]], keys[real])
    assert (inverse[~real] == -1).all()
    mask = set_keys.size - 1
    homes = murmur3_32(np, held, DEDUPE_SEED).astype(np.int64) & mask
    for key, home in zip(held, homes):
        slot = home
        while set_keys[slot] != key:
            assert set_keys[slot] != empty, f"key {key}: an empty entry before it on its probe chain"
            slot = (slot + 1) & mask


def two_table_model(directory, key_type, max_batchsize=64):
    """tiny_model with two tables (3 and 2 slots, vec 5 and 3; the second with the mean combiner and a
    default value for unknown keys), max 12 and 8 keys per sample."""
    dtype = np.uint32 if key_type == "I32" else np.int64
    config = tiny_model(directory, [table(700, vec=5, dtype=dtype), table(300, vec=3, start=5000, seed=1, dtype=dtype)],
                        slots=[3, 2], key_type=key_type, default=0.25, max_batchsize=max_batchsize)
    obj = json.loads(open(config).read())
    obj["layers"][2]["sparse_embedding_hparam"]["combiner"] = 1
    open(config, "w").write(json.dumps(obj))
    return config


def two_table_request(rng, n, key_type, crowd_table=False, one_hot=False):
    """predict arguments for n samples of two_table_model: 0..3 keys per slot (``one_hot``: one), Zipf-like
    (duplicates within and across samples), about 1 in 8 keys unknown to the parameter server. With
    ``crowd_table`` (n = 1), the sample has 14 keys in a slot of table 0 and none in table 1: within the
    request's limit (12 + 8 keys per sample), beyond table 0's staging (12), so it takes the eager path."""
    nnz = np.ones((n, 5), np.int64) if one_hot else rng.integers(0, 4, (n, 5))
    if crowd_table:
        nnz[0] = [14, 0, 0, 0, 0]
    keys = []
    for s in range(n):
        for slot, count in enumerate(nnz[s]):
            rows, start = (700, 0) if slot < 3 else (300, 5000)
            ranks = np.minimum((rng.pareto(1.0, count) * 20).astype(np.int64), rows * 8 // 7)
            keys.append(start + ranks)
    keys = np.concatenate(keys).astype(np.uint32 if key_type == "I32" else np.int64)
    row_ptrs = np.zeros(nnz.size + 1, np.int64)
    np.cumsum(nnz.reshape(-1), out=row_ptrs[1:])
    return rng.random(n * 2, dtype=np.float32), keys, row_ptrs
