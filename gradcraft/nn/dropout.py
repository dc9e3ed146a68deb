"""The dropout family as layers; each respects ``module.training`` (see :mod:`gradcraft.ops.dropout`).

Each layer takes an optional ``generator`` (a ``numpy.random.Generator``) and otherwise
draws from the library's seeded generator :func:`gradcraft.backend.generator`.
"""

from __future__ import annotations

import numpy as np

from gradcraft.autograd.tensor import Tensor
from gradcraft.nn.module import Module
from gradcraft.ops import dropout as D

__all__ = ["AlphaDropout", "Dropout", "Dropout2d", "GaussianDropout", "GaussianNoise", "StochasticDepth"]


class _DropoutBase(Module):
    def __init__(self, p: float = 0.5, generator: np.random.Generator | None = None) -> None:
        super().__init__()
        self.p = D._check_p(p)
        self.generator = generator

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Dropout(_DropoutBase):
    """Zero each element with probability ``p`` in training.

    ``mode="inverted"`` (default, PyTorch's): training y = x ⊙ m/(1 − p), eval y = x.
    ``mode="vanilla"`` (the lectures' first version): training y = x ⊙ m, eval
    y = (1 − p)·x — test-time outputs then equal training outputs in expectation too.
    """

    def __init__(
        self, p: float = 0.5, mode: str = "inverted", generator: np.random.Generator | None = None
    ) -> None:
        super().__init__(p, generator)
        if mode not in ("inverted", "vanilla"):
            raise ValueError(f"Expected mode 'inverted' or 'vanilla'. Received: mode={mode!r}")
        self.mode = mode

    def forward(self, x: Tensor) -> Tensor:
        return D.dropout(x, self.p, self.training, self.generator, self.mode)

    def extra_repr(self) -> str:
        return f"p={self.p}" + (f", mode={self.mode!r}" if self.mode != "inverted" else "")


class Dropout2d(Dropout):
    """Zero whole channels of x (N, C, H, W) (or (N, C, L)) with probability ``p`` — one
    draw per (sample, channel); scaling as :class:`Dropout`."""

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim not in (3, 4):
            raise ValueError(f"Expected input (N, C, H, W) or (N, C, L). Received: shape={tuple(x.shape)}")
        return D.dropout2d(x, self.p, self.training, self.generator, self.mode)


class AlphaDropout(_DropoutBase):
    """Alpha dropout for SELU networks: keeps zero mean and unit variance (identity in eval)."""

    def forward(self, x: Tensor) -> Tensor:
        return D.alpha_dropout(x, self.p, self.training, self.generator)


class GaussianDropout(_DropoutBase):
    """Multiply by ε ~ N(1, p/(1 − p)) in training (identity in eval)."""

    def __init__(self, p: float = 0.5, generator: np.random.Generator | None = None) -> None:
        super().__init__(p, generator)
        if self.p >= 1:
            raise ValueError(f"Expected p in [0, 1) for Gaussian dropout. Received: p={p!r}")

    def forward(self, x: Tensor) -> Tensor:
        return D.gaussian_dropout(x, self.p, self.training, self.generator)


class GaussianNoise(Module):
    """Add N(0, std²) noise in training (identity in eval)."""

    def __init__(self, std: float = 0.1, generator: np.random.Generator | None = None) -> None:
        super().__init__()
        if isinstance(std, bool) or not isinstance(std, (int, float)) or std < 0:
            raise ValueError(f"Expected a standard deviation std >= 0. Received: std={std!r}")
        self.std = float(std)
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        return D.gaussian_noise(x, self.std, self.training, self.generator)

    def extra_repr(self) -> str:
        return f"std={self.std}"


class StochasticDepth(_DropoutBase):
    """Randomly drop a residual branch (Huang et al., 2016): ``x + sd(branch(x))``.

    Args:
        p: probability of dropping the branch.
        mode: ``"row"`` drops per sample (torchvision's), ``"batch"`` the whole batch at once.
        scaling: ``"inverted"`` (default, torchvision's): kept branches ×1/(1 − p) in
            training, identity in eval. ``"original"`` (the paper's): unscaled in training,
            ×(1 − p) in eval.
    """

    def __init__(
        self,
        p: float,
        mode: str = "row",
        scaling: str = "inverted",
        generator: np.random.Generator | None = None,
    ) -> None:
        super().__init__(p, generator)
        if mode not in ("row", "batch"):
            raise ValueError(f"Expected mode 'row' or 'batch'. Received: mode={mode!r}")
        if scaling not in ("inverted", "original"):
            raise ValueError(f"Expected scaling 'inverted' or 'original'. Received: scaling={scaling!r}")
        self.mode = mode
        self.scaling = scaling

    def forward(self, x: Tensor) -> Tensor:
        return D.stochastic_depth(x, self.p, self.mode, self.training, self.generator, self.scaling)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode!r}, scaling={self.scaling!r}"
