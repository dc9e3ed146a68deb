"""Normalization layers: ``BatchNorm1d``, ``BatchNorm2d`` and ``LayerNorm`` (PyTorch semantics).

Batch norm in training normalizes with the batch's statistics and updates the running
averages (buffers ``running_mean``, ``running_var``, ``num_batches_tracked``):

    running_mean ← (1 − momentum)·running_mean + momentum·μ_batch
    running_var  ← (1 − momentum)·running_var  + momentum·σ²_batch · m/(m − 1)   (unbiased)

with momentum = 0.1 by default; ``momentum=None`` gives the cumulative average
(momentum = 1/num_batches_tracked). In evaluation mode the running statistics are used, so
a single example's output does not depend on the rest of its batch. γ (``weight``) starts
at 1 and β (``bias``) at 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd.tensor import Tensor
from gradcraft.nn.module import Module, Parameter
from gradcraft.ops.normalization import batch_norm, layer_norm

__all__ = ["BatchNorm1d", "BatchNorm2d", "LayerNorm"]


class _BatchNorm(Module):
    """Shared implementation; subclasses fix the accepted input ranks."""

    _ranks: tuple[int, ...] = ()
    _layout = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        if (
            isinstance(num_features, bool)
            or not isinstance(num_features, (int, np.integer))
            or num_features < 1
        ):
            raise ValueError(
                f"Expected a positive integer num_features. Received: num_features={num_features!r}"
            )
        if momentum is not None and not 0 <= momentum <= 1:
            raise ValueError(f"Expected momentum in [0, 1] or None. Received: momentum={momentum}")
        if eps <= 0:
            raise ValueError(f"Expected eps > 0. Received: eps={eps}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        dt = backend.default_dtype() if dtype is None else np.dtype(dtype)
        c = self.num_features
        if affine:
            self.weight = Parameter(np.ones(c, dtype=dt))
            self.bias = Parameter(np.zeros(c, dtype=dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dtype=dt))
            self.register_buffer("running_var", np.ones(c, dtype=dt))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """running_mean = 0, running_var = 1, num_batches_tracked = 0."""
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self) -> None:
        """Running statistics reset; γ = 1, β = 0."""
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _check_input(self, x: Tensor) -> None:
        if x.ndim not in self._ranks:
            raise ValueError(f"Expected {self._layout} input. Received: shape={tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"Expected input with {self.num_features} channels on axis 1. "
                f"Received: shape={tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        return self._normalize(x, batch_norm)

    def _normalize(self, x: Tensor, op: Any) -> Tensor:
        """``op(x, ...)`` with this layer's statistics and parameters: :func:`batch_norm`, or
        :func:`batch_norm_relu` when a ReLU follows (:mod:`gradcraft.nn.fusion`)."""
        self._check_input(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked.data)
        use_batch_stats = self.training or self.running_mean is None
        keep_running = not self.training or self.track_running_stats
        return op(
            x,
            self.running_mean if keep_running else None,
            self.running_var if keep_running else None,
            self.weight,
            self.bias,
            training=use_batch_stats,
            momentum=factor,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch norm of x (N, C) — after a Linear layer — or (N, C, L); statistics per feature C.

    Args:
        num_features: C.
        eps: ε added to the variance (1e-5).
        momentum: running-average factor (0.1); None for the cumulative average.
        affine: learn γ (init 1) and β (init 0).
        track_running_stats: keep running statistics and use them in eval mode; if False,
            batch statistics are used in both modes.
    """

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Spatial batch norm of x (N, C, H, W): statistics per channel over N·H·W values.

    Arguments as :class:`BatchNorm1d`.
    """

    _ranks = (4,)
    _layout = "(N, C, H, W)"


class LayerNorm(Module):
    """Layer norm (Ba et al., 2016) over the trailing ``normalized_shape`` of each sample.

    y = γ ⊙ (x − μ)/√(σ² + ε) + β, μ and σ² (biased) over the last len(normalized_shape)
    axes; γ (init 1) and β (init 0) have shape ``normalized_shape``. Same in train and eval.
    """

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        shape = (
            (normalized_shape,)
            if isinstance(normalized_shape, (int, np.integer))
            else tuple(normalized_shape)
        )
        if not shape or any(int(n) < 1 for n in shape):
            raise ValueError(
                "Expected a non-empty shape of positive sizes. "
                f"Received: normalized_shape={normalized_shape!r}"
            )
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps = float(eps)
        self.elementwise_affine = elementwise_affine
        dt = backend.default_dtype() if dtype is None else np.dtype(dtype)
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, dtype=dt))
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, dtype=dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        n = len(self.normalized_shape)
        if x.ndim < n or tuple(x.shape[x.ndim - n :]) != self.normalized_shape:
            raise ValueError(
                f"Expected input whose trailing dimensions are {self.normalized_shape}. "
                f"Received: shape={tuple(x.shape)}"
            )
        return layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
