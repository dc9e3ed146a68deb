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


@pytest.mark.parametrize("rows", [1, 8, 32, 33])
def test_small_batches_take_the_swapped_product_with_the_same_result(rows, rng):
    """Up to SMALL_BATCH_ROWS rows x Wᵀ is computed as (W xᵀ)ᵀ; values, layout and gradients
    are those of the plain product."""
    from gradcraft.ops import linear as linear_module

    assert linear_module.SMALL_BATCH_ROWS == 32 and linear_module.WIDE_OUTPUT == 128
    x = rng.standard_normal((rows, 40))
    w = rng.standard_normal((128, 40))
    b = rng.standard_normal(128)
    compare_with_torch(linear, torch.nn.functional.linear, [x, w, b], atol=1e-10, rtol=1e-10)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    y = linear(gc.tensor(x32), gc.tensor(w32)).numpy()
    assert y.flags.c_contiguous and y.dtype == np.float32
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-5, atol=1e-5)


def test_small_batch_path_keeps_batch_shape(rng):
    x = rng.standard_normal((2, 3, 40)).astype(np.float32)
    w = rng.standard_normal((128, 40)).astype(np.float32)
    y = linear(gc.tensor(x), gc.tensor(w)).numpy()
    assert y.shape == (2, 3, 128) and y.flags.c_contiguous
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-5, atol=1e-5)
