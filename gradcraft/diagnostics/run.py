"""``run_diagnose``: the checklist on a recipe — what ``gradcraft diagnose RECIPE`` runs.

The recipe's data are loaded and preprocessed as training would (statistics fitted on the
training split), its model is built by :func:`gradcraft.models.build_model`, its optimizer,
loss and regularizers by the same builders the trainer uses; then
:func:`~gradcraft.diagnostics.diagnose_report` runs on a random subset of the training split
(``max_samples``, 10 000 by default) while the data checks see all of it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradcraft.diagnostics.checks import check_class_balance, check_duplicates, check_input_scaling
from gradcraft.diagnostics.diagnose import ALL_CHECKS, DiagnosisReport, diagnose_report
from gradcraft.diagnostics.findings import print_findings
from gradcraft.diagnostics.thresholds import DEFAULT_THRESHOLDS, Thresholds

__all__ = ["load_recipe_any", "run_diagnose"]


class _Params:
    """Stands in for a model where a builder wants ``model.parameters()``."""

    def __init__(self, params: Iterable[Any]) -> None:
        self._params = list(params)

    def parameters(self) -> list[Any]:
        return self._params


def load_recipe_any(recipe: Any, overrides: Sequence[str] = ()) -> tuple[Any, Path | None]:
    """A validated recipe from a path or shipped-recipe name, a dict or a ``Recipe``;
    returns ``(recipe, directory of the recipe file or None)``."""
    from gradcraft import config

    if isinstance(recipe, (str, os.PathLike)):
        path = config.find_recipe(recipe)
        return config.load_recipe(path, overrides), Path(path).resolve().parent
    if isinstance(recipe, dict):
        data = config.apply_overrides(dict(recipe), overrides) if overrides else recipe
        return config.parse_recipe(data), None
    if overrides:
        data = config.apply_overrides(recipe.to_dict(), overrides)
        return config.parse_recipe(data), None
    return recipe, None


def run_diagnose(
    recipe: Any,
    overrides: Sequence[str] = (),
    out_dir: str | os.PathLike[str] | None = None,
    *,
    checks: Sequence[str] = ALL_CHECKS,
    max_samples: int = 10000,
    quick: bool = False,
    plots: bool = True,
    print_results: bool = True,
    log: Callable[[str], None] | None = print,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> DiagnosisReport:
    """Diagnose a recipe before training it.

    Args:
        recipe: a recipe file, a shipped recipe's name, a dict or a ``Recipe``.
        overrides: ``key.path=value`` overrides (as ``--set``).
        out_dir: where to write ``diagnosis.md`` and its plots (nothing written if None).
        checks: which checks to run (see :data:`~gradcraft.diagnostics.ALL_CHECKS`).
        max_samples: training examples the model checks draw from.
        quick: fewer steps (range test 100, subset 64 samples / 150 steps) for smoke tests.
        plots: write PNG plots with the report (needs matplotlib).
        print_results: print the findings when done.
        log: receives progress lines (``None``: silent).
        thresholds: verdict thresholds.

    Returns:
        The :class:`DiagnosisReport`; ``report.findings`` holds the verdicts.
    """
    from gradcraft import nn
    from gradcraft.data import to_float
    from gradcraft.models import build_model
    from gradcraft.train.experiment import (
        build_optimizer,
        build_preprocessor,
        build_regularizers,
        load_data,
    )

    say = log or (lambda msg: None)
    started = time.perf_counter()
    r, base_dir = load_recipe_any(recipe, overrides)
    say(f"diagnosing recipe '{r.name}': loading {r.data.dataset}")
    bundle = load_data(r.data, r.seed, base_dir)
    pre = build_preprocessor(r.data.preprocessing, bundle.train)
    n = len(bundle.train)
    rng = np.random.default_rng([r.seed, 7])
    idx = np.sort(rng.choice(n, size=min(max_samples, n), replace=False))
    x_raw, y = bundle.train.x[idx], np.asarray(bundle.train.y[idx])
    x = to_float(x_raw)
    if pre is not None:
        x = np.asarray(pre(x), dtype=np.float32)

    def model_factory() -> Any:
        return build_model(r.model, bundle.input_shape, bundle.num_classes)

    def optimizer_factory(params: Iterable[Any]) -> Any:
        return build_optimizer(r.optimizer, _Params(params))

    findings = []
    if "data" in checks:
        say("checking the data (scaling, class balance, train/test duplicates)")
        findings.append(check_input_scaling(x, thresholds))
        findings.append(check_class_balance(bundle.train.y, bundle.num_classes, thresholds))
        findings.append(
            check_duplicates(bundle.train.x, bundle.test.x, bundle.train.y, bundle.test.y, thresholds)
        )
    kwargs: dict[str, Any] = {}
    if quick:
        kwargs.update(sweep_steps=100, subset_size=64, overfit_steps=150)
    report = diagnose_report(
        model_factory,
        nn.CrossEntropyLoss(label_smoothing=r.loss.label_smoothing),
        x,
        y,
        optimizer_factory,
        num_classes=bundle.num_classes,
        regularizers=build_regularizers(r.regularizers),
        checks=[c for c in checks if c != "data"],
        batch_size=min(r.batch_size, 128),
        init_name=r.model.init,
        seed=r.seed,
        thresholds=thresholds,
        log=say,
        **kwargs,
    )
    report.findings = findings + report.findings
    report.title = f"Diagnosis of recipe '{r.name}'"
    elapsed = time.perf_counter() - started
    say(f"diagnosis took {elapsed:.1f} s")
    if out_dir is not None:
        path = report.save(out_dir, plots=plots)
        say(f"report: {path}")
    if print_results:
        print_findings(report.findings, title=report.title)
    return report
