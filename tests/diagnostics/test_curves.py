import numpy as np

from gradcraft.diagnostics import classify_learning_curves


def _diag(epochs, c=10, **kw):
    return classify_learning_curves(epochs, c, **kw)


def test_big_gap_and_rising_validation_loss_is_overfitting_with_early_stopping_epoch():
    f = _diag({
        "train_eval_loss": [1.0, 0.5, 0.2, 0.05, 0.01],
        "val_loss": [1.1, 0.7, 0.6, 0.8, 1.0],
        "train_eval_accuracy": [0.6, 0.8, 0.93, 0.99, 1.0],
        "val_accuracy": [0.58, 0.72, 0.75, 0.74, 0.73],
    })
    assert f.details["diagnosis"] == "overfitting" and f.verdict == "problem"
    assert "epoch 3" in f.remedy and "regularization" in f.remedy and "augmentation" in f.remedy


def test_high_training_loss_with_no_gap_is_underfitting():
    f = _diag({
        "train_eval_loss": [2.0, 1.6, 1.5, 1.45],
        "val_loss": [2.0, 1.62, 1.52, 1.47],
        "train_eval_accuracy": [0.3, 0.4, 0.42, 0.43],
        "val_accuracy": [0.3, 0.39, 0.41, 0.42],
    })
    assert f.details["diagnosis"] == "underfitting" and f.verdict == "warning"
    assert "capacity" in f.remedy


def test_close_low_curves_are_a_good_fit():
    f = _diag({
        "train_eval_loss": [0.8, 0.4, 0.3, 0.28],
        "val_loss": [0.85, 0.45, 0.34, 0.32],
        "train_eval_accuracy": [0.75, 0.86, 0.895, 0.9],
        "val_accuracy": [0.74, 0.85, 0.885, 0.89],
    })
    assert f.details["diagnosis"] == "good_fit" and f.verdict == "ok"


def test_validation_loss_below_training_loss_is_an_unrepresentative_validation_set():
    f = _diag({"train_eval_loss": [1.0, 0.8, 0.7, 0.65], "val_loss": [0.8, 0.6, 0.5, 0.45]})
    assert f.details["diagnosis"] == "unrepresentative"
    assert "val_split" in f.remedy


def test_validation_loss_noisy_around_training_loss_is_flagged():
    f = _diag({"train_eval_loss": [1.0, 0.9, 0.85, 0.8, 0.78, 0.76],
               "val_loss": [1.3, 0.6, 1.2, 0.55, 1.1, 0.6]})
    assert f.details["diagnosis"] == "noisy_validation"


def test_running_training_loss_with_dropout_does_not_look_unrepresentative():
    epochs = {"train_loss": [1.0, 0.8, 0.7, 0.65], "val_loss": [0.8, 0.6, 0.5, 0.45],
              "train_accuracy": [0.6, 0.7, 0.75, 0.77], "val_accuracy": [0.7, 0.78, 0.8, 0.81]}
    assert _diag(epochs, regularized=True).details["diagnosis"] != "unrepresentative"


def test_without_validation_or_with_nan_the_verdict_says_so():
    assert _diag({"train_loss": [1.0, 0.5]}).details["diagnosis"] == "no_validation"
    f = _diag({"train_loss": [1.0, np.nan], "val_loss": [1.0, np.nan]})
    assert f.verdict == "problem" and f.details["diagnosis"] == "diverged"


def test_loss_stuck_at_chance_level_is_not_learning():
    f = _diag({"train_eval_loss": [2.31, 2.30, 2.302], "val_loss": [2.31, 2.30, 2.30],
               "train_eval_accuracy": [0.1, 0.11, 0.1], "val_accuracy": [0.1, 0.1, 0.1]})
    assert f.details["diagnosis"] == "not_learning" and f.verdict == "problem"
    assert "gradcraft diagnose" in f.remedy


def test_overfitting_remedy_names_both_early_stopping_epochs():
    f = _diag({
        "train_eval_loss": [0.5, 0.3, 0.2, 0.1, 0.05, 0.02],
        "val_loss": [0.5, 0.45, 0.5, 0.55, 0.6, 0.7],
        "train_eval_accuracy": [0.8, 0.88, 0.92, 0.96, 0.98, 1.0],
        "val_accuracy": [0.8, 0.82, 0.83, 0.84, 0.83, 0.83],
    })
    assert "lowest at epoch 2" in f.remedy and "highest at epoch 4" in f.remedy


def test_cross_entropy_floor_is_the_entropy_of_the_smoothed_targets():
    from gradcraft.diagnostics.curves import cross_entropy_floor

    assert cross_entropy_floor(10, 0.0) == 0.0
    target = np.full(10, 0.01)
    target[0] = 0.91
    assert np.isclose(cross_entropy_floor(10, 0.1), -(target * np.log(target)).sum())


def test_label_smoothed_run_near_its_loss_floor_is_not_underfitting():
    """The fashion_cnn curves (ε = 0.1): train loss 0.65 sits 0.15 above the 0.50 floor, 95 % accuracy."""
    from gradcraft.diagnostics.curves import cross_entropy_floor

    epochs = {
        "train_loss": [1.02, 0.85, 0.75, 0.70, 0.66, 0.654],
        "val_loss": [0.83, 0.75, 0.71, 0.69, 0.66, 0.649],
        "train_accuracy": [0.78, 0.86, 0.90, 0.925, 0.943, 0.946],
        "val_accuracy": [0.866, 0.89, 0.91, 0.92, 0.936, 0.938],
    }
    plain = _diag(epochs)
    smoothed = _diag(epochs, loss_floor=cross_entropy_floor(10, 0.1))
    assert plain.details["diagnosis"] == "underfitting"  # judged against 0 it looks high
    assert smoothed.details["diagnosis"] == "good_fit"
    assert smoothed.details["train_loss_vs_chance"] < 0.1
