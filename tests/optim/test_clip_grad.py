"""clip_grad_norm_ / clip_grad_value_ match torch.nn.utils."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradcraft.nn import Parameter
from gradcraft.nn.utils import clip_grad_norm_, clip_grad_value_

torch = pytest.importorskip("torch", reason="parity tests need PyTorch 2.13")

SHAPES = [(4, 3), (3,), (2, 2, 2), ()]


def _pair(dtype=np.float32, scale=1.0, seed=0):
    rng = np.random.default_rng(seed)
    grads = [(rng.standard_normal(s) * scale).astype(dtype) for s in SHAPES]
    ours = [Parameter(np.zeros(s, dtype=dtype)) for s in SHAPES]
    theirs = [torch.zeros(s, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True) for s in SHAPES]
    for p, q, g in zip(ours, theirs, grads):
        p.grad = np.array(g)
        q.grad = torch.tensor(np.array(g))
    return ours, theirs


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 0.5, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, dtype):
    ours, theirs = _pair(dtype)
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    expected = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert float(total) == pytest.approx(float(expected), rel=rtol)
    assert total.dtype == dtype
    for p, q in zip(ours, theirs):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=rtol, atol=1e-7)


def test_clip_grad_norm_keeps_direction_and_ignores_missing_grads():
    ours, _ = _pair(np.float64, scale=10.0)
    ours.append(Parameter(np.zeros(5)))  # no gradient
    before = [p.grad.copy() for p in ours[:-1]]
    total = clip_grad_norm_(iter(ours), 1.0)
    assert float(total) == pytest.approx(math.sqrt(sum((g**2).sum() for g in before)))
    after = math.sqrt(sum((p.grad**2).sum() for p in ours[:-1]))
    assert after == pytest.approx(1.0, rel=1e-5)
    for p, g in zip(ours, before):
        np.testing.assert_allclose(p.grad, g * (1.0 / (float(total) + 1e-6)))
    single = Parameter(np.ones(4))
    single.grad = np.full(4, 3.0)
    assert float(clip_grad_norm_(single, 1.0)) == pytest.approx(6.0)
    assert float(clip_grad_norm_([Parameter(np.ones(2))], 1.0)) == 0.0


def test_clip_grad_norm_nonfinite():
    ours, theirs = _pair(np.float64)
    ours[0].grad[0, 0] = np.inf
    theirs[0].grad[0, 0] = math.inf
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    total = clip_grad_norm_(ours, 1.0)
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert math.isinf(float(total)) and math.isinf(float(expected))
    for p, q in zip(ours, theirs):
        np.testing.assert_array_equal(p.grad, q.grad.numpy())  # NaN where inf·0, zeros elsewhere


@pytest.mark.parametrize("clip_value", [0.0, 0.3, 5.0])
def test_clip_grad_value_matches_torch(clip_value):
    ours, theirs = _pair(np.float32, scale=2.0, seed=1)
    grads = [p.grad for p in ours]
    assert clip_grad_value_(ours, clip_value) is None
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    for p, q, g in zip(ours, theirs, grads):
        assert p.grad is g or p.grad.ndim == 0  # in place
        np.testing.assert_array_equal(p.grad, q.grad.numpy())
    with pytest.raises(ValueError, match=r"Expected clip_value >= 0\. Received: clip_value=-1"):
        clip_grad_value_(ours, -1)
