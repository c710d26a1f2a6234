"""GPU lane: the radix sort that groups a batch's key occurrences for the gradient reduction
(`embedding_ops._group_sort`, kernels/embedding.cu) is a stable sort: it equals NumPy's stable argsort on
sizes around its tile (1024 items) and its batch of rounds (8 x 32 items), with one, two and three 8-bit
passes, and on DCN's batch (16384 x 26 occurrences of a Zipf-like key set)."""

import numpy as np
import pytest

from hugectr_lab.backend import get_backend

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("n,max_group", [(1, 0), (31, 5), (255, 200), (257, 200), (1023, 4000), (1025, 4000),
                                         (5003, 70_000), (4099, 3_000_000), (425_984, 66_500)])
def test_group_sort_is_numpys_stable_argsort(n, max_group):
    from hugectr_lab.backend.cuda.embedding_ops import _group_sort   # imports CuPy

    cp = get_backend("cupy")
    rng = np.random.default_rng(n)
    groups = np.minimum(rng.zipf(1.2, size=n) - 1, max_group).astype(np.int64)
    groups[rng.integers(0, n, size=max(1, n // 50))] = max_group   # the rows-less occurrences, sorted last
    keys, positions = _group_sort(cp.xp, cp.asarray(groups), max_group)
    order = np.argsort(groups, kind="stable")
    np.testing.assert_array_equal(cp.to_host(positions), order)
    np.testing.assert_array_equal(cp.to_host(keys), groups[order])
