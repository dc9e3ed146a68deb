"""The lectures' checklist before training, one function per check.

Each ``check_*`` function measures one thing and returns :class:`Finding` s with a verdict:

* :func:`check_input_scaling`, :func:`check_class_balance`, :func:`check_duplicates` — the
  data: inputs centred and scaled (not "always positive"), classes balanced, no test sample
  that is also a training sample;
* :func:`check_initial_loss` — with regularization off a softmax classifier starts at
  ≈ ln C (uniform predictions); adding regularization raises it;
* :func:`check_activations` — per activation layer at initialization: saturation of
  tanh/sigmoid, dead ReLUs, collapse of the activations' scale with depth;
* :func:`check_gradients` — per layer at initialization: vanishing or exploding gradient
  norms across depth (AUTOTRAINER's rules), dying ReLUs seen as zero gradients;
* :func:`check_overfit_subset` — a small subset can be fitted to ~100% training accuracy.

The learning-rate range test lives in :mod:`gradcraft.diagnostics.lr_finder`; everything is
run together by :func:`gradcraft.diagnostics.diagnose`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcraft.autograd.grad_mode import no_grad
from gradcraft.diagnostics._common import (
    accuracy,
    as_tensor,
    fitting_init,
    fmt,
    loss_value,
    pct,
    penalty,
    regularization_off,
    set_lr,
)
from gradcraft.diagnostics.findings import Finding
from gradcraft.diagnostics.stats import RELU_LIKE, SATURATING, ActivationStats, ParamStats, to_numpy
from gradcraft.diagnostics.thresholds import DEFAULT_THRESHOLDS, Thresholds

__all__ = [
    "OverfitResult",
    "check_activations",
    "check_class_balance",
    "check_data",
    "check_duplicates",
    "check_gradients",
    "check_initial_loss",
    "check_input_scaling",
    "check_overfit_subset",
    "row_hashes",
]

_DEFAULT = DEFAULT_THRESHOLDS


# ============================================================================ data
def check_input_scaling(
    x: Any, thresholds: Thresholds = _DEFAULT, sample: int = 20000, rng: np.random.Generator | None = None
) -> Finding:
    """Are the inputs the model sees centred and scaled?

    Measures the mean and standard deviation over all input values (on a random sample of at
    most ``sample`` rows). Verdicts: all values equal (problem); a std outside
    [``scale_low``, ``scale_high``] (raw 0–255 pixels: problem; otherwise warning); all values
    non-negative with |mean| > ``mean_over_std`` · std — the lectures' "always positive
    inputs", which makes every weight of a first-layer unit move in the same direction and
    the updates zig-zag (warning); otherwise not centred (warning); else ok.

    Args:
        x: the (preprocessed) training inputs, (N, …).
    """
    a = to_numpy(x)
    if a.shape[0] > sample:
        rng = rng or np.random.default_rng(0)
        a = a[np.sort(rng.choice(a.shape[0], sample, replace=False))]
    v = a.astype(np.float64).reshape(-1)
    if v.size == 0:
        return Finding("data.scaling", "warning", "There are no inputs to check.")
    if not np.isfinite(v).all():
        bad = 1.0 - float(np.isfinite(v).mean())
        return Finding(
            "data.scaling",
            "problem",
            f"{pct(bad)} of the input values are NaN or infinite.",
            "Fix the data or the preprocessing (a division by a zero standard deviation?).",
            details={"nonfinite": bad},
        )
    mean, std, lo, hi = float(v.mean()), float(v.std()), float(v.min()), float(v.max())
    details = {"mean": mean, "std": std, "min": lo, "max": hi}
    if std == 0:
        return Finding(
            "data.scaling",
            "problem",
            f"Every input value equals {fmt(mean)}; there is nothing to learn.",
            "Check the data loading.",
            details=details,
        )
    rng_text = f"Inputs have mean {fmt(mean)} and std {fmt(std)} (range [{fmt(lo)}, {fmt(hi)}])."
    if std > thresholds.scale_high or std < thresholds.scale_low:
        raw_pixels = hi > 2 and float(np.mean(v == np.round(v))) > 0.99 and lo >= 0
        verdict = "problem" if raw_pixels or std > 10 * thresholds.scale_high else "warning"
        what = (
            "raw pixel values"
            if raw_pixels
            else ("too large" if std > thresholds.scale_high else "too small")
        )
        return Finding(
            "data.scaling",
            verdict,
            f"{rng_text} They are not scaled ({what}): weight init schemes "
            "assume inputs of unit scale, so the first layer starts saturated or dead.",
            "Standardize the inputs: (x − mean) / std, fitted on the training split "
            "(data.preprocessing.kind: standardize).",
            details=details,
        )
    off_centre = abs(mean) > thresholds.mean_over_std * std
    if off_centre and lo >= 0:
        return Finding(
            "data.scaling",
            "warning",
            f"{rng_text} They are always positive: the gradients on a "
            "first-layer unit's weights then all have the same sign, so updates zig-zag and "
            "learning slows.",
            "Centre the data: subtract the training mean (data.preprocessing.kind: standardize).",
            details=details,
        )
    if off_centre:
        return Finding(
            "data.scaling",
            "warning",
            f"{rng_text} They are not centred around zero.",
            "Subtract the training mean (data.preprocessing.kind: standardize).",
            details=details,
        )
    return Finding("data.scaling", "ok", f"{rng_text} They are centred and scaled.", details=details)


def check_class_balance(y: Any, num_classes: int | None = None, thresholds: Thresholds = _DEFAULT) -> Finding:
    """Are the classes balanced? Counts per class; the ratio of the largest to the smallest
    count above ``imbalance_warn`` is a warning, above ``imbalance_problem`` (or a class with
    no example) a problem."""
    t = to_numpy(y)
    if t.ndim == 2:
        t = t.argmax(axis=1)
    t = t.astype(np.int64)
    c = int(num_classes) if num_classes else int(t.max()) + 1 if t.size else 0
    counts = np.bincount(t, minlength=c)[:c] if t.size else np.zeros(c, np.int64)
    details: dict[str, Any] = {
        "counts": counts.tolist(),
        "majority_baseline": float(counts.max() / max(counts.sum(), 1)),
    }
    if c == 0:
        return Finding("data.balance", "warning", "There are no labels to check.")
    missing = np.flatnonzero(counts == 0).tolist()
    if missing:
        return Finding(
            "data.balance",
            "problem",
            f"Class(es) {missing} have no training example.",
            "Check the labels and the split; a class never seen cannot be predicted.",
            details=details,
        )
    ratio = float(counts.max() / counts.min())
    details["ratio"] = ratio
    base = (
        f"Class counts range from {counts.min()} to {counts.max()} (ratio {ratio:.1f}); always predicting "
        f"the largest class would score {pct(details['majority_baseline'])}."
    )
    if ratio > thresholds.imbalance_problem:
        return Finding(
            "data.balance",
            "problem",
            base + " The classes are strongly imbalanced.",
            "Resample (oversample the rare classes), weight the loss per class, and judge by "
            "per-class accuracy, not accuracy alone.",
            details=details,
        )
    if ratio > thresholds.imbalance_warn:
        return Finding(
            "data.balance",
            "warning",
            base + " The classes are imbalanced.",
            "Weight the loss per class or resample, and look at per-class accuracy.",
            details=details,
        )
    return Finding("data.balance", "ok", base, details=details)


def row_hashes(x: Any) -> list[bytes]:
    """A 16-byte BLAKE2 digest of each row of ``x`` (N, …), for finding duplicates."""
    a = np.ascontiguousarray(to_numpy(x))
    rows = a.reshape(a.shape[0], -1)
    return [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in rows]


def check_duplicates(
    train_x: Any,
    test_x: Any = None,
    train_y: Any = None,
    test_y: Any = None,
    thresholds: Thresholds = _DEFAULT,
) -> Finding:
    """Duplicate samples, found by hashing rows: test (or validation) samples that are also
    in the training set make the measured accuracy optimistic; duplicates inside the training
    set with different labels are label noise.

    Any test/train overlap is reported; more than ``duplicates_warn`` of the test set is a
    warning.
    """
    train_h = row_hashes(train_x)
    ty = None if train_y is None else to_numpy(train_y).reshape(len(train_h), -1)
    first: dict[bytes, int] = {}
    dup_train = 0
    conflicting = 0
    for i, h in enumerate(train_h):
        j = first.get(h)
        if j is None:
            first[h] = i
            continue
        dup_train += 1
        if ty is not None and not np.array_equal(ty[i], ty[j]):
            conflicting += 1
    details: dict[str, Any] = {"train_duplicates": dup_train, "train_conflicting_labels": conflicting}
    parts = []
    if dup_train:
        parts.append(
            f"{dup_train} training sample(s) repeat another training sample"
            + (f" ({conflicting} with a different label)" if conflicting else "")
            + "."
        )
    verdict = "ok"
    remedy = ""
    if test_x is not None:
        test_h = row_hashes(test_x)
        overlap = [i for i, h in enumerate(test_h) if h in first]
        frac = len(overlap) / max(len(test_h), 1)
        details.update({"test_in_train": len(overlap), "test_in_train_fraction": frac})
        if overlap:
            parts.append(
                f"{len(overlap)} of {len(test_h)} test sample(s) ({pct(frac)}) also appear in the training "
                "set, so test accuracy on them measures memory, not generalization."
            )
            if frac > thresholds.duplicates_warn:
                verdict = "warning"
                remedy = (
                    "Remove the test samples that occur in the training set (or report accuracy "
                    "without them)."
                )
        else:
            parts.append(f"No test sample appears in the training set ({len(test_h)} checked).")
    if conflicting and conflicting > 0.01 * len(train_h):
        verdict = "warning"
        remedy = (
            remedy + " " if remedy else ""
        ) + "Deduplicate the training set; conflicting labels are label noise."
    if not parts:
        parts.append(f"No duplicate among {len(train_h)} training samples.")
    return Finding("data.duplicates", verdict, " ".join(parts), remedy, details=details)


def check_data(
    train_x: Any,
    train_y: Any,
    test_x: Any = None,
    test_y: Any = None,
    num_classes: int | None = None,
    thresholds: Thresholds = _DEFAULT,
    raw_train_x: Any = None,
    raw_test_x: Any = None,
) -> list[Finding]:
    """The three data checks. ``raw_*`` (e.g. the uint8 images before preprocessing) are
    hashed for duplicates when given, otherwise the preprocessed arrays are."""
    out = [check_input_scaling(train_x, thresholds)]
    if train_y is not None:
        out.append(check_class_balance(train_y, num_classes, thresholds))
    out.append(
        check_duplicates(
            raw_train_x if raw_train_x is not None else train_x,
            raw_test_x if raw_test_x is not None else test_x,
            train_y,
            test_y,
            thresholds,
        )
    )
    return out


# ============================================================================ initial loss
def check_initial_loss(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    x: Any,
    y: Any,
    num_classes: int,
    regularizers: Sequence[Any] = (),
    thresholds: Thresholds = _DEFAULT,
) -> list[Finding]:
    """The loss of the untrained model on a batch, regularization off, against ln C.

    A softmax classifier with small random weights predicts about 1/C for every class, so its
    cross-entropy starts at ln C (2.30 for 10 classes). Much higher means the logits start
    large (the last layer's weights are too big); much lower means the untrained model
    already "knows" something (a leak, or a loss that is not softmax cross-entropy). Then,
    with ``regularizers``, the penalty must raise the loss (else the regularizer does nothing);
    a penalty larger than the data loss dominates it.

    Args:
        model: a freshly initialized model (dropout is switched off during the check).
        loss_fn: ``loss_fn(logits, y) -> scalar``.
        x, y: a batch of (preprocessed) inputs and targets.
        num_classes: C.
        regularizers: penalties ``reg(model)``.
    """
    expected = math.log(num_classes)
    with no_grad(), regularization_off(model):
        logits = model(as_tensor(x))
        data_loss = loss_value(loss_fn(logits, as_tensor(y)))
        reg = penalty(regularizers, model)
        reg_value = None if reg is None else loss_value(reg)
    logit_np = to_numpy(logits)
    logit_std = float(np.std(logit_np)) if logit_np.size else math.nan
    details: dict[str, Any] = {"loss": data_loss, "expected": expected, "logit_std": logit_std}
    out = []
    if not math.isfinite(data_loss):
        out.append(
            Finding(
                "initial_loss",
                "problem",
                f"The initial loss is {data_loss}.",
                "Check the inputs for NaN/inf and the loss function; see the activation findings.",
                details=details,
            )
        )
        return out
    dev = (data_loss - expected) / expected
    details["relative_deviation"] = dev
    head = (
        f"Initial loss {data_loss:.3f} with regularization off; a {num_classes}-class softmax should start "
        f"at ln {num_classes} = {expected:.3f}"
    )
    if abs(dev) <= thresholds.initial_loss_warn:
        out.append(Finding("initial_loss", "ok", head + " — as expected.", details=details))
    elif dev > 0:
        verdict = "problem" if dev > thresholds.initial_loss_problem else "warning"
        out.append(
            Finding(
                "initial_loss",
                verdict,
                head + f"; it is {dev:+.0%} off: the logits start with std "
                f"{logit_std:.3g} instead of ≈ 0, so the untrained model makes confident guesses.",
                "Initialize with smaller weights (e.g. the output layer scaled down, or the init that "
                "fits the nonlinearity), and check that the loss takes logits, not probabilities.",
                details=details,
            )
        )
    else:
        out.append(
            Finding(
                "initial_loss",
                "warning",
                head + f"; it is {dev:+.0%} off — lower than chance before any training.",
                "Check for a label leak in the inputs and that the loss is softmax cross-entropy on logits.",
                details=details,
            )
        )
    if regularizers:
        details["regularized_loss"] = data_loss + (reg_value or 0.0)
        if reg_value is None or not reg_value > 0:
            out.append(
                Finding(
                    "initial_loss.regularization",
                    "warning",
                    "Adding the regularization did not raise the initial loss: the penalty is 0.",
                    "Check the regularization strength and which parameters it covers.",
                    details={"penalty": reg_value},
                )
            )
        elif reg_value > thresholds.reg_dominates * data_loss:
            out.append(
                Finding(
                    "initial_loss.regularization",
                    "warning",
                    f"Regularization raises the initial loss "
                    f"from {data_loss:.3f} to {data_loss + reg_value:.3f}: the penalty ({reg_value:.3g}) "
                    "is larger than the data loss, so training will mostly shrink the weights.",
                    "Lower the regularization strength (e.g. 10×) and compare.",
                    details={"penalty": reg_value, "data_loss": data_loss},
                )
            )
        else:
            out.append(
                Finding(
                    "initial_loss.regularization",
                    "ok",
                    f"Regularization raises the initial loss from "
                    f"{data_loss:.3f} to {data_loss + reg_value:.3f}, as it should.",
                    details={"penalty": reg_value, "data_loss": data_loss},
                )
            )
    return out


# ============================================================================ activations
def check_activations(
    stats: Sequence[ActivationStats], thresholds: Thresholds = _DEFAULT, init_name: str | None = None
) -> list[Finding]:
    """Saturation, dead units and collapse/explosion of the activations at initialization.

    Per layer: tanh/sigmoid outputs saturated (|tanh| > 0.99, sigmoid outside [0.01, 0.99])
    — too-large init, the local gradient there is ≈ 0; ReLU units never active on the batch
    — dead from the start (large negative biases, or a too-large init followed by a bias).
    Across depth: the std of the deepest activation layer compared with the first — shrinking
    towards zero is the too-small init of the lectures (N(0, 0.01²) in a deep net: every
    layer multiplies the scale by 0.01·√fan_in); growing is a too-large init in a ReLU net.
    The remedy names the init that fits the nonlinearity (Xavier for tanh/sigmoid, He for
    ReLU).

    Args:
        stats: one :class:`ActivationStats` per activation layer, in forward order.
        init_name: the init in use, quoted in the findings when given.
    """
    if not stats:
        return [
            Finding(
                "activations",
                "warning",
                "The model has no activation layer to inspect (activations "
                "applied as functions inside forward are invisible to hooks).",
                "Use activation modules (nn.ReLU(), nn.Tanh(), ...) to let the diagnostics see them.",
            )
        ]
    kinds = [s.kind for s in stats if s.kind]
    init_value, init_words = fitting_init(kinds)
    current = f" (current init: {init_name})" if init_name else ""
    out: list[Finding] = []
    for s in stats:
        if s.nonfinite:
            out.append(
                Finding(
                    "activations",
                    "problem",
                    f"Layer '{s.name}' outputs NaN/inf at initialization ({pct(s.nonfinite)} of values).",
                    "Check the inputs and the init scale.",
                    layer=s.name,
                    details=s.to_dict(),
                )
            )
    saturated = [
        s
        for s in stats
        if s.kind in SATURATING and s.saturated is not None and s.saturated >= thresholds.saturated_warn
    ]
    if saturated:
        worst = max(saturated, key=lambda s: s.saturated or 0.0)
        verdict = "problem" if (worst.saturated or 0.0) >= thresholds.saturated_problem else "warning"
        kinds_text = "/".join(sorted({s.kind for s in saturated if s.kind}))
        per_layer = ", ".join(f"'{s.name}' {pct(s.saturated)}" for s in saturated)
        out.append(
            Finding(
                "activations.saturation",
                verdict,
                f"The {kinds_text} outputs are saturated at initialization in {len(saturated)} of "
                f"{len(stats)} "
                f"activation layer(s) ({per_layer}; tanh: |y| > 0.99, sigmoid: y < 0.01 or y > "
                f"0.99){current}. "
                "There the local gradient is ≈ 0, so the layers below barely learn.",
                f"The weights are too large: use {init_words} (model.init: {init_value}), or add batch "
                "normalization before the nonlinearity.",
                layer=worst.name,
                details={s.name: s.to_dict() for s in saturated},
            )
        )
    dead = [s for s in stats if s.kind in RELU_LIKE and s.dead is not None and s.dead >= thresholds.dead_warn]
    if dead:
        worst = max(dead, key=lambda s: s.dead or 0.0)
        verdict = "problem" if (worst.dead or 0.0) >= thresholds.dead_problem else "warning"
        per_layer = ", ".join(f"'{s.name}' {pct(s.dead)}" for s in dead)
        out.append(
            Finding(
                "activations.dead",
                verdict,
                f"ReLU units are dead at initialization in {len(dead)} of {len(stats)} activation layer(s) "
                f"({per_layer} of the units never active on the whole batch){current}. Dead units get no "
                "gradient and never learn.",
                "Check the biases (large negative biases kill ReLUs; start them at 0 or a small positive "
                f"value), use {init_words} (model.init: {init_value}), or a leaky ReLU.",
                layer=worst.name,
                details={s.name: s.to_dict() for s in dead},
            )
        )
    positive = [
        s for s in stats if s.kind == "sigmoid" and s.mean > 0 and s.mean > thresholds.mean_over_std * s.std
    ]
    if positive:
        per_layer = ", ".join(f"'{s.name}' mean {s.mean:.2g}" for s in positive)
        out.append(
            Finding(
                "activations.centering",
                "warning",
                f"The sigmoid outputs are not zero-centred ({per_layer}): the next layer always sees "
                "positive "
                "inputs, so its weights' gradients share one sign and the updates zig-zag; each sigmoid also "
                "scales the gradient by at most 0.25.",
                "Use tanh or ReLU in hidden layers (model.activation), or batch normalization.",
                layer=positive[0].name,
                details={s.name: s.to_dict() for s in positive},
            )
        )
    finite = [s for s in stats if math.isfinite(s.std)]
    if len(finite) >= 2:
        first, last = finite[0], finite[-1]
        ratio = last.std / first.std if first.std > 0 else math.inf
        trace = ", ".join(f"{s.std:.2g}" for s in finite)
        depth = {
            "first_std": first.std,
            "last_std": last.std,
            "ratio": ratio,
            "stds": [s.std for s in finite],
        }
        collapsed = ratio < thresholds.collapse_ratio or last.std < thresholds.collapse_abs
        explained = any(f.check == "activations.dead" and f.verdict == "problem" for f in out)
        if collapsed and explained:
            pass  # dead ReLUs already explain the zero activations
        elif collapsed:
            out.append(
                Finding(
                    "activations.depth",
                    "problem",
                    f"The activations collapse towards zero with depth: std {first.std:.3g} in "
                    f"'{first.name}' down to "
                    f"{last.std:.3g} in '{last.name}' (per layer: {trace}){current}. The weight gradients "
                    "are then "
                    "≈ 0 too and the network does not learn.",
                    f"The init is too small for this depth: use {init_words} (model.init: {init_value}) or "
                    "add batch "
                    "normalization.",
                    details=depth,
                )
            )
        elif ratio < thresholds.shrink_ratio:
            out.append(
                Finding(
                    "activations.depth",
                    "warning",
                    f"The activations shrink with depth: std {first.std:.3g} in '{first.name}' to "
                    f"{last.std:.3g} in "
                    f"'{last.name}' (per layer: {trace}){current}.",
                    f"Use {init_words} (model.init: {init_value}) or batch normalization.",
                    details=depth,
                )
            )
        elif ratio > thresholds.explode_ratio and any(s.kind not in SATURATING for s in finite):
            out.append(
                Finding(
                    "activations.depth",
                    "problem",
                    f"The activations grow with depth: std {first.std:.3g} in '{first.name}' to "
                    f"{last.std:.3g} in "
                    f"'{last.name}' (per layer: {trace}){current}; the loss will start huge and may "
                    "overflow.",
                    f"The init is too large: use {init_words} (model.init: {init_value}).",
                    details=depth,
                )
            )
    if not any(f.verdict != "ok" for f in out):
        sat = [s.saturated for s in stats if s.saturated is not None]
        dead = [s.dead for s in stats if s.dead is not None]
        parts = (
            [f"std from {finite[0].std:.3g} to {finite[-1].std:.3g} across {len(finite)} layer(s)"]
            if finite
            else []
        )
        if sat:
            parts.append(f"at most {pct(max(sat))} saturated")
        if dead:
            parts.append(f"at most {pct(max(dead))} dead units")
        out.append(
            Finding(
                "activations",
                "ok",
                "Activations at initialization look healthy: " + ", ".join(parts) + ".",
                details={s.name: s.to_dict() for s in stats},
            )
        )
    return out


# ============================================================================ gradients
def check_gradients(
    params: Sequence[ParamStats], thresholds: Thresholds = _DEFAULT, init_hint: tuple[str, str] | None = None
) -> list[Finding]:
    """Gradient norms per layer after one backward pass at initialization.

    Rules (AUTOTRAINER's thresholds): with g₁ the first (input-side) weight's gradient norm
    and g_L the last's, gradients *vanish* when g₁ / g_L < ``vanish_ratio`` and g₁ <
    ``vanish_first_norm``, or when every weight's gradient is below ``vanish_first_norm``;
    they *explode* when g₁ / g_L > ``explode_grad_ratio``. A layer where ≥ 70% of the weight
    gradients are exactly 0 is dying (ReLUs that never fire). NaN/inf anywhere is a problem.

    Args:
        params: :func:`gradcraft.diagnostics.stats.parameter_stats` after ``loss.backward()``.
        init_hint: ``(recipe value, words)`` of the init that fits the model.
    """
    init_value, init_words = init_hint or ("kaiming_normal", "He (Kaiming) init")
    out: list[Finding] = []
    bad = [p.name for p in params if not p.finite]
    if bad:
        out.append(
            Finding(
                "gradients",
                "problem",
                f"NaN/inf in the weights or gradients of {', '.join(bad)} at initialization.",
                "Check the inputs and the init scale.",
                details={"nonfinite": bad},
            )
        )
        return out
    weights = [p for p in params if p.is_weight and p.grad_norm is not None]
    if not weights:
        no_grad_at_all = all(p.grad_norm is None for p in params)
        out.append(
            Finding(
                "gradients",
                "problem" if no_grad_at_all else "warning",
                "No weight received a gradient: the loss is not connected to the parameters."
                if no_grad_at_all
                else "No weight matrix received a gradient.",
                "Check that the forward pass does not detach the graph (no_grad, .data, NumPy round trips).",
                details={},
            )
        )
        return out
    norms = {p.name: p.grad_norm for p in weights}
    rel = {p.name: (p.grad_norm / p.weight_norm if p.weight_norm > 0 else math.inf) for p in weights}
    first, last = weights[0], weights[-1]
    g1, gl = float(first.grad_norm or 0.0), float(last.grad_norm or 0.0)
    ratio = g1 / gl if gl > 0 else (math.inf if g1 > 0 else math.nan)
    details = {"grad_norms": norms, "grad_to_weight": rel, "first_to_last": ratio}
    trace = ", ".join(f"{v:.2g}" for v in norms.values())
    if all(v == 0 for v in norms.values()):
        out.append(
            Finding(
                "gradients",
                "problem",
                "Every weight gradient is exactly zero at initialization: nothing will learn.",
                "Look for dead ReLUs (see activations) or a loss that does not depend on the output.",
                details=details,
            )
        )
        return out
    if len(weights) >= 2 and (
        (ratio < thresholds.vanish_ratio and g1 < thresholds.vanish_first_norm)
        or max(norms.values()) < thresholds.vanish_first_norm
    ):
        everywhere = max(norms.values()) < thresholds.vanish_first_norm
        where, who = (
            ("everywhere", "no layer will learn")
            if everywhere
            else ("towards the input", "the early layers will not learn")
        )
        out.append(
            Finding(
                "gradients",
                "problem",
                f"Gradients vanish {where}: ‖∇W‖ is {g1:.2g} in '{first.layer}' and {gl:.2g} in "
                f"'{last.layer}' (per layer: {trace}); {who}.",
                f"Use {init_words} (model.init: {init_value}), ReLU instead of sigmoid/tanh in deep "
                "nets, batch normalization, or residual connections.",
                details=details,
            )
        )
    elif len(weights) >= 2 and ratio < thresholds.shrink_grad_ratio:
        out.append(
            Finding(
                "gradients",
                "warning",
                f"Gradients shrink towards the input: ‖∇W‖ is {g1:.2g} in '{first.layer}' but {gl:.2g} in "
                f"'{last.layer}' (ratio {ratio:.2g}; per layer: {trace}); the early layers learn slowly.",
                f"Use {init_words} (model.init: {init_value}); ReLU or tanh instead of sigmoid in hidden "
                "layers; batch normalization.",
                details=details,
            )
        )
    elif len(weights) >= 2 and ratio > thresholds.explode_grad_ratio:
        out.append(
            Finding(
                "gradients",
                "problem",
                f"Gradients explode towards the input: ‖∇W‖ is {g1:.2g} in '{first.layer}' but {gl:.2g} "
                f"in '{last.layer}' (ratio {ratio:.3g} > {thresholds.explode_grad_ratio:g}; per layer: "
                f"{trace}).",
                f"Use {init_words} (model.init: {init_value}), batch normalization, or gradient "
                "clipping (clip_grad_norm).",
                details=details,
            )
        )
    dying = [p for p in weights if p.grad_zero is not None and p.grad_zero >= 0.7]
    if dying:
        worst = max(dying, key=lambda p: p.grad_zero or 0.0)
        per_layer = ", ".join(f"'{p.name}' {pct(p.grad_zero)}" for p in dying)
        out.append(
            Finding(
                "gradients.zero",
                "problem" if (worst.grad_zero or 0.0) >= 0.9 else "warning",
                f"Many weight-gradient entries are exactly 0 ({per_layer}): the units feeding or fed by "
                "these weights are dead (dying ReLU).",
                "Check the biases and the init; try a leaky ReLU or a lower learning rate.",
                layer=worst.layer,
                details={p.name: p.grad_zero for p in dying},
            )
        )
    if not out:
        text = f"Gradient norms at initialization are balanced across depth (per layer: {trace}"
        text += f"; first/last ratio {ratio:.3g})." if len(weights) >= 2 else ")."
        out.append(Finding("gradients", "ok", text, details=details))
    return out


# ============================================================================ overfit a subset
@dataclass
class OverfitResult:
    """What happened when training on a small subset.

    Attributes:
        reached: the target training accuracy was reached.
        steps: optimizer steps taken.
        lr: the learning rate used.
        accuracy: the final training accuracy on the subset.
        loss: the final data loss.
        initial_loss: the loss before the first step.
        losses: the loss at every step.
        diverged: the loss became NaN/inf or grew far above its start.
    """

    reached: bool
    steps: int
    lr: float | None
    accuracy: float
    loss: float
    initial_loss: float
    losses: list[float] = field(default_factory=list)
    diverged: bool = False


def overfit_subset(
    model: Any,
    loss_fn: Callable[[Any, Any], Any],
    optimizer: Any,
    x: Any,
    y: Any,
    max_steps: int = 300,
    target_accuracy: float = 0.99,
    batch_size: int | None = None,
    lr: float | None = None,
    rng: np.random.Generator | None = None,
) -> OverfitResult:
    """Train ``model`` on the small set ``(x, y)`` with regularization off until the training
    accuracy reaches ``target_accuracy`` or ``max_steps`` steps pass.

    Full-batch steps by default (``batch_size=None``); the accuracy is read from each step's
    own forward pass, so it costs nothing extra.
    """
    xs, ys = to_numpy(x), to_numpy(y)
    n = xs.shape[0]
    rng = rng or np.random.default_rng(0)
    if lr is not None:
        set_lr(optimizer, lr)
    used_lr = None
    groups = getattr(optimizer, "param_groups", None)
    if groups:
        used_lr = float(groups[0]["lr"])
    losses: list[float] = []
    acc = 0.0
    initial = math.nan
    diverged = False
    steps = 0
    model.train()
    with regularization_off(model, optimizer):
        full = (as_tensor(xs), as_tensor(ys))
        for step in range(max_steps + 1):
            if batch_size is None or batch_size >= n:
                bx, by = full
            else:
                idx = rng.choice(n, batch_size, replace=False)
                bx, by = as_tensor(xs[idx]), as_tensor(ys[idx])
            out = model(bx)
            loss = loss_fn(out, by)
            value = loss_value(loss)
            losses.append(value)
            if step == 0:
                initial = value
            if batch_size is None or batch_size >= n:
                acc = accuracy(out, by)
            else:
                with no_grad():
                    acc = accuracy(model(full[0]), full[1])
            if not math.isfinite(value) or (
                math.isfinite(initial) and value > 10 * max(initial, 1e-3) and step > 5
            ):
                diverged = True
                break
            if acc >= target_accuracy or step == max_steps:
                break
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
    return OverfitResult(
        reached=acc >= target_accuracy and not diverged,
        steps=steps,
        lr=used_lr,
        accuracy=acc,
        loss=losses[-1] if losses else math.nan,
        initial_loss=initial,
        losses=losses,
        diverged=diverged,
    )


def check_overfit_subset(
    result: OverfitResult,
    retry: OverfitResult | None = None,
    thresholds: Thresholds = _DEFAULT,
    subset_size: int | None = None,
) -> Finding:
    """The verdict on :func:`overfit_subset`: ok when the subset was fitted; otherwise, if a
    ``retry`` with another learning rate (the range test's suggestion) fitted it, the
    learning rate is the problem; if neither did, the model, the loss or the gradients are.
    """
    n = f"{subset_size} " if subset_size else ""
    details: dict[str, Any] = {
        "steps": result.steps,
        "lr": result.lr,
        "accuracy": result.accuracy,
        "loss": result.loss,
        "initial_loss": result.initial_loss,
    }
    if result.reached:
        return Finding(
            "overfit_subset",
            "ok",
            f"With regularization off, the model fits a small subset of {n}samples: "
            f"{pct(result.accuracy)} training accuracy after {result.steps} steps at lr {fmt(result.lr)} "
            f"(loss {result.initial_loss:.3g} → {result.loss:.3g}).",
            details=details,
        )
    what = (
        f"the loss diverged (to {fmt(result.loss)})"
        if result.diverged
        else f"it reached only {pct(result.accuracy)} training accuracy after {result.steps} steps "
        f"(loss {result.initial_loss:.3g} → {result.loss:.3g})"
    )
    head = (
        f"With regularization off and lr {fmt(result.lr)}, the model cannot overfit a "
        f"small subset of {n}samples: {what}."
    )
    if retry is not None:
        details["retry"] = {
            "lr": retry.lr,
            "steps": retry.steps,
            "accuracy": retry.accuracy,
            "loss": retry.loss,
        }
        rescued = not retry.diverged and (
            retry.reached
            or (result.diverged and retry.accuracy >= 0.9)
            or retry.accuracy - result.accuracy >= 0.3
        )
        if rescued:
            direction = "too high" if (result.lr or 0) > (retry.lr or 0) else "too low"
            how = "does" if retry.reached else f"reaches {pct(retry.accuracy)}"
            return Finding(
                "overfit_subset",
                "problem",
                head + f" With lr {fmt(retry.lr)} it {how} in {retry.steps} "
                f"steps, so the learning rate is {direction}.",
                f"Set optimizer.lr to about {fmt(retry.lr)}.",
                details=details,
            )
        head += f" With lr {fmt(retry.lr)} it fails too ({pct(retry.accuracy)})."
    fell = (
        math.isfinite(result.loss)
        and math.isfinite(result.initial_loss)
        and result.loss < 0.5 * result.initial_loss
    )
    if fell and not result.diverged:
        return Finding(
            "overfit_subset",
            "warning",
            head + " The loss does fall, so it may need more steps or capacity.",
            "Try a larger model or a higher learning rate; a model that cannot memorize 100 samples "
            "will underfit the full data.",
            details=details,
        )
    return Finding(
        "overfit_subset",
        "problem",
        head + " The model barely learns: something in the model, the loss or the gradients is wrong.",
        "Check the loss takes logits and integer labels, the gradients reach every layer (see the "
        "gradients finding), and the learning rate.",
        details=details,
    )
