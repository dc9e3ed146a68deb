"""The Trainer: learning, metrics, evaluation, prediction, regularizers, clipping, schedules,
non-finite losses and exact resumption."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradcraft
from gradcraft import nn, optim
from gradcraft.data import ArrayDataset, DataLoader
from gradcraft.data.augment import Compose, RandomCrop, RandomHorizontalFlip
from gradcraft.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gradcraft.optim import lr_scheduler
from gradcraft.train import (
    Callback,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    NonFiniteLossError,
    Trainer,
    collect_generators,
)
from tests.train.helpers import blobs, make_trainer, mlp, weights


class Boom(Exception):
    """Stands in for a crash at a chosen step."""


def crash_at(step: int) -> Callback:
    def hook(trainer: Trainer) -> None:
        if trainer.global_step == step:
            raise Boom(step)

    return LambdaCallback(on_batch_end=hook, order=1000)


def test_fit_learns_a_separable_problem() -> None:
    trainer = make_trainer()
    history = trainer.fit(4)
    assert history["val_accuracy"][-1] > 0.9
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert len(history) == 4 and trainer.global_step == 4 * 6
    assert {
        "epoch",
        "step",
        "lr",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "epoch_time",
        "images_per_sec",
    } <= set(history.epochs)
    steps, losses = history.steps["loss"]
    assert steps == list(range(1, 25)) and len(losses) == 24


def test_fit_validates_its_arguments() -> None:
    trainer = make_trainer()
    with pytest.raises(ValueError, match="epochs=0"):
        trainer.fit(0)
    trainer.train_loader = None
    with pytest.raises(ValueError, match="train_loader"):
        trainer.fit(1)
    with pytest.raises(ValueError, match="scheduler_interval"):
        make_trainer(interval="batch")


def test_evaluate_reports_loss_accuracy_and_confusion_and_restores_mode() -> None:
    trainer = make_trainer()
    trainer.fit(2)
    trainer.model.train()
    result = trainer.evaluate()
    assert trainer.model.training
    cm = result["val_confusion_matrix"]
    assert cm.shape == (3, 3) and cm.sum() == 60
    assert result["val_accuracy"] == pytest.approx(np.trace(cm) / 60)
    np.testing.assert_allclose(result["val_per_class_accuracy"], np.diag(cm) / cm.sum(1))
    assert "val_top5_accuracy" not in result  # 5 >= 3 classes


def test_evaluate_with_a_test_time_augmentation_callable() -> None:
    trainer = make_trainer()
    trainer.fit(1)
    calls: list[int] = []

    def tta(model: Any, x: Any) -> Any:
        calls.append(x.shape[0])
        return model(x)

    plain = trainer.evaluate(prefix="val")
    with_tta = trainer.evaluate(tta=tta, prefix="val")
    assert calls == [60]
    assert with_tta["val_accuracy"] == plain["val_accuracy"]


def test_predict_returns_probabilities_consistent_with_evaluate() -> None:
    trainer = make_trainer()
    trainer.fit(2)
    val = trainer.val_loader
    probs = trainer.predict(val)
    assert probs.shape == (60, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    labels = np.concatenate([y.numpy() for _, y in val])
    assert np.mean(probs.argmax(1) == labels) == pytest.approx(trainer.evaluate()["val_accuracy"])
    x = np.concatenate([x.numpy() for x, _ in val])
    np.testing.assert_allclose(trainer.predict(x, batch_size=7), probs, rtol=1e-5, atol=1e-6)


def test_regularizers_are_added_to_the_loss() -> None:
    seen: list[tuple[float, float]] = []
    l2 = nn.L2(0.01)
    probe = LambdaCallback(
        on_batch_end=lambda t: seen.append((t.batch_logs["reg_loss"], t.batch_logs["loss"]))
    )
    trainer = make_trainer([probe], regularizers=[l2])
    before = float(l2(trainer.model).item())
    trainer.fit(1)
    assert seen[0][0] == pytest.approx(before, rel=1e-4)
    assert all(reg > 0 for reg, _ in seen)


def test_gradient_clipping_limits_the_norm() -> None:
    norms: list[float] = []

    def probe(trainer: Trainer) -> None:
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        norms.append(math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads)))
        assert trainer.batch_logs["grad_norm"] >= norms[-1] - 1e-4

    trainer = make_trainer([LambdaCallback(on_batch_end=probe)], clip_grad_norm=0.05)
    trainer.fit(1)
    assert max(norms) <= 0.05 * (1 + 1e-4)
    with pytest.raises(ValueError, match="clip_grad_norm"):
        make_trainer(clip_grad_norm=0.0)


def test_per_step_schedule_steps_once_per_batch() -> None:
    trainer = make_trainer(
        scheduler=lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=12), interval="step"
    )
    trainer.fit(2)
    assert trainer.scheduler.last_epoch == 12


def test_per_epoch_schedule_steps_once_per_epoch() -> None:
    trainer = make_trainer(scheduler=lambda o: lr_scheduler.StepLR(o, step_size=1, gamma=0.5))
    trainer.fit(3)
    assert trainer.history["lr"] == pytest.approx([0.1, 0.05, 0.025])
    assert trainer.lr == pytest.approx(0.0125)


def test_plateau_schedule_gets_the_monitored_metric() -> None:
    # 'epoch' grows every epoch, so in "min" mode it never improves after the first: the rate
    # halves after every later epoch (even with interval="step", a plateau steps per epoch)
    trainer = make_trainer(
        scheduler=lambda o: lr_scheduler.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=0),
        scheduler_monitor="epoch",
        interval="step",
    )
    trainer.fit(4)
    assert trainer.history["lr"] == pytest.approx([0.1, 0.1, 0.05, 0.025])


def test_plateau_with_a_missing_metric_warns() -> None:
    messages: list[str] = []
    trainer = make_trainer(scheduler=lambda o: lr_scheduler.ReduceLROnPlateau(o), scheduler_monitor="val_f1")
    trainer.printer = messages.append
    trainer.fit(1)
    assert any("'val_f1'" in m for m in messages)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_nan_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    ends: list[str] = []

    def poison(trainer: Trainer) -> None:
        if trainer.global_step == 8:  # the 9th step's input is garbage
            trainer.last_batch[0].data[...] = np.inf

    trainer = make_trainer(
        [
            ModelCheckpoint(tmp_path, every_steps=4),
            LambdaCallback(on_batch_begin=poison, on_train_end=lambda t: ends.append(t.stop_reason)),
        ]
    )
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(3)
    err = info.value
    message = str(err)
    assert err.step == 9 and err.epoch == 2 and math.isnan(err.value)
    assert "step 9 (epoch 2, batch 3/6)" in message
    assert "Learning rate: 0.1" in message
    assert "learning rate is too high" in message and "not scaled" in message and "log of zero" in message
    assert str(tmp_path / "last.json") in message
    assert ends == ["non-finite loss"]
    ckpt = load_checkpoint(tmp_path / "last.json")
    assert ckpt.meta["summary"]["global_step"] == 8
    assert all(np.all(np.isfinite(a)) for a in ckpt.arrays.values() if a.dtype.kind == "f")
    # the bad step never updated the parameters (batch norm's running statistics did see it)
    assert all(np.all(np.isfinite(p.numpy())) for p in trainer.model.parameters())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_diverging_learning_rate_is_caught() -> None:
    trainer = make_trainer(lr=1e12)
    with pytest.raises(NonFiniteLossError, match=r"became (NaN|infinite)"):
        trainer.fit(3)
    assert trainer.global_step < 18


def test_nan_error_without_checkpoint_says_so() -> None:
    err = NonFiniteLossError(3, 1, 3, 10, 0.5, float("inf"), 2.3, None)
    assert "infinite at step 3" in str(err) and "No checkpoint was written yet" in str(err)


def _augmented_trainer(callbacks: Any, seed: int = 0) -> Trainer:
    """Dropout (own and global generators), augmentation and shuffling: every RNG in play."""
    gradcraft.manual_seed(seed)
    data = blobs(200, size=8)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 24),
        nn.ReLU(),
        nn.Dropout(0.3, generator=np.random.default_rng(7)),
        nn.Dropout(0.2),
        nn.Linear(24, 3),
    )
    opt = optim.Adam(model.parameters(), lr=0.01)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=40)
    transform = Compose([RandomCrop(padding=1), RandomHorizontalFlip(generator=np.random.default_rng(9))])
    train = DataLoader(
        data.subset(np.arange(160)),
        batch_size=16,
        shuffle=True,
        transform=transform,
        generator=np.random.default_rng(1),
    )
    val = DataLoader(data.subset(np.arange(160, 200)), batch_size=40, generator=np.random.default_rng(2))
    return Trainer(
        model,
        nn.CrossEntropyLoss(),
        opt,
        sched,
        train,
        val,
        callbacks,
        scheduler_interval="step",
        verbose=False,
    )


@pytest.mark.parametrize("crash_step", [13, 20, 30])  # mid-epoch, at an epoch's last batch, right after one
def test_resume_after_a_crash_is_bit_identical(tmp_path: Path, crash_step: int) -> None:
    reference = _augmented_trainer([ModelCheckpoint(tmp_path / "ref", every_steps=3)])
    reference.fit(4)
    ckdir = tmp_path / "run"
    crashed = _augmented_trainer([ModelCheckpoint(ckdir, every_steps=3), crash_at(crash_step)])
    with pytest.raises(Boom):
        crashed.fit(4)
    gradcraft.manual_seed(123)  # the new process starts from unrelated global state
    resumed = _augmented_trainer([ModelCheckpoint(ckdir, every_steps=3)], seed=5)
    resumed.fit(4, resume_from=ckdir / "last.json")
    assert resumed.resumed and resumed.global_step == reference.global_step == 40
    ref, out = weights(reference), weights(resumed)
    for key in ref:
        np.testing.assert_array_equal(out[key], ref[key], err_msg=key)
    ref_opt = reference.optimizer.state_dict()["state"]
    out_opt = resumed.optimizer.state_dict()["state"]
    for idx in ref_opt:
        np.testing.assert_array_equal(out_opt[idx]["exp_avg"], ref_opt[idx]["exp_avg"])
    assert resumed.history["train_loss"] == reference.history["train_loss"]
    assert resumed.history["val_accuracy"] == reference.history["val_accuracy"]
    assert resumed.history.steps["loss"] == reference.history.steps["loss"]


def test_resume_restores_callback_state(tmp_path: Path) -> None:
    es = EarlyStopping("val_loss", patience=50)
    trainer = make_trainer([es, ModelCheckpoint(tmp_path), crash_at(13)])
    with pytest.raises(Boom):
        trainer.fit(4)
    fresh = EarlyStopping("val_loss", patience=50)
    resumed = make_trainer([fresh, ModelCheckpoint(tmp_path)])
    resumed.load_checkpoint(tmp_path / "last.json")
    assert fresh.best == es.best and fresh.best_epoch == 1


def test_checkpoint_of_another_model_is_refused_with_its_path(tmp_path: Path) -> None:
    trainer = make_trainer([ModelCheckpoint(tmp_path)])
    trainer.fit(1)
    gradcraft.manual_seed(0)
    other_model = nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 3))
    other = Trainer(
        other_model,
        nn.CrossEntropyLoss(),
        optim.SGD(other_model.parameters(), lr=0.1),
        train_loader=trainer.train_loader,
        verbose=False,
    )
    with pytest.raises(CheckpointError, match="does not fit this run") as info:
        other.fit(2, resume_from=tmp_path / "last.json")
    assert str(tmp_path / "last.json") in str(info.value)


def test_checkpoint_without_trainer_state_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "weights", {"w": np.zeros(3)}, {"note": "not a run"})
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        make_trainer().load_checkpoint(path)


def test_corrupt_checkpoint_is_refused(tmp_path: Path) -> None:
    make_trainer([ModelCheckpoint(tmp_path)]).fit(1)
    tensors = next(tmp_path.glob("last.*.safetensors"))
    tensors.write_bytes(tensors.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="corrupt") as info:
        make_trainer().fit(2, resume_from=tmp_path / "last.json")
    assert str(tensors) in str(info.value)


def test_collect_generators_finds_layer_and_transform_generators() -> None:
    gen_a, gen_b = np.random.default_rng(1), np.random.default_rng(2)
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5, generator=gen_a))
    transform = Compose([RandomHorizontalFlip(generator=gen_b), RandomHorizontalFlip(generator=gen_b)])
    found = collect_generators(model=model, transform=transform)
    assert found == {"model.1.generator": gen_a, "transform.transforms.0.generator": gen_b}


def test_works_with_plain_array_batches_and_soft_targets() -> None:
    gradcraft.manual_seed(0)
    data = blobs(64)
    x = (data.x.astype(np.float32) / 255).reshape(64, -1)
    soft = np.eye(3, dtype=np.float32)[data.y] * 0.9 + 0.1 / 3
    loader = DataLoader(
        ArrayDataset(x, soft), batch_size=16, shuffle=True, generator=np.random.default_rng(0)
    )
    model = nn.Sequential(nn.Linear(36, 3))
    trainer = Trainer(
        model,
        nn.CrossEntropyLoss(),
        optim.SGD(model.parameters(), lr=0.5),
        train_loader=loader,
        verbose=False,
    )
    history = trainer.fit(3)
    assert history["train_accuracy"][-1] > 0.8
    assert "val_loss" not in history


def test_model_with_dropout_is_in_eval_mode_only_during_evaluation() -> None:
    modes: list[bool] = []
    trainer = make_trainer(
        [LambdaCallback(on_batch_begin=lambda t: modes.append(t.model.training))], dropout=0.5
    )
    trainer.fit(2)
    assert all(modes)
    assert mlp  # the helper builds the same model family
