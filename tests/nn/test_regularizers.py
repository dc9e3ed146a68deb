"""L1 / L2 / elastic-net penalties, activation L1 and the max-norm constraint."""

from __future__ import annotations

import numpy as np
import pytest

import gradcraft as gc
from gradcraft import nn


def _model():
    return nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.PReLU(), nn.Linear(5, 3))


def _weights(model):
    return [model[0].weight.numpy().astype(np.float64), model[3].weight.numpy().astype(np.float64)]


def test_penalties_cover_weights_only_by_default():
    model = _model()
    names = [n for n, _ in nn.regularizers.select_parameters(model)]
    assert names == ["0.weight", "3.weight"]


def test_l2_is_lambda_times_squared_norm_with_gradient_two_lambda_w():
    model = _model()
    value = nn.L2(0.1)(model)
    assert value.item() == pytest.approx(0.1 * sum((w**2).sum() for w in _weights(model)), rel=1e-5)
    value.backward()
    np.testing.assert_allclose(model[0].weight.grad, 2 * 0.1 * model[0].weight.numpy(), rtol=1e-6)
    assert model[0].bias.grad is None and model[1].weight.grad is None and model[2].weight.grad is None


def test_l2_half_convention_has_gradient_lambda_w():
    model = _model()
    value = nn.L2(0.1, half=True)(model)
    assert value.item() == pytest.approx(0.05 * sum((w**2).sum() for w in _weights(model)), rel=1e-5)
    value.backward()
    np.testing.assert_allclose(model[3].weight.grad, 0.1 * model[3].weight.numpy(), rtol=1e-6)


def test_l1_is_lambda_times_abs_sum_with_sign_gradient():
    model = _model()
    value = nn.L1(0.01)(model)
    assert value.item() == pytest.approx(0.01 * sum(np.abs(w).sum() for w in _weights(model)), rel=1e-5)
    value.backward()
    np.testing.assert_allclose(model[0].weight.grad, 0.01 * np.sign(model[0].weight.numpy()), rtol=1e-6)


def test_elastic_net_combines_both_with_separate_strengths():
    model = _model()
    value = nn.ElasticNet(l1=0.01, l2=0.2)(model)
    ws = _weights(model)
    expected = 0.01 * sum(np.abs(w).sum() for w in ws) + 0.2 * sum((w**2).sum() for w in ws)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    w = model[3].weight.numpy()
    np.testing.assert_allclose(model[3].weight.grad, 0.01 * np.sign(w) + 0.4 * w, rtol=1e-5)


def test_penalty_adds_to_data_loss_gradient():
    model = nn.Sequential(nn.Linear(3, 2))
    x, y = gc.randn(4, 3), np.array([0, 1, 1, 0])
    nn.CrossEntropyLoss()(model(x), y).backward()
    data_grad = model[0].weight.grad.copy()
    model.zero_grad()
    (nn.CrossEntropyLoss()(model(x), y) + nn.L2(0.5)(model)).backward()
    np.testing.assert_allclose(
        model[0].weight.grad, data_grad + model[0].weight.numpy(), rtol=1e-5, atol=1e-7
    )


def test_custom_include_and_parameter_lists():
    model = _model()
    everything = nn.L2(1.0, include=lambda name, p: True)(model).item()
    expected = sum((p.numpy().astype(np.float64) ** 2).sum() for p in model.parameters())
    assert everything == pytest.approx(expected, rel=1e-5)
    only = nn.L1(1.0)([model[3].bias]).item()
    assert only == pytest.approx(np.abs(model[3].bias.numpy()).sum(), rel=1e-5)
    assert nn.L2(1.0)(nn.Sequential(nn.ReLU())).item() == 0.0
    with pytest.raises(ValueError, match="Expected a non-negative regularization strength"):
        nn.L2(-1.0)


def test_activation_l1_penalizes_hooked_layer_outputs():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    act = nn.ActivationL1(0.1, ["1"], model=model)
    x = gc.randn(8, 4)
    with gc.no_grad():  # not recorded: the hooks only collect from training passes with grad
        hidden = model[1](model[0](x)).numpy()
    model(x)
    penalty = act()
    assert penalty.item() == pytest.approx(0.1 * np.abs(hidden).sum() / 8, rel=1e-5)
    penalty.backward()
    assert model[0].weight.grad is not None and model[2].weight.grad is None
    assert act().item() == 0.0  # cleared after reading


def test_activation_l1_ignores_eval_and_no_grad_passes_and_can_be_removed():
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
    act = nn.ActivationL1(0.1, [model[1]])
    with gc.no_grad():
        model(gc.randn(2, 4))
    model.eval()
    model(gc.randn(2, 4))
    assert act().item() == 0.0
    model.train()
    act.remove()
    model(gc.randn(2, 4))
    assert act().item() == 0.0


def test_max_norm_rescales_rows_above_the_limit_only():
    lin = nn.Linear(3, 4, bias=True)
    lin.weight.data[...] = np.array([[3, 4, 0], [0.1, 0, 0], [0, 0, 10], [1, 1, 1]], dtype=np.float32)
    bias = lin.bias.numpy().copy()
    nn.MaxNorm(2.0).apply(lin)
    norms = np.linalg.norm(lin.weight.numpy(), axis=1)
    np.testing.assert_allclose(norms, [2.0, 0.1, 2.0, np.sqrt(3)], rtol=1e-6)
    np.testing.assert_allclose(lin.weight.numpy()[0], [1.2, 1.6, 0], rtol=1e-6)
    np.testing.assert_array_equal(lin.bias.numpy(), bias)


def test_max_norm_on_conv_shaped_weights_uses_each_filter():
    w = nn.Parameter(np.ones((2, 3, 2, 2)) * np.array([1.0, 0.1]).reshape(2, 1, 1, 1))
    nn.MaxNorm(1.0).apply([w])
    np.testing.assert_allclose(
        np.linalg.norm(w.numpy().reshape(2, -1), axis=1), [1.0, 0.1 * np.sqrt(12)], rtol=1e-6
    )
