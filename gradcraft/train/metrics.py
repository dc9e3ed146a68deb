"""Classification metrics on NumPy arrays (vectorized, no Python loop over examples).

Scores are ``(N, C)`` arrays (logits or probabilities: only their order matters); targets are
``(N,)`` class indices or ``(N, C)`` soft targets (mixup / CutMix / label smoothing), whose
argmax is taken as the class.

* :func:`accuracy` — fraction of argmax predictions equal to the target;
* :func:`top_k_accuracy` — fraction whose target is among the ``k`` highest scores;
* :func:`confusion_matrix` — ``cm[t, p]`` counts examples of true class ``t`` predicted as
  ``p`` (one ``bincount`` over ``t·C + p``);
* :func:`per_class_accuracy` — recall of each class, ``diag(cm) / cm.sum(1)``;
* :class:`MetricAccumulator` — running sums over minibatches for an epoch, with
  ``state_dict`` so a run resumed mid-epoch reports the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "MetricAccumulator",
    "accuracy",
    "class_indices",
    "confusion_matrix",
    "per_class_accuracy",
    "top_k_accuracy",
]


def _np(x: Any) -> np.ndarray:
    """A NumPy array from an array, a gradcraft Tensor or a CuPy array."""
    if hasattr(x, "numpy") and callable(x.numpy) and not isinstance(x, np.ndarray):
        x = x.numpy()
    if type(x).__module__.startswith("cupy"):
        x = x.get()
    return np.asarray(x)


def class_indices(targets: Any) -> np.ndarray:
    """``(N,)`` integer classes from ``(N,)`` indices or ``(N, C)`` soft targets."""
    t = _np(targets)
    if t.ndim == 2:
        return t.argmax(axis=1)
    if t.ndim != 1:
        raise ValueError(f"Expected targets of shape (N,) or (N, C). Received: shape={t.shape}")
    return t.astype(np.int64, copy=False)


def _check_scores(scores: Any, targets: np.ndarray) -> np.ndarray:
    s = _np(scores)
    if s.ndim != 2:
        raise ValueError(f"Expected scores of shape (N, C). Received: shape={s.shape}")
    if s.shape[0] != targets.shape[0]:
        raise ValueError(
            f"Expected as many targets as score rows. Received: scores.shape={s.shape}, "
            f"targets.shape={targets.shape}"
        )
    return s


def accuracy(scores: Any, targets: Any) -> float:
    """Fraction of rows whose highest score is at the target class (0.0 for no rows)."""
    t = class_indices(targets)
    s = _check_scores(scores, t)
    if t.size == 0:
        return 0.0
    return float(np.mean(s.argmax(axis=1) == t))


def _topk_hits(s: np.ndarray, t: np.ndarray, k: int) -> np.ndarray:
    """Boolean (N,): the target is among the k highest scores (ties count in its favour
    only as far as its rank: rank = number of scores strictly greater than the target's)."""
    target_scores = s[np.arange(s.shape[0]), t]
    rank = (s > target_scores[:, None]).sum(axis=1)
    return rank < k


def top_k_accuracy(scores: Any, targets: Any, k: int = 5) -> float:
    """Fraction of rows whose target class is among the ``k`` highest scores.

    Raises:
        ValueError: if ``k`` is not a positive integer.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"Expected a positive integer k. Received: k={k!r}")
    t = class_indices(targets)
    s = _check_scores(scores, t)
    if t.size == 0:
        return 0.0
    return float(np.mean(_topk_hits(s, t, int(k))))


def confusion_matrix(predictions: Any, targets: Any, num_classes: int | None = None) -> np.ndarray:
    """``(C, C)`` int64 counts: row = true class, column = predicted class.

    Args:
        predictions: ``(N,)`` predicted classes, or ``(N, C)`` scores (argmax is taken).
        targets: ``(N,)`` classes or ``(N, C)`` soft targets.
        num_classes: ``C``; inferred from the data when omitted.
    """
    t = class_indices(targets)
    p = _np(predictions)
    if p.ndim == 2:
        if num_classes is None:
            num_classes = p.shape[1]
        p = p.argmax(axis=1)
    p = p.astype(np.int64, copy=False)
    if p.shape != t.shape:
        raise ValueError(
            f"Expected predictions and targets of the same length. Received: {p.shape} and {t.shape}"
        )
    if num_classes is None:
        num_classes = int(max(p.max(initial=-1), t.max(initial=-1))) + 1
    c = int(num_classes)
    if t.size and (t.min() < 0 or t.max() >= c or p.min() < 0 or p.max() >= c):
        raise ValueError(
            f"Expected classes in [0, {c}). Received: targets in [{t.min()}, {t.max()}], "
            f"predictions in [{p.min()}, {p.max()}]"
        )
    return np.bincount(t * c + p, minlength=c * c).reshape(c, c).astype(np.int64)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Per-class recall ``diag(cm) / row sums``; NaN for classes with no examples."""
    cm = np.asarray(cm)
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)


class MetricAccumulator:
    """Running loss, accuracy, top-k accuracy and confusion matrix over minibatches.

    ``update(loss, scores, targets)`` adds a batch (``loss`` is the batch *mean*);
    ``compute()`` returns ``{"loss", "accuracy", "top{k}_accuracy"...}`` averaged over
    examples, and :attr:`confusion` holds the summed confusion matrix when ``num_classes`` is
    known.

    Args:
        num_classes: number of classes (for the confusion matrix; inferred from the first
            batch's scores when omitted).
        topk: the ``k`` values to report top-k accuracy for (skipped when ``k >= C``).
    """

    def __init__(self, num_classes: int | None = None, topk: Sequence[int] = (5,)) -> None:
        self.num_classes = num_classes
        self.topk = tuple(int(k) for k in topk)
        self.reset()

    def reset(self) -> None:
        """Forget every batch."""
        self.count = 0
        self.loss_sum = 0.0
        self.correct = 0
        self.topk_correct = dict.fromkeys(self.topk, 0)
        self.confusion: np.ndarray | None = (
            np.zeros((self.num_classes, self.num_classes), np.int64) if self.num_classes else None
        )

    def update(self, loss: float | None, scores: Any, targets: Any) -> None:
        """Add one minibatch (``loss`` = its mean loss, or ``None`` to track accuracy only)."""
        t = class_indices(targets)
        s = _check_scores(scores, t)
        n = int(t.shape[0])
        if self.num_classes is None:
            self.num_classes = int(s.shape[1])
            self.confusion = np.zeros((self.num_classes, self.num_classes), np.int64)
        pred = s.argmax(axis=1)
        self.count += n
        if loss is not None:
            self.loss_sum += float(loss) * n
        self.correct += int((pred == t).sum())
        for k in self.topk:
            if k < s.shape[1]:
                self.topk_correct[k] += int(_topk_hits(s, t, k).sum())
        assert self.confusion is not None
        self.confusion += confusion_matrix(pred, t, self.num_classes)

    def compute(self) -> dict[str, float]:
        """Example-weighted means: ``loss``, ``accuracy`` and ``top{k}_accuracy``."""
        n = max(self.count, 1)
        out = {"loss": self.loss_sum / n, "accuracy": self.correct / n}
        for k in self.topk:
            if self.num_classes is None or k < self.num_classes:
                out[f"top{k}_accuracy"] = self.topk_correct[k] / n
        return out

    def per_class(self) -> np.ndarray:
        """Per-class accuracy from the accumulated confusion matrix."""
        if self.confusion is None:
            return np.zeros((0,))
        return per_class_accuracy(self.confusion)

    def state_dict(self) -> dict[str, Any]:
        """The running sums (for checkpoints)."""
        return {
            "count": self.count,
            "loss_sum": self.loss_sum,
            "correct": self.correct,
            "topk_correct": {str(k): v for k, v in self.topk_correct.items()},
            "num_classes": self.num_classes,
            "confusion": None if self.confusion is None else self.confusion.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore sums saved by :meth:`state_dict`."""
        self.count = int(state["count"])
        self.loss_sum = float(state["loss_sum"])
        self.correct = int(state["correct"])
        self.topk_correct = {int(k): int(v) for k, v in state["topk_correct"].items()}
        self.num_classes = state["num_classes"]
        conf = state["confusion"]
        self.confusion = None if conf is None else np.array(conf, dtype=np.int64)
