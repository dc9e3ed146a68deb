"""Ablations: one recipe, some keys varied, every variant trained under the same seed and
budget, one report — what ``gradcraft ablate RECIPE --vary KEY=V1,V2 --budget ...`` runs.

::

    result = run_ablation("recipes/ablations/activations.yaml",
                          vary=["model.activation=relu,tanh,sigmoid"], budget="epochs=2,subset=10000",
                          out_dir="runs/ablate-activations")
    print(result.markdown())

* ``vary``: ``KEY=V1,V2,…`` strings; values are YAML (``0.1``, ``true``, ``[256, 256]``);
  commas inside brackets do not split. Several ``vary`` give every combination. The key
  ``with`` varies several keys together: ``with={},{model.dropout: 0.5},{optimizer.name: sgd}``.
* ``budget``: ``KEY=VALUE`` pairs applied to every variant, with shorthands ``epochs`` and
  ``subset`` (= ``data.subset``, the number of training examples); e.g. ``epochs=2,subset=6000``.
* An ablation recipe may carry its defaults in comment lines ``# vary: KEY=V1,V2`` and
  ``# budget: ...``, used when none are given.

Each variant runs as a normal recipe run in ``OUT/<variant>/`` (metrics.jsonl, checkpoints,
results.json; TensorBoard, per-run plots and reports off). ``OUT/ablation.md`` holds the table
— final and best validation accuracy, the gap between training and validation accuracy,
epochs to a target validation accuracy, steps until the smoothed training loss stays below a
target, time, and the learning-curve diagnosis — and ``OUT/curves.png`` / ``OUT/steps.png``
the overlaid curves.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradcraft.diagnostics.curves import classify_learning_curves
from gradcraft.diagnostics.findings import _jsonable

__all__ = [
    "AblationResult",
    "VariantResult",
    "expand_variants",
    "parse_budget",
    "parse_vary",
    "recipe_defaults",
    "run_ablation",
    "smoothed",
    "steps_to_loss",
]

_BUDGET_KEYS = {"epochs": "epochs", "subset": "data.subset", "batch_size": "batch_size", "seed": "seed"}


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside brackets or quotes."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def _yaml_value(raw: str) -> Any:
    import yaml

    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ValueError(f"Expected a YAML value. Received: {raw!r} ({err})") from None
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
    return value


def parse_vary(spec: str) -> tuple[str, list[Any]]:
    """``"model.activation=relu,tanh"`` → ``("model.activation", ["relu", "tanh"])``.

    Raises:
        ValueError: without ``=``, a key or at least one value.
    """
    key, sep, values = spec.partition("=")
    key = key.strip()
    if not sep or not key or not values.strip():
        raise ValueError(f"Expected --vary KEY=V1,V2,… (e.g. model.activation=relu,tanh). Received: {spec!r}")
    return key, [_yaml_value(v) for v in _split_top(values)]


def parse_budget(spec: str | Sequence[str] | None) -> list[str]:
    """Budget pairs as ``key.path=value`` overrides (``epochs`` and ``subset`` shorthands).

    Raises:
        ValueError: for an item without ``=``.
    """
    if spec is None:
        return []
    items = _split_top(spec) if isinstance(spec, str) else [i for s in spec for i in _split_top(s)]
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"Expected --budget KEY=VALUE[,KEY=VALUE] (e.g. epochs=2,subset=6000). Received: {item!r}"
            )
        out.append(f"{_BUDGET_KEYS.get(key.strip(), key.strip())}={value.strip()}")
    return out


def _label_value(v: Any) -> str:
    """A short readable form of a varied value (``l2(weight=0.0005)``, ``hflip+affine(...)``)."""
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "+".join(_label_value(x) for x in v) or "none"
    if isinstance(v, dict):
        rest = ",".join(f"{k}={_label_value(x)}" for k, x in v.items() if k != "type")
        if "type" in v:
            return f"{v['type']}({rest})" if rest else str(v["type"])
        return rest
    return str(v)


def expand_variants(vary: Sequence[str]) -> list[dict[str, Any]]:
    """Every combination of the varied values: a list of ``{key: value}`` dicts.

    The special key ``with`` varies several keys together: each of its values is a mapping
    of keys to values (``{}`` is the unchanged recipe), e.g.
    ``with={},{model.dropout: 0.5},{optimizer.name: sgd, optimizer.momentum: 0.0}``.

    Raises:
        ValueError: when a key is varied twice or a ``with`` value is not a mapping.
    """
    axes = [parse_vary(v) for v in vary]
    keys = [k for k, _ in axes]
    if len(set(keys)) != len(keys):
        raise ValueError(f"Expected each key varied once. Received: {keys}")
    out = []
    for combo in itertools.product(*(vals for _, vals in axes)):
        variant: dict[str, Any] = {}
        for key, value in zip(keys, combo):
            if key == "with":
                if not isinstance(value, dict):
                    raise ValueError(f"Expected mappings as values of 'with'. Received: {value!r}")
                variant.update({str(k): v for k, v in value.items()})
            else:
                variant[key] = value
        out.append(variant)
    return out


def recipe_defaults(path: str | os.PathLike[str]) -> tuple[list[str], str | None]:
    """The ``# vary: ...`` lines and the ``# budget: ...`` line of a recipe file."""
    vary: list[str] = []
    budget = None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\s*#\s*(vary|budget)\s*:\s*(.+?)\s*$", line)
        if m:
            if m.group(1) == "vary":
                vary.append(m.group(2))
            else:
                budget = m.group(2)
    return vary, budget


def smoothed(values: Sequence[float], beta: float = 0.9) -> np.ndarray:
    """Debiased exponential moving average of a series (NaN/inf carried as NaN)."""
    out = np.full(len(values), np.nan)
    avg, n = 0.0, 0
    for i, v in enumerate(values):
        if not math.isfinite(v):
            continue
        n += 1
        avg = beta * avg + (1 - beta) * v
        out[i] = avg / (1 - beta**n)
    return out


def steps_to_loss(steps: Sequence[int], losses: Sequence[float], target: float) -> int | None:
    """The step from which the smoothed training loss stays at or below ``target`` until the
    end of the run (a noisy dip below it that does not last does not count); ``None`` if the
    run ends above it."""
    sm = smoothed(losses)
    if not len(sm) or not sm[-1] <= target:
        return None
    above = np.flatnonzero(~(sm <= target))
    first = int(above[-1]) + 1 if above.size else 0
    return int(steps[first])


@dataclass
class VariantResult:
    """One variant's outcome.

    Attributes:
        label: short name (``activation=tanh``).
        overrides: the recipe keys it set.
        epochs: per-epoch metric series (the run's history).
        steps: step series ``name -> (steps, values)`` (the training loss per step).
        results: the run's ``results.json`` (test accuracy, wall time, …).
        train_eval_accuracy: accuracy of the tested weights on training examples in
            evaluation mode (for the train/validation gap).
        seconds: wall time of the run.
        error: why the run failed (empty if it did not).
    """

    label: str
    overrides: dict[str, Any]
    epochs: dict[str, list[float]] = field(default_factory=dict)
    steps: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    train_eval_accuracy: float | None = None
    seconds: float = 0.0
    error: str = ""

    def series(self, name: str) -> list[float]:
        return list(self.epochs.get(name, []))

    @property
    def final_val_accuracy(self) -> float | None:
        v = [x for x in self.series("val_accuracy") if math.isfinite(x)]
        return v[-1] if v else None

    @property
    def best_val_accuracy(self) -> tuple[float | None, int | None]:
        v = self.series("val_accuracy")
        finite = [(x, i) for i, x in enumerate(v) if math.isfinite(x)]
        if not finite:
            return None, None
        best, i = max(finite)
        return best, i + 1

    def epochs_to(self, target: float) -> int | None:
        """First epoch (1-based) whose validation accuracy reaches ``target``."""
        for i, x in enumerate(self.series("val_accuracy")):
            if math.isfinite(x) and x >= target:
                return i + 1
        return None

    @property
    def gap(self) -> float | None:
        """Training minus validation accuracy (of the tested weights when measured)."""
        best, _ = self.best_val_accuracy
        if self.train_eval_accuracy is not None and best is not None:
            return self.train_eval_accuracy - best
        tr = [
            x for x in self.series("train_eval_accuracy") or self.series("train_accuracy") if math.isfinite(x)
        ]
        va = self.final_val_accuracy
        return tr[-1] - va if tr and va is not None else None


@dataclass
class AblationResult:
    """All variants of an ablation and how to report them.

    Attributes:
        name: the base recipe's name.
        variants: one :class:`VariantResult` per combination, in order.
        budget: the budget overrides applied to every variant.
        target_accuracy: the validation accuracy "epochs to target" counts to.
        target_loss: the smoothed training loss "steps to target" counts to.
        out_dir: where the report was written.
        num_classes: C (for the curve diagnosis).
    """

    name: str
    variants: list[VariantResult]
    budget: list[str]
    target_accuracy: float | None = None
    target_loss: float | None = None
    out_dir: Path | None = None
    num_classes: int | None = None

    def table(self) -> list[dict[str, Any]]:
        """One row per variant, the numbers of the report."""
        rows = []
        for v in self.variants:
            best, best_epoch = v.best_val_accuracy
            steps, losses = v.steps.get("loss", ([], []))
            diag = classify_learning_curves(v.epochs, self.num_classes) if v.epochs else None
            rows.append(
                {
                    "variant": v.label,
                    "final_val_accuracy": v.final_val_accuracy,
                    "best_val_accuracy": best,
                    "best_epoch": best_epoch,
                    "test_accuracy": v.results.get("test_accuracy"),
                    "gap": v.gap,
                    "epochs_to_target": None
                    if self.target_accuracy is None
                    else v.epochs_to(self.target_accuracy),
                    "steps_to_target_loss": None
                    if self.target_loss is None or not steps
                    else steps_to_loss(steps, losses, self.target_loss),
                    "final_train_loss": float(smoothed(losses)[-1]) if losses else None,
                    "seconds": v.seconds,
                    "diagnosis": None if diag is None else diag.details.get("diagnosis"),
                    "error": v.error,
                }
            )
        return rows

    def markdown(self, plots: Mapping[str, str] | None = None) -> str:
        """The ablation report: budget, table, notes and plots."""

        def pct(x: Any) -> str:
            return "–" if x is None or not math.isfinite(x) else f"{100 * x:.2f}%"

        def num(x: Any, f: str = "{:.3g}") -> str:
            return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f.format(x)

        lines = [f"# Ablation of '{self.name}'", ""]
        lines.append(
            f"Budget: {', '.join(self.budget) if self.budget else 'as in the recipe'}; same seed for "
            "every variant."
        )
        if self.target_accuracy is not None:
            lines.append(f"Target validation accuracy: {pct(self.target_accuracy)}.")
        if self.target_loss is not None:
            lines.append(f"Target training loss (smoothed): {self.target_loss:.3g}.")
        lines += [
            "",
            "| variant | final val acc | best val acc (epoch) | test acc | train−val gap | epochs to "
            "target | steps to target loss | final train loss | time | curves |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.table():
            best = f"{pct(r['best_val_accuracy'])} ({r['best_epoch']})" if r["best_epoch"] else "–"
            gap = "–" if r["gap"] is None else f"{100 * r['gap']:+.1f} pts"
            diag = (r["diagnosis"] or "–").replace("_", " ")
            if r["error"]:
                diag = f"failed: {r['error']}"
            lines.append(
                f"| {r['variant']} | {pct(r['final_val_accuracy'])} | {best} | {pct(r['test_accuracy'])} | "
                f"{gap} | {num(r['epochs_to_target'], '{}')} | {num(r['steps_to_target_loss'], '{}')} | "
                f"{num(r['final_train_loss'])} | {r['seconds']:.0f} s | {diag} |"
            )
        lines += [
            "",
            "Gap: accuracy on training examples (evaluation mode, the tested weights) minus the best "
            "validation accuracy. Steps to target loss: the step from which the smoothed training loss stays "
            "at or below the target. Curves: the learning-curve diagnosis (see "
            "`gradcraft.diagnostics.curves`).",
            "",
        ]
        for title, path in (plots or {}).items():
            lines += [f"![{title}]({path})", ""]
        return "\n".join(lines)

    def save(self, directory: str | Path | None = None, plots: bool = True) -> Path:
        """Write ``ablation.md``, ``ablation.json`` and (with matplotlib) the overlaid curves."""
        out = Path(directory) if directory is not None else self.out_dir
        if out is None:
            raise ValueError("Expected a directory to save the ablation report in")
        out.mkdir(parents=True, exist_ok=True)
        written: dict[str, str] = {}
        if plots:
            from gradcraft.diagnostics import plots as P

            try:
                P.pyplot()
            except ImportError:
                plots = False
            if plots:
                runs = {v.label: v.epochs for v in self.variants if v.epochs}
                if runs:
                    P.plot_overlaid_curves(
                        runs, out / "curves.png", metrics=("val_accuracy", "val_loss", "train_loss")
                    )
                    written["Per-epoch curves"] = "curves.png"
                step_runs = {v.label: v.steps["loss"] for v in self.variants if v.steps.get("loss")}
                if step_runs:
                    _plot_steps(step_runs, out / "steps.png", self.target_loss)
                    written["Training loss per step (smoothed)"] = "steps.png"
        document = _jsonable(
            {
                "name": self.name,
                "budget": self.budget,
                "target_accuracy": self.target_accuracy,
                "target_loss": self.target_loss,
                "rows": self.table(),
                "variants": {
                    v.label: {"overrides": v.overrides, "epochs": v.epochs, "steps": v.steps}
                    for v in self.variants
                },
            }
        )
        (out / "ablation.json").write_text(
            json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8"
        )
        path = out / "ablation.md"
        path.write_text(self.markdown(written), encoding="utf-8")
        return path


def _plot_steps(
    runs: Mapping[str, tuple[Sequence[int], Sequence[float]]], path: Path, target: float | None
) -> None:
    from gradcraft.diagnostics.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (steps, values) in runs.items():
        ax.plot(list(steps), smoothed(values), label=label, lw=1.3)
    if target is not None:
        ax.axhline(target, color="k", ls="--", lw=1, label=f"target {target:.3g}")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _experiment_train(recipe: Any, run_dir: Path, base_dir: Path | None) -> dict[str, Any]:
    """Train one variant with :class:`gradcraft.train.experiment.Experiment`."""
    from gradcraft.data import DataLoader
    from gradcraft.train import NonFiniteLossError
    from gradcraft.train.experiment import Experiment

    exp = Experiment(recipe, run_dir, quiet=True, recipe_dir=base_dir)
    error = ""
    results: dict[str, Any] = {}
    try:
        results = exp.train()
    except NonFiniteLossError as err:
        error = "loss became NaN/inf" + (f" at step {err.step}" if hasattr(err, "step") else "")
    trainer = exp.trainer
    train_eval = None
    if trainer is not None and exp.data is not None and not error:
        n = min(len(exp.data.train), 5000)
        loader = DataLoader(
            exp.data.train.subset(np.arange(n)),
            batch_size=recipe.eval_batch_size,
            transform=exp.eval_transform,
        )
        train_eval = float(trainer.evaluate(loader, prefix="train_eval")["train_eval_accuracy"])
    history = trainer.history if trainer is not None else None
    return {
        "epochs": {} if history is None else {k: list(v) for k, v in history.epochs.items()},
        "steps": {} if history is None else {k: (list(s), list(v)) for k, (s, v) in history.steps.items()},
        "results": results,
        "train_eval_accuracy": train_eval,
        "num_classes": None if exp.data is None else exp.data.num_classes,
        "error": error,
    }


def run_ablation(
    recipe: Any,
    vary: Sequence[str] = (),
    budget: str | Sequence[str] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    overrides: Sequence[str] = (),
    target_accuracy: float | None = None,
    target_loss: float | None = None,
    plots: bool = True,
    log: Callable[[str], None] | None = print,
    train_fn: Callable[[Any, Path, Path | None], dict[str, Any]] | None = None,
) -> AblationResult:
    """Train every variant of ``recipe`` and write one report.

    Args:
        recipe: a recipe file or shipped name (its ``# vary:`` / ``# budget:`` comment lines
            are the defaults), a dict or a ``Recipe``.
        vary: ``KEY=V1,V2,…`` strings (all combinations are run).
        budget: ``KEY=VALUE`` pairs for every variant (``epochs``, ``subset`` shorthands).
        out_dir: the ablation directory (default ``runs/ablate-<name>``); each variant runs in
            a subdirectory named after it, which must not hold a run yet.
        overrides: ``--set``-style overrides applied to every variant before the budget.
        target_accuracy: validation accuracy for "epochs to target" (default: 95% of the
            best validation accuracy any variant reached).
        target_loss: smoothed training loss for "steps to target" (default: 1.25 × the
            highest final smoothed loss among the variants that learned, so each of them
            reaches it).
        plots: write the overlaid curves (needs matplotlib).
        log: receives a line per variant (``None``: silent).
        train_fn: ``(recipe, run_dir, recipe_dir) -> dict`` training one variant (default:
            :class:`~gradcraft.train.experiment.Experiment`); returns ``epochs``, ``steps``,
            ``results``, ``train_eval_accuracy``, ``num_classes``, ``error``.

    Raises:
        ValueError: without anything to vary, or for malformed ``vary`` / ``budget``.
    """
    from gradcraft import config
    from gradcraft.diagnostics.run import load_recipe_any

    say = log or (lambda msg: None)
    if isinstance(recipe, (str, os.PathLike)):
        path = config.find_recipe(recipe)
        default_vary, default_budget = recipe_defaults(path)
        vary = list(vary) or default_vary
        budget = budget if budget is not None else default_budget
    if not vary:
        raise ValueError("Expected at least one --vary KEY=V1,V2,… (none given and none in the recipe)")
    budget_overrides = parse_budget(budget)
    base, base_dir = load_recipe_any(recipe, list(overrides) + budget_overrides)
    variants = expand_variants(vary)
    out = Path(out_dir) if out_dir is not None else Path("runs") / f"ablate-{base.name}"
    out.mkdir(parents=True, exist_ok=True)
    train = train_fn or _experiment_train
    results: list[VariantResult] = []
    num_classes = None
    for i, combo in enumerate(variants):
        label = ",".join(f"{k.split('.')[-1]}={_label_value(v)}" for k, v in combo.items()) or "baseline"
        safe = re.sub(r"[^A-Za-z0-9_.=,-]+", "_", label).replace(",", "_").replace("=", "-")
        data = config.apply_overrides(base.to_dict(), [f"{k}={json.dumps(v)}" for k, v in combo.items()])
        data["name"] = f"{base.name}-{safe}"
        data.setdefault("logging", {})
        data["logging"].update(
            {"tensorboard": False, "histograms": False, "plots": False, "report": False, "progress": "none"}
        )
        variant_recipe = config.parse_recipe(data, source=f"variant {label}")
        say(f"[{i + 1}/{len(variants)}] {label}")
        started = time.perf_counter()
        outcome = train(variant_recipe, out / safe, base_dir)
        seconds = time.perf_counter() - started
        num_classes = outcome.get("num_classes") or num_classes
        v = VariantResult(
            label=label,
            overrides=combo,
            epochs=outcome.get("epochs", {}),
            steps=outcome.get("steps", {}),
            results=outcome.get("results", {}),
            train_eval_accuracy=outcome.get("train_eval_accuracy"),
            seconds=seconds,
            error=outcome.get("error", ""),
        )
        best, _ = v.best_val_accuracy
        say(
            f"    best val accuracy {'–' if best is None else f'{100 * best:.2f}%'} in {seconds:.0f} s"
            + (f" ({v.error})" if v.error else "")
        )
        results.append(v)
    res = AblationResult(
        name=base.name, variants=results, budget=budget_overrides, out_dir=out, num_classes=num_classes
    )
    bests = [b for b in (v.best_val_accuracy[0] for v in results) if b is not None]
    res.target_accuracy = (
        target_accuracy if target_accuracy is not None else (round(0.95 * max(bests), 4) if bests else None)
    )
    if target_loss is None:
        ends = []
        for v in results:
            _, losses = v.steps.get("loss", ([], []))
            sm = smoothed(losses)
            if losses and np.isfinite(sm).any():
                end, first = float(sm[-1]), float(sm[np.isfinite(sm)][0])
                if end < 0.7 * first:  # only variants that learned set the bar
                    ends.append(end)
        target_loss = round(1.25 * max(ends), 4) if ends else None
    res.target_loss = target_loss
    path = res.save(out, plots=plots)
    say(f"ablation report: {path}")
    return res
