"""Non-finite training steps stop with NonFiniteError and write nothing; dynamic loss scaling skips
them instead (docs/reliability.md)."""

import os

import numpy as np
import pytest

from session_helpers import DENSE, SLOTS, dnn_config, optimizer, write_config

from hugectr_lab.config import solver_parser_helper
from hugectr_lab.data import read_norm_file, write_norm_file
from hugectr_lab.fit import fit
from hugectr_lab.metrics import auc
from hugectr_lab.numerics import DynamicLossScaler, NonFiniteError
from hugectr_lab.optim import LearningRateScheduler
from hugectr_lab.session import Session


def make_session(workdir, opt=None, backend="numpy", **solver):
    args = dict(batchsize=64, batchsize_eval=64, max_eval_batches=2, seed=11)
    args.update(solver)
    return Session(solver_parser_helper(**args), write_config(workdir / "c.json", dnn_config(opt=opt)),
                   backend=backend)


def state(session):
    """Host copies of everything a step updates: dense weights, optimizer state, embedding rows."""
    emb = session.embeddings[0]
    return (session.backend.to_host(session.train_networks[0].weights).copy(),
            session.dense_optimizers[0].state_bytes(), emb.dump()[1].copy(), emb.step)


def test_a_diverging_run_stops_at_the_first_non_finite_step_and_keeps_the_last_finite_state(workdir):
    session = make_session(workdir, opt=optimizer("SGD", lr=1e6))
    session.start_data_reading()
    with pytest.raises(NonFiniteError) as caught:
        for _ in range(50):
            before = state(session)
            session.train()
    err = caught.value
    assert err.iteration == session.iteration + 1 and err.iteration <= 10
    assert f"iteration {err.iteration}: the training step is not finite" in str(err)
    assert err.where and 'of layers[' in err.where and "(device 0)" in err.where
    assert "its update was not applied" in str(err)
    after = state(session)
    np.testing.assert_array_equal(after[0], before[0])     # dense weights untouched by the bad step
    assert after[1] == before[1] and after[3] == before[3]
    # embedding rows untouched; keys first seen in the bad step were inserted with their initial values
    np.testing.assert_array_equal(after[2][:len(before[2])], before[2])
    # what is saved is the last finite state
    session.download_params_to_files("ok", session.iteration)
    saved = np.fromfile(f"ok_dense_{session.iteration}.model", dtype=np.float32)
    assert np.isfinite(saved).all() and np.array_equal(saved, before[0])
    session.close()


def test_the_first_non_finite_layer_is_named(workdir):
    session = make_session(workdir)
    net = session.train_networks[0]
    weights = session.backend.to_host(net.weights).copy()
    weights[_fc2_offset(net)] = np.nan                         # one NaN in fc2's weight matrix
    net.load_weights(weights)
    session.start_data_reading()
    with pytest.raises(NonFiniteError, match=r'iteration 1: .*first non-finite: output "fc2" of layers\[\d+\] '
                                             r'\(InnerProduct "fc2"\) \(device 0\)'):
        session.train()
    session.close()


def _fc2_offset(net):
    """Where fc2's first weight sits in the flat buffer (dense model file order: layers in order)."""
    offset = 0
    for layer in net.layers:
        if layer.name == "fc2":
            return offset
        offset += sum(int(np.prod(s)) for s in layer.weight_shapes())
    raise AssertionError("no fc2")


def test_fp16_overflow_with_the_static_scaler_names_the_gradient_and_suggests_dynamic_scaling(workdir):
    session = make_session(workdir, use_mixed_precision=True, scaler=2.0 ** 20)
    session.start_data_reading()
    with pytest.raises(NonFiniteError, match=r"iteration 1: .*first non-finite: the (input )?gradient.*"
                                             r"loss_scaling='dynamic'"):
        session.train()
    session.close()


def test_dynamic_loss_scaling_skips_overflowing_steps_and_grows_back(workdir):
    session = make_session(workdir, use_mixed_precision=True, scaler=2.0 ** 20, loss_scaling="dynamic",
                           loss_scale_growth_interval=4)
    session.start_data_reading()
    scales, losses = [], []
    for _ in range(24):
        session.train()
        scales.append(session.loss_scaler.scale)
        losses.append(session.get_current_loss())
    scaler = session.loss_scaler
    assert scaler.skipped >= 1 and min(scales) < 2.0 ** 20      # halved on overflow ...
    assert any(b == 2 * a for a, b in zip(scales, scales[1:]))  # ... and doubled after 4 good steps
    assert np.isfinite(losses[-5:]).all()
    assert np.isfinite(session.backend.to_host(session.train_networks[0].weights)).all()
    assert session.dense_optimizers[0].scaler == np.float32(scaler.scale)
    assert session.embeddings[0].scaler == scaler.scale
    session.close()


def test_fit_reports_a_step_skipped_by_dynamic_scaling_instead_of_stopping(workdir):
    """One batch whose dense value overflows fp16 makes that step's loss non-finite; dynamic scaling skips
    it, and fit shows it as skipped instead of stopping the run as diverged."""
    first = open("data/file_list.txt").read().split()[1]
    samples = read_norm_file(first, dense_dim=DENSE, slot_nums=(SLOTS,), max_feature_nums=(2 * SLOTS,), check="Sum")
    samples.dense[5 * 64 + 3, 0] = 1e30        # finite in the file, inf once cast to fp16 (batch 6)
    write_norm_file(first, samples, check="Sum", slot_nums=(SLOTS,))
    session = make_session(workdir, use_mixed_precision=True, scaler=1024, loss_scaling="dynamic")
    said = []
    result = fit(session, LearningRateScheduler(0.01), max_iter=12, display=1, eval_interval=1000,
                 print_fn=said.append)
    assert result.iterations == 12 and session.loss_scaler.skipped == 1
    assert [line for line in said if "skipped by dynamic loss scaling" in line] == [
        "iter 6: step skipped by dynamic loss scaling (loss scale now 512)"]
    assert [i for i, _ in result.losses] == [i for i in range(1, 13) if i != 6]
    assert all(np.isfinite(loss) for _, loss in result.losses)
    session.close()


def test_dynamic_scaling_without_overflow_trains_exactly_as_the_static_scaler(workdir):
    curves = []
    for mode in ("static", "dynamic"):
        session = make_session(workdir, use_mixed_precision=True, scaler=1024, loss_scaling=mode,
                               loss_scale_growth_interval=10_000)
        session.start_data_reading()
        curve = []
        for _ in range(6):
            session.train()
            curve.append(session.get_current_loss())
        curves.append(curve)
        session.close()
    assert curves[0] == curves[1]


def test_a_resumed_run_continues_with_the_saved_dynamic_loss_scale(workdir):
    """The dense optimizer's sidecar keeps the dynamic scale and its good-step count: a run resumed from a
    snapshot skips and grows exactly where the uninterrupted one does, and trains the same."""
    from hugectr_lab.session import model_file_names

    dynamic = dict(use_mixed_precision=True, scaler=2.0 ** 20, loss_scaling="dynamic", loss_scale_growth_interval=4)
    session = make_session(workdir, **dynamic)
    session.start_data_reading()
    for _ in range(10):
        session.train()
    saved = session.loss_scaler.state()
    assert saved["skipped"] >= 1 and saved["scale"] < 2.0 ** 20   # the scale moved before the save
    session.download_params_to_files("m", 10)
    names = model_file_names("m", 10, 1)
    resumed = make_session(workdir, model_file=names["dense"], dense_opt_states_file=names["dense_opt"],
                           embedding_files=names["sparse"], sparse_opt_states_file=names["sparse_opt"], **dynamic)
    assert resumed.loss_scaler.state() == saved
    assert resumed.dense_optimizers[0].scaler == np.float32(saved["scale"]) and resumed.embeddings[0].scaler == saved["scale"]
    resumed.start_data_reading()
    reader = resumed.get_data_reader_train()
    for _ in range(10):   # past the batches the first run trained, as train() reads them (docs/reliability.md)
        while reader.read_a_batch().size != 64:
            pass
    resumed.iteration = session.iteration
    curves = []
    for run in (session, resumed):
        curve = []
        for _ in range(8):
            run.train()
            curve.append((run.get_current_loss(), run.loss_scaler.scale))
        curves.append(curve)
    assert curves[0] == curves[1]
    for run in (session, resumed):
        run.close()


def test_a_malformed_saved_loss_scale_is_an_error_naming_the_file(workdir):
    import json

    from hugectr_lab.session import model_file_names

    dynamic = dict(use_mixed_precision=True, scaler=1024, loss_scaling="dynamic")
    session = make_session(workdir, **dynamic)
    session.download_params_to_files("m", 1)
    session.close()
    names = model_file_names("m", 1, 1)
    sidecar = names["dense_opt"] + ".json"
    assert json.load(open(sidecar))["loss_scale"] == {"scale": 1024.0, "good_steps": 0, "skipped": 0}
    os.remove("m_1.manifest.json")   # edited by hand: no manifest to check it against
    json.dump({"optimizer": "Adam", "step": 0, "loss_scale": {"scale": -1, "good_steps": 0, "skipped": 0}},
              open(sidecar, "w"))
    with pytest.raises(ValueError, match=r"m_opt_dense_1.model.json: \"loss_scale\": expected a finite scale"):
        make_session(workdir, dense_opt_states_file=names["dense_opt"], **dynamic)


def test_dynamic_loss_scaler_rules():
    scaler = DynamicLossScaler(8.0, growth_interval=2, min_scale=1.0)
    assert scaler.update(True) is False and scaler.update(True) is True and scaler.scale == 16.0
    assert scaler.update(False) is True and scaler.scale == 8.0 and scaler.skipped == 1
    for _ in range(3):
        scaler.update(False)
    assert scaler.scale == 1.0 and scaler.update(False) is None   # at the floor: the caller raises
    with pytest.raises(ValueError, match="growth_interval"):
        DynamicLossScaler(8.0, growth_interval=0)


def test_auc_of_non_finite_predictions_is_an_error():
    labels = np.array([0, 1, 0, 1], dtype=np.float32)
    with pytest.raises(NonFiniteError, match=r"AUC: predictions: 4 of 4 values are not finite "
                                             r"\(first: nan at index 0\)"):
        auc(np.full(4, np.nan), labels)
    with pytest.raises(NonFiniteError, match=r"AUC: predictions: 1 of 4 .*inf at index 2"):
        auc(np.array([0.1, 0.2, np.inf, 0.4]), labels)
    assert isinstance(NonFiniteError("x"), ValueError) and isinstance(NonFiniteError("x"), FloatingPointError)


@pytest.mark.gpu
def test_cupy_static_records_the_first_non_finite_step_on_the_device_and_refuses_to_save(workdir):
    session = make_session(workdir, opt=optimizer("SGD", lr=1e6), backend="cupy")
    session.start_data_reading()
    for _ in range(20):
        session.train()   # no host read of the check in the step
    with pytest.raises(NonFiniteError, match=r"iteration \d+: the training step was not finite") as caught:
        session.get_current_loss()
    assert 1 <= caught.value.iteration <= 20
    with pytest.raises(NonFiniteError):
        session.download_params_to_files("bad", 20)
    with pytest.raises(NonFiniteError):
        session.train()
    assert not any(name.startswith("bad") for name in os.listdir("."))
    session.close()
