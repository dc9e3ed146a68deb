"""Preprocessing fitted on the training split only, and serialisable for checkpoints.

Each preprocessor learns its statistics with ``fit(x_train)`` and then maps any split with
``transform(x)`` (or by being called). Integer images are converted exactly as the
:class:`~gradcraft.data.DataLoader` converts them (``uint8 / 255``), so statistics fitted on
``dataset.x`` apply to loader batches. Statistics are accumulated in float64 over chunks, so
fitting 60 000 images does not need a float64 copy of the dataset.

=======================  ==================================================  ==================
class                    ``transform(x)``                                    used by
=======================  ==================================================  ==================
``MeanImage``            ``x − μ``, μ the mean image ``(C, H, W)``           AlexNet
``ChannelMean``          ``x − μ_c``, one mean per channel                   VGG
``Standardize``          ``(x − μ_c) / σ_c`` per channel                     ResNet
``PCA``                  ``(x − μ) U_k`` (``/ √(λ_k + ε)`` when whitening)   dimensionality red.
``ZCA``                  ``(x − μ) U diag(1/√(λ + ε)) Uᵀ``, shape kept      whitening
=======================  ==================================================  ==================

with ``Σ = (1/N) Σ_n (x_n − μ)(x_n − μ)ᵀ = U diag(λ) Uᵀ`` (eigenvalues in decreasing order).

Serialisation: ``get_config()`` is JSON, ``state_dict()`` a dict of arrays;
``save(path)`` writes both into one ``.npz`` (no pickle) and :func:`load_preprocessor` reads it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from gradcraft.data.errors import DatasetError
from gradcraft.data.loader import to_float

__all__ = [
    "ChannelMean",
    "MeanImage",
    "PCA",
    "Preprocessor",
    "Standardize",
    "ZCA",
    "load_preprocessor",
]

_CHUNK = 4096
_REGISTRY: dict[str, type[Preprocessor]] = {}


def _chunks(x: Any, chunk: int = _CHUNK) -> Iterator[np.ndarray]:
    """float64 slices of ``x`` (uint8 scaled by 1/255, as in the loader)."""
    for start in range(0, x.shape[0], chunk):
        yield to_float(x[start:start + chunk], np.float64)


def _check_batch(x: Any, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(
            f"Expected a batch of shape (N, …) with N >= 1 for {what}. Received: shape={x.shape}")
    return x


class Preprocessor:
    """Base class: ``fit`` on training data, then ``transform`` (or call) any split."""

    _arrays: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def fit(self, x: Any) -> Preprocessor:
        raise NotImplementedError

    def transform(self, x: Any) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: Any) -> np.ndarray:
        return self.transform(x)

    def fit_transform(self, x: Any) -> np.ndarray:
        return self.fit(x).transform(x)

    @property
    def fitted(self) -> bool:
        return all(getattr(self, name, None) is not None for name in self._arrays)

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(x_train) first")

    def _input(self, x: Any) -> np.ndarray:
        self._require_fitted()
        x = np.asarray(x)
        return to_float(x) if x.dtype.kind != "f" else x

    # ------------------------------------------------------------------ serialisation
    def get_config(self) -> dict:
        """The constructor arguments as JSON types (with ``"type"``, the class name)."""
        return {"type": type(self).__name__}

    def state_dict(self) -> dict[str, np.ndarray]:
        """The fitted statistics as arrays."""
        self._require_fitted()
        return {name: np.asarray(getattr(self, name)) for name in self._arrays}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [n for n in self._arrays if n not in state]
        if missing:
            raise ValueError(
                f"Expected arrays {list(self._arrays)} in the state. Received: missing {missing}")
        for name in self._arrays:
            setattr(self, name, np.asarray(state[name], dtype=np.float64))

    def save(self, path: str | os.PathLike) -> None:
        """Write config (JSON) and statistics to one ``.npz`` file (readable without pickle)."""
        config = np.frombuffer(json.dumps(self.get_config()).encode(), dtype=np.uint8)
        np.savez(path, __config__=config, **self.state_dict())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "type")
        return f"{type(self).__name__}({args})"


def load_preprocessor(path: str | os.PathLike) -> Preprocessor:
    """Read a preprocessor written by :meth:`Preprocessor.save`.

    Raises:
        DatasetError: the file is unreadable or does not describe a known preprocessor.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            config = json.loads(npz["__config__"].tobytes().decode())
            arrays = {k: npz[k] for k in npz.files if k != "__config__"}
    except (OSError, ValueError, KeyError, UnicodeDecodeError, EOFError) as exc:
        raise DatasetError(f"Expected a saved preprocessor (.npz) in '{path}'. Received: {exc}") from exc
    return from_config(config, arrays)


def from_config(config: dict, arrays: dict[str, Any]) -> Preprocessor:
    """Rebuild a preprocessor from ``get_config()`` and ``state_dict()``."""
    config = dict(config)
    cls = _REGISTRY.get(str(config.pop("type", "")))
    if cls is None:
        raise DatasetError(f"Expected a preprocessor type in {sorted(_REGISTRY)}. Received: config={config}")
    obj = cls(**config)
    obj.load_state_dict(arrays)
    return obj


def _channel_axes(ndim: int) -> tuple[int, ...]:
    """Axes averaged over for per-channel statistics of ``(N, C, …)`` (all but axis 1)."""
    return (0, *range(2, ndim))


def _expand(stat: np.ndarray, ndim: int) -> np.ndarray:
    return stat.reshape((1, -1) + (1,) * (ndim - 2))


class MeanImage(Preprocessor):
    """Subtract the mean training image (AlexNet): ``x − μ`` with ``μ = mean_n x_n``, shape ``(C, H, W)``."""

    _arrays = ("mean",)

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None

    def fit(self, x: Any) -> MeanImage:
        x = _check_batch(x, "MeanImage.fit")
        total = np.zeros(x.shape[1:], dtype=np.float64)
        for c in _chunks(x):
            total += c.sum(axis=0)
        self.mean = total / x.shape[0]
        return self

    def transform(self, x: Any) -> np.ndarray:
        x = self._input(x)
        return (x - self.mean.astype(x.dtype)).astype(x.dtype, copy=False)

    def inverse_transform(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        return x + self.mean.astype(x.dtype)


class ChannelMean(Preprocessor):
    """Subtract one mean per channel (VGG): ``x − μ_c`` with ``μ_c`` over samples and positions."""

    _arrays = ("mean",)

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None

    def fit(self, x: Any) -> ChannelMean:
        x = _check_batch(x, "ChannelMean.fit")
        axes = _channel_axes(x.ndim)
        total = np.zeros(x.shape[1], dtype=np.float64)
        for c in _chunks(x):
            total += c.sum(axis=axes)
        self.mean = total / (x.size / x.shape[1])
        return self

    def transform(self, x: Any) -> np.ndarray:
        x = self._input(x)
        return x - _expand(self.mean, x.ndim).astype(x.dtype)

    def inverse_transform(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        return x + _expand(self.mean, x.ndim).astype(x.dtype)


class Standardize(Preprocessor):
    """Per-channel standardization (ResNet): ``(x − μ_c) / max(σ_c, ε)``.

    ``μ_c`` and ``σ_c`` (population std) are over samples and positions of channel ``c``; the
    output has zero mean and unit std per channel on the training data.

    Args:
        mean, std: fixed statistics (e.g. published ImageNet ones) instead of fitting.
        eps: floor on ``σ_c`` so constant channels do not divide by zero.
    """

    _arrays = ("mean", "std")

    def __init__(self, mean: Any = None, std: Any = None, eps: float = 1e-8) -> None:
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64).reshape(-1)
        self.std = None if std is None else np.asarray(std, dtype=np.float64).reshape(-1)
        self.eps = float(eps)

    def fit(self, x: Any) -> Standardize:
        x = _check_batch(x, "Standardize.fit")
        axes = _channel_axes(x.ndim)
        count = x.size / x.shape[1]
        total = np.zeros(x.shape[1], dtype=np.float64)
        for c in _chunks(x):
            total += c.sum(axis=axes)
        mean = total / count
        sq = np.zeros_like(mean)
        for c in _chunks(x):
            sq += ((c - _expand(mean, c.ndim)) ** 2).sum(axis=axes)
        self.mean, self.std = mean, np.sqrt(sq / count)
        return self

    def transform(self, x: Any) -> np.ndarray:
        x = self._input(x)
        mean = _expand(self.mean, x.ndim).astype(x.dtype)
        scale = _expand(1.0 / np.maximum(self.std, self.eps), x.ndim).astype(x.dtype)
        return (x - mean) * scale

    def inverse_transform(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        return x * _expand(np.maximum(self.std, self.eps), x.ndim).astype(x.dtype) + _expand(
            self.mean, x.ndim).astype(x.dtype)

    def get_config(self) -> dict:
        return {"type": "Standardize", "eps": self.eps}


def _fit_covariance(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean ``μ`` (D,), eigenvalues ``λ`` (D, decreasing) and eigenvectors ``U`` (D, D) of the covariance."""
    n = x.shape[0]
    d = int(np.prod(x.shape[1:]))
    total = np.zeros(d, dtype=np.float64)
    for c in _chunks(x):
        total += c.reshape(c.shape[0], d).sum(axis=0)
    mean = total / n
    cov = np.zeros((d, d), dtype=np.float64)
    for c in _chunks(x):
        z = c.reshape(c.shape[0], d) - mean
        cov += z.T @ z
    cov /= n
    eigvals, eigvecs = np.linalg.eigh(cov)
    order = np.argsort(eigvals)[::-1]
    return mean, np.clip(eigvals[order], 0.0, None), eigvecs[:, order]


class PCA(Preprocessor):
    """Principal component analysis: project onto the top-``k`` eigenvectors of the covariance.

    ``transform(x) = (x − μ) U_k`` of shape ``(N, k)``; with ``whiten=True`` each component is
    divided by ``√(λ_i + ε)`` so the output covariance is ≈ I (PCA whitening).
    ``inverse_transform`` maps back to the input shape (the best rank-``k`` reconstruction).

    Args:
        n_components: ``k`` as an int, or a float in (0, 1] to keep the fewest components whose
            eigenvalues explain that fraction of the variance; ``None`` keeps all ``D``.
        whiten: divide by ``√(λ + ε)``.
        eps: the ε of whitening (regularises tiny eigenvalues).
    """

    _arrays = ("mean", "eigenvalues", "components")

    def __init__(self, n_components: int | float | None = None, whiten: bool = False,
                 eps: float = 1e-5) -> None:
        if n_components is not None and (n_components <= 0 or (isinstance(n_components, float)
                                                                and n_components > 1)):
            raise ValueError(f"Expected n_components > 0 (an int) or in (0, 1] (a fraction). "
                             f"Received: n_components={n_components!r}")
        self.n_components = n_components
        self.whiten = bool(whiten)
        self.eps = float(eps)
        self.mean: np.ndarray | None = None
        self.eigenvalues: np.ndarray | None = None
        self.components: np.ndarray | None = None
        self.input_shape: tuple[int, ...] | None = None
        self.explained_variance_ratio: np.ndarray | None = None

    def fit(self, x: Any) -> PCA:
        x = _check_batch(x, "PCA.fit")
        mean, lam, vecs = _fit_covariance(x)
        k = lam.size
        if isinstance(self.n_components, float):
            ratio = np.cumsum(lam) / max(lam.sum(), 1e-300)
            k = int(np.searchsorted(ratio, self.n_components - 1e-12) + 1)
        elif self.n_components is not None:
            k = int(self.n_components)
        if k > lam.size:
            raise ValueError(f"Expected n_components <= {lam.size} (the dimension). Received: {k}")
        self.mean, self.eigenvalues, self.components = mean, lam[:k], vecs[:, :k]
        self.input_shape = tuple(x.shape[1:])
        self.explained_variance_ratio = lam[:k] / max(lam.sum(), 1e-300)
        return self

    def transform(self, x: Any) -> np.ndarray:
        x = self._input(x)
        z = (x.reshape(x.shape[0], -1) - self.mean.astype(x.dtype)) @ self.components.astype(x.dtype)
        if self.whiten:
            z = z / np.sqrt(self.eigenvalues + self.eps).astype(x.dtype)
        return z

    def inverse_transform(self, z: Any) -> np.ndarray:
        self._require_fitted()
        z = np.asarray(z)
        if self.whiten:
            z = z * np.sqrt(self.eigenvalues + self.eps).astype(z.dtype)
        x = z @ self.components.T.astype(z.dtype) + self.mean.astype(z.dtype)
        return x.reshape((z.shape[0], *self.input_shape)) if self.input_shape else x

    def get_config(self) -> dict:
        return {"type": "PCA", "n_components": self.n_components, "whiten": self.whiten, "eps": self.eps}

    def state_dict(self) -> dict[str, np.ndarray]:
        state = super().state_dict()
        state["input_shape"] = np.asarray(self.input_shape, dtype=np.int64)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "input_shape" in state:
            self.input_shape = tuple(int(s) for s in np.asarray(state["input_shape"]).reshape(-1))


class ZCA(Preprocessor):
    """ZCA whitening: ``(x − μ) W`` with ``W = U diag(1/√(λ + ε)) Uᵀ``; the output keeps ``x``'s shape.

    Of all whitening transforms, ZCA's output stays closest to the input (Bell & Sejnowski 1997),
    so whitened images still look like images, with edges enhanced. With ``ε → 0`` the output
    covariance on the training data is exactly I; a larger ε (e.g. 0.1 for [0, 1] pixels)
    damps the amplification of the noisy low-variance directions.
    """

    _arrays = ("mean", "whitening")

    def __init__(self, eps: float = 1e-2) -> None:
        if eps < 0:
            raise ValueError(f"Expected eps >= 0. Received: eps={eps}")
        self.eps = float(eps)
        self.mean: np.ndarray | None = None
        self.whitening: np.ndarray | None = None

    def fit(self, x: Any) -> ZCA:
        x = _check_batch(x, "ZCA.fit")
        mean, lam, vecs = _fit_covariance(x)
        self.mean = mean
        self.whitening = (vecs / np.sqrt(lam + self.eps)) @ vecs.T
        return self

    def transform(self, x: Any) -> np.ndarray:
        x = self._input(x)
        z = (x.reshape(x.shape[0], -1) - self.mean.astype(x.dtype)) @ self.whitening.astype(x.dtype)
        return z.reshape(x.shape)

    def get_config(self) -> dict:
        return {"type": "ZCA", "eps": self.eps}
