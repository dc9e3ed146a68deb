"""The numbers behind every verdict, in one place, with where each comes from.

All checks take a :class:`Thresholds`; the defaults are the lectures' rules of thumb and
the thresholds of prior tools (AUTOTRAINER's gradient rules, fastai's learning-rate finder),
so a user who disagrees changes one field instead of reading the checks.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_THRESHOLDS", "Thresholds"]


@dataclass(frozen=True)
class Thresholds:
    """Verdict thresholds of the babysitter's checks.

    Initial loss (softmax classifier, regularization off; expected ln C):
        initial_loss_warn: relative deviation |L − ln C| / ln C above which it is a warning.
        initial_loss_problem: relative deviation above which it is a problem.
        reg_dominates: regularization penalty / data loss above which the penalty is said
            to dominate the initial loss (warning).

    Overfitting a small subset (regularization off):
        overfit_accuracy: training accuracy the subset must reach (≈ 100%).

    Activations at initialization (cs231n, "activation statistics" of deep nets):
        saturated_warn / saturated_problem: fraction of tanh/sigmoid outputs saturated
            (|tanh| > 0.99, sigmoid outside [0.01, 0.99]).
        dead_warn / dead_problem: fraction of a ReLU layer's units that are never active on
            the batch (AUTOTRAINER calls ≥ 70% zero gradients "dying ReLU").
        collapse_ratio: std of the deepest activation layer / std of the first below which
            the activations are said to collapse towards zero (too-small init).
        collapse_abs: std of an activation layer below which it has collapsed outright.
        shrink_ratio: as ``collapse_ratio``, the milder warning level.
        explode_ratio: std of the deepest / first activation layer above which activations
            grow with depth (too-large init; ReLU family only, tanh/sigmoid saturate).

    Gradients at initialization (AUTOTRAINER):
        vanish_ratio: ‖∇W first layer‖ / ‖∇W last layer‖ below which, together with
            ``vanish_first_norm``, gradients vanish.
        vanish_first_norm: first layer's gradient norm below which gradients vanish.
        explode_grad_ratio: ‖∇W first‖ / ‖∇W last‖ above which gradients explode.
        shrink_grad_ratio: ‖∇W first‖ / ‖∇W last‖ below which gradients are said to shrink
            towards the input (a warning, short of AUTOTRAINER's "vanishing").

    Learning rate (fastai ``lr_find``; the lectures' update/weight ratio ≈ 1e-3):
        lr_diverge_factor: the range test stops when the smoothed loss exceeds this × its
            best value.
        update_ratio_target: the healthy ‖ΔW‖/‖W‖ per step.
        update_ratio_factor: how far (×/÷) from the target the median ratio of a layer may
            drift before a warning.
        update_ratio_problem: ratio above which one step rewrites the weights (problem).

    Data:
        mean_over_std: |mean| / std of the inputs above which they are "not centred".
        scale_low / scale_high: input std outside this range is "not scaled".
        imbalance_warn / imbalance_problem: largest / smallest class count.
        duplicates_warn: fraction of test rows also in the training set above which it is a
            warning (any overlap is reported).

    During training (the Monitor):
        explosion_factor: smoothed training loss above this × its lowest value (and above
            the first value) is a loss explosion.
        gap_warn: train accuracy − validation accuracy above which the curves show
            overfitting ("big gap").
        gap_small: a gap below this is "no gap" (more capacity may help).
        val_rise: relative rise of validation loss above its minimum that marks overfitting.
        underfit_loss: final training loss / ln C above which a model with no gap underfits.
        not_learning_loss: final training loss / ln C above which the model has not learned at
            all.
        still_improving: relative fall of the training loss over the last epoch above which
            the run stopped while still learning.
        noisy_val: std of the validation-minus-training loss differences (relative to the
            training loss) above which the validation set is "noisy around" training.
    """

    initial_loss_warn: float = 0.25
    initial_loss_problem: float = 1.0
    reg_dominates: float = 1.0

    overfit_accuracy: float = 0.99

    saturated_warn: float = 0.10
    saturated_problem: float = 0.30
    dead_warn: float = 0.20
    dead_problem: float = 0.50
    collapse_ratio: float = 0.01
    collapse_abs: float = 1e-3
    shrink_ratio: float = 0.1
    explode_ratio: float = 100.0

    vanish_ratio: float = 1e-3
    vanish_first_norm: float = 1e-4
    explode_grad_ratio: float = 70.0
    shrink_grad_ratio: float = 0.05

    lr_diverge_factor: float = 4.0
    update_ratio_target: float = 1e-3
    update_ratio_factor: float = 10.0
    update_ratio_problem: float = 0.1

    mean_over_std: float = 0.5
    scale_low: float = 0.1
    scale_high: float = 10.0
    imbalance_warn: float = 3.0
    imbalance_problem: float = 10.0
    duplicates_warn: float = 0.01

    explosion_factor: float = 4.0
    gap_warn: float = 0.05
    gap_small: float = 0.02
    val_rise: float = 0.10
    underfit_loss: float = 0.25
    not_learning_loss: float = 0.95
    still_improving: float = 0.02
    noisy_val: float = 0.15


#: the defaults, shared (``Thresholds`` is frozen)
DEFAULT_THRESHOLDS = Thresholds()
