"""The trial callback: per-epoch reports, pruning, and the loss-explosion abort."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gradcraft.config import load_recipe
from gradcraft.train.callbacks import Callback
from gradcraft.tune import TrialReporter, TrialStopped, run_trial, trial_recipe
from tests.train.helpers import make_trainer
from tests.tune.helpers import setup


class FakeTrial:
    """Records reports; ``should_prune`` answers ``prune``."""

    def __init__(self, prune: bool = False) -> None:
        self.prune = prune
        self.reports: list[tuple[int, float]] = []

    def report(self, value: float, step: int) -> None:
        self.reports.append((step, value))

    def should_prune(self) -> bool:
        return self.prune


class CountBatches(Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_batch_end(self, trainer: Any) -> None:
        self.batches += 1


def test_reports_validation_accuracy_of_every_epoch_with_1_based_steps() -> None:
    trial = FakeTrial()
    reporter = TrialReporter(trial)
    trainer = make_trainer([reporter], lr=0.05)
    trainer.fit(3)
    val = trainer.history.epochs["val_accuracy"]
    assert trial.reports == [(1, val[0]), (2, val[1]), (3, val[2])]
    assert reporter.values == list(val)
    assert reporter.initial_loss == pytest.approx(trainer.history.steps["loss"][1][0])


def test_pruned_trial_stops_right_after_the_epoch_it_was_pruned_in() -> None:
    trial = FakeTrial(prune=True)
    counter = CountBatches()
    trainer = make_trainer([TrialReporter(trial, pruner="median"), counter], lr=0.05)
    with pytest.raises(TrialStopped) as stop:
        trainer.fit(4)
    assert stop.value.state == "pruned" and stop.value.epoch == 1
    assert "median rule after epoch 1 of 4" in stop.value.reason
    assert counter.batches == trainer.steps_per_epoch  # nothing of epoch 2 ran
    assert len(trial.reports) == 1


def test_the_last_epoch_is_never_pruned() -> None:
    trial = FakeTrial(prune=True)
    trainer = make_trainer([TrialReporter(trial)], lr=0.05)
    trainer.fit(1)
    assert trainer.stop_reason == "completed" and len(trial.reports) == 1


def test_loss_above_three_times_the_initial_loss_aborts_at_once() -> None:
    counter = CountBatches()
    reporter = TrialReporter(FakeTrial())
    trainer = make_trainer([reporter, counter], lr=50.0)
    with pytest.raises(TrialStopped) as stop:
        trainer.fit(3)
    assert stop.value.state == "exploded" and stop.value.epoch == 1
    assert "> 3 × the initial loss" in stop.value.reason
    last = trainer.history.steps["loss"][1][-1]
    assert last > 3 * reporter.initial_loss
    assert counter.batches < trainer.steps_per_epoch  # stopped mid-epoch, not at its end
    assert reporter.values == []


def test_a_moderate_learning_rate_does_not_trigger_the_abort() -> None:
    reporter = TrialReporter(FakeTrial())
    make_trainer([reporter], lr=0.05).fit(2)
    assert len(reporter.values) == 2


def test_explode_factor_must_exceed_one() -> None:
    with pytest.raises(ValueError, match="explode_factor > 1"):
        TrialReporter(FakeTrial(), explode_factor=1.0)


def test_run_trial_prunes_a_hopeless_trial_against_a_real_median_pruner(tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna", reason="the pruning rule comes from Optuna (gradcraft[tune])")
    recipe_path, _ = setup(tmp_path)
    base = load_recipe(recipe_path).to_dict()
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    good = study.ask()
    for epoch in (1, 2, 3):
        good.report(0.99, epoch)
    study.tell(good, 0.99)
    hopeless = study.ask()
    recipe = trial_recipe(base, {"optimizer.lr": 1e-7}, name="hopeless")
    outcome = run_trial(recipe, tmp_path / "trial", hopeless, pruner="median")
    assert outcome.state == "pruned" and len(outcome.values) == 1
    assert outcome.values[0] < 0.99
    assert "median rule after epoch 1 of 3" in outcome.reason
    assert (tmp_path / "trial" / "recipe.yaml").is_file() and (tmp_path / "trial" / "metrics.jsonl").is_file()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_run_trial_records_a_nan_loss_as_exploded(tmp_path: Path) -> None:
    recipe_path, _ = setup(tmp_path)
    base = load_recipe(recipe_path).to_dict()
    recipe = trial_recipe(base, {"optimizer.name": "sgd", "optimizer.lr": 1e30}, name="nan")
    outcome = run_trial(recipe, tmp_path / "trial", FakeTrial(), explode_factor=1e300)
    assert outcome.state == "exploded"
    assert "loss became" in outcome.reason and "step" in outcome.reason
