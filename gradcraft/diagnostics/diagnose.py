"""``diagnose``: the lectures' checklist before training, on a model factory and data.

::

    from gradcraft import nn, optim
    from gradcraft.diagnostics import diagnose, print_findings

    findings = diagnose(
        model_factory=lambda: nn.Sequential(nn.Linear(784, 100), nn.Tanh(), nn.Linear(100, 10)),
        loss=nn.CrossEntropyLoss(),
        train_x=x, train_y=y,                       # preprocessed inputs, class indices
        optimizer_factory=lambda params: optim.SGD(params, lr=0.1, momentum=0.9),
    )
    print_findings(findings)

Checks, in order (each can be skipped through ``checks``):

1. ``data`` — inputs centred and scaled, classes balanced, train/test duplicates;
2. ``initial_loss`` — ≈ ln C with regularization off; regularization raises it;
3. ``activations`` — per layer at init: mean, std, saturated, dead; collapse with depth;
4. ``gradients`` — per layer at init: vanishing / exploding across depth;
5. ``lr_range`` — the learning-rate range test and a suggested lr;
6. ``overfit`` — ~100% training accuracy on a small subset, regularization off (retried at
   the suggested lr when it fails, to tell a bad lr from a broken model).

Every model is built fresh from ``model_factory`` after seeding the library's generator, so
the checks do not disturb each other and repeat exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.diagnostics._common import as_tensor, configured_lr, fitting_init, model_kinds, penalty
from gradcraft.diagnostics.checks import (
    OverfitResult,
    check_activations,
    check_data,
    check_gradients,
    check_initial_loss,
    check_overfit_subset,
    overfit_subset,
)
from gradcraft.diagnostics.findings import Finding, findings_to_markdown
from gradcraft.diagnostics.lr_finder import LRRangeResult, check_learning_rate, lr_range_test
from gradcraft.diagnostics.stats import (
    ActivationRecorder,
    ActivationStats,
    ParamStats,
    parameter_stats,
    to_numpy,
)
from gradcraft.diagnostics.thresholds import DEFAULT_THRESHOLDS, Thresholds

__all__ = ["ALL_CHECKS", "DiagnosisReport", "diagnose", "diagnose_report"]

ALL_CHECKS: tuple[str, ...] = ("data", "initial_loss", "activations", "gradients", "lr_range", "overfit")


@dataclass
class DiagnosisReport:
    """The findings of :func:`diagnose_report` and the measurements behind them.

    Attributes:
        findings: every finding, in check order.
        activations: activation statistics per layer at initialization.
        params: parameter/gradient norms after one backward pass at initialization.
        lr_range: the range test's curve and landmarks.
        overfit: the subset run(s): the first at the configured lr, then the retry.
        title: heading for the markdown report.
    """

    findings: list[Finding] = field(default_factory=list)
    activations: list[ActivationStats] = field(default_factory=list)
    params: list[ParamStats] = field(default_factory=list)
    lr_range: LRRangeResult | None = None
    overfit: list[OverfitResult] = field(default_factory=list)
    title: str = "Diagnosis before training"

    def markdown(self, plots: dict[str, str] | None = None) -> str:
        """The report as markdown: findings, the activation table, links to ``plots``
        (name → relative path)."""
        lines = [f"# {self.title}", "", findings_to_markdown(self.findings)]
        if self.activations:
            lines += [
                "## Activations at initialization",
                "",
                "| layer | kind | mean | std | saturated | dead units |",
                "|---|---|---|---|---|---|",
            ]
            for s in self.activations:
                sat = "" if s.saturated is None else f"{100 * s.saturated:.1f}%"
                dead = "" if s.dead is None else f"{100 * s.dead:.1f}%"
                lines.append(
                    f"| `{s.name}` | {s.kind or '-'} | {s.mean:.3g} | {s.std:.3g} | {sat} | {dead} |"
                )
            lines.append("")
        weights = [p for p in self.params if p.is_weight and p.grad_norm is not None]
        if weights:
            lines += [
                "## Gradients at initialization",
                "",
                "| parameter | ‖W‖ | ‖∇W‖ | ‖∇W‖/‖W‖ |",
                "|---|---|---|---|",
            ]
            for p in weights:
                rel = (
                    p.grad_norm / p.weight_norm if p.weight_norm > 0 and p.grad_norm is not None else math.nan
                )
                lines.append(f"| `{p.name}` | {p.weight_norm:.3g} | {p.grad_norm:.3g} | {rel:.3g} |")
            lines.append("")
        for name, path in (plots or {}).items():
            lines += [f"![{name}]({path})", ""]
        return "\n".join(lines)

    def save(self, directory: str | Path, plots: bool = True) -> Path:
        """Write ``diagnosis.md`` (and, with matplotlib and ``plots``, PNG plots) into
        ``directory``; returns the markdown file's path."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, str] = {}
        if plots:
            from gradcraft.diagnostics import plots as P

            try:
                if self.activations:
                    P.plot_activation_histograms(
                        self.activations, out / "activations_init.png", title="Activations at initialization"
                    )
                    written["activation histograms"] = "activations_init.png"
                if self.lr_range is not None and self.lr_range.lrs:
                    P.plot_lr_range(self.lr_range, out / "lr_range.png")
                    written["learning-rate range test"] = "lr_range.png"
            except ImportError:
                written = {}
        path = out / "diagnosis.md"
        path.write_text(self.markdown(written), encoding="utf-8")
        return path


def _seed(seed: int | None) -> None:
    if seed is not None:
        backend.manual_seed(int(seed))


def _infer_classes(y: np.ndarray, num_classes: int | None) -> int:
    if num_classes:
        return int(num_classes)
    if y.ndim == 2:
        return int(y.shape[1])
    return int(y.max()) + 1 if y.size else 2


def _stratified_subset(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices with the classes as evenly represented as the data allow."""
    labels = y.argmax(axis=1) if y.ndim == 2 else y
    if n >= labels.shape[0]:
        return np.arange(labels.shape[0])
    classes = np.unique(labels)
    per = max(1, n // len(classes))
    chosen = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        chosen.append(rng.choice(idx, size=min(per, idx.size), replace=False))
    out = np.concatenate(chosen)
    if out.size < n:
        rest = np.setdiff1d(np.arange(labels.shape[0]), out)
        out = np.concatenate([out, rng.choice(rest, size=n - out.size, replace=False)])
    return np.sort(out[:n])


def diagnose_report(
    model_factory: Callable[[], Any],
    loss: Callable[[Any, Any], Any],
    train_x: Any,
    train_y: Any,
    optimizer_factory: Callable[[Iterable[Any]], Any],
    *,
    num_classes: int | None = None,
    regularizers: Sequence[Any] = (),
    test_x: Any = None,
    test_y: Any = None,
    raw_train_x: Any = None,
    raw_test_x: Any = None,
    lr: float | None = None,
    checks: Sequence[str] = ALL_CHECKS,
    stats_batch: int = 256,
    subset_size: int = 100,
    overfit_steps: int = 300,
    sweep_steps: int = 200,
    sweep_range: tuple[float, float] | None = None,
    batch_size: int = 64,
    init_name: str | None = None,
    seed: int = 0,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    log: Callable[[str], None] | None = None,
) -> DiagnosisReport:
    """Run the checklist and keep the measurements (see :func:`diagnose` for the arguments).

    Returns:
        A :class:`DiagnosisReport` (``.findings`` is what :func:`diagnose` returns).
    """
    unknown = [c for c in checks if c not in ALL_CHECKS]
    if unknown:
        raise ValueError(f"Expected checks among {ALL_CHECKS}. Received: {unknown}")
    say = log or (lambda msg: None)
    xs, ys = to_numpy(train_x), to_numpy(train_y)
    if xs.shape[0] != ys.shape[0]:
        raise ValueError(
            f"Expected as many targets as inputs. Received: x.shape={xs.shape}, y.shape={ys.shape}"
        )
    if xs.shape[0] == 0:
        raise ValueError("Expected a non-empty training set")
    c = _infer_classes(ys, num_classes)
    rng = np.random.default_rng(seed)
    report = DiagnosisReport()
    stats_idx = np.sort(rng.choice(xs.shape[0], size=min(stats_batch, xs.shape[0]), replace=False))
    bx, by = xs[stats_idx], ys[stats_idx]

    def fresh() -> tuple[Any, Any]:
        _seed(seed)
        model = model_factory()
        return model, optimizer_factory(model.parameters())

    probe_model, probe_opt = fresh()
    lr_cfg = lr if lr is not None else configured_lr(probe_opt)
    kinds = model_kinds(probe_model)
    init_hint = fitting_init(kinds)

    if "data" in checks:
        say("checking the data (scaling, class balance, duplicates)")
        report.findings += check_data(xs, ys, test_x, test_y, c, thresholds, raw_train_x, raw_test_x)
    if "initial_loss" in checks:
        say("checking the initial loss")
        report.findings += check_initial_loss(probe_model, loss, bx, by, c, regularizers, thresholds)
    if "activations" in checks or "gradients" in checks:
        say("measuring activations and gradients at initialization")
        model, _ = fresh()
        model.train()
        with ActivationRecorder(model) as rec:
            out = model(as_tensor(bx))
        report.activations = rec.stats()
        data_loss = loss(out, as_tensor(by))
        reg = penalty(regularizers, model)
        total = data_loss if reg is None else data_loss + reg
        model.zero_grad()
        if math.isfinite(float(to_numpy(total).reshape(-1)[0])) and getattr(total, "requires_grad", False):
            total.backward()
        report.params = parameter_stats(model)
        if "activations" in checks:
            report.findings += check_activations(report.activations, thresholds, init_name)
        if "gradients" in checks:
            report.findings += check_gradients(report.params, thresholds, init_hint)
    if "lr_range" in checks:
        if sweep_range is not None:
            start, end = sweep_range
        elif lr_cfg is not None:  # around the configured rate, and well past it, so its verdict is measured
            start, end = 1e-5 * lr_cfg, max(10.0, 100.0 * lr_cfg)
        else:
            start, end = 1e-7, 10.0
        say(f"learning-rate range test ({sweep_steps} steps from {start:g} to {end:g})")
        model, opt = fresh()
        report.lr_range = lr_range_test(
            model,
            loss,
            opt,
            xs,
            ys,
            start_lr=start,
            end_lr=end,
            num_steps=sweep_steps,
            batch_size=batch_size,
            diverge_factor=thresholds.lr_diverge_factor,
            regularizers=regularizers,
            rng=np.random.default_rng(seed),
        )
        report.findings.append(check_learning_rate(report.lr_range, lr_cfg, thresholds))
    if "overfit" in checks:
        sub = _stratified_subset(ys, subset_size, np.random.default_rng(seed))
        sx, sy = xs[sub], ys[sub]
        say(f"overfitting {sub.size} samples (at most {overfit_steps} steps)")
        model, opt = fresh()
        first = overfit_subset(
            model,
            loss,
            opt,
            sx,
            sy,
            max_steps=overfit_steps,
            target_accuracy=thresholds.overfit_accuracy,
            lr=lr,
        )
        report.overfit.append(first)
        retry = None
        suggested = (
            report.lr_range.suggested_lr
            if report.lr_range is not None and report.lr_range.descended
            else None
        )
        if (
            not first.reached
            and suggested is not None
            and first.lr is not None
            and not 0.5 < suggested / first.lr < 2.0
        ):
            say(f"retrying the subset at the suggested lr {suggested:.3g}")
            model, opt = fresh()
            retry = overfit_subset(
                model,
                loss,
                opt,
                sx,
                sy,
                max_steps=overfit_steps,
                target_accuracy=thresholds.overfit_accuracy,
                lr=suggested,
            )
            report.overfit.append(retry)
        report.findings.append(check_overfit_subset(first, retry, thresholds, int(sub.size)))
    _link_consequences(report.findings)
    return report


def _link_consequences(findings: list[Finding]) -> None:
    """When the model is already broken or weak at initialization (activation or gradient
    findings), say so in the range-test and subset findings that fail because of it."""
    at_init = [f for f in findings if f.check.startswith(("activations", "gradients")) and f.verdict != "ok"]
    if not at_init:
        return
    names = ", ".join(dict.fromkeys(f.check for f in at_init))
    if any(f.verdict == "problem" for f in at_init):
        note = (
            " This is most likely a consequence of the problem(s) found at initialization "
            f"({names}); fix those first."
        )
    else:
        note = f" The warning(s) found at initialization ({names}) are the likely reason."
    for f in findings:
        lr_named = "learning rate is too" in f.summary
        if f.verdict == "problem" and f.check in ("lr_range", "overfit_subset") and not lr_named:
            f.summary += note


def diagnose(
    model_factory: Callable[[], Any],
    loss: Callable[[Any, Any], Any],
    train_x: Any,
    train_y: Any,
    optimizer_factory: Callable[[Iterable[Any]], Any],
    **kwargs: Any,
) -> list[Finding]:
    """Run the lectures' checklist before training and return the findings.

    Args:
        model_factory: ``() -> Module``, a freshly initialized model on each call (the
            library's generator is reseeded with ``seed`` before each call).
        loss: the data loss, ``loss(logits, y) -> scalar Tensor`` (e.g.
            ``nn.CrossEntropyLoss()``).
        train_x, train_y: preprocessed training inputs (N, …) and targets (N,) as the model
            consumes them (arrays or Tensors).
        optimizer_factory: ``(params) -> optimizer`` (PyTorch-like: ``param_groups`` with
            ``"lr"``, ``zero_grad()``, ``step()``).

    Keyword Args:
        num_classes: C (default: inferred from ``train_y``).
        regularizers: penalties ``reg(model) -> Tensor``, as the trainer takes them; off for
            the initial-loss and subset checks, on in the range test.
        test_x, test_y: a held-out set, for the duplicate check.
        raw_train_x, raw_test_x: the data before preprocessing (hashed for duplicates).
        lr: the learning rate training will use (default: the optimizer's).
        checks: a subset of :data:`ALL_CHECKS`.
        stats_batch: batch size for the initial-loss, activation and gradient checks (256).
        subset_size: samples in the overfitting check (100).
        overfit_steps: most steps for it (300).
        sweep_steps, sweep_range, batch_size: the range test (200 steps, 64 per batch; the range
            defaults to 1e-7 → 10, widened to 1e-5·lr → 100·lr around the configured lr).
        init_name: the init in use, quoted in findings.
        seed: seeds the models and the sampling.
        thresholds: a :class:`Thresholds`.
        log: ``log(message)`` receives a progress line before each check.

    Returns:
        The findings, in check order; each has ``verdict`` ok / warning / problem.
    """
    return diagnose_report(model_factory, loss, train_x, train_y, optimizer_factory, **kwargs).findings
