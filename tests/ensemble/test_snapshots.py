"""Snapshot ensembles: a snapshot exactly at the end of every cosine-restart cycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gradcraft.ensemble import Ensemble, SnapshotEnsemble, cycle_ends, read_weights
from gradcraft.io.checkpoint import load_checkpoint
from gradcraft.optim import lr_scheduler
from gradcraft.train import LambdaCallback, Trainer
from tests.train.helpers import blobs, make_trainer, mlp, weights

pytest.importorskip("safetensors")


def test_cycle_ends_follow_t0_and_tmult() -> None:
    assert cycle_ends(3, 1, 12) == [3, 6, 9, 12]
    assert cycle_ends(3, 2, 30) == [3, 9, 21]
    assert cycle_ends(2, 3, 30) == [2, 8, 26]
    assert cycle_ends(5, 1, 4) == []
    with pytest.raises(ValueError, match="Expected T_0 >= 1 and T_mult >= 1"):
        cycle_ends(0, 1, 10)


def _run(tmp_path: Path, t_mult: int, interval: str, epochs: int, t_0: int) -> tuple[Trainer, list[Any]]:
    seen: list[Any] = []

    def record(t: Trainer) -> None:
        seen.append((t.global_step, t.epoch, t.batch_logs["lr"], weights(t)))

    trainer = make_trainer(
        [SnapshotEnsemble(tmp_path / "snaps"), LambdaCallback(on_batch_end=record, order=99)],
        scheduler=lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(
            opt, T_0=t_0, T_mult=t_mult, eta_min=1e-4
        ),
        interval=interval,
    )
    trainer.fit(epochs)
    return trainer, seen


@pytest.mark.parametrize(("t_mult", "expected"), [(1, [3, 6, 9, 12, 15, 18, 21, 24]), (2, [3, 9, 21])])
def test_snapshots_are_saved_exactly_at_cycle_ends(tmp_path: Path, t_mult: int, expected: list[int]) -> None:
    trainer, seen = _run(tmp_path, t_mult, "step", epochs=4, t_0=3)
    assert trainer.global_step == 24
    files = sorted((tmp_path / "snaps").glob("snapshot-*.json"))
    assert [load_checkpoint(f).meta["snapshot"]["step"] for f in files] == expected
    lrs = {step: lr for step, _, lr, _ in seen}
    starts = [0, *expected]
    for k, (f, end) in enumerate(zip(files, expected)):
        info = load_checkpoint(f).meta["snapshot"]
        assert info["cycle"] == k + 1 and info["lr"] == pytest.approx(lrs[end])
        cycle = [lrs[s] for s in range(starts[k] + 1, end + 1)]
        assert lrs[end] == min(cycle) < cycle[0]  # the cycle's lowest rate ...
        if end + 1 in lrs:
            assert lrs[end + 1] > lrs[end]  # ... and a restart right after
        state, _ = read_weights(f)
        at_end = next(w for step, _, _, w in seen if step == end)
        for key, value in at_end.items():
            np.testing.assert_array_equal(state[key], value, err_msg=key)


def test_snapshots_count_epochs_when_the_schedule_steps_per_epoch(tmp_path: Path) -> None:
    trainer, _ = _run(tmp_path, 2, "epoch", epochs=4, t_0=1)
    steps = [load_checkpoint(f).meta["snapshot"] for f in sorted((tmp_path / "snaps").glob("*.json"))]
    assert [s["epoch"] for s in steps] == [1, 3]
    assert [s["step"] for s in steps] == [6, 18]
    assert trainer.callbacks[0].state_dict()["saved"][1]["file"] == "snapshot-002.json"


def test_snapshots_need_cosine_restarts(tmp_path: Path) -> None:
    trainer = make_trainer(
        [SnapshotEnsemble(tmp_path)],
        scheduler=lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=10),
        interval="step",
    )
    with pytest.raises(
        ValueError, match=r"Expected a CosineAnnealingWarmRestarts.*Received: CosineAnnealingLR"
    ):
        trainer.fit(1)


def test_snapshots_form_an_ensemble(tmp_path: Path) -> None:
    _run(tmp_path, 1, "step", epochs=2, t_0=6)
    models = []
    for f in sorted((tmp_path / "snaps").glob("*.json")):
        model = mlp()
        model.load_state_dict(read_weights(f)[0])
        models.append(model)
    assert len(models) == 2
    data = blobs(60, seed=5)
    result = Ensemble(models).evaluate((data.x.astype(np.float32) / 255, data.y))
    assert len(result.member_accuracy) == 2 and 0.0 <= result.accuracy <= 1.0
    assert (
        result.member_accuracy[0] != result.member_accuracy[1]
        or result.member_loss[0] != result.member_loss[1]
    )
