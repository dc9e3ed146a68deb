"""Hyperparameter search on Optuna: what ``gradcraft tune RECIPE --space SPACE`` runs.

A search space (YAML, :mod:`gradcraft.tune.space`) names recipe keys and their distributions
(log-uniform, uniform, integer, categorical); :func:`tune` samples them with random search,
grid search or TPE, trains each trial with the recipe machinery under a budget, prunes hopeless
trials from their per-epoch validation accuracy, aborts trials whose loss explodes, and keeps
the study in a storage (SQLite by default) so it can be continued or shared by workers. A
space with ``stages`` runs coarse-to-fine. The run directory gets ``trials.csv``,
``best_recipe.yaml``, plots and ``report.md``.

Needs the ``tune`` extra for Optuna (``pip install "gradcraft[tune]"``); the space parsing and
narrowing in :mod:`gradcraft.tune.space` do not.
"""

from gradcraft.tune.callback import TrialReporter, TrialStopped
from gradcraft.tune.search import (
    PRUNERS,
    SAMPLERS,
    StageResult,
    TrialOutcome,
    TuneError,
    TuneResult,
    check_space,
    open_storage,
    require_optuna,
    run_trial,
    trial_recipe,
    tune,
)
from gradcraft.tune.space import (
    Categorical,
    FloatRange,
    IntRange,
    SearchSpace,
    SpaceError,
    Stage,
    load_space,
    narrow,
    narrow_space,
    parse_space,
)

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "Categorical",
    "FloatRange",
    "IntRange",
    "SearchSpace",
    "SpaceError",
    "Stage",
    "StageResult",
    "TrialOutcome",
    "TrialReporter",
    "TrialStopped",
    "TuneError",
    "TuneResult",
    "check_space",
    "load_space",
    "narrow",
    "narrow_space",
    "open_storage",
    "parse_space",
    "require_optuna",
    "run_trial",
    "trial_recipe",
    "tune",
]
