"""Attach the ops to :class:`Tensor` as methods and Python operators.

Kept apart from ``autograd/tensor.py`` so the autograd layer does not import the op layer
(tinygrad's first commit registered its ops onto Tensor the same way).
"""

from __future__ import annotations

from typing import Any

from gradcraft.autograd.tensor import Tensor
from gradcraft.ops import activation, compare, elementwise, linalg, reduce, shape


def _reflected(fn: Any) -> Any:
    def method(self: Tensor, other: Any) -> Tensor:
        return fn(other, self)

    return method


def _astype(self: Tensor, dtype: Any) -> Tensor:
    """Convert to ``dtype``; differentiable between floating dtypes."""
    if self.dtype == dtype:
        return self
    if self.requires_grad:
        return elementwise.cast(self, dtype)
    return Tensor._from_op(self.data.astype(dtype), False)


_METHODS: dict[str, Any] = {
    # arithmetic operators
    "__add__": elementwise.add,
    "__radd__": _reflected(elementwise.add),
    "__sub__": elementwise.sub,
    "__rsub__": _reflected(elementwise.sub),
    "__mul__": elementwise.mul,
    "__rmul__": _reflected(elementwise.mul),
    "__truediv__": elementwise.div,
    "__rtruediv__": _reflected(elementwise.div),
    "__pow__": elementwise.pow,
    "__rpow__": _reflected(elementwise.pow),
    "__neg__": elementwise.neg,
    "__matmul__": linalg.matmul,
    "__rmatmul__": _reflected(linalg.matmul),
    "__getitem__": shape.getitem,
    # comparisons (not differentiable)
    "__eq__": compare.eq,
    "__ne__": compare.ne,
    "__lt__": compare.lt,
    "__le__": compare.le,
    "__gt__": compare.gt,
    "__ge__": compare.ge,
    # elementwise
    "exp": elementwise.exp,
    "log": elementwise.log,
    "sqrt": elementwise.sqrt,
    "abs": elementwise.abs,
    "clip": elementwise.clip,
    "clamp": elementwise.clip,
    "maximum": elementwise.maximum,
    "minimum": elementwise.minimum,
    "pow": elementwise.pow,
    "matmul": linalg.matmul,
    # reductions
    "sum": reduce.sum,
    "mean": reduce.mean,
    "max": reduce.max,
    "min": reduce.min,
    "var": reduce.var,
    "std": reduce.std,
    "logsumexp": reduce.logsumexp,
    "argmax": compare.argmax,
    "argmin": compare.argmin,
    # shape
    "reshape": shape.reshape,
    "view": shape.reshape,
    "flatten": shape.flatten,
    "permute": shape.permute,
    "transpose": shape.transpose,
    "squeeze": shape.squeeze,
    "unsqueeze": shape.unsqueeze,
    "expand": shape.expand,
    "split": shape.split,
    "pad": shape.pad,
    # activations
    "relu": activation.relu,
    "sigmoid": activation.sigmoid,
    "tanh": activation.tanh,
    "softmax": activation.softmax,
    "log_softmax": activation.log_softmax,
    # dtype
    "astype": _astype,
}


def register() -> None:
    for name, fn in _METHODS.items():
        setattr(Tensor, name, fn)
    Tensor.T = property(lambda self: shape.permute(self, tuple(reversed(range(self.ndim)))))
    Tensor.float = lambda self: _astype(self, "float32")
    Tensor.double = lambda self: _astype(self, "float64")


register()
