"""Comparisons and index-valued reductions. Their results are not differentiable."""

from __future__ import annotations

import operator
from typing import Any

from gradcraft.autograd.tensor import Tensor

__all__ = ["argmax", "argmin", "eq", "ge", "gt", "le", "lt", "ne"]


def _compare(op: Any, a: Any, b: Any) -> Tensor:
    a = a.data if isinstance(a, Tensor) else a
    b = b.data if isinstance(b, Tensor) else b
    return Tensor._from_op(op(a, b), False)


def eq(a: Any, b: Any) -> Tensor:
    return _compare(operator.eq, a, b)


def ne(a: Any, b: Any) -> Tensor:
    return _compare(operator.ne, a, b)


def lt(a: Any, b: Any) -> Tensor:
    return _compare(operator.lt, a, b)


def le(a: Any, b: Any) -> Tensor:
    return _compare(operator.le, a, b)


def gt(a: Any, b: Any) -> Tensor:
    return _compare(operator.gt, a, b)


def ge(a: Any, b: Any) -> Tensor:
    return _compare(operator.ge, a, b)


def argmax(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """Index of the first maximum along ``axis`` (of the flattened tensor if ``None``)."""
    return Tensor._from_op(x.data.argmax(axis=axis, keepdims=keepdims), False)


def argmin(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """Index of the first minimum along ``axis`` (of the flattened tensor if ``None``)."""
    return Tensor._from_op(x.data.argmin(axis=axis, keepdims=keepdims), False)
