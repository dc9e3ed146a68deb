"""The affine map of a fully connected layer as one fused Function."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.ops._util import sum_rows

__all__ = ["linear"]

#: Up to this many rows, and from :data:`WIDE_OUTPUT` output features, NumPy's OpenBLAS computes
#: x Wᵀ faster as (W xᵀ)ᵀ, the same product with the roles of the operands swapped, plus a
#: transposed copy of the small result: 0.52–0.83× the time at 8–32 rows for widths 128–1024
#: out of 128–3136 in, 2 threads; from 48 rows on the two are within ±20 % either way.
SMALL_BATCH_ROWS = 32
#: See :data:`SMALL_BATCH_ROWS` (10 outputs: the swapped product is 1.2–1.4× slower).
WIDE_OUTPUT = 128


class Linear(Function):
    """y = x Wᵀ + b for x of shape (..., in), W of shape (out, in), b of shape (out,).

    Backward (cs231n ``affine_backward``), with x and g flattened to 2-D (M, in) / (M, out):
    dx = g W,  dW = gᵀ x,  db = Σ_rows g. One graph node instead of transpose + matmul + add,
    and no transposed copy of dW.
    """

    def forward(self, x: Any, weight: Any, bias: Any = None) -> Any:
        if weight.ndim != 2:
            raise ValueError(
                f"Expected a 2-D weight (out_features, in_features). Received: shape={weight.shape}"
            )
        if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"Expected input with last dimension {weight.shape[1]}. Received: shape={tuple(x.shape)}"
            )
        if bias is not None and bias.shape != (weight.shape[0],):
            raise ValueError(
                f"Expected bias of shape ({weight.shape[0]},). Received: shape={tuple(bias.shape)}"
            )
        self.x_shape = x.shape
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim != 2 else x
        self.save_for_backward(x2, weight)
        y = _times_weight_t(x2, weight)
        if bias is not None:
            y += bias
        return y.reshape(*x.shape[:-1], weight.shape[0]) if x.ndim != 2 else y

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        x2, weight = self.saved
        need_x, need_w = self.needs_input_grad[:2]
        need_b = len(self.needs_input_grad) > 2 and self.needs_input_grad[2]
        g2 = g.reshape(-1, g.shape[-1]) if g.ndim != 2 else g
        gx = (g2 @ weight).reshape(self.x_shape) if need_x else None
        gw = g2.T @ x2 if need_w else None
        gb = sum_rows(g2) if need_b else None
        return gx, gw, gb


def _times_weight_t(x2: Any, weight: Any) -> Any:
    """x2 Wᵀ for x2 (rows, in) and W (out, in): a C-contiguous (rows, out) array."""
    if (
        x2.shape[0] <= SMALL_BATCH_ROWS
        and weight.shape[0] >= WIDE_OUTPUT
        and isinstance(x2, np.ndarray)
        and isinstance(weight, np.ndarray)
    ):
        return np.ascontiguousarray((weight @ x2.T).T)
    return x2 @ weight.T


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x Wᵀ + b (PyTorch's ``F.linear``): x (..., in), W (out, in), b (out,) → (..., out)."""
    if bias is None:
        return Linear.apply(x, weight)
    return Linear.apply(x, weight, bias)
