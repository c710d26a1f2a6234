"""Train a Session as a test describes it, alone or as one of several MPI processes.

``python mpi_worker.py spec.json``: the spec names the working directory, the solver arguments, the
config, the number of iterations and where process 0 writes the result (losses after every
iteration, eval metrics, parameter count, and every process's local devices). Model files are
written with ``download_params_to_files`` under the spec's prefix.
"""

import json
import os
import sys

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.fileio import atomic_write
from hugectr_lab.session import Session


def main(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    os.chdir(spec["workdir"])
    sess = Session(solver_parser_helper(**spec["solver"]), spec["config"], backend=spec.get("backend", "numpy"))
    sess.start_data_reading()
    losses = []
    for _ in range(spec["iterations"]):
        sess.train()
        losses.append(sess.get_current_loss())
    sess.copy_weights_for_evaluation()
    metrics = sess.evaluation()
    sess.download_params_to_files(spec["prefix"], spec["iterations"])
    result = {"losses": losses, "metrics": metrics, "params": sess.get_params_num(),
              "local_devices": sess.comm.group.allgather(list(sess.local_devices)),
              "processes": sess.comm.group.size}
    if sess.comm.group.rank == 0:
        with atomic_write(spec["result"], "w") as f:
            json.dump(result, f)
    sess.close()


if __name__ == "__main__":
    main(sys.argv[1])
