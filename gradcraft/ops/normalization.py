"""Batch and layer normalization as fused Functions with hand-derived backward passes.

Batch norm (Ioffe & Szegedy, 2015) normalizes each channel c of x (N, C, *) over the batch
and spatial axes (m = N·∏* values per channel):

    μ = (1/m) Σ x,   σ² = (1/m) Σ (x − μ)²,   x̂ = (x − μ) / √(σ² + ε),   y = γ x̂ + β

and its gradient, simplified by hand into one expression (cs231n ``batchnorm_backward_alt``):

    dβ = Σ g,   dγ = Σ g x̂,   dx = (γ / (m √(σ² + ε))) · (m g − Σ g − x̂ Σ g x̂)

Layer norm (Ba et al., 2016) is the same with the roles of the axes swapped: statistics over
the trailing ``normalized_shape`` of each sample, γ and β elementwise over those axes.

Both forward passes allocate two arrays of the input's size (x̂, kept for backward, and y);
the backward passes allocate one (dx). Sums of products (Σ(x − μ)², Σ g x̂) are contracted
with ``einsum`` so no product array is formed. All arithmetic stays in the input's dtype.
"""

from __future__ import annotations

from typing import Any

from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module

__all__ = ["batch_norm", "layer_norm"]


def _channel_shape(ndim: int, channels: int) -> tuple[int, ...]:
    return (1, channels) + (1,) * (ndim - 2)


def _channel_dot(xp: Any, a: Any, b: Any) -> Any:
    """Σ a ⊙ b over every axis but the channel axis 1, without an a ⊙ b temporary."""
    if a.ndim == 2:
        return xp.einsum("nc,nc->c", a, b)
    n, c = a.shape[:2]
    return xp.einsum("ncl,ncl->c", a.reshape(n, c, -1), b.reshape(n, c, -1))


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
        bshape = _channel_shape(x.ndim, c)
        axes = (0, *range(2, x.ndim))
        m = x.size // c if c else 0
        self.training = training
        self.axes = axes
        self.bshape = bshape
        if training:
            if m <= 1:
                raise ValueError(
                    f"Expected more than 1 value per channel when training. Received: shape={tuple(x.shape)}"
                )
            mean = x.mean(axis=axes)
            xhat = x - mean.reshape(bshape)
            var = _channel_dot(xp, xhat, xhat) / m
            inv_std = 1.0 / xp.sqrt(var + eps)
            xhat *= inv_std.reshape(bshape)
            if running_mean is not None:
                running_mean *= 1 - momentum
                running_mean += momentum * mean
            if running_var is not None:
                running_var *= 1 - momentum
                running_var += (momentum * m / (m - 1)) * var
            y = xhat * weight.reshape(bshape) if weight is not None else xhat.copy()
            if bias is not None:
                y += bias.reshape(bshape)
            self.m = m
            self.save_for_backward(xhat, inv_std, weight)
            return y
        if running_mean is None or running_var is None:
            raise ValueError("Expected running_mean and running_var for batch norm in evaluation mode")
        inv_std = 1.0 / xp.sqrt(running_var + eps)
        scale = inv_std if weight is None else weight * inv_std
        shift = -running_mean * scale
        if bias is not None:
            shift = shift + bias
        y = x * scale.reshape(bshape)
        y += shift.reshape(bshape)
        self.save_for_backward(x, running_mean.copy(), inv_std, scale)
        return y

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        xp = get_array_module(g)
        need_x, need_w, need_b = self.needs_input_grad
        axes, bshape = self.axes, self.bshape
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
        gb = g2.sum(axis=0).reshape(self.norm_shape) if need_b else None
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
    rm = running_mean.data if isinstance(running_mean, Tensor) else running_mean
    rv = running_var.data if isinstance(running_var, Tensor) else running_var
    return BatchNorm.apply(
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
