"""Forward + backward time of single layers, gradcraft vs PyTorch (CPU), in one process run.

Rows (batch 128, float32, training mode, the shapes of the Fashion-MNIST CNN and of a small
CIFAR ResNet stem):

* Conv2d 3×3, padding 1: 1→32 and 32→64 on 28×28; 3→64 and 64→64 on 32×32.
* MaxPool2d 2×2: 32 channels 28×28 and 64 channels 14×14.
* BatchNorm2d (train mode): 32 channels 28×28 and 64 channels 32×32.
* Fused softmax cross-entropy (``F.cross_entropy``, mean): 10 and 1000 classes.

Each row times one forward and one backward pass (gradients of every input that needs one:
the first conv layer's input is data, so neither framework computes its dX). gradcraft gets
its inputs in the memory order its own previous layer would produce (channels-last after a
convolution, plain NCHW for image data); PyTorch gets its default contiguous NCHW tensors.
Timed calls of the two frameworks are interleaved and the median of ``--repeats`` is
reported, because the machine may be shared. Both use the same thread count: PyTorch's
``torch.set_num_threads`` and NumPy's BLAS through ``threadpoolctl`` (which also sets the
number of worker threads of gradcraft's conv and pooling kernels).

    python benchmarks/bench_layers.py                     # 2 threads, 15 repeats
    python benchmarks/bench_layers.py --threads 1 --repeats 25
    python benchmarks/bench_layers.py --only conv

Output: a table of milliseconds per forward+backward and the gradcraft / PyTorch ratio
(lower is better), with the machine's load average before and after the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gradcraft as gc
from gradcraft.nn.conv import Conv2d
from gradcraft.nn.pooling import MaxPool2d

BATCH = 128


def channels_last(x: np.ndarray) -> np.ndarray:
    """The same (N, C, H, W) values stored channels-last, as a gradcraft conv layer outputs them."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def set_threads(n: int) -> str:
    import torch

    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "threadpoolctl not installed: NumPy BLAS threads left at their default"
    threadpool_limits(n, user_api="blas")
    return f"torch.set_num_threads({n}); threadpoolctl.threadpool_limits({n}, 'blas')"


class Case:
    """One row: a gradcraft step and a PyTorch step doing the same forward + backward."""

    def __init__(self, group: str, name: str, ours: Callable[[], Any], theirs: Callable[[], Any]) -> None:
        self.group, self.name, self.ours, self.theirs = group, name, ours, theirs


def conv_case(c_in: int, c_out: int, hw: int, rng: np.random.Generator) -> Case:
    import torch

    x = rng.standard_normal((BATCH, c_in, hw, hw)).astype(np.float32)
    data_input = c_in <= 3
    layer = Conv2d(c_in, c_out, 3, padding=1)
    ref = torch.nn.Conv2d(c_in, c_out, 3, padding=1)
    xo = gc.tensor(x if data_input else channels_last(x), requires_grad=not data_input)
    xt = torch.tensor(x, requires_grad=not data_input)
    g = np.ones((BATCH, c_out, hw, hw), dtype=np.float32)
    go, gt = channels_last(g), torch.tensor(g)

    def ours() -> None:
        layer.zero_grad()
        xo.grad = None
        layer(xo).backward(go)

    def theirs() -> None:
        ref.zero_grad()
        xt.grad = None
        ref(xt).backward(gt)

    return Case("conv", f"Conv2d {c_in}→{c_out} 3×3 p1, {hw}×{hw}", ours, theirs)


def pool_case(c: int, hw: int, rng: np.random.Generator) -> Case:
    import torch

    x = rng.standard_normal((BATCH, c, hw, hw)).astype(np.float32)
    layer, ref = MaxPool2d(2), torch.nn.MaxPool2d(2)
    xo, xt = gc.tensor(channels_last(x), requires_grad=True), torch.tensor(x, requires_grad=True)
    g = np.ones((BATCH, c, hw // 2, hw // 2), dtype=np.float32)
    go, gt = channels_last(g), torch.tensor(g)

    def ours() -> None:
        xo.grad = None
        layer(xo).backward(go)

    def theirs() -> None:
        xt.grad = None
        ref(xt).backward(gt)

    return Case("pool", f"MaxPool2d 2×2, {c}×{hw}×{hw}", ours, theirs)


def bn_case(c: int, hw: int, rng: np.random.Generator) -> Case | None:
    import torch

    try:
        from gradcraft.nn import BatchNorm2d
    except ImportError:
        return None
    x = rng.standard_normal((BATCH, c, hw, hw)).astype(np.float32)
    layer, ref = BatchNorm2d(c).train(), torch.nn.BatchNorm2d(c).train()
    xo, xt = gc.tensor(channels_last(x), requires_grad=True), torch.tensor(x, requires_grad=True)
    g = rng.standard_normal(x.shape).astype(np.float32)
    go, gt = channels_last(g), torch.tensor(g)

    def ours() -> None:
        layer.zero_grad()
        xo.grad = None
        layer(xo).backward(go)

    def theirs() -> None:
        ref.zero_grad()
        xt.grad = None
        ref(xt).backward(gt)

    return Case("bn", f"BatchNorm2d train, {c}×{hw}×{hw}", ours, theirs)


def cross_entropy_case(classes: int, rng: np.random.Generator) -> Case | None:
    import torch

    try:
        from gradcraft.nn.functional import cross_entropy
    except ImportError:
        return None
    logits = rng.standard_normal((BATCH, classes)).astype(np.float32)
    labels = rng.integers(0, classes, BATCH)
    lo, lt = gc.tensor(logits, requires_grad=True), torch.tensor(logits, requires_grad=True)
    yt = torch.tensor(labels)

    def ours() -> None:
        lo.grad = None
        cross_entropy(lo, labels).backward()

    def theirs() -> None:
        lt.grad = None
        torch.nn.functional.cross_entropy(lt, yt).backward()

    return Case("ce", f"softmax-CE, {classes} classes", ours, theirs)


def measure(case: Case, repeats: int, warmup: int) -> tuple[float, float]:
    """Median ms of the two steps, timed alternately."""
    ours, theirs = [], []
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        case.ours()
        t1 = time.perf_counter()
        case.theirs()
        t2 = time.perf_counter()
        if i >= warmup:
            ours.append((t1 - t0) * 1e3)
            theirs.append((t2 - t1) * 1e3)
    return statistics.median(ours), statistics.median(theirs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for both frameworks (default 2)")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per row (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed repeats before timing")
    parser.add_argument("--only", choices=["conv", "pool", "bn", "ce"], nargs="*", help="run only these groups")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("PyTorch is needed for the comparison: pip install torch")
        return 1
    how = set_threads(args.threads)
    gc.manual_seed(0)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cases: list[Case | None] = [
        conv_case(1, 32, 28, rng),
        conv_case(32, 64, 28, rng),
        conv_case(3, 64, 32, rng),
        conv_case(64, 64, 32, rng),
        pool_case(32, 28, rng),
        pool_case(64, 14, rng),
        bn_case(32, 28, rng),
        bn_case(64, 32, rng),
    ]
    ce = [cross_entropy_case(10, rng), cross_entropy_case(1000, rng)]
    if None in ce:
        print("gradcraft.nn.functional.cross_entropy not found: softmax-CE rows skipped")
    cases += ce
    selected = [c for c in cases if c is not None and (not args.only or c.group in args.only)]

    load_before = os.getloadavg()
    print(f"# gradcraft {gc.__version__} | numpy {np.__version__} | torch {torch.__version__}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs | threads: {how}")
    print(f"# batch {BATCH}, float32, median of {args.repeats} interleaved repeats ({args.warmup} warm-up)")
    print(f"# load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print()
    header = f"| {'layer (forward + backward)':<36} | {'gradcraft ms':>12} | {'PyTorch ms':>10} | {'ratio':>6} |"
    print(header)
    print(f"|{'-' * 38}|{'-' * 13}:|{'-' * 11}:|{'-' * 7}:|")
    for case in selected:
        ours, theirs = measure(case, args.repeats, args.warmup)
        print(f"| {case.name:<36} | {ours:>12.2f} | {theirs:>10.2f} | {ours / theirs:>5.2f}× |", flush=True)
    load_after = os.getloadavg()
    print()
    print(f"# load average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
