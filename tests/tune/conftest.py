"""Keep matplotlib's cache out of the home directory (spawned workers inherit the setting)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _mpl_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    previous = os.environ.get("MPLCONFIGDIR")
    if previous is None:
        os.environ["MPLCONFIGDIR"] = str(tmp_path_factory.mktemp("mplconfig"))
    yield
    if previous is None:
        os.environ.pop("MPLCONFIGDIR", None)
