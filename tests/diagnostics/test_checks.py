import numpy as np
import pytest

import gradcraft
from gradcraft import nn
from gradcraft.diagnostics import (
    ActivationRecorder,
    check_activations,
    check_class_balance,
    check_duplicates,
    check_gradients,
    check_initial_loss,
    check_input_scaling,
    parameter_stats,
)
from gradcraft.diagnostics._common import fitting_init, model_kinds

from .synthetic import blobs, he, mlp, normal

X, Y = blobs(256)


def _at_init(model):
    """Activation stats and parameter stats after one forward/backward on the blobs."""
    with ActivationRecorder(model) as rec:
        out = model(gradcraft.Tensor(X))
    nn.CrossEntropyLoss()(out, gradcraft.Tensor(Y)).backward()
    return rec.stats(), parameter_stats(model), fitting_init(model_kinds(model))


def _by_check(findings):
    return {f.check: f for f in findings}


# ---------------------------------------------------------------- pathological inits
def test_deep_sigmoid_net_with_unit_gaussian_init_is_saturated():
    stats, _, _ = _at_init(mlp([100] * 6, nn.Sigmoid, weight_init=normal(1.0)))
    f = _by_check(check_activations(stats))["activations.saturation"]
    assert f.verdict == "problem"
    assert "Xavier" in f.remedy and "xavier_normal" in f.remedy
    assert "sigmoid" in f.summary


def test_relu_net_with_large_negative_biases_has_dead_units():
    stats, params, hint = _at_init(mlp([64] * 3, nn.ReLU, weight_init=he, bias=-10.0))
    found = _by_check(check_activations(stats))
    assert found["activations.dead"].verdict == "problem"
    assert "biases" in found["activations.dead"].remedy
    assert "activations.depth" not in found  # the dead units already explain the zeros
    assert _by_check(check_gradients(params, init_hint=hint))["gradients"].verdict == "problem"


def test_small_gaussian_init_in_a_ten_layer_tanh_net_collapses_activations_and_gradients():
    stats, params, hint = _at_init(mlp([100] * 10, nn.Tanh, weight_init=normal(0.01)))
    depth = _by_check(check_activations(stats))["activations.depth"]
    assert depth.verdict == "problem" and "collapse" in depth.summary
    assert "Xavier" in depth.remedy
    grads = _by_check(check_gradients(params, init_hint=hint))["gradients"]
    assert grads.verdict == "problem" and "vanish" in grads.summary and "Xavier" in grads.remedy


@pytest.mark.parametrize(("act", "init"), [(nn.ReLU, he), (nn.Tanh, nn.init.xavier_normal_)])
def test_fitting_init_in_a_ten_layer_net_is_healthy(act, init):
    stats, params, hint = _at_init(mlp([100] * 10, act, weight_init=init))
    findings = check_activations(stats) + check_gradients(params, init_hint=hint)
    assert all(f.verdict != "problem" for f in findings), [f.line() for f in findings]


def test_fitting_init_names_xavier_for_tanh_and_he_for_relu():
    assert fitting_init(["tanh", "tanh"])[0] == "xavier_normal"
    assert fitting_init(["relu"])[0] == "kaiming_normal"


# ---------------------------------------------------------------- initial loss
def test_initial_loss_is_ln_c_for_a_small_init_and_regularization_raises_it():
    model = mlp([32], nn.ReLU, weight_init=normal(0.01))
    found = check_initial_loss(model, nn.CrossEntropyLoss(), X, Y, 5, regularizers=[nn.L2(1e-3)])
    assert found[0].verdict == "ok" and abs(found[0].details["loss"] - np.log(5)) < 0.05
    assert found[1].check == "initial_loss.regularization" and found[1].verdict == "ok"
    assert "raises" in found[1].summary


def test_huge_output_weights_make_the_initial_loss_a_problem():
    model = mlp([32], nn.ReLU, weight_init=he)
    model[2].weight.data[...] *= 30
    f = check_initial_loss(model, nn.CrossEntropyLoss(), X, Y, 5)[0]
    assert f.verdict == "problem" and "logits" in f.summary


def test_a_penalty_larger_than_the_data_loss_is_a_warning():
    model = mlp([32], nn.ReLU, weight_init=he)
    found = check_initial_loss(model, nn.CrossEntropyLoss(), X, Y, 5, regularizers=[nn.L2(10.0)])
    assert found[1].verdict == "warning" and "larger than the data loss" in found[1].summary


# ---------------------------------------------------------------- data
def test_raw_pixels_are_a_scaling_problem_and_positive_inputs_a_warning():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (500, 1, 8, 8)).astype(np.float32)
    raw = check_input_scaling(pixels)
    assert raw.verdict == "problem" and "raw pixel" in raw.summary
    scaled = check_input_scaling(pixels / 255)
    assert scaled.verdict == "warning" and "always positive" in scaled.summary
    standardized = check_input_scaling((pixels - pixels.mean()) / pixels.std())
    assert standardized.verdict == "ok"


def test_class_imbalance_grades_by_ratio_and_missing_classes():
    assert check_class_balance(np.repeat(np.arange(3), [100, 90, 95])).verdict == "ok"
    assert check_class_balance(np.repeat(np.arange(3), [100, 20, 95])).verdict == "warning"
    assert check_class_balance(np.repeat(np.arange(3), [100, 5, 95])).verdict == "problem"
    missing = check_class_balance(np.array([0, 0, 2]), num_classes=3)
    assert missing.verdict == "problem" and "[1]" in missing.summary


def test_duplicates_between_train_and_test_are_found_by_row_hashes():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (200, 1, 4, 4)).astype(np.uint8)
    test = rng.integers(0, 256, (50, 1, 4, 4)).astype(np.uint8)
    clean = check_duplicates(train, test)
    assert clean.verdict == "ok" and clean.details["test_in_train"] == 0
    test[:5] = train[10:15]
    dup = check_duplicates(train, test)
    assert dup.verdict == "warning" and dup.details["test_in_train"] == 5
    assert "5 of 50" in dup.summary


def test_sigmoid_hidden_layers_are_not_zero_centred_and_shrink_gradients():
    stats, params, hint = _at_init(mlp([100] * 4, nn.Sigmoid, weight_init=nn.init.xavier_normal_))
    found = _by_check(check_activations(stats))
    assert found["activations.centering"].verdict == "warning"
    assert "tanh or ReLU" in found["activations.centering"].remedy
    grads = _by_check(check_gradients(params, init_hint=hint))["gradients"]
    assert grads.verdict == "warning" and "shrink" in grads.summary
