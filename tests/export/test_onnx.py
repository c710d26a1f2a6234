"""ONNX export: onnxruntime serves the exported DCN, WDL, DeepFM and DLRM with InferenceSession's predictions."""

import json

import numpy as np
import pytest

from model_api_helpers import inference_script, sample_script
from sample_scripts import run_sample

from hugectr_lab.data import read_norm_file
from hugectr_lab.inference import predict_inputs

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def eval_inputs(model, n=200):
    data = model.config.data
    samples = read_norm_file(_first_file("data/test.txt"), "I32",
                             slot_nums=[s.slot_num for s in data.sparse],
                             max_feature_nums=[s.max_feature_num_per_sample for s in data.sparse])
    return predict_inputs(samples.take(0, n))


def _first_file(file_list):
    with open(file_list) as f:
        return f.read().split()[1]


def run_onnx(path, inputs, dense_dim):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"dense": inputs.dense_feature.reshape(-1, dense_dim).astype(np.float32),
                           "keys": inputs.embeddingcolumns.astype(np.int64),
                           "row_ptrs": inputs.row_ptrs.astype(np.int64)})[0]


@pytest.mark.parametrize("name", ["dcn", "wdl", "deepfm", "dlrm"])
def test_onnx_runtime_matches_inference_session(workdir, name):
    model = run_sample(sample_script(name), workdir, f"{name}.py")["model"]
    model.to_onnx(f"{name}.onnx")
    served = run_sample(inference_script(name), workdir, f"{name}_inference.py")
    inputs = eval_inputs(model)
    expected = np.asarray(served["inference_session"].predict(inputs.dense_feature, inputs.embeddingcolumns,
                                                              inputs.row_ptrs), np.float32).reshape(-1, 1)
    got = run_onnx(f"{name}.onnx", inputs, model.config.data.dense.dense_dim)
    assert got.shape == expected.shape == (200, 1)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_unknown_keys_empty_rows_and_mean_combiner(workdir):
    """The binary search finds every trained key, unknown keys get the default vector, empty rows combine
    to zero and the mean divides by the row's key count -- on a v3.0 InferenceSession's own tables."""
    from hugectr_lab.export import export_onnx
    from hugectr_lab.inference import CreateEmbeddingCache, CreateParameterServer, InferenceSession, inference_config

    script = sample_script("wdl").replace("combiner = 'sum', sparse_embedding_name = 'sparse_embedding1'",
                                          "combiner = 'mean', sparse_embedding_name = 'sparse_embedding1'")
    assert "'mean'" in script
    model = run_sample(script, workdir, "wdl.py")["model"]
    cfg = inference_config("wdl.json", "wdl_dense_10.model", ["wdl0_sparse_10.model", "wdl1_sparse_10.model"],
                           default_emb_vec_value=0.25)
    with open("infer.json", "w") as f:
        json.dump(cfg, f)
    ps = CreateParameterServer(["infer.json"], ["wdl"], False)
    session = InferenceSession("infer.json", 0, CreateEmbeddingCache(ps, 0, False, 1.0, "infer.json", "wdl", False))
    inputs = eval_inputs(model, n=64)
    keys, ptrs = inputs.embeddingcolumns.astype(np.int64).copy(), inputs.row_ptrs.copy()
    keys[::3] = 4_000_000_000 - np.arange(keys[::3].size)     # never seen in training
    slots = model.config.data.total_slot_num
    row = 5 * slots + 4                                          # sample 5, slot 4: drop its keys
    a, b = ptrs[row], ptrs[row + 1]
    keys = np.delete(keys, np.arange(a, b))
    ptrs[row + 1:] -= b - a
    expected = session.predict_array(inputs.dense_feature, keys.astype(np.uint32), ptrs)
    export_onnx(session, "wdl.onnx")
    got = run_onnx("wdl.onnx", inputs._replace(embeddingcolumns=keys, row_ptrs=ptrs), 13)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    # the training session exports the same network (its tables hold the same keys and vectors)
    export_onnx(model.session, "from_session.onnx")
    trained = run_onnx("from_session.onnx", inputs, 13)
    np.testing.assert_allclose(trained, session.predict_array(*inputs[:3]), atol=1e-5, rtol=0)

