"""Row-wise softmax cross-entropy kernels for logits of few classes.

NumPy reduces each row of an (N, C) array with C = 10 in a separate inner loop, so the row
maximum and the row sum of a batch of 512 take 24 and 11 µs against 3 µs for an element-wise
pass. These loops do the reductions a row at a time, next to the element-wise work on the same
row; the exponential stays with NumPy, whose vectorised ``exp`` is 10× faster than the scalar
one a compiled loop calls.
"""

from __future__ import annotations

import math
from typing import Any

from gradcraft.ops.kernels import jit

__all__ = ["shift_by_row_max", "softmax_cross_entropy_backward", "softmax_rows"]


@jit
def shift_by_row_max(x: Any, labels: Any, z: Any, z_label: Any) -> bool:
    """z[n] = x[n] − max x[n] (NaN if any is NaN) and z_label[n] = z[n, labels[n]] for the
    logits x (N, C). Returns False, with the rows after it unwritten, at the first label
    outside [0, C)."""
    rows, classes = x.shape
    for n in range(rows):
        y = labels[n]
        if y < 0 or y >= classes:
            return False
        m = x[n, 0]
        for c in range(1, classes):
            v = x[n, c]
            if v > m or math.isnan(v):
                m = v
        for c in range(classes):
            z[n, c] = x[n, c] - m
        z_label[n] = z[n, y]
    return True


@jit
def softmax_rows(e: Any, loss: Any) -> None:
    """Given e = e^z (N, C) and loss[n] = z[n, yₙ]: e[n] ← e[n] / Σ e[n] (the softmax, in
    place) and loss[n] ← log Σ e[n] − z[n, yₙ] (= −log softmax at the label)."""
    rows, classes = e.shape
    for n in range(rows):
        s = e[n, 0]
        for c in range(1, classes):
            s += e[n, c]
        for c in range(classes):
            e[n, c] = e[n, c] / s
        loss[n] = math.log(s) - loss[n]


@jit
def softmax_cross_entropy_backward(p: Any, labels: Any, scale: Any, grad: Any) -> None:
    """grad = (p − onehot(labels))·scale, as p·scale with scale taken off each row's label."""
    rows, classes = p.shape
    for n in range(rows):
        for c in range(classes):
            grad[n, c] = p[n, c] * scale
        grad[n, labels[n]] -= scale
