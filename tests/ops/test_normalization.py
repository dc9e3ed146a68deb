"""Fused batch-norm and layer-norm Functions: gradients, formulas and PyTorch parity."""

from __future__ import annotations

import numpy as np
import pytest

import gradcraft as gc
from gradcraft.ops.normalization import batch_norm, layer_norm
from tests.ops._cases import compare_with_torch

torch = pytest.importorskip("torch", reason="PyTorch is the reference for normalization")
tF = torch.nn.functional


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 2), (3, 3, 2, 2)])
def test_batch_norm_training_matches_torch(shape, rng):
    x = rng.standard_normal(shape) * 2 + 1
    w = rng.random(3) + 0.5
    b = rng.standard_normal(3)
    compare_with_torch(
        lambda a, c, d: batch_norm(a, None, None, c, d, training=True),
        lambda a, c, d: tF.batch_norm(a, None, None, c, d, training=True),
        [x, w, b],
    )


def test_batch_norm_training_passes_gradcheck(rng):
    args = [rng.standard_normal((4, 3, 2)), rng.random(3) + 0.5, rng.standard_normal(3)]
    assert gc.gradcheck(lambda a, c, d: batch_norm(a, None, None, c, d, training=True), args)
    assert gc.gradcheck(lambda a: batch_norm(a, None, None, training=True), args[:1])


def test_batch_norm_eval_uses_running_stats_and_passes_gradcheck(rng):
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    x, w, b = rng.standard_normal((4, 3)), rng.random(3) + 0.5, rng.standard_normal(3)
    y = batch_norm(gc.tensor(x), rm, rv, gc.tensor(w), gc.tensor(b), training=False).numpy()
    np.testing.assert_allclose(y, (x - rm) / np.sqrt(rv + 1e-5) * w + b, rtol=1e-12)
    assert gc.gradcheck(lambda a, c, d: batch_norm(a, rm, rv, c, d, training=False), [x, w, b])


def test_batch_norm_updates_running_stats_with_unbiased_variance(rng):
    x = rng.standard_normal((6, 2, 3))
    rm, rv = np.zeros(2), np.ones(2)
    batch_norm(gc.tensor(x), rm, rv, training=True, momentum=0.25)
    mean = x.mean(axis=(0, 2))
    var = x.var(axis=(0, 2), ddof=1)
    np.testing.assert_allclose(rm, 0.25 * mean, rtol=1e-12)
    np.testing.assert_allclose(rv, 0.75 + 0.25 * var, rtol=1e-12)


def test_batch_norm_output_is_normalized_per_channel(rng):
    x = rng.standard_normal((64, 4, 3, 3)).astype(np.float32) * 5 - 2
    y = batch_norm(gc.tensor(x), None, None, training=True).numpy()
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-3)


def test_batch_norm_rejects_one_value_per_channel():
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        batch_norm(gc.tensor(np.ones((1, 3))), None, None, training=True)


@pytest.mark.parametrize("norm_shape", [(4,), (3, 4)])
def test_layer_norm_matches_torch(norm_shape, rng):
    x = rng.standard_normal((2, 3, 4)) * 3
    w = rng.random(norm_shape) + 0.5
    b = rng.standard_normal(norm_shape)
    compare_with_torch(
        lambda a, c, d: layer_norm(a, norm_shape, c, d),
        lambda a, c, d: tF.layer_norm(a, norm_shape, c, d),
        [x, w, b],
    )
    compare_with_torch(lambda a: layer_norm(a, norm_shape), lambda a: tF.layer_norm(a, norm_shape), [x])


def test_layer_norm_passes_gradcheck(rng):
    args = [rng.standard_normal((3, 2, 3)), rng.random((2, 3)) + 0.5, rng.standard_normal((2, 3))]
    assert gc.gradcheck(lambda a, c, d: layer_norm(a, (2, 3), c, d), args)


def test_layer_norm_rejects_mismatched_trailing_shape(rng):
    with pytest.raises(ValueError, match=r"trailing dimensions are \(5,\)"):
        layer_norm(gc.tensor(rng.standard_normal((2, 4))), 5)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_on_channels_last_input_matches_contiguous_input(training):
    """Convolutions hand batch norm channels-last arrays; the memory order must not change results."""

    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5, 6))
    channels_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert not channels_last.flags.c_contiguous
    weights = rng.standard_normal((3, 4, 5, 6))
    results = []
    for data in (np.ascontiguousarray(x), channels_last):
        xt = gc.tensor(data, requires_grad=True)
        w = gc.tensor(rng.standard_normal(4) * 0 + 1.5, requires_grad=True)
        b = gc.tensor(np.full(4, 0.25), requires_grad=True)
        rm, rv = np.full(4, 0.1), np.full(4, 2.0)
        y = batch_norm(xt, rm, rv, w, b, training=training, momentum=0.1, eps=1e-5)
        (y * gc.tensor(weights)).sum().backward()
        results.append((y.numpy().copy(), xt.grad, w.grad, b.grad, rm, rv))
    for ours, ref in zip(results[1], results[0]):
        np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


def test_batch_norm_on_channels_last_input_passes_gradcheck():
    from gradcraft.autograd import gradcheck

    x = np.ascontiguousarray(np.random.default_rng(6).standard_normal((2, 3, 3, 3)).transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert gradcheck(lambda t, w, b: batch_norm(t, None, None, w, b, training=True), [x, np.ones(3) * 1.3, np.zeros(3) + 0.2])


# ---------------------------------------------------------------------------- batch norm + ReLU
def _channels_last(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("shape", [(6, 3), (3, 3, 2, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_matches_torch(shape, training, rng):
    from gradcraft.ops.normalization import batch_norm_relu

    x = rng.standard_normal(shape) * 2 + 1
    w, b = rng.random(3) + 0.5, rng.standard_normal(3)
    rm, rv = rng.standard_normal(3), rng.random(3) + 0.5
    compare_with_torch(
        lambda a, c, d: batch_norm_relu(a, rm.copy(), rv.copy(), c, d, training=training),
        lambda a, c, d: tF.relu(
            tF.batch_norm(a, torch.tensor(rm), torch.tensor(rv), c, d, training=training)
        ),
        [x, w, b],
    )


@pytest.mark.parametrize("channels_last", [False, True])
def test_batch_norm_relu_passes_gradcheck(channels_last, rng):
    from gradcraft.ops.normalization import batch_norm_relu

    x = rng.standard_normal((3, 2, 3, 3))
    x = _channels_last(x) if channels_last else x
    args = [x, rng.random(2) + 0.5, rng.standard_normal(2)]
    assert gc.gradcheck(lambda a, c, d: batch_norm_relu(a, None, None, c, d, training=True), args)
    rm, rv = rng.standard_normal(2), rng.random(2) + 0.5
    assert gc.gradcheck(lambda a, c, d: batch_norm_relu(a, rm, rv, c, d, training=False), args)


@pytest.mark.parametrize("numba", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("layout", ["channels_last", "nchw", "2d"])
def test_batch_norm_relu_gives_the_results_of_relu_of_batch_norm(numba, training, layout):
    from gradcraft.ops import accel
    from gradcraft.ops.activation import relu
    from gradcraft.ops.normalization import batch_norm_relu

    if numba and not accel.numba_available():
        pytest.skip("the compiled path needs Numba (the 'fast' extra)")
    rng = np.random.default_rng(31)
    x = (rng.standard_normal((64, 5) if layout == "2d" else (4, 5, 6, 7)) * 2 + 0.5).astype(np.float32)
    x = _channels_last(x) if layout == "channels_last" else x
    nan_at = (0, 3) if layout == "2d" else (0, 0, 0, 3)
    if not training:  # in evaluation a NaN input gives a NaN output, element by element
        x[nan_at] = np.nan
    w = (rng.random(5) + 0.5).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    with accel.use_numba(numba):
        for fused in (True, False):
            tx, tw, tb = (gc.tensor(a.copy(order="K"), requires_grad=True) for a in (x, w, b))
            rm, rv = np.full(5, 0.25, np.float32), np.full(5, 1.5, np.float32)
            if fused:
                y = batch_norm_relu(tx, rm, rv, tw, tb, training=training, momentum=0.1)
            else:
                y = relu(batch_norm(tx, rm, rv, tw, tb, training=training, momentum=0.1))
            (y * gc.tensor(g)).sum().backward()
            results.append([y.numpy(), tx.grad, tw.grad, tb.grad, rm, rv])
    for k, (ours, ref) in enumerate(zip(*results)):
        if k in (1, 2, 3) and numba and training:  # the kernels may contract products differently
            np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)
        else:
            np.testing.assert_array_equal(ours, ref, err_msg=f"result {k}")
    y = results[0][0]
    assert (y == 0).any() and (y > 0).any() and y.dtype == np.float32
    if not training:
        assert np.isnan(y[nan_at]) and np.isnan(y).sum() == 1


@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm_backward_writing_into_a_shared_gradient_keeps_both_inputs_right(relu):
    """Both inputs of a sum receive one gradient array; the batch norm processed last may write
    its dx into it (a donated gradient), the first must not."""
    from gradcraft.ops.normalization import batch_norm_relu

    op = batch_norm_relu if relu else batch_norm
    rng = np.random.default_rng(41)
    xs = [_channels_last(rng.standard_normal((3, 4, 5, 5)).astype(np.float32)) for _ in range(2)]
    w = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
    ta, tb = (gc.tensor(x.copy(order="K"), requires_grad=True) for x in xs)
    ((op(ta, None, None, training=True) + op(tb, None, None, training=True)) * gc.tensor(w)).sum().backward()
    for t, x in zip((ta, tb), xs):
        alone = gc.tensor(x.copy(order="K"), requires_grad=True)
        (op(alone, None, None, training=True) * gc.tensor(w)).sum().backward()
        np.testing.assert_array_equal(t.grad, alone.grad)
