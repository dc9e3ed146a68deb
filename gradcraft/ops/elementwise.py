"""Elementwise arithmetic with NumPy broadcasting.

Each binary op sums its gradient back over broadcast axes (:func:`unbroadcast`). Python
numbers stay Python numbers, so ``float32 * 0.5`` stays float32 (NEP 50).
"""

from __future__ import annotations

from typing import Any

from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module
from gradcraft.ops._util import shape_of, unbroadcast

__all__ = [
    "abs",
    "add",
    "clip",
    "div",
    "exp",
    "log",
    "maximum",
    "minimum",
    "mul",
    "neg",
    "pow",
    "sqrt",
    "sub",
    "where",
]


class Add(Function):
    """y = a + b;  da = g, db = g (summed over broadcast axes)."""

    def forward(self, a: Any, b: Any) -> Any:
        self.shapes = (shape_of(a), shape_of(b))
        return a + b

    def backward(self, g: Any) -> tuple[Any, Any]:
        sa, sb = self.shapes
        need_a, need_b = self.needs_input_grad
        return (unbroadcast(g, sa) if need_a else None, unbroadcast(g, sb) if need_b else None)


class Sub(Function):
    """y = a - b;  da = g, db = -g."""

    def forward(self, a: Any, b: Any) -> Any:
        self.shapes = (shape_of(a), shape_of(b))
        return a - b

    def backward(self, g: Any) -> tuple[Any, Any]:
        sa, sb = self.shapes
        need_a, need_b = self.needs_input_grad
        return (unbroadcast(g, sa) if need_a else None, unbroadcast(-g, sb) if need_b else None)


class Mul(Function):
    """y = a * b;  da = g * b, db = g * a."""

    def forward(self, a: Any, b: Any) -> Any:
        self.save_for_backward(a, b)
        return a * b

    def backward(self, g: Any) -> tuple[Any, Any]:
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        return (
            unbroadcast(g * b, shape_of(a)) if need_a else None,
            unbroadcast(g * a, shape_of(b)) if need_b else None,
        )


class Div(Function):
    """y = a / b;  da = g / b, db = -g * a / b²."""

    def forward(self, a: Any, b: Any) -> Any:
        self.save_for_backward(a, b)
        return a / b

    def backward(self, g: Any) -> tuple[Any, Any]:
        a, b = self.saved
        need_a, need_b = self.needs_input_grad
        ga = g / b
        return (
            unbroadcast(ga, shape_of(a)) if need_a else None,
            unbroadcast(-ga * a / b, shape_of(b)) if need_b else None,
        )


class Pow(Function):
    """y = a ** b;  da = g·b·a^(b-1), db = g·y·ln(a) (only where a > 0)."""

    def forward(self, a: Any, b: Any) -> Any:
        y = a**b
        self.save_for_backward(a, b, y)
        return y

    def backward(self, g: Any) -> tuple[Any, Any]:
        a, b, y = self.saved
        need_a, need_b = self.needs_input_grad
        ga = gb = None
        if need_a:
            d = 0 * a if isinstance(b, (int, float)) and b == 0 else b * a ** (b - 1)
            ga = unbroadcast(g * d, shape_of(a))
        if need_b:
            xp = get_array_module(a, b)
            safe_log = xp.log(xp.where(a > 0, a, 1))
            gb = unbroadcast(g * y * safe_log, shape_of(b))
        return ga, gb


class Neg(Function):
    """y = -x."""

    def forward(self, x: Any) -> Any:
        return -x

    def backward(self, g: Any) -> Any:
        return -g


class Exp(Function):
    """y = eˣ;  dx = g·y (keeps its output)."""

    def forward(self, x: Any) -> Any:
        y = get_array_module(x).exp(x)
        self.save_for_backward(y)
        return y

    def backward(self, g: Any) -> Any:
        return g * self.saved[0]


class Log(Function):
    """y = ln x;  dx = g / x."""

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x)
        return get_array_module(x).log(x)

    def backward(self, g: Any) -> Any:
        return g / self.saved[0]


class Sqrt(Function):
    """y = √x;  dx = g / (2y) (keeps its output)."""

    def forward(self, x: Any) -> Any:
        y = get_array_module(x).sqrt(x)
        self.save_for_backward(y)
        return y

    def backward(self, g: Any) -> Any:
        return g / (2 * self.saved[0])


class Abs(Function):
    """y = |x|;  dx = g·sign(x) (0 at x = 0, as PyTorch)."""

    def forward(self, x: Any) -> Any:
        self.save_for_backward(x)
        return get_array_module(x).abs(x)

    def backward(self, g: Any) -> Any:
        return g * get_array_module(g).sign(self.saved[0])


class Clip(Function):
    """y = min(max(x, lo), hi);  dx = g where lo ≤ x ≤ hi, else 0 (PyTorch's clamp)."""

    def forward(self, x: Any, lo: Any = None, hi: Any = None) -> Any:
        xp = get_array_module(x)
        mask = xp.ones(x.shape, dtype=bool)
        if lo is not None:
            mask &= x >= lo
        if hi is not None:
            mask &= x <= hi
        self.save_for_backward(mask)
        return xp.clip(x, lo, hi)

    def backward(self, g: Any) -> Any:
        return g * self.saved[0]


class Maximum(Function):
    """y = max(a, b) elementwise; on ties each input gets half the gradient (as PyTorch)."""

    def forward(self, a: Any, b: Any) -> Any:
        xp = get_array_module(a, b)
        self.save_for_backward(a, b)
        return xp.maximum(a, b)

    def backward(self, g: Any) -> tuple[Any, Any]:
        return _split_extremum(self, g, greater=True)


class Minimum(Function):
    """y = min(a, b) elementwise; on ties each input gets half the gradient (as PyTorch)."""

    def forward(self, a: Any, b: Any) -> Any:
        xp = get_array_module(a, b)
        self.save_for_backward(a, b)
        return xp.minimum(a, b)

    def backward(self, g: Any) -> tuple[Any, Any]:
        return _split_extremum(self, g, greater=False)


def _split_extremum(fn: Function, g: Any, greater: bool) -> tuple[Any, Any]:
    a, b = fn.saved
    xp = get_array_module(g)
    wins_a = (a > b) if greater else (a < b)
    share_a = xp.where(a == b, 0.5, wins_a.astype(g.dtype)).astype(g.dtype)
    need_a, need_b = fn.needs_input_grad
    return (
        unbroadcast(g * share_a, shape_of(a)) if need_a else None,
        unbroadcast(g * (1 - share_a), shape_of(b)) if need_b else None,
    )


class Where(Function):
    """y = a where cond else b;  da = g·cond, db = g·(1 − cond)."""

    def forward(self, cond: Any, a: Any, b: Any) -> Any:
        self.save_for_backward(cond)
        self.shapes = (shape_of(a), shape_of(b))
        return get_array_module(cond, a, b).where(cond, a, b)

    def backward(self, g: Any) -> tuple[None, Any, Any]:
        (cond,) = self.saved
        xp = get_array_module(g)
        sa, sb = self.shapes
        _, need_a, need_b = self.needs_input_grad
        zero = xp.zeros((), dtype=g.dtype)
        return (
            None,
            unbroadcast(xp.where(cond, g, zero), sa) if need_a else None,
            unbroadcast(xp.where(cond, zero, g), sb) if need_b else None,
        )


class Cast(Function):
    """y = x as another dtype; the gradient is cast back."""

    def forward(self, x: Any, dtype: Any = None) -> Any:
        self.dtype = x.dtype
        return x.astype(dtype, copy=False)

    def backward(self, g: Any) -> Any:
        return g.astype(self.dtype, copy=False)


def add(a: Any, b: Any) -> Tensor:
    return Add.apply(a, b)


def sub(a: Any, b: Any) -> Tensor:
    return Sub.apply(a, b)


def mul(a: Any, b: Any) -> Tensor:
    return Mul.apply(a, b)


def div(a: Any, b: Any) -> Tensor:
    return Div.apply(a, b)


def pow(a: Any, b: Any) -> Tensor:  # noqa: A001 - mirrors torch.pow
    return Pow.apply(a, b)


def neg(x: Tensor) -> Tensor:
    return Neg.apply(x)


def exp(x: Tensor) -> Tensor:
    return Exp.apply(x)


def log(x: Tensor) -> Tensor:
    return Log.apply(x)


def sqrt(x: Tensor) -> Tensor:
    return Sqrt.apply(x)


def abs(x: Tensor) -> Tensor:  # noqa: A001 - mirrors torch.abs
    return Abs.apply(x)


def clip(x: Tensor, min: float | None = None, max: float | None = None) -> Tensor:  # noqa: A002
    """Clamp ``x`` to [min, max]; either bound may be ``None``."""
    if min is None and max is None:
        raise ValueError("clip() needs at least one of min and max")
    return Clip.apply(x, lo=min, hi=max)


def maximum(a: Any, b: Any) -> Tensor:
    return Maximum.apply(a, b)


def minimum(a: Any, b: Any) -> Tensor:
    return Minimum.apply(a, b)


def where(cond: Any, a: Any, b: Any) -> Tensor:
    """Elementwise select: ``a`` where ``cond`` is true, ``b`` elsewhere (cond gets no grad)."""
    if isinstance(cond, Tensor):
        cond = cond.data
    return Where.apply(cond, a, b)


def cast(x: Tensor, dtype: Any) -> Tensor:
    return Cast.apply(x, dtype=dtype)
