"""GradientBuckets and broadcast_module: exact packing, one allreduce per bucket, in place."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gradcraft import nn, optim
from gradcraft.distributed import GradientBuckets, broadcast_module
from gradcraft.nn import Parameter
from tests.distributed.helpers import MirrorComm, ThreadGroup


def _params(sizes: list[tuple[int, ...]], dtype: object = np.float32, seed: int = 0) -> list[Parameter]:
    rng = np.random.default_rng(seed)
    params = []
    for shape in sizes:
        p = Parameter(rng.standard_normal(shape).astype(dtype))
        p.grad = rng.standard_normal(shape).astype(dtype)
        params.append(p)
    return params


def test_packing_and_unpacking_keep_every_gradient_exactly() -> None:
    params = _params([(3, 4), (5,), (), (2, 3, 2), (7, 1)])
    before = [np.array(p.grad, copy=True) for p in params]
    buckets = GradientBuckets(MirrorComm(size=1), bucket_mb=1.0)
    buckets.average_(params)
    (bucket,) = buckets.buckets
    for p, g in zip(params, before):
        assert p.grad.shape == p.data.shape
        np.testing.assert_array_equal(p.grad, g)
        assert np.shares_memory(p.grad, bucket.buffer)  # the averaged gradient stays in the bucket


def test_one_allreduce_per_bucket_never_one_per_tensor() -> None:
    # 4000-byte gradients, 10000-byte buckets: [p0 p1] [p2 p3] [p4]; p5 (20000 bytes) alone
    params = _params([(1000,)] * 5 + [(5000,)])
    comm = MirrorComm(size=2)
    buckets = GradientBuckets(comm, bucket_mb=10_000 / 2**20)
    buckets.average_(params)
    assert comm.calls == [
        ("allreduce", 8000, "float32"),
        ("allreduce", 8000, "float32"),
        ("allreduce", 4000, "float32"),
        ("allreduce", 20000, "float32"),
    ]
    assert buckets.allreduce_calls == 4
    assert [len(b.params) for b in buckets.buckets] == [2, 2, 1, 1]


def test_dtypes_are_never_mixed_in_a_bucket() -> None:
    params = _params([(4,)], np.float32) + _params([(4,)], np.float64) + _params([(4,)], np.float32)
    comm = MirrorComm(size=2)
    GradientBuckets(comm).average_(params)
    assert [dtype for _, _, dtype in comm.calls] == ["float32", "float64", "float32"]


def test_gradients_become_the_mean_over_processes() -> None:
    group = ThreadGroup(2)
    grads = [_params([(3, 4), (5,)], seed=s) for s in (1, 2)]

    def step(comm: object) -> list[np.ndarray]:
        params = grads[comm.rank]
        GradientBuckets(comm).average_(params)
        return [p.grad for p in params]

    out = group.run(step)
    for i in range(2):
        expected = (grads[0][i].grad + grads[1][i].grad) * np.float32(0.5)
        np.testing.assert_array_equal(out[0][i], expected)
        np.testing.assert_array_equal(out[1][i], expected)
    assert [c.allreduce_calls for c in group.comms] == [1, 1]


def test_gradients_already_in_the_bucket_are_reduced_where_they_lie(monkeypatch: pytest.MonkeyPatch) -> None:
    params = _params([(3,), (2, 2)])
    buckets = GradientBuckets(MirrorComm(size=2))
    buckets.average_(params)
    for p in params:  # accumulate in place, as after zero_grad(set_to_none=False) + backward
        p.grad[...] = 1.0
    packs = []
    monkeypatch.setattr(GradientBuckets, "_pack", staticmethod(lambda bucket: packs.append(bucket)))
    buckets.average_(params)
    assert packs == []
    for p in params:
        np.testing.assert_array_equal(p.grad, np.ones(p.data.shape, np.float32))


def test_frozen_parameters_are_left_out_and_missing_gradients_count_as_zero() -> None:
    frozen, trained, unused = _params([(3,), (4,), (2,)])
    frozen.requires_grad = False
    frozen_grad = frozen.grad.copy()
    unused.grad = None
    comm = MirrorComm(size=2)
    buckets = GradientBuckets(comm)
    buckets.average_([frozen, trained, unused])
    assert comm.calls == [("allreduce", 24, "float32")]  # trained and unused only
    np.testing.assert_array_equal(frozen.grad, frozen_grad)
    assert unused.grad is None
    frozen.requires_grad = True  # unfreezing changes the buckets
    buckets.average_([frozen, trained, unused])
    assert comm.calls[-1] == ("allreduce", 36, "float32")


def test_bucket_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match=re.escape("Expected bucket_mb > 0. Received: bucket_mb=0")):
        GradientBuckets(MirrorComm(), bucket_mb=0)


def test_broadcast_copies_rank_0s_weights_and_buffers_in_place() -> None:
    group = ThreadGroup(2)
    models = [nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)) for _ in range(2)]
    for seed, model in enumerate(models):
        model[1].running_mean.data[...] = seed + 1.0
        model[1].num_batches_tracked.data[...] = 10 * seed
    assert not np.array_equal(models[0][0].weight.numpy(), models[1][0].weight.numpy())
    optimizer = optim.SGD(models[1].parameters(), lr=0.5)  # the weights now live in its flat buffer
    arrays = [p.data for p in models[1].parameters()]
    group.run(lambda comm: broadcast_module(models[comm.rank], comm))
    reference = models[0].state_dict()
    for key, value in models[1].state_dict().items():
        np.testing.assert_array_equal(value, reference[key], err_msg=key)
    assert all(p.data is a for p, a in zip(models[1].parameters(), arrays))
    for p in models[1].parameters():
        p.grad = np.ones_like(p.data)
    optimizer.step()  # still updates the broadcast weights
    np.testing.assert_allclose(models[1][0].weight.numpy(), reference["0.weight"] - 0.5, rtol=1e-6)
