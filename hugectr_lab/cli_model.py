"""The Model API's ``hugectr-lab`` subcommands: ``estimate`` and ``export-onnx``.

    hugectr-lab estimate CONFIG.json [--batchsize B --gpus G --mixed-precision --backend numpy|cupy
                                      --device-memory 80GiB]
    hugectr-lab export-onnx INFERENCE.json OUT.onnx [--check DATA.txt]
"""

from __future__ import annotations

import re

from .config import SolverParser, parse_config, solver_parser_helper

_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}


def parse_bytes(text) -> int:
    """``"80GiB"``, ``"512M"``, ``"1e9"`` → bytes (binary units; GB is read as GiB)."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", str(text))
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(f"--device-memory: cannot read {text!r}; give bytes or a size such as 80GiB or 512MiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def detected_gpu_memory():
    """Total memory of GPU 0 in bytes, or None where there is no usable GPU."""
    try:
        import cupy

        return int(cupy.cuda.Device(0).mem_info[1])
    except Exception:   # no CuPy, no driver, no device: there is nothing to detect
        return None


def _solver(config_path, args):
    solver = parse_config(config_path, require=("layers",)).solver
    base = SolverParser.from_spec(solver) if solver is not None else solver_parser_helper()
    batch = args.batchsize or base.batchsize
    gpus = args.gpus or sum(len(node) for node in base.vvgpu)
    return solver_parser_helper(batchsize=batch, batchsize_eval=args.batchsize or base.batchsize_eval,
                                max_eval_batches=base.max_eval_batches, vvgpu=[list(range(gpus))],
                                use_mixed_precision=args.mixed_precision or base.use_mixed_precision,
                                scaler=base.scaler if base.use_mixed_precision else (1024.0 if args.mixed_precision
                                                                                      else 1.0),
                                i64_input_key=base.i64_input_key)


def _cmd_estimate(args, print_fn=print):
    from .estimate import estimate_memory, max_vocabulary

    solver = _solver(args.config, args)
    cfg = parse_config(args.config, mixed_precision=solver.use_mixed_precision, require=("layers", "optimizer"),
                       ignore=("solver",))
    est = estimate_memory(cfg, solver, backend=args.backend)
    print_fn(f"{args.config}: batch {solver.batchsize} on {est.num_devices} device(s), "
             f"{'mixed' if solver.use_mixed_precision else 'fp32'} precision")
    print_fn(est.table())
    memory = parse_bytes(args.device_memory) if args.device_memory else detected_gpu_memory()
    if memory is None:
        print_fn("no GPU detected: pass --device-memory SIZE to see which vocabulary sizes fit")
        return 0
    print_fn(f"device memory: {memory / 2**30:,.2f} GiB ({'given' if args.device_memory else 'detected GPU 0'})")
    fits = est.per_device <= memory
    print_fn(f"this config {'fits' if fits else 'does NOT fit'}: {est.per_device / 2**30:,.3f} GiB per device")
    for i, spec in enumerate(cfg.embeddings):
        if spec.type == "LocalizedSlotSparseEmbeddingOneHot":
            print_fn(f"embedding {spec.name or spec.top!r}: one-hot, sized by its slot_size_array "
                     f"({sum(spec.slot_size_array):,} rows in all)")
            continue
        v = max_vocabulary(cfg, solver, memory, backend=args.backend, embedding=i)
        print_fn(f"embedding {spec.name or spec.top!r}: max_vocabulary_size_per_gpu up to {v:,} fits "
                 f"(now {spec.max_vocabulary_size_per_gpu or 'slot sizes'}); {v + 1:,} would no longer fit")
    return 0 if fits else 3


def _cmd_export_onnx(args, print_fn=print):
    import numpy as np

    from .export import export_onnx
    from .inference import (CreateEmbeddingCache, CreateParameterServer, InferenceSession, read_inference_data)

    cfg = parse_config(args.config, require=("inference", "layers"))
    i64 = cfg.inference.i64_input_key
    ps = CreateParameterServer([args.config], [args.model_name], i64)
    cache = CreateEmbeddingCache(ps, 0, False, 1.0, args.config, args.model_name, i64, backend="numpy")
    session = InferenceSession(args.config, 0, cache)
    export_onnx(session, args.output)
    print_fn(f"wrote {args.output}")
    if args.check:
        import onnxruntime

        data = read_inference_data(args.check, cfg.inference.input_key_type)
        expected = session.predict_array(data.dense_feature, data.embeddingcolumns, data.row_ptrs)
        run = onnxruntime.InferenceSession(args.output, providers=["CPUExecutionProvider"])
        got = run.run(None, {"dense": data.dense_feature.reshape(-1, cfg.data.dense.dense_dim),
                             "keys": data.embeddingcolumns.astype(np.int64),
                             "row_ptrs": data.row_ptrs.astype(np.int64)})[0]
        diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
        print_fn(f"onnxruntime vs InferenceSession.predict on {args.check}: max |difference| {diff:.3g}")
        return 0 if diff <= 1e-5 else 1
    return 0


def add_parsers(sub):
    """Register ``estimate`` and ``export-onnx`` on the ``hugectr-lab`` subparsers."""
    est = sub.add_parser("estimate", help="per-device memory of a config, and which vocabulary sizes fit")
    est.add_argument("config", help="training config (optimizer + layers; the solver clause is used if present)")
    est.add_argument("--batchsize", type=int, default=0, help="global batch (default: the config's solver, or 2048)")
    est.add_argument("--gpus", type=int, default=0, help="devices G (default: the solver's vvgpu, or 1)")
    est.add_argument("--mixed-precision", action="store_true", help="fp16 compute")
    est.add_argument("--backend", choices=("cupy", "numpy"), default="cupy", help="whose allocations (default cupy)")
    est.add_argument("--device-memory", default=None,
                     help="memory per device, e.g. 80GiB (default: the detected GPU's)")
    est.set_defaults(run=_cmd_estimate)
    exp = sub.add_parser("export-onnx", help="write a trained model (inference config + model files) as ONNX")
    exp.add_argument("config", help="inference config (inference + layers clauses) naming the model files")
    exp.add_argument("output", help="the .onnx file to write")
    exp.add_argument("--model-name", default="model", help="name in the parameter server (default: model)")
    exp.add_argument("--check", default=None, metavar="DATA.txt",
                     help="compare onnxruntime with InferenceSession.predict on a 4-line inference data file")
    exp.set_defaults(run=_cmd_export_onnx)
