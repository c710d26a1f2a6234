"""Fuzzing the model files a Session loads: the dense model, the dense optimizer state and its step
sidecar, the sparse model file and the files of the sparse optimizer-state directory. Loading returns or
raises a ValueError naming the file (or its directory)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from fuzzing import fuzz_file, mutated

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.session import Session

sys.path.insert(0, str(Path(__file__).parents[1] / "session"))
from session_helpers import dnn_config, make_dataset, write_config  # noqa: E402

FILES = {"dense": "m_dense_1.model", "dense_opt": "m_opt_dense_1.model", "dense_opt_step": "m_opt_dense_1.model.json",
         "sparse": "m0_sparse_1.model", "sparse_opt_meta": "m0_opt_sparse_1.model/meta.json",
         "sparse_opt_keys": "m0_opt_sparse_1.model/key", "sparse_opt_m": "m0_opt_sparse_1.model/m"}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """A config and one saved snapshot of a small Adam model (after two steps)."""
    base = tmp_path_factory.mktemp("snapshot")
    make_dataset(base, files=1, samples=64)
    config = write_config(base / "small.json", dnn_config(vocab=200, vec=4, batchnorm=True))
    solver = solver_parser_helper(batchsize=16, batchsize_eval=16, vvgpu=[[0]], repeat_dataset=True)
    cwd = os.getcwd()
    os.chdir(base)  # the config's data paths are relative
    try:
        session = Session(solver, config)
        session.start_data_reading()
        session.train()
        session.train()
        session.download_params_to_files(str(base / "m"), 1)
        session.close()
    finally:
        os.chdir(cwd)
    for name in FILES.values():
        assert (base / name).exists(), name
    return base


@pytest.mark.parametrize("target", sorted(FILES))
def test_model_file(snapshot, tmp_path, monkeypatch, target):
    monkeypatch.chdir(snapshot)  # the config's data paths are relative to it
    work = tmp_path / "model"
    shutil.copytree(snapshot, work, ignore=shutil.ignore_patterns("data", "small.json"))
    path = work / FILES[target]
    base = path.read_bytes()
    solver = solver_parser_helper(batchsize=16, batchsize_eval=16, vvgpu=[[0]], model_file=str(work / FILES["dense"]),
                                  dense_opt_states_file=str(work / FILES["dense_opt"]),
                                  embedding_files=[str(work / FILES["sparse"])],
                                  sparse_opt_states_file=[str(work / "m0_opt_sparse_1.model")])

    def load():
        Session(solver, str(snapshot / "small.json")).close()

    fuzz_file(f"model-{target.replace('_', '-')}", path, mutated(base), load, ValueError, examples=60,
              names=[path, path.parent])


@pytest.mark.parametrize("target", ["dense", "sparse"])
def test_inference_model_file(tmp_path, target):
    """The same through the inference side: parameter server, embedding cache, InferenceSession and one
    predict on the loaded model."""
    import numpy as np

    from hugectr_lab.inference import CreateEmbeddingCache, CreateParameterServer, InferenceSession

    sys.path.insert(0, str(Path(__file__).parents[1] / "inference"))
    from inference_helpers import table, tiny_model

    config = tiny_model(tmp_path, [table(50)], max_batchsize=4)
    path = tmp_path / ("tiny_dense.model" if target == "dense" else "tiny0_sparse.model")
    base = path.read_bytes()

    def load_and_predict():
        ps = CreateParameterServer([config], ["tiny"], False)
        session = InferenceSession(config, 0, CreateEmbeddingCache(ps, 0, True, 0.5, config, "tiny", False))
        out = session.predict([0.5, 0.5], [1, 7], [0, 1, 2])
        assert np.asarray(out).shape == (1,)

    fuzz_file(f"inference-model-{target}", path, mutated(base), load_and_predict, ValueError, examples=60)
