"""Turning a recipe into objects: data splits, preprocessing, augmentation, optimizer, schedule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydantic")
pytest.importorskip("yaml")

from gradcraft import nn, optim
from gradcraft.config import parse_recipe
from gradcraft.optim import lr_scheduler as S
from gradcraft.train.experiment import (
    RunError,
    build_augmentation,
    build_optimizer,
    build_preprocessor,
    build_regularizers,
    build_scheduler,
    load_data,
)
from tests.train.helpers import write_npz


def opt_for(lr: float = 0.1) -> optim.Optimizer:
    return optim.SGD(nn.Linear(3, 2).parameters(), lr=lr)


def lrs(sched: object, opt: optim.Optimizer, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()  # type: ignore[attr-defined]
    return out


def schedule(**kwargs: object) -> object:
    return parse_recipe({"schedule": kwargs}).schedule


def test_constant_schedule_is_none() -> None:
    assert build_scheduler(schedule(name="constant"), opt_for(), 3, 10, 0.1) == (None, "epoch")


def test_step_schedule_is_per_epoch_without_warmup() -> None:
    opt = opt_for()
    sched, interval = build_scheduler(schedule(name="step", step_size=2, gamma=0.5), opt, 6, 10, 0.1)
    assert isinstance(sched, S.StepLR) and interval == "epoch"
    assert lrs(sched, opt, 5) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_warmup_turns_epoch_schedules_into_exact_step_schedules() -> None:
    opt = opt_for()
    sched, interval = build_scheduler(
        schedule(name="step", step_size=2, gamma=0.5, warmup_epochs=1, warmup_start_factor=0.1),
        opt,
        6,
        4,
        0.1,
    )
    assert interval == "step" and isinstance(sched, S.SequentialLR)
    values = lrs(sched, opt, 16)
    assert values[0] == pytest.approx(0.01)  # warm-up from 0.1 x lr
    assert values[4:12] == pytest.approx([0.1] * 8)  # 2 epochs at full rate after the warm-up
    assert values[12] == pytest.approx(0.05)  # the main schedule's epochs count from the warm-up's end


def test_exponential_with_warmup_decays_once_per_epoch() -> None:
    opt = opt_for()
    sched, interval = build_scheduler(
        schedule(name="exponential", gamma=0.5, warmup_epochs=1), opt, 4, 2, 0.1
    )
    assert interval == "step"
    assert lrs(sched, opt, 6)[2:] == pytest.approx([0.1, 0.1, 0.05, 0.05])


def test_cosine_is_per_step_over_the_whole_run() -> None:
    opt = opt_for()
    sched, interval = build_scheduler(schedule(name="cosine", min_lr=0.001), opt, 2, 5, 0.1)
    assert isinstance(sched, S.CosineAnnealingLR) and interval == "step" and sched.T_max == 10


def test_onecycle_peaks_at_the_optimizer_lr() -> None:
    opt = opt_for(0.2)
    sched, interval = build_scheduler(schedule(name="onecycle", pct_start=0.5), opt, 2, 5, 0.2)
    assert interval == "step"
    assert max(lrs(sched, opt, 10)) == pytest.approx(0.2, rel=0.05)


def test_plateau_mode_follows_the_monitor() -> None:
    sched, interval = build_scheduler(schedule(name="plateau", monitor="val_accuracy"), opt_for(), 3, 5, 0.1)
    assert isinstance(sched, S.ReduceLROnPlateau) and sched.mode == "max" and interval == "epoch"


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "adagrad"])
def test_every_optimizer_name_builds(name: str) -> None:
    cfg = parse_recipe({"optimizer": {"name": name, "lr": 0.01, "weight_decay": 0.001}}).optimizer
    opt = build_optimizer(cfg, nn.Linear(3, 2))
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[0]["weight_decay"] == 0.001


def test_regularizers_from_the_recipe() -> None:
    cfgs = parse_recipe(
        {
            "regularizers": [
                {"type": "l2", "weight": 0.1},
                {"type": "elastic_net", "weight": 1.0, "l1_ratio": 0.25},
            ]
        }
    ).regularizers
    l2, enet = build_regularizers(cfgs)
    assert isinstance(l2, nn.L2) and l2.strength == 0.1
    assert isinstance(enet, nn.ElasticNet)


def test_load_data_from_npz_splits_validation_stratified(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", n_train=200, n_test=50)
    cfg = parse_recipe({"data": {"dataset": str(path), "val_split": 0.25}}).data
    data = load_data(cfg, seed=0)
    assert len(data.train) == 150 and len(data.val) == 50 and len(data.test) == 50
    assert data.classes == ["c0", "c1", "c2"] and data.input_shape == (1, 6, 6) and data.num_classes == 3
    full = np.bincount(np.concatenate([data.train.y, data.val.y]), minlength=3) / 200
    np.testing.assert_allclose(np.bincount(data.val.y, minlength=3) / 50, full, atol=0.03)
    again = load_data(cfg, seed=0)
    np.testing.assert_array_equal(again.val.x, data.val.x)  # the split is seeded


def test_load_data_subset_and_no_validation(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz")
    cfg = parse_recipe({"data": {"dataset": str(path), "val_split": 0, "subset": 40}}).data
    data = load_data(cfg, seed=0)
    assert data.val is None and len(data.train) == 40


def test_load_data_names_a_missing_npz(tmp_path: Path) -> None:
    cfg = parse_recipe({"data": {"dataset": str(tmp_path / "nope.npz")}}).data
    with pytest.raises(RunError, match=r"data.dataset: no such .npz file"):
        load_data(cfg, seed=0)


@pytest.mark.parametrize(
    ("kind", "cls"),
    [("none", None), ("center", "ChannelMean"), ("mean_image", "MeanImage"), ("standardize", "Standardize")],
)
def test_preprocessing_is_fitted_on_the_training_split(tmp_path: Path, kind: str, cls: str | None) -> None:
    data = load_data(parse_recipe({"data": {"dataset": str(write_npz(tmp_path / "d.npz"))}}).data, seed=0)
    pre = build_preprocessor(
        parse_recipe({"data": {"preprocessing": {"kind": kind}}}).data.preprocessing, data.train
    )
    if cls is None:
        assert pre is None
        return
    assert type(pre).__name__ == cls
    out = pre(data.train.x[:64].astype(np.float32) / 255)
    assert abs(float(out.mean())) < 0.5


def test_augmentation_transforms_in_order() -> None:
    cfgs = parse_recipe(
        {
            "data": {
                "augmentation": [
                    "random_crop",
                    "hflip",
                    {"type": "affine", "degrees": 10},
                    "cutout",
                    "erasing",
                    "noise",
                ]
            }
        }
    ).data.augmentation
    names = [type(t).__name__ for t in build_augmentation(cfgs)]
    assert names == [
        "RandomCrop",
        "RandomHorizontalFlip",
        "RandomAffine",
        "Cutout",
        "RandomErasing",
        "GaussianNoise",
    ]
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    for t in build_augmentation(cfgs):
        assert t(x, generator=np.random.default_rng(1)).shape == x.shape


def _views(tmp_path: Path, data: dict, tta: dict | None = None) -> list[str]:
    from gradcraft.train.experiment import Experiment

    path = write_npz(tmp_path / "d.npz")
    recipe = parse_recipe({"data": {"dataset": str(path), **data}, **({"tta": tta} if tta else {})})
    exp = Experiment(recipe, tmp_path / "run", quiet=True)
    exp.build(callbacks=False)
    return [type(v).__name__ for v in exp.tta_views()]


def test_tta_views_follow_the_training_augmentation(tmp_path: Path) -> None:
    assert _views(tmp_path, {}) == ["Identity"]
    trained = {"augmentation": ["hflip", {"type": "random_crop", "padding": 2}]}
    assert _views(tmp_path, trained) == ["Identity", "HorizontalFlip", "Crop", "Crop", "Crop", "Crop"]
    assert _views(tmp_path, trained, {"hflip": False, "crop_padding": 0, "rotations": [10]}) == [
        "Identity",
        "Rotate",
    ]
