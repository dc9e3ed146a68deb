"""gradcraft on CuPy vs PyTorch on CUDA: the same training work on the same GPU, in one process.

The models are those of ``compare_torch.py`` (the CNN and residual recipes' architectures, and
the MLP), trained with Adam (lr 1e-3) on the same random Fashion-MNIST-shaped batches, which
live on the device before timing starts. The two frameworks are interleaved (a timed block of
each, repeated) and medians are reported; every timed block ends with a device
synchronisation, so queued kernels are counted.

    python benchmarks/compare_torch_gpu.py                           # cnn, resnet at 128 and 512
    python benchmarks/compare_torch_gpu.py --models mlp,cnn --batch-sizes 256 --repeats 9
    python benchmarks/compare_torch_gpu.py --device cpu --steps 2    # the harness itself, no GPU

Columns: images/s of training (forward + backward + Adam step) and of evaluation (no-grad
forward), each with the gradcraft / PyTorch ratio of times (lower is better), and the peak
device memory each framework's caching allocator held (CuPy's memory pool, PyTorch's
``max_memory_reserved``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from compare_torch import gradcraft_model, interleaved, make_batches, step_and_eval, torch_model


def synchronizer(framework: str, device: str) -> Callable[[], None]:
    """A function that waits for the framework's queued device work (a no-op on the CPU)."""
    if device == "cpu":
        return lambda: None
    if framework == "torch":
        import torch

        return torch.cuda.synchronize
    import cupy

    return lambda: cupy.cuda.get_current_stream().synchronize()


def reset_memory(device: str) -> None:
    """Return both allocators' cached blocks and restart PyTorch's peak counter (CUDA only)."""
    if device == "cpu":
        return
    import gc as python_gc

    import cupy
    import torch

    python_gc.collect()
    cupy.get_default_memory_pool().free_all_blocks()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def peak_memory_mib(framework: str, device: str) -> float:
    """Peak device memory held by the framework's allocator since :func:`reset_memory` (NaN on
    the CPU). CuPy's pool keeps every block it took, so its size is its peak."""
    if device == "cpu":
        return float("nan")
    if framework == "torch":
        import torch

        return torch.cuda.max_memory_reserved() / 2**20
    import cupy

    return cupy.get_default_memory_pool().total_bytes() / 2**20


def runner(framework: str, name: str, batches: list, device: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """(train one step on the next batch, evaluate every batch), both synchronised."""
    if framework == "torch":
        import torch

        torch.manual_seed(0)
        model = torch_model(name).to(device)
        opt: Any = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn: Any = torch.nn.CrossEntropyLoss()
        data = [(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)) for x, y in batches]
        no_grad: Any = torch.no_grad
    else:
        import gradcraft as gc
        from gradcraft import nn, optim

        gc.manual_seed(0)
        model = gradcraft_model(name).to(device)
        opt = optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = nn.CrossEntropyLoss()
        data = [(gc.tensor(x).to(device), gc.tensor(y).to(device)) for x, y in batches]
        no_grad = gc.no_grad
    sync = synchronizer(framework, device)
    step, evaluate = step_and_eval(model, opt, loss_fn, data, no_grad)
    position = [0]

    def train_step() -> None:
        step(position[0])
        position[0] += 1
        sync()

    def evaluate_all() -> None:
        evaluate()
        sync()

    return train_step, evaluate_all


def describe(device: str) -> str:
    if device == "cpu":
        return "device cpu (harness check only)"
    import cupy
    import torch

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    cudnn = "cuDNN " + str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "no cuDNN"
    return f"{name}; CuPy {cupy.__version__}, torch {torch.__version__} ({cudnn})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="gradcraft (CuPy) vs PyTorch (CUDA) training benchmark")
    parser.add_argument("--models", default="cnn,resnet")
    parser.add_argument("--batch-sizes", default="128,512")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu to check the harness")
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="timed blocks per framework")
    args = parser.parse_args(argv)

    print(f"# {describe(args.device)}")
    print("| model | batch | train img/s (gc) | train img/s (torch) | time ratio | eval img/s (gc) "
          "| eval img/s (torch) | time ratio | peak MiB (gc) | peak MiB (torch) |")
    print("|" + "---|" * 10)
    for model in args.models.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            print(row(model, batch, args.device, args.steps, args.repeats), flush=True)


def row(model: str, batch: int, device: str, steps: int, repeats: int) -> str:
    """One table row: both frameworks on ``model`` at ``batch`` (their memory freed first)."""
    reset_memory(device)
    batches = make_batches(batch, 4)
    g_step, g_eval = runner("gradcraft", model, batches, device)
    t_step, t_eval = runner("torch", model, batches, device)

    def block(step: Callable[[], None]) -> Callable[[], None]:
        return lambda: [step() for _ in range(steps)]

    # each timed block follows an untimed one of the same framework (caches, allocator, autotuning)
    g_train, t_train = interleaved(block(g_step), block(t_step), repeats)
    g_ev, t_ev = interleaved(g_eval, t_eval, repeats)
    n_train, n_eval = batch * steps, batch * len(batches)
    return (
        f"| {model} | {batch} | {n_train / g_train:,.0f} | {n_train / t_train:,.0f} "
        f"| {g_train / t_train:.2f}x | {n_eval / g_ev:,.0f} "
        f"| {n_eval / t_ev:,.0f} | {g_ev / t_ev:.2f}x "
        f"| {peak_memory_mib('gradcraft', device):.0f} | {peak_memory_mib('torch', device):.0f} |"
    )

if __name__ == "__main__":
    main()
