"""CPU lane: every CUDA wrapper (``@kernel_op("name")``) keeps the signature of its NumPy reference and
is one hop from it and from its kernel source -- read from the source with ``ast``, so it runs
without CuPy (the GPU lane runs the wrappers themselves: tests/gpu/test_kernel_ops.py).

One hop: the reference ``name`` is a ``@reference_op`` function; its wrapper is the function of the
same name decorated ``@kernel_op("name")``; every ``kernels/*.cu`` the wrapper launches (a literal
in it or in a helper of its module that it calls) names ``name`` and the reference's module in its
header (a wrapper that launches none calls cuBLAS).
"""

import ast
import inspect
from pathlib import Path

import pytest

import hugectr_lab.embedding  # noqa: F401  (registers the embedding references)
import hugectr_lab.inference  # noqa: F401  (registers the embedding-cache references)
import hugectr_lab.layers  # noqa: F401  (registers the layer references)
import hugectr_lab.optim  # noqa: F401  (registers the dense optimizer reference)
from hugectr_lab.backend import REFERENCES

REPO = Path(__file__).resolve().parents[2]


def _is_kernel_op(decorator):
    return (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", None) == "kernel_op"
            and len(decorator.args) == 1 and isinstance(decorator.args[0], ast.Constant))


def _cu_literals(node, constants):
    found = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.endswith(".cu"):
            found.add(n.value)
        elif isinstance(n, ast.Name) and n.id in constants:
            found.add(constants[n.id])
    return found


def _modules():
    """{source path: (module-level functions by name, module-level ".cu" string constants by name, tree)}."""
    modules = {}
    for path in sorted((REPO / "hugectr_lab").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
                     and n.value.value.endswith(".cu") for t in n.targets if isinstance(t, ast.Name)}
        modules[path] = functions, constants, tree
    return modules


def _wrappers():
    """(op name, wrapper FunctionDef, .cu files it launches, source path) for every @kernel_op in the package:
    the files named in the wrapper and in the functions of its module it calls; where those name none, the
    files of the helpers it imports from a sibling module (``concat_columns`` through ``rows.copy_parts``) --
    a wrapper that launches kernels of its own and copies through a helper is not the helper's op."""
    modules = _modules()

    def scope(path, imports):
        """{name: (FunctionDef, its module's path)} callable from ``path``'s module."""
        functions, _, tree = modules[path]
        names = {name: (fn, path) for name, fn in functions.items()}
        for node in tree.body if imports else ():
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
                sibling = path.with_name(node.module.replace(".", "/") + ".py")
                for alias in node.names:
                    if sibling in modules and alias.name in modules[sibling][0]:
                        names[alias.asname or alias.name] = (modules[sibling][0][alias.name], sibling)
        return names

    def launched(fn, path, seen, imports):
        files = _cu_literals(fn, modules[path][1])
        callable_here = scope(path, imports)
        for call in ast.walk(fn):
            callee = getattr(call.func, "id", None) if isinstance(call, ast.Call) else None
            if callee in callable_here and (callable_here[callee][1], callee) not in seen:
                target, where = callable_here[callee]
                files |= launched(target, where, seen | {(where, callee)}, imports)
        return files

    found = []
    for path, (functions, _, _) in modules.items():
        for fn in functions.values():
            for decorator in fn.decorator_list:
                if _is_kernel_op(decorator):
                    seen = {(path, fn.name)}
                    files = launched(fn, path, seen, False) or launched(fn, path, seen, True)
                    found.append((decorator.args[0].value, fn, files, path))
    return found


WRAPPERS = _wrappers()


def _signature(fn):
    """(name, kind, default) per parameter of an ast FunctionDef, as inspect reports them."""
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [inspect.Parameter.empty] * (len(positional) - len(args.defaults)) + [
        ast.literal_eval(d) for d in args.defaults]
    params = [(a.arg, inspect.Parameter.POSITIONAL_ONLY if a in args.posonlyargs
               else inspect.Parameter.POSITIONAL_OR_KEYWORD, d) for a, d in zip(positional, defaults)]
    if args.vararg:
        params.append((args.vararg.arg, inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.empty))
    params += [(a.arg, inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.empty if d is None else ast.literal_eval(d))
               for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        params.append((args.kwarg.arg, inspect.Parameter.VAR_KEYWORD, inspect.Parameter.empty))
    return params


def test_every_wrapper_is_found():
    names = [name for name, *_ in WRAPPERS]
    assert len(names) == len(set(names)), "an op has two CUDA wrappers"
    # the wrappers of the layer, embedding and inference kernels
    assert {"bias_act_fwd", "embedding_combine_fwd", "hash_table_lookup_insert", "sparse_adam_update",
            "embedding_cache_query"} <= set(names)


@pytest.mark.parametrize("name,fn,files,path", WRAPPERS, ids=[w[0] for w in WRAPPERS])
def test_wrapper_keeps_the_reference_signature(name, fn, files, path):
    assert fn.name == name, f"{path.name}: the wrapper of {name!r} is called {fn.name!r}"
    assert name in REFERENCES, f"{path.name}: {name!r} has no NumPy reference (@reference_op)"
    want = [(p.name, p.kind, p.default) for p in inspect.signature(REFERENCES[name]).parameters.values()]
    assert _signature(fn) == want, f"{path.name}: {name} differs from its reference"


@pytest.mark.parametrize("name,fn,files,path", WRAPPERS, ids=[w[0] for w in WRAPPERS])
def test_wrapper_kernel_source_names_the_reference(name, fn, files, path):
    if not files:   # a library kernel (cuBLAS) instead of one of ours
        assert any(isinstance(n, ast.Name) and n.id == "cublas" for n in ast.walk(fn)), (
            f"{path.name}: {name} launches no kernels/*.cu and calls no library")
    reference_file = REFERENCES[name].__module__.replace(".", "/") + ".py"
    for cu in files:
        source = REPO / "kernels" / cu
        assert source.is_file(), f"{path.name}: {name} launches {cu}, which is not in kernels/"
        header = source.read_text(encoding="utf-8").split("#include", 1)[0]
        assert f"`{name}`" in header and reference_file in header, (
            f"kernels/{cu}: its header should name the reference `{name}` ({reference_file})")


def test_kernels_take_shared_helpers_from_hctr_common():
    """The empty key and the strided loops over the grid are written once, in kernels/hctr_common.cuh."""
    common = (REPO / "kernels" / "hctr_common.cuh").read_text(encoding="utf-8")
    assert "hctr_empty_key()" in common and "gridDim" in common
    for source in sorted((REPO / "kernels").glob("*.cu")):
        text = source.read_text(encoding="utf-8")
        assert '#include "hctr_common.cuh"' in text, source.name
        assert "gridDim" not in text, f"{source.name}: write the strided loop with hctr_*_stride"
        assert "hctr_empty_key()" not in text, f"{source.name}: hctr_empty_key is defined in hctr_common.cuh"
