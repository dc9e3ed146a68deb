"""Activation layers against PyTorch's modules (values, input and parameter gradients)."""

from __future__ import annotations

import numpy as np
import pytest

import gradcraft as gc
from gradcraft import nn
from gradcraft.backend import default_dtype_as
from tests.ops._cases import away_from

torch = pytest.importorskip("torch", reason="PyTorch is the reference for activations")

PAIRS = [
    (lambda: nn.ReLU(), lambda: torch.nn.ReLU()),
    (lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid()),
    (lambda: nn.Tanh(), lambda: torch.nn.Tanh()),
    (lambda: nn.LeakyReLU(), lambda: torch.nn.LeakyReLU()),
    (lambda: nn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2)),
    (lambda: nn.ELU(), lambda: torch.nn.ELU()),
    (lambda: nn.ELU(0.5), lambda: torch.nn.ELU(0.5)),
    (lambda: nn.SELU(), lambda: torch.nn.SELU()),
    (lambda: nn.GELU(), lambda: torch.nn.GELU()),
    (lambda: nn.GELU("tanh"), lambda: torch.nn.GELU("tanh")),
    (lambda: nn.SiLU(), lambda: torch.nn.SiLU()),
    (lambda: nn.Swish(), lambda: torch.nn.SiLU()),
    (lambda: nn.Softplus(), lambda: torch.nn.Softplus()),
    (lambda: nn.Softplus(beta=2, threshold=3), lambda: torch.nn.Softplus(beta=2, threshold=3)),
    (lambda: nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1)),
    (lambda: nn.LogSoftmax(dim=-1), lambda: torch.nn.LogSoftmax(dim=-1)),
    (lambda: nn.PReLU(), lambda: torch.nn.PReLU()),
    (lambda: nn.PReLU(3, init=0.1), lambda: torch.nn.PReLU(3, init=0.1)),
]
IDS = [
    "relu",
    "sigmoid",
    "tanh",
    "leaky",
    "leaky0.2",
    "elu",
    "elu0.5",
    "selu",
    "gelu",
    "gelu_tanh",
    "silu",
    "swish",
    "softplus",
    "softplus_b2",
    "softmax",
    "log_softmax",
    "prelu",
    "prelu_c",
]


@pytest.mark.parametrize(("make", "make_torch"), PAIRS, ids=IDS)
def test_activation_module_matches_torch(make, make_torch, rng):
    with default_dtype_as(np.float64):
        layer = make()
    tlayer = make_torch().double()
    if list(tlayer.state_dict()):
        layer.load_state_dict(tlayer.state_dict())
    x = away_from(rng.standard_normal((4, 3, 2)) * 2, [0.0, 1.5])
    ours, theirs = gc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, ref = layer(ours), tlayer(theirs)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-6, atol=1e-6)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-6, atol=1e-6)
    for (name, p), tp in zip(layer.named_parameters(), tlayer.parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize(("make", "make_torch"), PAIRS, ids=IDS)
def test_activation_module_passes_gradcheck(make, make_torch, rng):
    with default_dtype_as(np.float64):
        layer = make()
    x = away_from(rng.standard_normal((2, 3)) * 2, [0.0, 1.5])
    assert gc.gradcheck(lambda a: layer(a), [x])


def test_selu_constants_are_exact():
    from gradcraft.ops.activation import SELU_ALPHA, SELU_SCALE

    assert SELU_ALPHA == 1.6732632423543772
    assert SELU_SCALE == 1.0507009873554805


def test_selu_with_lecun_init_keeps_activations_normalized():
    rng = np.random.default_rng(0)
    h = gc.tensor(rng.standard_normal((500, 256)))
    for _ in range(8):
        lin = nn.Linear(256, 256, init="lecun_normal", generator=rng, dtype=np.float64)
        h = nn.SELU()(lin(h))
    assert abs(h.numpy().mean()) < 0.1 and 0.85 < h.numpy().std() < 1.15


def test_prelu_parameter_shape_and_repr():
    layer = nn.PReLU(4)
    assert layer.weight.shape == (4,) and np.all(layer.weight.numpy() == np.float32(0.25))
    assert repr(layer) == "PReLU(num_parameters=4)"
    with pytest.raises(ValueError, match="Expected input with 4 channels"):
        layer(gc.randn(2, 3))
