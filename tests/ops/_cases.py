"""Shared machinery for op tests: run an op in gradcraft and in PyTorch on the same inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import gradcraft as gc
from gradcraft import Tensor


def torch_or_none() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def compare_with_torch(
    op: Callable[..., Tensor],
    torch_op: Callable[..., Any],
    inputs: Sequence[np.ndarray],
    atol: float = 1e-6,
    rtol: float = 1e-6,
) -> None:
    """Assert forward values and all input gradients match PyTorch in float64."""
    torch = torch_or_none()
    assert torch is not None
    ours = [gc.tensor(x.astype(np.float64), requires_grad=True) for x in inputs]
    theirs = [torch.tensor(x.astype(np.float64), requires_grad=True) for x in inputs]
    out = op(*ours)
    ref = torch_op(*theirs)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=atol, rtol=rtol)
    weights = np.random.default_rng(3).standard_normal(out.shape)
    (out * gc.tensor(weights)).sum().backward()
    (ref * torch.tensor(weights)).sum().backward()
    for k, (a, b) in enumerate(zip(ours, theirs)):
        expected = np.zeros(b.shape) if b.grad is None else b.grad.numpy()
        got = np.zeros(a.shape) if a.grad is None else a.grad
        np.testing.assert_allclose(got, expected, atol=atol, rtol=rtol, err_msg=f"gradient of input {k}")


def away_from(x: np.ndarray, points: Sequence[float], margin: float = 1e-2) -> np.ndarray:
    """Move samples that are closer than ``margin`` to a kink (e.g. 0 for abs/relu) away from it."""
    x = x.copy()
    for p in points:
        near = np.abs(x - p) < margin
        x[near] = p + np.where(x[near] >= p, margin, -margin) * 2
    return x
