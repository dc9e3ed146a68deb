"""Batch-norm kernels over channels-last data viewed as a matrix x (M, C), M = N·H·W.

Per-channel sums accumulate in float64 (one partial sum per block of rows; the caller adds
the blocks), so a float32 batch of 10⁵ rows keeps its statistics to float32 precision.
Forward: μ and σ² from one pass of shifted sums (:func:`shifted_sums`), then
y = (x − μ)·s + β with s = γ/√(σ² + ε).
Backward: dx = c₁·g − c₂·(x − μ) − c₃ with per-channel c₁ = γ/√(σ² + ε),
c₂ = c₁·Σ g(x − μ)/(M(σ² + ε)), c₃ = c₁·Σg/M (the fused formula of
:class:`gradcraft.ops.normalization.BatchNorm`, with x̂ recomputed from x instead of stored).

The ``_relu`` variants are batch norm followed by a ReLU: forward writes max(0, y); backward
recomputes y from x to mask the incoming gradient, g·[y > 0], before the batch-norm formula,
so neither y nor a mask is stored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcraft.ops.kernels import jit

__all__ = [
    "affine",
    "affine_relu",
    "grad_sums",
    "grad_sums_relu",
    "normalize",
    "normalize_backward",
    "normalize_backward_relu",
    "normalize_relu",
    "shifted_sums",
]


@jit
def shifted_sums(x: Any, shift: Any, s1: Any, s2: Any) -> None:
    """s1[c] += Σ_rows d, s2[c] += Σ_rows d² with d = x[r, c] − shift[c] (s1, s2 float64).

    One pass for both moments: σ² = s2/M − (s1/M)². Shifting by a value of the data (the
    first row) keeps that difference from cancelling when the mean is large against σ.
    """
    for r in range(x.shape[0]):
        row = x[r]
        for c in range(x.shape[1]):
            d = row[c] - shift[c]
            s1[c] += d
            s2[c] += d * d


@jit
def normalize(x: Any, mean: Any, scale: Any, shift: Any, y: Any) -> None:
    """y = (x − mean)·scale + shift, per column."""
    for r in range(x.shape[0]):
        row = x[r]
        out = y[r]
        for c in range(x.shape[1]):
            out[c] = (row[c] - mean[c]) * scale[c] + shift[c]


@jit
def affine(x: Any, scale: Any, shift: Any, y: Any) -> None:
    """y = x·scale + shift, per column (batch norm in evaluation mode)."""
    for r in range(x.shape[0]):
        row = x[r]
        out = y[r]
        for c in range(x.shape[1]):
            out[c] = row[c] * scale[c] + shift[c]


@jit
def grad_sums(g: Any, x: Any, mean: Any, sum_g: Any, sum_gx: Any) -> None:
    """sum_g[c] += Σ g[r, c];  sum_gx[c] += Σ g[r, c]·(x[r, c] − mean[c])  (float64 outputs)."""
    for r in range(g.shape[0]):
        grow = g[r]
        xrow = x[r]
        for c in range(g.shape[1]):
            v = grow[c]
            sum_g[c] += v
            sum_gx[c] += v * (xrow[c] - mean[c])


@jit
def normalize_backward(g: Any, x: Any, mean: Any, c1: Any, c2: Any, c3: Any, dx: Any) -> None:
    """dx = c1·g − c2·(x − mean) − c3, per column; ``dx`` may be ``g`` itself (each row of g is
    copied to a buffer first: a loop that may write what it reads is not vectorised, 2.7× the
    time for 32 channels)."""
    row_g = np.empty(g.shape[1], dtype=g.dtype)
    for r in range(g.shape[0]):
        grow = g[r]
        for c in range(g.shape[1]):
            row_g[c] = grow[c]
        xrow = x[r]
        out = dx[r]
        for c in range(g.shape[1]):
            out[c] = c1[c] * row_g[c] - c2[c] * (xrow[c] - mean[c]) - c3[c]


@jit
def normalize_relu(x: Any, mean: Any, scale: Any, shift: Any, y: Any) -> None:
    """y = max(0, (x − mean)·scale + shift), per column (NaN stays NaN)."""
    for r in range(x.shape[0]):
        row = x[r]
        out = y[r]
        for c in range(x.shape[1]):
            v = (row[c] - mean[c]) * scale[c] + shift[c]
            out[c] = 0 if v <= 0 else v


@jit
def affine_relu(x: Any, scale: Any, shift: Any, y: Any) -> None:
    """y = max(0, x·scale + shift), per column (evaluation mode; NaN stays NaN)."""
    for r in range(x.shape[0]):
        row = x[r]
        out = y[r]
        for c in range(x.shape[1]):
            v = row[c] * scale[c] + shift[c]
            out[c] = 0 if v <= 0 else v


@jit
def grad_sums_relu(g: Any, x: Any, mean: Any, scale: Any, shift: Any, sum_g: Any, sum_gx: Any) -> None:
    """:func:`grad_sums` of the masked gradient d = g·[(x − mean)·scale + shift > 0]."""
    for r in range(g.shape[0]):
        grow = g[r]
        xrow = x[r]
        for c in range(g.shape[1]):
            xc = xrow[c] - mean[c]
            v = grow[c] if xc * scale[c] + shift[c] > 0 else 0 * grow[c]
            sum_g[c] += v
            sum_gx[c] += v * xc


@jit
def normalize_backward_relu(
    g: Any, x: Any, mean: Any, scale: Any, shift: Any, c1: Any, c2: Any, c3: Any, dx: Any
) -> None:
    """:func:`normalize_backward` of the masked gradient d = g·[(x − mean)·scale + shift > 0]
    (``dx`` may be ``g`` itself)."""
    row_g = np.empty(g.shape[1], dtype=g.dtype)
    for r in range(g.shape[0]):
        grow = g[r]
        for c in range(g.shape[1]):
            row_g[c] = grow[c]
        xrow = x[r]
        out = dx[r]
        for c in range(g.shape[1]):
            xc = xrow[c] - mean[c]
            v = row_g[c] if xc * scale[c] + shift[c] > 0 else 0 * row_g[c]
            out[c] = c1[c] * v - c2[c] * xc - c3[c]
