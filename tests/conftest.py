"""Shared fixtures: every test starts from the same seed and the default dtype, and
matplotlib's cache stays out of the home directory."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

import gradcraft
from gradcraft import backend


@pytest.fixture(autouse=True)
def _seeded() -> None:
    gradcraft.manual_seed(0)
    backend.set_default_dtype(np.float32)


@pytest.fixture(scope="session", autouse=True)
def _mpl_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A per-process matplotlib config directory (spawned workers inherit the setting)."""
    previous = os.environ.get("MPLCONFIGDIR")
    if previous is None:
        os.environ["MPLCONFIGDIR"] = str(tmp_path_factory.mktemp("mplconfig"))
    yield
    if previous is None:
        os.environ.pop("MPLCONFIGDIR", None)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--gpu",
        action="store_true",
        default=False,
        help="also run the tests marked gpu (they compare CuPy on a CUDA GPU with NumPy)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_tests = [item for item in items if "gpu" in item.keywords]
    if not gpu_tests:
        return
    if not config.getoption("--gpu"):
        reason = "GPU tests run only with --gpu"
    elif not backend.cuda_available():
        reason = "--gpu was given but CuPy or a CUDA GPU is missing (pip install 'gradcraft[gpu]')"
    else:
        return
    for item in gpu_tests:
        item.add_marker(pytest.mark.skip(reason=reason))
