"""The differentiable operations, one family per module, as functions on tensors.

Importing this package also attaches them to :class:`~gradcraft.autograd.Tensor` as methods
and operators.
"""

from gradcraft.ops import tensor_methods as _tensor_methods  # noqa: F401 - registers methods
from gradcraft.ops.activation import log_softmax, relu, sigmoid, softmax, tanh
from gradcraft.ops.compare import argmax, argmin, eq, ge, gt, le, lt, ne
from gradcraft.ops.elementwise import (
    abs,
    add,
    cast,
    clip,
    div,
    exp,
    log,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    sqrt,
    sub,
    where,
)
from gradcraft.ops.linalg import matmul
from gradcraft.ops.reduce import logsumexp, max, mean, min, std, sum, var
from gradcraft.ops.shape import (
    concatenate,
    expand,
    flatten,
    getitem,
    pad,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    transpose,
    unsqueeze,
)

cat = concatenate

__all__ = [
    "abs", "add", "argmax", "argmin", "cast", "cat", "clip", "concatenate", "div", "eq",
    "exp", "expand", "flatten", "ge", "getitem", "gt", "le", "log", "log_softmax",
    "logsumexp", "lt", "matmul", "max", "maximum", "mean", "min", "minimum", "mul", "ne",
    "neg", "pad", "permute", "pow", "relu", "reshape", "sigmoid", "softmax", "split",
    "sqrt", "squeeze", "stack", "std", "sub", "sum", "tanh", "transpose", "unsqueeze",
    "var", "where",
]
