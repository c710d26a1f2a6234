"""GPU lane: every layer case and the sample towers give the same numbers on the CuPy backend as on
NumPy (the layers are written once against xp; ops fall back to their references where no kernel
exists)."""

import numpy as np
import pytest

import models
from hugectr_lab.backend import get_backend
from hugectr_lab.layers import LAYERS, BuildContext, Network
from layer_cases import all_cases

pytestmark = pytest.mark.gpu

CASE_PARAMS = [pytest.param(type_name, case, id=cid) for cid, type_name, case in all_cases()]


def run_case(type_name, case, backend, dtype):
    ctx = BuildContext(backend=get_backend(backend), compute_dtype=dtype, rng=np.random.default_rng(0))
    xp = ctx.xp
    layer = LAYERS[type_name](**case.params)
    out_shapes = layer.build(case.shapes, ctx)
    wdtype = ctx.master_dtype if layer.uses_master_weights else ctx.compute_dtype
    weights = [xp.asarray(w, dtype=wdtype) for w in layer.init_weights(np.random.default_rng(1))]
    grads = [xp.zeros(w.shape, ctx.compute_dtype) for w in weights]
    layer.bind(weights, grads)
    rng = np.random.default_rng(2)
    xs = [xp.asarray(x, dtype=ctx.master_dtype if (layer.is_loss and i == 1) else ctx.compute_dtype)
          for i, x in enumerate(case.inputs(rng))]
    out = layer.forward(xs, training=True)
    if layer.is_loss:
        d_in = layer.backward()
        out = [out]
    else:
        d_in = layer.backward([xp.asarray(rng.normal(size=s), dtype=ctx.compute_dtype) for s in out_shapes])
    return [ctx.backend.to_host(a).astype(np.float64) for a in list(out) + [d for d in d_in if d is not None] + grads]


@pytest.mark.parametrize("type_name,case", CASE_PARAMS)
def test_layer_case_matches_numpy(type_name, case):
    for dtype in case.modes:
        want = run_case(type_name, case, "numpy", dtype)
        got = run_case(type_name, case, "cupy", dtype)
        tol = 1e-5 if dtype == "float32" else 2e-2
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol * max(1.0, np.abs(w).max()))


@pytest.mark.parametrize("name", ["dcn", "deepfm", "dlrm", "dlrm_fp16"])
def test_tower_step_matches_numpy(name):
    dtype, scaler = "float32", 1.0
    if name == "dcn":
        specs, shapes = models.dcn(6, 4, 32), models.inputs(64, 6, 4)
    elif name == "deepfm":
        specs, shapes = models.deepfm(6, 32), models.inputs(64, 6, 11)
    elif name == "dlrm":
        specs, shapes = models.dlrm(8, fused=False), models.inputs(64, 6, 8)
    else:
        specs, shapes = models.dlrm(64, fused=True, bottom_mlp=(64,), top_mlp=(64,)), models.inputs(64, 4, 64)
        dtype, scaler = "float16", 1024.0
    rng = np.random.default_rng(3)
    feed = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    feed["label"] = rng.integers(0, 2, size=shapes["label"]).astype(np.float32)
    results = []
    for backend in ("numpy", "cupy"):
        ctx = BuildContext(backend=get_backend(backend), compute_dtype=dtype, scaler=scaler,
                           rng=np.random.default_rng(4))
        net = Network(specs, shapes, ctx)
        net.init_weights(np.random.default_rng(5))
        loss = float(net.forward(feed))
        net.backward()
        host = ctx.backend.to_host
        preds = net.predict(feed)
        results.append([np.array([loss]), host(net.grads), host(net.input_grad("sparse_embedding1")), host(preds)])
    tol = 1e-4 if dtype == "float32" else 2e-2
    for g, w in zip(*reversed(results)):
        g, w = g.astype(np.float64), w.astype(np.float64)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol * max(1.0, np.abs(w).max()))
