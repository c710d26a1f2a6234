"""Networks built from real parsed configs (hugectr_lab.config.parse_config): the sample configs under
tests/config/configs, plus an inline DCN, each run through one training step and one eval step."""

from pathlib import Path

import numpy as np
import pytest

from hugectr_lab.layers import BuildContext, Network

config = pytest.importorskip("hugectr_lab.config")

SAMPLES = sorted((Path(__file__).parents[1] / "config" / "configs").glob("*.json"))

DCN = {"layers": [
    {"name": "data", "type": "Data", "source": "./file_list.txt", "eval_source": "./file_list_test.txt",
     "check": "Sum", "label": {"top": "label", "label_dim": 1}, "dense": {"top": "dense", "dense_dim": 13},
     "sparse": [{"top": "data1", "type": "DistributedSlot", "max_feature_num_per_sample": 30, "slot_num": 26}]},
    {"name": "sparse_embedding1", "type": "DistributedSlotSparseEmbeddingHash", "bottom": "data1",
     "top": "sparse_embedding1",
     "sparse_embedding_hparam": {"max_vocabulary_size_per_gpu": 1000, "embedding_vec_size": 16, "combiner": 0}},
    {"name": "reshape1", "type": "Reshape", "bottom": "sparse_embedding1", "top": "reshape1", "leading_dim": 416},
    {"name": "concat1", "type": "Concat", "bottom": ["reshape1", "dense"], "top": "concat1"},
    {"name": "slice1", "type": "Slice", "bottom": "concat1", "ranges": [[0, 429], [0, 429]], "top": ["slice11", "slice12"]},
    {"name": "multicross1", "type": "MultiCross", "bottom": "slice11", "top": "multicross1", "mc_param": {"num_layers": 6}},
    {"name": "fc1", "type": "InnerProduct", "bottom": "slice12", "top": "fc1", "fc_param": {"num_output": 64}},
    {"name": "relu1", "type": "ReLU", "bottom": "fc1", "top": "relu1"},
    {"name": "dropout1", "type": "Dropout", "rate": 0.5, "bottom": "relu1", "top": "dropout1"},
    {"name": "concat2", "type": "Concat", "bottom": ["dropout1", "multicross1"], "top": "concat2"},
    {"name": "fc4", "type": "InnerProduct", "bottom": "concat2", "top": "fc4", "fc_param": {"num_output": 1}},
    {"name": "loss", "type": "BinaryCrossEntropyLoss", "bottom": ["fc4", "label"], "top": "loss",
     "regularizer": "L2", "lambda": 0.001},
]}


def input_shapes(cfg, batch):
    shapes = {cfg.data.dense.top: (batch, cfg.data.dense.dense_dim)}
    if cfg.data.label is not None and cfg.data.label.top:
        shapes[cfg.data.label.top] = (batch, cfg.data.label.label_dim)
    for emb in cfg.embeddings:
        shapes[emb.top] = (batch, cfg.sparse_input(emb.bottom).slot_num, emb.embedding_vec_size)
    return shapes


def build_and_step(cfg, batch=32):
    dtype = "float16" if cfg.mixed_precision else "float32"
    scaler = cfg.solver.scaler if cfg.solver is not None and cfg.mixed_precision else 1.0
    shapes = input_shapes(cfg, batch)
    nets = [Network(cfg.layers, shapes, BuildContext(compute_dtype=dtype, scaler=scaler, training=training),
                    first_index=1 + len(cfg.embeddings)) for training in (True, False)]
    train, evaluation = nets
    train.init_weights(np.random.default_rng(0))
    rng = np.random.default_rng(1)
    feed = {k: rng.normal(size=s) for k, s in shapes.items()}
    if train.loss is None:
        return train, train.predict(feed)
    label = train.nodes[-1].bottoms[1]
    feed[label] = rng.integers(0, 2, size=shapes[label]).astype(np.float32)
    assert np.isfinite(float(train.forward(feed)))
    train.backward()
    assert np.isfinite(np.asarray(train.grads, np.float32)).all()
    for emb in cfg.embeddings:
        assert train.input_grad(emb.top).shape == shapes[emb.top]
    evaluation.copy_weights_from(train)
    return train, evaluation.predict(feed)


def test_inline_dcn_config():
    cfg = config.parse_config(DCN)
    net, preds = build_and_step(cfg)
    assert preds.shape == (32, 1)
    assert net.layers[0].label == 'layers[2] (Reshape "reshape1")'
    assert net.num_params == 6 * 2 * 429 + 429 * 64 + 64 + (64 + 429) + 1
    assert net.loss._regularizer.kind == "L2"


@pytest.mark.skipif(not SAMPLES, reason="no sample configs under tests/config/configs yet")
@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_config_builds_and_trains_one_step(path):
    cfg = config.parse_config(path)
    if cfg.data is None:
        pytest.skip("not a model config")
    net, preds = build_and_step(cfg)
    assert preds.shape[0] == 32 and np.isfinite(np.asarray(preds, np.float32)).all()


def test_layer_registry_matches_config_layer_kinds():
    import dataclasses
    import inspect

    from hugectr_lab.layers import LAYERS

    assert set(LAYERS) == set(config.LAYER_KINDS)
    for type_name, kind in config.LAYER_KINDS.items():
        fields = {f.name for f in dataclasses.fields(kind.params)}
        kwargs = set(inspect.signature(LAYERS[type_name]).parameters)
        assert fields == kwargs, type_name
