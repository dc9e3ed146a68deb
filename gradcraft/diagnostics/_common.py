"""Utilities shared by the checks: running a model on arrays, accuracy, penalties,
switching regularization off, and the init that fits a nonlinearity."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from gradcraft.autograd.tensor import Tensor
from gradcraft.diagnostics.stats import RELU_LIKE, SATURATING, activation_kind, to_numpy

__all__ = [
    "accuracy",
    "as_tensor",
    "batches",
    "configured_lr",
    "fitting_init",
    "fmt",
    "loss_value",
    "model_kinds",
    "pct",
    "penalty",
    "regularization_off",
    "set_lr",
]


def as_tensor(x: Any) -> Tensor:
    """``x`` as a Tensor (arrays are wrapped, not copied)."""
    return x if isinstance(x, Tensor) else Tensor(x)


def loss_value(loss: Any) -> float:
    """A loss (Tensor, array or number) as a Python float."""
    return float(to_numpy(loss).reshape(-1)[0]) if not isinstance(loss, (int, float)) else float(loss)


def accuracy(logits: Any, y: Any) -> float:
    """Fraction of rows of ``logits`` (N, C) whose argmax is the target (class indices or
    soft targets (N, C))."""
    s = to_numpy(logits)
    t = to_numpy(y)
    if t.ndim == 2:
        t = t.argmax(axis=1)
    if s.ndim != 2 or s.shape[0] == 0:
        return 0.0
    return float(np.mean(s.argmax(axis=1) == t))


def penalty(regularizers: Sequence[Any], model: Any) -> Any:
    """Σ of the regularizers' penalties on ``model``, or ``None`` when there are none.

    A regularizer is called as ``reg(model)`` (``gradcraft.nn.L2`` and friends); objects that
    are not callable are asked for ``reg.penalty(model)``.
    """
    total: Any = None
    for reg in regularizers:
        term = reg(model) if callable(reg) else reg.penalty(model)
        total = term if total is None else total + term
    return total


def set_lr(optimizer: Any, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def configured_lr(optimizer: Any) -> float | None:
    """The first parameter group's learning rate, if the optimizer has one."""
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return None
    lr = groups[0].get("lr")
    return float(lr) if isinstance(lr, (int, float)) else None


@contextlib.contextmanager
def regularization_off(model: Any, optimizer: Any = None) -> Iterator[None]:
    """Temporarily switch off dropout-like layers (every module whose class name contains
    "drop" and which has a probability ``p``) and the optimizer's ``weight_decay``.

    Penalty regularizers are simply not passed by the callers.
    """
    saved_p: list[tuple[Any, float]] = []
    for m in model.modules():
        p = getattr(m, "p", None)
        if "drop" in type(m).__name__.lower() and isinstance(p, (int, float)) and not isinstance(p, bool):
            saved_p.append((m, float(p)))
            m.p = 0.0
    saved_wd: list[tuple[dict, Any]] = []
    for group in getattr(optimizer, "param_groups", None) or []:
        if group.get("weight_decay"):
            saved_wd.append((group, group["weight_decay"]))
            group["weight_decay"] = 0.0
    try:
        yield
    finally:
        for m, p in saved_p:
            m.p = p
        for group, wd in saved_wd:
            group["weight_decay"] = wd


def model_kinds(model: Any) -> list[str]:
    """The activation kinds of ``model``'s activation layers, in order."""
    return [k for k in (activation_kind(m) for m in model.modules()) if k]


def fitting_init(kinds: Sequence[str]) -> tuple[str, str]:
    """The init that keeps activations' scale for these nonlinearities:
    ``(recipe value, plain-words name)``.

    Xavier (Glorot & Bengio 2010) for tanh and sigmoid, He (Kaiming; He et al. 2015) for the
    ReLU family.
    """
    if not kinds:
        return "kaiming_normal", "He (Kaiming) init"
    counts: dict[str, int] = {}
    for k in kinds:
        counts[k] = counts.get(k, 0) + 1
    main = max(counts, key=lambda k: counts[k])
    if main in SATURATING:
        return "xavier_normal", f"Xavier (Glorot) init, which keeps {main} activations' variance"
    if main in RELU_LIKE or main in ("leaky_relu", "elu", "gelu", "softplus"):
        return "kaiming_normal", "He (Kaiming) init, which keeps ReLU activations' variance"
    return "xavier_normal", "Xavier (Glorot) init"


def fmt(x: float | None, digits: int = 3) -> str:
    """A short human form of a number (``0.00123`` → ``0.00123``, ``1.5e-07``, ``nan``)."""
    if x is None:
        return "n/a"
    if not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}"


def pct(x: float | None) -> str:
    """A fraction as a percentage (``0.834`` → ``83%``; small ones keep a decimal)."""
    if x is None:
        return "n/a"
    v = 100.0 * x
    return f"{v:.0f}%" if v >= 10 or v == 0 else f"{v:.1f}%"


def batches(n: int, batch_size: int, rng: np.random.Generator) -> Callable[[], np.ndarray]:
    """A function returning the next minibatch of indices of a reshuffled-each-pass order."""
    state = {"order": rng.permutation(n), "pos": 0}

    def next_batch() -> np.ndarray:
        if state["pos"] + batch_size > n:
            state["order"] = rng.permutation(n)
            state["pos"] = 0
        idx = state["order"][state["pos"] : state["pos"] + batch_size]
        state["pos"] += batch_size
        return idx

    return next_batch
