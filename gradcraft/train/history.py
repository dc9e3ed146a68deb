"""``History``: every metric of a run, per epoch and per step.

* ``history.epochs`` — name → list of per-epoch values, all lists of the same length (a
  metric missing in some epoch is NaN there), in the order the epochs ran;
* ``history.steps`` — name → ``(steps, values)`` pairs of lists for series logged every few
  optimizer steps (the training loss, the learning rate).

``history["val_accuracy"]`` is the per-epoch list; ``history.best("val_loss", "min")`` its
best value and epoch. ``state_dict()`` stores the step series as arrays, so long runs keep
checkpoints' JSON small.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["History"]


class History:
    """Per-epoch and per-step metric series of a training run."""

    def __init__(self) -> None:
        self.epochs: dict[str, list[float]] = {}
        self.steps: dict[str, tuple[list[int], list[float]]] = {}
        self._num_epochs = 0

    def __len__(self) -> int:
        """Number of epochs logged."""
        return self._num_epochs

    def __getitem__(self, name: str) -> list[float]:
        if name not in self.epochs:
            raise KeyError(
                f"No epoch metric '{name}' in the history (have: {', '.join(self.epochs) or 'none'})"
            )
        return self.epochs[name]

    def __contains__(self, name: object) -> bool:
        return name in self.epochs

    def __iter__(self) -> Iterator[str]:
        return iter(self.epochs)

    def log_epoch(self, logs: Mapping[str, Any]) -> None:
        """Append one epoch's scalar metrics (non-numeric values are skipped)."""
        for name, value in logs.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                continue
            series = self.epochs.setdefault(name, [math.nan] * self._num_epochs)
            series.append(float(value))
        self._num_epochs += 1
        for series in self.epochs.values():
            if len(series) < self._num_epochs:
                series.append(math.nan)

    def update_last(self, name: str, value: float) -> None:
        """Set (or add) metric ``name`` of the most recent epoch.

        Raises:
            ValueError: if no epoch has been logged yet.
        """
        if self._num_epochs == 0:
            raise ValueError(f"Cannot set '{name}': no epoch has been logged yet")
        series = self.epochs.setdefault(name, [math.nan] * self._num_epochs)
        series[-1] = float(value)

    def log_step(self, step: int, name: str, value: float) -> None:
        """Record ``value`` of series ``name`` at optimizer step ``step``."""
        steps, values = self.steps.setdefault(name, ([], []))
        steps.append(int(step))
        values.append(float(value))

    def last(self) -> dict[str, float]:
        """The most recent epoch's metrics."""
        return {k: v[-1] for k, v in self.epochs.items() if v}

    def best(self, name: str, mode: str = "min") -> tuple[float, int]:
        """``(best value, its 0-based epoch)`` of an epoch metric, ignoring NaN.

        Raises:
            KeyError: if the metric was never logged; ValueError: if every value is NaN.
        """
        values = np.asarray(self[name], dtype=np.float64)
        if np.all(np.isnan(values)):
            raise ValueError(f"Metric '{name}' has no finite value in the history")
        idx = int(np.nanargmax(values) if mode == "max" else np.nanargmin(values))
        return float(values[idx]), idx

    def records(self) -> list[dict[str, float]]:
        """One dict per epoch."""
        return [{k: v[i] for k, v in self.epochs.items()} for i in range(self._num_epochs)]

    def truncate_steps(self, max_step: int) -> None:
        """Drop step records after ``max_step`` (used when a run resumes from a checkpoint)."""
        for name, (steps, values) in list(self.steps.items()):
            keep = [i for i, s in enumerate(steps) if s <= max_step]
            self.steps[name] = ([steps[i] for i in keep], [values[i] for i in keep])

    def state_dict(self) -> dict[str, Any]:
        """Epoch series as lists, step series as int64/float64 arrays."""
        return {
            "num_epochs": self._num_epochs,
            "epochs": {k: list(v) for k, v in self.epochs.items()},
            "steps": {
                k: {"step": np.asarray(s, dtype=np.int64), "value": np.asarray(v, dtype=np.float64)}
                for k, (s, v) in self.steps.items()
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self._num_epochs = int(state["num_epochs"])
        self.epochs = {k: [float(x) for x in v] for k, v in state["epochs"].items()}
        self.steps = {
            k: ([int(s) for s in np.asarray(d["step"])], [float(x) for x in np.asarray(d["value"])])
            for k, d in state["steps"].items()
        }
