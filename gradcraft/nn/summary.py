"""``summary(model, input_shape)``: a table of layers, output shapes and parameter counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd import grad_mode
from gradcraft.autograd.tensor import Tensor
from gradcraft.nn.module import Module

__all__ = ["LayerRow", "ModelSummary", "summary"]


@dataclass
class LayerRow:
    """One line of the summary: a module, its output shape and its own parameter count."""

    name: str
    type: str
    depth: int
    output_shape: tuple[int, ...] | None
    num_params: int
    trainable: bool


@dataclass
class ModelSummary:
    """The result of :func:`summary`; ``str()`` gives the table.

    Attributes:
        rows: one :class:`LayerRow` per submodule, depth first.
        total_params: every scalar parameter of the model (shared ones once).
        trainable_params: those with ``requires_grad``.
        input_shape, output_shape: of the forward pass that was traced.
    """

    model_name: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...] | None
    rows: list[LayerRow] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0

    def __str__(self) -> str:
        header = ("Layer (type)", "Output shape", "Param #")
        body = []
        for r in self.rows:
            label = "  " * (r.depth - 1) + f"{r.name} ({r.type})"
            shape = "--" if r.output_shape is None else str(tuple(r.output_shape))
            params = f"{r.num_params:,}" if r.num_params else "--"
            body.append((label, shape, params))
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
        width = sum(widths) + 4
        rule = "=" * width

        def fmt(cells: tuple[str, str, str]) -> str:
            return f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  {cells[2]:>{widths[2]}}"

        lines = [f"{self.model_name} — input {tuple(self.input_shape)}", rule, fmt(header), rule]
        lines += [fmt(b) for b in body]
        lines += [
            rule,
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.total_params - self.trainable_params:,}",
            f"Output shape: {'--' if self.output_shape is None else tuple(self.output_shape)}",
            rule,
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)


def _shape_of(out: Any) -> tuple[int, ...] | None:
    if isinstance(out, Tensor):
        return tuple(out.shape)
    if hasattr(out, "shape"):
        return tuple(out.shape)
    if isinstance(out, (tuple, list)) and out:
        return _shape_of(out[0])
    return None


def summary(
    model: Module, input_shape: tuple[int, ...], dtype: Any = None, verbose: bool = True
) -> ModelSummary:
    """Trace one forward pass and tabulate every submodule.

    The model runs once in eval mode under ``no_grad`` (so batch norm statistics and random
    generators are untouched; the previous mode is restored) on N(0, 1) input drawn from a
    private generator.

    Args:
        model: the module to describe.
        input_shape: the full input shape *including* the batch axis, e.g. ``(1, 1, 28, 28)``.
        dtype: input dtype (default :func:`gradcraft.backend.default_dtype`).
        verbose: print the table as well as returning it.

    Returns:
        A :class:`ModelSummary`: rows of (name, type, output shape, the module's *own*
        parameter count — a container's layers are counted on their own rows, so the column
        sums to the total) and the totals.
    """
    if not isinstance(model, Module):
        raise TypeError(f"Expected a Module. Received: type={type(model).__name__}")
    if not isinstance(input_shape, (tuple, list)) or not all(
        isinstance(n, (int, np.integer)) for n in input_shape
    ):
        raise ValueError(
            f"Expected input_shape as a tuple of ints including the batch axis. Received: "
            f"input_shape={input_shape!r}"
        )
    outputs: dict[int, tuple[int, ...] | None] = {}
    handles = []
    named = [(name, m) for name, m in model.named_modules() if name]
    for _, m in named:

        def hook(mod: Module, inputs: tuple, out: Any) -> None:
            outputs.setdefault(id(mod), _shape_of(out))

        handles.append(m.register_forward_hook(hook))
    was_training = model.training
    modes = {id(m): m.training for m in model.modules()}
    dt = backend.default_dtype() if dtype is None else np.dtype(dtype)
    x = Tensor(np.random.default_rng(0).standard_normal(tuple(int(n) for n in input_shape)).astype(dt))
    try:
        model.eval()
        with grad_mode.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
        for m in model.modules():
            object.__setattr__(m, "training", modes[id(m)])
    result = ModelSummary(type(model).__name__, tuple(int(n) for n in input_shape), _shape_of(out))
    for name, m in named:
        own = list(m.parameters(recurse=False))
        result.rows.append(
            LayerRow(
                name=name,
                type=type(m).__name__,
                depth=name.count(".") + 1,
                output_shape=outputs.get(id(m)),
                num_params=int(sum(p.size for p in own)),
                trainable=all(p.requires_grad for p in own),
            )
        )
    result.total_params = model.num_parameters()
    result.trainable_params = model.num_parameters(trainable_only=True)
    if verbose:
        print(result)
    return result
