"""Session: HugeCTR v3.0's low-level training object (embeddings + dense network + data readers).

One ``Session`` owns G logical devices (``vvgpu`` flattened in order; global id g), the train and
eval data readers, one object per embedding layer (which owns the devices' tables and exchanges) and,
per device, a training and an evaluation copy of the dense ``Network``. ``train()`` runs one
iteration in HugeCTR's order:

1. read the next *full* global batch (partial batches at the end of an epoch are discarded);
2. embedding forward (training: new keys inserted) → one ``(b, S, E)`` output per device;
3. per device: dense forward through the training copy, loss, backward (``TrainStep``: with the
   solver's ``use_cuda_graph`` on the CuPy backend, replayed from one CUDA graph per device);
4. all-reduce of the dense weight gradients over devices (G > 1);
5. dense optimizer step on every device's replica;
6. embedding backward and sparse optimizer update.

Device g gets rows ``g*b:(g+1)*b`` of every global batch (b = B/G). Under an MPI launcher there is one
process per ``vvgpu`` node list; each reads the same batches and runs its own devices
(``comm.local_devices``), and losses, metrics and model files are gathered as HugeCTR does (process 0
writes the files). Every call publishes an event (``hugectr_lab.events``) that progress bars and
dashboards subscribe to.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .backend import get_backend
from .backend.comm import create_communicator, node_gpu_ids, process_group
from .config import SolverParser, parse_config
from .data import DataReader32, DataReader64
from .embedding import SparseEmbedding, load_sparse_model, load_sparse_optimizer_state, save_sparse_model
from .embedding import EmbeddingOverflowError, VocabularyOverflowWarning, save_sparse_optimizer_state
from .enums import Error_t
from .events import EvalEnd, EventBus, IterationEnd, ModelSaved, VocabularyOverflow
from .fileio import Snapshot, atomic_write, check_snapshot_file, write_bytes_atomic
from .input_files import input_problem
from .layers import BuildContext, LayerError, Network, TrainStep, network_inputs
from .metrics import Metrics
from .numerics import DynamicLossScaler, NonFiniteError, locate_nonfinite
from .optim import create_dense_optimizer
from .run_plan import RunPlan
from .whole_step import WholeStep


_log = logging.getLogger("hugectr_lab")
class StagedBatch(NamedTuple):
    """A batch on the local devices (``Session.stage_batch``): per device a feed (tensor name -> its rows
    of the dense input and labels), per embedding its staged CSR (``SparseEmbedding.stage``)."""

    feeds: list
    embeddings: list


STEP_PHASES = ("embedding fwd", "dense fwd+bwd", "all-reduce", "dense update", "embedding bwd", "embedding update")


class IllegalCallError(RuntimeError):
    """A Session method called out of order (HugeCTR's ``IllegalCall``)."""


def serialised(method):
    """Run ``method`` holding the session's re-entrant lock: public Session methods called from several
    threads run one at a time, each to its end (a save never sees half a training step)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)
    return locked


def model_file_names(prefix, iteration, num_embeddings):
    """HugeCTR's model file names (plain string concatenation, no path join)."""
    it = str(iteration)
    return {
        "dense": f"{prefix}_dense_{it}.model",
        "dense_opt": f"{prefix}_opt_dense_{it}.model",
        "ntp": f"{prefix}_dense_{it}.model.ntp.json",
        "sparse": [f"{prefix}{i}_sparse_{it}.model" for i in range(num_embeddings)],
        "sparse_opt": [f"{prefix}{i}_opt_sparse_{it}.model" for i in range(num_embeddings)],
        "manifest": f"{prefix}_{it}.manifest.json",   # ours (docs/reliability.md): written last
    }


def _seed_sequence(seed, group):
    # seed 0 means "draw one", as HugeCTR's std::random_device, on process 0 for every process.
    entropy = group.bcast(np.random.SeedSequence(None if seed == 0 else seed).entropy)
    return np.random.SeedSequence(entropy)


class Session:
    """``Session(solver_config, config_file, use_model_oversubscriber=False, temp_embedding_dir="")``.

    ``backend``: "auto" (default: CuPy when CuPy imports and a usable GPU exists, else NumPy), "numpy",
    "cupy", or a Backend object; the environment variable ``HUGECTR_LAB_BACKEND`` overrides the default.
    The choice is ``session.backend.name`` and why, ``session.backend.reason`` (also logged).

    Devices: ``device_ids`` are all G GPU ids of ``vvgpu`` in global order; this process runs
    ``local_devices`` (global ids) of them -- all G unless an MPI launcher started one process per
    node list. Per-device lists (``train_networks``, ``eval_networks``, ``dense_optimizers``,
    ``train_steps``) are local.

    Thread safety: every public method but the plain getters holds one re-entrant lock
    (``serialised``; the model oversubscriber's ``update``/``store`` share it), so calls from several
    threads run one after the other -- two threads calling ``train()`` train distinct batches
    and lose no iteration; a ``download_params_to_files`` never interleaves with a training step.

    Non-finite steps (docs/reliability.md): a NaN/inf loss -- or, in mixed precision, a non-finite
    gradient -- raises ``NonFiniteError`` naming the iteration and, where the step is still at hand, the
    first layer that produced it; its update is not applied. On CuPy with the static scaler the check
    stays on the device and is read with the loss (``get_current_loss``, the ``IterationEnd`` event),
    ``eval``, ``check_overflow`` and ``download_params_to_files``; after it the session refuses to save.
    The solver's ``loss_scaling="dynamic"`` skips such steps and halves the scale instead
    (``loss_scaler``, a ``DynamicLossScaler``; None with the static scaler).
    """

    def __init__(self, solver_config, config_file, use_model_oversubscriber=False, temp_embedding_dir="", *,
                 backend=None):
        if not isinstance(solver_config, SolverParser):
            raise TypeError(f"Session(solver_config=...) needs a SolverParser (from solver_parser_helper), "
                            f"got {type(solver_config).__name__}")
        if use_model_oversubscriber and not temp_embedding_dir:
            raise ValueError("Session(use_model_oversubscriber=True) needs temp_embedding_dir: a writable directory "
                             "for the host-side embedding tables")
        self.solver = solver = solver_config
        # config_file may also be the config itself (a dict: the Model API builds one)
        self.config_file = str(config_file) if isinstance(config_file, (str, os.PathLike)) else "<model graph>"
        group = process_group()
        self.backend = get_backend(backend, node_gpu_ids(solver.vvgpu, group))
        # devices, per-device batch, dtypes, loss scale, backend, key type: derived here, once; everything
        # the session builds takes them from the plan
        self.plan = plan = RunPlan.derive(solver, self.backend)
        self.device_ids = list(plan.devices)
        G = plan.num_devices
        _log.info("Session %s: backend %s, chosen by %s", Path(self.config_file).name, self.backend.name,
                  self.backend.reason)
        self.config = cfg = parse_config(config_file, mixed_precision=solver.use_mixed_precision,
                                         require=("layers", "optimizer"), ignore=("solver",))
        self.events = EventBus()
        self.comm = create_communicator(solver.vvgpu, self.backend, group)
        self.local_devices = self.comm.local_devices
        self._seeds = _seed_sequence(solver.seed, group)
        dense_seq, embedding_seq, dropout_seq = self._seeds.spawn(3)
        self._data_seed = self._seeds.spawn(1)[0]  # Raw batch shuffling (HugeCTR's is not reproducible)
        self.scaler = plan.loss_scale   # the current loss scale S (dynamic loss scaling changes it)
        self._lock = threading.RLock()
        # v3.1's freeze_dense / freeze_embedding: these weights get no updates (gradients still flow)
        self.frozen_dense = False
        self.frozen_embeddings = set()   # embedding indices
        self.loss_scaler = (DynamicLossScaler(self.scaler, growth_interval=solver.loss_scale_growth_interval)
                            if solver.loss_scaling == "dynamic" else None)
        self.iteration = 0
        # CuPy with the static scaler: each device keeps the first non-finite iteration on the device
        # (0: none) and the host reads it with the loss; elsewhere every step is checked at once.
        self._check_on_device = self.backend.name != "numpy" and self.loss_scaler is None
        self._nonfinite_at = self._device_iteration = None   # per local device, with _check_on_device
        self._poisoned = None   # the NonFiniteError whose update reached the model (CuPy, static)
        self._overflow_seen = set()   # (embedding index, device) already reported

        self._reader_train = self.make_reader()
        self._reader_eval = self.make_reader(eval=True) if cfg.data.eval_source else None
        self.embeddings = [
            SparseEmbedding.from_spec(spec, cfg.optimizer, plan=plan, slot_num=cfg.sparse_input(spec.bottom).slot_num,
                                      comm=self.comm, seed=seq)
            for spec, seq in zip(cfg.embeddings, embedding_seq.spawn(len(cfg.embeddings)))]
        dropout_seqs = dropout_seq.spawn(G)
        self.train_networks, self.eval_networks, self.dense_optimizers, self.train_steps = [], [], [], []
        for g in self.local_devices:
            with self.comm.scope(g):
                self.train_networks.append(self._make_network(plan.device_batch(), True,
                                                              np.random.default_rng(dropout_seqs[g])))
                self.eval_networks.append(self._make_network(plan.device_batch(eval=True), False,
                                                             np.random.default_rng(0)))
                self.dense_optimizers.append(self._make_dense_optimizer())
                # a graph would freeze the loss scale it was captured with: dynamic scaling runs eagerly
                self.train_steps.append(TrainStep(self.train_networks[-1],
                                                  graph=solver.use_cuda_graph and self.loss_scaler is None))

        if self._check_on_device:
            self._nonfinite_at, self._device_iteration = [], []
            for g in self.local_devices:
                with self.comm.scope(g):
                    self._nonfinite_at.append(self.backend.xp.zeros((), np.int64))   # 0: none so far
                    self._device_iteration.append(self.backend.xp.zeros((), np.int64))
        # one local device, a static loss scale: the whole step can replay from CUDA graphs
        self._whole_step = (WholeStep(self) if solver.use_cuda_graph and self.backend.has_graphs
                            and self.loss_scaler is None and len(self.local_devices) == 1 else None)

        self._load_dense_weights(solver.model_file, np.random.default_rng(dense_seq))
        self._mos = None
        if use_model_oversubscriber:  # the host store takes the sparse files; the device tables wait for update()
            from .oversubscriber import ModelOversubscriber

            self._mos = ModelOversubscriber(self.embeddings, temp_embedding_dir,
                                            embedding_files=solver.embedding_files,
                                            sparse_opt_states_files=solver.sparse_opt_states_files,
                                            lock=self._lock)
        else:
            self._load_sparse(solver.embedding_files, solver.sparse_opt_states_files)
        if solver.dense_opt_states_file:
            self._load_dense_optimizer(solver.dense_opt_states_file)
        self.metrics = Metrics(solver.metrics_spec, capacity=solver.max_eval_batches * solver.batchsize_eval,
                               xp=self.backend)
        self._learning_rate = cfg.optimizer.learning_rate
        self._losses = None
        self._eval_batches = 0
        self._train_started = False
        self._checked_at = None   # the iteration whose non-finite and overflow records eval() last read

    @property
    def num_devices(self):
        """G, all devices over all processes (``plan.num_devices``)."""
        return self.plan.num_devices

    @property
    def key_type(self):
        """"I32" or "I64" (``plan.key_type``)."""
        return self.plan.key_type

    @property
    def compute_dtype(self):
        """float16 in mixed precision, else float32 (``plan.compute_dtype``)."""
        return self.plan.compute_dtype

    @property
    def replayed(self):
        """What of the training step replays from CUDA graphs now (``use_cuda_graph``): "whole step",
        "dense forward and backward" (every local device's), or None (the eager step)."""
        whole = self._whole_step
        if whole is not None and whole.graphs and all(entry[0].graph is not None for entry in whole.graphs.values()):
            return "whole step"
        if all(step.captured is not None and step.captured.graph is not None for step in self.train_steps):
            return "dense forward and backward"
        return None

    @property
    def lock(self):
        """The re-entrant lock every public method holds: hold it to run several calls as one, with no
        other thread's call between them (the trainer holds it for a whole step and an evaluation)."""
        return self._lock

    # ---- construction helpers ---------------------------------------------------------------------

    def make_reader(self, *, eval=False, repeat=None, seed=None):
        """A new reader of this session's training data (``eval``: evaluation data), made as the session
        makes its own -- format, key type, batch size (``batchsize`` / ``batchsize_eval``), devices -- but
        independent of them: not started, its own position. ``repeat`` defaults to the solver's
        ``repeat_dataset``, ``seed`` (Raw shuffling) to the session's data seed."""
        plan = self.plan
        cls = DataReader64 if plan.key_type == "I64" else DataReader32
        return cls.from_data_spec(self.config.data, plan.batchsize_eval if eval else plan.batchsize,
                                  repeat=self.solver.repeat_dataset if repeat is None else repeat, eval=eval,
                                  num_devices=plan.num_devices, seed=self._data_seed if seed is None else seed)

    def _make_network(self, b, training, rng):
        ctx = BuildContext(backend=self.plan.backend, compute_dtype=self.plan.compute_dtype, scaler=self.scaler,
                           device_count=self.plan.num_devices, rng=rng, training=training,
                           tf32=self.solver.enable_tf32_compute)
        try:
            return Network(self.config.layers, network_inputs(self.config, b), ctx,
                           first_index=1 + len(self.config.embeddings))
        except LayerError as e:  # it names the layer's JSON path; say which config file
            if not os.path.isfile(self.config_file):  # a config built in memory (the Model API)
                raise
            raise LayerError(f"{e} (in {self.config_file})") from None

    def _make_dense_optimizer(self):
        opt = self.config.optimizer
        hparams = {name: getattr(opt, name) for name in
                   ("beta1", "beta2", "epsilon", "momentum_factor", "initial_accu_value")
                   if getattr(opt, name, None) is not None}
        optimizer = create_dense_optimizer(opt.type, learning_rate=opt.learning_rate, scaler=self.scaler,
                                           mixed_precision=self.plan.mixed_precision, xp=self.backend,
                                           **hparams)
        # on the device current here, before any step: outside every CUDA graph's memory
        return optimizer.init(self.train_networks[0].num_params)

    def _load_dense_weights(self, model_file, rng):
        with self.comm.scope(self.local_devices[0]):
            self._init_first_network(model_file, rng)
        first = self.train_networks[0]
        host = self.backend.to_host(first.weights)
        for g, train_net, eval_net in self._local(self.train_networks, self.eval_networks):
            with self.comm.scope(g):
                if train_net is not first:
                    train_net.load_weights(host)
                eval_net.copy_weights_from(train_net)

    def _init_first_network(self, model_file, rng):
        """The first local replica's weights: read from ``model_file`` or drawn (same seed everywhere)."""
        first = self.train_networks[0]
        if not model_file:
            first.init_weights(rng)
            return
        flat = np.frombuffer(_read_file(model_file, "model_file"), dtype=np.float32)
        if flat.size < first.num_params:
            raise ValueError(f"model_file {model_file}: holds {flat.size} float32 values, the network has "
                             f"{first.num_params} dense parameters")
        first.load_weights(flat[:first.num_params])
        ntp = model_file + ".ntp.json"
        if first.has_state and os.path.exists(ntp):  # HugeCTR never reads it back (quirk 9)
            first.load_state(_read_json(ntp, "BatchNorm running statistics"))

    def _load_dense_optimizer(self, path):
        data = _read_file(path, "dense_opt_states_file")
        step = loss_scale = rngs = None
        if os.path.exists(path + ".json"):  # our sidecar: what of the step HugeCTR's files cannot hold
            sidecar = _read_json(path + ".json", "optimizer step sidecar")
            if isinstance(sidecar, dict):
                step, loss_scale, rngs = sidecar.get("step"), sidecar.get("loss_scale"), sidecar.get("dropout_rng")
            if not (step is None or type(step) is int and step >= 0):
                raise ValueError(f"{path}.json: optimizer step sidecar: \"step\" must be an integer >= 0, got "
                                 f"{step!r} (delete the file to restart the optimizer's step count at 1)")
        if loss_scale is not None and self.loss_scaler is not None:   # a static scaler keeps its own S
            self.loss_scaler.load_state(loss_scale, f"{path}.json: \"loss_scale\"")
            self._set_loss_scale(self.loss_scaler.scale)
        if rngs is not None:
            self._load_dropout_generators(rngs, f"{path}.json")
        data, dtype = self._exact_dense_states(path, data)
        for g, opt in self._local(self.dense_optimizers):
            with self.comm.scope(g):
                opt.load_state_bytes(data, dtype)
            if step is not None and hasattr(opt, "t"):
                opt.t = int(step)

    def _load_dropout_generators(self, states, where):
        """Continue each training network's Dropout generator where the saved run left it (one state per
        device); a run on another number of devices draws its own masks, with a warning."""
        if not isinstance(states, list) or len(states) != self.plan.num_devices:
            warnings.warn(f"{where}: \"dropout_rng\" holds no state for each of this run's {self.plan.num_devices} "
                          "devices; Dropout draws new masks", RuntimeWarning, stacklevel=4)
            return
        for g, net in self._local(self.train_networks):
            try:
                net.ctx.rng.bit_generator.state = states[g]
            except (TypeError, ValueError, KeyError) as e:
                raise ValueError(f"{where}: \"dropout_rng\"[{g}] is not a {type(net.ctx.rng.bit_generator).__name__} "
                                 f"state ({e})") from None

    def _exact_dense_states(self, path, data):
        """(state bytes, their dtype): the float32 states saved beside an fp16 state file
        (``<file>.f32``, ours) where they round to that file's bytes, else the file itself (written by
        HugeCTR, or replaced after the save: then a warning says which one loads)."""
        exact_path, opt = path + ".f32", self.dense_optimizers[0]
        if np.dtype(opt.file_dtype) == np.float32 or not os.path.exists(exact_path):
            return data, None
        exact = _read_file(exact_path, "exact dense optimizer states")
        if len(exact) == 2 * len(data) and np.frombuffer(exact, np.float32).astype(opt.file_dtype).tobytes() == data:
            return exact, np.float32
        warnings.warn(f"{exact_path}: does not round to {path} (the state file was replaced after the save); "
                      f"loading {path} as it is", RuntimeWarning, stacklevel=3)
        return data, None

    def _load_sparse(self, embedding_files, opt_state_files):
        for what, files in (("embedding_files", embedding_files), ("sparse_opt_states_file", opt_state_files)):
            if len(files) > len(self.embeddings):
                raise ValueError(f"solver {what} lists {len(files)} files but the config has "
                                 f"{len(self.embeddings)} embedding layers")
        # Loaded values are kept even without optimizer states (HugeCTR re-draws them: quirk 1).
        for emb, path in zip(self.embeddings, embedding_files):
            _require_path(path, "embedding_files")
            load_sparse_model(emb, path)
        for emb, path in zip(self.embeddings, opt_state_files):
            _require_path(path, "sparse_opt_states_file")
            load_sparse_optimizer_state(emb, path)

    # ---- data readers -------------------------------------------------------------------------------

    def get_data_reader_train(self):
        return self._reader_train

    def get_data_reader_eval(self):
        return self._reader_eval

    @serialised
    def start_data_reading(self):
        """Start the train and eval readers on the config's sources (non-epoch mode)."""
        for reader in (self._reader_train, self._reader_eval):
            if reader is not None:
                reader.start()

    def get_model_oversubscriber(self):
        """The ``ModelOversubscriber`` (None unless built with ``use_model_oversubscriber=True``)."""
        return self._mos

    # ---- training -----------------------------------------------------------------------------------

    @serialised
    def set_learning_rate(self, lr):
        """Learning rate for the next iterations of every dense optimizer and every embedding."""
        for opt in self.dense_optimizers:
            opt.set_learning_rate(lr)  # raises for lr <= 0, as HugeCTR's dense optimizer does
        for emb in self.embeddings:
            emb.set_learning_rate(lr)
        self._learning_rate = float(lr)
        return Error_t.Success

    def _local(self, *per_device):
        """``(global id, item of each list, ...)`` over the local devices."""
        return zip(self.local_devices, *per_device)

    @serialised
    def stage_batch(self, batch):
        """Copy a full training batch to the local devices, for ``train_step``: each device's rows of the
        dense input and labels, and every embedding's CSR (``SparseEmbedding.stage``). ``batch`` is what
        the training reader's ``read_a_batch`` returns, or any object with ``labels`` (B, L), ``dense``
        (B, D) and ``sparse`` (one CSR per sparse input, in Data layer order), B = ``batchsize``. Every
        copy of a step happens here, before its first kernel, so no device waits for another's work."""
        B = self.plan.batchsize
        if len(batch.dense) != B or len(batch.labels) != B:
            raise ValueError(f"stage_batch: the batch must hold batchsize = {B} samples, got dense "
                             f"{len(batch.dense)} and labels {len(batch.labels)} rows")
        return self._upload(batch, self.plan.device_batch())

    def _upload(self, batch, b):
        """``StagedBatch`` of ``batch`` with ``b`` samples per device (``stage_batch``; evaluation too)."""
        data = self.config.data
        feeds = []
        for g in self.local_devices:
            with self.comm.scope(g):
                feed = {data.dense.top: self.backend.asarray(batch.dense[g * b:(g + 1) * b])}
                if data.label.top:
                    feed[data.label.top] = self.backend.asarray(batch.labels[g * b:(g + 1) * b])
            feeds.append(feed)
        return StagedBatch(feeds, [emb.stage(csr.row_offsets, csr.keys)
                                   for emb, csr in zip(self.embeddings, self._sparse_inputs(batch))])

    def _embed(self, feeds, staged, training):
        """Add every embedding's output to the local devices' feeds."""
        for spec, emb, inputs in zip(self.config.embeddings, self.embeddings, staged):
            for feed, out in zip(feeds, emb.forward_staged(inputs, training)):
                feed[spec.top] = out
        return feeds

    @serialised
    def train_step(self, staged, on_phase=None):
        """One training iteration on a ``stage_batch`` result: the device work of ``train()`` --
        embedding forward, dense forward + backward, the gradient all-reduce, dense update, embedding
        backward, sparse update (``STEP_PHASES``) -- counted in ``iteration``. ``on_phase(phase)`` is
        called after each phase (the benchmarks record device events there). A staged batch may be
        trained on again. Returns the local devices' losses, 0-d device arrays (nothing waits for them)."""
        if self._poisoned is not None:
            self._check_finite()
        replay = None
        with self.backend.writes_together():   # the step's host numbers and a replay's inputs: one launch
            if self._check_on_device:
                for g, at in self._local(self._device_iteration):
                    with self.comm.scope(g):
                        self.backend.write(at, self.iteration + 1)
            if self._whole_step is not None and on_phase is None:
                replay = self._whole_step.prepare(staged)
        if replay is not None:
            losses = [loss.copy() for loss in replay()]
        else:
            losses = self._step(*staged, on_phase or (lambda phase: None))
        self._losses = losses
        self.iteration += 1
        return losses

    def _step(self, feeds, staged, mark, prepared=False):
        """The step's device work on feeds and staged CSRs of the local devices. ``prepared``: the host
        half (``_prepare_step``) ran already and nothing here may read the host's per-step values -- the
        device half that ``WholeStep`` captures in a CUDA graph. ``mark(what)`` is called after each phase
        (the benchmark's timing events) and, ``prepared``, after each layer's forward and backward too
        (``CapturedCall.mark``: where a failed capture broke)."""
        self._embed(feeds, staged, True)
        mark("embedding fwd")
        losses = []
        for g, step, feed in self._local(self.train_steps, feeds):
            with self.comm.scope(g):
                losses.append(step.run_prepared(feed, mark) if prepared else step(feed))
        mark("dense fwd+bwd")
        if self.num_devices > 1:
            totals = self.comm.all_reduce([n.grads for n in self.train_networks])
            for g, net, total in self._local(self.train_networks, totals):
                with self.comm.scope(g):
                    net.grads[...] = total
        mark("all-reduce")
        if not self._finite_step(losses, feeds):
            return losses   # skipped by dynamic loss scaling
        for g, net, opt in self._local(self.train_networks, self.dense_optimizers):
            if not self.frozen_dense:
                with self.comm.scope(g):
                    (opt.run if prepared else opt.update)(net.weights, net.grads)
        mark("dense update")
        trained = self._trained_embeddings()
        for spec, emb in trained:
            emb.backward([net.input_grad(spec.top) for net in self.train_networks])
        mark("embedding bwd")
        for _, emb in trained:
            emb.apply_update() if prepared else emb.update()
        mark("embedding update")
        return losses

    def _trained_embeddings(self):
        return [(spec, emb) for i, (spec, emb) in enumerate(zip(self.config.embeddings, self.embeddings))
                if i not in self.frozen_embeddings]

    def _prepare_step(self):
        """The host half of a step whose device half runs ``prepared`` (a CUDA graph replay): Dropout
        seeds, the dense optimizers' rate, the embeddings' lr, step and lr/S, written to the devices."""
        for g, net, opt in self._local(self.train_networks, self.dense_optimizers):
            with self.comm.scope(g):
                net.prepare(True)
                if not self.frozen_dense:
                    opt.prepare()
        for _, emb in self._trained_embeddings():
            emb.prepare_update()

    def _persistent_arrays(self):
        """Every array the training step keeps across steps (tables, hash-table slots, optimizer states,
        weights, records), in a fixed order: what a CUDA graph of the step captured, whose addresses
        ``WholeStep`` compares with the captured ones before each replay."""
        arrays = []
        for emb in self.embeddings:
            arrays += emb.persistent_arrays()
        for net, opt in zip(self.train_networks, self.dense_optimizers):
            arrays += [net.weights, net.grads] + opt.persistent_arrays()
        return arrays + list(self._nonfinite_at or ()) + list(self._device_iteration or ())

    def _finite_step(self, losses, feeds):
        """Whether this step's updates may be applied: False skips them (dynamic loss scaling); a
        non-finite step otherwise raises ``NonFiniteError`` -- or, checked on the device, is recorded
        there for ``_check_finite``."""
        xp = self.backend.xp
        iteration = self.iteration + 1
        flags = []
        for g, loss, net in self._local(losses, self.train_networks):
            with self.comm.scope(g):
                arrays = [loss]
                if self.plan.mixed_precision:   # fp16 gradients overflow where the loss does not
                    arrays += [net.grads] + [net.input_grad(spec.top) for spec in self.config.embeddings]
                flags.append(self.backend.ops.all_finite(*arrays))
        if self._check_on_device:   # in place, from the device's iteration: a CUDA graph replays it
            for g, finite, first, at in self._local(flags, self._nonfinite_at, self._device_iteration):
                with self.comm.scope(g):
                    first[...] = xp.where(~finite & (first == 0), at, first)
            return True
        finite = all(bool(flag) for flag in flags)
        if self.comm.group.size > 1:   # one decision for every process (losses differ between them)
            finite = all(self.comm.group.allgather(finite))
        if self.loss_scaler is not None:
            changed = self.loss_scaler.update(finite)
            if changed:
                self._set_loss_scale(self.loss_scaler.scale)
            if changed is not None:
                return finite
        elif finite:
            return True
        raise self._nonfinite_error(iteration, losses, feeds)

    def _nonfinite_error(self, iteration, losses, feeds):
        where = None
        for g, net, feed, loss in self._local(self.train_networks, feeds, losses):
            with self.comm.scope(g):
                where = locate_nonfinite(net, feed, loss)
            if where:
                where = f"{where} (device {g})"
                break
        scale = f" at the minimum loss scale {self.loss_scaler.scale:g}" if self.loss_scaler else ""
        values = ", ".join(f"{float(loss):g}" for loss in losses)
        return NonFiniteError(
            f"iteration {iteration}: the training step is not finite{scale} (loss {values})"
            + (f"; first non-finite: {where}" if where else "")
            + "; its update was not applied. Lower the learning rate, check the input data"
            + ("" if not self.plan.mixed_precision or self.loss_scaler else
               ", or try the solver's loss_scaling='dynamic'") + ".",
            iteration=iteration, where=where)

    def _check_finite(self, collective=True):
        """Read the devices' non-finite records (CuPy, static scaler; one small copy each, at points
        that synchronise anyway) and raise ``NonFiniteError`` once a step went non-finite. Over several
        MPI processes a ``collective`` read gathers every process's records, so all of them raise
        together; a local read (the ``IterationEnd`` event) happens only in a single process."""
        if not collective and self.comm.group.size > 1:
            return
        if self._poisoned is None and self._nonfinite_at is not None:
            firsts = [int(self.backend.to_host(a)) for a in self._nonfinite_at]
            if self.comm.group.size > 1:
                firsts = [f for part in self.comm.group.allgather(firsts) for f in part]
            if any(firsts):
                at = min(f for f in firsts if f)
                self._poisoned = (
                    f"iteration {at}: the training step was not finite (NaN/inf loss or gradient), seen at "
                    f"iteration {self.iteration}; its update and later ones reached the model, so this session "
                    "no longer trains, evaluates or saves. Rebuild it from the last snapshot with a lower "
                    "learning rate (or loss_scaling='dynamic' in mixed precision)", at)
        if self._poisoned is not None:
            message, at = self._poisoned
            raise NonFiniteError(message, iteration=at)

    def _set_loss_scale(self, scale):
        """The loss scale S of the next steps: the loss layers' gradient factor and the divisor of every
        dense and sparse optimizer."""
        _log.info("Session: loss scale %g at iteration %d", scale, self.iteration + 1)
        self.scaler = scale
        for net in self.train_networks:
            net.ctx.scaler = scale
        for opt in self.dense_optimizers:
            opt.scaler = np.float32(scale)
        for emb in self.embeddings:
            emb.scaler = scale

    def _sparse_inputs(self, batch):
        by_top = {spec.top: csr for spec, csr in zip(self.config.data.sparse, batch.sparse)}
        return [by_top[spec.bottom] for spec in self.config.embeddings]

    @serialised
    def train(self):
        """One iteration on the next full batch; False (nothing trained) at the end of the data."""
        reader = self._reader_train
        if not reader.started:
            raise IllegalCallError("train() before the training reader was started: call "
                                   "start_data_reading() (non-epoch mode) or "
                                   "get_data_reader_train().set_source(file_list) (epoch mode)")
        start = time.perf_counter()
        B = self.plan.batchsize
        while True:
            batch = reader.read_a_batch()
            if batch is None or batch.size == 0:
                return False
            if batch.size == B:
                break
        self.train_step(self.stage_batch(batch))
        if self.backend.name == "numpy":   # host counters: free to read every step
            self._poll_overflow()
        if self.events._subscribers:
            elapsed = time.perf_counter() - start
            # the local devices' loss: a global one would need every process to take part
            self.events.publish(IterationEnd(self.iteration, self._local_loss(), self._learning_rate,
                                             B / elapsed if elapsed > 0 else float("inf"), B))
        return True

    def _local_loss(self):
        loss = float(np.mean([float(loss) for loss in self._losses]))
        self._check_finite(collective=False)
        return loss

    @serialised
    def get_current_loss(self):
        """Mean over all G devices of the last training batch's loss (regularizer term included).
        Over several MPI processes every process must call it; each gets the same value."""
        if self._losses is None:
            raise IllegalCallError("get_current_loss() before the first train()")
        losses = [float(loss) for loss in self._losses]
        if self.comm.group.size > 1:
            losses = [loss for part in self.comm.group.allgather(losses) for loss in part]
        self._check_finite()   # after the gather: every process reaches this collective read
        return float(np.mean(losses))

    def _poll_overflow(self):
        """Report each table found refusing keys for the first time: a ``VocabularyOverflowWarning`` and
        a ``VocabularyOverflow`` event, or, with the solver's ``on_vocabulary_overflow="error"``, an
        ``EmbeddingOverflowError``. Reads the tables' counters (a device read on CuPy, so it runs
        only where the host waits anyway: eval, save, ``check_overflow``)."""
        for i, emb in enumerate(self.embeddings):
            if not hasattr(emb, "refused_keys"):
                continue
            emb.grow_refused_memory()   # so that a refused key is counted once however many there are
            for g, (capacity, refused, message) in emb.refused_keys().items():
                if (i, g) in self._overflow_seen:
                    continue
                if self.solver.on_vocabulary_overflow == "error":
                    raise EmbeddingOverflowError(f"iteration {self.iteration}: {message} "
                                                 "(the solver's on_vocabulary_overflow is 'error')")
                self._overflow_seen.add((i, g))
                hint = " -- raise max_vocabulary_size_per_gpu or use more devices"
                warnings.warn(f"iteration {self.iteration}: {message}{hint}", VocabularyOverflowWarning, stacklevel=3)
                self.events.publish(VocabularyOverflow(self.iteration, emb.name, g, capacity, refused, message))

    @serialised
    def vocabulary_overflow(self):
        """``[VocabularyOverflow, ...]``: every local table that refused keys so far, with the distinct
        keys refused (reads the devices; reports nothing by itself)."""
        return [VocabularyOverflow(self.iteration, emb.name, g, capacity, refused, message)
                for emb in self.embeddings if hasattr(emb, "refused_keys")
                for g, (capacity, refused, message) in emb.refused_keys().items()]

    @serialised
    def check_overflow(self):
        """Raise ``EmbeddingOverflowError`` if any embedding was offered more keys than it holds (the
        message gives the distinct keys refused)."""
        self._check_finite()
        for emb in self.embeddings:
            emb.check_overflow()

    @serialised
    def copy_weights_for_evaluation(self):
        """Copy the training weights (and BatchNorm running statistics) to the evaluation copies."""
        for g, train_net, eval_net in self._local(self.train_networks, self.eval_networks):
            with self.comm.scope(g):
                eval_net.copy_weights_from(train_net)

    # ---- evaluation ---------------------------------------------------------------------------------

    @serialised
    def eval(self):
        """One evaluation batch into the metrics; False at the end of the eval data (epoch mode)."""
        if self._reader_eval is None:
            return True
        if self._checked_at != self.iteration:   # both read the devices; only training changes what they read
            self._check_finite()
            self._poll_overflow()
            self._checked_at = self.iteration
        batch = self._reader_eval.read_a_batch()
        if batch is None or batch.size == 0:
            return False
        b = self.plan.device_batch(eval=True)
        preds, labels, losses = [], [], []
        for g, net, feed in self._local(self.eval_networks, self._embed(*self._upload(batch, b), False)):
            with self.comm.scope(g):
                losses.append(net.forward(feed, training=False))
            preds.append(net.predictions)
            labels.append(feed[self.config.data.label.top])
        if self.comm.group.size > 1:   # every process's metrics see the whole batch, in device order
            to_host = self.backend.to_host
            parts = self.comm.group.allgather([(to_host(p), to_host(y), float(loss))
                                               for p, y, loss in zip(preds, labels, losses)])
            preds, labels, losses = (list(column) for column in zip(*(p for part in parts for p in part)))
        self.metrics.update(preds=preds, labels=labels, losses=losses, real_size=batch.size)
        self._eval_batches += 1
        self._last_eval = (preds, labels, batch.size)
        return True

    @serialised
    def get_eval_metrics(self):
        """``[("AUC", value), ...]`` over the eval batches since the last call; resets the metrics."""
        values = self.metrics.get()
        self.events.publish(EvalEnd(self.iteration, tuple(values), self._eval_batches))
        self._eval_batches = 0
        return values

    @serialised
    def evaluation(self, export_predictions_out_file="", export_labels_out_file="", *, max_batches=None):
        """Evaluate one pass over the eval source and return the metrics; optionally export
        predictions and labels as text (one ``%g``-formatted value plus a space per real sample).

        Epoch mode: runs until the eval source ends, then rewinds it (HugeCTR). Non-epoch mode, where
        HugeCTR never returns: runs ``max_eval_batches`` batches from the start of the source, then
        rewinds it. ``max_batches`` (ours) bounds the pass in either mode. Only real samples are exported
        (HugeCTR also writes a partial batch's padding and repeats the last batch). This is the one
        evaluation: the trainer (``hugectr_lab.fit``) and the dashboard run it after copying the weights.
        """
        if bool(export_predictions_out_file) != bool(export_labels_out_file):
            raise ValueError("evaluation(): give both export_predictions_out_file and export_labels_out_file, "
                             "or neither")
        if self._reader_eval is None:
            raise IllegalCallError(f"evaluation(): the config {self.config_file} has no eval_source")
        if max_batches is not None and (type(max_batches) is not int or max_batches < 1):
            raise ValueError(f"evaluation(max_batches=...) must be a positive integer or None, got {max_batches!r}")
        exporting = bool(export_predictions_out_file)
        repeat = self.solver.repeat_dataset
        if repeat:
            self._reader_eval.set_source()  # a repeating source has no end: one bounded pass from its start
        limit = max_batches if max_batches is not None else self.solver.max_eval_batches if repeat else None
        pred_parts, label_parts = [], []
        batches = 0
        while limit is None or batches < limit:
            if not self.eval():
                break
            batches += 1
            if exporting:
                preds, labels, size = self._last_eval
                pred_parts.append(self._host_column(preds, size))
                label_parts.append(self._host_column(labels, size))
        self._reader_eval.set_source()
        if exporting and self.comm.group.rank == 0:
            _write_values(export_predictions_out_file, pred_parts)
            _write_values(export_labels_out_file, label_parts)
        return self.get_eval_metrics()

    def _host_column(self, per_device, size):
        """First column of the per-device arrays, in sample order, real samples only."""
        return np.concatenate([self.backend.to_host(a) for a in per_device])[:size, 0].astype(np.float32)

    # ---- model files --------------------------------------------------------------------------------

    @serialised
    def download_params_to_files(self, prefix, iter, *, sparse_format="v3.0", allow_zero=False):
        """Write the dense model, dense optimizer state, BatchNorm statistics (``.ntp.json``), and per
        embedding the sparse model and its optimizer state, under HugeCTR's file names. ``iter <= 0``
        writes nothing and returns ``Error_t.WrongInput`` (HugeCTR).

        ``sparse_format="v3.1"`` writes each sparse model as HugeCTR 3.1's directory (``key``,
        ``emb_vector``, ``slot_id``) instead of the v3.0 file, so the model loads into newer HugeCTR;
        ``embedding_files`` accepts either form. With the model oversubscriber the sparse files hold
        what the devices hold (HugeCTR); ``get_model_oversubscriber().store(files)`` writes whole tables.

        The files form one snapshot (``fileio.Snapshot``): all are written under temporary names,
        then ``<prefix>_<iter>.manifest.json`` commits them, so a crash or a full disk leaves either the
        old files or the new ones (docs/reliability.md). A session whose model took a non-finite
        update raises ``NonFiniteError`` instead of saving it.
        """
        if sparse_format not in ("v3.0", "v3.1"):
            raise ValueError(f"download_params_to_files(sparse_format=...) must be 'v3.0' or 'v3.1', "
                             f"got {sparse_format!r}")
        if iter < 0 or (iter == 0 and not allow_zero):   # allow_zero: v3.1's save_params_to_files(prefix)
            warnings.warn(f"download_params_to_files(iter={iter}): iter must be positive; nothing written",
                          RuntimeWarning, stacklevel=2)
            return Error_t.WrongInput
        self._check_finite()
        self._poll_overflow()
        names = model_file_names(prefix, iter, len(self.embeddings))
        snapshot = (Snapshot(names["manifest"], step=int(iter), info={"iteration": self.iteration})
                    if self.comm.group.rank == 0 else contextlib.nullcontext())
        with snapshot:
            written = self._write_model_files(names, sparse_format)
        if self.comm.group.rank == 0:
            written.append(names["manifest"])
        self.events.publish(ModelSaved(self.iteration, tuple(written)))
        return Error_t.Success

    def _write_model_files(self, names, sparse_format):
        net, optimizer = self.train_networks[0], self.dense_optimizers[0]   # replicas are identical
        written = [names["dense"], names["dense_opt"]]
        # what of the step HugeCTR's raw state file cannot hold: Adam's step counter, the dynamic loss scale,
        # the Dropout generators (the sidecar) and, in mixed precision, the float32 states (the .f32 file)
        sidecar = {"optimizer": self.config.optimizer.type}
        if hasattr(optimizer, "t"):
            sidecar["step"] = int(optimizer.t)
        if self.loss_scaler is not None:
            sidecar["loss_scale"] = self.loss_scaler.state()
        if any(layer.type_name == "Dropout" for layer in net.layers):   # where the next masks come from
            local = [(g, n.ctx.rng.bit_generator.state) for g, n in self._local(self.train_networks)]
            gathered = dict(item for part in self.comm.group.allgather(local) for item in part)
            sidecar["dropout_rng"] = [gathered[g] for g in range(self.plan.num_devices)]
        if len(sidecar) > 1:
            written.append(names["dense_opt"] + ".json")
        exact = bool(optimizer.state_names) and np.dtype(optimizer.file_dtype) != np.float32   # an fp16 file rounds
        if exact:
            written.append(names["dense_opt"] + ".f32")
        if net.has_state:
            written.append(names["ntp"])
        if self.comm.group.rank == 0:   # dense files: process 0 only; sparse dumps below are collective
            write_bytes_atomic(names["dense"], self.backend.to_host(net.weights).astype(np.float32))
            write_bytes_atomic(names["dense_opt"], optimizer.state_bytes())
            if exact:   # the states as they are, so that a resumed mixed-precision run continues exactly
                write_bytes_atomic(names["dense_opt"] + ".f32", optimizer.state_bytes(np.float32))
            if len(sidecar) > 1:
                with atomic_write(names["dense_opt"] + ".json", "w") as f:
                    json.dump(sidecar, f)
            if net.has_state:
                with atomic_write(names["ntp"], "w") as f:
                    json.dump(_host_floats(net.state), f)
        for emb, sparse, sparse_opt in zip(self.embeddings, names["sparse"], names["sparse_opt"]):
            save_sparse_model(emb, sparse, directory=sparse_format == "v3.1")
            save_sparse_optimizer_state(emb, sparse_opt)
            written += [sparse, sparse_opt]
        return written

    def init_params(self, model_file=""):
        """A no-op kept for HugeCTR 3.0 compatibility; weights load through the SolverParser."""
        return Error_t.Success

    @serialised
    def get_params_num(self):
        """Dense parameters + Σ over embeddings of (keys held × embedding_vec_size)."""
        return self.train_networks[0].num_params + sum(e.num_keys() * e.embedding_vec_size for e in self.embeddings)

    @serialised
    def summary(self, print_fn=print):
        """The dense graph of the training copy as a table (layers, tensors, shapes, parameters)."""
        return self.train_networks[0].summary(print_fn)

    @serialised
    def close(self):
        """Stop the reader threads and remove the model oversubscriber's files."""
        for reader in (self._reader_train, self._reader_eval):
            if reader is not None:
                reader.close()
        if self._mos is not None:
            self._mos.close()

    def __repr__(self):
        return (f"<Session {Path(self.config_file).name}: {len(self.embeddings)} embeddings, "
                f"{self.train_networks[0].num_params:,} dense params, {self.num_devices} device(s) on "
                f"{self.backend.name} ({self.backend.reason}), iteration {self.iteration}>")


def _read_file(path, what):
    _require_path(path, what)
    problem = input_problem(path)
    if problem is not None:
        raise ValueError(f"solver {what}: {path} {problem}")
    with open(path, "rb") as f:
        return f.read()


def _read_json(path, what):
    """The JSON value in the file at ``path``; ValueError naming the file and ``what`` it should hold."""
    problem = input_problem(path)
    if problem is not None:
        raise ValueError(f"{path}: {what} {problem}")
    check_snapshot_file(path)
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"{path}: {what}: not valid JSON ({e})") from None


def _require_path(path, what):
    if not os.path.exists(path):
        raise FileNotFoundError(f"solver {what}: {path} does not exist")
    check_snapshot_file(path)   # a file of an interrupted or mixed save is refused


def _host_floats(value):
    """JSON-ready copy of the .ntp.json dict (arrays → lists of floats, full precision)."""
    if isinstance(value, dict):
        return {k: _host_floats(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_host_floats(v) for v in value]
    if hasattr(value, "tolist"):
        return np.asarray(value.get() if hasattr(value, "get") else value, dtype=np.float64).tolist()
    return value


def _write_values(path, parts):
    values = np.concatenate(parts) if parts else np.zeros(0)
    with atomic_write(path, "w") as f:
        f.write("".join(f"{float(v):g} " for v in values))
