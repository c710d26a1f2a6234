"""Session end to end on the NumPy backend: the seed programs' loops, logical devices, model files."""

import json
import os

import numpy as np
import pytest

from hugectr_lab.backend import visible_gpu_count
from hugectr_lab.config import solver_parser_helper
from hugectr_lab.enums import Error_t
from hugectr_lab.events import EvalEnd, IterationEnd, ModelSaved
from hugectr_lab.session import IllegalCallError, Session, model_file_names

from session_helpers import dnn_config, optimizer, run_seed_program, write_config, write_full_sparse_model


def solver(**kw):
    args = dict(batchsize=64, batchsize_eval=64, max_eval_batches=4, seed=11)
    args.update(kw)
    return solver_parser_helper(**args)


def run(session, steps):
    losses = []
    for _ in range(steps):
        assert session.train()
        losses.append(session.get_current_loss())
    return np.array(losses)


def test_seed_non_epoch_program_runs_through_import_hugectr(workdir):
    """The seed's non-epoch sample program, unchanged but for sizes: 4 logical devices, mixed precision."""
    write_config(workdir / "your_config.json", dnn_config(opt=optimizer("Adam", lr=0.01)))
    namespace = run_seed_program(workdir, vvgpu=[[0, 1, 2, 3]], mixed=True, scaler=1024)
    sess, losses = namespace["sess"], namespace["losses"]
    assert sess.num_devices == 4 and sess.train_networks[0].ctx.mixed_precision
    assert losses[-1] < losses[0] - 0.02, losses
    assert dict(namespace["metrics"])["AUC"] > 0.6
    for name in ("./_dense_60.model", "./_opt_dense_60.model", "./0_sparse_60.model", "./0_opt_sparse_60.model"):
        assert os.path.exists(name), name
    sess.close()


@pytest.mark.parametrize("embedding", ["DistributedSlotSparseEmbeddingHash", "LocalizedSlotSparseEmbeddingHash"])
def test_four_logical_devices_train_like_one(workdir, embedding):
    vec = 8
    sparse, _ = write_full_sparse_model(workdir / "start.model", vec,
                                        vocab_per_slot=50 if embedding.startswith("Localized") else None)
    config = write_config(workdir / "c.json", dnn_config(embedding=embedding, vec=vec, combiner=1,
                                                         opt=optimizer("Adam", lr=0.01)))
    curves, weights = [], []
    for g in (1, 4):
        sess = Session(solver(vvgpu=[list(range(g))], embedding_files=[sparse]), config)
        sess.start_data_reading()
        curves.append(run(sess, 12))
        weights.append(sess.backend.to_host(sess.train_networks[0].weights))
        keys, vectors, _ = sess.embeddings[0].dump()
        weights.append(vectors[np.argsort(keys)])
        sess.close()
    np.testing.assert_allclose(curves[1], curves[0], rtol=2e-5)
    np.testing.assert_allclose(weights[2], weights[0], rtol=1e-3, atol=2e-5)
    np.testing.assert_allclose(weights[3], weights[1], rtol=1e-3, atol=2e-5)


@pytest.mark.parametrize("mixed", [False, True], ids=["fp32", "mixed"])
@pytest.mark.parametrize("opt", ["Adam", "MomentumSGD"])
def test_save_load_continue_equals_uninterrupted(workdir, opt, mixed):
    """Mixed precision too: the dense state file is fp16 (HugeCTR's), the float32 states beside it
    (``.f32``) are what the resumed run loads; from the fp16 file alone it drifts from the second step.
    Dropout continues from each device's saved generator (the sidecar's ``dropout_rng``)."""
    config = write_config(workdir / "c.json", dnn_config(opt=optimizer(opt, lr=0.01), batchnorm=True, cross=True,
                                                         dropout=True))
    precision = dict(use_mixed_precision=True, scaler=1024) if mixed else {}
    first = Session(solver(vvgpu=[[0, 1]], **precision), config)
    first.start_data_reading()
    run(first, 6)
    assert first.download_params_to_files("./ckpt", 6) == Error_t.Success
    expected = run(first, 6)
    first.close()

    names = model_file_names("./ckpt", 6, 1)
    assert os.path.exists(names["dense_opt"] + ".f32") == mixed
    resumed = Session(solver(vvgpu=[[0, 1]], model_file=names["dense"], dense_opt_states_file=names["dense_opt"],
                             embedding_files=names["sparse"], sparse_opt_states_file=names["sparse_opt"],
                             **precision), config)
    reader = resumed.get_data_reader_train()
    reader.start()
    for _ in range(6):  # the same data position as the uninterrupted run
        reader.read_a_batch()
    np.testing.assert_allclose(run(resumed, 6), expected, rtol=1e-6)
    resumed.close()


def test_dropout_generators_of_another_device_count_are_not_loaded(workdir):
    config = write_config(workdir / "c.json", dnn_config(dropout=True))
    first = Session(solver(vvgpu=[[0, 1]]), config)
    first.start_data_reading()
    run(first, 2)
    first.download_params_to_files("./ckpt", 2)
    first.close()
    names = model_file_names("./ckpt", 2, 1)
    assert len(json.load(open(names["dense_opt"] + ".json"))["dropout_rng"]) == 2
    with pytest.warns(RuntimeWarning, match=r'"dropout_rng" holds no state for each of this run\'s 1 devices'):
        Session(solver(dense_opt_states_file=names["dense_opt"]), config).close()


def test_an_fp16_state_file_replaced_after_the_save_loads_as_it_is_with_a_warning(workdir):
    config = write_config(workdir / "c.json", dnn_config(opt=optimizer("Adam", lr=0.01)))
    precision = dict(use_mixed_precision=True, scaler=1024)
    first = Session(solver(**precision), config)
    first.start_data_reading()
    run(first, 3)
    first.download_params_to_files("./ckpt", 3)
    first.close()
    names = model_file_names("./ckpt", 3, 1)
    os.remove("./ckpt_3.manifest.json")   # edited by hand: no manifest to check the files against
    size = os.path.getsize(names["dense_opt"])
    replaced = np.full(size // 2, 0.5, np.float16)
    replaced.tofile(names["dense_opt"])
    with pytest.warns(RuntimeWarning, match=r"ckpt_opt_dense_3.model.f32: does not round to"):
        resumed = Session(solver(dense_opt_states_file=names["dense_opt"], **precision), config)
    assert resumed.dense_optimizers[0].state_bytes() == replaced.tobytes()
    resumed.close()


def test_loaded_embeddings_keep_their_values_without_optimizer_states(workdir):
    vec = 8
    sparse, keys = write_full_sparse_model(workdir / "start.model", vec)
    sess = Session(solver(embedding_files=[sparse]), write_config(workdir / "c.json", dnn_config(vec=vec)))
    dumped_keys, vectors, _ = sess.embeddings[0].dump()
    order = np.argsort(dumped_keys)
    np.testing.assert_array_equal(dumped_keys[order], keys)
    np.testing.assert_array_equal(vectors[order], np.fromfile(sparse, dtype=[("k", "<u4"), ("v", "<f4", vec)])["v"])
    assert sess.get_params_num() == sess.train_networks[0].num_params + keys.size * vec


@pytest.mark.parametrize("embedding", ["DistributedSlotSparseEmbeddingHash", "LocalizedSlotSparseEmbeddingHash"])
def test_sparse_models_round_trip_in_the_v31_directory_format(workdir, embedding):
    config = write_config(workdir / "c.json", dnn_config(embedding=embedding))
    sess = Session(solver(), config)
    sess.start_data_reading()
    run(sess, 3)
    sess.download_params_to_files("./v31", 3, sparse_format="v3.1")
    saved = workdir / "v310_sparse_3.model"
    assert saved.is_dir() and (saved / "key").stat().st_size == 8 * sess.embeddings[0].num_keys()
    assert (saved / "slot_id").exists() == embedding.startswith("Localized")
    reloaded = Session(solver(embedding_files=[str(saved)]), config)
    for a, b in zip(sess.embeddings[0].dump(), reloaded.embeddings[0].dump()):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="'v3.0' or 'v3.1'"):
        sess.download_params_to_files("./x", 3, sparse_format="v4")
    sess.close()
    reloaded.close()


def test_batchnorm_statistics_are_written_and_read_back(workdir):
    config = write_config(workdir / "c.json", dnn_config(batchnorm=True))
    sess = Session(solver(), config)
    sess.start_data_reading()
    run(sess, 3)
    sess.download_params_to_files("./m", 3)
    saved = json.load(open("./m_dense_3.model.ntp.json"))
    assert saved["layers"][0]["type"] == "BatchNorm" and len(saved["layers"][0]["mean"]) == 32
    reloaded = Session(solver(model_file="./m_dense_3.model"), config)
    np.testing.assert_allclose(reloaded.train_networks[0].state["layers"][0]["var"], saved["layers"][0]["var"])
    np.testing.assert_array_equal(reloaded.backend.to_host(reloaded.eval_networks[0].weights),
                                  np.fromfile("./m_dense_3.model", dtype=np.float32))
    sess.close()
    reloaded.close()


def test_evaluation_and_copy_weights(workdir):
    sess = Session(solver(), write_config(workdir / "c.json", dnn_config(opt=optimizer("Adam", lr=0.01))))
    sess.start_data_reading()
    run(sess, 20)
    sess.eval()
    stale = dict(sess.get_eval_metrics())["AUC"]
    sess.copy_weights_for_evaluation()
    for _ in range(4):
        assert sess.eval()
    fresh = dict(sess.get_eval_metrics())["AUC"]
    assert fresh != stale and fresh > 0.6

    # repeat mode: a bounded pass of max_eval_batches, starting from the beginning of the eval source
    metrics = sess.evaluation("preds.txt", "labels.txt")
    preds = np.array(open("preds.txt").read().split(), dtype=np.float64)
    labels = np.array(open("labels.txt").read().split(), dtype=np.float64)
    assert preds.size == labels.size == 4 * 64
    assert set(np.unique(labels)) <= {0.0, 1.0} and ((preds > 0) & (preds < 1)).all()
    from sklearn.metrics import roc_auc_score
    assert dict(metrics)["AUC"] == pytest.approx(roc_auc_score(labels, preds), abs=1e-4)  # 6-digit export
    assert sess.evaluation() == metrics  # rewound: the same pass again
    with pytest.raises(ValueError, match="both"):
        sess.evaluation("preds.txt")
    sess.close()


def test_an_evaluation_pass_reads_the_device_records_once(workdir, monkeypatch):
    """eval() checks the non-finite and overflow records (device reads on a GPU) once per trained state,
    not once per batch."""
    sess = Session(solver(), write_config(workdir / "c.json", dnn_config()))
    sess.start_data_reading()
    polls = []
    monkeypatch.setattr(sess, "_poll_overflow", lambda: polls.append(sess.iteration))
    run(sess, 2)
    for _ in range(3):
        assert sess.eval()
    run(sess, 1)
    for _ in range(3):
        assert sess.eval()
    # train() polls after every step on NumPy (host counters); each evaluation pass once, not per batch
    assert polls == [1, 2, 2, 3, 3]
    sess.close()


def test_epoch_mode_train_returns_false_and_evaluation_covers_the_source(workdir):
    config = write_config(workdir / "c.json", dnn_config())
    sess = Session(solver(repeat_dataset=False, batchsize=96, batchsize_eval=100), config)
    sess.get_data_reader_train().set_source("data/file_list.txt")
    trained = 0
    while sess.train():
        trained += 1
    assert trained == 2048 // 96  # partial last batch discarded
    assert sess.train() is False
    sess.evaluation("p.txt", "l.txt")
    assert len(open("p.txt").read().split()) == 2048  # every real eval sample once, padding left out
    sess.get_data_reader_train().set_source()
    assert sess.train()
    sess.close()


def test_events_report_every_iteration_and_evaluation(workdir):
    sess = Session(solver(), write_config(workdir / "c.json", dnn_config()))
    seen = []
    sess.events.subscribe(seen.append)
    sess.start_data_reading()
    sess.set_learning_rate(0.002)
    run(sess, 3)
    sess.eval()
    sess.get_eval_metrics()
    sess.download_params_to_files("./e", 3)
    iters = [e for e in seen if isinstance(e, IterationEnd)]
    assert [e.iteration for e in iters] == [1, 2, 3]
    assert iters[-1].loss == pytest.approx(sess.get_current_loss())
    assert all(e.learning_rate == pytest.approx(0.002) and e.samples_per_sec > 0 and e.batch_size == 64 for e in iters)
    assert any(isinstance(e, EvalEnd) and e.batches == 1 and e.metrics[0][0] == "AUC" for e in seen)
    assert any(isinstance(e, ModelSaved) and "./e_dense_3.model" in e.files for e in seen)
    sess.close()


def test_small_methods_and_overflow(workdir):
    sess = Session(solver(), write_config(workdir / "c.json", dnn_config(vocab=20)))
    assert sess.init_params("x") == Error_t.Success
    assert sess.get_model_oversubscriber() is None
    assert type(sess.get_data_reader_train()).__name__ == "DataReader32"
    assert "1 device(s) on numpy" in repr(sess)
    assert "InnerProduct" in sess.summary(print_fn=None)
    sess.start_data_reading()
    sess.train()
    with pytest.raises(OverflowError, match="max_vocabulary_size_per_gpu=20"):
        sess.check_overflow()
    with pytest.warns(RuntimeWarning, match="iter must be positive"):
        assert sess.download_params_to_files("./z", 0) == Error_t.WrongInput
    assert not any(name.startswith("z") for name in os.listdir("."))
    sess.close()


def test_bad_calls_raise_clear_errors(workdir):
    config = write_config(workdir / "c.json", dnn_config())
    sess = Session(solver(), config)
    with pytest.raises(IllegalCallError, match="start_data_reading"):
        sess.train()
    with pytest.raises(IllegalCallError, match="before the first train"):
        sess.get_current_loss()
    for lr in (0.0, -1.0):
        with pytest.raises(ValueError, match="lr|learning"):
            sess.set_learning_rate(lr)
    sess.close()
    with pytest.raises(FileNotFoundError, match="model_file: missing.model"):
        Session(solver(model_file="missing.model"), config)
    with pytest.raises(ValueError, match=r"batchsize: must be divisible by the number of GPUs \(3\)"):
        Session(solver(vvgpu=[[0, 1, 2]]), config)
    with pytest.raises(TypeError, match="SolverParser"):
        Session({"batchsize": 64}, config)
    with pytest.raises(ValueError, match="lists 2 files but the config has 1 embedding"):
        Session(solver(embedding_files=["a", "b"]), config)


def test_session_reports_the_backend_it_chose(workdir, monkeypatch, caplog):
    monkeypatch.setenv("HUGECTR_LAB_BACKEND", "auto")
    config = write_config(workdir / "model.json", dnn_config())
    with caplog.at_level("INFO", logger="hugectr_lab"):
        sess = Session(solver(), config)
    expected = "cupy" if visible_gpu_count() else "numpy"
    assert sess.backend.name == expected and sess.backend.reason.startswith("auto: ")
    assert f"model.json: backend {expected}, chosen by auto: " in caplog.text
    assert f"on {expected} (auto: " in repr(sess)
    sess.close()
