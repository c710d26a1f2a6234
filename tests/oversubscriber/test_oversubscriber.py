"""ModelOversubscriber: equals ordinary training when everything fits, trains a table 4x the device
capacity over keyset/file-list pairs, keeps optimizer state with its keys, writes the full model, and
cleans up its files."""

import gc
import json
import os

import numpy as np
import pytest
from mos_helpers import SLOTS, VOCAB, config, make_parts, slot_width, write_config

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.data import read_keyset
from hugectr_lab.embedding import EmbeddingOverflowError, read_sparse_model_file, write_sparse_model_file
from hugectr_lab.session import Session

VEC = 8


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def solver(**kw):
    values = dict(seed=11, batchsize=64, batchsize_eval=64, vvgpu=[[0]], repeat_dataset=False, max_eval_batches=20)
    return solver_parser_helper(**{**values, **kw})


def run_part(sess, p):
    sess.get_data_reader_train().set_source(f"file_list.{p}.txt")
    losses = []
    while sess.train():
        losses.append(sess.get_current_loss())
    return losses


def full_model(path, parts, localized):
    """A sparse model file holding every key of the parts (slot ids for localized embeddings)."""
    keys = np.unique(np.concatenate([read_keyset(f"file_list.{p}.keyset", "I32") for p in range(parts)]))
    vectors = np.random.default_rng(4).uniform(-0.05, 0.05, (keys.size, VEC)).astype(np.float32)
    slots = (keys // slot_width(parts)).astype(np.uint64) if localized else None
    write_sparse_model_file(path, keys, vectors, slots, key_type="I32")
    return str(path), keys


def sorted_dump(keys, vectors):
    order = np.argsort(keys)
    return keys[order], vectors[order]


@pytest.mark.parametrize("embedding, devices", [("DistributedSlotSparseEmbeddingHash", 2),
                                                ("LocalizedSlotSparseEmbeddingHash", 1)])
def test_oversubscribed_training_equals_ordinary_training_when_everything_fits(workdir, embedding, devices):
    make_parts(workdir, parts=3, eval_part=False)
    localized = embedding.startswith("Localized")
    model, keys = full_model(workdir / "start.model", 3, localized)
    cfg = write_config(workdir / "c.json", config(keys.size, embedding=embedding, vec=VEC, source="file_list.0.txt",
                                                  eval_source=""))
    order = [0, 1, 0, 2]  # part 0's keys come back: their values and Adam state must too
    plain = Session(solver(embedding_files=[model], vvgpu=[list(range(devices))]), cfg)
    plain_losses = [run_part(plain, p) for p in order]
    mos_sess = Session(solver(embedding_files=[model], vvgpu=[list(range(devices))]), cfg, True, str(workdir / "tmp"))
    mos = mos_sess.get_model_oversubscriber()
    mos_losses = []
    for p in order:
        mos_sess.get_data_reader_train().set_source(f"file_list.{p}.txt")
        mos.update(f"file_list.{p}.keyset")
        assert mos_sess.embeddings[0].num_keys() < keys.size or p == 2
        losses = []
        while mos_sess.train():
            losses.append(mos_sess.get_current_loss())
        mos_losses.append(losses)
    assert [len(losses) for losses in mos_losses] == [8, 8, 8, 8]
    np.testing.assert_allclose(np.concatenate(mos_losses), np.concatenate(plain_losses), rtol=1e-6)
    mos.store(["mos.model"])
    stored = read_sparse_model_file("mos.model", key_type="I32", vec_size=VEC, with_slot_id=localized)
    plain_keys, plain_vectors, _ = plain.embeddings[0].dump()
    got, want = sorted_dump(stored.keys, stored.vectors), sorted_dump(plain_keys, plain_vectors)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-7)
    plain.close()
    mos_sess.close()


def test_a_table_four_times_the_device_capacity_trains_without_overflow(workdir):
    parts = 5
    total = make_parts(workdir, parts=parts)
    capacity = -(-total // 4)
    assert SLOTS * (VOCAB + 6) <= capacity  # every part fits the device table, all parts together do not
    cfg = write_config(workdir / "c.json", config(capacity, vec=VEC))
    sess = Session(solver(), cfg, True, "tmp")
    mos = sess.get_model_oversubscriber()
    after_part = {}
    for p in range(parts):
        sess.get_data_reader_train().set_source(f"file_list.{p}.txt")
        mos.update(f"file_list.{p}.keyset")
        losses = []
        while sess.train():
            losses.append(sess.get_current_loss())
        assert len(losses) == 8 and np.isfinite(losses).all()
        sess.check_overflow()  # never more than the current part's keys on the device
        assert sess.embeddings[0].num_keys() <= capacity
        keys, vectors, _ = sess.embeddings[0].dump()
        after_part[p] = dict(zip(keys.tolist(), vectors))
    sess.copy_weights_for_evaluation()
    assert 0 < sess.evaluation()[0][1] < 1
    mos.store(["full.model"])
    stored = read_sparse_model_file("full.model", key_type="I32", vec_size=VEC, with_slot_id=False)
    assert stored.keys.size == total >= 4 * capacity - 3 and mos.num_keys() == [total]
    assert os.path.getsize(mos.stores[0].vectors.path) >= total * VEC * 4  # HugeCTR's temp-file layout
    # a key seen only in part p keeps the value it had after training on part p
    last_seen = {}
    for p in range(parts):
        for key in read_keyset(f"file_list.{p}.keyset", "I32").tolist():
            last_seen[key] = p
    stored_values = dict(zip(stored.keys.tolist(), stored.vectors))
    for key, p in last_seen.items():
        np.testing.assert_array_equal(stored_values[key], after_part[p][key])
    paths = list(mos.stores[0].paths)
    assert all(os.path.exists(p) for p in paths) and all(os.path.dirname(p) == "tmp" for p in paths)
    sess.close()
    assert not any(os.path.exists(p) for p in paths)

    plain = Session(solver(), cfg)  # without the oversubscriber the same table overflows
    for p in range(parts):
        run_part(plain, p)
    with pytest.raises(EmbeddingOverflowError, match="max_vocabulary_size_per_gpu"):
        plain.check_overflow()
    plain.close()


def test_store_and_reload_with_optimizer_state_continues_exactly(workdir):
    make_parts(workdir, parts=3, eval_part=False)
    model, keys = full_model(workdir / "start.model", 3, False)
    cfg = write_config(workdir / "c.json", config(keys.size // 2, vec=VEC, eval_source=""))
    first = Session(solver(embedding_files=[model]), cfg, True, "tmp")
    mos = first.get_model_oversubscriber()
    for p in (0, 1):
        first.get_data_reader_train().set_source(f"file_list.{p}.txt")
        mos.update(f"file_list.{p}.keyset")
        while first.train():
            pass
    mos.store(["s.model"], optimizer_state_files=["s_opt.model"])
    with open("s.model.manifest.json") as f:   # both committed as one snapshot (docs/reliability.md)
        manifest = json.load(f)
    assert manifest["state"] == "complete" and [e["name"] for e in manifest["files"]] == ["s.model", "s_opt.model"]
    first.download_params_to_files("m", 1)
    first.get_data_reader_train().set_source("file_list.2.txt")
    mos.update("file_list.2.keyset")
    expected = []
    while first.train():
        expected.append(first.get_current_loss())

    second = Session(solver(embedding_files=["s.model"], sparse_opt_states_file=["s_opt.model"],
                            model_file="m_dense_1.model", dense_opt_states_file="m_opt_dense_1.model"),
                     cfg, True, "tmp2")
    assert second.embeddings[0].num_keys() == 0  # the device table waits for update()
    assert second.get_model_oversubscriber().num_keys() == [keys.size]
    second.get_data_reader_train().set_source("file_list.2.txt")
    second.get_model_oversubscriber().update(["file_list.2.keyset"])
    got = []
    while second.train():
        got.append(second.get_current_loss())
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    first.close()
    second.close()


def test_api_errors_store_without_files_and_cleanup_on_garbage_collection(workdir):
    make_parts(workdir, parts=2, eval_part=False)
    cfg = write_config(workdir / "c.json", config(180, vec=VEC, eval_source=""))
    with pytest.raises(ValueError, match="temp_embedding_dir"):
        Session(solver(), cfg, True, "")
    with pytest.raises(ValueError, match="one file per embedding"):
        Session(solver(embedding_files=["a", "b"]), cfg, True, "tmp")
    sess = Session(solver(), cfg, True, "tmp")
    mos = sess.get_model_oversubscriber()
    with pytest.raises(ValueError, match="2 keyset files for 1 embeddings"):
        mos.update(["file_list.0.keyset", "file_list.1.keyset"])
    assert run_part(sess, 0)
    mos.store([])  # only writes the device table back
    assert not any(name.endswith(".model") for name in os.listdir(".")) and mos.num_keys()[0] > 0
    mos.update("file_list.1.keyset")  # part 1's new keys are unknown to the store: they start fresh
    assert sess.embeddings[0].num_keys() == np.intersect1d(read_keyset("file_list.0.keyset", "I32"),
                                                           read_keyset("file_list.1.keyset", "I32")).size
    run_part(sess, 1)
    mos.store([])
    np.concatenate([read_keyset(f"file_list.{p}.keyset", "I32") for p in (0, 1)]).tofile("both.keyset")
    with pytest.raises(EmbeddingOverflowError, match="loading a sparse model"):
        mos.update("both.keyset")  # more known keys than the device table holds
    paths = mos.stores[0].paths
    assert all(os.path.exists(p) for p in paths)
    sess.get_data_reader_train().close()
    del sess, mos
    gc.collect()
    assert not any(os.path.exists(p) for p in paths)
