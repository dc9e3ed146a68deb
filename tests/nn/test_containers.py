"""Sequential, ModuleList, ModuleDict, Identity, Flatten, Unflatten; and summary()."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import gradcraft as gc
from gradcraft import nn


def test_sequential_chains_layers_and_supports_indexing_and_len():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    assert len(model) == 3
    assert isinstance(model[-1], nn.Linear) and model[1] is list(model)[1]
    x = gc.randn(5, 4)
    expected = model[2](model[1](model[0](x)))
    np.testing.assert_array_equal(model(x).numpy(), expected.numpy())
    with pytest.raises(IndexError, match="Expected an index in"):
        model[3]


def test_sequential_slice_shares_layers_and_keeps_names():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    tail = model[1:]
    assert isinstance(tail, nn.Sequential) and len(tail) == 2 and tail[1] is model[2]
    assert list(tail.state_dict()) == ["2.weight", "2.bias"]


def test_sequential_append_insert_delete_and_named_init():
    model = nn.Sequential(OrderedDict(fc=nn.Linear(2, 2), act=nn.Tanh()))
    assert list(model.state_dict()) == ["fc.weight", "fc.bias"]
    model = nn.Sequential(nn.Linear(2, 2))
    model.append(nn.ReLU()).append(nn.Linear(2, 1))
    assert [n for n, _ in model.named_children()] == ["0", "1", "2"]
    model.insert(1, nn.Tanh())
    assert [type(m).__name__ for m in model] == ["Linear", "Tanh", "ReLU", "Linear"]
    del model[1]
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear"]
    with pytest.raises(TypeError, match="Expected a Module in Sequential"):
        nn.Sequential(nn.ReLU(), "relu")


def test_module_list_registers_its_modules():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.Linear(2, 1))
    assert len(layers) == 4 and len(list(layers.parameters())) == 8
    assert "3.weight" in layers.state_dict()
    assert isinstance(layers[1:], nn.ModuleList) and len(layers[1:]) == 3


def test_module_dict_registers_by_key():
    heads = nn.ModuleDict({"cls": nn.Linear(4, 3), "box": nn.Linear(4, 4)})
    assert list(heads) == ["cls", "box"] and "cls" in heads
    assert list(heads.state_dict()) == ["cls.weight", "cls.bias", "box.weight", "box.bias"]
    with pytest.raises(KeyError, match="Expected one of the keys"):
        heads["seg"]


def test_flatten_keeps_batch_axis_and_unflatten_inverts_it():
    x = gc.randn(2, 3, 4, 5)
    flat = nn.Flatten()(x)
    assert flat.shape == (2, 60)
    assert nn.Unflatten(1, (3, 4, 5))(flat).shape == (2, 3, 4, 5)
    assert nn.Flatten(0, -1)(x).shape == (120,)
    with pytest.raises(ValueError, match="Expected dimension 1 of size 12"):
        nn.Unflatten(1, (3, 4))(flat)


def test_identity_returns_its_input():
    x = gc.randn(3)
    assert nn.Identity(54, unused="x")(x) is x


def test_summary_lists_layers_shapes_and_parameter_counts(capsys):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    model.train()
    result = nn.summary(model, (2, 3, 4))
    assert [(r.name, r.type, r.output_shape, r.num_params) for r in result.rows] == [
        ("0", "Flatten", (2, 12), 0),
        ("1", "Linear", (2, 8), 104),
        ("2", "BatchNorm1d", (2, 8), 16),
        ("3", "ReLU", (2, 8), 0),
        ("4", "Linear", (2, 3), 27),
    ]
    assert result.total_params == 147 == model.num_parameters()
    assert model.training and int(model[2].num_batches_tracked.item()) == 0  # untouched
    out = capsys.readouterr().out
    assert "Total params: 147" in out and "1 (Linear)" in out
    assert "Output shape: (2, 3)" in str(result)
