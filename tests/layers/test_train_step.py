"""TrainStep: one device's forward + backward, replayed from a CUDA graph with ``use_cuda_graph``.

CPU: without graphs (NumPy) it is exactly ``forward`` then ``backward``, and Dropout seeds are drawn by
``Network.prepare``, once per Dropout per training forward. GPU lane: graph replays equal the eager pass
bit for bit, draw a new dropout mask each time, and a pass that reads a device value on the host (which
capture forbids) falls back to running eagerly with a warning that says why. The tower is DeepFM's
(Dropout, FmOrder2, WeightMultiply, GEMMs), whose kernels add in a fixed order, so equal means equal
bits (DCN's MultiCross backward adds with atomics, whose order changes from run to run).
"""

import logging

import numpy as np
import pytest

import models
from hugectr_lab.backend import get_backend
from hugectr_lab.layers import BuildContext, Network, TrainStep

BATCH, SLOTS, LATENT, HIDDEN = 37, 5, 4, 24
VEC = LATENT + 1


def feeds(count, seed=3):
    rng = np.random.default_rng(seed)
    shapes = models.inputs(BATCH, SLOTS, VEC)
    out = []
    for _ in range(count):
        feed = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
        feed["label"] = rng.integers(0, 2, size=shapes["label"]).astype(np.float32)
        out.append(feed)
    return out


def deepfm_net(backend="numpy", dtype="float32"):
    # unfused: these tests reach into single layers (Dropout's mask, ReLU's forward); fused chains have
    # their own tests (test_layers_fusion.py)
    ctx = BuildContext(backend=get_backend(backend), compute_dtype=dtype,
                       scaler=1024.0 if dtype == "float16" else 1.0, rng=np.random.default_rng(4),
                       fuse_epilogues=False)
    net = Network(models.deepfm(SLOTS, HIDDEN, LATENT, dropout_rate=0.3), models.inputs(BATCH, SLOTS, VEC), ctx)
    net.init_weights(np.random.default_rng(5))
    return net


def run(step, batches):
    """Per batch: (loss, grads, embedding input grad) on the host."""
    host = step.net.ctx.backend.to_host
    out = []
    for feed in batches:
        loss = step(feed)
        out.append((float(loss), host(step.net.grads).copy(), host(step.net.input_grad("sparse_embedding1")).copy()))
    return out


def test_without_graphs_a_step_is_forward_then_backward():
    batches = feeds(3)
    step = TrainStep(deepfm_net(), graph=True)
    assert step.captured is None   # NumPy has no CUDA graphs
    net = deepfm_net()
    for (loss, grads, d_emb), feed in zip(run(step, batches), batches):
        assert loss == float(net.forward(feed))
        net.backward()
        np.testing.assert_array_equal(grads, net.grads)
        np.testing.assert_array_equal(d_emb, net.input_grad("sparse_embedding1"))


def test_network_prepare_draws_one_seed_per_dropout_per_training_forward():
    net, twin = deepfm_net(), np.random.default_rng(4)
    feed = feeds(1)[0]
    net.forward(feed, training=True)
    twin.integers(0, 1 << 62)   # one Dropout layer
    assert net.ctx.rng.integers(1 << 30) == twin.integers(1 << 30)
    net.forward(feed, training=False)   # evaluation draws nothing
    assert net.ctx.rng.integers(1 << 30) == twin.integers(1 << 30)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_graph_replays_equal_the_eager_pass_and_redraw_dropout(dtype):
    batches = feeds(5)
    graphed, eager = TrainStep(deepfm_net("cupy", dtype), graph=True), TrainStep(deepfm_net("cupy", dtype))
    masks = []
    for feed in batches:
        graphed(feed)
        masks.append(graphed.net.layers[11].mask.get())   # dropout1's mask, rewritten by every replay
    assert graphed.captured.graph is not None and graphed.captured.failure is None
    assert graphed.captured.calls == len(batches)
    assert not np.array_equal(masks[-1], masks[-2])
    graphed = TrainStep(deepfm_net("cupy", dtype), graph=True)
    for (l1, g1, e1), (l2, g2, e2) in zip(run(graphed, batches), run(eager, batches)):
        assert l1 == l2
        np.testing.assert_array_equal(g1, g2)
        np.testing.assert_array_equal(e1, e2)


@pytest.mark.gpu
def test_a_pass_that_reads_the_host_runs_eagerly_and_says_why(caplog):
    batches = feeds(4)
    graphed, eager = TrainStep(deepfm_net("cupy"), graph=True), TrainStep(deepfm_net("cupy"))
    relu = graphed.net.layers[10]
    forward = relu.forward
    relu.forward = lambda inputs, training: (float(inputs[0].sum()), forward(inputs, training))[1]
    with caplog.at_level(logging.WARNING, logger="hugectr_lab"):
        got = run(graphed, batches)
    assert graphed.captured.graph is None and "capturing" in graphed.captured.failure
    assert [r.message for r in caplog.records if "use_cuda_graph" in r.message] == [
        f"use_cuda_graph: the dense forward and backward cannot be captured in a CUDA graph "
        f"({graphed.captured.failure}); it runs without one"]
    for (l1, g1, e1), (l2, g2, e2) in zip(got, run(eager, batches)):
        assert l1 == l2
        np.testing.assert_array_equal(g1, g2)
        np.testing.assert_array_equal(e1, e2)
