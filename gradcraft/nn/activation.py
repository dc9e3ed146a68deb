"""Activation layers: thin modules over the Functions in :mod:`gradcraft.ops.activation`.

All act elementwise and keep the input's shape, except ``Softmax`` / ``LogSoftmax`` which
normalize along ``dim``. ``PReLU`` is the only one with a parameter (α, init 0.25).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd.tensor import Tensor
from gradcraft.nn.module import Module, Parameter
from gradcraft.ops import activation as A

__all__ = [
    "ELU",
    "GELU",
    "LeakyReLU",
    "LogSoftmax",
    "PReLU",
    "ReLU",
    "SELU",
    "SiLU",
    "Sigmoid",
    "Softmax",
    "Softplus",
    "Swish",
    "Tanh",
]


class ReLU(Module):
    """y = max(0, x)."""

    def forward(self, x: Tensor) -> Tensor:
        return A.relu(x)


class Sigmoid(Module):
    """y = 1 / (1 + e⁻ˣ)."""

    def forward(self, x: Tensor) -> Tensor:
        return A.sigmoid(x)


class Tanh(Module):
    """y = tanh x."""

    def forward(self, x: Tensor) -> Tensor:
        return A.tanh(x)


class LeakyReLU(Module):
    """y = x if x > 0 else ``negative_slope``·x (default 0.01, Maas et al. 2013)."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x: Tensor) -> Tensor:
        return A.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class PReLU(Module):
    """Parametric ReLU (He et al., 2015): y = x if x > 0 else α·x with learnable α.

    Args:
        num_parameters: 1 (one α shared by all channels) or the number of channels C of an
            input (N, C, *), one α per channel (axis 1), as PyTorch.
        init: initial α (0.25).

    Parameter: ``weight`` of shape (num_parameters,). Note: weight decay on α is usually
    unwanted; the regularizers here skip 1-D parameters by default.
    """

    def __init__(self, num_parameters: int = 1, init: float = 0.25, dtype: Any = None) -> None:
        super().__init__()
        if (
            isinstance(num_parameters, bool)
            or not isinstance(num_parameters, (int, np.integer))
            or num_parameters < 1
        ):
            raise ValueError(
                f"Expected a positive integer num_parameters. Received: num_parameters={num_parameters!r}"
            )
        self.num_parameters = int(num_parameters)
        dt = backend.default_dtype() if dtype is None else np.dtype(dtype)
        self.weight = Parameter(np.full((self.num_parameters,), init, dtype=dt))

    def forward(self, x: Tensor) -> Tensor:
        return A.prelu(x, self.weight)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class ELU(Module):
    """y = x if x > 0 else α(eˣ − 1) (Clevert et al., 2016), α = 1 by default."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x: Tensor) -> Tensor:
        return A.elu(x, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class SELU(Module):
    """y = λ·(x if x > 0 else α(eˣ − 1)) with α = 1.6732632423543772, λ = 1.0507009873554805
    (Klambauer et al., 2017). Pair with ``lecun_normal_`` init and ``AlphaDropout``."""

    def forward(self, x: Tensor) -> Tensor:
        return A.selu(x)


class GELU(Module):
    """y = x·Φ(x), Φ the standard normal CDF (exact, via erf), or its tanh approximation
    ½x(1 + tanh(√(2/π)(x + 0.044715x³))) with ``approximate="tanh"``."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"Expected approximate 'none' or 'tanh'. Received: approximate={approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return A.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """SiLU (sigmoid-weighted linear unit): y = x·σ(x)."""

    def forward(self, x: Tensor) -> Tensor:
        return A.silu(x)


class Swish(Module):
    """Swish (Ramachandran et al., 2017): y = x·σ(βx) with a fixed β (β = 1 is SiLU)."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = float(beta)

    def forward(self, x: Tensor) -> Tensor:
        return A.silu(x, self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class Softplus(Module):
    """y = (1/β)·ln(1 + e^(βx)), linear (y = x) where βx > ``threshold`` (PyTorch's rule)."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        super().__init__()
        if beta <= 0:
            raise ValueError(f"Expected beta > 0. Received: beta={beta}")
        self.beta = float(beta)
        self.threshold = float(threshold)

    def forward(self, x: Tensor) -> Tensor:
        return A.softplus(x, self.beta, self.threshold)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"


class Softmax(Module):
    """yᵢ = e^(xᵢ) / Σⱼ e^(xⱼ) along ``dim`` (default -1, the class axis of (N, C))."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return A.softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """yᵢ = xᵢ − ln Σⱼ e^(xⱼ) along ``dim`` (default -1)."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return A.log_softmax(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
