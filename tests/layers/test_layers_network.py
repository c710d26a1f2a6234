"""Network: graph rules, flat buffers in dense-model-file order, regularizers, mixed precision,
train/eval copies, summary, and end-to-end gradients."""

import numpy as np
import pytest

import models
from hugectr_lab.layers import BuildContext, LayerError, Network
from models import layer


def feed_for(shapes, seed=0):
    rng = np.random.default_rng(seed)
    feed = {k: rng.normal(size=v) for k, v in shapes.items()}
    feed["label"] = rng.integers(0, 2, size=shapes["label"]).astype(np.float32)
    return feed


def small_net(dtype="float32", regularizer=None, lambda_=0.0, scaler=1.0, batch=4):
    specs = [
        layer("InnerProduct", "fc1", "dense", "fc1", num_output=3),
        layer("BatchNorm", "bn1", "fc1", "bn1", factor=1.0, eps=1e-5),
        layer("MultiCross", "mc1", "bn1", "mc1", num_layers=2),
        layer("Reshape", "reshape1", "sparse_embedding1", "reshape1", leading_dim=2),
        layer("WeightMultiply", "wm1", "reshape1", "wm1", weight_dims=(2, 3)),
        layer("Reshape", "reshape2", "wm1", "reshape2", leading_dim=12),
        layer("Concat", "concat1", ["mc1", "reshape2"], "concat1"),
        layer("InnerProduct", "fc2", "concat1", "fc2", num_output=1),
        layer("BinaryCrossEntropyLoss", "loss", ["fc2", "label"], "loss", regularizer=regularizer, lambda_=lambda_),
    ]
    shapes = {"dense": (batch, 13), "sparse_embedding1": (batch, 2, 2), "label": (batch, 1)}
    ctx = BuildContext(compute_dtype=dtype, scaler=scaler, rng=np.random.default_rng(0))
    net = Network(specs, shapes, ctx, first_index=2)
    net.init_weights(np.random.default_rng(1))
    return net, shapes


def test_dense_file_order_known_offsets():
    net, _ = small_net()
    expected = [("fc1", "W", 0, (13, 3)), ("fc1", "b", 39, (1, 3)),
                ("bn1", "gamma", 42, (1, 3)), ("bn1", "beta", 45, (1, 3)),
                ("mc1", "w0", 48, (1, 3)), ("mc1", "b0", 51, (1, 3)), ("mc1", "w1", 54, (1, 3)), ("mc1", "b1", 57, (1, 3)),
                ("wm1", "W", 60, (2, 3)),
                ("fc2", "W", 66, (15, 1)), ("fc2", "b", 81, (1, 1))]
    got = [(net.layers[s.layer].name, s.name, s.offset, s.shape) for s in net.layout]
    assert got == expected
    assert net.num_params == 82 == net.weights.size
    # layers see views of the flat buffer: writing the buffer changes what they compute with
    net.weights[60:66] = np.arange(6)
    np.testing.assert_array_equal(net.layers[4].weights[0], np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(net.layers[1].weights[0], 1.0)  # BN γ default


def test_load_weights_reads_exactly_n_values():
    net, shapes = small_net()
    other, _ = small_net()
    flat = np.random.default_rng(5).normal(size=net.num_params + 7).astype(np.float32)
    other.load_weights(flat)  # a longer dense file is accepted, as in HugeCTR
    np.testing.assert_array_equal(other.weights, flat[:net.num_params])
    with pytest.raises(ValueError, match="got 81 values, the network has 82"):
        other.load_weights(flat[:81])


def test_summary_lists_layers_shapes_and_params(capsys):
    net, _ = small_net()
    text = net.summary(print_fn=print)
    assert capsys.readouterr().out.strip() == text
    lines = text.splitlines()
    assert lines[0].split() == ["#", "type", "name", "bottoms", "tops", "(shape)", "params"]
    assert "sparse_embedding1 [4, 2, 2]" in lines[2]
    row = next(line for line in lines if " fc1 " in line)
    assert row.split()[:4] == ["2", "InnerProduct", "fc1", "dense"] and "fc1 [4, 3]" in row and row.endswith("42")
    assert any("BinaryCrossEntropyLoss" in line and "(loss)" in line for line in lines)
    assert lines[-1] == "dense parameters: 82 (float32 compute)"


@pytest.mark.parametrize("kind", ["L1", "L2"])
def test_regularizer_term_and_initial_gradient(kind):
    lam, batch = 0.3, 4
    plain, shapes = small_net(batch=batch)
    reg, _ = small_net(regularizer=kind, lambda_=lam, batch=batch)
    reg.weights[0] = 0.0  # L1 at w = 0 gives -λ/n
    plain.load_weights(reg.weights)
    feed = feed_for(shapes)
    w = np.asarray(reg.weights, dtype=np.float64)
    rterm = lam / batch * abs(w).sum() if kind == "L1" else lam / (2 * batch) * (w * w).sum()
    assert float(reg.forward(feed)) == pytest.approx(float(plain.forward(feed)) + rterm, rel=1e-5)
    reg.backward()
    plain.backward()
    reg_grad = lam / batch * (np.where(w > 0, 1.0, -1.0) if kind == "L1" else w)
    extra = np.asarray(reg.grads, np.float64) - np.asarray(plain.grads, np.float64)
    overwritten = np.zeros(reg.num_params, bool)  # BN γ/β and MultiCross biases drop the regularizer
    for s in reg.layout:
        if s.name in reg.layers[s.layer].grad_overwrites:
            overwritten[s.offset:s.offset + int(np.prod(s.shape))] = True
    assert overwritten.sum() == 12
    np.testing.assert_allclose(extra[~overwritten], reg_grad[~overwritten], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(extra[overwritten], 0, atol=1e-6)
    if kind == "L1":
        assert reg_grad[0] == -lam / batch


def test_end_to_end_gradients_by_finite_differences():
    specs = models.dcn(slots=3, vec=2, hidden=5, cross_layers=2, dropout_rate=0.0)
    shapes = models.inputs(4, 3, 2)
    net = Network(specs, shapes, BuildContext(compute_dtype="float64"))
    net.init_weights(np.random.default_rng(2))
    feed = feed_for(shapes, seed=3)
    net.forward(feed)
    net.backward()
    d_emb = np.array(net.input_grad("sparse_embedding1"))
    grads = np.array(net.grads)
    eps = 1e-6

    def numeric(array, idx):
        old = array[idx]
        array[idx] = old + eps
        plus = float(net.forward(feed))
        array[idx] = old - eps
        minus = float(net.forward(feed))
        array[idx] = old
        return (plus - minus) / (2 * eps)

    emb = feed["sparse_embedding1"]
    for idx in [(0, 0, 0), (1, 2, 1), (3, 1, 0)]:
        assert d_emb[idx] == pytest.approx(numeric(emb, idx), rel=1e-5, abs=1e-9)
    for i in np.random.default_rng(4).choice(net.num_params, 25, replace=False):
        assert grads[i] == pytest.approx(numeric(net.weights, i), rel=1e-5, abs=1e-9)
    assert net.input_grad("dense").any()


def test_mixed_precision_buffers_scaler_and_refresh():
    net16, shapes = small_net(dtype="float16", scaler=256.0)
    net32, _ = small_net()
    assert net16.weights.dtype == np.float32 and net16.grads.dtype == np.float16
    fc1, bn = net16.layers[0], net16.layers[1]
    assert fc1.weights[0].dtype == np.float16 and bn.weights[0].dtype == np.float32
    feed = feed_for(shapes)
    assert float(net16.forward(feed)) == pytest.approx(float(net32.forward(feed)), rel=1e-2)
    assert net16.tensor("label").dtype == np.float32 and net16.tensor("dense").dtype == np.float16
    net16.backward()
    net32.backward()
    scale = np.abs(net32.grads).max()
    np.testing.assert_allclose(np.asarray(net16.grads, np.float32) / 256, net32.grads, atol=2e-2 * scale)
    net16.weights[:39] = 0.5  # the optimizer writes the master; the fp16 copy follows at the next forward
    net16.forward(feed)
    assert (fc1.weights[0] == np.float16(0.5)).all()


def test_fp16_bias_gradients_are_overwritten_not_accumulated():
    net, shapes = small_net(dtype="float16")
    assert net.layers[0].grad_overwrites == ("b",)
    assert small_net()[0].layers[0].grad_overwrites == ()


def test_eval_copy_gets_weights_and_running_stats():
    train, shapes = small_net()
    evaluation, _ = small_net()
    feed = feed_for(shapes)
    train.forward(feed, training=True)
    assert train.has_state and train.state["layers"][0]["type"] == "BatchNorm"
    assert evaluation.state != train.state
    evaluation.copy_weights_from(train)
    assert evaluation.state == train.state
    np.testing.assert_array_equal(evaluation.weights, train.weights)
    assert evaluation.weights is not train.weights  # the copies share nothing but the layout
    preds = evaluation.predict({k: v for k, v in feed.items() if k != "label"})
    assert preds.shape == (4, 1) and ((preds > 0) & (preds < 1)).all()
    evaluation.forward(feed, training=False)
    np.testing.assert_array_equal(evaluation.predictions, preds)


def test_ntp_state_round_trip():
    train, shapes = small_net()
    train.forward(feed_for(shapes))
    other, _ = small_net()
    other.load_state(train.state)
    assert other.state == train.state
    with pytest.raises(ValueError, match="got 0 entries"):
        other.load_state({"layers": []})


def test_inference_graph_without_loss_returns_last_output():
    specs = [layer("InnerProduct", "fc1", "dense", "fc1", num_output=1), layer("Sigmoid", "sigmoid", "fc1", "sigmoid")]
    net = Network(specs, {"dense": (3, 13)})
    net.init_weights(np.random.default_rng(0))
    out = net.predict({"dense": np.ones((3, 13))})
    assert out.shape == (3, 1) and ((out > 0) & (out < 1)).all()
    with pytest.raises(ValueError, match="no loss layer"):
        net.forward({"dense": np.ones((3, 13))})


def test_input_grad_of_an_unconsumed_input_is_zero():
    net, shapes = small_net()
    net2 = Network([layer("InnerProduct", "fc", "dense", "fc", num_output=1),
                    layer("BinaryCrossEntropyLoss", "loss", ["fc", "label"], "loss")],
                   {**shapes, "unused": (4, 2)})
    net2.forward({**feed_for(shapes), "unused": np.zeros((4, 2))})
    net2.backward()
    assert not net2.input_grad("unused").any()
    with pytest.raises(KeyError, match="not a network input"):
        net2.input_grad("fc")


@pytest.mark.parametrize("specs,message", [
    ([layer("ReLU", "r", "nope", "r")], 'layers[2] (ReLU "r"): bottom "nope" is neither a network input'),
    ([layer("ReLU", "r1", "dense", "r1"), layer("ReLU", "r2", "dense", "r2")],
     'layers[3] (ReLU "r2"): tensor "dense" is already consumed by layers[2] (ReLU "r1")'),
    ([layer("ReLU", "r1", "dense", "r1"), layer("ReLU", "r2", "r1", "r1")], 'layers[3] (ReLU "r2"): top "r1" is already defined'),
    ([layer("Softplus", "s", "dense", "s")], "layers[2] (Softplus \"s\"): unknown dense layer type 'Softplus'"),
    ([layer("Slice", "s", "dense", ["a"], ranges=[(0, 2), (1, 3)])], 'layers[2] (Slice "s"): has 2 outputs but 1 tops'),
    ([layer("InnerProduct", "fc", "dense", "fc", num_outputs=2)], 'layers[2] (InnerProduct "fc"): '),
])
def test_graph_errors_name_the_layer(specs, message):
    with pytest.raises(LayerError) as info:
        Network(specs, {"dense": (4, 13), "label": (4, 1)}, first_index=2)
    assert str(info.value).startswith(message)


def test_feed_errors_name_the_tensor():
    net, shapes = small_net()
    feed = feed_for(shapes)
    with pytest.raises(ValueError, match=r'network input "dense" has shape \(4, 12\), expected \(4, 13\)'):
        net.forward({**feed, "dense": np.zeros((4, 12))})
    with pytest.raises(KeyError, match='network input "label" is missing'):
        net.forward({k: v for k, v in feed.items() if k != "label"})
    with pytest.raises(RuntimeError, match="needs a training forward"):
        net.forward(feed, training=False)
        net.backward()


def test_evaluation_copy_refuses_backward():
    specs = [layer("InnerProduct", "fc", "dense", "fc", num_output=1),
             layer("BinaryCrossEntropyLoss", "loss", ["fc", "label"], "loss")]
    shapes = {"dense": (4, 13), "label": (4, 1)}
    net = Network(specs, shapes, BuildContext(training=False))
    net.forward(feed_for(shapes), training=True)
    with pytest.raises(RuntimeError, match="evaluation copy"):
        net.backward()
