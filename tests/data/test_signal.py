"""1-D signal augmentation: shifts, stretches and pitch changes measured by their spectra."""

from __future__ import annotations

import numpy as np
import pytest

from gradcraft.data import signal as S

RATE = 8000


def _tone(freq: float = 440.0, n: int = 3, t: int = 4000) -> np.ndarray:
    time = np.arange(t) / RATE
    return np.sin(2 * np.pi * freq * time)[None, None, :].repeat(n, 0).astype(np.float32)


def _peak(x: np.ndarray, start: int = 256, length: int = 2048) -> float:
    seg = x[start:start + length] * np.hanning(length)
    spectrum = np.abs(np.fft.rfft(seg, 8 * length))
    return float(np.argmax(spectrum) * RATE / (8 * length))


def _g(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_time_shift_rolls_or_zero_fills_by_the_drawn_amount():
    x = np.random.default_rng(0).standard_normal((20, 2, 50)).astype(np.float32)
    out = S.TimeShift(5, "roll")(x, generator=_g())
    shifts = [next(s for s in range(-5, 6) if np.array_equal(np.roll(xi, s, axis=-1), o)) for xi, o in zip(x, out)]
    assert len(set(shifts)) > 3
    zero = S.TimeShift(5, "zero")(x, generator=_g())
    for xi, o, s in zip(x, zero, shifts):
        rolled = np.roll(xi, s, axis=-1)
        if s > 0:
            assert np.all(o[:, :s] == 0) and np.array_equal(o[:, s:], rolled[:, s:])
        elif s < 0:
            assert np.all(o[:, s:] == 0) and np.array_equal(o[:, :s], rolled[:, :s])


def test_time_stretch_keeps_pitch_and_changes_speed():
    x = _tone()
    out = S.time_stretch(x, np.array([1.0, 0.8, 1.25]))
    np.testing.assert_allclose(out[0, 0, 200:3800], x[0, 0, 200:3800], atol=1e-5)
    for i in range(3):
        assert _peak(out[i, 0]) == pytest.approx(440.0, abs=4.0)
    burst = np.zeros((2, 1, 4000), np.float32)
    burst[:, :, 1000:1400] = _tone(1000, 1, 400)[0]
    fast = S.time_stretch(burst, np.array([1.0, 2.0]))
    energy_at = [np.argmax(np.convolve(f[0] ** 2, np.ones(200), "same")) for f in fast]
    assert abs(energy_at[0] - 1200) < 60 and abs(energy_at[1] - 600) < 60  # twice as fast: at half the time


@pytest.mark.parametrize("semitones", [-12.0, -3.0, 4.0, 12.0])
def test_pitch_shift_moves_the_frequency_by_the_semitone_factor(semitones):
    out = S.PitchShift((semitones, semitones))(_tone(), generator=_g())
    expected = 440.0 * 2 ** (semitones / 12)
    assert _peak(out[0, 0]) == pytest.approx(expected, rel=0.01)
    assert out.shape == (3, 1, 4000)


def test_resample_changes_frequency_and_duration():
    out = S.resample(_tone(), 2.0)
    assert _peak(out[0, 0], 0, 1024) == pytest.approx(880.0, abs=8)
    assert np.all(out[0, 0, 2001:] == 0)


def test_background_noise_reaches_the_requested_snr():
    x = _tone(n=50)
    out = S.BackgroundNoise((5.0, 25.0))(x, generator=_g())
    noise = out - x
    snr = 10 * np.log10((x ** 2).mean(axis=(1, 2)) / (noise ** 2).mean(axis=(1, 2)))
    assert snr.min() >= 5.0 - 1e-3 and snr.max() <= 25.0 + 1e-3 and snr.std() > 3
    bank = np.random.default_rng(1).standard_normal((3, 6000))
    out = S.BackgroundNoise((10.0, 10.0), noise=bank)(x, generator=_g())
    snr = 10 * np.log10((x ** 2).mean(axis=(1, 2)) / ((out - x) ** 2).mean(axis=(1, 2)))
    np.testing.assert_allclose(snr, 10.0, atol=1e-3)
    with pytest.raises(ValueError, match="noise clips"):
        S.BackgroundNoise(noise=np.zeros((2, 100)))(x)


def test_compressor_leaves_quiet_samples_and_reduces_loud_ones():
    x = np.array([[[0.01, -0.05, 0.5, -1.0]]], np.float32)
    out = S.DynamicRangeCompression(threshold_db=-20.0, ratio=4.0)(x, generator=_g())
    np.testing.assert_allclose(out[0, 0, :2], x[0, 0, :2])
    # 0.5 is 13.98 dB over -20 dBFS; with ratio 4 the excess shrinks to a quarter
    level = 20 * np.log10(abs(out[0, 0, 2]))
    assert level == pytest.approx(-20 + (20 * np.log10(0.5) + 20) / 4, abs=1e-3)
    assert np.sign(out[0, 0, 3]) == -1
    loud = S.DynamicRangeCompression(-20.0, 4.0, makeup=True)(x)
    assert np.abs(loud).max() == pytest.approx(1.0)


def test_signal_transforms_need_three_axes():
    with pytest.raises(ValueError, match="N, C, T"):
        S.TimeShift()(np.zeros((2, 10), np.float32))
