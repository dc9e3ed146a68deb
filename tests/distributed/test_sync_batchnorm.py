"""Synchronized batch norm: gradchecked, and equal to plain batch norm on the global batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from gradcraft import Function, Tensor, gradcheck, nn
from gradcraft.distributed import (
    Communicator,
    SingleProcess,
    SyncBatchNorm1d,
    SyncBatchNorm2d,
    SyncBatchNormFunction,
    convert_sync_batchnorm,
)
from gradcraft.ops.normalization import batch_norm
from tests.distributed.helpers import ThreadGroup


class TwoProcesses(Function):
    """Sync batch norm over a batch split into two unequal shards (``split`` rows on rank 0),
    each handled by its own rank on a thread; forward concatenates the shards' outputs and
    backward sums the ranks' dγ, dβ (the gradient of the sum of both ranks' losses)."""

    def forward(self, x: Any, weight: Any, bias: Any, split: int = 3, eps: float = 1e-5) -> Any:
        self.group = ThreadGroup(2)
        self.parts = [slice(0, split), slice(split, None)]
        self.fns = [SyncBatchNormFunction() for _ in range(2)]
        for fn in self.fns:
            fn.needs_input_grad = self.needs_input_grad
        outs = self.group.run(
            lambda comm: self.fns[comm.rank].forward(
                x[self.parts[comm.rank]], weight, bias, eps=eps, comm=comm
            )
        )
        return np.concatenate(outs)

    def backward(self, g: Any) -> tuple[Any, Any, Any]:
        grads = self.group.run(lambda comm: self.fns[comm.rank].backward(g[self.parts[comm.rank]]))
        gx = np.concatenate([gr[0] for gr in grads])
        return gx, grads[0][1] + grads[1][1], grads[0][2] + grads[1][2]


def _inputs(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.standard_normal(shape) * 2.0 + 0.5
    return x, rng.uniform(0.5, 1.5, c), rng.standard_normal(c)


@pytest.mark.parametrize("shape", [(8, 3), (6, 2, 3), (5, 2, 2, 3)])
def test_two_process_sync_bn_passes_gradcheck(shape: tuple[int, ...]) -> None:
    x, w, b = _inputs(shape)
    assert gradcheck(lambda x, w, b: TwoProcesses.apply(x, w, b), [x, w, b])


def test_one_process_sync_bn_passes_gradcheck() -> None:
    x, w, b = _inputs((6, 3, 2))
    assert gradcheck(lambda x, w, b: SyncBatchNormFunction.apply(x, w, b, comm=SingleProcess()), [x, w, b])


@pytest.mark.parametrize("shape", [(8, 3), (5, 2, 3, 3)])
def test_two_processes_compute_what_plain_bn_computes_on_the_whole_batch(shape: tuple[int, ...]) -> None:
    x, w, b = _inputs(shape, seed=1)
    upstream = np.random.default_rng(2).standard_normal(shape)
    results = []
    for op in (
        lambda x, w, b: TwoProcesses.apply(x, w, b),
        lambda x, w, b: batch_norm(x, None, None, w, b, training=True),
    ):
        xt, wt, bt = (Tensor(a, requires_grad=True) for a in (x, w, b))
        y = op(xt, wt, bt)
        (y * Tensor(upstream)).sum().backward()
        results.append([y.numpy(), xt.grad, wt.grad, bt.grad])
    for name, synced, plain in zip(("y", "dx", "dweight", "dbias"), *results):
        np.testing.assert_allclose(synced, plain, rtol=1e-10, atol=1e-12, err_msg=name)


class _NoCollectives(Communicator):
    rank, size = 0, 2

    def allreduce_(self, buf: Any) -> None:
        raise AssertionError("evaluation must not communicate")


def test_sync_layers_match_plain_layers_and_share_their_running_statistics() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 4, 3, 3)).astype(np.float32) * 3 + 1
    plain = nn.BatchNorm2d(4)
    plain.weight.data[...] = rng.uniform(0.5, 1.5, 4)
    synced = [SyncBatchNorm2d(4, comm=comm) for comm in ThreadGroup(2).comms]
    for layer in synced:
        layer.load_state_dict(plain.state_dict())
    for _ in range(2):
        expected = plain(Tensor(x)).numpy()
        outs = synced[0].comm.group.run(
            lambda comm: synced[comm.rank](Tensor(x[comm.rank * 4 : 4 + comm.rank * 6]))
        )
        np.testing.assert_allclose(np.concatenate([o.numpy() for o in outs]), expected, rtol=1e-5, atol=1e-5)
    for layer in synced:
        for key, value in plain.state_dict().items():
            np.testing.assert_allclose(layer.state_dict()[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    layer = SyncBatchNorm2d(4, comm=_NoCollectives())
    layer.load_state_dict(plain.state_dict())
    layer.eval()
    plain.eval()
    np.testing.assert_array_equal(layer(Tensor(x)).numpy(), plain(Tensor(x)).numpy())


def test_sync_bn_needs_more_than_one_value_per_channel_over_all_processes() -> None:
    with pytest.raises(ValueError, match="Expected more than 1 value per channel over all processes"):
        SyncBatchNorm1d(3)(Tensor(np.ones((1, 3), np.float32)))


def test_convert_keeps_names_order_parameters_buffers_and_hooks() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(2, 3), nn.BatchNorm1d(3)
    )
    seen = []
    model[5].register_forward_hook(lambda m, i, o: seen.append(type(m).__name__))
    params = list(model.parameters())
    keys = list(model.state_dict())
    comm = SingleProcess()
    assert convert_sync_batchnorm(model, comm) is model
    assert isinstance(model[1], SyncBatchNorm2d) and isinstance(model[5], SyncBatchNorm1d)
    assert isinstance(model[1], nn.BatchNorm2d) and model[1].comm is comm
    assert list(model.parameters()) == params and all(a is b for a, b in zip(model.parameters(), params))
    assert list(model.state_dict()) == keys
    model(Tensor(np.ones((4, 1, 3, 3), np.float32)))
    assert seen == ["SyncBatchNorm1d"]
    assert isinstance(convert_sync_batchnorm(nn.BatchNorm1d(3), comm), SyncBatchNorm1d)
