"""The run directory's pictures and summary: PNG plots and ``report.md``.

* :func:`write_plots` — training/validation loss and accuracy curves, the learning rate per
  step, and the test confusion matrix, as PNG files (matplotlib with the Agg backend, imported
  only here: ``pip install "gradcraft[plot]"``);
* :func:`write_report` — ``report.md``: the recipe in one paragraph, the final numbers
  (best validation epoch, test accuracy, per-class accuracy), the epoch table and links to the
  plots, checkpoints and logs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradcraft.io.checkpoint import atomic_write_text
from gradcraft.train.history import History

__all__ = ["write_plots", "write_report"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError('Plots need matplotlib: pip install "gradcraft[plot]"') from err
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _curve(
    plt: Any,
    history: History,
    names: Sequence[tuple[str, str]],
    ylabel: str,
    path: Path,
    percent: bool = False,
) -> bool:
    series = [(history.epochs[n], label) for n, label in names if n in history.epochs]
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for values, label in series:
        epochs = np.arange(1, len(values) + 1)
        data = np.asarray(values, dtype=np.float64) * (100 if percent else 1)
        ax.plot(epochs, data, marker="o", markersize=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_plots(
    directory: str | os.PathLike[str],
    history: History,
    confusion: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
) -> list[Path]:
    """Write the run's PNG plots into ``directory``; returns the files written.

    Files: ``loss.png`` (train/val loss per epoch), ``accuracy.png`` (train/val accuracy),
    ``lr.png`` (learning rate per step, when recorded), ``confusion_matrix.png`` (when
    ``confusion`` is given; rows are true classes, normalized per row).
    """
    plt = _pyplot()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if _curve(plt, history, [("train_loss", "train"), ("val_loss", "validation")], "loss", out / "loss.png"):
        written.append(out / "loss.png")
    if _curve(
        plt,
        history,
        [("train_accuracy", "train"), ("val_accuracy", "validation")],
        "accuracy (%)",
        out / "accuracy.png",
        percent=True,
    ):
        written.append(out / "accuracy.png")
    steps, values = history.steps.get("lr", ([], []))
    if not steps and "lr" in history.epochs:
        steps, values = list(range(1, len(history.epochs["lr"]) + 1)), history.epochs["lr"]
    if steps:
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        ax.plot(steps, values)
        ax.set_xlabel("step" if "lr" in history.steps else "epoch")
        ax.set_ylabel("learning rate")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "lr.png")
        plt.close(fig)
        written.append(out / "lr.png")
    if confusion is not None and np.asarray(confusion).size:
        cm = np.asarray(confusion, dtype=np.float64)
        k = cm.shape[0]
        names = list(classes) if classes is not None and len(classes) == k else [str(i) for i in range(k)]
        rows = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        size = max(4.0, 0.55 * k + 2)
        fig, ax = plt.subplots(figsize=(size, size), dpi=100)
        im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(k), names, rotation=45, ha="right")
        ax.set_yticks(range(k), names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    ax.text(
                        j,
                        i,
                        f"{int(cm[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black",
                    )
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        fig.savefig(out / "confusion_matrix.png")
        plt.close(fig)
        written.append(out / "confusion_matrix.png")
    return written


def _fmt(value: Any, percent: bool = False) -> str:
    if value is None:
        return "–"
    v = float(value)
    if math.isnan(v):
        return "–"
    return f"{100 * v:.2f}%" if percent else f"{v:.4f}"


def write_report(
    path: str | os.PathLike[str],
    *,
    title: str,
    description: str,
    history: History,
    test: Mapping[str, Any] | None,
    classes: Sequence[str] | None,
    facts: Mapping[str, Any],
    plots: Sequence[Path] = (),
    stop_reason: str = "",
    extra_sections: Sequence[str] = (),
) -> Path:
    """Write ``report.md`` tying the run's numbers, plots and files together.

    Args:
        path: the report file.
        title: the run's name.
        description: the recipe's description.
        history: the run's history (the epoch table comes from it).
        test: test metrics (``test_accuracy``, ``test_loss``, ``test_per_class_accuracy``, …).
        classes: class names for the per-class table.
        facts: other lines for the summary (command, wall time, parameters, checkpoint used).
        plots: PNG files to embed (paths relative to the report are used).
        stop_reason: why training ended.
        extra_sections: markdown sections placed before the file list (e.g. the diagnosis).
    """
    path = Path(path)
    lines = [f"# Run report: {title}", ""]
    if description:
        lines += [description, ""]
    lines += ["## Summary", ""]
    if test:
        lines.append(
            f"- **Test accuracy: {_fmt(test.get('test_accuracy'), True)}** "
            f"(test loss {_fmt(test.get('test_loss'))}"
            + (
                f", top-5 {_fmt(test.get('test_top5_accuracy'), True)}"
                if "test_top5_accuracy" in test
                else ""
            )
            + ")"
        )
    if "val_accuracy" in history.epochs and len(history):
        best, epoch = history.best("val_accuracy", "max")
        lines.append(f"- Best validation accuracy: {_fmt(best, True)} at epoch {epoch + 1} of {len(history)}")
    if stop_reason:
        lines.append(f"- Training ended: {stop_reason}")
    for key, value in facts.items():
        lines.append(f"- {key}: {value}")
    lines.append("")
    per_class = None if not test else test.get("test_per_class_accuracy")
    if per_class is not None and len(per_class):
        names = (
            list(classes)
            if classes is not None and len(classes) == len(per_class)
            else [str(i) for i in range(len(per_class))]
        )
        lines += ["## Per-class test accuracy", "", "| class | accuracy |", "|---|---|"]
        lines += [f"| {n} | {_fmt(v, True)} |" for n, v in zip(names, per_class)]
        lines.append("")
    if len(history):
        cols = [
            c
            for c in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_time")
            if c in history.epochs
        ]
        lines += ["## Epochs", "", "| epoch | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for i, record in enumerate(history.records()):
            cells = []
            for c in cols:
                v = record.get(c)
                if c.endswith("accuracy"):
                    cells.append(_fmt(v, True))
                elif c == "lr":
                    cells.append("–" if v is None or math.isnan(v) else f"{v:.2e}")
                elif c == "epoch_time":
                    cells.append("–" if v is None or math.isnan(v) else f"{v:.1f}s")
                else:
                    cells.append(_fmt(v))
            lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        for p in plots:
            rel = os.path.relpath(p, path.parent)
            lines += [f"![{Path(p).stem}]({rel})", ""]
    run = path.parent
    files = [
        (
            "recipe.yaml",
            "the resolved recipe (every default filled in); rerun with `gradcraft train recipe.yaml`",
        ),
        ("metrics.jsonl", "one JSON object per epoch (and every few steps), then the test result"),
        (
            "checkpoints",
            "`best.json` / `last.json`: full training state (safetensors + JSON); "
            "continue with `gradcraft train --resume <run dir>`",
        ),
        ("tensorboard", "event files: `tensorboard --logdir <run dir>/tensorboard`"),
        ("results.json", "the final numbers as JSON"),
    ]
    for section in extra_sections:
        if section.strip():
            lines += [section.rstrip(), ""]
    present = [(name, what) for name, what in files if (run / name).exists() or name == "results.json"]
    if present:
        lines += ["## Files", ""]
        lines += [f"- `{name}{'/' if (run / name).is_dir() else ''}` — {what}" for name, what in present]
        lines.append("")
    atomic_write_text(path, "\n".join(lines))
    return path
