"""Time to accuracy: wall time for a recipe to reach a validation accuracy, gradcraft vs PyTorch.

Both frameworks train the recipe's model from the same initial weights on the same batches:
gradcraft through the recipe's own :class:`~gradcraft.train.Trainer` (what ``gradcraft train``
runs, less its logging and diagnostics callbacks), PyTorch through a plain training loop with
the same optimizer, one-cycle schedule, label-smoothed loss and weight decay. The data pipeline
(loading, augmentation, standardization, the validation split) is gradcraft's, built twice
from the same seed, so both see identical images in the same order and pay the same for them;
only the framework differs. The two are interleaved epoch by epoch (alternating which goes
first), because the machine is shared and noisy, and each epoch's time covers training plus
the validation pass that tells whether the target was reached.

    python benchmarks/time_to_accuracy.py                               # fashion_cnn, 92 %
    python benchmarks/time_to_accuracy.py --recipe fashion_quick --target 0.90
    python benchmarks/time_to_accuracy.py --full --json runs/tta.json   # every epoch of the recipe

Output: one row per epoch (seconds, cumulative seconds, validation accuracy for each), then the
time to the target for each and the gradcraft / PyTorch ratio (lower is better).
"""

from __future__ import annotations

import os

# gradcraft's default (gradcraft/__init__.py): set before NumPy loads OpenBLAS, it is in force
# from the start rather than from gradcraft's first worker threads
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from compare_torch import other_load, set_threads


# ----------------------------------------------------------------------------- the PyTorch mirror
def torch_mirror(module: Any) -> Any:
    """A ``torch.nn`` module with the same structure and parameter names as gradcraft ``module``.

    Covers the layers the shipped recipes build (``block: mlp | cnn | resnet``).
    """
    import torch
    import torch.nn as tnn

    from gradcraft import nn

    class BasicBlock(tnn.Module):
        def __init__(self, block: Any) -> None:
            super().__init__()
            self.conv1, self.bn1 = torch_mirror(block.conv1), torch_mirror(block.bn1)
            self.conv2, self.bn2 = torch_mirror(block.conv2), torch_mirror(block.bn2)
            self.downsample = None if block.downsample is None else torch_mirror(block.downsample)

        def forward(self, x: Any) -> Any:
            out = torch.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return torch.relu(out + (x if self.downsample is None else self.downsample(x)))

    class GlobalAvgPool(tnn.Module):
        def forward(self, x: Any) -> Any:
            return x.mean(dim=(2, 3))

    m = module
    if isinstance(m, nn.Sequential):
        return tnn.Sequential(*(torch_mirror(child) for child in m))
    if isinstance(m, nn.BasicBlock):
        return BasicBlock(m)
    if isinstance(m, nn.Conv2d):
        return tnn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, bias=m.bias is not None)
    if isinstance(m, nn.Linear):
        return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, nn.BatchNorm2d):
        return tnn.BatchNorm2d(m.num_features, eps=m.eps, momentum=m.momentum)
    if isinstance(m, nn.BatchNorm1d):
        return tnn.BatchNorm1d(m.num_features, eps=m.eps, momentum=m.momentum)
    if isinstance(m, nn.MaxPool2d):
        return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding, dilation=m.dilation, ceil_mode=m.ceil_mode)
    if isinstance(m, nn.GlobalAvgPool2d):
        return GlobalAvgPool()
    if isinstance(m, nn.Dropout):
        return tnn.Dropout(m.p)
    if isinstance(m, nn.Flatten):
        return tnn.Flatten()
    if isinstance(m, nn.ReLU):
        return tnn.ReLU()
    raise NotImplementedError(f"no PyTorch mirror for gradcraft layer {type(m).__name__}")


def torch_copy(model: Any) -> Any:
    """The PyTorch mirror of ``model`` holding a copy of its weights and buffers."""
    import torch

    mirror = torch_mirror(model)
    state = {k: torch.from_numpy(np.array(v.numpy() if hasattr(v, "numpy") else v)) for k, v in model.state_dict().items()}
    mirror.load_state_dict(state, strict=True)
    return mirror


def torch_optimizer(cfg: Any, params: Any, lr: float) -> Any:
    """The recipe's ``optimizer`` section as a ``torch.optim`` optimizer."""
    import torch

    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)
    if cfg.name in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    raise SystemExit(f"the PyTorch loop here mirrors sgd, adam and adamw; the recipe uses {cfg.name}")


# ----------------------------------------------------------------------------- the two runs
class GradcraftRun:
    """The recipe's own trainer, driven one epoch at a time."""

    name = "gradcraft"

    def __init__(self, experiment: Any) -> None:
        self.trainer = experiment.build(callbacks=False)

    def epoch(self, number: int) -> float:
        self.trainer.fit(number)
        return float(self.trainer.history["val_accuracy"][-1])


class TorchRun:
    """The same model, optimizer, schedule and loss in PyTorch, fed by ``experiment``'s loaders."""

    name = "torch"

    def __init__(self, experiment: Any) -> None:
        import torch

        trainer = experiment.build(callbacks=False)  # same seed: same initial weights and batches
        r = experiment.recipe
        if r.schedule.name != "onecycle":
            raise SystemExit("the PyTorch loop here mirrors one-cycle recipes only")
        self.model = torch_copy(trainer.model)
        self.train_loader, self.val_loader = trainer.train_loader, trainer.val_loader
        lr = r.optimizer.scaled_lr(r.batch_size)
        self.optimizer = torch_optimizer(r.optimizer, self.model.parameters(), lr)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=lr,
            total_steps=r.epochs * len(self.train_loader),
            pct_start=r.schedule.pct_start,
            div_factor=r.schedule.div_factor,
            final_div_factor=r.schedule.final_div_factor,
        )
        self.loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=r.loss.label_smoothing)

    def epoch(self, number: int) -> float:
        import torch

        self.model.train()
        for x, y in self.train_loader:
            xb, yb = torch.from_numpy(x.numpy()), torch.from_numpy(y.numpy())
            out = self.model(xb)
            loss = self.loss_fn(out, yb)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            loss.item()  # the trainer reads the loss every step (NaN check, running metrics)
        self.model.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in self.val_loader:
                pred = self.model(torch.from_numpy(x.numpy())).argmax(1)
                correct += int((pred == torch.from_numpy(y.numpy())).sum())
                total += len(pred)
        return correct / total


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description="time to a validation accuracy, gradcraft vs PyTorch CPU")
    parser.add_argument("--recipe", default="fashion_cnn", help="shipped recipe name or YAML path")
    parser.add_argument("--target", type=float, default=0.92, help="validation accuracy to reach")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override, as in gradcraft train --set")
    parser.add_argument("--full", action="store_true", help="train every epoch, not only until both reach the target")
    parser.add_argument("--json", type=Path, help="also write the per-epoch numbers here")
    args = parser.parse_args()

    import torch

    from gradcraft.config import find_recipe, load_recipe
    from gradcraft.train.experiment import Experiment

    set_threads(args.threads)
    recipe_path = find_recipe(args.recipe)
    recipe = load_recipe(recipe_path, overrides=args.set)
    print(f"# {recipe.name}: target {args.target:.1%} validation accuracy, {args.threads} threads, "
          f"torch {torch.__version__}, numpy {np.__version__}; {other_load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [
            GradcraftRun(Experiment(recipe, Path(tmp) / "gc", quiet=True, recipe_dir=recipe_path.parent)),
            TorchRun(Experiment(recipe, Path(tmp) / "torch", quiet=True, recipe_dir=recipe_path.parent)),
        ]
        rows: list[dict[str, Any]] = []
        total = {run.name: 0.0 for run in runs}
        reached: dict[str, float | None] = {run.name: None for run in runs}
        print("| epoch | s (gc) | s (torch) | cumulative s (gc) | cumulative s (torch) | val acc (gc) | val acc (torch) |")
        print("|---|---|---|---|---|---|---|", flush=True)
        for epoch in range(1, recipe.epochs + 1):
            row: dict[str, Any] = {"epoch": epoch}
            for run in runs if epoch % 2 else runs[::-1]:
                start = time.perf_counter()
                acc = run.epoch(epoch)
                seconds = time.perf_counter() - start
                total[run.name] += seconds
                row[run.name] = {"seconds": seconds, "cumulative": total[run.name], "val_accuracy": acc}
                if reached[run.name] is None and acc >= args.target:
                    reached[run.name] = total[run.name]
            rows.append(row)
            g, t = row["gradcraft"], row["torch"]
            print(f"| {epoch} | {g['seconds']:.1f} | {t['seconds']:.1f} | {g['cumulative']:.1f} "
                  f"| {t['cumulative']:.1f} | {g['val_accuracy']:.2%} | {t['val_accuracy']:.2%} |", flush=True)
            if not args.full and all(v is not None for v in reached.values()):
                break
    for name, seconds in reached.items():
        when = "not reached" if seconds is None else f"{seconds:.0f} s ({seconds / 60:.1f} min)"
        print(f"# {name}: {args.target:.1%} validation accuracy: {when}")
    g_s, t_s = reached["gradcraft"], reached["torch"]
    ratio = g_s / t_s if g_s is not None and t_s is not None else math.nan
    epoch_ratio = total["gradcraft"] / total["torch"]
    print(f"# time-to-accuracy ratio gradcraft/torch: {ratio:.2f}x; "
          f"time per epoch ratio over {len(rows)} epochs: {epoch_ratio:.2f}x")
    print(f"# finished; {other_load().replace('at start', 'at end')}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"recipe": recipe.name, "target": args.target, "epochs": rows,
                                         "reached_s": reached, "ratio": ratio}, indent=1))


if __name__ == "__main__":
    main()
