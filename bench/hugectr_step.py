"""hugectr-lab's training step on device-resident batches, with an event between phases.

The step is ``Session.train_step``, the part of ``Session.train`` after the batch is read and copied to
the devices: embedding forward, dense forward, dense backward (+ the weight-gradient all-reduce over G
GPUs), dense optimizer, embedding backward, sparse optimizer. Batches are staged once
(``Session.stage_batch``, every GPU gets its share), so the timed steps read no files and copy nothing
from the host.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.session import STEP_PHASES as PHASES
from hugectr_lab.session import Session

__all__ = ["PHASES", "HugeCTRStep"]


class HugeCTRStep:
    """``work.solver``'s vvgpu decides the GPUs; ``work.batch`` is the global batch."""

    def __init__(self, work, backend="cupy"):
        self.session = s = Session(solver_parser_helper(**work.solver), work.config, backend=backend)
        rows = work.batch * len(work.cardinalities)
        row_offsets = np.arange(rows + 1, dtype=np.int64)   # one key per (sample, slot)
        self.batches = [s.stage_batch(SimpleNamespace(dense=h.dense, labels=h.labels,
                                                      sparse=[SimpleNamespace(row_offsets=row_offsets, keys=h.keys)]))
                        for h in work.batches]
        self.batch = work.batch

    def step(self, batch, mark=None):
        """One training step on a staged batch; ``mark(phase)`` after each phase. Returns device 0's loss."""
        return self.session.train_step(batch, mark)[0]

    def close(self):
        self.session.close()
