"""Initialization schemes: bounds, variances, fans, gains, and their effect on deep nets."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcraft as gc
from gradcraft.nn import init


def _param(*shape):
    return gc.zeros(*shape)


def test_fans_of_linear_and_conv_weights():
    assert init._calculate_fan_in_and_fan_out(_param(30, 20)) == (20, 30)
    assert init._calculate_fan_in_and_fan_out(_param(16, 3, 5, 5)) == (75, 400)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init._calculate_fan_in_and_fan_out(_param(5))


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch", reason="reference gains")
    for name in ("linear", "conv2d", "sigmoid", "tanh", "relu", "selu"):
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.2)
    )
    with pytest.raises(ValueError, match="Expected nonlinearity in"):
        init.calculate_gain("swish")


@pytest.mark.parametrize(
    ("fill", "expected_std"),
    [
        (lambda w, g: init.xavier_uniform_(w, generator=g), math.sqrt(2 / (200 + 300))),
        (lambda w, g: init.xavier_normal_(w, gain=2.0, generator=g), 2 * math.sqrt(2 / (200 + 300))),
        (lambda w, g: init.kaiming_normal_(w, nonlinearity="relu", generator=g), math.sqrt(2 / 200)),
        (lambda w, g: init.kaiming_uniform_(w, nonlinearity="relu", generator=g), math.sqrt(2 / 200)),
        (
            lambda w, g: init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", generator=g),
            math.sqrt(2 / 300),
        ),
        (lambda w, g: init.kaiming_normal_(w, a=0.1, generator=g), math.sqrt(2 / 1.01 / 200)),
        (lambda w, g: init.lecun_normal_(w, generator=g), math.sqrt(1 / 200)),
        (lambda w, g: init.lecun_uniform_(w, generator=g), math.sqrt(1 / 200)),
        (lambda w, g: init.small_random_(w, generator=g), 0.01),
        (lambda w, g: init.normal_(w, 0.0, 0.5, generator=g), 0.5),
        (lambda w, g: init.uniform_(w, -1.0, 1.0, generator=g), 1 / math.sqrt(3)),
        (lambda w, g: init.trunc_normal_(w, std=1.0, a=-1.0, b=1.0, generator=g), 0.5376),
    ],
    ids=[
        "xavier_u",
        "xavier_n",
        "he_n",
        "he_u",
        "he_fan_out",
        "leaky",
        "lecun_n",
        "lecun_u",
        "small",
        "normal",
        "uniform",
        "trunc",
    ],
)
def test_init_has_the_documented_standard_deviation(fill, expected_std):
    w = _param(300, 200)
    assert fill(w, np.random.default_rng(0)) is w
    data = w.numpy()
    assert data.dtype == np.float32
    assert abs(data.mean()) < 0.02 * expected_std * 10
    assert data.std() == pytest.approx(expected_std, rel=0.02)


def test_uniform_schemes_respect_their_bounds():
    w = _param(64, 32)
    init.xavier_uniform_(w, generator=np.random.default_rng(0))
    assert np.abs(w.numpy()).max() <= math.sqrt(6 / 96) + 1e-7
    init.kaiming_uniform_(w, a=math.sqrt(5), generator=np.random.default_rng(0))
    assert np.abs(w.numpy()).max() <= 1 / math.sqrt(32) + 1e-7


def test_orthogonal_gives_orthonormal_rows_or_columns():
    for shape in ((4, 9), (9, 4), (6, 2, 3)):
        w = _param(*shape)
        init.orthogonal_(w, gain=2.0, generator=np.random.default_rng(0))
        m = w.numpy().reshape(shape[0], -1).astype(np.float64)
        small = min(m.shape)
        gram = m @ m.T if m.shape[0] == small else m.T @ m
        np.testing.assert_allclose(gram, 4 * np.eye(small), atol=1e-5)


def test_constant_zeros_ones_fill():
    w = _param(3, 2)
    np.testing.assert_array_equal(init.constant_(w, 0.3).numpy(), np.float32(0.3))
    np.testing.assert_array_equal(init.ones_(w).numpy(), 1)
    np.testing.assert_array_equal(init.zeros_(w).numpy(), 0)


def test_init_without_generator_uses_the_seeded_library_generator():
    gc.manual_seed(11)
    a = init.xavier_normal_(_param(5, 5)).numpy().copy()
    gc.manual_seed(11)
    b = init.xavier_normal_(_param(5, 5)).numpy()
    np.testing.assert_array_equal(a, b)


def _layer_stds(weight_init, act, layers=10, width=256, batch=500):
    rng = np.random.default_rng(0)
    h = rng.standard_normal((batch, width))
    stds = []
    for _ in range(layers):
        w = gc.zeros(width, width, dtype=np.float64)
        weight_init(w, rng)
        h = act(h @ w.numpy().T)
        stds.append(h.std())
    return np.array(stds)


def test_xavier_keeps_tanh_activations_alive_through_ten_layers():
    stds = _layer_stds(
        lambda w, g: init.xavier_normal_(w, gain=init.calculate_gain("tanh"), generator=g), np.tanh
    )
    assert np.all(stds > 0.5) and np.all(stds < 1.0)
    assert stds[-1] / stds[0] > 0.7


def test_he_keeps_relu_activation_scale_through_ten_layers():
    stds = _layer_stds(
        lambda w, g: init.kaiming_normal_(w, nonlinearity="relu", generator=g), lambda z: np.maximum(z, 0)
    )
    assert np.all(stds > 0.5) and np.all(stds < 1.5)
    assert 0.6 < stds[-1] / stds[0] < 1.6


def test_small_random_init_collapses_activations_layer_by_layer():
    stds = _layer_stds(lambda w, g: init.small_random_(w, generator=g), np.tanh)
    # each layer multiplies the scale by about 0.01·√256 = 0.16
    ratios = stds[1:] / stds[:-1]
    np.testing.assert_allclose(ratios, 0.16, rtol=0.1)
    assert stds[-1] < 1e-6
