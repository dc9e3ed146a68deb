"""Element-wise activation kernels over flat views of same-layout arrays."""

from __future__ import annotations

from typing import Any

from gradcraft.ops.kernels import jit

__all__ = ["relu_backward"]


@jit
def relu_backward(g: Any, y: Any, dx: Any) -> None:
    """dx = g · [y > 0] in one pass (NumPy needs a mask array and a second pass)."""
    for i in range(g.shape[0]):
        dx[i] = g[i] if y[i] > 0 else 0 * g[i]
