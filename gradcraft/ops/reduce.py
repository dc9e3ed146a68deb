"""Reductions over axes: sum, mean, max, min, var, logsumexp.

All take ``axis`` (None, an int or a tuple) and ``keepdims``. The backward pass broadcasts
the incoming gradient back over the reduced axes.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module
from gradcraft.ops._util import normalize_axis

__all__ = ["logsumexp", "max", "mean", "min", "std", "sum", "var"]


def _expand_back(g: Any, axes: tuple[int, ...] | None, keepdims: bool, shape: tuple[int, ...]) -> Any:
    """Reinsert reduced axes into ``g`` and broadcast it to ``shape`` (a read-only view);
    ``axes`` None: all of them (``g`` is then broadcast as it is)."""
    xp = get_array_module(g)
    if not keepdims and axes:
        g = xp.expand_dims(g, axes)
    return xp.broadcast_to(g, shape)


def _count(shape: tuple[int, ...], axes: Iterable[int]) -> int:
    n = 1
    for a in axes:
        n *= shape[a]
    return n


class Sum(Function):
    """y = Σ_axes x;  dx = g broadcast over the reduced axes."""

    def forward(self, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        self.axes = None if axis is None else normalize_axis(axis, x.ndim)  # None: all axes
        self.keepdims = keepdims
        self.shape = x.shape
        return x.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, g: Any) -> Any:
        return _expand_back(g, self.axes, self.keepdims, self.shape)


class Mean(Function):
    """y = (1/n) Σ_axes x;  dx = g / n."""

    def forward(self, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        self.axes = None if axis is None else normalize_axis(axis, x.ndim)  # None: all axes
        self.keepdims = keepdims
        self.shape = x.shape
        return x.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, g: Any) -> Any:
        n = _count(self.shape, range(len(self.shape)) if self.axes is None else self.axes)
        return _expand_back(g / n, self.axes, self.keepdims, self.shape)


class _Extremum(Function):
    """Max or min over axes; the gradient is shared equally among tied extrema (as amax)."""

    reducer = "max"

    def forward(self, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        if x.size == 0:
            raise ValueError(f"{self.reducer}() of an empty tensor")
        self.axes = normalize_axis(axis, x.ndim)
        self.keepdims = keepdims
        y = getattr(x, self.reducer)(axis=self.axes, keepdims=True)
        self.save_for_backward(x == y)
        return y if keepdims else y.reshape([n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, g: Any) -> Any:
        (mask,) = self.saved
        xp = get_array_module(g)
        if not self.keepdims and self.axes:
            g = xp.expand_dims(g, self.axes)
        ties = mask.sum(axis=self.axes, keepdims=True, dtype=g.dtype)
        return mask * (g / ties)


class Max(_Extremum):
    reducer = "max"


class Min(_Extremum):
    reducer = "min"


class Var(Function):
    """y = Σ (x − x̄)² / (n − correction);  dx = g · 2(x − x̄) / (n − correction).

    ``correction=1`` (the default, as PyTorch) is the unbiased estimator; 0 is the
    population variance used by batch normalization.
    """

    def forward(self, x: Any, axis: Any = None, keepdims: bool = False, correction: int = 1) -> Any:
        self.axes = normalize_axis(axis, x.ndim)
        self.keepdims = keepdims
        n = _count(x.shape, self.axes)
        self.denom = builtins.max(n - correction, 0)
        centered = x - x.mean(axis=self.axes, keepdims=True)
        self.save_for_backward(centered)
        return (centered * centered).sum(axis=self.axes, keepdims=keepdims) / self.denom

    def backward(self, g: Any) -> Any:
        (centered,) = self.saved
        xp = get_array_module(g)
        if not self.keepdims and self.axes:
            g = xp.expand_dims(g, self.axes)
        return g * (2 / self.denom) * centered


class LogSumExp(Function):
    """y = m + ln Σ exp(x − m) with m = max x (stable);  dx = g · softmax(x)."""

    def forward(self, x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        xp = get_array_module(x)
        self.axes = normalize_axis(axis, x.ndim)
        self.keepdims = keepdims
        m = x.max(axis=self.axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        e = xp.exp(x - m)
        s = e.sum(axis=self.axes, keepdims=True)
        y = xp.log(s) + m
        self.save_for_backward(x, y)
        return y if keepdims else y.reshape([n for i, n in enumerate(x.shape) if i not in self.axes])

    def backward(self, g: Any) -> Any:
        x, y = self.saved
        xp = get_array_module(g)
        if not self.keepdims and self.axes:
            g = xp.expand_dims(g, self.axes)
        return g * xp.exp(x - y)


def sum(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    if axis is None and not keepdims:  # the common call, without building keyword arguments
        return Sum.apply(x)
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    if axis is None and not keepdims:
        return Mean.apply(x)
    return Mean.apply(x, axis=axis, keepdims=keepdims)


def max(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return Max.apply(x, axis=axis, keepdims=keepdims)


def min(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return Min.apply(x, axis=axis, keepdims=keepdims)


def var(x: Tensor, axis: Any = None, keepdims: bool = False, correction: int = 1) -> Tensor:
    return Var.apply(x, axis=axis, keepdims=keepdims, correction=correction)


def std(x: Tensor, axis: Any = None, keepdims: bool = False, correction: int = 1) -> Tensor:
    """√var; the gradient at zero variance is infinite, as in PyTorch."""
    return var(x, axis, keepdims, correction).sqrt()


def logsumexp(x: Tensor, axis: Any = None, keepdims: bool = False) -> Tensor:
    return LogSumExp.apply(x, axis=axis, keepdims=keepdims)
