"""What a search leaves in its run directory.

::

    trials.csv          every trial of every stage, sorted by validation accuracy per stage
    best_recipe.yaml    the recipe with the best trial's values (``gradcraft train`` runs it)
    plots/params-STAGE.png   each hyperparameter against validation accuracy (log x-axis for
                             log axes; the next stage's narrowed range shaded)
    plots/history.png   validation accuracy of each trial in order, with the running best
    report.md           all of the above tied together
    trials/STAGE/NNNN/  each trial's recipe.yaml and metrics.jsonl
    study.db            the Optuna study (SQLite), unless --storage points elsewhere
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gradcraft.io.checkpoint import atomic_write_text
from gradcraft.tune.space import Categorical, IntRange, yaml_text

__all__ = ["format_table", "plot_history", "plot_params", "write_outputs"]

_STATE_STYLE = {
    "complete": ("tab:blue", "o"),
    "pruned": ("tab:orange", "v"),
    "exploded": ("tab:red", "x"),
}


def _pct(x: Any) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.2f}%"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return v if isinstance(v, str) else yaml_text(v)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def format_table(rows: Sequence[dict[str, Any]], keys: Sequence[str], markdown: bool = False) -> str:
    """Trials as a text (or markdown) table: trial, state, validation accuracy, best epoch,
    epochs run, every searched key, seconds and the stop reason."""
    head = ["trial", "state", "val acc", "best epoch", "epochs", *keys, "time", "note"]
    body = []
    for r in rows:
        note = r["reason"] if r["state"] != "complete" else ""
        body.append(
            [
                str(r["trial"]),
                r["state"],
                _pct(r["val_accuracy"]),
                "–" if r["best_epoch"] is None else str(r["best_epoch"]),
                str(r["epochs"]),
                *[_value(r["params"][k]) if k in r["params"] else "–" for k in keys],
                "–" if r["seconds"] is None else f"{r['seconds']:.0f} s",
                note,
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return "\n".join(fmt.format(*row).rstrip() for row in [head, *body])


def _write_csv(path: Path, stages: Sequence[Any]) -> None:
    keys: list[str] = []
    for s in stages:
        keys += [k for k in s.space.params if k not in keys]
    fields = [
        "stage",
        "trial",
        "state",
        "val_accuracy",
        "best_epoch",
        "epochs",
        "seconds",
        *keys,
        "worker",
        "reason",
    ]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for s in stages:
            for r in s.rows():
                row = {k: r[k] for k in fields if k in r and k != "params"}
                row.update(
                    {
                        k: v if isinstance(v, (int, float, str)) else yaml_text(v)
                        for k, v in r["params"].items()
                    }
                )
                writer.writerow(row)
    tmp.replace(path)


# ============================================================================ plots
def plot_params(stage: Any, path: Path, next_space: Any = None) -> Path:
    """One panel per searched key: its value against the trial's best validation accuracy.

    Log axes get a log x-axis; categorical axes one position per choice. Complete trials are
    dots, pruned ones triangles (their accuracy when stopped), exploded ones crosses at the
    bottom; the best trial is starred. With ``next_space`` (the next stage's narrowed ranges)
    the range kept for the next stage is shaded.
    """
    from gradcraft.diagnostics.plots import pyplot

    plt = pyplot()
    keys = list(stage.space.params)
    cols = min(3, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.3 * nrows), squeeze=False)
    rows = stage.rows()
    best = stage.best()
    accs = [r["val_accuracy"] for r in rows if r["val_accuracy"] is not None]
    floor = min(accs) if accs else 0.0
    for ax, key in zip(axes.flat, keys):
        dist = stage.space.params[key]
        categorical = isinstance(dist, Categorical)
        labels = [str(lab) for lab in dist.labels] if categorical else []

        def x_of(v: Any, dist: Any = dist, categorical: bool = categorical) -> float:
            return float(dist.labels.index(dist.to_raw(v))) if categorical else float(v)

        for state, (color, marker) in _STATE_STYLE.items():
            pts = [
                (x_of(r["params"][key]), r["val_accuracy"] if r["val_accuracy"] is not None else floor)
                for r in rows
                if r["state"] == state and key in r["params"]
            ]
            if pts:
                xs, ys = zip(*pts)
                ax.scatter(xs, [100 * y for y in ys], c=color, marker=marker, s=28, label=state, alpha=0.8)
        if best is not None and key in best["params"]:
            ax.scatter(
                [x_of(best["params"][key])],
                [100 * best["val_accuracy"]],
                marker="*",
                s=220,
                facecolors="none",
                edgecolors="k",
                linewidths=1.2,
                label="best",
            )
        if next_space is not None and key in next_space.params and not categorical:
            nxt = next_space.params[key]
            ax.axvspan(nxt.low, nxt.high, color="tab:green", alpha=0.12, label="next stage")
        if categorical:
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=20, fontsize=7)
            ax.set_xlim(-0.5, len(labels) - 0.5)
        else:
            if dist.log:
                ax.set_xscale("log")
                if isinstance(dist, IntRange):  # plain integer ticks instead of 2×10¹
                    ticks = dist.grid_values(4)
                    ax.set_xticks(ticks)
                    ax.set_xticklabels([str(t) for t in ticks])
                    ax.minorticks_off()
            ax.set_xlim(dist.low, dist.high)
        ax.set_xlabel(f"{key} ({dist.kind})", fontsize=8)
        ax.set_ylabel("best val accuracy (%)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="upper right", fontsize=7)
    fig.suptitle(f"stage '{stage.stage.name}': hyperparameters vs validation accuracy", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_history(stages: Sequence[Any], path: Path) -> Path:
    """Validation accuracy of every trial in the order they ran (stages one after another),
    with each stage's running best."""
    from gradcraft.diagnostics.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    offset = 0
    colors = ["tab:blue", "tab:purple", "tab:green", "tab:brown"]
    for i, stage in enumerate(stages):
        color = colors[i % len(colors)]
        trials = sorted(stage.rows(), key=lambda r: r["trial"])
        xs = [offset + j for j in range(len(trials))]
        running, best = [], -math.inf
        for r, x in zip(trials, xs):
            v = r["val_accuracy"]
            if v is not None:
                _, marker = _STATE_STYLE.get(r["state"], ("", "s"))
                ax.scatter([x], [100 * v], c=color, marker=marker, s=26, alpha=0.8)
            if r["state"] == "complete" and v is not None:
                best = max(best, v)
            running.append(100 * best if math.isfinite(best) else math.nan)
        ax.step(xs, running, where="post", color=color, lw=1.5, label=f"{stage.stage.name}: best so far")
        offset += len(trials)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (in order; markers: o complete, v pruned)")
    ax.set_ylabel("best val accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plots_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# ============================================================================ report
def _report(result: Any, plots: dict[str, str]) -> str:
    s = result.settings
    best = result.best
    lines = [f"# Hyperparameter search: {result.name}", ""]
    lines += [
        f"- Recipe: `{s['recipe']}`"
        + (f" with `--set {' '.join(s['overrides'])}`" if s["overrides"] else ""),
        f"- Search space: `{s['space']}`",
        f"- Sampler: {s['sampler']}; pruner: {s['pruner']}; loss-explosion abort at "
        f"{s['explode_factor']:g}× the initial loss; workers: {s['workers']}",
        f"- Storage: `{result.storage}`"
        + ("; continued an earlier run of the study" if result.resumed else ""),
        "- Model selection: the best validation accuracy of a trial's epochs (the recipe's validation "
        "split); the test split is not used.",
        "",
        "## Best trial",
        "",
    ]
    if best is not None:
        lines += [
            f"Stage `{best['stage']}`, trial {best['trial']}: validation accuracy "
            f"**{_pct(best['val_accuracy'])}** (epoch {best['best_epoch']} of {best['epochs']}).",
            "",
            "| key | value |",
            "|---|---|",
            *[f"| `{k}` | {_value(v)} |" for k, v in best["params"].items()],
            "",
            "`best_recipe.yaml` is the recipe with these values and without the search budget; train it "
            "at full length with `gradcraft train best_recipe.yaml` (from this directory).",
            "",
        ]
    for i, stage in enumerate(result.stages):
        counts = ", ".join(f"{n} {state}" for state, n in sorted(stage.counts().items()))
        seconds = sum(r["seconds"] or 0.0 for r in stage.rows())
        lines += [
            f"## Stage {i + 1}: {stage.stage.name}",
            "",
            f"Budget: {', '.join(stage.budget) if stage.budget else 'as in the recipe'}. "
            f"Trials: {counts} ({_duration(seconds)} of training). Study `{stage.study_name}`.",
            "",
        ]
        if stage.narrowed_from:
            nf = stage.narrowed_from
            prev = result.stages[i - 1].space if i > 0 else None
            lines += [
                f"Ranges narrowed around the top {nf['top_k']} complete trials of `{nf['stage']}` (their "
                f"span widened by {nf['widen']:g} of itself on each side, in log space for log axes, "
                "clipped to the earlier range):",
                "",
                "| key | before | after |",
                "|---|---|---|",
            ]
            for k, d in stage.space.params.items():
                before = prev.params[k].describe() if prev is not None and k in prev.params else "–"
                lines.append(f"| `{k}` | {before} | {d.describe()} |")
        else:
            lines += ["| key | distribution |", "|---|---|"]
            lines += [f"| `{k}` | {d.describe()} |" for k, d in stage.space.params.items()]
        lines += ["", format_table(stage.rows(), list(stage.space.params), markdown=True), ""]
        key = f"params-{stage.stage.name}"
        if key in plots:
            lines += [f"![hyperparameters vs validation accuracy, {stage.stage.name}]({plots[key]})", ""]
    if "history" in plots:
        lines += ["## Optimization history", "", f"![optimization history]({plots['history']})", ""]
    lines += [
        "Pruned trials show their best validation accuracy when stopped; exploded ones stopped when the "
        "loss became NaN or exceeded the abort factor × its initial value. All trials: `trials.csv`.",
        "",
    ]
    return "\n".join(lines)


def write_outputs(
    result: Any, tuned: Any, plots: bool = True, log: Callable[[str], None] | None = print
) -> None:
    """Print each stage's table; write ``trials.csv``, ``best_recipe.yaml``, the plots and
    ``report.md`` into ``result.out_dir`` (paths recorded on ``result``)."""
    say = log or (lambda msg: None)
    out = Path(result.out_dir)
    for stage in result.stages:
        budget = ", ".join(stage.budget) or "the recipe's budget"
        say(f"\nstage '{stage.stage.name}' ({budget}), by validation accuracy:")
        say(format_table(stage.rows(), list(stage.space.params)))
    _write_csv(out / "trials.csv", result.stages)
    best = result.best
    budget = ", ".join(_stage(result, best["stage"]).budget) or "none"
    header = (
        f"# The best trial of a gradcraft search: stage {best['stage']}, trial {best['trial']}, validation "
        f"accuracy {_pct(best['val_accuracy'])} under budget {budget}.\n"
        "# Trained at full length by: gradcraft train best_recipe.yaml\n"
    )
    result.best_recipe = atomic_write_text(out / "best_recipe.yaml", header + tuned.to_yaml())
    written: dict[str, str] = {}
    if plots and _plots_available():
        for i, stage in enumerate(result.stages):
            if stage.rows():
                nxt = result.stages[i + 1].space if i + 1 < len(result.stages) else None
                p = plot_params(stage, out / "plots" / f"params-{stage.stage.name}.png", nxt)
                written[f"params-{stage.stage.name}"] = str(p.relative_to(out))
        written["history"] = str(plot_history(result.stages, out / "plots" / "history.png").relative_to(out))
    result.report = atomic_write_text(out / "report.md", _report(result, written))
    say(
        f"\nbest: stage {best['stage']} trial {best['trial']}, val accuracy {_pct(best['val_accuracy'])}: "
        + ", ".join(f"{k}={_value(v)}" for k, v in best["params"].items())
    )
    say(f"best recipe: {result.best_recipe}   report: {result.report}")


def _stage(result: Any, name: str) -> Any:
    return next(s for s in result.stages if s.stage.name == name)
