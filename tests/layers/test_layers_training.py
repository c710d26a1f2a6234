"""Dense towers of the sample models learn: the loss goes down under plain SGD on the flat buffer.

The embedding output is a fixed random input tensor (b, S, E); labels come from a fixed random
"teacher" over the inputs, so there is something to learn."""

import numpy as np
import pytest

import models
from hugectr_lab.layers import BuildContext, Network

try:
    from hugectr_lab.optim.dense import SGDOptimizer
except ImportError:  # the optimizer package is optional for these tests
    SGDOptimizer = None


class _SGD:
    def __init__(self, lr, scaler):
        self.lr, self.scaler = lr, scaler

    def update(self, weights, grads):
        weights -= self.lr * grads.astype(np.float32) / self.scaler


def make_batches(shapes, count, seed=0):
    rng = np.random.default_rng(seed)
    teacher = {k: rng.normal(size=v[1:]) for k, v in shapes.items() if k != "label"}
    batches = []
    for _ in range(count):
        feed = {k: rng.normal(size=v).astype(np.float32) for k, v in shapes.items() if k != "label"}
        score = sum((feed[k] * t).reshape(len(feed[k]), -1).sum(1) for k, t in teacher.items())
        feed["label"] = (score > 0).astype(np.float32)[:, None]
        batches.append(feed)
    return batches


def train(specs, shapes, dtype="float32", scaler=1.0, lr=0.1, steps=60):
    net = Network(specs, shapes, BuildContext(compute_dtype=dtype, scaler=scaler, rng=np.random.default_rng(1)))
    net.init_weights(np.random.default_rng(0))
    mixed = dtype == "float16"
    opt = SGDOptimizer(lr, scaler=scaler, mixed_precision=mixed) if SGDOptimizer else _SGD(lr, scaler)
    batches = make_batches(shapes, 4)
    losses = []
    for step in range(steps):
        losses.append(float(net.forward(batches[step % len(batches)])))
        net.backward()
        opt.update(net.weights, net.grads)
    assert np.isfinite(losses).all()
    return losses


def assert_learns(losses, factor):
    first, last = np.mean(losses[:4]), np.mean(losses[-4:])
    assert last < factor * first, f"loss went from {first:.4f} to {last:.4f}"


def test_dcn_tower_learns():
    assert_learns(train(models.dcn(slots=6, vec=4, hidden=32), models.inputs(64, 6, 4), lr=0.05), 0.7)


def test_deepfm_tower_learns():
    assert_learns(train(models.deepfm(slots=6, hidden=32), models.inputs(64, 6, 11), lr=0.05), 0.7)


def test_dlrm_tower_learns():
    assert_learns(train(models.dlrm(vec=8, fused=False), models.inputs(64, 6, 8), lr=0.1), 0.7)


def test_dlrm_tower_learns_in_mixed_precision_with_fused_layers():
    specs = models.dlrm(vec=64, fused=True, bottom_mlp=(64,), top_mlp=(64,))
    assert_learns(train(specs, models.inputs(64, 4, 64), dtype="float16", scaler=1024.0, lr=0.05), 0.7)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_fp16_training_tracks_fp32(dtype):
    specs = models.dlrm(vec=8, fused=False)
    shapes = models.inputs(32, 4, 8)
    reference = train(specs, shapes, steps=20)
    got = train(specs, shapes, dtype=dtype, scaler=128.0 if dtype == "float16" else 1.0, steps=20)
    np.testing.assert_allclose(got, reference, rtol=2e-2 if dtype == "float16" else 1e-5)
