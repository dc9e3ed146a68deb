"""Data-parallel training across processes with MPI (``pip install 'gradcraft[mpi]'``).

K processes each hold the whole model and train on a disjoint 1/K of every global batch; their
gradients are averaged after every backward pass, so they take identical steps — the steps
one process would take with the whole batch. For recipes nothing changes but the launch::

    mpiexec -n 2 gradcraft train fashion_mlp          # batch_size is the global batch

From Python, the pieces are:

* :func:`init_communicator` — the processes (MPI when launched by ``mpiexec``);
* :class:`DistributedSampler` — each process's shard of every epoch;
* :class:`DataParallel` — the trainer's side: gradient averaging in buckets
  (:class:`GradientBuckets`), metrics summed over processes, per-process random streams;
* :func:`convert_sync_batchnorm` — batch norm with statistics over the global batch;
* :func:`broadcast_module` — process 0's weights to everyone.

See ``docs/scaling.md`` for the design, the large-batch rules and measurements.
"""

from gradcraft.data.sampler import DistributedSampler
from gradcraft.distributed.buckets import GradientBuckets, broadcast_module
from gradcraft.distributed.comm import (
    Communicator,
    MPICommunicator,
    SingleProcess,
    broadcast_text,
    init_communicator,
    launched_world_size,
    local_batch_size,
    threads_per_process,
)
from gradcraft.distributed.data_parallel import DataParallel
from gradcraft.distributed.sync_batchnorm import (
    SyncBatchNorm1d,
    SyncBatchNorm2d,
    SyncBatchNormFunction,
    convert_sync_batchnorm,
)

__all__ = [
    "Communicator",
    "DataParallel",
    "DistributedSampler",
    "GradientBuckets",
    "MPICommunicator",
    "SingleProcess",
    "SyncBatchNorm1d",
    "SyncBatchNorm2d",
    "SyncBatchNormFunction",
    "broadcast_module",
    "broadcast_text",
    "convert_sync_batchnorm",
    "init_communicator",
    "launched_world_size",
    "local_batch_size",
    "threads_per_process",
]
