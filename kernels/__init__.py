"""CUDA C sources of the CuPy backend, shipped inside the wheel as ``hugectr_lab.kernels``.

Each ``*.cu`` file starts with a header naming its tensor layouts, launch mapping and the NumPy
reference (same name and signature) it must match.
"""

import re
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
_INCLUDE = re.compile(r'^#include "([\w.]+\.cuh)"[ \t]*$', re.MULTILINE)


def source_files():
    """All CUDA sources (``*.cu``) shipped with the package, sorted by name."""
    return sorted(SOURCE_DIR.glob("*.cu"))


def read_source(name):
    """Text of ``kernels/<name>`` (``name`` with or without the ``.cu`` suffix)."""
    path = SOURCE_DIR / (name if name.endswith((".cu", ".cuh")) else name + ".cu")
    if not path.is_file():
        known = ", ".join(p.name for p in source_files()) or "none"
        raise FileNotFoundError(f"no CUDA source {path.name!r} in {SOURCE_DIR} (known: {known})")
    return path.read_text()


def inlined_source(name):
    """``read_source(name)`` with its ``#include "*.cuh"`` lines replaced by the headers' text: what NVRTC
    compiles (the loader; tests/kernels/test_nvrtc.py), so CuPy's compile cache, which hashes the source
    text, sees header changes too."""
    return _INCLUDE.sub(lambda m: inlined_source(m.group(1)), read_source(name))
