"""Recipes: a training run described in YAML and validated against a schema.

A recipe names everything a run needs — the model, the data and its preprocessing and
augmentation, the loss and regularizers, the optimizer and its schedule, the number of epochs,
the batch size, the seed, callbacks and logging — and every field has a documented default, so
the smallest recipe is ``{}`` (an MLP on Fashion-MNIST)::

    name: fashion_mlp
    epochs: 10
    model:
      block: mlp
      widths: [512, 256]
      dropout: 0.2
    optimizer: {name: adam, lr: 0.001}
    schedule: {name: cosine}

Validation is strict (pydantic v2 with ``extra="forbid"``): an unknown key or a value of the
wrong type is reported with its path in the recipe, its line in the file and, for a misspelt
key or choice, the closest valid one::

    recipes/mine.yaml:7: model.widht: unknown key; did you mean 'widths'?

Use :func:`load_recipe` to read a file (with ``--set``-style overrides), :func:`parse_recipe`
for a dict, and :meth:`Recipe.to_yaml` to write the resolved recipe. ``gradcraft recipes``
lists the shipped recipes; :func:`explain` prints every field with its default.

This module needs the ``cli`` extra (pydantic, PyYAML): ``pip install "gradcraft[cli]"``.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

try:
    from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
except ImportError as _err:  # pragma: no cover - depends on the environment
    raise ImportError('Recipes need pydantic and PyYAML: pip install "gradcraft[cli]"') from _err

__all__ = [
    "AugmentationConfig",
    "CallbacksConfig",
    "CheckpointConfig",
    "DataConfig",
    "DistributedConfig",
    "EMAConfig",
    "EarlyStoppingConfig",
    "LayerConfig",
    "LoggingConfig",
    "LossConfig",
    "MixingConfig",
    "ModelConfig",
    "OptimizerConfig",
    "PreprocessingConfig",
    "Recipe",
    "RecipeError",
    "RegularizerConfig",
    "ScheduleConfig",
    "SnapshotConfig",
    "TTAConfig",
    "TransferConfig",
    "apply_overrides",
    "explain",
    "find_recipe",
    "load_recipe",
    "parse_recipe",
    "recipes_dir",
    "shipped_recipes",
]


class RecipeError(ValueError):
    """A recipe that does not validate. ``problems`` holds one readable line per error."""

    def __init__(self, problems: Sequence[str], source: str = "recipe") -> None:
        self.problems = list(problems)
        self.source = source
        head = f"Invalid recipe {source}" if len(self.problems) > 1 else "Invalid recipe"
        body = "\n  ".join(self.problems)
        super().__init__(f"{head}:\n  {body}" if len(self.problems) > 1 else f"{head}: {body}")


class _Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, defaults are documented."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


# ============================================================================ model
Activation = Literal["relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "identity"]
Init = Literal[
    "default",
    "kaiming_normal",
    "kaiming_uniform",
    "xavier_normal",
    "xavier_uniform",
    "lecun_normal",
    "orthogonal",
    "small_random",
]
Norm = Literal["none", "batchnorm"]


class LinearLayer(_Section):
    """A fully connected layer; its input size is inferred from the previous layer."""

    type: Literal["linear"] = "linear"
    out_features: int = Field(gt=0, description="output size")
    bias: bool = Field(True, description="learn an additive bias")


class Conv2dLayer(_Section):
    """A 2-D convolution; its input channels are inferred."""

    type: Literal["conv2d"] = "conv2d"
    out_channels: int = Field(gt=0, description="number of filters")
    kernel_size: int = Field(3, gt=0, description="square kernel size")
    stride: int = Field(1, gt=0, description="stride")
    padding: int | Literal["same"] = Field("same", description="zero padding, or 'same' (k // 2)")
    bias: bool = Field(True, description="learn a bias (set false before batch norm)")


class PoolLayer(_Section):
    """Max or average pooling over square windows."""

    type: Literal["maxpool2d", "avgpool2d"] = "maxpool2d"
    kernel_size: int = Field(2, gt=0, description="window size")
    stride: int | None = Field(None, gt=0, description="stride (default: the window size)")


class ResidualLayer(_Section):
    """A residual basic block (two 3×3 convolutions with batch norm and a skip connection)."""

    type: Literal["residual"] = "residual"
    out_channels: int = Field(gt=0, description="channels of the block's output")
    stride: int = Field(1, gt=0, description="stride of the first convolution (2 halves H and W)")


class DropoutLayer(_Section):
    """Inverted dropout (identity in evaluation mode)."""

    type: Literal["dropout"] = "dropout"
    p: float = Field(0.5, ge=0.0, lt=1.0, description="probability of zeroing a unit")


class SimpleLayer(_Section):
    """A layer without settings: an activation, ``flatten``, ``batchnorm`` (1-D or 2-D by the
    input's shape) or ``global_avgpool`` (mean over H and W)."""

    type: Literal[
        "relu",
        "leaky_relu",
        "elu",
        "gelu",
        "tanh",
        "sigmoid",
        "identity",
        "flatten",
        "batchnorm",
        "global_avgpool",
    ]


LayerConfig = Annotated[
    LinearLayer | Conv2dLayer | PoolLayer | ResidualLayer | DropoutLayer | SimpleLayer,
    Field(discriminator="type"),
]


class ModelConfig(_Section):
    """The network: a named block with a few knobs, or an explicit list of layers.

    Named blocks (``block``), for ``C`` input channels and ``K`` classes taken from the data:

    * ``mlp``: flatten, then for each width ``w``: linear(w) [→ batch norm] → activation
      [→ dropout]; then linear(K).
    * ``cnn``: for each width ``w``: ``convs_per_stage`` × (conv3×3(w) [→ batch norm] →
      activation), then max-pool 2×2; then flatten, for each of ``hidden``: linear [→ dropout];
      then linear(K).
    * ``resnet``: conv3×3(widths[0]) → batch norm → activation, then for each width a stage of
      ``blocks_per_stage`` residual basic blocks (the first of each later stage has stride 2),
      global average pooling, [dropout,] linear(K).

    ``layers`` replaces the block: a list such as ``[{type: conv2d, out_channels: 32},
    batchnorm, relu, {type: maxpool2d}, flatten, {type: linear, out_features: 10}]``; plain
    strings stand for layers without settings. The last layer must produce K outputs.
    """

    block: Literal["mlp", "cnn", "resnet"] = Field(
        "mlp", description="named architecture (ignored if layers)"
    )
    layers: list[LayerConfig] | None = Field(None, description="explicit layer list instead of a block")
    widths: list[int] = Field(
        [512, 256], description="hidden widths (mlp) or channels per stage (cnn, resnet)"
    )
    hidden: list[int] = Field([128], description="cnn only: widths of the fully connected layers")
    convs_per_stage: int = Field(1, ge=1, description="cnn only: convolutions before each pooling")
    blocks_per_stage: int = Field(2, ge=1, description="resnet only: residual blocks per stage")
    activation: Activation = Field("relu", description="nonlinearity of the named blocks")
    init: Init = Field(
        "kaiming_normal", description="weight init of linear/conv layers ('default' = PyTorch's)"
    )
    norm: Norm = Field("none", description="normalization after each hidden linear/conv layer")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout after hidden layers (0 = none)")

    @field_validator("layers", mode="before")
    @classmethod
    def _strings_are_layers(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"type": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("widths")
    @classmethod
    def _positive_widths(cls, value: list[int]) -> list[int]:
        if not value or any(w <= 0 for w in value):
            raise ValueError(f"Expected a non-empty list of positive widths. Received: {value}")
        return value

    @field_validator("hidden")
    @classmethod
    def _positive_hidden(cls, value: list[int]) -> list[int]:
        if any(w <= 0 for w in value):
            raise ValueError(f"Expected positive widths. Received: {value}")
        return value


# ============================================================================ data
class PreprocessingConfig(_Section):
    """How the loader's pixels (``uint8 / 255``, in [0, 1]) become network inputs. Statistics
    are fitted on the training split only (never validation or test) and saved with every
    checkpoint.

    * ``none``: the [0, 1] pixels unchanged;
    * ``center``: subtract one mean per channel (VGG);
    * ``mean_image``: subtract the mean image (AlexNet);
    * ``standardize``: ``(x − μ_c) / σ_c`` per channel (ResNet).
    """

    kind: Literal["none", "center", "mean_image", "standardize"] = Field(
        "standardize", description="preprocessing kind"
    )


class AugmentationConfig(_Section):
    """One random training-time transform (applied in the listed order, before preprocessing).

    * ``random_crop``: pad by ``padding`` pixels, crop back to the original size at random
      (a random shift of up to ``padding`` pixels);
    * ``hflip``: mirror left-right with probability ``p``;
    * ``affine``: rotate by up to ±``degrees``, shift by up to ``translate`` × size, zoom
      within ``scale``;
    * ``cutout``: blank a ``size`` × ``size`` square with probability ``p``;
    * ``erasing``: random erasing of a box with probability ``p``;
    * ``noise``: add Gaussian noise of standard deviation ``std``.
    """

    type: Literal["random_crop", "hflip", "affine", "cutout", "erasing", "noise"] = Field(
        description="which transform"
    )
    padding: int = Field(2, ge=0, description="random_crop: pixels of padding")
    p: float = Field(0.5, ge=0.0, le=1.0, description="hflip / cutout / erasing: probability")
    degrees: float = Field(0.0, ge=0.0, description="affine: largest rotation angle")
    translate: float = Field(
        0.0, ge=0.0, le=1.0, description="affine: largest shift, as a fraction of the size"
    )
    scale: tuple[float, float] = Field((1.0, 1.0), description="affine: zoom range")
    size: int = Field(8, gt=0, description="cutout: side of the square in pixels")
    std: float = Field(0.05, ge=0.0, description="noise: standard deviation")


class MixingConfig(_Section):
    """Batch mixing with soft targets (mixup or CutMix)."""

    kind: Literal["none", "mixup", "cutmix"] = Field("none", description="mixing method")
    alpha: float = Field(0.2, gt=0.0, description="Beta(alpha, alpha) mixing coefficient")
    p: float = Field(1.0, ge=0.0, le=1.0, description="probability a batch is mixed")


class DataConfig(_Section):
    """The dataset, how it is split for model selection, preprocessed and augmented.

    ``dataset`` is a registered name (``fashion-mnist``) or the path of an ``.npz`` file
    with arrays ``x_train``, ``y_train``, ``x_test``, ``y_test`` (uint8 images N×H×W or
    N×C×H×W, integer labels) and optionally ``classes``. Relative paths are resolved against
    the recipe file's directory, then the working directory.

    For transfer experiments, ``classes: [5, 6, 7, 8, 9]`` keeps those labels in both splits
    and renumbers them 0…4, and ``train_fraction: 0.01`` keeps 1 % of the training split
    (stratified, seeded) before the validation split is carved out of what is left.
    """

    dataset: str = Field("fashion-mnist", description="dataset name or .npz path")
    root: str | None = Field(None, description="directory holding the dataset files (default: search)")
    val_split: float = Field(
        0.1, ge=0.0, lt=1.0, description="fraction of the training split held out for validation"
    )
    stratify: bool = Field(True, description="keep class proportions in the validation split")
    subset: int | None = Field(
        None, gt=0, description="use only the first N training examples (for smoke tests)"
    )
    classes: list[int] | None = Field(
        None, description="keep only these labels (train and test), renumbered 0, 1, … in this order"
    )
    train_fraction: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="keep this stratified, seeded fraction of the training split (before val_split)",
    )
    preprocessing: PreprocessingConfig = Field(default_factory=PreprocessingConfig)
    augmentation: list[AugmentationConfig] = Field([], description="training-time random transforms")
    mixing: MixingConfig = Field(default_factory=MixingConfig)

    @field_validator("augmentation", mode="before")
    @classmethod
    def _strings_are_transforms(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"type": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("classes")
    @classmethod
    def _distinct_labels(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or len(set(value)) != len(value) or min(value) < 0):
            raise ValueError(f"Expected a non-empty list of distinct labels >= 0. Received: {value}")
        return value


# ============================================================================ loss
class LossConfig(_Section):
    """The data loss."""

    name: Literal["cross_entropy"] = Field("cross_entropy", description="loss function")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="mass moved uniformly to all classes")


class RegularizerConfig(_Section):
    """A penalty added to the data loss.

    * ``l2``: ``weight`` · Σ w² over weights (not biases or norm parameters);
    * ``l1``: ``weight`` · Σ |w|;
    * ``elastic_net``: ``weight`` · (``l1_ratio`` · Σ|w| + (1 − ``l1_ratio``) · Σ w²).
    """

    type: Literal["l1", "l2", "elastic_net"] = Field(description="which penalty")
    weight: float = Field(ge=0.0, description="strength λ")
    l1_ratio: float = Field(0.5, ge=0.0, le=1.0, description="elastic_net: share of the L1 term")


# ============================================================================ optimizer
class OptimizerConfig(_Section):
    """The update rule. Fields that the chosen optimizer does not use are ignored.

    ``sgd`` (momentum, nesterov, weight_decay), ``adam`` / ``adamw`` (betas, eps,
    weight_decay — AdamW's is decoupled), ``rmsprop`` (alpha, eps, momentum), ``adagrad``.

    Large batches: with ``scale_lr: linear`` the run uses lr · B / ``base_batch_size`` for the
    global batch size B (the linear scaling rule of Goyal et al., 2017, "Accurate, Large
    Minibatch SGD"); ``sqrt`` uses lr · √(B / ``base_batch_size``), often better for Adam. With
    a warm-up (``schedule.warmup_epochs``) whose ``warmup_start_factor`` is not given, the
    warm-up then starts from the unscaled lr (Goyal's gradual warm-up); the resolved recipe
    records the factor used.
    """

    name: Literal["sgd", "adam", "adamw", "rmsprop", "adagrad"] = Field("adam", description="optimizer")
    lr: float = Field(1e-3, gt=0.0, description="learning rate (the peak rate for onecycle)")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd / rmsprop: momentum")
    nesterov: bool = Field(False, description="sgd: Nesterov momentum")
    weight_decay: float = Field(0.0, ge=0.0, description="weight decay")
    betas: tuple[float, float] = Field((0.9, 0.999), description="adam / adamw: moment decay rates")
    eps: float = Field(1e-8, gt=0.0, description="adam / adamw / rmsprop / adagrad: denominator epsilon")
    alpha: float = Field(0.99, gt=0.0, lt=1.0, description="rmsprop: squared-gradient decay")
    scale_lr: Literal["none", "linear", "sqrt"] = Field(
        "none", description="scale lr with the global batch size: lr·B/base (linear) or lr·√(B/base)"
    )
    base_batch_size: int = Field(128, gt=0, description="the batch size lr was tuned for (with scale_lr)")

    def scaled_lr(self, batch_size: int) -> float:
        """The learning rate used for a global ``batch_size`` (``lr`` unless ``scale_lr``)."""
        ratio = batch_size / self.base_batch_size
        if self.scale_lr == "linear":
            return self.lr * ratio
        if self.scale_lr == "sqrt":
            return self.lr * ratio**0.5
        return self.lr


class ScheduleConfig(_Section):
    """How the learning rate changes.

    * ``constant``: no change;
    * ``step``: × ``gamma`` every ``step_size`` epochs; ``multistep``: at ``milestones``;
    * ``exponential``: × ``gamma`` every epoch;
    * ``cosine``: cosine decay to ``min_lr`` over the run (per step);
    * ``cosine_restarts``: SGDR, cosine decay to ``min_lr`` over ``restart_epochs``, then a
      restart at ``optimizer.lr``; each cycle ``restart_mult`` times longer (per step; the
      cycle ends are where ``callbacks.snapshots`` saves its snapshots);
    * ``onecycle``: warm up to ``optimizer.lr`` for ``pct_start`` of the run, then anneal
      (per step);
    * ``plateau``: × ``factor`` when ``monitor`` has not improved for ``patience`` epochs.

    ``warmup_epochs`` > 0 prepends a linear warm-up from ``warmup_start_factor`` · lr (not for
    onecycle or plateau). The main schedule then starts when the warm-up ends, and its epochs
    count from there (PyTorch's ``SequentialLR``): ``step_size: 10`` with a 1-epoch warm-up
    decays after epochs 11, 21, ….
    """

    name: Literal[
        "constant", "step", "multistep", "exponential", "cosine", "cosine_restarts", "onecycle", "plateau"
    ] = Field("constant", description="schedule")
    step_size: int = Field(10, gt=0, description="step: epochs between decays")
    milestones: list[int] = Field([], description="multistep: epochs at which to decay")
    gamma: float = Field(0.1, gt=0.0, description="step / multistep / exponential: decay factor")
    min_lr: float = Field(0.0, ge=0.0, description="cosine / plateau: lowest learning rate")
    pct_start: float = Field(0.25, gt=0.0, lt=1.0, description="onecycle: fraction spent warming up")
    div_factor: float = Field(25.0, gt=0.0, description="onecycle: initial lr = lr / div_factor")
    final_div_factor: float = Field(
        1e4, gt=0.0, description="onecycle: final lr = initial / final_div_factor"
    )
    factor: float = Field(0.1, gt=0.0, lt=1.0, description="plateau: decay factor")
    patience: int = Field(2, ge=0, description="plateau: epochs without improvement before decaying")
    monitor: str = Field("val_loss", description="plateau: metric to watch")
    warmup_epochs: float = Field(0.0, ge=0.0, description="linear warm-up length in epochs")
    warmup_start_factor: float = Field(0.1, gt=0.0, le=1.0, description="warm-up starts at this × lr")
    restart_epochs: int = Field(5, gt=0, description="cosine_restarts: length of the first cycle in epochs")
    restart_mult: int = Field(1, ge=1, description="cosine_restarts: each cycle is this many times longer")


# ============================================================================ callbacks / logging
class EarlyStoppingConfig(_Section):
    """Stop when ``monitor`` stops improving (off unless ``enabled``)."""

    enabled: bool = Field(False, description="turn early stopping on")
    monitor: str = Field("val_loss", description="metric to watch")
    mode: Literal["auto", "min", "max"] = Field("auto", description="'auto': max for accuracies, else min")
    patience: int = Field(5, ge=0, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0.0, description="smallest change that counts as improvement")
    restore_best_weights: bool = Field(True, description="end with the best epoch's weights")


class MonitorConfig(_Section):
    """The babysitting monitor (on by default): update/weight ratios, dead and saturated units,
    gradient norms and loss explosions every few steps, and a diagnosis of the learning curves at
    the end, in plain words, on the console, in ``metrics.jsonl`` and in the report."""

    enabled: bool = Field(True, description="watch the run and report findings")
    every_steps: int = Field(50, gt=0, description="look at layer statistics every N steps")
    probe_size: int = Field(1024, gt=0, description="samples used to probe activations")
    stop_on_explosion: bool = Field(False, description="stop the run when the loss explodes")


class CheckpointConfig(_Section):
    """Which checkpoints the run directory keeps (``checkpoints/best`` and ``checkpoints/last``)."""

    monitor: str = Field("val_accuracy", description="metric that decides the best checkpoint")
    mode: Literal["auto", "min", "max"] = Field("auto", description="'auto': max for accuracies, else min")
    save_best: bool = Field(True, description="keep the best epoch's checkpoint")
    save_last: bool = Field(True, description="keep the latest checkpoint (used by --resume)")
    every_steps: int | None = Field(
        None, gt=0, description="also save 'last' every N optimizer steps (mid-epoch resume)"
    )


class EMAConfig(_Section):
    """Evaluate with averaged weights, EMA or Polyak (off unless ``enabled``). Validation, the
    best checkpoint's choice and the final test use a running average of the weights while the
    training weights keep training (the latter's validation metrics are logged as
    ``raw_val_loss`` / ``raw_val_accuracy``). After ``n`` earlier updates an update is ``ŵ ← d·ŵ + (1 − d)·w``
    with ``d = decay`` (``ema``; ``min(decay, (1 + n)/(10 + n))`` with ``warmup``) or
    ``d = n/(n + 1)`` (``polyak``: the plain mean, SWA-style); the first update copies the
    weights. Batch-norm statistics are averaged like the weights (``average``), copied from
    the training model (``copy``), or recomputed for the averaged weights by a pass over the
    training split before each evaluation (``recompute``; best for ``polyak``).
    """

    enabled: bool = Field(False, description="evaluate with averaged weights")
    mode: Literal["ema", "polyak"] = Field("ema", description="exponential moving average or plain mean")
    decay: float = Field(0.999, ge=0.0, lt=1.0, description="ema: weight of the old average per update")
    warmup: bool = Field(True, description="ema: use min(decay, (1 + n)/(10 + n)) after n updates")
    every_steps: int = Field(1, gt=0, description="update the average every N optimizer steps")
    start_step: int = Field(0, ge=0, description="first optimizer step that updates the average")
    bn: Literal["average", "copy", "recompute"] = Field(
        "average", description="batch-norm running statistics of the averaged model"
    )
    bn_batches: int | None = Field(
        None, gt=0, description="recompute: batches (of eval_batch_size) of training data used (null: all)"
    )


class SnapshotConfig(_Section):
    """Snapshot ensembles (Huang et al., 2017): save the weights at the end of every cosine
    cycle (``schedule.name: cosine_restarts``) to ``RUN_DIR/snapshots``; evaluate them together
    with ``gradcraft eval RUN_DIR --ensemble --checkpoint snapshots``."""

    enabled: bool = Field(False, description="save a snapshot at the end of every cosine cycle")


class CallbacksConfig(_Section):
    """Built-in callbacks."""

    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    ema: EMAConfig = Field(default_factory=EMAConfig)
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig)


class LoggingConfig(_Section):
    """What the run directory records and what the terminal shows."""

    jsonl: bool = Field(True, description="write metrics.jsonl (one JSON object per epoch)")
    log_every_steps: int = Field(50, gt=0, description="also log the training loss every N steps")
    tensorboard: bool = Field(True, description="write TensorBoard event files (needs tensorboardX)")
    histograms: bool = Field(True, description="TensorBoard weight and gradient histograms per epoch")
    plots: bool = Field(True, description="write PNG plots (needs matplotlib)")
    report: bool = Field(True, description="write report.md at the end")
    progress: Literal["auto", "bar", "line", "none"] = Field(
        "auto", description="'auto': a progress bar on a terminal, one line per epoch otherwise"
    )


class TTAConfig(_Section):
    """Test-time augmentation for ``gradcraft eval --tta`` / ``predict --tta``: the softmax is
    averaged over the image and fixed views of it (taken before preprocessing).

    Views should be ones the model saw in training: by default (``null``) the mirror image is
    used only when ``data.augmentation`` has ``hflip``, and shifted crops only when it has
    ``random_crop`` (with its padding). Fashion-MNIST's shoes all face left, so a model never
    trained on mirrored images gets worse, not better, from a mirrored view.
    """

    hflip: bool | None = Field(None, description="add the mirror image (null: if training used hflip)")
    crop_padding: int | None = Field(
        None,
        ge=0,
        description="> 0: add the 4 corner crops of the image padded by this many pixels "
        "(null: random_crop's padding, if training used it)",
    )
    rotations: list[float] = Field([], description="add these rotations (degrees)")


class TransferConfig(_Section):
    """Start from a trained network (off unless ``source`` is set). Its weights are loaded
    into this recipe's model (built for this data's classes) except the head, which starts
    afresh; then ``strategy`` decides what trains, after the lectures' table:

    =========  ===================  =====================
    data_size  similarity: similar  similarity: different
    =========  ===================  =====================
    small      linear_probe         finetune_top
    large      finetune_top         finetune_all
    =========  ===================  =====================

    ``linear_probe`` trains only the head on frozen features; ``finetune_top`` also the
    ``top_blocks`` blocks below it; ``finetune_all`` everything. ``auto`` reads the table
    (``data_size: auto`` means small below 1000 training examples per class). Pretrained
    blocks learn at ``backbone_lr_mult`` × ``optimizer.lr`` (× ``layer_decay`` per block
    further down); frozen blocks can be unfrozen one at a time, from the top, every
    ``unfreeze_every`` epochs. A block is a weight layer with the layers after it (batch norm,
    activation, pooling), see :func:`gradcraft.transfer.blocks`. Inputs are scaled with the
    source run's fitted preprocessing statistics (``preprocessing: source``), as the pretrained
    layers saw them in pretraining.
    """

    source: str | None = Field(
        None, description="run directory or weights file (.json checkpoint, .safetensors, .npz) to start from"
    )
    checkpoint: Literal["best", "last"] = Field("best", description="which checkpoint of a run directory")
    strategy: Literal["auto", "linear_probe", "finetune_top", "finetune_all"] = Field(
        "auto", description="what to train; auto: from data_size and similarity"
    )
    data_size: Literal["auto", "small", "large"] = Field(
        "auto", description="for auto: how much data (auto: small below 1000 examples per class)"
    )
    similarity: Literal["similar", "different"] = Field(
        "similar", description="for auto: is this data like the pretraining data?"
    )
    top_blocks: int = Field(1, ge=0, description="finetune_top: blocks below the head that train")
    backbone_lr_mult: float = Field(
        0.1, gt=0.0, description="learning rate of pretrained blocks, × optimizer.lr"
    )
    layer_decay: float = Field(
        1.0, gt=0.0, le=1.0, description="each block further below the head learns this × slower"
    )
    unfreeze_every: int = Field(
        0, ge=0, description="unfreeze one more frozen block every N epochs (0: never)"
    )
    freeze_bn: bool = Field(True, description="batch norm in frozen blocks stays in eval mode (no drift)")
    reset_head: bool = Field(True, description="initialise the head afresh even if its shape matches")
    strict: bool = Field(True, description="every layer below the head must load (same names and shapes)")
    preprocessing: Literal["source", "fit"] = Field(
        "source", description="source: the source run's fitted preprocessing statistics; fit: this data's"
    )

    @model_validator(mode="after")
    def _unfreezing_needs_frozen_blocks(self) -> TransferConfig:
        if self.unfreeze_every > 0 and self.strategy == "finetune_all":
            raise ValueError(
                "Expected a strategy that freezes blocks with unfreeze_every > 0. "
                "Received: strategy='finetune_all', which freezes none"
            )
        return self


# ============================================================================ distributed
class DistributedConfig(_Section):
    """Data-parallel training over MPI processes. ``mpiexec -n K gradcraft train RECIPE`` runs K
    processes, each training on 1/K of every global batch (``batch_size`` must be divisible by
    K) and averaging gradients with the others; process 0 alone logs and writes the run
    directory. See ``docs/scaling.md``.

    ``mode``: ``auto`` uses MPI when an MPI launcher started more than one process; ``mpi``
    always starts MPI (for launchers not detected); ``none`` trains alone even under
    ``mpiexec``. The section may be written as just the mode: ``distributed: mpi``.
    """

    mode: Literal["auto", "mpi", "none"] = Field("auto", description="when to train data-parallel over MPI")
    sync_batchnorm: bool = Field(
        False, description="batch-norm statistics over the global batch (false: each process's own shard)"
    )
    bucket_mb: float = Field(25.0, gt=0.0, description="size of the gradient allreduce buckets in MB")


# ============================================================================ recipe
class Recipe(_Section):
    """A complete training run. Every field has a default; see each section's doc."""

    name: str = Field("run", description="run name (also the default run directory's prefix)")
    description: str = Field("", description="free text shown by 'gradcraft recipes'")
    seed: int = Field(0, ge=0, description="seed of every random generator in the run")
    threads: int | None = Field(None, gt=0, description="BLAS threads (default: leave as is)")
    epochs: int = Field(10, gt=0, description="number of passes over the training split")
    batch_size: int = Field(
        128, gt=0, description="training minibatch size (data-parallel: the global batch, split evenly)"
    )
    eval_batch_size: int = Field(1000, gt=0, description="minibatch size for validation and test")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    regularizers: list[RegularizerConfig] = Field([], description="penalties added to the loss")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    clip_grad_norm: float | None = Field(None, gt=0.0, description="clip the global gradient norm to this")
    callbacks: CallbacksConfig = Field(default_factory=CallbacksConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    tta: TTAConfig = Field(default_factory=TTAConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    device: Literal["cpu", "cuda"] = Field(
        "cpu", description="where the model trains: cpu, or cuda (a GPU; needs pip install 'gradcraft[gpu]')"
    )

    @field_validator("distributed", mode="before")
    @classmethod
    def _mode_alone(cls, value: Any) -> Any:
        return {"mode": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _warmup_from_unscaled_lr(self) -> Recipe:
        opt, sched = self.optimizer, self.schedule
        given = "warmup_start_factor" in sched.model_fields_set
        if opt.scale_lr != "none" and sched.warmup_epochs > 0 and not given:
            sched.warmup_start_factor = min(1.0, opt.lr / opt.scaled_lr(self.batch_size))
        return self

    @model_validator(mode="after")
    def _check_consistency(self) -> Recipe:
        if (
            self.schedule.name == "plateau"
            and self.data.val_split == 0
            and self.schedule.monitor.startswith("val")
        ):
            raise ValueError(
                f"schedule.monitor={self.schedule.monitor!r} needs a validation split; set data.val_split > 0"
            )
        return self

    @model_validator(mode="after")
    def _check_restarts_and_snapshots(self) -> Recipe:
        sched = self.schedule
        if sched.name == "cosine_restarts" and sched.warmup_epochs > 0:
            raise ValueError(
                "Expected schedule.warmup_epochs: 0 with cosine_restarts (every cycle starts at the full "
                f"rate). Received: warmup_epochs={sched.warmup_epochs}"
            )
        if self.callbacks.snapshots.enabled:
            if sched.name != "cosine_restarts":
                raise ValueError(
                    "Expected schedule.name: cosine_restarts with callbacks.snapshots.enabled (a snapshot "
                    f"is taken at the end of each cosine cycle). Received: schedule.name={sched.name!r}"
                )
            if self.epochs < sched.restart_epochs:
                raise ValueError(
                    "Expected epochs >= schedule.restart_epochs, so that a cycle ends and a snapshot is "
                    f"taken. Received: epochs={self.epochs}, restart_epochs={sched.restart_epochs}"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe (every default filled in) as plain JSON types."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """The resolved recipe as YAML text, loadable by :func:`parse_recipe`."""
        yaml = _yaml()
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


# ============================================================================ loading
def _yaml() -> Any:
    try:
        import yaml
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError('Recipes need PyYAML: pip install "gradcraft[cli]"') from err
    return yaml


def recipes_dir() -> Path:
    """The directory of the shipped recipes (``recipes/`` next to the package)."""
    return Path(__file__).resolve().parent.parent / "recipes"


def shipped_recipes() -> dict[str, Path]:
    """Name → path of every shipped recipe, sorted by name."""
    d = recipes_dir()
    if not d.is_dir():
        return {}
    return {p.stem: p for p in sorted(d.glob("*.yaml"))}


def find_recipe(name_or_path: str | os.PathLike[str]) -> Path:
    """A recipe file: an existing path, or the name of a shipped recipe (``fashion_quick``).

    Raises:
        FileNotFoundError: naming the path and the closest shipped recipe names.
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = shipped_recipes()
    key = p.stem if p.suffix in (".yaml", ".yml") and len(p.parts) == 1 else str(name_or_path)
    if key in shipped:
        return shipped[key]
    close = difflib.get_close_matches(key, list(shipped), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    names = ", ".join(shipped) or "none"
    raise FileNotFoundError(f"No recipe file '{name_or_path}' (shipped recipes: {names}){hint}")


def _node_at(node: Any, loc: Sequence[Any]) -> tuple[Any, bool]:
    """The YAML node at ``loc`` (or the deepest one found), and whether all of loc matched."""
    yaml = _yaml()
    exact = True
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    node = value_node
                    break
            else:
                exact = False
                continue  # a union tag in pydantic's loc, not a key of the file
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            exact = False
    return node, exact


def _key_node(node: Any, key: str) -> Any:
    yaml = _yaml()
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if key_node.value == key:
                return key_node
    return None


def _unwrap(annotation: Any) -> list[Any]:
    """The concrete types inside Optional / Union / Annotated / list annotations."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            out += _unwrap(arg)
        return out
    if origin in (list, tuple, Sequence):
        out = []
        for arg in typing.get_args(annotation):
            if arg is not Ellipsis:
                out += _unwrap(arg)
        return out
    return [annotation]


def _models_at(loc: Sequence[Any]) -> list[type[BaseModel]]:
    """The schema classes that could sit at ``loc`` (several for a union of layer types)."""
    current: list[type[BaseModel]] = [Recipe]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt: list[type[BaseModel]] = []
        matched_tag = [m for m in current if part in _tags_of(m)]
        if matched_tag:
            current = matched_tag
            continue
        for model in current:
            field = model.model_fields.get(str(part))
            if field is None:
                continue
            nxt += [t for t in _unwrap(field.annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nxt:
            return current
        current = nxt
    return current


def _tags_of(model: type[BaseModel]) -> tuple[Any, ...]:
    """The values of a tagged-union member's ``type`` literal (empty for other sections)."""
    field = model.model_fields.get("type")
    if field is None or typing.get_origin(field.annotation) is not Literal:
        return ()
    return typing.get_args(field.annotation)


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _format_error(
    err: dict[str, Any], source: str, root: Any, data: Any, overridden: Sequence[str] = ()
) -> str:
    loc = list(err["loc"])
    etype = err["type"]
    # drop union tags pydantic inserts (e.g. 'conv2d' in model.layers.0.conv2d.out_channels)
    shown: list[Any] = []
    value: Any = data
    for part in loc:
        if (isinstance(value, dict) and part in value) or (
            isinstance(value, list) and isinstance(part, int) and part < len(value)
        ):
            value = value[part]
            shown.append(part)
        elif etype in ("missing", "extra_forbidden") and part == loc[-1]:
            shown.append(part)
        # else: a tag of a tagged union, not in the file
    path = ".".join(str(p) for p in shown) or "(top level)"
    line = ""
    if root is not None:
        node, _ = _node_at(root, shown[:-1] if etype == "extra_forbidden" else shown)
        if etype == "extra_forbidden":
            key = _key_node(node, str(shown[-1])) if shown else None
            node = key if key is not None else node
        if node is not None and getattr(node, "start_mark", None) is not None:
            line = f":{node.start_mark.line + 1}"
    where = f"{source}{line}: {path}"
    if any(path == o or path.startswith(o + ".") for o in overridden):
        where = f"--set {path}"
    if etype == "extra_forbidden":
        models = _models_at(loc[:-1])
        fields = sorted({f for m in models for f in m.model_fields})
        hint = _suggest(str(loc[-1]), fields)
        valid = f" (valid keys: {', '.join(fields)})" if not hint and fields else ""
        return f"{where}: unknown key{hint}{valid}"
    if etype == "missing":
        return f"{where}: required key is missing"
    msg = err["msg"]
    received = err.get("input")
    ctx = err.get("ctx") or {}
    hint = ""
    if etype == "literal_error" and "expected" in ctx:
        choices = re.findall(r"'([^']*)'", str(ctx["expected"]))
        hint = _suggest(str(received), choices)
    elif etype == "union_tag_invalid" and "expected_tags" in ctx:
        choices = re.findall(r"'([^']*)'", str(ctx["expected_tags"]))
        tag = str(ctx.get("tag", received))
        return f"{where}: unknown type '{tag}'{_suggest(tag, choices)} (valid types: {', '.join(choices)})"
    if isinstance(received, (dict, list)):
        return f"{where}: {msg}{hint}"
    return f"{where}: {msg}{hint} (received {received!r})"


def _line_of(problem: str) -> int:
    """Sort key: the line number in ``file:line: ...`` (problems without one come last)."""
    match = re.match(r"^.*?:(\d+): ", problem)
    return int(match.group(1)) if match else 1 << 30


def parse_recipe(
    data: Any, source: str = "recipe", yaml_root: Any = None, overridden: Sequence[str] = ()
) -> Recipe:
    """Validate a recipe given as a dict (``None`` means all defaults).

    Args:
        data: the recipe as parsed YAML.
        source: how errors name the recipe (usually its path).
        yaml_root: the composed YAML node tree, for line numbers in errors.
        overridden: dotted paths set by ``--set``; errors under them name ``--set``.

    Raises:
        RecipeError: one line per problem: ``source:line: dotted.path: what is wrong``.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(
            [f"{source}: expected a mapping of keys to values at the top level, not a {type(data).__name__}"],
            source,
        )
    try:
        return Recipe.model_validate(data)
    except ValidationError as err:
        problems = [_format_error(e, source, yaml_root, data, overridden) for e in err.errors()]
        problems.sort(key=_line_of)
        raise RecipeError(problems, source) from None


def _parse_override(item: str) -> tuple[list[str], Any]:
    yaml = _yaml()
    if "=" not in item:
        raise RecipeError([f"--set {item}: expected key.path=value, e.g. optimizer.lr=0.01"], "--set")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise RecipeError([f"--set {item}: expected key.path=value, e.g. optimizer.lr=0.01"], "--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise RecipeError([f"--set {item}: the value is not valid YAML ({err})"], "--set") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a recipe dict in place.

    Intermediate sections are created as needed; list items are addressed by index
    (``model.layers.0.out_channels=16``). Unknown keys are caught by :func:`parse_recipe`,
    which names them as ``--set``.

    Raises:
        RecipeError: for malformed overrides or paths that walk through a non-container.
    """
    for item in overrides:
        parts, value = _parse_override(item)
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                    raise RecipeError(
                        [f"--set {item}: '{where}' is not an index of a list of {len(node)}"], "--set"
                    )
                node = node[int(part)]
            elif isinstance(node, dict):
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
            else:
                raise RecipeError(
                    [f"--set {item}: '{'.'.join(parts[:i])}' is a value, not a section"], "--set"
                )
        last = parts[-1]
        if isinstance(node, list):
            if not last.lstrip("-").isdigit() or not -len(node) <= int(last) < len(node):
                raise RecipeError(
                    [f"--set {item}: '{last}' is not an index of a list of {len(node)}"], "--set"
                )
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise RecipeError([f"--set {item}: '{'.'.join(parts[:-1])}' is a value, not a section"], "--set")
    return data


def load_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Recipe:
    """Read, override and validate a recipe file.

    Args:
        path: a YAML file, or the name of a shipped recipe.
        overrides: ``key.path=value`` strings applied before validation.

    Raises:
        FileNotFoundError: if there is no such file or shipped recipe.
        RecipeError: for YAML syntax errors (with line) and schema errors (with path, line and
            the closest valid key). Errors in overridden keys name ``--set`` as their source.
    """
    yaml = _yaml()
    file = find_recipe(path)
    text = file.read_text(encoding="utf-8")
    source = str(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise RecipeError([f"{source}{line}: not valid YAML: {problem}"], source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError([f"{source}: expected a mapping of keys to values at the top level"], source)
    overridden = [".".join(_parse_override(o)[0]) for o in overrides]
    apply_overrides(data, overrides)
    recipe = parse_recipe(data, source, root, overridden=overridden)
    return _resolve_data_path(recipe, file)


def _resolve_data_path(recipe: Recipe, file: Path) -> Recipe:
    dataset = recipe.data.dataset
    if dataset.endswith(".npz") and not Path(dataset).is_absolute():
        candidate = (file.parent / dataset).resolve()
        if candidate.is_file() and not Path(dataset).is_file():
            recipe.data.dataset = str(candidate)
    return recipe


def _summary(model: type[BaseModel]) -> str:
    """The first sentence of a section's docstring, on one line."""
    doc = (model.__doc__ or "").strip().split("\n\n")[0]
    text = " ".join(line.strip() for line in doc.splitlines())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def explain(model: type[BaseModel] = Recipe, prefix: str = "") -> str:
    """Every field of the schema with its default and description, one per line.

    Sections print as ``name:  # what it is``; list items as ``name[].field``; a list of
    tagged layer types lists each type with its fields.
    """
    lines: list[str] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        subs = [t for t in _unwrap(field.annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
        default: Any = "(required)" if field.is_required() else field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        shown = default if field.is_required() else repr(default)
        desc = f"  # {field.description}" if field.description else ""
        if len(subs) == 1 and typing.get_origin(field.annotation) is None:
            lines.append(f"{path}:  # {_summary(subs[0])}")
            lines.append(explain(subs[0], prefix=path + "."))
        elif len(subs) == 1:
            lines.append(f"{path} = {shown}{desc}")
            lines.append(explain(subs[0], prefix=path + "[]."))
        elif subs:
            lines.append(f"{path} = {shown}{desc}")
            for sub in subs:
                fields = ", ".join(
                    f"{n}={f.get_default()!r}" if not f.is_required() else n
                    for n, f in sub.model_fields.items()
                    if n != "type"
                )
                lines.append(
                    f"{path}[]: {{type: {' | '.join(_tags_of(sub))}{', ' if fields else ''}{fields}}}"
                )
        else:
            lines.append(f"{path} = {shown}{desc}")
    return "\n".join(line for line in lines if line)
