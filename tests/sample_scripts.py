"""Run HugeCTR's sample scripts unchanged inside a test process.

The samples begin with ``from mpi4py import MPI`` (HugeCTR's Python module needs MPI initialised);
here a stand-in ``mpi4py`` package in the working directory satisfies that import, so the test
process never initialises MPI (the real multi-process runs are in tests/distributed).
"""

import sys


def run_sample(source, workdir, name, namespace=None):
    """``exec`` the script ``source`` (shown in tracebacks as ``name``) with ``workdir`` first on the
    import path and the stand-in ``mpi4py``; returns the script's namespace (``namespace`` seeds it)."""
    (workdir / "mpi4py").mkdir(exist_ok=True)
    (workdir / "mpi4py" / "__init__.py").write_text("class MPI:\n    COMM_WORLD = None\n")
    namespace = dict(namespace or {})
    sys.path.insert(0, str(workdir))
    try:
        exec(compile(source, name, "exec"), namespace)
    finally:
        sys.path.remove(str(workdir))
        sys.modules.pop("mpi4py", None)
    return namespace
