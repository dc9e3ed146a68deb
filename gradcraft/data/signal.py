"""Augmentation of 1-D signals (audio, sensor data): batches of shape ``(N, C, T)``, float.

All transforms are vectorized over the batch with a different random parameter per sample and
keep the length ``T`` (content that moves past the end is cut, gaps are zero):

* :class:`TimeShift` — move by ``s`` samples (circular or zero-filled);
* :class:`TimeStretch` — change speed by ``r`` without changing pitch (WSOLA overlap-add);
* :class:`PitchShift` — change pitch by ``n`` semitones without changing speed: time-stretch
  by ``2^(n/12)``, then resample by the same factor (linear interpolation);
* :class:`BackgroundNoise` — add white noise or clips of recorded noise at a given SNR;
* :class:`DynamicRangeCompression` — a memoryless compressor (threshold, ratio).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradcraft.data.augment import Transform, _range

__all__ = ["BackgroundNoise", "DynamicRangeCompression", "PitchShift", "TimeShift", "TimeStretch",
           "resample", "time_stretch"]


def _signals(x: np.ndarray, name: str) -> None:
    if x.ndim != 3:
        raise ValueError(f"Expected signals of shape (N, C, T) for {name}. Received: shape={x.shape}")


def _read_linear(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``x`` ``(N, C, T)`` read at real positions ``pos`` ``(N, P)`` by linear interpolation
    (zero outside ``[0, T−1]``); returns ``(N, C, P)``."""
    n, c, t = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 2)))
    p = np.clip(pos + 1.0, 0.0, t + 1.0)
    i0 = np.floor(p).astype(np.int64)
    frac = (p - i0).astype(x.dtype)[:, None, :]
    rows = np.arange(n)[:, None, None]
    chans = np.arange(c)[None, :, None]
    a = padded[rows, chans, i0[:, None, :]]
    b = padded[rows, chans, i0[:, None, :] + 1]
    return a + frac * (b - a)


def resample(x: np.ndarray, factor: Any) -> np.ndarray:
    """Read each signal ``n`` at ``t · factor[n]`` (linear interpolation), keeping length ``T``.

    ``factor > 1`` plays faster: duration shrinks by ``factor`` and every frequency is
    multiplied by it (the tail is zero); ``factor < 1`` slows down (the end is cut).
    """
    n, _, t = x.shape
    f = np.broadcast_to(np.asarray(factor, dtype=np.float64), (n,))
    pos = np.arange(t, dtype=np.float64)[None, :] * f[:, None]
    return _read_linear(x, pos)


def time_stretch(x: np.ndarray, rate: Any, frame: int = 256, tolerance: int | None = None) -> np.ndarray:
    """WSOLA time stretch of ``(N, C, T)`` signals by per-sample ``rate`` (``> 1`` faster), pitch kept.

    Output frame ``k`` (length ``L = frame``, hop ``H = L/2``, periodic Hann window, which sums
    to one at 50 % overlap) is cut from the input near ``k · H · rate``, so the output at time
    ``τ`` plays the input near ``τ · rate``. Plain overlap-add of frames taken exactly there
    garbles periodic sounds (the overlapping frames are out of phase); WSOLA (Verhelst & Roelands
    1993) instead moves each frame start by up to ``±tolerance`` samples to the offset whose
    content correlates best with the natural continuation of the previous frame.
    The frames are chosen one after another, each step vectorized over the batch and all
    candidate offsets; ``tolerance=0`` gives plain overlap-add.

    Args:
        x: ``(N, C, T)`` float signals.
        rate: speed factor per sample (scalar or ``(N,)``).
        frame: frame length ``L`` in samples (even).
        tolerance: maximal shift of a frame start; default ``L/4``.

    Returns:
        ``(N, C, T)``: the stretched signal, cut or zero-padded to ``T``.
    """
    n, c, t = x.shape
    frame = max(4, int(frame) // 2 * 2)
    hop = frame // 2
    tol = frame // 4 if tolerance is None else max(0, int(tolerance))
    k = -(-t // hop) + 1
    r = np.broadcast_to(np.asarray(rate, dtype=np.float64), (n,))
    nominal = np.round(np.arange(k)[None, :] * hop * r[:, None]).astype(np.int64) - hop  # (N, K)
    pad = frame + tol
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad + frame + hop)))
    limit = padded.shape[2] - frame
    windows = np.lib.stride_tricks.sliding_window_view(padded, frame, axis=2)  # (N, C, T', L)
    rows = np.arange(n)[:, None]
    deltas = np.arange(-tol, tol + 1)
    starts = np.empty((n, k), dtype=np.int64)
    prev = np.clip(nominal[:, 0] + pad, 0, limit)
    starts[:, 0] = prev
    for j in range(1, k):
        cand = np.clip(nominal[:, j, None] + pad + deltas[None, :], 0, limit)  # (N, D)
        if tol:
            target = windows[rows[:, 0], :, np.clip(prev + hop, 0, limit)]  # (N, C, L)
            segs = windows[rows, :, cand]  # (N, D, C, L)
            score = np.einsum("ndcl,ncl->nd", segs, target)
            best = cand[np.arange(n), np.argmax(score, axis=1)]
        else:
            best = cand[:, 0]
        starts[:, j] = best
        prev = best
    frames = windows[rows, :, starts]  # (N, K, C, L)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame)).astype(x.dtype)
    frames = np.moveaxis(frames, 1, 2) * window  # (N, C, K, L)
    out = np.zeros((n, c, (k + 1) * hop), dtype=x.dtype)
    out[:, :, : k * hop] += frames[..., :hop].reshape(n, c, k * hop)
    out[:, :, hop:(k + 1) * hop] += frames[..., hop:].reshape(n, c, k * hop)
    return out[:, :, hop:hop + t]


class TimeShift(Transform):
    """Shift each signal by ``s ~ U{−max_shift, …, max_shift}`` samples.

    Args:
        max_shift: in samples (int) or as a fraction of ``T`` (float < 1).
        mode: ``"roll"`` (circular) or ``"zero"`` (vacated samples become 0).
    """

    def __init__(self, max_shift: int | float = 0.1, mode: str = "roll",
                 generator: np.random.Generator | None = None) -> None:
        if mode not in ("roll", "zero"):
            raise ValueError(f"Expected mode 'roll' or 'zero'. Received: mode={mode!r}")
        if max_shift < 0:
            raise ValueError(f"Expected max_shift >= 0. Received: max_shift={max_shift!r}")
        self.max_shift = max_shift
        self.mode = mode
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _signals(x, "TimeShift")
        n, c, t = x.shape
        if isinstance(self.max_shift, float) and self.max_shift < 1:
            m = round(self.max_shift * t)
        else:
            m = int(self.max_shift)
        shift = generator.integers(-m, m + 1, size=n)
        src = np.arange(t)[None, :] - shift[:, None]  # out[τ] = x[τ − s]
        valid = (src >= 0) & (src < t)
        out = x[np.arange(n)[:, None, None], np.arange(c)[None, :, None], (src % t)[:, None, :]]
        if self.mode == "zero":
            out = np.where(valid[:, None, :], out, x.dtype.type(0))
        return out


class TimeStretch(Transform):
    """Play each signal ``r ~ U(rate)`` times as fast, keeping its pitch (see :func:`time_stretch`)."""

    def __init__(self, rate: tuple[float, float] = (0.8, 1.25), frame: int = 256,
                 generator: np.random.Generator | None = None) -> None:
        self.rate = _range(rate, "rate", low=1e-3)
        self.frame = int(frame)
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _signals(x, "TimeStretch")
        return time_stretch(x, generator.uniform(*self.rate, size=x.shape[0]), self.frame)


class PitchShift(Transform):
    """Shift pitch by ``n ~ U(semitones)`` semitones (factor ``f = 2^(n/12)``) at constant speed.

    ``time_stretch`` by ``1/f`` (longer, same pitch), then :func:`resample` by ``f`` (back to the
    original speed, every frequency times ``f``).
    """

    def __init__(self, semitones: Any = 2.0, frame: int = 256,
                 generator: np.random.Generator | None = None) -> None:
        self.semitones = _range(semitones, "semitones")
        self.frame = int(frame)
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _signals(x, "PitchShift")
        f = 2.0 ** (generator.uniform(*self.semitones, size=x.shape[0]) / 12.0)
        return resample(time_stretch(x, 1.0 / f, self.frame), f)


class BackgroundNoise(Transform):
    """Add noise at a signal-to-noise ratio ``SNR ~ U(snr_db)`` decibels per sample.

    The noise ``ν`` is white Gaussian, or a random excerpt of a random clip of ``noise``
    (``(M, T_noise)`` or ``(M, C, T_noise)``, ``T_noise ≥ T``), scaled so that
    ``10 log₁₀(P_x / P_ν) = SNR`` with ``P`` the mean square over channels and time.
    """

    def __init__(self, snr_db: tuple[float, float] = (10.0, 30.0), noise: Any = None,
                 generator: np.random.Generator | None = None) -> None:
        self.snr_db = _range(snr_db, "snr_db")
        if noise is not None:
            noise = np.asarray(noise, dtype=np.float64)
            if noise.ndim == 2:
                noise = noise[:, None, :]
            if noise.ndim != 3 or noise.shape[0] == 0:
                raise ValueError(f"Expected noise clips (M, T) or (M, C, T). Received: shape={noise.shape}")
        self.noise = noise
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _signals(x, "BackgroundNoise")
        n, c, t = x.shape
        if self.noise is None:
            nu = generator.standard_normal(size=x.shape)
        else:
            m, nc, tn = self.noise.shape
            if tn < t or nc not in (1, c):
                raise ValueError(f"Expected noise clips of >= {t} samples and 1 or {c} channels. "
                                 f"Received: shape={self.noise.shape}")
            clip = generator.integers(0, m, size=n)
            start = generator.integers(0, tn - t + 1, size=n)
            idx = start[:, None] + np.arange(t)[None, :]
            nu = self.noise[clip[:, None, None], np.arange(nc)[None, :, None], idx[:, None, :]]
            nu = np.broadcast_to(nu, x.shape)
        snr = generator.uniform(*self.snr_db, size=n)
        p_signal = np.mean(np.square(x, dtype=np.float64), axis=(1, 2))
        p_noise = np.maximum(np.mean(np.square(nu), axis=(1, 2)), 1e-30)
        gain = np.sqrt(p_signal / (p_noise * 10.0 ** (snr / 10.0)))
        return (x + (nu * gain[:, None, None]).astype(x.dtype)).astype(x.dtype, copy=False)


class DynamicRangeCompression(Transform):
    """Memoryless compressor: above the threshold, level grows ``1/ratio`` as fast.

    With level ``L = 20 log₁₀ |x|`` (dBFS, full scale 1.0), threshold ``θ ~ U(threshold_db)`` and
    ratio ``ρ ~ U(ratio)`` per sample, the gain is ``−max(L − θ, 0) · (1 − 1/ρ)`` dB; with
    ``makeup`` the result is rescaled so its peak equals the input's.
    """

    def __init__(self, threshold_db: Any = (-30.0, -10.0), ratio: Any = (2.0, 8.0), makeup: bool = False,
                 generator: np.random.Generator | None = None) -> None:
        pair = (tuple, list)
        self.threshold_db = (_range(threshold_db, "threshold_db") if isinstance(threshold_db, pair)
                             else (float(threshold_db),) * 2)
        self.ratio = _range(ratio, "ratio", low=1.0) if isinstance(ratio, pair) else (float(ratio),) * 2
        if self.ratio[0] < 1:
            raise ValueError(f"Expected ratio >= 1. Received: ratio={ratio!r}")
        self.makeup = bool(makeup)
        self.generator = generator

    def apply(self, x: np.ndarray, generator: np.random.Generator) -> np.ndarray:
        _signals(x, "DynamicRangeCompression")
        n = x.shape[0]
        thr = generator.uniform(*self.threshold_db, size=n)[:, None, None]
        rho = generator.uniform(*self.ratio, size=n)[:, None, None]
        level = 20.0 * np.log10(np.maximum(np.abs(x.astype(np.float64)), 1e-12))
        gain_db = -np.maximum(level - thr, 0.0) * (1.0 - 1.0 / rho)
        out = x * 10.0 ** (gain_db / 20.0)
        if self.makeup:
            peak_in = np.abs(x).max(axis=(1, 2), keepdims=True)
            peak_out = np.maximum(np.abs(out).max(axis=(1, 2), keepdims=True), 1e-12)
            out = out * (peak_in / peak_out)
        return out.astype(x.dtype)
