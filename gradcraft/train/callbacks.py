"""Callbacks: code that watches a :class:`~gradcraft.train.Trainer` run and may steer it.

The hook set is small. Every hook receives the trainer and reads what it needs from it:

=====================  =========================================================================
hook                   called
=====================  =========================================================================
``on_train_begin``     once, before the first epoch (``trainer.resumed`` is true after a resume)
``on_epoch_begin``     before each epoch's first batch (``trainer.epoch`` is its 0-based index)
``on_batch_begin``     before each training step (``trainer.last_batch`` holds the ``(x, y)``)
``on_batch_end``       after each optimizer step (``trainer.batch_logs``: loss, lr, …)
``on_epoch_end``       after validation (``trainer.epoch_logs``: train_/val_ metrics, lr, …)
``on_train_end``       once, at the end — also after early stopping or a non-finite loss
                       (``trainer.stop_reason`` says why)
=====================  =========================================================================

What a callback can read: ``trainer.model``, ``.optimizer``, ``.scheduler``, ``.loss_fn``,
``.epoch``, ``.epochs``, ``.global_step``, ``.batch_index``, ``.steps_per_epoch``, ``.lr``,
``.last_loss`` (the last batch's data loss), ``.last_output`` (its logits), ``.last_batch``,
``.batch_logs``, ``.epoch_logs``, ``.history``, ``.run_dir``. What it can do: set
``trainer.stop_training = True`` (the run ends after the current epoch), change the model's
weights, save checkpoints with ``trainer.save_checkpoint(path)``.

Callbacks run in ascending ``order`` (ties: the order given); checkpointing runs last so it
saves every other callback's updated state. A callback with state that must survive a resume
(counters, best values, saved weights) implements ``state_dict()`` / ``load_state_dict()``;
the trainer stores it in every checkpoint under the callback's :attr:`Callback.state_key`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from gradcraft.train.trainer import Trainer

__all__ = [
    "Callback",
    "EarlyStopping",
    "JSONLLogger",
    "LambdaCallback",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "TensorBoardLogger",
    "resolve_mode",
]


def resolve_mode(monitor: str, mode: str) -> str:
    """``"min"`` or ``"max"``; ``"auto"`` means max for accuracies, min for everything else.

    Raises:
        ValueError: for a mode other than auto, min or max.
    """
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"Expected mode 'auto', 'min' or 'max'. Received: mode={mode!r}")
    if mode != "auto":
        return mode
    return "max" if "acc" in monitor else "min"


def _is_better(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    if mode == "max":
        return value > best + min_delta
    return value < best - min_delta


def _monitored(trainer: Trainer, monitor: str, who: str) -> float | None:
    """The monitored value from the epoch logs, or None (with a one-time warning) if absent."""
    value = trainer.epoch_logs.get(monitor)
    if value is None:
        available = ", ".join(sorted(k for k, v in trainer.epoch_logs.items() if isinstance(v, (int, float))))
        trainer.warn(
            f"{who}: metric '{monitor}' is not in the epoch logs (available: {available})", once=True
        )
        return None
    return float(value)


class Callback:
    """Base class: override the hooks you need; all do nothing by default.

    Attributes:
        order: callbacks run in ascending order (default 0; checkpointing uses 100).
    """

    order: int = 0

    @property
    def state_key(self) -> str:
        """Name under which this callback's state is stored in checkpoints."""
        return type(self).__name__

    def on_train_begin(self, trainer: Trainer) -> None:
        """Before the first epoch (also when a run resumes)."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last epoch, early stopping, or a non-finite loss."""

    def on_epoch_begin(self, trainer: Trainer) -> None:
        """Before the first batch of ``trainer.epoch``."""

    def on_epoch_end(self, trainer: Trainer) -> None:
        """After validation; ``trainer.epoch_logs`` holds the epoch's metrics."""

    def on_batch_begin(self, trainer: Trainer) -> None:
        """Before the forward pass of ``trainer.last_batch``."""

    def on_batch_end(self, trainer: Trainer) -> None:
        """After the optimizer step; ``trainer.batch_logs`` holds loss and lr."""

    def state_dict(self) -> dict[str, Any]:
        """State to keep in checkpoints (arrays allowed). Stateless callbacks return ``{}``."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class LambdaCallback(Callback):
    """A callback from plain functions, e.g. ``LambdaCallback(on_epoch_end=lambda t: print(t.epoch))``."""

    def __init__(self, order: int = 0, **hooks: Callable[[Trainer], Any]) -> None:
        valid = {
            "on_train_begin",
            "on_train_end",
            "on_epoch_begin",
            "on_epoch_end",
            "on_batch_begin",
            "on_batch_end",
        }
        for name, fn in hooks.items():
            if name not in valid:
                raise ValueError(f"Expected hooks among {sorted(valid)}. Received: {name}")
            setattr(self, name, fn)
        self.order = order


class EarlyStopping(Callback):
    """Stop training when a monitored metric has stopped improving.

    After every epoch the metric is compared with the best so far; an improvement must beat it
    by more than ``min_delta``. After ``patience`` epochs without one, ``trainer.stop_training``
    is set. With ``restore_best_weights`` the model ends the run with the best epoch's weights.

    Args:
        monitor: an epoch metric (``val_loss``, ``val_accuracy``, ``train_loss``, …).
        mode: ``"min"``, ``"max"`` or ``"auto"`` (max for accuracies).
        patience: epochs without improvement tolerated.
        min_delta: smallest absolute change that counts as an improvement.
        restore_best_weights: load the best epoch's weights when training ends.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
    ) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"Expected a non-negative integer patience. Received: patience={patience!r}")
        if min_delta < 0:
            raise ValueError(f"Expected min_delta >= 0. Received: min_delta={min_delta}")
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.patience = patience
        self.min_delta = float(min_delta)
        self.restore_best_weights = restore_best_weights
        self.best: float | None = None
        self.best_epoch = -1
        self.wait = 0
        self.stopped_epoch = -1
        self.best_weights: dict[str, np.ndarray] | None = None

    def on_epoch_end(self, trainer: Trainer) -> None:
        value = _monitored(trainer, self.monitor, "EarlyStopping")
        if value is None:
            return
        if _is_better(value, self.best, self.mode, self.min_delta):
            self.best = value
            self.best_epoch = trainer.epoch
            self.wait = 0
            if self.restore_best_weights:
                self.best_weights = trainer.model.state_dict()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = trainer.epoch
            trainer.stop_training = True
            trainer.stop_reason = (
                f"early stopping: {self.monitor} did not improve for {self.wait} epoch(s); "
                f"best {self.best:.6g} at epoch {self.best_epoch + 1}"
            )

    def on_train_end(self, trainer: Trainer) -> None:
        if self.restore_best_weights and self.best_weights is not None and trainer.epoch != self.best_epoch:
            trainer.model.load_state_dict(self.best_weights)
            trainer.info(
                f"EarlyStopping: restored the weights of epoch {self.best_epoch + 1} "
                f"({self.monitor} = {self.best:.6g})"
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_weights": dict(self.best_weights) if self.best_weights is not None else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = state["best"]
        self.best_epoch = int(state["best_epoch"])
        self.wait = int(state["wait"])
        self.stopped_epoch = int(state["stopped_epoch"])
        weights = state["best_weights"]
        self.best_weights = None if weights is None else {k: np.array(v) for k, v in weights.items()}


class ModelCheckpoint(Callback):
    """Save the run's full state: the best epoch (``best``) and the latest (``last``).

    A checkpoint holds the weights, optimizer and scheduler state, the data loader's position,
    every RNG state, the callbacks' state and the history (see
    :meth:`~gradcraft.train.Trainer.save_checkpoint`), written atomically. ``last`` is what
    ``--resume`` continues from; with ``every_steps`` it is also refreshed mid-epoch. A model
    whose weights are no longer finite is never saved, so the last good checkpoint survives a
    diverging run.

    Args:
        directory: where ``best.json`` / ``last.json`` and their tensor files go.
        monitor: epoch metric that decides ``best``.
        mode: ``"min"``, ``"max"`` or ``"auto"``.
        save_best: keep the best checkpoint.
        save_last: keep the latest checkpoint.
        every_steps: also save ``last`` every this many optimizer steps.
    """

    order = 100

    def __init__(
        self,
        directory: str | os.PathLike[str],
        monitor: str = "val_accuracy",
        mode: str = "auto",
        save_best: bool = True,
        save_last: bool = True,
        every_steps: int | None = None,
    ) -> None:
        if every_steps is not None and (isinstance(every_steps, bool) or every_steps < 1):
            raise ValueError(f"Expected every_steps >= 1 or None. Received: every_steps={every_steps!r}")
        self.directory = Path(directory)
        self.monitor = monitor
        self.mode = resolve_mode(monitor, mode)
        self.save_best = save_best
        self.save_last = save_last
        self.every_steps = every_steps
        self.best: float | None = None
        self.best_epoch = -1
        self.last_saved_step = -1

    @property
    def best_path(self) -> Path:
        return self.directory / "best.json"

    @property
    def last_path(self) -> Path:
        return self.directory / "last.json"

    def _save(self, trainer: Trainer, path: Path) -> bool:
        if not trainer.weights_are_finite():
            trainer.warn(
                f"ModelCheckpoint: weights are not finite at step {trainer.global_step}; "
                f"keeping the previous {path.name}"
            )
            return False
        trainer.save_checkpoint(path)
        return True

    def on_batch_end(self, trainer: Trainer) -> None:
        if self.every_steps and trainer.global_step % self.every_steps == 0:
            self.last_saved_step = trainer.global_step
            self._save(trainer, self.last_path)

    def on_epoch_end(self, trainer: Trainer) -> None:
        if self.save_best:
            value = _monitored(trainer, self.monitor, "ModelCheckpoint")
            if value is not None and _is_better(value, self.best, self.mode):
                previous = (self.best, self.best_epoch)
                self.best, self.best_epoch = value, trainer.epoch
                if not self._save(trainer, self.best_path):
                    self.best, self.best_epoch = previous
        if self.save_last:
            self.last_saved_step = trainer.global_step
            self._save(trainer, self.last_path)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "last_saved_step": self.last_saved_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = state["best"]
        self.best_epoch = int(state["best_epoch"])
        self.last_saved_step = int(state["last_saved_step"])


class LearningRateMonitor(Callback):
    """Record the learning rate of every parameter group.

    Per step (every ``every_steps``) into ``trainer.history.steps`` as ``lr`` (group 0) and
    ``lr/group{i}``; per epoch into ``trainer.epoch_logs`` as ``lr`` (the rate the epoch's
    last step used).
    """

    order = -10

    def __init__(self, every_steps: int = 1) -> None:
        if every_steps < 1:
            raise ValueError(f"Expected every_steps >= 1. Received: every_steps={every_steps}")
        self.every_steps = every_steps
        self._epoch_lr: float | None = None

    def on_batch_begin(self, trainer: Trainer) -> None:
        self._epoch_lr = trainer.lr
        step = trainer.global_step + 1
        if step % self.every_steps == 0 or step == 1:
            for i, group in enumerate(trainer.optimizer.param_groups):
                trainer.history.log_step(step, "lr" if i == 0 else f"lr/group{i}", float(group["lr"]))

    def on_epoch_end(self, trainer: Trainer) -> None:
        if self._epoch_lr is not None:
            trainer.log_metric("lr", self._epoch_lr)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan" / "inf": keep every line strict JSON
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


class JSONLLogger(Callback):
    """Append metrics to a JSON Lines file: one object per epoch, and per N steps.

    Each line is strict JSON (non-finite numbers become the strings ``"nan"`` / ``"inf"``)::

        {"kind": "step", "epoch": 1, "step": 50, "loss": 0.61, "lr": 0.001}
        {"kind": "epoch", "epoch": 1, "step": 422, "train_loss": 0.52, "val_accuracy": 0.86, ...}

    ``epoch`` is 1-based. When a run resumes, lines written after the checkpoint's step (by
    the process that was killed) and any final ``"test"`` record are dropped first, so the
    file reads as one clean run.

    Args:
        path: the ``.jsonl`` file.
        every_steps: also log each N-th step's loss and lr (None: epochs only).
    """

    order = 50

    def __init__(self, path: str | os.PathLike[str], every_steps: int | None = 50) -> None:
        self.path = Path(path)
        self.every_steps = every_steps

    def _write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps({k: _jsonable(v) for k, v in record.items()}, allow_nan=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    def on_train_begin(self, trainer: Trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            return
        if not trainer.resumed:
            self.path.write_text("", encoding="utf-8")
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the kill
            # a final "test" record is written again when the resumed run ends
            if record.get("kind") != "test" and int(record.get("step", 0)) <= trainer.global_step:
                kept.append(line)
        from gradcraft.io.checkpoint import atomic_write_text

        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def on_batch_end(self, trainer: Trainer) -> None:
        if self.every_steps and trainer.global_step % self.every_steps == 0:
            self._write(
                {
                    "kind": "step",
                    "epoch": trainer.epoch + 1,
                    "step": trainer.global_step,
                    **trainer.batch_logs,
                }
            )

    def on_epoch_end(self, trainer: Trainer) -> None:
        logs = {k: v for k, v in trainer.epoch_logs.items() if isinstance(v, (int, float, np.number))}
        self._write({"kind": "epoch", **logs, "epoch": trainer.epoch + 1, "step": trainer.global_step})


class TensorBoardLogger(Callback):
    """Write TensorBoard event files with tensorboardX (``pip install "gradcraft[log]"``).

    Scalars: every epoch metric (``epoch/<name>``) and every N-th step's loss and lr
    (``step/loss``, ``step/lr``), all against the global step. Histograms (optional): each
    parameter's values (``weights/<name>``) and last gradient (``grads/<name>``) per epoch.
    On resume, events after the checkpoint's step are purged. View with
    ``tensorboard --logdir RUN_DIR/tensorboard``.

    Args:
        logdir: directory of the event files.
        every_steps: log step scalars every N steps (None: epochs only).
        histograms: write weight and gradient histograms at the end of each epoch.
    """

    order = 50

    def __init__(
        self, logdir: str | os.PathLike[str], every_steps: int | None = 50, histograms: bool = True
    ) -> None:
        self.logdir = Path(logdir)
        self.every_steps = every_steps
        self.histograms = histograms
        self.writer: Any = None

    def on_train_begin(self, trainer: Trainer) -> None:
        try:
            from tensorboardX import SummaryWriter
        except ImportError as err:
            raise ImportError('TensorBoard logging needs tensorboardX: pip install "gradcraft[log]"') from err
        purge = trainer.global_step + 1 if trainer.resumed else None
        self.writer = SummaryWriter(logdir=str(self.logdir), purge_step=purge, flush_secs=30)

    def on_batch_end(self, trainer: Trainer) -> None:
        if self.writer is None or not self.every_steps or trainer.global_step % self.every_steps:
            return
        for name, value in trainer.batch_logs.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"step/{name}", value, trainer.global_step)

    def on_epoch_end(self, trainer: Trainer) -> None:
        if self.writer is None:
            return
        step = trainer.global_step
        for name, value in trainer.epoch_logs.items():
            if isinstance(value, (int, float, np.number)) and math.isfinite(float(value)):
                self.writer.add_scalar(f"epoch/{name}", float(value), step)
        if self.histograms:
            for name, p in trainer.model.named_parameters():
                data = np.asarray(p.numpy())
                if data.size and np.all(np.isfinite(data)):
                    self.writer.add_histogram(f"weights/{name}", data, step)
                if p.grad is not None:
                    grad = np.asarray(
                        p.grad.get()
                        if hasattr(p.grad, "get") and not isinstance(p.grad, np.ndarray)
                        else p.grad
                    )
                    if grad.size and np.all(np.isfinite(grad)):
                        self.writer.add_histogram(f"grads/{name}", grad, step)
        self.writer.flush()

    def on_train_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
