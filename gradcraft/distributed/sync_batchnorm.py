"""Synchronized batch norm: training statistics over the whole global batch, not each shard.

In a data-parallel run each process sees only B/K examples. Plain batch norm normalizes each
shard by its own statistics; :class:`SyncBatchNorm1d` / :class:`SyncBatchNorm2d` normalize
by those of the global batch, so K processes compute exactly what one process would on all B
examples. Per channel c, with m = Σ_k m_k values over the K processes:

    forward   S₁ = Σ_k Σ x,   S₂ = Σ_k Σ x²          (one allreduce of [S₁, S₂, m], float64)
              μ = S₁/m,  σ² = S₂/m − μ²,  x̂ = (x − μ)/√(σ² + ε),  y = γ x̂ + β

    backward  G₁ = Σ_k Σ g,   G₂ = Σ_k Σ g x̂         (one allreduce of [G₁, G₂], float64)
              dx = (γ/√(σ² + ε)) · (g − (G₁ + x̂ G₂)/m)
              dγ = Σ g x̂,  dβ = Σ g                  (this process's sums only)

``g`` is this process's upstream gradient. Each process differentiates its own loss; the sums
over processes in dx carry the other processes' losses back through the shared statistics,
and dγ, dβ (which do not pass through the statistics) stay local, so that averaging every
gradient over the processes afterwards (:class:`~gradcraft.distributed.GradientBuckets`)
gives the gradient of the mean loss over the global batch. The sums are accumulated in
float64, which keeps S₂/m − μ² accurate (relative error ~1e-16 · μ²/σ²).

The running statistics take the global mean and the unbiased global variance m/(m − 1)·σ², so
they are identical on every process. In evaluation mode nothing is exchanged: the running
statistics are used as in :class:`gradcraft.nn.BatchNorm2d` (with ``track_running_stats=False``
evaluation uses each process's own batch statistics). State-dict names are those of the
plain layers, so checkpoints move freely between synchronized and plain models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module
from gradcraft.distributed.comm import Communicator, SingleProcess
from gradcraft.nn.module import Module
from gradcraft.nn.normalization import BatchNorm1d, BatchNorm2d
from gradcraft.ops.normalization import check_batch_norm_inputs

__all__ = ["SyncBatchNorm1d", "SyncBatchNorm2d", "SyncBatchNormFunction", "convert_sync_batchnorm"]


def _channel_sums(xp: Any, a: Any, b: Any | None = None) -> Any:
    """Per-channel float64 Σ a (or Σ a ⊙ b) over every axis but axis 1."""
    n, c = a.shape[:2]
    a3 = a.reshape(n, c, -1)
    if b is None:
        return a3.sum(axis=(0, 2), dtype=np.float64)
    return xp.einsum("ncl,ncl->c", a3, b.reshape(n, c, -1), dtype=np.float64)


class SyncBatchNormFunction(Function):
    """Training-mode batch norm over axis 1 with statistics summed over ``comm``'s processes.

    Inputs: x (N, C, *), ``weight`` γ (C,) or None, ``bias`` β (C,) or None. Keyword parameters:
    ``running_mean`` / ``running_var`` (raw (C,) arrays, updated in place, or None), ``momentum``
    (the running-average factor), ``eps`` and ``comm``. Every process must call it (and its
    backward) in the same order. See the module doc for the formulas.
    """

    def forward(
        self,
        x: Any,
        weight: Any = None,
        bias: Any = None,
        running_mean: Any = None,
        running_var: Any = None,
        momentum: float = 0.1,
        eps: float = 1e-5,
        comm: Communicator | None = None,
    ) -> Any:
        xp = get_array_module(x)
        c = check_batch_norm_inputs(x, weight, bias, running_mean, running_var)
        comm = SingleProcess() if comm is None else comm
        stats = xp.empty(2 * c + 1, dtype=np.float64)
        stats[:c] = _channel_sums(xp, x)
        stats[c : 2 * c] = _channel_sums(xp, x, x)
        stats[2 * c] = x.size // c if c else 0
        comm.allreduce_(stats)
        m = float(stats[2 * c])
        if m <= 1:
            raise ValueError(
                "Expected more than 1 value per channel over all processes when training. "
                f"Received: {int(m)} (this process's input shape={tuple(x.shape)})"
            )
        mean = stats[:c] / m
        var = xp.maximum(stats[c : 2 * c] / m - mean * mean, 0.0)
        inv_std = 1.0 / xp.sqrt(var + eps)
        bshape = (1, c) + (1,) * (x.ndim - 2)
        xhat = x - mean.astype(x.dtype).reshape(bshape)
        xhat *= inv_std.astype(x.dtype).reshape(bshape)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += (momentum * mean).astype(running_mean.dtype)
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += (momentum * m / (m - 1) * var).astype(running_var.dtype)
        y = xhat * weight.reshape(bshape) if weight is not None else xhat.copy()
        if bias is not None:
            y += bias.reshape(bshape)
        self.comm, self.m, self.bshape = comm, m, bshape
        self.save_for_backward(xhat, inv_std, weight)
        return y

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        xp = get_array_module(g)
        xhat, inv_std, weight = self.saved
        need_x, need_w, need_b = self.needs_input_grad
        c, bshape = g.shape[1], self.bshape
        local = xp.empty(2 * c, dtype=np.float64)
        local[:c] = _channel_sums(xp, g)
        local[c:] = _channel_sums(xp, g, xhat)
        gw = local[c:].astype(g.dtype) if need_w else None
        gb = local[:c].astype(g.dtype) if need_b else None
        gx = None
        if need_x:
            self.comm.allreduce_(local)
            k = inv_std if weight is None else inv_std * weight
            sum_g = (local[:c] / self.m).astype(g.dtype)
            sum_gx = (local[c:] / self.m).astype(g.dtype)
            # dx = k · (g − (G₁ + x̂ G₂)/m), built in place in one new array
            gx = xhat * sum_gx.reshape(bshape)
            gx += sum_g.reshape(bshape)
            xp.subtract(g, gx, out=gx)
            gx *= k.astype(g.dtype).reshape(bshape)
        return gx, gw, gb


def _synchronized_forward(layer: Any, x: Tensor) -> Tensor:
    """A batch-norm layer's training forward with statistics over ``layer.comm``'s processes
    (the running statistics and their momentum as in :class:`gradcraft.nn.BatchNorm2d`)."""
    layer._check_input(x)
    factor = 0.0 if layer.momentum is None else layer.momentum
    running = layer.track_running_stats
    if running:
        layer.num_batches_tracked.data += 1
        if layer.momentum is None:
            factor = 1.0 / float(layer.num_batches_tracked.data)
    return SyncBatchNormFunction.apply(
        x,
        layer.weight,
        layer.bias,
        running_mean=layer.running_mean.data if running else None,
        running_var=layer.running_var.data if running else None,
        momentum=factor,
        eps=layer.eps,
        comm=layer.comm,
    )


class SyncBatchNorm1d(BatchNorm1d):
    """:class:`gradcraft.nn.BatchNorm1d` whose training statistics span every process of
    ``comm`` (x (N, C) or (N, C, L)); other arguments as BatchNorm1d."""

    def __init__(
        self, num_features: int, *args: Any, comm: Communicator | None = None, **kwargs: Any
    ) -> None:
        super().__init__(num_features, *args, **kwargs)
        self.comm = SingleProcess() if comm is None else comm

    def forward(self, x: Tensor) -> Tensor:
        return _synchronized_forward(self, x) if self.training else super().forward(x)


class SyncBatchNorm2d(BatchNorm2d):
    """:class:`gradcraft.nn.BatchNorm2d` whose training statistics span every process of
    ``comm`` (x (N, C, H, W)); other arguments as BatchNorm2d."""

    def __init__(
        self, num_features: int, *args: Any, comm: Communicator | None = None, **kwargs: Any
    ) -> None:
        super().__init__(num_features, *args, **kwargs)
        self.comm = SingleProcess() if comm is None else comm

    def forward(self, x: Tensor) -> Tensor:
        return _synchronized_forward(self, x) if self.training else super().forward(x)


_SYNCHRONIZED = {BatchNorm1d: SyncBatchNorm1d, BatchNorm2d: SyncBatchNorm2d}


def _synchronized(bn: Module, comm: Communicator) -> Module:
    cls = _SYNCHRONIZED[type(bn)]
    new = cls(
        bn.num_features,
        eps=bn.eps,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
        comm=comm,
    )
    # the same Parameter and buffer objects: an optimizer built before still updates them
    new._parameters.update(bn._parameters)
    new._buffers.update(bn._buffers)
    new._non_persistent_buffers.update(bn._non_persistent_buffers)
    new._forward_hooks.update(bn._forward_hooks)
    new._forward_pre_hooks.update(bn._forward_pre_hooks)
    new.training = bn.training
    return new


def convert_sync_batchnorm(module: Module, comm: Communicator) -> Module:
    """Replace every :class:`~gradcraft.nn.BatchNorm1d` / :class:`~gradcraft.nn.BatchNorm2d` in
    ``module`` by its synchronized version over ``comm`` (PyTorch's
    ``SyncBatchNorm.convert_sync_batchnorm``), keeping names, order, parameters, buffers and
    hooks. Returns ``module`` (or the new layer when ``module`` itself is a batch norm).
    """
    if type(module) in _SYNCHRONIZED:
        return _synchronized(module, comm)
    for parent in list(module.modules()):
        for name, child in list(parent._modules.items()):
            if child is not None and type(child) in _SYNCHRONIZED:
                parent._modules[name] = _synchronized(child, comm)
    return module
