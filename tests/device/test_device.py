"""The device API on a machine without a GPU: cpu is a no-op, cuda fails clearly."""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest

import gradcraft
from gradcraft import backend, nn
from gradcraft.backend import Device


def test_device_names_are_parsed() -> None:
    assert gradcraft.device("cpu") == Device("cpu")
    assert gradcraft.device("cuda") == Device("cuda")
    assert gradcraft.device(" CUDA:1 ") == Device("cuda", 1)
    assert str(gradcraft.device("cuda:1")) == "cuda:1" and str(gradcraft.device()) == "cpu"
    assert gradcraft.device(Device("cuda", 0)) == Device("cuda", 0)


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cpu:0", "", 3])
def test_unknown_devices_are_named(name: object) -> None:
    with pytest.raises(
        ValueError, match=re.escape(f"Expected a device 'cpu', 'cuda' or 'cuda:N'. Received: device={name!r}")
    ):
        gradcraft.device(name)  # type: ignore[arg-type]


def test_moving_to_the_cpu_is_a_no_op() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    arrays = [t.data for t in (*model.parameters(), *model.buffers())]
    assert model.to("cpu") is model
    assert all(t.data is a for t, a in zip((*model.parameters(), *model.buffers()), arrays))
    x = gradcraft.tensor([1.0, 2.0], requires_grad=True)
    assert x.to("cpu") is x and x.to(Device("cpu")) is x
    assert backend.device_of(x.data) == Device("cpu") and x.device == "cpu"


def test_to_still_casts_dtypes() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model.to(np.float64)
    assert model[0].weight.dtype == np.float64 and model[1].num_batches_tracked.dtype == np.int64
    model.to(device="cpu", dtype="float32")
    assert model[0].weight.dtype == np.float32
    with pytest.raises(ValueError, match=re.escape("Expected a floating dtype. Received: dtype=int32")):
        model.to("int32")


def test_cuda_without_cupy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # as if CuPy were not installed
    message = re.escape("Device 'cuda' needs CuPy and a CUDA GPU: pip install 'gradcraft[gpu]'")
    model = nn.Linear(3, 2)
    weight = model.weight.data
    with pytest.raises(ImportError, match=message):
        model.to("cuda")
    assert model.weight.data is weight  # nothing moved
    with pytest.raises(ImportError, match=message):
        gradcraft.tensor([1.0]).to("cuda")
    assert not backend.cuda_available()


def _fake_cupy(count: int) -> types.SimpleNamespace:
    class CUDARuntimeError(RuntimeError):
        pass

    def device_count() -> int:
        if count == 0:
            raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
        return count

    runtime = types.SimpleNamespace(getDeviceCount=device_count, CUDARuntimeError=CUDARuntimeError)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


def test_cuda_without_a_gpu_says_none_was_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(0))
    with pytest.raises(
        RuntimeError, match=re.escape("Expected a CUDA device for device 'cuda'. Received: CuPy found no GPU")
    ):
        nn.Linear(3, 2).to("cuda")
    assert not backend.cuda_available()


def test_a_gpu_index_beyond_the_devices_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(2))
    with pytest.raises(
        RuntimeError, match=re.escape("Expected a CUDA device index below 2. Received: device='cuda:2'")
    ):
        backend.to_device(np.zeros(3), "cuda:2")


def test_array_module_is_numpy_for_numpy_arrays_and_cupy_for_any_cupy_type(monkeypatch) -> None:
    fake_cupy = types.ModuleType("cupy")
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    device_array = type("ndarray", (), {"__module__": "cupy._core.core"})()
    x = np.zeros(3, np.float32)
    assert backend.get_array_module(x, x[1:], np.float32(1.0), 2.0) is np
    assert backend.get_array_module(np.ma.masked_array(x)) is np  # NumPy subclasses too
    assert backend.get_array_module(x, device_array) is fake_cupy
    assert backend.get_array_module(device_array, x) is fake_cupy
