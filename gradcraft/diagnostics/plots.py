"""PNG plots of the babysitter (matplotlib, Agg backend; ``pip install "gradcraft[plot]"``).

* :func:`plot_activation_histograms` — one histogram per activation layer (the lectures'
  figure of tanh activations collapsing or saturating layer by layer);
* :func:`plot_update_ratios` — ‖ΔW‖/‖W‖ per layer over training, log scale, with the 1e-3
  guide line;
* :func:`plot_learning_curves` — training vs validation loss and accuracy per epoch;
* :func:`plot_lr_range` — the range test's smoothed loss against the learning rate;
* :func:`plot_overlaid_curves` — several runs' validation curves on one figure (ablations).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "plot_activation_histograms",
    "plot_learning_curves",
    "plot_lr_range",
    "plot_overlaid_curves",
    "plot_update_ratios",
    "pyplot",
]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend.

    Raises:
        ImportError: naming the ``plot`` extra when matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError('Plots need matplotlib: pip install "gradcraft[plot]"') from err
    return plt


def _save(fig: Any, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(p, dpi=90)
    pyplot().close(fig)
    return p


def plot_activation_histograms(stats: Sequence[Any], path: str | Path, title: str = "Activations") -> Path:
    """One histogram per layer of the sampled activation values, with mean/std in the title.

    Args:
        stats: :class:`~gradcraft.diagnostics.stats.ActivationStats` (their ``sample``).
        path: the PNG file to write.
    """
    plt = pyplot()
    n = max(len(stats), 1)
    cols = min(n, 5)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows + 0.4), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, s in zip(axes.flat, stats):
        values = np.asarray(s.sample, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            lo, hi = float(values.min()), float(values.max())
            if s.kind == "tanh":
                lo, hi = -1.0, 1.0
            elif s.kind == "sigmoid":
                lo, hi = 0.0, 1.0
            if hi <= lo:
                hi = lo + 1e-12
            ax.hist(values, bins=40, range=(lo, hi), color="#4477aa")
        extra = ""
        if s.saturated is not None:
            extra = f", sat {100 * s.saturated:.0f}%"
        elif s.dead is not None:
            extra = f", dead {100 * s.dead:.0f}%"
        ax.set_title(f"{s.name} ({s.kind or 'out'})\nμ={s.mean:.2g} σ={s.std:.2g}{extra}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_update_ratios(
    steps: Sequence[int], ratios: Mapping[str, Sequence[float]], path: str | Path, target: float = 1e-3
) -> Path:
    """‖ΔW‖/‖W‖ per layer against the optimizer step, log scale, with the ``target`` line.

    Args:
        steps: the sampled steps.
        ratios: parameter name → ratio at each sampled step (NaN where missing).
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in ratios.items():
        v = np.asarray(values, dtype=np.float64)
        v = np.where(v > 0, v, np.nan)
        ax.plot(list(steps)[: len(v)], v, label=name, lw=1.2, marker="o", ms=2.5)
    ax.axhline(target, color="k", ls="--", lw=1, label=f"{target:g} (rule of thumb)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("‖ΔW‖ / ‖W‖")
    ax.set_title("Update / weight ratio per layer")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_learning_curves(epochs: Mapping[str, Sequence[float]], path: str | Path) -> Path:
    """Training vs validation loss (left) and accuracy (right) per epoch.

    Args:
        epochs: metric name → per-epoch values; uses ``train_loss``, ``train_eval_loss``,
            ``val_loss`` and the matching ``*_accuracy`` series that exist.
    """
    plt = pyplot()
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(9, 3.6))
    styles = {"train": ("#4477aa", ":"), "train_eval": ("#4477aa", "-"), "val": ("#cc6677", "-")}
    labels = {
        "train": "train (running, train mode)",
        "train_eval": "train (end of epoch)",
        "val": "validation",
    }
    for prefix, (color, ls) in styles.items():
        for metric, ax in (("loss", ax_l), ("accuracy", ax_a)):
            values = epochs.get(f"{prefix}_{metric}")
            if values is None or not len(values):
                continue
            x = np.arange(1, len(values) + 1)
            ax.plot(
                x,
                np.asarray(values, dtype=np.float64),
                color=color,
                ls=ls,
                marker="o",
                ms=3,
                label=labels[prefix],
            )
    ax_l.set_title("loss")
    ax_a.set_title("accuracy")
    for ax in (ax_l, ax_a):
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_lr_range(result: Any, path: str | Path) -> Path:
    """The range test's raw and smoothed loss against the learning rate (log scale), with
    the steepest point, the minimum and the suggestion marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    lrs = np.asarray(result.lrs, dtype=np.float64)
    raw = np.asarray(result.losses, dtype=np.float64)
    sm = np.asarray(result.smoothed, dtype=np.float64)
    ax.plot(lrs, np.where(np.isfinite(raw), raw, np.nan), color="#bbbbbb", lw=0.8, label="loss")
    ax.plot(lrs, np.where(np.isfinite(sm), sm, np.nan), color="#4477aa", lw=1.5, label="smoothed")
    for lr, style, name in (
        (result.steepest_lr, "g--", "steepest"),
        (result.min_lr, "k:", "minimum"),
        (result.suggested_lr, "r-", "suggested"),
        (result.explode_lr, "m-.", "explodes"),
    ):
        if lr:
            ax.axvline(lr, color=style[0], ls=style[1:], lw=1, label=f"{name} {lr:.2g}")
    finite = sm[np.isfinite(sm)]
    if finite.size:
        ax.set_ylim(min(finite.min(), np.nanmin(raw)) * 0.9, finite[0] * 1.6 if finite[0] > 0 else None)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.set_title("Learning-rate range test")
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_overlaid_curves(
    runs: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    metrics: Sequence[str] = ("val_accuracy", "train_loss"),
) -> Path:
    """Several runs' per-epoch curves overlaid, one panel per metric.

    Args:
        runs: run label → {metric name → per-epoch values}.
        metrics: the metrics to draw (one panel each).
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for label, series in runs.items():
            values = series.get(metric)
            if values is None or not len(values):
                continue
            v = np.asarray(values, dtype=np.float64)
            ax.plot(
                np.arange(1, len(v) + 1), np.where(np.isfinite(v), v, np.nan), marker="o", ms=3, label=label
            )
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        if "loss" in metric:
            ax.set_yscale("log")
        ax.legend(fontsize=7)
    return _save(fig, path)
