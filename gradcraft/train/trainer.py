"""``Trainer``: the training loop, with validation, metrics, callbacks and exact resumption.

One optimizer step, as the lectures write it::

    out  = model(x)                       # forward
    loss = loss_fn(out, y) + Σ regularizer(model)
    optimizer.zero_grad(); loss.backward()
    clip_grad_norm_(params, max_norm)     # optional
    optimizer.step(); scheduler.step()    # per-step schedules (OneCycle, cosine, warm-up)

After each epoch the model is evaluated on the validation loader; per-epoch schedules step
(:class:`ReduceLROnPlateau` gets the monitored validation metric), the metrics go to the
:class:`~gradcraft.train.History`, and callbacks run (early stopping, checkpoints, loggers).

Checkpoints (:meth:`Trainer.save_checkpoint`) hold *everything* the rest of the run depends
on: weights and buffers, optimizer and scheduler state, both loaders' positions, the state of
every random generator (the library-wide one, the loaders', any generator held by a layer or a
transform), the callbacks' state, the history and the running epoch metrics. A run resumed
from one (``fit(..., resume_from=path)``) produces bit-identical weights to a run that was
never interrupted, given the same thread count (per-thread partial sums are added in a fixed
order, but how the work is split depends on the count).

A loss that is NaN or infinite stops the run at once with a
:class:`NonFiniteLossError` naming the step, the learning rate and the likely causes; no
checkpoint is written with non-finite weights, so the last good one survives.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd.grad_mode import no_grad
from gradcraft.autograd.tensor import Tensor
from gradcraft.ops import accel
from gradcraft.train.callbacks import Callback
from gradcraft.train.history import History
from gradcraft.train.metrics import MetricAccumulator

__all__ = ["NonFiniteLossError", "Trainer", "collect_generators"]

_STATE_FORMAT = "gradcraft.trainer"
_STATE_VERSION = 1


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the run was stopped at once.

    Attributes:
        step: the optimizer step that produced it (1-based: the step that would have run).
        epoch: 1-based epoch.
        lr: the learning rate in use.
        value: the offending loss value.
        checkpoint: the last good checkpoint, if one was written.
    """

    def __init__(
        self,
        step: int,
        epoch: int,
        batch: int,
        num_batches: int,
        lr: float,
        value: float,
        last_finite: float | None,
        checkpoint: Path | None,
    ) -> None:
        self.step, self.epoch, self.batch, self.lr, self.value = step, epoch, batch, lr, value
        self.checkpoint = checkpoint
        kind = "NaN" if math.isnan(value) else "infinite"
        previous = f" (the previous step's loss was {last_finite:.4g})" if last_finite is not None else ""
        causes = [
            f"the learning rate is too high ({lr:.3g}): try 3-10x lower, a warm-up, or clip_grad_norm",
            "the inputs are not scaled: pixels should be in [0, 1] or standardized (data.preprocessing)",
            "log of zero or exp overflow in a custom loss: use cross_entropy on logits / log_softmax",
            "exploding gradients in a deep network without normalization: add batch norm or clipping",
        ]
        where = (
            f"kept the last good checkpoint: {checkpoint}" if checkpoint else "no checkpoint was written yet"
        )
        super().__init__(
            f"The loss became {kind} at step {step} (epoch {epoch}, batch {batch}/{num_batches}){previous}; "
            f"training stopped. Learning rate: {lr:.6g}. Likely causes:\n  - "
            + "\n  - ".join(causes)
            + f"\n{where[0].upper()}{where[1:]}."
        )


def _walk_generators(
    obj: Any, path: str, found: dict[str, np.random.Generator], seen: set[int], depth: int
) -> None:
    if depth > 6 or id(obj) in seen:
        return
    if isinstance(obj, np.random.Generator):
        seen.add(id(obj))
        found[path] = obj
        return
    if obj is None or isinstance(obj, (str, bytes, int, float, bool, np.ndarray, Tensor, type)):
        return
    seen.add(id(obj))
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            _walk_generators(v, f"{path}.{k}", found, seen, depth + 1)
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _walk_generators(v, f"{path}.{i}", found, seen, depth + 1)
        return
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        for k, v in attrs.items():
            if k.startswith("__") or (callable(v) and not hasattr(v, "__dict__")):
                continue
            _walk_generators(v, f"{path}.{k}", found, seen, depth + 1)


def collect_generators(**roots: Any) -> dict[str, np.random.Generator]:
    """Every ``numpy.random.Generator`` reachable from ``roots`` (through attributes, lists,
    dicts and a module's submodules), by a stable dotted path such as ``model.3.generator``.

    Each generator is listed once (the first path found), so shared generators are saved once.
    """
    found: dict[str, np.random.Generator] = {}
    seen: set[int] = set()
    for name, root in roots.items():
        named_modules = getattr(root, "named_modules", None)
        if callable(named_modules):
            for mod_name, module in named_modules():
                for attr, value in vars(module).items():
                    if attr.startswith("_"):
                        continue
                    sub = f"{name}.{mod_name}.{attr}" if mod_name else f"{name}.{attr}"
                    _walk_generators(value, sub, found, seen, 0)
        else:
            _walk_generators(root, name, found, seen, 0)
    return found


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return np.asarray(x.numpy())
    if type(x).__module__.startswith("cupy"):
        return x.get()
    return np.asarray(x)


class Trainer:
    """Train a model with an optimizer on a loader, validate, and let callbacks watch.

    Args:
        model: a :class:`gradcraft.nn.Module` producing ``(N, C)`` logits.
        loss_fn: ``loss_fn(logits, targets) -> scalar Tensor`` (e.g. ``nn.CrossEntropyLoss()``;
            targets are class indices or soft targets from mixing).
        optimizer: a :mod:`gradcraft.optim` optimizer over the model's parameters.
        scheduler: optional learning-rate scheduler.
        train_loader: yields ``(x, y)`` Tensor batches (a :class:`gradcraft.data.DataLoader`
            for resumable runs).
        val_loader: optional validation loader, evaluated after every epoch.
        callbacks: :class:`~gradcraft.train.callbacks.Callback` objects.
        regularizers: penalties added to the data loss: callables ``reg(model) -> Tensor``
            such as :class:`gradcraft.nn.regularizers.L2`.
        clip_grad_norm: clip the global L2 norm of the gradients to this value.
        scheduler_interval: ``"epoch"`` or ``"step"`` — when ``scheduler.step()`` runs.
            Schedulers with a ``step(metric)`` signature (ReduceLROnPlateau) always step per
            epoch with ``epoch_logs[scheduler_monitor]``.
        scheduler_monitor: metric handed to a plateau scheduler.
        topk: report ``top{k}_accuracy`` for these k (when k < number of classes).
        extra_state: ``name -> object with state_dict()/load_state_dict()`` saved in checkpoints
            too (e.g. fitted preprocessing), or plain JSON/array values under ``"meta"``.
        run_dir: the run directory, if any (callbacks may write there).
        checkpoint_meta: JSON metadata written into every checkpoint (e.g. the resolved recipe).
        verbose: print informational messages (warnings are always printed).
        printer: where messages go (default: stderr).
        distributed: a :class:`gradcraft.distributed.DataParallel` when this trainer is one of
            several data-parallel processes: after every backward pass it averages the
            gradients over the processes, evaluation and epoch training metrics are summed over
            them, and it joins the callbacks. Each process's loaders must yield its own shard.
    """

    def __init__(
        self,
        model: Any,
        loss_fn: Callable[[Any, Any], Any],
        optimizer: Any,
        scheduler: Any = None,
        train_loader: Iterable[Any] | None = None,
        val_loader: Iterable[Any] | None = None,
        callbacks: Sequence[Callback] = (),
        *,
        regularizers: Sequence[Any] = (),
        clip_grad_norm: float | None = None,
        scheduler_interval: str = "epoch",
        scheduler_monitor: str = "val_loss",
        topk: Sequence[int] = (5,),
        extra_state: Mapping[str, Any] | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        checkpoint_meta: Mapping[str, Any] | None = None,
        verbose: bool = True,
        printer: Callable[[str], None] | None = None,
        distributed: Any = None,
    ) -> None:
        if distributed is not None:
            callbacks = [*callbacks, distributed]
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(
                f"Expected scheduler_interval 'epoch' or 'step'. Received: {scheduler_interval!r}"
            )
        if clip_grad_norm is not None and not clip_grad_norm > 0:
            raise ValueError(
                f"Expected clip_grad_norm > 0 or None. Received: clip_grad_norm={clip_grad_norm!r}"
            )
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"Expected Callback instances. Received: {type(cb).__name__}")
        self.model = model
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.callbacks: list[Callback] = sorted(callbacks, key=lambda c: c.order)
        self.regularizers = list(regularizers)
        self.clip_grad_norm = clip_grad_norm
        self.scheduler_interval = scheduler_interval
        self.scheduler_monitor = scheduler_monitor
        self.topk = tuple(topk)
        self.extra_state = dict(extra_state or {})
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.checkpoint_meta = dict(checkpoint_meta or {})
        self.verbose = verbose
        self.printer = printer or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.distributed = distributed

        self.history = History()
        self.epoch = 0
        self.epochs = 0
        self.global_step = 0
        self.batch_index = 0
        self.stop_training = False
        self.stop_reason = ""
        self.resumed = False
        self.resumed_mid_epoch = False
        self.last_batch: tuple[Any, Any] | None = None
        self.last_output: Any = None
        self.last_loss: float | None = None
        self.batch_logs: dict[str, float] = {}
        self.epoch_logs: dict[str, Any] = {}
        self.last_eval: dict[str, Any] = {}
        self.last_checkpoint: Path | None = None
        self._train_metrics = MetricAccumulator(topk=self.topk)
        self._next_epoch = 0
        self._phase = "epoch"
        self._epoch_started = 0.0
        self._epoch_images = 0
        self._warned: set[str] = set()
        self._state_keys()

    # ------------------------------------------------------------------ small helpers
    def _state_keys(self) -> None:
        keys = [cb.state_key for cb in self.callbacks]
        dupes = {k for k in keys if keys.count(k) > 1}
        if dupes:
            raise ValueError(
                f"Expected callbacks with distinct state_key values. Received duplicates: {sorted(dupes)}"
            )

    def info(self, message: str) -> None:
        """Print an informational message unless ``verbose`` is off."""
        if self.verbose:
            self.printer(message)

    def warn(self, message: str, once: bool = False) -> None:
        """Print a warning (always; only the first time when ``once``)."""
        if once:
            if message in self._warned:
                return
            self._warned.add(message)
        self.printer(f"warning: {message}")

    @property
    def lr(self) -> float:
        """The current learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def steps_per_epoch(self) -> int | None:
        """Batches per epoch of the training loader (None if it has no length)."""
        try:
            return len(self.train_loader)  # type: ignore[arg-type]
        except TypeError:
            return None

    @property
    def running_metrics(self) -> dict[str, float]:
        """The current epoch's training loss and accuracy so far (``loss``, ``accuracy``, …)."""
        return self._train_metrics.compute()

    @property
    def epoch_images(self) -> int:
        """Examples trained on so far in the current epoch (since the process started it)."""
        return self._epoch_images

    def weights_are_finite(self) -> bool:
        """Whether every parameter and buffer of the model is finite."""
        return all(
            np.all(np.isfinite(_to_numpy(v)))
            for v in self.model.state_dict().values()
            if np.asarray(v).dtype.kind == "f"
        )

    def _call(self, hook: str) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self)

    def log_metric(self, name: str, value: float) -> None:
        """Add a metric to the current epoch's logs and history (for callbacks in on_epoch_end)."""
        self.epoch_logs[name] = value
        self.history.update_last(name, value)

    # ------------------------------------------------------------------ the loop
    def fit(self, epochs: int, resume_from: str | os.PathLike[str] | None = None) -> History:
        """Train for ``epochs`` epochs in total (counting those before a resume).

        Args:
            epochs: total number of epochs of the run.
            resume_from: a checkpoint written by :meth:`save_checkpoint` (``last.json``) to
                continue from; the run then ends exactly as the uninterrupted one would.

        Returns:
            The :class:`History`.

        Raises:
            NonFiniteLossError: when the loss becomes NaN or infinite.
            CheckpointError: when ``resume_from`` is missing, corrupt or does not match.
        """
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ValueError(f"Expected a positive integer number of epochs. Received: epochs={epochs!r}")
        if self.train_loader is None:
            raise ValueError("Trainer.fit needs a train_loader")
        self.epochs = int(epochs)
        accel.tune_allocator()
        if resume_from is not None:
            self.load_checkpoint(resume_from)
            self.resumed = True
        self.stop_training = False
        self.stop_reason = ""
        self._call("on_train_begin")
        try:
            while self._next_epoch < self.epochs and not self.stop_training:
                self.epoch = self._next_epoch
                mid_epoch = self._phase == "batch"
                self.resumed_mid_epoch = mid_epoch
                if not mid_epoch:
                    self.batch_index = 0
                    self._train_metrics.reset()
                self._epoch_started = time.perf_counter()
                self._epoch_images = 0
                self._phase = "batch"
                self._call("on_epoch_begin")
                self._train_epoch()
                self._finish_epoch()
                self._phase = "epoch"
                self._next_epoch = self.epoch + 1
                self._call("on_epoch_end")
            if not self.stop_reason:
                self.stop_reason = "completed"
        except NonFiniteLossError:
            self.stop_reason = "non-finite loss"
            self._call("on_train_end")
            raise
        except KeyboardInterrupt:
            self.stop_reason = "interrupted"
            self._call("on_train_end")
            raise
        self._call("on_train_end")
        return self.history

    def _regularization(self) -> Any:
        total: Any = None
        for reg in self.regularizers:
            term = reg(self.model)
            total = term if total is None else total + term
        return total

    def _train_epoch(self) -> None:
        self.model.train()
        n_batches = self.steps_per_epoch or 0
        for host_batch in self.train_loader:  # type: ignore[union-attr]
            x, y = self._on_model_device(*host_batch)
            self.last_batch = (x, y)
            self._call("on_batch_begin")
            lr = self.lr
            out = self.model(x)
            loss = self.loss_fn(out, y)
            reg = self._regularization()
            total = loss if reg is None else loss + reg
            value = float(_to_numpy(loss.data if isinstance(loss, Tensor) else loss))
            total_value = float(_to_numpy(total.data if isinstance(total, Tensor) else total))
            if not (math.isfinite(value) and math.isfinite(total_value)):
                bad = value if not math.isfinite(value) else total_value
                raise NonFiniteLossError(
                    self.global_step + 1,
                    self.epoch + 1,
                    self.batch_index + 1,
                    n_batches,
                    lr,
                    bad,
                    self.last_loss,
                    self.last_checkpoint,
                )
            self.optimizer.zero_grad()
            total.backward()
            if self.distributed is not None:
                self.distributed.after_backward(self.model)
            logs: dict[str, float] = {"loss": value, "lr": lr}
            if reg is not None:
                logs["reg_loss"] = total_value - value
            if self.clip_grad_norm is not None:
                from gradcraft.nn.utils import clip_grad_norm_

                norm = clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
                logs["grad_norm"] = float(_to_numpy(norm.data if isinstance(norm, Tensor) else norm))
            self.optimizer.step()
            self.global_step += 1
            self.batch_index += 1
            if self.scheduler is not None and self.scheduler_interval == "step" and not self._is_plateau():
                self.scheduler.step()
            self.last_output = out
            self.last_loss = value
            batch = int(_to_numpy(x.data if isinstance(x, Tensor) else x).shape[0])
            self._epoch_images += batch
            self._train_metrics.update(
                value, _to_numpy(out.data), _to_numpy(y.data if isinstance(y, Tensor) else y)
            )
            self.history.log_step(self.global_step, "loss", value)
            self.batch_logs = logs
            self._call("on_batch_end")

    def _on_model_device(self, *tensors: Any) -> tuple[Any, ...]:
        """Batches (built on the host) moved to the model's device when that is a GPU."""
        first = next(iter(self.model.parameters()), None)
        if first is None or first.device == "cpu":
            return tensors
        dev = backend.device_of(first.data)
        return tuple(t.to(dev) if isinstance(t, Tensor) else t for t in tensors)

    def _is_plateau(self) -> bool:
        return self.scheduler is not None and type(self.scheduler).__name__ == "ReduceLROnPlateau"

    def _finish_epoch(self) -> None:
        train_metrics = self._train_metrics
        if self.distributed is not None:  # this process saw 1/K of the epoch
            train_metrics = self.distributed.reduce_metrics(train_metrics)
        train = train_metrics.compute()
        lr = self.batch_logs.get("lr", self.lr)  # the rate the epoch's last step used
        logs: dict[str, Any] = {"epoch": self.epoch + 1, "step": self.global_step, "lr": lr}
        logs.update({f"train_{k}": v for k, v in train.items()})
        if self.val_loader is not None:
            val = self.evaluate(self.val_loader, prefix="val")
            logs.update({k: v for k, v in val.items() if isinstance(v, float)})
        elapsed = time.perf_counter() - self._epoch_started
        logs["epoch_time"] = elapsed
        images = self._epoch_images * (self.distributed.world_size if self.distributed is not None else 1)
        logs["images_per_sec"] = images / elapsed if elapsed > 0 else 0.0
        if self.scheduler is not None:
            if self._is_plateau():
                metric = logs.get(self.scheduler_monitor)
                if metric is None:
                    self.warn(
                        f"ReduceLROnPlateau: metric '{self.scheduler_monitor}' is not in the epoch logs; "
                        "the schedule did not step",
                        once=True,
                    )
                else:
                    self.scheduler.step(metric)
            elif self.scheduler_interval == "epoch":
                self.scheduler.step()
        self.epoch_logs = logs
        self.history.log_epoch(logs)

    # ------------------------------------------------------------------ evaluation
    def evaluate(
        self, loader: Iterable[Any] | None = None, tta: Any = None, prefix: str = "val"
    ) -> dict[str, Any]:
        """Loss and metrics of the model on ``loader`` (default: the validation loader).

        Runs in evaluation mode without recording a graph, then restores the previous mode.

        Args:
            loader: yields ``(x, y)`` batches.
            tta: test-time augmentation: a callable ``tta(model, x) -> logits or probabilities``
                (:mod:`gradcraft.data` provides these); the loss is then computed on its output.
            prefix: metric name prefix (``val_loss``, ``test_accuracy``, …).

        Returns:
            ``{prefix_loss, prefix_accuracy, prefix_top5_accuracy}`` as floats, plus
            ``prefix_confusion_matrix`` (``(C, C)`` int64) and ``prefix_per_class_accuracy``
            (``(C,)``) arrays. Also kept in :attr:`last_eval`.
        """
        loader = self.val_loader if loader is None else loader
        if loader is None:
            raise ValueError("Trainer.evaluate needs a loader (no val_loader was given)")
        acc = MetricAccumulator(topk=self.topk)
        was_training = bool(getattr(self.model, "training", False))
        self.model.eval()
        try:
            with no_grad():
                for host_batch in loader:
                    x, y = self._on_model_device(*host_batch)
                    out = self.model(x) if tta is None else tta(self.model, x)
                    out = out if isinstance(out, Tensor) else Tensor(out)
                    loss = self.loss_fn(out, y)
                    acc.update(float(_to_numpy(loss.data)), _to_numpy(out.data), _to_numpy(y.data))
        finally:
            self.model.train(was_training)
        if self.distributed is not None:  # each process evaluated its shard of the loader
            acc = self.distributed.reduce_metrics(acc)
        result: dict[str, Any] = {f"{prefix}_{k}": float(v) for k, v in acc.compute().items()}
        result[f"{prefix}_confusion_matrix"] = acc.confusion
        result[f"{prefix}_per_class_accuracy"] = acc.per_class()
        self.last_eval = result
        return result

    def predict(self, data: Any, batch_size: int = 1000, tta: Any = None) -> np.ndarray:
        """Class probabilities ``(N, C)`` for ``data``.

        Args:
            data: an array or Tensor of inputs ``(N, …)`` (already preprocessed), or a loader
                yielding ``(x, y)`` or ``x`` batches.
            batch_size: batch size when ``data`` is an array.
            tta: optional test-time augmentation callable ``tta(model, x)``.
        """
        if isinstance(data, (np.ndarray, Tensor)):
            arr = _to_numpy(data)
            batches: Iterable[Any] = (
                Tensor(arr[i : i + batch_size]) for i in range(0, arr.shape[0], batch_size)
            )
        else:
            batches = (b[0] if isinstance(b, (tuple, list)) else b for b in data)
        outs: list[np.ndarray] = []
        was_training = bool(getattr(self.model, "training", False))
        self.model.eval()
        try:
            with no_grad():
                for batch in batches:
                    x = batch if isinstance(batch, Tensor) else Tensor(batch)
                    (x,) = self._on_model_device(x)
                    out = self.model(x) if tta is None else tta(self.model, x)
                    outs.append(_probabilities(_to_numpy(out.data if isinstance(out, Tensor) else out)))
        finally:
            self.model.train(was_training)
        return np.concatenate(outs) if outs else np.zeros((0, 0), dtype=np.float32)

    # ------------------------------------------------------------------ state
    def _generators(self) -> dict[str, np.random.Generator]:
        roots: dict[str, Any] = {"model": self.model, "loss_fn": self.loss_fn}
        for name in ("train_loader", "val_loader"):
            loader = getattr(self, name)
            if loader is not None:
                # the loaders' own generators are saved with their state_dict; walk what they call
                roots[f"{name}.transform"] = getattr(loader, "transform", None)
                roots[f"{name}.mixing"] = getattr(loader, "mixing", None)
        roots["regularizers"] = self.regularizers
        roots["callbacks"] = self.callbacks
        roots["extra"] = self.extra_state
        found = collect_generators(**roots)
        skip = {id(backend.generator())}
        for name in ("train_loader", "val_loader"):
            gen = getattr(getattr(self, name), "generator", None)
            if gen is not None:
                skip.add(id(gen))
        return {k: g for k, g in found.items() if id(g) not in skip}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly (nested; arrays and JSON types)."""
        state: dict[str, Any] = {
            "format": _STATE_FORMAT,
            "version": _STATE_VERSION,
            "epoch": self.epoch if self._phase == "batch" else self._next_epoch,
            "phase": self._phase,
            "global_step": self.global_step,
            "batch_index": self.batch_index if self._phase == "batch" else 0,
            "epochs": self.epochs,
            "last_loss": self.last_loss,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": {
                "global": backend.get_rng_state(),
                "generators": {k: g.bit_generator.state for k, g in self._generators().items()},
            },
            "loaders": {},
            "callbacks": {cb.state_key: cb.state_dict() for cb in self.callbacks},
            "history": self.history.state_dict(),
            "train_metrics": self._train_metrics.state_dict(),
            "extra": {},
        }
        for name in ("train_loader", "val_loader"):
            loader = getattr(self, name)
            if loader is not None and callable(getattr(loader, "state_dict", None)):
                state["loaders"][name] = loader.state_dict()
        for name, obj in self.extra_state.items():
            state["extra"][name] = obj.state_dict() if callable(getattr(obj, "state_dict", None)) else obj
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` into the model, optimizer, loaders, generators, ….

        Raises:
            ValueError / KeyError / StateDictError: when the state does not fit these objects.
        """
        if state.get("format") != _STATE_FORMAT:
            raise ValueError(f"not a trainer state (format {state.get('format')!r})")
        if int(state.get("version", 0)) > _STATE_VERSION:
            raise ValueError(f"trainer state version {state.get('version')} is newer than this gradcraft")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            if state["scheduler"] is None:
                raise ValueError("the checkpoint has no scheduler state but this run has a scheduler")
            self.scheduler.load_state_dict(state["scheduler"])
        for name, loader_state in state["loaders"].items():
            loader = getattr(self, name, None)
            if loader is not None and callable(getattr(loader, "load_state_dict", None)):
                loader.load_state_dict(loader_state)
        backend.set_rng_state(state["rng"]["global"])
        saved = state["rng"]["generators"]
        mine = self._generators()
        missing = sorted(set(mine) - set(saved))
        if missing:
            raise ValueError(f"the checkpoint lacks the state of random generator(s) {missing}")
        for key, gen in mine.items():
            gen.bit_generator.state = saved[key]
        callback_states = state["callbacks"]
        for cb in self.callbacks:
            if cb.state_key in callback_states:
                cb.load_state_dict(callback_states[cb.state_key])
        self.history.load_state_dict(state["history"])
        self._train_metrics.load_state_dict(state["train_metrics"])
        if self.distributed is not None and not self.distributed.is_main:
            self._train_metrics.reset()  # the checkpoint holds process 0's running sums
        for name, obj in self.extra_state.items():
            if name in state["extra"] and callable(getattr(obj, "load_state_dict", None)):
                obj.load_state_dict(state["extra"][name])
        self._next_epoch = int(state["epoch"])
        self.epoch = self._next_epoch
        self._phase = state["phase"]
        self.global_step = int(state["global_step"])
        self.batch_index = int(state["batch_index"])
        self.last_loss = state.get("last_loss")
        self.history.truncate_steps(self.global_step)

    def save_checkpoint(self, path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None) -> Path:
        """Write the full training state atomically (see :mod:`gradcraft.io.checkpoint`).

        Args:
            path: checkpoint name (``run/checkpoints/last``) or its ``.json`` entry point.
            meta: extra JSON metadata stored beside the state (added to ``checkpoint_meta``).

        Returns:
            The JSON entry point written.
        """
        from gradcraft.io.checkpoint import pack_state, save_checkpoint

        tree, arrays = pack_state(self.state_dict())
        summary = {
            "epoch": self.epoch + 1,
            "phase": self._phase,
            "global_step": self.global_step,
            "lr": self.lr,
            "metrics": {k: v for k, v in self.epoch_logs.items() if isinstance(v, (int, float))},
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        document = {**self.checkpoint_meta, **dict(meta or {}), "trainer": tree, "summary": summary}
        written = save_checkpoint(path, arrays, document)
        self.last_checkpoint = written
        return written

    def load_checkpoint(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Restore the full training state from a checkpoint; returns its JSON metadata.

        Raises:
            CheckpointError: naming the path, when the checkpoint is missing, corrupt, foreign
                (not a trainer checkpoint) or does not fit this model / optimizer / data.
        """
        from gradcraft.io.checkpoint import CheckpointError, load_checkpoint, unpack_state

        ckpt = load_checkpoint(path)
        tree = ckpt.meta.get("trainer")
        if not isinstance(tree, dict):
            raise CheckpointError(ckpt.path, "not a training checkpoint (it holds no trainer state)")
        try:
            state = unpack_state(tree, ckpt.arrays)
            self.load_state_dict(state)
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            raise CheckpointError(ckpt.path, f"does not fit this run: {err}") from err
        self.last_checkpoint = ckpt.path
        return ckpt.meta


def _probabilities(out: np.ndarray) -> np.ndarray:
    """Softmax of logits; rows that already are probabilities (non-negative, sum 1) pass."""
    if out.ndim == 2 and out.size and np.all(out >= 0) and np.allclose(out.sum(axis=1), 1.0, atol=1e-4):
        return out
    z = out - out.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
