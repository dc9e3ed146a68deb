"""Data-parallel speed-up on one machine: 1 process with T BLAS threads vs T processes with 1.

For each model (the fashion_mlp and fashion_cnn recipes' networks and optimizers) the script
times training steps at the same global batch:

* 1 process, T threads: forward, backward, optimizer step on the whole batch;
* T processes under ``mpiexec -n T``, 1 thread each: each takes batch / T examples, then the
  gradients are averaged (bucketed allreduce) and process 0's batch-norm buffers broadcast,
  exactly as :class:`gradcraft.distributed.DataParallel` does in a recipe run.

and prints a table with the median step time, the speed-up, and the time spent inside the
allreduce calls (which includes waiting for the slower process). Inputs are random arrays made
once, so the loader is not timed. Needs the ``mpi`` extra::

    python benchmarks/bench_distributed.py                       # both models, 2 processes
    python benchmarks/bench_distributed.py --models mlp --steps 50 --processes 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RECIPES = {"mlp": "fashion_mlp", "cnn": "fashion_cnn"}


def _worker(args: argparse.Namespace) -> None:
    """One process of a measurement; process 0 prints one JSON line."""
    from threadpoolctl import threadpool_limits

    import gradcraft
    from gradcraft import Tensor, nn
    from gradcraft.config import load_recipe
    from gradcraft.distributed import DataParallel, broadcast_module, init_communicator, local_batch_size
    from gradcraft.models import build_model
    from gradcraft.train.experiment import build_optimizer

    comm = init_communicator("auto")
    batch = local_batch_size(args.batch, comm.size)
    recipe = load_recipe(RECIPES[args.model])
    gradcraft.manual_seed(0)
    model = build_model(recipe.model, (1, 28, 28), 10)
    optimizer = build_optimizer(recipe.optimizer, model)
    loss_fn = nn.CrossEntropyLoss()
    parallel = DataParallel(comm) if comm.size > 1 else None
    broadcast_module(model, comm)
    rng = np.random.default_rng(comm.rank)
    x = Tensor(rng.standard_normal((batch, 1, 28, 28)).astype(np.float32))
    y = Tensor(rng.integers(0, 10, batch))
    times: list[float] = []
    reduce_seconds = 0.0
    with threadpool_limits(limits=args.threads):
        for step in range(args.warmup + args.steps):
            if step == args.warmup and parallel is not None:
                comm.barrier()
                reduce_seconds = parallel.buckets.allreduce_seconds
            started = time.perf_counter()
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            if parallel is not None:
                parallel.after_backward(model)
            optimizer.step()
            times.append(time.perf_counter() - started)
    timed = times[args.warmup :]
    if parallel is not None:
        reduce_seconds = parallel.buckets.allreduce_seconds - reduce_seconds
    if comm.rank == 0:
        print(
            json.dumps(
                {
                    "median_s": statistics.median(timed),
                    "mean_s": statistics.fmean(timed),
                    "allreduce_s": reduce_seconds / len(timed),
                    "buckets": 0 if parallel is None else len(parallel.buckets.buckets),
                    "parameters": int(sum(p.size for p in model.parameters())),
                }
            ),
            flush=True,
        )


def _run(command: list[str], threads: int) -> dict[str, Any]:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"benchmark worker failed:\n{done.stdout}\n{done.stderr}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=sorted(RECIPES))
    parser.add_argument("--batch", type=int, default=128, help="global batch size")
    parser.add_argument(
        "--processes", type=int, default=2, help="T: processes (and threads of the 1-process run)"
    )
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each setting, interleaved; medians")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="mlp", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    beside = Path(sys.executable).parent / "mpiexec"
    mpiexec = str(beside) if beside.is_file() else shutil.which("mpiexec")
    if mpiexec is None:
        raise SystemExit("mpiexec not found: pip install 'gradcraft[mpi]'")
    t = args.processes
    common = [f"--batch={args.batch}", f"--steps={args.steps}", f"--warmup={args.warmup}", "--worker"]
    print(
        f"global batch {args.batch}; median step time over {args.steps} steps (after {args.warmup}), "
        f"median of {args.repeats} interleaved run(s); {os.cpu_count()} cores"
    )
    print()
    print(
        f"| model | parameters | 1 process × 1 thread | 1 process × {t} threads | {t} processes × 1 thread "
        f"| speed-up vs {t} threads | in allreduce per step | allreduce share |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for model in args.models:
        me = [sys.executable, __file__, *common, f"--model={model}"]
        runs: dict[str, list[dict[str, Any]]] = {"single": [], "threads": [], "processes": []}
        for _ in range(args.repeats):
            runs["single"].append(_run([*me, "--threads=1"], threads=1))
            runs["threads"].append(_run([*me, f"--threads={t}"], threads=t))
            runs["processes"].append(_run([mpiexec, "-n", str(t), *me, "--threads=1"], threads=1))
        step = {k: statistics.median(r["median_s"] for r in v) for k, v in runs.items()}
        reduce = statistics.median(r["allreduce_s"] for r in runs["processes"])
        first = runs["processes"][0]
        print(
            f"| {RECIPES[model]} | {first['parameters']:,} | {1e3 * step['single']:.1f} ms "
            f"| {1e3 * step['threads']:.1f} ms | {1e3 * step['processes']:.1f} ms "
            f"| {step['threads'] / step['processes']:.2f}× | {1e3 * reduce:.2f} ms in {first['buckets']} "
            f"bucket(s) | {100 * reduce / step['processes']:.1f} % |",
            flush=True,
        )


if __name__ == "__main__":
    main()
