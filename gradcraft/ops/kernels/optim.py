"""Single-pass optimizer updates over flat parameter, gradient and state arrays.

The NumPy rules in :mod:`gradcraft.optim` take six to ten whole-array passes per update (one
per arithmetic operation, each reading and writing memory); these loops read every element
once. The scalars come in the arrays' dtype, so a float32 model is updated in float32 as the
NumPy rules do. Results agree with the NumPy rules to float rounding (the compiler may fuse a
multiply and an add).

Each kernel reads the caller's raw gradient and folds in maximize and coupled weight decay
itself, ``g ← sign·grad + λ·θ`` with sign = −1 to maximize, so nothing is copied first.

Adam (:class:`gradcraft.optim.Adam`, with the bias corrections folded into the scalars)::

    θ ← θ·decay;  m ← m + (1 − β1)(g − m);  v ← β2 v + (1 − β2) g²;
    v̂ ← max(v̂, v) (AMSGrad) or v;  θ ← θ + step_size · m / (√v̂ + ε)

SGD with momentum as PyTorch writes it (:class:`gradcraft.optim.SGD`)::

    b ← g (first step) or μ b + (1 − τ) g;  θ ← θ − γ (g + μ b) (Nesterov) or θ − γ b
"""

from __future__ import annotations

import math
from typing import Any

from gradcraft.ops.kernels import jit

__all__ = ["adam", "sgd_momentum"]


@jit
def adam(
    p: Any,
    grad: Any,
    sign: Any,
    l2: Any,
    m: Any,
    v: Any,
    vmax: Any,
    amsgrad: bool,
    decay: Any,
    one_minus_b1: Any,
    b2: Any,
    one_minus_b2: Any,
    eps: Any,
    step_size: Any,
) -> None:
    """One Adam step in place on ``p``, ``m``, ``v`` (and ``vmax`` when ``amsgrad``; pass
    ``v`` again otherwise). A NaN gradient leaves NaN in the moments and the parameter."""
    for i in range(p.shape[0]):
        gi = sign * grad[i] + l2 * p[i]
        mi = m[i] + one_minus_b1 * (gi - m[i])
        vi = b2 * v[i] + one_minus_b2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        if amsgrad:
            previous = vmax[i]
            if previous > vi or math.isnan(previous):  # as np.maximum: NaN wins
                vi = previous
            vmax[i] = vi
        p[i] = p[i] * decay + step_size * (mi / (math.sqrt(vi) + eps))


@jit
def sgd_momentum(
    p: Any, grad: Any, sign: Any, l2: Any, buf: Any, lr: Any, mu: Any, keep: Any, nesterov: bool, first: bool
) -> None:
    """One SGD step with momentum buffer ``buf`` (``keep`` = 1 − dampening), in place on
    ``p`` and ``buf``."""
    for i in range(p.shape[0]):
        gi = sign * grad[i] + l2 * p[i]
        b = gi if first else mu * buf[i] + keep * gi
        buf[i] = b
        step = gi + mu * b if nesterov else b
        p[i] = p[i] - lr * step
