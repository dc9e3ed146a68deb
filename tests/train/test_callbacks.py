"""Every callback: EarlyStopping, ModelCheckpoint, LearningRateMonitor, JSONLLogger,
TensorBoardLogger, ProgressBar, LambdaCallback."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from gradcraft.io.checkpoint import load_checkpoint
from gradcraft.train import (
    Callback,
    EarlyStopping,
    JSONLLogger,
    LambdaCallback,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    TensorBoardLogger,
    Trainer,
    format_epoch_line,
)
from gradcraft.train.callbacks import resolve_mode
from tests.train.helpers import make_trainer, weights


class FakeModel:
    def __init__(self) -> None:
        self.w = np.zeros(2)
        self.loaded: dict[str, np.ndarray] | None = None

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"w": self.w.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.loaded = state
        self.w = state["w"].copy()


def fake_trainer() -> Any:
    messages: list[str] = []
    t = SimpleNamespace(
        epoch=0, epoch_logs={}, model=FakeModel(), stop_training=False, stop_reason="", messages=messages
    )
    t.warn = lambda msg, once=False: messages.append(msg)
    t.info = messages.append
    return t


def run_epochs(cb: Callback, trainer: Any, values: list[float], key: str = "val_loss") -> None:
    for epoch, value in enumerate(values):
        trainer.epoch = epoch
        trainer.model.w = np.full(2, float(epoch))
        trainer.epoch_logs = {key: value}
        cb.on_epoch_end(trainer)
        if trainer.stop_training:
            break
    cb.on_train_end(trainer)


def test_resolve_mode_auto_uses_max_for_accuracies() -> None:
    assert resolve_mode("val_accuracy", "auto") == "max"
    assert resolve_mode("val_loss", "auto") == "min"
    assert resolve_mode("val_loss", "max") == "max"
    with pytest.raises(ValueError, match="mode='up'"):
        resolve_mode("x", "up")


def test_early_stopping_stops_after_patience_epochs_without_improvement() -> None:
    t = fake_trainer()
    es = EarlyStopping("val_loss", patience=2, restore_best_weights=False)
    run_epochs(es, t, [1.0, 0.8, 0.9, 0.85, 0.5])
    assert t.stop_training and es.stopped_epoch == 3 and es.best == 0.8 and es.best_epoch == 1
    assert "did not improve for 2 epoch(s)" in t.stop_reason


def test_early_stopping_min_delta_ignores_tiny_improvements() -> None:
    t = fake_trainer()
    es = EarlyStopping("val_loss", patience=1, min_delta=0.05)
    run_epochs(es, t, [1.0, 0.97, 0.5])
    assert t.stop_training and es.best == 1.0


def test_early_stopping_max_mode_for_accuracy() -> None:
    t = fake_trainer()
    es = EarlyStopping("val_accuracy", patience=1)
    run_epochs(es, t, [0.5, 0.7, 0.6], key="val_accuracy")
    assert es.mode == "max" and es.best == 0.7 and t.stop_training


def test_early_stopping_restores_the_best_weights_at_the_end() -> None:
    t = fake_trainer()
    es = EarlyStopping("val_loss", patience=1, restore_best_weights=True)
    run_epochs(es, t, [1.0, 0.5, 0.7])
    np.testing.assert_array_equal(t.model.w, np.full(2, 1.0))  # epoch 1's weights
    assert any("restored the weights of epoch 2" in m for m in t.messages)


def test_early_stopping_warns_about_a_missing_metric() -> None:
    t = fake_trainer()
    es = EarlyStopping("val_acc", patience=1)
    run_epochs(es, t, [0.5, 0.4], key="val_accuracy")
    assert not t.stop_training
    assert any("'val_acc' is not in the epoch logs" in m and "val_accuracy" in m for m in t.messages)


def test_early_stopping_state_roundtrip() -> None:
    t = fake_trainer()
    es = EarlyStopping("val_loss", patience=3)
    run_epochs(es, t, [1.0, 0.5, 0.6])
    other = EarlyStopping("val_loss", patience=3)
    other.load_state_dict(es.state_dict())
    assert (other.best, other.best_epoch, other.wait) == (0.5, 1, 1)
    np.testing.assert_array_equal(other.best_weights["w"], es.best_weights["w"])


def test_early_stopping_validates_arguments() -> None:
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(patience=-1)
    with pytest.raises(ValueError, match="min_delta"):
        EarlyStopping(min_delta=-0.1)


def test_early_stopping_ends_a_real_run(tmp_path: Path) -> None:
    es = EarlyStopping("val_loss", patience=0, min_delta=10.0)  # nothing counts as improvement
    trainer = make_trainer([es])
    history = trainer.fit(5)
    assert len(history) == 2 and trainer.stop_reason.startswith("early stopping")


def test_model_checkpoint_saves_best_and_last(tmp_path: Path) -> None:
    ck = ModelCheckpoint(tmp_path, monitor="val_accuracy")
    trainer = make_trainer([ck])
    trainer.fit(3)
    best = load_checkpoint(tmp_path / "best.json")
    last = load_checkpoint(tmp_path / "last.json")
    assert last.meta["summary"]["epoch"] == 3
    best_epoch = int(np.argmax(trainer.history["val_accuracy"]))
    assert best.meta["summary"]["epoch"] == best_epoch + 1 == ck.best_epoch + 1
    assert best.meta["summary"]["metrics"]["val_accuracy"] == max(trainer.history["val_accuracy"])
    final = weights(trainer)
    np.testing.assert_array_equal(last.arrays["model.4.weight"], final["4.weight"])


def test_model_checkpoint_every_steps_refreshes_last_mid_epoch(tmp_path: Path) -> None:
    steps: list[int] = []
    ck = ModelCheckpoint(tmp_path, save_best=False, save_last=False, every_steps=4)
    spy = LambdaCallback(
        on_batch_end=lambda t: (
            steps.append(load_checkpoint(tmp_path / "last").meta["summary"]["global_step"])
            if t.global_step % 4 == 0
            else None
        ),
        order=200,
    )
    make_trainer([ck, spy]).fit(1)
    assert steps == [4]  # 180 examples / 32 = 6 steps; saved at step 4 with phase "batch"
    assert load_checkpoint(tmp_path / "last").meta["summary"]["phase"] == "batch"


def test_model_checkpoint_refuses_to_save_non_finite_weights(tmp_path: Path) -> None:
    ck = ModelCheckpoint(tmp_path)
    trainer = make_trainer([ck])
    trainer.fit(1)
    before = (tmp_path / "last.json").read_text()
    for p in trainer.model.parameters():
        p.data[...] = np.nan
    messages: list[str] = []
    trainer.printer = messages.append
    ck.on_epoch_end(trainer)
    assert (tmp_path / "last.json").read_text() == before
    assert any("not finite" in m for m in messages)


def test_learning_rate_monitor_records_every_group_per_step() -> None:
    from gradcraft.optim.lr_scheduler import StepLR

    trainer = make_trainer([LearningRateMonitor()], scheduler=lambda o: StepLR(o, step_size=1, gamma=0.5))
    trainer.fit(2)
    steps, lrs = trainer.history.steps["lr"]
    assert steps[0] == 1 and len(steps) == trainer.global_step
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(0.05)
    assert trainer.history["lr"] == pytest.approx([0.1, 0.05])


def test_jsonl_logger_writes_strict_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    make_trainer([JSONLLogger(path, every_steps=2)]).fit(2)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    steps = [r for r in records if r["kind"] == "step"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "step"} <= set(epochs[0])
    assert [r["step"] for r in steps] == [2, 4, 6, 8, 10, 12]


def test_jsonl_logger_drops_lines_after_the_resume_point(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(
        '{"kind": "step", "step": 3}\n{"kind": "test", "step": 3}\n{"kind": "step", "step": 9}\n{"kind": "st'
    )
    logger = JSONLLogger(path)
    logger.on_train_begin(SimpleNamespace(resumed=True, global_step=5))
    assert path.read_text() == '{"kind": "step", "step": 3}\n'
    logger.on_train_begin(SimpleNamespace(resumed=False, global_step=0))
    assert path.read_text() == ""


def test_jsonl_logger_turns_non_finite_values_into_strings(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    logger = JSONLLogger(path)
    logger.on_epoch_end(SimpleNamespace(epoch_logs={"val_loss": float("nan")}, epoch=0, global_step=1))
    assert json.loads(path.read_text())["val_loss"] == "nan"


def test_tensorboard_logger_event_file_contents(tmp_path: Path) -> None:
    pytest.importorskip("tensorboardX")
    from tensorboardX.proto import event_pb2

    make_trainer([TensorBoardLogger(tmp_path, every_steps=3, histograms=True)]).fit(2)
    tags: set[str] = set()
    for f in tmp_path.glob("events.out.tfevents.*"):
        data = f.read_bytes()
        pos = 0
        while pos < len(data):
            length = int.from_bytes(data[pos : pos + 8], "little")
            event = event_pb2.Event()
            event.ParseFromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            tags |= {v.tag for v in event.summary.value}
    assert {
        "epoch/val_accuracy",
        "epoch/train_loss",
        "step/loss",
        "weights/1.weight",
        "grads/1.weight",
    } <= tags


def test_progress_line_mode_prints_one_line_per_epoch() -> None:
    out = io.StringIO()
    make_trainer([ProgressBar("line", stream=out)]).fit(2)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/2  train loss ") and "val loss" in lines[0] and "img/s" in lines[0]


def test_progress_auto_is_line_mode_without_a_terminal() -> None:
    assert ProgressBar("auto", stream=io.StringIO()).mode == "line"


def test_progress_bar_mode_ends_with_summary_lines() -> None:
    pytest.importorskip("rich")
    out = io.StringIO()
    make_trainer([ProgressBar("bar", stream=out)]).fit(2)
    text = out.getvalue()
    assert "epoch 1/2  train loss" in text and "epoch 2/2  train loss" in text


def test_progress_none_is_silent() -> None:
    out = io.StringIO()
    make_trainer([ProgressBar("none", stream=out), EarlyStopping(patience=0, min_delta=10)]).fit(3)
    assert out.getvalue() == ""


def test_format_epoch_line() -> None:
    line = format_epoch_line(
        {
            "epoch": 3,
            "train_loss": 0.31,
            "train_accuracy": 0.8841,
            "val_accuracy": 0.891,
            "lr": 1e-3,
            "images_per_sec": 4123.4,
            "epoch_time": 14.24,
        },
        10,
    )
    assert line == "epoch  3/10  train loss 0.3100 acc 88.41%  val acc 89.10%  lr 1.00e-03  4123 img/s  14.2s"


def test_lambda_callback_hooks_run_in_order_with_the_trainer() -> None:
    calls: list[str] = []
    cb = LambdaCallback(
        on_train_begin=lambda t: calls.append("train_begin"),
        on_epoch_begin=lambda t: calls.append(f"epoch_begin {t.epoch}"),
        on_batch_end=lambda t: calls.append("batch") if t.batch_index == 1 else None,
        on_epoch_end=lambda t: calls.append(f"epoch_end {t.epoch_logs['epoch']}"),
        on_train_end=lambda t: calls.append(f"train_end {t.stop_reason}"),
    )
    make_trainer([cb]).fit(2)
    assert calls == [
        "train_begin",
        "epoch_begin 0",
        "batch",
        "epoch_end 1",
        "epoch_begin 1",
        "batch",
        "epoch_end 2",
        "train_end completed",
    ]
    with pytest.raises(ValueError, match="on_step"):
        LambdaCallback(on_step=print)


class Recorder(Callback):
    def __init__(self, name: str, order: int, seen: list[str]) -> None:
        self.name, self.order, self.seen = name, order, seen

    @property
    def state_key(self) -> str:
        return self.name

    def on_epoch_end(self, trainer: Trainer) -> None:
        self.seen.append(self.name)


def test_callbacks_run_by_order_and_checkpoint_last() -> None:
    assert ModelCheckpoint.order > max(JSONLLogger.order, ProgressBar.order, EarlyStopping.order)
    seen: list[str] = []
    make_trainer([Recorder("late", 5, seen), Recorder("early", -5, seen), Recorder("middle", 0, seen)]).fit(1)
    assert seen == ["early", "middle", "late"]


def test_duplicate_state_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="state_key"):
        make_trainer([LambdaCallback(), LambdaCallback()])


def test_trainer_rejects_non_callbacks() -> None:
    with pytest.raises(TypeError, match="Callback"):
        Trainer(None, None, None, callbacks=[object()])  # type: ignore[list-item]
