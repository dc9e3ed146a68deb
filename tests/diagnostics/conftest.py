"""Fixtures of the diagnostics tests: a tiny image dataset as an .npz and a recipe on it."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def tiny_npz(tmp_path):
    """4 classes of 8×8 uint8 images: a bright quadrant per class plus noise (360 train, 80 test)."""
    rng = np.random.default_rng(0)

    def make(n):
        y = rng.integers(0, 4, n)
        x = rng.integers(0, 60, (n, 8, 8)).astype(np.int16)
        for k in range(4):
            r, c = divmod(k, 2)
            x[y == k, 4 * r:4 * r + 4, 4 * c:4 * c + 4] += 150
        return x.clip(0, 255).astype(np.uint8), y.astype(np.int64)

    x_train, y_train = make(360)
    x_test, y_test = make(80)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture
def tiny_recipe(tiny_npz, monkeypatch, tmp_path):
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    return {
        "name": "tiny",
        "seed": 0,
        "epochs": 2,
        "batch_size": 40,
        "eval_batch_size": 200,
        "model": {"block": "mlp", "widths": [16], "activation": "relu"},
        "data": {"dataset": str(tiny_npz), "val_split": 0.25},
        "optimizer": {"name": "adam", "lr": 0.01},
        "logging": {"tensorboard": False, "progress": "none"},
    }
