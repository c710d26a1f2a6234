"""Broken configs: each error starts with the JSON path of the offending key; unknown keys only warn."""

import json
import re
import warnings
from pathlib import Path

import pytest

from hugectr_lab.config import ConfigError, ConfigWarning, parse_config

CONFIG_DIR = Path(__file__).parent / "configs"

DELETE = object()


def _walk(cfg, path):
    """The container holding the last step of ``path`` (``layers[6].fc_param.num_output``) and that step."""
    steps = [int(i) if i else k for k, i in re.findall(r"(\w+)|\[(\d+)\]", path)]
    node = cfg
    for step in steps[:-1]:
        node = node[step]
    return node, steps[-1]


def mutate(cfg, edits):
    for path, value in edits.items():
        node, last = _walk(cfg, path)
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return cfg


BN = {"type": "BatchNorm", "bottom": "fc1", "top": "relu1", "bn_param": {"factor": 1.0}}
SGD_PLAIN = {"type": "SGD", "sgd_hparam": {"learning_rate": 0.1}}
SPARSE_LOCAL = {"top": "data1", "type": "LocalizedSlot", "max_feature_num_per_sample": 30, "slot_num": 26}

# (id, sample, edits, expected path, a fragment of the message). DCN: layers[1] embedding, [2] reshape1,
# [3] concat1, [4] slice1, [5] multicross1, [6] fc1, [7] relu1, [8] dropout1, [9] fc2, [14] loss.
CASES = [
    # solver
    ("no eval batches", "dcn", {"solver.max_eval_batches": DELETE}, "solver.max_eval_batches", "is required"),
    ("both eval limits", "dcn", {"solver.max_eval_samples": 1000000}, "solver.max_eval_samples", "cannot be combined"),
    ("deprecated eval_batches", "dcn", {"solver.eval_batches": 10}, "solver.eval_batches", "replaced"),
    ("max_iter and num_epochs", "dcn", {"solver.num_epochs": 1}, "solver.num_epochs", "cannot be combined"),
    ("eval samples below one batch", "dcn", {"solver.max_eval_batches": DELETE, "solver.max_eval_samples": 100},
     "solver.max_eval_samples", "at least batchsize_eval"),
    ("bad scaler", "dcn", {"solver.mixed_precision": 100}, "solver.mixed_precision", "128, 256, 512, 1024"),
    ("tf32 with fp16", "dlrm_fp16", {"solver.enable_tf32_compute": True}, "solver.enable_tf32_compute", "mixed"),
    ("negative gpu", "dcn", {"solver.gpu": [0, -1]}, "solver.gpu[1]", "non-negative GPU id"),
    ("duplicate gpu in a node", "dcn", {"solver.gpu": [[0, 1], [2, 2]]}, "solver.gpu[1]", "GPU 2 more than once"),
    ("batch not divisible", "dcn", {"solver.batchsize": 16386}, "solver.batchsize",
     "divisible by the number of GPUs (4)"),
    ("lr_policy", "dcn", {"solver.lr_policy": "step"}, "solver.lr_policy", '"fixed"'),
    ("key type", "dcn", {"solver.input_key_type": "I16"}, "solver.input_key_type", '"I32", "I64"'),
    ("metric twice", "dcn", {"solver.eval_metrics": ["AUC", "AUC:0.5"]}, "solver.eval_metrics[1]", "second time"),
    ("metric threshold", "dcn", {"solver.eval_metrics": ["AUC:1.5"]}, "solver.eval_metrics[0]", '"AUC:1.5"'),
    ("display missing", "dcn", {"solver.display": DELETE}, "solver.display", "is required"),
    ("bool not string", "dcn", {"solver.cuda_graph": "yes"}, "solver.cuda_graph", "true or false"),
    ("batchsize float", "dcn", {"solver.batchsize": 16384.0}, "solver.batchsize", "positive integer, got 16384.0"),
    # optimizer
    ("lr missing", "dcn", {"optimizer.adam_hparam.learning_rate": DELETE}, "optimizer.adam_hparam.learning_rate",
     "is required"),
    ("lr zero", "dcn", {"optimizer.adam_hparam.learning_rate": 0}, "optimizer.adam_hparam.learning_rate", "positive"),
    ("optimizer type", "dcn", {"optimizer.type": "RMSProp"}, "optimizer.type", '"Adam"'),
    ("update type case", "dcn", {"optimizer.update_type": "global"}, "optimizer.update_type", '"LazyGlobal"'),
    ("beta1 one", "dcn", {"optimizer.adam_hparam.beta1": 1.0}, "optimizer.adam_hparam.beta1", "[0, 1)"),
    ("hparam of another type", "dcn", {"optimizer.type": "SGD"}, "optimizer.sgd_hparam", "is required"),
    ("warmup zero", "dcn", {"optimizer.adam_hparam.warmup_steps": 0}, "optimizer.adam_hparam.warmup_steps",
     "positive"),
    ("decay power", "dcn", {"optimizer.adam_hparam.decay_power": 0.5}, "optimizer.adam_hparam.decay_power", ">= 1"),
    ("momentum missing", "dcn", {"optimizer": {"type": "MomentumSGD", "momentum_sgd_hparam": {"learning_rate": 0.1}}},
     "optimizer.momentum_sgd_hparam.momentum_factor", "is required"),
    ("adagrad accu missing", "dcn", {"optimizer": {"type": "AdaGrad", "adagrad_hparam": {"learning_rate": 0.1,
                                                                                         "epsilon": 1e-7}}},
     "optimizer.adagrad_hparam.initial_accu_value", "is required"),
    # Data layer
    ("slot_num zero", "dcn", {"layers[0].sparse[0].slot_num": 0}, "layers[0].sparse[0].slot_num", "got 0"),
    ("no source", "dcn", {"layers[0].source": DELETE}, "layers[0].source", "is required"),
    ("check type", "dcn", {"layers[0].check": "Crc"}, "layers[0].check", '"Sum", "None"'),
    ("label_dim zero", "dcn", {"layers[0].label.label_dim": 0}, "layers[0].label.label_dim", "positive"),
    ("label top missing", "dcn", {"layers[0].label.top": DELETE}, "layers[0].label.top", "is required"),
    ("dense_dim negative", "dcn", {"layers[0].dense.dense_dim": -1}, "layers[0].dense.dense_dim", "non-negative"),
    ("format", "dcn", {"layers[0].format": "CSV"}, "layers[0].format", '"Parquet"'),
    ("raw needs num_samples", "dlrm_fp32", {"layers[0].num_samples": DELETE}, "layers[0].num_samples", "is required"),
    ("slot sizes vs slots", "dlrm_fp32", {"layers[0].slot_size_array": [10, 20]}, "layers[0].slot_size_array",
     "26 slots"),
    ("sparse type", "dcn", {"layers[0].sparse[0].type": "Hybrid"}, "layers[0].sparse[0].type", "DistributedSlot"),
    ("no sparse input", "dcn", {"layers[0].sparse": []}, "layers[0].sparse", "at least 1 item"),
    ("sparse top clashes", "dcn", {"layers[0].sparse[0].top": "dense"}, "layers[0].sparse[0].top",
     'tensor "dense" is already defined by layers[0]'),
    ("first layer not Data", "dcn", {"layers[0]": DELETE}, "layers[0].type", "must be the Data layer"),
    ("second Data layer", "dcn", {"layers[6].type": "Data"}, "layers[6].type", "only layers[0]"),
    # embeddings
    ("vec size", "dcn", {"layers[1].sparse_embedding_hparam.embedding_vec_size": 2048},
     "layers[1].sparse_embedding_hparam.embedding_vec_size", "1..1024"),
    ("combiner", "dcn", {"layers[1].sparse_embedding_hparam.combiner": 2},
     "layers[1].sparse_embedding_hparam.combiner", "0 (sum) or 1 (mean)"),
    ("combiner as bool", "dcn", {"layers[1].sparse_embedding_hparam.combiner": True},
     "layers[1].sparse_embedding_hparam.combiner", "got true"),
    ("vocabulary missing", "dcn", {"layers[1].sparse_embedding_hparam.max_vocabulary_size_per_gpu": DELETE},
     "layers[1].sparse_embedding_hparam.max_vocabulary_size_per_gpu", "is required"),
    ("embedding reads dense", "dcn", {"layers[1].bottom": "dense", "layers[3].bottom": ["reshape1", "label"]},
     "layers[1].bottom", "not a sparse input"),
    ("embedding type vs input", "dcn", {"layers[1].type": "LocalizedSlotSparseEmbeddingHash"}, "layers[1].bottom",
     "reads LocalizedSlot ones"),
    ("localized needs a size", "dcn", {"layers[0].sparse[0]": SPARSE_LOCAL,
                                        "layers[1].type": "LocalizedSlotSparseEmbeddingHash",
                                        "layers[1].sparse_embedding_hparam.max_vocabulary_size_per_gpu": DELETE},
     "layers[1].sparse_embedding_hparam", "max_vocabulary_size_per_gpu or slot_size_array"),
    ("one-hot needs atomic SGD", "dlrm_fp32", {"optimizer.sgd_hparam.atomic_update": False}, "layers[1]",
     "atomic_update: true"),
    ("one-hot own optimizer", "dlrm_fp32", {"layers[1].optimizer": SGD_PLAIN}, "layers[1].optimizer", "SGD"),
    ("one-hot slot sizes", "dlrm_fp32", {"layers[1].sparse_embedding_hparam.slot_size_array": [5, 6]},
     "layers[1].sparse_embedding_hparam.slot_size_array", "slot_num 26"),
    ("one-hot without sizes", "dlrm_fp32", {"layers[1].sparse_embedding_hparam.slot_size_array": DELETE},
     "layers[1].sparse_embedding_hparam.slot_size_array", "is required"),
    ("embedding optimizer lr", "wdl", {"layers[1].optimizer": {"type": "SGD", "sgd_hparam": {"learning_rate": -1}}},
     "layers[1].optimizer.sgd_hparam.learning_rate", "positive"),
    ("embedding after dense", "wdl", {"layers[1]": {"type": "Sigmoid", "bottom": "dense", "top": "s"}},
     "layers[2]", "must come right after the Data layer"),
    # dense layers
    ("num_output string", "dcn", {"layers[6].fc_param.num_output": "1024"}, "layers[6].fc_param.num_output",
     'got "1024"'),
    ("fc_param missing", "dcn", {"layers[6].fc_param": DELETE}, "layers[6].fc_param", "is required"),
    ("Default initializer", "dcn", {"layers[6].fc_param.weight_init": "Default"}, "layers[6].fc_param.weight_init",
     "leave the key out"),
    ("one slice range", "dcn", {"layers[4].ranges": [[0, 429]]}, "layers[4].ranges", "2..5 items"),
    ("empty slice range", "dcn", {"layers[4].ranges": [[5, 5], [0, 429]]}, "layers[4].ranges[0]", "start < end"),
    ("slice order", "dcn", {"layers[4].ranges": [[0, 429], [1, 428]]}, "layers[4].ranges[1]", "previous range"),
    ("slice outputs", "dcn", {"layers[4].ranges": [[0, 10], [0, 429], [5, 429]]}, "layers[4].top",
     "names 2 tensors but ranges has 3"),
    ("concat of one", "dcn", {"layers[3].bottom": ["reshape1"]}, "layers[3].bottom", "2..5 tensor names"),
    ("concat of six", "dcn", {"layers[3].bottom": ["reshape1", "dense", "a", "b", "c", "d"]}, "layers[3].bottom",
     "2..5 tensor names"),
    ("undefined bottom", "dcn", {"layers[6].bottom": "nowhere"}, "layers[6].bottom", "not defined by an earlier"),
    ("bottom used twice", "dcn", {"layers[6].bottom": "slice11"}, "layers[6].bottom", "already consumed by layers[5]"),
    ("top redefined", "dcn", {"layers[7].top": "slice12", "layers[8].bottom": "slice12"}, "layers[7].top",
     "already defined by layers[4]"),
    ("bottom is top", "dcn", {"layers[7].top": "fc1"}, "layers[7].top", "same tensor as bottom"),
    ("bottom listed later", "dcn", {"layers[6].bottom": "relu2"}, "layers[6].bottom", "bottom to top"),
    ("unknown type", "dcn", {"layers[6].type": "Conv2D"}, "layers[6].type", 'unknown layer type "Conv2D"'),
    ("old Multiply", "deepfm", {"layers[7].type": "Multiply"}, "layers[7].type", "WeightMultiply"),
    ("fused in fp32", "dcn", {"layers[6].type": "FusedInnerProduct"}, "layers[6].type", "needs mixed precision"),
    ("CrossEntropyLoss in fp16", "dcn", {"solver.mixed_precision": 1024, "layers[14].type": "CrossEntropyLoss"},
     "layers[14].type", "FP32-only"),
    ("fused width", "dlrm_fp16", {"layers[2].fc_param.num_output": 100}, "layers[2].fc_param.num_output",
     "multiple of 64"),
    ("dropout rate", "dcn", {"layers[8].rate": 1.0}, "layers[8].rate", "[0, 1)"),
    ("batchnorm eps", "dcn", {"layers[7]": BN}, "layers[7].bn_param.eps", "is required"),
    ("reshape modes", "dcn", {"layers[2].selected": [0, 1]}, "layers[2].selected", "cannot be combined"),
    ("regularizer lambda", "dcn", {"layers[14].regularizer": "L2"}, "layers[14].lambda", "required with a regularizer"),
    ("regularizer name", "dcn", {"layers[14].regularizer": "L3", "layers[14].lambda": 0.1},
     "layers[14].regularizer", '"L1", "L2"'),
    ("no loss", "dcn", {"layers[14]": DELETE}, "layers", "exactly one loss layer"),
    ("target weights", "dcn", {"layers[14].type": "MultiCrossEntropyLoss"}, "layers[14].target_weight",
     "is required"),
    ("weight dims", "deepfm", {"layers[7].weight_dims": [13]}, "layers[7].weight_dims", "[slots, vec]"),
    ("reduce axis", "deepfm", {"layers[22].axis": DELETE}, "layers[22].axis", "is required"),
    ("elu alpha", "dcn", {"layers[7].type": "ELU", "layers[7].elu_param": {}}, "layers[7].elu_param.alpha",
     "is required"),
    ("loss top", "dcn", {"layers[14].top": DELETE}, "layers[14].top", "is required"),
    ("layers not a list", "dcn", {"layers": {"type": "Data"}}, "layers", "non-empty list"),
    # inference
    ("dense model missing", "dcn_inference", {"inference.dense_model_file": DELETE}, "inference.dense_model_file",
     "is required"),
    ("sparse model count", "dcn_inference", {"inference.sparse_model_file": ["a", "b"]}, "inference.sparse_model_file",
     "2 files but the config has 1 embedding"),
    ("hit rate", "dcn_inference", {"inference.hit_rate_threshold": 1.5}, "inference.hit_rate_threshold", "[0, 1]"),
    ("inference combiner", "dcn_inference", {"layers[1].sparse_embedding_hparam.combiner": 3},
     "layers[1].sparse_embedding_hparam.combiner", "0 (sum)"),
    ("inference label_dim", "dcn_inference", {"layers[0].label.label_dim": DELETE}, "layers[0].label.label_dim",
     "is required"),
]


@pytest.mark.parametrize("sample_name, edits, path, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_config_names_the_path(sample, sample_name, edits, path, fragment):
    cfg = mutate(sample(sample_name), edits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        with pytest.raises(ConfigError) as info:
            parse_config(cfg)
    message = str(info.value)
    assert info.value.path == path
    assert message.startswith(path + " ") or message.startswith(path + ":"), message
    assert fragment in message, message


def test_there_are_enough_cases():
    assert len(CASES) >= 40


def test_two_losses(sample):
    cfg = sample("dcn")
    cfg["layers"][13:] = [
        {"type": "Slice", "bottom": "concat2", "top": ["s1", "s2"], "ranges": [[0, 1], [0, 1]]},
        {"type": "Slice", "bottom": "label", "top": ["l1", "l2"], "ranges": [[0, 1], [0, 1]]},
        {"type": "BinaryCrossEntropyLoss", "bottom": ["s1", "l1"], "top": "loss1"},
        {"type": "BinaryCrossEntropyLoss", "bottom": ["s2", "l2"], "top": "loss2"}]
    with pytest.raises(ConfigError, match=r"^layers: needs exactly one loss layer .* found 2"):
        parse_config(cfg)


def test_layer_label_and_file_name_in_message(tmp_path, sample):
    cfg = mutate(sample("dcn"), {"layers[6].fc_param.num_output": "1024"})
    with pytest.raises(ConfigError) as info:
        parse_config(cfg)
    assert str(info.value) == ('layers[6].fc_param.num_output (InnerProduct "fc1"): '
                               'must be a positive integer, got "1024"')
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError) as info:
        parse_config(path)
    assert str(info.value).endswith(f"(in {path})") and info.value.file == str(path)


def test_invalid_json_text_and_top_level(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"layers": [}')
    with pytest.raises(ConfigError, match=r"^invalid JSON: .*\(in .*bad.json\)$"):
        parse_config(path)
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ConfigError, match="top level must be a JSON object"):
        parse_config(tmp_path / "list.json")
    with pytest.raises(ConfigError, match=r"^optimizer: the clause is required"):
        parse_config('{"layers": []}', require=("optimizer", "layers"))
    with pytest.raises(TypeError):
        parse_config(42)


# ---- unknown keys ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sample_name, edits, path", [
    ("dcn", {"layers[6].fc_param.weight_int": "Zero"}, "layers[6].fc_param.weight_int"),
    ("dcn", {"layers[7].alpha": 1.0}, "layers[7].alpha"),
    ("dcn", {"layers[0].num_samples": 10}, "layers[0].num_samples"),           # a Raw key in a Norm config
    ("dcn", {"layers[1].plan_file": "plan.json"}, "layers[1].plan_file"),       # localized-only key
    ("dcn", {"layers[0].sparse[0].nnz_per_slot": 1}, "layers[0].sparse[0].nnz_per_slot"),  # v3.1 key
    ("dcn", {"optimizer.sgd_hparam": {"learning_rate": 1.0}}, "optimizer.sgd_hparam"),
    ("dcn", {"optimizer.adam_hparam.momentum_factor": 0.9}, "optimizer.adam_hparam.momentum_factor"),
    ("dcn", {"solver.snapshot_prefx": "./"}, "solver.snapshot_prefx"),
    ("dcn", {"solvers": {}}, "solvers"),
    ("dcn_inference", {"inference.max_batch": 3}, "inference.max_batch"),
])
def test_unknown_keys_warn_and_are_ignored(sample, sample_name, edits, path):
    cfg = sample(sample_name)
    clean = parse_config(cfg)
    with pytest.warns(ConfigWarning, match=re.escape(path) + r"( \(.*\))?: unknown key, ignored"):
        assert parse_config(mutate(cfg, edits)) == clean


def test_informational_keys_are_silent(sample):
    cfg = mutate(sample("criteo"), {"layers[3].name": "fc1", "optimizer.update_type": "Global"})
    assert cfg["optimizer"]["global_update"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parsed = parse_config(cfg)
        parse_config(CONFIG_DIR / "dcn_inference.json")  # its inference clause carries "label": 1
    assert parsed.optimizer.update_type == "Global"  # update_type wins over the legacy key


def test_eval_samples_remainder_warns(sample):
    cfg = mutate(sample("dcn"), {"solver.max_eval_batches": DELETE, "solver.max_eval_samples": 16384 * 3 + 5})
    with pytest.warns(ConfigWarning, match="the last 5 samples are not evaluated"):
        parsed = parse_config(cfg)
    assert parsed.solver.max_eval_batches == 3 and parsed.solver.max_eval_samples == 16384 * 3 + 5
    assert parsed.to_json()["solver"]["max_eval_samples"] == 16384 * 3 + 5
