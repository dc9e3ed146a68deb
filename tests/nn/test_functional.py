"""The functional namespace F mirrors torch.nn.functional."""

from __future__ import annotations

import numpy as np
import pytest

import gradcraft as gc
import gradcraft.nn.functional as F

torch = pytest.importorskip("torch", reason="PyTorch is the reference for F")


def test_functional_forms_match_torch(rng):
    x = rng.standard_normal((4, 3))
    tx = torch.tensor(x)
    y = rng.integers(0, 3, 4)
    pairs = [
        (F.relu(gc.tensor(x)), torch.relu(tx)),
        (F.softmax(gc.tensor(x), dim=0), torch.softmax(tx, dim=0)),
        (F.log_softmax(gc.tensor(x), dim=1), torch.log_softmax(tx, dim=1)),
        (F.gelu(gc.tensor(x)), torch.nn.functional.gelu(tx)),
        (F.swish(gc.tensor(x)), torch.nn.functional.silu(tx)),
        (F.cross_entropy(gc.tensor(x), y), torch.nn.functional.cross_entropy(tx, torch.tensor(y))),
        (F.linear(gc.tensor(x), gc.tensor(x[:2])), torch.nn.functional.linear(tx, tx[:2])),
        (F.layer_norm(gc.tensor(x), (3,)), torch.nn.functional.layer_norm(tx, (3,))),
    ]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-7)


def test_functional_dropout_respects_training_flag():
    x = gc.ones(100)
    assert F.dropout(x, 0.5, training=False) is x
    assert (F.dropout(x, 0.5, training=True).numpy() == 0).any()


def test_one_hot_matches_torch():
    labels = np.array([[0, 2], [1, 1]])
    np.testing.assert_array_equal(
        F.one_hot(labels, 3).numpy(), torch.nn.functional.one_hot(torch.tensor(labels), 3).numpy()
    )
    assert F.one_hot(np.array([0, 4])).shape == (2, 5)
    with pytest.raises(ValueError, match=r"Expected labels in \[0, 3\)"):
        F.one_hot(np.array([3]), 3)
