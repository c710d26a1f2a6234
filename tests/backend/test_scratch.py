import threading

import numpy as np

from hugectr_lab.backend.scratch import cache_blocks, scratch


def test_scratch_reuses_one_buffer_per_key_and_thread():
    a = scratch(np, "t", (5, 3), np.float32)
    assert scratch(np, "t", (5, 3), np.float32) is a
    assert scratch(np, "u", (5, 3), np.float32) is not a
    assert scratch(np, "t", (5, 3), np.float64) is not a
    other = []
    thread = threading.Thread(target=lambda: other.append(scratch(np, "t", (5, 3), np.float32)))
    thread.start()
    thread.join()
    assert other[0] is not a and other[0].shape == (5, 3)


def test_cache_blocks_cover_the_range_once():
    for n in (0, 1, 7, 64, 65, 1000):
        blocks = cache_blocks(np, n, block=64)
        covered = np.concatenate([np.arange(n)[s] for s in blocks]) if blocks else np.zeros(0, int)
        np.testing.assert_array_equal(covered, np.arange(n))
        assert all(s.stop - s.start <= 64 for s in blocks)
