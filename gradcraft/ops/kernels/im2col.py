"""im2col from the unpadded input, and its adjoint col2im.

:func:`im2col` writes the columns of one block of output rows, with the taps that fall into
the padding written as zeros (see :func:`gradcraft.ops.conv.im2col_block`). The NumPy path
first copies the whole input into a zero-padded buffer and then reads the windows of that
buffer; this kernel reads the input itself, so a convolution keeps no padded copy of its input
(the size of the input, per call, forward and backward).

:func:`col2im` adds the column gradients of a block back onto the input gradient, tap by tap
in the order of :func:`gradcraft.ops.conv.col2im_block` (so each element receives the same
sums in the same order, to the last bit), in one compiled pass per tap instead of a NumPy add
over a seven-axis strided view.
"""

from __future__ import annotations

from typing import Any

from gradcraft.ops.kernels import jit

__all__ = ["col2im", "im2col", "im2col_taps"]


@jit
def _inside_range(offset: int, stride: int, size: int, out: int) -> tuple[int, int]:
    """The output indices [lo, hi) of a tap whose input index j·stride + offset lies in
    [0, size), for j in [0, out)."""
    lo = min(out, max(0, -(offset // stride)))
    return lo, max(lo, min(out, (size - 1 - offset) // stride + 1))


@jit
def im2col(
    x: Any,
    n0: int,
    n1: int,
    h0: int,
    h1: int,
    wo: int,
    kh: int,
    kw: int,
    sh: int,
    sw: int,
    dh: int,
    dw: int,
    pt: int,
    pl: int,
    cols: Any,
) -> None:
    """cols[g, r, (p·kW + q)·C_g + c] = x[n, i·s_h + p·d_h − p_t, j·s_w + q·d_w − p_l, g·C_g + c],
    or 0 where that position lies outside x, for the output rows r = ((n − n0)·(h1 − h0) +
    i − h0)·W_out + j of the block (samples [n0, n1), output rows [h0, h1)).

    x: (N, H, W, C), of any strides (a channels-last array, or a view of an NCHW one);
    cols: (G, rows, kH·kW·C_g).
    """
    h, w = x.shape[1], x.shape[2]
    groups = cols.shape[0]
    cg = x.shape[3] // groups
    for n in range(n0, n1):
        for i in range(h0, h1):
            r0 = ((n - n0) * (h1 - h0) + i - h0) * wo
            for p in range(kh):
                ih = i * sh + p * dh - pt
                for q in range(kw):
                    k0 = (p * kw + q) * cg
                    offset = q * dw - pl
                    j_lo, j_hi = _inside_range(offset, sw, w, wo)
                    if ih < 0 or ih >= h:
                        j_lo = j_hi = wo
                    for g in range(groups):
                        for j in range(j_lo):
                            for c in range(cg):
                                cols[g, r0 + j, k0 + c] = 0
                        for j in range(j_lo, j_hi):
                            iw = j * sw + offset
                            for c in range(cg):
                                cols[g, r0 + j, k0 + c] = x[n, ih, iw, g * cg + c]
                        for j in range(j_hi, wo):
                            for c in range(cg):
                                cols[g, r0 + j, k0 + c] = 0


@jit
def im2col_taps(
    x: Any,
    n0: int,
    n1: int,
    h0: int,
    h1: int,
    wo: int,
    kh: int,
    kw: int,
    sh: int,
    sw: int,
    dh: int,
    dw: int,
    pt: int,
    pl: int,
    cols_t: Any,
) -> None:
    """The columns of :func:`im2col` transposed, tap-major: cols_t[g, k, r] = cols[g, r, k].

    Each tap's row of cols_t is a run of contiguous writes, read from an input row. For a
    single input channel this is 3× faster than :func:`im2col`, whose per-row runs are then one
    element long (a 3×3 stem layer's columns of 8 samples of 32×32: 65 against 198 µs). The
    GEMMs read cols_t as the transposed matrix it is, which BLAS rounds differently from
    :func:`im2col`'s columns (the results agree to float rounding, not bit for bit).

    x: (N, H, W, C), of any strides; cols_t: (G, kH·kW·C_g, rows).
    """
    h, w = x.shape[1], x.shape[2]
    groups = cols_t.shape[0]
    cg = x.shape[3] // groups
    for g in range(groups):
        for p in range(kh):
            for q in range(kw):
                offset = q * dw - pl
                j_lo, j_hi = _inside_range(offset, sw, w, wo)
                for c in range(cg):
                    row = cols_t[g, (p * kw + q) * cg + c]
                    for n in range(n0, n1):
                        for i in range(h0, h1):
                            r0 = ((n - n0) * (h1 - h0) + i - h0) * wo
                            ih = i * sh + p * dh - pt
                            if ih < 0 or ih >= h:
                                for j in range(wo):
                                    row[r0 + j] = 0
                                continue
                            for j in range(j_lo):
                                row[r0 + j] = 0
                            for j in range(j_lo, j_hi):
                                row[r0 + j] = x[n, ih, j * sw + offset, g * cg + c]
                            for j in range(j_hi, wo):
                                row[r0 + j] = 0


@jit
def col2im(
    dcols: Any,
    n0: int,
    n1: int,
    h0: int,
    h1: int,
    wo: int,
    kh: int,
    kw: int,
    sh: int,
    sw: int,
    dh: int,
    dw: int,
    pt: int,
    pl: int,
    dx: Any,
) -> None:
    """dx[n, i·s_h + p·d_h − p_t, j·s_w + q·d_w − p_l, g·C_g + c] += dcols[g, r, (p·kW + q)·C_g + c]
    for the output rows r of the block (numbered as in :func:`im2col`), tap (p, q) after tap,
    skipping positions in the padding: the adjoint of :func:`im2col`.

    dcols: (G, rows, kH·kW·C_g); dx: (N, H, W, C) channels-last, accumulated in place.
    """
    h, w = dx.shape[1], dx.shape[2]
    groups = dcols.shape[0]
    cg = dx.shape[3] // groups
    for p in range(kh):
        for q in range(kw):
            k0 = (p * kw + q) * cg
            offset = q * dw - pl
            j_lo, j_hi = _inside_range(offset, sw, w, wo)
            for n in range(n0, n1):
                for i in range(h0, h1):
                    ih = i * sh + p * dh - pt
                    if ih < 0 or ih >= h:
                        continue
                    r0 = ((n - n0) * (h1 - h0) + i - h0) * wo
                    for j in range(j_lo, j_hi):
                        iw = j * sw + offset
                        for g in range(groups):
                            for c in range(cg):
                                dx[n, ih, iw, g * cg + c] += dcols[g, r0 + j, k0 + c]
