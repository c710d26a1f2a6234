"""CPU CI: every kernels/*.cu compiles with NVRTC -- the compiler the GPU machine's loader uses -- exactly as
the loader hands it over (headers inlined, NVRTC_OPTIONS, every name expression of sources.SOURCES), for
sm_90. nvcc (test_compile.py) sees the full CUDA headers; NVRTC has only its built-in ones, so a kernel
that needs a device function NVRTC lacks (a newer atomic, a header-only intrinsic) fails here, not on
the GPU machine. The NVRTC library comes from the ``nvidia-cuda-nvrtc`` wheel of the dev extra; without
it this fails, unless HUGECTR_LAB_SKIP_NVRTC=1 says to skip."""

import ctypes
import os
from pathlib import Path

import pytest

from hugectr_lab.backend.cuda.sources import NVRTC_OPTIONS, SOURCES
from hugectr_lab.kernels import inlined_source, source_files


def _library_dir():
    try:
        import nvidia
    except ImportError:
        return None
    for root in map(Path, nvidia.__path__):
        for lib in sorted(root.glob("cu*/lib/libnvrtc.so.*")) + sorted(root.glob("cuda_nvrtc/lib/libnvrtc.so.*")):
            if lib.name.count(".") == 2:   # libnvrtc.so.<major>
                return lib.parent
    return None


@pytest.fixture(scope="module")
def nvrtc():
    folder = _library_dir()
    if folder is None:
        if os.environ.get("HUGECTR_LAB_SKIP_NVRTC") == "1":
            pytest.skip("no NVRTC library and HUGECTR_LAB_SKIP_NVRTC=1")
        pytest.fail("no NVRTC library: `pip install nvidia-cuda-nvrtc` (in the dev extra), or set "
                    "HUGECTR_LAB_SKIP_NVRTC=1 to skip this check explicitly")
    # NVRTC opens its builtins library by name: load it first, so that the name resolves in this process.
    for builtins in sorted(folder.glob("libnvrtc-builtins.so.*")):
        if ".alt." not in builtins.name:
            ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
    lib = next(p for p in sorted(folder.glob("libnvrtc.so.*")) if p.name.count(".") == 2)
    return ctypes.CDLL(str(lib))


def _log(nvrtc, program):
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    text = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, text)
    return text.value.decode(errors="replace")


@pytest.mark.parametrize("name", [p.name for p in source_files()])
def test_kernel_source_compiles_with_nvrtc(nvrtc, name):
    program = ctypes.c_void_p()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), inlined_source(name).encode(), name.encode(),
                                    0, None, None) == 0
    try:
        for expression in SOURCES[name]:
            assert nvrtc.nvrtcAddNameExpression(program, expression.encode()) == 0, expression
        options = [o.encode() for o in (*NVRTC_OPTIONS, "--gpu-architecture=sm_90")]
        status = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
        log = _log(nvrtc, program)
        assert status == 0, f"{name}: NVRTC error {status}\n{log}"
        assert "warning" not in log, f"{name}: NVRTC warnings\n{log}"
        for expression in SOURCES[name]:   # every instantiation the wrappers launch has a lowered name
            lowered = ctypes.c_char_p()
            assert nvrtc.nvrtcGetLoweredName(program, expression.encode(), ctypes.byref(lowered)) == 0, expression
            assert lowered.value, expression
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
