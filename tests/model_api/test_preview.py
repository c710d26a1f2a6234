"""HugeCTR v3.0's preview Model API: one model description, two front ends (Python and JSON)."""

import json

import numpy as np
import pytest

import hugectr
from model_api_helpers import BATCH, DEEP_SLOTS, DENSE, host

from hugectr_lab.config import ConfigError, parse_config
from hugectr_lab.session import Session


def solver(**kw):
    args = dict(batchsize=BATCH, batchsize_eval=BATCH, max_iter=12, display=4, eval_interval=6, max_eval_batches=2,
                snapshot=1000, seed=19)
    return hugectr.solver_parser_helper(**{**args, **kw})


def build_dcn(solver_parser, optimizer_type=hugectr.Optimizer_t.Adam, lr=0.001):
    """The DCN sample (scaled down) written with the v3.0 preview API."""
    opt = hugectr.optimizer.CreateOptimizer(optimizer_type=optimizer_type, learning_rate=lr,
                                            use_mixed_precision=False)
    model = hugectr.Model(solver_parser, opt)
    model.add(hugectr.Input(data_reader_type=hugectr.DataReaderType_t.Norm, source="./data/train.txt",
                            eval_source="./data/test.txt", check_type=hugectr.Check_t.Sum, label_dim=1,
                            label_name="label", dense_dim=DENSE, dense_name="dense", num_workers=1,
                            data_reader_sparse_param_array=[
                                hugectr.DataReaderSparseParam(hugectr.DataReaderSparse_t.Distributed, 2, 1, 2),
                                hugectr.DataReaderSparseParam(hugectr.DataReaderSparse_t.Distributed, 16, 2, 8)],
                            sparse_names=["wide_data", "deep_data"]))
    model.add(hugectr.SparseEmbedding(hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash, 2000, 1, 0,
                                      "wide_embedding", "wide_data"))
    model.add(hugectr.SparseEmbedding(hugectr.Embedding_t.DistributedSlotSparseEmbeddingHash, 2000, 8, 1,
                                      "sparse_embedding1", "deep_data"))
    width = DEEP_SLOTS * 8 + DENSE
    layers = [
        (hugectr.Layer_t.Reshape, ["sparse_embedding1"], ["reshape1"], dict(leading_dim=DEEP_SLOTS * 8)),
        (hugectr.Layer_t.Concat, ["reshape1", "dense"], ["concat1"], {}),
        (hugectr.Layer_t.Slice, ["concat1"], ["slice11", "slice12"], dict(ranges=[(0, width), (0, width)])),
        (hugectr.Layer_t.MultiCross, ["slice11"], ["multicross1"], dict(num_layers=2)),
        (hugectr.Layer_t.InnerProduct, ["slice12"], ["fc1"],
         dict(num_output=32, weight_init_type=hugectr.Initializer_t.XavierUniform)),
        (hugectr.Layer_t.ReLU, ["fc1"], ["relu1"], {}),
        (hugectr.Layer_t.Dropout, ["relu1"], ["dropout1"], dict(dropout_rate=0.3)),
        (hugectr.Layer_t.Concat, ["dropout1", "multicross1"], ["concat2"], {}),
        (hugectr.Layer_t.InnerProduct, ["concat2"], ["fc2"], dict(num_output=1)),
        (hugectr.Layer_t.Reshape, ["wide_embedding"], ["reshape2"], dict(leading_dim=2)),
        (hugectr.Layer_t.ReduceSum, ["reshape2"], ["wide"], dict(axis=1)),
        (hugectr.Layer_t.Add, ["fc2", "wide"], ["add"], {}),
        (hugectr.Layer_t.BinaryCrossEntropyLoss, ["add", "label"], ["loss"],
         {"use_regularizer": True, "regularizer_type": hugectr.Regularizer_t.L2, "lambda": 1e-4}),
    ]
    for layer_type, bottoms, tops, kw in layers:
        model.add(hugectr.DenseLayer(layer_type, bottoms, tops, **kw))
    return model


def train_steps(session, steps):
    session.start_data_reading()
    losses = []
    for _ in range(steps):
        assert session.train()
        losses.append(session.get_current_loss())
    return losses


def tables(session):
    out = []
    for emb in session.embeddings:
        keys, vectors, _ = emb.dump()
        order = np.argsort(keys)
        out.append((keys[order], vectors[order]))
    return out


def test_python_model_trains_bit_identically_to_its_json(workdir):
    model = build_dcn(solver())
    model.compile()
    model.graph_to_json("dcn.json")
    # the written graph parses back to the model's config
    assert parse_config("dcn.json", require=("layers", "optimizer")) == model.config
    json_session = Session(solver(), "dcn.json")
    py_losses = train_steps(model.session, 8)
    json_losses = train_steps(json_session, 8)
    assert py_losses == json_losses            # exact, step by step
    assert np.array_equal(host(model.session.train_networks[0].weights), host(json_session.train_networks[0].weights))
    for (k1, v1), (k2, v2) in zip(tables(model.session), tables(json_session)):
        assert np.array_equal(k1, k2) and np.array_equal(v1, v2)
    json_session.close()
    model.close()


def test_preview_defaults_are_the_bindings(workdir):
    opt = hugectr.optimizer.CreateOptimizer(use_mixed_precision=False)
    assert (opt.spec.type, opt.spec.update_type, opt.spec.atomic_update) == ("Adam", "Global", True)
    assert opt.spec.epsilon == 1e-7 and opt.learning_rate == 0.001
    with pytest.raises(TypeError, match="use_mixed_precision"):
        hugectr.optimizer.CreateOptimizer()
    raw = hugectr.Input(data_reader_type=hugectr.DataReaderType_t.Raw, source="train.bin", eval_source="test.bin",
                        check_type=hugectr.Check_t.Non, label_dim=1, label_name="label", dense_dim=13,
                        dense_name="dense", num_samples=100, eval_num_samples=10, slot_size_array=[5, 5],
                        data_reader_sparse_param_array=[
                            hugectr.DataReaderSparseParam(hugectr.DataReaderSparse_t.Localized, 2, 1, 2)],
                        sparse_names=["data1"]).to_json()
    assert raw["float_label_dense"] is True and raw["check"] == "None" and raw["num_samples"] == 100
    # Reshape without `selected` uses leading_dim, default 1, as in HugeCTR
    assert hugectr.DenseLayer(hugectr.Layer_t.Reshape, ["a"], ["b"]).to_json()["leading_dim"] == 1
    with pytest.raises(ValueError, match="use_mixed_precision"):
        hugectr.Model(solver(), hugectr.optimizer.CreateOptimizer(use_mixed_precision=True))


def test_errors_name_the_python_object(workdir):
    model = build_dcn(solver())
    model.add(hugectr.DenseLayer(hugectr.Layer_t.InnerProduct, ["nowhere"], ["fc9"], num_output=4))
    with pytest.raises(ConfigError, match=r"nowhere.*DenseLayer\(InnerProduct, bottom_names=\['nowhere'\]"):
        model.compile()
    with pytest.raises(ValueError, match="not a layer type of this project"):
        hugectr.DenseLayer("GRU", ["a"], ["b"])
    with pytest.raises(RuntimeError, match="compile"):
        hugectr.Model(solver(), hugectr.optimizer.CreateOptimizer(use_mixed_precision=False)).summary()


def test_construct_from_json_rebuilds_the_model(workdir):
    model = build_dcn(solver())
    model.graph_to_json("dcn.json")
    again = hugectr.Model(solver(), hugectr.optimizer.CreateOptimizer(use_mixed_precision=False))
    again.construct_from_json("dcn.json", include_dense_network=True)
    assert again.config_json() == json.load(open("dcn.json"))
    partial = hugectr.Model(solver(), hugectr.optimizer.CreateOptimizer(use_mixed_precision=False))
    partial.construct_from_json("dcn.json", include_dense_network=False)
    assert len(partial.config_json()["layers"]) == 3   # Data + two embeddings


def test_fit_runs_the_solver_settings_with_snapshots(workdir):
    model = build_dcn(solver(snapshot=6))
    model.compile()
    result = model.fit(progress=False, print_fn=lambda *_: None)
    assert result.iterations == 12
    assert [i for i, _ in result.losses] == [4, 8, 12] and [i for i, _ in result.evaluations] == [6, 12]
    assert result.snapshots == [6, 12]
    for it in (6, 12):   # HugeCTR's prefix "./": plain concatenation
        assert (workdir / f"_dense_{it}.model").is_file() and (workdir / f"1_sparse_{it}.model").exists()


def test_fit_stops_on_a_non_finite_loss(workdir):
    from hugectr_lab.numerics import NonFiniteError

    model = build_dcn(solver(display=1))
    model.compile()
    net = model.session.train_networks[0]
    net.weights[...] = np.nan        # every dense weight poisoned: the first loss is NaN
    with pytest.raises(NonFiniteError, match="iteration 1"):
        model.fit(progress=False, print_fn=lambda *_: None)
