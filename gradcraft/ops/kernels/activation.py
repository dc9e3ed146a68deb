"""Element-wise activation kernels over flat views of same-layout arrays.

The bit-mask kernels handle whole bytes in a loop of exactly 8 (which LLVM unrolls) and the
last, partly used byte separately: one loop of ``min(8, n − 8b)`` iterations is 2–4× slower.
"""

from __future__ import annotations

from typing import Any

from gradcraft.ops.kernels import jit

__all__ = ["add_relu_forward_bits", "relu_backward_bits", "relu_forward_bits"]


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
