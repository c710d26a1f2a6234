"""hugectr_lab.kernels and hugectr_lab.widgets import from a wheel and from an editable install, and a
plain install of the wheel runs HugeCTR's sample program unchanged.

kernels/ and widgets/ live at the top level of the repository and are mapped into the package by
setuptools' package-dir; these tests build real installs in temporary places and import from outside
the source tree, so a broken mapping cannot hide behind the repository being on sys.path.
"""

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import setuptools

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "session"))
from session_helpers import SEED_NON_EPOCH, dnn_config, make_dataset, write_config  # noqa: E402

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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The project's wheel, built once for this module."""
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
         cwd=dist)
    return next(dist.glob("hugectr_lab-*.whl"))


def test_wheel_ships_kernels_and_widgets(tmp_path, wheel):
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


def test_wheel_requires_mpi4py_and_an_mpi_runtime(wheel):
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    core = [line.split(":", 1)[1].strip() for line in metadata.splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert any(r.startswith("mpi4py") for r in core) and any(r.startswith("mpich") for r in core), core


def test_plain_install_runs_the_seed_program_under_python_and_mpiexec(tmp_path, wheel):
    """``pip install hugectr_lab-*.whl`` into a fresh venv (its dependencies resolved by pip: numpy, tqdm,
    mpi4py, the mpich wheel -- from the local index or pip's cache where they are) runs the seed's
    training program unchanged with plain ``python`` and under the venv's own ``mpiexec -n 1``."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, mpiexec = env_dir / "bin" / "python", env_dir / "bin" / "mpiexec"
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path, env=_clean_env())
    assert mpiexec.exists(), "the mpich wheel should put mpiexec beside the venv's python"

    work = tmp_path / "work"
    work.mkdir()
    make_dataset(work)
    write_config(work / "your_config.json", dnn_config())
    (work / "train.py").write_text(SEED_NON_EPOCH.format(batchsize=64, vvgpu=[[0]], mixed=False, scaler=1.0,
                                                         iterations=12, display=4, eval_every=6))
    where = _run([str(python), "-c", "import hugectr, mpi4py; print(hugectr.__file__); print(mpi4py.__file__)"],
                 cwd=work, env=_clean_env()).split()
    assert all(Path(p).is_relative_to(env_dir) for p in where), where   # the install, not this checkout
    for launch in ([str(python)], [str(mpiexec), "-n", "1", str(python)]):
        out = _run([*launch, "train.py"], cwd=work, env=_clean_env(OMPI_ALLOW_RUN_AS_ROOT="1"))
        assert out.count("[HUGECTR][INFO] iter: ") == 4, out   # 3 loss lines + 1 evaluation
        assert (work / "_dense_12.model").stat().st_size > 0
        (work / "_dense_12.model").unlink()
    library = _run([str(mpiexec), "-n", "1", str(python), "-c",
                    "from mpi4py import MPI; print(MPI.COMM_WORLD.Get_size(), MPI.Get_library_version())"],
                   cwd=work, env=_clean_env())
    assert library.startswith("1 ") and "MPICH" in library, library
