"""The ``gradcraft`` command: train a recipe, evaluate a run, predict, list recipes.

::

    gradcraft recipes                                   # the shipped recipes
    gradcraft train fashion_quick                       # train one (a name or a YAML path)
    gradcraft train my.yaml --set optimizer.lr=0.01 --set epochs=5 --out runs/try1
    gradcraft train --resume runs/try1                  # continue a stopped run exactly
    gradcraft eval runs/try1 [--tta]                    # test accuracy of its best checkpoint
    gradcraft eval runs/a runs/b runs/c --ensemble      # each model's accuracy and the ensemble's
    gradcraft predict runs/try1 shirt.png more.npy      # classify images
    gradcraft export runs/try1 --onnx model.onnx        # ONNX or PyTorch-format weights
    gradcraft diagnose fashion_mlp                      # the babysitting checklist, before training
    gradcraft ablate fashion_mlp --vary model.activation=relu,tanh --budget epochs=2
    gradcraft tune fashion_mlp --space recipes/spaces/fashion_mlp.yaml --trials 20   # hyperparameter search

Also ``python -m gradcraft ...``. Needs the ``cli`` extra: ``pip install "gradcraft[cli]"``.
Exit status: 0 on success, 2 for a bad recipe or usage, 1 for other errors (a missing file, a
corrupt checkpoint, a diverged run).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["main"]

_EPILOG = (
    "Start with `gradcraft recipes`, then `gradcraft train fashion_quick`. "
    "Every recipe key is described by `gradcraft recipes --fields`."
)


def _require_typer() -> Any:
    try:
        import typer
    except ImportError as err:
        raise SystemExit('The gradcraft command needs its extra: pip install "gradcraft[cli]"') from err
    return typer


def _default_run_dir(name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}"


def _read_inputs(
    files: list[Path], channels: int, size: tuple[int, int], invert: bool
) -> tuple[Any, list[str]]:
    """Images from PNG/JPEG files, .npy or .npz arrays, as uint8/float (N, C, H, W), with labels."""
    import numpy as np

    arrays: list[Any] = []
    names: list[str] = []
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: no such file")
        suffix = f.suffix.lower()
        if suffix in (".npy", ".npz"):
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                arr = loaded
            else:
                with loaded:
                    key = next((k for k in ("x", "x_test", "images", "arr_0") if k in loaded.files), None)
                    if key is None:
                        raise ValueError(
                            f"{f}: expected an array named x, x_test or images; found {loaded.files}"
                        )
                    arr = loaded[key]
            arr = np.asarray(arr)
            if arr.ndim == 2:
                arr = arr[None, None]
            elif arr.ndim == 3:
                arr = arr[:, None] if channels == 1 and arr.shape[0] != 1 else arr[None]
            if arr.ndim != 4:
                raise ValueError(
                    f"{f}: expected images (H, W), (N, H, W) or (N, C, H, W); got shape {arr.shape}"
                )
            arrays.append(arr)
            names += [f"{f.name}[{i}]" for i in range(arr.shape[0])] if arr.shape[0] > 1 else [f.name]
        else:
            try:
                from PIL import Image
            except ImportError as err:
                raise SystemExit(f'Reading {f.name} needs Pillow: pip install "gradcraft[images]"') from err
            with Image.open(f) as opened:
                img = opened.convert("L" if channels == 1 else "RGB").resize((size[1], size[0]))
                arr = np.asarray(img, dtype=np.uint8)
            arr = arr[None, None] if arr.ndim == 2 else arr.transpose(2, 0, 1)[None]
            arrays.append(arr)
            names.append(f.name)
    x = np.concatenate(
        [a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32) for a in arrays]
    )
    if invert:
        x = 1.0 - x
    return x, names


def _evaluate_ensemble(typer: Any, run_dirs: list[Path], checkpoint: str, combine: str, tta: bool) -> None:
    """``gradcraft eval RUN… --ensemble``: a table of each member's and the ensemble's accuracy."""
    import numpy as np

    from gradcraft.data import DataLoader
    from gradcraft.ensemble import COMBINE_RULES, Ensemble, load_members

    if tta:
        raise typer.BadParameter("--tta cannot be combined with --ensemble")
    if checkpoint not in ("best", "last", "snapshots"):
        raise typer.BadParameter(f"--checkpoint must be best, last or snapshots, not {checkpoint!r}")
    if combine not in COMBINE_RULES:
        raise typer.BadParameter(f"--combine must be {', '.join(COMBINE_RULES)}, not {combine!r}")
    members, test, _ = load_members(run_dirs, checkpoint)
    if len(members) < 2:
        raise typer.BadParameter(
            "--ensemble needs at least two members: give several run directories, or "
            "--checkpoint snapshots for a run with several snapshots"
        )
    ens = Ensemble(members, combine=combine)
    loader = DataLoader(test, batch_size=1000, generator=np.random.default_rng(0))
    result = ens.evaluate(loader)
    print(
        f"ensemble of {len(members)} models on the test split of {run_dirs[0]} ({result.n} examples), "
        f"combining by {combine}:"
    )
    print(result.table())


def _build_app() -> Any:
    typer = _require_typer()
    app = typer.Typer(
        name="gradcraft",
        help="Train, evaluate and use neural networks described by YAML recipes (gradcraft, on NumPy).",
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode="markdown",
        epilog=_EPILOG,
    )

    @app.command()
    def train(
        recipe: str = typer.Argument(
            None,
            help="A recipe: a YAML file or the name of a shipped one (see 'gradcraft recipes'). "
            "Not needed with --resume.",
        ),
        set_: list[str] = typer.Option(  # noqa: B008 - typer declares options in defaults
            [], "--set", help="Override a recipe key: --set optimizer.lr=0.01 (repeatable; values are YAML)."
        ),
        out: Path = typer.Option(  # noqa: B008 - typer declares options in defaults
            None, "--out", help="Run directory to create (default: runs/NAME-DATE-TIME)."
        ),
        resume: Path = typer.Option(  # noqa: B008 - typer declares options in defaults
            None, "--resume", help="Continue the run in this directory from its last checkpoint."
        ),
        quiet: bool = typer.Option(
            False, "--quiet", "-q", help="Print only warnings, errors and the result."
        ),
        progress: str = typer.Option(
            None, "--progress", help="auto | bar | line | none (default: the recipe's logging.progress)."
        ),
    ) -> None:
        """Train a recipe; results, checkpoints, plots and report.md go to the run directory.

        Examples: `gradcraft train fashion_quick` (a shipped recipe),
        `gradcraft train my.yaml --set optimizer.lr=0.01 --out runs/lr01` (your own, one key changed).

        Stopping a run (Ctrl-C, a crash, a killed machine) loses at most the work since the last
        checkpoint: `gradcraft train --resume RUN_DIR` continues it and ends with exactly the
        weights an uninterrupted run would have.
        """
        from gradcraft.config import find_recipe, load_recipe
        from gradcraft.train.experiment import Experiment

        if progress is not None and progress not in ("auto", "bar", "line", "none"):
            raise typer.BadParameter(f"--progress must be auto, bar, line or none, not {progress!r}")
        if resume is not None:
            if recipe is not None or set_ or out is not None:
                raise typer.BadParameter(
                    "--resume continues a run with its own recipe.yaml; drop RECIPE, --set and --out"
                )
            exp = Experiment.from_run_dir(resume, quiet=quiet, progress=progress)
            results = exp.train(resume=True)
        else:
            if recipe is None:
                raise typer.BadParameter("give a RECIPE (a YAML file or a shipped name), or --resume RUN_DIR")
            loaded = load_recipe(recipe, set_)
            run_dir = out if out is not None else _default_run_dir(loaded.name)
            exp = Experiment(
                loaded,
                run_dir,
                quiet=quiet,
                progress=progress,
                recipe_dir=find_recipe(recipe).resolve().parent,
            )
            results = exp.train()
        if quiet and exp.is_main and "test_accuracy" in results:  # once per data-parallel run
            print(f"test_accuracy {results['test_accuracy']:.4f}  run {exp.run_dir}")

    @app.command("eval")
    def evaluate(
        run_dirs: list[Path] = typer.Argument(  # noqa: B008 - typer declares options in defaults
            ..., help="A run directory written by 'gradcraft train' (several with --ensemble)."
        ),
        tta: bool = typer.Option(False, "--tta", help="Average predictions over the recipe's tta views."),
        checkpoint: str = typer.Option(
            "best", "--checkpoint", help="best | last | snapshots (every snapshot of a run; with --ensemble)"
        ),
        ensemble: bool = typer.Option(
            False, "--ensemble", help="Evaluate the runs together: each member's accuracy and the ensemble's."
        ),
        combine: str = typer.Option(
            "mean_prob", "--combine", help="With --ensemble: mean_prob | mean_logit | vote."
        ),
    ) -> None:
        """Test-split accuracy, per-class accuracy and confusion matrix of a run's checkpoint.

        With --ensemble: several runs (`gradcraft eval RUN1 RUN2 RUN3 --ensemble`), or the
        snapshots of one run (`gradcraft eval RUN --ensemble --checkpoint snapshots`), predict
        together; prints each member's accuracy and the ensemble's.
        """
        from gradcraft.train.experiment import Experiment

        if ensemble:
            _evaluate_ensemble(typer, run_dirs, checkpoint, combine, tta)
            return
        if len(run_dirs) > 1:
            raise typer.BadParameter("several run directories are evaluated together with --ensemble")
        if checkpoint not in ("best", "last"):
            raise typer.BadParameter(
                f"--checkpoint must be best or last, not {checkpoint!r} (snapshots: with --ensemble)"
            )
        run_dir = run_dirs[0]
        exp = Experiment.from_run_dir(run_dir, quiet=True)
        result = exp.evaluate(tta=tta, which=checkpoint)
        classes = exp.data.classes if exp.data else []
        print(f"checkpoint: {result['checkpoint']}{'  (with test-time augmentation)' if tta else ''}")
        print(
            f"test accuracy {100 * result['test_accuracy']:.2f}%  loss {result['test_loss']:.4f}"
            + (f"  top-5 {100 * result['test_top5_accuracy']:.2f}%" if "test_top5_accuracy" in result else "")
        )
        width = max((len(c) for c in classes), default=5)
        print("per-class accuracy:")
        for name, acc in zip(classes, result["test_per_class_accuracy"]):
            print(f"  {name:<{width}}  {100 * acc:6.2f}%")
        cm = result["test_confusion_matrix"]
        print("confusion matrix (rows: true, columns: predicted):")
        for row in cm:
            print("  " + " ".join(f"{int(v):5d}" for v in row))

    @app.command()
    def predict(
        run_dir: Path = typer.Argument(..., help="A run directory written by 'gradcraft train'."),  # noqa: B008 - typer declares options in defaults
        files: list[Path] = typer.Argument(  # noqa: B008 - typer declares options in defaults
            ..., help="Images (PNG/JPEG, resized and converted to the model's channels) or .npy/.npz arrays."
        ),
        top: int = typer.Option(3, "--top", help="How many classes to list per input."),
        tta: bool = typer.Option(False, "--tta", help="Average predictions over the recipe's tta views."),
        invert: bool = typer.Option(
            False,
            "--invert",
            help="Invert pixel values (Fashion-MNIST is a light object on a dark background).",
        ),
        checkpoint: str = typer.Option("best", "--checkpoint", help="best | last"),
    ) -> None:
        """Classify inputs with a run's checkpoint; prints the top classes with probabilities."""
        import numpy as np

        from gradcraft.train.experiment import Experiment

        if checkpoint not in ("best", "last"):
            raise typer.BadParameter(f"--checkpoint must be best or last, not {checkpoint!r}")
        exp = Experiment.from_run_dir(run_dir, quiet=True)
        exp.prepare(which=checkpoint)
        assert exp.data is not None
        shape = exp.data.input_shape
        if len(shape) != 3:
            raise typer.BadParameter(f"this run's model takes inputs of shape {shape}, not images")
        x, names = _read_inputs(list(files), shape[0], (shape[1], shape[2]), invert)
        probs = exp.predict_arrays(x, tta=tta)
        classes = exp.data.classes
        k = max(1, min(top, probs.shape[1]))
        for name, p in zip(names, probs):
            order = np.argsort(-p)[:k]
            ranked = ", ".join(f"{classes[i]} {100 * p[i]:.1f}%" for i in order)
            print(f"{name}: {classes[order[0]]}  ({ranked})")

    @app.command()
    def diagnose(
        recipe: str = typer.Argument(..., help="A recipe file or the name of a shipped one."),
        set_: list[str] = typer.Option(  # noqa: B008
            [], "--set", help="Override a recipe key (repeatable)."
        ),
        out: Path = typer.Option(None, "--out", help="Write diagnosis.md and its plots here."),  # noqa: B008
        check: list[str] = typer.Option(  # noqa: B008
            [], "--check", help="Only these: data, initial_loss, activations, gradients, lr_range, overfit."
        ),
        quick: bool = typer.Option(False, "--quick", help="Fewer steps, for a first look."),
    ) -> None:
        """Run the lectures' checklist on a recipe before training it; exit 1 if a problem is found."""
        from gradcraft.diagnostics import ALL_CHECKS, run_diagnose, worst_verdict

        report = run_diagnose(recipe, set_, out, checks=check or ALL_CHECKS, quick=quick)
        raise typer.Exit(1 if worst_verdict(report.findings) == "problem" else 0)

    @app.command()
    def ablate(
        recipe: str = typer.Argument(..., help="A recipe file or the name of a shipped one."),
        vary: list[str] = typer.Option(  # noqa: B008
            [], "--vary", help="KEY=V1,V2,... (repeatable; every combination is run)."
        ),
        budget: str = typer.Option(None, "--budget", help="epochs=N,subset=M,... applied to every variant."),
        set_: list[str] = typer.Option([], "--set", help="Override a recipe key (repeatable)."),  # noqa: B008
        out: Path = typer.Option(None, "--out", help="Directory of the ablation report."),  # noqa: B008
        target: float = typer.Option(None, "--target", help="Validation accuracy for 'epochs to target'."),
    ) -> None:
        """Train variants of a recipe under the same seed and budget; one report with a table and curves."""
        from gradcraft.diagnostics import run_ablation

        run_ablation(recipe, vary, budget, out, overrides=set_, target_accuracy=target)

    @app.command()
    def recipes(
        fields: bool = typer.Option(False, "--fields", help="Describe every recipe key with its default."),
    ) -> None:
        """List the shipped recipes (use a name with 'gradcraft train NAME')."""
        from gradcraft.config import explain, load_recipe, shipped_recipes

        if fields:
            print(explain())
            return
        shipped = shipped_recipes()
        if not shipped:
            print("no shipped recipes found")
            return
        width = max(len(n) for n in shipped)
        for name, path in shipped.items():
            try:
                description = load_recipe(path).description.strip().splitlines()[0]
            except Exception as err:  # a broken recipe file should not hide the others
                description = f"(invalid: {str(err).splitlines()[0]})"
            print(f"{name:<{width}}  {description}")
        print("\ntrain one with: gradcraft train NAME   (copy and edit the YAML to make your own)")

    from gradcraft.io.export_command import register_export_command

    register_export_command(app)
    from gradcraft.tune.command import register_tune_command

    register_tune_command(app)
    return app


def main(argv: list[str] | None = None) -> int:
    """Run the ``gradcraft`` command line; returns the exit status.

    Usage errors are reported by typer (status 2); the errors a user can fix — a bad recipe, a
    missing file, a corrupt or foreign checkpoint, a diverged run — are printed as one
    ``error: ...`` message without a traceback.
    """
    _require_typer()
    from gradcraft.config import RecipeError
    from gradcraft.io.checkpoint import CheckpointError
    from gradcraft.models import ModelBuildError
    from gradcraft.train.experiment import RunError
    from gradcraft.train.trainer import NonFiniteLossError

    app = _build_app()
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        app(args=args, prog_name="gradcraft")
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except (RecipeError, ModelBuildError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (NonFiniteLossError, CheckpointError, RunError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; continue with 'gradcraft train --resume RUN_DIR'", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
