"""Several processes under MPI (mpi4py + mpiexec) train exactly like the same devices in one process.

Each case trains the same data from the same starting model with vvgpu [[0, 1, 2, 3]] in one process,
[[0, 1], [2, 3]] as two MPI processes, and [[0]]: the two G = 4 runs must agree bit for bit (losses,
metrics, every model file), and G = 4 must match G = 1 up to float rounding.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from session_helpers import dnn_config, make_dataset, optimizer, write_config, write_full_sparse_model
from test_session_formats import shrunk_dlrm

from hugectr_lab.backend.comm import mpiexec_command
from hugectr_lab.data import generate_for_config
from hugectr_lab.embedding import read_sparse_model_file, write_sparse_model_file

WORKER = Path(__file__).with_name("mpi_worker.py")
ROOT = Path(__file__).parents[2]
ITERATIONS = 6


def mpiexec():
    """The MPI launcher (``hugectr_lab.backend.comm.mpiexec_command``), None if there is none."""
    found = mpiexec_command(2, [])
    return found and found[0][0]


needs_mpi = pytest.mark.skipif(
    mpiexec() is None or __import__("importlib.util").util.find_spec("mpi4py") is None,
    reason="needs mpi4py and an MPI launcher (pip install 'hugectr-lab[mpi]' mpich)")
pytestmark = needs_mpi


def launch(command, processes, **kwargs):
    """Run ``command`` (argv), under ``mpiexec -n processes`` if more than one, from this checkout."""
    env = dict(os.environ)
    if processes > 1:
        command, env = mpiexec_command(processes, command)
    env.pop("HUGECTR_LAB_BACKEND", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))   # an uninstalled checkout
    done = subprocess.run(command, capture_output=True, text=True, env=env, **kwargs)
    if done.returncode:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def run(workdir, name, vvgpu, config, solver_kw, processes=1, backend="numpy"):
    """Train in a fresh process (or ``processes`` MPI processes); returns (result dict, file prefix)."""
    prefix = str(workdir / name) + "/"
    os.makedirs(prefix, exist_ok=True)
    spec = {"workdir": str(workdir), "config": config, "iterations": ITERATIONS, "prefix": prefix, "backend": backend,
            "result": str(workdir / f"{name}.json"),
            "solver": {"seed": 11, "batchsize": 64, "batchsize_eval": 64, "vvgpu": vvgpu, "repeat_dataset": True,
                       "max_eval_batches": 4, **solver_kw}}
    (workdir / f"{name}.spec.json").write_text(json.dumps(spec))
    launch([sys.executable, str(WORKER), str(workdir / f"{name}.spec.json")], processes, timeout=120)
    return json.loads((workdir / f"{name}.json").read_text()), prefix


def norm_case(workdir, embedding):
    make_dataset(workdir, samples=1024, vocab=40)
    localized = embedding.startswith("Localized")
    model, _ = write_full_sparse_model(workdir / "start.model", 8, vocab_per_slot=40 if localized else None)
    config = write_config(workdir / "model.json", dnn_config(embedding=embedding, vocab=400,
                                                             opt=optimizer("Adam", 0.01, "Global")))
    return config, {"embedding_files": [model]}


def one_hot_case(workdir):
    config = shrunk_dlrm("dlrm_fp32.json", "./data")
    path = write_config(workdir / "dlrm.json", config)
    generate_for_config(path, samples_per_file=1024, seed=1, progress=False)
    sizes = config["layers"][0]["slot_size_array"]
    keys = np.arange(sum(sizes), dtype=np.uint32)
    slots = np.repeat(np.arange(len(sizes)), sizes).astype(np.uint64)
    vectors = np.random.default_rng(0).uniform(-0.05, 0.05, (keys.size, 16)).astype(np.float32)
    write_sparse_model_file(workdir / "start.model", keys, vectors, slots, key_type="I32")
    return path, {"embedding_files": [str(workdir / "start.model")]}


CASES = ["DistributedSlotSparseEmbeddingHash", "LocalizedSlotSparseEmbeddingHash",
         "LocalizedSlotSparseEmbeddingOneHot"]


@pytest.mark.parametrize("embedding", CASES)
def test_two_mpi_processes_match_one_process(tmp_path, monkeypatch, embedding):
    monkeypatch.chdir(tmp_path)
    if embedding.endswith("OneHot"):
        config, solver_kw = one_hot_case(tmp_path)
    else:
        config, solver_kw = norm_case(tmp_path, embedding)
    alone, alone_files = run(tmp_path, "alone", [[0, 1, 2, 3]], config, solver_kw)
    split, split_files = run(tmp_path, "split", [[0, 1], [2, 3]], config, solver_kw, processes=2)
    single, single_files = run(tmp_path, "single", [[0]], config, solver_kw)

    assert split["processes"] == 2 and split["local_devices"] == [[0, 1], [2, 3]]
    assert alone["processes"] == 1 and alone["local_devices"] == [[0, 1, 2, 3]]
    assert split["losses"] == alone["losses"]
    assert split["metrics"] == alone["metrics"] and split["params"] == alone["params"]
    names = sorted(os.listdir(alone_files))
    assert names == sorted(os.listdir(split_files)) and len(names) >= 4
    for name in names:
        a, b = Path(alone_files, name), Path(split_files, name)
        if name.endswith(".manifest.json"):   # the save's time and temporary names differ by design
            assert [e["name"] for e in json.loads(a.read_text())["files"]] == \
                [e["name"] for e in json.loads(b.read_text())["files"]]
        elif a.is_file():
            assert a.read_bytes() == b.read_bytes(), name
        else:
            assert sorted(os.listdir(a)) == sorted(os.listdir(b))
            for part in os.listdir(a):
                assert (a / part).read_bytes() == (b / part).read_bytes(), f"{name}/{part}"

    np.testing.assert_allclose(alone["losses"], single["losses"], rtol=2e-5)
    assert alone["losses"][-1] != alone["losses"][0]
    np.testing.assert_allclose(alone["metrics"][0][1], single["metrics"][0][1], atol=1e-4)
    dense = {run: np.fromfile(Path(files, f"_dense_{ITERATIONS}.model"), dtype=np.float32)
             for run, files in (("alone", alone_files), ("single", single_files))}
    np.testing.assert_allclose(dense["alone"], dense["single"], rtol=1e-4, atol=1e-6)
    vec = 16 if embedding.endswith("OneHot") else 8
    with_slots = embedding.startswith("Localized")
    models = [read_sparse_model_file(Path(files, f"0_sparse_{ITERATIONS}.model"), key_type="I32", vec_size=vec,
                                     with_slot_id=with_slots) for files in (alone_files, single_files)]
    (keys_a, vectors_a, *_), (keys_s, vectors_s, *_) = models
    order_a, order_s = np.argsort(keys_a), np.argsort(keys_s)
    np.testing.assert_array_equal(keys_a[order_a], keys_s[order_s])
    np.testing.assert_allclose(vectors_a[order_a], vectors_s[order_s], rtol=1e-4, atol=1e-6)


def test_process_count_must_match_the_node_lists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config, solver_kw = norm_case(tmp_path, "DistributedSlotSparseEmbeddingHash")
    with pytest.raises(AssertionError, match="MPI total rank doesn't match the node count: 2 processes"):
        run(tmp_path, "wrong", [[0, 1, 2, 3]], config, solver_kw, processes=2)
