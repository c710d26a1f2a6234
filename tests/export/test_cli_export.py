"""``hugectr-lab export-onnx``: an inference config and its model files to an ONNX file, checked by onnxruntime."""

import json

import pytest

from model_api_helpers import sample_script
from sample_scripts import run_sample

from hugectr_lab import cli
from hugectr_lab.data import read_norm_file
from hugectr_lab.inference import inference_config, predict_inputs, write_inference_data

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def test_export_onnx_command_writes_a_file_onnxruntime_agrees_with(workdir, capsys):
    model = run_sample(sample_script("deepfm"), workdir, "deepfm.py")["model"]
    cfg = inference_config("deepfm.json", "deepfm_dense_10.model",
                           ["deepfm0_sparse_10.model", "deepfm1_sparse_10.model"])
    (workdir / "infer.json").write_text(json.dumps(cfg))
    data = model.config.data
    first = (workdir / "data/test.txt").read_text().split()[1]
    samples = read_norm_file(first, "I32", slot_nums=[s.slot_num for s in data.sparse],
                             max_feature_nums=[s.max_feature_num_per_sample for s in data.sparse]).take(0, 50)
    write_inference_data("requests.txt", predict_inputs(samples))
    capsys.readouterr()
    assert cli.main(["export-onnx", "infer.json", "deepfm.onnx", "--check", "requests.txt"]) == 0
    out = capsys.readouterr().out
    assert "wrote deepfm.onnx" in out and "max |difference|" in out
    assert (workdir / "deepfm.onnx").stat().st_size > 0
    assert cli.main(["export-onnx", "missing.json", "x.onnx"]) == 2
