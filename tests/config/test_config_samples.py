"""Our equivalents of HugeCTR v3.0's sample configs parse, carry the right values, and round-trip."""

import json
from pathlib import Path

import pytest

from hugectr_lab.config import (EMBEDDING_TYPES, LAYER_TYPES_FP32, LAYER_TYPES_MIXED, BatchNormParams,
                                DropoutParams, InnerProductParams, LayerSpec, MultiCrossParams, NoParams,
                                ReduceParams, ReshapeParams, SliceParams, WeightMultiplyParams, parse_config)

CONFIG_DIR = Path(__file__).parent / "configs"
SAMPLES = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def test_every_sample_graph_is_here():
    assert SAMPLES == ["criteo", "criteo_multi_slots", "dcn", "dcn_inference", "deepfm", "dlrm_fp16", "dlrm_fp32",
                       "wdl"]


@pytest.mark.parametrize("name", SAMPLES)
def test_round_trip_is_identity(name):
    cfg = parse_config(CONFIG_DIR / f"{name}.json")
    assert cfg.source_path == str(CONFIG_DIR / f"{name}.json")
    out = cfg.to_json()
    assert parse_config(out) == cfg
    assert parse_config(json.dumps(out)) == cfg          # JSON text, too
    assert parse_config(out).to_json() == out           # and to_json is a fixed point


@pytest.mark.parametrize("name", SAMPLES)
def test_path_text_and_dict_agree(name, sample):
    path = CONFIG_DIR / f"{name}.json"
    assert parse_config(str(path)) == parse_config(path.read_text()) == parse_config(sample(name))


def test_dcn():
    cfg = parse_config(CONFIG_DIR / "dcn.json")
    s = cfg.solver
    assert (s.vvgpu, s.num_gpus, s.batchsize, s.batchsize_eval, s.max_iter, s.num_epochs) == (
        ((0, 1, 2, 3),), 4, 16384, 16384, 2300, 0)
    assert (s.max_eval_batches, s.display, s.eval_interval, s.snapshot, s.snapshot_prefix) == (300, 200, 1000,
                                                                                                10000000, "./")
    assert s.repeat_dataset and not s.use_mixed_precision and s.scaler == 1.0 and not s.i64_input_key
    assert s.metrics_spec == {"AUC": 1.0} and s.algorithm_search and s.cuda_graph
    o = cfg.optimizer
    assert (o.type, o.update_type, o.learning_rate, o.beta1, o.beta2, o.epsilon) == ("Adam", "Global", 0.001, 0.9,
                                                                                      0.999, 1e-7)
    d = cfg.data
    assert (d.format, d.source, d.eval_source, d.check) == ("Norm", "./data/file_list.txt",
                                                            "./data/file_list_test.txt", "Sum")
    assert (d.label.top, d.label.label_dim, d.dense.top, d.dense.dense_dim) == ("label", 1, "dense", 13)
    assert cfg.sparse_input("data1").max_nnz == 30 and cfg.total_slot_num == 26
    (emb,) = cfg.embeddings
    assert (emb.type, emb.bottom, emb.top, emb.max_vocabulary_size_per_gpu, emb.embedding_vec_size,
            emb.combiner, emb.optimizer) == ("DistributedSlotSparseEmbeddingHash", "data1", "sparse_embedding1",
                                             361938, 16, "sum", None)
    assert cfg.optimizer_for(emb) is cfg.optimizer
    by_name = {layer.name: layer for layer in cfg.layers}
    assert by_name["reshape1"].params == ReshapeParams(leading_dim=416)
    assert by_name["concat1"] == LayerSpec("Concat", "concat1", ("reshape1", "dense"), ("concat1",), NoParams())
    assert by_name["slice1"].params == SliceParams(ranges=((0, 429), (0, 429)))
    assert by_name["slice1"].tops == ("slice11", "slice12")
    assert by_name["multicross1"].params == MultiCrossParams(num_layers=6)
    assert by_name["fc1"].params == InnerProductParams(num_output=1024, weight_init=None, bias_init=None)
    assert by_name["dropout1"].params == DropoutParams(rate=0.5)
    assert by_name["loss"].bottoms == ("fc4", "label") and by_name["loss"].params.regularizer is None
    assert [layer.type for layer in cfg.layers].count("InnerProduct") == 3


def test_deepfm():
    cfg = parse_config(CONFIG_DIR / "deepfm.json")
    by_name = {layer.name: layer for layer in cfg.layers}
    assert cfg.embeddings[0].embedding_vec_size == 11
    assert by_name["slice1"].params.ranges == ((0, 10), (10, 11))
    assert by_name["weight_multiply1"].params == WeightMultiplyParams(weight_dims=(13, 10), weight_init="XavierUniform")
    assert by_name["fmorder2"].params.out_dim == 10
    assert by_name["reducesum1"].params == ReduceParams(axis=1)
    assert by_name["add"].bottoms == ("fc4", "reducesum1", "reducesum2")


def test_wdl_has_two_sparse_inputs():
    cfg = parse_config(CONFIG_DIR / "wdl.json")
    assert [s.top for s in cfg.data.sparse] == ["wide_data", "deep_data"]
    assert [s.slot_num for s in cfg.data.sparse] == [1, 26] and cfg.total_slot_num == 27
    assert [(e.bottom, e.embedding_vec_size) for e in cfg.embeddings] == [("wide_data", 1), ("deep_data", 16)]
    assert cfg.sparse_input("wide_data").type == "DistributedSlot"
    with pytest.raises(KeyError, match="deep"):
        cfg.sparse_input("nope")


@pytest.mark.parametrize("name, fp16", [("dlrm_fp32", False), ("dlrm_fp16", True)])
def test_dlrm(name, fp16):
    cfg = parse_config(CONFIG_DIR / f"{name}.json")
    assert cfg.mixed_precision is fp16 and cfg.solver.use_mixed_precision is fp16
    assert cfg.solver.scaler == (1024.0 if fp16 else 1.0)
    assert cfg.solver.metrics_spec == {"AUC": 0.8025} and cfg.solver.num_gpus == 8
    d = cfg.data
    assert (d.format, d.check, d.num_samples, d.eval_num_samples, d.float_label_dense) == (
        "Raw", "None", 36634624, 4584062, False)
    assert len(d.slot_size_array) == 26 and d.slot_offsets[:3] == (0, 1459, 1459 + 583)
    assert d.sparse[0].max_nnz == 1 and d.sparse[0].type == "LocalizedSlot"
    assert d.cache_eval_data == (70 if fp16 else 0)
    (emb,) = cfg.embeddings
    assert emb.type == "LocalizedSlotSparseEmbeddingOneHot" and emb.slot_size_array == d.slot_size_array
    assert emb.embedding_vec_size == 128 and emb.max_vocabulary_size_per_gpu is None
    o = cfg.optimizer
    assert (o.type, o.update_type, o.atomic_update, o.warmup_steps, o.end_lr) == ("SGD", "Local", True, 300, 0.0)
    assert o.learning_rate == (1.0 if fp16 else 0.5)
    types = [layer.type for layer in cfg.layers]
    assert "Interaction" in types
    assert types.count("FusedInnerProduct") == (7 if fp16 else 0)
    assert set(types) <= (LAYER_TYPES_MIXED if fp16 else LAYER_TYPES_FP32)


@pytest.mark.parametrize("name, slots, combiner, leading", [("criteo", 1, "sum", 64),
                                                            ("criteo_multi_slots", 10, "mean", 640)])
def test_criteo(name, slots, combiner, leading):
    cfg = parse_config(CONFIG_DIR / f"{name}.json")
    assert cfg.optimizer.update_type == "Local"  # from the legacy "global_update": false
    assert cfg.data.dense.dense_dim == 0 and cfg.total_slot_num == slots
    assert cfg.embeddings[0].combiner == combiner and cfg.embeddings[0].embedding_vec_size == 64
    assert cfg.layers[0].params.leading_dim == leading


def test_inference_config():
    cfg = parse_config(CONFIG_DIR / "dcn_inference.json", require=("inference", "layers"))
    inf = cfg.inference
    assert cfg.solver is None and cfg.optimizer is None
    assert (inf.max_batchsize, inf.hit_rate_threshold, inf.dense_model_file) == (
        64, 0.6, "./model/dcn/_dense_10000.model")
    assert inf.sparse_model_files == ("./model/dcn/0_sparse_10000.model",)
    assert not inf.i64_input_key and not inf.use_mixed_precision and inf.algorithm_search
    assert inf.cuda_graph   # HugeCTR's default: the captured predict path on CuPy (docs/inference.md)
    d = cfg.data
    assert d.source is None and d.check is None and d.label.top is None and d.label.label_dim == 1
    assert cfg.layers[-1].type == "Sigmoid" and all(layer.type != "BinaryCrossEntropyLoss" for layer in cfg.layers)
    assert cfg.embeddings[0].default_emb_vec_value == 0.0


def test_to_json_is_hugectr_style(sample):
    out = parse_config(CONFIG_DIR / "dlrm_fp16.json").to_json()
    assert out["optimizer"]["update_type"] == "Local" and out["optimizer"]["sgd_hparam"]["atomic_update"] is True
    assert out["layers"][1]["sparse_embedding_hparam"]["combiner"] == 0
    assert out["layers"][2] == {"name": "fc1", "type": "FusedInnerProduct", "bottom": "dense", "top": "fc1",
                                "fc_param": {"num_output": 512}}
    assert out["solver"]["eval_metrics"] == ["AUC:0.8025"] and out["solver"]["mixed_precision"] == 1024
    assert out["solver"]["gpu"] == list(range(8))
    inference = parse_config(CONFIG_DIR / "dcn_inference.json").to_json()["inference"]
    assert inference["max_batchsize"] == 64 and "label" not in inference


def test_per_embedding_optimizer_and_v31_additions(sample):
    cfg = sample("wdl")
    cfg["layers"][1]["optimizer"] = {"type": "AdaGrad", "update_type": "Local",
                                     "adagrad_hparam": {"learning_rate": 0.01, "initial_accu_value": 0.1,
                                                        "epsilon": 1e-7}}
    cfg["layers"][-2:-1] = [
        {"type": "ElementwiseMultiply", "bottom": ["fc3", "reshape2"], "top": "prod"},
        {"type": "Softmax", "bottom": "prod", "top": "soft"},
        {"type": "ReduceMean", "bottom": "soft", "top": "add1", "axis": 1},
    ]
    parsed = parse_config(cfg)
    own = parsed.embeddings[0].optimizer
    assert (own.type, own.learning_rate, own.initial_accu_value) == ("AdaGrad", 0.01, 0.1)
    assert parsed.optimizer_for(parsed.embeddings[0]) is own
    assert parsed.optimizer_for(parsed.embeddings[1]) is parsed.optimizer
    assert [layer.type for layer in parsed.layers[-4:-1]] == ["ElementwiseMultiply", "Softmax", "ReduceMean"]
    assert parse_config(parsed.to_json()) == parsed


def test_precision_keyword_overrides_the_solver(sample):
    cfg = sample("dcn")
    cfg["layers"][5:6] = [{"name": "bn", "type": "BatchNorm", "bottom": "slice11", "top": "multicross1",
                           "bn_param": {"factor": 1.0, "eps": 1e-5, "gamma_init": "Zero"}}]
    fp16 = parse_config(cfg, mixed_precision=True)
    assert fp16.mixed_precision and not fp16.solver.use_mixed_precision
    assert fp16.layers[3].params == BatchNormParams(factor=1.0, eps=1e-5, gamma_init="Zero", beta_init=None)
    assert parse_config(fp16.to_json(), mixed_precision=True) == fp16
    assert not parse_config(sample("dlrm_fp32"), mixed_precision=False).mixed_precision
    with pytest.raises(ValueError, match="FusedInnerProduct needs mixed precision"):
        parse_config(sample("dlrm_fp16"), mixed_precision=False)


def test_clauses_are_optional_unless_required(sample):
    cfg = sample("dcn")
    only_layers = parse_config({"layers": cfg["layers"]})
    assert only_layers.solver is None and only_layers.optimizer is None and only_layers.inference is None
    solver_only = parse_config({"solver": cfg["solver"]}, require=("solver",))
    assert solver_only.data is None and solver_only.layers == () and solver_only.total_slot_num == 0
    assert solver_only.to_json() == {"solver": solver_only.to_json()["solver"]}
    with pytest.raises(ValueError, match="unknown clause names"):
        parse_config(cfg, require=("solvr",))
    cfg["solver"]["eval_batches"] = 300  # a pre-v3.0 key that HugeCTR's Session never sees
    assert parse_config(cfg, ignore=("solver",)).solver is None


def test_sets_of_layer_types():
    assert "FusedInnerProduct" in LAYER_TYPES_MIXED - LAYER_TYPES_FP32
    assert LAYER_TYPES_FP32 - LAYER_TYPES_MIXED == {"CrossEntropyLoss", "MultiCrossEntropyLoss"}
    assert {"ElementwiseMultiply", "Softmax", "Sub", "ReduceMean"} <= LAYER_TYPES_FP32 & LAYER_TYPES_MIXED
    assert len(EMBEDDING_TYPES) == 3 and not EMBEDDING_TYPES & LAYER_TYPES_FP32
