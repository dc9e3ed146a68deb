"""The babysitter during training: :class:`TrainingMonitor` (plain logic) and :class:`Monitor`
(the :class:`~gradcraft.train.Callback` that runs it inside a :class:`~gradcraft.train.Trainer`).

What it watches, and what it costs:

* **every step** — the training loss (one float): NaN/inf, and loss explosions (the smoothed
  loss above 4× its lowest value);
* **every N-th step** (``every_steps``, 50 by default; step 1 too) — forward hooks on the
  activation layers for that one step (mean, std, fraction saturated, fraction of dead
  ReLUs, a small sample for histograms), a copy of the weights before the step for the
  update/weight ratio ‖ΔW‖/‖W‖ (the lectures' ≈ 1e-3), and the gradient norms per layer.
  No hook is attached on the other steps, so they run at full speed;
* **every epoch** — the loss and accuracy of a fixed probe of training examples (≤ 1024,
  gathered from the first batches) in evaluation mode, so training and validation curves are
  compared like for like; the per-layer update ratios are judged over the epoch's samples;
* **at the end** — the cause of a NaN in forward terms (which layer first produced it, from
  what inputs, after what loss and update history), and the learning curves classified as
  underfitting, overfitting, good fit or unrepresentative validation set
  (:func:`~gradcraft.diagnostics.curves.classify_learning_curves`).

Findings are printed as they are made, written to ``metrics.jsonl`` as
``{"kind": "finding", ...}`` lines (when the trainer has a
:class:`~gradcraft.train.JSONLLogger`), and collected in a "Diagnosis" section
(:meth:`Monitor.report_section`) with PNG plots: activation histograms per layer, update
ratio curves, and training vs validation curves.
"""

from __future__ import annotations

import copy
import json
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcraft.autograd.grad_mode import no_grad
from gradcraft.autograd.tensor import Tensor
from gradcraft.diagnostics._common import accuracy, fmt, loss_value, pct
from gradcraft.diagnostics.checks import check_gradients
from gradcraft.diagnostics.curves import classify_learning_curves, cross_entropy_floor
from gradcraft.diagnostics.findings import _RANK, Finding, findings_to_markdown
from gradcraft.diagnostics.stats import (
    RELU_LIKE,
    SATURATING,
    ActivationRecorder,
    ActivationStats,
    parameter_stats,
    snapshot_weights,
    to_numpy,
    update_ratios,
)
from gradcraft.diagnostics.thresholds import DEFAULT_THRESHOLDS, Thresholds
from gradcraft.train.callbacks import Callback

if TYPE_CHECKING:
    from gradcraft.train.trainer import Trainer

__all__ = ["Monitor", "TrainingMonitor"]


def _stats_from_dict(name: str, d: Mapping[str, Any]) -> ActivationStats:
    return ActivationStats(
        name=name,
        kind=d.get("kind"),
        shape=tuple(d.get("shape", ())),
        mean=d["mean"],
        std=d["std"],
        saturated=d.get("saturated"),
        dead=d.get("dead"),
        zero=d.get("zero", 0.0),
        nonfinite=d.get("nonfinite", 0.0),
        sample=np.asarray(d.get("sample", []), dtype=np.float32),
    )


def _stats_to_dict(s: ActivationStats, with_sample: bool) -> dict[str, Any]:
    d = {"kind": s.kind, "shape": list(s.shape), **s.to_dict()}
    if with_sample:
        d["sample"] = s.sample
    return d


class TrainingMonitor:
    """The monitor's logic, independent of any training loop.

    A loop calls, per step, :meth:`before_step` (before the forward pass) and
    :meth:`after_step` (after the optimizer step, gradients still in place); per epoch
    :meth:`end_epoch`; at the end :meth:`finish` (and :meth:`nonfinite_cause` if the loss
    became NaN/inf). Each returns the *new* findings (each distinct issue is reported once,
    and again only if it gets worse).

    Args:
        every_steps: sample activations, gradients and update ratios every N steps (and at
            step 1).
        probe_size: training examples kept for the end-of-epoch evaluation (0: none).
        sample_size: activation values kept per layer per sample, for histograms.
        window: sampled steps per layer that the update-ratio verdict takes the median of.
        settle_steps: update ratios of the first steps are not judged (fresh weights move a lot).
        thresholds: verdict thresholds.
        ema_beta: smoothing of the per-step loss for explosion detection.
    """

    def __init__(
        self,
        every_steps: int = 50,
        probe_size: int = 1024,
        sample_size: int = 1000,
        window: int = 5,
        settle_steps: int = 100,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
        ema_beta: float = 0.9,
    ) -> None:
        if isinstance(every_steps, bool) or not isinstance(every_steps, int) or every_steps < 1:
            raise ValueError(
                f"Expected a positive integer every_steps. Received: every_steps={every_steps!r}"
            )
        if probe_size < 0:
            raise ValueError(f"Expected probe_size >= 0. Received: probe_size={probe_size}")
        self.every_steps = every_steps
        self.probe_size = int(probe_size)
        self.sample_size = int(sample_size)
        self.window = int(window)
        self.settle_steps = int(settle_steps)
        self.thresholds = thresholds
        self.ema_beta = float(ema_beta)
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget everything measured."""
        self.findings: list[Finding] = []
        self.timeline: list[dict[str, Any]] = []
        self.first_activations: list[ActivationStats] = []
        self.last_activations: list[ActivationStats] = []
        self.probe_x: np.ndarray | None = None
        self.probe_y: np.ndarray | None = None
        self.num_classes: int | None = None
        self.initial_lr: float | None = None
        self._emitted: dict[str, str] = {}
        self._ema = 0.0
        self._ema_n = 0
        self._ema_first: float | None = None
        self._ema_min = math.inf
        self._ema_min_step = 0
        self._recent: deque[tuple[int, float]] = deque(maxlen=200)
        self._recorder: ActivationRecorder | None = None
        self._snapshot: dict[str, np.ndarray] | None = None
        self._sampling_step: int | None = None

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue monitoring after a resume (JSON types and arrays)."""
        return {
            "findings": [f.to_dict() for f in self.findings],
            "emitted": dict(self._emitted),
            "timeline": copy.deepcopy(self.timeline),
            "first_activations": {s.name: _stats_to_dict(s, True) for s in self.first_activations},
            "last_activations": {s.name: _stats_to_dict(s, True) for s in self.last_activations},
            "probe_x": self.probe_x,
            "probe_y": self.probe_y,
            "num_classes": self.num_classes,
            "initial_lr": self.initial_lr,
            "ema": [self._ema, self._ema_n, self._ema_first, self._ema_min, self._ema_min_step],
            "recent": [list(r) for r in self._recent],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.reset()
        self.findings = [Finding(**dict(f)) for f in state.get("findings", [])]
        self._emitted = dict(state.get("emitted", {}))
        self.timeline = list(state.get("timeline", []))
        self.first_activations = [
            _stats_from_dict(k, v) for k, v in state.get("first_activations", {}).items()
        ]
        self.last_activations = [_stats_from_dict(k, v) for k, v in state.get("last_activations", {}).items()]
        px, py = state.get("probe_x"), state.get("probe_y")
        self.probe_x = None if px is None else np.asarray(px)
        self.probe_y = None if py is None else np.asarray(py)
        nc = state.get("num_classes")
        self.num_classes = None if nc is None else int(nc)
        lr = state.get("initial_lr")
        self.initial_lr = None if lr is None else float(lr)
        ema = state.get("ema")
        if ema:
            self._ema, self._ema_n = float(ema[0]), int(ema[1])
            self._ema_first = None if ema[2] is None else float(ema[2])
            self._ema_min, self._ema_min_step = float(ema[3]), int(ema[4])
        self._recent = deque(((int(s), float(v)) for s, v in state.get("recent", [])), maxlen=200)

    # ------------------------------------------------------------------ internals
    def _emit(self, key: str, finding: Finding) -> list[Finding]:
        """Record ``finding`` unless the same issue was already reported at this or a worse
        verdict."""
        previous = self._emitted.get(key)
        if previous is not None and _RANK[previous] >= _RANK[finding.verdict]:
            return []
        self._emitted[key] = finding.verdict
        self.findings.append(finding)
        return [finding]

    def is_sampled(self, step: int) -> bool:
        """Whether step ``step`` (1-based) is one whose internals are measured."""
        return step == 1 or step % self.every_steps == 0

    def collect_probe(self, x: Any, y: Any) -> None:
        """Add examples of a training batch to the probe until it holds ``probe_size``."""
        if self.probe_size == 0 or y is None:
            return
        have = 0 if self.probe_x is None else self.probe_x.shape[0]
        if have >= self.probe_size:
            return
        xs, ys = to_numpy(x), to_numpy(y)
        take = min(self.probe_size - have, xs.shape[0])
        xs, ys = np.array(xs[:take], copy=True), np.array(ys[:take], copy=True)
        if self.probe_x is None:
            self.probe_x, self.probe_y = xs, ys
        elif (
            self.probe_y is not None
            and ys.shape[1:] == self.probe_y.shape[1:]
            and xs.shape[1:] == self.probe_x.shape[1:]
        ):
            self.probe_x = np.concatenate([self.probe_x, xs])
            self.probe_y = np.concatenate([self.probe_y, ys])

    # ------------------------------------------------------------------ per step
    def before_step(self, model: Any, step: int) -> None:
        """Before the forward pass of step ``step``: on sampled steps attach the activation
        hooks and copy the weights."""
        self.detach()
        if not self.is_sampled(step):
            return
        self._recorder = ActivationRecorder(
            model, sample_size=self.sample_size, rng=np.random.default_rng(step)
        ).attach()
        self._snapshot = snapshot_weights(model)
        self._sampling_step = step

    def detach(self) -> None:
        """Remove the activation hooks, if attached (safe to call any time)."""
        if self._recorder is not None:
            self._recorder.detach()
        self._recorder = None

    def after_step(
        self, model: Any, step: int, loss: float | None, lr: float | None = None, epoch: int | None = None
    ) -> list[Finding]:
        """After the optimizer step of step ``step``: check the loss; on sampled steps
        summarize activations, update ratios and gradient norms."""
        new: list[Finding] = []
        if lr is not None and self.initial_lr is None:
            self.initial_lr = float(lr)
        if loss is not None:
            value = float(loss)
            self._recent.append((step, value))
            if not math.isfinite(value):
                new += self._emit(
                    "nan",
                    Finding(
                        "nan",
                        "problem",
                        f"The loss became {value} at step {step}.",
                        "Lower the learning rate; see the findings around it.",
                        step=step,
                    ),
                )
            else:
                new += self._track_loss(step, value, lr)
        if self._sampling_step == step and self._recorder is not None:
            stats = self._recorder.stats()
            self.detach()
            ratios = update_ratios(model, self._snapshot or {})
            self._snapshot = None
            self._sampling_step = None
            new += self._record_sample(model, step, epoch, lr, stats, ratios)
        return new

    def _track_loss(self, step: int, value: float, lr: float | None) -> list[Finding]:
        b = self.ema_beta
        self._ema = b * self._ema + (1 - b) * value
        self._ema_n += 1
        smooth = self._ema / (1 - b**self._ema_n)
        if self._ema_n == 1:
            self._ema_first = smooth
        if smooth < self._ema_min:
            self._ema_min, self._ema_min_step = smooth, step
        t = self.thresholds
        first = self._ema_first or smooth
        if self._ema_n > 5 and smooth > t.explosion_factor * self._ema_min and smooth > first:
            lr_text = f" (lr {fmt(lr)})" if lr is not None else ""
            return self._emit(
                "loss_explosion",
                Finding(
                    "loss_explosion",
                    "problem",
                    f"The training loss exploded: smoothed, it rose from {self._ema_min:.3g} at step "
                    f"{self._ema_min_step} to {smooth:.3g} at step {step}{lr_text}, above where it started "
                    f"({first:.3g}). The likely cause is a learning rate that is too high for this point "
                    "of training.",
                    "Lower the learning rate (3–10×), add a warm-up, or clip gradients (clip_grad_norm).",
                    step=step,
                    details={"min": self._ema_min, "now": smooth, "lr": lr},
                ),
            )
        return []

    def _record_sample(
        self,
        model: Any,
        step: int,
        epoch: int | None,
        lr: float | None,
        stats: list[ActivationStats],
        ratios: dict[str, float],
    ) -> list[Finding]:
        params = parameter_stats(model)
        grads = {p.name: p.grad_norm for p in params if p.is_weight and p.grad_norm is not None}
        total = math.sqrt(
            sum(p.grad_norm**2 for p in params if p.grad_norm is not None and math.isfinite(p.grad_norm))
        )
        entry = {
            "step": step,
            "epoch": epoch,
            "lr": lr,
            "update": {k: float(v) for k, v in ratios.items()},
            "grad": {k: float(v) for k, v in grads.items()},
            "grad_total": total,
            "act": {s.name: _stats_to_dict(s, False) for s in stats},
        }
        self.timeline.append(entry)
        if stats:
            if not self.first_activations:
                self.first_activations = stats
            self.last_activations = stats
        new: list[Finding] = []
        t = self.thresholds
        first = {s.name: s for s in self.first_activations}
        dead = [s for s in stats if s.kind in RELU_LIKE and s.dead is not None and s.dead >= t.dead_warn]
        if dead:
            worst = max(dead, key=lambda s: s.dead or 0.0)
            verdict = "problem" if (worst.dead or 0.0) >= t.dead_problem else "warning"
            per_layer = ", ".join(
                f"'{s.name}' {pct(s.dead)}"
                + (
                    f" (was {pct(first[s.name].dead)} at step {self.timeline[0]['step']})"
                    if s.name in first and first[s.name].dead is not None and step != self.timeline[0]["step"]
                    else ""
                )
                for s in dead
            )
            grew = any(s.name in first and (first[s.name].dead or 0.0) + 0.1 < (s.dead or 0.0) for s in dead)
            cause = (
                "They died during training: a too-high learning rate knocked their weights into a region "
                "where they never fire again."
                if grew
                else "They were dead from the start (see the init and the biases)."
            )
            new += self._emit(
                "dead_units",
                Finding(
                    "dead_units",
                    verdict,
                    f"Dead ReLU units at step {step}: {per_layer} of the units are never "
                    f"active on the batch. {cause}",
                    "Lower the learning rate, use He init and zero biases, or a leaky ReLU.",
                    layer=worst.name,
                    step=step,
                    details={s.name: s.dead for s in dead},
                ),
            )
        sat = [
            s
            for s in stats
            if s.kind in SATURATING and s.saturated is not None and s.saturated >= t.saturated_problem
        ]
        if sat:
            worst = max(sat, key=lambda s: s.saturated or 0.0)
            per_layer = ", ".join(f"'{s.name}' {pct(s.saturated)}" for s in sat)
            new += self._emit(
                "saturation",
                Finding(
                    "saturation",
                    "warning",
                    f"Saturated activations at step {step}: {per_layer} of the outputs sit "
                    "at the flat ends of the nonlinearity, where the gradient is ≈ 0.",
                    "Lower the learning rate, use Xavier init, add batch normalization, or switch to ReLU.",
                    layer=worst.name,
                    step=step,
                    details={s.name: s.saturated for s in sat},
                ),
            )
        nonfinite = [s.name for s in stats if s.nonfinite]
        if nonfinite:
            new += self._emit(
                "activations_nonfinite",
                Finding(
                    "nan",
                    "problem",
                    f"NaN/inf activations at step {step} in {', '.join(nonfinite)}.",
                    "Lower the learning rate; check the inputs.",
                    step=step,
                ),
            )
        for f in check_gradients(params, t):
            if f.verdict == "problem" and ("vanish" in f.summary or "explode" in f.summary):
                f.step = step
                f.summary = f"At step {step}: " + f.summary
                new += self._emit("gradients." + ("vanish" if "vanish" in f.summary else "explode"), f)
        return new

    # ------------------------------------------------------------------ per epoch
    def evaluate_probe(
        self, model: Any, loss_fn: Callable[[Any, Any], Any], batch_size: int = 512
    ) -> dict[str, float]:
        """Loss and accuracy of ``model`` on the probe in evaluation mode (``{}`` without probe)."""
        if self.probe_x is None or self.probe_y is None or not len(self.probe_x):
            return {}
        was_training = bool(getattr(model, "training", False))
        model.eval()
        total, correct, n = 0.0, 0.0, 0
        try:
            with no_grad():
                for i in range(0, self.probe_x.shape[0], batch_size):
                    bx, by = self.probe_x[i : i + batch_size], self.probe_y[i : i + batch_size]
                    out = model(Tensor(bx))
                    k = bx.shape[0]
                    total += loss_value(loss_fn(out, Tensor(by))) * k
                    correct += accuracy(out, by) * k
                    n += k
        finally:
            model.train(was_training)
        return {"train_eval_loss": total / n, "train_eval_accuracy": correct / n}

    def epoch_summary(self, epoch: int | None = None) -> dict[str, float]:
        """Numbers for the epoch's logs from the latest sample: median update ratio over the
        weights, largest dead and saturated fractions, global gradient norm."""
        if not self.timeline:
            return {}
        last = self.timeline[-1]
        out: dict[str, float] = {}
        ratios = [v for v in last["update"].values() if math.isfinite(v)]
        if ratios:
            out["monitor_update_ratio"] = float(np.median(ratios))
        dead = [a["dead"] for a in last["act"].values() if a.get("dead") is not None]
        if dead:
            out["monitor_dead_fraction"] = float(max(dead))
        sat = [a["saturated"] for a in last["act"].values() if a.get("saturated") is not None]
        if sat:
            out["monitor_saturated_fraction"] = float(max(sat))
        out["monitor_grad_norm"] = float(last["grad_total"])
        return out

    def end_epoch(
        self,
        model: Any,
        epoch: int,
        loss_fn: Callable[[Any, Any], Any] | None = None,
    ) -> tuple[dict[str, float], list[Finding]]:
        """At the end of epoch ``epoch`` (0-based): evaluate the probe, judge the update
        ratios of the epoch's samples. Returns ``(metrics for the epoch logs, new findings)``."""
        metrics = self.epoch_summary(epoch)
        if loss_fn is not None:
            metrics.update(self.evaluate_probe(model, loss_fn))
        return metrics, self._judge_update_ratios(epoch)

    def _judge_update_ratios(self, epoch: int) -> list[Finding]:
        t = self.thresholds
        # the first steps move freshly initialized weights a lot: judge only after settle_steps
        judged = [e for e in self.timeline if e["step"] > self.settle_steps]
        samples = [e for e in judged if e.get("epoch") == epoch][-self.window :] or judged[-self.window :]
        if not samples:
            return []
        names = sorted(
            {k for e in samples for k in e["update"]},
            key=lambda k: list(samples[-1]["update"]).index(k) if k in samples[-1]["update"] else 0,
        )
        med = {}
        for k in names:
            vals = [e["update"][k] for e in samples if k in e["update"] and math.isfinite(e["update"][k])]
            if vals:
                med[k] = float(np.median(vals))
        if not med:
            return []
        lr = samples[-1].get("lr")
        hi_bound = t.update_ratio_target * t.update_ratio_factor
        lo_bound = t.update_ratio_target / t.update_ratio_factor
        # the first epoch moves fresh weights a lot: only a ratio that rewrites the weights counts there
        if epoch == 0:
            hi_bound = max(hi_bound, t.update_ratio_problem)
        high = {k: v for k, v in med.items() if v > hi_bound}
        low = {k: v for k, v in med.items() if 0 < v < lo_bound}
        new: list[Finding] = []
        lr_text = f" (lr {fmt(lr)})" if lr is not None else ""
        if high:
            verdict = "problem" if max(high.values()) > t.update_ratio_problem else "warning"
            per_layer = ", ".join(f"'{k}' {v:.2g}" for k, v in high.items())
            new += self._emit(
                "update_ratio.high",
                Finding(
                    "update_ratio",
                    verdict,
                    f"Update/weight ratios ‖ΔW‖/‖W‖ in epoch {epoch + 1}{lr_text} are far above "
                    f"the rule of thumb {t.update_ratio_target:g}: {per_layer}. Each step rewrites a large "
                    "part of the "
                    "weights: the learning rate is probably too high.",
                    "Lower the learning rate (about 10× per decade the ratio is above 1e-3).",
                    step=samples[-1]["step"],
                    details={"median_ratio": med, "lr": lr},
                ),
            )
        # a converged model (loss far below where it started) rightly makes tiny steps
        converged = (
            self._ema_first is not None
            and self._ema_n > 0
            and self._ema / (1 - self.ema_beta**self._ema_n) < 0.1 * self._ema_first
        )
        decayed = lr is not None and self.initial_lr is not None and lr < 0.5 * self.initial_lr
        # during a warm-up the ratios grow with the rate: judge them once it stops rising
        first_lr = samples[0].get("lr")
        warming_up = lr is not None and first_lr is not None and lr > 1.05 * first_lr
        if low and not decayed and not converged and not warming_up:
            per_layer = ", ".join(f"'{k}' {v:.2g}" for k, v in low.items())
            new += self._emit(
                "update_ratio.low",
                Finding(
                    "update_ratio",
                    "warning",
                    f"Update/weight ratios ‖ΔW‖/‖W‖ in epoch {epoch + 1}{lr_text} are far below "
                    f"the rule of thumb {t.update_ratio_target:g}: {per_layer}. These weights barely move: "
                    "the learning "
                    "rate is probably too low (or their gradients vanish).",
                    "Raise the learning rate (see the range test of `gradcraft diagnose`).",
                    step=samples[-1]["step"],
                    details={"median_ratio": med, "lr": lr},
                ),
            )
        return new

    # ------------------------------------------------------------------ NaN
    def nonfinite_cause(
        self,
        model: Any,
        batch: tuple[Any, Any] | None,
        loss_fn: Callable[[Any, Any], Any] | None,
        lr: float | None,
        step: int,
    ) -> Finding:
        """Explain a NaN/inf loss at step ``step`` in forward terms: bad inputs, weights that
        already blew up, or the first layer whose output became non-finite — with the loss and
        update history that led there and the likely cause."""
        lr_text = f"lr {fmt(lr)}" if lr is not None else "the learning rate"
        evidence: list[str] = []
        finite_recent = [(s, v) for s, v in self._recent if math.isfinite(v)]
        exploded = False
        if finite_recent:
            s0, v0 = min(finite_recent, key=lambda r: r[1])
            s1, v1 = finite_recent[-1]
            if v1 > 2 * v0 and s1 > s0:
                exploded = True
                evidence.append(f"the loss rose from {v0:.3g} (step {s0}) to {v1:.3g} (step {s1})")
        recent = [e for e in self.timeline if e["update"]]
        if recent:
            top = max((v for v in recent[-1]["update"].values() if math.isfinite(v)), default=math.nan)
            if math.isfinite(top):
                evidence.append(
                    f"the largest update/weight ratio at step {recent[-1]['step']} was {top:.2g} "
                    f"(≈ {self.thresholds.update_ratio_target:g} is healthy)"
                )
                exploded = exploded or top > self.thresholds.update_ratio_problem
        bad_params = [n for n, p in model.named_parameters() if not np.isfinite(to_numpy(p.data)).all()]
        where = ""
        cause = ""
        remedy = "Lower the learning rate 3–10×, add a warm-up or gradient clipping (clip_grad_norm)."
        details: dict[str, Any] = {"step": step, "lr": lr, "bad_parameters": bad_params}
        x = None if batch is None else to_numpy(batch[0])
        if x is not None and not np.isfinite(x).all():
            bad = 1.0 - float(np.isfinite(x).mean())
            where = f"The input batch itself contains NaN/inf ({pct(bad)} of its values)."
            cause = (
                "the data or the preprocessing produce NaN/inf (a division by a zero standard deviation?)."
            )
            remedy = (
                "Check the dataset and the preprocessing statistics; `gradcraft diagnose` checks the inputs."
            )
        elif bad_params:
            shown = ", ".join(bad_params[:4]) + (" …" if len(bad_params) > 4 else "")
            where = f"The weights already contain NaN/inf ({shown}): the previous update blew them up."
            cause = f"the updates are too large: {lr_text} is too high (or the gradients exploded)."
            exploded = True
        elif x is not None:
            layer, info = self._first_nonfinite_layer(model, batch[0])
            if layer is not None:
                where = (
                    f"Layer '{layer}' ({info['layer']}) is the first to output NaN/inf, from finite inputs "
                    "of "
                    f"shape {info['input_shape']} with max |x| = {fmt(info['input_max'])}."
                )
                details.update(info)
                cause = (
                    f"the activations grew until they overflowed: {lr_text} is too high."
                    if exploded
                    else "the activations overflow in that layer: the weights are too large "
                    "(init) or the layer is numerically unstable (exp/log of large values)."
                )
            else:
                logits = info.get("output_max")
                where = (
                    f"Every layer's output is finite (largest |logit| {fmt(logits)}), but the loss is not."
                )
                cause = (
                    "the loss itself is NaN/inf: probabilities passed where logits are expected (log of 0), "
                    "or labels outside [0, C)."
                )
                remedy = "Use cross-entropy on raw logits with integer labels in [0, C)."
                details.update(info)
        if not cause:
            cause = (
                f"{lr_text} is probably too high."
                if exploded
                else "unclear; see the activation and gradient findings."
            )
        text = f"The loss became NaN/inf at step {step} ({lr_text}). {where}"
        if evidence:
            text += " Before that, " + "; ".join(evidence) + "."
        text += f" Likely cause: {cause}"
        details["likely_cause"] = (
            "learning_rate" if exploded else ("data" if "input batch" in where else "numerics")
        )
        finding = Finding("nan", "problem", text, remedy, step=step, details=details)
        self._emitted["nan"] = "problem"
        self.findings = [f for f in self.findings if f.check != "nan"] + [finding]
        return finding

    def _first_nonfinite_layer(self, model: Any, x: Any) -> tuple[str | None, dict[str, Any]]:
        calls: list[tuple[str, Any, tuple[int, ...], float, bool]] = []
        handles = []
        for name, module in model.named_modules():
            if not name or any(True for _ in module.children()):
                continue  # leaves only: containers just pass values through

            def hook(mod: Any, inputs: tuple, output: Any, name: str = name) -> None:
                xin = to_numpy(inputs[0]) if inputs and isinstance(inputs[0], (Tensor, np.ndarray)) else None
                out = to_numpy(output) if isinstance(output, (Tensor, np.ndarray)) else None
                in_max = float(np.nanmax(np.abs(xin))) if xin is not None and xin.size else math.nan
                ok_in = xin is None or bool(np.isfinite(xin).all())
                bad_out = out is not None and not bool(np.isfinite(out).all())
                calls.append(
                    (name, mod, tuple(xin.shape) if xin is not None else (), in_max, ok_in and bad_out)
                )

            handles.append(module.register_forward_hook(hook))
        out = None
        try:
            with no_grad():
                out = model(x if isinstance(x, Tensor) else Tensor(x))
        except (ValueError, FloatingPointError, OverflowError):
            out = None
        finally:
            for h in handles:
                h.remove()
        for name, mod, shape, in_max, first_bad in calls:
            if first_bad:
                return name, {
                    "layer": mod._short_repr() if hasattr(mod, "_short_repr") else type(mod).__name__,
                    "input_shape": list(shape),
                    "input_max": in_max,
                }
        o = None if out is None else to_numpy(out)
        return None, {"output_max": float(np.nanmax(np.abs(o))) if o is not None and o.size else math.nan}

    # ------------------------------------------------------------------ end
    def finish(
        self,
        epochs: Mapping[str, Sequence[float]],
        num_classes: int | None = None,
        regularized: bool = False,
        label_smoothing: float = 0.0,
    ) -> list[Finding]:
        """Classify the learning curves (once at least one epoch was completed)."""
        if not epochs or not any(len(v) for v in epochs.values()):
            return []
        classes = num_classes or self.num_classes
        floor = cross_entropy_floor(classes, label_smoothing) if classes else 0.0
        finding = classify_learning_curves(epochs, classes, self.thresholds, regularized, loss_floor=floor)
        self.findings = [f for f in self.findings if f.check != "learning_curves"] + [finding]
        self._emitted["learning_curves"] = finding.verdict
        return [finding]

    # ------------------------------------------------------------------ report
    def update_ratio_series(self) -> tuple[list[int], dict[str, list[float]]]:
        """Sampled steps (after the first) and, per weight, its ratio at each (NaN if absent)."""
        entries = [e for e in self.timeline if e["update"]]
        steps = [int(e["step"]) for e in entries]
        names: list[str] = []
        for e in entries:
            for k in e["update"]:
                if k not in names:
                    names.append(k)
        return steps, {k: [float(e["update"].get(k, math.nan)) for e in entries] for k in names}

    def write_plots(
        self, directory: str | Path, epochs: Mapping[str, Sequence[float]] | None = None
    ) -> dict[str, str]:
        """Write the PNG plots into ``directory``; returns title → file name (empty without
        matplotlib)."""
        from gradcraft.diagnostics import plots as P

        out = Path(directory)
        written: dict[str, str] = {}
        try:
            P.pyplot()
        except ImportError:
            return written
        if self.first_activations:
            first_step = self.timeline[0]["step"] if self.timeline else 1
            P.plot_activation_histograms(
                self.first_activations,
                out / "activations_start.png",
                title=f"Activations at step {first_step}",
            )
            written["Activations at the start"] = "activations_start.png"
        if self.last_activations and self.timeline and len(self.timeline) > 1:
            last_step = [e for e in self.timeline if e["act"]][-1]["step"]
            P.plot_activation_histograms(
                self.last_activations, out / "activations_end.png", title=f"Activations at step {last_step}"
            )
            written["Activations at the end"] = "activations_end.png"
        steps, series = self.update_ratio_series()
        if steps:
            P.plot_update_ratios(
                steps, series, out / "update_ratios.png", self.thresholds.update_ratio_target
            )
            written["Update/weight ratios"] = "update_ratios.png"
        if epochs and any(len(v) for v in epochs.values()):
            P.plot_learning_curves(epochs, out / "learning_curves.png")
            written["Training vs validation"] = "learning_curves.png"
        return written

    def markdown(self, plots: Mapping[str, str] | None = None, heading: str = "## Diagnosis") -> str:
        """The "Diagnosis" section: the findings worst first, a table of the last sample's
        per-layer statistics, and the plots (title → path relative to the report)."""
        lines = [heading, "", findings_to_markdown(self.findings)]
        if self.last_activations:
            step = [e for e in self.timeline if e["act"]][-1]["step"]
            last = [e for e in self.timeline if e["update"]]
            ratios = last[-1]["update"] if last else {}
            lines += [
                f"Per-layer activations at step {step}:",
                "",
                "| layer | kind | mean | std | saturated | dead units |",
                "|---|---|---|---|---|---|",
            ]
            for s in self.last_activations:
                sat = "" if s.saturated is None else pct(s.saturated)
                dead = "" if s.dead is None else pct(s.dead)
                lines.append(
                    f"| `{s.name}` | {s.kind or '-'} | {s.mean:.3g} | {s.std:.3g} | {sat} | {dead} |"
                )
            lines.append("")
            if ratios:
                lines += [
                    f"Update/weight ratios ‖ΔW‖/‖W‖ at step {last[-1]['step']} (rule of thumb "
                    f"{self.thresholds.update_ratio_target:g}): "
                    + ", ".join(f"`{k}` {v:.2g}" for k, v in ratios.items())
                    + ".",
                    "",
                ]
        for title, path in (plots or {}).items():
            lines += [f"![{title}]({path})", ""]
        return "\n".join(lines)


def _jsonl_path(trainer: Any) -> Path | None:
    for cb in getattr(trainer, "callbacks", []):
        if type(cb).__name__ == "JSONLLogger" and getattr(cb, "path", None) is not None:
            return Path(cb.path)
    return None


class Monitor(Callback):
    """Babysit a :class:`~gradcraft.train.Trainer` run (see the module docstring).

    Args:
        every_steps: measure activations, gradients and update ratios every N steps.
        probe_size: training examples evaluated at each epoch end (0: none; the curves are
            then read from the running training loss).
        directory: where the "Diagnosis" plots and ``diagnosis.md`` go (default:
            ``RUN_DIR/diagnosis`` when the trainer has a run directory; ``None`` and no run
            directory: nothing is written).
        plots: write PNG plots (needs matplotlib; silently skipped without it).
        stop_on_explosion: stop training (after the current epoch) when the loss explodes.
        verbose: print findings as they are made.
        settle_steps: update ratios of the first N steps are not judged.
        thresholds: verdict thresholds.

    After training, :attr:`findings` holds every finding and :meth:`report_section` the
    markdown for the run report.
    """

    order = 40  # before the loggers (50), so the epoch metrics it adds are logged

    def __init__(
        self,
        every_steps: int = 50,
        probe_size: int = 1024,
        directory: str | Path | None = None,
        plots: bool = True,
        stop_on_explosion: bool = False,
        verbose: bool = True,
        settle_steps: int = 100,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
    ) -> None:
        self.core = TrainingMonitor(
            every_steps=every_steps, probe_size=probe_size, settle_steps=settle_steps, thresholds=thresholds
        )
        self.directory = None if directory is None else Path(directory)
        self.plots = plots
        self.stop_on_explosion = stop_on_explosion
        self.verbose = verbose
        self.written_plots: dict[str, str] = {}
        self._run_dir: Path | None = None  # not the trainer itself: checkpoints walk callbacks' attributes

    @property
    def findings(self) -> list[Finding]:
        return self.core.findings

    def _dir(self) -> Path | None:
        if self.directory is not None:
            return self.directory
        return None if self._run_dir is None else self._run_dir / "diagnosis"

    def _publish(self, trainer: Any, findings: Sequence[Finding]) -> None:
        if not findings:
            return
        path = _jsonl_path(trainer)
        for f in findings:
            if self.verbose:
                if f.verdict == "ok":
                    trainer.info(f"diagnosis: {f.line()}")
                else:
                    trainer.warn(f"diagnosis: {f.line()}")
            if path is not None:
                record = {
                    "kind": "finding",
                    "epoch": trainer.epoch + 1,
                    "step": f.step or trainer.global_step,
                    **f.to_dict(),
                }
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(record, allow_nan=False) + "\n")
            if self.stop_on_explosion and f.check == "loss_explosion":
                trainer.stop_training = True
                trainer.stop_reason = "loss explosion (diagnosis: " + f.summary.split(":")[0] + ")"

    # ------------------------------------------------------------------ hooks
    def on_train_begin(self, trainer: Trainer) -> None:
        run_dir = getattr(trainer, "run_dir", None)
        self._run_dir = None if run_dir is None else Path(run_dir)
        if not trainer.resumed:
            self.core.reset()

    def on_batch_begin(self, trainer: Trainer) -> None:
        step = trainer.global_step + 1
        batch = trainer.last_batch
        if (
            batch is not None
            and self.core.probe_size
            and (self.core.probe_x is None or self.core.probe_x.shape[0] < self.core.probe_size)
        ):
            self.core.collect_probe(batch[0], batch[1])
        self.core.before_step(trainer.model, step)

    def on_batch_end(self, trainer: Trainer) -> None:
        out = trainer.last_output
        if self.core.num_classes is None and out is not None and getattr(out, "ndim", 0) == 2:
            self.core.num_classes = int(out.shape[1])
        new = self.core.after_step(
            trainer.model,
            trainer.global_step,
            trainer.last_loss,
            lr=trainer.batch_logs.get("lr"),
            epoch=trainer.epoch,
        )
        self._publish(trainer, new)

    def on_epoch_end(self, trainer: Trainer) -> None:
        metrics, new = self.core.end_epoch(trainer.model, trainer.epoch, trainer.loss_fn)
        for name, value in metrics.items():
            trainer.log_metric(name, value)
        self._publish(trainer, new)

    def on_train_end(self, trainer: Trainer) -> None:
        self.core.detach()
        new: list[Finding] = []
        if trainer.stop_reason == "non-finite loss":
            new.append(
                self.core.nonfinite_cause(
                    trainer.model, trainer.last_batch, trainer.loss_fn, trainer.lr, trainer.global_step + 1
                )
            )
        regularized = bool(getattr(trainer, "regularizers", None)) or any(
            "drop" in type(m).__name__.lower() and getattr(m, "p", 0) for m in trainer.model.modules()
        )
        smoothing = float(getattr(trainer.loss_fn, "label_smoothing", 0.0) or 0.0)
        new += self.core.finish(trainer.history.epochs, self.core.num_classes, regularized, smoothing)
        self._publish(trainer, new)
        directory = self._dir()
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self.written_plots = (
                self.core.write_plots(directory, trainer.history.epochs) if self.plots else {}
            )
            (directory / "diagnosis.md").write_text(
                self.core.markdown(self.written_plots, heading="# Diagnosis"), encoding="utf-8"
            )

    def report_section(self, report_dir: str | Path | None = None) -> str:
        """The markdown "Diagnosis" section for the run report; plot links are made relative
        to ``report_dir`` (the directory of ``report.md``; default: the run directory)."""
        directory = self._dir()
        plots = dict(self.written_plots)
        if directory is not None and plots:
            base = Path(report_dir) if report_dir is not None else directory.parent
            import os

            plots = {t: os.path.relpath(directory / p, base) for t, p in plots.items()}
        return self.core.markdown(plots)

    def state_dict(self) -> dict[str, Any]:
        return self.core.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.core.load_state_dict(state)
