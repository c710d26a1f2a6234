"""hugectr_lab.kernels and hugectr_lab.widgets import from a wheel and from an editable install.

Both live at the top level of the repository (kernels/, widgets/) and are mapped into the package by
setuptools' package-dir; these tests build real installs in temporary places and import from outside
the source tree, so a broken mapping cannot hide behind the repository being on sys.path.
"""

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import setuptools

REPO = Path(__file__).resolve().parents[1]
PROBE = ("import hugectr_lab, hugectr_lab.kernels as k, hugectr_lab.widgets as w; "
         "print(k.__file__); print(w.__file__); print(len(k.source_files()))")
BUILD_TOOLS = str(Path(setuptools.__file__).resolve().parents[1])


def _run(cmd, cwd, env=None):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(extra)
    return env


def test_wheel_ships_kernels_and_widgets(tmp_path):
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(tmp_path / "dist"), str(REPO)], cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("hugectr_lab-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "hugectr_lab/kernels/__init__.py" in names
    assert "hugectr_lab/widgets/__init__.py" in names
    assert "hugectr/__init__.py" in names
    cu_sources = sorted(p.name for p in (REPO / "kernels").glob("*.cu"))
    assert sorted(n.split("/")[-1] for n in names if n.endswith(".cu")) == cu_sources

    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
         cwd=tmp_path)
    out = _run([sys.executable, "-c", PROBE], cwd=tmp_path, env=_clean_env(PYTHONPATH=str(site))).split()
    assert Path(out[0]) == site / "hugectr_lab" / "kernels" / "__init__.py"
    assert Path(out[1]) == site / "hugectr_lab" / "widgets" / "__init__.py"
    assert int(out[2]) == len(cu_sources)


def test_editable_install_maps_top_level_folders(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # The build tools come from the running environment; the import below runs without them.
    _run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", "-e", str(REPO)],
         cwd=tmp_path, env=_clean_env(PYTHONPATH=BUILD_TOOLS))
    out = _run([str(python), "-c", PROBE], cwd=tmp_path, env=_clean_env()).split()
    assert Path(out[0]) == REPO / "kernels" / "__init__.py"
    assert Path(out[1]) == REPO / "widgets" / "__init__.py"
