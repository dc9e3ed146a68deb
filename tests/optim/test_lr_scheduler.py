"""Every schedule gives torch.optim.lr_scheduler's learning rates for 200 steps; state_dict
round trips through JSON and resumes exactly."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

import gradcraft.optim as optim
from gradcraft.nn import Parameter
from gradcraft.optim import lr_scheduler as gls

torch = pytest.importorskip("torch", reason="parity tests need PyTorch 2.13")
tls = torch.optim.lr_scheduler

STEPS = 200


def _optimizers(kind="SGD"):
    """Two parameter groups with different learning rates, in both frameworks."""
    ours_params = [Parameter(np.zeros(2)), Parameter(np.zeros(3))]
    theirs_params = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    kwargs = {"momentum": 0.9} if kind == "SGD" else {}
    ours = getattr(optim, kind)(
        [{"params": [ours_params[0]]}, {"params": [ours_params[1]], "lr": 0.05}], lr=0.1, **kwargs
    )
    theirs = getattr(torch.optim, kind)(
        [{"params": [theirs_params[0]]}, {"params": [theirs_params[1]], "lr": 0.05}], lr=0.1, **kwargs
    )
    return ours, theirs


def _lambda(e):
    return 0.97**e


SCHEDULES = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[10, 50, 50, 120], gamma=0.3),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.98),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=30, eta_min=1e-3),
    "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(
        o, T_0=10, T_mult=2, eta_min=1e-3
    ),
    "CosineAnnealingWarmRestarts-Tmult1": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=13),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=20),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=40),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=150, power=2.0),
    "LambdaLR": lambda m, o: m.LambdaLR(o, lr_lambda=_lambda),
    "LambdaLR-per-group": lambda m, o: m.LambdaLR(o, lr_lambda=[_lambda, lambda e: 1 / (1 + e)]),
    "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, lr_lambda=lambda e: 0.99),
    "OneCycleLR": lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=STEPS + 1),
    "OneCycleLR-linear-3phase": lambda m, o: m.OneCycleLR(
        o,
        max_lr=0.4,
        epochs=10,
        steps_per_epoch=21,
        anneal_strategy="linear",
        three_phase=True,
        pct_start=0.25,
    ),
    "SequentialLR": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.01, total_iters=20), m.ExponentialLR(o, gamma=0.97)], milestones=[20]
    ),
    "SequentialLR-3": lambda m, o: m.SequentialLR(
        o,
        [m.ConstantLR(o, factor=0.1, total_iters=10), m.CosineAnnealingLR(o, T_max=40), m.StepLR(o, 15, 0.5)],
        milestones=[10, 90],
    ),
    "ChainedScheduler": lambda m, o: m.ChainedScheduler(
        [
            m.LinearLR(o, start_factor=0.2, total_iters=10),
            m.ExponentialLR(o, gamma=0.99),
            m.StepLR(o, 30, 0.5),
        ]
    ),
}


def _close(a, b):
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15) for x, y in zip(a, b))


def _momentum(group):
    return group["betas"][0] if "betas" in group else group["momentum"]


@pytest.mark.parametrize("name", list(SCHEDULES))
@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_learning_rates_match_torch(name, kind):
    ours_opt, theirs_opt = _optimizers(kind)
    ours = SCHEDULES[name](gls, ours_opt)
    theirs = SCHEDULES[name](tls, theirs_opt)
    assert _close(ours.get_last_lr(), theirs.get_last_lr())
    ours_opt.step()  # the optimizer steps first (else both warn); without gradients it is a no-op
    theirs_opt.step()
    for step in range(STEPS):
        ours.step()
        theirs.step()
        assert _close(ours.get_last_lr(), theirs.get_last_lr()), step
        for g, h in zip(ours_opt.param_groups, theirs_opt.param_groups):
            assert _close([g["lr"], _momentum(g)], [h["lr"], _momentum(h)]), step


def test_cosine_warm_restarts_with_fractional_epochs_matches_torch():
    ours_opt, theirs_opt = _optimizers()
    ours = gls.CosineAnnealingWarmRestarts(ours_opt, T_0=3, T_mult=2, eta_min=1e-4)
    theirs = tls.CosineAnnealingWarmRestarts(theirs_opt, T_0=3, T_mult=2, eta_min=1e-4)
    iters = 7
    ours_opt.step()
    theirs_opt.step()
    for epoch in range(20):
        for i in range(iters):
            ours.step(epoch + i / iters)
            theirs.step(epoch + i / iters)
            assert _close(ours.get_last_lr(), theirs.get_last_lr())
    with pytest.raises(ValueError, match="non-negative epoch"):
        ours.step(-1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "min", "factor": 0.5, "patience": 3, "cooldown": 2, "min_lr": 1e-3},
        {"mode": "min", "factor": 0.3, "patience": 0, "threshold": 0.05, "threshold_mode": "abs"},
        {"mode": "max", "factor": 0.1, "patience": 5, "min_lr": [1e-4, 1e-5]},
        {
            "mode": "max",
            "factor": 0.7,
            "patience": 2,
            "threshold": 0.2,
            "threshold_mode": "abs",
            "cooldown": 4,
        },
    ],
)
def test_reduce_on_plateau_matches_torch(kwargs):
    rng = np.random.default_rng(0)
    metrics = np.concatenate([np.linspace(2.0, 0.5, 60), 0.5 + 0.05 * rng.standard_normal(140)])
    if kwargs["mode"] == "max":
        metrics = -metrics
    ours_opt, theirs_opt = _optimizers()
    ours = gls.ReduceLROnPlateau(ours_opt, **kwargs)
    theirs = tls.ReduceLROnPlateau(theirs_opt, **kwargs)
    reductions = 0
    for m in metrics:
        before = ours.get_last_lr()
        ours.step(float(m))
        theirs.step(float(m))
        assert ours.get_last_lr() == theirs.get_last_lr()
        assert ours.num_bad_epochs == theirs.num_bad_epochs and ours.best == theirs.best
        reductions += ours.get_last_lr() != before
    assert reductions >= 2


def test_inverse_time_decay_follows_its_formula_and_chains():
    ours_opt, _ = _optimizers()
    sched = gls.InverseTimeLR(ours_opt, decay_rate=0.05)
    for t in range(1, STEPS + 1):
        ours_opt.step()
        sched.step()
        assert sched.get_last_lr() == pytest.approx([0.1 / (1 + 0.05 * t), 0.05 / (1 + 0.05 * t)], rel=1e-12)
    opt, _ = _optimizers()
    chained = gls.ChainedScheduler(
        [gls.LinearLR(opt, start_factor=0.1, total_iters=10), gls.InverseTimeLR(opt, 0.1)]
    )
    for t in range(1, 50):
        opt.step()
        chained.step()
        warm = 0.1 + 0.9 * min(t, 10) / 10
        assert chained.get_last_lr()[0] == pytest.approx(0.1 * warm / (1 + 0.1 * t), rel=1e-12)


def test_linear_scaling_rule():
    assert gls.linear_scaling_rule(0.1, 1024) == pytest.approx(0.4)
    assert gls.linear_scaling_rule(0.1, 32, base_batch_size=32) == 0.1
    assert gls.linear_scaling_rule(3e-4, 64, 256) == pytest.approx(3e-4 * 64 / 256)
    with pytest.raises(ValueError, match=r"Expected a positive integer batch_size\. Received: batch_size=0"):
        gls.linear_scaling_rule(0.1, 0)
    with pytest.raises(ValueError, match="Expected base_lr >= 0"):
        gls.linear_scaling_rule(-0.1, 64)


@pytest.mark.parametrize("name", [n for n in SCHEDULES if "Lambda" not in n and "Multiplicative" not in n])
def test_state_dict_round_trips_through_json_and_resumes_exactly(name):
    opt, _ = _optimizers("Adam")
    sched = SCHEDULES[name](gls, opt)
    for _ in range(70):
        opt.step()
        sched.step()
    opt_state = opt.state_dict()
    sched_state = json.loads(json.dumps(sched.state_dict(), allow_nan=False))
    straight = []
    for _ in range(60):
        opt.step()
        sched.step()
        straight.append(sched.get_last_lr())
    opt2, _ = _optimizers("Adam")
    sched2 = SCHEDULES[name](gls, opt2)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    resumed = []
    for _ in range(60):
        opt2.step()
        sched2.step()
        resumed.append(sched2.get_last_lr())
    assert resumed == straight


def test_lambda_is_not_saved_but_counters_are():
    opt, _ = _optimizers()
    sched = gls.LambdaLR(opt, _lambda)
    for _ in range(5):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert "lr_lambdas" not in state and state["last_epoch"] == 5
    json.dumps(state)
    opt2, _ = _optimizers()
    sched2 = gls.LambdaLR(opt2, _lambda)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    assert sched2.get_last_lr() == pytest.approx([0.1 * 0.97**6, 0.05 * 0.97**6])


def test_reduce_on_plateau_state_is_strict_json():
    opt, _ = _optimizers()
    sched = gls.ReduceLROnPlateau(opt, patience=1)
    text = json.dumps(sched.state_dict(), allow_nan=False)  # best = inf before any metric
    sched2 = gls.ReduceLROnPlateau(opt, patience=1)
    sched2.load_state_dict(json.loads(text))
    assert sched2.best == math.inf
    for m in (1.0, 1.0, 1.0):
        sched2.step(m)
    assert sched2.get_last_lr() == pytest.approx([0.01, 0.005])


def test_stepping_the_schedule_before_the_optimizer_warns():
    opt, _ = _optimizers()
    sched = gls.StepLR(opt, 2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()
    opt2, _ = _optimizers()
    sched2 = gls.StepLR(opt2, 2)
    opt2.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched2.step()


def test_schedule_arguments_are_validated():
    opt, _ = _optimizers()
    with pytest.raises(ValueError, match=r"Expected a positive integer step_size\. Received: step_size=0"):
        gls.StepLR(opt, 0)
    with pytest.raises(ValueError, match="Expected 0 < start_factor <= 1"):
        gls.LinearLR(opt, start_factor=0.0)
    with pytest.raises(ValueError, match="Expected factor < 1"):
        gls.ReduceLROnPlateau(opt, factor=1.5)
    with pytest.raises(ValueError, match="Expected mode 'min' or 'max'"):
        gls.ReduceLROnPlateau(opt, mode="up")
    with pytest.raises(ValueError, match="Expected an integer T_mult >= 1"):
        gls.CosineAnnealingWarmRestarts(opt, T_0=5, T_mult=0)
    with pytest.raises(ValueError, match="Expected total_steps, or epochs and steps_per_epoch"):
        gls.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="milestones"):
        gls.SequentialLR(opt, [gls.StepLR(opt, 2), gls.StepLR(opt, 3)], milestones=[])
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        gls.ChainedScheduler([gls.StepLR(opt, 2), gls.ReduceLROnPlateau(opt)])
    with pytest.raises(TypeError, match="Expected an Optimizer"):
        gls.StepLR(object(), 2)
    cycle = gls.OneCycleLR(opt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        opt.step()
        cycle.step()
    with pytest.raises(ValueError, match="Expected at most total_steps=3"):
        cycle.step()
