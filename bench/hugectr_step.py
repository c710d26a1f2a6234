"""hugectr-lab's training step on device-resident batches, with an event between phases.

The step is ``Session.train`` after the batch is read (one device): embedding forward, dense forward,
dense backward, dense optimizer, embedding backward, sparse optimizer. Batches are moved to the
device once, so the timed steps read no files and copy nothing from the host.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.session import Session

PHASES = ("embedding fwd", "dense fwd", "dense bwd", "dense update", "embedding bwd", "embedding update")


class HugeCTRStep:
    def __init__(self, work, backend="cupy"):
        self.session = Session(solver_parser_helper(**work.solver), work.config, backend=backend)
        backend = self.session.backend
        self.xp = backend.xp
        rows = work.batch * len(work.cardinalities)
        row_offsets = backend.asarray(np.arange(rows + 1, dtype=np.int64))   # one key per (sample, slot)
        self.batches = [SimpleNamespace(dense=backend.asarray(b.dense), labels=backend.asarray(b.labels), size=work.batch,
                                        sparse=[SimpleNamespace(row_offsets=row_offsets, keys=backend.asarray(b.keys))])
                        for b in work.batches]
        self.batch = work.batch

    def step(self, batch, mark=lambda phase: None):
        """One training step on ``batch``; ``mark(phase)`` is called after each phase. Returns the loss (0-d)."""
        s = self.session
        (net,) = s.train_networks
        outputs = s._embed(batch, training=True)
        mark("embedding fwd")
        (feed,) = s._feeds(batch, self.batch, outputs)
        loss = net.forward(feed, training=True)
        mark("dense fwd")
        net.backward()
        mark("dense bwd")
        s.dense_optimizers[0].update(net.weights, net.grads)
        mark("dense update")
        for spec, emb in zip(s.config.embeddings, s.embeddings):
            emb.backward([net.input_grad(spec.top)])
        mark("embedding bwd")
        for emb in s.embeddings:
            emb.update()
        mark("embedding update")
        return loss

    def close(self):
        self.session.close()
