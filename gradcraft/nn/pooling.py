"""Pooling layers over (N, C, H, W): max, average, adaptive average, global average and
fractional max pooling (thin modules over :mod:`gradcraft.ops.pooling`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradcraft.autograd.tensor import Tensor
from gradcraft.nn.module import Module
from gradcraft.ops.conv import pair
from gradcraft.ops.pooling import (
    adaptive_avg_pool2d,
    avg_pool2d,
    fractional_max_pool2d,
    global_avg_pool2d,
    max_pool2d,
)

__all__ = ["AdaptiveAvgPool2d", "AvgPool2d", "FractionalMaxPool2d", "GlobalAvgPool2d", "MaxPool2d"]

IntPair = tuple[int, int]


def _check_4d(layer: str, x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"{layer} expected input of shape (N, C, H, W). Received: shape={tuple(x.shape)}")


class MaxPool2d(Module):
    """Max over k_h×k_w windows: (N, C, H, W) → (N, C, H_out, W_out), as ``torch.nn.MaxPool2d``.

    H_out = ⌊(H + 2p − d(k − 1) − 1)/s⌋ + 1 (⌈·⌉ with ``ceil_mode``). The gradient of each
    window goes to its first maximum, as PyTorch.

    Args:
        kernel_size: window size.
        stride: window step (default: ``kernel_size``).
        padding: −∞ padding on each side (at most half the dilated kernel).
        dilation: spacing between window elements.
        ceil_mode: round the output size up.
    """

    def __init__(
        self,
        kernel_size: int | IntPair,
        stride: int | IntPair | None = None,
        padding: int | IntPair = 0,
        dilation: int | IntPair = 1,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding", minimum=0)
        self.dilation = pair(dilation, "dilation")
        self.ceil_mode = bool(ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        _check_4d("MaxPool2d", x)
        return max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(Module):
    """Mean over k_h×k_w windows: (N, C, H, W) → (N, C, H_out, W_out), as ``torch.nn.AvgPool2d``.

    Args:
        kernel_size, stride, padding, ceil_mode: as :class:`MaxPool2d` (zero padding, no dilation).
        count_include_pad: divide by the window size including padding (default, as PyTorch)
            or by the number of input elements in the window.
        divisor_override: divide each window sum by this instead.
    """

    def __init__(
        self,
        kernel_size: int | IntPair,
        stride: int | IntPair | None = None,
        padding: int | IntPair = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self.padding = pair(padding, "padding", minimum=0)
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = divisor_override

    def forward(self, x: Tensor) -> Tensor:
        _check_4d("AvgPool2d", x)
        return avg_pool2d(
            x,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"ceil_mode={self.ceil_mode}, count_include_pad={self.count_include_pad}"
        )


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed (H_out, W_out), whatever the input size, as
    ``torch.nn.AdaptiveAvgPool2d``: cell (i, j) averages rows ⌊iH/H_out⌋ … ⌈(i+1)H/H_out⌉ − 1
    and the columns likewise. ``None`` in ``output_size`` keeps that input size."""

    def __init__(self, output_size: int | Sequence[int | None]) -> None:
        super().__init__()
        if isinstance(output_size, (tuple, list)):
            if len(output_size) != 2 or any(
                o is not None and (isinstance(o, bool) or not isinstance(o, (int, np.integer)) or o < 1)
                for o in output_size
            ):
                raise ValueError(
                    f"Expected output_size to be a positive int or a pair of positive ints or None. "
                    f"Received: output_size={output_size!r}"
                )
            self.output_size: Any = tuple(output_size)
        else:
            self.output_size = pair(output_size, "output_size")

    def forward(self, x: Tensor) -> Tensor:
        _check_4d("AdaptiveAvgPool2d", x)
        return adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class GlobalAvgPool2d(Module):
    """Mean over the whole spatial extent: (N, C, H, W) → (N, C) (or (N, C, 1, 1) with
    ``keepdim=True``). Same as ``AdaptiveAvgPool2d(1)`` followed by ``Flatten()``; the usual
    head of a ResNet before the classifier."""

    def __init__(self, keepdim: bool = False) -> None:
        super().__init__()
        self.keepdim = bool(keepdim)

    def forward(self, x: Tensor) -> Tensor:
        _check_4d("GlobalAvgPool2d", x)
        return global_avg_pool2d(x, self.keepdim)

    def extra_repr(self) -> str:
        return f"keepdim={self.keepdim}"


class FractionalMaxPool2d(Module):
    """Fractional max pooling (Graham, "Fractional Max-Pooling", 2014).

    Reduces the spatial size by a non-integer factor (e.g. ``output_ratio=1/√2``, so twice as
    many pooling layers fit in a network): each output is the max of a k×k window whose
    start positions follow a pseudo-random sequence with steps ⌊α⌋ or ⌈α⌉, α = the
    reduction factor (see :func:`gradcraft.ops.pooling.fractional_pool_starts`); every (n, c)
    plane draws its own sequence.

    Training: a fresh draw from ``generator`` on every call (the randomness regularizes, like
    dropout). Evaluation: the output is the average of the outputs over ``samples_at_test``
    draws. Graham averages the *network's predictions* over repeated test passes (a cheap
    ensemble, "model averaging"); averaging inside the layer is a cheaper approximation of
    that. ``samples_at_test=1`` (default) keeps PyTorch's behaviour: one random draw in both
    modes.

    Args:
        kernel_size: window size (2 in the paper's overlapping variant).
        output_size: (H_out, W_out); or ``output_ratio`` in (0, 1): H_out = ⌊H·ratio⌋.
        samples_at_test: number of draws averaged in eval mode.
        generator: ``numpy.random.Generator`` for the draws (default: the library's).
    """

    def __init__(
        self,
        kernel_size: int | IntPair,
        output_size: int | IntPair | None = None,
        output_ratio: float | tuple[float, float] | None = None,
        samples_at_test: int = 1,
        generator: np.random.Generator | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        if (output_size is None) == (output_ratio is None):
            raise ValueError(
                "Expected exactly one of output_size and output_ratio. "
                f"Received: output_size={output_size!r}, output_ratio={output_ratio!r}"
            )
        self.output_size = None if output_size is None else pair(output_size, "output_size")
        if output_ratio is not None:
            ratio = output_ratio if isinstance(output_ratio, (tuple, list)) else (output_ratio, output_ratio)
            if len(ratio) != 2 or not all(0 < float(r) < 1 for r in ratio):
                raise ValueError(f"Expected output_ratio in (0, 1). Received: output_ratio={output_ratio!r}")
            self.output_ratio: tuple[float, float] | None = (float(ratio[0]), float(ratio[1]))
        else:
            self.output_ratio = None
        if isinstance(samples_at_test, bool) or not isinstance(samples_at_test, int) or samples_at_test < 1:
            raise ValueError(
                f"Expected a positive int samples_at_test. Received: samples_at_test={samples_at_test!r}"
            )
        self.samples_at_test = samples_at_test
        self.generator = generator

    def _once(self, x: Tensor) -> Tensor:
        return fractional_max_pool2d(
            x, self.kernel_size, self.output_size, self.output_ratio, generator=self.generator
        )

    def forward(self, x: Tensor) -> Tensor:
        _check_4d("FractionalMaxPool2d", x)
        if self.training or self.samples_at_test == 1:
            return self._once(x)
        total = self._once(x)
        for _ in range(self.samples_at_test - 1):
            total = total + self._once(x)
        return total * (1.0 / self.samples_at_test)

    def extra_repr(self) -> str:
        size = f"output_size={self.output_size}" if self.output_size else f"output_ratio={self.output_ratio}"
        return f"kernel_size={self.kernel_size}, {size}, samples_at_test={self.samples_at_test}"
