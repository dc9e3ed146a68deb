"""Batch and layer normalization as fused Functions with hand-derived backward passes.

Batch norm (Ioffe & Szegedy, 2015) normalizes each channel c of x (N, C, *) over the batch
and spatial axes (m = N·∏* values per channel):

    μ = (1/m) Σ x,   σ² = (1/m) Σ (x − μ)²,   x̂ = (x − μ) / √(σ² + ε),   y = γ x̂ + β

and its gradient, simplified by hand into one expression (cs231n ``batchnorm_backward_alt``):

    dβ = Σ g,   dγ = Σ g x̂,   dx = (γ / (m √(σ² + ε))) · (m g − Σ g − x̂ Σ g x̂)

Layer norm (Ba et al., 2016) is the same with the roles of the axes swapped: statistics over
the trailing ``normalized_shape`` of each sample, γ and β elementwise over those axes.

On the NumPy path both forward passes allocate two arrays of the input's size (x̂, kept for
backward, and y); the backward passes allocate one (dx). Sums of products (Σ(x − μ)², Σ g x̂)
are contracted with ``einsum`` so no product array is formed, and all arithmetic stays in the
input's dtype. The compiled batch-norm kernels (:mod:`gradcraft.ops.kernels.normalization`)
keep x instead of x̂, recompute x̂ in backward, and accumulate their sums in float64.

Batch norm followed by a ReLU is one Function too (:class:`BatchNormReLU`): max(0, y) is
written in the same pass as y, and backward masks the incoming gradient with y > 0 before the
formula above. The compiled kernels recompute y from x for the mask, so nothing more is kept.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module
from gradcraft.ops import accel
from gradcraft.ops._util import sum_rows, writable_donation
from gradcraft.ops.conv import parallel_for, parallel_sum, sample_chunks

__all__ = ["BatchNorm", "BatchNormReLU", "batch_norm", "batch_norm_relu", "layer_norm"]


def _channel_shape(ndim: int, channels: int) -> tuple[int, ...]:
    return (1, channels) + (1,) * (ndim - 2)


def _channel_dot(xp: Any, a: Any, b: Any) -> Any:
    """Σ a ⊙ b over every axis but the channel axis 1, without an a ⊙ b temporary."""
    if a.ndim == 2:
        return xp.einsum("nc,nc->c", a, b)
    n, c = a.shape[:2]
    return xp.einsum("ncl,ncl->c", a.reshape(n, c, -1), b.reshape(n, c, -1))


def check_batch_norm_inputs(x: Any, weight: Any, bias: Any, running_mean: Any, running_var: Any) -> int:
    """Validate batch-norm arguments: x (N, C, *) and (C,) for each given vector; returns C."""
    if x.ndim < 2:
        raise ValueError(
            f"Expected input of shape (N, C, *) for batch norm. Received: shape={tuple(x.shape)}"
        )
    c = x.shape[1]
    for name, arr in (
        ("weight", weight),
        ("bias", bias),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ):
        if arr is not None and arr.shape != (c,):
            raise ValueError(
                f"Expected {name} of shape ({c},) for input with {c} channels. "
                f"Received: shape={tuple(arr.shape)}"
            )
    return c


def _update_running(
    running_mean: Any, running_var: Any, mean: Any, var: Any, momentum: float, m: int
) -> None:
    """In place: μ_run ← (1 − momentum)·μ_run + momentum·μ and the same for the variance with
    the unbiased batch variance m/(m − 1)·σ² (PyTorch's rule); None entries are skipped."""
    if running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += momentum * mean
    if running_var is not None:
        running_var *= 1 - momentum
        running_var += (momentum * m / (m - 1)) * var


def _relu_in_place(y: Any) -> Any:
    """y ← max(0, y) (NaN stays NaN)."""
    xp = get_array_module(y)
    return xp.maximum(y, xp.zeros((), dtype=y.dtype), out=y)


def _scale_shift(xhat: Any, weight: Any, bias: Any, bshape: tuple[int, ...], relu: bool = False) -> Any:
    """y = γ x̂ + β (NumPy path), or max(0, γ x̂ + β) with ``relu``, in a new array."""
    y = xhat * weight.reshape(bshape) if weight is not None else xhat.copy()
    if bias is not None:
        y += bias.reshape(bshape)
    return _relu_in_place(y) if relu else y


def _affine(fast: Any, x: Any, scale: Any, shift: Any, bshape: tuple[int, ...], relu: bool = False) -> Any:
    """y = x·s + t with per-channel s and t (evaluation mode), or max(0, y) with ``relu``, in a
    new array."""
    if fast is None:
        y = x * scale.reshape(bshape)
        y += shift.reshape(bshape)
        return _relu_in_place(y) if relu else y
    y = get_array_module(x).empty_like(x)
    fast.map(fast.k.affine_relu if relu else fast.k.affine, _rows(x), scale, shift, _rows(y))
    return y


def _normalized(fast: Any, x: Any, mean: Any, scale: Any, shift: Any, relu: bool = False) -> Any:
    """y = (x − μ)·s + t with the compiled kernels (training mode), or max(0, y) with ``relu``,
    in a new array."""
    y = get_array_module(x).empty_like(x)
    fast.map(fast.k.normalize_relu if relu else fast.k.normalize, _rows(x), mean, scale, shift, _rows(y))
    return y


def _rows(x: Any) -> Any:
    """(N, C, *) ``x`` as an (M, C) view of its memory when it is stored channels-last (always
    for 2-D input), else None."""
    if x.ndim == 2:
        return x if x.flags.c_contiguous else None
    moved = x.transpose(0, *range(2, x.ndim), 1)
    return moved.reshape(-1, x.shape[1]) if moved.flags.c_contiguous else None


class _RowKernels:
    """The compiled batch-norm kernels applied to blocks of rows of (M, C) matrices, on the
    worker threads (see :mod:`gradcraft.ops.accel`)."""

    def __init__(self, kernels: Any, rows: int, channels: int, itemsize: int) -> None:
        self.k = kernels
        self.channels = channels
        self.chunks = sample_chunks(np, rows, channels * itemsize)

    def sums(self, kernel: Any, *arrays: Any, outputs: int = 1) -> list[Any]:
        """Per-channel float64 sums ``kernel(*row_blocks, *accumulators)`` over all rows, added
        in a fixed order (:func:`~gradcraft.ops.conv.parallel_sum`); arrays with one row per
        channel-vector (shape (C,)) are passed whole."""

        def body(i: int, _scratch: dict) -> list[Any]:
            acc = [np.zeros(self.channels) for _ in range(outputs)]
            r0, r1 = self.chunks[i]
            kernel(*(a[r0:r1] if a.ndim == 2 else a for a in arrays), *acc)
            return acc

        return parallel_sum(np, len(self.chunks), body, outputs)

    def map(self, kernel: Any, *arrays: Any) -> None:
        """``kernel(*row_blocks)`` over every block of rows (the last array is the output)."""

        def body(i: int, _scratch: dict) -> None:
            r0, r1 = self.chunks[i]
            kernel(*(a[r0:r1] if a.ndim == 2 else a for a in arrays))

        parallel_for(np, len(self.chunks), body)


class BatchNorm(Function):
    """Batch normalization over axis 1 of x (N, C) / (N, C, L) / (N, C, H, W).

    Inputs: x, ``weight`` γ (C,) or None, ``bias`` β (C,) or None. Keyword parameters:
    ``running_mean`` / ``running_var`` (raw (C,) arrays or None), ``training``, ``momentum``
    (the factor of the running average, already resolved for cumulative averaging) and ``eps``.

    With ``training=True`` the batch statistics are used and, when running arrays are given,
    updated in place (PyTorch's rule: the running variance takes the *unbiased* batch
    variance, m/(m−1)·σ²). With ``training=False`` the running statistics are used:
    y = x·s + (β − μ_run·s), s = γ/√(σ²_run + ε), and dx = g·s.
    """

    #: max(0, y) instead of y (:class:`BatchNormReLU`)
    relu = False

    def forward(
        self,
        x: Any,
        weight: Any = None,
        bias: Any = None,
        running_mean: Any = None,
        running_var: Any = None,
        training: bool = True,
        momentum: float = 0.1,
        eps: float = 1e-5,
    ) -> Any:
        xp = get_array_module(x)
        c = check_batch_norm_inputs(x, weight, bias, running_mean, running_var)
        bshape = _channel_shape(x.ndim, c)
        axes = (0, *range(2, x.ndim))
        m = x.size // c if c else 0
        self.training = training
        self.axes = axes
        self.bshape = bshape
        self.m = m
        x2 = _rows(x)
        fast = accel.kernels("normalization", x) if x2 is not None and m > 0 else None
        self.fast = None if fast is None else _RowKernels(fast, x2.shape[0], c, x.itemsize)
        if training:
            if m <= 1:
                raise ValueError(
                    f"Expected more than 1 value per channel when training. Received: shape={tuple(x.shape)}"
                )
            if self.fast is not None:
                return self._compiled_forward(x, x2, weight, bias, running_mean, running_var, momentum, eps)
            mean = x.mean(axis=axes)
            xhat = x - mean.reshape(bshape)
            var = _channel_dot(xp, xhat, xhat) / m
            inv_std = 1.0 / xp.sqrt(var + eps)
            xhat *= inv_std.reshape(bshape)
            _update_running(running_mean, running_var, mean, var, momentum, m)
            y = _scale_shift(xhat, weight, bias, bshape, self.relu)
            self.save_for_backward(xhat, inv_std, weight)
            self._keep_mask(y)
            # γ and β as backward reads them: the live parameters, unchanged until the optimizer step
            self.output_rebuild = partial(_scale_shift, xhat, weight, bias, bshape, self.relu)
            return y
        if running_mean is None or running_var is None:
            raise ValueError("Expected running_mean and running_var for batch norm in evaluation mode")
        inv_std = 1.0 / xp.sqrt(running_var + eps)
        scale = inv_std if weight is None else weight * inv_std
        shift = -running_mean * scale
        if bias is not None:
            shift = shift + bias
        if self.fast is not None:
            scale, shift = scale.astype(x.dtype), shift.astype(x.dtype)
        rebuild = partial(_affine, self.fast, x, scale, shift, bshape, self.relu)
        self.save_for_backward(x, running_mean.copy(), inv_std, scale)
        self.output_rebuild = rebuild
        y = rebuild()
        self._keep_mask(y)
        return y

    def _keep_mask(self, y: Any) -> None:
        """With the ReLU, keep the mask y > 0 for backward (the paths that cannot recompute it)."""
        if self.relu and any(self.needs_input_grad):
            self.mask = y > 0

    def _compiled_forward(
        self,
        x: Any,
        x2: Any,
        weight: Any,
        bias: Any,
        running_mean: Any,
        running_var: Any,
        momentum: float,
        eps: float,
    ) -> Any:
        """Training forward with the compiled kernels: one reading pass for μ and σ² (sums of
        x − x[0] and its square, in float64), one writing pass for y; x itself (not x̂) is kept
        for backward."""
        xp, m, fast = get_array_module(x), self.m, self.fast
        origin = x2[0].copy()
        s1, s2 = fast.sums(fast.k.shifted_sums, x2, origin, outputs=2)
        offset = s1 / m
        mean = (origin + offset).astype(x.dtype)
        var = xp.maximum(s2 / m - offset * offset, 0.0).astype(x.dtype)
        inv_std = (1.0 / xp.sqrt(var + eps)).astype(x.dtype)
        _update_running(running_mean, running_var, mean, var, momentum, m)
        scale = inv_std if weight is None else (weight * inv_std).astype(x.dtype)
        shift = xp.zeros_like(mean) if bias is None else bias.astype(x.dtype)
        rebuild = partial(_normalized, fast, x, mean, scale, shift, self.relu)
        self.save_for_backward(x, mean, inv_std, weight)
        self.scale_shift = (scale, shift)  # the mask's y, recomputed by the ReLU kernels
        self.output_rebuild = rebuild
        return rebuild()

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        xp = get_array_module(g)
        need_x, need_w, need_b = self.needs_input_grad
        axes, bshape = self.axes, self.bshape
        if self.relu and (not self.training or self.fast is None):
            g = g * self.mask
        if not self.training:
            x, mean, inv_std, scale = self.saved
            gx = g * scale.reshape(bshape) if need_x else None
            gw = (
                (g * ((x - mean.reshape(bshape)) * inv_std.reshape(bshape))).sum(axis=axes)
                if need_w
                else None
            )
            gb = g.sum(axis=axes) if need_b else None
            return gx, gw, gb
        if self.fast is not None:
            return self._compiled_backward(g)
        xhat, inv_std, weight = self.saved
        sum_g = g.sum(axis=axes)
        sum_gx = _channel_dot(xp, g, xhat)
        gx = None
        if need_x:
            k = inv_std if weight is None else weight * inv_std
            inv_m = 1.0 / self.m
            # dx = k · (g − (x̂ Σgx̂ + Σg) / m), built in place in one new array
            work = xhat * (sum_gx * inv_m).reshape(bshape)
            work += (sum_g * inv_m).reshape(bshape)
            xp.subtract(g, work, out=work)
            work *= k.reshape(bshape)
            gx = work
        return gx, (sum_gx if need_w else None), (sum_g if need_b else None)

    def _compiled_backward(self, g: Any) -> tuple[Any, Any, Any]:
        """Training backward with the compiled kernels: one reading pass for Σg and Σg(x − μ),
        one writing pass for dx."""
        xp, m, fast = get_array_module(g), self.m, self.fast
        x, mean, inv_std, weight = self.saved
        need_x, need_w, need_b = self.needs_input_grad
        g2 = _rows(g)
        in_place = writable_donation(self, g) and g2 is not None and g.dtype == x.dtype
        in_place = in_place and accel.layout(g) == accel.layout(x)
        if g2 is None:
            g2 = xp.ascontiguousarray(g.transpose(0, *range(2, g.ndim), 1)).reshape(-1, g.shape[1])
        relu = self.scale_shift if self.relu else ()
        sums = fast.k.grad_sums_relu if self.relu else fast.k.grad_sums
        sum_g, sum_gxc = fast.sums(sums, g2, _rows(x), mean, *relu, outputs=2)
        sum_gxhat = sum_gxc * inv_std  # Σ g x̂ = dγ
        gx = None
        if need_x:
            k = inv_std.astype(np.float64) if weight is None else weight * inv_std.astype(np.float64)
            c1 = k.astype(g.dtype)
            c2 = (k * inv_std * sum_gxhat / m).astype(g.dtype)
            c3 = (k * sum_g / m).astype(g.dtype)
            gx = g if in_place else xp.empty_like(x)  # each element of g is read before dx overwrites it
            dx = fast.k.normalize_backward_relu if self.relu else fast.k.normalize_backward
            fast.map(dx, g2, _rows(x), mean, *relu, c1, c2, c3, _rows(gx))
        dtype = g.dtype
        return (
            gx,
            sum_gxhat.astype(dtype) if need_w else None,
            sum_g.astype(dtype) if need_b else None,
        )


class BatchNormReLU(BatchNorm):
    """max(0, BatchNorm(x)): batch norm and the ReLU after it as one Function (same inputs and
    parameters as :class:`BatchNorm`).

    Forward writes max(0, y) in the pass that writes y. Backward masks g with [y > 0] and then
    follows batch norm's formula; the compiled kernels recompute y from the x they keep
    (one multiply-add per element) inside their two passes, so no mask is stored and the
    ReLU's own passes over the activation are gone. The NumPy paths keep a boolean mask.
    Results are those of ``relu(batch_norm(x))``: bit for bit, except the gradients on the
    compiled training path, where the kernels may contract the products of dx and Σ g(x − μ)
    into fused multiply-adds differently (differences of an ulp).
    """

    relu = True


class LayerNorm(Function):
    """Layer normalization over the last ``n_axes`` axes of x, with elementwise γ, β of the
    normalized shape (or None).

    x̂ = (x − μ)/√(σ² + ε) per sample (biased variance, as PyTorch), y = γ x̂ + β;
    dx = (1/(M √(σ² + ε))) · (M ĝ − Σ ĝ − x̂ Σ ĝ x̂) with ĝ = g γ and M the normalized size;
    dγ = Σ_samples g x̂, dβ = Σ_samples g.
    """

    def forward(
        self, x: Any, weight: Any = None, bias: Any = None, n_axes: int = 1, eps: float = 1e-5
    ) -> Any:
        xp = get_array_module(x)
        norm_shape = x.shape[x.ndim - n_axes :]
        for name, arr in (("weight", weight), ("bias", bias)):
            if arr is not None and arr.shape != norm_shape:
                raise ValueError(
                    f"Expected {name} of the normalized shape {norm_shape}. "
                    f"Received: shape={tuple(arr.shape)}"
                )
        msize = 1
        for n in norm_shape:
            msize *= n
        x2 = x.reshape(-1, msize)
        mean = x2.mean(axis=1, keepdims=True)
        xhat = x2 - mean
        var = xp.einsum("ij,ij->i", xhat, xhat)[:, None] / msize
        inv_std = 1.0 / xp.sqrt(var + eps)
        xhat *= inv_std
        y = xhat * weight.reshape(1, msize) if weight is not None else xhat.copy()
        if bias is not None:
            y += bias.reshape(1, msize)
        self.shape = x.shape
        self.norm_shape = norm_shape
        self.msize = msize
        self.save_for_backward(xhat, inv_std, weight)
        return y.reshape(x.shape)

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        xp = get_array_module(g)
        xhat, inv_std, weight = self.saved
        need_x, need_w, need_b = self.needs_input_grad
        g2 = g.reshape(-1, self.msize)
        gw = xp.einsum("ij,ij->j", g2, xhat).reshape(self.norm_shape) if need_w else None
        gb = sum_rows(g2).reshape(self.norm_shape) if need_b else None
        gx = None
        if need_x:
            gh = g2 * weight.reshape(1, self.msize) if weight is not None else g2.copy()
            inv_m = 1.0 / self.msize
            sum_g = gh.sum(axis=1, keepdims=True)
            sum_gx = xp.einsum("ij,ij->i", gh, xhat)[:, None]
            # dx = inv_std · (ĝ − (Σĝ + x̂ Σĝx̂)/M), built in place in ``gh``
            gh -= sum_g * inv_m
            gh -= xhat * (sum_gx * inv_m)
            gh *= inv_std
            gx = gh.reshape(self.shape)
        return gx, gw, gb


def batch_norm(
    x: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Batch normalization over axis 1 (PyTorch's ``F.batch_norm``).

    ``running_mean`` / ``running_var`` (Tensors, raw arrays or None) are updated in place
    when ``training``; in evaluation they are used instead of the batch statistics.
    """
    return _apply(BatchNorm, x, running_mean, running_var, weight, bias, training, momentum, eps)


def batch_norm_relu(
    x: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """``relu(batch_norm(x, ...))`` as one :class:`BatchNormReLU` node (arguments as
    :func:`batch_norm`)."""
    return _apply(BatchNormReLU, x, running_mean, running_var, weight, bias, training, momentum, eps)


def _apply(
    op: type[BatchNorm],
    x: Tensor,
    running_mean: Any,
    running_var: Any,
    weight: Tensor | None,
    bias: Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
) -> Tensor:
    """``op.apply`` with the running statistics as raw arrays (:func:`batch_norm`'s arguments)."""
    rm = running_mean.data if isinstance(running_mean, Tensor) else running_mean
    rv = running_var.data if isinstance(running_var, Tensor) else running_var
    return op.apply(
        x, weight, bias, running_mean=rm, running_var=rv, training=training, momentum=momentum, eps=eps
    )


def layer_norm(
    x: Tensor,
    normalized_shape: tuple[int, ...] | int,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Layer normalization over the trailing ``normalized_shape`` (PyTorch's ``F.layer_norm``)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(x.shape[x.ndim - len(shape) :]) != shape or x.ndim < len(shape):
        raise ValueError(
            f"Expected input whose trailing dimensions are {shape}. Received: shape={tuple(x.shape)}"
        )
    return LayerNorm.apply(x, weight, bias, n_axes=len(shape), eps=eps)
