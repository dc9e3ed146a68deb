"""Recipes run as one process of several (with fake communicators): who writes, how the batch
is shared, and the large-batch and device keys."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydantic")
pytest.importorskip("yaml")

from gradcraft.config import load_recipe
from gradcraft.distributed import DistributedSampler, local_batch_size
from gradcraft.train import experiment as experiment_module
from gradcraft.train.experiment import Experiment, RunError
from tests.cli.helpers import RECIPE, tiny_recipe
from tests.distributed.helpers import MirrorComm

QUIET = RECIPE.replace(
    "logging: {log_every_steps: 2, progress: line}",
    "logging: {log_every_steps: 2, progress: line, tensorboard: false, plots: false}",
)


def _experiment(tmp_path: Path, comm: object = None, text: str = QUIET, **kwargs: object) -> Experiment:
    recipe = load_recipe(tiny_recipe(tmp_path, text), [f"{k}={v}" for k, v in kwargs.items()])
    return Experiment(recipe, tmp_path / "run", communicator=comm)


def test_processes_other_than_0_print_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = _experiment(tmp_path, MirrorComm(rank=1, size=2)).train()
    assert "test_accuracy" in results and results["global_step"] == 3 * 6  # 192 examples / 2 / 16
    assert list((tmp_path / "run").rglob("*")) == []
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_process_0_writes_the_run_directory(tmp_path: Path) -> None:
    _experiment(tmp_path, MirrorComm(rank=0, size=2)).train()
    run = tmp_path / "run"
    for name in ("recipe.yaml", "metrics.jsonl", "results.json", "report.md", "checkpoints/last.json"):
        assert (run / name).is_file(), name
    assert (
        "- Processes: 2, data-parallel over MPI, 16 examples each per step" in (run / "report.md").read_text()
    )


def test_each_process_loads_its_shard_with_its_share_of_the_batch(tmp_path: Path) -> None:
    exp = _experiment(tmp_path, MirrorComm(rank=1, size=4))
    trainer = exp.build()
    train, val = trainer.train_loader, trainer.val_loader
    assert train.batch_size == 8 and train.stream == 1
    assert isinstance(train.sampler, DistributedSampler) and train.sampler.rank == 1
    assert train.sampler.shuffle and train.sampler.drop_remainder
    assert len(train.sampler) == 192 // 4
    assert not val.sampler.shuffle and not val.sampler.drop_remainder
    assert exp.parallel is not None and exp.parallel.world_size == 4


def test_a_batch_the_processes_cannot_share_is_refused_before_any_collective(tmp_path: Path) -> None:
    # every process finds the same error and ends on its own (MirrorComm.abort would raise
    # "aborted with status 1"): no MPI_Abort, which can lose the processes' output
    comm = MirrorComm(rank=0, size=3)
    with pytest.raises(RunError, match=re.escape("divisible by the 3 processes")) as err:
        _experiment(tmp_path, comm).train()
    assert "batch_size: Expected a global batch_size" in str(err.value)
    assert "(e.g. 30 or 33). Received: batch_size=32" in str(err.value)
    assert comm.calls == []
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=re.escape("divisible by the 4 processes")):
        local_batch_size(6, 4)
    assert local_batch_size(1024, 8) == 128


def test_linear_scaling_sets_the_rate_and_warms_up_from_the_unscaled_rate(tmp_path: Path) -> None:
    exp = _experiment(
        tmp_path,
        None,
        **{
            "batch_size": 64,
            "optimizer.scale_lr": "linear",
            "optimizer.base_batch_size": 32,
            "schedule.name": "constant",
            "schedule.warmup_epochs": 1,
        },
    )
    assert exp.recipe.schedule.warmup_start_factor == 0.5
    trainer = exp.build()
    opt, sched = trainer.optimizer, trainer.scheduler
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)  # the recipe's lr for batch 32
    for _ in range(len(trainer.train_loader)):  # one epoch of warm-up (no gradients: no update)
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.02)


def test_sqrt_scaling_and_explicit_warmup_start(tmp_path: Path) -> None:
    exp = _experiment(
        tmp_path,
        None,
        **{
            "batch_size": 128,
            "optimizer.scale_lr": "sqrt",
            "optimizer.base_batch_size": 32,
            "schedule.warmup_epochs": 1,
            "schedule.warmup_start_factor": 0.2,
        },
    )
    assert exp.recipe.optimizer.scaled_lr(128) == pytest.approx(0.02)
    assert exp.recipe.schedule.warmup_start_factor == 0.2


def test_training_on_cuda_without_cupy_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # as if CuPy were not installed
    exp = _experiment(tmp_path, None, device="cuda")
    with pytest.raises(
        RunError,
        match=re.escape(
            "device='cuda': Device 'cuda' needs CuPy and a CUDA GPU: pip install 'gradcraft[gpu]'"
        ),
    ):
        exp.train()


def test_training_on_cuda_without_a_gpu_says_none_was_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class CUDARuntimeError(RuntimeError):
        pass

    def no_device() -> int:
        raise CUDARuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    runtime = types.SimpleNamespace(getDeviceCount=no_device, CUDARuntimeError=CUDARuntimeError)
    monkeypatch.setitem(
        sys.modules, "cupy", types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))
    )
    exp = _experiment(tmp_path, None, device="cuda")
    with pytest.raises(
        RunError, match=re.escape("Expected a CUDA device for device 'cuda'. Received: CuPy found no GPU")
    ):
        exp.train()
    assert not np.any([p.suffix == ".safetensors" for p in (tmp_path / "run").rglob("*")])


def test_the_shipped_large_batch_recipe_is_fashion_mlp_scaled_by_goyals_rules() -> None:
    small, large = load_recipe("fashion_mlp").to_dict(), load_recipe("fashion_mlp_large_batch")
    assert large.batch_size == 1024 == 8 * small["batch_size"]
    assert large.optimizer.scaled_lr(large.batch_size) == pytest.approx(8 * small["optimizer"]["lr"])
    # the warm-up starts from fashion_mlp's rate
    assert large.schedule.warmup_start_factor * large.optimizer.scaled_lr(1024) == pytest.approx(0.001)
    resolved = large.to_dict()
    for section in ("model", "data", "loss", "epochs", "seed"):
        assert resolved[section] == small[section], section


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow that makes the loss NaN
def test_an_error_in_one_process_is_printed_then_given_time_to_reach_mpiexec_before_the_abort(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[tuple[float, str]] = []  # (seconds, what had been printed by then)
    monkeypatch.setattr(experiment_module.time, "sleep", lambda s: waits.append((s, capsys.readouterr().err)))
    with pytest.raises(RuntimeError, match="aborted with status 1"):  # MirrorComm.abort
        _experiment(tmp_path, MirrorComm(rank=1, size=2), **{"optimizer.lr": 1e30}).train()
    assert len(waits) == 1
    seconds, printed = waits[0]
    assert seconds == experiment_module.ABORT_GRACE_SECONDS > 0
    assert printed.startswith("error on process 1 of 2: The loss became NaN at step ")
