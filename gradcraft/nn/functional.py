"""Stateless functional forms of the layers (``import gradcraft.nn.functional as F``).

As PyTorch's ``torch.nn.functional``: ``F.relu(x)``, ``F.linear(x, W, b)``,
``F.cross_entropy(logits, y)``, ``F.dropout(x, p, training)``, ``F.batch_norm(...)``.
Arguments that select an axis are called ``dim``, as in PyTorch. Random functions take an
optional ``generator`` (``numpy.random.Generator``).
"""

from __future__ import annotations

from typing import Any

from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module
from gradcraft.ops.activation import (
    add_relu,
    elu,
    gelu,
    leaky_relu,
    prelu,
    relu,
    selu,
    sigmoid,
    silu,
    softplus,
    tanh,
)
from gradcraft.ops.activation import log_softmax as _log_softmax
from gradcraft.ops.activation import softmax as _softmax
from gradcraft.ops.conv import conv2d
from gradcraft.ops.dropout import (
    alpha_dropout,
    dropout,
    dropout2d,
    gaussian_dropout,
    gaussian_noise,
    stochastic_depth,
)
from gradcraft.ops.linear import linear, linear_relu
from gradcraft.ops.loss import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    l1_loss,
    mse_loss,
    multi_margin_loss,
    nll_loss,
    smooth_l1_loss,
)
from gradcraft.ops.normalization import batch_norm, batch_norm_relu, layer_norm
from gradcraft.ops.pooling import (
    adaptive_avg_pool2d,
    avg_pool2d,
    fractional_max_pool2d,
    global_avg_pool2d,
    max_pool2d,
)
from gradcraft.ops.shape import flatten

__all__ = [
    "adaptive_avg_pool2d",
    "add_relu",
    "avg_pool2d",
    "conv2d",
    "fractional_max_pool2d",
    "global_avg_pool2d",
    "max_pool2d",
    "alpha_dropout",
    "batch_norm",
    "batch_norm_relu",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "dropout",
    "dropout2d",
    "elu",
    "flatten",
    "gaussian_dropout",
    "gaussian_noise",
    "gelu",
    "huber_loss",
    "l1_loss",
    "layer_norm",
    "leaky_relu",
    "linear",
    "linear_relu",
    "log_softmax",
    "mse_loss",
    "multi_margin_loss",
    "nll_loss",
    "one_hot",
    "prelu",
    "relu",
    "selu",
    "sigmoid",
    "silu",
    "smooth_l1_loss",
    "softmax",
    "softplus",
    "stochastic_depth",
    "swish",
    "tanh",
]


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Softmax along ``dim``: e^(xᵢ) / Σⱼ e^(xⱼ), computed stably."""
    return _softmax(x, dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Log-softmax along ``dim``: xᵢ − log Σⱼ e^(xⱼ), computed stably."""
    return _log_softmax(x, dim)


def swish(x: Tensor, beta: float = 1.0) -> Tensor:
    """x·σ(βx) (``silu`` when β = 1)."""
    return silu(x, beta)


def one_hot(labels: Any, num_classes: int = -1) -> Tensor:
    """Integer labels (any shape) → int64 one-hot of shape (*labels.shape, num_classes)
    (``num_classes=-1``: max label + 1)."""
    data = labels.data if isinstance(labels, Tensor) else labels
    xp = get_array_module(data)
    data = xp.asarray(data)
    if data.dtype.kind not in "iu":
        raise ValueError(f"Expected integer labels. Received: dtype={data.dtype}")
    if num_classes < 0:
        num_classes = int(data.max()) + 1 if data.size else 0
    if data.size and (int(data.min()) < 0 or int(data.max()) >= num_classes):
        raise ValueError(
            f"Expected labels in [0, {num_classes}). Received: range [{int(data.min())}, {int(data.max())}]"
        )
    out = (data[..., None] == xp.arange(num_classes)).astype(xp.int64)
    return Tensor(out)
