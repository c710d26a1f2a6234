"""Check kernel launches against the kernels' C signatures, on the CPU, with NumPy standing in for CuPy.

Two halves:

* The checker (importable anywhere, no CuPy): ``signature(file, expression)`` parses the ``__global__``
  function of ``kernels/<file>`` and resolves the expression's template arguments; ``check_launch``
  names every way one launch disagrees with it (argument count, pointer dtypes, scalar types, grid,
  block and shared memory).
* The runner (``python launch_stub.py OUT.json``, only ever in a subprocess): installs a fake ``cupy``
  module whose arrays are NumPy arrays with device-array manners (``DeviceArray``), replaces what
  talks to CUDA (``loader.kernel``, cuBLAS, cuBLASLt) with the smallest stubs, runs every kernel op
  over its cases (``cases()``: tests/gpu/op_cases.py's and the inference cache's below) and writes
  each case's launches and the checker's findings as JSON. A subprocess, because the fake ``cupy``
  must never be seen by the tests that check behaviour without CuPy in the pytest process.
"""

from __future__ import annotations

import functools
import inspect
import json
import numbers
import re
import sys
import traceback
import types
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hugectr_lab.backend.cuda.sources import SOURCES
from hugectr_lab.kernels import inlined_source

SHARED_LIMIT = 48 * 1024       # dynamic shared memory a kernel gets without opting in
MAX_THREADS = 1024             # threads per block on every CUDA GPU
MAX_GRID = ((1 << 31) - 1, 65535, 65535)
MAX_BLOCK = (1024, 1024, 64)
SM_COUNT = 132                 # an H100 SXM's multiprocessors: what ``loader.multiprocessors`` reports

# C types of kernel parameters -> NumPy dtypes (``const``, ``__restrict__`` dropped; ``hctr_half`` is the
# binary16 storage type of hctr_common.cuh, ``sources.CTYPE`` names float16 so).
C_DTYPES = {
    "float": np.float32, "double": np.float64, "hctr_half": np.float16, "__half": np.float16, "half": np.float16,
    "bool": np.bool_, "char": np.int8, "signed char": np.int8, "unsigned char": np.uint8,
    "short": np.int16, "unsigned short": np.uint16, "int": np.int32, "unsigned int": np.uint32,
    "long": np.int64, "unsigned long": np.uint64, "long long": np.int64, "unsigned long long": np.uint64,
    "size_t": np.uint64, "int32_t": np.int32, "uint32_t": np.uint32, "int64_t": np.int64, "uint64_t": np.uint64,
}
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict"}


# ---- the kernels' C signatures -------------------------------------------------------------------

class Param(NamedTuple):
    decl: str        # the declaration as written, e.g. "const T* __restrict__ x0"
    name: str
    ctype: str       # the base type with template arguments substituted, e.g. "hctr_half"
    pointer: bool


class Kernel(NamedTuple):
    file: str
    name: str
    template: tuple      # template parameter names, in order
    params: tuple        # (decl, name, base type tokens, pointer depth) as written
    max_threads: int     # __launch_bounds__'s first argument, else MAX_THREADS
    dynamic_shared: bool  # the body uses ``extern __shared__`` memory (sized by the launch's shared_mem)


_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_KERNEL = re.compile(r"(?:template\s*<(?P<template>[^<>]*)>\s*)?__global__\s+void\s+"
                     r"(?:__launch_bounds__\s*\((?P<bounds>[^()]*)\)\s*)?(?P<name>\w+)\s*\((?P<params>[^()]*)\)\s*\{")
_EXTERN_SHARED = re.compile(r"extern\s+__shared__[^;\[]*?(\w+)\s*\[")


def _body(source, start):
    """The text of the block whose ``{`` is at ``start``."""
    depth = 0
    for i in range(start, len(source)):
        depth += {"{": 1, "}": -1}.get(source[i], 0)
        if depth == 0:
            return source[start:i + 1]
    raise ValueError("unbalanced braces")


@functools.lru_cache(maxsize=None)
def kernels(file_name):
    """{name: Kernel} of every ``__global__`` function in ``kernels/<file_name>`` (headers inlined)."""
    source = _COMMENTS.sub(" ", inlined_source(file_name))
    found = {m["name"]: (m, _body(source, m.end() - 1)) for m in _KERNEL.finditer(source)}
    # extern __shared__ arrays declared outside every kernel (interaction.cu's block_smem) are the
    # dynamic shared memory of the kernels that name them
    spans = [(m.start(), m.end() + len(body)) for m, body in found.values()]
    outside = {d.group(1) for d in _EXTERN_SHARED.finditer(source)
               if not any(a <= d.start() < b for a, b in spans)}
    result = {}
    for name, (m, body) in found.items():
        template = tuple(p.split()[-1] for p in (m["template"] or "").split(",") if p.strip())
        params = []
        for decl in (" ".join(p.split()) for p in m["params"].split(",") if p.strip()):
            tokens = re.findall(r"\w+|\*|&", decl)
            words = tuple(t for t in tokens[:-1] if t not in _QUALIFIERS and t != "*")
            params.append((decl, tokens[-1], words, tokens.count("*")))
        result[name] = Kernel(file_name, name, template, tuple(params),
                              int(m["bounds"].split(",")[0]) if m["bounds"] else MAX_THREADS,
                              "extern __shared__" in body or any(re.search(rf"\b{n}\b", body) for n in outside))
    return result


def _split_template(expression):
    """("name", ("arg", ...)) of a name expression such as ``hctr_bias_act_fwd<float, 4>``."""
    name, _, rest = expression.partition("<")
    args, depth, current = [], 0, ""
    for ch in rest.rstrip()[:-1] if rest else "":
        if ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
            continue
        depth += {"<": 1, ">": -1}.get(ch, 0)
        current += ch
    if current.strip():
        args.append(current.strip())
    return name.strip(), tuple(args)


def _normalise(ctype):
    """One spelling per C type: ``unsigned`` -> ``unsigned int``, ``long long int`` -> ``long long``."""
    words = ctype.split()
    if words and words[-1] == "int" and len(words) > 1 and words[-2] in ("long", "short"):
        words = words[:-1]
    if words == ["unsigned"]:
        words = ["unsigned", "int"]
    return " ".join(words)


@functools.lru_cache(maxsize=None)
def signature(file_name, expression):
    """(Kernel, (Param, ...)) of ``expression`` in ``kernels/<file_name>``, its template arguments put in."""
    name, targs = _split_template(expression)
    kernel = kernels(file_name).get(name)
    if kernel is None:
        raise LookupError(f"kernels/{file_name} defines no __global__ function {name!r}")
    if len(targs) != len(kernel.template):
        raise LookupError(f"{expression}: {len(targs)} template arguments, {name} takes {len(kernel.template)} "
                          f"({', '.join(kernel.template)})")
    subst = dict(zip(kernel.template, targs))
    params = tuple(Param(decl, pname, _normalise(" ".join(subst.get(w, w) for w in words)), depth > 0)
                   for decl, pname, words, depth in kernel.params)
    return kernel, params


# ---- device arrays -------------------------------------------------------------------------------

class _Memory(NamedTuple):
    ptr: int


class DeviceArray(np.ndarray):
    """A NumPy array with the manners of a CuPy array that the wrappers use: ``.data.ptr`` (its real
    address), ``__cuda_array_interface__`` and ``.get()``. ``LIVE`` keeps every one made since it was
    last cleared (alive, so no address is reused meanwhile), so that a raw address a wrapper passes
    (``np.uint64(x.data.ptr + offset)``) can be traced back to an array and its dtype."""

    LIVE: list = []

    def __array_finalize__(self, obj):
        DeviceArray.LIVE.append(self)

    @property
    def data(self):
        return _Memory(self.ctypes.data)

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ctypes.data, False), "version": 3,
                "strides": None if self.flags.c_contiguous else self.strides}

    def get(self):
        return np.array(self)


def _owner(address, itemsize):
    """The live device array whose memory holds ``itemsize`` bytes at ``address``, or None."""
    for a in DeviceArray.LIVE:
        start = a.ctypes.data
        if a.nbytes and start <= address and address + itemsize <= start + a.nbytes:
            return a
    return None


# ---- the checker ---------------------------------------------------------------------------------

def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _describe(v):
    """``v`` with its type: ``int 77``, ``np.int64 29``, ``tuple (1, 2)``."""
    if isinstance(v, np.generic):
        return f"np.{type(v).__name__} {v}"
    return f"{type(v).__name__} {v!r}"


def _check_dims(what, dims, limits):
    if not isinstance(dims, tuple) or not 1 <= len(dims) <= 3:
        return [f"{what} {dims!r} is not a tuple of 1 to 3 ints"]
    bad = [d for d in dims if not _is_int(d) or d < 1]
    if bad:
        return [f"{what} {dims!r}: every extent must be a positive int (got {', '.join(map(repr, bad))})"]
    return [f"{what} {dims!r}: extent {i} exceeds {limit}" for i, (d, limit) in enumerate(zip(dims, limits))
            if d > limit]


def check_launch(file_name, expression, grid, block, args, shared_mem, shared_limit=SHARED_LIMIT):
    """Every way the launch of ``expression`` (``kernels/<file_name>``) with these (grid, block, args,
    shared_mem) -- as ``loader.launch_grid`` hands them to the compiled kernel -- disagrees with the
    kernel's C signature and CUDA's launch limits; [] when it agrees."""
    if expression not in SOURCES.get(file_name, ()):
        return [f"{expression!r} is not listed for {file_name} in sources.SOURCES (all the loader compiles)"]
    try:
        kernel, params = signature(file_name, expression)
    except LookupError as error:
        return [str(error)]
    problems = _check_dims("grid", grid, MAX_GRID) + _check_dims("block", block, MAX_BLOCK)
    if not problems:
        threads = int(np.prod(block))
        limit = min(MAX_THREADS, kernel.max_threads)
        if threads > limit:
            problems.append(f"block {block!r} has {threads} threads, the kernel allows {limit}"
                            + (" (__launch_bounds__)" if kernel.max_threads < MAX_THREADS else ""))
    if not _is_int(shared_mem):
        problems.append(f"shared_mem is {_describe(shared_mem)}, not an int of bytes")
    elif not 0 <= shared_mem <= shared_limit:
        problems.append(f"shared_mem {shared_mem} is outside [0, {shared_limit}] bytes")
    elif kernel.dynamic_shared and shared_mem == 0:
        problems.append("the kernel uses extern __shared__ memory but gets shared_mem=0")
    elif not kernel.dynamic_shared and shared_mem:
        problems.append(f"shared_mem={shared_mem} for a kernel without extern __shared__ memory")
    if not isinstance(args, tuple):
        return problems + [f"args is {_describe(args)}, not a tuple"]
    if len(args) != len(params):
        problems.append(f"{len(args)} arguments for {len(params)} parameters "
                        f"({', '.join(p.name for p in params)})")
    structs = struct_sizes(file_name)
    for i, (param, value) in enumerate(zip(params, args)):
        checked = (_check_struct(param, value, structs[param.ctype]) if param.ctype in structs and not param.pointer
                   else _check_argument(param, value))
        for what in checked:
            problems.append(f"parameter {i} `{param.decl}` ({param.name}): {what}")
    return problems


_STRUCT_SIZE = re.compile(r"static_assert\s*\(\s*sizeof\s*\(\s*(\w+)\s*\)\s*==\s*(\d+)")


@functools.lru_cache(maxsize=None)
def struct_sizes(file_name):
    """{struct name: bytes} of the structs ``kernels/<file_name>`` passes by value and pins with a
    ``static_assert(sizeof(name) == bytes)`` (write_table.cu's table)."""
    return {m[1]: int(m[2]) for m in _STRUCT_SIZE.finditer(_COMMENTS.sub(" ", inlined_source(file_name)))}


def _check_struct(param, value, size):
    """A struct by value: CuPy passes a host array of one element (its bytes) of the struct's size."""
    if not (isinstance(value, np.ndarray) and not isinstance(value, DeviceArray) and value.size == 1
            and value.dtype.itemsize == size):
        return [f"{_describe(value)} for a struct {param.ctype} of {size} bytes: pass a one-element host array "
                f"of a dtype of that size"]
    return []


def _check_argument(param, value):
    want = C_DTYPES.get(param.ctype)
    if want is None and param.ctype != "void":
        return [f"the checker knows no NumPy dtype for C type {param.ctype!r} (add it to C_DTYPES)"]
    want = None if want is None else np.dtype(want)
    if not param.pointer:
        if isinstance(value, np.ndarray):
            return [f"an array ({value.dtype}{list(value.shape)}) for a scalar {param.ctype}"]
        if not isinstance(value, np.generic) or value.dtype != want:
            return [f"{_describe(value)} for a scalar {param.ctype}: pass np.{want.type.__name__}"]
        return []
    if isinstance(value, np.generic) and value.dtype == np.uint64:   # NULL, or an address (concat_columns)
        address = int(value)
        if address == 0:
            return []
        itemsize = want.itemsize if want is not None else 1
        owner = _owner(address, itemsize)
        if owner is None:
            return [f"address {address:#x} lies in no live device array"]
        if want is not None and owner.dtype != want:
            return [f"address into a {owner.dtype} array for a {param.ctype}*"]
        if address % itemsize:
            return [f"address {address:#x} is not aligned to {itemsize} bytes"]
        return []
    if not isinstance(value, np.ndarray):
        return [f"{_describe(value)} for a pointer {param.ctype}* (pass a device array or NULL)"]
    if not isinstance(value, DeviceArray):
        return [f"a host NumPy array for a pointer {param.ctype}* (not a device array)"]
    problems = []
    if want is not None and value.dtype != want:
        problems.append(f"a {value.dtype} array for a pointer {param.ctype}* (wants {want})")
    if not value.flags.c_contiguous:
        problems.append(f"a non-C-contiguous array (shape {value.shape}, strides {value.strides}): "
                        f"the kernel sees only its first element's address")
    return problems


# ---- the runner (subprocess only) --------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]


def strided(a):
    """``a``'s values in a layout that is not C-contiguous: column-major (a transposed view's layout) where
    that differs, else every other element of a buffer twice as long."""
    f = np.asfortranarray(a)
    return f if not f.flags.c_contiguous else np.repeat(a.reshape(-1), 2)[::2].reshape(a.shape)


def _to_device(value, layout_strided=False):
    """Host case input ``value`` as the wrapper gets it: an array becomes a device array (a copy)."""
    if not isinstance(value, np.ndarray):
        return value
    copy = np.array(value, copy=True)
    return (strided(copy) if layout_strided else copy).view(DeviceArray)


def _device_results(value):
    """Host results of a NumPy function as device arrays (tuples and lists element-wise)."""
    if type(value) is np.ndarray:
        return value.view(DeviceArray)
    if isinstance(value, (tuple, list)) and any(type(v) is np.ndarray for v in value):
        return type(value)(_device_results(v) for v in value)
    return value


def _device_function(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        return _device_results(fn(*args, **kwargs))
    return call


def fake_cupy():
    """A ``cupy`` module over NumPy: every NumPy function, returning ``DeviceArray``s; the few
    ``cupy.cuda`` queries the wrappers and the loader make (device 0, ``SM_COUNT`` multiprocessors)."""
    cupy = types.ModuleType("cupy")
    cupy.__file__ = __file__

    def __getattr__(name):
        attr = getattr(np, name)
        if callable(attr) and not isinstance(attr, (type, np.ufunc)):   # dtypes and ufuncs stay NumPy's
            attr = _device_function(attr)
        setattr(cupy, name, attr)
        return attr

    class Device:
        def __init__(self, device_id=0):
            self.id = device_id
            self.attributes = {"MultiProcessorCount": SM_COUNT}

    cupy.__getattr__ = __getattr__
    cupy.ndarray = DeviceArray
    cupy.asnumpy = np.array
    # No kernel runs, so what a wrapper allocates for a kernel to write keeps its initial values: zeros
    # keep any later host-side step (a reference fallback) deterministic.
    cupy.empty, cupy.empty_like = _device_function(np.zeros), _device_function(np.zeros_like)
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDevice=lambda: 0), Device=Device)
    return cupy


class _Launches:
    """``loader.kernel``'s stand-in: kernel objects that record and check each launch instead of running.
    A wrapper that opts a kernel into more dynamic shared memory sets ``max_dynamic_shared_size_bytes`` on
    it, as on CuPy's kernel objects; the checker then allows that much."""

    def __init__(self):
        self.records = []
        self._kernels = {}

    def kernel(self, file_name, expression, device_id):
        key = (file_name, expression)
        if key not in self._kernels:
            self._kernels[key] = self._make(file_name, expression)
        return self._kernels[key]

    def _make(self, file_name, expression):
        records = self

        class FakeKernel:
            max_dynamic_shared_size_bytes = SHARED_LIMIT

            def __call__(self, grid, block, args, shared_mem=0):
                records.records.append({
                    "expression": expression, "grid": repr(grid), "block": repr(block),
                    "shared_mem": repr(shared_mem),
                    "problems": check_launch(file_name, expression, grid, block, args, shared_mem,
                                             self.max_dynamic_shared_size_bytes)})

        return FakeKernel()


def install():
    """Put the fake ``cupy`` in ``sys.modules`` and stub CUDA: kernels record their launches, cuBLAS GEMMs
    run in NumPy (batched ones only build their call, which checks the operands), and cuBLASLt reports
    no algorithm, so the FC forward runs its documented fallback, the GEMM and the epilogue kernel.
    Returns the launch recorder. Never call it in a process that goes on to do anything else."""
    assert "cupy" not in sys.modules, "install() runs only in a fresh subprocess"
    sys.modules["cupy"] = fake_cupy()
    from hugectr_lab.backend.cuda import cublas, cublas_abi, cublaslt, loader
    launches = _Launches()
    loader.kernel = launches.kernel
    cublas.matmul = lambda a, b, tf32=False, align=True: np.matmul(a, b).view(DeviceArray)
    cublas.gemm_strided_batched = lambda a, b, c, batch, tf32=False: cublas_abi.strided_batched_gemm(
        a, b, c, batch)
    cublaslt.gemm_bias_act = lambda x, w, b, relu, tf32=False: None
    return launches


# ---- cases -------------------------------------------------------------------------------------
# tests/gpu/op_cases.py covers the training ops; the inference cache's wrappers (hugectr_lab/inference/
# cuda_cache.py, kernels/embedding_cache.cu) are compared with their references by tests/gpu/
# test_inference_kernels.py on its own inputs, so they get small cases here: an empty cache of 3 sets,
# keys with repeats and padding (the empty key), a parameter server holding about half of them.

_VEC, _SETS = 5, 3


def _inference_cases(OpCase):
    from hugectr_lab.inference.cache_ops import SKETCH_DEPTH, WAYS, empty_key
    from hugectr_lab.backend import get_backend
    from hugectr_lab.inference.graph_ops import infer_dedupe, infer_lookup, ps_index, set_size

    def keys(rng, kt, n=101):
        k = rng.integers(1, 300, n).astype(kt)
        k[::9] = empty_key(kt)
        return k

    def cache(kt):
        return [np.full(_SETS * WAYS, empty_key(kt), kt), np.zeros(_SETS * WAYS, np.int64),
                np.zeros((_SETS * WAYS, _VEC), np.float32)]

    def sketch():
        return np.zeros((SKETCH_DEPTH, 64), np.uint32)

    def empty_set(kt, size=256):   # infer_dedupe's set as infer_begin leaves it
        return np.full(size, empty_key(kt), kt)

    def distinct(rng, kt):   # keys to insert: distinct, none cached
        return rng.choice(np.arange(1, 300), 77, replace=False).astype(kt)

    def offsets(rng, bad):
        """A staged table's row offsets (R+2,): 37 rows, then the padding row's end; ``bad``: a descent and
        offsets outside [0, k]."""
        o = np.concatenate([[0], np.cumsum(rng.integers(0, 4, 37)), [200]]).astype(np.int64)
        if bad:
            o[[5, 9, 20]] = o[[5, 9, 20]] + np.array([3, -50, 10 ** 6])
        return o

    def graph(rng, kt, cached, tinylfu):
        """The arguments of infer_lookup for a de-duplicated set of keys."""
        k = keys(rng, kt)
        set_keys, inverse = empty_set(kt, set_size(k.size)), np.zeros(k.size, np.int64)
        infer_dedupe(np, k, set_keys, inverse, None)
        ps_keys = np.unique(rng.integers(1, 300, 150)).astype(kt)
        return (set_keys, *(cache(kt) if cached else (None,) * 3), *ps_index(np, get_backend("numpy").ops, ps_keys),
                rng.normal(size=(ps_keys.size, _VEC)).astype(np.float32), -0.5, sketch() if tinylfu else None,
                np.array([3, 1], np.int64), np.zeros((set_keys.size, _VEC), np.float32),
                np.zeros(set_keys.size, np.uint8), np.zeros(5, np.int64))

    def inserted(rng, kt, tinylfu):
        """The arguments of infer_insert after infer_lookup (run by the reference) filled the set."""
        (set_keys, ck, cs, cv, index_keys, index_rows, ps_vectors, default, sk, header, values, miss,
         counters) = graph(rng, kt, True, tinylfu)
        infer_lookup(np, set_keys, ck, cs, cv, index_keys, index_rows, ps_vectors, default, sk, header, values, miss,
                     counters)
        return set_keys, miss, values, counters.copy(), 1.0, ck, cs, cv, sk, header, counters, np.full(_SETS, -1, np.int64)

    builders = {
        "embedding_cache_set_index": lambda r, kt: (keys(r, kt), _SETS),
        "embedding_cache_query": lambda r, kt: (*cache(kt), keys(r, kt), 4),
        "embedding_cache_insert": lambda r, kt: (*cache(kt), distinct(r, kt), r.normal(size=(77, _VEC)).astype(
            np.float32), 4),
        "embedding_cache_insert_tinylfu": lambda r, kt: (*cache(kt), sketch(), distinct(r, kt), r.normal(
            size=(77, _VEC)).astype(np.float32), 4),
        "embedding_cache_sketch_update": lambda r, kt: (sketch(), keys(r, kt), True),
        "embedding_cache_frequency": lambda r, kt: (sketch(), keys(r, kt)),
        "infer_dedupe": lambda r, kt: (keys(r, kt), empty_set(kt), np.zeros(101, np.int64), None),
        "infer_dedupe-rejected": lambda r, kt: (keys(r, kt), empty_set(kt), np.zeros(101, np.int64),
                                                np.ones(1, np.int64)),
        "infer_begin": lambda r, kt: (offsets(r, False), keys(r, kt), r.normal(size=(7, 3)).astype(np.float32),
                                      np.array([[3, 1, 101], [3, 1, 0]]), 0, np.zeros(1, np.int64), np.zeros(256, kt)),
        "infer_begin-rejected": lambda r, kt: (offsets(r, True), keys(r, kt), None, np.array([[3, 1, 0], [3, 1, 101]]),
                                               1, np.zeros(1, np.int64), np.zeros(256, kt)),
        "infer_lookup": lambda r, kt: graph(r, kt, True, False),
        "infer_lookup-tinylfu": lambda r, kt: graph(r, kt, True, True),
        "infer_lookup-uncached": lambda r, kt: graph(r, kt, False, False),
        "infer_insert": lambda r, kt: inserted(r, kt, False),
        "infer_insert-tinylfu": lambda r, kt: inserted(r, kt, True),
    }
    return [OpCase(name.split("-")[0], lambda r, _, b=build, kt=kt: (b(r, kt), {}), dtypes=("float32",),
                   id="-".join(name.split("-")[1:] + [kname]))
            for name, build in builders.items() for kt, kname in ((np.uint32, "I32"), (np.int64, "I64"))]


def cases():
    """Every case: tests/gpu/op_cases.py's, then the inference cache's (above)."""
    if str(REPO / "tests" / "gpu") not in sys.path:
        sys.path.insert(0, str(REPO / "tests" / "gpu"))
    from op_cases import CASES, OpCase
    return CASES + _inference_cases(OpCase)


def _where(error):
    """The innermost frames of ``error``'s traceback in hugectr_lab, as file:line."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "hugectr_lab" in f.filename]
    return " <- ".join(f"{f.filename[f.filename.rindex('hugectr_lab'):]}:{f.lineno}" for f in reversed(frames[-3:]))


def _arg_names(fn, count):
    """Names of ``fn``'s first ``count`` positional arguments after ``xp`` (``xs[1]`` for a ``*xs``)."""
    names, rest = [], None
    for p in list(inspect.signature(fn).parameters.values())[1:]:
        if p.kind is p.VAR_POSITIONAL:
            rest = p.name
            break
        names.append(p.name)
    return [names[i] if i < len(names) else f"{rest}[{i - len(names)}]" for i in range(count)]


def _run_case(wrapper, xp, launches, args, kwargs, strided_arg):
    """(launch records, error) of one call of ``wrapper``; argument ``strided_arg`` (None: none) is given
    in a non-contiguous layout."""
    DeviceArray.LIVE.clear()
    launches.records = []
    args = [_to_device(a, i == strided_arg) for i, a in enumerate(args)]
    kwargs = {k: _to_device(v) for k, v in kwargs.items()}
    error = None
    try:
        wrapper(xp, *args, **kwargs)
    except Exception as e:   # a wrapper that raises is a finding, named with where it raised
        error = f"{type(e).__name__}: {e} (at {_where(e)})"
    DeviceArray.LIVE.clear()
    return launches.records, error


def run(out_path):
    """Run every case (each dtype it lists) through its kernel wrapper: once as built, then once per array
    argument with that argument strided; write the records and the registered kernel ops to ``out_path``."""
    launches = install()
    # the references the wrappers fall back to register on import, as in a session
    import hugectr_lab.embedding  # noqa: F401
    import hugectr_lab.inference  # noqa: F401
    import hugectr_lab.layers  # noqa: F401
    import hugectr_lab.optim  # noqa: F401
    import hugectr_lab.inference.cuda_cache  # noqa: F401  (registers the cache's wrappers)
    from hugectr_lab.backend.cuda import load
    from hugectr_lab.backend.ops import KERNELS
    load()
    xp = sys.modules["cupy"]
    np.seterr(all="ignore")   # a reference may compute with kernel outputs that were never written
    records = []
    for index, case in enumerate(cases()):
        fn = KERNELS[case.op]
        for dtype in case.dtypes:
            args, kwargs = case.build(np.random.default_rng(7), dtype)
            names = _arg_names(fn, len(args))
            variants = [None] + [i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.size > 1]
            for strided_arg in variants:
                found, error = _run_case(fn, xp, launches, args, kwargs, strided_arg)
                records.append({"index": index, "op": case.op, "id": case.id, "dtype": dtype,
                                "strided": None if strided_arg is None else names[strided_arg],
                                "launches": found, "error": error})
    Path(out_path).write_text(json.dumps({"kernels": sorted(KERNELS), "records": records}))


if __name__ == "__main__":
    run(sys.argv[1])
