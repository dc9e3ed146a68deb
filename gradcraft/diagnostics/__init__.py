"""The babysitter: what the lectures teach a person to check by hand, done for them.

Before training — :func:`diagnose` (objects) and :func:`run_diagnose` (a recipe; what
``gradcraft diagnose`` runs) go through the checklist: the data (centred and scaled, classes
balanced, no test sample in the training set), the initial loss (≈ ln C, raised by
regularization), activations and gradients per layer at initialization (saturation, dead
ReLUs, collapse, vanishing/exploding gradients, with the init that fits), the learning-rate
range test (a suggested lr), and overfitting a small subset.

During training — :class:`Monitor`, a trainer callback that samples every N steps: update/
weight ratios, dead and saturated units, gradient norms; catches NaN and loss explosions with
their likely cause; classifies the learning curves at the end (under/overfitting, good fit,
unrepresentative validation set).

Ablations — :func:`run_ablation` (what ``gradcraft ablate`` runs): variants of a recipe
under the same seed and budget, one report.

Every check returns :class:`Finding` s: a verdict (ok / warning / problem), a plain-words
summary and what to try.
"""

from gradcraft.diagnostics.ablation import (
    AblationResult,
    VariantResult,
    expand_variants,
    parse_budget,
    parse_vary,
    run_ablation,
)
from gradcraft.diagnostics.checks import (
    OverfitResult,
    check_activations,
    check_class_balance,
    check_data,
    check_duplicates,
    check_gradients,
    check_initial_loss,
    check_input_scaling,
    check_overfit_subset,
    overfit_subset,
)
from gradcraft.diagnostics.curves import classify_learning_curves
from gradcraft.diagnostics.diagnose import ALL_CHECKS, DiagnosisReport, diagnose, diagnose_report
from gradcraft.diagnostics.findings import (
    Finding,
    Verdict,
    count_verdicts,
    findings_to_markdown,
    format_findings,
    print_findings,
    worst_verdict,
)
from gradcraft.diagnostics.lr_finder import LRRangeResult, check_learning_rate, lr_range_test
from gradcraft.diagnostics.monitor import Monitor, TrainingMonitor
from gradcraft.diagnostics.run import run_diagnose
from gradcraft.diagnostics.stats import (
    ActivationRecorder,
    ActivationStats,
    ParamStats,
    activation_kind,
    parameter_stats,
    update_ratios,
)
from gradcraft.diagnostics.thresholds import Thresholds

__all__ = [
    "ALL_CHECKS",
    "AblationResult",
    "ActivationRecorder",
    "ActivationStats",
    "DiagnosisReport",
    "Finding",
    "LRRangeResult",
    "Monitor",
    "OverfitResult",
    "ParamStats",
    "Thresholds",
    "TrainingMonitor",
    "VariantResult",
    "Verdict",
    "activation_kind",
    "check_activations",
    "check_class_balance",
    "check_data",
    "check_duplicates",
    "check_gradients",
    "check_initial_loss",
    "check_input_scaling",
    "check_learning_rate",
    "check_overfit_subset",
    "classify_learning_curves",
    "count_verdicts",
    "diagnose",
    "diagnose_report",
    "expand_variants",
    "findings_to_markdown",
    "format_findings",
    "lr_range_test",
    "overfit_subset",
    "parameter_stats",
    "parse_budget",
    "parse_vary",
    "print_findings",
    "run_ablation",
    "run_diagnose",
    "update_ratios",
    "worst_verdict",
]
