"""The trainer callback that connects one training run to its trial of a search.

:class:`TrialReporter` reports the validation accuracy of every epoch to the trial (Optuna's
``trial.report(value, step)``), asks the trial's pruner whether to stop (``should_prune()``),
and aborts a run whose loss explodes — the lectures' rule of thumb for hyperparameter search:
if the loss is NaN or above 3× the initial loss, the run will not recover, stop it early.
Both stops raise :class:`TrialStopped` at once (a pruned run after the epoch's validation,
an exploding one after the offending step), so no more time goes into a hopeless trial.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from gradcraft.train.callbacks import Callback

if TYPE_CHECKING:
    from gradcraft.train.trainer import Trainer

__all__ = ["TrialReporter", "TrialStopped"]


class TrialStopped(Exception):
    """A trial ended before its last epoch.

    Attributes:
        state: ``"pruned"`` (its pruner's rule) or ``"exploded"`` (the loss blew up).
        reason: one line in plain words.
        epoch: 1-based epoch in which it stopped.
    """

    def __init__(self, state: str, reason: str, epoch: int) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason
        self.epoch = epoch


class TrialReporter(Callback):
    """Report per-epoch validation accuracy to a trial; prune; abort on loss explosion.

    Args:
        trial: an object with ``report(value, step)`` and ``should_prune()`` (an Optuna
            ``Trial``); steps are 1-based epochs.
        monitor: the epoch metric reported (``val_accuracy``; higher is better).
        explode_factor: abort when a step's data loss exceeds this × the first step's loss.
        pruner: the pruner's name, for the stop reason.

    After training, ``values`` holds the reported value of every epoch run and
    ``initial_loss`` the first step's loss. The last epoch is reported but never pruned: a
    trial that ran its whole budget completes with its value.
    """

    order = 90  # after the loggers have recorded the epoch, before checkpoints (100)

    def __init__(
        self, trial: Any, monitor: str = "val_accuracy", explode_factor: float = 3.0, pruner: str = ""
    ) -> None:
        if not explode_factor > 1:
            raise ValueError(f"Expected explode_factor > 1. Received: explode_factor={explode_factor!r}")
        self.trial = trial
        self.monitor = monitor
        self.explode_factor = float(explode_factor)
        self.pruner = pruner
        self.values: list[float] = []
        self.initial_loss: float | None = None

    @property
    def state_key(self) -> str:
        return "TrialReporter"

    def on_train_begin(self, trainer: Trainer) -> None:
        self.values = []
        self.initial_loss = None

    def on_batch_end(self, trainer: Trainer) -> None:
        loss = trainer.batch_logs.get("loss")
        if loss is None:
            return
        if self.initial_loss is None:
            self.initial_loss = float(loss)
            return
        limit = self.explode_factor * self.initial_loss
        if not math.isfinite(loss) or loss > limit:
            raise TrialStopped(
                "exploded",
                f"loss exploded at step {trainer.global_step}: {loss:.4g} > {self.explode_factor:g} × "
                f"the initial loss {self.initial_loss:.4g} (lr {trainer.lr:.3g})",
                trainer.epoch + 1,
            )

    def on_epoch_end(self, trainer: Trainer) -> None:
        value = trainer.epoch_logs.get(self.monitor)
        if value is None:
            raise ValueError(
                f"Expected the epoch metric '{self.monitor}' (a validation split, data.val_split > 0). "
                f"Received: {sorted(trainer.epoch_logs)}"
            )
        value = float(value)
        epoch = trainer.epoch + 1
        self.values.append(value)
        self.trial.report(value, epoch)
        if epoch < trainer.epochs and not trainer.stop_training and self.trial.should_prune():
            rule = f" by the {self.pruner} rule" if self.pruner else ""
            raise TrialStopped(
                "pruned",
                f"pruned{rule} after epoch {epoch} of {trainer.epochs} ({self.monitor} {100 * value:.2f}%)",
                epoch,
            )
