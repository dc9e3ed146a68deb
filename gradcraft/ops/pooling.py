"""Pooling over NCHW inputs: max, average, adaptive average, global average, fractional max.

Every op takes (N, C, H, W) and returns (N, C, H_out, W_out) with, along each axis (PyTorch's
formula; ``d`` is the dilation, 1 for average pooling)::

    out = ⌊(size + 2·pad − d·(k − 1) − 1) / stride⌋ + 1          (ceil_mode=False)
    out = ⌈(size + 2·pad − d·(k − 1) − 1) / stride⌉ + 1          (ceil_mode=True, minus one
                                                                  if the last window would
                                                                  start in the right padding)

How they run. A pooling window has k_h·k_w *taps*; tap (p, q) of every window at once is one
strided view of the (padded) input, ``x[:, :, p·d : … : s, q·d : … : s]``. Max pooling keeps a
running maximum over the k_h·k_w tap views (k_h·k_w vectorised passes, no im2col copy), and
average pooling a running sum. When the windows tile the input (stride = kernel, no padding,
no dilation — the usual 2×2/2 pooling) the input is *reshaped* to (N, C, H_out, k_h, W_out,
k_w) and the backward pass writes each tap's slice of dX exactly once (no zero fill, no adds).
Otherwise backward adds each tap's contribution with a masked strided add.

Max pooling sends the gradient of each window to the *first* maximum in the window (row-major
order), as PyTorch does: the forward pass records which tap won with a strict ``>`` comparison,
so ties go to the earliest tap. Routing it to every tied maximum would multiply the gradient by
the number of ties (up to k_h·k_w on flat regions such as ReLU zeros). A NaN in a window makes
the output NaN (as in PyTorch); where its gradient goes is unspecified.

Outputs keep the memory order of the input: a channels-last input (such as a convolution's
output) gives a channels-last output, and dX has the same order. The work is split over the
samples of the batch and spread over the worker threads of :func:`gradcraft.ops.conv.parallel_for`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gradcraft import backend
from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module
from gradcraft.ops import accel
from gradcraft.ops.conv import IntPair, channels_last_padded, pair, parallel_for, sample_chunks

__all__ = [
    "adaptive_avg_pool2d",
    "adaptive_pool_matrix",
    "avg_pool2d",
    "fractional_max_pool2d",
    "fractional_pool_starts",
    "global_avg_pool2d",
    "max_pool2d",
    "pool_output_size",
]

def pool_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool) -> int:
    """Output length of a pooling window along one axis (PyTorch's rule, see the module docstring)."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _check_input(x: Any, name: str) -> None:
    if getattr(x, "ndim", 0) != 4:
        raise ValueError(
            f"{name} expected input of shape (N, C, H, W). Received: input.shape={getattr(x, 'shape', None)}"
        )


def _geometry(
    x: Any,
    name: str,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: bool,
    pad_limit_uses_dilation: bool,
) -> tuple[IntPair, IntPair, IntPair, IntPair, IntPair, tuple[IntPair, IntPair]]:
    """Validate pooling arguments; return kernel, stride, padding, dilation, output size and the
    ((top, bottom), (left, right)) padding of the buffer that holds every window."""
    _check_input(x, name)
    kernel = pair(kernel_size, "kernel_size")
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and not stride)
    stride = kernel if no_stride else pair(stride, "stride")
    pad = pair(padding, "padding", minimum=0)
    dil = pair(dilation, "dilation")
    for k, p, d in zip(kernel, pad, dil):
        limit = (d * (k - 1) + 1) // 2 if pad_limit_uses_dilation else k // 2
        if p > limit:
            raise ValueError(
                f"{name} expected padding at most half the kernel size ({limit}). "
                f"Received: padding={padding!r}, kernel_size={kernel_size!r}"
            )
    h, w = x.shape[2], x.shape[3]
    out = tuple(
        pool_output_size(size, k, s, p, d, ceil_mode)
        for size, k, s, p, d in zip((h, w), kernel, stride, pad, dil)
    )
    if out[0] < 1 or out[1] < 1:
        raise ValueError(
            f"{name} expected the window to fit the padded input. Received: input.shape={x.shape}, "
            f"kernel_size={kernel}, padding={pad}, dilation={dil} (output would be {out[0]}×{out[1]})"
        )
    pads = []
    for size, o, k, s, p, d in zip((h, w), out, kernel, stride, pad, dil):
        need = (o - 1) * s + d * (k - 1) + 1  # padded length the last window reaches
        pads.append((p, max(p, need - size - p)))
    return kernel, stride, pad, dil, (out[0], out[1]), (pads[0], pads[1])


def _tiles(kernel: IntPair, stride: IntPair, dilation: IntPair, pads: tuple[IntPair, IntPair]) -> bool:
    """True when the windows tile the input without overlap, gaps or padding."""
    return stride == kernel and dilation == (1, 1) and pads == ((0, 0), (0, 0))


def _is_channels_last(x: Any) -> bool:
    """True when (N, C, H, W) ``x`` is stored channels-last (and not also C-ordered)."""
    return x.shape[1] > 1 and not x.flags.c_contiguous and x.transpose(0, 2, 3, 1).flags.c_contiguous


def _new(xp: Any, shape: tuple[int, ...], dtype: Any, channels_last: bool, zero: bool = False) -> Any:
    """A new (N, C, H, W) array stored channels-last or in C order."""
    alloc = xp.zeros if zero else xp.empty
    if channels_last:
        n, c, h, w = shape
        return alloc((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)
    return alloc(shape, dtype=dtype)


def _like(x: Any, shape: tuple[int, ...], dtype: Any = None) -> Any:
    """A new (N, C, H, W) array with ``x``'s memory order (channels-last or C order)."""
    return _new(get_array_module(x), shape, x.dtype if dtype is None else dtype, _is_channels_last(x))


def _for_chunks(x: Any, body: Callable[[int, int], None]) -> None:
    """Run ``body(n0, n1)`` over ranges of samples of ``x``, on the worker threads."""
    xp = get_array_module(x)
    chunks = sample_chunks(xp, x.shape[0], x[:1].nbytes)
    parallel_for(xp, len(chunks), lambda i, _scratch: body(*chunks[i]))


class _Taps:
    """The k_h·k_w tap views of a pooling window over a (padded) input.

    ``tap(src, p, q)`` is the (N, C, H_out, W_out) view of window element (p, q) for every
    window, where ``src`` is the input (when the windows tile it: reshaped, no copy) or the
    padded buffer.
    """

    def __init__(
        self, kernel: IntPair, stride: IntPair, dilation: IntPair, out: IntPair, tiles: bool
    ) -> None:
        self.kernel, self.stride, self.dilation, self.out, self.tiles = kernel, stride, dilation, out, tiles

    def source(self, x: Any) -> Any:
        """(N, C, H_out, k_h, W_out, k_w) view when tiling, else ``x`` itself."""
        if not self.tiles:
            return x
        (ho, wo), (kh, kw) = self.out, self.kernel
        return x[:, :, : ho * kh, : wo * kw].reshape(x.shape[0], x.shape[1], ho, kh, wo, kw)

    def tap(self, src: Any, p: int, q: int) -> Any:
        if self.tiles:
            return src[:, :, :, p, :, q]
        (ho, wo), (sh, sw), (dh, dw) = self.out, self.stride, self.dilation
        return src[:, :, p * dh : p * dh + (ho - 1) * sh + 1 : sh, q * dw : q * dw + (wo - 1) * sw + 1 : sw]

    def __iter__(self) -> Any:
        kh, kw = self.kernel
        return ((t, t // kw, t % kw) for t in range(kh * kw))


def _padded(x: Any, pads: tuple[IntPair, IntPair], fill: float) -> Any:
    """``x`` padded with ``fill`` as a logical (N, C, H', W') view (channels-last memory)."""
    if pads == ((0, 0), (0, 0)):
        return x
    return channels_last_padded(x, pads, fill).transpose(0, 3, 1, 2)


def _index_dtype(xp: Any, taps: int) -> Any:
    return xp.int8 if taps <= 127 else xp.int32


# ---------------------------------------------------------------------------- max pooling
class MaxPool2d(Function):
    """y[n, c, i, j] = max over the window (i, j) of x[n, c]; dX gets g at the first maximum.

    Shapes: x (N, C, H, W) → y (N, C, H_out, W_out). Padding counts as −∞.
    """

    def forward(
        self,
        x: Any,
        kernel_size: Any = 2,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        ceil_mode: bool = False,
    ) -> Any:
        xp = get_array_module(x)
        kernel, stride, _, dil, out_hw, pads = _geometry(
            x, "max_pool2d", kernel_size, stride, padding, dilation, ceil_mode, True
        )
        n, c = x.shape[:2]
        need = self.needs_input_grad[0]
        fast = accel.kernels("pooling", x) if _is_channels_last(x) else None
        if fast is not None:
            return self._compiled_forward(fast, x, kernel, stride, dil, out_hw, pads, need)
        taps = _Taps(kernel, stride, dil, out_hw, _tiles(kernel, stride, dil, pads))
        src = taps.source(_padded(x, pads, -xp.inf))
        out = _like(src if not taps.tiles else x, (n, c, *out_hw))
        idx = _like(out, out.shape, dtype=_index_dtype(xp, kernel[0] * kernel[1])) if need else None

        def body(n0: int, n1: int) -> None:
            o = out[n0:n1]
            ix = idx[n0:n1] if need else None
            for t, p, q in taps:
                v = taps.tap(src, p, q)[n0:n1]
                if t == 0:
                    o[...] = v
                    if need:
                        ix[...] = 0
                    continue
                if need:
                    xp.copyto(ix, t, where=xp.greater(v, o))
                xp.maximum(o, v, out=o)

        _for_chunks(x, body)
        self.save_for_backward(idx)
        self.geometry = (x.shape, _is_channels_last(x), taps, pads)
        self.compiled = None
        return out

    def _compiled_forward(
        self,
        fast: Any,
        x: Any,
        kernel: IntPair,
        stride: IntPair,
        dil: IntPair,
        out_hw: IntPair,
        pads: tuple[IntPair, IntPair],
        need: bool,
    ) -> Any:
        """One pass over a channels-last ``x`` with the compiled kernel (see :mod:`gradcraft.ops.accel`)."""
        xp = get_array_module(x)
        n, c = x.shape[:2]
        out = _new(xp, (n, c, *out_hw), x.dtype, True)
        idx = _new(xp, (n, c, *out_hw), _index_dtype(xp, kernel[0] * kernel[1]), True)
        params = (*stride, *dil, pads[0][0], pads[1][0])
        xl, ol, il = (a.transpose(0, 2, 3, 1) for a in (x, out, idx))
        tiles2 = kernel == stride == (2, 2) and pads == ((0, 0), (0, 0)) and dil == (1, 1)
        if tiles2:
            _for_chunks(x, lambda n0, n1: fast.max_pool_2x2(xl[n0:n1], ol[n0:n1], il[n0:n1]))
        else:
            _for_chunks(
                x, lambda n0, n1: fast.max_pool_forward(xl[n0:n1], ol[n0:n1], il[n0:n1], *kernel, *params)
            )
        self.save_for_backward(idx if need else None)
        self.geometry = (x.shape, True, None, pads)
        self.compiled = (fast, tiles2, (*kernel, *params))
        return out

    def backward(self, g: Any) -> Any:
        xp = get_array_module(g)
        (idx,) = self.saved
        x_shape, channels_last, taps, pads = self.geometry
        if self.compiled is not None:
            fast, tiles2, params = self.compiled
            h, w = x_shape[2:]
            dx = _new(xp, x_shape, g.dtype, True, zero=not tiles2 or h % 2 == 1 or w % 2 == 1)
            gl, il, dl = (a.transpose(0, 2, 3, 1) for a in (g, idx, dx))
            if gl.strides[3] != gl.itemsize:  # the kernels read whole channel rows
                gl = xp.ascontiguousarray(gl)
            if tiles2:
                _for_chunks(g, lambda n0, n1: fast.max_pool_2x2_backward(gl[n0:n1], il[n0:n1], dl[n0:n1]))
            else:
                _for_chunks(
                    g, lambda n0, n1: fast.max_pool_backward(gl[n0:n1], il[n0:n1], dl[n0:n1], *params)
                )
            return dx
        n, c, h, w = x_shape
        if taps.tiles:
            (ho, wo), (kh, kw) = taps.out, taps.kernel
            dx = _new(xp, x_shape, g.dtype, channels_last, zero=ho * kh < h or wo * kw < w)
            dsrc = taps.source(dx)
        else:
            padded = (n, c, h + sum(pads[0]), w + sum(pads[1]))
            dsrc = _new(xp, padded, g.dtype, channels_last, zero=True)

        def body(n0: int, n1: int) -> None:
            gi, ix = g[n0:n1], idx[n0:n1]
            for t, p, q in taps:
                view = taps.tap(dsrc, p, q)[n0:n1]
                if taps.tiles:  # every position of dX belongs to exactly one window
                    xp.multiply(gi, ix == t, out=view)
                else:
                    view += xp.where(ix == t, gi, 0)

        _for_chunks(g, body)
        if taps.tiles:
            return dx
        return dsrc[:, :, pads[0][0] : pads[0][0] + h, pads[1][0] : pads[1][0] + w]


# ---------------------------------------------------------------------------- average pooling
def _avg_counts(size: int, out: int, kernel: int, stride: int, pad: int, include_pad: bool) -> Any:
    """Per-axis divisor of each output position (PyTorch's rule): the window length clipped to
    the padded input, or to the input itself when padding is not counted."""
    counts = []
    for i in range(out):
        start = i * stride - pad
        end = min(start + kernel, size + pad)
        counts.append(end - start if include_pad else min(end, size) - max(start, 0))
    return counts


class AvgPool2d(Function):
    """y[n, c, i, j] = (Σ window (i, j) of x[n, c]) / divisor;  dX[window] += g / divisor.

    Shapes: x (N, C, H, W) → y (N, C, H_out, W_out). Padding counts as 0. The divisor is
    ``divisor_override`` if given, else the window size within the padded input
    (``count_include_pad=True``) or within the input (``False``), as in PyTorch.
    """

    def forward(
        self,
        x: Any,
        kernel_size: Any = 2,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> Any:
        xp = get_array_module(x)
        kernel, stride, pad, dil, out_hw, pads = _geometry(
            x, "avg_pool2d", kernel_size, stride, padding, 1, ceil_mode, False
        )
        if divisor_override is not None:
            bad = isinstance(divisor_override, bool) or not isinstance(divisor_override, int)
            if bad or divisor_override < 1:
                raise ValueError(
                    "avg_pool2d expected a positive int divisor_override. "
                    f"Received: divisor_override={divisor_override!r}"
                )
            inv = 1.0 / divisor_override
        else:
            rows = _avg_counts(x.shape[2], out_hw[0], kernel[0], stride[0], pad[0], count_include_pad)
            cols = _avg_counts(x.shape[3], out_hw[1], kernel[1], stride[1], pad[1], count_include_pad)
            if len(set(rows)) == 1 and len(set(cols)) == 1:
                inv = 1.0 / (rows[0] * cols[0])
            else:
                div = xp.asarray(rows, dtype=x.dtype)[:, None] * xp.asarray(cols, dtype=x.dtype)[None, :]
                inv = (1 / div).astype(x.dtype)
        n, c = x.shape[:2]
        taps = _Taps(kernel, stride, dil, out_hw, _tiles(kernel, stride, dil, pads))
        src = taps.source(_padded(x, pads, 0.0))
        out = _like(src if not taps.tiles else x, (n, c, *out_hw))

        def body(n0: int, n1: int) -> None:
            o = out[n0:n1]
            for t, p, q in taps:
                v = taps.tap(src, p, q)[n0:n1]
                if t == 0:
                    o[...] = v
                else:
                    o += v
            o *= inv

        _for_chunks(x, body)
        self.geometry = (x.shape, _is_channels_last(x), taps, pads, inv)
        return out

    def backward(self, g: Any) -> Any:
        xp = get_array_module(g)
        x_shape, channels_last, taps, pads, inv = self.geometry
        n, c, h, w = x_shape
        if taps.tiles:
            (ho, wo), (kh, kw) = taps.out, taps.kernel
            dx = _new(xp, x_shape, g.dtype, channels_last, zero=ho * kh < h or wo * kw < w)
            dsrc = taps.source(dx)
        else:
            padded = (n, c, h + sum(pads[0]), w + sum(pads[1]))
            dsrc = _new(xp, padded, g.dtype, channels_last, zero=True)

        def body(n0: int, n1: int) -> None:
            gi = g[n0:n1] * inv
            if taps.tiles:
                dsrc[n0:n1] = gi[:, :, :, None, :, None]
                return
            for _, p, q in taps:
                taps.tap(dsrc, p, q)[n0:n1] += gi

        _for_chunks(g, body)
        if taps.tiles:
            return dx
        return dsrc[:, :, pads[0][0] : pads[0][0] + h, pads[1][0] : pads[1][0] + w]


# ---------------------------------------------------------------------------- adaptive / global
def adaptive_pool_matrix(xp: Any, size: int, out: int, dtype: Any) -> Any:
    """(out, size) averaging matrix A with A[i, start_i:end_i] = 1 / (end_i − start_i), where
    start_i = ⌊i·size/out⌋ and end_i = ⌈(i + 1)·size/out⌉ (PyTorch's adaptive pooling windows)."""
    i = xp.arange(out)
    start = (i * size) // out
    end = -((-(i + 1) * size) // out)
    cols = xp.arange(size)
    inside = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def _channels_last_view(x: Any) -> Any:
    """(N, H, W, C) C-contiguous array of ``x`` (a view when ``x`` is channels-last)."""
    xp = get_array_module(x)
    return xp.ascontiguousarray(x.transpose(0, 2, 3, 1))


class AdaptiveAvgPool2d(Function):
    """y = A_h · x · A_wᵀ per (n, c) plane, with the averaging matrices of
    :func:`adaptive_pool_matrix`; dX = A_hᵀ · g · A_w.

    Averaging over a rectangle is separable, so two small matrix products give every
    window's mean, for any input and output size, with no loop over windows.
    Shapes: x (N, C, H, W) → y (N, C, H_out, W_out).
    """

    def forward(self, x: Any, output_size: Any = 1) -> Any:
        xp = get_array_module(x)
        _check_input(x, "adaptive_avg_pool2d")
        n, c, h, w = x.shape
        if isinstance(output_size, (tuple, list)):
            if len(output_size) != 2:
                raise ValueError(
                    f"adaptive_avg_pool2d expected output_size to be an int or a pair. "
                    f"Received: output_size={output_size!r}"
                )
            ho = h if output_size[0] is None else output_size[0]
            wo = w if output_size[1] is None else output_size[1]
        else:
            ho = wo = output_size
        ho, wo = pair((ho, wo), "output_size")
        self.shape = x.shape
        if (ho, wo) == (1, 1):
            self.mats = None
            return x.mean(axis=(2, 3), keepdims=True)
        a_h = adaptive_pool_matrix(xp, h, ho, x.dtype)
        a_w = adaptive_pool_matrix(xp, w, wo, x.dtype)
        self.mats = (a_h, a_w)
        t = xp.matmul(a_h, _channels_last_view(x).reshape(n, h, w * c))  # (N, H_out, W·C)
        y = xp.matmul(a_w, t.reshape(n * ho, w, c))  # (N·H_out, W_out, C)
        return y.reshape(n, ho, wo, c).transpose(0, 3, 1, 2)

    def backward(self, g: Any) -> Any:
        xp = get_array_module(g)
        n, c, h, w = self.shape
        if self.mats is None:
            dx = _like(g, self.shape)
            dx[...] = g * (1.0 / (h * w))
            return dx
        a_h, a_w = self.mats
        ho, wo = a_h.shape[0], a_w.shape[0]
        t = xp.matmul(a_w.T, _channels_last_view(g).reshape(n * ho, wo, c))  # (N·H_out, W, C)
        dx = xp.matmul(a_h.T, t.reshape(n, ho, w * c))  # (N, H, W·C)
        return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2)


class GlobalAvgPool2d(Function):
    """y[n, c] = mean over (h, w) of x[n, c];  dX = g / (H·W) broadcast over the plane."""

    def forward(self, x: Any, keepdim: bool = False) -> Any:
        _check_input(x, "global_avg_pool2d")
        self.shape, self.keepdim = x.shape, keepdim
        return x.mean(axis=(2, 3), keepdims=keepdim)

    def backward(self, g: Any) -> Any:
        n, c, h, w = self.shape
        if not self.keepdim:
            g = g[:, :, None, None]
        xp = get_array_module(g)
        dx = xp.empty((n, h, w, c), dtype=g.dtype).transpose(0, 3, 1, 2)
        dx[...] = g * (1.0 / (h * w))
        return dx


# ---------------------------------------------------------------------------- fractional max
def fractional_pool_starts(u: Any, size: int, out: int, kernel: int) -> Any:
    """Start index of each of the ``out`` pooling windows of length ``kernel`` over ``size``.

    Graham's pseudo-random sequence as PyTorch computes it: with α = (size − kernel)/(out − 1),
    start_i = ⌊(i + u)·α⌋ − ⌊u·α⌋ for i < out − 1 and start_{out−1} = size − kernel, so the
    windows cover the whole input and consecutive starts differ by ⌊α⌋ or ⌈α⌉.

    Args:
        u: (...) samples in [0, 1), one sequence per sample (computed in ``u``'s dtype, as
            PyTorch does in the input's dtype).

    Returns:
        (..., out) integer starts.
    """
    xp = get_array_module(u)
    starts = xp.empty((*u.shape, out), dtype=xp.int64)
    if out > 1:
        alpha = u.dtype.type(size - kernel) / u.dtype.type(out - 1)
        i = xp.arange(out - 1, dtype=u.dtype)
        first = (u * alpha).astype(xp.int64)[..., None]
        starts[..., :-1] = ((i + u[..., None]) * alpha).astype(xp.int64) - first
    starts[..., -1] = size - kernel
    return starts


class FractionalMaxPool2d(Function):
    """Fractional max pooling (Graham, 2014): max over k_h×k_w windows whose starts follow a
    pseudo-random sequence (:func:`fractional_pool_starts`), one per (n, c) plane and axis.

    Shapes: x (N, C, H, W), samples (N, C, 2) in [0, 1) (column 0 for the width sequence,
    column 1 for the height sequence, as PyTorch's ``_random_samples``) → y (N, C, H_out, W_out).
    dX gets g at the first maximum of each window; windows may overlap, so contributions are
    scatter-added.
    """

    def forward(self, x: Any, samples: Any, kernel_size: Any = 2, output_size: Any = (1, 1)) -> Any:
        xp = get_array_module(x)
        n, c, h, w = x.shape
        kh, kw = kernel_size
        ho, wo = output_size
        rows = fractional_pool_starts(samples[..., 1].astype(x.dtype), h, ho, kh)  # (N, C, H_out)
        cols = fractional_pool_starts(samples[..., 0].astype(x.dtype), w, wo, kw)  # (N, C, W_out)
        # index arrays of every window element, (N, C, H_out, W_out, k_h·k_w)
        r = (rows[:, :, :, None, None] + xp.arange(kh)[:, None]).reshape(n, c, ho, 1, kh, 1)
        q = (cols[:, :, None, :, None] + xp.arange(kw)[None, :]).reshape(n, c, 1, wo, 1, kw)
        flat = (r * w + q).reshape(n, c, ho, wo, kh * kw)  # position within the (h, w) plane
        planes = x.reshape(n, c, h * w)
        vals = xp.take_along_axis(planes, flat.reshape(n, c, -1), axis=2).reshape(flat.shape)
        arg = xp.argmax(vals, axis=-1)  # first maximum in row-major window order
        self.where = xp.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]  # (N, C, H_out, W_out)
        self.shape = x.shape
        return xp.take_along_axis(vals, arg[..., None], axis=-1)[..., 0]

    def backward(self, g: Any) -> tuple[Any, None]:
        xp = get_array_module(g)
        n, c, h, w = self.shape
        dx = xp.zeros((n * c, h * w), dtype=g.dtype)
        # overlapping windows can pick the same input element: scatter-add
        xp.add.at(dx, (xp.arange(n * c)[:, None], self.where.reshape(n * c, -1)), g.reshape(n * c, -1))
        return dx.reshape(n, c, h, w), None


# ---------------------------------------------------------------------------- functional API
def max_pool2d(
    x: Tensor,
    kernel_size: int | IntPair,
    stride: int | IntPair | None = None,
    padding: int | IntPair = 0,
    dilation: int | IntPair = 1,
    ceil_mode: bool = False,
) -> Tensor:
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    Args:
        x: (N, C, H, W).
        kernel_size: window size, int or (k_h, k_w).
        stride: window step; defaults to ``kernel_size``.
        padding: implicit −∞ padding on each side, at most half the (dilated) kernel.
        dilation: spacing between window elements.
        ceil_mode: round the output size up (the last window may hang over the edge).

    Returns:
        (N, C, H_out, W_out); the gradient of each window goes to its first maximum.
    """
    return MaxPool2d.apply(
        x, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode
    )


def avg_pool2d(
    x: Tensor,
    kernel_size: int | IntPair,
    stride: int | IntPair | None = None,
    padding: int | IntPair = 0,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> Tensor:
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    Args:
        x: (N, C, H, W).
        kernel_size, stride, padding, ceil_mode: as :func:`max_pool2d` (zero padding).
        count_include_pad: divide by the window size including padded zeros (PyTorch's
            default) or only by the number of real input elements in the window.
        divisor_override: divide every window sum by this instead.

    Returns:
        (N, C, H_out, W_out).
    """
    return AvgPool2d.apply(
        x,
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        ceil_mode=ceil_mode,
        count_include_pad=count_include_pad,
        divisor_override=divisor_override,
    )


def adaptive_avg_pool2d(x: Tensor, output_size: int | Sequence[int | None]) -> Tensor:
    """Average pooling to a fixed output size, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Output cell (i, j) averages rows ⌊i·H/H_out⌋ … ⌈(i+1)·H/H_out⌉ − 1 and the columns likewise;
    ``None`` in ``output_size`` keeps that input size. (N, C, H, W) → (N, C, H_out, W_out).
    """
    return AdaptiveAvgPool2d.apply(x, output_size=output_size)


def global_avg_pool2d(x: Tensor, keepdim: bool = False) -> Tensor:
    """Mean over the spatial axes: (N, C, H, W) → (N, C), or (N, C, 1, 1) with ``keepdim``."""
    return GlobalAvgPool2d.apply(x, keepdim=keepdim)


def fractional_max_pool2d(
    x: Tensor,
    kernel_size: int | IntPair,
    output_size: int | IntPair | None = None,
    output_ratio: float | tuple[float, float] | None = None,
    generator: Any = None,
    random_samples: Any = None,
) -> Tensor:
    """Fractional max pooling (Graham, "Fractional Max-Pooling", 2014), as PyTorch's
    ``F.fractional_max_pool2d``.

    The output size may be any fraction of the input (e.g. ratio 1/√2 instead of 1/2): each
    (n, c) plane gets its own pseudo-random sequence of window starts along each axis
    (:func:`fractional_pool_starts`), drawn from ``u ~ U[0, 1)``, and each output is the max of
    a k_h×k_w window at those starts. A new draw per call acts as a regulariser during
    training; :class:`gradcraft.nn.FractionalMaxPool2d` can average several draws at test time.

    Args:
        x: (N, C, H, W).
        kernel_size: window size.
        output_size: (H_out, W_out); or give ``output_ratio`` (H_out = ⌊H·ratio⌋).
        generator: ``numpy.random.Generator`` for the samples (default: the library-wide one).
        random_samples: (N, C, 2) samples in [0, 1) to use instead of drawing them
            (column 0 drives the width sequence, column 1 the height sequence).

    Returns:
        (N, C, H_out, W_out).
    """
    data = x.data if isinstance(x, Tensor) else x
    _check_input(data, "fractional_max_pool2d")
    xp = get_array_module(data)
    n, c, h, w = data.shape
    kernel = pair(kernel_size, "kernel_size")
    if (output_size is None) == (output_ratio is None):
        raise ValueError(
            "fractional_max_pool2d expected exactly one of output_size and output_ratio. "
            f"Received: output_size={output_size!r}, output_ratio={output_ratio!r}"
        )
    if output_size is None:
        ratio = output_ratio if isinstance(output_ratio, (tuple, list)) else (output_ratio, output_ratio)
        if not all(0 < r < 1 for r in ratio):
            raise ValueError(
                "fractional_max_pool2d expected output_ratio in (0, 1). "
                f"Received: output_ratio={output_ratio!r}"
            )
        out = (int(h * ratio[0]), int(w * ratio[1]))
    else:
        out = pair(output_size, "output_size")
    for size, o, k, axis in zip((h, w), out, kernel, ("height", "width")):
        if o + k - 1 > size:
            raise ValueError(
                f"fractional_max_pool2d expected output_size + kernel_size − 1 ≤ input {axis} ({size}). "
                f"Received: output_size={out}, kernel_size={kernel}, input.shape={data.shape}"
            )
    if random_samples is None:
        gen = backend.generator() if generator is None else generator
        random_samples = xp.asarray(gen.random((n, c, 2)), dtype=data.dtype)
    else:
        random_samples = random_samples.data if isinstance(random_samples, Tensor) else random_samples
        if tuple(random_samples.shape) != (n, c, 2):
            raise ValueError(
                f"fractional_max_pool2d expected random_samples of shape ({n}, {c}, 2). "
                f"Received: random_samples.shape={tuple(random_samples.shape)}"
            )
    return FractionalMaxPool2d.apply(x, random_samples, kernel_size=kernel, output_size=out)
