"""CPU lane: every CUDA kernel wrapper hands its kernel what the kernel's C signature takes.

A wrapper's launch otherwise first runs in the GPU lane (tests/gpu/test_kernel_ops.py): an argument in
the wrong slot, a float64 scalar for a ``float``, an int32 array for a ``long long*`` show up only there
(``launch_grid(file, expr, *(grid, block, shared), args)`` once did). Here every wrapper in ``KERNELS``
runs on the CPU, in a subprocess where ``cupy`` is a stand-in over NumPy (launch_stub.py): no kernel
runs; each launch is recorded and checked against the ``__global__`` function parsed from
``kernels/<file>``, with the expression's template arguments put in:

* the expression is listed for its file in ``sources.SOURCES`` (all the loader compiles);
* as many arguments as parameters; a pointer gets a C-contiguous device array of the pointee's dtype
  (``const`` ignored, ``hctr_half`` = float16, ``long long`` = int64, ...), ``NULL``, or an address
  inside a device array of that dtype; a scalar gets the NumPy scalar type of its C type;
* grid and block: 1 to 3 positive extents within CUDA's limits, at most 1024 threads a block (fewer
  under ``__launch_bounds__``); shared_mem: int bytes, at most 48 KiB, nonzero exactly for the kernels
  that use ``extern __shared__`` memory.

Cases: every OpCase of tests/gpu/op_cases.py in each dtype it lists, plus small cases of the inference
cache's wrappers (launch_stub.py), once as built and once per array argument given as a non-contiguous
view (the wrapper must make it contiguous or fall back to its reference: the kernels index flat memory).
A wrapper that raises fails too. A case that launches no kernel must be in ``NO_LAUNCH``, and every
expression of ``sources.SOURCES`` must be launched by some case, so that a wrapper that silently stops
launching its kernel (or an instantiation nothing uses) is noticed.
"""

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from launch_stub import C_DTYPES, DeviceArray, cases, check_launch, signature, struct_sizes

from hugectr_lab.backend.cuda.sources import SOURCES

CASES = cases()

# Cases (test ids) that launch no kernel of ours with their inputs as built, and why.
NO_LAUNCH = {
    "gemm-plain-float32": "gemm is one cuBLAS call (cublas.matmul)",
    "gemm-plain-float16": "gemm is one cuBLAS call (cublas.matmul)",
    "gemm-tf32-float32": "gemm is one cuBLAS call (cublas.matmul)",
    "gemm_bias_act_concat-four-outputs-float32": "more than one output: the reference (the fused step has one)",
    "gemm_bias_act_concat-four-outputs-float16": "more than one output: the reference (the fused step has one)",
}
def _case_id(case, dtype):
    return f"{case.op}-{case.id + '-' if case.id else ''}{dtype}"


def _params():
    return [pytest.param(index, dtype, id=_case_id(case, dtype)) for index, case in enumerate(CASES)
            for dtype in case.dtypes]


class _Report:
    """The subprocess's report: ``kernels``, the op names registered; ``by_case[index, dtype]``, that case's
    records -- inputs as built (``strided`` None) and each strided argument -- with their launches (the
    checker's findings in each) and any error the wrapper raised."""

    def __init__(self, data):
        self.kernels = data["kernels"]
        self.by_case = defaultdict(list)
        for record in data["records"]:
            case = CASES[record["index"]]
            assert (record["op"], record["id"]) == (case.op, case.id), "the subprocess saw other cases"
            self.by_case[record["index"], record["dtype"]].append(record)

    def __repr__(self):   # what pytest prints for the fixture in a failure
        return f"<launch report: {sum(map(len, self.by_case.values()))} calls>"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("launches") / "launches.json"
    env = {k: v for k, v in os.environ.items()   # the wrappers' default paths
           if k not in ("HUGECTR_LAB_KERNEL_DEBUG", "HUGECTR_LAB_INTERACTION_MMA")}
    stub = Path(__file__).with_name("launch_stub.py")
    done = subprocess.run([sys.executable, str(stub), str(out)], capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr
    return _Report(json.loads(out.read_text()))


def _findings(case, dtype, records):
    lines = []
    for record in records:
        where = f"{record['strided']} strided" if record["strided"] else "inputs as built"
        if record["error"]:
            lines.append(f"[{where}] the wrapper raised {record['error']}")
        for launch in record["launches"]:
            lines += [f"[{where}] {launch['expression']} (grid {launch['grid']}, block {launch['block']}, "
                      f"shared {launch['shared_mem']}): {problem}" for problem in launch["problems"]]
    return f"{case.op} case {case.id or '-'!r} {dtype}:\n  " + "\n  ".join(lines) if lines else ""


@pytest.mark.parametrize("index,dtype", _params())
def test_launches_match_the_kernel_signatures(results, index, dtype):
    records = [r for r in results.by_case[index, dtype] if r["strided"] is None]
    assert len(records) == 1
    failure = _findings(CASES[index], dtype, records)
    assert not failure, failure


@pytest.mark.parametrize("index,dtype", _params())
def test_launches_match_with_each_input_strided(results, index, dtype):
    failure = _findings(CASES[index], dtype, [r for r in results.by_case[index, dtype] if r["strided"]])
    assert not failure, failure


def test_every_registered_wrapper_has_cases(results):
    assert set(results.kernels) == {case.op for case in CASES}


def test_only_the_allowed_cases_launch_no_kernel(results):
    silent = {_case_id(CASES[index], dtype) for (index, dtype), records in results.by_case.items()
              if not any(r["launches"] for r in records if r["strided"] is None)}
    assert silent == set(NO_LAUNCH), f"launch nothing: {sorted(silent - set(NO_LAUNCH))}; " \
                                     f"launch now: {sorted(set(NO_LAUNCH) - silent)}"


def test_every_listed_instantiation_is_launched(results):
    launched = {launch["expression"] for records in results.by_case.values() for r in records
                for launch in r["launches"]}
    unused = {e for expressions in SOURCES.values() for e in expressions if e not in launched}
    assert not unused, f"listed in sources.SOURCES (compiled) but launched by no case: {sorted(unused)}"


# ---- the checker itself (in this process: it needs no CuPy) -----------------------------------------

@pytest.mark.parametrize("file_name", sorted(SOURCES))
def test_every_listed_instantiation_has_a_checkable_signature(file_name):
    for expression in SOURCES[file_name]:
        _, params = signature(file_name, expression)
        assert params, expression
        structs = struct_sizes(file_name)   # by value, their size pinned by a static_assert
        unknown = [p.decl for p in params if p.ctype not in C_DTYPES and (p.pointer or p.ctype not in structs)]
        assert not unknown, f"{expression}: no NumPy dtype for {unknown}"


def test_a_struct_by_value_gets_a_structured_array_of_its_size():
    from hugectr_lab.backend.cuda.writes import TABLE

    table = np.zeros(1, TABLE)
    assert check_launch("write_table.cu", "hctr_write_table", (3,), (256,), (table,), 0) == []
    wrong = check_launch("write_table.cu", "hctr_write_table", (3,), (256,), (np.zeros(50, np.uint64),), 0)
    assert len(wrong) == 1 and "struct hctr_write_table_args of 400 bytes" in wrong[0]


def _device(shape, dtype):
    return np.zeros(shape, dtype).view(DeviceArray)


def _multicross(**change):
    """A correct launch of hctr_multicross_fwd<float> (m = 77 rows of 29, 3 layers), with ``change`` made."""
    m, dim, layers = 77, 29, 3
    args = [_device((m, dim), np.float32), _device((layers, dim), np.float32), np.int64(dim),
            _device((layers, dim), np.float32), np.int64(dim), _device((m, dim), np.float32),
            _device((layers, m, 1), np.float32), np.int64(m), np.int32(dim), np.int32(layers), np.int32(1)]
    # 4 warps of two rows each, then w and b
    launch = dict(grid=(20,), block=(128,), shared_mem=4 * 2 * dim * 4 + 2 * layers * dim * 4)
    for key, value in change.items():
        if key.startswith("arg"):
            args[int(key[3:])] = value
        else:
            launch[key] = value
    return check_launch("multicross.cu", "hctr_multicross_fwd<float>", launch["grid"], launch["block"], tuple(args),
                        launch["shared_mem"])


@pytest.mark.parametrize("change,message", [pytest.param(c, m, id=i) for i, c, m in [
    ("pointer-dtype", {"arg1": _device((3, 29), np.float16)},
     "parameter 1 `const T* __restrict__ w` (w): a float16 array for a pointer float*"),
    ("python-int", {"arg7": 77}, "parameter 7 `long long m` (m): int 77 for a scalar long long: pass np.int64"),
    ("scalar-type", {"arg8": np.int64(29)}, "parameter 8 `int dim` (dim): np.int64 29 for a scalar int: pass np.int32"),
    ("array-for-scalar", {"arg9": _device((), np.int32)}, "an array (int32[]) for a scalar int"),
    ("host-array", {"arg0": np.zeros((77, 29), np.float32)}, "a host NumPy array"),
    ("transposed", {"arg0": _device((29, 77), np.float32).T}, "a non-C-contiguous array"),
    ("stray-address", {"arg5": np.uint64(8)}, "address 0x8 lies in no live device array"),
    ("null", {"arg5": np.uint64(0)}, None),   # NULL is a pointer argument
    ("args-as-shared", {"shared_mem": (1, 2)}, "shared_mem is tuple (1, 2), not an int"),   # the slot mix-up
    ("no-shared", {"shared_mem": 0}, "uses extern __shared__ memory but gets shared_mem=0"),
    ("too-much-shared", {"shared_mem": 64 * 1024}, "outside [0, 49152]"),
    ("threads", {"block": (32, 33)}, "1056 threads, the kernel allows 1024"),
    ("block-extent", {"block": (2048,)}, "extent 0 exceeds 1024"),
    ("block-int", {"block": 128}, "block 128 is not a tuple"),
    ("empty-grid", {"grid": (0,)}, "every extent must be a positive int"),
    ("grid-extent", {"grid": (1, 70000)}, "extent 1 exceeds 65535"),
]])
def test_the_checker_names_what_is_wrong(change, message):
    assert _multicross() == []
    problems = _multicross(**change)
    assert (problems == [] if message is None else any(message in p for p in problems)), problems


def test_the_checker_reads_counts_names_bounds_and_addresses():
    assert any("10 arguments for 11 parameters" in p for p in check_launch(
        "multicross.cu", "hctr_multicross_fwd<float>", (1,), (128,), (None,) * 10, 464))
    assert "not listed for multicross.cu" in check_launch("multicross.cu", "hctr_multicross_fwd<double>",
                                                          (1,), (128,), (), 464)[0]
    mma = signature("interaction.cu", "hctr_interaction_fwd_mma")[0]
    assert mma.max_threads == 128 and mma.dynamic_shared        # __launch_bounds__(128), extern block_smem
    assert any("the kernel allows 128 (__launch_bounds__)" in p for p in check_launch(
        "interaction.cu", "hctr_interaction_fwd_mma", (1,), (256,), (), 1024))
    # concat_columns passes addresses: (8, 4) float32 x, then four unused parts, into 4 columns of an (8, 8) out
    x, out, halves = _device((8, 4), np.float32), _device((8, 8), np.float32), _device((8, 8), np.float16)
    concat = ("concat.cu", "hctr_concat_columns<float>", (1,), (32, 8))
    unused = (np.uint64(0), np.int64(0), np.int32(0)) * 4
    sizes = (np.int64(8), np.int64(8), np.int32(4))
    part = (np.uint64(x.data.ptr), np.int64(4), np.int32(4))
    assert check_launch(*concat, (*part, *unused, np.uint64(out.data.ptr + 16), *sizes), 0) == []
    problems = check_launch(*concat, (*part, *unused, np.uint64(halves.data.ptr), *sizes), 0)
    assert problems == ["parameter 15 `T* __restrict__ out` (out): address into a float16 array for a float*"]
    problems = check_launch(*concat, (np.uint64(x.data.ptr + 2), *part[1:], *unused, np.uint64(out.data.ptr), *sizes), 0)
    assert problems == [f"parameter 0 `const T* __restrict__ x0` (x0): address {x.data.ptr + 2:#x} is not aligned "
                        f"to 4 bytes"]


def test_the_fake_cupy_stays_in_its_subprocess(results):
    stub = sys.modules.get("cupy")
    assert stub is None or getattr(stub, "__file__", None) != str(Path(__file__).with_name("launch_stub.py"))
