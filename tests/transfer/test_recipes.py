"""Recipe keys for transfer learning, averaging and snapshots; class selection and data
fractions; a transfer run end to end through the command line (tiny generated data)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydantic")
pytest.importorskip("yaml")

from gradcraft import nn, optim
from gradcraft.config import RecipeError, load_recipe, parse_recipe, recipes_dir
from gradcraft.optim import lr_scheduler
from gradcraft.train.experiment import RunError, build_scheduler, load_data
from tests.train.helpers import write_npz


def data_cfg(path: Path, **data: object) -> object:
    return parse_recipe({"data": {"dataset": str(path), **data}}).data


def test_data_classes_keep_and_renumber_labels(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz")
    raw = np.load(path)
    data = load_data(data_cfg(path, classes=[2, 0], val_split=0), seed=0)
    assert data.classes == ["c2", "c0"] and data.num_classes == 2
    for split, x, y in (
        (data.train, raw["x_train"], raw["y_train"]),
        (data.test, raw["x_test"], raw["y_test"]),
    ):
        keep = (y == 2) | (y == 0)
        np.testing.assert_array_equal(split.x, x[keep])
        np.testing.assert_array_equal(split.y, np.where(y[keep] == 2, 0, 1))
        assert split.classes == ["c2", "c0"]
    with pytest.raises(RunError, match=r"data.classes: Expected labels below 3.*Received: \[5\]"):
        load_data(data_cfg(path, classes=[0, 5]), seed=0)


def test_train_fraction_keeps_a_stratified_seeded_share_before_the_validation_split(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", n_train=240)
    full = np.bincount(np.load(path)["y_train"], minlength=3)
    data = load_data(data_cfg(path, train_fraction=0.25, val_split=0.2), seed=0)
    assert len(data.train) + len(data.val) == 60 and len(data.val) == 12
    kept = np.bincount(np.concatenate([data.train.y, data.val.y]), minlength=3)
    assert np.all(np.abs(kept - full / 4) <= 1)
    again = load_data(data_cfg(path, train_fraction=0.25, val_split=0.2), seed=0)
    np.testing.assert_array_equal(again.train.x, data.train.x)
    other = load_data(data_cfg(path, train_fraction=0.25, val_split=0.2), seed=1)
    assert not np.array_equal(other.train.x, data.train.x)
    assert len(load_data(data_cfg(path, train_fraction=1.0, val_split=0), seed=0).train) == 240


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ({"transfer": {"stratgy": "auto"}}, "transfer.stratgy: unknown key; did you mean 'strategy'?"),
        ({"transfer": {"strategy": "probe"}}, "transfer.strategy: Input should be"),
        (
            {"transfer": {"similarity": "alike"}},
            "transfer.similarity: Input should be 'similar' or 'different'",
        ),
        ({"transfer": {"layer_decay": 1.5}}, "transfer.layer_decay: Input should be less than or equal to 1"),
        ({"transfer": {"backbone_lr_mult": 0}}, "transfer.backbone_lr_mult: Input should be greater than 0"),
        (
            {"transfer": {"strategy": "finetune_all", "unfreeze_every": 2}},
            "Expected a strategy that freezes blocks with unfreeze_every > 0. Received: strategy='finetune_all'",
        ),
        ({"callbacks": {"ema": {"decay": 1.0}}}, "callbacks.ema.decay: Input should be less than 1"),
        ({"callbacks": {"ema": {"bn": "freeze"}}}, "callbacks.ema.bn: Input should be"),
        (
            {"callbacks": {"ema": {"every_steps": 0}}},
            "callbacks.ema.every_steps: Input should be greater than 0",
        ),
        (
            {"callbacks": {"snapshots": {"enabled": True}}, "schedule": {"name": "cosine"}},
            "Expected schedule.name: cosine_restarts with callbacks.snapshots.enabled",
        ),
        (
            {
                "callbacks": {"snapshots": {"enabled": True}},
                "schedule": {"name": "cosine_restarts", "restart_epochs": 20},
            },
            "Expected epochs >= schedule.restart_epochs",
        ),
        (
            {"schedule": {"name": "cosine_restarts", "warmup_epochs": 1}},
            "Expected schedule.warmup_epochs: 0 with cosine_restarts",
        ),
        (
            {"schedule": {"name": "cosine_restarts", "restart_mult": 0}},
            "schedule.restart_mult: Input should be",
        ),
        (
            {"data": {"classes": [1, 1]}},
            "Expected a non-empty list of distinct labels >= 0. Received: [1, 1]",
        ),
        ({"data": {"train_fraction": 0}}, "data.train_fraction: Input should be greater than 0"),
    ],
)
def test_recipe_keys_validate_with_clear_errors(recipe: dict, message: str) -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe(recipe)
    assert message in str(err.value)


def test_cosine_restarts_step_per_batch_with_cycles_in_epochs() -> None:
    opt = optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    cfg = parse_recipe(
        {"schedule": {"name": "cosine_restarts", "restart_epochs": 2, "restart_mult": 2}}
    ).schedule
    sched, interval = build_scheduler(cfg, opt, 6, 5, 0.1)
    assert isinstance(sched, lr_scheduler.CosineAnnealingWarmRestarts) and interval == "step"
    assert (sched.T_0, sched.T_mult) == (10, 2)


def test_onecycle_keeps_the_ratios_of_parameter_groups() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    opt = optim.SGD(
        [
            {"params": list(model[1].parameters()), "lr": 0.1},
            {"params": list(model[0].parameters()), "lr": 0.01},
        ],
        lr=0.1,
    )
    sched, _ = build_scheduler(parse_recipe({"schedule": {"name": "onecycle"}}).schedule, opt, 2, 5, 0.2)
    rates = []
    for _ in range(10):
        rates.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for head, body in rates:
        assert head == pytest.approx(10 * body)
    assert 0.15 < max(r[0] for r in rates) <= 0.2  # the recipe's peak for the first group


def test_shipped_transfer_recipes_validate() -> None:
    files = sorted((recipes_dir() / "transfer").glob("*.yaml"))
    assert {f.stem for f in files} >= {"pretrain_classes_0_4", "target_classes_5_9"}
    pre = load_recipe(files[0])
    target = load_recipe(recipes_dir() / "transfer" / "target_classes_5_9.yaml")
    assert pre.data.classes == [0, 1, 2, 3, 4] and target.data.classes == [5, 6, 7, 8, 9]
    assert target.data.train_fraction == 0.01 and target.transfer.source is not None
    assert pre.model == target.model  # the same network, so every layer below the head transfers
    assert load_recipe(files[1], ["transfer.source=null"]).transfer.source is None


# ---------------------------------------------------------------------------- end to end
pytest.importorskip("typer")
pytest.importorskip("safetensors")

from gradcraft.cli import main  # noqa: E402
from gradcraft.io.checkpoint import load_checkpoint, unpack_state  # noqa: E402
from tests.cli.helpers import tiny_recipe  # noqa: E402

PRETRAIN = """\
name: pre
epochs: 3
batch_size: 32
model: {block: mlp, widths: [16, 8], norm: batchnorm}
data: {dataset: tiny.npz, val_split: 0.2}
optimizer: {name: adam, lr: 0.01}
callbacks: {monitor: {enabled: false}}
logging: {tensorboard: false, plots: false, progress: line}
"""

TARGET = PRETRAIN.replace("name: pre", "name: target").replace(
    "data: {dataset: tiny.npz, val_split: 0.2}",
    "data: {dataset: tiny.npz, val_split: 0.2, classes: [2, 0]}\ntransfer: {source: run-pre, strategy: auto}",
)


def trained_state(run: Path, which: str = "best") -> dict:
    ckpt = load_checkpoint(run / "checkpoints" / f"{which}.json")
    return unpack_state(ckpt.meta["trainer"], ckpt.arrays)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("transfer")
    recipe = tiny_recipe(tmp, PRETRAIN, name="pre.yaml")
    assert main(["train", str(recipe), "--out", str(tmp / "run-pre"), "--quiet"]) == 0
    return tmp / "run-pre"


def test_transfer_run_keeps_the_frozen_body_and_reports_the_new_head(
    pretrained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = pretrained.parent
    recipe = tmp / "target.yaml"
    recipe.write_text(TARGET)
    capsys.readouterr()
    assert main(["train", str(recipe), "--out", str(tmp / "run-target")]) == 0
    out = capsys.readouterr().out
    assert "loaded 12 entries" in out and "skipped (the head, newly initialised): 7.weight, 7.bias" in out
    assert "strategy linear_probe (auto:" in out and "small" in out
    assert "preprocessing: the source run's standardize statistics" in out
    record = json.loads((tmp / "run-target" / "transfer.json").read_text())
    assert record["strategy"] == "linear_probe" and record["skipped_head"] == ["7.weight", "7.bias"]
    source, target = trained_state(pretrained), trained_state(tmp / "run-target")
    body = [k for k in source["model"] if not k.startswith("7.")]
    assert any("running_var" in k for k in body)
    for key in body:  # frozen, batch-norm statistics included
        np.testing.assert_array_equal(target["model"][key], source["model"][key], err_msg=key)
    assert target["model"]["7.weight"].shape == (2, 8)
    for key, value in source["extra"]["preprocessing"].items():
        np.testing.assert_array_equal(target["extra"]["preprocessing"][key], value)
    # evaluating the new run does not need the source any more
    shutil.move(pretrained, tmp / "moved")
    try:
        assert main(["eval", str(tmp / "run-target")]) == 0
    finally:
        shutil.move(tmp / "moved", pretrained)
    assert "per-class accuracy:" in capsys.readouterr().out


def test_finetuning_with_lower_rates_and_gradual_unfreezing(
    pretrained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp = pretrained.parent
    recipe = tmp / "gradual.yaml"
    recipe.write_text(
        TARGET.replace("strategy: auto}", "strategy: linear_probe, unfreeze_every: 1, backbone_lr_mult: 0.5}")
    )
    capsys.readouterr()
    assert main(["train", str(recipe), "--out", str(tmp / "run-gradual")]) == 0
    out = capsys.readouterr().out
    assert "lr block 2: 0.01, block 1: 0.005, block 0: 0.005" in out
    assert "gradual unfreezing: training block 1" in out and "gradual unfreezing: training block 0" in out
    source, target = trained_state(pretrained), trained_state(tmp / "run-gradual", "last")
    assert not np.array_equal(target["model"]["1.weight"], source["model"]["1.weight"])
    assert [g["lr"] for g in target["optimizer"]["param_groups"]] == pytest.approx([0.01, 0.005, 0.005])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("transfer: {source: run-pre", "transfer: {source: no-such-run"),
            "no such run directory or weights file",
        ),
        (
            ("val_split: 0.2, classes", "val_split: 0.2, preprocessing: {kind: none}, classes"),
            "Expected data.preprocessing.kind 'standardize', as in the source run",
        ),
        (
            ("widths: [16, 8]", "widths: [16, 4]"),
            "'4.weight' has shape (4, 16) in the model, (8, 16) in the source",
        ),
    ],
)
def test_transfer_problems_are_reported(
    pretrained: Path, capsys: pytest.CaptureFixture[str], change: tuple[str, str], message: str
) -> None:
    recipe = pretrained.parent / "bad.yaml"
    recipe.write_text(TARGET.replace(*change))
    out = pretrained.parent / f"run-bad-{abs(hash(message))}"
    assert main(["train", str(recipe), "--out", str(out), "--quiet"]) == 1
    assert message in capsys.readouterr().err
