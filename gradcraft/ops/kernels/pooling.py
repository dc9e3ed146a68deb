"""Max-pooling kernels over channels-last views: x (N, H, W, C) → y, tap index (N, H_out, W_out, C).

Geometry as in :mod:`gradcraft.ops.pooling`: output (i, j), tap (p, q) reads input row
i·s_h + p·d_h − pad_top and column j·s_w + q·d_w − pad_left; positions outside the input count
as −∞. The tap index t = p·k_w + q of the first maximum (strict ``>`` in row-major order) is
recorded; a NaN wins over any number, so NaN propagates as in NumPy and PyTorch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcraft.ops.kernels import jit

__all__ = ["max_pool_2x2", "max_pool_2x2_backward", "max_pool_backward", "max_pool_forward"]


@jit
def max_pool_forward(
    x: Any, out: Any, idx: Any, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pt: int, pl: int
) -> None:
    """out[n, i, j, c] = max over the window; idx[n, i, j, c] = winning tap (first maximum).

    The running maximum of one window is kept for all channels at once in two small local
    arrays, so the per-tap loop over channels is branch-free and vectorises.
    """
    n, h, w, c = x.shape
    ho, wo = out.shape[1], out.shape[2]
    best = np.empty(c, x.dtype)
    arg = np.empty(c, np.int32)
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                first = True
                for p in range(kh):
                    r = i * sh + p * dh - pt
                    for q in range(kw):
                        s = j * sw + q * dw - pl
                        t = p * kw + q
                        if not (0 <= r < h and 0 <= s < w):
                            if first:  # a window that starts in the padding starts at −∞
                                best[:] = -np.inf
                                arg[:] = t
                                first = False
                            continue
                        if first:
                            for ch in range(c):
                                best[ch] = x[b, r, s, ch]
                                arg[ch] = t
                            first = False
                            continue
                        for ch in range(c):
                            v = x[b, r, s, ch]
                            cur = best[ch]
                            take = (v > cur) | (np.isnan(v) & (not np.isnan(cur)))
                            best[ch] = v if take else cur
                            arg[ch] = t if take else arg[ch]
                for ch in range(c):
                    out[b, i, j, ch] = best[ch]
                    idx[b, i, j, ch] = arg[ch]


@jit
def max_pool_2x2(x: Any, out: Any, idx: Any) -> None:
    """:func:`max_pool_forward` for 2×2 windows with stride 2 and no padding (the usual case),
    with the four taps unrolled so each channel's maximum stays in registers."""
    n = x.shape[0]
    ho, wo, c = out.shape[1], out.shape[2], out.shape[3]
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                for ch in range(c):
                    best = x[b, 2 * i, 2 * j, ch]
                    arg = 0
                    v = x[b, 2 * i, 2 * j + 1, ch]
                    if v > best or (np.isnan(v) and not np.isnan(best)):
                        best = v
                        arg = 1
                    v = x[b, 2 * i + 1, 2 * j, ch]
                    if v > best or (np.isnan(v) and not np.isnan(best)):
                        best = v
                        arg = 2
                    v = x[b, 2 * i + 1, 2 * j + 1, ch]
                    if v > best or (np.isnan(v) and not np.isnan(best)):
                        best = v
                        arg = 3
                    out[b, i, j, ch] = best
                    idx[b, i, j, ch] = arg


@jit
def max_pool_backward(
    g: Any, idx: Any, dx: Any, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pt: int, pl: int
) -> None:
    """dx[n, r, s, c] += g[n, i, j, c] at the winning tap of every window (dx zeroed by the caller).

    Like the NumPy path, the gradient is multiplied by the 0/1 "this tap won" mask, so the
    channel loop is branch-free.
    """
    n, ho, wo, c = g.shape
    h, w = dx.shape[1], dx.shape[2]
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                gr = g[b, i, j]
                ir = idx[b, i, j]
                for p in range(kh):
                    r = i * sh + p * dh - pt
                    for q in range(kw):
                        s = j * sw + q * dw - pl
                        if 0 <= r < h and 0 <= s < w:
                            t = p * kw + q
                            dr = dx[b, r, s]
                            for ch in range(c):
                                dr[ch] += gr[ch] * (ir[ch] == t)


@jit
def max_pool_2x2_backward(g: Any, idx: Any, dx: Any) -> None:
    """:func:`max_pool_backward` for 2×2 windows with stride 2 and no padding: every position of
    the covered part of dx is written exactly once (rows or columns past it are left alone)."""
    n, ho, wo, c = g.shape
    for b in range(n):
        for i in range(ho):
            for p in range(2):
                for j in range(wo):
                    gr = g[b, i, j]
                    ir = idx[b, i, j]
                    for q in range(2):
                        t = 2 * p + q
                        dr = dx[b, 2 * i + p, 2 * j + q]
                        for ch in range(c):
                            dr[ch] = gr[ch] * (ir[ch] == t)
