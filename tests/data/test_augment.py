"""Image augmentation: exactness of the geometry, randomness per sample, determinism, mixing."""

from __future__ import annotations

import numpy as np
import pytest

from gradcraft.data import augment as A
from gradcraft.data import mixing


def _batch(n: int = 6, c: int = 2, h: int = 9, w: int = 11, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, c, h, w)).astype(np.float32)


def _g(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


ALL = [
    A.RandomHorizontalFlip(), A.RandomVerticalFlip(), A.RandomCrop(padding=2), A.RandomResizedCrop(),
    A.ScaleJitter((7, 12), 9), A.RandomAffine(20, (0.1, 0.1), (0.8, 1.2), 10, (0.9, 1.1)),
    A.ElasticDistortion(8, 3), A.LensDistortion(0.3), A.ColorJitter(0.3, 0.3), A.GaussianNoise(0.1),
    A.Cutout(4), A.RandomErasing(1.0), A.PCAColorAugmentation(np.ones(2), np.eye(2)),
    A.Compose([A.RandomHorizontalFlip(), A.GaussianNoise(0.1)]), A.RandomApply(A.GaussianNoise(0.1), 0.5),
    A.OneOf([A.Cutout(3), A.GaussianNoise(0.1)]),
]


@pytest.mark.parametrize("t", ALL, ids=lambda t: type(t).__name__)
def test_every_transform_is_deterministic_given_the_generator(t):
    x = _batch()
    a, b = t(x, generator=_g(1)), t(x, generator=_g(1))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape[:2] == x.shape[:2]
    assert not np.shares_memory(a, x) or np.array_equal(a, x)
    np.testing.assert_array_equal(x, _batch())  # the input is left alone


def test_constructor_generator_and_global_generator_are_used():
    import gradcraft

    x = _batch()
    t = A.GaussianNoise(0.1, generator=_g(4))
    np.testing.assert_array_equal(t(x), A.GaussianNoise(0.1)(x, generator=_g(4)))
    gradcraft.manual_seed(3)
    first = A.GaussianNoise(0.1)(x)
    gradcraft.manual_seed(3)
    np.testing.assert_array_equal(A.GaussianNoise(0.1)(x), first)
    with pytest.raises(TypeError, match="float batch"):
        A.GaussianNoise(0.1)(np.zeros((1, 1, 2, 2), np.uint8))


def test_flips_mirror_exactly_the_chosen_samples():
    x = _batch(40)
    out = A.RandomHorizontalFlip(0.5)(x, generator=_g())
    flipped = [np.array_equal(o, xi[..., ::-1]) for o, xi in zip(out, x)]
    same = [np.array_equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or s for f, s in zip(flipped, same)) and 5 < sum(flipped) < 35
    np.testing.assert_array_equal(A.RandomVerticalFlip(1.0)(x), x[..., ::-1, :])


def test_random_crop_cuts_windows_of_the_padded_image():
    x = _batch(20)
    out = A.RandomCrop(padding=3)(x, generator=_g())
    padded = np.pad(x, ((0, 0), (0, 0), (3, 3), (3, 3)))
    offsets = set()
    for o, p in zip(out, padded):
        hits = [(i, j) for i in range(7) for j in range(7) if np.array_equal(p[:, i:i + 9, j:j + 11], o)]
        assert hits
        offsets.add(hits[0])
    assert len(offsets) > 5  # each sample gets its own offset
    assert A.RandomCrop(4)(x).shape == (20, 2, 4, 4)
    with pytest.raises(ValueError, match="no larger"):
        A.RandomCrop(30)(x)


def _reference_bilinear(img, y, x, mode):
    """Textbook bilinear interpolation of one channel at one point, neighbour by neighbour."""
    h, w = img.shape

    def pixel(i, j):
        if mode == "constant":
            return img[i, j] if 0 <= i < h and 0 <= j < w else 0.0
        return img[min(max(i, 0), h - 1), min(max(j, 0), w - 1)]

    if mode == "reflect":
        def fold(v, n):
            period = 2 * (n - 1)
            v = abs(v) % period
            return period - v if v > n - 1 else v
        y, x = fold(y, h), fold(x, w)
    if mode == "edge":
        y, x = min(max(y, 0), h - 1), min(max(x, 0), w - 1)
    i0, j0 = int(np.floor(y)), int(np.floor(x))
    a, b = y - i0, x - j0
    return ((1 - a) * (1 - b) * pixel(i0, j0) + (1 - a) * b * pixel(i0, j0 + 1)
            + a * (1 - b) * pixel(i0 + 1, j0) + a * b * pixel(i0 + 1, j0 + 1))


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_bilinear_sampling_matches_a_pointwise_reference(mode):
    x = _batch(3, 2, 7, 8)
    rng = np.random.default_rng(0)
    ys = rng.uniform(-2, 9, size=(3, 4, 5)).astype(np.float32)
    xs = rng.uniform(-2, 10, size=(3, 4, 5)).astype(np.float32)
    ours = A.sample_bilinear(x, ys, xs, mode=mode)
    ref = np.array([[[[_reference_bilinear(x[n, c], float(ys[n, i, j]), float(xs[n, i, j]), mode)
                       for j in range(5)] for i in range(4)] for c in range(2)] for n in range(3)])
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_affine_identity_rotation_and_translation_are_exact():
    x = _batch(4, 1, 9, 9)
    np.testing.assert_allclose(A.RandomAffine()(x), x, atol=1e-6)
    np.testing.assert_allclose(A.RandomAffine((90, 90))(x), np.rot90(x, 1, axes=(2, 3)), atol=1e-5)
    np.testing.assert_allclose(A.RandomAffine((-90, -90))(x), np.rot90(x, -1, axes=(2, 3)), atol=1e-5)
    np.testing.assert_allclose(A.RandomAffine((180, 180))(x), x[..., ::-1, ::-1], atol=1e-5)
    zero, one = np.zeros(4), np.ones(4)
    m = A._inverse_affine(zero, zero, one, one, np.full(4, 2.0), np.full(4, -1.0))  # shift right 2, up 1
    shifted = A.sample_bilinear(x, *A.affine_grid(m, (9, 9)))
    np.testing.assert_allclose(shifted[:, :, :8, 2:], x[:, :, 1:, :7], atol=1e-6)
    assert np.all(shifted[:, :, :, :2] == 0) and np.all(shifted[:, :, 8, :] == 0)


def test_affine_draws_one_matrix_per_sample_with_the_requested_ranges():
    t = A.RandomAffine(degrees=30, scale=(0.5, 2.0))
    m = t.matrices(500, 9, 9, _g())
    lin = m[:, :, :2]
    det = np.linalg.det(lin)  # = 1 / s² for rotation + zoom
    assert np.all(det > 1 / 4 - 1e-9) and np.all(det < 4 + 1e-9)
    angles = np.degrees(np.arctan2(lin[:, 1, 0], lin[:, 0, 0]))
    assert np.all(np.abs(angles) <= 30 + 1e-6) and angles.std() > 10


def test_resized_crop_with_full_box_is_identity_and_sizes_are_honoured():
    x = _batch(4, 1, 8, 8)
    full = A.RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0))(x, generator=_g())
    np.testing.assert_allclose(full, x, atol=1e-6)
    assert A.RandomResizedCrop((5, 7))(x).shape == (4, 1, 5, 7)
    assert A.ScaleJitter((8, 8), 8)(x, generator=_g()).shape == (4, 1, 8, 8)
    np.testing.assert_allclose(A.ScaleJitter((8, 8), 8)(x, generator=_g()), x, atol=1e-6)


def test_elastic_and_lens_reduce_to_identity_without_strength():
    x = _batch()
    np.testing.assert_allclose(A.ElasticDistortion(alpha=0.0)(x, generator=_g()), x, atol=1e-6)
    np.testing.assert_allclose(A.LensDistortion(k=0.0)(x), x, atol=1e-6)
    warped = A.ElasticDistortion(alpha=20, sigma=2)(x, generator=_g())
    assert np.abs(warped - x).mean() > 0.05
    barrel = A.LensDistortion(k=(0.5, 0.5))(np.ones((1, 1, 21, 21), np.float32))
    assert barrel[0, 0, 10, 10] == pytest.approx(1.0) and barrel[0, 0, 0, 0] < 0.5  # corners leave the frame


def test_gaussian_smoothing_matrix_rows_sum_to_one():
    g = A._gaussian_matrix(15, 2.0)
    np.testing.assert_allclose(g.sum(axis=1), 1.0, atol=1e-6)


def test_color_jitter_and_noise_statistics():
    x = np.full((2000, 1, 4, 4), 0.5, np.float32)
    bright = A.ColorJitter(brightness=0.4)(x, generator=_g())
    factors = bright[:, 0, 0, 0] / 0.5
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6 and factors.std() > 0.15
    ramp = np.linspace(0, 1, 16, dtype=np.float32).reshape(1, 1, 4, 4).repeat(500, 0)
    low = A.ColorJitter(contrast=(0.5, 0.5))(ramp)
    np.testing.assert_allclose(low.std(axis=(1, 2, 3)), ramp.std(axis=(1, 2, 3)) * 0.5, rtol=1e-5)
    noisy = A.GaussianNoise(0.1)(np.zeros((200, 1, 16, 16), np.float32), generator=_g())
    assert noisy.std() == pytest.approx(0.1, rel=0.03)


def test_pca_color_augmentation_shifts_along_the_principal_axes():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 1, 8, 8)) * np.array([1.0, 0.5, 0.1]).reshape(1, 3, 1, 1)
    x = (base + 0.5).astype(np.float32)
    t = A.PCAColorAugmentation(std=0.1).fit(x, generator=_g())
    assert t.eigenvalues[0] > t.eigenvalues[1] > t.eigenvalues[2]
    out = t(x, generator=_g(1))
    shift = (out - x)[:, :, 0, 0]
    assert np.allclose(out - x, shift[:, :, None, None], atol=1e-6)  # same shift for every pixel
    coords = shift @ t.eigenvectors  # = α_i λ_i
    assert coords[:, 0].std() == pytest.approx(0.1 * t.eigenvalues[0], rel=0.25)
    with pytest.raises(RuntimeError, match="fit"):
        A.PCAColorAugmentation()(x)


def test_cutout_and_erasing_blank_boxes():
    x = np.ones((50, 1, 16, 16), np.float32)
    cut = A.Cutout(size=4)(x, generator=_g())
    blanked = (cut == 0).sum(axis=(1, 2, 3))
    assert np.all(blanked <= 16) and np.mean(blanked == 16) > 0.5
    erased = A.RandomErasing(p=1.0, scale=(0.1, 0.1), ratio=(1.0, 1.0))(x, generator=_g())
    area = (erased == 0).sum(axis=(1, 2, 3))
    assert np.all((area >= 16) & (area <= 36))
    none = A.RandomErasing(p=0.0)(x, generator=_g())
    np.testing.assert_array_equal(none, x)


def test_random_apply_and_one_of_act_per_sample():
    x = np.zeros((400, 1, 2, 2), np.float32)
    out = A.RandomApply(lambda b: b + 1.0, p=0.25)(x, generator=_g())
    assert 0.18 < out[:, 0, 0, 0].mean() < 0.32
    one = A.OneOf([lambda b: b + 1.0, lambda b: b + 2.0], p=[3, 1])(x, generator=_g())
    vals = one[:, 0, 0, 0]
    assert set(np.unique(vals)) == {1.0, 2.0} and 0.65 < np.mean(vals == 1.0) < 0.85


def test_invalid_parameters_are_rejected():
    with pytest.raises(ValueError, match="probability"):
        A.RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="scale"):
        A.RandomResizedCrop(scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="shear"):
        A.RandomAffine(shear=95)
    with pytest.raises(ValueError, match="N, C, H, W"):
        A.RandomCrop(padding=1)(np.zeros((2, 3), np.float32))


# ---------------------------------------------------------------------------- batch mixing
def test_mixup_mixes_inputs_and_labels_with_the_same_weight():
    x = np.stack([np.full((1, 2, 2), float(i)) for i in range(8)]).astype(np.float32)
    y = np.arange(8) % 4
    xm, ym = mixing.Mixup(alpha=0.4, num_classes=4)(x, y, generator=_g())
    assert ym.shape == (8, 4)
    np.testing.assert_allclose(ym.sum(axis=1), 1.0, rtol=1e-6)
    lam = ym[np.arange(8), y]
    # each mixed image is λ·x_i + (1−λ)·x_π(i): recover the partner value from the pixel
    partner = (xm[:, 0, 0, 0] - lam * np.arange(8)) / np.maximum(1 - lam, 1e-6)
    assert np.all((np.abs(partner - np.round(partner)) < 1e-3) | (lam > 0.999))


def test_cutmix_label_weights_equal_the_pasted_area():
    x = np.stack([np.full((1, 10, 10), float(i)) for i in range(6)]).astype(np.float32)
    y = np.arange(6)
    for per_sample in (False, True):
        xm, ym = mixing.CutMix(alpha=1.0, num_classes=6, per_sample=per_sample)(x, y, generator=_g(2))
        own = (xm == x).mean(axis=(1, 2, 3))
        keep = ym[np.arange(6), y]
        changed = own < 1
        np.testing.assert_allclose(keep[changed], own[changed], atol=1e-6)


def test_mixing_accepts_soft_labels_and_rejects_bad_ones():
    soft = np.full((4, 3), 1 / 3, np.float32)
    _, ym = mixing.Mixup(1.0, 3)(np.zeros((4, 1, 2, 2), np.float32), soft, generator=_g())
    np.testing.assert_allclose(ym, soft, rtol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        mixing.Mixup(1.0, 3)(np.zeros((2, 1, 1, 1), np.float32), np.array([0, 5]))
    with pytest.raises(ValueError, match="alpha"):
        mixing.CutMix(alpha=0.0)
    _, hard = mixing.Mixup(1.0, 3, p=0.0)(np.zeros((2, 1, 1, 1), np.float32), np.array([0, 2]))
    np.testing.assert_array_equal(hard, [[1, 0, 0], [0, 0, 1]])
