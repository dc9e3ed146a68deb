import numpy as np
import pytest

import gradcraft as gc
from gradcraft.autograd import gradcheck
from gradcraft.ops import pooling as P
from tests.ops._cases import compare_with_torch, torch_or_none

torch = torch_or_none()
needs_torch = pytest.mark.skipif(torch is None, reason="parity tests need PyTorch (pip install torch==2.13.0)")


def distinct(shape, seed=0):
    """Values at least 0.1 apart, so a ±1e-6 finite-difference step never changes a window's max."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.prod(shape)).reshape(shape) * 0.1 - 1.0


def channels_last(x):
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


# (shape, kernel, stride, padding, dilation, ceil_mode)
MAX_CONFIGS = [
    ((2, 3, 4, 6), 2, None, 0, 1, False),  # tiles: the reshape fast path
    ((2, 2, 5, 7), 2, None, 0, 1, False),  # tiles with a leftover row and column
    ((1, 2, 5, 5), 3, 1, 1, 1, False),  # overlapping, padded
    ((2, 2, 7, 6), (3, 2), (2, 1), (1, 0), 1, False),  # non-square
    ((1, 2, 7, 7), 2, 2, 0, 2, False),  # dilated
    ((2, 2, 5, 6), 2, None, 0, 1, True),  # ceil mode: last window hangs over
    ((1, 3, 6, 5), 3, 2, 1, 1, True),
]


def _max_ids(cfg):
    return "-".join(map(str, cfg)).replace(" ", "")


@pytest.mark.parametrize("cfg", MAX_CONFIGS, ids=_max_ids)
def test_max_pool2d_gradcheck(cfg):
    shape, k, s, p, d, ceil = cfg
    assert gradcheck(lambda x: P.max_pool2d(x, k, s, p, d, ceil), [distinct(shape)])


@needs_torch
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "ties"])
@pytest.mark.parametrize("cfg", MAX_CONFIGS, ids=_max_ids)
def test_max_pool2d_matches_torch(cfg, layout):
    shape, k, s, p, d, ceil = cfg
    x = np.random.default_rng(1).standard_normal(shape)
    if layout == "channels_last":
        x = channels_last(x)
    if layout == "ties":  # many equal values: the gradient must go to the first maximum only
        x = np.round(x)
    compare_with_torch(
        lambda t: P.max_pool2d(t, k, s, p, d, ceil),
        lambda t: torch.nn.functional.max_pool2d(t, k, s, p, d, ceil),
        [x],
    )


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (1, 2, 6, 3)])
@pytest.mark.parametrize("kernel", [2, 3])
def test_max_pool2d_routes_gradient_to_first_maximum_only(shape, kernel):
    x = gc.zeros(*shape, requires_grad=True)  # every window is one big tie
    y = P.max_pool2d(x, kernel, stride=1)
    g = np.ones(y.shape, dtype=np.float32)
    y.backward(g)
    # the total gradient is conserved (sending it to every tie would multiply it by k²) ...
    np.testing.assert_allclose(x.grad.sum(), g.sum())
    # ... and each window's first element (its top-left corner) receives it
    expected = np.zeros(shape, dtype=np.float32)
    expected[:, :, : y.shape[2], : y.shape[3]] = 1
    np.testing.assert_array_equal(x.grad, expected)


def test_max_pool2d_keeps_channels_last_memory_order():
    x = gc.tensor(channels_last(np.random.default_rng(0).standard_normal((2, 4, 6, 6))), requires_grad=True)
    y = P.max_pool2d(x, 2)
    assert y.data.transpose(0, 2, 3, 1).flags.c_contiguous
    dx = y.grad_fn.backward(np.ones(y.shape))  # what the op hands to the layer below
    assert dx.transpose(0, 2, 3, 1).flags.c_contiguous


def test_max_pool2d_without_grad_records_nothing():
    x = gc.randn(2, 3, 4, 4)
    y = P.max_pool2d(x, 2)
    assert y.grad_fn is None and y.shape == (2, 3, 2, 2)


def test_max_pool2d_output_equals_window_maximum():
    x = distinct((2, 3, 6, 6))
    y = P.max_pool2d(gc.tensor(x), 3, stride=3).numpy()
    np.testing.assert_array_equal(y, x.reshape(2, 3, 2, 3, 2, 3).max(axis=(3, 5)))


# (shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_CONFIGS = [
    ((2, 3, 4, 6), 2, None, 0, False, True, None),
    ((2, 2, 5, 7), 2, None, 0, False, True, None),
    ((1, 2, 5, 5), 3, 1, 1, False, True, None),
    ((1, 2, 5, 5), 3, 1, 1, False, False, None),
    ((2, 2, 7, 6), (3, 2), (2, 1), (1, 0), False, False, None),
    ((2, 2, 5, 6), 2, None, 0, True, True, None),
    ((1, 3, 6, 5), 3, 2, 1, True, False, None),
    ((1, 2, 6, 6), 3, 2, 1, False, True, 4),
]


@pytest.mark.parametrize("cfg", AVG_CONFIGS, ids=_max_ids)
def test_avg_pool2d_gradcheck(cfg):
    shape, *args = cfg
    x = np.random.default_rng(2).standard_normal(shape)
    assert gradcheck(lambda t: P.avg_pool2d(t, *args), [x])


@needs_torch
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("cfg", AVG_CONFIGS, ids=_max_ids)
def test_avg_pool2d_matches_torch(cfg, layout):
    shape, *args = cfg
    x = np.random.default_rng(3).standard_normal(shape)
    if layout == "channels_last":
        x = channels_last(x)
    compare_with_torch(lambda t: P.avg_pool2d(t, *args), lambda t: torch.nn.functional.avg_pool2d(t, *args), [x])


def test_avg_pool2d_count_include_pad_changes_the_border_divisor():
    x = gc.ones(1, 1, 3, 3)
    with_pad = P.avg_pool2d(x, 3, stride=1, padding=1).numpy()[0, 0]
    without = P.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False).numpy()[0, 0]
    np.testing.assert_allclose(with_pad[0, 0], 4 / 9)  # corner: 4 ones among 9 cells
    np.testing.assert_allclose(with_pad[1, 1], 1.0)
    np.testing.assert_allclose(without, np.ones((3, 3)))


ADAPTIVE = [((2, 3, 7, 6), 1), ((2, 3, 7, 6), (3, 2)), ((1, 2, 10, 9), (4, 4)), ((1, 2, 5, 8), (5, None))]


@pytest.mark.parametrize(("shape", "size"), ADAPTIVE, ids=str)
def test_adaptive_avg_pool2d_gradcheck(shape, size):
    x = np.random.default_rng(4).standard_normal(shape)
    assert gradcheck(lambda t: P.adaptive_avg_pool2d(t, size), [x])


@needs_torch
@pytest.mark.parametrize(("shape", "size"), ADAPTIVE, ids=str)
def test_adaptive_avg_pool2d_matches_torch(shape, size):
    x = channels_last(np.random.default_rng(5).standard_normal(shape))
    compare_with_torch(
        lambda t: P.adaptive_avg_pool2d(t, size), lambda t: torch.nn.functional.adaptive_avg_pool2d(t, size), [x]
    )


def test_adaptive_pool_matrix_uses_floor_start_and_ceil_end():
    a = P.adaptive_pool_matrix(np, 5, 3, np.float64)
    # windows [0, 2), [1, 4), [3, 5): start = ⌊i·5/3⌋, end = ⌈(i+1)·5/3⌉
    expected = np.array([[1 / 2, 1 / 2, 0, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 1 / 2, 1 / 2]])
    np.testing.assert_allclose(a, expected)


@pytest.mark.parametrize("keepdim", [False, True])
def test_global_avg_pool2d_gradcheck_and_shape(keepdim):
    x = np.random.default_rng(6).standard_normal((2, 3, 4, 5))
    assert gradcheck(lambda t: P.global_avg_pool2d(t, keepdim), [x])
    y = P.global_avg_pool2d(gc.tensor(x), keepdim)
    assert y.shape == ((2, 3, 1, 1) if keepdim else (2, 3))
    np.testing.assert_allclose(y.numpy().reshape(2, 3), x.mean(axis=(2, 3)))


FRACTIONAL = [((2, 3, 9, 8), 2, (5, 4)), ((1, 2, 11, 10), 3, (6, 5)), ((2, 2, 8, 8), (2, 3), (4, 5))]


@pytest.mark.parametrize(("shape", "kernel", "size"), FRACTIONAL, ids=str)
def test_fractional_max_pool2d_gradcheck(shape, kernel, size):
    samples = np.random.default_rng(7).random((shape[0], shape[1], 2))
    assert gradcheck(lambda t: P.fractional_max_pool2d(t, kernel, size, random_samples=samples), [distinct(shape)])


@needs_torch
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(("shape", "kernel", "size"), FRACTIONAL, ids=str)
def test_fractional_max_pool2d_matches_torch_given_the_same_samples(shape, kernel, size, ties):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape)
    if ties:
        x = np.round(x)
    samples = rng.random((shape[0], shape[1], 2))
    compare_with_torch(
        lambda t: P.fractional_max_pool2d(t, kernel, size, random_samples=samples),
        lambda t: torch.nn.functional.fractional_max_pool2d(t, kernel, size, _random_samples=torch.tensor(samples)),
        [x],
    )


@pytest.mark.parametrize(("size", "out", "kernel"), [(32, 22, 2), (25, 17, 2), (10, 4, 3), (9, 2, 2)])
def test_fractional_pool_starts_cover_the_input_with_steps_floor_or_ceil_alpha(size, out, kernel):
    u = np.random.default_rng(9).random(50)
    starts = P.fractional_pool_starts(u, size, out, kernel)
    alpha = (size - kernel) / (out - 1)
    assert np.all(starts[:, 0] == 0) and np.all(starts[:, -1] == size - kernel)
    steps = np.diff(starts, axis=1)
    assert set(np.unique(steps)) <= {int(np.floor(alpha)), int(np.ceil(alpha))}


def test_fractional_max_pool2d_draws_regions_from_the_generator():
    x = gc.tensor(distinct((4, 3, 12, 12)))
    a = P.fractional_max_pool2d(x, 2, output_ratio=0.7, generator=np.random.default_rng(0)).numpy()
    b = P.fractional_max_pool2d(x, 2, output_ratio=0.7, generator=np.random.default_rng(0)).numpy()
    c = P.fractional_max_pool2d(x, 2, output_ratio=0.7, generator=np.random.default_rng(1)).numpy()
    assert a.shape == (4, 3, 8, 8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda x: P.max_pool2d(x, 2, padding=2), r"expected padding at most half the kernel size"),
        (lambda x: P.max_pool2d(x, 9), r"expected the window to fit the padded input"),
        (lambda x: P.avg_pool2d(x, 2, divisor_override=0), r"Received: divisor_override=0"),
        (lambda x: P.max_pool2d(x[0], 2), r"expected input of shape \(N, C, H, W\)"),
        (lambda x: P.adaptive_avg_pool2d(x, (1, 2, 3)), r"Received: output_size=\(1, 2, 3\)"),
        (lambda x: P.fractional_max_pool2d(x, 2), r"exactly one of output_size and output_ratio"),
        (lambda x: P.fractional_max_pool2d(x, 3, (6, 6)), r"output_size \+ kernel_size − 1 ≤ input height"),
        (lambda x: P.fractional_max_pool2d(x, 2, output_ratio=1.5), r"output_ratio in \(0, 1\)"),
    ],
)
def test_pooling_errors_say_what_was_expected_and_received(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(gc.zeros(1, 2, 6, 6))
