"""What the optimizers do beyond matching PyTorch: the lectures' picture on an ill-conditioned
quadratic, in-place float32 updates through flat buffers, and the update/weight ratios."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

import gradcraft as gc
import gradcraft.optim as optim
from gradcraft.nn import Parameter
from tests.optim._problem import gc_backward, gc_params, make_data

CLASSES = [
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "NAdam",
    "RAdam",
    "Rprop",
    "ASGD",
]
OPTIONS = {
    "SGD": {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "Adam": {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01, "maximize": True},
    "Rprop": {"lr": 0.01, "maximize": True},
    "RMSprop": {"lr": 0.01, "momentum": 0.5, "centered": True},
    "ASGD": {"lr": 0.05, "t0": 3.0},
}


# ---------------------------------------------------------------------------- the lectures' picture
def _quadratic_losses(make_opt, steps=100):
    """f(x, y) = ½ (x² + 50 y²): condition number 50, start far along the shallow axis."""
    p = Parameter(np.array([-8.0, 1.0]))
    h = gc.tensor(np.array([1.0, 50.0]))
    opt = make_opt([p])
    for _ in range(steps):
        opt.zero_grad()
        loss = 0.5 * (h * p * p).sum()
        loss.backward()
        opt.step()
    return 0.5 * float((np.array([1.0, 50.0]) * p.data**2).sum())


def test_momentum_and_adam_beat_plain_sgd_on_an_ill_conditioned_quadratic():
    # plain SGD must keep lr < 2/50 for the steep axis (0.039 is close to the best it can
    # do), so it crawls along the shallow one; momentum builds speed there, Adam rescales it
    sgd = _quadratic_losses(lambda ps: optim.SGD(ps, lr=0.039))
    momentum = _quadratic_losses(lambda ps: optim.SGD(ps, lr=0.02, momentum=0.9))
    nesterov = _quadratic_losses(lambda ps: optim.SGD(ps, lr=0.02, momentum=0.9, nesterov=True))
    adam = _quadratic_losses(lambda ps: optim.Adam(ps, lr=0.3))
    assert sgd > 1e-3  # still far from the minimum after 100 steps
    assert momentum < sgd / 10
    assert nesterov < momentum
    assert adam < sgd / 10


# ---------------------------------------------------------------------------- flat buffers
def _run(name, flatten, dtype=np.float32, steps=8, lr_type=float):
    data = make_data(5, dtype)
    params = gc_params(data)
    opts = dict(OPTIONS.get(name, {}))
    opt = getattr(optim, name)(params, flatten_params=flatten, **opts)
    for group in opt.param_groups:  # NumPy float64 scalars, as a schedule might write them
        group["lr"] = lr_type(group["lr"])
    for _ in range(steps):
        gc_backward(params, data)
        opt.step()
    return params, opt


@pytest.mark.parametrize("name", CLASSES)
def test_flat_and_per_parameter_updates_are_bit_identical(name):
    flat, _ = _run(name, True)
    loose, _ = _run(name, False)
    base = flat[0].data.base
    assert base is not None and all(p.data.base is base for p in flat)  # views into one buffer
    assert all(p.data.base is None for p in loose)
    for p, q in zip(flat, loose):
        assert np.array_equal(p.data, q.data)


@pytest.mark.parametrize("name", CLASSES)
def test_float32_stays_float32_even_with_numpy_float64_hyperparameters(name):
    params, opt = _run(name, True, lr_type=np.float64)
    reference, _ = _run(name, True, lr_type=float)
    for p, q in zip(params, reference):
        assert p.data.dtype == np.float32
        assert np.array_equal(p.data, q.data)  # computed in float32, not upcast and cast back
    for state in opt.state.values():
        for value in state.values():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32


def test_parameters_keep_their_arrays_after_construction_and_update_in_place():
    data = make_data(0, np.float32)
    params = gc_params(data)
    opt = optim.Adam(params, lr=0.01)
    arrays = [p.data for p in params]
    before = [a.copy() for a in arrays]
    gc_backward(params, data)
    opt.step()
    assert all(p.data is a for p, a in zip(params, arrays))
    assert all(not np.array_equal(a, b) for a, b in zip(arrays, before))


def test_rebinding_data_is_picked_up_and_a_dtype_change_rebuilds_the_buffers():
    data = make_data(0, np.float32)
    ref_params, ref_opt = gc_params(data), None
    params = gc_params(data)
    opt = optim.Adam(params, lr=0.01)
    ref_opt = optim.Adam(ref_params, lr=0.01, flatten_params=False)
    for _ in range(3):
        for ps, o in ((params, opt), (ref_params, ref_opt)):
            gc_backward(ps, data)
            o.step()
    new = np.full(params[0].shape, 0.25, dtype=np.float32)
    params[0].data = new.copy()  # e.g. a user re-initialising a layer
    ref_params[0].data = new.copy()
    for ps, o in ((params, opt), (ref_params, ref_opt)):
        gc_backward(ps, data)
        o.step()
    assert params[0].data.base is params[1].data.base  # back in the flat buffer
    for p, q in zip(params, ref_params):
        assert np.array_equal(p.data, q.data)
    for ps in (params, ref_params):  # model.double() after building the optimizer
        for p in ps:
            p.data = p.data.astype(np.float64)
    data64 = {k: v.astype(np.float64) for k, v in data.items()}
    for ps, o in ((params, opt), (ref_params, ref_opt)):
        gc_backward(ps, data64)
        o.step()
    for p, q in zip(params, ref_params):
        assert p.data.dtype == np.float64 and opt.state[p]["exp_avg"].dtype == np.float64
        assert np.array_equal(p.data, q.data)


def test_non_contiguous_parameters_are_updated_in_place_without_flattening():
    base = np.arange(12, dtype=np.float64).reshape(3, 4) / 10
    p = Parameter(base.copy())
    p.data = p.data.T  # a transposed view
    q = Parameter(base.T.copy())
    for t in (p, q):
        t.grad = np.ones((4, 3))
    optim.Adam([p], lr=0.1, flatten_params=False).step()
    optim.Adam([q], lr=0.1, flatten_params=False).step()
    assert not p.data.flags.c_contiguous
    assert np.array_equal(p.data, q.data)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "Rprop"])
def test_a_step_allocates_nothing_proportional_to_the_model(name):
    rng = np.random.default_rng(0)
    params = [
        Parameter(rng.standard_normal(s).astype(np.float32)) for s in [(300, 200), (200,), (200, 10), (10,)]
    ]
    opt = getattr(optim, name)(params, **OPTIONS.get(name, {"lr": 0.01}))
    model_bytes = sum(p.data.nbytes for p in params)
    for p in params:
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
    opt.step()  # the first step allocates the state and scratch buffers
    tracemalloc.start()
    try:
        for _ in range(3):
            opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < model_bytes / 20


# ---------------------------------------------------------------------------- update ratios
def test_update_ratios_follow_the_formula_and_use_names():
    data = make_data(0)
    params = gc_params(data)
    names = ["w1", "b1", "w2", "b2", "scale"]
    opt = optim.SGD(list(zip(names, params)), lr=0.1)
    opt.track_update_ratios()
    gc_backward(params, data)
    expected = {n: 0.1 * np.linalg.norm(p.grad) / np.linalg.norm(p.data) for n, p in zip(names, params)}
    opt.step()
    ratios = optim.update_ratios(opt)
    assert list(ratios) == names
    for n in names:
        assert ratios[n] == pytest.approx(expected[n], rel=1e-10)
    assert opt.update_ratios_step == 1


def test_update_ratios_are_tracked_every_n_steps_only():
    data = make_data(0)
    params = gc_params(data)
    opt = optim.Adam(params, lr=1e-3)
    assert optim.update_ratios(opt) == {}
    opt.track_update_ratios(every=3)
    recorded = []
    for _ in range(7):
        gc_backward(params, data)
        before = [p.data.copy() for p in params]
        opt.step()
        if opt.update_ratios_step not in recorded and opt.update_ratios_step is not None:
            recorded.append(opt.update_ratios_step)
            ratio = np.linalg.norm(params[0].data - before[0]) / np.linalg.norm(before[0])
            assert opt.update_ratios()["param0"] == pytest.approx(ratio, rel=1e-9)
    assert recorded == [3, 6]
    # names from a named_parameters() iterable; a frozen parameter's ratio is 0
    params[4].grad = None
    opt.track_update_ratios(every=1)
    gc_backward(params[:4] + [Parameter(np.zeros(()))], data)
    params[4].grad = None
    opt.step()
    ratios = optim.update_ratios(opt, [(f"p{i}", p) for i, p in enumerate(params)])
    assert ratios["p4"] == 0.0 and all(math.isfinite(v) and v > 0 for k, v in ratios.items() if k != "p4")
    opt.track_update_ratios(every=0)
    gc_backward(params, data)
    opt.step()
    assert opt.update_ratios_step == 8


def test_zero_grad_sets_none_or_zeros():
    data = make_data(0)
    params = gc_params(data)
    opt = optim.SGD(params, lr=0.1)
    gc_backward(params, data)
    grads = [p.grad for p in params]
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is g for p, g in zip(params[:4], grads))  # zeroed in place
    assert all(p.grad.shape == p.shape and not p.grad.any() for p in params)
    opt.zero_grad()
    assert all(p.grad is None for p in params)


def test_step_returns_the_closure_loss_and_repr_lists_groups():
    data = make_data(0)
    params = gc_params(data)
    opt = optim.Adam([{"params": params[:2]}, {"params": params[2:], "lr": 0.1}])

    def closure():
        return gc_backward(params, data)

    before = [p.data.copy() for p in params]
    expected = closure()  # the loss at the current weights
    assert opt.step(closure) == expected
    assert not np.array_equal(params[0].data, before[0])
    text = repr(opt)
    assert text.startswith("Adam (") and "Parameter Group 1" in text and "lr: 0.1" in text


def test_mixed_dtypes_and_edited_groups_still_update_like_per_parameter_mode():
    data = make_data(6)
    runs = []
    for flatten in (True, False):
        params = gc_params(data)
        params[1].data = params[1].data.astype(np.float32)  # one float32 vector among float64
        opt = optim.Adam(params[:3], lr=0.01, flatten_params=flatten)
        for step in range(6):
            if step == 3:  # a parameter joins the group mid-run (e.g. an unfrozen layer)
                opt.param_groups[0]["params"].append(params[3])
            gc_backward(params, data)
            params[1].grad = params[1].grad.astype(np.float32)
            opt.step()
        runs.append(params)
    for p, q in zip(*runs):
        assert p.data.dtype == q.data.dtype
        assert np.array_equal(p.data, q.data)
    assert runs[0][1].data.dtype == np.float32


def test_lecture_velocity_form_keeps_old_rates_in_the_velocity_when_lr_changes():
    data = make_data(7)
    lecture, pytorch = gc_params(data), gc_params(data)
    ref_x = [d.copy() for d in (data[n] for n in ("w1", "b1", "w2", "b2", "scale"))]
    ref_v = [np.zeros_like(x) for x in ref_x]
    a = optim.SGD(lecture, lr=0.05, momentum=0.9, momentum_form="lecture")
    b = optim.SGD(pytorch, lr=0.05, momentum=0.9)
    for step in range(10):
        lr = 0.05 if step < 5 else 0.01  # a step decay halfway
        for opt in (a, b):
            opt.param_groups[0]["lr"] = lr
        gc_backward(lecture, data)
        grads = [np.array(p.grad) for p in lecture]
        gc_backward(pytorch, data)
        a.step()
        b.step()
        for i, g in enumerate(grads):  # cs231n: v = mu * v - learning_rate * dx; x += v
            ref_v[i] = 0.9 * ref_v[i] - lr * g
            ref_x[i] = ref_x[i] + ref_v[i]
    for p, x in zip(lecture, ref_x):
        np.testing.assert_allclose(p.data, x, rtol=1e-12, atol=1e-14)
    assert not np.allclose(lecture[0].data, pytorch[0].data, rtol=1e-6, atol=0)
