"""The seed's epoch-mode sample program (ModelOversubscriber over 5 keyset/file-list pairs), unchanged but
for the batch sizes, through ``import hugectr``, on data and a JSON config the test writes itself."""

import os
import textwrap

import numpy as np
from mos_helpers import config, make_parts, write_config
from sample_scripts import run_sample

SEED_PROGRAM = '''
from hugectr import Session, solver_parser_helper, get_learning_rate_scheduler
from mpi4py import MPI
json_file = "your_config.json"
temp_dir = "./your_temp_embedding_dir"
dataset = [("file_list."+str(i)+".txt", "file_list."+str(i)+".keyset") for i in range(5)]
solver_config = solver_parser_helper(seed = 0,
                                    batchsize = 128,
                                    batchsize_eval =128,
                                    model_file = "",
                                    embedding_files = [],
                                    vvgpu = [[0]],
                                    use_mixed_precision = False,
                                    scaler = 1.0,
                                    i64_input_key = False,
                                    use_algorithm_search = True,
                                    use_cuda_graph = True,
                                    repeat_dataset = False)
lr_sch = get_learning_rate_scheduler(json_file)
sess = Session(solver_config, json_file, True, temp_dir)
data_reader_train = sess.get_data_reader_train()
data_reader_eval = sess.get_data_reader_eval()
data_reader_eval.set_source("file_list.5.txt")
model_oversubscriber = sess.get_model_oversubscriber()
iteration = 0
for file_list, keyset_file in dataset:
    data_reader_train.set_source(file_list)
    model_oversubscriber.update(keyset_file)
    while True:
        lr = lr_sch.get_next()
        sess.set_learning_rate(lr)
        good = sess.train()
        if good == False:
            break
        if iteration % 100 == 0:
            sess.check_overflow()
            sess.copy_weights_for_evaluation()
            data_reader_eval = sess.get_data_reader_eval()
            good_eval = True
            j = 0
            while good_eval:
                if j >= solver_config.max_eval_batches:
                    break
                good_eval = sess.eval()
                j += 1
            if good_eval == False:
                data_reader_eval.set_source()
            metrics = sess.get_eval_metrics()
            print("[HUGECTR][INFO] iter: {}, metrics: {}".format(iteration, metrics))
        iteration += 1
    print("[HUGECTR][INFO] trained with data in {}".format(file_list))
sess.download_params_to_files("./", iteration)
'''


def test_seed_epoch_mode_program_with_model_oversubscriber(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    total = make_parts(tmp_path, parts=5, files_per_part=2, samples_per_file=512)
    capacity = -(-total // 4)  # the whole table is 4x what the device holds
    write_config(tmp_path / "your_config.json", config(capacity, lr=0.01, eval_source="file_list.5.txt"))
    namespace = run_sample(textwrap.dedent(SEED_PROGRAM), tmp_path, "seed_epoch_mode.py", {"__name__": "__main__"})
    sess, iteration = namespace["sess"], namespace["iteration"]
    out = capsys.readouterr().out
    assert iteration == 5 * 1024 // 128
    assert out.count("trained with data in file_list.") == 5
    assert out.count("metrics: [('AUC',") == 1 + (iteration - 1) // 100
    assert os.path.exists(f"./_dense_{iteration}.model") and os.path.exists(f"./0_sparse_{iteration}.model")
    # download_params_to_files writes what the device holds (the last part); the host store has it all
    mos = namespace["model_oversubscriber"]
    mos.store([])  # write the last part's keys back
    assert sess.embeddings[0].num_keys() <= capacity < total == mos.num_keys()[0]
    metrics = sess.evaluation()  # epoch mode: runs to the end of file_list.5.txt and rewinds
    assert np.isfinite(metrics[0][1])
    temp_files = [os.path.join("your_temp_embedding_dir", name) for name in os.listdir("your_temp_embedding_dir")]
    assert temp_files
    sess.close()
    assert not any(os.path.exists(p) for p in temp_files)
