"""Invalid hyperparameters and parameter lists fail early with errors that say what was
expected and what was received."""

from __future__ import annotations

import numpy as np
import pytest

import gradcraft as gc
import gradcraft.optim as optim
from gradcraft.nn import Parameter

ALL = [
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "NAdam",
    "RAdam",
    "Rprop",
    "ASGD",
    "LBFGS",
]


def _params(n=2):
    return [Parameter(np.ones((2, 3), dtype=np.float32)) for _ in range(n)]


@pytest.mark.parametrize("name", ALL)
def test_negative_learning_rate_is_rejected(name):
    with pytest.raises(ValueError, match=r"Expected lr >= 0\. Received: lr=-1"):
        getattr(optim, name)(_params(), lr=-1)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "Adamax", "NAdam", "RAdam"])
@pytest.mark.parametrize("betas", [(1.0, 0.999), (0.9, 1.0), (-0.1, 0.999), (0.9, 1.5)])
def test_betas_outside_unit_interval_are_rejected(name, betas):
    with pytest.raises(ValueError, match=r"Expected 0 <= betas\[[01]\] < 1\. Received: betas="):
        getattr(optim, name)(_params(), betas=betas)


def test_betas_must_be_a_pair():
    with pytest.raises(ValueError, match="Expected betas to be a tuple of 2 numbers"):
        optim.Adam(_params(), betas=0.9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"momentum": 0.0, "nesterov": True},
            "Expected momentum > 0 and dampening = 0 for Nesterov momentum",
        ),
        ({"momentum": 0.9, "dampening": 0.1, "nesterov": True}, "Received: momentum=0.9, dampening=0.1"),
        ({"momentum": -0.5}, r"Expected momentum >= 0\. Received: momentum=-0.5"),
        ({"weight_decay": -1e-4}, r"Expected weight_decay >= 0\. Received: weight_decay=-0.0001"),
        ({"momentum_form": "keras"}, "Expected momentum_form to be one of"),
        ({"lr": "fast"}, "Expected lr to be a real number"),
        ({"lr": float("nan")}, "not NaN"),
    ],
)
def test_sgd_bad_combinations(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optim.SGD(_params(), **kwargs)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("Adam", {"eps": -1e-8}, "Expected eps >= 0"),
        ("RMSprop", {"alpha": -0.1}, "Expected alpha >= 0"),
        ("RMSprop", {"momentum": -0.1}, "Expected momentum >= 0"),
        ("Adagrad", {"lr_decay": -1.0}, "Expected lr_decay >= 0"),
        ("Adagrad", {"initial_accumulator_value": -1.0}, "Expected initial_accumulator_value >= 0"),
        ("Adadelta", {"rho": 1.5}, r"Expected 0 <= rho <= 1\. Received: rho=1.5"),
        ("NAdam", {"momentum_decay": -1.0}, "Expected momentum_decay >= 0"),
        ("Rprop", {"etas": (1.2, 0.5)}, r"Expected 0 < etas\[0\] < 1 < etas\[1\]"),
        ("Rprop", {"step_sizes": (1.0, 0.1)}, "Expected 0 <= step_sizes"),
        ("ASGD", {"lambd": -1.0}, "Expected lambd >= 0"),
        ("LBFGS", {"max_iter": 0}, "Expected an integer max_iter >= 1"),
        ("LBFGS", {"history_size": 0}, "Expected an integer history_size >= 1"),
    ],
)
def test_other_hyperparameters_are_validated(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(optim, name)(_params(), **kwargs)


def test_empty_parameter_list_is_rejected():
    with pytest.raises(ValueError, match=r"Expected at least one parameter to optimize\. Received: an empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Expected at least one parameter"):
        optim.Adam(iter([]))


def test_a_parameter_in_two_groups_is_rejected():
    a, b = _params()
    with pytest.raises(ValueError, match=r"only one parameter group. Received: .*param_groups\[0\]"):
        optim.SGD([{"params": [a, b]}, {"params": [b], "lr": 0.01}], lr=0.1)
    opt = optim.SGD([a], lr=0.1)
    with pytest.raises(ValueError, match="only one parameter group"):
        opt.add_param_group({"params": [a]})


def test_a_repeated_parameter_is_rejected():
    a, _ = _params()
    with pytest.raises(ValueError, match="Expected each parameter once"):
        optim.Adam([a, a])


def test_non_tensors_sets_non_leaves_and_integer_tensors_are_rejected():
    a, b = _params()
    with pytest.raises(TypeError, match="Expected Tensors"):
        optim.SGD([np.ones(3)], lr=0.1)
    with pytest.raises(TypeError, match="a set"):
        optim.SGD({a, b}, lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.SGD(a, lr=0.1)
    with pytest.raises(ValueError, match="Expected leaf tensors"):
        optim.SGD([a * 2], lr=0.1)
    with pytest.raises(ValueError, match="Expected floating-point parameters"):
        optim.SGD([gc.tensor(np.arange(3))], lr=0.1)


def test_group_hyperparameters_are_validated_too():
    a, b = _params()
    with pytest.raises(ValueError, match=r"Expected lr >= 0\. Received: lr=-0.5"):
        optim.Adam([{"params": [a]}, {"params": [b], "lr": -0.5}])
    opt = optim.Adam([a])
    with pytest.raises(ValueError, match="betas"):
        opt.add_param_group({"params": [b], "betas": (0.9, 1.0)})
    assert len(opt.param_groups) == 1


def test_named_parameters_are_accepted_and_names_kept():
    a, b = _params()
    opt = optim.SGD([("layer.weight", a), ("layer.bias", b)], lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["layer.weight", "layer.bias"]
    assert opt.param_groups[0]["params"] == [a, b]
    with pytest.raises(ValueError, match="all without"):
        optim.SGD([("w", a), b], lr=0.1)
