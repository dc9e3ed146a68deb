"""Matrix products."""

from __future__ import annotations

from typing import Any

from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module
from gradcraft.ops._util import unbroadcast

__all__ = ["matmul"]


class MatMul(Function):
    """Y = A @ B with batch broadcasting (NumPy ``matmul`` semantics, 1-D operands promoted).

    dA = G @ Bᵀ and dB = Aᵀ @ G, each summed over broadcast batch axes.
    """

    def forward(self, a: Any, b: Any) -> Any:
        self.save_for_backward(a, b)
        try:
            return a @ b
        except ValueError as err:  # the product itself is the shape check
            raise ValueError(_mismatch(a, b)) from err

    def backward(self, g: Any) -> tuple[Any, Any]:
        a, b = self.saved
        xp = get_array_module(g)
        need_a, need_b = self.needs_input_grad
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        # reinsert the unit axes that 1-D operands dropped from the product
        if a.ndim == 1 and b.ndim == 1:
            g2 = g.reshape(1, 1)
        elif a.ndim == 1:
            g2 = xp.expand_dims(g, -2)
        elif b.ndim == 1:
            g2 = xp.expand_dims(g, -1)
        else:
            g2 = g
        ga = gb = None
        if need_a:
            ga = xp.matmul(g2, xp.swapaxes(b2, -1, -2))
            ga = unbroadcast(ga, a2.shape).reshape(a.shape)
        if need_b:
            gb = xp.matmul(xp.swapaxes(a2, -1, -2), g2)
            gb = unbroadcast(gb, b2.shape).reshape(b.shape)
        return ga, gb


def _mismatch(a: Any, b: Any) -> str:
    """Why ``a @ b`` is undefined, in words."""
    if a.ndim == 0 or b.ndim == 0:
        return f"matmul needs operands with at least one dimension. Received shapes {a.shape} and {b.shape}"
    k_a = a.shape[-1]
    k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if k_a != k_b:
        return f"matmul shape mismatch: {a.shape} @ {b.shape} (inner dimensions {k_a} and {k_b} differ)"
    return f"matmul cannot broadcast the batch axes of {a.shape} @ {b.shape}"


def matmul(a: Tensor, b: Tensor) -> Tensor:
    return MatMul.apply(a, b)
