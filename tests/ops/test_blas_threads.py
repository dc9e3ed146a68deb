"""NumPy's OpenBLAS gets the short spin of idle threads even when NumPy was imported before
gradcraft (accel.shorten_blas_spin, applied before gradcraft's worker threads first run)."""

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from gradcraft.ops import accel

threadpoolctl = pytest.importorskip("threadpoolctl", reason="finding NumPy's BLAS needs threadpoolctl")

# In a fresh process: NumPy first, then gradcraft's thread pool is consulted; prints the spin
# OpenBLAS uses afterwards and what shorten_blas_spin changed.
PROBE = """
import ctypes, json
import numpy as np
from threadpoolctl import ThreadpoolController
libs = [l for l in ThreadpoolController().select(user_api="blas").lib_controllers
        if l.internal_api == "openblas"]
so = ctypes.CDLL(libs[0].filepath) if libs else None
before = so.openblas_thread_timeout() if so is not None and hasattr(so, "openblas_thread_timeout") else None
import gradcraft
from gradcraft.ops import conv
conv._blas_controllers(np)
np.ones((300, 300)) @ np.ones((300, 300))  # the pool starts again, with the new spin
print(json.dumps({"before": before, "after": so.openblas_thread_timeout() if before is not None else None}))
"""


def _probe(env_timeout: str | None) -> dict:
    import json

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if env_timeout is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = env_timeout
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["before"] is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS that reports its thread timeout")
    return result


def test_numpy_imported_first_still_gets_the_short_spin():
    result = _probe(None)
    assert result["before"] == 0  # OpenBLAS loaded without the variable
    assert result["after"] == accel.BLAS_THREAD_TIMEOUT


def test_a_timeout_openblas_read_at_load_is_left_alone():
    result = _probe("10")
    assert result == {"before": 10, "after": 10}


def test_other_blas_libraries_are_not_touched():
    mkl = SimpleNamespace(internal_api="mkl", filepath="/nonexistent/libmkl_rt.so")
    assert accel.shorten_blas_spin([mkl]) == []
