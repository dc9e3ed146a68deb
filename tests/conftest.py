"""Shared fixtures: every test starts from the same seed and the default dtype."""

from __future__ import annotations

import numpy as np
import pytest

import gradcraft
from gradcraft import backend


@pytest.fixture(autouse=True)
def _seeded() -> None:
    gradcraft.manual_seed(0)
    backend.set_default_dtype(np.float32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
