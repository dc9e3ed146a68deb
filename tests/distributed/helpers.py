"""Communicators for testing data-parallel code inside one pytest process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from gradcraft.distributed import Communicator


class ThreadGroup:
    """``size`` ranks on threads of this process, each with its own :class:`ThreadComm`.

    ``run(fn)`` calls ``fn(comm)`` for every rank on its own thread and returns the results in
    rank order; an exception on one rank breaks the barrier, so the others fail instead of
    waiting, and the first exception is re-raised.
    """

    def __init__(self, size: int, timeout: float = 60.0) -> None:
        self.size = size
        self.barrier = threading.Barrier(size, timeout=timeout)
        self.slots: list[Any] = [None] * size
        self.comms = [ThreadComm(self, rank) for rank in range(size)]

    def run(self, fn: Callable[[ThreadComm], Any]) -> list[Any]:
        results: list[Any] = [None] * self.size
        errors: list[BaseException] = []

        def work(rank: int) -> None:
            try:
                results[rank] = fn(self.comms[rank])
            except BaseException as err:  # handed to the caller below
                errors.append(err)
                self.barrier.abort()

        threads = [threading.Thread(target=work, args=(r,)) for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results


class ThreadComm(Communicator):
    """One rank of a :class:`ThreadGroup`; sums are taken in rank order, so every rank gets
    bit-identical results (as MPI's do)."""

    def __init__(self, group: ThreadGroup, rank: int) -> None:
        self.group = group
        self.rank = rank
        self.size = group.size
        self.allreduce_calls = 0

    def allreduce_(self, buf: Any) -> None:
        g = self.group
        g.slots[self.rank] = np.array(buf, copy=True)
        g.barrier.wait()
        total = g.slots[0].copy()
        for other in g.slots[1:]:
            total += other
        g.barrier.wait()
        buf[...] = total
        self.allreduce_calls += 1

    def broadcast_(self, buf: Any, root: int = 0) -> None:
        g = self.group
        if self.rank == root:
            g.slots[root] = np.array(buf, copy=True)
        g.barrier.wait()
        buf[...] = g.slots[root]
        g.barrier.wait()

    def barrier(self) -> None:
        self.group.barrier.wait()

    def abort(self, code: int = 1) -> None:
        raise RuntimeError(f"aborted with status {code}")


class MirrorComm(Communicator):
    """Rank ``rank`` of ``size`` processes that all hold this process's values: a sum over the
    processes is ``size`` times the local array, a broadcast changes nothing. Records every
    call as ``(operation, nbytes, dtype)``."""

    def __init__(self, rank: int = 0, size: int = 2) -> None:
        self.rank, self.size = rank, size
        self.calls: list[tuple[str, int, str]] = []

    def allreduce_(self, buf: Any) -> None:
        self.calls.append(("allreduce", int(buf.nbytes), str(buf.dtype)))
        buf *= self.size

    def broadcast_(self, buf: Any, root: int = 0) -> None:
        self.calls.append(("broadcast", int(buf.nbytes), str(buf.dtype)))

    def barrier(self) -> None:
        self.calls.append(("barrier", 0, ""))

    def abort(self, code: int = 1) -> None:
        raise RuntimeError(f"aborted with status {code}")
