"""The package's layering, read from the source: no import cycle, the backend at the bottom.

Rules (ARCHITECTURE.md, "Layers"):
* the import graph of ``hugectr_lab`` (with ``kernels/`` and ``widgets/`` under their package names)
  is acyclic, counting imports inside functions too: a lazy import defers a dependency, it does not
  remove it, so a cycle through one is still a cycle;
* ``hugectr_lab.backend`` imports nothing of the package but itself, ``hugectr_lab.rules`` and its
  CUDA sources ``hugectr_lab.kernels`` (module-level and function-level imports alike);
* ``hugectr_lab.rules`` imports nothing of the package (it is the bottom);
* no engine module imports ``hugectr_lab.widgets`` at module level.
"""

from pathlib import Path

import pytest

from import_graph import build_graph

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"hugectr_lab": REPO / "hugectr_lab", "hugectr_lab.kernels": REPO / "kernels",
         "hugectr_lab.widgets": REPO / "widgets"}


@pytest.fixture(scope="module")
def graph():
    return build_graph(ROOTS)


def _inside(module, *packages):
    return any(module == p or module.startswith(p + ".") for p in packages)


def _violations(graph, modules, allowed, *, lazy=True):
    return [f"{m} imports {e.target} (line {e.line}{', inside a function' if e.lazy else ''})"
            for m in sorted(modules) for e in graph.edges[m].values()
            if (lazy or not e.lazy) and not _inside(e.target, *allowed)]


def test_the_graph_covers_the_whole_package(graph):
    assert {"hugectr_lab", "hugectr_lab.session", "hugectr_lab.backend.cuda.embedding_ops",
            "hugectr_lab.kernels", "hugectr_lab.widgets.training"} <= set(graph.files)
    assert len(graph.files) == sum(len(list(Path(r).rglob("*.py"))) for r in ROOTS.values())
    assert "hugectr_lab.backend" in graph.targets("hugectr_lab.embedding.hash_table")


def test_package_import_graph_is_acyclic(graph):
    cycles = graph.cycles(lazy=True)
    assert not cycles, "import cycles (lazy imports count):\n" + "\n".join(graph.cycle_path(c) for c in cycles)


def test_backend_imports_nothing_above_it(graph):
    backend = [m for m in graph.files if _inside(m, "hugectr_lab.backend")]
    assert "hugectr_lab.backend.cuda.embedding_ops" in backend
    bad = _violations(graph, backend, ("hugectr_lab.backend", "hugectr_lab.rules", "hugectr_lab.kernels"))
    assert not bad, "the backend reaches up:\n" + "\n".join(bad)


def test_rules_and_kernel_sources_are_the_bottom(graph):
    for package in ("hugectr_lab.rules", "hugectr_lab.kernels"):
        modules = [m for m in graph.files if _inside(m, package)]
        assert modules
        bad = _violations(graph, modules, (package,))
        assert not bad, f"{package} imports from above it:\n" + "\n".join(bad)


def test_engine_never_imports_widgets_at_module_level(graph):
    engine = [m for m in graph.files if not _inside(m, "hugectr_lab.widgets")]
    bad = [f"{m} imports {e.target} (line {e.line})" for m in sorted(engine) for e in graph.edges[m].values()
           if not e.lazy and _inside(e.target, "hugectr_lab.widgets")]
    assert not bad, "\n".join(bad)


# ---- the checker itself ----------------------------------------------------------------------

def _package(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return build_graph({"pkg": tmp_path / "pkg"})


def test_checker_finds_a_cycle_through_a_lazy_import(tmp_path):
    graph = _package(tmp_path, {
        "__init__.py": "",
        "low/__init__.py": "from .ops import f\n",
        "low/ops.py": "def f():\n    from ..high import g\n    return g\n",
        "high.py": "from .low.ops import f\n\ndef g():\n    return f\n",
    })
    assert graph.cycles(lazy=False) == []
    assert graph.cycles(lazy=True) == [["pkg.high", "pkg.low", "pkg.low.ops"]]
    path = graph.cycle_path(["pkg.high", "pkg.low", "pkg.low.ops"])
    assert path.startswith("pkg.high -> ") and "lazy" in path and path.endswith("pkg.high (line 2 of pkg.low.ops, lazy)")


def test_checker_resolves_relative_imports_and_skips_type_checking(tmp_path):
    graph = _package(tmp_path, {
        "__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n",
        "a.py": "from . import b\nfrom .sub import thing\nimport pkg.sub.deep\n",
        "b.py": "",
        "sub/__init__.py": "thing = 1\n",
        "sub/deep.py": "from .. import b\n",
    })
    assert graph.targets("pkg") == []
    assert sorted(graph.targets("pkg.a")) == ["pkg.b", "pkg.sub", "pkg.sub.deep"]
    assert graph.targets("pkg.sub.deep") == ["pkg.b"]
    assert graph.cycles() == []
