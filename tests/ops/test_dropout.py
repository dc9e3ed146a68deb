"""Dropout-family functions: masks, expectations, gradients and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

import gradcraft as gc
from gradcraft.ops import dropout as D


def test_masked_scale_gradient_is_mask_times_scale(rng):
    mask = rng.random((3, 4)) > 0.5
    assert gc.gradcheck(
        lambda x: D.MaskedScale.apply(x, mask=mask, scale=2.0, shift=1.5), [rng.standard_normal((3, 4))]
    )
    x = gc.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    D.MaskedScale.apply(x, mask=mask, scale=2.0).sum().backward()
    np.testing.assert_array_equal(x.grad, mask * 2.0)


def test_dropout_gradient_flows_only_through_kept_units_scaled(rng):
    x = gc.tensor(np.ones((50, 40)), requires_grad=True)
    y = D.dropout(x, 0.3, generator=np.random.default_rng(0))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, y.numpy())
    assert set(np.unique(y.numpy())) == {0.0, 1 / 0.7}


def test_dropout_with_same_generator_seed_is_reproducible():
    x = gc.ones(10, 10)
    a = D.dropout(x, 0.5, generator=np.random.default_rng(7)).numpy()
    b = D.dropout(x, 0.5, generator=np.random.default_rng(7)).numpy()
    np.testing.assert_array_equal(a, b)


def test_dropout_uses_library_generator_when_none_given():
    gc.manual_seed(3)
    a = D.dropout(gc.ones(8, 8), 0.5).numpy()
    gc.manual_seed(3)
    b = D.dropout(gc.ones(8, 8), 0.5).numpy()
    np.testing.assert_array_equal(a, b)


def test_dropout_p_edge_cases():
    x = gc.ones(4, 4)
    assert D.dropout(x, 0.0) is x
    np.testing.assert_array_equal(D.dropout(x, 1.0).numpy(), 0.0)
    assert D.dropout(x, 0.5, training=False) is x


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5", True])
def test_dropout_rejects_bad_probability(p):
    with pytest.raises(ValueError, match="Expected a probability p in"):
        D.dropout(gc.ones(2, 2), p)


def test_dropout2d_zeroes_whole_channels():
    y = D.dropout2d(gc.ones(16, 8, 3, 3), 0.5, generator=np.random.default_rng(0)).numpy()
    per_channel = y.reshape(16, 8, 9)
    assert np.all(per_channel.min(axis=2) == per_channel.max(axis=2))
    assert set(np.unique(per_channel)) == {0.0, 2.0}


def test_stochastic_depth_row_drops_whole_samples():
    y = D.stochastic_depth(gc.ones(64, 3, 2), 0.5, "row", generator=np.random.default_rng(0)).numpy()
    flat = y.reshape(64, -1)
    assert np.all(flat.min(axis=1) == flat.max(axis=1))
    assert 0 < (flat[:, 0] == 0).sum() < 64


def test_stochastic_depth_batch_drops_all_or_nothing():
    values = {
        float(
            D.stochastic_depth(gc.ones(8, 3), 0.5, "batch", generator=np.random.default_rng(s)).numpy().max()
        )
        for s in range(20)
    }
    assert values == {0.0, 2.0}


def test_gaussian_noise_gradient_is_identity(rng):
    x = gc.tensor(rng.standard_normal((5, 5)), requires_grad=True)
    D.gaussian_noise(x, 0.5, generator=np.random.default_rng(0)).sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((5, 5)))


def test_dropout_keeps_float32():
    x = gc.ones(4, 4, requires_grad=True)
    for y in (
        D.dropout(x, 0.5),
        D.alpha_dropout(x, 0.2),
        D.gaussian_dropout(x, 0.2),
        D.gaussian_noise(x, 0.1),
    ):
        assert y.dtype == np.float32
