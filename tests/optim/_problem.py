"""A small shared problem for optimizer tests: a tanh MLP with parameters of several shapes
(a matrix, vectors and a 0-d scale), its loss in gradcraft and the same loss in PyTorch.

``*_batched_backward`` evaluate K independent copies of the problem (one per optimizer
configuration) in one graph: the copies' parameters are stacked, each copy's loss is
multiplied by its sign (−1 for a ``maximize`` run, which then descends the same loss) and the
losses are summed, so every copy's parameters get exactly their own gradient. One backward
pass then serves K trajectories, which keeps the parity tests fast.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import gradcraft as gc
from gradcraft.nn import Parameter

SHAPES = {"w1": (6, 5), "b1": (5,), "w2": (5, 3), "b2": (3,), "scale": ()}
NAMES = list(SHAPES)


def make_data(seed: int = 0, dtype: Any = np.float64) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = {name: (rng.standard_normal(shape) * 0.5).astype(dtype) for name, shape in SHAPES.items()}
    data["scale"] = np.asarray(1.2, dtype=dtype)
    data["x"] = rng.standard_normal((16, 6)).astype(dtype)
    data["y"] = rng.standard_normal((16, 3)).astype(dtype)
    return data


def gc_params(data: dict[str, np.ndarray]) -> list[Parameter]:
    return [Parameter(data[name].copy()) for name in SHAPES]


def torch_params(torch: Any, data: dict[str, np.ndarray]) -> list[Any]:
    return [torch.tensor(data[name].copy(), requires_grad=True) for name in SHAPES]


# ---------------------------------------------------------------------------- one copy
def gc_loss(params: list[Any], data: dict[str, np.ndarray]) -> gc.Tensor:
    w1, b1, w2, b2, scale = params
    x, y = gc.tensor(data["x"]), gc.tensor(data["y"])
    out = ((x @ w1 + b1).tanh() @ w2 + b2) * scale
    return ((out - y) ** 2).mean() + 0.05 * (w1 * w1).sum()


def gc_backward(params: list[Any], data: dict[str, np.ndarray]) -> float:
    for p in params:
        p.grad = None
    loss = gc_loss(params, data)
    loss.backward()
    return float(loss)


def torch_loss(torch: Any, params: list[Any], data: dict[str, np.ndarray]) -> Any:
    w1, b1, w2, b2, scale = params
    x, y = torch.tensor(data["x"]), torch.tensor(data["y"])
    out = (torch.tanh(x @ w1 + b1) @ w2 + b2) * scale
    return ((out - y) ** 2).mean() + 0.05 * (w1 * w1).sum()


def torch_backward(torch: Any, params: list[Any], data: dict[str, np.ndarray]) -> float:
    for p in params:
        p.grad = None
    loss = torch_loss(torch, params, data)
    loss.backward()
    return float(loss.detach())


# ---------------------------------------------------------------------------- K copies
def gc_batched_backward(copies: list[list[Any]], data: dict[str, np.ndarray], signs: list[float]) -> None:
    k = len(copies)
    for params in copies:
        for p in params:
            p.grad = None
    w1, b1, w2, b2, scale = (gc.stack([c[i] for c in copies]) for i in range(len(NAMES)))
    x, y = gc.tensor(data["x"]), gc.tensor(data["y"])
    hidden = (x @ w1 + b1.reshape(k, 1, -1)).tanh()
    out = (hidden @ w2 + b2.reshape(k, 1, -1)) * scale.reshape(k, 1, 1)
    losses = ((out - y) ** 2).mean(axis=(1, 2)) + 0.05 * (w1 * w1).sum(axis=(1, 2))
    (losses * gc.tensor(np.asarray(signs, dtype=data["x"].dtype))).sum().backward()


def torch_batched_backward(
    torch: Any, copies: list[list[Any]], data: dict[str, np.ndarray], signs: list[float]
) -> None:
    k = len(copies)
    for params in copies:
        for p in params:
            p.grad = None
    w1, b1, w2, b2, scale = (torch.stack([c[i] for c in copies]) for i in range(len(NAMES)))
    x, y = torch.tensor(data["x"]), torch.tensor(data["y"])
    hidden = torch.tanh(x @ w1 + b1.reshape(k, 1, -1))
    out = (hidden @ w2 + b2.reshape(k, 1, -1)) * scale.reshape(k, 1, 1)
    losses = ((out - y) ** 2).mean(dim=(1, 2)) + 0.05 * (w1 * w1).sum(dim=(1, 2))
    (losses * torch.tensor(signs, dtype=x.dtype)).sum().backward()
