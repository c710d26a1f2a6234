"""``hugectr-lab``: generate data, train from a HugeCTR JSON config, and a two-minute demo.

    hugectr-lab generate CONFIG.json [--files N --samples M --vocab V ...]
    hugectr-lab train CONFIG.json [--iterations N --backend numpy|cupy|auto ...]
    hugectr-lab demo [--dir DIR]
    hugectr-lab predict CONFIG.json DATA.txt [--cache-percentage F --no-cache --backend ...]
    hugectr-lab preprocess OUT_DIR --train DAY [DAY ...] [--eval DAY ...] [--format norm|raw|parquet ...]
    hugectr-lab estimate CONFIG.json [--batchsize B --gpus G --device-memory 80GiB ...]
    hugectr-lab export-onnx INFERENCE.json OUT.onnx [--check DATA.txt]

``main(argv)`` returns an exit status; only the console entry point exits.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from importlib import resources
from pathlib import Path

from .cli_model import add_parsers as add_model_parsers
from .config import SolverParser, parse_config, solver_parser_helper
from .data import DISTRIBUTIONS, generate_for_config
from .fit import evaluate, fit
from .optim import get_learning_rate_scheduler
from .progress import ProgressReporter

DEMO_CONFIG = "dcn_demo.json"


def _add_generate_options(p):
    p.add_argument("--files", type=int, default=8, help="data files per split (default 8)")
    p.add_argument("--samples", type=int, default=16384, help="samples per data file (default 16384)")
    p.add_argument("--vocab", type=int, default=100, help="keys per slot (default 100)")
    p.add_argument("--distribution", default="uniform", choices=sorted(DISTRIBUTIONS),
                   help="key distribution (default uniform)")
    p.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")


def _generate(config, args, out_dir=None, overwrite=False):
    return generate_for_config(config, out_dir, num_files=args.files, samples_per_file=args.samples,
                               vocab_sizes=args.vocab, distribution=args.distribution, seed=args.seed,
                               overwrite=overwrite)


def _solver(cfg, args):
    """The config's solver clause (or defaults), with the command line's overrides."""
    base = SolverParser.from_spec(cfg.solver) if cfg.solver is not None else SolverParser()
    values = {name: getattr(base, name) for name in (
        "seed", "max_eval_batches", "batchsize_eval", "batchsize", "model_file", "dense_opt_states_file",
        "embedding_files", "vvgpu", "use_mixed_precision", "enable_tf32_compute", "scaler", "i64_input_key",
        "use_algorithm_search", "use_cuda_graph", "repeat_dataset", "display", "eval_interval")}
    values["sparse_opt_states_file"] = base.sparse_opt_states_files
    values["max_iter"] = args.iterations or base.max_iter
    values["num_epochs"] = base.num_epochs
    if args.batchsize:
        values["batchsize"] = values["batchsize_eval"] = args.batchsize
    if args.eval_interval is not None:
        values["eval_interval"] = args.eval_interval
    return solver_parser_helper(**values)


def _targets(cfg):
    """AUC thresholds below 1.0 in the config's eval_metrics stop training ("Hit target accuracy")."""
    spec = cfg.solver.metrics_spec if cfg.solver is not None else {}
    return {name: t for name, t in spec.items() if name == "AUC" and t < 1.0}


def _sources_missing(cfg):
    return any(p and not os.path.exists(p) for p in (cfg.data.source, cfg.data.eval_source))


def train(config_path, args, print_fn=print):
    """Train from a config; generates its data first when the sources do not exist. Returns the
    FitResult and the model-file prefix."""
    from .embedding import VocabularyOverflowWarning
    from .events import VocabularyOverflow
    from .session import Session  # the engine loads only for commands that train

    def say_overflow(event):
        if isinstance(event, VocabularyOverflow):
            print_fn(f"warning: iteration {event.iteration}: {event.message}")

    cfg = parse_config(config_path)
    if _sources_missing(cfg):
        print_fn(f"{config_path}: data sources missing, generating them")
        print_fn(str(_generate(cfg, args)))
    solver = _solver(cfg, args)
    session = Session(solver, config_path, backend=args.backend)
    print_fn(f"backend: {session.backend.name} ({session.backend.reason}), devices: {session.num_devices}")
    scheduler = get_learning_rate_scheduler(config_path)
    prefix = args.output or (cfg.solver.snapshot_prefix if cfg.solver else "./model")
    session.events.subscribe(say_overflow)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VocabularyOverflowWarning)   # printed by say_overflow instead
            with ProgressReporter(session, total=solver.max_iter or None, disable=args.quiet, print_fn=print_fn):
                result = fit(session, scheduler, max_iter=solver.max_iter, num_epochs=solver.num_epochs,
                             display=solver.display, eval_interval=solver.eval_interval,
                             max_eval_batches=solver.max_eval_batches, stop_at=_targets(cfg), print_fn=None)
            if session.get_data_reader_eval() is not None and (not result.evaluations or
                                                               result.evaluations[-1][0] != result.iterations):
                result.evaluations.append((result.iterations, evaluate(session, solver.max_eval_batches)))
            session.download_params_to_files(prefix, max(result.iterations, 1))
        for report in session.vocabulary_overflow():
            print_fn(f"vocabulary overflow at the end of training: {report.message}")
    finally:
        session.close()
    return result, prefix


def _cmd_generate(args):
    summary = _generate(args.config, args, args.out_dir, args.overwrite)
    print(summary)
    return 0


def _cmd_train(args):
    start = time.perf_counter()
    result, prefix = train(args.config, args)
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.last_metrics.items()) or "no eval source"
    print(f"trained {result.iterations} iterations in {time.perf_counter() - start:.1f} s; {metrics}")
    print(f"model written with prefix {prefix!r} ({prefix}_dense_{max(result.iterations, 1)}.model, ...)")
    return 0


def _cmd_demo(args):
    start = time.perf_counter()
    workdir = Path(args.dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / DEMO_CONFIG
    with resources.as_file(resources.files("hugectr_lab.presets") / DEMO_CONFIG) as preset:
        shutil.copyfile(preset, config)
    os.chdir(workdir)  # the config's paths are relative to it, as in HugeCTR
    print(f"demo in {workdir}: a small DCN (config {config.name}) on generated Criteo-like data")
    args.config = str(config)
    result, prefix = train(config.name, args)
    auc = result.last_metrics.get("AUC", float("nan"))
    print(f"demo: AUC {auc:.4f} after {result.iterations} iterations in {time.perf_counter() - start:.1f} s "
          f"(the data's Bayes AUC is reported above)")
    print(f"model: {workdir / (prefix.lstrip('./') + '_dense_' + str(max(result.iterations, 1)) + '.model')} "
          f"and the sparse/optimizer files beside it")
    return 0


def _cmd_predict(args):
    """Predictions for the 4-line inference data file (labels, dense, keys, row pointers), one per
    line; AUC and accuracy when the file has labels."""
    import numpy as np

    from .inference import CreateEmbeddingCache, CreateParameterServer, InferenceSession, read_inference_data
    from .metrics import auc

    i64 = parse_config(args.config, require=("inference", "layers")).inference.i64_input_key
    data = read_inference_data(args.data, "I64" if i64 else "I32")
    name = Path(args.config).stem
    ps = CreateParameterServer([args.config], [name], i64)
    cache = CreateEmbeddingCache(ps, args.device, not args.no_cache, args.cache_percentage, args.config, name, i64,
                                 backend=args.backend)
    session = InferenceSession(args.config, args.device, cache)
    preds = np.asarray(session.predict(data.dense_feature, data.embeddingcolumns, data.row_ptrs,
                                       *((True,) if i64 else ())), dtype=np.float32)
    print("\n".join(f"{p:g}" for p in preds))
    stats = ", ".join(f"table {s.table} hit rate {s.hit_rate:.3f}" for s in cache.stats() if s.enabled)
    print(f"# {preds.size} predictions on {session.backend.name}" + (f"; cache: {stats}" if stats else ""))
    if data.labels is not None:
        if data.labels.size != preds.size:
            raise ValueError(f"{args.data}: {data.labels.size} labels for {preds.size} predictions")
        accuracy = float(np.mean((preds > 0.5) == (data.labels > 0.5)))
        print(f"# AUC {auc(preds, data.labels):.6f}, accuracy {accuracy:.6f}")
    return 0


def _cmd_preprocess(args):
    """Criteo TSV → Norm/Raw/Parquet + keysets (hugectr_lab.preprocess)."""
    from .preprocess import CriteoPipeline, preprocess_criteo

    pipeline = CriteoPipeline(freq_threshold=args.freq_threshold, fill_value=args.fill_value,
                              clip_min=None if args.no_clip else args.clip_min, log=not args.no_log,
                              normalize=args.normalize)
    summary = preprocess_criteo(args.out_dir, args.train, args.eval or (), format=args.format, engine=args.engine,
                                pipeline=pipeline, samples_per_file=args.samples_per_file,
                                file_list_length=args.file_list_length, key_type=args.key_type, check=args.check,
                                float_label_dense=args.float_label_dense, chunk_bytes=args.chunk_mb << 20,
                                progress=False if args.quiet else None, overwrite=args.overwrite)
    print(summary)
    print(f"details and a HugeCTR Data layer: {os.path.join(args.out_dir, 'preprocess.json')}")
    return 0


def _add_preprocess_parser(sub):
    pre = sub.add_parser("preprocess", help="Criteo-format TSV to Norm, Raw or Parquet data plus keyset files")
    pre.add_argument("out_dir", help="output directory (train/, val/, preprocess.json)")
    pre.add_argument("--train", nargs="+", required=True, help="training TSV files (statistics come from these)")
    pre.add_argument("--eval", nargs="*", default=[], help="evaluation TSV files")
    pre.add_argument("--format", default="norm", choices=["norm", "raw", "parquet"])
    pre.add_argument("--engine", default="pyarrow", choices=["pyarrow", "pandas", "nvtabular"],
                     help="pyarrow (alias pandas; default) or nvtabular (CPU mode); both write identical files")
    pre.add_argument("--freq-threshold", type=int, default=6, help="rarer categories become OOV (default 6)")
    pre.add_argument("--fill-value", type=float, default=0.0, help="FillMissing value for I1-I13 (default 0)")
    pre.add_argument("--clip-min", type=float, default=0.0, help="Clip(min_value) for I1-I13 (default 0)")
    pre.add_argument("--no-clip", action="store_true")
    pre.add_argument("--no-log", action="store_true", help="skip LogOp (log(x + 1))")
    pre.add_argument("--normalize", action="store_true", help="Normalize I1-I13 (mean/std of the training data)")
    pre.add_argument("--samples-per-file", type=int, default=40960, help="samples per data file (default 40960)")
    pre.add_argument("--file-list-length", type=int, default=0,
                     help="also write file_list.<n>.txt/.keyset groups of N files (model oversubscription)")
    pre.add_argument("--key-type", choices=["I32", "I64"], default=None, help="default I64 for parquet, else I32")
    pre.add_argument("--check", choices=["Sum", "None"], default="Sum", help="Norm check mode (default Sum)")
    pre.add_argument("--float-label-dense", action="store_true", help="Raw: store float labels/dense values")
    pre.add_argument("--chunk-mb", type=int, default=64, help="input read per step, MiB (default 64)")
    pre.add_argument("--overwrite", action="store_true")
    pre.add_argument("--quiet", action="store_true", help="no progress bars")
    pre.set_defaults(run=_cmd_preprocess)


def _parser():
    parser = argparse.ArgumentParser(prog="hugectr-lab", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write the Norm datasets a config's Data layer names")
    gen.add_argument("config")
    gen.add_argument("--out-dir", default=None, help="base for relative paths (default: the working directory)")
    gen.add_argument("--overwrite", action="store_true")
    _add_generate_options(gen)
    gen.set_defaults(run=_cmd_generate)

    for name, run, help_text in (("train", _cmd_train, "train from a HugeCTR JSON config"),
                                 ("demo", _cmd_demo, "generate data and train a small DCN")):
        p = sub.add_parser(name, help=help_text)
        if name == "train":
            p.add_argument("config")
        else:
            p.add_argument("--dir", default="hugectr-lab-demo", help="working directory (default ./hugectr-lab-demo)")
        p.add_argument("--iterations", type=int, default=0, help="max_iter (default: the config's)")
        p.add_argument("--batchsize", type=int, default=0, help="train and eval batch (default: the config's)")
        p.add_argument("--eval-interval", type=int, default=None)
        p.add_argument("--output", default=None, help="model file prefix (default: the solver's snapshot_prefix)")
        p.add_argument("--backend", default=None, help="numpy, cupy or auto (default auto: CuPy on a usable GPU, else NumPy)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        _add_generate_options(p)
        p.set_defaults(run=run)
    pred = sub.add_parser("predict", help="predict with an inference config on a 4-line inference data file")
    pred.add_argument("config", help="inference JSON (inference + layers clauses)")
    pred.add_argument("data", help="labels / dense / keys / row pointers, one line each")
    pred.add_argument("--cache-percentage", type=float, default=0.5, help="cached share of each table (default 0.5)")
    pred.add_argument("--no-cache", action="store_true", help="look every key up in the parameter server")
    pred.add_argument("--device", type=int, default=0)
    pred.add_argument("--backend", default=None, help="numpy, cupy or auto (default auto: CuPy on a usable GPU, else NumPy)")
    pred.set_defaults(run=_cmd_predict)
    _add_preprocess_parser(sub)
    add_model_parsers(sub)
    debug_help = "show the full traceback of an error instead of one line"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    for command in sub.choices.values():  # also accepted after the command; SUPPRESS keeps the top level's value
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


# Bad input of every kind: ConfigError, DataError and the other ValueErrors, a missing or unwritable file or a full
# disk (OSError), a table too small for its keys (OverflowError), a missing optional package (ImportError).
USER_ERRORS = (ValueError, OSError, ArithmeticError, ImportError)


def _one_line(error) -> str:
    """The error as one line: an OSError as "<file>: <reason>", others as their message."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def main(argv=None):
    """Run one command; returns 0, 2 for bad input (one line on stderr naming the file or field), 1 for an
    internal error, 130 when interrupted. ``--debug`` lets the exception and its traceback through."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (KeyboardInterrupt, Exception) as e:
        if args.debug:
            raise
        if isinstance(e, KeyboardInterrupt):
            print(f"hugectr-lab {args.command}: interrupted", file=sys.stderr)
            return 130
        if isinstance(e, USER_ERRORS):
            print(f"hugectr-lab {args.command}: error: {_one_line(e)}", file=sys.stderr)
            return 2
        print(f"hugectr-lab {args.command}: internal error: {type(e).__name__}: {_one_line(e)} (rerun with --debug "
              "for the traceback, and please report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
