"""The learning-rate range test (Smith 2017; fastai's ``lr_find``).

Train a fresh model for a few hundred steps while the learning rate grows exponentially from
``start_lr`` to ``end_lr``; record the loss, smooth it with a debiased exponential moving
average (β = 0.9), and stop when the smoothed loss exceeds ``diverge_factor`` (4) × its best
value. On the curve of smoothed loss against log(lr):

* the *steepest* point is where the loss falls fastest;
* the *minimum* is where it is lowest — beyond it the steps are too large;
* the *explosion* is where the loss passed 4× its best (or became NaN).

The suggested learning rate is the minimum's lr / 10 (fastai's "minimum / 10" rule, a
robust choice below the unstable region), and never above the steepest point by more than
10×.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcraft.diagnostics._common import as_tensor, batches, fmt, loss_value, penalty, set_lr
from gradcraft.diagnostics.findings import Finding
from gradcraft.diagnostics.stats import to_numpy
from gradcraft.diagnostics.thresholds import DEFAULT_THRESHOLDS, Thresholds

__all__ = ["LRRangeResult", "check_learning_rate", "lr_range_test"]


@dataclass
class LRRangeResult:
    """The curve and the landmarks of a learning-rate range test.

    Attributes:
        lrs: the learning rate of each step.
        losses: the raw loss of each step.
        smoothed: the debiased EMA of the loss.
        steepest_lr: where the smoothed loss falls fastest (per unit of log lr).
        min_lr: where the smoothed loss is lowest.
        explode_lr: where it exceeded ``diverge_factor`` × its best (``None``: never did).
        suggested_lr: ``min_lr / 10``, capped at 10 × ``steepest_lr``.
        initial_loss: the smoothed loss after the first few steps.
        best_loss: the lowest smoothed loss.
        descended: whether the loss fell meaningfully (best < 95% of the initial).
    """

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed: list[float] = field(default_factory=list)
    steepest_lr: float | None = None
    min_lr: float | None = None
    explode_lr: float | None = None
    suggested_lr: float | None = None
    initial_loss: float = math.nan
    best_loss: float = math.nan
    descended: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "steepest_lr": self.steepest_lr,
            "min_lr": self.min_lr,
            "explode_lr": self.explode_lr,
            "suggested_lr": self.suggested_lr,
            "initial_loss": self.initial_loss,
            "best_loss": self.best_loss,
            "descended": self.descended,
            "steps": len(self.lrs),
        }


def lr_range_test(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    optimizer: Any,
    x: Any,
    y: Any,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_steps: int = 200,
    batch_size: int = 64,
    beta: float = 0.9,
    diverge_factor: float = 4.0,
    regularizers: Sequence[Any] = (),
    rng: np.random.Generator | None = None,
) -> LRRangeResult:
    """Run the range test on a fresh ``model`` and its ``optimizer`` (both are changed).

    Args:
        model, loss_fn, optimizer: a freshly initialized model, the data loss and an
            optimizer over the model's parameters (its lr is overwritten every step).
        x, y: training inputs (preprocessed) and targets; minibatches are drawn from them.
        start_lr, end_lr: the range, swept geometrically over ``num_steps`` steps.
        batch_size: minibatch size.
        beta: smoothing of the loss (debiased EMA). fastai's 0.98 averages over ~50 steps,
            which over a 200-step sweep lags the curve by half a decade of lr; 0.9 (~10
            steps) keeps the landmarks where they are.
        diverge_factor: stop when the smoothed loss exceeds this × its best.
        regularizers: penalties added to the loss, as in training.
        rng: generator for the minibatches.

    Raises:
        ValueError: for a range that is not 0 < start_lr < end_lr or fewer than 10 steps.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"Expected 0 < start_lr < end_lr. Received: start_lr={start_lr}, end_lr={end_lr}")
    if num_steps < 10:
        raise ValueError(f"Expected num_steps >= 10. Received: num_steps={num_steps}")
    xs, ys = to_numpy(x), to_numpy(y)
    rng = rng or np.random.default_rng(0)
    next_batch = batches(xs.shape[0], min(batch_size, xs.shape[0]), rng)
    factor = (end_lr / start_lr) ** (1.0 / (num_steps - 1))
    res = LRRangeResult()
    avg = 0.0
    best = math.inf
    model.train()
    for i in range(num_steps):
        lr = start_lr * factor**i
        set_lr(optimizer, lr)
        idx = next_batch()
        out = model(as_tensor(xs[idx]))
        loss = loss_fn(out, as_tensor(ys[idx]))
        reg = penalty(regularizers, model)
        total = loss if reg is None else loss + reg
        value = loss_value(total)
        res.lrs.append(lr)
        res.losses.append(value)
        if not math.isfinite(value):
            res.smoothed.append(math.inf)
            res.explode_lr = lr
            break
        avg = beta * avg + (1 - beta) * value
        smooth = avg / (1 - beta ** (i + 1))
        res.smoothed.append(smooth)
        best = min(best, smooth)
        if i >= 10 and smooth > diverge_factor * best:
            res.explode_lr = lr
            break
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    _landmarks(res)
    return res


def _landmarks(res: LRRangeResult) -> None:
    """Fill steepest / min / suggested lr from the curve."""
    sm = np.asarray(res.smoothed, dtype=np.float64)
    lrs = np.asarray(res.lrs, dtype=np.float64)
    finite = np.isfinite(sm)
    if finite.sum() < 5:
        return
    sm_f, lr_f = sm[finite], lrs[finite]
    skip = min(5, len(sm_f) // 10)  # the first smoothed values are noisy
    res.initial_loss = float(sm_f[skip])
    i_min = int(np.argmin(sm_f))
    res.best_loss = float(sm_f[i_min])
    res.min_lr = float(lr_f[i_min])
    res.descended = bool(res.best_loss < 0.95 * res.initial_loss)
    if i_min > skip + 1:
        slope = np.gradient(sm_f[: i_min + 1], np.log(lr_f[: i_min + 1]))
        i_steep = skip + int(np.argmin(slope[skip:]))
        res.steepest_lr = float(lr_f[i_steep])
    else:
        res.steepest_lr = res.min_lr
    suggestion = res.min_lr / 10.0
    if res.steepest_lr is not None:
        suggestion = min(suggestion, 10.0 * res.steepest_lr)
    res.suggested_lr = float(suggestion)


def check_learning_rate(
    result: LRRangeResult, configured_lr: float | None = None, thresholds: Thresholds = DEFAULT_THRESHOLDS
) -> Finding:
    """The verdict on a range test, and on the configured learning rate against it.

    Problem: the loss never fell (at any learning rate — the model or gradients are broken);
    or the configured lr is at or beyond the explosion point, or 10× past the minimum (the
    smoothed curve lags, so the measured explosion point is late). Warning: the configured lr is
    past the minimum of the curve (too high), or more than 100× below the steepest point
    (too low: slow). Otherwise ok. Every finding carries the suggestion.
    """
    details = result.to_dict()
    details["configured_lr"] = configured_lr
    details["curve"] = {"lr": result.lrs, "loss": result.smoothed}
    if result.min_lr is None:
        return Finding(
            "lr_range",
            "problem",
            f"The learning-rate range test diverged at once (lr {fmt(result.explode_lr)}).",
            "Check the inputs' scale and the init; the loss is NaN or explodes from the first steps.",
            details=details,
        )
    curve = (
        f"Range test: the loss falls fastest at lr ≈ {fmt(result.steepest_lr)}, is lowest at lr ≈ "
        f"{fmt(result.min_lr)}"
        + (f" and explodes at lr ≈ {fmt(result.explode_lr)}" if result.explode_lr else "")
        + f"; suggested lr {fmt(result.suggested_lr)}."
    )
    if not result.descended:
        return Finding(
            "lr_range",
            "problem",
            curve
            + f" But the loss barely fell ({result.initial_loss:.3g} → best {result.best_loss:.3g}) at any "
            f"learning rate during the {len(result.lrs)} steps of the sweep: the model does not learn from "
            "its "
            "gradients — they vanish or are cut, or it sits on a long plateau.",
            "Look at the activation and gradient findings; check that gradients reach the weights and the "
            "labels match the inputs.",
            details=details,
        )
    if configured_lr is None:
        return Finding("lr_range", "ok", curve, details=details)
    cfg = f" The configured lr is {fmt(configured_lr)}"
    if result.explode_lr is not None and configured_lr >= result.explode_lr:
        return Finding(
            "lr_range",
            "problem",
            curve + cfg + ", at or beyond where the loss explodes: training will diverge (loss → NaN).",
            f"Set optimizer.lr to about {fmt(result.suggested_lr)}.",
            details=details,
        )
    if configured_lr >= 10 * result.min_lr:
        return Finding(
            "lr_range",
            "problem",
            curve + cfg + ", ten times or more past the bottom of the curve, where the loss was already "
            "rising: training will be unstable and probably diverge.",
            f"Set optimizer.lr to about {fmt(result.suggested_lr)}.",
            details=details,
        )
    if configured_lr > result.min_lr:
        return Finding(
            "lr_range",
            "warning",
            curve + cfg + ", past the bottom of the curve: the steps are too large "
            "and the loss will be unstable.",
            f"Try optimizer.lr ≈ {fmt(result.suggested_lr)}.",
            details=details,
        )
    low_ref = result.steepest_lr or result.suggested_lr or result.min_lr
    if configured_lr < low_ref / 100.0:
        return Finding(
            "lr_range",
            "warning",
            curve + cfg + ", far below where the loss falls fastest: training will be slow.",
            f"Try optimizer.lr ≈ {fmt(result.suggested_lr)}.",
            details=details,
        )
    return Finding("lr_range", "ok", curve + cfg + ", within the good range.", details=details)
