"""Convolution layer: ``Conv2d`` (PyTorch's ``torch.nn.Conv2d``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcraft import backend
from gradcraft.autograd.tensor import Tensor
from gradcraft.nn.linear import InitSpec, init_affine
from gradcraft.nn.module import Module, Parameter
from gradcraft.ops.conv import conv2d, pair

__all__ = ["Conv2d"]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Expected a positive integer for {name}. Received: {name}={value!r}")
    return int(value)


class Conv2d(Module):
    """2-D convolution (cross-correlation) over (N, C_in, H, W) inputs.

    y[n, o] = b[o] + Σ_c W[o, c] ⋆ x[n, g·C_in/groups + c] (see :func:`gradcraft.ops.conv.conv2d`),
    y of shape (N, C_out, H_out, W_out) with H_out = ⌊(H + 2p − d(k − 1) − 1)/s⌋ + 1.

    Parameters (PyTorch's names and shapes, so state dicts are interchangeable):
    ``weight`` (out_channels, in_channels / groups, kH, kW), ``bias`` (out_channels,).

    Args:
        in_channels, out_channels: C_in and C_out; both divisible by ``groups``.
        kernel_size: int or (kH, kW).
        stride: int or (s_h, s_w).
        padding: zeros on each side, int or (p_h, p_w); ``"valid"`` (none) or ``"same"``
            (output size = input size; needs stride 1).
        dilation: spacing between kernel taps.
        groups: independent convolutions over channel groups (``in_channels`` = depthwise).
        bias: learn an additive bias per output channel.
        init: weight init. Default (``None``) is PyTorch's: ``kaiming_uniform_(W, a=√5)``,
            i.e. W ~ U(±1/√fan_in), and b ~ U(±1/√fan_in), fan_in = C_in/groups · kH · kW. A
            name (``"kaiming_normal"``, ``"xavier_uniform"``, …) or callable initializes W
            instead, with b = 0 (see :class:`gradcraft.nn.Linear`).
        generator: ``numpy.random.Generator`` for the init (default: the library's).
        dtype: parameter dtype (default float32).

    The output is channels-last in memory (see :mod:`gradcraft.ops.conv`); its values and
    shape are PyTorch's.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        init: InitSpec = None,
        generator: np.random.Generator | None = None,
        dtype: Any = None,
    ) -> None:
        super().__init__()
        self.in_channels = _positive_int("in_channels", in_channels)
        self.out_channels = _positive_int("out_channels", out_channels)
        self.groups = _positive_int("groups", groups)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                "Expected in_channels and out_channels divisible by groups. "
                f"Received: in_channels={in_channels}, out_channels={out_channels}, groups={groups}"
            )
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.dilation = pair(dilation, "dilation")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"Expected padding to be an int, a pair, 'same' or 'valid'. Received: padding={padding!r}"
                )
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"Expected stride=1 with padding='same'. Received: stride={stride!r}")
            self.padding: tuple[int, int] | str = padding
        else:
            self.padding = pair(padding, "padding", minimum=0)
        dt = backend.default_dtype() if dtype is None else np.dtype(dtype)
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        self.weight = Parameter(np.empty(shape, dtype=dt))
        if bias:
            self.bias = Parameter(np.empty((self.out_channels,), dtype=dt))
        else:
            self.register_parameter("bias", None)
        self.init = init
        self.reset_parameters(generator)

    def reset_parameters(self, generator: np.random.Generator | None = None) -> None:
        """Re-draw the weights (and bias) with this layer's ``init`` scheme."""
        init_affine(self.weight, self.bias, self.init, generator)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Expected input of shape (N, {self.in_channels}, H, W) "
                f"({self.in_channels} channels on axis 1). Received: shape={tuple(x.shape)}"
            )
        return conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        parts = [
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}",
            f"stride={self.stride}",
        ]
        if self.padding != (0, 0):
            parts.append(f"padding={self.padding}")
        if self.dilation != (1, 1):
            parts.append(f"dilation={self.dilation}")
        if self.groups != 1:
            parts.append(f"groups={self.groups}")
        if self.bias is None:
            parts.append("bias=False")
        return ", ".join(parts)
