"""What a user sees while a run trains: a progress bar per epoch and a one-line summary.

* ``mode="bar"`` — a rich progress bar per epoch with the running loss, accuracy, learning rate
  and images/s, then the epoch's summary line (needs ``rich``: ``pip install "gradcraft[cli]"``;
  falls back to ``"line"`` without it);
* ``mode="line"`` — only the summary line per epoch (what logs and CI want: no bar redraws);
* ``mode="auto"`` — ``"bar"`` when the output stream is a terminal, else ``"line"``;
* ``mode="none"`` — nothing (quiet mode for scripts).

A summary line reads::

    epoch  3/10  train loss 0.3124 acc 88.41%  val loss 0.3012 acc 89.10%  lr 1.00e-03  4123 img/s  14.2s
"""

from __future__ import annotations

import sys
import time
from typing import IO, TYPE_CHECKING, Any

from gradcraft.train.callbacks import Callback

if TYPE_CHECKING:
    from gradcraft.train.trainer import Trainer

__all__ = ["ProgressBar", "format_epoch_line"]


def _pct(value: Any) -> str:
    return f"{100 * float(value):.2f}%"


def format_epoch_line(logs: dict[str, Any], epochs: int) -> str:
    """The one-line summary of an epoch's logs."""
    width = len(str(epochs))
    parts = [f"epoch {int(logs.get('epoch', 0)):>{width}}/{epochs}"]
    for split in ("train", "val"):
        loss, acc = logs.get(f"{split}_loss"), logs.get(f"{split}_accuracy")
        if loss is None and acc is None:
            continue
        piece = split
        if loss is not None:
            piece += f" loss {float(loss):.4f}"
        if acc is not None:
            piece += f" acc {_pct(acc)}"
        parts.append(piece)
    if "lr" in logs:
        parts.append(f"lr {float(logs['lr']):.2e}")
    if "images_per_sec" in logs:
        parts.append(f"{float(logs['images_per_sec']):.0f} img/s")
    if "epoch_time" in logs:
        parts.append(f"{float(logs['epoch_time']):.1f}s")
    return "  ".join(parts)


class ProgressBar(Callback):
    """Progress display; see the module doc for the modes.

    Args:
        mode: ``"auto"``, ``"bar"``, ``"line"`` or ``"none"``.
        stream: where to write (default ``sys.stdout``).
        refresh_every: update the bar's numbers every N batches.
    """

    order = 90

    def __init__(self, mode: str = "auto", stream: IO[str] | None = None, refresh_every: int = 5) -> None:
        if mode not in ("auto", "bar", "line", "none"):
            raise ValueError(f"Expected mode 'auto', 'bar', 'line' or 'none'. Received: mode={mode!r}")
        self.stream = stream if stream is not None else sys.stdout
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if callable(isatty) and isatty() else "line"
        if mode == "bar":
            try:
                import rich  # noqa: F401
            except ImportError:
                mode = "line"
        self.mode = mode
        self.refresh_every = max(1, int(refresh_every))
        self._progress: Any = None
        self._task: Any = None
        self._t0 = 0.0

    def _print(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, highlight=False, markup=False)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def on_train_begin(self, trainer: Trainer) -> None:
        if self.mode == "none":
            return
        if trainer.resumed:
            self._print(f"resumed at epoch {trainer.epoch + 1}, step {trainer.global_step}")
        if self.mode == "bar":
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._progress.start()

    def on_epoch_begin(self, trainer: Trainer) -> None:
        self._t0 = time.perf_counter()
        if self._progress is not None:
            total = trainer.steps_per_epoch
            desc = f"epoch {trainer.epoch + 1}/{trainer.epochs}"
            self._task = self._progress.add_task(desc, total=total, completed=trainer.batch_index, stats="")

    def on_batch_end(self, trainer: Trainer) -> None:
        if self._progress is None or self._task is None:
            return
        advance = {"completed": trainer.batch_index}
        if trainer.batch_index % self.refresh_every == 0 or trainer.batch_index == trainer.steps_per_epoch:
            running = trainer.running_metrics
            elapsed = max(time.perf_counter() - self._t0, 1e-9)
            stats = (
                f"loss {running['loss']:.4f}  acc {_pct(running['accuracy'])}  lr {trainer.lr:.2e}  "
                f"{trainer.epoch_images / elapsed:.0f} img/s"
            )
            advance["stats"] = stats  # type: ignore[assignment]
        self._progress.update(self._task, **advance)

    def on_epoch_end(self, trainer: Trainer) -> None:
        if self.mode == "none":
            return
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        self._print(format_epoch_line(trainer.epoch_logs, trainer.epochs))

    def on_train_end(self, trainer: Trainer) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self.mode != "none" and trainer.stop_reason not in ("", "completed"):
            self.stream.write(f"stopped: {trainer.stop_reason}\n")
            self.stream.flush()
