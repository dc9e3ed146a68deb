"""`gradcraft eval RUN1 RUN2 … --ensemble` on tiny generated runs, and EMA / snapshot recipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("typer")
pytest.importorskip("yaml")
pytest.importorskip("safetensors")

from gradcraft.cli import main
from gradcraft.data import DataLoader
from gradcraft.ensemble import Ensemble, load_members
from gradcraft.io.checkpoint import load_checkpoint, unpack_state
from gradcraft.train.experiment import Experiment
from tests.cli.helpers import tiny_recipe

BASE = """\
name: {name}
epochs: 3
batch_size: 32
seed: {seed}
model: {model}
data: {{dataset: tiny.npz, val_split: 0.2{data}}}
optimizer: {{name: adam, lr: 0.01}}
schedule: {schedule}
callbacks: {{monitor: {{enabled: false}}{callbacks}}}
logging: {{tensorboard: false, plots: false, progress: none}}
"""


def recipe(
    name: str, seed: int = 0, model: str = "{block: mlp, widths: [16], norm: batchnorm}", **extra: str
) -> str:
    return BASE.format(
        name=name,
        seed=seed,
        model=model,
        data=extra.get("data", ""),
        schedule=extra.get("schedule", "{name: cosine}"),
        callbacks=extra.get("callbacks", ""),
    )


def flat(text: str) -> str:
    """Usage errors come in a box that wraps lines: join the words again."""
    return " ".join(text.replace("│", " ").split())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four finished runs: two architectures, one on two classes only, one with EMA and snapshots."""
    tmp = tmp_path_factory.mktemp("ensemble")
    texts = {
        "a": recipe("a"),
        "b": recipe("b", seed=1, model="{block: mlp, widths: [8, 8]}"),
        "two": recipe("two", data=", classes: [0, 1]"),
        "snap": recipe(
            "snap",
            schedule="{name: cosine_restarts, restart_epochs: 1}",
            callbacks=", ema: {enabled: true, decay: 0.9}, snapshots: {enabled: true}",
        ),
    }
    out = {}
    for name, text in texts.items():
        path = tiny_recipe(tmp, text, name=f"{name}.yaml")
        out[name] = tmp / f"run-{name}"
        assert main(["train", str(path), "--out", str(out[name]), "--quiet"]) == 0
    return out


def test_eval_ensemble_prints_each_member_and_the_ensemble(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["eval", str(runs["a"]), str(runs["b"]), "--ensemble"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ensemble of 2 models on the test split of") and "(90 examples)" in lines[0]
    for run in ("a", "b"):
        acc = json.loads((runs[run] / "results.json").read_text())["test_accuracy"]
        row = next(line for line in lines if line.strip().startswith(str(runs[run])))
        assert "checkpoints/best.json" in row and f"{100 * acc:.2f}%" in row
    members, test, classes = load_members([runs["a"], runs["b"]])
    assert classes == ["c0", "c1", "c2"] and len(test) == 90
    expected = Ensemble(members).evaluate(DataLoader(test, batch_size=50))
    assert f"{100 * expected.accuracy:.2f}%" in lines[-1] and "ensemble (mean of probabilities)" in lines[-1]


def test_eval_ensemble_with_vote_and_last_checkpoints(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    args = ["eval", str(runs["a"]), str(runs["b"]), str(runs["snap"]), "--ensemble"]
    assert main([*args, "--combine", "vote", "--checkpoint", "last"]) == 0
    out = capsys.readouterr().out
    assert "ensemble of 3 models" in out and "ensemble (majority vote)" in out
    assert out.count("checkpoints/last.json") == 3


def test_eval_ensemble_of_one_runs_snapshots(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["eval", str(runs["snap"]), "--ensemble", "--checkpoint", "snapshots"]) == 0
    out = capsys.readouterr().out
    assert "ensemble of 3 models" in out
    for k in (1, 2, 3):
        assert f"snapshot-00{k}.json" in out


def test_ensemble_refuses_runs_with_different_class_counts(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["eval", str(runs["a"]), str(runs["two"]), "--ensemble"]) == 1
    err = capsys.readouterr().err
    assert "Expected every ensemble member to predict the same number of classes" in err
    assert f"3 in {runs['a']}, 2 in {runs['two']}" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "several run directories are evaluated together with --ensemble"),
        (["--ensemble", "--combine", "median"], "--combine must be"),
        (["--ensemble", "--tta"], "--tta cannot be combined"),
    ],
)
def test_ensemble_usage_errors(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["eval", str(runs["a"]), str(runs["b"]), *extra]) == 2
    assert message in flat(capsys.readouterr().err)


def test_one_run_is_not_an_ensemble(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(runs["a"]), "--ensemble"]) == 2
    assert "--ensemble needs at least two members" in flat(capsys.readouterr().err)
    assert main(["eval", str(runs["a"]), "--ensemble", "--checkpoint", "snapshots"]) == 1
    assert "no snapshots in this run directory" in capsys.readouterr().err


def test_ema_run_is_tested_with_the_averaged_weights(runs: dict[str, Path]) -> None:
    run = runs["snap"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert all("raw_val_accuracy" in r and "val_accuracy" in r for r in epochs)
    best = load_checkpoint(run / "checkpoints" / "best.json")
    state = unpack_state(best.meta["trainer"], best.arrays)
    shadow = state["callbacks"]["ExponentialMovingAverage"]["shadow"]
    exp = Experiment.from_run_dir(run, quiet=True)
    exp.prepare()
    loaded = exp.trainer.model.state_dict()
    assert shadow and any("running_mean" in k for k in shadow)
    for key, value in shadow.items():
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)
    assert any(not np.array_equal(state["model"][k], v) for k, v in shadow.items())
    snaps = sorted((run / "snapshots").glob("snapshot-*.json"))
    assert [load_checkpoint(s).meta["snapshot"]["epoch"] for s in snaps] == [1, 2, 3]
