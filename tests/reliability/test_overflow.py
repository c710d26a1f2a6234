"""Vocabulary overflow is loud: warning + event once per table, distinct keys counted, CLI output,
and on_vocabulary_overflow="error" (docs/reliability.md)."""

import warnings

import numpy as np
import pytest

from session_helpers import SLOTS, dnn_config, make_dataset, write_config

from hugectr_lab.backend import get_backend
from hugectr_lab.cli import main
from hugectr_lab.config import SolverParser, solver_parser_helper
from hugectr_lab.embedding import EmbeddingOverflowError, HashTable, VocabularyOverflowWarning
from hugectr_lab.events import VocabularyOverflow
from hugectr_lab.session import Session


def overflowing_session(workdir, capacity=100, vvgpu=((0,),), backend=None, **solver):
    """A Session whose table holds ``capacity`` keys per device, fewer than the data's 400 distinct keys."""
    args = dict(batchsize=64, batchsize_eval=64, max_eval_batches=2, seed=1, vvgpu=[list(n) for n in vvgpu])
    args.update(solver)
    return Session(solver_parser_helper(**args), write_config(workdir / "c.json", dnn_config(vocab=capacity)),
                   backend=backend)


def overflow_warnings(caught):
    """The VocabularyOverflowWarnings among the ``warnings.catch_warnings(record=True)`` list ``caught``."""
    return [w for w in caught if issubclass(w.category, VocabularyOverflowWarning)]


def test_first_refusal_warns_once_per_table_and_device_with_distinct_keys(workdir):
    """8 slots x 50 keys = 400 distinct keys meet a table of 100 per device: the first step warns once per
    device, names embedding, device and capacity; check_overflow counts each refused key once."""
    session = overflowing_session(workdir, vvgpu=((0, 1),))
    events = []
    session.events.subscribe(lambda e: isinstance(e, VocabularyOverflow) and events.append(e))
    session.start_data_reading()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(30):
            session.train()
    overflow = overflow_warnings(caught)
    assert len(overflow) == 2 and [e.device for e in events] == [0, 1]
    assert all(e.iteration == 1 and e.embedding == "emb" and e.capacity == 100 for e in events)
    message = str(overflow[0].message)
    assert message.startswith("iteration 1: embedding 'emb' on device 0: ")
    assert "max_vocabulary_size_per_gpu=100" in message
    # after 30 batches every key was offered: each device refused exactly the keys it owns beyond 100
    reports = session.vocabulary_overflow()
    held = [len(table) for table in (session.embeddings[0].devices[g].table for g in (0, 1))]
    assert held == [100, 100]
    assert sum(r.refused[0] for r in reports) == SLOTS * 50 - 200
    assert all(r.refused[0] == r.refused[1] for r in reports)   # exact: the tables remember refused keys
    with pytest.raises(EmbeddingOverflowError, match=rf"device 0: \d+ keys exceed max_vocabulary_size_per_gpu=100 "
                                                     rf"\({reports[0].refused[0]} distinct keys got no row"):
        session.check_overflow()
    session.close()


@pytest.mark.parametrize("backend", ["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def test_growing_the_refused_memory_keeps_the_distinct_count_exact(backend):
    """Capacity 1 remembers 768 refused keys. 1599 distinct refused keys offered 3 times in batches of
    100, growing where the session reads the counters: each is counted once. Without growing, 3x."""
    grown, fixed = (HashTable(1, "I64", get_backend(backend)) for _ in range(2))
    for _ in range(3):
        for batch in np.array_split(np.arange(1600), 16):
            grown.get_insert(batch)
            grown.grow_refused_memory()
            fixed.get_insert(batch)
    assert grown.refused_keys() == (1599, 1599) and grown.overflow == 1599 and grown.num_slots > fixed.num_slots
    assert get_backend(backend).to_host(grown.get(np.array([0, 1, 5]))).tolist() == [0, -1, -1]   # rows kept
    assert "1600 keys exceed max_vocabulary_size_per_gpu=1 (1599 distinct keys" in grown.overflow_message()
    low, high = fixed.refused_keys()                   # the bounds that remain without growing
    assert low == 768 and high == fixed.overflow > 2 * 1599
    assert f"768 to {high} distinct keys" in fixed.overflow_message()


def test_one_batch_past_the_room_gives_bounds():
    table = HashTable(1, "I64")
    table.get_insert(np.arange(1600))                  # 1599 refused in one batch: 768 remembered
    table.grow_refused_memory()
    table.get_insert(np.arange(1600))
    low, high = table.refused_keys()
    assert low <= 1599 <= high and "at least" in table.overflow_message()


def test_on_vocabulary_overflow_error_stops_training(workdir):
    session = overflowing_session(workdir, on_vocabulary_overflow="error")
    session.start_data_reading()
    with pytest.raises(EmbeddingOverflowError, match=r"iteration 1: embedding 'emb' on device 0: .*on_vocabulary_"
                                                     r"overflow is 'error'"):
        session.train()
    session.close()


def test_solver_json_sets_the_reliability_options():
    clause = {"lr_policy": "fixed", "display": 1, "max_iter": 2, "gpu": [0], "batchsize": 8, "snapshot": 10,
              "snapshot_prefix": "x", "max_eval_batches": 1, "mixed_precision": 1024, "loss_scaling": "dynamic",
              "loss_scale_growth_interval": 100, "on_vocabulary_overflow": "error"}
    solver = SolverParser({"solver": clause})
    assert (solver.loss_scaling, solver.loss_scale_growth_interval, solver.on_vocabulary_overflow) == \
        ("dynamic", 100, "error")
    with pytest.raises(ValueError, match=r"solver\.loss_scaling.*needs mixed_precision"):
        SolverParser({"solver": {k: v for k, v in clause.items() if k != "mixed_precision"}})
    with pytest.raises(ValueError, match=r"solver\.on_vocabulary_overflow"):
        SolverParser({"solver": {**clause, "on_vocabulary_overflow": "ignore"}})


def test_cli_train_prints_the_overflow(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path, samples=512)
    cfg = dnn_config(vocab=60)
    cfg["solver"] = {"lr_policy": "fixed", "display": 10, "max_iter": 12, "gpu": [0], "batchsize": 64,
                     "batchsize_eval": 64, "snapshot": 1000, "snapshot_prefix": "./run", "eval_interval": 6,
                     "max_eval_batches": 2}
    config = write_config(tmp_path / "c.json", cfg)
    assert main(["train", config, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "warning: iteration 1: embedding 'emb' on device 0: " in out
    assert "vocabulary overflow at the end of training: embedding 'emb' on device 0: " in out
    assert "distinct keys got no row" in out and "trained 12 iterations" in out


@pytest.mark.gpu
def test_cupy_reads_the_counters_only_at_eval_save_and_check(workdir):
    """On CuPy training never reads the tables' counters: the warning comes with the next eval or save,
    with the same distinct count as the NumPy reference."""
    counts = {}
    for backend in ("numpy", "cupy"):
        session = overflowing_session(workdir, backend=backend)
        session.start_data_reading()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(5):
                session.train()
            during_training = overflow_warnings(caught)
            session.download_params_to_files(f"{backend}_model", 5)
            after_save = overflow_warnings(caught)
        assert len(after_save) == 1
        assert len(during_training) == (1 if backend == "numpy" else 0)
        counts[backend] = session.vocabulary_overflow()[0].refused
        session.close()
    assert counts["cupy"] == counts["numpy"]
