"""The seed's epoch-mode program (ModelOversubscriber over keyset/file-list pairs) as two MPI processes
writes the same model files as one process holding both devices."""

import os
import sys
import textwrap
from pathlib import Path

from test_mpi import launch, needs_mpi

sys.path.insert(0, str(Path(__file__).parents[1] / "oversubscriber"))
from mos_helpers import config, make_parts, write_config  # noqa: E402

pytestmark = needs_mpi

# The seed's epoch-mode program with a fixed seed (seed 0 draws one per run) and vvgpu from argv.
PROGRAM = '''
import json, sys
from hugectr import Session, solver_parser_helper, get_learning_rate_scheduler
from mpi4py import MPI
json_file = "model.json"
dataset = [("file_list."+str(i)+".txt", "file_list."+str(i)+".keyset") for i in range(3)]
solver_config = solver_parser_helper(seed = 7, batchsize = 128, batchsize_eval = 128, vvgpu = json.loads(sys.argv[1]),
                                     repeat_dataset = False, max_eval_batches = 2)
lr_sch = get_learning_rate_scheduler(json_file)
sess = Session(solver_config, json_file, True, sys.argv[2] + "_temp")
data_reader_train = sess.get_data_reader_train()
sess.get_data_reader_eval().set_source("file_list.3.txt")
model_oversubscriber = sess.get_model_oversubscriber()
iteration = 0
for file_list, keyset_file in dataset:
    data_reader_train.set_source(file_list)
    model_oversubscriber.update(keyset_file)
    while sess.train():
        sess.set_learning_rate(lr_sch.get_next())
        iteration += 1
sess.download_params_to_files(sys.argv[2] + "/", iteration)
model_oversubscriber.store([sys.argv[2] + "/full.model"])
metrics = sess.evaluation()
if MPI.COMM_WORLD.Get_rank() == 0:
    print("metrics", metrics, "iterations", iteration)
'''


def run(tmp_path, vvgpu, out, processes):
    os.makedirs(tmp_path / out)
    return launch([sys.executable, "program.py", vvgpu, out], processes, cwd=tmp_path, timeout=180)


def test_epoch_mode_with_the_model_oversubscriber_over_two_processes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    total = make_parts(tmp_path, parts=3, files_per_part=1, samples_per_file=512)
    capacity = -(-total // 3)   # rows per device: the devices hold a part's keys, not the whole table
    write_config(tmp_path / "model.json", config(capacity, lr=0.01, eval_source="file_list.3.txt"))
    (tmp_path / "program.py").write_text(textwrap.dedent(PROGRAM))
    alone = run(tmp_path, "[[0, 1]]", "alone", 1)
    split = run(tmp_path, "[[0], [1]]", "split", 2)
    assert split.count("metrics") == 1 and split.split("metrics")[1] == alone.split("metrics")[1]
    assert int(alone.split("iterations")[1]) == 3 * 512 // 128 and "('AUC', " in alone
    names = sorted(os.listdir(tmp_path / "alone"))
    assert "full.model" in names and sorted(os.listdir(tmp_path / "split")) == names
    for name in names:
        a, b = tmp_path / "alone" / name, tmp_path / "split" / name
        if a.is_file() and not name.endswith(".manifest.json"):   # a manifest holds the save's time
            assert a.read_bytes() == b.read_bytes(), name
    for out in ("alone", "split"):   # the host stores' files are removed at exit
        assert not os.listdir(tmp_path / f"{out}_temp")
