"""Small configs and datasets for Session tests (written by the tests; nothing is downloaded)."""

import json

import numpy as np

from sample_scripts import run_sample

from hugectr_lab.data import generate_dataset, read_keyset
from hugectr_lab.embedding import write_sparse_model_file

SLOTS = 8
DENSE = 5


def data_layer(source="data/file_list.txt", eval_source="data/file_list_test.txt", sparse_type="DistributedSlot",
               slots=(SLOTS,), num_workers=1):
    return {"name": "data", "type": "Data", "source": source, "eval_source": eval_source, "check": "Sum",
            "num_workers": num_workers, "label": {"top": "label", "label_dim": 1},
            "dense": {"top": "dense", "dense_dim": DENSE},
            "sparse": [{"top": f"data{i + 1}", "type": sparse_type, "max_feature_num_per_sample": 2 * s,
                        "slot_num": s} for i, s in enumerate(slots)]}


def optimizer(kind="Adam", lr=0.001, update_type="Local"):
    hparam = {"Adam": ("adam_hparam", {"beta1": 0.9, "beta2": 0.999, "epsilon": 1e-7}),
              "SGD": ("sgd_hparam", {"atomic_update": True}),
              "MomentumSGD": ("momentum_sgd_hparam", {"momentum_factor": 0.9})}[kind]
    return {"type": kind, "update_type": update_type, hparam[0]: {"learning_rate": lr, **hparam[1]}}


def dnn_config(*, embedding="DistributedSlotSparseEmbeddingHash", opt=None, vocab=4000, vec=8, batchnorm=False,
               dropout=False, cross=False, combiner=0, **data_kw):
    """Embedding → Reshape → Concat(dense) → [MultiCross ‖] FC-32 [BN] ReLU [Dropout] → FC-1 → BCE."""
    sparse_type = "DistributedSlot" if embedding.startswith("Distributed") else "LocalizedSlot"
    layers = [data_layer(sparse_type=sparse_type, **data_kw),
              {"name": "emb", "type": embedding, "bottom": "data1", "top": "emb",
               "sparse_embedding_hparam": {"max_vocabulary_size_per_gpu": vocab, "embedding_vec_size": vec,
                                           "combiner": combiner}},
              {"name": "reshape", "type": "Reshape", "bottom": "emb", "top": "reshape", "leading_dim": SLOTS * vec},
              {"name": "concat", "type": "Concat", "bottom": ["reshape", "dense"], "top": "concat"}]
    width = SLOTS * vec + DENSE
    body = "concat"
    if cross:
        layers.append({"name": "slice", "type": "Slice", "bottom": "concat", "ranges": [[0, width], [0, width]],
                       "top": ["s1", "s2"]})
        layers.append({"name": "cross", "type": "MultiCross", "bottom": "s1", "top": "cross",
                       "mc_param": {"num_layers": 2}})
        body = "s2"
    layers.append({"name": "fc1", "type": "InnerProduct", "bottom": body, "top": "fc1", "fc_param": {"num_output": 32}})
    top = "fc1"
    if batchnorm:
        layers.append({"name": "bn", "type": "BatchNorm", "bottom": top, "top": "bn",
                       "bn_param": {"factor": 0.5, "eps": 1e-5}})
        top = "bn"
    layers.append({"name": "relu", "type": "ReLU", "bottom": top, "top": "relu"})
    top = "relu"
    if dropout:
        layers.append({"name": "drop", "type": "Dropout", "bottom": top, "top": "drop", "rate": 0.5})
        top = "drop"
    if cross:
        layers.append({"name": "concat2", "type": "Concat", "bottom": [top, "cross"], "top": "concat2"})
        top = "concat2"
    layers += [{"name": "fc2", "type": "InnerProduct", "bottom": top, "top": "fc2", "fc_param": {"num_output": 1}},
               {"name": "loss", "type": "BinaryCrossEntropyLoss", "bottom": ["fc2", "label"], "top": "loss"}]
    return {"optimizer": opt or optimizer(), "layers": layers}


def write_config(path, config):
    path.write_text(json.dumps(config, indent=1))
    return str(path)


def make_dataset(base, *, files=2, samples=1024, vocab=50, max_nnz=2, seed=5, slots=(SLOTS,), key_type="I32",
                 train_parts=1):
    return generate_dataset("data/file_list.txt", "data/file_list_test.txt", slot_nums=slots, dense_dim=DENSE,
                            max_feature_nums=tuple(2 * s for s in slots), num_files=files, samples_per_file=samples,
                            vocab_sizes=vocab, max_nnz=max_nnz, min_nnz=0, key_type=key_type, seed=seed,
                            base_dir=base, train_parts=train_parts)


def write_full_sparse_model(path, vec, vocab_per_slot=None, seed=0, key_type="I32"):
    """A sparse model file holding every key of the train and eval data, so runs that differ in how they
    place keys (G) start from identical embeddings. ``vocab_per_slot`` adds slot ids (localized types):
    the generator gives slot k the keys [k*vocab, (k+1)*vocab)."""
    keys = np.unique(np.concatenate([read_keyset(f"data/{n}.keyset", key_type) for n in ("file_list", "file_list_test")]))
    vectors = np.random.default_rng(seed).uniform(-0.05, 0.05, (keys.size, vec)).astype(np.float32)
    slots = (keys // vocab_per_slot).astype(np.uint64) if vocab_per_slot else None
    write_sparse_model_file(path, keys, vectors, slots, key_type=key_type)
    return str(path), keys


SEED_NON_EPOCH = '''
from hugectr import Session, solver_parser_helper,get_learning_rate_scheduler
from mpi4py import MPI
json_file = "your_config.json"
solver_config = solver_parser_helper(seed = 0,
                                    batchsize = {batchsize},
                                    batchsize_eval = {batchsize},
                                    model_file = "",
                                    embedding_files = [],
                                    vvgpu = {vvgpu},
                                    use_mixed_precision = {mixed},
                                    scaler = {scaler},
                                    i64_input_key = False,
                                    use_algorithm_search = True,
                                    use_cuda_graph = True,
                                    repeat_dataset = True,
                                    max_eval_batches = 4)
lr_sch = get_learning_rate_scheduler(json_file)
sess = Session(solver_config, json_file)
sess.start_data_reading()
losses = []
for i in range({iterations}):
    lr = lr_sch.get_next()
    sess.set_learning_rate(lr)
    sess.train()
    if (i%{display} == 0):
        loss = sess.get_current_loss()
        losses.append(loss)
        print("[HUGECTR][INFO] iter: {{}}; loss: {{}}".format(i, loss))
    if (i%{eval_every} == 0 and i != 0):
        sess.check_overflow()
        sess.copy_weights_for_evaluation()
        for _ in range(solver_config.max_eval_batches):
            sess.eval()
        metrics = sess.get_eval_metrics()
        print("[HUGECTR][INFO] iter: {{}}, {{}}".format(i, metrics))
sess.download_params_to_files("./", {iterations})
'''


def run_seed_program(workdir, *, batchsize=256, vvgpu=((0,),), mixed=False, scaler=1.0, iterations=60, display=10,
                     eval_every=30):
    """Run the seed's non-epoch sample program (sizes filled in) in ``workdir`` through ``import hugectr``,
    with a stand-in ``mpi4py`` (the scripts import it first); returns the script's namespace."""
    script = SEED_NON_EPOCH.format(batchsize=batchsize, vvgpu=[list(node) for node in vvgpu], mixed=mixed,
                                   scaler=scaler, iterations=iterations, display=display, eval_every=eval_every)
    return run_sample(script, workdir, "seed_non_epoch.py")
