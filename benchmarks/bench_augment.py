"""Throughput of gradcraft's batch augmentation on Fashion-MNIST, with PyTorch doing the same work.

The workload is one batch of 128 Fashion-MNIST training images (1 × 28 × 28, float32 in [0, 1])
through ``RandomHorizontalFlip`` → ``RandomCrop(padding=2)`` → ``RandomAffine(±10°, shift ±5 %,
zoom 0.95–1.05)`` (bilinear, one gather for the batch). Each transform is also timed alone.
The PyTorch column does the same arithmetic with ``torch.where`` (flip), index gathers
(crop) and ``affine_grid`` + ``grid_sample`` (affine). Timed blocks of the two are interleaved
and medians reported, because the machine is shared. Finally one DataLoader epoch over the
60 000 training images with the pipeline is timed with and without a prefetching thread, alone
and with a simulated training step after every batch (where prefetching should hide the
augmentation time).

    python benchmarks/bench_augment.py                  # defaults: 30 repeats, 2 threads
    python benchmarks/bench_augment.py --threads 1 --repeats 50 --no-torch --no-epoch

Output: a table of ms per batch and images/s (higher is better), and the ratio to PyTorch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

BATCH = 128


def set_threads(n: int) -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def load_images() -> tuple[Any, str]:
    """The Fashion-MNIST training set, or random pixels of the same shape if it is not installed."""
    from gradcraft import data

    try:
        return data.load("fashion-mnist", split="train", download=False), "Fashion-MNIST train"
    except data.DatasetError:
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(60000, 1, 28, 28), dtype=np.uint8)
        return data.ArrayDataset(x, rng.integers(0, 10, 60000)), "random pixels (Fashion-MNIST not found)"


def gradcraft_transforms() -> dict[str, Callable[..., Any]]:
    from gradcraft.data import augment as A

    flip = A.RandomHorizontalFlip(0.5)
    crop = A.RandomCrop(padding=2)
    affine = A.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.95, 1.05))
    return {"flip": flip, "crop (pad 2)": crop, "affine": affine,
            "flip + crop + affine": A.Compose([flip, crop, affine])}


def torch_transforms() -> dict[str, Callable[..., Any]]:
    import math

    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)

    def flip(x):
        mask = torch.rand(x.shape[0], generator=gen) < 0.5
        return torch.where(mask[:, None, None, None], x.flip(-1), x)

    def crop(x):
        n, c, h, w = x.shape
        p = F.pad(x, (2, 2, 2, 2))
        top = torch.randint(0, 5, (n,), generator=gen)
        left = torch.randint(0, 5, (n,), generator=gen)
        rows = (top[:, None] + torch.arange(h))[:, None, :, None]
        cols = (left[:, None] + torch.arange(w))[:, None, None, :]
        return p[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]

    def affine(x):
        n = x.shape[0]
        theta = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
        s = 0.95 + torch.rand(n, generator=gen) * 0.1
        t = (torch.rand(n, 2, generator=gen) * 2 - 1) * 0.05 * 2  # normalised coordinates span 2
        cos, sin = torch.cos(theta) / s, torch.sin(theta) / s
        mat = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
        grid = F.affine_grid(mat, list(x.shape), align_corners=True)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)

    return {"flip": flip, "crop (pad 2)": crop, "affine": affine,
            "flip + crop + affine": lambda x: affine(crop(flip(x)))}


def time_block(fn: Callable[[], Any], iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed blocks per transform and framework")
    parser.add_argument("--iters", type=int, default=5, help="batches per timed block")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--no-epoch", action="store_true", help="skip the DataLoader epoch timing")
    parser.add_argument("--step-ms", type=float, default=10.0, help="simulated training step per batch")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    set_threads(args.threads)

    from gradcraft.data import DataLoader, to_float

    dataset, source = load_images()
    batch = to_float(dataset.x[:BATCH])
    ours = gradcraft_transforms()
    theirs = None
    if not args.no_torch:
        try:
            import torch

            theirs = torch_transforms()
            tbatch = torch.from_numpy(batch.copy())
        except ImportError:
            theirs = None

    results: dict[str, dict[str, float]] = {}
    for name, t in ours.items():
        gen = np.random.default_rng(0)
        run_ours = lambda t=t, gen=gen: t(batch, generator=gen)  # noqa: E731
        run_ours()
        samples_ours, samples_torch = [], []
        run_torch = None
        if theirs is not None:
            run_torch = lambda f=theirs[name]: f(tbatch)  # noqa: E731
            run_torch()
        for _ in range(args.repeats):
            samples_ours.append(time_block(run_ours, args.iters))
            if run_torch is not None:
                samples_torch.append(time_block(run_torch, args.iters))
        row = {"gradcraft_ms": 1e3 * statistics.median(samples_ours)}
        if samples_torch:
            row["torch_ms"] = 1e3 * statistics.median(samples_torch)
        results[name] = row

    print(f"\nAugmentation of a batch of {BATCH} images 1x28x28 ({source}); {args.threads} thread(s), "
          f"median of {args.repeats} blocks x {args.iters} batches")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}, numpy {np.__version__}")
    header = f"{'transform':<22}{'gradcraft ms':>13}{'images/s':>11}"
    if theirs is not None:
        header += f"{'torch ms':>11}{'images/s':>11}{'ratio':>8}"
    print(header)
    for name, row in results.items():
        line = f"{name:<22}{row['gradcraft_ms']:>13.2f}{BATCH / row['gradcraft_ms'] * 1e3:>11,.0f}"
        if "torch_ms" in row:
            line += (f"{row['torch_ms']:>11.2f}{BATCH / row['torch_ms'] * 1e3:>11,.0f}"
                     f"{row['gradcraft_ms'] / row['torch_ms']:>7.2f}x")
        print(line)
    if theirs is not None:
        print("ratio = gradcraft time / PyTorch time (lower is better)")

    if not args.no_epoch:
        pipeline = ours["flip + crop + affine"]
        print(f"\nDataLoader epoch over {len(dataset):,} images, batch {BATCH}, shuffle, same pipeline "
              f"(a 'step' of {args.step_ms:g} ms per batch stands in for training; it releases the GIL "
              "as NumPy's kernels do):")
        for step_ms in (0.0, args.step_ms):
            for prefetch in (0, 2):
                loader = DataLoader(dataset, BATCH, shuffle=True, transform=pipeline, prefetch=prefetch,
                                    generator=np.random.default_rng(0))
                start = time.perf_counter()
                for _ in loader:
                    if step_ms:
                        time.sleep(step_ms / 1e3)
                seconds = time.perf_counter() - start
                results[f"epoch step={step_ms:g}ms prefetch={prefetch}"] = {"seconds": seconds}
                print(f"  step {step_ms:>4g} ms, prefetch={prefetch}: {seconds:6.2f} s  "
                      f"({len(dataset) / seconds:,.0f} images/s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "batch": BATCH, "source": source, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
