"""The single-pass compiled updates of Adam and SGD against the NumPy rules they replace.

Every test runs the same steps with the kernels switched off and on; the NumPy rules are
themselves compared with PyTorch in ``test_parity.py``.
"""

import numpy as np
import pytest

from gradcraft import nn, optim
from gradcraft.ops import accel

pytestmark = pytest.mark.skipif(not accel.numba_available(), reason="the kernels need Numba (the 'fast' extra)")

CONFIGS = {
    "adam": lambda ps, **kw: optim.Adam(ps, lr=1e-2, **kw),
    "adam-l2-maximize": lambda ps, **kw: optim.Adam(ps, lr=1e-2, weight_decay=0.1, maximize=True, **kw),
    "adamw": lambda ps, **kw: optim.AdamW(ps, lr=1e-2, weight_decay=0.05, **kw),
    "amsgrad": lambda ps, **kw: optim.Adam(ps, lr=1e-2, amsgrad=True, weight_decay=0.01, **kw),
    "sgd-momentum": lambda ps, **kw: optim.SGD(ps, lr=0.1, momentum=0.9, **kw),
    "sgd-nesterov-l2": lambda ps, **kw: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, **kw),
    "sgd-dampening-maximize": lambda ps, **kw: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.3, maximize=True, **kw),
}
SHAPES = [(70, 30), (30,), (7, 3, 3, 2), (1,)]


@pytest.fixture
def calls(monkeypatch):
    """How often each compiled update ran (so a test cannot pass on the NumPy path twice)."""
    from gradcraft.ops.kernels import optim as kernels

    counts = {"adam": 0, "sgd_momentum": 0}
    for name in counts:
        original = getattr(kernels, name)

        def spy(*args, _original=original, _name=name):
            counts[_name] += 1
            return _original(*args)

        monkeypatch.setattr(kernels, name, spy)
    return counts


def run(config, compiled, dtype, flatten=True, steps=5, grads=None):
    rng = np.random.default_rng(0)
    params = [nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]
    opt = CONFIGS[config](params, flatten_params=flatten)
    with accel.use_numba(compiled):
        for step in range(steps):
            for i, p in enumerate(params):
                p.grad = grads[step][i] if grads else rng.standard_normal(p.data.shape).astype(dtype)
            opt.step()
    return params, opt


@pytest.mark.parametrize("flatten", [True, False], ids=["flat", "per-parameter"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_compiled_update_matches_the_numpy_rule(config, dtype, flatten, calls):
    ours, opt = run(config, True, dtype, flatten)
    reference, ref_opt = run(config, False, dtype, flatten)
    assert sum(calls.values()) == 5 * len(SHAPES)  # one pass per parameter and step
    tol = 2e-6 if dtype == np.float32 else 1e-13
    for p, q in zip(ours, reference):
        assert p.data.dtype == dtype
        np.testing.assert_allclose(p.data, q.data, rtol=tol, atol=tol)
    for p, q in zip(ours, reference):  # the moments and momentum buffers too
        for key, value in opt.state[p].items():
            if isinstance(value, np.ndarray):
                np.testing.assert_allclose(value, ref_opt.state[q][key], rtol=tol, atol=tol)


def test_compiled_update_keeps_the_parameters_views_of_the_flat_buffer(calls):
    params, _ = run("adam", True, np.float32)
    base = params[0].data.base
    assert calls["adam"] == 5 * len(SHAPES)
    assert base is not None and all(p.data.base is base for p in params)


@pytest.mark.parametrize("config", ["adam", "amsgrad", "sgd-nesterov-l2"])
def test_a_nan_gradient_reaches_the_parameter_as_with_numpy(config, calls):
    rng = np.random.default_rng(1)
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(3)]
    grads[1][0][2, 3] = np.nan
    ours, _ = run(config, True, np.float32, steps=3, grads=grads)
    reference, _ = run(config, False, np.float32, steps=3, grads=grads)
    assert sum(calls.values()) > 0
    assert np.isnan(ours[0].data[2, 3]) and np.isnan(reference[0].data[2, 3])
    for p, q in zip(ours, reference):
        np.testing.assert_array_equal(np.isnan(p.data), np.isnan(q.data))


def test_mixed_gradient_dtypes_fall_back_to_the_numpy_rule(calls):
    params = [nn.Parameter(np.ones(4, np.float32)), nn.Parameter(np.ones(3, np.float32))]
    opt = optim.Adam(params, lr=0.1)
    params[0].grad = np.ones(4, np.float64)  # cast by the NumPy rule; not a kernel signature
    params[1].grad = np.ones(3, np.float32)
    with accel.use_numba(True):
        opt.step()
    assert calls["adam"] == 0
    np.testing.assert_allclose(params[0].data, 0.9, rtol=1e-6)


def test_float16_parameters_keep_the_numpy_rule(calls):
    params = [nn.Parameter(np.ones(5, np.float16))]
    opt = optim.SGD(params, lr=0.5, momentum=0.9)
    params[0].grad = np.ones(5, np.float16)
    with accel.use_numba(True):
        opt.step()
    assert calls["sgd_momentum"] == 0
    assert params[0].data.dtype == np.float16
    np.testing.assert_array_equal(params[0].data, np.full(5, 0.5, np.float16))
