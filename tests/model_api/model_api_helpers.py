"""Small datasets and HugeCTR v3.1-style sample scripts (DCN, WDL, DeepFM, DLRM scaled down) for the Model API tests."""

import numpy as np

from hugectr_lab.data import generate_dataset

DENSE = 13
WIDE_SLOTS, DEEP_SLOTS = 2, 8
BATCH = 128


def make_data(base, samples=1024, seed=7):
    """Two sparse inputs: ``wide`` (2 slots, 1 key each) and ``deep`` (8 slots, 1-2 keys each)."""
    return generate_dataset("data/train.txt", "data/test.txt", dense_dim=DENSE, slot_nums=(WIDE_SLOTS, DEEP_SLOTS),
                            max_feature_nums=(WIDE_SLOTS, 2 * DEEP_SLOTS), num_files=1, samples_per_file=samples,
                            vocab_sizes=60, min_nnz=1, max_nnz=[1] * WIDE_SLOTS + [2] * DEEP_SLOTS, seed=seed,
                            base_dir=base)


HEADER = '''
import hugectr.v31 as hugectr
from mpi4py import MPI
solver = hugectr.CreateSolver(max_eval_batches = 2,
                              batchsize_eval = {batch},
                              batchsize = {batch},
                              lr = {lr},
                              vvgpu = [[0]],
                              seed = 11,
                              repeat_dataset = True)
reader = hugectr.DataReaderParams(data_reader_type = hugectr.DataReaderType_t.Norm,
                                  source = ["./data/train.txt"],
                                  eval_source = "./data/test.txt",
                                  check_type = hugectr.Check_t.Sum,
                                  num_workers = 1)
optimizer = hugectr.CreateOptimizer(optimizer_type = hugectr.Optimizer_t.{opt},
                                    update_type = hugectr.Update_t.Global,
                                    beta1 = 0.9,
                                    beta2 = 0.999,
                                    epsilon = 0.0001)
model = hugectr.Model(solver, reader, optimizer)
model.add(hugectr.Input(label_dim = 1, label_name = "label",
                        dense_dim = 13, dense_name = "dense",
                        data_reader_sparse_param_array =
                        [hugectr.DataReaderSparseParam("wide_data", 1, True, 2),
                         hugectr.DataReaderSparseParam("deep_data", 2, False, 8)]))
'''

FOOTER = '''
model.compile()
model.summary()
model.graph_to_json(graph_config_file = "{name}.json")
model.fit(max_iter = {iters}, display = 5, eval_interval = {iters}, snapshot = {iters}, snapshot_prefix = "{name}")
model.export_predictions("{name}_pred_{iters}", "{name}_label_{iters}")
'''


def _dense(layer_type, bottoms, tops, **kw):
    args = "".join(f", {k} = {v!r}" for k, v in kw.items())
    return (f"model.add(hugectr.DenseLayer(layer_type = hugectr.Layer_t.{layer_type}, bottom_names = {bottoms!r}, "
            f"top_names = {tops!r}{args}))\n")


def _embedding(kind, mb, vec, name, bottom, combiner="sum"):
    return (f"model.add(hugectr.SparseEmbedding(embedding_type = hugectr.Embedding_t.{kind}, "
            f"workspace_size_per_gpu_in_mb = {mb}, embedding_vec_size = {vec}, combiner = {combiner!r}, "
            f"sparse_embedding_name = {name!r}, bottom_name = {bottom!r}, optimizer = optimizer))\n")


def dcn_body(vec=8, hidden=32):
    w = DEEP_SLOTS * vec + DENSE
    return (_embedding("DistributedSlotSparseEmbeddingHash", 1, vec, "sparse_embedding1", "deep_data")
            + _embedding("DistributedSlotSparseEmbeddingHash", 1, 1, "sparse_embedding2", "wide_data")
            + _dense("Reshape", ["sparse_embedding1"], ["reshape1"], leading_dim=DEEP_SLOTS * vec)
            + _dense("Concat", ["reshape1", "dense"], ["concat1"])
            + _dense("Slice", ["concat1"], ["slice11", "slice12"], ranges=[(0, w), (0, w)])
            + _dense("MultiCross", ["slice11"], ["multicross1"], num_layers=2)
            + _dense("InnerProduct", ["slice12"], ["fc1"], num_output=hidden)
            + _dense("ReLU", ["fc1"], ["relu1"])
            + _dense("Dropout", ["relu1"], ["dropout1"], dropout_rate=0.5)
            + _dense("InnerProduct", ["dropout1"], ["fc2"], num_output=hidden)
            + _dense("ReLU", ["fc2"], ["relu2"])
            + _dense("Concat", ["relu2", "multicross1"], ["concat2"])
            + _dense("InnerProduct", ["concat2"], ["fc3"], num_output=1)
            + _dense("Reshape", ["sparse_embedding2"], ["reshape2"], leading_dim=WIDE_SLOTS)
            + _dense("ReduceSum", ["reshape2"], ["wide_sum"], axis=1)
            + _dense("Add", ["fc3", "wide_sum"], ["add1"])
            + _dense("BinaryCrossEntropyLoss", ["add1", "label"], ["loss"]))


def wdl_body(vec=8, hidden=32):
    return (_embedding("DistributedSlotSparseEmbeddingHash", 1, 1, "sparse_embedding2", "wide_data")
            + _embedding("DistributedSlotSparseEmbeddingHash", 1, vec, "sparse_embedding1", "deep_data")
            + _dense("Reshape", ["sparse_embedding1"], ["reshape1"], leading_dim=DEEP_SLOTS * vec)
            + _dense("Reshape", ["sparse_embedding2"], ["reshape2"], leading_dim=WIDE_SLOTS)
            + _dense("Concat", ["reshape1", "dense"], ["concat1"])
            + _dense("InnerProduct", ["concat1"], ["fc1"], num_output=hidden)
            + _dense("ReLU", ["fc1"], ["relu1"])
            + _dense("Dropout", ["relu1"], ["dropout1"], dropout_rate=0.5)
            + _dense("InnerProduct", ["dropout1"], ["fc2"], num_output=hidden)
            + _dense("ReLU", ["fc2"], ["relu2"])
            + _dense("InnerProduct", ["relu2"], ["fc4"], num_output=1)
            + _dense("ReduceSum", ["reshape2"], ["wide_redn"], axis=1)
            + _dense("Add", ["fc4", "wide_redn"], ["add1"])
            + _dense("BinaryCrossEntropyLoss", ["add1", "label"], ["loss"]))


def deepfm_body(latent=6, hidden=32):
    vec = latent + 1
    s = DEEP_SLOTS
    return (_embedding("DistributedSlotSparseEmbeddingHash", 1, vec, "sparse_embedding1", "deep_data")
            + _embedding("DistributedSlotSparseEmbeddingHash", 1, 1, "sparse_embedding2", "wide_data")
            + _dense("Reshape", ["sparse_embedding1"], ["reshape1"], leading_dim=vec)
            + _dense("Slice", ["reshape1"], ["slice11", "slice12"], ranges=[(0, latent), (latent, vec)])
            + _dense("Reshape", ["slice11"], ["reshape2"], leading_dim=s * latent)
            + _dense("Reshape", ["slice12"], ["reshape3"], leading_dim=s)
            + _dense("Slice", ["dense"], ["slice21", "slice22"], ranges=[(0, DENSE), (0, DENSE)])
            + _dense("WeightMultiply", ["slice21"], ["weight_multiply1"], weight_dims=[DENSE, latent])
            + _dense("WeightMultiply", ["slice22"], ["weight_multiply2"], weight_dims=[DENSE, 1])
            + _dense("Concat", ["reshape2", "weight_multiply1"], ["concat1"])
            + _dense("Slice", ["concat1"], ["slice31", "slice32"],
                     ranges=[(0, (s + DENSE) * latent), (0, (s + DENSE) * latent)])
            + _dense("InnerProduct", ["slice31"], ["fc1"], num_output=hidden)
            + _dense("ReLU", ["fc1"], ["relu1"])
            + _dense("Dropout", ["relu1"], ["dropout1"], dropout_rate=0.5)
            + _dense("InnerProduct", ["dropout1"], ["fc2"], num_output=1)
            + _dense("FmOrder2", ["slice32"], ["fmorder2"], out_dim=latent)
            + _dense("ReduceSum", ["fmorder2"], ["reducesum1"], axis=1)
            + _dense("Concat", ["reshape3", "weight_multiply2"], ["concat2"])
            + _dense("ReduceSum", ["concat2"], ["reducesum2"], axis=1)
            + _dense("Reshape", ["sparse_embedding2"], ["reshape4"], leading_dim=WIDE_SLOTS)
            + _dense("ReduceSum", ["reshape4"], ["reducesum3"], axis=1)
            + _dense("Add", ["fc2", "reducesum1", "reducesum2", "reducesum3"], ["add"])
            + _dense("BinaryCrossEntropyLoss", ["add", "label"], ["loss"]))


def dlrm_body(vec=8):
    return (_embedding("LocalizedSlotSparseEmbeddingHash", 1, vec, "sparse_embedding1", "deep_data")
            + _embedding("DistributedSlotSparseEmbeddingHash", 1, 1, "sparse_embedding2", "wide_data")
            + _dense("InnerProduct", ["dense"], ["fc1"], num_output=16)
            + _dense("ReLU", ["fc1"], ["relu1"])
            + _dense("InnerProduct", ["relu1"], ["fc2"], num_output=vec)
            + _dense("ReLU", ["fc2"], ["relu2"])
            + _dense("Interaction", ["relu2", "sparse_embedding1"], ["interaction1"])
            + _dense("InnerProduct", ["interaction1"], ["fc3"], num_output=32)
            + _dense("ReLU", ["fc3"], ["relu3"])
            + _dense("InnerProduct", ["relu3"], ["fc4"], num_output=1)
            + _dense("Reshape", ["sparse_embedding2"], ["reshape2"], leading_dim=WIDE_SLOTS)
            + _dense("ReduceSum", ["reshape2"], ["wide_sum"], axis=1)
            + _dense("Add", ["fc4", "wide_sum"], ["add1"])
            + _dense("BinaryCrossEntropyLoss", ["add1", "label"], ["loss"]))


SAMPLES = {"dcn": dcn_body, "wdl": wdl_body, "deepfm": deepfm_body, "dlrm": dlrm_body}


def sample_script(name, *, iters=10, lr=0.001, opt="Adam", footer=True):
    """The v3.1-style training script of sample ``name``: HugeCTR's sample with one changed import line."""
    body = HEADER.format(batch=BATCH, lr=lr, opt=opt) + SAMPLES[name]()
    return body + (FOOTER.format(name=name, iters=iters) if footer else "")


INFERENCE = '''
import numpy as np
import hugectr.v31 as hugectr
from hugectr.inference import InferenceParams, CreateInferenceSession
inference_params = InferenceParams(model_name = "{name}",
                                   max_batchsize = {batch},
                                   hit_rate_threshold = 1.0,
                                   dense_model_file = "{name}_dense_{iters}.model",
                                   sparse_model_files = {sparse},
                                   device_id = 0,
                                   use_gpu_embedding_cache = False,
                                   cache_size_percentage = 1.0,
                                   i64_input_key = False)
inference_session = CreateInferenceSession("{name}.json", inference_params)
preds = inference_session.predict(num_batches = 2,
                                  source = "./data/test.txt",
                                  data_reader_type = hugectr.DataReaderType_t.Norm,
                                  check_type = hugectr.Check_t.Sum)
ground_truth = np.loadtxt("{name}_pred_{iters}")
diff = preds - ground_truth
mse = np.mean(diff * diff)
auc = inference_session.evaluate(num_batches = 2, source = "./data/test.txt",
                                 data_reader_type = hugectr.DataReaderType_t.Norm, check_type = hugectr.Check_t.Sum)
'''


def inference_script(name, iters=10, tables=2):
    sparse = [f"{name}{i}_sparse_{iters}.model" for i in range(tables)]
    return INFERENCE.format(name=name, batch=BATCH, iters=iters, sparse=sparse)


def host(a):
    return np.asarray(a.get() if hasattr(a, "get") else a)
