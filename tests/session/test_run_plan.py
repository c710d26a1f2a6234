"""The run plan: a Session derives devices, per-device batch, dtypes, loss scale, backend and key type
once (``RunPlan.derive``) and everything it builds takes them from there."""

import dataclasses

import numpy as np
import pytest

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.run_plan import RunPlan
from hugectr_lab.session import Session

from session_helpers import dnn_config, make_dataset, write_config


def test_derive_reads_the_solver_once():
    solver = solver_parser_helper(batchsize=64, batchsize_eval=32, vvgpu=[[0, 1], [2, 3]], use_mixed_precision=True,
                                  scaler=128, i64_input_key=True)
    plan = RunPlan.derive(solver, "backend")
    assert plan.devices == (0, 1, 2, 3) and plan.num_devices == 4
    assert (plan.device_batch(), plan.device_batch(eval=True)) == (16, 8)
    assert plan.compute_dtype == np.float16 and plan.storage_dtype == np.float32 and plan.mixed_precision
    assert plan.loss_scale == 128.0 and plan.key_type == "I64" and plan.key_dtype == np.int64
    assert plan.backend == "backend"
    fp32 = RunPlan.derive(solver_parser_helper(batchsize=6, batchsize_eval=6, vvgpu=[[0, 1, 2]], scaler=128))
    assert (fp32.compute_dtype, fp32.loss_scale, fp32.key_type, fp32.device_batch()) == (np.float32, 1.0, "I32", 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.loss_scale = 1.0
    with pytest.raises(ValueError, match="batchsize_eval 10 is not divisible by the 4 devices"):
        dataclasses.replace(plan, batchsize_eval=10)


def test_the_session_hands_its_plan_to_what_it_builds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_dataset(tmp_path, key_type="I64")
    solver = solver_parser_helper(batchsize=64, batchsize_eval=32, max_eval_batches=2, vvgpu=[[0, 1]],
                                  use_mixed_precision=True, scaler=256, i64_input_key=True)
    config = write_config(tmp_path / "c.json", dnn_config())
    session = Session(solver, config)
    plan = session.plan
    assert plan == RunPlan.derive(solver, session.backend) and plan.backend is session.backend
    assert (session.num_devices, session.key_type, session.compute_dtype) == (2, "I64", np.float16)
    for net, b in [(n, plan.device_batch()) for n in session.train_networks] + [
            (n, plan.device_batch(eval=True)) for n in session.eval_networks]:
        assert net.ctx.backend is plan.backend and net.ctx.compute_dtype == plan.compute_dtype
        assert net.ctx.device_count == plan.num_devices and net.ctx.scaler == plan.loss_scale
        assert {shape[0] for shape in net.input_shapes.values()} == {b}
    for emb in session.embeddings:
        assert emb.backend is plan.backend and emb.compute_dtype == plan.compute_dtype
        assert emb.key_dtype == plan.key_dtype and emb.scaler == plan.loss_scale
    train, evaluation = session.make_reader(), session.make_reader(eval=True)
    assert train.key_type == plan.key_dtype and train.read_a_batch().labels.shape[0] == plan.batchsize
    assert evaluation.read_a_batch().labels.shape[0] == plan.batchsize_eval
    for reader in (train, evaluation):
        reader.close()
    session.close()
