"""Test-time augmentation views and prediction; the PNG preview."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

import gradcraft
from gradcraft.data import preview, tta


def _images(n: int = 5, h: int = 6, w: int = 6) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, h, w)).astype(np.float32)


class _Linear:
    """A fixed linear classifier on the flattened image, as any model(Tensor) -> Tensor."""

    def __init__(self, d: int, k: int = 4) -> None:
        self.w = np.random.default_rng(1).normal(size=(d, k)).astype(np.float32)
        self.calls = 0

    def __call__(self, x: gradcraft.Tensor) -> gradcraft.Tensor:
        self.calls += 1
        assert isinstance(x, gradcraft.Tensor) and not gradcraft.is_grad_enabled()
        return gradcraft.tensor(x.numpy().reshape(x.shape[0], -1) @ self.w)


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_predict_averages_softmax_over_views():
    x = _images()
    model = _Linear(36)
    views = [tta.Identity(), tta.HorizontalFlip(), tta.VerticalFlip()]
    probs = tta.predict(model, x, views=views, batch_size=2)
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    expected = np.mean([_softmax(flat(v(x)) @ model.w) for v in views], axis=0)
    np.testing.assert_allclose(probs.numpy(), expected, rtol=1e-5)
    assert isinstance(probs, gradcraft.Tensor) and probs.shape == (5, 4)
    assert model.calls == 3 * 3  # 3 chunks × 3 views
    single = tta.predict(model, gradcraft.tensor(x), views=[tta.Identity()], batch_size=None)
    np.testing.assert_allclose(single.numpy(), _softmax(flat(x) @ model.w), rtol=1e-5)


def test_predict_scales_uint8_and_applies_preprocessing():
    raw = (np.arange(5 * 36) % 256).astype(np.uint8).reshape(5, 1, 6, 6)
    model = _Linear(36)
    a = tta.predict(model, raw, views=[tta.Identity()], preprocess=lambda v: v * 2)
    b = tta.predict(model, raw.astype(np.float32) / 255 * 2, views=[tta.Identity()])
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match="logits"):
        tta.predict(lambda t: gradcraft.tensor(np.zeros(3)), raw)


def test_five_crops_are_the_corners_and_centre():
    x = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    crops = [v(x)[0, 0] for v in tta.five_crops(4)]
    assert crops[0][0, 0] == 0 and crops[1][0, -1] == 5 and crops[2][-1, 0] == 30 and crops[3][-1, -1] == 35
    np.testing.assert_array_equal(crops[4], x[0, 0, 1:5, 1:5])
    padded = tta.Crop("top_left", 6, padding=2)(x)
    assert padded.shape == (1, 1, 6, 6) and padded[0, 0, 2, 2] == 0 and padded[0, 0, 0, 0] == 0
    assert len(tta.ten_crops(4)) == 10
    np.testing.assert_array_equal(tta.ten_crops(4)[5](x), crops[0][None, None, :, ::-1])


def test_rotation_and_zoom_views():
    x = _images(2, 7, 7)
    np.testing.assert_allclose(tta.Rotate(90)(x), np.rot90(x, 1, axes=(2, 3)), atol=1e-5)
    views = tta.rotations((-15, 0, 15))
    assert isinstance(views[1], tta.Identity) and len(views) == 3
    zoomed = tta.Zoom(2.0)(np.arange(49, dtype=np.float32).reshape(1, 1, 7, 7))
    assert zoomed[0, 0, 3, 3] == pytest.approx(24.0)  # the centre stays put
    assert zoomed[0, 0, 3, 5] == pytest.approx(25.0)  # two pixels out reads one pixel out
    assert isinstance(tta.scales((1.0, 1.2))[0], tta.Identity)


def test_png_preview_is_a_valid_png_grid(tmp_path):
    from gradcraft.data import RandomHorizontalFlip, RandomResizedCrop

    x = (np.random.default_rng(0).random((4, 1, 8, 8)) * 255).astype(np.uint8)
    path = preview.preview_augmentations(tmp_path / "grid.png", x, RandomHorizontalFlip(), n=3, repeats=2,
                                         scale=2)
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", blob[16:24])
    assert (width, height) == (2 * (3 * 10 + 2), 2 * (3 * 10 + 2))
    idat = blob[blob.index(b"IDAT") + 4: blob.index(b"IEND") - 8]
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, width + 1)
    assert np.all(rows[:, 0] == 0)
    try:
        from PIL import Image
    except ImportError:
        pass
    else:
        with Image.open(path) as im:
            assert im.size == (width, height) and im.mode == "L"
            np.testing.assert_array_equal(np.asarray(im), rows[:, 1:])
    rgb = np.random.default_rng(1).random((2, 3, 5, 5)).astype(np.float32)
    out = preview.preview_augmentations(tmp_path / "rgb.png", rgb, RandomResizedCrop(4), n=2)
    assert out.exists()
    with pytest.raises(TypeError, match="uint8"):
        preview.write_png(tmp_path / "bad.png", np.zeros((2, 2), np.float32))
