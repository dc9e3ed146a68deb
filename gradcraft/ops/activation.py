"""Activation functions and the normalized exponentials (softmax, log-softmax).

Functions whose derivative is cheapest in terms of their output (ReLU, sigmoid, tanh, softmax)
keep the output, not the input, for backward.
"""

from __future__ import annotations

from typing import Any

from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module

__all__ = ["log_softmax", "relu", "sigmoid", "softmax", "tanh"]


class ReLU(Function):
    """y = max(0, x);  dx = g · [y > 0] (the subgradient at 0 is 0, as PyTorch)."""

    def forward(self, x: Any) -> Any:
        y = get_array_module(x).maximum(x, 0)
        self.save_for_backward(y)
        return y

    def backward(self, g: Any) -> Any:
        return g * (self.saved[0] > 0)


class Sigmoid(Function):
    """y = 1 / (1 + e⁻ˣ);  dx = g · y(1 − y)."""

    def forward(self, x: Any) -> Any:
        xp = get_array_module(x)
        # tanh form is stable for large |x| and needs no branch
        y = 0.5 * (xp.tanh(0.5 * x) + 1)
        self.save_for_backward(y)
        return y

    def backward(self, g: Any) -> Any:
        y = self.saved[0]
        return g * y * (1 - y)


class Tanh(Function):
    """y = tanh x;  dx = g · (1 − y²)."""

    def forward(self, x: Any) -> Any:
        y = get_array_module(x).tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, g: Any) -> Any:
        y = self.saved[0]
        return g * (1 - y * y)


class Softmax(Function):
    """yᵢ = exp(xᵢ − m) / Σⱼ exp(xⱼ − m), m = max x;  dx = y ⊙ (g − Σ g ⊙ y)."""

    def forward(self, x: Any, axis: int = -1) -> Any:
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        y = e / e.sum(axis=axis, keepdims=True)
        self.axis = axis
        self.save_for_backward(y)
        return y

    def backward(self, g: Any) -> Any:
        y = self.saved[0]
        return y * (g - (g * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """y = x − logsumexp(x);  dx = g − softmax(x) · Σ g."""

    def forward(self, x: Any, axis: int = -1) -> Any:
        xp = get_array_module(x)
        shifted = x - x.max(axis=axis, keepdims=True)
        y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.axis = axis
        self.save_for_backward(y)
        return y

    def backward(self, g: Any) -> Any:
        xp = get_array_module(g)
        return g - xp.exp(self.saved[0]) * g.sum(axis=self.axis, keepdims=True)


def relu(x: Tensor) -> Tensor:
    return ReLU.apply(x)


def sigmoid(x: Tensor) -> Tensor:
    return Sigmoid.apply(x)


def tanh(x: Tensor) -> Tensor:
    return Tanh.apply(x)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return Softmax.apply(x, axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return LogSoftmax.apply(x, axis=axis)
