"""Residual block: ``BasicBlock`` (He et al., "Deep Residual Learning", 2016), torchvision's
layout and parameter names, with zero-init of the residual branch and stochastic depth."""

from __future__ import annotations

import numpy as np

from gradcraft.autograd.tensor import Tensor
from gradcraft.nn.activation import ReLU
from gradcraft.nn.containers import Sequential
from gradcraft.nn.conv import Conv2d
from gradcraft.nn.dropout import StochasticDepth
from gradcraft.nn.fusion import fused_call
from gradcraft.nn.module import Module
from gradcraft.nn.normalization import BatchNorm2d
from gradcraft.ops.activation import add_relu

__all__ = ["BasicBlock"]


class BasicBlock(Module):
    """The two-layer ResNet block: y = ReLU(F(x) + shortcut(x)), with

        F(x) = BN(conv3×3(ReLU(BN(conv3×3_stride(x)))))
        shortcut(x) = x                       when the shape is unchanged,
                    = BN(conv1×1_stride(x))   otherwise (projection, "option B").

    Shapes: x (N, in_channels, H, W) → y (N, out_channels, ⌈H/stride⌉, ⌈W/stride⌉). The
    convolutions have no bias (batch norm's β takes its place). Parameter names follow
    torchvision's ``BasicBlock`` (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample.0``,
    ``downsample.1``), so its weights load directly.

    Args:
        in_channels, out_channels: channels of x and y.
        stride: stride of the first convolution (and of the projection); 2 halves H and W.
        zero_init_residual: start the last batch norm's γ at 0 (Goyal et al., 2017). Then
            F(x) = 0 at initialization, the block is the identity on its (non-negative)
            input, and Var(x + F(x)) = Var(x): a deep stack of blocks starts as a shallow
            network, and the signal's variance does not grow with depth.
        stochastic_depth: probability p of dropping the residual branch F for each sample in
            training (Huang et al., 2016; torchvision's "row" mode): y = ReLU(m·F(x)/(1 − p) +
            shortcut(x)) with m ~ Bernoulli(1 − p) per sample; evaluation uses F(x) unscaled.
        generator: ``numpy.random.Generator`` for the weight init and the stochastic-depth
            draws (default: the library's).
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        zero_init_residual: bool = False,
        stochastic_depth: float = 0.0,
        generator: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= stochastic_depth < 1.0:
            raise ValueError(
                f"Expected stochastic_depth in [0, 1). Received: stochastic_depth={stochastic_depth!r}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.conv1 = Conv2d(
            in_channels, out_channels, 3, stride=stride, padding=1, bias=False, generator=generator
        )
        self.bn1 = BatchNorm2d(out_channels)
        self.relu = ReLU()
        self.conv2 = Conv2d(
            out_channels, out_channels, 3, stride=1, padding=1, bias=False, generator=generator
        )
        self.bn2 = BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.downsample: Module | None = Sequential(
                Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, generator=generator),
                BatchNorm2d(out_channels),
            )
        else:
            self.downsample = None
        self.drop_path = None
        if stochastic_depth > 0:
            self.drop_path = StochasticDepth(stochastic_depth, mode="row", generator=generator)
        self.zero_init_residual = zero_init_residual
        if zero_init_residual:
            self.bn2.weight.data[...] = 0

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Expected input of shape (N, {self.in_channels}, H, W) "
                f"({self.in_channels} channels on axis 1). Received: shape={tuple(x.shape)}"
            )
        out = self.conv1(x)
        fused = fused_call(self.bn1, self.relu)  # ReLU(BN(·)) as one Function unless hooked
        out = fused(self.bn1, out) if fused is not None else self.relu(self.bn1(out))
        out = self.bn2(self.conv2(out))
        if self.drop_path is not None:
            out = self.drop_path(out)
        identity = x if self.downsample is None else self.downsample(x)
        return add_relu(out, identity)

    def extra_repr(self) -> str:
        extra = f"{self.in_channels}, {self.out_channels}, stride={self.stride}"
        if self.zero_init_residual:
            extra += ", zero_init_residual=True"
        if self.drop_path is not None:
            extra += f", stochastic_depth={self.drop_path.p}"
        return extra
