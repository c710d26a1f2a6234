"""``hugectr-lab estimate``: the per-device table and the vocabulary size that no longer fits."""

import re

from model_api_helpers import make_data, sample_script
from sample_scripts import run_sample

from hugectr_lab import cli
from hugectr_lab.config import parse_config, solver_parser_helper
from hugectr_lab.estimate import max_vocabulary


def test_estimate_says_which_vocabulary_no_longer_fits(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    make_data(tmp_path, samples=256)
    run_sample(sample_script("dcn", footer=False) + "model.graph_to_json('dcn.json')\n", tmp_path, "dcn.py")
    assert cli.main(["estimate", "dcn.json", "--batchsize", "512", "--device-memory", "96MiB"]) == 0
    out = capsys.readouterr().out
    assert "batch 512 on 1 device(s)" in out
    assert "embedding tables" in out and "this config fits" in out
    found = int(re.search(r"'sparse_embedding1': max_vocabulary_size_per_gpu up to ([\d,]+) fits",
                          out).group(1).replace(",", ""))
    solver = solver_parser_helper(batchsize=512, batchsize_eval=512)
    assert found == max_vocabulary(parse_config("dcn.json", ignore=("solver",)), solver, 96 << 20, embedding=0)
    assert f"{found + 1:,} would no longer fit" in out
    # too little memory: says so, exit status 3
    assert cli.main(["estimate", "dcn.json", "--device-memory", "8MiB"]) == 3
    assert "does NOT fit" in capsys.readouterr().out
    assert cli.main(["estimate", "dcn.json", "--device-memory", "lots"]) == 2
    assert "--device-memory" in capsys.readouterr().err
