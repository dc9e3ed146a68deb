"""A recipe turned into a run: data, model, optimizer, schedule, callbacks and a run directory.

:class:`Experiment` is what ``gradcraft train | eval | predict`` use, and what a script uses
to run a recipe without the CLI::

    from gradcraft.config import load_recipe
    from gradcraft.train.experiment import Experiment

    exp = Experiment(load_recipe("fashion_quick"), run_dir="runs/quick")
    results = exp.train()                      # trains, tests the best checkpoint, writes the report
    print(results["test_accuracy"])

The run directory holds::

    recipe.yaml          the resolved recipe (every default filled in)
    metrics.jsonl        one JSON object per epoch (and every few steps), plus the test result
    checkpoints/         best.json / last.json + their .safetensors (full training state)
    tensorboard/         event files (tensorboard --logdir RUN_DIR/tensorboard)
    plots/               loss.png, accuracy.png, lr.png, confusion_matrix.png
    results.json         the final numbers
    report.md            everything above tied together

Model selection uses the validation split carved out of the training split (seeded, stratified);
the test split is touched once, at the end, with the checkpoint that was best on validation.

Seeds: ``recipe.seed`` seeds the library-wide generator (weight init, dropout), and derived
generators ``default_rng([seed, k])`` drive the validation split (k = 0), the training loader's
shuffling and augmentation (k = 1) and the evaluation loaders (k = 2, 3).

Data-parallel runs (``mpiexec -n K gradcraft train RECIPE``, see ``recipe.distributed`` and
:mod:`gradcraft.distributed`): every process builds the same model and data; each trains on its
shard of every epoch with ``batch_size / K`` examples per step and evaluates its shard of the
validation and test splits (metrics are summed over processes); process 0 alone prints and
writes the run directory, and the others read its checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import gradcraft
from gradcraft.io.checkpoint import CheckpointError, atomic_write_text, checkpoint_exists

__all__ = ["DataBundle", "Experiment", "RunError", "build_optimizer", "build_scheduler", "load_data"]


class RunError(RuntimeError):
    """A run that cannot start or continue (names the run directory or file)."""


#: Seconds a failing process of a data-parallel run waits between printing its error and
#: ending every process with ``MPI_Abort``: mpiexec forwards the processes' output on its own
#: schedule, and an abort right after the print can kill them before their last lines arrive.
ABORT_GRACE_SECONDS = 1.0


# ============================================================================ data
@dataclass
class DataBundle:
    """The splits of a recipe's dataset.

    Attributes:
        train: the training part (after the validation split and ``subset``).
        val: the validation part, or None when ``val_split`` is 0.
        test: the test split.
        classes: class names.
        input_shape: per-example shape ``(C, H, W)``.
    """

    train: Any
    val: Any
    test: Any
    classes: list[str]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.train.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _as_images(ds: Any) -> Any:
    """Give (N, H, W) image arrays a channel axis, so every model sees (N, C, H, W)."""
    from gradcraft.data import ArrayDataset

    if ds.x.ndim == 3:
        return ArrayDataset(ds.x[:, None], ds.y, ds.classes, ds.name)
    return ds


def _load_npz_splits(path: Path) -> tuple[Any, Any, list[str] | None]:
    from gradcraft.data import ArrayDataset
    from gradcraft.data.files import load_npz

    train = load_npz(path, "x_train", "y_train")
    test = load_npz(path, "x_test", "y_test")
    classes = None
    with np.load(path, allow_pickle=False) as npz:
        if "classes" in npz.files:
            classes = [str(c) for c in npz["classes"].tolist()]
    name = path.stem
    return (
        ArrayDataset(train.x, train.y, classes, f"{name}/train"),
        ArrayDataset(test.x, test.y, classes, f"{name}/test"),
        classes,
    )


def _select_classes(train: Any, test: Any, names: list[str], keep: list[int]) -> tuple[Any, Any, list[str]]:
    """The examples of the labels ``keep`` in both splits, relabelled ``0 … len(keep) − 1`` in
    that order (``data.classes``)."""
    bad = [k for k in keep if k >= len(names)]
    if bad:
        raise RunError(
            f"data.classes: Expected labels below {len(names)} (the dataset's classes). Received: {bad}"
        )
    lookup = np.full(len(names), -1, dtype=np.int64)
    lookup[np.asarray(keep)] = np.arange(len(keep))
    out = []
    for split in (train, test):
        idx = np.flatnonzero(lookup[split.y] >= 0)
        part = split.subset(idx)
        part.y = lookup[part.y]
        part.classes = [names[k] for k in keep]
        out.append(part)
    return out[0], out[1], [names[k] for k in keep]


def load_data(cfg: Any, seed: int, base_dir: Path | None = None) -> DataBundle:
    """Load a recipe's dataset and split off the validation part.

    Args:
        cfg: the recipe's ``data`` section.
        seed: the recipe's seed (the split uses ``default_rng([seed, 0])``).
        base_dir: directory relative ``.npz`` paths are resolved against (besides the cwd).

    Raises:
        RunError: for a missing ``.npz`` file or labels outside the class list.
    """
    from gradcraft import data

    dataset = cfg.dataset
    if dataset.endswith(".npz"):
        path = Path(dataset)
        if not path.is_file() and base_dir is not None and (base_dir / dataset).is_file():
            path = base_dir / dataset
        if not path.is_file():
            raise RunError(f"data.dataset: no such .npz file: {dataset}")
        train, test, classes = _load_npz_splits(path)
    else:
        train = data.load(dataset, split="train", root=cfg.root)
        test = data.load(dataset, split="test", root=cfg.root)
        classes = train.classes
    train, test = _as_images(train), _as_images(test)
    n_classes = int(max(train.y.max(), test.y.max())) + 1
    if classes is None:
        classes = [str(i) for i in range(n_classes)]
    elif n_classes > len(classes):
        raise RunError(
            f"data.dataset: labels go up to {n_classes - 1} but only {len(classes)} classes are named"
        )
    if cfg.classes is not None:
        train, test, classes = _select_classes(train, test, list(classes), cfg.classes)
    if cfg.train_fraction is not None and cfg.train_fraction < 1:
        _, kept = data.stratified_split_indices(
            train.y, cfg.train_fraction, generator=np.random.default_rng([seed, 4])
        )
        train = train.subset(kept)
    val = None
    if cfg.val_split > 0:
        train, val = data.train_val_split(
            train, cfg.val_split, stratify=cfg.stratify, generator=np.random.default_rng([seed, 0])
        )
    if cfg.subset is not None and cfg.subset < len(train):
        train = train.subset(np.arange(cfg.subset))
    return DataBundle(train=train, val=val, test=test, classes=list(classes))


def build_preprocessor(cfg: Any, train: Any) -> Any:
    """The recipe's preprocessing, fitted on the training split (None for ``none``)."""
    from gradcraft.data import preprocessing as P

    kind = cfg.kind
    if kind == "none":
        return None
    cls = {"center": P.ChannelMean, "mean_image": P.MeanImage, "standardize": P.Standardize}[kind]
    return cls().fit(train.x)


def build_augmentation(cfgs: Sequence[Any]) -> list[Any]:
    """The recipe's augmentation transforms, in order."""
    from gradcraft.data import augment as A

    out: list[Any] = []
    for c in cfgs:
        if c.type == "random_crop":
            out.append(A.RandomCrop(padding=c.padding))
        elif c.type == "hflip":
            out.append(A.RandomHorizontalFlip(p=c.p))
        elif c.type == "affine":
            out.append(
                A.RandomAffine(degrees=c.degrees, translate=(c.translate, c.translate), scale=tuple(c.scale))
            )
        elif c.type == "cutout":
            out.append(A.Cutout(size=c.size, p=c.p))
        elif c.type == "erasing":
            out.append(A.RandomErasing(p=c.p))
        elif c.type == "noise":
            out.append(A.GaussianNoise(std=c.std))
        else:  # pragma: no cover - the schema admits only the names above
            raise RunError(f"data.augmentation: unknown transform {c.type!r}")
    return out


def _compose(transforms: Sequence[Any]) -> Any:
    from gradcraft.data import augment as A

    transforms = [t for t in transforms if t is not None]
    if not transforms:
        return None
    if len(transforms) == 1:
        return transforms[0]
    return A.Compose(transforms)


# ============================================================================ optimization
def build_optimizer(cfg: Any, model: Any, groups: list[dict[str, Any]] | None = None) -> Any:
    """The recipe's optimizer over ``model.parameters()``, or over parameter ``groups`` (each
    with its own ``lr``, as :func:`gradcraft.transfer.param_groups` builds them)."""
    from gradcraft import optim

    params: list[Any] = list(model.parameters()) if groups is None else groups
    name = cfg.name
    if name == "sgd":
        return optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    if name == "adam":
        return optim.Adam(
            params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay
        )
    if name == "adamw":
        return optim.AdamW(
            params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay
        )
    if name == "rmsprop":
        return optim.RMSprop(
            params,
            lr=cfg.lr,
            alpha=cfg.alpha,
            eps=cfg.eps,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
    if name == "adagrad":
        return optim.Adagrad(params, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)
    raise RunError(f"optimizer.name: unknown optimizer {name!r}")  # pragma: no cover - schema-checked


def build_scheduler(
    cfg: Any, optimizer: Any, epochs: int, steps_per_epoch: int, base_lr: float
) -> tuple[Any, str]:
    """The recipe's schedule and when it steps (``"step"`` or ``"epoch"``).

    Per-step schedules: cosine, cosine_restarts and onecycle always, and every other schedule
    when a warm-up is requested (epoch-based settings are then converted to the equivalent
    number of steps, so ``step`` decays still happen exactly at epoch boundaries).
    """
    from gradcraft.optim import lr_scheduler as S

    spe = max(1, int(steps_per_epoch))
    total = epochs * spe
    name = cfg.name
    warmup = round(cfg.warmup_epochs * spe)
    if name == "plateau":
        return S.ReduceLROnPlateau(
            optimizer,
            mode="max" if "acc" in cfg.monitor else "min",
            factor=cfg.factor,
            patience=cfg.patience,
            min_lr=cfg.min_lr,
        ), "epoch"
    if name == "onecycle":
        groups = optimizer.param_groups  # several groups keep their ratios (transfer learning)
        return S.OneCycleLR(
            optimizer,
            max_lr=base_lr if len(groups) == 1 else [base_lr * g["lr"] / groups[0]["lr"] for g in groups],
            total_steps=total,
            pct_start=cfg.pct_start,
            div_factor=cfg.div_factor,
            final_div_factor=cfg.final_div_factor,
        ), "step"
    per_step = warmup > 0 or name in ("cosine", "cosine_restarts")
    unit = spe if per_step else 1
    main: Any
    if name == "constant":
        main = None
    elif name == "step":
        main = S.StepLR(optimizer, step_size=cfg.step_size * unit, gamma=cfg.gamma)
    elif name == "multistep":
        main = S.MultiStepLR(optimizer, milestones=[m * unit for m in cfg.milestones], gamma=cfg.gamma)
    elif name == "exponential":
        main = (
            S.StepLR(optimizer, step_size=unit, gamma=cfg.gamma)
            if per_step
            else S.ExponentialLR(optimizer, gamma=cfg.gamma)
        )
    elif name == "cosine":
        main = S.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup), eta_min=cfg.min_lr)
    elif name == "cosine_restarts":
        main = S.CosineAnnealingWarmRestarts(
            optimizer, T_0=cfg.restart_epochs * unit, T_mult=cfg.restart_mult, eta_min=cfg.min_lr
        )
    else:  # pragma: no cover - schema-checked
        raise RunError(f"schedule.name: unknown schedule {name!r}")
    if warmup > 0:
        ramp = S.LinearLR(optimizer, start_factor=cfg.warmup_start_factor, end_factor=1.0, total_iters=warmup)
        if main is None:
            return ramp, "step"
        return S.SequentialLR(optimizer, schedulers=[ramp, main], milestones=[warmup]), "step"
    return main, ("step" if per_step else "epoch")


def build_regularizers(cfgs: Sequence[Any]) -> list[Any]:
    """The recipe's penalties (weights only; biases and norm parameters are not penalized)."""
    from gradcraft.nn import regularizers as R

    out: list[Any] = []
    for c in cfgs:
        if c.type == "l2":
            out.append(R.L2(c.weight))
        elif c.type == "l1":
            out.append(R.L1(c.weight))
        else:
            out.append(R.ElasticNet(l1=c.weight * c.l1_ratio, l2=c.weight * (1 - c.l1_ratio)))
    return out


@contextlib.contextmanager
def _thread_limit(threads: int | None, warn: Callable[[str], None]) -> Iterator[None]:
    if threads is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        warn(
            f'threads={threads} needs threadpoolctl (pip install "gradcraft[fast]"); '
            "set OPENBLAS_NUM_THREADS before starting Python instead"
        )
        yield
        return
    with threadpool_limits(limits=threads):
        yield


def _tensorboard_available() -> bool:
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        return False
    return True


def _matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _json_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


# ============================================================================ experiment
class Experiment:
    """Everything a recipe describes, built and wired, around one run directory.

    Args:
        recipe: a validated :class:`gradcraft.config.Recipe`.
        run_dir: the run directory (created if needed).
        quiet: print nothing but warnings and errors.
        progress: override the recipe's ``logging.progress``.
        stream: where progress goes (default stdout).
        recipe_dir: directory relative dataset paths are resolved against.
        communicator: the processes a data-parallel run trains on (a
            :class:`gradcraft.distributed.Communicator`); default: from ``distributed.mode``
            and the MPI launcher's environment, when :meth:`train` starts.
    """

    def __init__(
        self,
        recipe: Any,
        run_dir: str | os.PathLike[str],
        quiet: bool = False,
        progress: str | None = None,
        stream: Any = None,
        recipe_dir: Path | None = None,
        communicator: Any = None,
    ) -> None:
        self.recipe = recipe
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        self.progress = "none" if quiet else (progress or recipe.logging.progress)
        self.stream = stream if stream is not None else sys.stdout
        self.recipe_dir = recipe_dir
        self.trainer: Any = None
        self.monitor: Any = None
        self.data: DataBundle | None = None
        self.preprocessor: Any = None
        self.eval_transform: Any = None
        self.transfer: Any = None
        self.ema: Any = None
        self.comm: Any = communicator
        self.parallel: Any = None

    # ------------------------------------------------------------------ paths
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def _say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=self.stream, flush=True)

    def _warn(self, message: str) -> None:
        if self.is_main:  # the other processes of a data-parallel run would repeat it
            print(f"warning: {message}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ processes
    @property
    def is_main(self) -> bool:
        """Whether this process prints and writes the run directory (process 0 of a
        data-parallel run, or the only one)."""
        return self.comm is None or self.comm.rank == 0

    @property
    def world_size(self) -> int:
        return 1 if self.comm is None else self.comm.size

    def _start_processes(self) -> None:
        """Find this run's processes; all of them take process 0's run directory, and only
        process 0 prints.

        Errors here are the same on every process (they depend only on the recipe and the
        process count), so each process ends on its own with the message, before any
        collective; ``MPI_Abort`` could kill a process before its message is printed.
        """
        from gradcraft.distributed import broadcast_text, init_communicator

        if self.comm is None:
            try:
                self.comm = init_communicator(self.recipe.distributed.mode)
            except ImportError as err:
                raise RunError(f"distributed.mode={self.recipe.distributed.mode!r}: {err}") from err
        if self.world_size > 1:
            self._local_batch_size()
            self.run_dir = Path(broadcast_text(self.comm, str(self.run_dir)))
            if not self.is_main:
                self.quiet, self.progress = True, "none"

    def _local_batch_size(self) -> int:
        from gradcraft.distributed import local_batch_size

        try:
            return local_batch_size(self.recipe.batch_size, self.world_size)
        except ValueError as err:
            raise RunError(f"batch_size: {err}") from err

    def _shard(self, n: int, train: bool) -> Any:
        """This process's :class:`~gradcraft.distributed.DistributedSampler` of a split of ``n``
        examples (shuffled, remainder dropped for training), or None for a single process."""
        if self.world_size == 1:
            return None
        from gradcraft.distributed import DistributedSampler

        return DistributedSampler(n, self.world_size, self.comm.rank, shuffle=train, drop_remainder=train)

    def _place_model(self, model: Any) -> Any:
        """The model on the recipe's device, with synchronized batch norm if asked for."""
        r = self.recipe
        try:
            model.to(r.device)
        except (ImportError, RuntimeError) as err:
            raise RunError(f"device={r.device!r}: {err}") from err
        if self.world_size > 1 and r.distributed.sync_batchnorm:
            from gradcraft.distributed import convert_sync_batchnorm

            model = convert_sync_batchnorm(model, self.comm)
        return model

    @classmethod
    def from_run_dir(cls, run_dir: str | os.PathLike[str], **kwargs: Any) -> Experiment:
        """The experiment of an existing run directory (its ``recipe.yaml``).

        Raises:
            RunError: if the directory or its recipe is missing.
        """
        from gradcraft.config import load_recipe

        run = Path(run_dir)
        if not run.is_dir():
            raise RunError(f"{run}: no such run directory")
        recipe_file = run / "recipe.yaml"
        if not recipe_file.is_file():
            raise RunError(f"{recipe_file}: missing; {run} is not a gradcraft run directory")
        return cls(load_recipe(recipe_file), run, **kwargs)

    # ------------------------------------------------------------------ building
    def build(self, callbacks: bool = True) -> Any:
        """Seed, load the data, build model, loss, optimizer, schedule, loaders and callbacks;
        return the :class:`~gradcraft.train.Trainer` (also kept as ``self.trainer``)."""
        from gradcraft import nn
        from gradcraft.data import DataLoader
        from gradcraft.models import build_model
        from gradcraft.train import (
            EarlyStopping,
            JSONLLogger,
            LearningRateMonitor,
            ModelCheckpoint,
            ProgressBar,
            TensorBoardLogger,
            Trainer,
        )

        r = self.recipe
        gradcraft.manual_seed(r.seed)
        bundle = load_data(r.data, r.seed, self.recipe_dir)
        self.data = bundle
        self.preprocessor = build_preprocessor(r.data.preprocessing, bundle.train)
        model = self._place_model(build_model(r.model, bundle.input_shape, bundle.num_classes))
        augment = build_augmentation(r.data.augmentation)
        mixing = None
        if r.data.mixing.kind != "none":
            from gradcraft.data import CutMix, Mixup

            cls = Mixup if r.data.mixing.kind == "mixup" else CutMix
            mixing = cls(alpha=r.data.mixing.alpha, num_classes=bundle.num_classes, p=r.data.mixing.p)
        n_train = len(bundle.train)
        batch_size = self._local_batch_size()
        shard = self._shard(n_train, train=True)
        # a last batch of one example would break batch norm's training statistics
        drop_last = (n_train if shard is None else len(shard)) % batch_size == 1
        train_loader = DataLoader(
            bundle.train,
            batch_size=batch_size,
            shuffle=shard is None,
            sampler=shard,
            drop_last=drop_last,
            generator=np.random.default_rng([r.seed, 1]),
            transform=_compose([*augment, self.preprocessor]),
            mixing=mixing,
            stream=None if shard is None else self.comm.rank,
        )
        self.eval_transform = self.preprocessor
        val_loader = None
        if bundle.val is not None and len(bundle.val):
            val_loader = DataLoader(
                bundle.val,
                batch_size=r.eval_batch_size,
                sampler=self._shard(len(bundle.val), train=False),
                generator=np.random.default_rng([r.seed, 2]),
                transform=self.eval_transform,
            )
        loss_fn = nn.CrossEntropyLoss(label_smoothing=r.loss.label_smoothing)
        lr = r.optimizer.scaled_lr(r.batch_size)  # optimizer.scale_lr (large batches)
        if lr != r.optimizer.lr:
            self._say(
                f"optimizer.scale_lr={r.optimizer.scale_lr}: lr {r.optimizer.lr:g} at batch size "
                f"{r.optimizer.base_batch_size} becomes {lr:g} at batch size {r.batch_size}"
            )
        self.transfer = None
        if r.transfer.source is not None:
            from gradcraft.transfer import setup_transfer

            self.transfer = setup_transfer(
                r.transfer, model, len(bundle.train), bundle.num_classes, lr, self.recipe_dir
            )
        optimizer = build_optimizer(
            r.optimizer.model_copy(update={"lr": lr}), model, self.transfer.groups if self.transfer else None
        )
        scheduler, interval = build_scheduler(r.schedule, optimizer, r.epochs, len(train_loader), lr)
        cbs: list[Any] = []
        if callbacks:
            cbs.append(ProgressBar(self.progress, stream=self.stream))
            cbs.append(LearningRateMonitor())
            log = r.logging
            if log.jsonl:
                cbs.append(JSONLLogger(self.run_dir / "metrics.jsonl", every_steps=log.log_every_steps))
            if log.tensorboard:
                if _tensorboard_available():
                    cbs.append(
                        TensorBoardLogger(
                            self.run_dir / "tensorboard",
                            every_steps=log.log_every_steps,
                            histograms=log.histograms,
                        )
                    )
                else:
                    self._warn(
                        "logging.tensorboard is on but tensorboardX is not installed "
                        '(pip install "gradcraft[log]"); no event files will be written'
                    )
            es = r.callbacks.early_stopping
            if es.enabled:
                cbs.append(
                    EarlyStopping(es.monitor, es.mode, es.patience, es.min_delta, es.restore_best_weights)
                )
            mon = r.callbacks.monitor
            if mon.enabled:
                from gradcraft.diagnostics.monitor import Monitor

                self.monitor = Monitor(
                    every_steps=mon.every_steps,
                    probe_size=mon.probe_size,
                    stop_on_explosion=mon.stop_on_explosion,
                    directory=self.run_dir / "diagnosis",
                    plots=log.plots and _matplotlib_available(),
                    verbose=not self.quiet,
                )
                cbs.append(self.monitor)
            cbs += self._after_training_callbacks(bundle)
            ck = r.callbacks.checkpoint
            save_best = ck.save_best and (val_loader is not None or not ck.monitor.startswith("val_"))
            if ck.save_best and not save_best:
                self._say(f"note: no validation split, so no 'best' checkpoint by {ck.monitor}")
            cbs.append(
                ModelCheckpoint(
                    self.checkpoint_dir,
                    monitor=ck.monitor,
                    mode=ck.mode,
                    save_best=save_best,
                    save_last=ck.save_last,
                    every_steps=ck.every_steps,
                )
            )
        if self.world_size > 1:
            from gradcraft.distributed import DataParallel

            self.parallel = DataParallel(
                self.comm,
                seed=r.seed,
                bucket_mb=r.distributed.bucket_mb,
                broadcast_buffers=not r.distributed.sync_batchnorm,
            )
            cbs = self._callbacks_of_this_process(cbs)
        extra = {"preprocessing": self.preprocessor} if self.preprocessor is not None else {}
        self.trainer = Trainer(
            model,
            loss_fn,
            optimizer,
            scheduler,
            train_loader,
            val_loader,
            cbs,
            regularizers=build_regularizers(r.regularizers),
            clip_grad_norm=r.clip_grad_norm,
            scheduler_interval=interval,
            scheduler_monitor=r.schedule.monitor,
            extra_state=extra,
            run_dir=self.run_dir,
            verbose=not self.quiet,
            checkpoint_meta=self._checkpoint_meta(),
            printer=self._print,
            distributed=self.parallel,
        )
        return self.trainer

    def _print(self, message: str) -> None:
        """The trainer's messages: warnings to stderr, the rest to the progress stream (none
        from the processes other than 0 of a data-parallel run)."""
        if self.is_main:
            print(message, file=sys.stderr if message.startswith("warning") else self.stream, flush=True)

    def _callbacks_of_this_process(self, cbs: list[Any]) -> list[Any]:
        """Process 0 keeps every callback. The other processes of a data-parallel run drop
        those that print or write files (progress, loggers, checkpoints, the monitor,
        snapshots) and keep those that change the run (early stopping, averaged weights,
        unfreezing), which must run on every process alike."""
        if self.is_main:
            return cbs
        from gradcraft.diagnostics.monitor import Monitor
        from gradcraft.ensemble import SnapshotEnsemble
        from gradcraft.train import JSONLLogger, ModelCheckpoint, ProgressBar, TensorBoardLogger

        self.monitor = None
        writers = (JSONLLogger, ModelCheckpoint, Monitor, ProgressBar, SnapshotEnsemble, TensorBoardLogger)
        return [cb for cb in cbs if not isinstance(cb, writers)]

    def _after_training_callbacks(self, bundle: DataBundle) -> list[Any]:
        """Averaged weights, snapshots and gradual unfreezing, as the recipe asks."""
        from gradcraft.data import DataLoader
        from gradcraft.ensemble import ExponentialMovingAverage, SnapshotEnsemble

        r = self.recipe
        out: list[Any] = []
        self.ema = None
        ema = r.callbacks.ema
        if ema.enabled:
            bn_loader = None
            if ema.bn == "recompute":  # unshuffled, unaugmented: evaluation stays deterministic
                bn_loader = DataLoader(
                    bundle.train,
                    batch_size=r.eval_batch_size,
                    generator=np.random.default_rng([r.seed, 5]),
                    transform=self.eval_transform,
                )
            self.ema = ExponentialMovingAverage(
                ema.decay,
                mode=ema.mode,
                warmup=ema.warmup,
                every_steps=ema.every_steps,
                start_step=ema.start_step,
                bn=ema.bn,
                bn_loader=bn_loader,
                bn_batches=ema.bn_batches,
            )
            out.append(self.ema)
        if r.callbacks.snapshots.enabled:
            out.append(SnapshotEnsemble(self.run_dir / "snapshots"))
        if self.transfer is not None:
            out += self.transfer.callbacks()
        return out

    def _start_from_pretrained(self) -> None:
        """Load the transfer source's weights into the new model and record what happened."""
        report = self.transfer.load_weights(self.trainer.model)
        self._say(report.format())
        self._say(self.transfer.load_preprocessing(self.preprocessor, self.recipe.data.preprocessing.kind))
        self._say(self.transfer.summary())
        record = {**report.to_dict(), "strategy": self.transfer.strategy, "reason": self.transfer.reason}
        atomic_write_text(self.run_dir / "transfer.json", json.dumps(record, indent=1) + "\n")

    def _checkpoint_meta(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe.to_dict(),
            "classes": self.data.classes if self.data else None,
            "gradcraft_version": gradcraft.__version__,
        }

    # ------------------------------------------------------------------ training
    def train(self, resume: bool = False) -> dict[str, Any]:
        """Run the recipe (or continue it with ``resume``), test the best checkpoint, write
        results, plots and the report. Returns the results (also in ``results.json``).

        In a data-parallel run every process calls this; an error on any of them ends them all
        (``MPI_Abort``), since the others may be waiting for it in a collective operation.

        Raises:
            RunError: the run directory is unusable (exists with another run in it, or has no
                checkpoint to resume), or the processes cannot share the batch.
            NonFiniteLossError: the loss diverged (the report is written first).
        """
        self._start_processes()
        if self.world_size == 1:
            return self._train(resume)
        try:
            return self._train(resume)
        except BaseException as err:
            interrupted = isinstance(err, KeyboardInterrupt)
            where = "" if self.is_main else f" on process {self.comm.rank} of {self.world_size}"
            print(f"error{where}: {'interrupted' if interrupted else err}", file=sys.stderr, flush=True)
            time.sleep(ABORT_GRACE_SECONDS)
            self.comm.abort(130 if interrupted else 1)
            raise

    def _train(self, resume: bool) -> dict[str, Any]:
        from gradcraft.distributed import threads_per_process
        from gradcraft.train import NonFiniteLossError

        last = self.checkpoint_dir / "last.json"
        if resume:
            if not checkpoint_exists(last):
                raise RunError(f"{last}: no checkpoint to resume from (the run saved none yet)")
        elif (self.run_dir / "recipe.yaml").exists():
            raise RunError(
                f"{self.run_dir}: already holds a run; pass --resume {self.run_dir} to continue it "
                "or choose another --out directory"
            )
        if self.world_size > 1:
            self.comm.barrier()  # every process has looked at the directory before 0 writes
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not resume and self.is_main:
            atomic_write_text(self.run_dir / "recipe.yaml", self.recipe.to_yaml())
        r = self.recipe
        started = time.perf_counter()
        threads = r.threads if r.threads is not None else threads_per_process(self.comm)
        with _thread_limit(threads, self._warn):
            trainer = self.build()
            self._say(f"run directory: {self.run_dir}")
            if resume:
                self._check_resume_compatible(last)
            elif self.transfer is not None:
                self._start_from_pretrained()
            try:
                trainer.fit(r.epochs, resume_from=last if resume else None)
            except NonFiniteLossError as err:
                self._finish(started, None, failure=str(err))
                raise
            test = self._final_test()
        return self._finish(started, test)

    def _check_resume_compatible(self, last: Path) -> None:
        from gradcraft.io.checkpoint import load_checkpoint

        ckpt = load_checkpoint(last)
        saved = ckpt.meta.get("recipe")
        if saved is None:
            raise CheckpointError(last, "not a checkpoint of a recipe run (it holds no recipe)")
        if saved != self.recipe.to_dict():
            diff = sorted(_diff_keys(saved, self.recipe.to_dict()))
            raise CheckpointError(
                last, f"was written by a different recipe (differs in: {', '.join(diff[:8])})"
            )

    def _load_weights(self, path: Path) -> None:
        from gradcraft.io.checkpoint import load_checkpoint, unpack_state

        ckpt = load_checkpoint(path)
        tree = ckpt.meta.get("trainer")
        if not isinstance(tree, dict):
            raise CheckpointError(ckpt.path, "not a training checkpoint (it holds no trainer state)")
        state = unpack_state(tree, ckpt.arrays)
        try:
            from gradcraft.ensemble import evaluated_weights

            self.trainer.model.load_state_dict(evaluated_weights(state))
            if self.preprocessor is not None:
                self.preprocessor.load_state_dict(state["extra"]["preprocessing"])
        except (KeyError, ValueError, RuntimeError) as err:
            raise CheckpointError(ckpt.path, f"does not fit this recipe's model: {err}") from err

    def _final_test(self, tta: bool = False, which: str = "best") -> dict[str, Any]:
        from gradcraft.data import DataLoader

        assert self.data is not None
        path = self.checkpoint_dir / f"{which}.json"
        used = "final weights"
        if checkpoint_exists(path):
            self._load_weights(path)
            used = f"checkpoints/{which}.json"
        elif self.ema is not None and self.ema.shadow:
            self.ema.copy_to(self.trainer.model)
            used = "final averaged weights"
        # with TTA the views are taken of raw pixels, and preprocessing runs on each view
        loader = DataLoader(
            self.data.test,
            batch_size=self.recipe.eval_batch_size,
            sampler=self._shard(len(self.data.test), train=False),
            generator=np.random.default_rng([self.recipe.seed, 3]),
            transform=None if tta else self.eval_transform,
        )
        result = self.trainer.evaluate(loader, tta=self.tta() if tta else None, prefix="test")
        result["checkpoint"] = used
        return result

    def tta_views(self) -> list[Any]:
        """The recipe's test-time views (:mod:`gradcraft.data.tta`): the image, its mirror
        (``tta.hflip``), corner crops of the padded image (``tta.crop_padding``) and rotations;
        unset ``hflip`` / ``crop_padding`` follow the training augmentation."""
        from gradcraft.data import tta as T

        cfg = self.recipe.tta
        trained = {a.type: a for a in self.recipe.data.augmentation}
        hflip = "hflip" in trained if cfg.hflip is None else cfg.hflip
        padding = cfg.crop_padding
        if padding is None:
            padding = trained["random_crop"].padding if "random_crop" in trained else 0
        views: list[Any] = [T.Identity()]
        if hflip:
            views.append(T.HorizontalFlip())
        if padding > 0 and self.data is not None:
            size = self.data.input_shape[1:]
            views += [
                T.Crop(pos, size, padding) for pos in ("top_left", "top_right", "bottom_left", "bottom_right")
            ]
        views += [T.Rotate(d) for d in cfg.rotations if d != 0]
        return views

    def tta(self) -> Any:
        """A ``tta(model, x)`` callable for :meth:`Trainer.evaluate`: ``x`` are raw [0, 1]
        batches (the loader must not preprocess them); returns log mean probabilities, which
        the loss and the metrics take as logits."""
        from gradcraft.autograd.tensor import Tensor
        from gradcraft.data import tta as T

        views = self.tta_views()
        preprocess = self.preprocessor

        def predict(model: Any, x: Any) -> Any:
            probs = T.predict(model, x, views=views, batch_size=None, preprocess=preprocess).numpy()
            return Tensor(np.log(np.maximum(probs, 1e-12)).astype(np.float32))

        return predict

    # ------------------------------------------------------------------ results
    def _finish(self, started: float, test: dict[str, Any] | None, failure: str = "") -> dict[str, Any]:
        from gradcraft.train.report import write_plots, write_report

        trainer = self.trainer
        history = trainer.history
        wall = time.perf_counter() - started
        results: dict[str, Any] = {
            "name": self.recipe.name,
            "epochs_run": len(history),
            "global_step": trainer.global_step,
            "stop_reason": failure.splitlines()[0] if failure else trainer.stop_reason,
            "wall_time_s": round(wall, 1),
            "parameters": int(sum(p.size for p in trainer.model.parameters())),
        }
        if "val_accuracy" in history.epochs and len(history):
            best, epoch = history.best("val_accuracy", "max")
            results["best_val_accuracy"], results["best_epoch"] = best, epoch + 1
        if test:
            for k, v in test.items():
                results[k] = _json_value(v)
            if self.recipe.logging.jsonl and self.is_main:
                line = {k: _json_value(v) for k, v in test.items() if isinstance(v, (float, str))}
                with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps({"kind": "test", "step": trainer.global_step, **line}) + "\n")
        if not self.is_main:  # process 0 writes the results of a data-parallel run
            return results
        atomic_write_text(self.run_dir / "results.json", json.dumps(results, indent=1) + "\n")
        plots: list[Path] = []
        log = self.recipe.logging
        if log.plots:
            if _matplotlib_available():
                confusion = None if not test else test.get("test_confusion_matrix")
                plots = write_plots(
                    self.run_dir / "plots", history, confusion, self.data.classes if self.data else None
                )
            else:
                self._warn(
                    'logging.plots is on but matplotlib is not installed (pip install "gradcraft[plot]")'
                )
        if log.report:
            facts = {
                "Wall time": f"{wall:.1f} s (this process)",
                "Epochs": f"{len(history)} of {self.recipe.epochs}, {trainer.global_step} steps",
                "Parameters": f"{results['parameters']:,}",
                "Seed": self.recipe.seed,
            }
            if self.world_size > 1:
                facts["Processes"] = (
                    f"{self.world_size}, data-parallel over MPI, {self._local_batch_size()} examples "
                    f"each per step (global batch {self.recipe.batch_size})"
                )
            if test:
                facts["Tested weights"] = test.get("checkpoint", "final weights")
            write_report(
                self.run_dir / "report.md",
                title=self.recipe.name,
                description=self.recipe.description,
                history=history,
                test=test,
                classes=self.data.classes if self.data else None,
                facts=facts,
                plots=plots,
                stop_reason=failure or trainer.stop_reason,
                extra_sections=[self.monitor.report_section(self.run_dir)] if self.monitor else [],
            )
        if test:
            self._say(
                f"test accuracy {100 * test['test_accuracy']:.2f}% (loss {test['test_loss']:.4f}, "
                f"{test.get('checkpoint')}); report: {self.run_dir / 'report.md'}"
            )
        return results

    # ------------------------------------------------------------------ eval / predict
    def evaluate(self, tta: bool = False, which: str = "best") -> dict[str, Any]:
        """Test accuracy of a finished (or running) run's checkpoint (``best``, else ``last``)."""
        if which == "best" and not checkpoint_exists(self.checkpoint_dir / "best.json"):
            which = "last"
        path = self.checkpoint_dir / f"{which}.json"
        if not checkpoint_exists(path):
            raise RunError(f"{path}: no checkpoint in this run directory")
        with _thread_limit(self.recipe.threads, self._warn):
            self.build(callbacks=False)
            return self._final_test(tta=tta, which=which)

    def prepare(self, which: str = "best") -> Path:
        """Build the run's model and load a checkpoint's weights and preprocessing statistics
        (``best``, falling back to ``last``); returns the checkpoint used."""
        if which == "best" and not checkpoint_exists(self.checkpoint_dir / "best.json"):
            which = "last"
        path = self.checkpoint_dir / f"{which}.json"
        if not checkpoint_exists(path):
            raise RunError(f"{path}: no checkpoint in this run directory")
        self.build(callbacks=False)
        self._load_weights(path)
        return path

    def predict_arrays(self, images: np.ndarray, tta: bool = False) -> np.ndarray:
        """Class probabilities ``(N, K)`` for images ``(N, C, H, W)`` (uint8, or floats in
        [0, 1]), after :meth:`prepare`.

        Raises:
            RunError: if :meth:`prepare` was not called or the images have the wrong shape.
        """
        from gradcraft.data import to_float

        if self.trainer is None or self.data is None:
            raise RunError("call prepare() before predict_arrays()")
        expected = self.data.input_shape
        if tuple(images.shape[1:]) != expected:
            raise RunError(
                f"inputs have shape {tuple(images.shape[1:])} per example; the model expects {expected}"
            )
        x = to_float(images)
        if self.preprocessor is not None and not tta:
            x = self.preprocessor(x)
        with _thread_limit(self.recipe.threads, self._warn):
            return self.trainer.predict(
                np.asarray(x, dtype=np.float32),
                batch_size=self.recipe.eval_batch_size,
                tta=self.tta() if tta else None,
            )


def _diff_keys(a: Any, b: Any, prefix: str = "") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for k in set(a) | set(b):
            out |= _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return set() if a == b else {prefix.rstrip(".")}
