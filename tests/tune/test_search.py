"""`tune` end to end on a tiny generated dataset: outputs, resuming, workers, coarse-to-fine,
samplers, explosions and errors."""

from __future__ import annotations

import csv
import itertools
import json
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="hyperparameter search needs Optuna (gradcraft[tune])")

from gradcraft.cli import main  # noqa: E402
from gradcraft.config import load_recipe  # noqa: E402
from gradcraft.tune import SpaceError, TuneError, TuneResult, open_storage, require_optuna, tune  # noqa: E402
from gradcraft.tune.search import _Job, _make_sampler  # noqa: E402
from gradcraft.tune.space import narrow, parse_space  # noqa: E402
from tests.tune.helpers import SPACE, setup  # noqa: E402


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def best_epoch_accuracy(metrics: Path) -> float:
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    return max(r["val_accuracy"] for r in records if "val_accuracy" in r)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[TuneResult, Path, list[str]]:
    tmp = tmp_path_factory.mktemp("study")
    recipe, space = setup(tmp)
    lines: list[str] = []
    result = tune(recipe, space, tmp / "out", trials=4, budget="epochs=2", log=lines.append)
    return result, tmp, lines


def test_tiny_study_writes_a_sorted_table_best_recipe_report_and_plots(
    study: tuple[TuneResult, Path, list[str]],
) -> None:
    result, tmp, lines = study
    out = tmp / "out"
    rows = read_csv(out / "trials.csv")
    assert len(rows) == 4 and {r["state"] for r in rows} <= {"complete", "pruned"}
    accs = [float(r["val_accuracy"]) for r in rows]
    assert accs == sorted(accs, reverse=True)
    for r in rows:  # the table's accuracy is the best epoch of the trial's own metrics
        metrics = out / "trials" / "search" / f"{int(r['trial']):04d}" / "metrics.jsonl"
        assert float(r["val_accuracy"]) == pytest.approx(best_epoch_accuracy(metrics), abs=1e-6)
    assert {"optimizer.lr", "model.dropout"} <= set(rows[0])
    assert result.best is not None and result.best["trial"] == int(rows[0]["trial"])
    report = (out / "report.md").read_text()
    assert "## Best trial" in report and "## Stage 1: search" in report
    assert "plots/params-search.png" in report and "plots/history.png" in report
    assert (out / "plots" / "params-search.png").stat().st_size > 0
    assert (out / "plots" / "history.png").stat().st_size > 0
    assert (out / "study.db").is_file()
    printed = "\n".join(lines)
    assert "val acc" in printed and "best recipe:" in printed


def test_best_recipe_has_the_best_values_without_the_budget_and_trains(
    study: tuple[TuneResult, Path, list[str]], tmp_path: Path
) -> None:
    result, tmp, _ = study
    path = tmp / "out" / "best_recipe.yaml"
    recipe = load_recipe(path)
    assert result.best is not None
    assert recipe.optimizer.lr == pytest.approx(result.best["params"]["optimizer.lr"])
    assert recipe.model.dropout == pytest.approx(result.best["params"]["model.dropout"])
    assert recipe.epochs == 3  # the recipe's, not the budget's 2
    assert recipe.logging.plots and recipe.callbacks.checkpoint.save_best  # not the trials' quiet settings
    run = tmp_path / "run"
    assert main(["train", str(path), "--out", str(run), "--quiet"]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["epochs_run"] == 3 and 0.0 <= results["test_accuracy"] <= 1.0


def test_rerunning_continues_the_study_and_keeps_earlier_trials(tmp_path: Path) -> None:
    recipe, space = setup(tmp_path)
    out = tmp_path / "out"
    first = tune(recipe, space, out, trials=2, budget="epochs=1", log=None, plots=False)
    before = {t.number: t.params for t in first.stages[0].trials}
    lines: list[str] = []
    second = tune(recipe, space, out, trials=4, budget="epochs=1", log=lines.append, plots=False)
    assert second.resumed
    assert any(
        "continuing study 'tune-tiny'" in line and "2 finished trial(s) kept, 2 to go" in line
        for line in lines
    )
    after = {t.number: t.params for t in second.stages[0].trials}
    assert len(after) == 4 and all(after[n] == p for n, p in before.items())
    assert len(read_csv(out / "trials.csv")) == 4
    third = tune(recipe, space, out, trials=4, budget="epochs=1", log=None, plots=False)
    assert len(third.stages[0].trials) == 4  # nothing left to run


def test_continuing_with_another_space_or_budget_is_refused(tmp_path: Path) -> None:
    recipe, space = setup(tmp_path)
    out = tmp_path / "out"
    tune(recipe, space, out, trials=1, budget="epochs=1", log=None, plots=False)
    other = tmp_path / "other.yaml"
    other.write_text(SPACE.replace("high: 0.5", "high: 0.4"))
    with pytest.raises(TuneError, match=r"different search space \(differs in: model.dropout.high\)"):
        tune(recipe, other, out, trials=2, budget="epochs=1", log=None, plots=False)
    with pytest.raises(TuneError, match="different budget"):
        tune(recipe, space, out, trials=2, budget="epochs=2", log=None, plots=False)


def test_two_worker_processes_share_one_study(tmp_path: Path) -> None:
    recipe, space = setup(tmp_path)
    out = tmp_path / "out"
    result = tune(recipe, space, out, trials=4, budget="epochs=1", workers=2, log=None, plots=False)
    trials = result.stages[0].trials
    assert len(trials) == 4 and sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2
    for t in trials:
        assert (out / "trials" / "search" / f"{t.number:04d}" / "metrics.jsonl").is_file()


TWO_STAGES = """\
params:
  optimizer.lr: {distribution: log_uniform, low: 1.0e-4, high: 0.1}
  model.dropout: {distribution: uniform, low: 0.0, high: 0.5}
  model.widths: {distribution: categorical, choices: [[8], [16], [32]]}
stages:
  - {name: coarse, trials: 5, budget: "epochs=1"}
  - {name: fine, trials: 3, budget: "epochs=2", top_k: 2, widen: 0.25}
"""


def test_coarse_to_fine_narrows_around_the_best_coarse_trials(tmp_path: Path) -> None:
    recipe, space = setup(tmp_path, TWO_STAGES)
    out = tmp_path / "out"
    result = tune(recipe, space, out, sampler="random", log=None)
    coarse, fine = result.stages
    assert coarse.study_name == "tune-tiny.coarse" and fine.study_name == "tune-tiny.fine"
    assert len(coarse.trials) == 5 and len(fine.trials) == 3
    top = [r for r in coarse.rows() if r["state"] == "complete"][:2]
    for key in ("optimizer.lr", "model.dropout"):
        old, new = coarse.space.params[key], fine.space.params[key]
        assert old.low <= new.low < new.high <= old.high
        assert (new.high - new.low) < (old.high - old.low) or (new.low, new.high) == (old.low, old.high)
        values = [r["params"][key] for r in top]
        assert all(new.low <= v <= new.high for v in values)
        assert new == narrow(old, values, widen=0.25)  # around the top 2 trials, widened by 1/4
        for r in fine.rows():
            assert new.low <= r["params"][key] <= new.high
    kept = {tuple(c) for c in fine.space.params["model.widths"].choices}
    assert kept == {tuple(r["params"]["model.widths"]) for r in top}
    # the fine stage starts by training the best coarse configuration longer
    first = min(fine.trials, key=lambda t: t.number)
    assert coarse.best() is not None
    assert first.params["optimizer.lr"] == pytest.approx(coarse.best()["params"]["optimizer.lr"])
    assert result.best is not None and result.best["stage"] == "fine"
    report = (out / "report.md").read_text()
    assert "## Stage 1: coarse" in report and "## Stage 2: fine" in report
    assert "Ranges narrowed around the top 2 complete trials of `coarse`" in report
    assert (out / "plots" / "params-coarse.png").is_file() and (out / "plots" / "params-fine.png").is_file()
    stages = {r["stage"] for r in read_csv(out / "trials.csv")}
    assert stages == {"coarse", "fine"}


GRID = """\
params:
  optimizer.lr: {distribution: categorical, choices: [0.003, 0.03]}
  model.dropout: {distribution: uniform, low: 0.0, high: 0.4, grid: 3}
"""


def test_grid_sampler_enumerates_the_whole_grid_once(tmp_path: Path) -> None:
    recipe, space = setup(tmp_path, GRID)
    lines: list[str] = []
    result = tune(
        recipe,
        space,
        tmp_path / "out",
        trials=20,
        sampler="grid",
        budget="epochs=1",
        log=lines.append,
        plots=False,
    )
    seen = [(t.params["optimizer.lr"], round(t.params["model.dropout"], 9)) for t in result.stages[0].trials]
    assert sorted(seen) == sorted(itertools.product([0.003, 0.03], [0.0, 0.2, 0.4]))
    assert any("the grid has 6 points; running 6 trials, not 20" in line for line in lines)


def test_samplers_are_selected_by_name() -> None:
    space = parse_space(
        {"params": {"model.dropout": {"distribution": "uniform", "low": 0.0, "high": 0.5, "grid": 2}}}
    )
    job = _Job({}, None, space, [], "sqlite://", "s", "search", "random", "median", 0, ".", 10)
    for name, cls in (
        ("random", optuna.samplers.RandomSampler),
        ("grid", optuna.samplers.GridSampler),
        ("tpe", optuna.samplers.TPESampler),
    ):
        job.sampler = name
        assert type(_make_sampler(job, 0, 0)) is cls


def test_workers_and_restarts_get_different_sampler_seeds() -> None:
    space = parse_space({"params": {"model.dropout": {"distribution": "uniform", "low": 0.0, "high": 0.5}}})
    job = _Job({}, None, space, [], "sqlite://", "s", "search", "random", "median", 0, ".", 10)

    def first_value(worker: int, existing: int) -> float:
        study = optuna.create_study(sampler=_make_sampler(job, worker, existing))
        return study.ask().suggest_float("x", 0.0, 1.0)

    assert first_value(0, 0) == first_value(0, 0)
    assert first_value(0, 0) != first_value(1, 0)
    assert first_value(0, 0) != first_value(0, 4)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_exploding_trial_is_recorded_with_its_state_and_reason(tmp_path: Path) -> None:
    space_text = "params:\n  optimizer.lr: {distribution: categorical, choices: [0.01, 1.0e+6]}\n"
    recipe, space = setup(tmp_path, space_text)
    out = tmp_path / "out"
    result = tune(
        recipe,
        space,
        out,
        trials=2,
        sampler="grid",
        budget="epochs=2",
        overrides=["optimizer.name=sgd"],
        log=None,
        plots=False,
    )
    rows = {float(r["optimizer.lr"]): r for r in read_csv(out / "trials.csv")}
    assert rows[1e6]["state"] == "exploded"
    assert "loss" in rows[1e6]["reason"] and "step" in rows[1e6]["reason"]
    assert rows[0.01]["state"] == "complete"
    exploded = next(t for t in result.stages[0].trials if t.params["optimizer.lr"] == 1e6)
    assert exploded.state == optuna.trial.TrialState.PRUNED and exploded.user_attrs["state"] == "exploded"
    assert "exploded" in (out / "report.md").read_text()
    assert load_recipe(out / "best_recipe.yaml").optimizer.name == "sgd"  # --set is kept


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_stage_without_any_complete_trial_is_an_error(tmp_path: Path) -> None:
    recipe, space = setup(
        tmp_path, "params:\n  optimizer.lr: {distribution: log_uniform, low: 1.0e+5, high: 1.0e+6}\n"
    )
    with pytest.raises(TuneError, match="has no complete trial"):
        tune(
            recipe, space, tmp_path / "out", trials=2, overrides=["optimizer.name=sgd"], log=None, plots=False
        )


def test_bad_arguments_are_reported_before_any_training(tmp_path: Path) -> None:
    recipe, space = setup(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="Expected sampler one of random, grid, tpe"):
        tune(recipe, space, out, sampler="bayes", log=None)
    with pytest.raises(ValueError, match="Expected pruner one of"):
        tune(recipe, space, out, pruner="hyperband", log=None)
    with pytest.raises(ValueError, match="Expected workers >= 1"):
        tune(recipe, space, out, workers=0, log=None)
    with pytest.raises(ValueError, match=r"data.val_split > 0"):
        tune(recipe, space, out, overrides=["data.val_split=0"], log=None)
    staged = tmp_path / "staged.yaml"
    staged.write_text(TWO_STAGES)
    with pytest.raises(ValueError, match="no --trials with a space that has stages"):
        tune(recipe, staged, out, trials=3, log=None)
    bad = tmp_path / "bad.yaml"
    bad.write_text("params:\n  optimizer.lrr: {distribution: log_uniform, low: 1.0e-4, high: 0.1}\n")
    with pytest.raises(SpaceError, match=r"bad.yaml: optimizer.lrr: .*did you mean 'lr'"):
        tune(recipe, bad, out, log=None)
    grid_less = tmp_path / "nogrid.yaml"
    grid_less.write_text(SPACE)
    with pytest.raises(SpaceError, match="Expected 'grid: N'"):
        tune(recipe, grid_less, out, sampler="grid", log=None)
    assert not out.exists()


def test_journal_storage_and_bad_urls(tmp_path: Path) -> None:
    storage = open_storage(f"journal:{tmp_path / 'study.log'}")
    assert type(storage).__name__ == "JournalStorage"
    with pytest.raises(ValueError, match="Expected a database URL"):
        open_storage("nosuchdb://x")


def test_missing_optuna_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"pip install \"gradcraft\[tune\]\""):
        require_optuna()


# ---------------------------------------------------------------------------- the command
def test_tune_command_runs_a_search(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe, space = setup(tmp_path)
    out = tmp_path / "out"
    args = ["tune", str(recipe), "--space", str(space), "--trials", "2", "--out", str(out)]
    code = main([*args, "--budget", "epochs=1", "--sampler", "tpe", "--pruner", "halving", "--no-plots"])
    assert code == 0
    assert (out / "report.md").is_file() and (out / "best_recipe.yaml").is_file()
    assert not (out / "plots").exists()
    assert "best recipe:" in capsys.readouterr().out


def test_tune_command_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe, _ = setup(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("params:\n  model.dropout: {distribution: uniform, low: 0.6, high: 0.2}\n")
    assert main(["tune", str(recipe), "--space", str(bad), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "model.dropout: Expected low < high. Received: low=0.6, high=0.2" in err
    assert main(["tune", str(recipe), "--space", str(bad), "--sampler", "bayes"]) == 2
