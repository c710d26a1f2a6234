"""Layer-specific behaviour: train vs eval, HugeCTR quirks, build errors, initializers, losses."""

import math

import numpy as np
import pytest

from hugectr_lab.layers import LAYERS, BuildContext, LayerError
from hugectr_lab.layers import initializers as init


def make(type_name, shapes, dtype="float64", label=None, weights=None, **params):
    layer = LAYERS[type_name](**params)
    layer.label = label
    ctx = BuildContext(compute_dtype=dtype, rng=np.random.default_rng(0))
    layer.build(shapes, ctx)
    ws = weights if weights is not None else [w.astype(ctx.compute_dtype) for w in layer.init_weights(np.random.default_rng(1))]
    layer.bind(ws, [np.zeros(s, ctx.compute_dtype) for s in layer.weight_shapes()])
    return layer


# -- Dropout ---------------------------------------------------------------------------------


def test_dropout_train_scales_kept_and_backward_reuses_mask():
    layer = make("Dropout", [(200, 50)], rate=0.3)
    x = np.ones((200, 50))
    (y,) = layer.forward([x], training=True)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.7)
    (d_x,) = layer.backward([np.full_like(x, 2.0)])
    np.testing.assert_allclose(d_x, np.where(kept, 2 / 0.7, 0))


def test_dropout_eval_is_identity():
    layer = make("Dropout", [(4, 5)], rate=0.5)
    x = np.arange(20.0).reshape(4, 5)
    assert layer.forward([x], training=False)[0] is x


def test_dropout_masks_come_from_the_context_generator():
    a, b = make("Dropout", [(8, 8)], rate=0.5), make("Dropout", [(8, 8)], rate=0.5)
    x = np.ones((8, 8))
    first = a.forward([x], True)[0]
    np.testing.assert_array_equal(first, b.forward([x], True)[0])  # same seed, same mask
    assert not np.array_equal(first, a.forward([x], True)[0])  # the generator advances


# -- BatchNorm -------------------------------------------------------------------------------


def test_batchnorm_train_uses_batch_stats_and_updates_running_unbiased():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, size=(10, 4))
    layer = make("BatchNorm", [(10, 4)], factor=0.25, eps=1e-5)
    assert layer.state_dict()["mean"] == [0.0] * 4 and layer.state_dict()["var"] == [1.0] * 4
    (y,) = layer.forward([x], training=True)
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5))  # γ = 1, β = 0
    state = layer.state_dict()
    np.testing.assert_allclose(state["mean"], 0.25 * x.mean(0))
    np.testing.assert_allclose(state["var"], 0.75 + 0.25 * x.var(0, ddof=1))


def test_batchnorm_eval_uses_running_stats_and_state_round_trips():
    layer = make("BatchNorm", [(6, 3)], factor=1.0, eps=1e-3)
    x = np.random.default_rng(4).normal(size=(6, 3))
    layer.forward([x], training=True)  # factor 1: running = this batch
    (y,) = layer.forward([x], training=False)
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0, ddof=1) + 1e-3))
    other = make("BatchNorm", [(6, 3)], factor=1.0, eps=1e-3)
    other.load_state_dict(layer.state_dict())
    np.testing.assert_allclose(other.forward([x], training=False)[0], y)
    with pytest.raises(LayerError, match="running mean has 2 values, expected 3"):
        other.load_state_dict({"mean": [0, 0], "var": [1, 1, 1]})


def test_batchnorm_keeps_fp32_weights_and_stats_in_mixed_precision():
    layer = make("BatchNorm", [(4, 3)], dtype="float16", weights=[np.ones((1, 3), np.float32),
                                                                 np.zeros((1, 3), np.float32)], factor=1.0, eps=1e-5)
    assert layer.uses_master_weights and layer.running_mean.dtype == np.float32
    (y,) = layer.forward([np.arange(12, dtype=np.float16).reshape(4, 3)], training=True)
    assert y.dtype == np.float16


def test_batchnorm_initializers_fall_back_to_default_except_zero():
    layer = make("BatchNorm", [(2, 3)], factor=1.0, eps=1e-5, gamma_init="XavierNorm", beta_init="Uniform")
    gamma, beta = layer.init_weights(np.random.default_rng(0))
    assert (gamma == 1).all() and (beta == 0).all()
    layer = make("BatchNorm", [(2, 3)], factor=1.0, eps=1e-5, gamma_init="Zero")
    assert (layer.init_weights(np.random.default_rng(0))[0] == 0).all()


# -- quirks kept on purpose ------------------------------------------------------------------


def test_dot_product_zero_product_zeroes_every_gradient():
    layer = make("DotProduct", [(1, 3)] * 2)
    a, b = np.array([[0.0, 2.0, 3.0]]), np.array([[5.0, 0.5, 4.0]])
    (y,) = layer.forward([a, b], True)
    d_a, d_b = layer.backward([np.ones((1, 3))])
    np.testing.assert_allclose(y, [[0, 1, 12]])
    np.testing.assert_allclose(d_a, [[0, 0.5, 4]])  # true gradient at column 0 would be 5
    np.testing.assert_allclose(d_b, [[0, 2, 3]])


def test_elementwise_multiply_uses_the_product_rule():
    layer = make("ElementwiseMultiply", [(1, 2)] * 2)
    layer.forward([np.array([[0.0, 2.0]]), np.array([[5.0, 3.0]])], True)
    d_a, d_b = layer.backward([np.ones((1, 2))])
    np.testing.assert_allclose(d_a, [[5, 3]])
    np.testing.assert_allclose(d_b, [[0, 2]])


def test_reshape_selected_scatters_gradient_and_zeroes_unselected_slots():
    layer = make("Reshape", [(2, 4, 3)], selected=(3, 1))
    x = np.arange(24.0).reshape(2, 4, 3)
    (y,) = layer.forward([x], True)
    np.testing.assert_array_equal(y, np.concatenate([x[:, 3], x[:, 1]], axis=1))
    (d_x,) = layer.backward([np.ones((2, 6))])
    np.testing.assert_array_equal(d_x[:, [0, 2]], 0)
    np.testing.assert_array_equal(d_x[:, [1, 3]], 1)


def test_cast_converts_to_compute_dtype_and_passes_no_gradient():
    layer = make("Cast", [(2, 3)], dtype="float16")
    (y,) = layer.forward([np.ones((2, 3), np.float32)], True)
    assert y.dtype == np.float16
    assert not layer.backward([np.ones((2, 3), np.float16)])[0].any()
    layer = make("Cast", [(2, 3)], dtype="float32")
    assert layer.forward([np.ones((2, 3), np.float16)], True)[0].dtype == np.float32


def test_interaction_layout_and_padding_column():
    layer = make("Interaction", [(2, 128), (2, 26, 128)], dtype="float32")
    assert layer.output_shapes == [(2, 480)]  # DLRM: 128 + 351 + 1
    mlp = np.ones((1, 2))
    emb = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    layer = make("Interaction", [(1, 2), (1, 2, 2)])
    (y,) = layer.forward([mlp, emb], True)
    # z0 = (1, 1), z1 = (1, 2), z2 = (3, 4): <z1,z0>, <z2,z0>, <z2,z1>, then the 0 pad
    np.testing.assert_array_equal(y, [[1, 1, 3, 7, 11, 0]])


def test_slice_overlapping_gradients_add():
    layer = make("Slice", [(1, 4)], ranges=[(0, 3), (1, 4)])
    d_x = layer.backward([np.ones((1, 3)), np.ones((1, 3))])[0]
    np.testing.assert_array_equal(d_x, [[1, 2, 2, 1]])


@pytest.mark.parametrize("ranges", [[(0, 9), (0, 9)], [(0, 9), (3, 9)], [(0, 9), (0, 9), (2, 9)], [(0, 4), (2, 9)],
                                    [(1, 5), (2, 9), (3, 9)]])
def test_slice_gradient_is_the_sum_in_range_order_and_a_fresh_array(ranges):
    # a first range covering the input starts from its gradient (DCN's Slice feeding both branches: one
    # pass): the same float16 sums as adding every range into zeros in order, and never a consumer's array
    layer = make("Slice", [(7, 9)], dtype="float16", ranges=ranges)
    rng = np.random.default_rng(len(ranges))
    d_ys = [rng.normal(size=(7, b - a)).astype(np.float16) for a, b in ranges]
    kept = [d.copy() for d in d_ys]
    want = np.zeros((7, 9), np.float16)
    for (a, b), d_y in zip(ranges, d_ys):
        want[:, a:b] += d_y
    (d_x,) = layer.backward(d_ys)
    assert d_x.dtype == np.float16 and not any(np.shares_memory(d_x, d) for d in d_ys)
    np.testing.assert_array_equal(d_x, want)
    for d, k in zip(d_ys, kept):
        np.testing.assert_array_equal(d, k)


# -- build errors name the layer -------------------------------------------------------------

LABEL = 'layers[7] (Reshape "reshape1")'


@pytest.mark.parametrize("type_name,shapes,params,message", [
    ("Reshape", [(8, 26, 16)], {"leading_dim": 410},
     f"{LABEL}: leading_dim 410 must be a multiple of the input's last dimension 16"),
    ("Reshape", [(3, 2, 4)], {"leading_dim": 16}, f"{LABEL}: leading_dim 16 must divide the input's element count 24"),
    ("Reshape", [(3, 2, 4)], {"selected": (0, 2)}, f"{LABEL}: selected slot ids [2] are out of range for 2 slots"),
    ("Reshape", [(3, 8)], {"selected": (0,)}, f"{LABEL}: input of a Reshape with selected must be 3-D"),
    ("Slice", [(2, 5)], {"ranges": [(0, 3), (0, 6)]}, f"{LABEL}: ranges[1] = [0, 6] must be [start, end)"),
    ("Slice", [(2, 5)], {"ranges": [(1, 4), (0, 3)]}, f"{LABEL}: ranges[1] = [0, 3]: starts and ends must be non-decreasing"),
    ("Concat", [(2, 3)], {}, f"{LABEL}: takes 2 to 5 input tensors, got 1"),
    ("Concat", [(2, 3), (3, 3)], {}, f"{LABEL}: inputs must have the same number of rows"),
    ("InnerProduct", [(2, 3, 4)], {"num_output": 2}, f"{LABEL}: input must be 2-D, got shape [2, 3, 4]"),
    ("InnerProduct", [(2, 3)], {"num_output": 2, "weight_init": "He"}, f"{LABEL}: weight_init must be one of"),
    ("FmOrder2", [(2, 10)], {"out_dim": 3}, f"{LABEL}: the input width 10 must be a multiple of out_dim 3"),
    ("WeightMultiply", [(2, 4)], {"weight_dims": (3, 2)}, f"{LABEL}: the input must have weight_dims[0] = 3 columns"),
    ("Interaction", [(2, 4), (2, 3, 5)], {}, f"{LABEL}: input 0 (m, w) and input 1 (m, F, w) must agree"),
    ("Add", [(2, 4), (2, 5)], {}, f"{LABEL}: inputs must have identical shapes"),
    ("ReduceSum", [(2, 4)], {"axis": 2}, f"{LABEL}: axis must be in [0, 1]"),
    ("Dropout", [(2, 4)], {"rate": 1.0}, f"{LABEL}: rate (the drop probability) must be in [0, 1)"),
    ("BinaryCrossEntropyLoss", [(4, 2), (4, 2)], {}, f"{LABEL}: logits and label must be (batch, 1)"),
    ("CrossEntropyLoss", [(4, 2), (4, 2)], {}, f"{LABEL}: CrossEntropyLoss reads one label value per sample"),
    ("MultiCrossEntropyLoss", [(4, 2), (4, 2)], {"target_weight": (1.0,)}, f"{LABEL}: target_weight has 1 entries"),
    ("BinaryCrossEntropyLoss", [(4, 1), (4, 1)], {"regularizer": "L3", "lambda_": 1}, f"{LABEL}: regularizer must be"),
])
def test_build_errors_name_the_layer(type_name, shapes, params, message):
    with pytest.raises(LayerError) as info:
        make(type_name, shapes, label=LABEL, **params)
    assert str(info.value).startswith(message)


def test_fused_inner_product_needs_mixed_precision_and_aligned_sizes():
    with pytest.raises(LayerError, match="needs mixed precision"):
        make("FusedInnerProduct", [(32, 8)], dtype="float32", num_output=64)
    with pytest.raises(LayerError, match="batch 16 and num_output 64"):
        make("FusedInnerProduct", [(16, 8)], dtype="float16", num_output=64)
    with pytest.raises(LayerError, match="batch 32 and num_output 10"):
        make("FusedInnerProduct", [(32, 8)], dtype="float16", num_output=10)


# -- initializers ----------------------------------------------------------------------------


def sample(type_name, shapes, **params):
    return make(type_name, shapes, dtype="float32", **params).init_weights(np.random.default_rng(9))


def test_inner_product_default_initializers():
    w, b = sample("InnerProduct", [(4, 600)], num_output=400)
    assert w.std() == pytest.approx(math.sqrt(2 / 1000) / 0.87962566103423978, rel=0.02)
    assert abs(w).max() > 3 * w.std()  # "truncated" normal is not truncated
    assert b.std() == pytest.approx(math.sqrt(1 / 400), rel=0.1)


@pytest.mark.parametrize("kind,w_limit,b_limit", [
    ("Uniform", 1 / 1000, 1 / 400),
    ("XavierUniform", math.sqrt(6 / 1000), math.sqrt(6 / 400)),
])
def test_inner_product_uniform_initializers(kind, w_limit, b_limit):
    w, b = sample("InnerProduct", [(4, 600)], num_output=400, weight_init=kind, bias_init=kind)
    assert abs(w).max() <= w_limit and abs(w).max() > 0.99 * w_limit
    assert abs(b).max() <= b_limit and abs(b).max() > 0.95 * b_limit


def test_xavier_norm_and_zero():
    w, b = sample("InnerProduct", [(4, 600)], num_output=400, weight_init="XavierNorm", bias_init="Zero")
    assert w.std() == pytest.approx(math.sqrt(2 / 1000) / 0.87962566103423978, rel=0.02)
    assert not b.any()


def test_multi_cross_initializers_tensor_i_uses_types_i_mod_2():
    ws = sample("MultiCross", [(2, 300)], num_layers=3)
    for w, b in zip(ws[0::2], ws[1::2]):
        limit = math.sqrt(3 / 300)
        assert abs(w).max() <= limit and abs(w).max() > 0.98 * limit
        assert not b.any()
    ws = sample("MultiCross", [(2, 300)], num_layers=2, weight_init="Zero", bias_init="XavierUniform")
    assert not any(w.any() for w in ws)  # Xavier* falls back to the Default (bias 0)


def test_weight_multiply_initializers():
    (w,) = sample("WeightMultiply", [(2, 20)], weight_dims=(20, 40))
    limit = math.sqrt(6 / (20 + 800))
    assert abs(w).max() <= limit and abs(w).max() > 0.98 * limit
    (w,) = sample("WeightMultiply", [(2, 20)], weight_dims=(20, 40), weight_init="Uniform")
    assert abs(w).max() <= 1 / 820


def test_variance_scaling_clamps_small_fans():
    # s = 1 / max(1, (0 + 1) / 2) = 1: a bias with one output gets U(±√3), not U(±√6).
    b = init.variance_scaling(np.random.default_rng(0), (10000,), 0, 1, "uniform")
    assert math.sqrt(2.9) < abs(b).max() <= math.sqrt(3)


# -- losses ----------------------------------------------------------------------------------


def loss_layer(type_name, shapes, dtype="float64", scaler=1.0, devices=1, **params):
    layer = LAYERS[type_name](**params)
    layer.build(shapes, BuildContext(compute_dtype=dtype, scaler=scaler, device_count=devices))
    layer.bind([], [])
    return layer


def test_bce_gradient_scaled_by_scaler_over_batch_and_devices_in_fp16():
    x = np.array([[0.5], [-1.0], [2.0], [0.0]])
    y = np.array([[1.0], [0.0], [1.0], [0.0]])
    layer = loss_layer("BinaryCrossEntropyLoss", [(4, 1), (4, 1)], dtype="float16", scaler=1024.0, devices=2)
    value = layer.forward([x.astype(np.float16), y.astype(np.float32)], training=True)
    d_x = layer.backward()[0]
    assert d_x.dtype == np.float16 and value.dtype == np.float32
    sig = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(d_x, (sig - y) * 1024 / (4 * 2), rtol=1e-3)


def test_bce_eval_predictions_are_sigmoid():
    layer = loss_layer("BinaryCrossEntropyLoss", [(2, 1), (2, 1)])
    x = np.array([[0.0], [2.0]])
    layer.forward([x, np.zeros((2, 1))], training=False)
    np.testing.assert_allclose(layer.predictions, 1 / (1 + np.exp(-x)))


def test_multi_cross_entropy_masks_and_weights():
    x = np.array([[0.3, -0.2], [1.0, 0.4]])
    y = np.array([[1.0, -1.0], [0.0, 1.0]])  # (0, 1) is masked
    w = np.array([2.0, 0.5])
    layer = loss_layer("MultiCrossEntropyLoss", [(2, 2), (2, 2)], target_weight=(2.0, 0.5))
    value = float(layer.forward([x, y], training=True))
    d_x = layer.backward()[0]
    bce = np.maximum(x, 0) - x * y + np.log1p(np.exp(-abs(x)))
    mask = y >= -0.5
    assert value == pytest.approx((w * bce * mask).sum() / 4)
    np.testing.assert_allclose(d_x, w * (1 / (1 + np.exp(-x)) - y) * mask / 4)
    assert d_x[0, 1] == 0


def test_cross_entropy_reads_one_label_per_sample():
    x = np.array([[1.0, 2.0], [0.5, -0.5]])
    y = np.array([[0.7], [0.2]])  # classes 1 and 0
    layer = loss_layer("CrossEntropyLoss", [(2, 2), (2, 1)])
    value = float(layer.forward([x, y], training=True))
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    assert value == pytest.approx(-(np.log(p[0, 1]) + np.log(p[1, 0])) / 2)
    np.testing.assert_allclose(layer.backward()[0], (p - [[0, 1], [1, 0]]) / 2)
    layer.forward([x, y], training=False)
    assert layer.predictions is x
