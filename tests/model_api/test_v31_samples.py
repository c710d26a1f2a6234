"""HugeCTR v3.1's sample scripts (DCN, WDL, DeepFM, DLRM; scaled down), changed in one import line, train,
save v3.1 model files, export predictions, and serve them through v3.1's inference session."""

import json
import os

import numpy as np
import pytest

from model_api_helpers import inference_script, sample_script
from sample_scripts import run_sample

from hugectr_lab.config import parse_config


@pytest.mark.parametrize("name", ["dcn", "wdl", "deepfm", "dlrm"])
def test_v31_sample_trains_saves_and_serves(workdir, name, capsys):
    ns = run_sample(sample_script(name), workdir, f"{name}.py")
    model = ns["model"]
    # graph_to_json wrote a config that parses back to the model that trained
    assert parse_config(f"{name}.json", ignore=("solver",)) == model.config
    # fit: 10 iterations, a snapshot at 10 (v3.1 sparse models are directories)
    assert model.session.iteration == 10
    assert os.path.isfile(f"{name}_dense_10.model")
    for i in range(2):
        assert os.path.isdir(f"{name}{i}_sparse_10.model")
        assert {"key", "emb_vector"} <= set(os.listdir(f"{name}{i}_sparse_10.model"))
    preds = np.loadtxt(f"{name}_pred_10")
    assert preds.shape == (2 * 128,) and np.all((preds > 0) & (preds < 1))
    # the inference session over the same data reproduces the exported predictions
    served = run_sample(inference_script(name), workdir, f"{name}_inference.py")
    assert served["preds"].shape == preds.shape
    assert served["mse"] < 1e-10
    assert 0.0 <= served["auc"] <= 1.0
    out, err = capsys.readouterr()
    assert "dense parameters" in out and "embedding tables" in out   # summary(): the graph and the estimate
    assert "train: 100%" in err and "10/10" in err                    # fit's tqdm bar outside a notebook


def test_low_level_v31_loop(workdir):
    """v3.1's low-level loop: the solver's max_eval_batches, eval() with the current weights, save at iter 0."""
    script = sample_script("wdl", footer=False) + '''
model.compile()
model.start_data_reading()
lr_sch = model.get_learning_rate_scheduler()
losses = []
for i in range(12):
    lr = lr_sch.get_next()
    model.set_learning_rate(lr)
    model.train()
    if i % 4 == 0:
        losses.append(model.get_current_loss())
    if i % 6 == 0 and i != 0:
        for _ in range(solver.max_eval_batches):
            model.eval()
        metrics = model.get_eval_metrics()
model.save_params_to_files("./")
'''
    ns = run_sample(script, workdir, "wdl_low_level.py")
    assert len(ns["losses"]) == 3 and all(np.isfinite(ns["losses"]))
    assert ns["metrics"][0][0] == "AUC" and 0 <= ns["metrics"][0][1] <= 1
    assert os.path.isfile("./_dense_0.model") and os.path.isdir("./0_sparse_0.model")


def test_v31_names_and_v30_names_are_told_apart():
    import hugectr
    import hugectr.v31 as h31

    assert hugectr.Input is not h31.Input and hugectr.Model is not h31.Model
    assert "AdaGrad" in h31.Optimizer_t.__members__ and "AdaGrad" not in hugectr.Optimizer_t.__members__
    with pytest.raises(TypeError, match="import hugectr.v31 as hugectr"):
        h31.Model(hugectr.solver_parser_helper(), h31.DataReaderParams(h31.DataReaderType_t.Norm, ["x"]),
                  h31.CreateOptimizer())
    with pytest.raises(ValueError, match="nnz_per_slot"):
        h31.DataReaderSparseParam("data1", [1, 2], True, 3)
    with pytest.raises(ValueError, match="HitRate"):
        h31.CreateSolver(metrics_spec={h31.MetricsType.HitRate: 0.8})
    solver = h31.CreateSolver(metrics_spec={h31.MetricsType.AUC: 1.0, h31.MetricsType.AverageLoss: 0.0})
    assert solver.metrics_spec == {"AUC": 1.0, "AverageLoss": 0.0}
    assert solver.max_eval_batches == 100 and solver.lr == 0.001


def test_workspace_size_sets_the_vocabulary(workdir):
    ns = run_sample(sample_script("dcn", footer=False) + "model.compile()\n", workdir, "dcn.py")
    emb = ns["model"].config.embeddings[0]
    assert emb.max_vocabulary_size_per_gpu == 1024 * 1024 // (4 * 8)   # workspace_MB·1024²/(4·vec)
    assert emb.combiner == "sum"
    obj = ns["model"].config_json()
    assert obj["layers"][0]["sparse"][1] == {"top": "deep_data", "type": "DistributedSlot",
                                             "max_feature_num_per_sample": 16, "max_nnz": 2, "slot_num": 8}
    assert json.dumps(obj)   # plain JSON


def test_objects_of_the_other_version_are_refused(workdir):
    import hugectr
    import hugectr.v31 as h31

    ns = run_sample(sample_script("wdl", footer=False), workdir, "wdl.py")
    v30_input = hugectr.Input(data_reader_type=hugectr.DataReaderType_t.Norm, source="a", eval_source="b",
                              check_type=hugectr.Check_t.Sum, label_dim=1, label_name="label", dense_dim=13,
                              dense_name="dense", sparse_names=["d"], data_reader_sparse_param_array=[
                                  hugectr.DataReaderSparseParam(hugectr.DataReaderSparse_t.Distributed, 2, 1, 2)])
    with pytest.raises(TypeError, match=r"v3.0 object given to a v3.1 Model.*import hugectr.v31 as hugectr"):
        ns["model"].add(v30_input)
    v30 = hugectr.Model(hugectr.solver_parser_helper(), hugectr.optimizer.CreateOptimizer(use_mixed_precision=False))
    with pytest.raises(TypeError, match="v3.1 object given to a v3.0 Model"):
        v30.add(h31.Input(1, "label", 13, "dense", [h31.DataReaderSparseParam("d", 1, True, 2)]))


def test_construct_from_json_takes_the_reader_from_data_reader_params(workdir):
    """v3.1: the graph's tensors come from the JSON, the sources from DataReaderParams."""
    run_sample(sample_script("dcn"), workdir, "dcn.py")
    script = sample_script("dcn", footer=False).split("model.add(")[0].replace(
        '"./data/train.txt"', '"./data/train_again.txt"')
    (workdir / "data/train_again.txt").write_text((workdir / "data/train.txt").read_text())
    ns = run_sample(script + 'model.construct_from_json("dcn.json", include_dense_network=True)\nmodel.compile()\n',
                    workdir, "dcn_from_json.py")
    model = ns["model"]
    assert model.config.data.source == "./data/train_again.txt"
    assert parse_config("dcn.json", ignore=("solver",)).layers == model.config.layers
    model.start_data_reading()
    assert model.train()


def test_v31_model_trains_bit_identically_to_its_graph_json(workdir):
    from hugectr_lab.session import Session

    model = run_sample(sample_script("deepfm", footer=False) + "model.compile()\nmodel.graph_to_json('g.json')\n",
                       workdir, "deepfm.py")["model"]
    twin = Session(model.solver, "g.json")
    model.start_data_reading()
    twin.start_data_reading()
    for _ in range(6):
        assert model.train() and twin.train()
        assert model.get_current_loss() == twin.get_current_loss()
    assert np.array_equal(np.asarray(model.session.train_networks[0].weights),
                          np.asarray(twin.train_networks[0].weights))
    for a, b in zip(model.session.embeddings, twin.embeddings):
        (ka, va, _), (kb, vb, _) = a.dump(), b.dump()
        assert np.array_equal(ka, kb) and np.array_equal(va, vb)
    twin.close()
