"""Gradient clipping (PyTorch's ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``).

Both work in place on the raw ``grad`` arrays of the given parameters, between
``loss.backward()`` and ``optimizer.step()``::

    loss.backward()
    total = clip_grad_norm_(model.parameters(), max_norm=1.0)
    optimizer.step()
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters: Tensor | Iterable[Tensor]) -> list[Any]:
    """The parameters' gradient arrays (a NumPy scalar gradient becomes a 0-d array in place)."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = []
    for p in parameters:
        if p.grad is None:
            continue
        if isinstance(p.grad, np.generic):
            p.grad = np.array(p.grad)
        grads.append(p.grad)
    return grads


def _vector_norm(g: Any, norm_type: float) -> float:
    """‖g‖_p of a raw array, accumulated in float64 (no copy of g for p = 2 or ∞)."""
    xp = backend.get_array_module(g)
    if g.size == 0:
        return 0.0
    flat = g.reshape(-1)
    if norm_type == math.inf:
        return float(max(abs(float(flat.max())), abs(float(flat.min()))))
    if norm_type == -math.inf:
        return float(xp.abs(flat).min())
    if norm_type == 0:
        return float(xp.count_nonzero(flat))
    if norm_type == 2:
        return math.sqrt(float(xp.dot(flat, flat)))
    if norm_type == 1:
        return float(xp.abs(flat).sum(dtype=np.float64))
    return float((xp.abs(flat).astype(np.float64) ** norm_type).sum()) ** (1.0 / norm_type)


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    r"""Rescale the gradients so that their joint norm is at most ``max_norm``, in place.

    The norm is taken over all gradients together, as if they were concatenated into one
    vector: ``total = ‖(‖g_1‖_p, ‖g_2‖_p, ...)‖_p``. When ``total > max_norm`` every
    gradient is multiplied by ``max_norm / (total + 1e-6)`` (the direction is kept, only the
    step length is limited — Pascanu, Mikolov & Bengio, 2013, "On the difficulty of training
    recurrent neural networks"). Parameters without a gradient are ignored.

    Args:
        parameters: a Tensor or an iterable of Tensors (e.g. ``model.parameters()``).
        max_norm: the largest allowed norm.
        norm_type: p of the norm (``2.0`` by default; ``math.inf`` for the max norm).
        error_if_nonfinite: raise if the total norm is NaN or infinite (else the gradients
            are scaled by the non-finite factor, as in PyTorch).

    Returns:
        The total norm of the gradients *before* clipping, as a 0-d Tensor.

    Raises:
        RuntimeError: if ``error_if_nonfinite`` and the total norm is not finite.
    """
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    grads = _grads(parameters)
    if not grads:
        return Tensor(np.zeros((), dtype=backend.default_dtype()))
    norms = [_vector_norm(g, norm_type) for g in grads]
    if norm_type == math.inf:
        total = max(norms)
    elif norm_type == -math.inf:
        total = min(norms)
    elif norm_type == 0:
        total = float(sum(norms))
    else:
        total = _vector_norm(np.asarray(norms, dtype=np.float64), norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, so "
            "it cannot be clipped. To disable this error and scale the gradients by the non-finite "
            "norm anyway, set `error_if_nonfinite=False`"
        )
    coef = max_norm / (total + 1e-6)
    if not coef >= 1.0:  # also true for NaN, which then spreads to the gradients (PyTorch does that)
        with np.errstate(invalid="ignore"):  # inf · 0 → NaN is intended here
            for g in grads:
                backend.get_array_module(g).multiply(g, coef, out=g)
    return Tensor(np.asarray(total, dtype=grads[0].dtype))


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]``, in place.

    Args:
        parameters: a Tensor or an iterable of Tensors (e.g. ``model.parameters()``).
        clip_value: the bound (a non-negative number).

    Raises:
        ValueError: if ``clip_value`` is negative.
    """
    if float(clip_value) < 0:
        raise ValueError(f"Expected clip_value >= 0. Received: clip_value={clip_value}")
    clip_value = float(clip_value)
    for g in _grads(parameters):
        xp = backend.get_array_module(g)
        xp.clip(g, -clip_value, clip_value, out=g)
