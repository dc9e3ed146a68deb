"""Dropout-family layers: expected activations in training equal evaluation outputs."""

from __future__ import annotations

import numpy as np
import pytest

import gradcraft as gc
from gradcraft import nn

N = 200_000  # elements per statistical test: standard error of a mean ≈ 0.003


def _train_eval(layer, x):
    layer.train()
    y_train = layer(x).numpy()
    layer.eval()
    y_eval = layer(x).numpy()
    return y_train, y_eval


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_inverted_dropout_keeps_expected_activation(p):
    layer = nn.Dropout(p, generator=np.random.default_rng(0))
    y_train, y_eval = _train_eval(layer, gc.ones(N))
    assert (y_train == 0).mean() == pytest.approx(p, abs=0.005)
    assert y_train.mean() == pytest.approx(1.0, abs=0.02)
    np.testing.assert_array_equal(y_eval, 1.0)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_vanilla_dropout_scales_at_test_time(p):
    layer = nn.Dropout(p, mode="vanilla", generator=np.random.default_rng(0))
    y_train, y_eval = _train_eval(layer, gc.full((N,), 2.0))
    assert set(np.unique(y_train)) == {0.0, 2.0}
    assert y_train.mean() == pytest.approx(2 * (1 - p), abs=0.02)
    np.testing.assert_allclose(y_eval, 2 * (1 - p), rtol=1e-6)


def test_dropout2d_keeps_expected_activation_per_channel():
    layer = nn.Dropout2d(0.3, generator=np.random.default_rng(0))
    y_train, y_eval = _train_eval(layer, gc.ones(2000, 50, 2, 2))
    channel_values = y_train[:, :, 0, 0]
    assert (channel_values == 0).mean() == pytest.approx(0.3, abs=0.01)
    assert y_train.mean() == pytest.approx(1.0, abs=0.02)
    np.testing.assert_array_equal(y_eval, 1.0)
    with pytest.raises(ValueError, match=r"Expected input \(N, C, H, W\)"):
        layer(gc.ones(4, 3))


def test_alpha_dropout_keeps_zero_mean_unit_variance():
    x = gc.tensor(np.random.default_rng(1).standard_normal(N).astype(np.float32))
    layer = nn.AlphaDropout(0.2, generator=np.random.default_rng(0))
    y_train, y_eval = _train_eval(layer, x)
    assert y_train.mean() == pytest.approx(0.0, abs=0.02)
    assert y_train.std() == pytest.approx(1.0, abs=0.02)
    np.testing.assert_array_equal(y_eval, x.numpy())


def test_gaussian_dropout_has_mean_one_and_variance_p_over_q():
    layer = nn.GaussianDropout(0.2, generator=np.random.default_rng(0))
    y_train, y_eval = _train_eval(layer, gc.ones(N))
    assert y_train.mean() == pytest.approx(1.0, abs=0.01)
    assert y_train.var() == pytest.approx(0.25, rel=0.03)
    np.testing.assert_array_equal(y_eval, 1.0)


def test_gaussian_noise_adds_zero_mean_noise_of_given_std():
    layer = nn.GaussianNoise(0.3, generator=np.random.default_rng(0))
    y_train, y_eval = _train_eval(layer, gc.full((N,), 5.0))
    assert y_train.mean() == pytest.approx(5.0, abs=0.01)
    assert y_train.std() == pytest.approx(0.3, rel=0.02)
    np.testing.assert_array_equal(y_eval, 5.0)


@pytest.mark.parametrize("scaling", ["inverted", "original"])
def test_stochastic_depth_expected_branch_output(scaling):
    layer = nn.StochasticDepth(0.25, mode="row", scaling=scaling, generator=np.random.default_rng(0))
    y_train, y_eval = _train_eval(layer, gc.ones(N, 2))
    expected = 1.0 if scaling == "inverted" else 0.75
    assert (y_train[:, 0] == 0).mean() == pytest.approx(0.25, abs=0.005)
    assert y_train.mean() == pytest.approx(expected, abs=0.02)
    np.testing.assert_allclose(y_eval, expected)


def test_dropout_layers_are_identity_in_eval_and_report_p():
    for layer in (nn.Dropout(0.5), nn.Dropout2d(0.5), nn.AlphaDropout(0.5), nn.GaussianDropout(0.5)):
        layer.eval()
        x = gc.randn(2, 3, 2, 2)
        np.testing.assert_array_equal(layer(x).numpy(), x.numpy())
        assert "p=0.5" in repr(layer)


def test_dropout_rejects_invalid_arguments():
    with pytest.raises(ValueError, match=r"Expected a probability p in \[0, 1\]. Received: p=1.5"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="Expected mode 'inverted' or 'vanilla'"):
        nn.Dropout(0.5, mode="classic")
    with pytest.raises(ValueError, match="Expected p in"):
        nn.GaussianDropout(1.0)
    with pytest.raises(ValueError, match="Expected mode 'row' or 'batch'"):
        nn.StochasticDepth(0.1, mode="sample")


def test_dropout_in_a_model_is_reproducible_from_manual_seed():
    model = nn.Sequential(nn.Linear(10, 10), nn.Dropout(0.5))
    x = gc.ones(4, 10)
    gc.manual_seed(5)
    a = model(x).numpy()
    gc.manual_seed(5)
    np.testing.assert_array_equal(model(x).numpy(), a)
