"""The affine map of a fully connected layer, alone or with the ReLU after it, as one fused Function."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module
from gradcraft.ops import accel
from gradcraft.ops._util import sum_rows, writable_donation

__all__ = ["Linear", "LinearReLU", "linear", "linear_relu"]

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
        x2 = self._rows(x, weight, bias)
        self.save_for_backward(x2, weight)
        y = _times_weight_t(x2, weight)
        if bias is not None:
            y += bias
        return self._shaped(y)

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        x2, weight = self.saved
        return self._affine_grads(_as_rows(g), x2, weight)

    def _rows(self, x: Any, weight: Any, bias: Any) -> Any:
        """Check the shapes; ``x`` as 2-D rows (M, in), its own shape kept for backward."""
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
        return _as_rows(x)

    def _shaped(self, y2: Any) -> Any:
        """The 2-D result (M, out) with the input's leading axes."""
        return y2.reshape(*self.x_shape[:-1], y2.shape[1]) if len(self.x_shape) != 2 else y2

    def _affine_grads(self, g2: Any, x2: Any, weight: Any) -> tuple[Any, Any, Any]:
        """(dx, dW, db) from the gradient ``g2`` (M, out) of the affine map's output."""
        need_x, need_w = self.needs_input_grad[:2]
        need_b = len(self.needs_input_grad) > 2 and self.needs_input_grad[2]
        gx = (g2 @ weight).reshape(self.x_shape) if need_x else None
        gw = g2.T @ x2 if need_w else None
        gb = sum_rows(g2) if need_b else None
        return gx, gw, gb


class LinearReLU(Linear):
    """y = max(0, x Wᵀ + b): a fully connected layer and the ReLU after it as one Function.

    Forward: the bias add and the rectification are one pass, in place, over the product
    x Wᵀ while it is still in cache (a compiled kernel; NumPy takes two passes), instead of a
    bias pass plus a ReLU that reads the product back from memory and writes a second array.
    The output y is kept for backward: y > 0 exactly where x Wᵀ + b > 0 (a NaN gives NaN, and
    neither is > 0), so no mask is stored, and the next layer keeps y as its input anyway.

    Backward: dz = g · [y > 0], then as :class:`Linear`: dx = dz W, dW = dzᵀ x, db = Σ_rows dz.
    Results are bit-identical to ``relu(linear(x, W, b))``.
    """

    def forward(self, x: Any, weight: Any, bias: Any = None) -> Any:
        x2 = self._rows(x, weight, bias)
        y = _times_weight_t(x2, weight)
        _bias_relu_in_place(y, bias)
        self.save_for_backward(x2, weight, y)
        return self._shaped(y)

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        x2, weight, y = self.saved
        g2 = _as_rows(g)
        in_place = writable_donation(self, g2)
        return self._affine_grads(_relu_grad(g2, y, in_place), x2, weight)


def _as_rows(a: Any) -> Any:
    """``a`` (..., features) as 2-D rows (M, features)."""
    return a.reshape(-1, a.shape[-1]) if a.ndim != 2 else a


def _bias_relu_in_place(y: Any, bias: Any) -> None:
    """y ← max(0, y + b) for the C-contiguous product ``y`` (M, out)."""
    fast = accel.kernels("activation", y) if bias is None or bias.dtype == y.dtype else None
    if fast is not None:
        if bias is None:
            accel.map_rows(fast.relu_in_place, y)
        else:
            accel.map_rows(fast.bias_relu, y, shared=(bias,))
        return
    if bias is not None:
        y += bias
    xp = get_array_module(y)
    xp.maximum(y, xp.zeros((), dtype=y.dtype), out=y)


def _relu_grad(g2: Any, y: Any, in_place: bool) -> Any:
    """g · [y > 0] for the ReLU output ``y`` and its gradient ``g2``, both (M, out); written
    into ``g2`` when ``in_place``."""
    fast = accel.kernels("activation", g2, y) if g2.dtype == y.dtype else None
    if fast is not None:
        dx = g2 if in_place else np.empty_like(g2, order="C")  # each element read before written
        accel.map_rows(fast.relu_backward_from_output, g2, y, dx)
        return dx
    xp = get_array_module(y)
    mask = y > xp.zeros((), dtype=y.dtype)
    return xp.multiply(g2, mask, out=g2) if in_place else g2 * mask


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


def linear_relu(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = max(0, x Wᵀ + b), as ``relu(linear(x, W, b))`` but in one :class:`LinearReLU`
    node: x (..., in), W (out, in), b (out,) → (..., out)."""
    if bias is None:
        return LinearReLU.apply(x, weight)
    return LinearReLU.apply(x, weight, bias)
