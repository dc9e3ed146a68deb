"""The same ops, layers and optimizer steps on the GPU (CuPy) and the CPU (NumPy) agree.

Marked ``gpu``: they run with ``pytest --gpu`` on a machine with CuPy and a CUDA GPU and are
skipped (with the reason) everywhere else.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from gradcraft import Tensor, nn, optim
from gradcraft.nn import functional as F

pytestmark = pytest.mark.gpu

RTOL, ATOL = 1e-4, 1e-5  # float32; GPU reductions sum in another order


def _host(a: Any) -> np.ndarray:
    return a.get() if type(a).__module__.startswith("cupy") else np.asarray(a)


def _both(build: Callable[[], nn.Module], x: np.ndarray, target: np.ndarray | None = None) -> None:
    """Forward and backward of a module on both devices; outputs, input gradients, parameter
    gradients and buffers must agree."""
    cpu = build()
    gpu = copy.deepcopy(cpu).to("cuda")
    results = []
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        xt = Tensor(x, requires_grad=True).to(device)
        out = model(xt)
        loss = F.cross_entropy(out, Tensor(target).to(device)) if target is not None else (out * out).sum()
        loss.backward()
        results.append(
            [_host(out.data), _host(xt.grad)]
            + [_host(p.grad) for p in model.parameters()]
            + [_host(b.data) for b in model.buffers()]
        )
    for i, (a, b) in enumerate(zip(*results)):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL, err_msg=f"array {i}")


def test_linear_and_relu() -> None:
    x = np.random.default_rng(0).standard_normal((16, 20)).astype(np.float32)
    _both(lambda: nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 3)), x, np.arange(16) % 3)


def test_conv_pool_and_batch_norm() -> None:
    x = np.random.default_rng(1).standard_normal((4, 3, 12, 12)).astype(np.float32)
    _both(
        lambda: nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * 6 * 6, 5),
        ),
        x,
        np.arange(4) % 5,
    )


def test_batch_norm_in_evaluation_mode() -> None:
    x = np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32)

    def build() -> nn.Module:
        bn = nn.BatchNorm1d(4)
        bn.running_mean.data[...] = 0.5
        bn.running_var.data[...] = 2.0
        return bn.eval()

    _both(build, x)


@pytest.mark.parametrize(
    "make",
    [
        lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda p: optim.Adam(p, lr=1e-2),
        lambda p: optim.AdamW(p, lr=1e-2, weight_decay=0.1),
        lambda p: optim.RMSprop(p, lr=1e-2, momentum=0.5),
    ],
)
def test_optimizer_steps(make: Callable[[Any], optim.Optimizer]) -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 10)).astype(np.float32)
    y = rng.integers(0, 4, 32)
    cpu = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4))
    gpu = copy.deepcopy(cpu).to("cuda")  # moved before its optimizer is built
    for model, device in ((cpu, "cpu"), (gpu, "cuda")):
        opt = make(model.parameters())
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(model(Tensor(x).to(device)), Tensor(y).to(device)).backward()
            opt.step()
    for (name, a), b in zip(cpu.state_dict().items(), gpu.state_dict().values()):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=ATOL, err_msg=name)


def test_state_dict_of_a_gpu_model_is_numpy() -> None:
    gpu = nn.Linear(3, 2).to("cuda")
    assert all(isinstance(v, np.ndarray) for v in gpu.state_dict().values())
    assert gpu.weight.device == "cuda"
    assert gpu.to("cpu").weight.device == "cpu"
