"""The seed's inference sample program runs unchanged through ``import hugectr``, and
``hugectr-lab predict CONFIG DATA`` prints predictions, AUC and accuracy."""

from pathlib import Path

import numpy as np
import pytest

import hugectr
from hugectr_lab.cli import main
from hugectr_lab.inference import predict_inputs, write_inference_data
from hugectr_lab.metrics import auc
from inference_helpers import Trained, sample_config
from sample_scripts import run_sample

# The seed's inference sample, verbatim (its file names are the ones the test writes).
SEED_INFERENCE = '''
from hugectr.inference import CreateParameterServer, CreateEmbeddingCache, InferenceSession
from mpi4py import MPI
config_file = "your_inference_config.json"
model_name = "your_model_name"
data_path = "your_inference_inputs_data.txt"
use_embedding_cache = True
# read data from file
data_file = open(data_path)
labels = [int(item) for item in data_file.readline().split(' ')]
dense_features = [float(item) for item in data_file.readline().split(' ')]
embedding_columns = [int(item) for item in data_file.readline().split(' ')]
row_ptrs = [int(item) for item in data_file.readline().split(' ')]
# create parameter server, embedding cache and inference session
parameter_server = CreateParameterServer([config_file], [model_name], False)
embedding_cache = CreateEmbeddingCache(parameter_server, 0, use_gpu_embedding_cache, 0.2, config_file, model_name, False)
inference_session = InferenceSession(config_file, 0, embedding_cache)
# make prediction and calculate accuracy
output = inference_session.predict(dense_features, embedding_columns, row_ptrs)
'''


@pytest.fixture
def dcn_files(tmp_path, monkeypatch):
    """A trained DCN, its inference config and a 4-line data file of 128 eval samples (as in the notebook)."""
    monkeypatch.chdir(tmp_path)
    trained = Trained(sample_config("dcn"), steps=3)
    trained.write_inference_config("your_inference_config.json", max_batchsize=64)
    inputs = predict_inputs(trained.eval_samples().take(0, 128))
    write_inference_data("your_inference_inputs_data.txt", inputs)
    expected = trained.eval_predictions()[:128]
    trained.close()
    return tmp_path, inputs, expected


def run_seed_program(workdir):
    # The seed passes an undefined name: its typo for ``use_embedding_cache``, defined here.
    return run_sample(SEED_INFERENCE, workdir, "seed_inference.py", {"use_gpu_embedding_cache": True})


def check_seed_output(namespace, inputs, expected, atol=1e-6):
    output = namespace["output"]
    assert isinstance(output, list) and len(output) == 128 and all(isinstance(p, float) for p in output)
    np.testing.assert_allclose(np.array(output, np.float32), expected, rtol=0, atol=atol)
    accuracy = np.mean((np.array(output) > 0.5) == (np.array(namespace["labels"]) == 1))
    assert 0 <= accuracy <= 1 and namespace["labels"] == inputs.labels.astype(int).tolist()
    assert namespace["embedding_cache"].stats()[0].lookups > 0


def test_seed_inference_program_runs_on_the_numpy_backend(dcn_files):
    workdir, inputs, expected = dcn_files
    namespace = run_seed_program(workdir)
    assert namespace["inference_session"].backend.name == "numpy"
    check_seed_output(namespace, inputs, expected)


@pytest.mark.gpu
def test_seed_inference_program_runs_on_the_cupy_backend(dcn_files, monkeypatch):
    workdir, inputs, expected = dcn_files
    monkeypatch.setenv("HUGECTR_LAB_BACKEND", "cupy")
    namespace = run_seed_program(workdir)
    assert namespace["inference_session"].backend.name == "cupy"
    check_seed_output(namespace, inputs, expected, atol=2e-5)   # cuBLAS vs NumPy GEMM rounding


def test_hugectr_inference_module():
    assert hugectr.inference.CreateParameterServer is not None
    assert {"CreateParameterServer", "CreateEmbeddingCache", "InferenceSession"} <= set(dir(hugectr.inference))
    assert hugectr.inference.InferType.Triton.name == "Triton"


def test_cli_predict_prints_predictions_auc_and_accuracy(dcn_files, capsys):
    _, inputs, expected = dcn_files
    assert main(["predict", "your_inference_config.json", "your_inference_inputs_data.txt",
                 "--cache-percentage", "0.1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    preds = np.array(lines[:128], dtype=np.float64)
    np.testing.assert_allclose(preds, expected, rtol=5e-6, atol=1e-7)
    assert lines[128].startswith("# 128 predictions on numpy; cache: table 0 hit rate")
    accuracy = np.mean((expected > 0.5) == (inputs.labels > 0.5))
    assert lines[129] == f"# AUC {auc(expected, inputs.labels):.6f}, accuracy {accuracy:.6f}"


def test_cli_predict_without_labels_and_with_bad_input(dcn_files, capsys):
    text = Path("your_inference_inputs_data.txt").read_text().splitlines()
    Path("unlabelled.txt").write_text("\n".join(text[1:]) + "\n")
    assert main(["predict", "your_inference_config.json", "unlabelled.txt", "--no-cache"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 129 and out[-1] == "# 128 predictions on numpy"
    Path("broken.txt").write_text("\n".join([text[0], text[1] + " 0.5", text[2], text[3]]) + "\n")
    assert main(["predict", "your_inference_config.json", "broken.txt"]) == 2
    assert "dense_feature has 1665 values; expected num_samples × dense_dim = 128 × 13 = 1664" in \
        capsys.readouterr().err
