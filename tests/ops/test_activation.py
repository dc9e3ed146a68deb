"""Activation Functions: gradients, PyTorch parity and the float64-accurate erf."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcraft as gc
from gradcraft.ops import activation as A
from tests.ops._cases import away_from, compare_with_torch

torch = pytest.importorskip("torch", reason="PyTorch is the reference for activation parity")
tF = torch.nn.functional


def test_erf_matches_math_erf_to_float64_rounding():
    x = np.concatenate([np.linspace(-8, 8, 20001), [0.0, -0.0, 1e-300, 0.46875, 4.0, 26.6, -40.0]])
    ref = np.array([math.erf(v) for v in x])
    got = A.erf_array(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-15, atol=3e-16)


def test_erf_handles_infinities_and_nan_and_keeps_float32():
    got = A.erf_array(np.array([np.inf, -np.inf, np.nan]))
    assert got[0] == 1.0 and got[1] == -1.0 and np.isnan(got[2])
    x32 = np.linspace(-3, 3, 7, dtype=np.float32)
    assert A.erf_array(x32).dtype == np.float32


@pytest.mark.parametrize(
    ("ours", "theirs", "kinks"),
    [
        (lambda x: A.leaky_relu(x, 0.1), lambda x: tF.leaky_relu(x, 0.1), [0.0]),
        (lambda x: A.elu(x, 1.3), lambda x: tF.elu(x, 1.3), [0.0]),
        (A.selu, tF.selu, [0.0]),
        (A.gelu, tF.gelu, []),
        (lambda x: A.gelu(x, "tanh"), lambda x: tF.gelu(x, approximate="tanh"), []),
        (A.silu, tF.silu, []),
        (A.softplus, tF.softplus, []),
        (lambda x: A.softplus(x, 2.0, 5.0), lambda x: tF.softplus(x, 2.0, 5.0), [2.5]),
    ],
    ids=["leaky_relu", "elu", "selu", "gelu", "gelu_tanh", "silu", "softplus", "softplus_beta"],
)
def test_activation_matches_torch_and_passes_gradcheck(ours, theirs, kinks, rng):
    x = away_from(rng.standard_normal((4, 5)) * 3, kinks)
    compare_with_torch(ours, theirs, [x])
    assert gc.gradcheck(ours, [x[:2, :3]])


def test_swish_beta_gradient_matches_formula(rng):
    x = rng.standard_normal((3, 4))
    assert gc.gradcheck(lambda t: A.silu(t, 1.7), [x])
    y = A.silu(gc.tensor(x), 1.7).numpy()
    np.testing.assert_allclose(y, x / (1 + np.exp(-1.7 * x)), rtol=1e-12)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 5), (2, 3, 2, 2)])
def test_prelu_per_channel_matches_torch(shape, rng):
    x = away_from(rng.standard_normal(shape), [0.0])
    w = rng.random(3)
    compare_with_torch(A.prelu, tF.prelu, [x, w])
    assert gc.gradcheck(A.prelu, [x[:2], w])


def test_prelu_shared_parameter_matches_torch(rng):
    x = away_from(rng.standard_normal((3, 4, 2)), [0.0])
    compare_with_torch(A.prelu, tF.prelu, [x, np.array([0.3])])


def test_prelu_rejects_wrong_channel_count(rng):
    with pytest.raises(ValueError, match="Expected input with 4 channels"):
        A.prelu(gc.tensor(rng.standard_normal((2, 3))), gc.tensor(np.ones(4)))


def test_softplus_is_stable_for_large_inputs():
    x = gc.tensor(np.array([-1000.0, 1000.0, 0.0]), requires_grad=True)
    y = A.softplus(x, threshold=1e9)
    np.testing.assert_allclose(y.numpy(), [0.0, 1000.0, math.log(2)])
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [0.0, 1.0, 0.5])


def test_gelu_float32_stays_float32(rng):
    x = gc.tensor(rng.standard_normal((3, 3)).astype(np.float32), requires_grad=True)
    y = A.gelu(x)
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4, 4)])
def test_add_relu_matches_torch_relu_of_the_sum_and_passes_gradcheck(shape, rng):
    a = rng.standard_normal(shape)
    b = away_from(a + rng.standard_normal(shape), [0.0]) - a  # no sum a + b near the kink
    compare_with_torch(A.add_relu, lambda x, y: tF.relu(x + y), [a, b])
    assert gc.gradcheck(A.add_relu, [a, b])


def test_add_relu_passes_the_same_gradient_to_both_inputs_and_none_when_not_needed(rng):
    a = gc.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b = gc.tensor(rng.standard_normal((3, 4)))
    y = A.add_relu(a, b)
    y.sum().backward()
    np.testing.assert_array_equal(a.grad, (a.numpy() + b.numpy() > 0).astype(float))
    assert b.grad is None
    with gc.no_grad():
        np.testing.assert_array_equal(A.add_relu(a, b).numpy(), np.maximum(a.numpy() + b.numpy(), 0))


def test_add_relu_refuses_inputs_of_different_shapes(rng):
    with pytest.raises(ValueError, match=r"AddReLU: Expected a and b of the same shape. Received: \(2, 3\) and \(3,\)"):
        A.add_relu(gc.tensor(np.ones((2, 3))), gc.tensor(np.ones(3)))
