"""im2col from the unpadded input: the columns of one block of output rows, with the taps that
fall into the padding written as zeros (see :func:`gradcraft.ops.conv.im2col_block`).

The NumPy path first copies the whole input into a zero-padded buffer and then reads the
windows of that buffer; this kernel reads the input itself, so a convolution keeps no padded
copy of its input (the size of the input, per call, forward and backward).
"""

from __future__ import annotations

from typing import Any

from gradcraft.ops.kernels import jit

__all__ = ["im2col"]


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

    x: (N, H, W, C) channels-last; cols: (G, rows, kH·kW·C_g).
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
                    # output columns [j_lo, j_hi) read inside x: 0 <= j·s_w + offset < W
                    offset = q * dw - pl
                    j_lo = min(wo, max(0, -(offset // sw)))
                    j_hi = max(j_lo, min(wo, (w - 1 - offset) // sw + 1))
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
