"""Synthetic data and tiny models for the diagnostics tests (fast on two CPU cores)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from gradcraft import nn


def blobs(n: int, d: int = 20, c: int = 5, sep: float = 2.0, noise: float = 1.0, seed: int = 0) -> tuple:
    """Gaussian clusters: class k around a fixed random centre (the same for every seed)."""
    centres = np.random.default_rng(99).normal(0.0, sep, (c, d))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    x = centres[y] + rng.normal(0.0, noise, (n, d))
    return x.astype(np.float32), y.astype(np.int64)


def teacher(n: int, d: int = 30, c: int = 5, label_noise: float = 0.4, seed: int = 0) -> tuple:
    """Labels from a fixed random linear teacher, a fraction of them replaced at random: a
    large model memorizes a small training set and cannot generalize the noise."""
    w = np.random.default_rng(7).normal(size=(d, c))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x @ w).argmax(axis=1)
    flip = rng.random(n) < label_noise
    y[flip] = rng.integers(0, c, int(flip.sum()))
    return x, y.astype(np.int64)


def mlp(
    widths: Sequence[int],
    act: Callable[[], nn.Module],
    d: int = 20,
    c: int = 5,
    weight_init: Callable | None = None,
    bias: float | None = None,
) -> nn.Sequential:
    """Linear → act per hidden width, then a linear output layer. ``weight_init`` (applied to
    hidden layers, with zero biases) and ``bias`` (a constant for hidden biases) reproduce the
    lectures' set-ups."""
    layers: list[nn.Module] = []
    for w in widths:
        lin = nn.Linear(d, w)
        if weight_init is not None:
            weight_init(lin.weight)
            nn.init.zeros_(lin.bias)
        if bias is not None:
            nn.init.constant_(lin.bias, bias)
        layers += [lin, act()]
        d = w
    layers.append(nn.Linear(d, c))
    return nn.Sequential(*layers)


def he(w: object) -> None:
    nn.init.kaiming_normal_(w, nonlinearity="relu")


def normal(std: float) -> Callable[[object], None]:
    def init(w: object) -> None:
        nn.init.normal_(w, 0.0, std)

    return init
