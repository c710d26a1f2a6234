"""CUDA C sources of the CuPy backend, shipped inside the wheel as ``hugectr_lab.kernels``.

Each ``*.cu`` file starts with a header naming its tensor layouts, launch mapping and the NumPy
reference (same name and signature) it must match.
"""

from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent


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
