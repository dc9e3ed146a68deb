"""Metrics: accuracy, top-k, confusion matrix, per-class accuracy, running accumulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gradcraft.train.metrics import (
    MetricAccumulator,
    accuracy,
    class_indices,
    confusion_matrix,
    per_class_accuracy,
    top_k_accuracy,
)


def test_accuracy_counts_argmax_hits() -> None:
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert accuracy(scores, np.array([1, 0, 0])) == pytest.approx(2 / 3)


def test_accuracy_takes_soft_targets_by_argmax() -> None:
    scores = np.array([[0.1, 0.9], [0.8, 0.2]])
    soft = np.array([[0.3, 0.7], [0.6, 0.4]])
    assert accuracy(scores, soft) == 1.0
    np.testing.assert_array_equal(class_indices(soft), [1, 0])


def test_top_k_matches_a_sorting_reference(rng: np.random.Generator) -> None:
    scores = rng.normal(size=(200, 10))
    targets = rng.integers(0, 10, 200)
    for k in (1, 3, 5, 10):
        ref = np.mean([t in np.argsort(-s)[:k] for s, t in zip(scores, targets)])
        assert top_k_accuracy(scores, targets, k) == pytest.approx(ref)
    assert top_k_accuracy(scores, targets, 1) == pytest.approx(accuracy(scores, targets))


def test_top_k_rejects_bad_k() -> None:
    with pytest.raises(ValueError, match="k=0"):
        top_k_accuracy(np.zeros((2, 3)), np.zeros(2, int), 0)


def test_confusion_matrix_matches_a_loop(rng: np.random.Generator) -> None:
    pred = rng.integers(0, 4, 500)
    true = rng.integers(0, 4, 500)
    ref = np.zeros((4, 4), int)
    for t, p in zip(true, pred):
        ref[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(pred, true, 4), ref)
    assert confusion_matrix(pred, true, 4).sum() == 500


def test_confusion_matrix_from_scores_and_inferred_size() -> None:
    scores = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    cm = confusion_matrix(scores, np.array([0, 1]))
    assert cm.shape == (3, 3) and cm[0, 0] == 1 and cm[1, 2] == 1


def test_confusion_matrix_rejects_out_of_range_labels() -> None:
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        confusion_matrix(np.array([0, 1]), np.array([0, 5]), 2)


def test_per_class_accuracy_is_row_recall_and_nan_for_empty_classes() -> None:
    cm = np.array([[3, 1, 0], [0, 0, 0], [1, 1, 2]])
    out = per_class_accuracy(cm)
    assert out[0] == pytest.approx(0.75) and math.isnan(out[1]) and out[2] == pytest.approx(0.5)


def test_accumulator_equals_metrics_on_the_whole_set(rng: np.random.Generator) -> None:
    scores = rng.normal(size=(103, 7))
    targets = rng.integers(0, 7, 103)
    losses = rng.random(103)
    acc = MetricAccumulator(num_classes=7, topk=(3, 10))
    for i in range(0, 103, 25):
        acc.update(losses[i : i + 25].mean(), scores[i : i + 25], targets[i : i + 25])
    out = acc.compute()
    assert out["loss"] == pytest.approx(losses.mean())
    assert out["accuracy"] == pytest.approx(accuracy(scores, targets))
    assert out["top3_accuracy"] == pytest.approx(top_k_accuracy(scores, targets, 3))
    assert "top10_accuracy" not in out  # k >= number of classes is meaningless
    np.testing.assert_array_equal(acc.confusion, confusion_matrix(scores, targets, 7))


def test_accumulator_state_roundtrip(rng: np.random.Generator) -> None:
    a = MetricAccumulator(topk=(2,))
    a.update(0.5, rng.normal(size=(10, 3)), rng.integers(0, 3, 10))
    b = MetricAccumulator(topk=(2,))
    b.load_state_dict(a.state_dict())
    assert b.compute() == a.compute()
    np.testing.assert_array_equal(a.confusion, b.confusion)
