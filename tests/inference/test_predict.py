"""InferenceSession.predict equals the training Session's evaluation for the same samples and weights.

Each test trains a Session a few steps on generated data, saves the model with
``download_params_to_files``, writes the inference JSON (Sigmoid head) and compares ``predict`` on the
eval samples with the Session's eval-network predictions (raw float32, 1e-6) and with the
``evaluation()`` export (``%g`` text: 6 significant digits).
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from hugectr_lab.inference import (CreateEmbeddingCache, CreateParameterServer, InferenceSession, predict_inputs,
                                   write_inference_data)
from inference_helpers import SESSION_TESTS, Trained, open_session, predict_from_threads, run_predict, sample_config

sys.path.insert(0, str(SESSION_TESTS))   # the Session tests' small DNN config
from session_helpers import dnn_config  # noqa: E402


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("model", ["dcn", "wdl", "deepfm"])
def test_predictions_equal_the_sessions_evaluation(model):
    trained = Trained(sample_config(model), steps=4)
    expected = trained.eval_predictions()                     # (1024,) raw float32 of the eval network
    trained.session.evaluation("pred.txt", "label.txt")
    exported = np.array(Path("pred.txt").read_text().split(), dtype=np.float64)
    config = trained.write_inference_config(max_batchsize=256)  # 1024 samples: four chunks
    session = open_session(config)
    inputs = predict_inputs(trained.eval_samples())
    got = run_predict(session, inputs)
    assert got.shape == expected.shape == (1024,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got, exported, rtol=5e-6, atol=1e-7)   # %g keeps 6 significant digits
    np.testing.assert_array_equal(np.array(Path("label.txt").read_text().split(), np.float32), inputs.labels)
    if model == "wdl":
        # Two tables, each combiner wired to its own table (HugeCTR 3.0 wires both to table 0: quirk 23).
        assert [s.lookups > 0 for s in session.embedding_cache.stats()] == [True, True]
    trained.close()


def test_mean_combiner_and_batchnorm_running_statistics():
    trained = Trained(dnn_config(batchnorm=True, combiner=1), steps=6, max_nnz=2, vocab=40)
    expected = trained.eval_predictions()
    config = trained.write_inference_config(max_batchsize=1024)
    inputs = predict_inputs(trained.eval_samples())
    assert np.diff(inputs.row_ptrs).max() == 2                # slots with two keys: the mean divides
    np.testing.assert_allclose(run_predict(open_session(config), inputs), expected, rtol=0, atol=1e-6)
    # Without the .ntp.json the statistics stay at mean 0 / var 1 (HugeCTR never loads them: quirk 9).
    Path(trained.dense_file + ".ntp.json").unlink()
    with pytest.warns(RuntimeWarning, match="ntp.json not found"):
        fresh = open_session(config)
    assert np.abs(run_predict(fresh, inputs) - expected).max() > 1e-3
    trained.close()


def test_fp16_inference_matches_the_mixed_precision_session():
    trained = Trained(dnn_config(batchnorm=True), steps=4, mixed=True)
    expected = trained.eval_predictions()
    config = trained.write_inference_config(max_batchsize=256)
    session = open_session(config)
    assert session.compute_dtype == np.float16
    got = run_predict(session, predict_inputs(trained.eval_samples()))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3)
    trained.close()


def test_chunks_and_padding_do_not_change_predictions():
    trained = Trained(sample_config("dcn"), steps=2)
    inputs = predict_inputs(trained.eval_samples().take(0, 300))
    whole = run_predict(open_session(trained.write_inference_config("a.json", max_batchsize=512)), inputs)
    chunked = run_predict(open_session(trained.write_inference_config("b.json", max_batchsize=37)), inputs)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)
    one = open_session("b.json")
    for i in (0, 5, 299):                                     # single samples run as batch 1
        sample = predict_inputs(trained.eval_samples().take(i, i + 1))
        np.testing.assert_allclose(run_predict(one, sample), whole[i:i + 1], rtol=0, atol=1e-6)
    assert one.predict([], [], [0]) == []
    trained.close()


def test_cache_state_never_changes_predictions():
    trained = Trained(sample_config("wdl"), steps=2)
    config = trained.write_inference_config(max_batchsize=128)
    inputs = predict_inputs(trained.eval_samples())
    direct = run_predict(open_session(config, use_cache=False), inputs)
    tiny = open_session(config, percentage=0.01)
    for _ in range(2):                                        # a cold and a churning cache
        np.testing.assert_array_equal(run_predict(tiny, inputs), direct)
    assert tiny.embedding_cache.stats()[0].evictions > 0
    trained.close()


def test_i64_keys():
    trained = Trained(dnn_config(), steps=2, key_type="I64")
    expected = trained.eval_predictions()
    config = trained.write_inference_config()
    session = open_session(config, i64=True)
    inputs = predict_inputs(trained.eval_samples())
    assert inputs.embeddingcolumns.dtype == np.int64
    np.testing.assert_allclose(run_predict(session, inputs, True), expected, rtol=0, atol=1e-6)
    trained.close()


def test_several_models_share_one_parameter_server(workdir):
    models = {}
    for name, config in (("dcn", sample_config("dcn")), ("wdl", sample_config("wdl"))):
        (workdir / name).mkdir()
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(workdir / name)
            trained = Trained(config, steps=2, seed=7)
            models[name] = (str(workdir / name / trained.write_inference_config()), trained.eval_predictions(),
                            predict_inputs(trained.eval_samples()))
            trained.close()
    # From here the configs' relative model paths resolve against the configs' own directories.
    ps = CreateParameterServer([models["dcn"][0], models["wdl"][0]], ["dcn", "wdl"], False)
    assert [len(ps.model(n).tables) for n in ("dcn", "wdl")] == [1, 2]
    for name, (config, expected, inputs) in models.items():
        cache = CreateEmbeddingCache(ps, 0, True, 0.3, config, name, False)
        np.testing.assert_allclose(run_predict(InferenceSession(config, 0, cache), inputs), expected, rtol=0, atol=1e-6)


def test_unknown_keys_get_the_default_vector(workdir):
    trained = Trained(dnn_config(), steps=2)
    inputs = predict_inputs(trained.eval_samples().take(0, 8))
    unknown = inputs._replace(embeddingcolumns=np.full_like(inputs.embeddingcolumns, 4_000_000))
    config = trained.write_inference_config("d.json", default_emb_vec_value=0.125)
    session = open_session(config)
    vectors, found = session.embedding_cache.parameter_server.look_up(np.array([4_000_000], np.uint32), "model", 0)
    assert not found[0] and (vectors == 0.125).all()
    # The same samples with every key replaced by one key whose stored vector is the default value.
    from hugectr_lab.embedding import read_sparse_model_file, write_sparse_model_file
    model = read_sparse_model_file(trained.sparse_files[0], key_type="I32", vec_size=8, with_slot_id=False)
    write_sparse_model_file("extra.model", np.append(model.keys, np.uint32(4_000_000)),
                            np.vstack([model.vectors, np.full((1, 8), 0.125, np.float32)]), key_type="I32")
    config_b = trained.write_inference_config("e.json", default_emb_vec_value=-3.0)
    cfg = json.loads(Path(config_b).read_text())
    cfg["inference"]["sparse_model_file"] = ["extra.model"]
    Path(config_b).write_text(json.dumps(cfg))
    np.testing.assert_allclose(run_predict(session, unknown), run_predict(open_session(config_b), unknown),
                               rtol=0, atol=1e-7)
    trained.close()


def test_write_and_read_the_inference_data_file(workdir):
    from hugectr_lab.inference import read_inference_data
    trained = Trained(sample_config("wdl"), steps=1)
    inputs = predict_inputs(trained.eval_samples().take(0, 5))
    write_inference_data("data.txt", inputs)
    back = read_inference_data("data.txt", "I32")
    for a, b in zip(back, inputs):
        np.testing.assert_array_equal(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(open_session(trained.write_inference_config()).predict(*back[:3])) == 5
    trained.close()


@pytest.mark.parametrize("policy", ["lru", "tinylfu"])
def test_predictions_equal_the_sessions_with_every_cache_policy(policy):
    """WDL (two tables), a small cache that evicts: every call answers as the training Session does."""
    trained = Trained(sample_config("wdl"), steps=3)
    expected = trained.eval_predictions()
    config = trained.write_inference_config(max_batchsize=128)
    ps = CreateParameterServer([config], ["m"], False)
    cache = CreateEmbeddingCache(ps, 0, True, 0.05, config, "m", False, cache_policy=policy)
    session = InferenceSession(config, 0, cache)
    inputs = predict_inputs(trained.eval_samples())
    for _ in range(2):   # a cold and a warm cache
        np.testing.assert_allclose(run_predict(session, inputs), expected, rtol=0, atol=1e-6)
    assert cache.policy == policy and all(s.evictions > 0 for s in cache.stats())
    trained.close()


def test_predict_from_several_threads_equals_single_threaded():
    trained = Trained(sample_config("dcn"), steps=2)
    config = trained.write_inference_config(max_batchsize=64)
    samples = trained.eval_samples()
    requests = [predict_inputs(samples.take(start, start + size))
                for start, size in zip(range(0, 1024, 40), [1, 7, 64, 33, 100, 5, 64, 2] * 4)]
    want = [run_predict(open_session(config, percentage=0.1), r) for r in requests]
    session = open_session(config, percentage=0.1)
    got = predict_from_threads(session, requests)
    for i, w in enumerate(want):
        np.testing.assert_array_equal(got[i], w)
    stats = session.embedding_cache.stats()[0]
    chunks = sum(-(-(r.row_ptrs.size - 1) // (26 * 64)) for r in requests)   # 100 samples: two chunks of <= 64
    assert stats.calls == chunks and stats.lookups > 0
    trained.close()
