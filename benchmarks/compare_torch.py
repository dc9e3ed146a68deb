"""gradcraft vs PyTorch (CPU) on the same training work, in one process run.

For each model (the MLP, CNN and residual recipes' architectures) and batch size, both
frameworks train on the same Fashion-MNIST-shaped batches with Adam (lr 1e-3) and the same
thread count. The two are interleaved (one timed block of gradcraft, one of PyTorch, repeated)
and medians are reported, because the machine is shared and noisy. Peak resident memory is
measured in a fresh subprocess per framework, since both share this one.

    python benchmarks/compare_torch.py                    # all models, batch 32/128/512
    python benchmarks/compare_torch.py --models mlp --batch-sizes 128 --repeats 7
    python benchmarks/compare_torch.py --threads 1

Columns: ms per training step (forward + backward + optimizer step) with the ratio of the
medians and the interquartile range of the per-round ratios (each round times the two
frameworks back to back, so that range shows how much one run's ratio can be trusted), the
epoch time that implies for 60,000 images, evaluation throughput (images/s, no_grad forward),
peak RSS (MiB), and the gradcraft / PyTorch ratio of each (lower is better for time and
memory; for throughput, higher is better).
"""

from __future__ import annotations

import os

# gradcraft's default (gradcraft/__init__.py): set before NumPy loads OpenBLAS, it is in force
# from the start rather than from gradcraft's first worker threads
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

import argparse
import functools
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

TRAIN_SIZE = 60_000


def set_threads(n: int, with_torch: bool = True) -> None:
    """Same BLAS / intra-op thread count for both frameworks (torch is imported only if asked)."""
    from threadpoolctl import threadpool_limits

    if with_torch:
        import torch

        torch.set_num_threads(n)
    threadpool_limits(n)


# ----------------------------------------------------------------------------- models
def gradcraft_model(name: str) -> Any:
    from gradcraft import nn

    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)
        )
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10),
        )
    if name == "resnet":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.BasicBlock(32, 32), nn.BasicBlock(32, 64, stride=2), nn.BasicBlock(64, 128, stride=2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10),
        )
    raise ValueError(f"Expected a model name in mlp, cnn, resnet. Received: {name!r}")


def torch_model(name: str) -> Any:
    import torch.nn as tnn

    class Block(tnn.Module):
        def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.shortcut = tnn.Identity()
            if stride != 1 or cin != cout:
                self.shortcut = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x: Any) -> Any:
            out = self.bn1(self.conv1(x)).relu()
            return (self.bn2(self.conv2(out)) + self.shortcut(x)).relu()

    if name == "mlp":
        return tnn.Sequential(
            tnn.Flatten(), tnn.Linear(784, 512), tnn.ReLU(), tnn.Linear(512, 256), tnn.ReLU(), tnn.Linear(256, 10)
        )
    if name == "cnn":
        return tnn.Sequential(
            tnn.Conv2d(1, 32, 3, padding=1), tnn.BatchNorm2d(32), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(32, 64, 3, padding=1), tnn.BatchNorm2d(64), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Flatten(), tnn.Linear(3136, 128), tnn.ReLU(), tnn.Linear(128, 10),
        )
    if name == "resnet":
        return tnn.Sequential(
            tnn.Conv2d(1, 32, 3, padding=1, bias=False), tnn.BatchNorm2d(32), tnn.ReLU(),
            Block(32, 32), Block(32, 64, 2), Block(64, 128, 2),
            tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(128, 10),
        )
    raise ValueError(f"Expected a model name in mlp, cnn, resnet. Received: {name!r}")


# ----------------------------------------------------------------------------- steps
def make_batches(batch: int, count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        (rng.standard_normal((batch, 1, 28, 28)).astype(np.float32), rng.integers(0, 10, batch))
        for _ in range(count)
    ]


def gradcraft_runner(name: str, batches: list) -> tuple[Callable[[int], None], Callable[[], None]]:
    import gradcraft as gc
    from gradcraft import nn, optim
    from gradcraft.ops import accel

    accel.tune_allocator()  # as Trainer.fit does
    gc.manual_seed(0)
    model = gradcraft_model(name)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    data = [(gc.tensor(x), gc.tensor(y)) for x, y in batches]
    return step_and_eval(model, opt, nn.CrossEntropyLoss(), data, gc.no_grad)


def torch_runner(name: str, batches: list) -> tuple[Callable[[int], None], Callable[[], None]]:
    import torch

    torch.manual_seed(0)
    model = torch_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in batches]
    return step_and_eval(model, opt, torch.nn.CrossEntropyLoss(), data, torch.no_grad)


def step_and_eval(
    model: Any, opt: Any, loss_fn: Any, data: list, no_grad: Callable[[], Any]
) -> tuple[Callable[[int], None], Callable[[], None]]:
    """The same training step and evaluation pass for either framework (their APIs agree)."""

    def train_step(i: int) -> None:
        x, y = data[i % len(data)]
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    def evaluate() -> None:
        model.eval()
        with no_grad():
            for x, _ in data:
                model(x)
        model.train()

    return train_step, evaluate


#: Pause before each framework's warm-up call, for the other's worker threads to go to sleep.
SETTLE_SECONDS = 0.02


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved_rounds(
    ours: Callable[[], None],
    theirs: Callable[[], None],
    repeats: int,
    warm_ours: Callable[[], None] | None = None,
    warm_theirs: Callable[[], None] | None = None,
) -> tuple[list[float], list[float]]:
    """Seconds of each timed block of each framework, by round, alternating which goes first.

    Before each timed block the other framework's idle worker threads (OpenMP in PyTorch,
    OpenBLAS in NumPy) are given :data:`SETTLE_SECONDS` to stop spinning, then an untimed
    warm-up call of the same framework (``warm_*``, default: one more block) wakes its own, so
    each is timed as in a process of its own. Without the pause PyTorch's OpenMP workers,
    which spin for milliseconds after each parallel region, shared the two cores with the
    first steps of the next block: the MLP's step at batch 128 took 4.1 ms after PyTorch's
    block against 2.9 ms alone (a one-step warm-up lasts 3 ms).
    """
    runs = ((ours, warm_ours or ours), (theirs, warm_theirs or theirs))
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(repeats):
        for which in (0, 1) if r % 2 == 0 else (1, 0):
            fn, warm = runs[which]
            time.sleep(SETTLE_SECONDS)
            warm()
            times[which].append(timed(fn))
    return times


def interleaved(
    ours: Callable[[], None],
    theirs: Callable[[], None],
    repeats: int,
    warm_ours: Callable[[], None] | None = None,
    warm_theirs: Callable[[], None] | None = None,
) -> tuple[float, float]:
    """Median seconds of each framework's blocks (:func:`interleaved_rounds`)."""
    mine, other = interleaved_rounds(ours, theirs, repeats, warm_ours, warm_theirs)
    return statistics.median(mine), statistics.median(other)


def ratio_spread(ours: list[float], theirs: list[float]) -> str:
    """The interquartile range of the per-round ratios ours/theirs, as "q1–q3".

    The two blocks of a round run back to back, so a slow phase of the machine slows both and
    cancels in their ratio; the spread of these ratios is how far one run's ratio can be
    trusted (the table's ratio column is the ratio of the medians).
    """
    ratios = sorted(a / b for a, b in zip(ours, theirs))
    if len(ratios) < 2:
        return f"{ratios[0]:.2f}" if ratios else "-"
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return f"{q1:.2f}–{q3:.2f}"


def peak_rss_mib(framework: str, model: str, batch: int, steps: int, threads: int) -> float:
    """Train ``steps`` steps in a fresh process and return its peak RSS in MiB."""
    cmd = [sys.executable, __file__, "--rss-child", framework, model, str(batch), str(steps), str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["rss_mib"])


def rss_child(framework: str, model: str, batch: int, steps: int, threads: int) -> None:
    set_threads(threads, with_torch=framework == "torch")
    batches = make_batches(batch, 4)
    runner = gradcraft_runner if framework == "gradcraft" else torch_runner
    step, _ = runner(model, batches)
    for i in range(steps):
        step(i)
    print(json.dumps({"rss_mib": _peak_rss_kib() / 1024}))


def _peak_rss_kib() -> float:
    """This process's peak resident set size in KiB.

    VmHWM belongs to the process's own address space; ``ru_maxrss`` is not used because Linux
    carries it over from the forking parent (which here has both frameworks loaded).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def other_load() -> str:
    load1, _, _ = os.getloadavg()
    return f"load average {load1:.2f} on {os.cpu_count()} CPUs at start"


def main() -> None:
    parser = argparse.ArgumentParser(description="gradcraft vs PyTorch CPU training benchmark")
    parser.add_argument("--models", default="mlp,cnn,resnet")
    parser.add_argument("--batch-sizes", default="32,128,512")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per framework")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    args = parser.parse_args()

    set_threads(args.threads)
    import torch

    print(f"# {platform.processor() or platform.machine()}, {args.threads} threads, "
          f"torch {torch.__version__}, numpy {np.__version__}; {other_load()}")
    header = ("| model | batch | step ms (gc) | step ms (torch) | ratio | per-round ratios (IQR) | epoch s (gc) "
              "| epoch s (torch) | eval img/s (gc) | eval img/s (torch) | ratio | peak MiB (gc) | peak MiB (torch) "
              "| ratio |")
    print(header)
    print("|" + "---|" * 14)
    for model in args.models.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            steps = max(2, args.steps if batch <= 128 else args.steps // 2)
            batches = make_batches(batch, 4)
            g_step, g_eval = gradcraft_runner(model, batches)
            t_step, t_eval = torch_runner(model, batches)
            g_step(0)
            t_step(0)  # warm-up: allocations, first-call paths

            def block(step: Callable[[int], None], steps: int = steps) -> Callable[[], None]:
                return lambda: [step(i) for i in range(steps)]

            g_blocks, t_blocks = interleaved_rounds(
                block(g_step), block(t_step), args.repeats, functools.partial(g_step, 0), functools.partial(t_step, 0)
            )
            g_ms = 1000 * statistics.median(g_blocks) / steps
            t_ms = 1000 * statistics.median(t_blocks) / steps
            # one pass over the 4 batches takes 1-5 ms for the MLP: time `steps` passes per block,
            # as many blocks as for training, or thread wake-ups decide the ratio
            g_ev, t_ev = interleaved(block(lambda _, f=g_eval: f()), block(lambda _, f=t_eval: f()), args.repeats)
            n_eval = batch * len(batches) * steps
            epoch = TRAIN_SIZE / batch / 1000
            if args.no_memory:
                g_mem = t_mem = float("nan")
            else:
                g_mem = peak_rss_mib("gradcraft", model, batch, 3, args.threads)
                t_mem = peak_rss_mib("torch", model, batch, 3, args.threads)
            print(
                f"| {model} | {batch} | {g_ms:.2f} | {t_ms:.2f} | {g_ms / t_ms:.2f}x "
                f"| {ratio_spread(g_blocks, t_blocks)} | {g_ms * epoch:.1f} "
                f"| {t_ms * epoch:.1f} | {n_eval / g_ev:,.0f} | {n_eval / t_ev:,.0f} | {t_ev / g_ev:.2f}x "
                f"| {g_mem:.0f} | {t_mem:.0f} | {g_mem / t_mem:.2f}x |",
                flush=True,
            )
    print(f"# finished; {other_load().replace('at start', 'at end')}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-child":
        rss_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
