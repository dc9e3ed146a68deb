"""DataLoader: batches, shuffling, samplers, prefetching, resumption; datasets and splits."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gradcraft
from gradcraft.data import (
    ArrayDataset,
    ClassBalancedSampler,
    DataLoader,
    Mixup,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    WeightedRandomSampler,
    stratified_split_indices,
    train_val_split,
)


def _dataset(n: int = 50, classes: int = 5) -> ArrayDataset:
    x = (np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 1, 2, 3), np.uint8))
    return ArrayDataset(x, np.arange(n) % classes, [f"c{k}" for k in range(classes)])


def _ids(batches) -> list[int]:
    """The dataset indices of the batches (pixel value · 255 recovers the index)."""
    return [round(v) for x, _ in batches for v in (x.numpy()[:, 0, 0, 0] * 255)]


def test_batches_are_float_tensors_in_unit_range_and_int64_labels():
    loader = DataLoader(_dataset(), batch_size=16)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    x, y = batches[0]
    assert isinstance(x, gradcraft.Tensor) and isinstance(y, gradcraft.Tensor)
    assert x.shape == (16, 1, 2, 3) and x.dtype == np.float32
    assert y.dtype == np.int64 and y.shape == (16,)
    assert batches[-1][0].shape[0] == 2
    assert float(x.numpy().max()) <= 1.0
    np.testing.assert_allclose(x.numpy()[3, 0, 0, 0], 3 / 255, rtol=1e-6)
    assert _ids(batches) == list(range(50))


def test_drop_last_drops_the_short_batch():
    loader = DataLoader(_dataset(), batch_size=16, drop_last=True)
    assert len(loader) == 3 and len(list(loader)) == 3


def test_shuffle_reshuffles_every_epoch_and_is_reproducible():
    a = DataLoader(_dataset(), 10, shuffle=True, generator=np.random.default_rng(3))
    b = DataLoader(_dataset(), 10, shuffle=True, generator=np.random.default_rng(3))
    e1, e2 = _ids(a), _ids(a)
    assert sorted(e1) == list(range(50)) and e1 != e2 and e1 != list(range(50))
    assert _ids(b) == e1 and _ids(b) == e2


def test_default_generator_follows_manual_seed():
    gradcraft.manual_seed(7)
    first = _ids(DataLoader(_dataset(), 10, shuffle=True))
    gradcraft.manual_seed(7)
    assert _ids(DataLoader(_dataset(), 10, shuffle=True)) == first


def test_prefetching_thread_gives_the_same_batches():
    aug = gradcraft.data.GaussianNoise(0.1)
    plain = DataLoader(_dataset(), 8, shuffle=True, transform=aug, generator=np.random.default_rng(1))
    fetched = DataLoader(_dataset(), 8, shuffle=True, transform=aug, generator=np.random.default_rng(1),
                         prefetch=3)
    for _ in range(2):
        for (xa, ya), (xb, yb) in zip(plain, fetched, strict=True):
            np.testing.assert_array_equal(xa.numpy(), xb.numpy())
            np.testing.assert_array_equal(ya.numpy(), yb.numpy())


def test_prefetch_stops_cleanly_when_the_loop_breaks_and_reraises_errors():
    loader = DataLoader(_dataset(), 4, prefetch=2)
    for i, _ in enumerate(loader):
        if i == 1:
            break

    def broken(x):
        raise RuntimeError("augmentation failed")

    with pytest.raises(RuntimeError, match="augmentation failed"):
        list(DataLoader(_dataset(), 4, transform=broken, prefetch=2))


@pytest.mark.parametrize("prefetch", [0, 2])
def test_resume_mid_epoch_continues_with_the_same_batches(prefetch):
    def make():
        return DataLoader(_dataset(), 7, shuffle=True, generator=np.random.default_rng(5),
                          transform=gradcraft.data.RandomErasing(0.5), prefetch=prefetch)

    reference = make()
    epochs = [[(x.numpy(), y.numpy()) for x, y in reference] for _ in range(3)]

    run = make()
    list(run)  # epoch 0 done
    it = iter(run)
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(run.state_dict()))  # a checkpoint: plain JSON
    assert state["epoch"] == 1 and state["position"] == 3
    del it

    resumed = make()
    resumed.load_state_dict(state)
    rest = [(x.numpy(), y.numpy()) for x, y in resumed]
    assert len(rest) == len(epochs[1]) - 3
    for (xa, ya), (xb, yb) in zip(rest, epochs[1][3:]):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    nxt = [(x.numpy(), y.numpy()) for x, y in resumed]
    for (xa, _), (xb, _) in zip(nxt, epochs[2]):
        np.testing.assert_array_equal(xa, xb)
    assert resumed.epoch == 3


def test_state_between_epochs_restores_the_next_epoch():
    a = DataLoader(_dataset(), 10, shuffle=True, generator=np.random.default_rng(2))
    list(a)
    state = a.state_dict()
    assert state["in_progress"] is False and state["epoch"] == 1
    expected = _ids(a)
    b = DataLoader(_dataset(), 10, shuffle=True, generator=np.random.default_rng(99))
    b.load_state_dict(state)
    assert _ids(b) == expected


def test_load_state_dict_rejects_foreign_states():
    loader = DataLoader(_dataset(), 10)
    state = loader.state_dict()
    with pytest.raises(ValueError, match="batches per epoch"):
        DataLoader(_dataset(), 5).load_state_dict(state)
    with pytest.raises(ValueError, match="state_dict"):
        loader.load_state_dict({"epoch": 1})


def test_abandoned_epoch_is_followed_by_a_new_epoch():
    loader = DataLoader(_dataset(), 10, shuffle=True, generator=np.random.default_rng(0))
    for _ in loader:
        break
    assert loader.epoch == 0
    list(loader)
    assert loader.epoch == 2


def test_samplers_visit_what_they_promise():
    gen = np.random.default_rng(0)
    assert SequentialSampler(5).indices(gen).tolist() == [0, 1, 2, 3, 4]
    assert sorted(RandomSampler(6).indices(gen).tolist()) == list(range(6))
    assert len(RandomSampler(4, replacement=True, num_samples=9).indices(gen)) == 9
    sub = SubsetRandomSampler([3, 8, 9])
    assert sorted(sub.indices(gen).tolist()) == [3, 8, 9]
    w = WeightedRandomSampler([0.0, 1.0, 0.0, 3.0], num_samples=4000)
    counts = np.bincount(w.indices(gen), minlength=4)
    assert counts[0] == counts[2] == 0 and 2700 < counts[3] < 3300
    with pytest.raises(ValueError, match="weights"):
        WeightedRandomSampler([-1.0, 2.0], 3)
    with pytest.raises(ValueError, match="shuffle=True or a sampler"):
        DataLoader(_dataset(), 4, shuffle=True, sampler=sub)


def test_class_balanced_sampler_equalises_rare_classes():
    y = np.array([0] * 90 + [1] * 10)
    idx = ClassBalancedSampler(y, num_samples=20000).indices(np.random.default_rng(0))
    frac = np.mean(y[idx] == 1)
    assert abs(frac - 0.5) < 0.02


def test_loader_with_sampler_and_generic_dataset():
    class Squares:
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return np.full((2,), float(i), np.float64), i * i

    loader = DataLoader(Squares(), 4, sampler=SubsetRandomSampler([1, 2, 3], shuffle=False))
    (x, y), = list(loader)
    assert x.dtype == np.float32 and x.numpy()[:, 0].tolist() == [1.0, 2.0, 3.0]
    assert y.numpy().tolist() == [1, 4, 9]


def test_transform_receives_a_per_batch_generator_and_mixing_gives_soft_targets():
    seen = []

    def record(x, generator=None):
        seen.append(generator)
        return x

    loader = DataLoader(_dataset(), 25, transform=record, mixing=Mixup(0.4, num_classes=5),
                        generator=np.random.default_rng(0))
    (_, y1), _ = list(loader)
    assert all(isinstance(g, np.random.Generator) for g in seen) and seen[0] is not seen[1]
    assert y1.shape == (25, 5) and y1.dtype == np.float32
    np.testing.assert_allclose(y1.numpy().sum(axis=1), 1.0, rtol=1e-6)


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(_dataset(), 0)
    with pytest.raises(ValueError, match="prefetch"):
        DataLoader(_dataset(), 2, prefetch=-1)
    with pytest.raises(TypeError, match="Generator"):
        DataLoader(_dataset(), 2, generator=np.random.RandomState(0))


# ---------------------------------------------------------------------------- datasets and splits
def test_array_dataset_indexing_subset_and_errors():
    ds = _dataset(10, 2)
    x, y = ds[np.array([1, 3])]
    assert x.shape == (2, 1, 2, 3) and y.tolist() == [1, 1]
    assert ds.num_classes == 2 and "ArrayDataset" in repr(ds)
    sub = ds.subset([0, 5])
    assert len(sub) == 2 and sub.classes == ds.classes
    view = Subset(ds, [9, 0])
    assert view[0][1] == 1 and len(view) == 2
    with pytest.raises(ValueError, match="as many targets"):
        ArrayDataset(np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="indices"):
        Subset(ds, [10])


def test_stratified_split_keeps_class_proportions_and_is_seeded():
    y = np.array([0] * 80 + [1] * 20)
    tr, va = stratified_split_indices(y, 0.25, np.random.default_rng(0))
    assert len(va) == 25 and np.sum(y[va] == 1) == 5 and np.sum(y[va] == 0) == 20
    assert np.intersect1d(tr, va).size == 0 and len(tr) + len(va) == 100
    _, va2 = stratified_split_indices(y, 0.25, np.random.default_rng(0))
    np.testing.assert_array_equal(va, va2)
    _, va3 = stratified_split_indices(y, 0.25, np.random.default_rng(1))
    assert not np.array_equal(va, va3)


def test_train_val_split_returns_array_datasets_or_subsets():
    ds = _dataset(40, 4)
    train, val = train_val_split(ds, 0.25, generator=np.random.default_rng(0))
    assert isinstance(train, ArrayDataset) and len(train) == 30 and len(val) == 10
    assert set(np.bincount(val.y, minlength=4)) <= {2, 3}
    tr, va = train_val_split(Subset(ds, np.arange(40)), 0.5, stratify=False,
                             generator=np.random.default_rng(0))
    assert isinstance(tr, Subset) and len(tr) == len(va) == 20
    with pytest.raises(ValueError, match="fraction"):
        train_val_split(ds, 1.5)


def test_loader_reads_subsets_of_array_datasets_through_to_the_arrays():
    ds = _dataset(20)
    nested = Subset(Subset(ds, np.arange(10, 20)), [9, 0, 4])
    (x, y), = list(DataLoader(nested, batch_size=8))
    assert _ids([(x, y)]) == [19, 10, 14]
    assert y.numpy().tolist() == [4, 0, 4]

