"""solver_parser_helper's arguments, defaults and derived values; SolverParser from a solver clause."""

import copy
import inspect
import pickle
from pathlib import Path

import pytest

from hugectr_lab.config import ConfigError, SolverParser, solver_parser_helper

CONFIG_DIR = Path(__file__).parent / "configs"

# HugeCTR v3.0's binding defaults, in the binding's order.
HELPER_DEFAULTS = {
    "seed": 0, "max_eval_batches": 100, "batchsize_eval": 2048, "batchsize": 2048, "model_file": "",
    "dense_opt_states_file": "", "embedding_files": [], "sparse_opt_states_file": [], "vvgpu": [[0]],
    "use_mixed_precision": False, "enable_tf32_compute": False, "scaler": 1.0, "i64_input_key": False,
    "use_algorithm_search": True, "use_cuda_graph": True, "repeat_dataset": True, "max_iter": 0, "num_epochs": 0,
    "display": 200, "snapshot": 10000, "eval_interval": 1000, "use_model_oversubscriber": False,
    "temp_embedding_dir": "./",
}


# hugectr-lab's keyword-only extensions after the binding's arguments (docs/reliability.md).
EXTENSION_DEFAULTS = {"loss_scaling": "static", "loss_scale_growth_interval": 2000, "on_vocabulary_overflow": "warn"}


def test_signature_matches_the_binding():
    params = inspect.signature(solver_parser_helper).parameters
    positional = {name: p.default for name, p in params.items() if p.kind is not p.KEYWORD_ONLY}
    assert positional == HELPER_DEFAULTS and list(positional) == list(HELPER_DEFAULTS)
    assert {name: p.default for name, p in params.items() if p.kind is p.KEYWORD_ONLY} == EXTENSION_DEFAULTS


def test_defaults_and_derived_values():
    s = solver_parser_helper()
    expected = {k: v for k, v in HELPER_DEFAULTS.items() if k != "sparse_opt_states_file"}
    expected.update(sparse_opt_states_files=[], max_iter=10000, num_epochs=0, metrics_spec={"AUC": 1.0})
    assert {k: getattr(s, k) for k in expected} == expected
    assert SolverParser() == s and repr(s) == "SolverParser()"


@pytest.mark.parametrize("kwargs, max_iter, num_epochs", [
    ({}, 10000, 0),
    ({"max_iter": 500}, 500, 0),
    ({"max_iter": 500, "num_epochs": 3}, 500, 0),
    ({"repeat_dataset": False}, 0, 1),
    ({"repeat_dataset": False, "num_epochs": 3, "max_iter": 500}, 0, 3),
])
def test_run_length_rules(kwargs, max_iter, num_epochs):
    s = solver_parser_helper(**kwargs)
    assert (s.max_iter, s.num_epochs, s.repeat_dataset) == (max_iter, num_epochs, kwargs.get("repeat_dataset", True))


def test_singular_keyword_plural_attribute_and_copies():
    s = solver_parser_helper(embedding_files=["a.model"], sparse_opt_states_file=["a.opt"], vvgpu=[[0, 1], [0, 1]],
                             batchsize=16, batchsize_eval=8)
    assert s.embedding_files == ["a.model"] and s.sparse_opt_states_files == ["a.opt"]
    assert s.vvgpu == [[0, 1], [0, 1]]       # the same ids on two nodes are different GPUs
    s.vvgpu[0].append(7)                     # attributes hand out copies
    s.metrics_spec["AverageLoss"] = 0.0
    assert s.vvgpu == [[0, 1], [0, 1]] and s.metrics_spec == {"AUC": 1.0}


def test_read_only_hashable_picklable():
    s = solver_parser_helper(batchsize=64, use_mixed_precision=True, scaler=1024)
    with pytest.raises(AttributeError, match="read-only"):
        s.batchsize = 32
    with pytest.raises(AttributeError):
        del s.seed
    assert pickle.loads(pickle.dumps(s)) == s and copy.deepcopy(s) == s
    assert len({s, solver_parser_helper(batchsize=64, use_mixed_precision=True, scaler=1024)}) == 1
    assert repr(s) == "SolverParser(batchsize=64, use_mixed_precision=True, scaler=1024.0)"
    assert s.scaler == 1024.0 and isinstance(s.scaler, float)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"batchsize": 0}, "batchsize: must be a positive integer, got 0"),
    ({"batchsize": "2048"}, 'batchsize: must be a positive integer, got "2048"'),
    ({"batchsize_eval": 2.5}, "batchsize_eval: must be a positive integer"),
    ({"max_eval_batches": 0}, "max_eval_batches:"),
    ({"seed": -1}, "seed: must be a non-negative integer"),
    ({"vvgpu": [0, 1]}, "vvgpu[0]: must be a non-empty list of GPU ids, got 0"),
    ({"vvgpu": []}, "vvgpu: must be a non-empty list of per-node GPU lists"),
    ({"vvgpu": [[0, 0]]}, "vvgpu[0]: lists GPU 0 more than once"),
    ({"vvgpu": [[0, -2]]}, "vvgpu[0][1]: must be a non-negative GPU id"),
    ({"vvgpu": [[0, 1, 2]]}, "batchsize: must be divisible by the number of GPUs (3)"),
    ({"vvgpu": [[0, 1]], "batchsize_eval": 3}, "batchsize_eval: must be divisible"),
    ({"scaler": 0}, "scaler: must be a positive number"),
    ({"use_mixed_precision": 1}, "use_mixed_precision: must be true or false, got 1"),
    ({"use_mixed_precision": True, "enable_tf32_compute": True}, "enable_tf32_compute: cannot be True together"),
    ({"embedding_files": "a.model"}, "embedding_files: must be a list of file names"),
    ({"sparse_opt_states_file": [1]}, "sparse_opt_states_file[0]: must be a string"),
    ({"model_file": None}, "model_file: must be a string, got null"),
    ({"display": 0}, "display: must be a positive integer"),
    ({"max_iter": -1}, "max_iter: must be a non-negative integer"),
    ({"eval_interval": -1}, "eval_interval:"),
    ({"temp_embedding_dir": 3}, "temp_embedding_dir: must be a string"),
])
def test_bad_arguments_name_the_argument(kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        solver_parser_helper(**kwargs)
    assert str(info.value).startswith(fragment), str(info.value)


def test_from_sample_solver_clauses():
    dcn = SolverParser(CONFIG_DIR / "dcn.json")
    assert (dcn.vvgpu, dcn.batchsize, dcn.batchsize_eval, dcn.max_iter, dcn.num_epochs, dcn.repeat_dataset) == (
        [[0, 1, 2, 3]], 16384, 16384, 2300, 0, True)
    assert (dcn.max_eval_batches, dcn.display, dcn.snapshot, dcn.eval_interval) == (300, 200, 10000000, 1000)
    assert (dcn.use_model_oversubscriber, dcn.temp_embedding_dir, dcn.seed) == (False, "./", 0)
    dlrm = SolverParser(str(CONFIG_DIR / "dlrm_fp16.json"))
    assert (dlrm.use_mixed_precision, dlrm.scaler, dlrm.metrics_spec) == (True, 1024.0, {"AUC": 0.8025})


def test_from_a_solver_clause_maps_every_key():
    clause = {"lr_policy": "fixed", "display": 10, "snapshot": 100, "snapshot_prefix": "./snap", "batchsize": 512,
              "num_epochs": 2, "max_eval_samples": 768, "batchsize_eval": 256, "gpu": [[0, 1], [0, 1]], "seed": 7,
              "dense_model_file": "d.model", "dense_opt_states_file": "d.opt", "sparse_model_file": "s.model",
              "sparse_opt_states_file": ["s.opt"], "input_key_type": "I64", "algorithm_search": False,
              "cuda_graph": False, "enable_tf32_compute": True, "eval_metrics": ["AverageLoss", "AUC:0.75"],
              "eval_interval": 50}
    s = SolverParser({"solver": clause, "layers": "not even parsed"})
    assert (s.seed, s.batchsize, s.batchsize_eval, s.max_eval_batches) == (7, 512, 256, 3)
    assert (s.model_file, s.dense_opt_states_file, s.embedding_files, s.sparse_opt_states_files) == (
        "d.model", "d.opt", ["s.model"], ["s.opt"])
    assert (s.vvgpu, s.i64_input_key, s.use_algorithm_search, s.use_cuda_graph, s.enable_tf32_compute) == (
        [[0, 1], [0, 1]], True, False, False, True)
    assert (s.repeat_dataset, s.max_iter, s.num_epochs, s.display, s.snapshot, s.eval_interval) == (
        False, 0, 2, 10, 100, 50)
    assert list(s.metrics_spec.items()) == [("AUC", 0.75), ("AverageLoss", 0.0)]  # HugeCTR's enum order
    assert (s.use_mixed_precision, s.scaler) == (False, 1.0)


def test_from_a_file_without_solver(tmp_path):
    with pytest.raises(ConfigError, match=r"^solver: the clause is required here but missing \(in .*inf.json\)"):
        path = tmp_path / "inf.json"
        path.write_text((CONFIG_DIR / "dcn_inference.json").read_text())
        SolverParser(path)
