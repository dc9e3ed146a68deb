"""Communicators: choosing one from the recipe and the launcher, sharing text, batch shares."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from gradcraft.distributed import (
    SingleProcess,
    broadcast_text,
    init_communicator,
    launched_world_size,
    threads_per_process,
)
from tests.distributed.helpers import MirrorComm, ThreadGroup

LAUNCHER_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
LOCAL_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE")


@pytest.fixture
def no_launcher(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in LAUNCHER_VARIABLES + LOCAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_one_process_without_a_launcher(no_launcher: pytest.MonkeyPatch) -> None:
    assert launched_world_size() == 1
    assert isinstance(init_communicator("auto"), SingleProcess)
    assert isinstance(init_communicator("none"), SingleProcess)


@pytest.mark.parametrize("name", LAUNCHER_VARIABLES)
def test_the_launchers_process_count_is_read_from_its_environment(
    no_launcher: pytest.MonkeyPatch, name: str
) -> None:
    no_launcher.setenv(name, "4")
    assert launched_world_size() == 4
    assert isinstance(init_communicator("none"), SingleProcess)  # none: alone even under mpiexec


def test_mpi_without_mpi4py_names_the_extra(no_launcher: pytest.MonkeyPatch) -> None:
    no_launcher.setenv("PMI_SIZE", "2")
    no_launcher.setitem(sys.modules, "mpi4py", None)
    for mode in ("auto", "mpi"):
        with pytest.raises(ImportError, match=re.escape("pip install 'gradcraft[mpi]'")):
            init_communicator(mode)


def test_an_unknown_mode_is_named() -> None:
    with pytest.raises(
        ValueError,
        match=re.escape("Expected distributed mode 'auto', 'mpi' or 'none'. Received: mode='mpich'"),
    ):
        init_communicator("mpich")


def test_the_cores_are_divided_among_the_processes_of_this_machine(no_launcher: pytest.MonkeyPatch) -> None:
    assert threads_per_process(SingleProcess()) is None
    assert threads_per_process(MirrorComm(size=2)) is None  # layout unknown
    no_launcher.setenv("MPI_LOCALNRANKS", "2")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert threads_per_process(MirrorComm(size=2)) == max(1, cores // 2)
    no_launcher.setenv("MPI_LOCALNRANKS", str(4 * cores))
    assert threads_per_process(MirrorComm(size=4 * cores)) == 1


def test_text_is_shared_from_the_root() -> None:
    texts = ["runs/équipe-1", "runs/other-name"]
    out = ThreadGroup(2).run(lambda comm: broadcast_text(comm, texts[comm.rank]))
    assert out == ["runs/équipe-1", "runs/équipe-1"]
    assert broadcast_text(SingleProcess(), "alone") == "alone"


def test_a_single_process_has_nothing_to_exchange() -> None:
    comm = SingleProcess()
    buf = np.arange(3.0)
    comm.allreduce_(buf)
    comm.broadcast_(buf)
    comm.barrier()
    np.testing.assert_array_equal(buf, [0.0, 1.0, 2.0])
    with pytest.raises(
        ValueError, match=re.escape("Expected root 0 in a single-process run. Received: root=1")
    ):
        comm.broadcast_(buf, root=1)


def test_mpi_in_a_single_process_works_like_one_process(tmp_path: object) -> None:
    pytest.importorskip("mpi4py", reason="needs mpi4py (pip install 'gradcraft[mpi]')")
    script = (
        "import numpy as np\n"
        "from gradcraft.distributed import MPICommunicator, init_communicator, broadcast_text\n"
        "comm = init_communicator('mpi')\n"
        "assert isinstance(comm, MPICommunicator) and (comm.rank, comm.size) == (0, 1)\n"
        "buf = np.arange(4.0)\n"
        "comm.allreduce_(buf); comm.broadcast_(buf); comm.barrier()\n"
        "assert buf.tolist() == [0.0, 1.0, 2.0, 3.0]\n"
        "assert broadcast_text(comm, 'x') == 'x'\n"
        "print('ok')\n"
    )
    # in a child process: MPI is initialized once per process and stays so until it exits
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
