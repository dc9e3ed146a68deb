"""The ``gradcraft tune`` command (registered on the CLI app by :func:`register_tune_command`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

__all__ = ["register_tune_command"]


def register_tune_command(app: Any) -> None:
    """Add ``tune`` to a typer app."""
    import typer

    @app.command()
    def tune(
        recipe: str = typer.Argument(..., help="A recipe file or the name of a shipped one."),
        space: Path = typer.Option(  # noqa: B008 - typer declares options in defaults
            ..., "--space", help="Search-space YAML: recipe keys and their distributions (and stages)."
        ),
        trials: int = typer.Option(
            None,
            "--trials",
            help="Finished trials to reach, earlier ones included (default 20; not with stages).",
        ),
        out: Path = typer.Option(  # noqa: B008 - typer declares options in defaults
            None,
            "--out",
            help="Run directory (default runs/tune-NAME); the same directory continues the study.",
        ),
        sampler: str = typer.Option("random", "--sampler", help="random | grid | tpe"),
        pruner: str = typer.Option("median", "--pruner", help="median | halving | none"),
        workers: int = typer.Option(1, "--workers", help="Local worker processes sharing the study."),
        storage: str = typer.Option(
            None, "--storage", help="Optuna storage URL (default sqlite:///OUT/study.db), or journal:PATH."
        ),
        set_: list[str] = typer.Option(  # noqa: B008 - typer declares options in defaults
            [], "--set", help="Override a recipe key (repeatable); kept in the best recipe."
        ),
        budget: str = typer.Option(
            None, "--budget", help="epochs=N,subset=M,... for every trial (not kept in the best recipe)."
        ),
        study: str = typer.Option(None, "--study", help="Study name (default tune-NAME)."),
        plots: bool = typer.Option(True, "--plots/--no-plots", help="Write PNG plots (needs matplotlib)."),
    ) -> None:
        """Search a recipe's hyperparameters; writes trials.csv, best_recipe.yaml, plots and report.md.

        Example: `gradcraft tune fashion_mlp --space recipes/spaces/fashion_mlp.yaml`
        (a coarse-to-fine search: the space file has stages; results in runs/tune-fashion_mlp).
        Run the same command again to continue an interrupted search, or with a larger --trials
        to extend it. See docs/tuning.md.
        """
        from gradcraft.tune.search import PRUNERS, SAMPLERS
        from gradcraft.tune.search import tune as run_tune

        if sampler not in SAMPLERS:
            raise typer.BadParameter(f"--sampler must be {', '.join(SAMPLERS)}, not {sampler!r}")
        if pruner not in PRUNERS:
            raise typer.BadParameter(f"--pruner must be {', '.join(PRUNERS)}, not {pruner!r}")
        if workers < 1:
            raise typer.BadParameter(f"--workers must be at least 1, not {workers}")
        try:
            run_tune(
                recipe,
                space,
                out,
                trials=trials,
                sampler=sampler,
                pruner=pruner,
                workers=workers,
                storage=storage,
                overrides=set_,
                budget=budget,
                study_name=study,
                plots=plots,
            )
        except ImportError as err:
            print(f"error: {err}", file=sys.stderr)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            print("interrupted; run the same command again to continue the search", file=sys.stderr)
            raise typer.Exit(130) from None
