"""``DataParallel``: what makes a :class:`~gradcraft.train.Trainer` one of K processes.

Pass it as ``Trainer(..., distributed=DataParallel(comm, seed))``. The trainer then

* averages the gradients over the processes after every backward pass, before clipping and
  the optimizer step (:class:`~gradcraft.distributed.GradientBuckets`), so every process
  applies the same update to the same weights, and copies process 0's buffers (batch norm's
  running statistics, which each process updated from its own shard) to the others, so every
  process evaluates, averages (EMA) and checkpoints the same model — what PyTorch's
  ``DistributedDataParallel`` does with ``broadcast_buffers=True``;
* sums the evaluation metrics (and the epoch's training metrics) over the processes, each of
  which evaluated its own shard (:meth:`DataParallel.reduce_metrics`), so every process sees the
  metrics of the whole validation split and makes the same early-stopping and
  learning-rate decisions;

and, as a callback, it

* copies process 0's weights and buffers to every process when training begins;
* reseeds the library-wide generator (dropout, any layer without its own generator) before
  every step from ``(seed, rank, step)``: different on every process, reproducible, and
  independent of checkpoints, so a resumed run draws what the uninterrupted one drew;
* ends the run on every process when one of them sets ``trainer.stop_training``.

Everything else (the loaders' shards, which process writes files) is set up by whoever builds
the trainer; :class:`gradcraft.train.experiment.Experiment` does it for recipes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gradcraft import backend
from gradcraft.distributed.buckets import GradientBuckets, broadcast_module
from gradcraft.distributed.comm import Communicator
from gradcraft.train.callbacks import Callback
from gradcraft.train.metrics import MetricAccumulator

if TYPE_CHECKING:
    from gradcraft.train.trainer import Trainer

__all__ = ["DataParallel"]

#: a constant in the seed of the per-process dropout generators, apart from the recipe's other streams
_DROPOUT_STREAM = 7


class DataParallel(Callback):
    """Data-parallel training over the processes of ``comm`` (see the module doc).

    Args:
        comm: the communicator (:func:`gradcraft.distributed.init_communicator`).
        seed: the run's seed (the per-step dropout generators derive from it).
        bucket_mb: size of the gradient buckets in megabytes.
        broadcast_buffers: copy process 0's buffers to the others after every backward pass
            (not needed when every batch norm is synchronized: their buffers agree anyway).

    Attributes:
        buckets: the :class:`GradientBuckets` (``allreduce_calls``, ``allreduce_seconds``).
    """

    order = 1000  # after every other callback's on_epoch_end: early stopping has decided

    def __init__(
        self, comm: Communicator, seed: int = 0, bucket_mb: float = 25.0, broadcast_buffers: bool = True
    ) -> None:
        self.comm = comm
        self.seed = int(seed)
        self.buckets = GradientBuckets(comm, bucket_mb)
        self.broadcast_buffers = broadcast_buffers

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def world_size(self) -> int:
        return self.comm.size

    @property
    def is_main(self) -> bool:
        """Whether this is process 0, the one that logs and writes files."""
        return self.comm.rank == 0

    # ------------------------------------------------------------------ trainer hooks
    def after_backward(self, model: Any) -> None:
        """Replace every parameter's gradient by its mean over the processes (and, with
        ``broadcast_buffers``, every buffer by process 0's)."""
        self.buckets.average_(model.parameters())
        if self.broadcast_buffers:
            broadcast_module(model, self.comm, parameters=False)

    def reduce_metrics(self, acc: MetricAccumulator) -> MetricAccumulator:
        """A new accumulator holding the sums of ``acc`` over all processes (``acc`` is
        unchanged). Two allreduce calls: the counts, then the confusion matrices."""
        topk = sorted(acc.topk_correct)
        c_local = acc.num_classes or 0
        counts = [acc.count, acc.loss_sum, acc.correct, *(acc.topk_correct[k] for k in topk)]
        head = np.array([*counts, c_local, c_local > 0], dtype=np.float64)
        self.comm.allreduce_(head)
        reporting = int(head[-1])
        out = MetricAccumulator(topk=acc.topk)
        out.count, out.loss_sum, out.correct = int(head[0]), float(head[1]), int(head[2])
        out.topk_correct = {k: int(v) for k, v in zip(topk, head[3 : 3 + len(topk)])}
        if reporting:
            c = round(float(head[-2]) / reporting)
            confusion = np.zeros((c, c), dtype=np.float64)
            if acc.confusion is not None:
                confusion += acc.confusion
            self.comm.allreduce_(confusion.reshape(-1))
            out.num_classes = c
            out.confusion = confusion.astype(np.int64)
        return out

    # ------------------------------------------------------------------ callback hooks
    def on_train_begin(self, trainer: Trainer) -> None:
        broadcast_module(trainer.model, self.comm)

    def on_batch_begin(self, trainer: Trainer) -> None:
        key = [self.seed, _DROPOUT_STREAM, self.rank, trainer.global_step]
        backend.set_rng_state(np.random.default_rng(key).bit_generator.state)

    def on_epoch_end(self, trainer: Trainer) -> None:
        flag = np.array([1.0 if trainer.stop_training else 0.0])
        self.comm.allreduce_(flag)
        if flag[0] > 0 and not trainer.stop_training:
            trainer.stop_training = True
            trainer.stop_reason = trainer.stop_reason or "stopped by another process"
