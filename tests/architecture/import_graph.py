"""The import graph of a package, read from its source with ``ast`` (nothing is imported).

A node is a module's dotted name. An edge ``a -> b`` means running ``a`` may import ``b``: an
``import`` or ``from ... import`` statement at module level or inside a function (a lazy import
still makes ``a`` depend on ``b``), plus the packages Python initialises on the way (importing
``p.q.r`` runs ``p/q/__init__.py``). Statements under ``if TYPE_CHECKING:`` never run and are
skipped. ``from p import name`` is an edge to the submodule ``p.name`` when there is one, else to
the package ``p``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Edge:
    target: str
    lazy: bool  # the import statement is inside a function
    line: int


@dataclass
class ImportGraph:
    files: dict = field(default_factory=dict)   # module -> source path
    edges: dict = field(default_factory=dict)   # module -> {target: Edge} (the first statement that imports it)

    def targets(self, module, *, lazy=True):
        return [e.target for e in self.edges[module].values() if lazy or not e.lazy]

    def cycles(self, *, lazy=True):
        """Strongly connected components of more than one module (Tarjan), each sorted; [] if acyclic."""
        index, low, stack, on_stack, found = {}, {}, [], set(), []

        def visit(v):
            index[v] = low[v] = len(index)
            stack.append(v)
            on_stack.add(v)
            for w in self.targets(v, lazy=lazy):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

        for v in sorted(self.files):
            if v not in index:
                visit(v)
        return sorted(found)

    def cycle_path(self, component, *, lazy=True):
        """One cycle through ``component`` as 'a -> b -> ... -> a' with line numbers, for messages."""
        members, start = set(component), component[0]
        path, seen, node = [start], {start}, start
        while True:
            edge = next(e for e in self.edges[node].values() if e.target in members and (lazy or not e.lazy)
                        and (e.target == start or e.target not in seen))
            path.append(f"{edge.target} (line {edge.line} of {node}{', lazy' if edge.lazy else ''})")
            if edge.target == start:
                return " -> ".join(path)
            seen.add(edge.target)
            node = edge.target


def _module_name(package, root, path):
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def build_graph(roots) -> ImportGraph:
    """``roots``: {dotted package name: its source folder}; the folders' *.py files are the modules."""
    graph = ImportGraph()
    for package, root in roots.items():
        root = Path(root)
        for path in sorted(root.rglob("*.py")):
            graph.files[_module_name(package, root, path)] = path
    for module, path in graph.files.items():
        is_package = path.name == "__init__.py"
        found = {}

        def add(target, node, lazy):
            # The packages initialised on the way, then the module itself; never the importer's own
            # enclosing packages (they are already being initialised when it runs).
            parts = target.split(".")
            for i in range(1, len(parts) + 1):
                name = ".".join(parts[:i])
                if name in graph.files and name != module and not module.startswith(name + "."):
                    found.setdefault(name, Edge(name, lazy, node.lineno))

        def walk(node, lazy):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child.test):
                    for orelse in child.orelse:
                        walk_one(orelse, lazy)
                    continue
                walk_one(child, lazy)

        def walk_one(child, lazy):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, child, lazy)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".")[: len(module.split(".")) - child.level + (1 if is_package else 0)]
                    base = ".".join(base + ([child.module] if child.module else []))
                else:
                    base = child.module
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    add(sub if sub in graph.files else base, child, lazy)
            walk(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

        walk(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)
        graph.edges[module] = found
    return graph
