"""Every optimizer follows torch.optim's parameter trajectory (float64, 100 steps, 1e-6)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import gradcraft.optim as optim
from tests.optim._problem import (
    NAMES,
    gc_backward,
    gc_batched_backward,
    gc_params,
    make_data,
    torch_backward,
    torch_batched_backward,
    torch_params,
)

torch = pytest.importorskip("torch", reason="parity tests need PyTorch 2.13")

STEPS = 100


@pytest.fixture(autouse=True)
def _torch_float64():
    previous, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)  # ASGD's eta and NAdam's mu_product follow it
    torch.set_num_threads(1)  # tiny tensors: threads only add contention
    yield
    torch.set_default_dtype(previous)
    torch.set_num_threads(threads)


def _grid(**axes):
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*axes.values())]


def _sgd_configs():
    out = []
    for c in _grid(
        momentum=[0.0, 0.9],
        dampening=[0.0, 0.3],
        nesterov=[False, True],
        weight_decay=[0.0, 0.01],
        maximize=[False, True],
    ):
        if c["momentum"] == 0 and (c["dampening"] or c["nesterov"]):
            continue
        if c["nesterov"] and c["dampening"]:
            continue
        out.append({"lr": 0.05, **c})
    return out


CONFIGS = (
    [("SGD", c) for c in _sgd_configs()]
    + [
        ("Adam", {"lr": 0.01, **c})
        for c in _grid(amsgrad=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True])
    ]
    + [
        ("Adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True, "amsgrad": a})
        for a in (False, True)
    ]
    + [
        ("AdamW", {"lr": 0.01, **c})
        for c in _grid(amsgrad=[False, True], weight_decay=[0.0, 0.1], maximize=[False, True])
    ]
    + [
        ("RMSprop", {"lr": 0.005, **c})
        for c in _grid(
            centered=[False, True], momentum=[0.0, 0.5], weight_decay=[0.0, 0.1], maximize=[False, True]
        )
    ]
    + [
        ("Adagrad", {"lr": 0.05, **c, **h})
        for c in _grid(weight_decay=[0.0, 0.1], maximize=[False, True])
        for h in (
            {"lr_decay": 0.0, "initial_accumulator_value": 0.0},
            {"lr_decay": 0.01, "initial_accumulator_value": 0.1},
        )
    ]
    + [
        ("Adadelta", {"lr": 1.0, **c})
        for c in _grid(rho=[0.9, 0.5], weight_decay=[0.0, 0.1], maximize=[False, True])
    ]
    + [("Adamax", {"lr": 0.01, **c}) for c in _grid(weight_decay=[0.0, 0.1], maximize=[False, True])]
    + [
        ("NAdam", {"lr": 0.01, **c})
        for c in _grid(weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True], maximize=[False, True])
        if c["weight_decay"] or not c["decoupled_weight_decay"]
    ]
    + [("NAdam", {"lr": 0.01, "momentum_decay": 0.1, "weight_decay": 0.1})]
    + [
        ("RAdam", {"lr": 0.01, **c})
        for c in _grid(weight_decay=[0.0, 0.1], decoupled_weight_decay=[False, True], maximize=[False, True])
        if c["weight_decay"] or not c["decoupled_weight_decay"]
    ]
    + [
        ("Rprop", {"lr": 0.01, **c, **h})
        for c in _grid(maximize=[False, True])
        for h in (
            {"etas": (0.5, 1.2), "step_sizes": (1e-6, 50)},
            {"etas": (0.3, 1.5), "step_sizes": (1e-3, 0.05)},
        )
    ]
    + [
        ("ASGD", {"lr": 0.05, **c, **h})
        for c in _grid(weight_decay=[0.0, 0.1], maximize=[False, True])
        for h in ({"t0": 1e6, "lambd": 1e-4}, {"t0": 10.0, "lambd": 0.01})
    ]
)


def _id(cfg):
    return ",".join(f"{k}={v}" for k, v in cfg.items() if k != "lr")


BY_CLASS: dict[str, list[dict]] = {}
for _name, _cfg in CONFIGS:
    BY_CLASS.setdefault(_name, []).append(_cfg)


def _run_both(name, cfg, steps=STEPS, groups=None, drop=None):
    data = make_data(0)
    gp, tp = gc_params(data), torch_params(torch, data)
    if groups is None:
        ours = getattr(optim, name)(gp, **cfg)
        theirs = getattr(torch.optim, name)(tp, **cfg)
    else:
        ours = getattr(optim, name)(
            [{"params": [gp[i] for i in idx], **extra} for idx, extra in groups], **cfg
        )
        theirs = getattr(torch.optim, name)(
            [{"params": [tp[i] for i in idx], **extra} for idx, extra in groups], **cfg
        )
    for step in range(steps):
        gc_backward(gp, data)
        torch_backward(torch, tp, data)
        if drop is not None:
            for i in drop(step):  # parameters without a gradient this step are skipped
                gp[i].grad = None
                tp[i].grad = None
        ours.step()
        theirs.step()
    return gp, tp, ours, theirs


def _assert_same(gp, tp, tol=1e-6, what=""):
    for name, p, q in zip(NAMES, gp, tp):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=tol, atol=tol, err_msg=f"{what} {name}")


@pytest.mark.parametrize("name", list(BY_CLASS))
def test_trajectory_matches_torch_for_every_option_combination(name):
    """All option combinations of one optimizer run side by side (one batched backward per
    step serves them all); a ``maximize`` run ascends the negated loss, so it stays bounded."""
    configs = BY_CLASS[name]
    data = make_data(0)
    ours_p = [gc_params(data) for _ in configs]
    theirs_p = [torch_params(torch, data) for _ in configs]
    ours = [getattr(optim, name)(p, **cfg) for p, cfg in zip(ours_p, configs)]
    theirs = [getattr(torch.optim, name)(p, **cfg) for p, cfg in zip(theirs_p, configs)]
    signs = [-1.0 if cfg.get("maximize") else 1.0 for cfg in configs]
    for _ in range(STEPS):
        gc_batched_backward(ours_p, data, signs)
        torch_batched_backward(torch, theirs_p, data, signs)
        for opt in ours + theirs:
            opt.step()
    for cfg, gp, tp in zip(configs, ours_p, theirs_p):
        _assert_same(gp, tp, what=f"{name}({_id(cfg)})")
        assert all(np.isfinite(p.data).all() for p in gp)


@pytest.mark.parametrize(
    "name, cfg",
    [
        ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
        ("Adam", {"lr": 0.01, "amsgrad": True}),
        ("RMSprop", {"lr": 0.005, "momentum": 0.5, "centered": True}),
        ("ASGD", {"lr": 0.05, "t0": 10.0}),
    ],
)
def test_parameter_groups_match_torch(name, cfg):
    groups = [([0, 2], {"lr": cfg["lr"] * 0.5, "weight_decay": 0.1}), ([1, 3, 4], {})]
    gp, tp, ours, theirs = _run_both(name, cfg, groups=groups)
    _assert_same(gp, tp)
    assert [g["lr"] for g in ours.param_groups] == [g["lr"] for g in theirs.param_groups]


@pytest.mark.parametrize(
    "name, cfg",
    [
        ("SGD", {"lr": 0.05, "momentum": 0.9}),
        ("Adam", {"lr": 0.01}),
        ("Rprop", {"lr": 0.01}),
        ("NAdam", {"lr": 0.01}),
    ],
)
def test_parameters_without_grad_are_skipped_like_torch(name, cfg):
    # parameter 1 has no gradient on odd steps, parameter 4 on steps 10-19: their state lags
    def drop(step):
        return ([1] if step % 2 else []) + ([4] if 10 <= step < 20 else [])

    gp, tp, ours, theirs = _run_both(name, cfg, drop=drop)
    _assert_same(gp, tp)
    if "step" in theirs.state[tp[1]]:
        assert ours.state[gp[1]]["step"] == int(theirs.state[tp[1]]["step"]) == STEPS // 2


def test_sgd_lecture_form_equals_pytorch_form_at_constant_lr():
    for nesterov in (False, True):
        cfg = {"lr": 0.05, "momentum": 0.9, "nesterov": nesterov, "weight_decay": 0.01}
        data = make_data(0)
        gp, tp = gc_params(data), torch_params(torch, data)
        ours = optim.SGD(gp, momentum_form="lecture", **cfg)
        theirs = torch.optim.SGD(tp, **cfg)
        for _ in range(STEPS):
            gc_backward(gp, data)
            torch_backward(torch, tp, data)
            ours.step()
            theirs.step()
        _assert_same(gp, tp)
        buf = theirs.state[tp[0]]["momentum_buffer"].numpy()
        np.testing.assert_allclose(ours.state[gp[0]]["velocity"], -cfg["lr"] * buf, rtol=1e-6, atol=1e-9)
