"""The fused affine Function y = x Wᵀ + b."""

from __future__ import annotations

import numpy as np
import pytest

import gradcraft as gc
from gradcraft.ops.linear import linear
from tests.ops._cases import compare_with_torch

torch = pytest.importorskip("torch", reason="PyTorch is the reference for F.linear")


@pytest.mark.parametrize("x_shape", [(4, 3), (2, 3, 3), (3,)])
def test_linear_matches_torch(x_shape, rng):
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((5, 3))
    b = rng.standard_normal(5)
    compare_with_torch(linear, torch.nn.functional.linear, [x, w, b])
    compare_with_torch(lambda a, c: linear(a, c), lambda a, c: torch.nn.functional.linear(a, c), [x, w])


def test_linear_passes_gradcheck(rng):
    assert gc.gradcheck(
        linear, [rng.standard_normal((3, 2)), rng.standard_normal((4, 2)), rng.standard_normal(4)]
    )


def test_linear_rejects_wrong_input_width(rng):
    with pytest.raises(ValueError, match=r"Expected input with last dimension 3. Received: shape=\(2, 4\)"):
        linear(gc.tensor(rng.standard_normal((2, 4))), gc.tensor(rng.standard_normal((5, 3))))


def test_linear_skips_unneeded_gradients(rng):
    x = gc.tensor(rng.standard_normal((4, 3)))
    w = gc.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    linear(x, w).sum().backward()
    np.testing.assert_allclose(w.grad, np.ones((4, 2)).T @ x.numpy())
    assert x.grad is None
