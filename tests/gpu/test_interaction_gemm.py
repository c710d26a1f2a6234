"""GPU lane: DLRM's Interaction as cuBLAS batched GEMMs (kernels/interaction.cu, layer_ops.py).

Against the NumPy reference on odd batches (1, 7, 129), F = 26 and 27 embedding rows, w = 128 and odd
w, float32 and float16; the padding column is written (0); the GEMMs run under CUDA-graph capture
(the ctypes binding) and a replay gives the eager call's bits; two calls give the same bits. float16
shapes that the fused tensor-core kernels cover run those unless HUGECTR_LAB_INTERACTION_MMA=0
(tests/gpu/test_interaction_mma.py); the replay test sets it, so it covers the cuBLAS path in both dtypes.
"""

import numpy as np
import pytest

from hugectr_lab.backend import get_backend
from hugectr_lab.layers.interaction import interaction_bwd, interaction_fwd
from replay import assert_replays_the_eager_bits

pytestmark = pytest.mark.gpu

SHAPES = [(m, fields, w) for m in (1, 7, 129) for fields, w in ((26, 128), (27, 128), (27, 13))]
TOLERANCE = {"float32": 1e-5, "float16": 2e-3}


def inputs(m, fields, w, dtype, seed=0):
    rng = np.random.default_rng(seed + 7 * m + fields + w)
    n = fields + 1
    mlp, emb = rng.normal(size=(m, w)).astype(dtype), rng.normal(size=(m, fields, w)).astype(dtype)
    d_y = rng.normal(size=(m, w + n * (n - 1) // 2 + 1)).astype(dtype)
    return mlp, emb, d_y


def close(got, want, dtype):
    assert got.dtype == want.dtype and got.shape == want.shape
    tol, w64 = TOLERANCE[dtype], want.astype(np.float64)
    np.testing.assert_allclose(got.astype(np.float64), w64, rtol=tol, atol=tol * max(1.0, np.abs(w64).max()))


@pytest.fixture(scope="module")
def cupy_backend():
    backend = get_backend("cupy")
    assert backend.ops.implementation("interaction_fwd") == "kernel"
    assert backend.ops.implementation("interaction_bwd") == "kernel"
    return backend


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("m,fields,w", SHAPES)
def test_forward_and_backward_match_the_reference(cupy_backend, m, fields, w, dtype):
    cp = cupy_backend.xp
    mlp, emb, d_y = inputs(m, fields, w, dtype)
    # Leave NaN in the memory pool (freed at once, so the outputs below likely reuse it): an output
    # element the kernels never write then fails the comparison.
    cp.full(8 * (m * (fields + 1) * (w + fields + 2) + 1024), np.nan, dtype=np.float32)
    dev = [cupy_backend.asarray(a) for a in (mlp, emb, d_y)]
    out = cupy_backend.ops.interaction_fwd(dev[0], dev[1])
    d_mlp, d_emb = cupy_backend.ops.interaction_bwd(dev[2], dev[0], dev[1])
    want = interaction_fwd(np, mlp, emb)
    close(cupy_backend.to_host(out), want, dtype)
    assert (cupy_backend.to_host(out)[:, -1] == 0).all()
    for got, ref in zip((d_mlp, d_emb), interaction_bwd(np, d_y, mlp, emb)):
        close(cupy_backend.to_host(got), ref, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_graph_replay_and_reruns_give_the_eager_bits(cupy_backend, dtype, monkeypatch):
    monkeypatch.setenv("HUGECTR_LAB_INTERACTION_MMA", "0")   # float16 too takes the cuBLAS path here
    mlp, emb, d_y = (cupy_backend.asarray(a) for a in inputs(129, 26, 128, dtype, seed=1))
    ops = cupy_backend.ops

    def step():
        return (ops.interaction_fwd(mlp, emb), *ops.interaction_bwd(d_y, mlp, emb))

    assert_replays_the_eager_bits(step, cupy_backend.to_host)


def test_other_dtypes_and_empty_inputs_fall_back_to_the_reference(cupy_backend):
    mlp, emb, _ = inputs(5, 3, 4, "float64")
    out = cupy_backend.ops.interaction_fwd(cupy_backend.asarray(mlp), cupy_backend.asarray(emb))
    np.testing.assert_allclose(cupy_backend.to_host(out), interaction_fwd(np, mlp, emb), rtol=1e-12)
    mlp, emb, _ = inputs(0, 26, 16, "float32")
    out = cupy_backend.ops.interaction_fwd(cupy_backend.asarray(mlp), cupy_backend.asarray(emb))
    assert out.shape == (0, 16 + 27 * 26 // 2 + 1)
