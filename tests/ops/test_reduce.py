import numpy as np
import pytest

import gradcraft as gc
from gradcraft.autograd import gradcheck
from tests.ops._cases import compare_with_torch, torch_or_none

torch = torch_or_none()
needs_torch = pytest.mark.skipif(torch is None, reason="parity tests need PyTorch (pip install torch==2.13.0)")

rng = np.random.default_rng(1)
AXES = [None, 0, 1, -1, (0, 2)]


def _torch_dims(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    return axis if isinstance(axis, tuple) else (axis,)


@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "var", "std", "logsumexp"])
def test_reduction_gradcheck(name, axis, keepdims):
    x = rng.standard_normal((3, 4, 2))
    assert gradcheck(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), [x])


@needs_torch
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "var", "std", "logsumexp"])
def test_reduction_matches_torch(name, axis, keepdims):
    x = rng.standard_normal((3, 4, 2))
    dims = _torch_dims(axis, 3)
    torch_ops = {
        "sum": lambda t: t.sum(dim=dims, keepdim=keepdims),
        "mean": lambda t: t.mean(dim=dims, keepdim=keepdims),
        "max": lambda t: t.amax(dim=dims, keepdim=keepdims),
        "min": lambda t: t.amin(dim=dims, keepdim=keepdims),
        "var": lambda t: t.var(dim=dims, keepdim=keepdims),
        "std": lambda t: t.std(dim=dims, keepdim=keepdims),
        "logsumexp": lambda t: t.logsumexp(dim=dims, keepdim=keepdims),
    }
    compare_with_torch(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), torch_ops[name], [x])


@needs_torch
def test_max_shares_gradient_among_ties_like_torch_amax():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    compare_with_torch(lambda t: t.max(axis=1), lambda t: t.amax(dim=1), [x])


def test_population_variance_with_correction_zero():
    x = rng.standard_normal((5, 3))
    np.testing.assert_allclose(gc.tensor(x).var(axis=0, correction=0).numpy(), x.var(axis=0), rtol=1e-6)
    assert gradcheck(lambda t: t.var(axis=0, correction=0), [x])


def test_logsumexp_is_stable_for_large_inputs():
    x = gc.tensor([[1000.0, 1000.0], [-1000.0, -1000.0]], dtype=np.float64)
    np.testing.assert_allclose(x.logsumexp(axis=1).numpy(), [1000 + np.log(2), -1000 + np.log(2)])


def test_axis_out_of_range_is_reported():
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        gc.ones(2, 3).sum(axis=3)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax_gradcheck(axis):
    x = rng.standard_normal((3, 5))
    assert gradcheck(lambda t: t.softmax(axis=axis), [x])
    assert gradcheck(lambda t: t.log_softmax(axis=axis), [x])


@needs_torch
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_and_log_softmax_match_torch(axis):
    x = rng.standard_normal((3, 5)) * 5
    compare_with_torch(lambda t: t.softmax(axis=axis), lambda t: t.softmax(dim=axis), [x])
    compare_with_torch(lambda t: t.log_softmax(axis=axis), lambda t: t.log_softmax(dim=axis), [x])


def test_softmax_does_not_overflow():
    y = gc.tensor([[1e4, 0.0, -1e4]]).softmax()
    np.testing.assert_allclose(y.numpy(), [[1.0, 0.0, 0.0]])
    assert np.all(np.isfinite(gc.tensor([[1e4, 0.0]]).log_softmax().numpy()))
