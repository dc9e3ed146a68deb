"""Communicators: how the processes of a data-parallel run exchange arrays.

A communicator has a ``rank`` (0 … ``size`` − 1) and a handful of collective operations on
contiguous arrays, each called by every process in the same order:

* ``allreduce_(buf)`` — every process's ``buf`` becomes the elementwise sum over processes;
* ``broadcast_(buf, root)`` — every process's ``buf`` becomes the ``root`` process's;
* ``barrier()`` — wait until every process has arrived;
* ``abort(code)`` — end every process of the run at once (an error on one process would
  otherwise leave the others waiting in a collective forever).

:class:`SingleProcess` is the trivial one (size 1: the collectives do nothing);
:class:`MPICommunicator` wraps an ``mpi4py`` communicator (``pip install 'gradcraft[mpi]'``).
:func:`init_communicator` picks one from a recipe's ``distributed.mode`` and the environment
that ``mpiexec`` sets up. Nothing is pickled: strings travel as byte arrays.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

__all__ = [
    "Communicator",
    "MPICommunicator",
    "SingleProcess",
    "broadcast_text",
    "init_communicator",
    "launched_world_size",
    "local_batch_size",
    "threads_per_process",
]

#: environment variables through which MPI launchers announce the number of processes
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
#: ... and the number of processes on this machine
_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE")

_MPI_EXTRA = "pip install 'gradcraft[mpi]'"


class Communicator:
    """The collective operations a data-parallel run needs (see the module doc).

    Attributes:
        rank: this process's index, ``0 <= rank < size``.
        size: the number of processes.
    """

    rank: int = 0
    size: int = 1

    def allreduce_(self, buf: Any) -> None:
        """Replace the contiguous array ``buf`` by its elementwise sum over all processes."""
        raise NotImplementedError

    def broadcast_(self, buf: Any, root: int = 0) -> None:
        """Replace the contiguous array ``buf`` by process ``root``'s."""
        raise NotImplementedError

    def barrier(self) -> None:
        """Return once every process has called it."""
        raise NotImplementedError

    def abort(self, code: int = 1) -> None:
        """End every process of the run with exit status ``code``."""
        raise NotImplementedError


class SingleProcess(Communicator):
    """A run of one process: the sum over processes is the array itself."""

    def allreduce_(self, buf: Any) -> None:
        return None

    def broadcast_(self, buf: Any, root: int = 0) -> None:
        if root != 0:
            raise ValueError(f"Expected root 0 in a single-process run. Received: root={root}")

    def barrier(self) -> None:
        return None

    def abort(self, code: int = 1) -> None:
        sys.exit(code)

    def __repr__(self) -> str:
        return "SingleProcess()"


class MPICommunicator(Communicator):
    """Collectives over an ``mpi4py`` communicator (default ``MPI.COMM_WORLD``).

    NumPy arrays are reduced in place (``Allreduce(MPI.IN_PLACE, …)``). CuPy arrays go through
    host memory (a copy each way), since the ``mpich`` wheel is not CUDA-aware.
    """

    def __init__(self, comm: Any = None) -> None:
        mpi = _import_mpi()
        self.comm = mpi.COMM_WORLD if comm is None else comm
        self._in_place, self._sum = mpi.IN_PLACE, mpi.SUM
        self.rank = int(self.comm.Get_rank())
        self.size = int(self.comm.Get_size())

    def allreduce_(self, buf: Any) -> None:
        if isinstance(buf, np.ndarray):
            self.comm.Allreduce(self._in_place, buf, op=self._sum)
            return
        host = np.ascontiguousarray(buf.get())
        self.comm.Allreduce(self._in_place, host, op=self._sum)
        buf.set(host)

    def broadcast_(self, buf: Any, root: int = 0) -> None:
        if isinstance(buf, np.ndarray):
            self.comm.Bcast(buf, root=root)
            return
        host = np.ascontiguousarray(buf.get())
        self.comm.Bcast(host, root=root)
        buf.set(host)

    def barrier(self) -> None:
        self.comm.Barrier()

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)

    def __repr__(self) -> str:
        return f"MPICommunicator(rank={self.rank}, size={self.size})"


def _import_mpi() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError(
            f"Data-parallel training over MPI needs mpi4py and an MPI library: {_MPI_EXTRA}"
        ) from err
    return MPI


def launched_world_size() -> int:
    """The number of processes an MPI launcher (``mpiexec``, ``mpirun``) started, read from
    the environment it sets (MPICH / Intel MPI, Open MPI, MVAPICH); 1 when there is none."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def init_communicator(mode: str = "auto") -> Communicator:
    """The communicator of this process for a recipe's ``distributed.mode``.

    * ``"auto"``: MPI when an MPI launcher started more than one process, else one process;
    * ``"mpi"``: always MPI (also for launchers this function cannot detect);
    * ``"none"``: one process, even under ``mpiexec`` (every process then trains alone).

    Raises:
        ValueError: for another mode.
        ImportError: naming ``pip install 'gradcraft[mpi]'`` when MPI is needed but mpi4py is
            missing.
    """
    if mode == "none":
        return SingleProcess()
    if mode == "auto":
        return MPICommunicator() if launched_world_size() > 1 else SingleProcess()
    if mode == "mpi":
        return MPICommunicator()
    raise ValueError(f"Expected distributed mode 'auto', 'mpi' or 'none'. Received: mode={mode!r}")


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Each process's share of a global ``batch_size``: ``batch_size / world_size``.

    Raises:
        ValueError: unless ``world_size`` divides ``batch_size``.
    """
    if batch_size % world_size:
        lower = batch_size - batch_size % world_size
        hint = f"e.g. {lower} or {lower + world_size}" if lower else f"e.g. {world_size}"
        raise ValueError(
            f"Expected a global batch_size divisible by the {world_size} processes, so that each trains "
            f"on an equal share ({hint}). Received: batch_size={batch_size}"
        )
    return batch_size // world_size


def threads_per_process(comm: Communicator) -> int | None:
    """BLAS threads for each of the processes on this machine: the cores divided evenly
    among them (at least 1), or None for a single process or an unknown layout."""
    if comm.size <= 1:
        return None
    local = 0
    for name in _LOCAL_SIZE_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            local = int(value)
            break
    if not local:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // local)


def broadcast_text(comm: Communicator, text: str, root: int = 0) -> str:
    """Process ``root``'s ``text`` on every process (UTF-8 bytes in two broadcasts: length, data)."""
    if comm.size == 1:
        return text
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8) if comm.rank == root else None
    length = np.array([0 if data is None else data.size], dtype=np.int64)
    comm.broadcast_(length, root)
    buf = np.empty(int(length[0]), dtype=np.uint8) if data is None else data.copy()
    comm.broadcast_(buf, root)
    return buf.tobytes().decode("utf-8")
