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


# ----------------------------------------------------------------------------- linear + ReLU
@pytest.mark.parametrize("x_shape", [(6, 5), (2, 3, 5), (40, 5)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_relu_matches_torch(x_shape, with_bias, rng):
    from gradcraft.ops.linear import linear_relu

    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((130, 5))  # 130 outputs: the small-batch swapped product too
    b = rng.standard_normal(130)
    f = torch.nn.functional
    if with_bias:
        compare_with_torch(linear_relu, lambda a, c, d: f.relu(f.linear(a, c, d)), [x, w, b], atol=1e-10, rtol=1e-10)
    else:
        compare_with_torch(lambda a, c: linear_relu(a, c), lambda a, c: f.relu(f.linear(a, c)), [x, w], atol=1e-10, rtol=1e-10)


def test_linear_relu_passes_gradcheck(rng):
    from gradcraft.ops.linear import linear_relu

    x, w = 0.3 * rng.standard_normal((4, 3)), 0.3 * rng.standard_normal((6, 3))
    b = np.array([3.0, -3.0] * 3)  # pre-activations far from the kink, half of the units off
    assert np.abs(x @ w.T + b).min() > 1
    assert gc.gradcheck(linear_relu, [x, w, b])


@pytest.mark.parametrize("numba", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 7), (64, 130), (2, 9, 33)])
def test_linear_relu_is_bit_identical_to_relu_of_linear(numba, dtype, shape, rng):
    from gradcraft.ops import accel
    from gradcraft.ops.activation import relu
    from gradcraft.ops.linear import linear_relu

    if numba and not accel.numba_available():
        pytest.skip("the compiled path needs Numba (the 'fast' extra)")
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((shape[-1] + 3, shape[-1])).astype(dtype)
    b = rng.standard_normal(shape[-1] + 3).astype(dtype)
    x.reshape(-1, shape[-1])[0, 0] = np.nan  # NaN pre-activations stay NaN, with NaN gradients
    g = rng.standard_normal((*shape[:-1], shape[-1] + 3)).astype(dtype)
    results = []
    with accel.use_numba(numba):
        for fused in (True, False):
            tx, tw, tb = (gc.tensor(a, requires_grad=True) for a in (x, w, b))
            y = linear_relu(tx, tw, tb) if fused else relu(linear(tx, tw, tb))
            (y * gc.tensor(g)).sum().backward()
            results.append([y.numpy(), tx.grad, tw.grad, tb.grad])
    for ours, ref in zip(*results):
        np.testing.assert_array_equal(ours, ref)
    assert np.isnan(results[0][0].reshape(-1, shape[-1] + 3)[0]).all()
    assert results[0][0].dtype == dtype


def test_linear_relu_keeps_its_output_not_a_mask(rng):
    from gradcraft.ops.linear import LinearReLU, linear_relu

    x = gc.tensor(rng.standard_normal((8, 4)).astype(np.float32))
    w = gc.tensor(rng.standard_normal((6, 4)).astype(np.float32), requires_grad=True)
    y = linear_relu(x, w)
    assert isinstance(y.grad_fn, LinearReLU)
    assert y.grad_fn.saved[2] is y.data  # the output itself: the next layer keeps it anyway
    assert len(y.grad_fn.saved) == 3
    np.testing.assert_array_equal(y.numpy(), np.maximum(x.numpy() @ w.numpy().T, 0))
    with gc.no_grad():
        assert linear_relu(x, w).grad_fn is None


def test_linear_relu_with_a_bias_of_another_dtype_takes_the_numpy_path(rng):
    from gradcraft.ops.activation import relu
    from gradcraft.ops.linear import linear_relu

    x, w = (gc.tensor(rng.standard_normal(s).astype(np.float32)) for s in ((5, 4), (3, 4)))
    b = gc.tensor(rng.standard_normal(3))  # float64
    np.testing.assert_array_equal(linear_relu(x, w, b).numpy(), relu(linear(x, w, b)).numpy())


def test_linear_relu_rejects_wrong_shapes(rng):
    from gradcraft.ops.linear import linear_relu

    with pytest.raises(ValueError, match=r"LinearReLU: Expected input with last dimension 3"):
        linear_relu(gc.tensor(rng.standard_normal((2, 4))), gc.tensor(rng.standard_normal((5, 3))))
    with pytest.raises(ValueError, match=r"Expected bias of shape \(5,\)"):
        linear_relu(*(gc.tensor(rng.standard_normal(s)) for s in ((2, 3), (5, 3), (4,))))
