"""`gradcraft export` on a tiny trained run: ONNX that answers like `gradcraft predict`, and
PyTorch-format weights that rebuild the same model from a recipe."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ["ORT_DISABLE_TELEMETRY"] = "1"
pytest.importorskip("typer")
pytest.importorskip("yaml")
pytest.importorskip("safetensors")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from gradcraft.cli import main  # noqa: E402
from gradcraft.data.loader import to_float  # noqa: E402
from gradcraft.io import load_torch_state_dict  # noqa: E402
from gradcraft.train.experiment import Experiment  # noqa: E402
from tests.cli.helpers import RECIPE, tiny_recipe  # noqa: E402
from tests.io.helpers import eval_forward, ort_run  # noqa: E402

TOL = {"rtol": 1e-5, "atol": 1e-5}
LIGHT = RECIPE.replace(
    "logging: {log_every_steps: 2, progress: line}",
    "logging: {log_every_steps: 2, progress: none, tensorboard: false, plots: false}",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained tiny MLP run (batch norm, dropout, standardize preprocessing)."""
    tmp = tmp_path_factory.mktemp("export")
    recipe = tiny_recipe(tmp, LIGHT)
    run_dir = tmp / "run"
    assert main(["train", str(recipe), "--out", str(run_dir), "--quiet"]) == 0
    return run_dir


@pytest.fixture(scope="module")
def prepared(run: Path) -> Experiment:
    exp = Experiment.from_run_dir(run, quiet=True)
    exp.prepare()
    return exp


def test_exported_graph_answers_like_predict(
    run: Path, prepared: Experiment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tiny.onnx"
    code = main(["export", str(run), "--onnx", str(out), "--include-preprocessing", "--softmax"])
    assert code == 0
    assert "(opset 17; input 'input' (batch, 1, 6, 6) float32; output 'probabilities' (batch, 3))" in (
        capsys.readouterr().out
    )
    raw = np.load(run.parent / "tiny.npz")["x_test"][:7]
    expected = prepared.predict_arrays(raw)  # what `gradcraft predict` prints
    np.testing.assert_allclose(ort_run(out, to_float(raw)), expected, **TOL)
    np.testing.assert_allclose(ort_run(out, to_float(raw[:1])), expected[:1], **TOL)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["classes"]) == ["c0", "c1", "c2"]


def test_uint8_input_takes_raw_pixels(run: Path, prepared: Experiment, tmp_path: Path) -> None:
    out = tmp_path / "raw.onnx"
    args = ["export", str(run), "--onnx", str(out), "--include-preprocessing", "--uint8-input"]
    assert main([*args, "--softmax", "--opset", "18", "--checkpoint", "last"]) == 0
    raw = np.load(run.parent / "tiny.npz")["x_test"][:7]
    last = Experiment.from_run_dir(run, quiet=True)
    last.prepare(which="last")
    np.testing.assert_allclose(ort_run(out, raw), last.predict_arrays(raw), **TOL)


def test_without_preprocessing_the_graph_takes_standardized_inputs(
    run: Path, prepared: Experiment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "logits.onnx"
    assert main(["export", str(run), "--onnx", str(out)]) == 0
    assert "add --include-preprocessing" in capsys.readouterr().err
    x = prepared.preprocessor(to_float(np.load(run.parent / "tiny.npz")["x_test"][:5]))
    model = prepared.trainer.model
    np.testing.assert_allclose(ort_run(out, x), eval_forward(model, x), **TOL)


def test_torch_weights_plus_recipe_rebuild_the_same_model(
    run: Path, prepared: Experiment, tmp_path: Path
) -> None:
    weights = tmp_path / "tiny.safetensors"
    assert main(["export", str(run), "--torch", str(weights)]) == 0
    state = load_torch_state_dict(weights)
    for key, value in prepared.trainer.model.state_dict().items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)
    out = tmp_path / "from_weights.onnx"
    recipe = run.parent / "tiny.yaml"
    assert (
        main(["export", str(weights), "--recipe", str(recipe), "--onnx", str(out), "--include-preprocessing"])
        == 0
    )
    raw = np.load(run.parent / "tiny.npz")["x_test"][:7]
    # the preprocessing statistics are fitted again on the recipe's training split: the same ones
    x = prepared.preprocessor(to_float(raw))
    np.testing.assert_allclose(ort_run(out, to_float(raw)), eval_forward(prepared.trainer.model, x), **TOL)


def test_wrong_weights_for_the_recipe_report_the_mismatch(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gradcraft.io import save_torch_state_dict

    weights = save_torch_state_dict({"1.weight": np.zeros((8, 36), np.float32)}, tmp_path / "w.safetensors")
    code = main(
        ["export", str(weights), "--recipe", str(run.parent / "tiny.yaml"), "--onnx", str(tmp_path / "x")]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {weights}: Error(s) in loading state_dict")
    assert (
        "size mismatch for '1.weight': Expected shape (16, 36) (in the model). Received: shape=(8, 36)" in err
    )
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give --onnx PATH and/or --torch PATH"),
        (["--onnx", "m.onnx", "--recipe", "tiny.yaml"], "brings its own recipe.yaml"),
        (["--onnx", "m.onnx", "--checkpoint", "first"], "--checkpoint must be best or last"),
    ],
)
def test_usage_errors(run: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(run), *args]) == 2
    assert message in " ".join(capsys.readouterr().err.split()).replace("│ ", "")


def test_a_weights_file_needs_a_recipe_and_a_source_must_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    assert main(["export", str(weights), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "give --recipe" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "absent"), "--onnx", str(tmp_path / "m.onnx")]) == 1
    assert "no such run directory or weights file" in capsys.readouterr().err
