"""preprocess refuses labels other than 0/1 and dense values its operators turn into NaN/inf, naming the
input file and line, with both engines; the CLI prints one line and exits 2."""

from __future__ import annotations

import os
import re

import pytest

from hugectr_lab.cli import main
from hugectr_lab.data import DataError
from hugectr_lab.preprocess import CriteoPipeline, preprocess_criteo

GOOD = "0" + "\t1" * 13 + "\ta" * 26 + "\n"


def nvtabular_or_skip(engine):
    if engine == "nvtabular":
        pytest.importorskip("nvtabular")


@pytest.mark.parametrize("engine", ["pyarrow", "nvtabular"])
@pytest.mark.parametrize("text, message", [
    (GOOD * 3 + "2" + GOOD[1:], r"line 4: label '2': it must be 0 or 1"),
    (GOOD + "\n" + "-1" + GOOD[1:], r"line 3: label '-1': it must be 0 or 1"),  # empty lines count
    (GOOD * 2 + GOOD[1:], r"line 3: no label"),
    (GOOD + "1\t1e999" + "\t1" * 12 + "\ta" * 26 + "\n", r"line 2: I1 is '1e999', which .* turn into inf"),
])
def test_bad_labels_and_non_finite_dense_name_the_line(tmp_path, engine, text, message):
    nvtabular_or_skip(engine)
    day = tmp_path / "day_0"
    day.write_text(text)
    with pytest.raises(DataError, match=f"{day}: {message}"):
        preprocess_criteo(tmp_path / "out", [str(day)], engine=engine, progress=False,
                          pipeline=CriteoPipeline(freq_threshold=0))


@pytest.mark.filterwarnings("ignore:invalid value encountered in log:RuntimeWarning")  # NVTabular's LogOp
@pytest.mark.parametrize("engine", ["pyarrow", "nvtabular"])
def test_unclipped_negative_dense_values_name_the_line(tmp_path, engine):
    nvtabular_or_skip(engine)
    day = tmp_path / "day_0"
    day.write_text(GOOD * 4 + "1\t-5" + "\t1" * 12 + "\ta" * 26 + "\n")
    with pytest.raises(DataError, match=f"{day}: line 5: I1 is '-5', which FillMissing, Clip and LogOp turn into nan"):
        preprocess_criteo(tmp_path / "out", [str(day)], engine=engine, progress=False,
                          pipeline=CriteoPipeline(freq_threshold=0, clip_min=None))


def test_the_eval_split_is_checked_too(tmp_path):
    train, val = tmp_path / "day_0", tmp_path / "day_1"
    train.write_text(GOOD * 3)
    val.write_text(GOOD + "7" + GOOD[1:])
    with pytest.raises(DataError, match=f"{val}: line 2: label '7'"):
        preprocess_criteo(tmp_path / "out", [str(train)], [str(val)], progress=False)


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    day = tmp_path / "day_0"
    day.write_text(GOOD + "2" + GOOD[1:])
    assert main(["preprocess", str(tmp_path / "out"), "--train", str(day), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"hugectr-lab preprocess: error: {day}: line 2: label '2': it must be 0 or 1\n"


@pytest.mark.parametrize("kind, make", [("a directory", lambda p: p.mkdir()), ("a FIFO (named pipe)", os.mkfifo)])
def test_a_special_input_file_says_what_it_is(tmp_path, kind, make):
    day = tmp_path / "day_0"
    make(day)
    with pytest.raises(DataError, match=re.escape(f"{day}: input file is {kind}, not a regular file")):
        preprocess_criteo(tmp_path / "out", [str(day)], progress=False)
