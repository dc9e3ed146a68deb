"""The compiled kernels (gradcraft.ops.accel) against the NumPy code they replace.

Every test runs the same computation with the kernels switched off and on and asserts equal
results; the NumPy path is itself checked against finite differences and PyTorch elsewhere.
Kernel paths are taken for channels-last NumPy input, so the inputs here are channels-last.
"""

import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import gradcraft as gc
from gradcraft.autograd import gradcheck
from gradcraft.ops import accel, activation
from gradcraft.ops import conv as conv_mod
from gradcraft.ops.conv import conv2d
from gradcraft.ops.normalization import batch_norm
from gradcraft.ops.pooling import max_pool2d

pytestmark = pytest.mark.skipif(not accel.numba_available(), reason="the kernels need Numba (the 'fast' extra)")


def channels_last(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.fixture(autouse=True)
def split_small_batches(monkeypatch):
    """Let these small inputs be split over the worker threads as large ones are (below
    PARALLEL_MIN_BYTES the element-wise kernels run on the calling thread in one block); an
    input smaller than CHUNK_BYTES is still one block unless a test lowers it."""
    monkeypatch.setattr(conv_mod, "PARALLEL_MIN_BYTES", 0)


@pytest.fixture
def used(monkeypatch):
    """The kernel families the ops actually ran (so a test cannot pass on the NumPy path twice)."""
    families = set()
    original = accel.kernels

    def spy(family, *arrays):
        module = original(family, *arrays)
        if module is not None:
            families.add(family)
        return module

    monkeypatch.setattr(accel, "kernels", spy)
    return families


def run_both(fn, arrays, grad_seed=0):
    """fn's output and the gradients of Σ w ⊙ fn(...) for every input, without and with kernels."""
    results = []
    for enabled in (False, True):
        with accel.use_numba(enabled):
            tensors = [gc.tensor(a.copy(order="K"), requires_grad=True) for a in arrays]
            out = fn(*tensors)
            weights = np.random.default_rng(grad_seed).standard_normal(out.shape).astype(out.dtype)
            (out * gc.tensor(weights)).sum().backward()
            results.append((out.numpy().copy(), [t.grad for t in tensors]))
    return results


def assert_same(results, rtol, atol):
    (ref, ref_grads), (ours, our_grads) = results
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol)
    for g_ours, g_ref in zip(our_grads, ref_grads):
        if g_ref is None:  # an input the function ignores
            assert g_ours is None
        else:
            np.testing.assert_allclose(g_ours, g_ref, rtol=rtol, atol=atol)


def test_kernels_are_off_for_non_numpy_arrays_and_when_disabled():
    with accel.use_numba(False):
        assert accel.kernels("pooling", np.zeros(2)) is None
    with accel.use_numba(True):
        assert accel.kernels("pooling", np.zeros(2)) is not None
        assert accel.kernels("pooling", np.zeros(2), [1.0]) is None


def test_environment_variable_switches_kernels_off(monkeypatch):
    monkeypatch.setattr(accel._State, "enabled", None)
    monkeypatch.setenv("GRADCRAFT_NUMBA", "0")
    assert not accel.numba_enabled()
    monkeypatch.setattr(accel._State, "enabled", None)
    monkeypatch.setenv("GRADCRAFT_NUMBA", "1")
    assert accel.numba_enabled()


def test_flat_views_follow_memory_order_and_refuse_mixed_layouts():
    x = channels_last(np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5))
    (flat,) = accel.flat_views(x)
    np.testing.assert_array_equal(flat, x.transpose(0, 2, 3, 1).reshape(-1))
    assert np.shares_memory(flat, x)
    assert accel.flat_views(x, np.ascontiguousarray(x)) is None
    assert accel.flat_views(x[:, :, ::2]) is None


def test_tune_allocator_is_idempotent():
    first = accel.tune_allocator()
    assert accel.tune_allocator() == first


# ---------------------------------------------------------------------------- max pooling
# (shape, kernel, stride, padding, dilation, ceil_mode)
POOL_CONFIGS = [
    ((3, 5, 8, 6), 2, None, 0, 1, False),  # the 2×2 kernel
    ((2, 4, 7, 5), 2, None, 0, 1, False),  # 2×2 with a leftover row and column
    ((2, 3, 7, 7), 3, 2, 1, 1, False),  # overlapping, padded
    ((2, 3, 7, 6), (3, 2), (2, 1), (1, 0), 1, False),
    ((1, 4, 9, 9), 2, 2, 0, 2, False),  # dilated
    ((2, 3, 5, 6), 2, None, 0, 1, True),  # ceil mode
    ((1, 2, 6, 5), 3, 2, 1, 1, True),
]


@pytest.mark.parametrize("cfg", POOL_CONFIGS, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_kernel_matches_numpy_path(cfg, dtype, used):
    shape, k, s, p, d, ceil = cfg
    x = channels_last(np.random.default_rng(1).standard_normal(shape).astype(dtype))
    results = run_both(lambda t: max_pool2d(t, k, s, p, d, ceil), [x])
    np.testing.assert_array_equal(results[1][0], results[0][0])
    assert_same(results, rtol=1e-6, atol=1e-6)  # overlapping windows add gradients in another order
    assert used == {"pooling"}


def test_max_pool_kernel_routes_ties_to_the_first_maximum(used):
    x = channels_last(np.maximum(np.random.default_rng(2).standard_normal((4, 6, 8, 8)), 0).astype(np.float32))
    x[:, :, :2, :2] = 0.0  # whole windows of ReLU zeros
    assert_same(run_both(lambda t: max_pool2d(t, 2), [x]), rtol=0, atol=0)
    assert_same(run_both(lambda t: max_pool2d(t, 3, 1, 1), [x]), rtol=1e-6, atol=1e-6)
    assert used == {"pooling"}


def test_max_pool_kernel_propagates_nan():
    x = channels_last(np.random.default_rng(3).standard_normal((1, 2, 4, 4)).astype(np.float32))
    x[0, 1, 1, 0] = np.nan
    for args in ((2,), (3, 1, 1)):
        with accel.use_numba(True):
            out = max_pool2d(gc.tensor(x), *args).numpy()
        with accel.use_numba(False):
            ref = max_pool2d(gc.tensor(x), *args).numpy()
        np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
        assert np.isnan(out).any()


@pytest.mark.parametrize("cfg", [POOL_CONFIGS[0], POOL_CONFIGS[2], POOL_CONFIGS[5]])
def test_max_pool_kernel_passes_gradcheck(cfg):
    shape, k, s, p, d, ceil = cfg
    values = np.random.default_rng(4).permutation(np.prod(shape)).reshape(shape) * 0.1 - 1.0
    with accel.use_numba(True):
        assert gradcheck(lambda t: max_pool2d(t, k, s, p, d, ceil), [channels_last(values)])


# ---------------------------------------------------------------------------- batch norm
@pytest.mark.parametrize("shape", [(4, 6, 5, 7), (64, 3)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_kernels_match_numpy_path(shape, affine, training, used):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32) * 3 + 2
    if x.ndim == 4:
        x = channels_last(x)
    c = shape[1]
    gamma = (rng.standard_normal(c) + 1).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    stats = []

    def fn(t, w, b):
        rm, rv = np.full(c, 0.5, np.float32), np.full(c, 2.0, np.float32)
        stats.append((rm, rv))
        return batch_norm(t, rm, rv, w if affine else None, b if affine else None, training=training)

    results = run_both(fn, [x, gamma, beta])
    assert_same(results, rtol=2e-5, atol=2e-5)
    for ours, ref in zip(stats[1], stats[0]):
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
    assert used == {"normalization"}


@pytest.mark.parametrize("offset", [0.0, 1e3, -3e4])
def test_batch_norm_kernel_statistics_survive_a_mean_far_from_zero(offset, used):
    # one pass gives μ and σ² from sums of x − x[0]; without the shift, Σx² − (Σx)²/M would
    # cancel away σ² = 1 against a mean of 3·10⁴ in float32 data
    rng = np.random.default_rng(7)
    x = channels_last((rng.standard_normal((16, 3, 20, 20)) + offset).astype(np.float32))
    exact = x.astype(np.float64)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with accel.use_numba(True):
        y = batch_norm(gc.tensor(x), rm, rv, training=True, momentum=1.0).numpy()
    assert used == {"normalization"}
    np.testing.assert_allclose(rm, exact.mean(axis=(0, 2, 3)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rv, exact.var(axis=(0, 2, 3), ddof=1), rtol=2e-4)
    mean = exact.mean(axis=(0, 2, 3), keepdims=True)
    ref = (exact - mean) / np.sqrt(exact.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, ref, atol=2e-3 if offset else 2e-5)


def test_batch_norm_statistics_add_up_over_many_row_blocks(monkeypatch, used):
    # tiny chunks: every block must shift by the same value (x[0] of the whole batch) for its
    # sums to add up; one block per worker thread would not notice a per-block shift
    monkeypatch.setattr(conv_mod, "CHUNK_BYTES", 256)
    x = channels_last((np.random.default_rng(8).standard_normal((6, 5, 9, 7)) * 2 + 3).astype(np.float32))
    stats = []

    def fn(t):
        rm, rv = np.zeros(5, np.float32), np.ones(5, np.float32)
        stats.append((rm, rv))
        return batch_norm(t, rm, rv, training=True, momentum=1.0)

    assert_same(run_both(fn, [x]), rtol=2e-5, atol=2e-5)
    for ours, ref in zip(stats[1], stats[0]):
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    assert used == {"normalization"}


def test_batch_norm_kernel_handles_gradient_in_another_layout(used):
    x = channels_last(np.random.default_rng(6).standard_normal((3, 4, 5, 5)).astype(np.float32))

    def fn(t):  # the gradient reaching batch norm comes back C-ordered through the reshape
        return batch_norm(t, None, None, training=True).reshape(3, -1)

    assert_same(run_both(fn, [x]), rtol=1e-5, atol=1e-5)
    assert "normalization" in used


def test_batch_norm_kernels_pass_gradcheck():
    x = channels_last(np.random.default_rng(7).standard_normal((3, 4, 3, 3)))
    with accel.use_numba(True):
        assert gradcheck(
            lambda t, w, b: batch_norm(t, None, None, w, b, training=True),
            [x, np.linspace(0.5, 1.5, 4), np.linspace(-0.2, 0.3, 4)],
        )


# ---------------------------------------------------------------------------- Winograd convolution
@pytest.mark.parametrize(
    ("shape", "out_channels", "padding", "bias"),
    [
        ((2, 8, 6, 6), 5, 1, True),
        ((3, 9, 7, 5), 4, 1, False),
        ((1, 8, 8, 7), 3, 0, True),
        ((2, 8, 5, 5), 6, 2, True),
        ((2, 8, 3, 2), 4, 2, True),  # every tile reaches into the padding
    ],
)
@pytest.mark.parametrize("layout", ["channels_last", "c_order"])
def test_winograd_kernels_match_numpy_path(shape, out_channels, padding, bias, layout, used):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape).astype(np.float32)
    x = channels_last(x) if layout == "channels_last" else x
    w = rng.standard_normal((out_channels, shape[1], 3, 3)).astype(np.float32) * 0.2
    b = rng.standard_normal(out_channels).astype(np.float32)
    results = run_both(lambda t, wt, bt: conv2d(t, wt, bt if bias else None, padding=padding), [x, w, b])
    assert_same(results, rtol=1e-4, atol=1e-4)
    assert "winograd" in used


def test_winograd_kernels_pass_gradcheck():
    rng = np.random.default_rng(9)
    x = channels_last(rng.standard_normal((2, 8, 5, 4)))
    with accel.use_numba(True):
        assert gradcheck(lambda t, w, b: conv2d(t, w, b, padding=1), [x, rng.standard_normal((3, 8, 3, 3)), rng.standard_normal(3)])


# ---------------------------------------------------------------------------- im2col convolution
# (x shape, weight shape, stride, padding, dilation, groups): every layer im2col serves
IM2COL_CONFIGS = [
    ((2, 3, 7, 6), (4, 3, 3, 3), 2, 1, 1, 1),  # a stride-2 layer, the residual network's case
    ((2, 4, 6, 7), (3, 4, 3, 2), (2, 1), (1, 2), 1, 1),  # asymmetric stride, padding, kernel
    ((1, 2, 7, 7), (2, 2, 3, 3), 1, 2, 2, 1),  # dilated: the padding is wider than a tap
    ((2, 4, 5, 5), (6, 2, 3, 3), 1, 1, 1, 2),  # grouped
    ((2, 4, 5, 4), (4, 1, 3, 3), 2, 1, 1, 4),  # depthwise
    ((1, 3, 3, 2), (2, 3, 5, 5), 1, 2, 1, 1),  # every window reaches into the padding
    ((2, 2, 5, 6), (3, 2, 2, 3), 1, "same", 1, 1),
    ((2, 4, 5, 5), (4, 4, 1, 1), 2, 0, 1, 1),  # a strided 1×1 shortcut
    # one input channel: the tap-major kernel
    ((2, 1, 7, 6), (4, 1, 3, 3), 1, 1, 1, 1),  # a stem layer
    ((2, 1, 9, 8), (3, 1, 3, 2), (2, 1), (1, 2), (2, 1), 1),  # strided, dilated, asymmetric
    ((1, 1, 3, 2), (2, 1, 5, 5), 1, 2, 1, 1),  # every window reaches into the padding
]


@pytest.mark.parametrize("cfg", IM2COL_CONFIGS, ids=lambda c: "-".join(map(str, c)).replace(" ", ""))
@pytest.mark.parametrize("layout", ["channels_last", "c_order"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_kernel_matches_numpy_path(cfg, layout, dtype, used):
    x_shape, w_shape, stride, padding, dilation, groups = cfg
    rng = np.random.default_rng(12)
    x = rng.standard_normal(x_shape).astype(dtype)
    x = channels_last(x) if layout == "channels_last" else x
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)

    def conv(t, wt, bt):
        return conv2d(t, wt, bt, stride=stride, padding=padding, dilation=dilation, groups=groups)

    if x_shape[1] > 1:  # the same columns go into the same GEMMs: equal to the last bit
        assert_same(run_both(conv, [x, w, b]), rtol=0, atol=0)
    else:  # the tap-major columns go in transposed: BLAS rounds differently
        tol = 1e-5 if dtype == np.float32 else 1e-12
        assert_same(run_both(conv, [x, w, b]), rtol=tol, atol=tol)
    assert used == {"im2col"}


def test_im2col_kernel_works_in_blocks_and_row_bands(monkeypatch, used):
    monkeypatch.setattr(conv_mod, "BLOCK_BYTES", 300)  # bands of output rows of one sample
    rng = np.random.default_rng(13)
    x = channels_last(rng.standard_normal((3, 4, 9, 8)).astype(np.float32))
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    assert_same(run_both(lambda t, wt: conv2d(t, wt, stride=2, padding=1), [x, w]), rtol=0, atol=0)
    assert used == {"im2col"}


def test_im2col_kernel_passes_gradcheck():
    rng = np.random.default_rng(14)
    x = channels_last(rng.standard_normal((2, 3, 6, 5)))
    with accel.use_numba(True):
        assert gradcheck(
            lambda t, w, b: conv2d(t, w, b, stride=2, padding=1),
            [x, rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)],
        )


def test_im2col_kernel_makes_no_padded_copy_of_the_input():
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="thread control needs threadpoolctl")
    # a stride-2 layer of a residual network; its input is a ReLU's channels-last output
    # (backward rebuilds the columns for the filter gradient; dX is built unpadded either way)
    rng = np.random.default_rng(15)
    x = gc.tensor(channels_last(rng.standard_normal((64, 16, 28, 28)).astype(np.float32)))
    w = gc.tensor(rng.standard_normal((32, 16, 3, 3)).astype(np.float32) * 0.1, requires_grad=True)
    peaks = {}
    for numba in (False, True):
        # one thread: the same per-thread scratch buffers on both paths, however many ran
        with accel.use_numba(numba), threadpoolctl.threadpool_limits(1, user_api="blas"):
            conv2d(x, w, stride=2, padding=1)  # compile and warm up outside the trace
            w.grad = None
            tracemalloc.start()
            try:
                y = conv2d(x, w, stride=2, padding=1)
                forward = tracemalloc.get_traced_memory()[1]
                tracemalloc.reset_peak()
                y.backward(np.ones_like(y.data))
                peaks[numba] = (forward, tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
    padded = 64 * 30 * 30 * 16 * 4  # the padded channels-last copy: 3.5 MiB
    for without, with_kernel in zip(peaks[False], peaks[True]):
        assert without - with_kernel > 0.9 * padded


# ---------------------------------------------------------------------------- ReLU
@pytest.mark.parametrize(
    "shape",
    # a multiple of 8 elements; an odd count (the last mask byte is partly used); several
    # worker blocks, split at multiples of 8 elements so that no mask byte is shared
    [(8, 16, 12, 12), (3, 7, 29, 31), (5, 7, 61, 67)],
)
def test_relu_kernels_match_numpy_path(shape, used):
    x = channels_last(np.random.default_rng(10).standard_normal(shape).astype(np.float32))
    x[0, 0, 0, :4] = 0.0
    x[1, 2, 3, :2] = -0.0
    results = run_both(lambda t: t.relu() * 2.0, [x])
    assert_same(results, rtol=0, atol=0)
    assert used == {"activation"}


def test_relu_mask_is_unpacked_when_the_gradient_has_another_memory_order(used):
    # channels-last input; the reshape sends back a C-ordered gradient, so the packed mask
    # (in the input's memory order) cannot be read element by element alongside it
    x = channels_last(np.random.default_rng(12).standard_normal((3, 7, 29, 31)))
    results = run_both(lambda t: t.relu().reshape(3, -1), [x])
    assert_same(results, rtol=0, atol=0)
    assert used == {"activation"}
    with accel.use_numba(True):
        assert gradcheck(lambda t: t.relu().reshape(3, -1), [x + 0.01 * np.sign(x)])


@pytest.mark.parametrize("shape", [(8, 16, 12, 12), (3, 7, 29, 31), (5, 7, 61, 67)])
def test_add_relu_kernel_matches_numpy_path(shape, used):
    rng = np.random.default_rng(16)
    a = channels_last(rng.standard_normal(shape).astype(np.float32))
    b = channels_last(rng.standard_normal(shape).astype(np.float32))
    b[0, 0, 0, :4] = -a[0, 0, 0, :4]  # sums of exactly 0: no gradient, as relu(a + b)
    b[0, 1, 0, 0] = np.nan
    results = run_both(activation.add_relu, [a, b])
    assert_same(results, rtol=0, atol=0)
    (y, (da, db)), _ = results
    assert np.isnan(y[0, 1, 0, 0]) and db is not None
    np.testing.assert_array_equal(da, db)
    assert used == {"activation"}


def test_relu_without_a_gradient_uses_the_kernel_only_where_it_runs_on_the_threads(monkeypatch, used):
    monkeypatch.setattr(conv_mod, "PARALLEL_MIN_BYTES", 1 << 20)
    rng = np.random.default_rng(19)
    small = channels_last(rng.standard_normal((4, 8, 16, 16)).astype(np.float32))  # 32 KiB
    large = channels_last(rng.standard_normal((16, 32, 32, 32)).astype(np.float32))  # 2 MiB
    with accel.use_numba(True), gc.no_grad():
        for x in (small, large):
            np.testing.assert_array_equal(activation.relu(gc.tensor(x)).numpy(), np.maximum(x, 0))
            assert used == (set() if x is small else {"activation"})
            used.clear()
            y = activation.add_relu(gc.tensor(x), gc.tensor(-0.5 * x))
            np.testing.assert_array_equal(y.numpy(), np.maximum(x + -0.5 * x, 0))
            assert y.grad_fn is None
            assert used == (set() if x is small else {"activation"})


def test_add_relu_takes_the_numpy_path_for_inputs_of_different_memory_orders(used):
    rng = np.random.default_rng(17)
    a = channels_last(rng.standard_normal((4, 8, 16, 16)).astype(np.float32))
    b = rng.standard_normal((4, 8, 16, 16)).astype(np.float32)  # C order
    with accel.use_numba(True):
        ta, tb = gc.tensor(a, requires_grad=True), gc.tensor(b, requires_grad=True)
        y = activation.add_relu(ta, tb)
        y.sum().backward()
    np.testing.assert_array_equal(y.numpy(), np.maximum(a + b, 0))
    np.testing.assert_array_equal(ta.grad, (a + b > 0).astype(np.float32))
    np.testing.assert_array_equal(tb.grad, ta.grad)


def test_add_relu_kernel_never_stores_the_sum():
    rng = np.random.default_rng(18)
    a = gc.tensor(channels_last(rng.standard_normal((16, 32, 28, 28)).astype(np.float32)), requires_grad=True)
    b = gc.tensor(channels_last(rng.standard_normal((16, 32, 28, 28)).astype(np.float32)), requires_grad=True)
    with accel.use_numba(True):
        activation.add_relu(a, b)  # compile outside the trace
        tracemalloc.start()
        try:
            y = activation.add_relu(a, b)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # the output and its mask of one bit per element; relu(a + b) also holds the sum
    assert peak < y.data.nbytes * (1 + 1 / 32) + 64 * 1024


def test_float16_arrays_take_the_numpy_path(used):
    # Numba cannot compile half-precision kernels; before this guard a float16 ReLU of 2^14
    # elements or more raised NotImplementedError
    x = np.random.default_rng(13).standard_normal((4, 8, 32, 32)).astype(np.float16)
    with accel.use_numba(True):
        t = gc.tensor(x, requires_grad=True)
        y = t.relu()
        y.sum().backward()
    np.testing.assert_array_equal(y.numpy(), np.maximum(x, 0))
    np.testing.assert_array_equal(t.grad, (x > 0).astype(np.float16))
    assert used == set()


def test_relu_kernels_keep_nan_and_save_one_bit_per_element(used):
    x = np.random.default_rng(11).standard_normal((4, 8, 32, 33)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    outs = []
    for enabled in (False, True):
        with accel.use_numba(enabled):
            t = gc.tensor(x, requires_grad=True)
            y = t.relu()
            (saved,) = y.grad_fn.saved
            if enabled:
                assert saved.dtype == np.uint8 and saved.shape == ((x.size + 7) // 8,)
            else:
                assert saved.dtype == np.bool_ and saved.shape == x.shape
            outs.append(y.numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
    assert np.isnan(outs[1][0, 0, 0, 0])
    assert used == {"activation"}


# ---------------------------------------------------------------------------- OpenBLAS threads
@pytest.mark.parametrize(("given", "expected"), [(None, "20"), ("12", "12")])
def test_importing_gradcraft_first_shortens_openblas_spinning_unless_set(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if given is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = given
    code = "import gradcraft, os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_relu_kernels_match_numpy_path_over_row_blocks(monkeypatch, used, with_bias):
    from gradcraft.ops.linear import linear_relu

    monkeypatch.setattr(conv_mod, "CHUNK_BYTES", 7 * 130 * 4)  # blocks of 7 rows: 6 blocks
    rng = np.random.default_rng(21)
    x = rng.standard_normal((37, 20)).astype(np.float32)
    w = rng.standard_normal((130, 20)).astype(np.float32)
    b = rng.standard_normal(130).astype(np.float32)
    x[3, :] = np.nan
    inputs = [x, w, b] if with_bias else [x, w]
    results = run_both(linear_relu, inputs)
    assert_same(results, rtol=0, atol=0)
    (y, grads), _ = results
    assert np.isnan(y[3]).all() and np.isnan(grads[1]).any()
    assert (y[np.arange(37) != 3] == 0).any() and (y[np.arange(37) != 3] > 0).any()
    assert used == {"activation"}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_kernels_match_numpy_path(dtype, reduction, used):
    from gradcraft.ops.loss import cross_entropy

    rng = np.random.default_rng(22)
    x = (4 * rng.standard_normal((67, 10))).astype(dtype)
    labels = rng.integers(0, 10, 67)
    x[5, 3] = np.nan  # a NaN logit makes its row's loss and gradient NaN
    x[6, :] = 80.0  # a row of equal, large logits: p = 1/C, no overflow
    results = run_both(lambda t: cross_entropy(t, gc.tensor(labels), reduction=reduction), [x])
    tol = 1e-6 if dtype == np.float32 else 1e-14
    (ref, (g_ref,)), (ours, (g_ours,)) = results
    if reduction == "none":
        assert np.isnan(ours[5]) and np.isfinite(np.delete(ours, 5)).all()
        np.testing.assert_allclose(ours, ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(ours[6], np.log(10), rtol=tol)
    else:
        assert np.isnan(ours) and np.isnan(ref)
    assert np.isnan(g_ours[5]).all() and np.isfinite(np.delete(g_ours, 5, axis=0)).all()
    np.testing.assert_allclose(g_ours, g_ref, rtol=tol, atol=tol)
    assert ours.dtype == dtype and g_ours.dtype == dtype
    assert used == {"loss"}


def test_cross_entropy_kernel_hands_ignored_and_invalid_labels_to_the_general_path(used):
    from gradcraft.ops.loss import cross_entropy

    rng = np.random.default_rng(23)
    x = rng.standard_normal((9, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 9)
    labels[7] = -100  # ignored: the mean is over the other 8
    results = run_both(lambda t: cross_entropy(t, gc.tensor(labels)), [x])
    assert_same(results, rtol=1e-6, atol=1e-7)
    (_, (g,)), _ = results
    assert (g[7] == 0).all()
    labels[7] = 4
    with accel.use_numba(True), pytest.raises(ValueError, match=r"class indices in \[0, 4\).*containing 4"):
        cross_entropy(gc.tensor(x), gc.tensor(labels))


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_kernels_match_numpy_path_over_row_blocks(monkeypatch, training, used):
    from gradcraft.ops.normalization import batch_norm_relu

    monkeypatch.setattr(conv_mod, "CHUNK_BYTES", 9 * 6 * 4)  # blocks of 9 rows of 6 channels
    rng = np.random.default_rng(24)
    x = channels_last(rng.standard_normal((4, 6, 5, 7)).astype(np.float32) * 3 + 1)
    gamma = (rng.standard_normal(6) + 1).astype(np.float32)
    beta = rng.standard_normal(6).astype(np.float32)
    stats = []

    def fn(t, w, b):
        rm, rv = np.full(6, 0.5, np.float32), np.full(6, 2.0, np.float32)
        stats.append((rm, rv))
        return batch_norm_relu(t, rm, rv, w, b, training=training)

    results = run_both(fn, [x, gamma, beta])
    assert_same(results, rtol=2e-5, atol=2e-5)
    (y, _), _ = results
    assert (y == 0).mean() > 0.2 and (y > 0).mean() > 0.2
    for ours, ref in zip(stats[1], stats[0]):
        np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6)
    assert used == {"normalization"}
