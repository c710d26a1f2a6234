"""One source per fact: a value that several modules need is stated in one place and taken from there."""

import ast
from pathlib import Path

from hugectr_lab.config import LAYER_KINDS
from hugectr_lab.layers import LAYERS

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
