"""Session over Raw and Parquet data: files written by independent implementations of the byte formats
train exactly like the same samples in Norm; the DLRM sample configs (OneHotEmbedding over Raw) train;
epoch mode ends, moves on with set_source and rewinds evaluation; Raw shuffling follows the seed."""

import copy
import json
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from session_helpers import dnn_config, optimizer, write_config

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.data import CSR, Samples, generate_for_config, write_file_list, write_norm_file
from hugectr_lab.session import Session

SLOTS, DENSE = 8, 5
SIZES = [11 + 3 * s for s in range(SLOTS)]
OFFSETS = np.cumsum([0] + SIZES[:-1])
CONFIGS = Path(__file__).parents[1] / "config" / "configs"


def planted(n, seed):
    """(labels (n,), dense (n, D) float32, file keys (n, S) without offsets) with a learnable signal."""
    rng = np.random.default_rng(seed)
    dense = rng.random((n, DENSE), dtype=np.float32)
    keys = np.stack([rng.integers(0, s, n) for s in SIZES], axis=1)
    logit = 2 * (dense[:, 0] - 0.5) + np.where(keys % 2 == 0, 0.6, -0.6).sum(axis=1)
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return labels, dense, keys


def write_three_formats(base, n=768, seed=3):
    """The same samples as Norm (our writer), Raw (struct, from the byte description) and Parquet
    (pyarrow, from the column description); returns the three sources."""
    labels, dense, keys = planted(n, seed)
    half = n // 2
    (base / "norm").mkdir()
    for f, part in enumerate((slice(0, half), slice(half, n))):
        samples = Samples(labels[part, None], dense[part], (CSR(np.arange(SLOTS * (part.stop - part.start) + 1),
                                                                (keys[part] + OFFSETS).reshape(-1).astype(np.uint32)),))
        write_norm_file(base / "norm" / f"{f}.data", samples, check="None")
    write_file_list(base / "norm" / "list.txt", [str(base / "norm" / f"{f}.data") for f in range(2)])

    fmt = "<" + "f" * (1 + DENSE) + "i" * SLOTS
    with open(base / "train.bin", "wb") as f:
        for i in range(n):
            f.write(struct.pack(fmt, float(labels[i]), *map(float, dense[i]), *map(int, keys[i])))

    (base / "pq").mkdir()
    stats = []
    for f, part in enumerate((slice(0, half), slice(half, n))):
        columns = {"label": labels[part]} | {f"C{s + 1}": keys[part, s].astype(np.int64) for s in range(SLOTS)} | \
                  {f"I{j + 1}": dense[part, j] for j in range(DENSE)}
        pq.write_table(pa.table(columns), base / "pq" / f"p{f}.parquet")
        stats.append({"file_name": f"p{f}.parquet", "num_rows": part.stop - part.start})
    names = list(columns)
    meta = {"file_stats": stats, "labels": [{"col_name": "label", "index": 0}],
            "cats": [{"col_name": f"C{s + 1}", "index": names.index(f"C{s + 1}")} for s in range(SLOTS)],
            "conts": [{"col_name": f"I{j + 1}", "index": names.index(f"I{j + 1}")} for j in range(DENSE)]}
    (base / "pq" / "_metadata.json").write_text(json.dumps(meta))
    write_file_list(base / "pq" / "_file_list.txt", [str(base / "pq" / s["file_name"]) for s in stats])
    return {"Norm": str(base / "norm" / "list.txt"), "Raw": str(base / "train.bin"),
            "Parquet": str(base / "pq" / "_file_list.txt")}, n


def format_config(fmt, source, n, **kw):
    config = dnn_config(embedding="LocalizedSlotSparseEmbeddingHash", vocab=sum(SIZES), opt=optimizer("Adam", 0.01),
                        source=source, eval_source=source, **kw)
    data = config["layers"][0]
    data["check"] = "None"
    for sparse in data["sparse"]:
        sparse["max_feature_num_per_sample"] = SLOTS
    if fmt != "Norm":
        data.update(format=fmt, slot_size_array=SIZES)
    if fmt == "Raw":
        data.update(num_samples=n, eval_num_samples=n, float_label_dense=True)
    return config


def solver(**kw):
    values = dict(seed=7, batchsize=128, batchsize_eval=128, vvgpu=[[0, 1]], repeat_dataset=False, max_eval_batches=50)
    return solver_parser_helper(**{**values, **kw})


def epoch(sess, source=""):
    sess.get_data_reader_train().set_source(source)
    losses = []
    while sess.train():
        losses.append(sess.get_current_loss())
    return losses


def test_independently_written_raw_and_parquet_train_exactly_like_norm(tmp_path):
    sources, n = write_three_formats(tmp_path)
    results = {}
    for fmt, source in sources.items():
        sess = Session(solver(), write_config(tmp_path / f"{fmt}.json", format_config(fmt, source, n)))
        sess.get_data_reader_train().shuffle = False  # HugeCTR shuffles Raw training batches; compare in order
        losses = epoch(sess)
        sess.copy_weights_for_evaluation()
        results[fmt] = (losses, sess.evaluation(), sess.backend.to_host(sess.train_networks[0].weights))
        sess.close()
    assert len(results["Norm"][0]) == n // 128
    for fmt in ("Raw", "Parquet"):
        assert results[fmt][0] == results["Norm"][0], fmt
        assert results[fmt][1] == results["Norm"][1], fmt
        np.testing.assert_array_equal(results[fmt][2], results["Norm"][2])


def test_raw_training_order_follows_the_session_seed(tmp_path):
    sources, n = write_three_formats(tmp_path)
    config = write_config(tmp_path / "raw.json", format_config("Raw", sources["Raw"], n))
    runs = []
    for seed in (5, 5, 6):
        sess = Session(solver(seed=seed, vvgpu=[[0]]), config)
        runs.append([epoch(sess), epoch(sess)])
        sess.close()
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    assert runs[0][0] != runs[0][1]  # every set_source draws a new batch order


def shrunk_dlrm(name, folder):
    """tests/config/configs/dlrm_fp*.json with small slots, widths and sample counts, data paths in ``folder``."""
    config = json.loads((CONFIGS / name).read_text())
    sizes = [20 + 5 * s for s in range(26)]
    data = config["layers"][0]
    data.update(source=f"{folder}/train_data.bin", eval_source=f"{folder}/test_data.bin", num_samples=2048,
                eval_num_samples=512, slot_size_array=sizes)
    fp16 = name.endswith("fp16.json")
    vec = 64 if fp16 else 16
    config["layers"][1]["sparse_embedding_hparam"].update(slot_size_array=sizes, embedding_vec_size=vec)
    for layer in config["layers"]:
        if layer["type"] in ("InnerProduct", "FusedInnerProduct") and layer["name"] != "fc8":
            layer["fc_param"]["num_output"] = vec if layer["name"] == "fc3" else (64 if fp16 else 32)
    config["optimizer"]["sgd_hparam"]["learning_rate"] = 0.1
    return config


@pytest.mark.parametrize("name", ["dlrm_fp32.json", "dlrm_fp16.json"])
def test_dlrm_sample_trains_from_raw_in_epoch_mode(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    config_path = write_config(tmp_path / name, shrunk_dlrm(name, "./data"))
    summary = generate_for_config(config_path, samples_per_file=1024, train_parts=2, seed=1, progress=False)
    assert summary.format == "Raw" and summary.file_lists[1:3] == ("./data/train_data.0.bin", "./data/train_data.1.bin")
    fp16 = name.endswith("fp16.json")
    sess = Session(solver(batchsize=256, batchsize_eval=256, use_mixed_precision=fp16, scaler=1024 if fp16 else 1.0),
                   config_path)
    assert type(sess.embeddings[0]).__name__ == "LocalizedSlotSparseEmbeddingOneHot"
    losses = epoch(sess)
    assert len(losses) == 8 and sess.train() is False  # 2048 samples, batch 256; then the end of the source
    losses += epoch(sess, "./data/train_data.0.bin") + epoch(sess, "./data/train_data.1.bin")
    assert len(losses) == 16 and np.isfinite(losses).all()
    assert np.mean(losses[-4:]) < losses[0] - 0.05, losses
    sess.copy_weights_for_evaluation()
    first, second = sess.evaluation(), sess.evaluation()  # runs to the end of the eval file, then rewinds
    assert first == second and 0.5 < first[0][1] < 1
    j = 0
    while sess.eval():  # the seed program's loop: eval() is False at the end of the data
        j += 1
    assert j == 512 // 256
    sess.get_data_reader_eval().set_source()
    sess.close()


def test_parquet_epoch_mode_and_set_source(tmp_path):
    """Parquet in epoch mode with set_source: HugeCTR v3.0 refuses both; here they work as for Norm."""
    sources, n = write_three_formats(tmp_path)
    config = format_config("Parquet", sources["Parquet"], n)
    sess = Session(solver(vvgpu=[[0]]), write_config(tmp_path / "pq.json", config))
    first = epoch(sess, sources["Parquet"])
    second = epoch(sess, sources["Parquet"])
    assert len(first) == len(second) == n // 128
    sess.close()
    repeat = copy.deepcopy(config)
    sess = Session(solver(vvgpu=[[0]], repeat_dataset=True), write_config(tmp_path / "pq2.json", repeat))
    sess.start_data_reading()
    assert all(sess.train() for _ in range(2 * n // 128))  # repeat mode wraps around
    sess.close()
