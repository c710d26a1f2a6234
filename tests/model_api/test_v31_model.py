"""The v3.1 Model's methods beyond fit: freezing, loading, incremental models, epoch mode with the model
oversubscriber over source/keyset pairs, and fit's dashboard view."""

import numpy as np
import pytest

from model_api_helpers import host, sample_script
from sample_scripts import run_sample


def compiled(workdir, name="wdl", lr=0.001, extra=""):
    return run_sample(sample_script(name, footer=False, lr=lr) + "model.compile()\n" + extra, workdir,
                      f"{name}.py")["model"]


def table(model, i):
    keys, vectors, _ = model.session.embeddings[i].dump()
    return dict(zip(keys.tolist(), vectors))


def test_freeze_and_unfreeze(workdir):
    model = compiled(workdir)
    model.start_data_reading()
    model.train()
    model.freeze_dense()
    model.freeze_embedding("sparse_embedding1")
    dense = host(model.session.train_networks[0].weights).copy()
    frozen, wide = table(model, 1), table(model, 0)
    for _ in range(3):
        model.train()
    assert np.array_equal(dense, host(model.session.train_networks[0].weights))
    after = table(model, 1)
    assert all(np.array_equal(frozen[k], after[k]) for k in frozen)    # the frozen table's rows did not move
    assert any(not np.array_equal(wide[k], v) for k, v in table(model, 0).items() if k in wide)   # the other did
    model.unfreeze_dense()
    model.unfreeze_embedding()
    model.train()
    assert not np.array_equal(dense, host(model.session.train_networks[0].weights))
    with pytest.raises(ValueError, match="no embedding of that name"):
        model.freeze_embedding("nope")


def test_save_and_load_round_trip(workdir):
    model = compiled(workdir)
    model.start_data_reading()
    for _ in range(4):
        model.train()
    model.save_params_to_files("wdl", 4)
    fresh = compiled(workdir)
    fresh.load_dense_weights("wdl_dense_4.model")
    fresh.load_dense_optimizer_states("wdl_opt_dense_4.model")
    fresh.load_sparse_weights(["wdl0_sparse_4.model", "wdl1_sparse_4.model"])
    fresh.load_sparse_optimizer_states(["wdl0_opt_sparse_4.model", "wdl1_opt_sparse_4.model"])
    assert np.array_equal(host(model.session.train_networks[0].weights), host(fresh.session.train_networks[0].weights))
    for i in range(2):
        a, b = table(model, i), table(fresh, i)
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_incremental_model_holds_the_rows_that_changed(workdir):
    model = compiled(workdir)
    model.start_data_reading()
    model.train()
    first = model.get_incremental_model()
    assert len(first) == 2 and len(first[1][0]) == len(table(model, 1))
    model.freeze_embedding("sparse_embedding1")
    before = table(model, 1)
    model.train()
    keys, vectors = model.get_incremental_model()[1]
    # frozen: no trained row moved; only keys seen for the first time were inserted
    assert set(keys.tolist()) == set(table(model, 1)) - set(before) and vectors.shape == (len(keys), 8)
    model.unfreeze_embedding()
    before = table(model, 1)
    model.train()
    keys, vectors = model.get_incremental_model()[1]
    now = table(model, 1)
    changed = {k for k in now if k not in before or not np.array_equal(before[k], now[k])}
    assert set(keys.tolist()) == changed and changed
    assert all(np.array_equal(now[k], v) for k, v in zip(keys.tolist(), vectors))


def test_epoch_mode_visits_each_source_with_its_keyset(workdir):
    """repeat_dataset=False and CreateMOS: fit trains one pass per source after loading its keyset."""
    script = sample_script("wdl", footer=False).replace("repeat_dataset = True", "repeat_dataset = False").replace(
        'source = ["./data/train.txt"],',
        'source = ["./data/train.txt", "./data/train.txt"], keyset = ["./data/train.keyset", "./data/train.keyset"],'
    ).replace("model = hugectr.Model(solver, reader, optimizer)",
              "mos = hugectr.CreateMOS(train_from_scratch = True, dest_sparse_models = ['wide_full', 'deep_full'])\n"
              "model = hugectr.Model(solver, reader, optimizer, mos)")
    script += "model.compile()\nresult = model.fit(num_epochs = 1, display = 2, eval_interval = 0, snapshot = 100)\n" \
              "model.save_params_to_files('wdl')\n"
    ns = run_sample(script, workdir, "wdl_epoch.py")
    assert ns["result"].iterations == 2 * (1024 // 128)     # two passes over 1024 samples in full batches
    assert (workdir / "wide_full").exists() and (workdir / "deep_full").exists()


def test_fit_can_show_the_training_dashboard(workdir):
    pytest.importorskip("ipywidgets")
    pytest.importorskip("matplotlib")
    model = compiled(workdir)
    result = model.fit(max_iter=6, display=2, eval_interval=3, snapshot=100, dashboard=True, print_fn=lambda *_: None)
    assert result.iterations == 6
    board = model._last_dashboard
    assert [h["iteration"] for h in board.history] == list(range(1, 7))
    assert [e["iteration"] for e in board.eval_history] == [3, 6]
    assert board.state == "finished" and "finished at iteration 6" in board.status.value
    assert board.start_button.disabled      # fit drives training, not the dashboard's own loop
