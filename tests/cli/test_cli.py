"""End-to-end: `gradcraft train | eval | predict | recipes` on a tiny generated dataset."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("typer")
pytest.importorskip("yaml")
pytest.importorskip("safetensors")

from gradcraft.cli import main
from gradcraft.io.checkpoint import load_checkpoint
from tests.cli.helpers import PYTHON, RECIPE, subprocess_env, tiny_recipe

LIGHT = RECIPE.replace(
    "logging: {log_every_steps: 2, progress: line}",
    "logging: {log_every_steps: 2, progress: line, tensorboard: false, plots: false}",
)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full training run shared by the tests that only read it."""
    tmp = tmp_path_factory.mktemp("cli")
    recipe = tiny_recipe(tmp)
    run = tmp / "run"
    assert main(["train", str(recipe), "--out", str(run), "--quiet"]) == 0
    return run


def test_train_writes_a_complete_run_directory(finished_run: Path) -> None:
    run = finished_run
    for name in (
        "recipe.yaml",
        "metrics.jsonl",
        "results.json",
        "report.md",
        "checkpoints/best.json",
        "checkpoints/last.json",
        "plots/loss.png",
        "plots/accuracy.png",
        "plots/lr.png",
        "plots/confusion_matrix.png",
    ):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    results = json.loads((run / "results.json").read_text())
    assert results["epochs_run"] == 3 and results["test_accuracy"] > 0.8
    assert results["checkpoint"] == "checkpoints/best.json"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2, 3]
    assert records[-1]["kind"] == "test" and records[-1]["test_accuracy"] == results["test_accuracy"]
    report = (run / "report.md").read_text()
    assert "Test accuracy" in report and "![confusion_matrix](plots/confusion_matrix.png)" in report
    assert "| c0 |" in report  # per-class table with the dataset's class names


def test_resolved_recipe_and_checkpoint_hold_every_default(finished_run: Path) -> None:
    import yaml

    resolved = yaml.safe_load((finished_run / "recipe.yaml").read_text())
    assert (
        resolved["optimizer"]["betas"] == [0.9, 0.999]
        and resolved["data"]["preprocessing"]["kind"] == "standardize"
    )
    ckpt = load_checkpoint(finished_run / "checkpoints" / "last.json")
    assert ckpt.meta["recipe"] == resolved
    state = ckpt.meta["trainer"]
    assert set(state["rng"]["generators"]) >= set()  # present even when empty
    assert "preprocessing" in state["extra"]
    assert any(k.startswith("extra.preprocessing.") for k in ckpt.arrays)
    assert state["loaders"]["train_loader"]["generator"]["bit_generator"] == "PCG64"


def test_train_progress_lines_on_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tiny_recipe(tmp_path, LIGHT.replace("epochs: 3", "epochs: 2"))
    assert main(["train", str(recipe), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and "train loss" in lines[0] and "val loss" in lines[0] and "lr " in lines[0]
    assert "test accuracy" in out


def test_quiet_prints_only_the_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tiny_recipe(tmp_path, LIGHT.replace("epochs: 3", "epochs: 1"))
    assert main(["train", str(recipe), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("test_accuracy ")


def test_eval_prints_accuracy_per_class_and_confusion(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(finished_run)]) == 0
    out = capsys.readouterr().out
    results = json.loads((finished_run / "results.json").read_text())
    assert f"test accuracy {100 * results['test_accuracy']:.2f}%" in out
    assert "per-class accuracy:" in out and "confusion matrix" in out
    assert main(["eval", str(finished_run), "--tta", "--checkpoint", "last"]) == 0
    out = capsys.readouterr().out
    assert "checkpoints/last.json  (with test-time augmentation)" in out


def test_predict_npy_and_png(finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pil = pytest.importorskip("PIL.Image")
    data = np.load(finished_run.parent / "tiny.npz")
    np.save(tmp_path / "batch.npy", data["x_test"][:3])
    pil.fromarray(data["x_test"][0, 0]).save(tmp_path / "one.png")
    assert (
        main(
            [
                "predict",
                str(finished_run),
                str(tmp_path / "batch.npy"),
                str(tmp_path / "one.png"),
                "--top",
                "2",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "batch.npy[0]",
        "batch.npy[1]",
        "batch.npy[2]",
        "one.png",
    ]
    assert lines[0].split(":", 1)[1] == lines[3].split(":", 1)[1]  # same image, same answer
    assert lines[0].count("%") == 2


def test_recipes_lists_the_shipped_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in ("fashion_quick", "fashion_mlp", "fashion_cnn", "fashion_resnet"):
        assert name in out
    assert main(["recipes", "--fields"]) == 0
    assert "optimizer.lr = 0.001" in capsys.readouterr().out


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["predict"], ["recipes"]])
def test_help_is_available(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


def test_typo_in_recipe_names_key_line_and_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tiny_recipe(tmp_path, RECIPE.replace("batch_size: 32", "batch_sise: 32"))
    assert main(["train", str(recipe), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"{recipe}:4: batch_sise: unknown key; did you mean 'batch_size'?" in err
    assert not (tmp_path / "r").exists()


def test_bad_override_names_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tiny_recipe(tmp_path)
    assert main(["train", str(recipe), "--set", "model.widht=[3]"]) == 2
    assert "--set model.widht: unknown key; did you mean 'widths'?" in capsys.readouterr().err


def test_train_refuses_an_existing_run_directory(
    finished_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = finished_run.parent / "tiny.yaml"
    assert main(["train", str(recipe), "--out", str(finished_run)]) == 1
    assert "already holds a run; pass --resume" in capsys.readouterr().err


def test_resume_takes_no_recipe(finished_run: Path) -> None:
    assert main(["train", "tiny.yaml", "--resume", str(finished_run)]) == 2


def test_resume_of_a_missing_run_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--resume", str(tmp_path / "nope")]) == 1
    assert f"{tmp_path / 'nope'}: no such run directory" in capsys.readouterr().err


def test_resume_of_a_finished_run_just_retests(finished_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    before = json.loads((copy / "results.json").read_text())
    assert main(["train", "--resume", str(copy), "--quiet"]) == 0
    after = json.loads((copy / "results.json").read_text())
    assert after["test_accuracy"] == before["test_accuracy"] and after["global_step"] == before["global_step"]
    kinds = [json.loads(line)["kind"] for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert kinds.count("test") == 1


def test_corrupt_checkpoint_is_refused_on_resume(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    (copy / "checkpoints" / "last.json").write_text('{"format": "something else"}')
    assert main(["train", "--resume", str(copy)]) == 1
    assert f"{copy / 'checkpoints' / 'last.json'}: not a gradcraft checkpoint" in capsys.readouterr().err


def test_checkpoint_of_another_recipe_is_refused(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)
    text = (copy / "recipe.yaml").read_text().replace("widths: [16]", "widths: [8]")
    (copy / "recipe.yaml").write_text(text)
    assert main(["train", "--resume", str(copy)]) == 1
    assert "different recipe (differs in: model.widths)" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_diverging_run_stops_with_step_lr_and_causes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe = tiny_recipe(
        tmp_path,
        LIGHT.replace("{name: adam, lr: 0.01}", "{name: sgd, lr: 1.0e+12}")
        .replace("norm: batchnorm", "norm: none")
        .replace("schedule: {name: cosine, warmup_epochs: 1}", "schedule: {name: constant}"),
    )
    run = tmp_path / "r"
    assert main(["train", str(recipe), "--out", str(run), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "The loss became" in err and "Learning rate: 1e+12" in err and "Likely causes" in err
    assert "training stopped" in err
    report = (run / "report.md").read_text()
    assert "The loss became" in report
    assert "`tensorboard/`" not in report  # tensorboard was off in this recipe
    results = json.loads((run / "results.json").read_text())
    assert results["stop_reason"].startswith("The loss became")
    if (run / "checkpoints" / "last.json").exists():  # saved before divergence: finite and loadable
        ckpt = load_checkpoint(run / "checkpoints" / "last.json")
        assert all(np.all(np.isfinite(a)) for a in ckpt.arrays.values() if a.dtype.kind == "f")


def test_python_dash_m_gradcraft_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "gradcraft", "recipes"],
        check=False,
        capture_output=True,
        text=True,
        env=subprocess_env(tmp_path),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "fashion_quick" in done.stdout


def test_monitor_is_on_by_default_and_its_diagnosis_reaches_the_report(finished_run: Path) -> None:
    report = (finished_run / "report.md").read_text()
    assert "## Diagnosis" in report
    assert (finished_run / "diagnosis").is_dir()
