"""Check analytic gradients against central finite differences in float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradcraft.autograd.tensor import Tensor

__all__ = ["GradcheckError", "gradcheck"]


class GradcheckError(AssertionError):
    """Raised when an analytic gradient disagrees with finite differences."""


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    seed: int = 0,
) -> bool:
    """Compare ``fn``'s backward pass with central finite differences.

    The output is reduced to a scalar with a fixed random weighting, L = Σ w ⊙ fn(*inputs),
    so one backward pass gives every dL/dx; each element of each floating input is then
    perturbed by ±eps and (L(x + eps) − L(x − eps)) / (2 eps) is compared with it.

    Args:
        fn: maps tensors to a tensor.
        inputs: tensors or arrays; floating ones are converted to float64 and checked.
        eps: finite-difference step.
        atol, rtol: tolerance, |analytic − numeric| ≤ atol + rtol · |numeric|.

    Returns:
        True when every element agrees.

    Raises:
        GradcheckError: naming the input, the worst element's index and both values.
    """
    tensors = []
    for x in inputs:
        data = x.data if isinstance(x, Tensor) else np.asarray(x)
        if data.dtype.kind == "f":
            tensors.append(Tensor(data.astype(np.float64), requires_grad=True))
        else:
            tensors.append(Tensor(data))
    out = fn(*tensors)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor. Received: {type(out).__name__}")
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    if out.dtype != np.float64:
        raise GradcheckError(f"gradcheck: fn returned {out.dtype} for float64 inputs (a silent cast?)")
    if out.requires_grad:
        (out * Tensor(weights)).sum().backward()

    def loss() -> float:
        return float(np.sum(fn(*tensors).data * weights))

    for k, t in enumerate(tensors):
        if not t.requires_grad:
            continue
        analytic = t.grad if t.grad is not None else np.zeros_like(t.data)
        numeric = np.zeros(t.shape)
        # index element by element: the data may be a non-contiguous layout (e.g. channels-last)
        for index in np.ndindex(*t.shape):
            orig = t.data[index]
            t.data[index] = orig + eps
            plus = loss()
            t.data[index] = orig - eps
            minus = loss()
            t.data[index] = orig
            numeric[index] = (plus - minus) / (2 * eps)
        err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if err.size and (err.max() > 0 or not np.all(np.isfinite(analytic))):
            worst = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(err), err, np.inf))), err.shape)
            raise GradcheckError(
                f"gradcheck failed for input {k} (shape {t.shape}) at index {tuple(int(i) for i in worst)}: "
                f"analytic {analytic[worst]:.8g} vs numeric {numeric[worst]:.8g}"
            )
    return True
