"""Averaging gradients over processes in a few large messages, and broadcasting weights.

One allreduce per parameter would pay the message latency (tens of microseconds between two
local processes, far more between machines) once for every small bias and batch-norm
scale. :class:`GradientBuckets` instead packs the gradients, in parameter order, into
contiguous buffers of about ``bucket_mb`` megabytes (one per run of parameters of one dtype)
and issues exactly one ``allreduce_`` per buffer::

    bucket = [g_1 | g_2 | … | g_k]      (copied in, flattened)
    allreduce_(bucket); bucket *= 1/K   (the mean over the K processes)
    p_i.grad = bucket[a_i:b_i].reshape(p_i.shape)

The averaged gradients are left *in* the buckets: each parameter's ``grad`` becomes a view of
its slice, so nothing is copied back. If a parameter's ``grad`` already is that view (the
gradients were accumulated in place, e.g. after ``optimizer.zero_grad(set_to_none=False)``),
the copy in is skipped too and the buffer is reduced where it lies.

Why the mean: each process's loss is the mean over its B/K examples, so the mean of the K
gradients is the gradient of the mean loss over all B examples — the same update as one
process with the whole batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd.tensor import Tensor
from gradcraft.distributed.comm import Communicator

__all__ = ["GradientBuckets", "broadcast_module"]


class _Bucket:
    """A contiguous buffer and the parameters whose gradients live in slices of it."""

    def __init__(self, params: list[Tensor], dtype: np.dtype, xp: Any) -> None:
        self.params = params
        self.offsets = [0]
        for p in params:
            self.offsets.append(self.offsets[-1] + int(p.data.size))
        self.buffer = xp.zeros(self.offsets[-1], dtype=dtype)
        self.views = [
            self.buffer[a:b].reshape(p.data.shape) for p, a, b in zip(params, self.offsets, self.offsets[1:])
        ]

    @property
    def nbytes(self) -> int:
        return int(self.buffer.nbytes)


class GradientBuckets:
    """Average the gradients of parameters over the processes of ``comm``, bucketed.

    Args:
        comm: the communicator (see :mod:`gradcraft.distributed.comm`).
        bucket_mb: target size of one bucket in megabytes (2**20 bytes). Parameters are
            taken in order and a bucket is closed before it would grow past this size; a
            parameter larger than that gets a bucket of its own.

    Attributes:
        allreduce_calls: allreduce operations issued so far.
        allreduce_seconds: time spent inside them (waiting for the slowest process included).

    Every process must call :meth:`average_` with the same parameters in the same order (the
    parameters of identical models). A parameter that requires grad but has no gradient on
    this process contributes zeros and keeps ``grad = None``.
    """

    def __init__(self, comm: Communicator, bucket_mb: float = 25.0) -> None:
        if not bucket_mb > 0:
            raise ValueError(f"Expected bucket_mb > 0. Received: bucket_mb={bucket_mb!r}")
        self.comm = comm
        self.bucket_bytes = int(bucket_mb * 2**20)
        self.buckets: list[_Bucket] = []
        self._key: tuple[Any, ...] | None = None
        self.allreduce_calls = 0
        self.allreduce_seconds = 0.0

    def plan(self, params: list[Tensor]) -> list[_Bucket]:
        """The buckets for ``params`` (rebuilt only when the parameters or their dtypes change)."""
        key = tuple(
            (id(p), p.data.dtype.str, p.data.shape, backend.get_array_module(p.data).__name__) for p in params
        )
        if key == self._key:
            return self.buckets
        buckets: list[_Bucket] = []
        run: list[Tensor] = []
        size = 0
        for p in params:
            nbytes = int(p.data.nbytes)
            same_kind = not run or (
                p.data.dtype == run[0].data.dtype
                and backend.get_array_module(p.data) is backend.get_array_module(run[0].data)
            )
            if run and (not same_kind or size + nbytes > self.bucket_bytes):
                buckets.append(_Bucket(run, run[0].data.dtype, backend.get_array_module(run[0].data)))
                run, size = [], 0
            run.append(p)
            size += nbytes
        if run:
            buckets.append(_Bucket(run, run[0].data.dtype, backend.get_array_module(run[0].data)))
        self.buckets, self._key = buckets, key
        return buckets

    def average_(self, params: Iterable[Tensor]) -> None:
        """Replace every gradient by its mean over the processes (one allreduce per bucket).

        Only parameters with ``requires_grad`` take part (frozen layers cost nothing).
        """
        active = [p for p in params if p.requires_grad]
        if not active:
            return
        scale = 1.0 / self.comm.size
        for bucket in self.plan(active):
            had_grad = [p.grad is not None for p in bucket.params]
            if not all(p.grad is v for p, v in zip(bucket.params, bucket.views)):
                self._pack(bucket)
            started = time.perf_counter()
            self.comm.allreduce_(bucket.buffer)
            self.allreduce_seconds += time.perf_counter() - started
            self.allreduce_calls += 1
            if self.comm.size > 1:
                bucket.buffer *= scale
            for p, view, had in zip(bucket.params, bucket.views, had_grad):
                if had:
                    p.grad = view

    @staticmethod
    def _pack(bucket: _Bucket) -> None:
        for p, view in zip(bucket.params, bucket.views):
            if p.grad is None:
                view[...] = 0
            elif p.grad is not view:
                view[...] = p.grad


def broadcast_module(module: Any, comm: Communicator, root: int = 0, parameters: bool = True) -> None:
    """Copy process ``root``'s parameters (unless ``parameters=False``) and buffers into every
    process's ``module``, in place.

    Arrays are packed by dtype into one buffer each, so a model costs one broadcast per dtype
    (float32 weights, int64 batch counters). Arrays are written in place, so an optimizer's
    flat parameter buffer keeps its views.
    """
    if comm.size == 1:
        return
    tensors = [*module.parameters(), *module.buffers()] if parameters else list(module.buffers())
    arrays = [t.data for t in tensors if t is not None]
    groups: dict[tuple[str, str], list[Any]] = {}
    for a in arrays:
        xp = backend.get_array_module(a)
        groups.setdefault((a.dtype.str, xp.__name__), []).append(a)
    for group in groups.values():
        xp = backend.get_array_module(group[0])
        flat = xp.concatenate([a.reshape(-1) for a in group])
        comm.broadcast_(flat, root)
        offset = 0
        for a in group:
            a[...] = flat[offset : offset + a.size].reshape(a.shape)
            offset += a.size
