"""How fast is an optimizer step? ``python -m gradcraft.optim.benchmark``

Times Adam (and SGD with momentum) on the parameter set of the 784-512-256-10 MLP
(535,818 float32 values), and a whole training step of that MLP at batch 128, comparing:

* ``numpy naive``   — the textbook per-parameter update (``m = b1*m + (1-b1)*g`` ...), which
  allocates a temporary array per operation (the plain NumPy baseline);
* ``per-parameter`` — gradcraft with ``flatten_params=False``: in place, per parameter
  (compiled when the ``fast`` extra is installed);
* ``flat numpy``    — one cache-blocked NumPy update over the flat buffer (compiled kernels off);
* ``flat``          — gradcraft's default: with the ``fast`` extra, one compiled pass per
  parameter (:mod:`gradcraft.ops.kernels.optim`), otherwise the same as ``flat numpy``;
* ``torch``         — ``torch.optim`` (default ``foreach`` implementation, one thread) on the
  same shapes, when PyTorch is installed.

Variants are interleaved (each round times every variant once) and medians are reported, so
a neighbour taking a core slows all of them alike; the load average is printed with the table.
Set the BLAS thread count with ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` before running.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

SHAPES = [(784, 512), (512,), (512, 256), (256,), (256, 10), (10,)]


def _naive_adam(params: list[np.ndarray], grads: list[np.ndarray]) -> Callable[[], None]:
    """The lectures' Adam, one parameter at a time, allocating temporaries."""
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    t = [0]

    def step() -> None:
        t[0] += 1
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * (g * g)
            mt = m[i] / (1 - b1 ** t[0])
            vt = v[i] / (1 - b2 ** t[0])
            params[i] -= lr * mt / (np.sqrt(vt) + eps)

    return step


def _naive_sgd(params: list[np.ndarray], grads: list[np.ndarray]) -> Callable[[], None]:
    """SGD with momentum in the lectures' velocity form, allocating temporaries."""
    v = [np.zeros_like(p) for p in params]

    def step() -> None:
        for i, g in enumerate(grads):
            v[i] = 0.9 * v[i] - 0.01 * g
            params[i] += v[i]

    return step


def _gradcraft(
    name: str, flatten: bool, params: list[Any], grads: list[np.ndarray], compiled: bool = True
) -> Callable[[], None]:
    from gradcraft import optim
    from gradcraft.ops import accel

    kwargs = {"lr": 1e-3} if name == "Adam" else {"lr": 0.01, "momentum": 0.9}
    opt = getattr(optim, name)(params, flatten_params=flatten, **kwargs)
    for p, g in zip(params, grads):
        p.grad = g

    def step() -> None:
        with accel.use_numba(compiled and accel.numba_enabled()):
            opt.step()

    return step


def _torch(name: str, arrays: list[np.ndarray], grads: list[np.ndarray]) -> Callable[[], None] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)  # NumPy's element-wise ufuncs run on one core too
    params = [torch.tensor(a, requires_grad=True) for a in arrays]
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g)
    kwargs = {"lr": 1e-3} if name == "Adam" else {"lr": 0.01, "momentum": 0.9}
    opt = getattr(torch.optim, name)(params, **kwargs)

    def step() -> None:
        opt.step()

    return step


def _interleaved(variants: dict[str, Callable[[], None]], rounds: int, inner: int) -> dict[str, float]:
    """Median seconds per call of each variant, timing them in turn ``rounds`` times."""
    for fn in variants.values():  # warm up: allocate state, fault pages in
        for _ in range(3):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            samples[name].append((time.perf_counter() - start) / inner)
    return {k: statistics.median(v) for k, v in samples.items()}


def bench_optimizer(name: str, rounds: int) -> dict[str, float]:
    """Median time of one ``step()`` for each variant on the MLP parameter set."""
    from gradcraft.nn import Parameter

    rng = np.random.default_rng(0)
    init = [(rng.standard_normal(s) * 0.05).astype(np.float32) for s in SHAPES]
    grads = [(rng.standard_normal(s) * 1e-2).astype(np.float32) for s in SHAPES]
    naive = _naive_adam if name == "Adam" else _naive_sgd
    variants: dict[str, Callable[[], None]] = {
        "numpy naive": naive([a.copy() for a in init], grads),
        "per-parameter": _gradcraft(name, False, [Parameter(a.copy()) for a in init], grads),
        "flat numpy": _gradcraft(name, True, [Parameter(a.copy()) for a in init], grads, compiled=False),
        "flat": _gradcraft(name, True, [Parameter(a.copy()) for a in init], grads),
    }
    theirs = _torch(name, init, grads)
    if theirs is not None:
        variants["torch"] = theirs
    return _interleaved(variants, rounds, inner=5)


def bench_training_step(rounds: int, batch: int = 128) -> dict[str, float]:
    """Median time of forward + backward + Adam step of the MLP at ``batch``, with the naive
    NumPy Adam and with gradcraft's flat Adam, and of forward + backward alone."""
    import gradcraft as gc
    from gradcraft import optim
    from gradcraft.nn import Parameter

    rng = np.random.default_rng(0)
    x = gc.tensor(rng.standard_normal((batch, 784)).astype(np.float32))
    y = rng.integers(0, 10, batch)
    rows = np.arange(batch)

    def model() -> list[Any]:
        r = np.random.default_rng(1)
        return [
            Parameter((r.standard_normal(s) * (math.sqrt(2 / s[0]) if len(s) == 2 else 0)).astype(np.float32))
            for s in SHAPES
        ]

    def forward_backward(params: list[Any]) -> None:
        for p in params:
            p.grad = None
        w1, b1, w2, b2, w3, b3 = params
        logits = ((x @ w1 + b1).relu() @ w2 + b2).relu() @ w3 + b3
        loss = -logits.log_softmax(axis=1)[rows, y].mean()
        loss.backward()

    p_fb, p_naive, p_flat = model(), model(), model()
    naive_state = {}

    def naive_step() -> None:
        forward_backward(p_naive)
        if "step" not in naive_state:
            arrays = [p.data for p in p_naive]
            naive_state["grads"] = [np.empty_like(a) for a in arrays]
            naive_state["step"] = _naive_adam(arrays, naive_state["grads"])
        for buf, p in zip(naive_state["grads"], p_naive):
            buf[...] = p.grad
        naive_state["step"]()

    opt = optim.Adam(p_flat, lr=1e-3)

    def flat_step() -> None:
        forward_backward(p_flat)
        opt.step()

    variants = {
        "forward+backward": lambda: forward_backward(p_fb),
        "+ numpy naive Adam": naive_step,
        "+ gradcraft Adam": flat_step,
    }
    return _interleaved(variants, rounds, inner=2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Optimizer step timings on the 784-512-256-10 MLP.")
    parser.add_argument("--rounds", type=int, default=60, help="interleaved rounds (median reported)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    print(
        "optimizer step on the MLP parameter set (535,818 float32 values), median of", args.rounds, "rounds"
    )
    print(f"{'':14s} {'Adam (ms)':>10s} {'vs naive':>9s}   {'SGD+mom (ms)':>12s} {'vs naive':>9s}")
    adam = bench_optimizer("Adam", args.rounds)
    sgd = bench_optimizer("SGD", args.rounds)
    for k in adam:
        print(
            f"{k:14s} {adam[k] * 1e3:10.3f} {adam['numpy naive'] / adam[k]:8.2f}x   "
            f"{sgd[k] * 1e3:12.3f} {sgd['numpy naive'] / sgd[k]:8.2f}x"
        )
    step = bench_training_step(max(10, args.rounds // 3))
    fb = step["forward+backward"]
    print("\ntraining step, batch 128 (median ms)      step   optimizer share")
    for k, v in step.items():
        share = "" if k == "forward+backward" else f"{(v - fb) / v:10.0%}"
        print(f"{k:38s} {v * 1e3:8.3f} {share}")
    print(
        f"\nload average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} (2 = both cores busy)"
    )


if __name__ == "__main__":
    main()
