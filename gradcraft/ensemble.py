"""After training: ensembles of models, snapshot ensembles, and averaged (EMA / Polyak) weights.

Three ways to get more out of trained networks, as the lectures list them:

* **Model ensembles.** Train several models and average their predictions at test time;
  :class:`Ensemble` combines ``M`` members by the mean of their probabilities (default), the
  mean of their logits, or a majority vote, and reports each member's accuracy next to the
  ensemble's. ``gradcraft eval RUN1 RUN2 … --ensemble`` does it for run directories
  (:func:`load_members`); each member keeps its own preprocessing.
* **Snapshot ensembles** (Huang et al., 2017, "Snapshot Ensembles: Train 1, get M for free"):
  with cosine annealing and warm restarts (SGDR), the weights at the end of each cycle — a
  minimum of the learning rate — are different good models. :class:`SnapshotEnsemble` saves them
  (``RUN_DIR/snapshots/snapshot-001.json`` …) at exactly the cycle ends that the scheduler's
  ``T_0`` and ``T_mult`` define; ``gradcraft eval RUN --ensemble --checkpoint snapshots``
  evaluates them together.
* **Averaged weights** (Polyak & Juditsky, 1992; the exponential moving average of TensorFlow's
  ``ExponentialMovingAverage`` and timm's ``ModelEma``): :class:`ExponentialMovingAverage` keeps
  a running average ``ŵ`` of the weights next to the training weights ``w`` and evaluates with
  it. After ``n`` earlier updates, an update is

      ŵ ← d_n · ŵ + (1 − d_n) · w,      d_n = decay                       (ema)
                                        d_n = min(decay, (1 + n)/(10 + n)) (ema with warmup)
                                        d_n = n / (n + 1)                  (polyak: the mean)

  and the first update copies ``w``. This is ``torch.optim.swa_utils.AveragedModel`` with
  ``get_ema_multi_avg_fn(decay)`` (ema) or its default SWA average (polyak).

Batch norm and averaged weights: the running mean and variance belong to the weights that
produced them. By default (``bn="average"``) they are averaged with the same rule as the
weights, which is right for a slowly moving EMA; ``bn="copy"`` takes the training model's
statistics; ``bn="recompute"`` recomputes them for the averaged weights by a pass over training
data before every evaluation (:func:`update_bn`, as ``torch.optim.swa_utils.update_bn``), which
a Polyak / SWA average needs: the mean of weights from far apart is a network whose activations
no stored statistics describe.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd.grad_mode import no_grad
from gradcraft.autograd.tensor import Tensor
from gradcraft.nn.containers import ModuleList
from gradcraft.nn.module import Module
from gradcraft.nn.normalization import _BatchNorm
from gradcraft.train.callbacks import Callback

if TYPE_CHECKING:
    from gradcraft.train.trainer import Trainer

__all__ = [
    "COMBINE_RULES",
    "Ensemble",
    "EnsembleResult",
    "ExponentialMovingAverage",
    "Member",
    "SnapshotEnsemble",
    "cycle_ends",
    "evaluated_weights",
    "load_members",
    "read_weights",
    "update_bn",
]

#: How :class:`Ensemble` combines its members' outputs.
COMBINE_RULES = ("mean_prob", "mean_logit", "vote")

_RULE_NAMES = {
    "mean_prob": "mean of probabilities",
    "mean_logit": "mean of logits",
    "vote": "majority vote",
}


def _host(x: Any) -> np.ndarray:
    """A NumPy array from a Tensor, a CuPy array or an array-like."""
    if isinstance(x, Tensor):
        x = x.data
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ============================================================================ ensembles
@dataclass
class Member:
    """One model of an :class:`Ensemble`.

    Attributes:
        model: a :class:`~gradcraft.nn.Module` mapping ``(N, …)`` inputs to ``(N, K)`` logits.
        name: how tables name it (e.g. its run directory).
        preprocess: applied to the ensemble's raw inputs before this model (its run's fitted
            preprocessing), or None.
        checkpoint: where its weights came from (for reports).
        classes: the class names it predicts, if known.
    """

    model: Module
    name: str = ""
    preprocess: Callable[[np.ndarray], np.ndarray] | None = None
    checkpoint: str = ""
    classes: list[str] | None = None


@dataclass
class EnsembleResult:
    """Accuracy and loss of each member and of the ensemble on one dataset.

    Attributes:
        names: member names, in order.
        checkpoints: where each member's weights came from.
        member_accuracy, member_loss: per member; the loss is the mean cross-entropy of its
            softmax.
        accuracy, loss: the ensemble's; the loss is the mean negative log of the combined
            probability of the true class.
        combine: the rule used.
        n: number of examples.
    """

    names: list[str]
    checkpoints: list[str]
    member_accuracy: list[float]
    member_loss: list[float]
    accuracy: float
    loss: float
    combine: str
    n: int

    def table(self) -> str:
        """A plain-text table: one row per member, then the ensemble's row."""
        width = max([len(n) for n in self.names] + [len(f"ensemble ({_RULE_NAMES[self.combine]})")])
        cw = max([len(c) for c in self.checkpoints] + [len("checkpoint")])
        lines = [f"  {'member':<{width}}  {'checkpoint':<{cw}}  accuracy     loss"]
        for name, ck, acc, loss in zip(self.names, self.checkpoints, self.member_accuracy, self.member_loss):
            lines.append(f"  {name:<{width}}  {ck:<{cw}}  {100 * acc:7.2f}%  {loss:7.4f}")
        label = f"ensemble ({_RULE_NAMES[self.combine]})"
        lines.append(f"  {label:<{width}}  {'':<{cw}}  {100 * self.accuracy:7.2f}%  {self.loss:7.4f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "combine": self.combine,
            "n": self.n,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "members": [
                {"name": n, "checkpoint": c, "accuracy": a, "loss": lo}
                for n, c, a, lo in zip(self.names, self.checkpoints, self.member_accuracy, self.member_loss)
            ],
        }


class Ensemble(Module):
    """Several trained models that predict together; behaves like a model for evaluation.

    For an input batch ``x`` (raw, before any member's preprocessing), member ``m`` outputs
    logits ``z_m`` of shape ``(N, K)`` and probabilities ``p_m = softmax(z_m)``. With member
    weights ``w_m`` (normalised to sum to 1), the ensemble's probabilities are

    * ``mean_prob``:  ``p = Σ_m w_m p_m`` (the lectures' "average the predictions");
    * ``mean_logit``: ``p = softmax(Σ_m w_m z_m)`` (a normalised geometric mean of the p_m);
    * ``vote``:       ``p ∝ Σ_m w_m [argmax z_m = k] + 10⁻⁶ · Σ_m w_m p_m`` — the share of
      (weighted) votes; ties are broken by the mean probability.

    ``forward(x)`` returns ``log p`` ``(N, K)``, so ``argmax`` gives the ensemble's class and
    :class:`~gradcraft.nn.CrossEntropyLoss` on it gives the ensemble's negative log-likelihood.
    The members always run in evaluation mode and without recording a graph; ``train()``
    refuses (train each member on its own).

    Args:
        members: :class:`Member` objects or plain Modules.
        combine: ``"mean_prob"``, ``"mean_logit"`` or ``"vote"``.
        weights: one non-negative weight per member (default: equal).

    Raises:
        ValueError: for no members, an unknown rule, or weights of the wrong number or sign.
    """

    def __init__(
        self,
        members: Sequence[Member | Module],
        combine: str = "mean_prob",
        weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        items = [m if isinstance(m, Member) else Member(m) for m in members]
        if not items:
            raise ValueError("Expected at least one member model. Received: none")
        for i, item in enumerate(items):
            if not isinstance(item.model, Module):
                raise TypeError(f"Expected Modules as members. Received: {type(item.model).__name__} at {i}")
        if combine not in COMBINE_RULES:
            raise ValueError(f"Expected combine in {COMBINE_RULES}. Received: combine={combine!r}")
        if weights is None:
            w = np.full(len(items), 1.0 / len(items))
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (len(items),) or np.any(w < 0) or not np.isfinite(w).all() or w.sum() <= 0:
                raise ValueError(
                    f"Expected {len(items)} non-negative weights, not all zero (one per member). "
                    f"Received: weights={list(weights)}"
                )
            w = w / w.sum()
        self.members = ModuleList([item.model for item in items])
        self.names = [item.name or f"member {i}" for i, item in enumerate(items)]
        self.checkpoints = [item.checkpoint for item in items]
        self.preprocess = [item.preprocess for item in items]
        self.combine = combine
        self.weights = w
        super().train(False)

    def train(self, mode: bool = True) -> Ensemble:
        """Stays in evaluation mode: ``train(False)`` / ``eval()`` are accepted, ``train()`` is not."""
        if mode:
            raise RuntimeError(
                "Expected an Ensemble to stay in evaluation mode. Received: train(True); "
                "train each member on its own, then ensemble them"
            )
        super().train(False)
        return self

    # ------------------------------------------------------------------ predictions
    def member_logits(self, x: Any) -> list[np.ndarray]:
        """Each member's ``(N, K)`` logits for raw inputs ``x`` (float64 NumPy arrays).

        Raises:
            ValueError: if the members do not all output ``(N, K)`` with the same ``K``.
        """
        arr = _host(x)
        if arr.dtype.kind != "f":
            from gradcraft.data import to_float

            arr = to_float(arr)
        outs: list[np.ndarray] = []
        with no_grad():
            for model, prep, name in zip(self.members, self.preprocess, self.names):
                model.eval()
                xi = arr if prep is None else np.asarray(prep(arr), dtype=arr.dtype)
                out = _host(model(Tensor(backend.as_array(xi)))).astype(np.float64)
                if out.ndim != 2 or out.shape[0] != arr.shape[0]:
                    raise ValueError(
                        f"Expected member '{name}' to output (N, K) scores for {arr.shape[0]} inputs. "
                        f"Received: shape={out.shape}"
                    )
                if outs and out.shape[1] != outs[0].shape[1]:
                    raise ValueError(
                        "Expected every member to predict the same number of classes. Received: "
                        f"{outs[0].shape[1]} from '{self.names[0]}', {out.shape[1]} from '{name}'"
                    )
                outs.append(out)
        return outs

    def _combine(self, logits: list[np.ndarray]) -> np.ndarray:
        w = self.weights
        if self.combine == "mean_logit":
            return _softmax(sum(wi * z for wi, z in zip(w, logits)))
        mean_p = sum(wi * _softmax(z) for wi, z in zip(w, logits))
        if self.combine == "mean_prob":
            return mean_p
        votes = np.zeros_like(mean_p)
        rows = np.arange(mean_p.shape[0])
        for wi, z in zip(w, logits):
            votes[rows, z.argmax(axis=1)] += wi
        scores = votes + 1e-6 * mean_p
        return scores / scores.sum(axis=1, keepdims=True)

    def predict_proba(self, x: Any) -> np.ndarray:
        """The ensemble's class probabilities ``(N, K)`` (float64) for raw inputs ``x``."""
        return self._combine(self.member_logits(x))

    def forward(self, x: Any) -> Tensor:
        probs = self.predict_proba(x)
        return Tensor(np.log(np.maximum(probs, 1e-12)).astype(backend.default_dtype()))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, data: Any, batch_size: int = 1000) -> EnsembleResult:
        """Accuracy and loss of every member and of the ensemble.

        Args:
            data: ``(x, y)`` arrays (raw inputs and integer labels), or an iterable of
                ``(x, y)`` batches such as a :class:`~gradcraft.data.DataLoader` without
                preprocessing (each member applies its own).
            batch_size: batch size when ``data`` are arrays.

        Raises:
            ValueError: for labels that are not integer class indices, or no data.
        """
        if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], Tensor):
            xs, ys = _host(data[0]), _host(data[1])
            batches: Iterable[Any] = (
                (xs[i : i + batch_size], ys[i : i + batch_size]) for i in range(0, len(xs), batch_size)
            )
        else:
            batches = data
        m = len(self.members)
        correct = np.zeros(m)
        nll = np.zeros(m)
        ens_correct = 0.0
        ens_nll = 0.0
        n = 0
        for x, y in batches:
            labels = _host(y)
            if labels.ndim != 1 or labels.dtype.kind not in "iu":
                raise ValueError(
                    f"Expected integer class labels of shape (N,). Received: shape={labels.shape}, "
                    f"dtype={labels.dtype}"
                )
            logits = self.member_logits(x)
            rows = np.arange(labels.size)
            for i, z in enumerate(logits):
                correct[i] += float((z.argmax(axis=1) == labels).sum())
                logp = z - z.max(axis=1, keepdims=True)
                logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
                nll[i] -= float(logp[rows, labels].sum())
            probs = self._combine(logits)
            ens_correct += float((probs.argmax(axis=1) == labels).sum())
            ens_nll -= float(np.log(np.maximum(probs[rows, labels], 1e-12)).sum())
            n += labels.size
        if n == 0:
            raise ValueError("Expected data to evaluate on. Received: no examples")
        return EnsembleResult(
            names=list(self.names),
            checkpoints=list(self.checkpoints),
            member_accuracy=(correct / n).tolist(),
            member_loss=(nll / n).tolist(),
            accuracy=ens_correct / n,
            loss=ens_nll / n,
            combine=self.combine,
            n=n,
        )

    def extra_repr(self) -> str:
        return f"combine={self.combine!r}, members={len(self.members)}"


# ============================================================================ reading weights
def evaluated_weights(state: Mapping[str, Any]) -> dict[str, Any]:
    """The weights a run is evaluated with, from a training checkpoint's unpacked trainer state:
    the model's ``state_dict``, with the averaged weights of an :class:`ExponentialMovingAverage`
    callback in their place when the run had one."""
    weights = dict(state["model"])
    callbacks = state.get("callbacks") or {}
    ema = callbacks.get(ExponentialMovingAverage.__name__) or {}
    shadow = ema.get("shadow") or {}
    weights.update(shadow)
    return weights


def read_weights(source: str | os.PathLike[str], which: str = "best") -> tuple[dict[str, np.ndarray], Path]:
    """A model ``state_dict`` (name → array) from a run directory or a weights file.

    Args:
        source: a run directory (its ``checkpoints/{which}.json``, falling back to ``last``), a
            gradcraft checkpoint ``.json`` (a training checkpoint, a snapshot, or any file of
            :func:`gradcraft.io.checkpoint.save_checkpoint` whose arrays are a state dict), a
            ``.safetensors`` file of named tensors, or an ``.npz`` file (read without pickle).
        which: ``"best"`` or ``"last"`` for run directories.

    Training checkpoints give the weights the run is evaluated with (:func:`evaluated_weights`:
    the averaged ones when the run used EMA).

    Returns:
        ``(state_dict, path_read)``.

    Raises:
        FileNotFoundError: naming the path, when there is no such file or checkpoint.
        CheckpointError: for a corrupt or foreign checkpoint.
    """
    from gradcraft.io.checkpoint import CheckpointError, checkpoint_exists, load_checkpoint, unpack_state

    if which not in ("best", "last"):
        raise ValueError(f"Expected which='best' or 'last'. Received: which={which!r}")
    path = Path(source)
    if path.is_dir():
        ckdir = path / "checkpoints"
        choice = ckdir / f"{which}.json"
        if not checkpoint_exists(choice) and which == "best":
            choice = ckdir / "last.json"
        if not checkpoint_exists(choice):
            raise FileNotFoundError(
                f"{path}: no checkpoint in this run directory (looked for {ckdir}/{which}.json)"
            )
        path = choice
    elif not path.is_file():
        raise FileNotFoundError(f"{path}: no such run directory or weights file")
    if path.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                'Reading .safetensors files needs safetensors: pip install "gradcraft[cli]"'
            ) from err
        return dict(load_file(str(path))), path
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}, path
    ckpt = load_checkpoint(path)
    tree = ckpt.meta.get("trainer")
    if isinstance(tree, dict):
        try:
            return evaluated_weights(unpack_state(tree, ckpt.arrays)), ckpt.path
        except (KeyError, TypeError) as err:
            raise CheckpointError(ckpt.path, f"corrupt training checkpoint: {err}") from err
    return dict(ckpt.arrays), ckpt.path


def load_members(
    run_dirs: Sequence[str | os.PathLike[str]], which: str = "best"
) -> tuple[list[Member], Any, list[str]]:
    """Ensemble members from run directories written by ``gradcraft train``.

    Each run is rebuilt from its ``recipe.yaml`` (models may differ between runs) with its own
    fitted preprocessing; ``which`` picks its ``best`` (falling back to ``last``) or ``last``
    checkpoint, or ``snapshots``: every snapshot of a run trained with a
    :class:`SnapshotEnsemble`, each one member.

    Returns:
        ``(members, test_split, classes)``: the test split is the first run's (raw pixels).

    Raises:
        RunError: for a missing run directory, recipe, checkpoint or snapshot.
        ValueError: when the runs predict different classes or take different inputs.
    """
    from gradcraft.models import build_model
    from gradcraft.train.experiment import Experiment, RunError

    if which not in ("best", "last", "snapshots"):
        raise ValueError(f"Expected which in ('best', 'last', 'snapshots'). Received: which={which!r}")
    if not run_dirs:
        raise ValueError("Expected at least one run directory. Received: none")
    members: list[Member] = []
    test: Any = None
    first: tuple[str, list[str], tuple[int, ...], str, list[int] | None] | None = None
    for run_dir in run_dirs:
        run = Path(run_dir)
        exp = Experiment.from_run_dir(run, quiet=True)
        snaps: list[Path] = []
        if which == "snapshots":
            snaps = sorted((run / "snapshots").glob("snapshot-*.json"))
            if not snaps:
                raise RunError(
                    f"{run / 'snapshots'}: no snapshots in this run directory (train it with "
                    "callbacks.snapshots.enabled: true and schedule.name: cosine_restarts)"
                )
            used = exp.prepare("last")
        else:
            used = exp.prepare(which)
        assert exp.data is not None
        classes = list(exp.data.classes)
        shape = exp.data.input_shape
        data_cfg = exp.recipe.data
        if first is None:
            first = (str(run), classes, shape, data_cfg.dataset, data_cfg.classes)
            test = exp.data.test
        else:
            name0, classes0, shape0, dataset0, selected0 = first
            if len(classes) != len(classes0):
                raise ValueError(
                    "Expected every ensemble member to predict the same number of classes. Received: "
                    f"{len(classes0)} in {name0}, {len(classes)} in {run}"
                )
            if classes != classes0:
                raise ValueError(
                    "Expected every ensemble member to predict the same classes. Received: "
                    f"{classes0} in {name0}, {classes} in {run}"
                )
            if shape != shape0:
                raise ValueError(
                    "Expected every ensemble member to take the same inputs. Received: "
                    f"shape {shape0} in {name0}, {shape} in {run}"
                )
            if (data_cfg.dataset, data_cfg.classes) != (dataset0, selected0):
                raise ValueError(
                    "Expected every ensemble member to be trained on the same dataset. Received: "
                    f"data.dataset={dataset0!r} in {name0}, {data_cfg.dataset!r} in {run}"
                )
        preprocess = exp.preprocessor
        if which == "snapshots":
            for snap in snaps:
                weights, path = read_weights(snap)
                model = build_model(exp.recipe.model, shape, len(classes))
                model.load_state_dict(weights)
                members.append(Member(model, f"{run} {snap.stem}", preprocess, path.name, classes))
        else:
            checkpoint = f"checkpoints/{used.name}"
            members.append(Member(exp.trainer.model, str(run), preprocess, checkpoint, classes))
    assert first is not None
    return members, test, first[1]


# ============================================================================ batch norm
def update_bn(loader: Iterable[Any], model: Module, max_batches: int | None = None) -> int:
    """Recompute the batch-norm running statistics of ``model`` from data.

    Every batch-norm layer that tracks statistics and whose affine parameters are trainable
    (frozen ones keep theirs) is reset and then accumulates the *cumulative* average of the
    batch means and (unbiased) variances over the batches — ``momentum=None``, as
    ``torch.optim.swa_utils.update_bn``. Unlike it, only these layers run in training mode;
    dropout and the rest stay in evaluation mode, so the statistics describe the activations
    the evaluated network sees. Modes and momenta are restored afterwards.

    Args:
        loader: yields ``(x, y)`` batches (or ``x``) of training inputs, preprocessed as in
            training.
        model: the network.
        max_batches: use at most this many batches (default: all).

    Returns:
        The number of batches used (0 when the model has no such layer).
    """
    layers = [
        m
        for m in model.modules()
        if isinstance(m, _BatchNorm)
        and m.track_running_stats
        and all(p.requires_grad for p in m.parameters(recurse=False))
    ]
    if not layers:
        return 0
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"Expected max_batches >= 1 or None. Received: max_batches={max_batches}")
    modes = [(m, m.training) for m in model.modules()]
    momenta = [(m, m.momentum) for m in layers]
    used = 0
    try:
        model.eval()
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
            object.__setattr__(m, "training", True)
        with no_grad():
            for batch in loader:
                if max_batches is not None and used >= max_batches:
                    break
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                model(x if isinstance(x, Tensor) else Tensor(backend.as_array(x)))
                used += 1
    finally:
        for m, momentum in momenta:
            m.momentum = momentum
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return used


# ============================================================================ averaged weights
class ExponentialMovingAverage(Callback):
    """Keep an average of the weights during training and validate / test with it.

    After every optimizer step ``s`` with ``s ≥ start_step`` and ``(s − start_step) %
    every_steps == 0``, the average ``ŵ`` of every floating parameter and buffer is updated:
    the first update copies the weights, later ones do ``ŵ ← d_n ŵ + (1 − d_n) w`` (``n``
    earlier updates) with

    * ``mode="ema"``: ``d_n = decay``, or ``min(decay, (1 + n)/(10 + n))`` with ``warmup``;
    * ``mode="polyak"``: ``d_n = n/(n + 1)``: ``ŵ`` is the mean of the weights after every
      update step (Polyak–Ruppert averaging; SWA when the steps are far apart).

    At the end of every epoch the averaged weights are swapped into the model (in place, so
    optimizers' flat buffers stay valid), the validation loader is evaluated, and the
    training weights are swapped back: ``val_loss`` / ``val_accuracy`` (and every other
    ``val_`` metric) are then the averaged model's — which is what early stopping and the best
    checkpoint use — and the training weights' are kept as ``raw_val_loss`` /
    ``raw_val_accuracy``. Validation thus runs twice per epoch; a plateau schedule, stepped
    inside the trainer before callbacks run, sees the training weights' numbers.
    Checkpoints hold both sets of weights, so a resumed run continues the average exactly;
    :func:`evaluated_weights` reads the averaged ones back for testing.

    Batch norm (``bn``): ``"average"`` averages running means and variances like the weights
    (integer counters are not averaged: the model's are kept); ``"copy"`` takes the training
    model's statistics at each update; ``"recompute"`` recomputes them for the averaged
    weights with :func:`update_bn` over ``bn_loader`` every time the average is swapped in
    (and keeps them in the average, so checkpoints written at an epoch's end hold them).

    Args:
        decay: ema: the weight of the old average, in [0, 1).
        mode: ``"ema"`` or ``"polyak"``.
        warmup: ema: ``d_n = min(decay, (1 + n)/(10 + n))``, so the average soon forgets the
            first weights (TensorFlow's ``num_updates``).
        every_steps: update every this many optimizer steps.
        start_step: the first step that may update (the average starts as a copy there).
        bn: ``"average"``, ``"copy"`` or ``"recompute"``.
        bn_loader: batches of training inputs for ``bn="recompute"`` (preprocessed, not
            shuffled or augmented, so that evaluation stays deterministic).
        bn_batches: recompute from at most this many batches (default: all).
        validate: evaluate the averaged weights on the validation loader every epoch.

    Raises:
        ValueError: for settings out of range, or ``bn="recompute"`` without a ``bn_loader``.
    """

    order = -20

    def __init__(
        self,
        decay: float = 0.999,
        *,
        mode: str = "ema",
        warmup: bool = False,
        every_steps: int = 1,
        start_step: int = 0,
        bn: str = "average",
        bn_loader: Iterable[Any] | None = None,
        bn_batches: int | None = None,
        validate: bool = True,
    ) -> None:
        if mode not in ("ema", "polyak"):
            raise ValueError(f"Expected mode 'ema' or 'polyak'. Received: mode={mode!r}")
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise ValueError(f"Expected 0 <= decay < 1. Received: decay={decay!r}")
        for name, value, low in (("every_steps", every_steps, 1), ("start_step", start_step, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"Expected an integer {name} >= {low}. Received: {name}={value!r}")
        if bn not in ("average", "copy", "recompute"):
            raise ValueError(f"Expected bn 'average', 'copy' or 'recompute'. Received: bn={bn!r}")
        if bn == "recompute" and bn_loader is None:
            raise ValueError(
                "Expected a bn_loader (batches of training inputs) with bn='recompute'. "
                "Received: bn_loader=None"
            )
        if bn_batches is not None and (isinstance(bn_batches, bool) or bn_batches < 1):
            raise ValueError(f"Expected bn_batches >= 1 or None. Received: bn_batches={bn_batches!r}")
        self.decay = float(decay)
        self.mode = mode
        self.warmup = bool(warmup)
        self.every_steps = int(every_steps)
        self.start_step = int(start_step)
        self.bn = bn
        self.bn_loader = bn_loader
        self.bn_batches = bn_batches
        self.validate = validate
        self.num_updates = 0
        self.shadow: dict[str, Any] = {}
        self._scratch: Any = None

    # ------------------------------------------------------------------ the average
    def decay_at(self, n: int) -> float:
        """``d_n``: the weight of the old average in the update after ``n`` earlier ones (n ≥ 1)."""
        if self.mode == "polyak":
            return n / (n + 1.0)
        if self.warmup:
            return min(self.decay, (1.0 + n) / (10.0 + n))
        return self.decay

    @staticmethod
    def _entries(model: Module) -> list[tuple[str, Tensor, bool]]:
        """``(name, tensor, is_buffer)`` for every floating parameter and persistent buffer."""
        params = {id(p) for p in model.parameters()}
        out = []
        for name, t in model.state_dict(keep_vars=True).items():
            if t.data.dtype.kind == "f":
                out.append((name, t, id(t) not in params))
        return out

    def update(self, model: Module) -> None:
        """Fold the model's current weights into the average (the first call copies them)."""
        entries = self._entries(model)
        if not self.shadow:
            self.shadow = {name: t.data.copy() for name, t, _ in entries}
            self.num_updates = 1
            return
        missing = [name for name, _, _ in entries if name not in self.shadow]
        if missing:
            raise ValueError(
                f"Expected the model the average was started with. Received: new entries {missing[:5]}"
            )
        w = 1.0 - self.decay_at(self.num_updates)
        largest = max(int(t.data.size) for _, t, _ in entries)
        dtype = entries[0][1].data.dtype
        xp = backend.get_array_module(entries[0][1].data)
        if self._scratch is None or self._scratch.size < largest or self._scratch.dtype != dtype:
            self._scratch = xp.empty(largest, dtype=dtype)
        for name, t, is_buffer in entries:
            avg = self.shadow[name]
            if is_buffer and self.bn != "average":
                avg[...] = t.data
                continue
            tmp = self._scratch[: avg.size].reshape(avg.shape) if avg.dtype == self._scratch.dtype else None
            if tmp is None:
                avg += (t.data - avg) * w
                continue
            xp.subtract(t.data, avg, out=tmp)
            tmp *= w
            avg += tmp
        self.num_updates += 1

    def _swap_in(self, model: Module) -> dict[str, Any]:
        backup = {}
        for name, t, _ in self._entries(model):
            backup[name] = t.data.copy()
            t.data[...] = self.shadow[name]
        if self.bn == "recompute":
            assert self.bn_loader is not None
            update_bn(self.bn_loader, model, self.bn_batches)
            for name, t, is_buffer in self._entries(model):
                if is_buffer:
                    self.shadow[name][...] = t.data
        return backup

    @staticmethod
    def _restore(model: Module, backup: Mapping[str, Any]) -> None:
        for name, t, _ in ExponentialMovingAverage._entries(model):
            t.data[...] = backup[name]

    @contextlib.contextmanager
    def average_parameters(self, model: Module) -> Iterator[Module]:
        """Within the block the model holds the averaged weights (with recomputed batch-norm
        statistics for ``bn="recompute"``); the training weights come back afterwards, also
        after an exception. Without an average yet, the model is left as it is."""
        if not self.shadow:
            yield model
            return
        backup = self._swap_in(model)
        try:
            yield model
        finally:
            self._restore(model, backup)

    def copy_to(self, model: Module) -> None:
        """Put the averaged weights into ``model`` for good (e.g. before exporting it)."""
        if self.shadow:
            self._swap_in(model)

    # ------------------------------------------------------------------ hooks
    def on_batch_end(self, trainer: Trainer) -> None:
        step = trainer.global_step
        if step >= self.start_step and (step - self.start_step) % self.every_steps == 0:
            self.update(trainer.model)

    def on_epoch_end(self, trainer: Trainer) -> None:
        validate = self.validate and trainer.val_loader is not None
        if not self.shadow or not (validate or self.bn == "recompute"):
            return
        result: dict[str, Any] = {}
        with self.average_parameters(trainer.model):
            if validate:
                result = trainer.evaluate(trainer.val_loader, prefix="val")
        for key, value in result.items():
            if not isinstance(value, float):
                continue
            raw = trainer.epoch_logs.get(key)
            if isinstance(raw, float):
                trainer.log_metric(f"raw_{key}", raw)
            trainer.log_metric(key, value)

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_updates": self.num_updates,
            "shadow": {k: v.copy() for k, v in self.shadow.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.num_updates = int(state["num_updates"])
        self.shadow = {k: backend.as_array(np.array(v)) for k, v in (state.get("shadow") or {}).items()}


# ============================================================================ snapshots
def cycle_ends(T_0: int, T_mult: int, total: int) -> list[int]:
    """The scheduler steps (counted from 1) after which a cosine-restart cycle ends, up to ``total``.

    Cycle ``i`` (from 0) lasts ``T_i = T_0 · T_mult^i`` steps, so cycle ``k`` ends after
    ``e_k = T_0 (1 + T_mult + … + T_mult^(k−1))`` steps: ``T_0, 2T_0, 3T_0, …`` for ``T_mult=1``,
    ``T_0, 3T_0, 7T_0, …`` for ``T_mult=2``. The step ``e_k`` is trained at the cycle's lowest
    learning rate; the schedule restarts right after it.

    Raises:
        ValueError: for ``T_0 < 1`` or ``T_mult < 1``.
    """
    if T_0 < 1 or T_mult < 1:
        raise ValueError(f"Expected T_0 >= 1 and T_mult >= 1. Received: T_0={T_0}, T_mult={T_mult}")
    ends = []
    end, length = T_0, T_0
    while end <= total:
        ends.append(end)
        length *= T_mult
        end += length
    return ends


class SnapshotEnsemble(Callback):
    """Save the weights at the end of every cycle of a :class:`CosineAnnealingWarmRestarts`
    schedule: a snapshot ensemble (Huang et al., 2017) from one run.

    The cycle ends come from the scheduler's ``T_0`` and ``T_mult`` (:func:`cycle_ends`),
    counted in the scheduler's own steps: optimizer steps when the trainer steps it per batch
    (``scheduler_interval="step"``), epochs otherwise. Snapshot ``k`` is written to
    ``directory/snapshot-{k:03d}.json`` (+ safetensors) atomically, as a plain weights file
    (the arrays are the model's ``state_dict``; the metadata hold the trainer's checkpoint
    metadata and ``{"snapshot": {cycle, step, epoch, lr}}``); :func:`read_weights` and
    :func:`load_members` read them. A snapshot holds the training weights (not an
    :class:`ExponentialMovingAverage` of them); weights that are not finite are not saved.

    Args:
        directory: where the snapshots go (default: ``RUN_DIR/snapshots`` of the trainer).

    Raises:
        ValueError: at the start of training, if the trainer's scheduler is not a
            ``CosineAnnealingWarmRestarts``.
    """

    order = 95  # after the other callbacks, before checkpoints record its state

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = None if directory is None else Path(directory)
        self.saved: list[dict[str, Any]] = []
        self._T_0 = 0
        self._T_mult = 1
        self._interval = "step"

    def on_train_begin(self, trainer: Trainer) -> None:
        from gradcraft.optim.lr_scheduler import CosineAnnealingWarmRestarts

        sched = trainer.scheduler
        if not isinstance(sched, CosineAnnealingWarmRestarts):
            raise ValueError(
                "Expected a CosineAnnealingWarmRestarts scheduler for snapshot ensembles (snapshots are "
                f"taken at the end of each cosine cycle). Received: {type(sched).__name__}"
            )
        self._T_0, self._T_mult = int(sched.T_0), int(sched.T_mult)
        self._interval = trainer.scheduler_interval
        if self.directory is None:
            if trainer.run_dir is None:
                raise ValueError(
                    "Expected a directory for the snapshots (or a trainer with a run_dir). Received: none"
                )
            self.directory = trainer.run_dir / "snapshots"

    def _is_cycle_end(self, count: int) -> bool:
        ends = cycle_ends(self._T_0, self._T_mult, count)
        return bool(ends) and ends[-1] == count

    def _save(self, trainer: Trainer) -> None:
        from gradcraft.io.checkpoint import save_checkpoint

        if not trainer.weights_are_finite():
            trainer.warn(
                f"SnapshotEnsemble: weights are not finite at step {trainer.global_step}; no snapshot"
            )
            return
        assert self.directory is not None
        cycle = len(self.saved) + 1
        info = {
            "cycle": cycle,
            "step": trainer.global_step,
            "epoch": trainer.epoch + 1,
            "lr": float(trainer.batch_logs.get("lr", trainer.lr)),
        }
        path = save_checkpoint(
            self.directory / f"snapshot-{cycle:03d}",
            trainer.model.state_dict(),
            {**trainer.checkpoint_meta, "snapshot": info},
        )
        self.saved.append({**info, "file": path.name})
        trainer.info(f"snapshot {cycle} saved at step {trainer.global_step} (end of cosine cycle {cycle})")

    def on_batch_end(self, trainer: Trainer) -> None:
        if self._interval == "step" and self._is_cycle_end(trainer.global_step):
            self._save(trainer)

    def on_epoch_end(self, trainer: Trainer) -> None:
        if self._interval == "epoch" and self._is_cycle_end(trainer.epoch + 1):
            self._save(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"saved": [dict(s) for s in self.saved]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.saved = [dict(s) for s in state.get("saved", [])]
