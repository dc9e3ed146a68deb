"""Element-wise activation kernels over flat views of same-layout arrays."""

from __future__ import annotations

from typing import Any

from gradcraft.ops.kernels import jit

__all__ = ["relu_backward", "relu_forward"]


@jit
def relu_forward(x: Any, y: Any, mask: Any) -> None:
    """y = max(0, x) (NaN stays NaN) and mask = [x > 0], in one pass."""
    for i in range(x.shape[0]):
        v = x[i]
        mask[i] = v > 0
        y[i] = 0 if v <= 0 else v


@jit
def relu_backward(g: Any, mask: Any, dx: Any) -> None:
    """dx = g · mask in one pass (a NaN gradient stays NaN, as NumPy's product keeps it)."""
    for i in range(g.shape[0]):
        dx[i] = g[i] if mask[i] else 0 * g[i]
