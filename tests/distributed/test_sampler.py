"""DistributedSampler: disjoint shards that cover the epoch, aligned with the global batches."""

from __future__ import annotations

import re

import numpy as np
import pytest

from gradcraft.data import ArrayDataset, DataLoader
from gradcraft.data.augment import RandomCrop
from gradcraft.distributed import DistributedSampler


def _shards(n: int, k: int, seed: int = 3, **kwargs: object) -> list[np.ndarray]:
    return [DistributedSampler(n, k, r, **kwargs).indices(np.random.default_rng(seed)) for r in range(k)]


@pytest.mark.parametrize(("n", "k"), [(100, 2), (101, 2), (103, 4), (7, 3), (2, 4)])
def test_training_shards_are_disjoint_equal_and_cover_all_but_the_remainder(n: int, k: int) -> None:
    shards = _shards(n, k)
    assert all(len(s) == n // k == len(DistributedSampler(n, k, 0)) for s in shards)
    joined = np.concatenate(shards)
    assert len(np.unique(joined)) == len(joined) == n - n % k  # disjoint, only the remainder left out
    left_out = set(range(n)) - set(joined.tolist())
    assert len(left_out) == n % k


def test_the_left_out_remainder_changes_from_epoch_to_epoch() -> None:
    samplers = [DistributedSampler(101, 2, r) for r in range(2)]
    gens = [np.random.default_rng(0) for _ in samplers]  # one shared seed, one generator per process
    left_out = set()
    for _ in range(10):
        seen = set()
        for sampler, gen in zip(samplers, gens):
            seen |= set(sampler.indices(gen).tolist())
        (missing,) = set(range(101)) - seen
        left_out.add(missing)
    assert len(left_out) > 1


@pytest.mark.parametrize(("n", "k"), [(100, 2), (101, 3), (5, 4)])
def test_evaluation_shards_visit_every_example_exactly_once(n: int, k: int) -> None:
    shards = _shards(n, k, shuffle=False, drop_remainder=False)
    assert sorted(np.concatenate(shards).tolist()) == list(range(n))
    assert [len(s) for s in shards] == [
        len(DistributedSampler(n, k, r, drop_remainder=False)) for r in range(k)
    ]


def test_every_process_draws_the_same_permutation_from_the_shared_seed() -> None:
    order = np.random.default_rng(3).permutation(12)
    for r, shard in enumerate(_shards(12, 3)):
        np.testing.assert_array_equal(shard, order[r::3])


def test_batch_j_of_every_shard_lies_in_global_batch_j() -> None:
    n, k, global_batch = 1000, 4, 64
    order = np.random.default_rng(3).permutation(n)
    shards = _shards(n, k)
    local = global_batch // k
    for j in range(len(shards[0]) // local):
        together = np.concatenate([s[j * local : (j + 1) * local] for s in shards])
        assert set(together.tolist()) == set(order[j * global_batch : (j + 1) * global_batch].tolist())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"num_replicas": 0, "rank": 0},
            "Expected a positive integer num_replicas. Received: num_replicas=0",
        ),
        ({"num_replicas": 2, "rank": 2}, "Expected 0 <= rank < num_replicas=2. Received: rank=2"),
        ({"num_replicas": 2, "rank": True}, "Received: rank=True"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DistributedSampler(10, **kwargs)


def _images(n: int) -> ArrayDataset:
    """Random uint8 images whose label is their index."""
    x = np.random.default_rng(0).integers(0, 256, (n, 1, 4, 4), dtype=np.uint8)
    return ArrayDataset(x, np.arange(n))


def test_loaders_with_a_shared_seed_split_each_epoch_between_processes() -> None:
    data = _images(40)
    loaders = [
        DataLoader(
            data, batch_size=5, sampler=DistributedSampler(40, 2, r), generator=np.random.default_rng(9)
        )
        for r in range(2)
    ]
    assert [len(loader) for loader in loaders] == [4, 4]
    for _ in range(2):  # two epochs, each split disjointly
        both = np.concatenate([y.numpy() for loader in loaders for _, y in loader])
        assert sorted(both.tolist()) == list(range(40))


def test_stream_gives_each_process_its_own_augmentation() -> None:
    data = _images(8)

    def first_batch(stream: int | None) -> np.ndarray:
        loader = DataLoader(
            data,
            batch_size=8,
            sampler=DistributedSampler(8, 1, 0, shuffle=False),
            generator=np.random.default_rng(9),
            transform=RandomCrop(padding=1),
            stream=stream,
        )
        return next(iter(loader))[0].numpy()

    assert not np.array_equal(first_batch(0), first_batch(1))
    np.testing.assert_array_equal(first_batch(1), first_batch(1))


def test_stream_must_be_a_non_negative_integer() -> None:
    with pytest.raises(
        ValueError, match=re.escape("Expected a non-negative integer stream or None. Received: stream=-1")
    ):
        DataLoader(_images(4), stream=-1)
