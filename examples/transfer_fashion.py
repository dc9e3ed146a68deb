"""Transfer learning on Fashion-MNIST: pretrain on classes 0-4, learn classes 5-9 from 1 % of their data.

Step 1 trains the small CNN of ``recipes/transfer/pretrain_classes_0_4.yaml`` on the ~27,000
training images of classes 0-4. Step 2 learns classes 5-9 from 300 of their images
(``recipes/transfer/target_classes_5_9.yaml``: 240 to train on, 60 for model selection) in
five ways, all with the same network, optimizer, schedule and epochs:

* ``linear_probe`` — feature extraction: the pretrained network frozen, a new output layer trained;
* ``finetune_top`` — the output layer and the block below it trained, the rest frozen;
* ``finetune_all`` — every layer trained, the pretrained ones at 0.1x the learning rate;
* ``gradual`` — a linear probe first, then one more block unfrozen every 5 epochs;
* ``scratch`` — the same network from a random initialisation.

Each variant is a run directory under ``--out`` (report, curves, checkpoints); the table of
test accuracies is printed and written to ``OUT/summary.md``. Runs that already finished are
reused, so an interrupted demonstration continues where it stopped.

Run: ``python examples/transfer_fashion.py --out runs/transfer`` (about 5-10 minutes on 2 CPU
cores). A quick check that everything works: ``--pretrain-epochs 1 --pretrain-subset 2000
--epochs 2``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gradcraft.config import load_recipe, recipes_dir
from gradcraft.train.experiment import Experiment

VARIANTS: dict[str, list[str]] = {
    "linear_probe": ["transfer.strategy=linear_probe"],
    "finetune_top": ["transfer.strategy=finetune_top", "transfer.top_blocks=1"],
    "finetune_all": ["transfer.strategy=finetune_all"],
    "gradual": ["transfer.strategy=linear_probe", "transfer.unfreeze_every=5"],
    "scratch": ["transfer.source=null"],
}


def run(recipe: Path, overrides: list[str], out: Path, quiet: bool) -> dict[str, Any]:
    """Train a recipe into ``out`` (or read the results of an earlier, finished run there)."""
    done = out / "results.json"
    if done.is_file():
        print(f"{out}: finished earlier, reusing its results")
        return json.loads(done.read_text())
    exp = Experiment(load_recipe(recipe, overrides), out, quiet=quiet, recipe_dir=recipe.parent)
    return exp.train(resume=(out / "checkpoints" / "last.json").is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/transfer"), help="directory of the runs")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="(default: the recipe's, 3)")
    parser.add_argument("--pretrain-subset", type=int, default=None, help="pretrain on the first N images")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of each variant (default: 30)")
    parser.add_argument("--fraction", type=float, default=None, help="share of classes 5-9 (default: 0.01)")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="which to run"
    )
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args()

    recipes = recipes_dir() / "transfer"
    pretrain_sets = []
    if args.pretrain_epochs is not None:
        pretrain_sets.append(f"epochs={args.pretrain_epochs}")
    if args.pretrain_subset is not None:
        pretrain_sets.append(f"data.subset={args.pretrain_subset}")
    source = args.out / "pretrain"
    print("== step 1: pretraining on classes 0-4")
    pre = run(recipes / "pretrain_classes_0_4.yaml", pretrain_sets, source, args.quiet)
    print(f"pretrained network: {100 * pre['test_accuracy']:.2f}% test accuracy on classes 0-4")

    target_sets = [f"transfer.source={source.resolve()}"]
    if args.epochs is not None:
        target_sets.append(f"epochs={args.epochs}")
    if args.fraction is not None:
        target_sets.append(f"data.train_fraction={args.fraction}")
    rows = []
    for name in args.variants:
        print(f"== step 2: classes 5-9, {name}")
        result = run(
            recipes / "target_classes_5_9.yaml", target_sets + VARIANTS[name], args.out / name, args.quiet
        )
        strategy = "-"
        record = args.out / name / "transfer.json"
        if record.is_file():
            strategy = json.loads(record.read_text())["strategy"]
        rows.append((name, strategy, result))

    lines = [
        f"Fashion-MNIST classes 5-9 from {100 * (args.fraction or 0.01):g} % of their training data, after "
        f"pretraining on classes 0-4 ({100 * pre['test_accuracy']:.2f}% test accuracy there).",
        "",
        "| variant | strategy at the start | best val acc | test acc | wall time |",
        "|---|---|---|---|---|",
    ]
    for name, strategy, result in rows:
        lines.append(
            f"| {name} | {strategy} | {100 * result.get('best_val_accuracy', float('nan')):.2f}% | "
            f"**{100 * result['test_accuracy']:.2f}%** | {result['wall_time_s']:.0f} s |"
        )
    text = "\n".join(lines) + "\n"
    (args.out / "summary.md").write_text(text, encoding="utf-8")
    print()
    print(text)


if __name__ == "__main__":
    main()
