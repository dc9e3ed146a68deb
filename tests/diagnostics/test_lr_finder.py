import pytest

import gradcraft
from gradcraft import nn, optim
from gradcraft.diagnostics import check_learning_rate, lr_range_test

from .synthetic import he, mlp, teacher

X, Y = teacher(600, label_noise=0.2)


def _sweep(steps=120):
    gradcraft.manual_seed(0)
    model = mlp([32], nn.ReLU, d=30, weight_init=he)
    return lr_range_test(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), X, Y,
                         start_lr=1e-5, end_lr=100.0, num_steps=steps, batch_size=32)


def test_range_test_finds_descent_then_explosion_and_orders_its_landmarks():
    res = _sweep()
    assert res.descended
    assert res.explode_lr is not None
    assert res.steepest_lr <= res.min_lr < res.explode_lr
    assert res.suggested_lr <= res.min_lr / 10 * 1.0001
    assert len(res.lrs) == len(res.losses) == len(res.smoothed) < 120  # stopped at 4x the best loss


def test_lr_of_10_is_diagnosed_as_divergent_and_a_suggestion_is_made():
    res = _sweep()
    f = check_learning_rate(res, configured_lr=10.0)
    assert f.verdict == "problem" and "diverge" in f.summary
    assert f"{res.suggested_lr:.3g}" in f.remedy
    ok = check_learning_rate(res, configured_lr=res.suggested_lr)
    assert ok.verdict == "ok"
    slow = check_learning_rate(res, configured_lr=res.steepest_lr / 1000)
    assert slow.verdict == "warning" and "slow" in slow.summary


def test_range_test_rejects_bad_ranges():
    model = mlp([4], nn.ReLU)
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="start_lr"):
        lr_range_test(model, nn.CrossEntropyLoss(), opt, X, Y, start_lr=1.0, end_lr=0.1)
    with pytest.raises(ValueError, match="num_steps"):
        lr_range_test(model, nn.CrossEntropyLoss(), opt, X, Y, num_steps=3)
