"""Real data-parallel runs: ``mpiexec -n 2 python -m gradcraft train`` in subprocesses.

Two processes with 64 examples each must end with the weights of one process with batch 128
(the same global batches, in the same order), with and without synchronized batch norm; a
run aborted mid-epoch and resumed must end bit for bit where an uninterrupted one ends.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("typer")
pytest.importorskip("safetensors")

from gradcraft.config import load_recipe
from gradcraft.io.checkpoint import load_checkpoint, unpack_state
from gradcraft.train.experiment import Experiment
from tests.cli.helpers import PYTHON, RECIPE, subprocess_env, tiny_recipe
from tests.train.helpers import write_npz


def _find_mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


def _has_mpi4py() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


MPIEXEC = _find_mpiexec()
pytestmark = pytest.mark.skipif(
    MPIEXEC is None or not _has_mpi4py(),
    reason="needs mpi4py and an mpiexec next to the interpreter or on PATH (pip install 'gradcraft[mpi]')",
)

EQUIVALENCE = """\
name: equivalence
epochs: 2
batch_size: 128
seed: 0
model: {{block: mlp, widths: [32, 16], norm: {norm}}}
data: {{dataset: {data}, val_split: 0.2, preprocessing: {{kind: standardize}}}}
optimizer: {{name: sgd, lr: 0.1, momentum: 0.9}}
callbacks: {{monitor: {{enabled: false}}}}
logging: {{progress: none, tensorboard: false, plots: false, report: false}}
distributed: {{sync_batchnorm: {sync}}}
"""


def _mpiexec(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [MPIEXEC, "-n", "2", PYTHON, *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=subprocess_env(cwd),  # one BLAS thread per process
        timeout=300,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def _state(run: Path) -> dict:
    ckpt = load_checkpoint(run / "checkpoints" / "last.json")
    return unpack_state(ckpt.meta["trainer"], ckpt.arrays)


def _one_process(recipe: Path, out: Path) -> dict:
    Experiment(load_recipe(recipe), out, quiet=True, communicator=None).train()
    return _state(out)


def _equivalence_run(tmp_path: Path, norm: str, sync: bool) -> tuple[dict, dict]:
    data = write_npz(
        tmp_path / "tiny.npz", n_train=640, n_test=90
    )  # 512 training examples: 4 steps per epoch
    recipe = tmp_path / f"{norm}-{sync}.yaml"
    recipe.write_text(EQUIVALENCE.format(norm=norm, sync=str(sync).lower(), data=data))
    out = tmp_path / f"two-{norm}-{sync}"
    _mpiexec(["-m", "gradcraft", "train", str(recipe), "--out", str(out), "--quiet"], tmp_path)
    return _state(out), _one_process(recipe, tmp_path / f"one-{norm}-{sync}")


def _assert_same_model(two: dict, one: dict) -> None:
    assert two["global_step"] == one["global_step"] == 8
    for key, value in one["model"].items():
        # float32 rounding differs (a mean of two half-batch gradients): observed 1e-7 after 8 steps
        np.testing.assert_allclose(two["model"][key], value, rtol=1e-5, atol=2e-6, err_msg=key)
    for split in ("val_loss", "val_accuracy", "train_loss"):
        np.testing.assert_allclose(
            two["history"]["epochs"][split], one["history"]["epochs"][split], rtol=1e-5, err_msg=split
        )


def test_two_processes_with_batch_64_match_one_process_with_batch_128(tmp_path: Path) -> None:
    two, one = _equivalence_run(tmp_path, "none", sync=False)
    _assert_same_model(two, one)
    initial = Experiment(load_recipe(tmp_path / "none-False.yaml"), tmp_path / "init").build().model
    moved = max(np.abs(one["model"][k] - v).max() for k, v in initial.state_dict().items())
    assert moved > 1e-2  # the comparison is between trained weights, not initial ones


def test_synchronized_batch_norm_matches_one_process_and_local_batch_norm_does_not(tmp_path: Path) -> None:
    two, one = _equivalence_run(tmp_path, "batchnorm", sync=True)
    _assert_same_model(two, one)
    local, _ = _equivalence_run(tmp_path, "batchnorm", sync=False)
    differences = [np.abs(local["model"][k] - v).max() for k, v in one["model"].items()]
    assert max(differences) > 1e-3


# every source of randomness: shuffling, crop + flip augmentation, mixup, dropout; local batch norm
RESUME = (
    RECIPE.replace(
        "logging: {log_every_steps: 2, progress: line}",
        "logging: {log_every_steps: 2, progress: line, tensorboard: false, plots: false}",
    )
    .replace("  augmentation:", "  mixing: {kind: mixup, alpha: 0.4}\n  augmentation:")
    .replace("callbacks: {checkpoint: {every_steps: 4}}", "callbacks: {checkpoint: {every_steps: 2}}")
)

# The training processes: the real CLI, with a hook that aborts the whole run (MPI_Abort, as a
# crash on one machine would) right after process 0 saved the checkpoint of step STOP.
DRIVER = """
import sys
from gradcraft.train import callbacks

STOP = int(sys.argv[1])
original = callbacks.ModelCheckpoint.on_batch_end

def on_batch_end(self, trainer):
    original(self, trainer)
    if trainer.global_step == STOP:
        from mpi4py import MPI
        MPI.COMM_WORLD.Abort(7)

callbacks.ModelCheckpoint.on_batch_end = on_batch_end
from gradcraft.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_an_aborted_run_resumed_under_mpiexec_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    recipe = tiny_recipe(tmp_path, RESUME)
    # 192 training examples: 96 per process, 6 steps of 16 per epoch, 18 in all; aborted at step 8
    # (epoch 2, batch 2) right after its checkpoint
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    killed = tmp_path / "killed"
    done = _mpiexec(
        [str(driver), "8", "train", str(recipe), "--out", str(killed), "--quiet"], tmp_path, False
    )
    assert done.returncode != 0
    assert _state(killed)["global_step"] == 8
    _mpiexec(["-m", "gradcraft", "train", "--resume", str(killed), "--quiet"], tmp_path)
    full = tmp_path / "full"
    _mpiexec(["-m", "gradcraft", "train", str(recipe), "--out", str(full), "--quiet"], tmp_path)
    resumed, uninterrupted = _state(killed), _state(full)
    assert resumed["global_step"] == uninterrupted["global_step"] == 18
    for key, value in uninterrupted["model"].items():
        np.testing.assert_array_equal(resumed["model"][key], value, err_msg=key)
    assert resumed["history"]["epochs"]["val_loss"] == uninterrupted["history"]["epochs"]["val_loss"]
    epochs = [
        line for line in (killed / "metrics.jsonl").read_text().splitlines() if '"kind": "epoch"' in line
    ]
    assert len(epochs) == 3  # written once, by process 0


def test_a_batch_the_processes_cannot_share_stops_the_run_with_a_clear_error(tmp_path: Path) -> None:
    recipe = tiny_recipe(tmp_path)
    done = _mpiexec(
        ["-m", "gradcraft", "train", str(recipe), "--set", "batch_size=33", "--out", str(tmp_path / "bad")],
        tmp_path,
        check=False,
    )
    assert done.returncode != 0
    # Every process finds the error before any collective and ends on its own: no MPI_Abort,
    # which can kill a process before its message reaches mpiexec.
    assert "MPI_Abort" not in done.stderr
    assert done.stderr.count("Expected a global batch_size divisible by the 2 processes") == 2
    assert "Received: batch_size=33" in done.stderr
    assert not (tmp_path / "bad" / "checkpoints").exists()
