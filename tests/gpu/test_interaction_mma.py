"""GPU lane: DLRM's Interaction as one fused tensor-core kernel each way (kernels/interaction.cu:
hctr_interaction_fwd_mma, hctr_interaction_bwd_mma), which layer_ops.py runs for float16 with
n = F + 1 <= 32, w % 16 == 0, w <= 256 unless HUGECTR_LAB_INTERACTION_MMA=0.

Which kernels ran (a spy on the wrapper's launches); parity with the NumPy reference with NaN left in
the memory pool (an element never written fails); the fused and the cuBLAS path on the same inputs
agree within float16 rounding of two float32 sums of the same products; the bits depend neither on
the grid (one block looping over every sample) nor on reruns or a CUDA-graph replay; misaligned
inputs and other shapes keep the cuBLAS path.
"""

import numpy as np
import pytest

from hugectr_lab.backend import get_backend
from hugectr_lab.layers.interaction import interaction_bwd, interaction_fwd
from replay import assert_replays_the_eager_bits

pytestmark = pytest.mark.gpu

SWITCH = "HUGECTR_LAB_INTERACTION_MMA"
FUSED = ["hctr_interaction_fwd_mma", "hctr_interaction_bwd_mma"]
# (m, F, w): DLRM; n = 32 at w = 16; n = 5; n = 16, the last with one 16-row tile; n = 17, the first
# with two, at w = 256; n = 2
COVERED = [(67, 26, 128), (33, 31, 16), (45, 4, 48), (29, 15, 64), (13, 16, 256), (3, 1, 16)]
# n = 33; w = 24 (no multiple of 16); w = 272 (> 256)
NOT_COVERED = [(21, 32, 32), (19, 26, 24), (7, 26, 272)]
TOLERANCE = 2e-3   # the float16 interaction tolerance of tests/gpu/test_interaction_gemm.py


def inputs(m, fields, w, seed=0):
    rng = np.random.default_rng(seed + 7 * m + fields + w)
    n = fields + 1
    mlp, emb = rng.normal(size=(m, w)).astype(np.float16), rng.normal(size=(m, fields, w)).astype(np.float16)
    return mlp, emb, rng.normal(size=(m, w + n * (n - 1) // 2 + 1)).astype(np.float16)


@pytest.fixture(scope="module")
def cupy_backend():
    return get_backend("cupy")


@pytest.fixture
def launches(monkeypatch):
    """The kernel expressions the Interaction wrappers launch, in order."""
    from hugectr_lab.backend.cuda import layer_ops

    seen, real = [], layer_ops.launch_grid

    def spy(file_name, expression, *args, **kwargs):
        seen.append(expression)
        return real(file_name, expression, *args, **kwargs)

    monkeypatch.setattr(layer_ops, "launch_grid", spy)
    return seen


def run(backend, mlp, emb, d_y):
    """(out, d_mlp, d_emb) on the device from host inputs, as host arrays; NaN fills the pool first, so
    an output element no kernel writes fails the comparisons."""
    backend.xp.full(4 * (mlp.size + emb.size + d_y.size) + 4096, np.nan, dtype=np.float32)
    dev = [backend.asarray(a) for a in (mlp, emb, d_y)]
    out = backend.ops.interaction_fwd(dev[0], dev[1])
    return [backend.to_host(a) for a in (out, *backend.ops.interaction_bwd(dev[2], dev[0], dev[1]))]


def close_to_reference(got, mlp, emb, d_y):
    want = [interaction_fwd(np, mlp, emb), *interaction_bwd(np, d_y, mlp, emb)]
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        w64 = w.astype(np.float64)
        np.testing.assert_allclose(g.astype(np.float64), w64, rtol=TOLERANCE,
                                   atol=TOLERANCE * max(1.0, np.abs(w64).max()))
    assert (got[0][:, -1] == 0).all()


@pytest.mark.parametrize("m,fields,w", COVERED)
def test_covered_shapes_run_the_fused_kernels(cupy_backend, launches, monkeypatch, m, fields, w):
    monkeypatch.delenv(SWITCH, raising=False)
    mlp, emb, d_y = inputs(m, fields, w)
    got = run(cupy_backend, mlp, emb, d_y)
    assert launches == FUSED
    close_to_reference(got, mlp, emb, d_y)


@pytest.mark.parametrize("m,fields,w,switch", [(*s, "1") for s in NOT_COVERED] + [(*COVERED[0], "0")])
def test_other_shapes_and_the_switch_keep_the_gemms(cupy_backend, launches, monkeypatch, m, fields, w, switch):
    monkeypatch.setenv(SWITCH, switch)
    mlp, emb, d_y = inputs(m, fields, w)
    got = run(cupy_backend, mlp, emb, d_y)
    assert launches and not set(launches) & set(FUSED), launches
    close_to_reference(got, mlp, emb, d_y)


def test_misaligned_inputs_keep_the_gemms(cupy_backend, launches, monkeypatch):
    monkeypatch.delenv(SWITCH, raising=False)
    cp = cupy_backend.xp
    mlp, emb, d_y = inputs(9, 26, 128)
    base = cp.empty(mlp.size + 1, dtype=cp.float16)
    mlp_dev = base[1:].reshape(mlp.shape)   # contiguous, 2 bytes past a 16-byte boundary
    mlp_dev[...] = cp.asarray(mlp)
    emb_dev, d_y_dev = cp.asarray(emb), cp.asarray(d_y)
    got = [cupy_backend.ops.interaction_fwd(mlp_dev, emb_dev), *cupy_backend.ops.interaction_bwd(d_y_dev, mlp_dev,
                                                                                                  emb_dev)]
    assert launches and not set(launches) & set(FUSED), launches
    close_to_reference([cupy_backend.to_host(a) for a in got], mlp, emb, d_y)


@pytest.mark.parametrize("m,fields,w", COVERED)
def test_fused_and_gemm_paths_agree_within_float16_rounding(cupy_backend, monkeypatch, m, fields, w):
    """Both paths round float32 sums of the same exact float16 products once; the sums differ by at most
    k 2^-23 sum|products| each (k terms, one truncation per term at most), and the roundings by one
    float16 unit in the last place."""
    mlp, emb, d_y = inputs(m, fields, w, seed=3)
    monkeypatch.delenv(SWITCH, raising=False)
    fused = run(cupy_backend, mlp, emb, d_y)
    monkeypatch.setenv(SWITCH, "0")
    gemm = run(cupy_backend, mlp, emb, d_y)
    absolute = [interaction_fwd(np, *(np.abs(a.astype(np.float64)) for a in (mlp, emb))),
                *interaction_bwd(np, *(np.abs(a.astype(np.float64)) for a in (d_y, mlp, emb)))]
    for a, b, bound, terms in zip(fused, gemm, absolute, (w, fields + 1, fields + 1)):
        assert a.dtype == b.dtype == np.float16 and a.shape == b.shape
        ulp = np.spacing(np.maximum(np.abs(a), np.abs(b))).astype(np.float64)
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        excess = diff - (ulp + 4 * terms * 2.0 ** -23 * bound)
        assert (excess <= 0).all(), f"{(excess > 0).sum()} elements past the bound, by up to {excess.max()}"


@pytest.mark.parametrize("m,fields,w", [(67, 26, 128), (45, 4, 48)])
def test_one_block_gives_the_full_grids_bits(cupy_backend, monkeypatch, m, fields, w):
    """Each warp of one block loops over many samples (the wrapper's grid gives each warp one)."""
    from hugectr_lab.backend.cuda import layer_ops
    from hugectr_lab.backend.cuda.loader import launch_grid

    monkeypatch.delenv(SWITCH, raising=False)
    cp = cupy_backend.xp
    mlp, emb, d_y = (cp.asarray(a) for a in inputs(m, fields, w, seed=5))
    out = cupy_backend.ops.interaction_fwd(mlp, emb)
    d_mlp, d_emb = cupy_backend.ops.interaction_bwd(d_y, mlp, emb)
    one = [cp.full_like(a, np.nan) for a in (out, d_mlp, d_emb)]
    sizes = (np.int64(m), np.int32(fields), np.int32(w))
    _, block, shared = layer_ops._mma_launch(m, fields, w, False)
    launch_grid("interaction.cu", FUSED[0], 1, block, (mlp, emb, one[0], *sizes), shared_mem=shared)
    _, block, shared = layer_ops._mma_launch(m, fields, w, True)
    launch_grid("interaction.cu", FUSED[1], 1, block, (d_y, mlp, emb, one[1], one[2], *sizes), shared_mem=shared)
    for got, want in zip(one, (out, d_mlp, d_emb)):
        np.testing.assert_array_equal(cupy_backend.to_host(got), cupy_backend.to_host(want))


def test_reruns_and_graph_replay_give_the_eager_bits(cupy_backend, launches, monkeypatch):
    monkeypatch.delenv(SWITCH, raising=False)
    mlp, emb, d_y = (cupy_backend.asarray(a) for a in inputs(129, 26, 128, seed=1))
    ops = cupy_backend.ops

    def step():
        return (ops.interaction_fwd(mlp, emb), *ops.interaction_bwd(d_y, mlp, emb))

    assert_replays_the_eager_bits(step, cupy_backend.to_host)
    assert launches[:2] == FUSED and set(launches) == set(FUSED)
