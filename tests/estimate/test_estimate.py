"""The memory estimate against measured peaks: tracemalloc on the NumPy backend, the CuPy memory pool on a GPU,
for the four sample models (scaled down) at two batch sizes; and the vocabulary that no longer fits."""

import dataclasses
import gc
import tracemalloc

import pytest

from model_api_helpers import make_data, sample_script
from sample_scripts import run_sample

from hugectr_lab.estimate import estimate_memory, max_vocabulary

SAMPLES = ["dcn", "wdl", "deepfm", "dlrm"]


@pytest.fixture(scope="module")
def datadir(tmp_path_factory):
    base = tmp_path_factory.mktemp("estimate")
    make_data(base, samples=4096)
    return base


def built(datadir, name, batch, monkeypatch, backend=None):
    monkeypatch.chdir(datadir)
    script = sample_script(name, footer=False).replace("= 128", f"= {batch}")
    if backend:
        script = script.replace("model = hugectr.Model(solver, reader, optimizer)",
                                f"model = hugectr.Model(solver, reader, optimizer, backend={backend!r})")
    return run_sample(script, datadir, f"{name}.py")["model"]


def run_a_while(model):
    model.compile()
    model.start_data_reading()
    for _ in range(3):
        model.train()
    for _ in range(2):
        model.eval()
    model.get_eval_metrics()


@pytest.mark.parametrize("batch", [256, 1024])
@pytest.mark.parametrize("name", SAMPLES)
def test_numpy_estimate_within_ten_percent_of_the_traced_peak(datadir, name, batch, monkeypatch):
    model = built(datadir, name, batch, monkeypatch)
    estimate = estimate_memory(model._parse(model.config_json()), model.solver, backend="numpy")
    tracemalloc.start()
    try:
        run_a_while(model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        model.close()
    assert abs(estimate.total - peak) <= 0.10 * peak, (estimate.table(), peak)


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [256, 1024])
@pytest.mark.parametrize("name", SAMPLES)
def test_cupy_estimate_within_ten_percent_of_the_memory_pool(datadir, name, batch, monkeypatch):
    cupy = pytest.importorskip("cupy")
    pool = cupy.get_default_memory_pool()
    # An earlier test's model left in a reference cycle would free its blocks into the pool mid-run, where
    # this run reuses them unmeasured: collect it first, then return every free block.
    gc.collect()
    pool.free_all_blocks()
    model = built(datadir, name, batch, monkeypatch, backend="cupy")
    estimate = estimate_memory(model._parse(model.config_json()), model.solver, backend="cupy")
    before = pool.total_bytes()
    run_a_while(model)
    cupy.cuda.Device().synchronize()
    used = pool.total_bytes() - before   # the pool keeps every block it ever held: its high-water mark
    session = model.session              # CUDA graphs allocate from pools of their own (whole_step.py)
    whole = session._whole_step
    graphs = ([entry[0] for entry in whole.graphs.values()] if whole else []) + [
        s.captured for s in session.train_steps if s.captured is not None]
    graph_pools = {id(p): p for p in [g.pool for g in graphs] + (whole._retired if whole else [])}
    used += sum(p.total_bytes() for p in graph_pools.values())
    # cuBLAS's workspaces are plain allocations, one per stream that ran a GEMM: the graphs' streams and
    # the caller's (evaluation)
    from hugectr_lab.backend.cuda import cublas
    streams = {g.stream.ptr: g.stream for g in graphs}
    streams[cupy.cuda.get_current_stream().ptr] = cupy.cuda.get_current_stream()
    used += sum(cublas.workspace_bytes(s) for s in streams.values())
    model.close()
    assert abs(estimate.per_device - used) <= 0.10 * used, (estimate.table(), used)


def test_summary_prints_the_estimate(datadir, monkeypatch, capsys):
    model = built(datadir, "dcn", 256, monkeypatch)
    model.compile()
    model.summary()
    out = capsys.readouterr().out
    for line in ("embedding tables", "hash tables", "dense optimizer states", "activations", "total per device"):
        assert line in out
    model.close()


def test_max_vocabulary_is_where_the_estimate_stops_fitting(datadir, monkeypatch):
    model = built(datadir, "dcn", 256, monkeypatch)
    cfg = model._parse(model.config_json())
    limit = 128 << 20   # above the fixed part: two 32 MiB cuBLAS workspaces with use_cuda_graph
    v = max_vocabulary(cfg, model.solver, limit, backend="cupy", embedding=0)
    def per_device(vocab):
        embs = list(cfg.embeddings)
        embs[0] = dataclasses.replace(embs[0], max_vocabulary_size_per_gpu=vocab)
        return estimate_memory(dataclasses.replace(cfg, embeddings=tuple(embs)), model.solver,
                               backend="cupy").per_device

    assert per_device(v) <= limit < per_device(v + 1)
    # a row costs E=8 float32 values, Adam's two states and two hash slots of a uint32 key and an int64 row
    per_row = 8 * 4 * 3 + 2 * (4 + 8)
    assert abs(v - (limit - per_device(1)) / per_row) < 0.01 * v
