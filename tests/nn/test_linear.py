"""Linear, Maxout and DropConnect layers."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcraft as gc
from gradcraft import nn
from gradcraft.backend import default_dtype_as

torch = pytest.importorskip("torch", reason="PyTorch is the reference for Linear")


def test_linear_matches_torch_with_copied_weights(rng):
    tlin = torch.nn.Linear(5, 3).double()
    with default_dtype_as(np.float64):
        lin = nn.Linear(5, 3)
    lin.load_state_dict(tlin.state_dict())
    x = rng.standard_normal((4, 2, 5))
    ours, theirs = gc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, ref = lin(ours), tlin(theirs)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=1e-12)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(lin.weight.grad, tlin.weight.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(lin.bias.grad, tlin.bias.grad.numpy(), atol=1e-12)


def test_linear_passes_gradcheck_in_float64(rng):
    with default_dtype_as(np.float64):
        lin = nn.Linear(3, 2)
    assert gc.gradcheck(lambda x: lin(x), [rng.standard_normal((4, 3))])


def test_linear_default_init_is_pytorch_uniform_bound():
    lin = nn.Linear(400, 300, generator=np.random.default_rng(0))
    bound = 1 / math.sqrt(400)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    assert lin.weight.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    assert np.abs(b).max() <= bound


def test_linear_named_init_and_zero_bias():
    lin = nn.Linear(256, 512, init="kaiming_normal", generator=np.random.default_rng(0))
    assert lin.weight.numpy().std() == pytest.approx(math.sqrt(2 / 256), rel=0.02)
    assert np.all(lin.bias.numpy() == 0)
    lin = nn.Linear(4, 4, init=nn.init.orthogonal_)
    np.testing.assert_allclose(lin.weight.numpy() @ lin.weight.numpy().T, np.eye(4), atol=1e-6)
    with pytest.raises(ValueError, match="Expected init in"):
        nn.Linear(2, 2, init="glorot")


def test_linear_without_bias_and_repr():
    lin = nn.Linear(3, 2, bias=False)
    assert lin.bias is None and list(lin.state_dict()) == ["weight"]
    assert repr(lin) == "Linear(in_features=3, out_features=2, bias=False)"
    with pytest.raises(ValueError, match="Expected a positive integer for in_features"):
        nn.Linear(0, 2)


def test_maxout_is_max_over_pieces_and_passes_gradcheck(rng):
    with default_dtype_as(np.float64):
        layer = nn.Maxout(4, 3, pieces=5)
    x = rng.standard_normal((6, 4))
    z = x @ layer.weight.numpy().T + layer.bias.numpy()
    np.testing.assert_allclose(layer(gc.tensor(x)).numpy(), z.reshape(6, 3, 5).max(axis=2), atol=1e-12)
    assert layer.weight.shape == (15, 4)
    assert gc.gradcheck(lambda a: layer(a), [x[:3]])


def test_dropconnect_uses_expected_weights_at_test_time(rng):
    x = gc.tensor(rng.standard_normal((8, 10)))
    for mode in ("inverted", "vanilla"):
        layer = nn.DropConnect(10, 4, p=0.4, mode=mode, generator=np.random.default_rng(0))
        layer.eval()
        scale = 1.0 if mode == "inverted" else 0.6
        expected = x.numpy() @ (scale * layer.weight.numpy()).T + layer.bias.numpy()
        np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-5, atol=1e-6)
        layer.train()
        mean = np.mean([layer(x).numpy() for _ in range(2000)], axis=0)
        np.testing.assert_allclose(mean, expected, atol=0.1)


def test_dropconnect_drops_weights_and_passes_gradcheck(rng):
    with default_dtype_as(np.float64):
        layer = nn.DropConnect(5, 3, p=0.5)

    def fn(x):
        layer.generator = np.random.default_rng(1)  # the same mask on every call
        return layer(x)

    assert gc.gradcheck(fn, [rng.standard_normal((4, 5))])
    x = gc.tensor(np.eye(5))
    layer.generator = np.random.default_rng(2)
    w_eff = (layer(x).numpy() - layer.bias.numpy()).T
    kept = w_eff != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(w_eff[kept], 2 * layer.weight.numpy()[kept])


def test_reset_parameters_redraws_with_the_layer_init():
    lin = nn.Linear(50, 40, init="xavier_uniform")
    before = lin.weight.numpy().copy()
    lin.bias.data[...] = 1.0
    lin.reset_parameters(np.random.default_rng(3))
    assert not np.allclose(lin.weight.numpy(), before)
    assert np.abs(lin.weight.numpy()).max() <= math.sqrt(6 / 90) + 1e-7
    np.testing.assert_array_equal(lin.bias.numpy(), 0.0)
