"""Preprocessing fitted on training data: statistics, whitening, serialisation."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from gradcraft.data import (
    PCA,
    ZCA,
    ChannelMean,
    DataLoader,
    DatasetError,
    MeanImage,
    Standardize,
    load_preprocessor,
    to_float,
)
from gradcraft.data.preprocessing import from_config


def _correlated_images(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(12, 12))
    z = rng.normal(size=(n, 12)) @ mix + rng.normal(size=12) * 3
    return z.reshape(n, 3, 2, 2).astype(np.float32)


def test_standardized_data_has_zero_mean_and_unit_std_per_channel():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(400, 3, 5, 5)) * [[[2.0]], [[0.5]], [[7.0]]] + [[[1.0]], [[-3.0]], [[10.0]]])
    x = x.astype(np.float32)
    s = Standardize().fit(x)
    z = s(x)
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1.0, atol=1e-5)
    assert z.dtype == np.float32
    np.testing.assert_allclose(s.inverse_transform(z), x, atol=1e-4)


def test_statistics_fitted_on_uint8_match_the_loader_scaling():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(300, 1, 4, 4), dtype=np.uint8)
    s = Standardize().fit(x)
    batch, _ = next(iter(DataLoader(_ds(x), batch_size=300)))
    z = s(batch.numpy())
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1.0, atol=1e-5)
    np.testing.assert_allclose(s(x), z, atol=1e-6)  # raw uint8 input is scaled the same way


def _ds(x):
    from gradcraft.data import ArrayDataset

    return ArrayDataset(x, np.zeros(len(x), np.int64))


def test_fit_uses_chunks_without_changing_the_result(monkeypatch):
    from gradcraft.data import preprocessing

    x = _correlated_images(1000)
    whole = Standardize().fit(x)
    monkeypatch.setattr(preprocessing, "_CHUNK", 7)
    chunked = Standardize().fit(x)
    np.testing.assert_allclose(whole.mean, chunked.mean, rtol=1e-12)
    np.testing.assert_allclose(whole.std, chunked.std, rtol=1e-10)


def test_mean_image_and_channel_mean():
    x = _correlated_images(500)
    m = MeanImage().fit(x)
    assert m.mean.shape == (3, 2, 2)
    np.testing.assert_allclose(m(x).mean(axis=0), 0.0, atol=1e-4)
    c = ChannelMean().fit(x)
    assert c.mean.shape == (3,)
    out = c(x)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-4)
    assert not np.allclose(out.mean(axis=0), 0.0, atol=1e-3)  # per channel, not per pixel
    np.testing.assert_allclose(c.inverse_transform(out), x, atol=1e-4)


def test_zca_whitened_data_has_identity_covariance_and_keeps_shape():
    x = _correlated_images()
    zca = ZCA(eps=1e-6).fit(x)
    w = zca(x)
    assert w.shape == x.shape
    cov = np.cov(w.reshape(len(w), -1).astype(np.float64), rowvar=False, bias=True)
    np.testing.assert_allclose(cov, np.eye(12), atol=1e-3)
    assert np.allclose(zca.whitening, zca.whitening.T, atol=1e-8)  # ZCA's W is symmetric


def test_pca_whitening_and_reduction():
    x = _correlated_images()
    p = PCA(n_components=5, whiten=True, eps=1e-8).fit(x)
    z = p(x)
    assert z.shape == (len(x), 5)
    np.testing.assert_allclose(np.cov(z.astype(np.float64), rowvar=False, bias=True), np.eye(5), atol=1e-3)
    full = PCA().fit(x)
    np.testing.assert_allclose(full.inverse_transform(full(x)), x, atol=1e-3)
    assert np.all(np.diff(full.eigenvalues) <= 1e-9)
    kept = PCA(n_components=0.9).fit(x)
    assert kept.explained_variance_ratio.sum() >= 0.9
    assert kept.explained_variance_ratio[:-1].sum() < 0.9
    reduced = PCA(n_components=5).fit(x)
    err5 = np.mean((reduced.inverse_transform(reduced(x)) - x) ** 2)
    err2 = np.mean((PCA(2).fit(x).inverse_transform(PCA(2).fit(x)(x)) - x) ** 2)
    assert err5 < err2


@pytest.mark.parametrize("make", [
    lambda: MeanImage(), lambda: ChannelMean(), lambda: Standardize(eps=1e-6),
    lambda: PCA(4, whiten=True), lambda: ZCA(0.1),
])
def test_preprocessors_round_trip_through_json_and_npz(tmp_path, make):
    x = _correlated_images(200)
    pre = make().fit(x)
    config = json.loads(json.dumps(pre.get_config()))
    clone = from_config(config, pre.state_dict())
    np.testing.assert_allclose(clone(x), pre(x), rtol=1e-6, atol=1e-6)
    pre.save(tmp_path / "pre.npz")
    loaded = load_preprocessor(tmp_path / "pre.npz")
    assert type(loaded) is type(pre)
    np.testing.assert_allclose(loaded(x), pre(x), rtol=1e-6, atol=1e-6)


def test_fixed_standardize_and_errors(tmp_path):
    s = Standardize(mean=[0.5], std=[0.25])
    np.testing.assert_allclose(s(np.full((1, 1, 2, 2), 0.75, np.float32)), 1.0)
    with pytest.raises(RuntimeError, match="fit"):
        ZCA()(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="n_components"):
        PCA(n_components=1.5)
    with pytest.raises(ValueError, match="batch"):
        Standardize().fit(np.zeros(3))
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(DatasetError, match=re.escape("bad.npz")):
        load_preprocessor(tmp_path / "bad.npz")
    assert to_float(np.array([255], np.uint8))[0] == 1.0
