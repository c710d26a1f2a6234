"""Fused dense epilogues (layers/fusion.py): which chains fuse, and that a fused network trains bit for
bit as the unfused one -- losses, weight and input gradients, weights after each update, predictions,
every named tensor -- in float32 and mixed precision; the non-finite search still names the layer."""

from pathlib import Path

import numpy as np
import pytest

import models
from hugectr_lab.backend import get_backend
from hugectr_lab.config import parse_config
from hugectr_lab.layers import LAYERS, BuildContext, Network, network_inputs
from hugectr_lab.layers.fusion import ConcatProduct, DenseChain
from hugectr_lab.numerics import locate_nonfinite
from models import layer


def variants(batch=64):
    """A graph with every kind of chain (mixed precision only: FusedInnerProduct), fed by ``dense``."""
    specs = [
        layer("InnerProduct", "fc1", "dense", "fc1", num_output=64),
        layer("ReLU", "relu1", "fc1", "relu1"),                        # FC + ReLU
        layer("FusedInnerProduct", "fc2", "relu1", "fc2", num_output=64),
        layer("Dropout", "drop2", "fc2", "drop2", rate=0.25),          # FusedInnerProduct + Dropout
        layer("InnerProduct", "fc3", "drop2", "fc3", num_output=24),
        layer("Dropout", "drop3", "fc3", "drop3", rate=0.5),           # FC + Dropout, no ReLU
        layer("InnerProduct", "fc4", "drop3", "fc4", num_output=17),
        layer("Slice", "slice4", "fc4", ["s41", "s42"], ranges=[(0, 9), (9, 17)]),   # FC alone
        layer("Concat", "concat", ["s41", "s42"], "concat"),
        layer("InnerProduct", "fc5", "concat", "fc5", num_output=33),
        layer("ReLU", "relu5", "fc5", "relu5"),
        layer("Dropout", "drop5", "relu5", "drop5", rate=0.5),         # FC + ReLU + Dropout
        layer("InnerProduct", "out", "drop5", "out", num_output=1),
        layer("BinaryCrossEntropyLoss", "loss", ["out", "label"], "loss"),
    ]
    return specs, {"dense": (batch, 13), "label": (batch, 1)}


GRAPHS = {
    "dcn": lambda: (models.dcn(6, 4, 48), models.inputs(64, 6, 4)),
    "deepfm": lambda: (models.deepfm(5, 40), models.inputs(64, 5, 11)),
    "variants": variants,
}


def network(name, dtype, fuse, backend="numpy", redraw=None):
    """``redraw``: the chains' ``redraw_mask`` (None: the backend's choice; True on NumPy runs the
    ``bias_act_dropout_*`` references, the path of the GPU kernels)."""
    specs, shapes = GRAPHS[name]()
    ctx = BuildContext(backend=get_backend(backend), compute_dtype=dtype, scaler=1024.0 if dtype == "float16" else 1.0,
                       rng=np.random.default_rng(4), fuse_epilogues=fuse)
    net = Network(specs, shapes, ctx)
    net.init_weights(np.random.default_rng(5))
    for step in net.steps:
        if isinstance(step.layer, DenseChain) and redraw is not None:
            step.layer.redraw_mask = redraw
    return net


def chains(net):
    return [[layer.name for layer in step.layer.members] for step in net.steps if isinstance(step.layer, DenseChain)]


def feeds(net, count):
    rng = np.random.default_rng(6)
    out = []
    for _ in range(count):
        feed = {k: rng.normal(size=s).astype(np.float32) for k, s in net.input_shapes.items()}
        feed["label"] = rng.integers(0, 2, size=net.input_shapes["label"]).astype(np.float32)
        out.append(feed)
    return out


def inference_feeds(net, count):
    rng = np.random.default_rng(7)
    return [{k: rng.normal(size=s).astype(np.float32) for k, s in net.input_shapes.items()} for _ in range(count)]


def test_chains_found_in_the_sample_graphs():
    assert chains(network("dcn", "float32", True)) == [["fc1", "relu1", "dropout1"], ["fc2", "relu2", "dropout2"]]
    assert chains(network("deepfm", "float16", True)) == [["fc1", "relu1", "dropout1"]]
    assert chains(network("variants", "float16", True)) == [["fc1", "relu1"], ["fc2", "drop2"], ["fc3", "drop3"],
                                                             ["fc5", "relu5", "drop5"]]
    dlrm = Network(models.dlrm(8, fused=False), models.inputs(64, 6, 8), BuildContext())
    assert len(chains(dlrm)) == 5 and all(len(c) == 2 for c in chains(dlrm))   # InnerProduct + ReLU
    assert chains(network("dcn", "float32", False)) == []                       # the switch
    assert chains(network("dcn", "float64", True)) == []                        # verification precision
    fused, plain = network("dcn", "float32", True), network("dcn", "float32", False)
    assert len(fused.steps) == len(plain.steps) - 4 and plain.steps == plain.nodes
    # what a user sees of the network does not change
    assert fused.summary() == plain.summary() and fused.summary_rows() == plain.summary_rows()
    assert fused.layout == plain.layout
    # NumPy keeps Dropout's mask (hashing it again costs more there); the GPU kernels redraw it
    assert not any(step.layer.redraw_mask for step in fused.steps if isinstance(step.layer, DenseChain))


DCN_CHAINS = ['layers[6] (InnerProduct "fc1") + layers[7] (ReLU "relu1") + layers[8] (Dropout "dropout1")',
              'layers[9] (InnerProduct "fc2") + layers[10] (ReLU "relu2") + layers[11] (Dropout "dropout2")']


@pytest.mark.parametrize("sample,mixed,expected", [
    ("dcn.json", False, DCN_CHAINS), ("dcn.json", True, DCN_CHAINS),
    ("dlrm_fp16.json", True, []),   # FusedInnerProduct without Dropout: already one epilogue
])
def test_an_unchanged_sample_config_gets_the_chains(sample, mixed, expected):
    cfg = parse_config(Path(__file__).parents[1] / "config" / "configs" / sample, mixed_precision=mixed)
    ctx = BuildContext(compute_dtype="float16" if mixed else "float32")
    net = Network(cfg.layers, network_inputs(cfg, 32), ctx, first_index=1 + len(cfg.embeddings))
    assert [step.layer.label for step in net.steps if isinstance(step.layer, DenseChain)] == expected


def test_a_tensor_with_a_second_reader_is_not_fused():
    # fc1's output feeds a Slice, so fc1 runs alone; relu2 is the only reader of fc2 and fuses.
    specs = [layer("InnerProduct", "fc1", "dense", "fc1", num_output=8),
             layer("Slice", "s", "fc1", ["a", "b"], ranges=[(0, 8), (0, 8)]),
             layer("ReLU", "relu1", "a", "relu1"),
             layer("Add", "add", ["relu1", "b"], "add"),
             layer("InnerProduct", "fc2", "add", "fc2", num_output=8),
             layer("ReLU", "relu2", "fc2", "relu2")]
    net = Network(specs, {"dense": (4, 3)}, BuildContext())
    assert chains(net) == [["fc2", "relu2"]]


def test_the_switch_reads_the_environment(monkeypatch):
    monkeypatch.setenv("HUGECTR_LAB_FUSE_EPILOGUES", "0")
    assert not BuildContext().fuse_epilogues
    monkeypatch.delenv("HUGECTR_LAB_FUSE_EPILOGUES")
    assert BuildContext().fuse_epilogues


def sgd(net, lr=0.05):
    net.weights[...] -= lr * net.grads.astype(np.float32) / np.float32(net.ctx.scaler)
    return net.weights


# FusedInnerProduct (in "variants") needs mixed precision
RUNS = [("dcn", "float32"), ("dcn", "float16"), ("deepfm", "float32"), ("deepfm", "float16"), ("variants", "float16")]


@pytest.mark.parametrize("redraw", [False, True], ids=["kept-mask", "redrawn-mask"])
@pytest.mark.parametrize("name,dtype", RUNS)
def test_fused_network_trains_bit_for_bit_as_unfused(name, dtype, redraw):
    fused, plain = network(name, dtype, True, redraw=redraw), network(name, dtype, False)
    assert chains(fused)
    inputs = [n for n in fused.input_shapes if n != "label"]
    for feed in feeds(fused, 4):
        results = []
        for net in (fused, plain):
            loss = net.forward(feed)
            net.backward()
            tensors = [net.tensor(t) for node in net.nodes for t in node.tops if not node.layer.is_loss]
            results.append([loss, net.grads.copy(), *(net.input_grad(n) for n in inputs), *tensors,
                            sgd(net).copy()])
        for got, want in zip(*results):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)
    for feed in feeds(fused, 2):
        np.testing.assert_array_equal(fused.predict(feed), plain.predict(feed))


def test_intermediate_tensors_are_recomputed_on_request():
    net = network("dcn", "float32", True)
    feed = feeds(net, 1)[0]
    net.forward(feed)
    assert "relu1" not in net._acts                     # not kept by the fused forward
    relu1, dropout1 = net.tensor("relu1"), net.tensor("dropout1")
    assert (relu1 >= 0).all() and relu1.shape == dropout1.shape
    kept = dropout1 != 0
    scale = np.float32(1 / (1 - 0.5))
    np.testing.assert_array_equal(dropout1[kept], relu1[kept] * scale)
    np.testing.assert_array_equal(net.tensor("fc1").clip(min=0), relu1)


def inference_network(name, dtype, fuse, backend="numpy"):
    """``network``'s graph and weights, built for inference (``training=False``), without its loss layer."""
    specs, shapes = GRAPHS[name]()
    specs = [spec for spec in specs if not spec.type.endswith("Loss")]
    shapes = {k: v for k, v in shapes.items() if k != "label"}
    ctx = BuildContext(backend=get_backend(backend), compute_dtype=dtype, training=False, fuse_epilogues=fuse)
    net = Network(specs, shapes, ctx)
    net.init_weights(np.random.default_rng(5))
    return net


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_a_concat_feeding_one_output_runs_as_one_step_in_inference(dtype):
    """DCN's head (concat2 -> fc4, one output) is one ConcatProduct step in inference, not in training; the
    predictions are the unfused network's bit for bit (NumPy), and the Concat's output is recomputed on
    request."""
    fused, plain = inference_network("dcn", dtype, True), inference_network("dcn", dtype, False)
    products = [step for step in fused.steps if isinstance(step.layer, ConcatProduct)]
    assert [[m.name for m in step.layer.members] for step in products] == [["concat2", "fc4"]]
    assert products[0].bottoms == ("dropout2", "multicross1") and products[0].tops == ("fc4",)
    assert not any(isinstance(step.layer, ConcatProduct) for step in network("dcn", dtype, True).steps)
    assert not any(isinstance(step.layer, ConcatProduct)   # its Concat feeds an FC of 33 outputs
                   for step in inference_network("variants", "float16", True).steps)
    for feed in inference_feeds(plain, 2):
        np.testing.assert_array_equal(fused.predict(feed), plain.predict(feed))
        assert "concat2" not in fused._acts
        np.testing.assert_array_equal(fused.tensor("concat2"), plain.tensor("concat2"))


def set_weight(net, layer_name, weight, index, value):
    slot = next(s for s in net.layout if net.layers[s.layer].name == layer_name and s.name == weight)
    net.weights[slot.offset:slot.offset + int(np.prod(slot.shape))][index] = value
    net.load_weights(net.weights.copy())


def inject(net, where):
    """Make one step non-finite inside a chain. ``bias``: -inf in fc1's bias (ReLU turns it into 0, so
    fc1's own output is the first non-finite tensor while the chain's output stays finite). ``dropout``:
    the output layer's weights at 100 and a loss scale that keeps its input gradient just inside fp16,
    so that dropout2's scale by 2 overflows in the backward."""
    if where == "bias":
        set_weight(net, "fc1", "b", 3, -np.inf)
    else:
        set_weight(net, "fc4", "W", slice(None), 100.0)
        net.ctx.scaler = 25600.0


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
@pytest.mark.parametrize("dtype,where,expected", [
    ("float32", "bias", 'output "fc1" of layers[4] (InnerProduct "fc1")'),
    ("float16", "bias", 'output "fc1" of layers[4] (InnerProduct "fc1")'),
    ("float16", "dropout", 'the input gradient 0 of layers[9] (Dropout "dropout2")')])
def test_nonfinite_search_names_the_layer_inside_a_chain(dtype, where, expected):
    for fuse, redraw in ((True, False), (True, True), (False, None)):
        net = network("dcn", dtype, fuse, redraw=redraw)
        inject(net, where)
        feed = feeds(net, 1)[0]
        loss = net.forward(feed)
        net.backward()
        assert locate_nonfinite(net, feed, loss) == expected, f"fuse={fuse}, redraw={redraw}"


def test_chain_gradients_match_finite_differences():
    # float64 networks do not fuse; the chain itself is precision-agnostic, so check it there directly.
    ctx = BuildContext(compute_dtype="float64", rng=np.random.default_rng(0))
    fc, relu, drop = LAYERS["InnerProduct"](num_output=6), LAYERS["ReLU"](), LAYERS["Dropout"](rate=0.3)
    for member in (fc, relu, drop):
        member.build([(5, 4) if member is fc else (5, 6)], ctx)
    weights = [w.astype(np.float64) for w in fc.init_weights(np.random.default_rng(1))]
    grads = [np.zeros_like(w) for w in weights]
    fc.bind(weights, grads)
    drop.prepare(True)   # one seed for every evaluation below
    chain = DenseChain(fc, relu, drop)
    rng = np.random.default_rng(2)
    x, r = rng.normal(size=(5, 4)), rng.normal(size=(5, 6))

    def value():
        return float((chain.forward([x], True)[0] * r).sum())

    value()
    (d_x,) = chain.backward([r])
    eps = 1e-6
    for array, analytic in [(x, d_x), (weights[0], grads[0]), (weights[1], grads[1])]:
        numeric = np.zeros_like(array)
        for idx in np.ndindex(array.shape):
            old = array[idx]
            array[idx] = old + eps
            plus = value()
            array[idx] = old - eps
            numeric[idx] = (plus - value()) / (2 * eps)
            array[idx] = old
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.gpu
@pytest.mark.parametrize("lt_epilogue", [False, True], ids=["kernels", "cublaslt"])
@pytest.mark.parametrize("name,dtype", [run for run in RUNS if run[0] != "deepfm"])
def test_fused_network_on_cupy(name, dtype, lt_epilogue, monkeypatch):
    """On the GPU the fused epilogue kernels give the unfused layers' bits (same GEMMs, the same
    column-sum order for the bias gradient), and the NumPy values to rounding. With the bias + ReLU in
    cuBLASLt's GEMM epilogue (the default) the forward rounds once instead of twice: the unfused values
    to rounding (``gemm_bias_act``'s docstring)."""
    from hugectr_lab.backend.cuda import cublaslt

    if not lt_epilogue:   # gemm_bias_act falls back to the GEMM + epilogue kernel, as where cuBLASLt has no plan
        monkeypatch.setattr(cublaslt, "gemm_bias_act", lambda *args, **kwargs: None)
    nets = [network(name, dtype, True, "cupy"), network(name, dtype, False, "cupy"), network(name, dtype, True)]
    assert chains(nets[0]) and all(s.layer.redraw_mask for s in nets[0].steps if isinstance(s.layer, DenseChain))
    embedding = "dense" if name == "variants" else "sparse_embedding1"
    tol = 1e-4 if dtype == "float32" else 2e-2
    for feed in feeds(nets[0], 3):
        results, flips = [], []
        for net in nets:
            loss = net.forward(feed)
            flips.append(_relu_outputs(nets[0], net))
            net.backward()
            arrays = (loss, net.grads, net.input_grad(embedding), sgd(net))
            results.append([net.ctx.backend.to_host(a) for a in arrays])
        for i, (fused, plain, numpy) in enumerate(zip(*results)):
            if not lt_epilogue:
                np.testing.assert_array_equal(fused, plain)
            want = numpy.astype(np.float64)
            atol = tol * max(1.0, np.abs(want).max())
            for other, other_relu in ((plain.astype(np.float64), flips[1]), (want, flips[2])):
                flipped = sum(int(((a > 0) != (b > 0)).sum()) for a, b in zip(flips[0], other_relu))
                if i == 0 or not flipped:   # the loss moves by an ulp of a flipped unit only
                    np.testing.assert_allclose(fused.astype(np.float64), other, rtol=tol, atol=atol)
                else:
                    _close_but_for_relu_flips(fused.astype(np.float64), other, flipped, flips[0])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_concat_product_on_cupy(dtype):
    """On the GPU DCN's head reads the Concat's inputs where they lie (one GEMV): the unfused network's
    predictions and NumPy's to rounding (each input's columns summed in turn)."""
    nets = [inference_network("dcn", dtype, True, "cupy"), inference_network("dcn", dtype, False, "cupy"),
            inference_network("dcn", dtype, True)]
    assert any(isinstance(step.layer, ConcatProduct) for step in nets[0].steps)
    tol = 1e-5 if dtype == "float32" else 2e-3
    for feed in inference_feeds(nets[2], 3):
        got, plain, numpy = (net.ctx.backend.to_host(net.predict(feed)).astype(np.float64) for net in nets)
        np.testing.assert_allclose(got, plain, rtol=tol, atol=tol)
        np.testing.assert_allclose(got, numpy, rtol=tol, atol=tol)


def _relu_outputs(fused_net, net):
    """Host copies of ``net``'s outputs of the fused net's chains that end in ReLU (same tensor names)."""
    tops = [step.tops[0] for step in fused_net.steps if isinstance(step.layer, DenseChain) and step.layer.activation]
    return [net.ctx.backend.to_host(net.tensor(top)).astype(np.float64) for top in tops]


def _close_but_for_relu_flips(got, want, flipped, relu_outputs):
    """cuBLASLt rounds bias + ReLU once where the kernels and NumPy round twice, so in float16 a
    pre-activation within an ulp of 0 can land on the other side of ReLU. Such a (sample, unit) changes
    at first order what its gradient feeds: the sample's whole input-gradient row and the unit's weight
    column (an H100 run, 2026-12-07: one of 7669 weight-gradient elements off by 16 of a largest 678).
    So where the forward flipped a unit the elements may differ, but flips stay rare (at most 0.1 % of
    the ReLU outputs) and the arrays agree as wholes (relative L2 error at most 10 %, where a real
    error such as a wrong row or a lost bias is of order 1)."""
    units = sum(r.size for r in relu_outputs)
    assert flipped <= max(1, units // 1000), f"{flipped} of {units} ReLU outputs flipped"
    error = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30)
    assert error <= 0.1, f"relative L2 error {error:.3g} with {flipped} ReLU flips"
