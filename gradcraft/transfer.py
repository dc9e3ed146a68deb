"""Transfer learning: start a new task from a network trained on another one.

The lectures' recipe (cs231n, "Transfer learning with CNNs"): take a network trained on a big
dataset, replace its last layer by a fresh one for the new classes, and train — only the new
layer when data are scarce, more of the network when there are more data or the new images
look different. What to train follows from two questions:

=====================  ===============================  ===================================
                       similar dataset                  different dataset
=====================  ===============================  ===================================
**little data**        ``linear_probe``: train only     ``finetune_top``: train the top
                       the new head on the frozen       blocks and the head (the lecture:
                       features                         "you're in trouble" — try a linear
                                                        classifier on earlier features)
**a lot of data**      ``finetune_top``: fine-tune      ``finetune_all``: fine-tune the
                       the top few blocks               whole network
=====================  ===============================  ===================================

:func:`choose_strategy` reads this table (``strategy="auto"``); "little data" means fewer than
:data:`SMALL_DATA_PER_CLASS` training examples per class unless stated.

The pieces, usable on any :class:`~gradcraft.nn.Module`:

* :func:`blocks` — the network cut into *blocks*: a layer with a weight matrix or kernel
  (linear, conv, a residual block) together with the layers that follow it up to the next
  such layer (its batch norm, activation, pooling, dropout). The last block is the *head*.
* :func:`load_pretrained` — copy the weights of a run directory or weights file into the
  model, skipping the head, and report what was loaded, skipped, missing or mismatched.
* :func:`replace_head` — a new output layer for another number of classes.
* :func:`freeze` / :func:`unfreeze` — ``requires_grad=False`` by name prefix or for the first
  ``up_to`` blocks; batch-norm layers in frozen parts stay in evaluation mode (their running
  statistics do not drift with the new data) until unfrozen.
* :func:`param_groups` — one optimizer parameter group per block, the head first, pretrained
  blocks at a lower learning rate (discriminative fine-tuning, Howard & Ruder, 2018).
* :class:`GradualUnfreezing` — a callback that unfreezes one more block, from the top, every
  few epochs.

Frozen parameters stay in their optimizer groups: their gradient is ``None``, so the optimizer
skips them (no update, no weight decay, no state), and unfreezing only sets ``requires_grad``
back — the group's flat buffer already holds them, and a checkpoint has the same layout before
and after, so a resumed run continues exactly. Build the optimizer from :func:`param_groups`
(one group per block) so that a group is either all frozen or all trained.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradcraft.nn.module import Module, RemovableHandle
from gradcraft.nn.normalization import _BatchNorm
from gradcraft.train.callbacks import Callback

if TYPE_CHECKING:
    from gradcraft.train.trainer import Trainer

__all__ = [
    "SMALL_DATA_PER_CLASS",
    "STRATEGIES",
    "STRATEGY_TABLE",
    "Block",
    "GradualUnfreezing",
    "TransferReport",
    "TransferSetup",
    "blocks",
    "choose_strategy",
    "describe_blocks",
    "freeze",
    "frozen_block_count",
    "frozen_parameters",
    "load_pretrained",
    "param_groups",
    "read_preprocessing",
    "replace_head",
    "setup_transfer",
    "unfreeze",
]

#: The strategies, from the least trained to the most.
STRATEGIES = ("linear_probe", "finetune_top", "finetune_all")

#: (data size, similarity) → strategy: the lectures' four-way table.
STRATEGY_TABLE: dict[tuple[str, str], str] = {
    ("small", "similar"): "linear_probe",
    ("small", "different"): "finetune_top",
    ("large", "similar"): "finetune_top",
    ("large", "different"): "finetune_all",
}

#: Fewer training examples per class than this count as "little data" for ``data_size="auto"``.
SMALL_DATA_PER_CLASS = 1000


# ============================================================================ blocks
@dataclass(frozen=True)
class Block:
    """A group of consecutive top-level layers that is frozen, unfrozen and given a learning
    rate as one.

    Attributes:
        index: position from the input (0) to the head (``len(blocks) − 1``).
        layers: names of its top-level layers (``("0", "1", "2")``; ``("",)`` for a model
            without submodules).
        kinds: their class names.
    """

    index: int
    layers: tuple[str, ...]
    kinds: tuple[str, ...]

    def owns(self, name: str) -> bool:
        """Whether the parameter / module ``name`` lies in this block."""
        return any(_under(name, layer) for layer in self.layers)

    @property
    def label(self) -> str:
        span = self.layers[0] if len(self.layers) == 1 else f"{self.layers[0]}-{self.layers[-1]}"
        return f"block {self.index} (layers {span}: {', '.join(self.kinds)})"


def _under(name: str, prefix: str) -> bool:
    """Whether dotted ``name`` is ``prefix`` or lies under it (``"1"`` covers ``"1.weight"``,
    not ``"10.weight"``); the empty prefix covers everything."""
    return prefix in ("", name) or name.startswith(prefix + ".")


def _has_weight_matrix(module: Module) -> bool:
    return any(p.ndim >= 2 for p in module.parameters())


def blocks(model: Module) -> list[Block]:
    """The model's blocks, from the input to the head.

    A new block starts at each top-level layer that holds a weight matrix or kernel
    (``Linear``, ``Conv2d``, a residual ``BasicBlock``, …); the layers after it (batch norm,
    activation, pooling, dropout, flatten) belong to it, and layers before the first one to the
    first block. For the recipes' MLP ``flatten → [linear → bn → relu] × 2 → linear`` that is
    three blocks, the last (the output layer) being the head.

    Raises:
        ValueError: if the model has no parameters.
    """
    if not any(True for _ in model.parameters()):
        raise ValueError(f"Expected a model with parameters. Received: {type(model).__name__} without any")
    children = list(model.named_children())
    if not children:
        return [Block(0, ("",), (type(model).__name__,))]
    groups: list[list[tuple[str, Module]]] = []
    for name, child in children:
        if not groups or (_has_weight_matrix(child) and any(_has_weight_matrix(m) for _, m in groups[-1])):
            groups.append([])
        groups[-1].append((name, child))
    return [
        Block(i, tuple(n for n, _ in g), tuple(type(m).__name__ for _, m in g)) for i, g in enumerate(groups)
    ]


def describe_blocks(model: Module) -> str:
    """One line per block, with its parameter count and whether it is frozen."""
    lines = []
    named = list(model.named_parameters())
    for b in blocks(model):
        params = [p for n, p in named if b.owns(n)]
        size = sum(int(p.size) for p in params)
        frozen = params and not any(p.requires_grad for p in params)
        head = ", head" if b.index == len(blocks(model)) - 1 else ""
        lines.append(f"{b.label}: {size:,} parameters{head}{', frozen' if frozen else ''}")
    return "\n".join(lines)


# ============================================================================ loading
@dataclass
class TransferReport:
    """What :func:`load_pretrained` did with each entry of the model's ``state_dict``.

    Attributes:
        source: the file the weights came from.
        loaded: names copied from the source.
        skipped_head: the head's names, kept as initialised (on purpose, or because their
            shapes differ from the source's).
        mismatched: ``(name, shape in the model, shape in the source)`` below the head.
        missing: names the model has and the source lacks.
        unexpected: names the source has and the model lacks.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    skipped_head: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def format(self) -> str:
        """A readable summary, one line per kind of entry."""
        lines = [f"pretrained weights from {self.source}: loaded {len(self.loaded)} entries"]
        if self.skipped_head:
            lines.append(f"  skipped (the head, newly initialised): {', '.join(self.skipped_head)}")
        for name, mine, theirs in self.mismatched:
            lines.append(
                f"  shape mismatch: {name}: {mine} in the model, {theirs} in the source (not loaded)"
            )
        if self.missing:
            lines.append(f"  missing in the source (left as initialised): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"  not in the model (ignored): {', '.join(self.unexpected)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "loaded": list(self.loaded),
            "skipped_head": list(self.skipped_head),
            "mismatched": [[n, list(a), list(b)] for n, a, b in self.mismatched],
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
        }


def load_pretrained(
    model: Module,
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    which: str = "best",
    skip_head: bool = True,
    strict: bool = True,
) -> TransferReport:
    """Copy pretrained weights into ``model`` (in place), all but its head.

    Args:
        model: the new network (its head already sized for the new classes).
        source: a run directory, a weights file (see :func:`gradcraft.ensemble.read_weights`)
            or a ``state_dict`` (name → array).
        which: ``"best"`` or ``"last"`` checkpoint of a run directory.
        skip_head: keep the head (the last block) as initialised even when its shapes match
            the source's (a new task's classes are not the old ones). Head entries whose
            shapes differ are never loaded.
        strict: every entry below the head must be loaded (same names, same shapes).

    Returns:
        A :class:`TransferReport`.

    Raises:
        ValueError: with ``strict``, naming every missing or mismatched entry below the head;
            always, when nothing at all could be loaded.
        FileNotFoundError / CheckpointError: for a missing or unreadable source.
    """
    if isinstance(source, Mapping):
        state = {k: _host(v) for k, v in source.items()}
        where = "a state dict"
    else:
        from gradcraft.ensemble import read_weights

        state, path = read_weights(source, which)
        where = str(path)
    head = blocks(model)[-1]
    targets = model.state_dict(keep_vars=True)
    report = TransferReport(where)
    take: dict[str, Any] = {}
    for name, target in targets.items():
        in_head = head.owns(name)
        value = state.get(name)
        if in_head and (skip_head or (value is not None and tuple(value.shape) != tuple(target.shape))):
            report.skipped_head.append(name)
        elif value is None:
            report.missing.append(name)
        elif tuple(value.shape) != tuple(target.shape):
            report.mismatched.append((name, tuple(target.shape), tuple(value.shape)))
        else:
            report.loaded.append(name)
            take[name] = value
    report.unexpected = [k for k in state if k not in targets]
    if not report.loaded:
        raise ValueError(
            f"Expected pretrained weights that fit the model below its head. Received: none of the "
            f"{len(state)} entries of {where} match (model entries: {', '.join(list(targets)[:6])}, …; "
            f"source entries: {', '.join(list(state)[:6])}, …)"
        )
    if strict and (report.missing or report.mismatched):
        problems = [f"'{n}' is missing in the source" for n in report.missing]
        problems += [f"'{n}' has shape {a} in the model, {b} in the source" for n, a, b in report.mismatched]
        raise ValueError(
            "Expected the source to hold every layer below the head with the same shapes. Received: "
            + "; ".join(problems)
            + f" ({where}). Use the source's architecture for the model, or strict=False"
        )
    model.load_state_dict(take, strict=False)
    return report


def read_preprocessing(
    source: str | os.PathLike[str], which: str = "best"
) -> tuple[str | None, dict[str, np.ndarray] | None]:
    """The preprocessing of a training run: ``(kind, fitted statistics)`` from a run directory
    or a training checkpoint (``data.preprocessing.kind`` of its recipe and the statistics
    saved with its weights); ``(None, None)`` for plain weight files."""
    from gradcraft.io.checkpoint import checkpoint_exists, load_checkpoint, unpack_state

    path = Path(source)
    if path.is_dir():
        path = path / "checkpoints" / f"{which}.json"
        if not checkpoint_exists(path) and which == "best":
            path = path.with_name("last.json")
    if path.suffix != ".json" or not path.is_file():
        return None, None
    ckpt = load_checkpoint(path)
    recipe = ckpt.meta.get("recipe")
    tree = ckpt.meta.get("trainer")
    if not isinstance(recipe, dict) or not isinstance(tree, dict):
        return None, None
    kind = recipe.get("data", {}).get("preprocessing", {}).get("kind")
    extra = tree.get("extra") or {}
    state = unpack_state(extra["preprocessing"], ckpt.arrays) if "preprocessing" in extra else None
    return kind, state


def _host(value: Any) -> np.ndarray:
    data = getattr(value, "data", value)
    if type(data).__module__.startswith("cupy"):
        return data.get()
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a PyTorch tensor
        return value.detach().cpu().numpy()
    return np.asarray(data)


def replace_head(model: Module, num_classes: int, init: Any = None) -> str:
    """Replace the model's last ``Linear`` layer by a new one with ``num_classes`` outputs
    (same input size and bias setting) and return its name. Build the optimizer afterwards: it
    must hold the new layer's parameters, not the old ones.

    Args:
        model: the network.
        num_classes: outputs of the new layer.
        init: its weight initialisation (see :class:`gradcraft.nn.Linear`; default PyTorch's).

    Raises:
        ValueError: if the model has no ``Linear`` layer or ``num_classes < 1``.
    """
    from gradcraft.nn.linear import Linear

    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"Expected a positive integer num_classes. Received: num_classes={num_classes!r}")
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, Linear)]
    if not linears:
        raise ValueError(
            f"Expected a model with a Linear output layer. Received: {type(model).__name__} without one"
        )
    name, old = linears[-1]
    if not name:
        raise ValueError("Expected a model that contains its output layer. Received: a bare Linear layer")
    parent_name, _, key = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    new = Linear(
        old.in_features, int(num_classes), bias=old.bias is not None, init=init, dtype=old.weight.dtype
    )
    parent._modules[key] = new
    return name


# ============================================================================ freezing
# batch-norm layers kept in evaluation mode while frozen → the hook that keeps them there
_EVAL_HOOKS: weakref.WeakKeyDictionary[Module, RemovableHandle] = weakref.WeakKeyDictionary()


def _keep_eval(module: Module, args: tuple[Any, ...]) -> None:
    object.__setattr__(module, "training", False)


def _prefixes(model: Module, prefixes: Iterable[str] | None, up_to: int | None, what: str) -> list[str]:
    if (prefixes is None) == (up_to is None):
        raise ValueError(f"Expected exactly one of prefixes or up_to for {what}. Received: both or neither")
    if up_to is not None:
        bl = blocks(model)
        if isinstance(up_to, bool) or not isinstance(up_to, (int, np.integer)) or not 0 <= up_to <= len(bl):
            raise ValueError(
                f"Expected 0 <= up_to <= {len(bl)} (the model has {len(bl)} blocks). "
                f"Received: up_to={up_to!r}"
            )
        return [layer for b in bl[:up_to] for layer in b.layers]
    if isinstance(prefixes, str):
        prefixes = [prefixes]
    out = list(prefixes or [])
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_modules()]
    for prefix in out:
        if not any(_under(n, prefix) for n in names):
            top = ", ".join(n for n, _ in model.named_children())
            raise ValueError(
                f"Expected name prefixes of the model's layers or parameters (top-level layers: {top}). "
                f"Received: {prefix!r}, which matches none"
            )
    return out


def freeze(
    model: Module,
    prefixes: Iterable[str] | str | None = None,
    *,
    up_to: int | None = None,
    bn_eval: bool = True,
) -> list[str]:
    """Freeze parameters: ``requires_grad = False`` and their gradients dropped.

    Args:
        model: the network.
        prefixes: dotted name prefixes (``"0"`` covers ``0.weight`` and ``0.bias``, not
            ``10.weight``; ``"features.3"`` a nested layer).
        up_to: instead of prefixes: freeze the first ``up_to`` blocks (:func:`blocks`), i.e.
            ``blocks[:up_to]``.
        bn_eval: keep the batch-norm layers inside the frozen part in evaluation mode
            (normalising with, and not updating, their running statistics) even while the
            model trains, until :func:`unfreeze`.

    Returns:
        The names of the parameters frozen.

    Raises:
        ValueError: for both or neither of ``prefixes`` / ``up_to``, a prefix that matches no
            parameter, or ``up_to`` outside ``[0, number of blocks]``.
    """
    chosen = _prefixes(model, prefixes, up_to, "freeze")
    frozen = []
    for name, p in model.named_parameters():
        if any(_under(name, c) for c in chosen):
            p.requires_grad_(False)
            p.grad = None
            frozen.append(name)
    if bn_eval:
        for name, m in model.named_modules():
            if isinstance(m, _BatchNorm) and any(_under(name, c) for c in chosen) and m not in _EVAL_HOOKS:
                _EVAL_HOOKS[m] = m.register_forward_pre_hook(_keep_eval)
                object.__setattr__(m, "training", False)
    return frozen


def unfreeze(
    model: Module,
    prefixes: Iterable[str] | str | None = None,
    *,
    up_to: int | None = None,
) -> list[str]:
    """Undo :func:`freeze` for parameters under ``prefixes`` or in the first ``up_to`` blocks
    (everything when both are omitted): ``requires_grad = True``, and their batch-norm layers
    follow the model's mode again.

    Returns:
        The names of the parameters unfrozen (those that were frozen).
    """
    chosen = [""] if prefixes is None and up_to is None else _prefixes(model, prefixes, up_to, "unfreeze")
    thawed = []
    for name, p in model.named_parameters():
        if any(_under(name, c) for c in chosen) and not p.requires_grad:
            p.requires_grad_(True)
            thawed.append(name)
    for name, m in model.named_modules():
        if isinstance(m, _BatchNorm) and any(_under(name, c) for c in chosen):
            handle = _EVAL_HOOKS.pop(m, None)
            if handle is not None:
                handle.remove()
                object.__setattr__(m, "training", model.training)
    return thawed


def frozen_parameters(model: Module) -> list[str]:
    """Names of the parameters with ``requires_grad = False``."""
    return [n for n, p in model.named_parameters() if not p.requires_grad]


# ============================================================================ learning rates
def param_groups(
    model: Module,
    lr: float,
    *,
    backbone_lr_mult: float = 1.0,
    layer_decay: float = 1.0,
    pretrained: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """Optimizer parameter groups, one per block (:func:`blocks`), the head's first.

    A pretrained block ``d`` blocks below the head gets

        lr_d = lr · backbone_lr_mult · layer_decay^(d − 1)

    (``layer_decay < 1``: lower blocks, with the more general features, change less); the head
    and blocks that were not pretrained get ``lr``. Frozen parameters are included, so
    :class:`GradualUnfreezing` can train them later in their own group. Each group is
    ``{"params": [(name, parameter), …], "lr": …, "block": index}``; pass the list to any
    :mod:`gradcraft.optim` optimizer (the first group's rate is the one progress lines show).

    Args:
        model: the network.
        lr: the head's learning rate.
        backbone_lr_mult: multiplier for pretrained blocks, > 0.
        layer_decay: further multiplier per block below the first, in (0, 1].
        pretrained: names of the parameters that were loaded (default: all below the head); a
            block counts as pretrained when all its parameters are.

    Raises:
        ValueError: for a non-positive rate, multiplier or decay.
    """
    for key, value in (("lr", lr), ("backbone_lr_mult", backbone_lr_mult)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"Expected {key} > 0. Received: {key}={value!r}")
    if isinstance(layer_decay, bool) or not isinstance(layer_decay, (int, float)) or not 0 < layer_decay <= 1:
        raise ValueError(f"Expected 0 < layer_decay <= 1. Received: layer_decay={layer_decay!r}")
    bl = blocks(model)
    named = list(model.named_parameters())
    head = len(bl) - 1
    groups = []
    for b in reversed(bl):
        params = [(n, p) for n, p in named if b.owns(n)]
        if not params:
            continue
        was_trained = b.index != head if pretrained is None else all(n in pretrained for n, _ in params)
        depth = head - b.index
        rate = float(lr)
        if was_trained and depth > 0:
            rate = float(lr) * backbone_lr_mult * layer_decay ** (depth - 1)
        groups.append({"params": params, "lr": rate, "block": b.index})
    return groups


# ============================================================================ strategies
def choose_strategy(
    strategy: str = "auto",
    data_size: str = "auto",
    similarity: str = "similar",
    examples_per_class: float | None = None,
) -> tuple[str, str]:
    """The strategy to use, and why (:data:`STRATEGY_TABLE`).

    Args:
        strategy: ``"auto"`` or one of :data:`STRATEGIES` (returned as is).
        data_size: ``"small"``, ``"large"`` or ``"auto"`` (small below
            :data:`SMALL_DATA_PER_CLASS` training examples per class).
        similarity: ``"similar"`` or ``"different"`` — is the new data like the pretraining data?
        examples_per_class: needed for ``data_size="auto"``.

    Returns:
        ``(strategy, reason)``.

    Raises:
        ValueError: for unknown values, or ``data_size="auto"`` without ``examples_per_class``.
    """
    if strategy != "auto":
        if strategy not in STRATEGIES:
            raise ValueError(
                f"Expected strategy 'auto' or one of {STRATEGIES}. Received: strategy={strategy!r}"
            )
        return strategy, "chosen in the recipe"
    if similarity not in ("similar", "different"):
        raise ValueError(f"Expected similarity 'similar' or 'different'. Received: similarity={similarity!r}")
    if data_size == "auto":
        if examples_per_class is None:
            raise ValueError("Expected examples_per_class with data_size='auto'. Received: None")
        size = "small" if examples_per_class < SMALL_DATA_PER_CLASS else "large"
        why_size = f"{examples_per_class:.0f} training examples per class ({size}: the threshold is "
        why_size += f"{SMALL_DATA_PER_CLASS})"
    elif data_size in ("small", "large"):
        size = data_size
        why_size = f"{size} data"
    else:
        raise ValueError(f"Expected data_size 'auto', 'small' or 'large'. Received: data_size={data_size!r}")
    chosen = STRATEGY_TABLE[(size, similarity)]
    return chosen, f"auto: {why_size}, {similarity} dataset -> {chosen}"


def frozen_block_count(strategy: str, num_blocks: int, top_blocks: int = 1) -> int:
    """How many blocks, from the input, a strategy freezes: all but the head for
    ``linear_probe``, all but the head and the ``top_blocks`` below it for ``finetune_top``,
    none for ``finetune_all``."""
    if strategy == "linear_probe":
        return num_blocks - 1
    if strategy == "finetune_top":
        return max(0, num_blocks - 1 - top_blocks)
    if strategy == "finetune_all":
        return 0
    raise ValueError(f"Expected a strategy in {STRATEGIES}. Received: {strategy!r}")


# ============================================================================ gradual unfreezing
class GradualUnfreezing(Callback):
    """Unfreeze the frozen blocks one at a time, from the top, every ``every_epochs`` epochs
    (ULMFiT's gradual unfreezing, Howard & Ruder, 2018).

    With ``k`` frozen blocks, block ``k − j`` (``j = 1 … k``) is unfrozen when epoch
    ``j · every_epochs`` (0-based) begins; the number unfrozen at epoch ``e`` is
    ``min(k, e // every_epochs)``. Unfreezing sets ``requires_grad`` back and releases the
    block's batch-norm layers; the optimizer must already hold the block's parameters (as
    :func:`param_groups` arranges), which it then updates in the block's group at that group's
    learning rate. The schedule is a function of the epoch, so a resumed run unfreezes the
    same blocks at the same epochs.

    Args:
        frozen: the frozen blocks (from the input upwards), e.g. ``blocks(model)[:k]``.
        every_epochs: epochs between two unfreezings (≥ 1).

    Raises:
        ValueError: for ``every_epochs < 1``; at the start of training, when the optimizer
            lacks a frozen block's parameters.
    """

    order = -30  # before the epoch's other callbacks look at the model

    def __init__(self, frozen: Sequence[Block], every_epochs: int) -> None:
        if (
            isinstance(every_epochs, bool)
            or not isinstance(every_epochs, (int, np.integer))
            or every_epochs < 1
        ):
            raise ValueError(
                f"Expected an integer every_epochs >= 1. Received: every_epochs={every_epochs!r}"
            )
        self.frozen = list(frozen)
        self.every_epochs = int(every_epochs)
        self.unfrozen = 0

    def schedule(self) -> list[tuple[int, Block]]:
        """``(epoch, block)`` pairs: when (0-based epoch) each block is unfrozen."""
        return [((j + 1) * self.every_epochs, b) for j, b in enumerate(reversed(self.frozen))]

    def _apply(self, trainer: Trainer, target: int, announce: bool = True) -> None:
        target = min(len(self.frozen), target)
        while self.unfrozen < target:
            block = self.frozen[len(self.frozen) - 1 - self.unfrozen]
            unfreeze(trainer.model, list(block.layers))
            self.unfrozen += 1
            if announce:
                trainer.info(f"gradual unfreezing: training {block.label} from epoch {trainer.epoch + 1}")

    def on_train_begin(self, trainer: Trainer) -> None:
        held = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
        for block in self.frozen:
            lacking = [n for n, p in trainer.model.named_parameters() if block.owns(n) and id(p) not in held]
            if lacking:
                raise ValueError(
                    "Expected the optimizer to hold the frozen blocks' parameters (build it from "
                    f"gradcraft.transfer.param_groups). Received: {block.label} is missing {lacking[:4]}"
                )
        restored, self.unfrozen = self.unfrozen, 0
        self._apply(trainer, restored, announce=False)  # a resumed run: as before the stop

    def on_epoch_begin(self, trainer: Trainer) -> None:
        self._apply(trainer, trainer.epoch // self.every_epochs)

    def state_dict(self) -> dict[str, Any]:
        return {"unfrozen": self.unfrozen}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.unfrozen = int(state["unfrozen"])


# ============================================================================ recipes
@dataclass
class TransferSetup:
    """A recipe's ``transfer`` section applied to a freshly built model (see
    :func:`setup_transfer`).

    Attributes:
        source: the run directory or weights file.
        which: its checkpoint (``best`` / ``last``).
        strategy: the strategy in force; ``reason`` says why.
        frozen: the blocks frozen at the start.
        groups: optimizer parameter groups (:func:`param_groups`).
        unfreeze_every: epochs between gradual unfreezings (0: none).
        reset_head, strict: as in :func:`load_pretrained`.
        preprocessing: ``"source"`` (use the source run's fitted statistics) or ``"fit"``.
    """

    source: str
    which: str
    strategy: str
    reason: str
    frozen: list[Block]
    groups: list[dict[str, Any]]
    unfreeze_every: int
    reset_head: bool
    strict: bool
    preprocessing: str = "source"

    def callbacks(self) -> list[Callback]:
        """The callbacks the setup needs (gradual unfreezing, when on and something is frozen)."""
        if self.unfreeze_every > 0 and self.frozen:
            return [GradualUnfreezing(self.frozen, self.unfreeze_every)]
        return []

    def load_weights(self, model: Module) -> TransferReport:
        """Copy the source's weights into ``model`` (all but the head)."""
        return load_pretrained(
            model, self.source, which=self.which, skip_head=self.reset_head, strict=self.strict
        )

    def load_preprocessing(self, preprocessor: Any, kind: str) -> str:
        """With ``preprocessing="source"``: put the source run's fitted preprocessing statistics
        into ``preprocessor`` (of this recipe's ``kind``), so the pretrained layers see inputs
        scaled as in pretraining. Returns a line saying which statistics are used.

        Raises:
            ValueError: when the source run used another preprocessing kind.
        """
        if self.preprocessing != "source":
            return "preprocessing: statistics fitted on this data (transfer.preprocessing: fit)"
        source_kind, state = read_preprocessing(self.source, self.which)
        if source_kind is None:
            return "preprocessing: statistics fitted on this data (the source holds none)"
        if source_kind != kind:
            raise ValueError(
                f"Expected data.preprocessing.kind {source_kind!r}, as in the source run (or "
                f"transfer.preprocessing: fit). Received: {kind!r}"
            )
        if preprocessor is not None and state is not None:
            preprocessor.load_state_dict(state)
        return f"preprocessing: the source run's {kind} statistics"

    def summary(self) -> str:
        frozen = ", ".join(str(b.index) for b in self.frozen) or "none"
        rates = ", ".join(f"block {g['block']}: {g['lr']:.3g}" for g in self.groups)
        text = f"transfer: strategy {self.strategy} ({self.reason}); frozen blocks: {frozen}; lr {rates}"
        if self.unfreeze_every and self.frozen:
            text += f"; one more block unfrozen every {self.unfreeze_every} epoch(s)"
        return text


def setup_transfer(
    cfg: Any, model: Module, num_train: int, num_classes: int, lr: float, base_dir: Path | None = None
) -> TransferSetup:
    """Apply a recipe's ``transfer`` section to a freshly built model: pick the strategy,
    freeze its blocks and build the optimizer's parameter groups. The weights are loaded
    separately (:meth:`TransferSetup.load_weights`), so a resumed or evaluated run need not
    read the source again.

    Args:
        cfg: the recipe's ``transfer`` section (``source`` set).
        model: the model built for the new task.
        num_train: training examples (for ``data_size: auto``).
        num_classes: classes of the new task.
        lr: the optimizer's learning rate (the head's).
        base_dir: directory a relative ``source`` is looked up in (before the working directory).
    """
    source = Path(cfg.source)
    if (
        not source.is_absolute()
        and base_dir is not None
        and (base_dir / source).exists()
        and not source.exists()
    ):
        source = base_dir / source
    strategy, reason = choose_strategy(
        cfg.strategy, cfg.data_size, cfg.similarity, num_train / max(1, num_classes)
    )
    bl = blocks(model)
    count = frozen_block_count(strategy, len(bl), cfg.top_blocks)
    frozen = bl[:count]
    if frozen:
        freeze(model, up_to=count, bn_eval=cfg.freeze_bn)
    groups = param_groups(model, lr, backbone_lr_mult=cfg.backbone_lr_mult, layer_decay=cfg.layer_decay)
    return TransferSetup(
        source=str(source),
        which=cfg.checkpoint,
        strategy=strategy,
        reason=reason,
        frozen=frozen,
        groups=groups,
        unfreeze_every=cfg.unfreeze_every,
        reset_head=cfg.reset_head,
        strict=cfg.strict,
        preprocessing=cfg.preprocessing,
    )
