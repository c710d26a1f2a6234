"""Real GPUs (the GPU lane, on machines with 2 or 4 GPUs): NCCL collectives equal the in-process
reference; training on G GPUs in one process, and on 2 GPUs as two MPI processes, matches one GPU."""

import numpy as np
import pytest
from test_mpi import CASES, ITERATIONS, mpiexec, norm_case, one_hot_case, run

from hugectr_lab.backend import InProcessCommunicator, get_backend, visible_gpu_count
from hugectr_lab.backend.comm import ProcessGroup, create_communicator
from hugectr_lab.embedding import read_sparse_model_file

pytestmark = pytest.mark.gpu


def needs_gpus(n):
    return pytest.mark.skipif(visible_gpu_count() < n, reason=f"needs {n} GPUs (the nvidia-h100-x{n} machine)")


@pytest.mark.parametrize("G", [2, 4])
def test_nccl_collectives_match_the_in_process_reference(G):
    if visible_gpu_count() < G:
        pytest.skip(f"needs {G} GPUs")
    import cupy

    comm = create_communicator([list(range(G))], get_backend("cupy", list(range(G))), ProcessGroup())
    assert type(comm).__name__ == "NcclCommunicator" and comm.local_devices == tuple(range(G))
    rng = np.random.default_rng(G)
    full = [rng.normal(size=(G * 5, 3)).astype(np.float32) for _ in range(G)]
    part = [rng.normal(size=(5, 3)).astype(np.float16) for _ in range(G)]
    a2a = [[rng.normal(size=(src + 1, dst + 2)).astype(np.float32) for dst in range(G)] for src in range(G)]

    def on_gpus(arrays):
        out = []
        for g, a in enumerate(arrays):
            with cupy.cuda.Device(g):
                out.append(cupy.asarray(a))
        return out

    ref = InProcessCommunicator(G)
    pairs = [(comm.all_reduce(on_gpus(full)), ref.all_reduce(full)),
             (comm.reduce_scatter(on_gpus(full)), ref.reduce_scatter(full)),
             (comm.all_gather(on_gpus(part)), ref.all_gather(part)),
             (comm.broadcast(on_gpus(part), root=G - 1), ref.broadcast(part, root=G - 1))]
    for got, want in pairs:
        for g, (a, b) in enumerate(zip(got, want)):
            assert a.device.id == g
            np.testing.assert_allclose(cupy.asnumpy(a), b, rtol=1e-6, atol=1e-6)
    shapes = [[a2a[src][dst].shape for src in range(G)] for dst in range(G)]
    got = comm.all_to_all([on_gpus(row) for row in a2a], shapes)
    for dst in range(G):
        for src in range(G):
            np.testing.assert_array_equal(cupy.asnumpy(got[dst][src]), a2a[src][dst])


def assert_close_runs(many, many_files, one, one_files, embedding, rtol=1e-5):
    np.testing.assert_allclose(many["losses"], one["losses"], rtol=rtol)
    dense = [np.fromfile(f"{files}_dense_{ITERATIONS}.model", dtype=np.float32) for files in (many_files, one_files)]
    np.testing.assert_allclose(dense[0], dense[1], rtol=1e-4, atol=1e-6)
    vec = 16 if embedding.endswith("OneHot") else 8
    models = [read_sparse_model_file(f"{files}0_sparse_{ITERATIONS}.model", key_type="I32", vec_size=vec,
                                     with_slot_id=embedding.startswith("Localized")) for files in (many_files, one_files)]
    (ka, va, *_), (kb, vb, *_) = models
    np.testing.assert_array_equal(np.sort(ka), np.sort(kb))
    np.testing.assert_allclose(va[np.argsort(ka)], vb[np.argsort(kb)], rtol=1e-4, atol=1e-6)


def case(tmp_path, embedding):
    return one_hot_case(tmp_path) if embedding.endswith("OneHot") else norm_case(tmp_path, embedding)


@pytest.mark.parametrize("G", [2, 4])
@pytest.mark.parametrize("embedding", CASES)
def test_training_on_g_gpus_matches_one_gpu(tmp_path, monkeypatch, embedding, G):
    if visible_gpu_count() < G:
        pytest.skip(f"needs {G} GPUs")
    monkeypatch.chdir(tmp_path)
    config, solver_kw = case(tmp_path, embedding)
    many, many_files = run(tmp_path, "many", [list(range(G))], config, solver_kw, backend="cupy")
    one, one_files = run(tmp_path, "one", [[0]], config, solver_kw, backend="cupy")
    assert many["local_devices"] == [list(range(G))]
    assert_close_runs(many, many_files, one, one_files, embedding)


@needs_gpus(2)
@pytest.mark.parametrize("embedding", CASES)
def test_two_mpi_processes_with_nccl_match_one_process(tmp_path, monkeypatch, embedding):
    if mpiexec() is None:
        pytest.skip("no MPI launcher")
    monkeypatch.chdir(tmp_path)
    config, solver_kw = case(tmp_path, embedding)
    split, split_files = run(tmp_path, "split", [[0], [1]], config, solver_kw, processes=2, backend="cupy")
    alone, alone_files = run(tmp_path, "alone", [[0, 1]], config, solver_kw, backend="cupy")
    assert split["processes"] == 2 and split["local_devices"] == [[0], [1]]
    assert_close_runs(split, split_files, alone, alone_files, embedding, rtol=1e-6)
