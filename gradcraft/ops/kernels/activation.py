"""Element-wise activation kernels over flat views of same-layout arrays.

The bit-mask kernels handle whole bytes in a loop of exactly 8 (which LLVM unrolls) and the
last, partly used byte separately: one loop of ``min(8, n − 8b)`` iterations is 2–4× slower.
"""

from __future__ import annotations

from typing import Any

from gradcraft.ops.kernels import jit

__all__ = [
    "add_relu_forward_bits",
    "bias_relu",
    "relu_backward_bits",
    "relu_backward_from_output",
    "relu_forward_bits",
    "relu_in_place",
]


@jit
def relu_forward_bits(x: Any, y: Any, bits: Any) -> None:
    """y = max(0, x) (NaN stays NaN) and bit k of bits[i] = [x[8i + k] > 0], in one pass: the
    mask costs one bit per element instead of a byte."""
    n = x.shape[0]
    full = n // 8
    for b in range(full):
        base = 8 * b
        byte = 0
        for k in range(8):
            v = x[base + k]
            byte |= (v > 0) << k
            y[base + k] = 0 if v <= 0 else v
        bits[b] = byte
    if full < bits.shape[0]:
        byte = 0
        for k in range(n - 8 * full):
            v = x[8 * full + k]
            byte |= (v > 0) << k
            y[8 * full + k] = 0 if v <= 0 else v
        bits[full] = byte


@jit
def add_relu_forward_bits(a: Any, b: Any, y: Any, bits: Any) -> None:
    """y = max(0, a + b) and bit k of bits[i] = [a[8i + k] + b[8i + k] > 0], in one pass (a
    residual block's sum and ReLU: the sum is never stored)."""
    n = a.shape[0]
    full = n // 8
    for i in range(full):
        base = 8 * i
        byte = 0
        for k in range(8):
            v = a[base + k] + b[base + k]
            byte |= (v > 0) << k
            y[base + k] = 0 if v <= 0 else v
        bits[i] = byte
    if full < bits.shape[0]:
        byte = 0
        for k in range(n - 8 * full):
            v = a[8 * full + k] + b[8 * full + k]
            byte |= (v > 0) << k
            y[8 * full + k] = 0 if v <= 0 else v
        bits[full] = byte


@jit
def relu_backward_bits(g: Any, dx: Any, bits: Any) -> None:
    """dx = g · mask with the mask packed by :func:`relu_forward_bits` (a NaN gradient stays
    NaN, as NumPy's product keeps it)."""
    n = g.shape[0]
    full = n // 8
    for b in range(full):
        base = 8 * b
        byte = bits[b]
        for k in range(8):
            v = g[base + k]
            dx[base + k] = v if (byte >> k) & 1 else 0 * v
    if full < bits.shape[0]:
        byte = bits[full]
        for k in range(n - 8 * full):
            v = g[8 * full + k]
            dx[8 * full + k] = v if (byte >> k) & 1 else 0 * v


@jit
def bias_relu(y: Any, b: Any) -> None:
    """y ← max(0, y + b) in place, b added to every row of the 2-D ``y`` (NaN stays NaN): a
    linear layer's bias and the ReLU after it in one pass over the product, while it is still
    in cache."""
    rows, cols = y.shape
    for r in range(rows):
        for j in range(cols):
            v = y[r, j] + b[j]
            y[r, j] = 0 if v <= 0 else v


@jit
def relu_in_place(y: Any) -> None:
    """y ← max(0, y) in place over a 2-D array (NaN stays NaN): :func:`bias_relu` without a bias."""
    rows, cols = y.shape
    for r in range(rows):
        for j in range(cols):
            v = y[r, j]
            y[r, j] = 0 if v <= 0 else v


@jit
def relu_backward_from_output(g: Any, y: Any, dx: Any) -> None:
    """dx = g · [y > 0] over 2-D arrays, from the ReLU's output ``y``: y > 0 exactly where its
    input was (a NaN input gives a NaN output, and neither is > 0), so no mask is needed. A
    NaN gradient stays NaN, as NumPy's product keeps it."""
    rows, cols = g.shape
    for r in range(rows):
        for j in range(cols):
            v = g[r, j]
            dx[r, j] = v if y[r, j] > 0 else 0 * v
