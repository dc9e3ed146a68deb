"""Tiny datasets, models and trainers for the training tests (seconds, not minutes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import gradcraft
from gradcraft import nn
from gradcraft.data import ArrayDataset, DataLoader
from gradcraft.train import Trainer


def blobs(n: int = 240, classes: int = 3, size: int = 6, seed: int = 0) -> ArrayDataset:
    """uint8 images (N, 1, size, size): each class lights up its own horizontal band, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.integers(0, 60, (n, 1, size, size))
    band = size // classes
    for k in range(classes):
        rows = slice(k * band, (k + 1) * band)
        x[y == k, :, rows, :] += 150
    return ArrayDataset(
        np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64), [f"c{k}" for k in range(classes)]
    )


def write_npz(path: Path, n_train: int = 240, n_test: int = 90, classes: int = 3, size: int = 6) -> Path:
    """An .npz with x_train, y_train, x_test, y_test (and class names) for recipe runs."""
    train = blobs(n_train, classes, size, seed=1)
    test = blobs(n_test, classes, size, seed=2)
    np.savez(
        path, x_train=train.x, y_train=train.y, x_test=test.x, y_test=test.y, classes=np.array(train.classes)
    )
    return path


def mlp(size: int = 6, classes: int = 3, hidden: int = 16, dropout: float = 0.0) -> nn.Module:
    layers: list[nn.Module] = [
        nn.Flatten(),
        nn.Linear(size * size, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
    ]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, classes))
    return nn.Sequential(*layers)


def make_trainer(
    callbacks: Any = (),
    *,
    seed: int = 0,
    lr: float = 0.1,
    scheduler: Any = None,
    interval: str = "epoch",
    dropout: float = 0.0,
    n: int = 240,
    batch_size: int = 32,
    **kwargs: Any,
) -> Trainer:
    """A Trainer on :func:`blobs` with SGD; everything seeded from ``seed``."""
    from gradcraft import optim

    gradcraft.manual_seed(seed)
    data = blobs(n)
    train, val = data.subset(np.arange(0, n - 60)), data.subset(np.arange(n - 60, n))
    model = mlp(dropout=dropout)
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    sched = scheduler(opt) if callable(scheduler) else None
    train_loader = DataLoader(
        train, batch_size=batch_size, shuffle=True, generator=np.random.default_rng([seed, 1])
    )
    val_loader = DataLoader(val, batch_size=64, generator=np.random.default_rng([seed, 2]))
    return Trainer(
        model,
        nn.CrossEntropyLoss(),
        opt,
        sched,
        train_loader,
        val_loader,
        list(callbacks),
        scheduler_interval=interval,
        verbose=False,
        **kwargs,
    )


def weights(trainer: Trainer) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in trainer.model.state_dict().items()}
