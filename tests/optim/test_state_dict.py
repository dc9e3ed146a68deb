"""Saving an optimizer (and its schedule) mid-run and resuming equals running straight
through, bit for bit — also through JSON + npz, and through a safetensors checkpoint."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import gradcraft.optim as optim
from gradcraft.optim import lr_scheduler
from tests.optim._problem import gc_backward, gc_params, make_data

CASES = [
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "momentum_form": "lecture"}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.005, "momentum": 0.5, "centered": True}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("Adadelta", {"lr": 1.0}),
    ("Adamax", {"lr": 0.01}),
    ("NAdam", {"lr": 0.01, "weight_decay": 0.01, "decoupled_weight_decay": True}),
    ("RAdam", {"lr": 0.01}),
    ("Rprop", {"lr": 0.01}),
    ("ASGD", {"lr": 0.05, "t0": 5.0}),
]

STEPS = 12


def _json_npz_round_trip(state):
    """What a checkpoint does: arrays to a file (npz here), everything else to JSON text."""
    tree, arrays = optim.to_json_and_arrays(state)
    text = json.dumps(tree, allow_nan=False)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as npz:
        return optim.from_json_and_arrays(json.loads(text), {k: npz[k] for k in npz.files})


def _build(name, cfg, data, weights=None, with_schedule=True):
    params = gc_params(data)
    if weights is not None:
        for p, w in zip(params, weights):
            p.data[...] = w
    groups = [{"params": params[:2], "lr": cfg["lr"] * 0.5}, {"params": params[2:]}]
    opt = getattr(optim, name)(groups, **cfg)
    sched = None
    if with_schedule:
        warmup = lr_scheduler.LinearLR(opt, start_factor=0.2, total_iters=5)
        decay = lr_scheduler.CosineAnnealingLR(opt, T_max=20, eta_min=1e-4)
        sched = lr_scheduler.SequentialLR(opt, [warmup, decay], milestones=[5])
    return params, opt, sched


def _train(params, opt, sched, data, steps):
    for _ in range(steps):
        gc_backward(params, data)
        opt.step()
        if sched is not None:
            sched.step()


@pytest.mark.parametrize("name, cfg", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resume_mid_run_equals_straight_run_bit_for_bit(name, cfg, dtype):
    data = make_data(3, dtype)
    params, opt, sched = _build(name, cfg, data)
    _train(params, opt, sched, data, STEPS)
    weights = [p.data.copy() for p in params]
    opt_state = _json_npz_round_trip(opt.state_dict())
    sched_state = json.loads(json.dumps(sched.state_dict(), allow_nan=False))
    _train(params, opt, sched, data, STEPS)  # straight through

    params2, opt2, sched2 = _build(name, cfg, data, weights)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    _train(params2, opt2, sched2, data, STEPS)  # resumed
    for p, q in zip(params, params2):
        assert p.data.dtype == q.data.dtype == dtype
        assert np.array_equal(p.data, q.data)
    assert sched.get_last_lr() == sched2.get_last_lr()
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in opt2.param_groups]


def test_state_dict_is_a_snapshot_with_pytorch_layout():
    data = make_data(0)
    params = gc_params(data)
    opt = optim.Adam(params, lr=0.01, amsgrad=True)
    gc_backward(params, data)
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sd["param_groups"][0]["params"] == [0, 1, 2, 3, 4]
    assert sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][0]["step"] == 1 and isinstance(sd["state"][0]["step"], int)
    before = sd["state"][0]["exp_avg"].copy()
    gc_backward(params, data)
    opt.step()
    assert np.array_equal(sd["state"][0]["exp_avg"], before)  # later steps do not change it


def test_load_state_dict_casts_to_the_parameter_dtype_and_checks_sizes():
    data = make_data(0)
    params = gc_params(data)
    opt = optim.Adam(params)
    gc_backward(params, data)
    opt.step()
    sd = opt.state_dict()
    params32 = gc_params(make_data(0, np.float32))
    opt32 = optim.Adam(params32)
    opt32.load_state_dict(sd)
    assert opt32.state[params32[0]]["exp_avg"].dtype == np.float32
    with pytest.raises(ValueError, match="Expected 2 parameters in param_groups\\[0\\]"):
        optim.Adam(params32[:2]).load_state_dict(sd)
    with pytest.raises(ValueError, match="Expected 2 parameter groups"):
        optim.Adam([{"params": params32[:2]}, {"params": params32[2:]}]).load_state_dict(sd)


def test_checkpoint_with_safetensors_and_json(tmp_path):
    pytest.importorskip("safetensors")
    checkpoint = pytest.importorskip("gradcraft.io.checkpoint")
    data = make_data(4, np.float32)
    params, opt, sched = _build("Adam", {"lr": 0.01}, data)
    _train(params, opt, sched, data, STEPS)
    weights = [p.data.copy() for p in params]
    tree, arrays = optim.to_json_and_arrays(opt.state_dict(), prefix="optimizer")
    checkpoint.save_checkpoint(
        tmp_path / "last", arrays, {"optimizer": tree, "scheduler": sched.state_dict()}
    )
    _train(params, opt, sched, data, STEPS)

    loaded = checkpoint.load_checkpoint(tmp_path / "last")
    params2, opt2, sched2 = _build("Adam", {"lr": 0.01}, data, weights)
    opt2.load_state_dict(optim.from_json_and_arrays(loaded.meta["optimizer"], loaded.arrays))
    sched2.load_state_dict(loaded.meta["scheduler"])
    _train(params2, opt2, sched2, data, STEPS)
    for p, q in zip(params, params2):
        assert np.array_equal(p.data, q.data)
