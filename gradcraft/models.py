"""Build a model from a recipe's ``model`` section: a named block or a list of layers.

:func:`build_model` takes the section (a :class:`gradcraft.config.ModelConfig` or a plain dict
with the same keys), the input shape ``(C, H, W)`` and the number of classes, and returns a
:class:`gradcraft.nn.Sequential` whose layers carry PyTorch-like names (``0.weight``,
``3.running_mean``, …). Input sizes are inferred layer by layer, so a recipe only states
output widths.

Named blocks (see :class:`gradcraft.config.ModelConfig` for the knobs):

* ``mlp`` — flatten → [linear → (batch norm) → activation → (dropout)] × widths → linear;
* ``cnn`` — [(conv3×3 → (batch norm) → activation) × convs_per_stage → max-pool 2] × widths →
  flatten → [linear → activation → (dropout)] × hidden → linear;
* ``resnet`` — conv3×3 → batch norm → activation → stages of residual basic blocks (stride 2 at
  each later stage's start) → global average pooling → (dropout) → linear.

Weights of linear and conv layers are initialised by ``init`` (He and orthogonal with the gain
of the chosen activation, Xavier without a gain, the output layer with gain 1; ``default`` keeps
PyTorch's layer defaults); biases start at zero. This module
needs only NumPy: a plain dict works where pydantic is not installed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gradcraft import nn

__all__ = ["ModelBuildError", "build_model"]


class ModelBuildError(ValueError):
    """A model section that cannot be built (names the layer index and the shapes)."""


_DEFAULTS: dict[str, Any] = {
    "block": "mlp",
    "layers": None,
    "widths": [512, 256],
    "hidden": [128],
    "convs_per_stage": 1,
    "blocks_per_stage": 2,
    "activation": "relu",
    "init": "kaiming_normal",
    "norm": "none",
    "dropout": 0.0,
}


def _section(config: Any) -> dict[str, Any]:
    if config is None:
        data: dict[str, Any] = {}
    elif hasattr(config, "model_dump"):
        data = config.model_dump()
    elif isinstance(config, Mapping):
        data = dict(config)
    else:
        raise TypeError(f"Expected a ModelConfig or a dict. Received: {type(config).__name__}")
    unknown = set(data) - set(_DEFAULTS)
    if unknown:
        raise ModelBuildError(f"Unknown model key(s): {sorted(unknown)} (valid: {sorted(_DEFAULTS)})")
    out = dict(_DEFAULTS)
    out.update({k: v for k, v in data.items() if v is not None or k == "layers"})
    return out


def _layer(name: str, *args: Any, **kwargs: Any) -> nn.Module:
    """An ``nn`` layer by class name (looked up in ``gradcraft.nn``, then in the submodule
    that defines it), with a clear error if this gradcraft lacks it."""
    cls = getattr(nn, name, None)
    if cls is None:
        import importlib

        for module in ("conv", "pooling", "residual", "normalization", "dropout", "activation"):
            try:
                cls = getattr(importlib.import_module(f"gradcraft.nn.{module}"), name, None)
            except ImportError:
                continue
            if cls is not None:
                break
    if cls is None:
        raise ModelBuildError(f"gradcraft.nn has no {name} layer, which this model needs")
    return cls(*args, **kwargs)


def _activation(name: str) -> nn.Module:
    classes = {
        "relu": "ReLU",
        "leaky_relu": "LeakyReLU",
        "elu": "ELU",
        "gelu": "GELU",
        "tanh": "Tanh",
        "sigmoid": "Sigmoid",
        "identity": "Identity",
    }
    if name not in classes:
        raise ModelBuildError(f"Unknown activation '{name}' (valid: {', '.join(classes)})")
    return _layer(classes[name])


def _gain_name(activation: str) -> str:
    return {
        "relu": "relu",
        "leaky_relu": "leaky_relu",
        "elu": "relu",
        "gelu": "relu",
        "tanh": "tanh",
        "sigmoid": "sigmoid",
    }.get(activation, "linear")


def _init_weights(model: nn.Module, scheme: str, activation: str) -> None:
    """Apply ``scheme`` to every linear / conv weight (2-D or 4-D) and zero their biases.

    He (``kaiming_*``) and ``orthogonal`` use the gain of the hidden activation; Xavier uses
    Glorot & Bengio's formula as the lectures state it, Var(W) = 2 / (fan_in + fan_out), with no
    gain (so in a deep ReLU net it shrinks activations, which is the lectures' point). The last
    weight layer feeds the loss, not an activation, so it always gets the linear gain (1):
    the initial softmax loss is then close to ln C.
    """
    if scheme == "default":
        return
    init = nn.init
    weighted = [
        m for m in model.modules() if (w := m._parameters.get("weight")) is not None and w.ndim in (2, 4)
    ]
    for k, module in enumerate(weighted):
        weight = module._parameters["weight"]
        gain_name = "linear" if k == len(weighted) - 1 else _gain_name(activation)
        if scheme == "kaiming_normal":
            init.kaiming_normal_(weight, nonlinearity=gain_name)
        elif scheme == "kaiming_uniform":
            init.kaiming_uniform_(weight, nonlinearity=gain_name)
        elif scheme == "xavier_normal":
            init.xavier_normal_(weight)
        elif scheme == "xavier_uniform":
            init.xavier_uniform_(weight)
        elif scheme == "lecun_normal":
            init.lecun_normal_(weight)
        elif scheme == "orthogonal":
            init.orthogonal_(weight, gain=init.calculate_gain(gain_name))
        elif scheme == "small_random":
            init.small_random_(weight)
        else:
            raise ModelBuildError(f"Unknown init '{scheme}'")
        bias = module._parameters.get("bias")
        if bias is not None:
            init.zeros_(bias)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class _Builder:
    """Appends layers while tracking the per-example shape, for input-size inference."""

    def __init__(self, input_shape: Sequence[int]) -> None:
        self.shape = tuple(int(s) for s in input_shape)
        self.layers: list[nn.Module] = []

    def _need(self, rank: int, what: str) -> None:
        if len(self.shape) != rank:
            kind = "(C, H, W) images" if rank == 3 else "flat (F,) features"
            raise ModelBuildError(
                f"layer {len(self.layers)} ({what}) needs {kind}, but its input has shape {self.shape}"
                + ("; add 'flatten' before it" if rank == 1 else "")
            )

    def add(self, module: nn.Module, shape: tuple[int, ...] | None = None) -> None:
        self.layers.append(module)
        if shape is not None:
            if any(s <= 0 for s in shape):
                raise ModelBuildError(
                    f"layer {len(self.layers) - 1} ({type(module).__name__}) would output "
                    f"shape {shape}: the input is too small for it"
                )
            self.shape = shape

    def flatten(self) -> None:
        if len(self.shape) == 1:
            return
        n = 1
        for s in self.shape:
            n *= s
        self.add(nn.Flatten(), (n,))

    def linear(self, out: int, bias: bool = True) -> None:
        if len(self.shape) != 1:
            self.flatten()
        self.add(_layer("Linear", self.shape[0], out, bias=bias), (out,))

    def conv(
        self, out: int, kernel: int = 3, stride: int = 1, padding: int | str = "same", bias: bool = True
    ) -> None:
        self._need(3, "conv2d")
        pad = kernel // 2 if padding == "same" else int(padding)
        c, h, w = self.shape
        self.add(
            _layer("Conv2d", c, out, kernel, stride=stride, padding=pad, bias=bias),
            (out, _conv_out(h, kernel, stride, pad), _conv_out(w, kernel, stride, pad)),
        )

    def pool(self, kind: str, kernel: int = 2, stride: int | None = None) -> None:
        self._need(3, kind)
        s = stride or kernel
        c, h, w = self.shape
        cls = "MaxPool2d" if kind == "maxpool2d" else "AvgPool2d"
        self.add(_layer(cls, kernel, stride=s), (c, _conv_out(h, kernel, s, 0), _conv_out(w, kernel, s, 0)))

    def batchnorm(self) -> None:
        if len(self.shape) == 3:
            self.add(_layer("BatchNorm2d", self.shape[0]))
        elif len(self.shape) == 1:
            self.add(_layer("BatchNorm1d", self.shape[0]))
        else:
            raise ModelBuildError(f"layer {len(self.layers)} (batchnorm) cannot follow shape {self.shape}")

    def residual(self, out: int, stride: int = 1) -> None:
        self._need(3, "residual")
        c, h, w = self.shape
        # the last batch norm of each block starts at γ = 0, so the block starts as the identity
        self.add(
            _layer("BasicBlock", c, out, stride=stride, zero_init_residual=True),
            (out, _conv_out(h, 3, stride, 1), _conv_out(w, 3, stride, 1)),
        )

    def global_avgpool(self) -> None:
        self._need(3, "global_avgpool")
        self.add(_layer("GlobalAvgPool2d"), (self.shape[0],))

    def dropout(self, p: float) -> None:
        if p > 0:
            self.add(_layer("Dropout", p))


def _from_layers(b: _Builder, layers: Sequence[Any]) -> None:
    for i, spec in enumerate(layers):
        item = (
            spec.model_dump()
            if hasattr(spec, "model_dump")
            else ({"type": spec} if isinstance(spec, str) else dict(spec))
        )
        kind = item.get("type")
        try:
            if kind == "linear":
                b.linear(int(item["out_features"]), bool(item.get("bias", True)))
            elif kind == "conv2d":
                b.conv(
                    int(item["out_channels"]),
                    int(item.get("kernel_size", 3)),
                    int(item.get("stride", 1)),
                    item.get("padding", "same"),
                    bool(item.get("bias", True)),
                )
            elif kind in ("maxpool2d", "avgpool2d"):
                b.pool(kind, int(item.get("kernel_size", 2)), item.get("stride"))
            elif kind == "residual":
                b.residual(int(item["out_channels"]), int(item.get("stride", 1)))
            elif kind == "dropout":
                b.dropout(float(item.get("p", 0.5)))
            elif kind == "flatten":
                b.flatten()
            elif kind == "batchnorm":
                b.batchnorm()
            elif kind == "global_avgpool":
                b.global_avgpool()
            elif kind in ("relu", "leaky_relu", "elu", "gelu", "tanh", "sigmoid", "identity"):
                b.add(_activation(kind))
            else:
                raise ModelBuildError(f"model.layers.{i}: unknown layer type {kind!r}")
        except KeyError as err:
            raise ModelBuildError(f"model.layers.{i} ({kind}): missing {err}") from None
        except ModelBuildError as err:
            if str(err).startswith("model.layers"):
                raise
            raise ModelBuildError(f"model.layers.{i} ({kind}): {err}") from None


def build_model(config: Any, input_shape: Sequence[int], num_classes: int) -> nn.Sequential:
    """Build the network described by a recipe's ``model`` section.

    Args:
        config: a :class:`gradcraft.config.ModelConfig` or a dict with its keys.
        input_shape: per-example input shape, ``(C, H, W)`` for images or ``(F,)``.
        num_classes: number of outputs of the last layer.

    Returns:
        A :class:`gradcraft.nn.Sequential` producing ``(N, num_classes)`` logits.

    Raises:
        ModelBuildError: for inconsistent layers (a conv after flatten, a layer list whose
            output is not ``num_classes`` wide, an input too small for the pooling, …).
    """
    cfg = _section(config)
    if num_classes < 1:
        raise ModelBuildError(f"Expected num_classes >= 1. Received: {num_classes}")
    b = _Builder(input_shape)
    act, norm, p = cfg["activation"], cfg["norm"], float(cfg["dropout"])
    if cfg["layers"] is not None:
        if not cfg["layers"]:
            raise ModelBuildError("model.layers is empty")
        _from_layers(b, cfg["layers"])
        if b.shape != (num_classes,):
            raise ModelBuildError(
                f"model.layers ends with shape {b.shape}, but the data has {num_classes} classes; "
                f"end with {{type: linear, out_features: {num_classes}}}"
            )
    elif cfg["block"] == "mlp":
        b.flatten()
        for width in cfg["widths"]:
            b.linear(width, bias=norm == "none")
            if norm == "batchnorm":
                b.batchnorm()
            b.add(_activation(act))
            b.dropout(p)
        b.linear(num_classes)
    elif cfg["block"] == "cnn":
        if len(b.shape) != 3:
            raise ModelBuildError(f"the cnn block needs (C, H, W) inputs; the data has shape {b.shape}")
        for width in cfg["widths"]:
            for _ in range(int(cfg["convs_per_stage"])):
                b.conv(width, 3, 1, "same", bias=norm == "none")
                if norm == "batchnorm":
                    b.batchnorm()
                b.add(_activation(act))
            b.pool("maxpool2d", 2)
        b.flatten()
        for width in cfg["hidden"]:
            b.linear(width, bias=norm == "none")
            if norm == "batchnorm":
                b.batchnorm()
            b.add(_activation(act))
            b.dropout(p)
        b.linear(num_classes)
    elif cfg["block"] == "resnet":
        if len(b.shape) != 3:
            raise ModelBuildError(f"the resnet block needs (C, H, W) inputs; the data has shape {b.shape}")
        widths = list(cfg["widths"])
        b.conv(widths[0], 3, 1, "same", bias=False)
        b.batchnorm()
        b.add(_activation(act))
        for stage, width in enumerate(widths):
            for j in range(int(cfg["blocks_per_stage"])):
                b.residual(width, stride=2 if stage > 0 and j == 0 else 1)
        b.global_avgpool()
        b.dropout(p)
        b.linear(num_classes)
    else:
        raise ModelBuildError(f"Unknown model block {cfg['block']!r} (valid: mlp, cnn, resnet)")
    model = nn.Sequential(*b.layers)
    _init_weights(model, cfg["init"], act)
    return model
