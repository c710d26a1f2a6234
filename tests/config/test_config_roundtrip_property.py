"""Property: any small valid graph parses without warnings and survives to_json → parse unchanged."""

import warnings

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hugectr_lab.config import INITIALIZERS, parse_config

HPARAM_OBJECTS = {"Adam": "adam_hparam", "MomentumSGD": "momentum_sgd_hparam", "Nesterov": "nesterov_hparam",
                  "SGD": "sgd_hparam", "AdaGrad": "adagrad_hparam"}
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
fraction = st.floats(0.0, 0.999)


def _maybe(draw, obj, key, strategy):
    value = draw(st.none() | strategy)
    if value is not None:
        obj[key] = value


@st.composite
def optimizers(draw):
    type_ = draw(st.sampled_from(["Adam", "MomentumSGD", "Nesterov", "SGD", "AdaGrad"]))
    hparam = {"learning_rate": draw(st.floats(1e-6, 100.0))}
    if type_ == "Adam":
        hparam.update(beta1=draw(fraction), beta2=draw(fraction), epsilon=draw(st.floats(0.0, 1e-3)))
    elif type_ in ("MomentumSGD", "Nesterov"):
        hparam["momentum_factor"] = draw(fraction)
    elif type_ == "SGD":
        _maybe(draw, hparam, "atomic_update", st.booleans())
    else:
        hparam.update(initial_accu_value=draw(st.floats(0.0, 1.0)), epsilon=draw(st.floats(0.0, 1e-3)))
    for key, strategy in [("warmup_steps", st.integers(1, 10**4)), ("decay_start", st.integers(0, 10**4)),
                          ("decay_steps", st.integers(1, 10**4)), ("decay_power", st.floats(1.0, 4.0)),
                          ("end_lr", st.floats(0.0, 1.0))]:
        _maybe(draw, hparam, key, strategy)
    out = {"type": type_, HPARAM_OBJECTS[type_]: hparam}
    if draw(st.booleans()):
        _maybe(draw, out, "update_type", st.sampled_from(["Local", "Global", "LazyGlobal"]))
    else:
        _maybe(draw, out, "global_update", st.booleans())  # the legacy spelling
    return out


def _inits(draw, obj, *keys):
    for key in keys:
        _maybe(draw, obj, key, st.sampled_from(INITIALIZERS))
    return obj


@st.composite
def dense_layer(draw, bottom, top, mixed_precision):
    kinds = ["InnerProduct", "ReLU", "Sigmoid", "ELU", "Dropout", "BatchNorm"]
    kind = draw(st.sampled_from([*kinds, "MultiCross"]))
    layer = {"type": kind, "bottom": bottom, "top": top}
    if kind == "InnerProduct":
        layer["fc_param"] = _inits(draw, {"num_output": draw(st.integers(1, 64))}, "weight_init", "bias_init")
    elif kind == "ELU":
        layer["elu_param"] = {"alpha": draw(finite)}
    elif kind == "Dropout":
        _maybe(draw, layer, "rate", fraction)
    elif kind == "BatchNorm":
        layer["bn_param"] = _inits(draw, {"factor": draw(st.floats(0.0, 1.0)), "eps": draw(st.floats(1e-9, 1e-2))},
                                   "gamma_init", "beta_init")
    elif kind == "MultiCross":
        layer["mc_param"] = _inits(draw, {"num_layers": draw(st.integers(1, 6))}, "weight_init", "bias_init")
    return layer


@st.composite
def configs(draw):
    solver = draw(solvers())
    sparse, embeddings, dense, pieces = [], [], [], []
    for i in range(draw(st.integers(1, 3))):
        slots, vec = draw(st.integers(1, 4)), draw(st.integers(1, 1024))
        localized = draw(st.booleans())
        sparse_input = {"top": f"data{i}", "type": "LocalizedSlot" if localized else "DistributedSlot",
                        "max_feature_num_per_sample": draw(st.integers(1, 40)), "slot_num": slots}
        _maybe(draw, sparse_input, "max_nnz", st.integers(1, 5))
        sparse.append(sparse_input)
        hparam = {"max_vocabulary_size_per_gpu": draw(st.integers(1, 10**7)), "embedding_vec_size": vec,
                  "combiner": draw(st.sampled_from([0, 1]))}
        if localized:
            _maybe(draw, hparam, "slot_size_array", st.lists(st.integers(1, 10**6), min_size=slots, max_size=slots))
        emb = {"type": "LocalizedSlotSparseEmbeddingHash" if localized else "DistributedSlotSparseEmbeddingHash",
               "bottom": f"data{i}", "top": f"emb{i}", "sparse_embedding_hparam": hparam}
        _maybe(draw, emb, "name", st.just(f"sparse_embedding{i}"))
        _maybe(draw, emb, "optimizer", optimizers())
        if localized:
            _maybe(draw, emb, "plan_file", st.sampled_from(["plan.json", ["plan0.json", "plan1.json"]]))
        embeddings.append(emb)
        dense.append({"type": "Reshape", "bottom": f"emb{i}", "top": f"r{i}", "leading_dim": slots * vec})
        pieces.append(f"r{i}")
    dense_dim = draw(st.integers(0, 4))
    if dense_dim:
        pieces.append("dense")
    x = pieces[0]
    if len(pieces) > 1:
        dense.append({"type": "Concat", "bottom": pieces, "top": "concat"})
        x = "concat"
    for j in range(draw(st.integers(0, 4))):
        dense.append(draw(dense_layer(x, f"h{j}", "mixed_precision" in solver)))
        x = f"h{j}"
    dense.append({"type": "InnerProduct", "bottom": x, "top": "logit", "fc_param": {"num_output": 1}})
    loss = {"type": "BinaryCrossEntropyLoss", "bottom": ["logit", "label"], "top": "loss"}
    if draw(st.booleans()):
        loss.update(regularizer=draw(st.sampled_from(["L1", "L2"])), **{"lambda": draw(st.floats(0.0, 1.0))})
    data = {"type": "Data", "source": "./data/file_list.txt", "check": draw(st.sampled_from(["Sum", "None"])),
            "label": {"top": "label", "label_dim": 1}, "dense": {"top": "dense", "dense_dim": dense_dim},
            "sparse": sparse}
    _maybe(draw, data, "eval_source", st.just("./data/file_list_test.txt"))
    _maybe(draw, data, "cache_eval_data", st.integers(0, 10))
    _maybe(draw, data, "num_workers", st.integers(1, 16))
    return {"solver": solver, "optimizer": draw(optimizers()),
            "layers": [data, *embeddings, *dense, loss]}


@st.composite
def solvers(draw):
    nodes = draw(st.lists(st.lists(st.integers(0, 7), min_size=1, max_size=4, unique=True), min_size=1, max_size=2))
    gpus = sum(map(len, nodes))
    solver = {"lr_policy": "fixed", "display": draw(st.integers(1, 1000)), "snapshot": draw(st.integers(1, 10**6)),
              "snapshot_prefix": "./", "batchsize": gpus * draw(st.integers(1, 512)),
              "gpu": nodes[0] if len(nodes) == 1 and draw(st.booleans()) else nodes}
    _maybe(draw, solver, "batchsize_eval", st.integers(1, 64).map(lambda n: n * gpus))
    limit = solver.get("batchsize_eval", solver["batchsize"])
    solver.update(draw(st.sampled_from([{"max_eval_batches": draw(st.integers(1, 100))},
                                        {"max_eval_samples": limit * draw(st.integers(1, 10))}])))
    _maybe(draw, solver, draw(st.sampled_from(["max_iter", "num_epochs"])), st.integers(1, 10**5))
    _maybe(draw, solver, "mixed_precision", st.sampled_from([128, 256, 512, 1024]))
    _maybe(draw, solver, "eval_metrics", st.sampled_from([["AverageLoss"], ["AUC:0.8", "AverageLoss"], ["AUC"]]))
    for key, strategy in [("seed", st.integers(0, 2**32)), ("eval_interval", st.integers(0, 1000)),
                          ("input_key_type", st.sampled_from(["I32", "I64"])), ("cuda_graph", st.booleans()),
                          ("sparse_model_file", st.sampled_from(["s.model", ["a.model", "b.model"]]))]:
        _maybe(draw, solver, key, strategy)
    return solver


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_generated_graphs_round_trip(config):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = parse_config(config)
        out = cfg.to_json()
        assert parse_config(out) == cfg
        assert parse_config(out).to_json() == out
    assert len(cfg.embeddings) == len(cfg.data.sparse)
