"""Per-op overhead on tiny tensors: gradcraft vs PyTorch eager (CPU), in one process run.

With 4×4 operands the arithmetic is free, so what is measured is what every op pays in Python
and dispatch: argument checks, creating the output tensor, recording the graph node, and, for
``backward``, walking the graph. That is the floor under a small model's step time. Each case
runs ``--calls`` times per timed block; blocks of the two frameworks are interleaved
(alternating which goes first) and the median is reported, because the machine is shared.

    python benchmarks/bench_overhead.py
    python benchmarks/bench_overhead.py --calls 5000 --repeats 9

Columns: microseconds per call for each framework and the gradcraft / PyTorch ratio (lower is
better).
"""

from __future__ import annotations

import os

# gradcraft's default (gradcraft/__init__.py): set before NumPy loads OpenBLAS, it is in force
# from the start rather than from gradcraft's first worker threads
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

import argparse
import platform
from collections.abc import Callable
from typing import Any

import numpy as np
from compare_torch import interleaved, other_load, set_threads


def cases(lib: str) -> dict[str, Callable[[], Any]]:
    """The timed calls, each a closure over 4×4 (or batch-4) operands of ``lib``."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((4, 4)).astype(np.float32) for _ in range(3)]
    if lib == "gradcraft":
        import gradcraft as fw
        from gradcraft import nn, optim

        a, b, c = (fw.tensor(x) for x in arrays)
        ga, gb = (fw.tensor(x, requires_grad=True) for x in arrays[:2])
        no_grad = fw.no_grad
    else:
        import torch as fw
        from torch import nn, optim

        a, b, c = (fw.from_numpy(x) for x in arrays)
        ga, gb = (fw.from_numpy(x.copy()).requires_grad_() for x in arrays[:2])
        no_grad = fw.no_grad
    fw.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))
    opt = optim.SGD(mlp.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    target = fw.tensor(np.array([0, 1, 2, 3]))

    def chain_backward() -> None:
        ((ga @ gb).relu() * gb).sum().backward()

    def mlp_step() -> None:
        opt.zero_grad()
        loss_fn(mlp(c), target).backward()
        opt.step()

    def mlp_eval() -> None:
        with no_grad():
            mlp(c)

    return {
        "add (no grad)": lambda: a + b,
        "matmul (no grad)": lambda: a @ b,
        "relu (no grad)": a.relu,
        "sum (no grad)": a.sum,
        "add (recorded)": lambda: ga + gb,
        "matmul (recorded)": lambda: ga @ gb,
        "matmul, relu, mul, sum + backward": chain_backward,
        "MLP 4-8-4 step (forward, backward, SGD)": mlp_step,
        "MLP 4-8-4 forward (no grad)": mlp_eval,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="per-op overhead on tiny tensors, gradcraft vs PyTorch")
    parser.add_argument("--calls", type=int, default=2000, help="calls per timed block")
    parser.add_argument("--repeats", type=int, default=7, help="timed blocks per framework")
    args = parser.parse_args()

    set_threads(1)
    import torch

    ours, theirs = cases("gradcraft"), cases("torch")
    print(f"# {platform.processor() or platform.machine()}, 1 thread, torch {torch.__version__}, "
          f"numpy {np.__version__}; {other_load()}")
    print("| call (4×4 operands) | µs (gc) | µs (torch) | ratio |")
    print("|---|---|---|---|")
    for name, ours_fn in ours.items():
        theirs_fn = theirs[name]

        def block(fn: Callable[[], Any]) -> Callable[[], None]:
            def run() -> None:
                for _ in range(args.calls):
                    fn()

            return run

        block(ours_fn)()
        block(theirs_fn)()  # warm-up
        g, t = interleaved(block(ours_fn), block(theirs_fn), args.repeats)
        g_us, t_us = 1e6 * g / args.calls, 1e6 * t / args.calls
        print(f"| {name} | {g_us:.1f} | {t_us:.1f} | {g_us / t_us:.2f}x |", flush=True)
    print(f"# finished; {other_load().replace('at start', 'at end')}")


if __name__ == "__main__":
    main()
