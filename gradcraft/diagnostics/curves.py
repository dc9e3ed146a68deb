"""Reading learning curves the way the lectures teach.

:func:`classify_learning_curves` looks at per-epoch training and validation loss/accuracy and
names what it sees, with the lectures' remedies:

* **overfitting** — a big gap: training accuracy well above validation accuracy, or the
  validation loss rising from its minimum while the training loss keeps falling → increase
  regularization (dropout, L2), get more data or augment, or stop early at the best epoch;
* **underfitting** — no gap, but the training loss stays high → more capacity (wider/deeper),
  train longer, less regularization;
* **unrepresentative validation set** — the validation loss below the training loss, or
  noisy around it → a larger, stratified validation split drawn like the training data;
* **good fit** — training and validation close and the training loss low;
* **not learning** — the training loss never left chance level ln C (a problem to diagnose
  before any of the above matters).

The training series preferably come from the end of each epoch in evaluation mode
(``train_eval_loss`` / ``train_eval_accuracy``, which :class:`~gradcraft.diagnostics.Monitor`
measures on a fixed probe of training examples); the trainer's ``train_loss`` is a running
average over the epoch in training mode (dropout on), which makes the first epochs look
"below validation" for reasons that have nothing to do with the validation set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gradcraft.diagnostics._common import pct
from gradcraft.diagnostics.findings import Finding
from gradcraft.diagnostics.thresholds import DEFAULT_THRESHOLDS, Thresholds

__all__ = ["CURVE_DIAGNOSES", "classify_learning_curves"]

CURVE_DIAGNOSES = (
    "no_validation",
    "not_learning",
    "unrepresentative",
    "noisy_validation",
    "overfitting",
    "underfitting",
    "good_fit",
    "diverged",
)


def _series(epochs: Mapping[str, Sequence[float]], *names: str) -> tuple[np.ndarray | None, str | None]:
    for name in names:
        values = epochs.get(name)
        if values is not None and len(values):
            arr = np.asarray(values, dtype=np.float64)
            if np.isfinite(arr).any():
                return arr, name
    return None, None


def _finite_last(a: np.ndarray) -> float:
    f = a[np.isfinite(a)]
    return float(f[-1]) if f.size else math.nan


def cross_entropy_floor(num_classes: int, label_smoothing: float = 0.0) -> float:
    """The lowest cross-entropy a model can reach against label-smoothed targets: the entropy
    of the target distribution, −(1 − ε + ε/C)·ln(1 − ε + ε/C) − (C − 1)·(ε/C)·ln(ε/C)
    (0 without smoothing; ≈ 0.50 for ε = 0.1, C = 10)."""
    eps = float(label_smoothing)
    if num_classes < 2 or eps <= 0.0:
        return 0.0
    other = eps / num_classes
    true = 1.0 - eps + other
    return -(true * math.log(true)) - (num_classes - 1) * other * math.log(other)


def classify_learning_curves(
    epochs: Mapping[str, Sequence[float]],
    num_classes: int | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    regularized: bool = False,
    loss_floor: float = 0.0,
) -> Finding:
    """One finding naming the fit the curves show (``details["diagnosis"]`` is one of
    :data:`CURVE_DIAGNOSES`).

    Args:
        epochs: metric name → per-epoch values (a :class:`~gradcraft.train.History`'s
            ``epochs``); uses ``train_eval_loss``/``train_loss``, ``val_loss`` and the matching
            accuracies.
        num_classes: C, to judge a training loss against chance level ln C.
        thresholds: see :class:`Thresholds` (``gap_warn``, ``gap_small``, ``val_rise``,
            ``underfit_loss``, ``still_improving``, ``noisy_val``).
        regularized: whether dropout or penalties were on (mentioned when validation loss is
            below a training loss measured in training mode).
        loss_floor: the lowest loss the objective allows (:func:`cross_entropy_floor` with label
            smoothing); "high" and "at chance" are judged on the loss above it, so a smoothed
            run near its floor is not called underfitting.
    """
    tl, tl_name = _series(epochs, "train_eval_loss", "train_loss")
    ta, _ = _series(epochs, "train_eval_accuracy", "train_accuracy")
    vl, _ = _series(epochs, "val_loss")
    va, _ = _series(epochs, "val_accuracy")
    if tl is None:
        return Finding(
            "learning_curves",
            "warning",
            "No training loss was recorded; the curves cannot be read.",
            details={"diagnosis": "no_validation"},
        )
    if not np.isfinite(tl[-1]):
        return Finding(
            "learning_curves",
            "problem",
            "The training loss ended NaN/inf: the run diverged.",
            "See the NaN finding for the cause; lower the learning rate.",
            details={"diagnosis": "diverged"},
        )
    if vl is None:
        return Finding(
            "learning_curves",
            "warning",
            "There is no validation set, so overfitting cannot be told from a good fit.",
            "Hold out a validation split (data.val_split: 0.1).",
            details={"diagnosis": "no_validation"},
        )
    n = int(min(len(tl), len(vl)))
    tl, vl = tl[:n], vl[:n]
    t_end, v_end = _finite_last(tl), _finite_last(vl)
    in_train_mode = tl_name == "train_loss"
    details: dict[str, Any] = {"train_loss": t_end, "val_loss": v_end, "epochs": n, "train_series": tl_name}
    gap = None
    if ta is not None and va is not None:
        m = int(min(len(ta), len(va)))
        gap = _finite_last(ta[:m]) - _finite_last(va[:m])
        details.update(
            {"train_accuracy": _finite_last(ta[:m]), "val_accuracy": _finite_last(va[:m]), "gap": gap}
        )
    vl_f = np.where(np.isfinite(vl), vl, np.inf)
    best = int(np.argmin(vl_f))
    v_min = float(vl_f[best])
    rise = (v_end - v_min) / v_min if v_min > 0 else 0.0
    details.update({"best_epoch": best + 1, "val_rise": rise})
    falling_since_best = t_end < float(tl[best]) * 0.98
    improving = 0.0
    if n >= 2 and tl[-2] > 0:
        improving = (tl[-2] - tl[-1]) / tl[-2]
    details["train_improving_per_epoch"] = improving
    chance = math.log(num_classes) if num_classes and num_classes > 1 else None
    floor = loss_floor if chance and 0.0 <= loss_floor < chance else 0.0
    rel_loss = max(0.0, t_end - floor) / (chance - floor) if chance else None
    details["train_loss_vs_chance"] = rel_loss
    details["loss_floor"] = floor
    floor_text = f", above the floor {floor:.3g} that label smoothing sets" if floor else ""
    acc_text = ""
    if gap is not None:
        acc_text = (
            f" Training accuracy {pct(details['train_accuracy'])}, validation {pct(details['val_accuracy'])} "
            f"(gap {100 * gap:.1f} points)."
        )
    still = (
        f" The training loss was still falling {improving:.0%} per epoch at the end: more epochs would help."
        if improving > thresholds.still_improving and (rel_loss is None or rel_loss > 0.05)
        else ""
    )

    # --- not learning at all: the training loss never left chance level
    if rel_loss is not None and rel_loss >= thresholds.not_learning_loss:
        details["diagnosis"] = "not_learning"
        return Finding(
            "learning_curves",
            "problem",
            f"The model is not learning: the training loss is still at chance level ({t_end:.3g} vs ln "
            f"{num_classes} = {chance:.3g}) after {n} epoch(s).{acc_text}",
            "Run `gradcraft diagnose` on the recipe: check the learning rate (range test), the init and the "
            "activations (collapse, saturation, vanishing gradients), and that the labels match the inputs.",
            details=details,
        )

    # --- unrepresentative validation set: below training, or noisy around it
    # a running training-mode average lags the end-of-epoch validation loss: demand more margin
    below_margin = 0.15 if in_train_mode else 0.05
    below = v_end < t_end * (1 - below_margin)
    if n >= 3:
        late = slice(n // 2, n)
        below = below and float(np.mean(vl[late] < tl[late] * (1 - below_margin))) > 0.5
    noisy = False
    if n >= 4:
        d = vl - tl
        sign_changes = int(np.sum(np.diff(np.sign(d[np.isfinite(d)])) != 0))
        dv, dt = np.diff(vl), np.diff(tl)
        scale = float(np.nanmean(tl))
        noisy = (
            sign_changes >= 2
            and scale > 0
            and float(np.nanstd(dv)) > thresholds.noisy_val * scale
            and float(np.nanstd(dv)) > 2 * float(np.nanstd(dt))
        )
        details["sign_changes"] = sign_changes
    remedy_val = (
        "Use a larger validation split drawn at random (stratified) from the same data as training "
        "(data.val_split: 0.1–0.2, data.stratify: true), or cross-validation."
    )
    if noisy:
        details["diagnosis"] = "noisy_validation"
        return Finding(
            "learning_curves",
            "warning",
            "The validation loss is noisy around the training loss (it crosses it "
            f"{details['sign_changes']} times and jumps far more between epochs): the validation set "
            f"is probably too small to be representative.{acc_text}",
            remedy_val,
            details=details,
        )
    if below and not (in_train_mode and regularized):
        details["diagnosis"] = "unrepresentative"
        return Finding(
            "learning_curves",
            "warning",
            f"The validation loss ({v_end:.3g}) is below the training loss ({t_end:.3g}) over the last "
            "epochs: the validation set looks easier than the training data — unrepresentative "
            f"(too small, or not drawn from the same distribution).{acc_text}",
            remedy_val,
            details=details,
        )

    # --- overfitting: big gap, or validation loss turning up while training loss falls
    big_gap = gap is not None and gap >= thresholds.gap_warn
    turned_up = n >= 3 and rise >= thresholds.val_rise and falling_since_best and best < n - 1
    if big_gap or turned_up:
        details["diagnosis"] = "overfitting"
        stop_text = f"validation loss was lowest at epoch {best + 1}"
        if va is not None and np.isfinite(va).any():
            best_acc = int(np.nanargmax(np.where(np.isfinite(va), va, -np.inf)))
            details["best_accuracy_epoch"] = best_acc + 1
            if best_acc != best:
                stop_text += f", validation accuracy highest at epoch {best_acc + 1}"
        parts = []
        if big_gap:
            parts.append("training accuracy is well above validation accuracy (a big gap)")
        if turned_up:
            parts.append(
                f"the validation loss was lowest at epoch {best + 1} ({v_min:.3g}) and has risen "
                f"{rise:.0%} since, while the training loss kept falling"
            )
        verdict = "problem" if gap is not None and gap >= 3 * thresholds.gap_warn else "warning"
        return Finding(
            "learning_curves",
            verdict,
            "Overfitting: " + "; ".join(parts) + "." + acc_text,
            "Increase regularization (dropout, L2 / weight decay), get more data or use augmentation, "
            f"or a smaller model; stop early ({stop_text}; callbacks.early_stopping.enabled: true).",
            details=details,
        )

    # --- underfitting: no gap but the training loss is high
    if rel_loss is not None and rel_loss >= thresholds.underfit_loss:
        details["diagnosis"] = "underfitting"
        no_gap = (
            " with no gap between training and validation"
            if gap is None or gap < thresholds.gap_small
            else ""
        )
        return Finding(
            "learning_curves",
            "warning",
            f"Underfitting: the training loss stays high ({t_end:.3g}, {rel_loss:.0%} of the way to chance "
            f"level ln {num_classes} = {chance:.3g}{floor_text}){no_gap}; the model does not fit even "
            f"the training data.{acc_text}{still}",
            "Increase capacity (wider or deeper model), train longer, lower the regularization, or "
            "tune the learning rate.",
            details=details,
        )

    details["diagnosis"] = "good_fit"
    small = "close" if gap is None or gap < thresholds.gap_small else "fairly close"
    return Finding(
        "learning_curves",
        "ok",
        f"Good fit: training and validation curves are {small} and the training loss is low "
        f"({t_end:.3g}).{acc_text}{still}"
        + (
            ""
            if gap is None or gap < thresholds.gap_small
            else " If you need more accuracy, a bigger model may help; watch the gap."
        ),
        details=details,
    )
