"""Winograd F(2×2, 3×3) tile transforms (see :mod:`gradcraft.ops.conv` for the matrices).

A block is the tiles of samples [n0, n1) and tile rows [t0, t1), all t_w tile columns; tile
(b, t, s) is row ((b − n0)·(t1 − t0) + t − t0)·t_w + s of the (16, T, C) transformed arrays.
Each kernel loads one tile's values for a run of channels, transforms them in registers and
stores the results, instead of the eight whole-block NumPy passes of the reference code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcraft.ops.kernels import jit

__all__ = ["input_transform", "output_adjoint", "output_transform"]


@jit
def _transform_tile(d0: Any, d1: Any, d2: Any, d3: Any, v: Any, k: int) -> None:
    """v[:, k] = Bᵀ d B for one 4×4 tile given as its rows d0…d3, each (4, C)."""
    for ch in range(v.shape[2]):
        # rows: Bᵀ d, column by column
        a00 = d0[0, ch] - d2[0, ch]
        a01 = d0[1, ch] - d2[1, ch]
        a02 = d0[2, ch] - d2[2, ch]
        a03 = d0[3, ch] - d2[3, ch]
        a10 = d1[0, ch] + d2[0, ch]
        a11 = d1[1, ch] + d2[1, ch]
        a12 = d1[2, ch] + d2[2, ch]
        a13 = d1[3, ch] + d2[3, ch]
        a20 = d2[0, ch] - d1[0, ch]
        a21 = d2[1, ch] - d1[1, ch]
        a22 = d2[2, ch] - d1[2, ch]
        a23 = d2[3, ch] - d1[3, ch]
        a30 = d1[0, ch] - d3[0, ch]
        a31 = d1[1, ch] - d3[1, ch]
        a32 = d1[2, ch] - d3[2, ch]
        a33 = d1[3, ch] - d3[3, ch]
        # columns: (Bᵀ d) B
        v[0, k, ch] = a00 - a02
        v[1, k, ch] = a01 + a02
        v[2, k, ch] = a02 - a01
        v[3, k, ch] = a01 - a03
        v[4, k, ch] = a10 - a12
        v[5, k, ch] = a11 + a12
        v[6, k, ch] = a12 - a11
        v[7, k, ch] = a11 - a13
        v[8, k, ch] = a20 - a22
        v[9, k, ch] = a21 + a22
        v[10, k, ch] = a22 - a21
        v[11, k, ch] = a21 - a23
        v[12, k, ch] = a30 - a32
        v[13, k, ch] = a31 + a32
        v[14, k, ch] = a32 - a31
        v[15, k, ch] = a31 - a33


@jit
def _gather_tile(x: Any, b: int, i0: int, j0: int, edge: Any) -> None:
    """edge[r, q] = x[b, i0 + r, j0 + q] where that lies inside x (N, H, W, C), else 0: a tile
    that reaches into the padding or past an odd-sized edge."""
    h, w = x.shape[1], x.shape[2]
    for r in range(edge.shape[0]):
        for q in range(edge.shape[1]):
            i, j = i0 + r, j0 + q
            if 0 <= i < h and 0 <= j < w:
                edge[r, q] = x[b, i, j]
            else:
                edge[r, q] = 0


@jit
def input_transform(x: Any, pt: int, pl: int, n0: int, n1: int, t0: int, t1: int, tw: int, v: Any) -> None:
    """V = Bᵀ d B for the 4×4 input tiles d = x̃[b, 2t : 2t + 4, 2s : 2s + 4, :] of the block, where
    x̃ is ``x`` shifted down by ``pt`` rows and right by ``pl`` columns with zeros everywhere
    outside it: the padding is read as zeros, never written out.

    x: (N, H, W, C) channels-last; v: (16, T, C), entry 4a + b holding (Bᵀ d B)[a, b].
    """
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    rows = t1 - t0
    edge = np.empty((4, 4, c), dtype=x.dtype)
    for b in range(n0, n1):
        for t in range(t0, t1):
            i0 = 2 * t - pt
            for s in range(tw):
                j0 = 2 * s - pl
                k = ((b - n0) * rows + t - t0) * tw + s
                if i0 >= 0 and i0 + 4 <= h and j0 >= 0 and j0 + 4 <= w:
                    _transform_tile(
                        x[b, i0, j0 : j0 + 4],
                        x[b, i0 + 1, j0 : j0 + 4],
                        x[b, i0 + 2, j0 : j0 + 4],
                        x[b, i0 + 3, j0 : j0 + 4],
                        v,
                        k,
                    )
                    continue
                _gather_tile(x, b, i0, j0, edge)
                _transform_tile(edge[0], edge[1], edge[2], edge[3], v, k)


@jit
def _output_tile(m: Any, k: int, bias: Any, y0: Any, y1: Any) -> None:
    """The 2×2 output tile Aᵀ M A + bias of tile k of m (16, T, C_out), rows y0 and y1 (2, C_out)."""
    for ch in range(m.shape[2]):
        # rows: Aᵀ M
        r00 = m[0, k, ch] + m[4, k, ch] + m[8, k, ch]
        r01 = m[1, k, ch] + m[5, k, ch] + m[9, k, ch]
        r02 = m[2, k, ch] + m[6, k, ch] + m[10, k, ch]
        r03 = m[3, k, ch] + m[7, k, ch] + m[11, k, ch]
        r10 = m[4, k, ch] - m[8, k, ch] - m[12, k, ch]
        r11 = m[5, k, ch] - m[9, k, ch] - m[13, k, ch]
        r12 = m[6, k, ch] - m[10, k, ch] - m[14, k, ch]
        r13 = m[7, k, ch] - m[11, k, ch] - m[15, k, ch]
        # columns: (Aᵀ M) A
        y0[0, ch] = r00 + r01 + r02 + bias[ch]
        y0[1, ch] = r01 - r02 - r03 + bias[ch]
        y1[0, ch] = r10 + r11 + r12 + bias[ch]
        y1[1, ch] = r11 - r12 - r13 + bias[ch]


@jit
def output_transform(m: Any, bias: Any, n0: int, n1: int, t0: int, t1: int, tw: int, out: Any) -> None:
    """Y = Aᵀ M A + bias written to the 2×2 output tiles out[b, 2t : 2t + 2, 2s : 2s + 2, :];
    a tile that reaches past an odd-sized output keeps only its rows and columns inside it.

    m: (16, T, C_out); bias: (C_out,); out: (N, H_out, W_out, C_out), H_out ≥ 2·t_h − 1.
    """
    h, w, c = out.shape[1], out.shape[2], out.shape[3]
    rows = t1 - t0
    edge = np.empty((2, 2, c), dtype=out.dtype)
    for b in range(n0, n1):
        for t in range(t0, t1):
            for s in range(tw):
                k = ((b - n0) * rows + t - t0) * tw + s
                if 2 * t + 2 <= h and 2 * s + 2 <= w:
                    y = out[b, 2 * t : 2 * t + 2, 2 * s : 2 * s + 2]
                    _output_tile(m, k, bias, y[0], y[1])
                    continue
                _output_tile(m, k, bias, edge[0], edge[1])
                for r in range(2):
                    for q in range(2):
                        if 2 * t + r < h and 2 * s + q < w:
                            out[b, 2 * t + r, 2 * s + q] = edge[r, q]


@jit
def _adjoint_tile(g0: Any, g1: Any, dm: Any, k: int) -> None:
    """dm[:, k] = A G Aᵀ for one 2×2 output-gradient tile given as its rows g0, g1 (2, C_out)."""
    for ch in range(dm.shape[2]):
        # rows: A G (A = [[1, 0], [1, 1], [1, −1], [0, −1]])
        r00 = g0[0, ch]
        r01 = g0[1, ch]
        r10 = g0[0, ch] + g1[0, ch]
        r11 = g0[1, ch] + g1[1, ch]
        r20 = g0[0, ch] - g1[0, ch]
        r21 = g0[1, ch] - g1[1, ch]
        r30 = -g1[0, ch]
        r31 = -g1[1, ch]
        # columns: (A G) Aᵀ
        dm[0, k, ch] = r00
        dm[1, k, ch] = r00 + r01
        dm[2, k, ch] = r00 - r01
        dm[3, k, ch] = -r01
        dm[4, k, ch] = r10
        dm[5, k, ch] = r10 + r11
        dm[6, k, ch] = r10 - r11
        dm[7, k, ch] = -r11
        dm[8, k, ch] = r20
        dm[9, k, ch] = r20 + r21
        dm[10, k, ch] = r20 - r21
        dm[11, k, ch] = -r21
        dm[12, k, ch] = r30
        dm[13, k, ch] = r30 + r31
        dm[14, k, ch] = r30 - r31
        dm[15, k, ch] = -r31


@jit
def output_adjoint(g: Any, n0: int, n1: int, t0: int, t1: int, tw: int, dm: Any) -> None:
    """dM = A G Aᵀ for the 2×2 output-gradient tiles G = g[b, 2t : 2t + 2, 2s : 2s + 2, :]
    (the adjoint of :func:`output_transform`), reading zeros past an odd-sized g;
    g: (N, H_out, W_out, C_out), H_out ≥ 2·t_h − 1; dm: (16, T, C_out)."""
    h, w, c = g.shape[1], g.shape[2], g.shape[3]
    rows = t1 - t0
    edge = np.empty((2, 2, c), dtype=g.dtype)
    for b in range(n0, n1):
        for t in range(t0, t1):
            for s in range(tw):
                k = ((b - n0) * rows + t - t0) * tw + s
                if 2 * t + 2 <= h and 2 * s + 2 <= w:
                    _adjoint_tile(g[b, 2 * t, 2 * s : 2 * s + 2], g[b, 2 * t + 1, 2 * s : 2 * s + 2], dm, k)
                    continue
                _gather_tile(g, b, 2 * t, 2 * s, edge)
                _adjoint_tile(edge[0], edge[1], dm, k)
