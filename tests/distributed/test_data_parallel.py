"""DataParallel in one process: reduced metrics, shared stopping, per-process random streams,
and the trainer's hooks (with fake communicators standing in for the other processes)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from gradcraft import backend
from gradcraft.distributed import DataParallel
from gradcraft.train.metrics import MetricAccumulator
from tests.distributed.helpers import MirrorComm, ThreadGroup
from tests.train.helpers import make_trainer, weights


def _scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 7)), rng.integers(0, 7, n)


def test_metrics_summed_over_processes_equal_the_metrics_of_the_whole_split() -> None:
    shards = [_scores(13, 1), _scores(8, 2), (None, None)]  # the last process has no examples
    whole = MetricAccumulator(topk=(3, 5))
    parts = []
    for s, t in shards:
        acc = MetricAccumulator(topk=(3, 5))
        if s is not None:
            loss = float(np.mean(s[:, 0]))
            acc.update(loss, s, t)
            whole.update(loss, s, t)
        parts.append(acc)
    group = ThreadGroup(3)
    reduced = group.run(lambda comm: DataParallel(comm).reduce_metrics(parts[comm.rank]))
    for acc in reduced:
        assert acc.compute() == whole.compute()
        np.testing.assert_array_equal(acc.confusion, whole.confusion)
        assert acc.count == 21
    assert parts[0].count == 13  # the local accumulator is left as it was


def test_a_stop_on_one_process_stops_every_process() -> None:
    trainers = [
        SimpleNamespace(stop_training=r == 1, stop_reason="early stopping" if r == 1 else "")
        for r in range(3)
    ]
    ThreadGroup(3).run(lambda comm: DataParallel(comm).on_epoch_end(trainers[comm.rank]))
    assert all(t.stop_training for t in trainers)
    assert [t.stop_reason for t in trainers] == [
        "stopped by another process",
        "early stopping",
        "stopped by another process",
    ]


def test_each_process_draws_its_own_reproducible_random_stream() -> None:
    def draws(rank: int, step: int) -> np.ndarray:
        DataParallel(MirrorComm(rank=rank, size=2), seed=5).on_batch_begin(SimpleNamespace(global_step=step))
        return backend.generator().random(4)

    np.testing.assert_array_equal(draws(0, 3), draws(0, 3))
    assert not np.array_equal(draws(0, 3), draws(1, 3))
    assert not np.array_equal(draws(0, 3), draws(0, 4))


def test_trainer_with_identical_processes_trains_exactly_as_one_process() -> None:
    alone = make_trainer(n=240, batch_size=30)
    alone.fit(2)
    comm = MirrorComm(rank=0, size=2)  # every "other process" holds the same gradients and metrics
    parallel = make_trainer(n=240, batch_size=30, distributed=DataParallel(comm, bucket_mb=1e-3))
    parallel.fit(2)
    for key, value in weights(alone).items():
        np.testing.assert_array_equal(weights(parallel)[key], value, err_msg=key)
    assert parallel.history.epochs["val_loss"] == alone.history.epochs["val_loss"]
    assert parallel.history.epochs["train_accuracy"] == alone.history.epochs["train_accuracy"]
    # 1 KiB buckets over the Linear(36, 16) - BatchNorm1d(16) - Linear(16, 3) gradients: the
    # 576-value weight alone (2304 bytes), then the other 99 values (396 bytes); 12 steps
    reduces = [c for c in comm.calls if c[0] == "allreduce" and c[1] in (2304, 396)]
    assert reduces == [("allreduce", 2304, "float32"), ("allreduce", 396, "float32")] * 12
    broadcasts = [c for c in comm.calls if c[0] == "broadcast"]
    # first the initial weights and buffers (675 + 32 float32 values, one int64 counter), then after
    # every backward pass process 0's running statistics and counter
    assert broadcasts[:2] == [("broadcast", 4 * 707, "float32"), ("broadcast", 8, "int64")]
    assert broadcasts[2:] == [("broadcast", 128, "float32"), ("broadcast", 8, "int64")] * 12
