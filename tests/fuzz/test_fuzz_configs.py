"""Fuzzing the JSON config readers: structural mutations (a value anywhere replaced by any JSON value, a
key deleted or added) and byte mutations of the shipped DCN config and of an inference config. The
parsers return or raise ConfigError/ValueError naming the file; nothing else (no KeyError, TypeError...)."""

from __future__ import annotations

import copy
import json
from importlib import resources

from fuzzing import fuzz_file, mutated
from hypothesis import strategies as st

from hugectr_lab.config import ConfigWarning, parse_config
from hugectr_lab.inference.configs import inference_config
from hugectr_lab.optim import get_learning_rate_scheduler

TRAINING = json.loads(resources.files("hugectr_lab.presets").joinpath("dcn_demo.json").read_text())
INFERENCE = inference_config(TRAINING, "dense.model", ["sparse0.model"])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64) | st.floats(allow_nan=False) |
    st.sampled_from([0, -1, 1, 2**31, 1e308, "", "I64", "Sum", "Adam", "Uniform", "data1"]) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6)


def paths(node, prefix=()):
    """Every path (tuple of keys/indices) to a value inside ``node``."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, prefix + (i,))


@st.composite
def structurally_mutated(draw, base):
    obj = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(obj))[1:]))
        parent = obj
        for key in where[:-1]:
            parent = parent[key]
        op = draw(st.sampled_from(("replace", "replace", "delete", "add")))
        if op == "replace":
            parent[where[-1]] = draw(json_values)
        elif op == "delete":
            del parent[where[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["bottom", "top", "type", "slot_num", "layers", "extra"]))] = draw(json_values)
        else:
            parent.append(draw(json_values))
    return obj


def as_json(objects):
    """A strategy of JSON objects as the bytes of their JSON text."""
    return objects.map(lambda obj: json.dumps(obj).encode())


def parse_both(path):
    """What `hugectr-lab train` reads from a config: the whole config and the learning-rate schedule."""
    parse_config(path)
    if "optimizer" in json.loads(path.read_text()):
        get_learning_rate_scheduler(path)


def test_training_config_structure(tmp_path):
    path = tmp_path / "dcn.json"

    fuzz_file("config-training-structure", path, as_json(structurally_mutated(TRAINING)), lambda: parse_both(path),
              ValueError, examples=400, ignore_warnings=[ConfigWarning])


def test_inference_config_structure(tmp_path):
    path = tmp_path / "infer.json"

    fuzz_file("config-inference-structure", path, as_json(structurally_mutated(INFERENCE)),
              lambda: parse_config(path, require=("inference", "layers")), ValueError, examples=250,
              ignore_warnings=[ConfigWarning])


def test_config_bytes(tmp_path):
    path = tmp_path / "dcn.json"
    base = json.dumps(TRAINING, indent=1).encode()

    fuzz_file("config-bytes", path, mutated(base), lambda: parse_both(path), ValueError, examples=200,
              ignore_warnings=[ConfigWarning])


def test_session_from_mutated_config(tmp_path, monkeypatch):
    """A mutated config that parses must also build a Session, or be refused with a ValueError (layer shapes,
    graph rules, data files) naming the config or the file it points to."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "session"))
    from session_helpers import dnn_config, make_dataset

    from hugectr_lab.config import solver_parser_helper
    from hugectr_lab.session import Session

    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path, files=1, samples=64)
    base = dnn_config(vocab=200, vec=4, batchnorm=True, dropout=True, cross=True)
    path = tmp_path / "small.json"
    solver = solver_parser_helper(batchsize=16, batchsize_eval=16, vvgpu=[[0]], repeat_dataset=True)

    def build():
        Session(solver, str(path)).close()

    fuzz_file("config-session", path, as_json(structurally_mutated(base)), build, ValueError, examples=200,
              names=[path, "data/"], ignore_warnings=[ConfigWarning])
