"""Helpers shared by the op families: row sums and the adjoint of broadcasting."""

from __future__ import annotations

import numpy as np
import pytest

from gradcraft.ops._util import sum_rows, unbroadcast


@pytest.mark.parametrize("shape", [(0, 5), (1, 3), (7, 1), (100, 32), (5000, 10), (3, 2048)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sum_rows_is_the_column_sum(shape, dtype, rng):
    a = rng.standard_normal(shape).astype(dtype)
    got = sum_rows(a)
    assert got.shape == (shape[1],) and got.dtype == dtype
    np.testing.assert_allclose(got, a.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-4)


def test_sum_rows_of_views_and_other_dtypes(rng):
    a = rng.standard_normal((40, 6)).astype(np.float32)
    np.testing.assert_allclose(sum_rows(a[::3, 1:4]), a[::3, 1:4].sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(sum_rows(a.T), a.T.sum(axis=0), rtol=1e-6)
    half = a.astype(np.float16)
    assert sum_rows(half).dtype == np.float16
    np.testing.assert_array_equal(sum_rows(half), half.sum(axis=0))
    ints = np.arange(12).reshape(4, 3)
    np.testing.assert_array_equal(sum_rows(ints), [18, 22, 26])


def test_sum_rows_returns_fresh_arrays_and_keeps_its_ones(rng):
    a = rng.standard_normal((3000, 4)).astype(np.float32)
    first = sum_rows(a)
    first += 1  # the caller may write into it (parallel sums add in place)
    np.testing.assert_allclose(sum_rows(a), a.sum(axis=0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(sum_rows(np.ones((10, 2), np.float32)), [10, 10])


@pytest.mark.parametrize(
    ("grad_shape", "shape"),
    [((4, 3), (3,)), ((2, 4, 3), (3,)), ((2, 4, 3), (4, 3)), ((2, 4, 3), (4, 1)), ((5, 3), (1, 3)), ((3,), ())],
)
def test_unbroadcast_sums_what_broadcasting_added(grad_shape, shape, rng):
    grad = rng.standard_normal(grad_shape)
    expected = grad
    while expected.ndim > len(shape):
        expected = expected.sum(axis=0)
    for axis, n in enumerate(shape):
        if n == 1 and expected.shape[axis] != 1:
            expected = expected.sum(axis=axis, keepdims=True)
    for g in (grad, np.asfortranarray(grad)):  # the row-sum path and NumPy's sum
        got = unbroadcast(g, shape)
        assert got.shape == shape
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_writable_donation_needs_the_donation_and_a_writeable_array():
    from types import SimpleNamespace

    from gradcraft.ops._util import writable_donation

    a = np.zeros(3)
    assert writable_donation(SimpleNamespace(grad_donated=True), a)
    assert not writable_donation(SimpleNamespace(grad_donated=False), a)
    assert not writable_donation(SimpleNamespace(grad_donated=True), np.broadcast_to(a, (2, 3)))
    cupy_like = SimpleNamespace(flags=SimpleNamespace(c_contiguous=True))  # no read-only flag
    assert writable_donation(SimpleNamespace(grad_donated=True), cupy_like)
