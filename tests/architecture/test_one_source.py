"""One source per fact: a value that several modules need is stated in one place and taken from there."""

import ast
from pathlib import Path

import pytest

from hugectr_lab.backend import NumpyBackend, get_backend
from hugectr_lab.config import LAYER_KINDS
from hugectr_lab.embedding import DistributedSlotSparseEmbeddingHash, HashTable
from hugectr_lab.layers import LAYERS, BuildContext

REPO = Path(__file__).resolve().parents[2]


def _assignments(folder, name):
    """(file, line) of every class- or module-level assignment to ``name`` under ``folder``."""
    found = []
    for path in sorted((REPO / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, ast.AnnAssign) and node.value is not None else []
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found.append((path.relative_to(REPO).as_posix(), node.lineno))
    return found


def test_layer_arity_comes_from_the_config_table():
    assert set(LAYERS) == set(LAYER_KINDS)
    for name, cls in LAYERS.items():
        assert cls.num_inputs == LAYER_KINDS[name].bottoms, name
    # only the base class's default; no layer restates its input count
    assert [f for f, _ in _assignments("hugectr_lab/layers", "num_inputs")] == ["hugectr_lab/layers/base.py"]


def _calls(folder, name):
    return [(path.relative_to(REPO).as_posix(), node.lineno) for path in sorted((REPO / folder).rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == name]


def test_building_blocks_take_the_backend_object_they_are_given():
    # The Session (or another entry point) resolves the backend once; layers and embeddings never do.
    for folder in ("hugectr_lab/layers", "hugectr_lab/embedding"):
        assert _calls(folder, "get_backend") == [], folder
    session_backend = get_backend("numpy")
    assert BuildContext(backend=session_backend).backend is session_backend
    assert HashTable(4, "I32", session_backend).backend is session_backend
    assert isinstance(BuildContext().backend, NumpyBackend)
    for build in (lambda: BuildContext(backend="numpy"), lambda: HashTable(4, "I32", "cupy"),
                  lambda: DistributedSlotSparseEmbeddingHash(slot_num=1, embedding_vec_size=2,
                                                             max_vocabulary_size_per_gpu=4, backend="auto")):
        with pytest.raises(TypeError, match=r"backend must be a Backend object, e\.g\. hugectr_lab\.get_backend"):
            build()


def test_type_tables_are_stated_once_and_implemented_exactly():
    """The config's tables name the types; each class registry implements exactly those names."""
    from hugectr_lab.config import EMBEDDING_TYPES, OPTIMIZER_TYPES, UPDATE_TYPES
    from hugectr_lab.config.parse_embedding import EMBEDDING_KINDS
    from hugectr_lab.config.parse_optimizer import HPARAMS
    from hugectr_lab.embedding import EMBEDDING_TYPES as EMBEDDING_CLASSES
    from hugectr_lab.embedding import SPARSE_OPTIMIZERS
    from hugectr_lab.embedding import sparse_optimizers
    from hugectr_lab.optim import DENSE_OPTIMIZERS

    assert EMBEDDING_TYPES == set(EMBEDDING_KINDS) == set(EMBEDDING_CLASSES)
    assert OPTIMIZER_TYPES == tuple(HPARAMS)
    assert set(OPTIMIZER_TYPES) == set(DENSE_OPTIMIZERS) == set(SPARSE_OPTIMIZERS)
    assert sparse_optimizers.UPDATE_TYPES is UPDATE_TYPES
    for name, cls in EMBEDDING_CLASSES.items():   # the sparse model file holds slot ids for localized types
        assert cls.has_slot_ids == (EMBEDDING_KINDS[name].sparse_input == "LocalizedSlot"), name
    # the type names appear as table keys in these modules only
    tables = {name: [f for f, _ in _assignments("hugectr_lab", name)] for name in (
        "EMBEDDING_KINDS", "HPARAMS", "OPTIMIZER_TYPES", "EMBEDDING_TYPES", "UPDATE_TYPES", "SPARSE_INPUT_OF",
        "EMBEDDING_KEYS", "SLOT_ID_TYPES", "HPARAM_KEYS")}
    assert tables == {"EMBEDDING_KINDS": ["hugectr_lab/config/parse_embedding.py"],
                      "HPARAMS": ["hugectr_lab/config/parse_optimizer.py"],
                      "OPTIMIZER_TYPES": ["hugectr_lab/config/parse_optimizer.py"],
                      "EMBEDDING_TYPES": ["hugectr_lab/config/parse_embedding.py", "hugectr_lab/embedding/base.py"],
                      "UPDATE_TYPES": ["hugectr_lab/config/specs.py"],
                      "SPARSE_INPUT_OF": [], "EMBEDDING_KEYS": [], "SLOT_ID_TYPES": [], "HPARAM_KEYS": []}


def _rederivations(path):
    """Lines of ``path`` that work out a per-device batch (``x // G``, ``x // num_devices``) or a compute
    dtype from the precision flag (``float16 if ... else float32``) themselves."""
    found = []
    for node in ast.walk(ast.parse((REPO / path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.FloorDiv):
            right = node.right
            if getattr(right, "id", None) == "G" or getattr(right, "attr", None) == "num_devices":
                found.append((node.lineno, "per-device batch"))
        if isinstance(node, ast.IfExp) and "float16" in ast.unparse(node.body):
            found.append((node.lineno, "compute dtype"))
    return found


def test_the_run_plan_is_derived_once():
    """Session derives its RunPlan once; these modules take the values from the plan (or the precision rule)."""
    for path in ("hugectr_lab/session.py", "hugectr_lab/estimate.py", "bench/hugectr_step.py",
                 "hugectr_lab/embedding/base.py", "hugectr_lab/inference/session.py"):
        assert _rederivations(path) == [], path
    # the one place of each: the plan's per-device batch and the precision rule
    assert [kind for _, kind in _rederivations("hugectr_lab/run_plan.py")] == ["per-device batch"]
    assert [kind for _, kind in _rederivations("hugectr_lab/rules/precision.py")] == ["compute dtype"]
