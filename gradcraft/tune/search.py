"""``tune``: a hyperparameter search over a recipe, on Optuna — what ``gradcraft tune`` runs.

Each trial samples a value for every key of the search space, applies them (and the budget)
to the recipe and trains it in the worker's own process with the recipe machinery
(:class:`~gradcraft.train.experiment.Experiment`, quietly: no TensorBoard, plots, reports,
checkpoints or monitor). Its value is the best validation accuracy of its epochs; the test
split is never touched. :class:`~gradcraft.tune.callback.TrialReporter` reports every epoch,
so the pruner can stop hopeless trials, and aborts trials whose loss explodes.

The study lives in a storage: by default an SQLite file ``OUT/study.db``, so a search that
crashed or was stopped continues where it was when the same command runs again (finished
trials are kept; ``--trials`` is the total). A database URL (``postgresql://…``) lets workers
on several machines join one study; ``journal:PATH`` uses Optuna's journal file storage.
``workers`` local processes (spawned) share the study.

A space with ``stages`` runs coarse-to-fine: each stage is its own study
(``NAME.STAGE``), and a later stage searches the ranges narrowed around the previous stage's
best trials (:func:`~gradcraft.tune.space.narrow`), starting with the previous best.
"""

from __future__ import annotations

import contextlib
import copy
import math
import multiprocessing
import os
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from gradcraft.train.experiment import RunError
from gradcraft.tune.callback import TrialReporter, TrialStopped
from gradcraft.tune.space import (
    SearchSpace,
    SpaceError,
    Stage,
    load_space,
    narrow_space,
    parse_space,
    yaml_text,
)

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "StageResult",
    "TrialOutcome",
    "TuneError",
    "TuneResult",
    "check_space",
    "open_storage",
    "require_optuna",
    "run_trial",
    "trial_recipe",
    "tune",
]

SAMPLERS = ("random", "grid", "tpe")
PRUNERS = ("median", "halving", "none")
_QUIET_LOGGING = {
    "tensorboard": False,
    "histograms": False,
    "plots": False,
    "report": False,
    "progress": "none",
}


class TuneError(RunError):
    """A search that cannot start or continue (names the run directory or study)."""


def require_optuna() -> Any:
    """The ``optuna`` module.

    Raises:
        ImportError: naming the ``tune`` extra when Optuna is missing.
    """
    try:
        import optuna
    except ImportError as err:
        raise ImportError('Hyperparameter search needs Optuna: pip install "gradcraft[tune]"') from err
    return optuna


def open_storage(url: str) -> Any:
    """An Optuna storage for ``url``.

    * ``sqlite:///PATH`` and other SQLAlchemy URLs (``postgresql://user:pw@host/db``): an
      ``RDBStorage`` with a heartbeat, so trials of a crashed worker are marked failed;
    * ``journal:PATH``: a ``JournalStorage`` on an append-only file (no database needed).

    Raises:
        ValueError: for a URL Optuna cannot open.
    """
    optuna = require_optuna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = url.removeprefix("journal:")
            if not path:
                raise ValueError(f"Expected journal:PATH. Received: --storage {url!r}")
            return JournalStorage(JournalFileBackend(path))
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180, **kwargs)
        except Exception as err:
            raise ValueError(
                "Expected a database URL (sqlite:///DIR/study.db, postgresql://USER:PASSWORD@HOST/DB) "
                f"or journal:PATH. Received: --storage {url!r} ({type(err).__name__}: {err})"
            ) from err


# ============================================================================ recipes
def _set_keys(data: dict[str, Any], params: Mapping[str, Any], budget: Sequence[str]) -> dict[str, Any]:
    from gradcraft.config import apply_overrides

    return apply_overrides(data, [f"{k}={yaml_text(v)}" for k, v in params.items()] + list(budget))


def trial_recipe(
    base: Mapping[str, Any], params: Mapping[str, Any], budget: Sequence[str] = (), name: str | None = None
) -> Any:
    """The recipe of one trial: ``base`` (a recipe dict) with ``params`` and the ``budget``
    overrides applied, run quietly (no TensorBoard, plots, report, progress, monitor or
    checkpoints: a trial keeps only ``recipe.yaml`` and ``metrics.jsonl``).

    Raises:
        RecipeError: if a value is rejected by the recipe schema.
    """
    from gradcraft.config import parse_recipe

    data = _set_keys(copy.deepcopy(dict(base)), params, budget)
    if name is not None:
        data["name"] = name
    data.setdefault("logging", {}).update(_QUIET_LOGGING)
    callbacks = data.setdefault("callbacks", {})
    callbacks.setdefault("monitor", {})["enabled"] = False
    callbacks.setdefault("checkpoint", {}).update(
        {"save_best": False, "save_last": False, "every_steps": None}
    )
    return parse_recipe(data, source=f"trial {name or ''}".strip())


def best_recipe(base: Mapping[str, Any], params: Mapping[str, Any], note: str = "") -> Any:
    """``base`` with the best trial's ``params``: no budget, no quiet settings — the recipe
    to train at full length."""
    from gradcraft.config import parse_recipe

    data = _set_keys(copy.deepcopy(dict(base)), params, ())
    data["name"] = f"{data.get('name', 'run')}-tuned"
    if note:
        data["description"] = f"{data.get('description') or ''} [{note}]".strip()
    return parse_recipe(data, source="best recipe")


def check_space(space: SearchSpace, base: Mapping[str, Any], budget: Sequence[str] = ()) -> None:
    """Apply each axis's extreme values (and every choice) to the recipe and validate it.

    Raises:
        SpaceError: naming the space file and key, with the recipe schema's complaint (an
            unknown key with the closest valid one, a value out of the field's range, …), or
            when a key is also set by the budget.
    """
    from gradcraft.config import RecipeError

    budget_keys = {b.partition("=")[0] for b in budget}
    for key, dist in space.params.items():
        clash = [b for b in budget_keys if b == key or b.startswith(key + ".") or key.startswith(b + ".")]
        if clash:
            raise SpaceError(
                f"{space.source}: {key}: Expected searched keys apart from the budget's. Received: "
                f"{key} is also set by the budget ({', '.join(sorted(clash))})"
            )
        probes = list(dist.choices) if hasattr(dist, "choices") else [dist.low, dist.high]
        for value in probes:
            try:
                trial_recipe(base, {key: value}, budget, name="check")
            except RecipeError as err:
                problems = "; ".join(
                    p.removeprefix("trial check: ").removeprefix("--set ") for p in err.problems
                )
                raise SpaceError(
                    f"{space.source}: {key}: Expected a recipe key that accepts the searched values. "
                    f"Received: {key}={yaml_text(value)}, which the recipe rejects: {problems}"
                ) from None


# ============================================================================ one trial
@dataclass
class TrialOutcome:
    """What one training run of a trial gave.

    Attributes:
        state: ``complete``, ``pruned`` or ``exploded``.
        values: validation accuracy of every epoch run.
        reason: why it stopped (the trainer's stop reason when complete).
        seconds: wall time.
    """

    state: str
    values: list[float]
    reason: str = ""
    seconds: float = 0.0

    @property
    def best(self) -> float | None:
        finite = [v for v in self.values if math.isfinite(v)]
        return max(finite) if finite else None

    @property
    def best_epoch(self) -> int | None:
        best = self.best
        return None if best is None else self.values.index(best) + 1


@contextlib.contextmanager
def _blas_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without it, BLAS uses its default thread count
        yield
        return
    with threadpool_limits(limits=threads):
        yield


def run_trial(
    recipe: Any,
    run_dir: str | os.PathLike[str],
    trial: Any,
    *,
    recipe_dir: Path | None = None,
    explode_factor: float = 3.0,
    pruner: str = "",
    threads: int | None = None,
) -> TrialOutcome:
    """Train ``recipe`` in ``run_dir`` (replaced if it exists) for one trial.

    Args:
        recipe: the trial's recipe (see :func:`trial_recipe`).
        run_dir: the trial's directory.
        trial: what the :class:`TrialReporter` reports to (an Optuna trial).
        recipe_dir: directory relative dataset paths are resolved against.
        explode_factor: abort when the loss exceeds this × the initial loss.
        pruner: the pruner's name, for the stop reason.
        threads: BLAS threads (``recipe.threads`` wins; None: leave as is).

    Returns:
        The outcome; a NaN/infinite loss counts as ``exploded``. Other errors propagate.
    """
    from gradcraft.io.checkpoint import atomic_write_text
    from gradcraft.train import NonFiniteLossError
    from gradcraft.train.experiment import Experiment

    run = Path(run_dir)
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    atomic_write_text(run / "recipe.yaml", recipe.to_yaml())
    reporter = TrialReporter(trial, explode_factor=explode_factor, pruner=pruner)
    started = time.perf_counter()
    state, reason = "complete", ""
    with _blas_threads(recipe.threads or threads):
        exp = Experiment(recipe, run, quiet=True, recipe_dir=recipe_dir)
        trainer = exp.build()
        trainer.callbacks = sorted([*trainer.callbacks, reporter], key=lambda c: c.order)
        try:
            trainer.fit(recipe.epochs)
            reason = trainer.stop_reason
        except TrialStopped as stop:
            state, reason = stop.state, stop.reason
            trainer.stop_reason = reason
            for cb in trainer.callbacks:  # as the trainer does when it stops a run itself
                cb.on_train_end(trainer)
        except NonFiniteLossError as err:
            kind = "NaN" if math.isnan(err.value) else "infinite"
            state = "exploded"
            reason = f"loss became {kind} at step {err.step} (epoch {err.epoch}, lr {err.lr:.3g})"
    return TrialOutcome(state, list(reporter.values), reason, time.perf_counter() - started)


# ============================================================================ workers
@dataclass
class _Job:
    """Everything a worker process needs to run trials of one stage (picklable)."""

    recipe: dict[str, Any]
    recipe_dir: str | None
    space: SearchSpace
    budget: list[str]
    storage: str
    study_name: str
    stage: str
    sampler: str
    pruner: str
    seed: int
    trial_dir: str
    target: int
    explode_factor: float = 3.0
    threads: int | None = None
    workers: int = 1
    verbose: bool = True


def _make_sampler(job: _Job, worker: int, existing: int) -> Any:
    optuna = require_optuna()
    seed = int(np.random.SeedSequence([job.seed, worker, existing]).generate_state(1)[0])
    if job.sampler == "grid":
        return optuna.samplers.GridSampler(job.space.grid_space(), seed=seed)
    if job.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, job.target // 3)))
    return optuna.samplers.RandomSampler(seed=seed)


def _make_pruner(name: str) -> Any:
    optuna = require_optuna()
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def _finished_states() -> tuple[Any, ...]:
    optuna = require_optuna()
    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _run_worker(
    job: _Job, worker: int, quota: int, storage: Any = None, log: Callable[[str], None] | None = print
) -> None:
    """Run up to ``quota`` trials of ``job``'s stage (fewer when the study reaches its target)."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage if storage is not None else open_storage(job.storage)
    say = log or (lambda msg: None)
    existing = len(optuna.load_study(study_name=job.study_name, storage=storage).trials)
    study = optuna.load_study(
        study_name=job.study_name,
        storage=storage,
        sampler=_make_sampler(job, worker, existing),
        pruner=_make_pruner(job.pruner),
    )
    tag = f"{socket.gethostname()}:{os.getpid()}"
    prefix = f"[worker {worker}] " if job.workers > 1 else ""
    base_dir = Path(job.recipe_dir) if job.recipe_dir else None

    def objective(trial: Any) -> float:
        params = {key: dist.suggest(trial, key) for key, dist in job.space.params.items()}
        trial.set_user_attr("worker", tag)
        name = f"{job.recipe.get('name', 'run')}-{job.stage}-{trial.number}"
        try:
            recipe = trial_recipe(job.recipe, params, job.budget, name=name)
            outcome = run_trial(
                recipe,
                Path(job.trial_dir) / f"{trial.number:04d}",
                trial,
                recipe_dir=base_dir,
                explode_factor=job.explode_factor,
                pruner=job.pruner,
                threads=job.threads,
            )
        except Exception as err:
            trial.set_user_attr("state", "failed")
            trial.set_user_attr("reason", f"{type(err).__name__}: {err}".splitlines()[0][:300])
            say(f"{prefix}{job.stage} #{trial.number} failed: {type(err).__name__}: {err}")
            raise
        best = outcome.best
        for key, value in (
            ("state", outcome.state),
            ("reason", outcome.reason),
            ("val_accuracy", [round(v, 6) for v in outcome.values]),
            ("best_val_accuracy", best),
            ("best_epoch", outcome.best_epoch),
            ("seconds", round(outcome.seconds, 2)),
        ):
            trial.set_user_attr(key, value)
        shown = " ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in trial.params.items())
        acc = "–" if best is None else f"{100 * best:.2f}%"
        detail = "" if outcome.state == "complete" else f"  {outcome.state}: {outcome.reason}"
        say(
            f"{prefix}{job.stage} #{trial.number}  {shown}  val {acc} "
            f"({len(outcome.values)} epoch(s), {outcome.seconds:.0f} s){detail}"
        )
        if outcome.state != "complete" or best is None:
            raise optuna.TrialPruned(outcome.reason)
        return best

    study.optimize(
        objective,
        n_trials=quota,
        catch=(Exception,),
        callbacks=[optuna.study.MaxTrialsCallback(job.target, states=_finished_states())],
    )


def _worker_main(job: _Job, worker: int, quota: int) -> None:
    """Entry point of a spawned worker process."""
    _run_worker(job, worker, quota, log=(lambda msg: print(msg, flush=True)) if job.verbose else None)


def _run_stage(
    job: _Job, remaining: int, workers: int, storage: Any, log: Callable[[str], None] | None
) -> None:
    if workers == 1:
        _run_worker(job, 0, remaining, storage, log)
        return
    quotas = [remaining // workers + (1 if w < remaining % workers else 0) for w in range(workers)]
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker_main, args=(job, w, q), name=f"gradcraft-tune-{w}")
        for w, q in enumerate(quotas)
        if q > 0
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        raise
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise TuneError(
            f"{len(bad)} worker process(es) of stage '{job.stage}' exited with status {bad}; the finished "
            f"trials are kept in {job.storage}: run the same command again to continue"
        )


# ============================================================================ results
@dataclass
class StageResult:
    """One stage of a search.

    Attributes:
        stage: the stage's settings.
        study_name: its Optuna study.
        space: the ranges it searched (narrowed for a later stage).
        budget: the overrides applied to its trials.
        trials: Optuna ``FrozenTrial`` s of the stage, in trial order.
        narrowed_from: for a later stage: the previous stage's name, top_k and widen.
    """

    stage: Stage
    study_name: str
    space: SearchSpace
    budget: list[str]
    trials: list[Any]
    narrowed_from: dict[str, Any] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One dict per trial, sorted by validation accuracy (best first; none last)."""
        rows = []
        for t in self.trials:
            attrs = t.user_attrs
            state = t.state.name.lower()
            if state in ("pruned", "fail"):
                state = attrs.get("state", "failed" if state == "fail" else state)
            params = {}
            for key, dist in self.space.params.items():
                if key in t.params:
                    params[key] = dist.to_value(t.params[key])
            rows.append(
                {
                    "stage": self.stage.name,
                    "trial": t.number,
                    "state": state,
                    "val_accuracy": attrs.get("best_val_accuracy"),
                    "best_epoch": attrs.get("best_epoch"),
                    "epochs": len(attrs.get("val_accuracy") or []),
                    "seconds": attrs.get("seconds"),
                    "worker": attrs.get("worker", ""),
                    "params": params,
                    "reason": attrs.get("reason", ""),
                }
            )
        rows.sort(key=lambda r: (r["val_accuracy"] is None, -(r["val_accuracy"] or 0.0), r["trial"]))
        return rows

    def best(self) -> dict[str, Any] | None:
        """The best complete trial's row, or None."""
        done = [r for r in self.rows() if r["state"] == "complete" and r["val_accuracy"] is not None]
        return done[0] if done else None

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows():
            out[r["state"]] = out.get(r["state"], 0) + 1
        return out


@dataclass
class TuneResult:
    """A finished search.

    Attributes:
        name: the study's name.
        out_dir: the run directory.
        storage: the storage URL.
        stages: one :class:`StageResult` per stage.
        best: the best trial's row (of the last stage with a complete trial).
        best_recipe: the path of ``best_recipe.yaml``.
        report: the path of ``report.md``.
        resumed: whether earlier trials were found and kept.
        settings: sampler, pruner, workers, recipe and space sources (for the report).
    """

    name: str
    out_dir: Path
    storage: str
    stages: list[StageResult]
    best: dict[str, Any] | None = None
    best_recipe: Path | None = None
    report: Path | None = None
    resumed: bool = False
    settings: dict[str, Any] = field(default_factory=dict)


# ============================================================================ the search
def _top_params(stage: StageResult, top_k: int | None) -> tuple[list[dict[str, Any]], int]:
    done = [r for r in stage.rows() if r["state"] == "complete" and r["val_accuracy"] is not None]
    if not done:
        raise TuneError(
            f"stage '{stage.stage.name}' has no complete trial to narrow the ranges around "
            f"({stage.counts()}); widen its budget or the ranges"
        )
    k = top_k if top_k is not None else max(2, math.ceil(len(stage.trials) / 4))
    top = done[:k]
    return [r["params"] for r in top], len(top)


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".") or "(all)"]


def _check_same(study: Any, what: str, stored_key: str, current: Any, out: Path) -> None:
    stored = study.user_attrs.get(stored_key)
    if stored is not None and stored != current:
        diff = _differences(stored, current) if isinstance(stored, dict) else [stored_key]
        raise TuneError(
            f"{out}: study '{study.study_name}' was started with a different {what} (differs in: "
            f"{', '.join(diff[:8])}); run the same recipe, space and budget to continue it, or choose "
            "another --out"
        )


def _trials_of(study: Any) -> list[Any]:
    return sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)


def tune(
    recipe: Any,
    space: str | os.PathLike[str] | SearchSpace,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    trials: int | None = None,
    sampler: str = "random",
    pruner: str = "median",
    workers: int = 1,
    storage: str | None = None,
    overrides: Sequence[str] = (),
    budget: str | Sequence[str] | None = None,
    study_name: str | None = None,
    explode_factor: float = 3.0,
    plots: bool = True,
    log: Callable[[str], None] | None = print,
) -> TuneResult:
    """Search hyperparameters of ``recipe`` over ``space``; write the table, the best recipe,
    plots and ``report.md`` into ``out_dir``.

    Args:
        recipe: a recipe file or shipped name, a dict or a ``Recipe``.
        space: a search-space YAML file or a :class:`SearchSpace`.
        out_dir: the run directory (default ``runs/tune-NAME``); running again with the same
            directory (and storage) continues the study.
        trials: finished trials (complete or pruned) to reach, counting earlier ones; only for
            a space without stages (default 20).
        sampler: ``random`` (Bergstra & Bengio 2012), ``grid`` or ``tpe``.
        pruner: ``median`` (Optuna's MedianPruner), ``halving`` (SuccessiveHalvingPruner) or
            ``none``.
        workers: local worker processes sharing the study (spawned; 1 runs in this process).
        storage: an Optuna storage URL (default ``sqlite:///OUT/study.db``; see
            :func:`open_storage`).
        overrides: ``key.path=value`` changes to the recipe (kept in the best recipe).
        budget: ``epochs=N,subset=M,...`` for every trial (not kept in the best recipe); a
            stage's own budget is applied after it.
        study_name: the study's name (default ``tune-NAME``; stages add ``.STAGE``).
        explode_factor: abort a trial when its loss exceeds this × its initial loss.
        plots: write PNG plots (needs matplotlib).
        log: receives progress lines (``None``: silent).

    Raises:
        SpaceError: for a malformed space (naming its key).
        TuneError: when a stage ends without any complete trial, a worker dies, or the study
            in ``out_dir`` was started with another recipe, space or budget.
        ValueError: for a bad sampler, pruner, worker count or storage URL.
    """
    from gradcraft.diagnostics.ablation import parse_budget
    from gradcraft.diagnostics.run import load_recipe_any
    from gradcraft.tune.report import write_outputs

    optuna = require_optuna()
    say = log or (lambda msg: None)
    if sampler not in SAMPLERS:
        raise ValueError(f"Expected sampler one of {', '.join(SAMPLERS)}. Received: sampler={sampler!r}")
    if pruner not in PRUNERS:
        raise ValueError(f"Expected pruner one of {', '.join(PRUNERS)}. Received: pruner={pruner!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"Expected workers >= 1. Received: workers={workers!r}")
    space_obj = space if isinstance(space, SearchSpace) else load_space(space)
    if space_obj.stages and trials is not None:
        raise ValueError(
            f"Expected no --trials with a space that has stages ({space_obj.source} sets each stage's "
            f"trials). Received: trials={trials}"
        )
    if trials is not None and (isinstance(trials, bool) or trials < 1):
        raise ValueError(f"Expected trials >= 1. Received: trials={trials!r}")
    stages = space_obj.stages or (Stage("search", trials if trials is not None else 20),)

    base, base_dir = load_recipe_any(recipe, list(overrides))
    if base.data.val_split <= 0:
        raise ValueError(
            "Expected data.val_split > 0: a search selects by validation accuracy, never the test split. "
            f"Received: data.val_split={base.data.val_split}"
        )
    base_data = base.to_dict()
    global_budget = parse_budget(budget)
    for st in stages:
        check_space(space_obj, base_data, global_budget + parse_budget(st.budget))
    if sampler == "grid":
        space_obj.grid_space()  # every continuous axis needs a grid size

    out = Path(out_dir) if out_dir is not None else Path("runs") / f"tune-{base.name}"
    out.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    store = open_storage(url)
    name = study_name or f"tune-{base.name}"
    names = set(optuna.get_all_study_names(store))
    resumed = False
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    results: list[StageResult] = []
    for i, st in enumerate(stages):
        sname = name if not space_obj.stages else f"{name}.{st.name}"
        stage_budget = global_budget + parse_budget(st.budget)
        exists = sname in names
        study = optuna.create_study(
            storage=store, study_name=sname, direction="maximize", load_if_exists=True
        )
        narrowed_from = None
        if i == 0:
            stage_space = space_obj
        elif exists and "space" in study.user_attrs:
            stored = parse_space({"params": study.user_attrs["space"]}, source=space_obj.source)
            stage_space = replace(space_obj, params=stored.params)
            narrowed_from = study.user_attrs.get("narrowed_from")
        else:
            top, k = _top_params(results[-1], st.top_k)
            stage_space = narrow_space(results[-1].space, top, st.widen)
            narrowed_from = {"stage": results[-1].stage.name, "top_k": k, "widen": st.widen}
        _check_same(study, "recipe", "recipe", base_data, out)
        _check_same(study, "budget", "budget", stage_budget, out)
        if i == 0:
            _check_same(study, "search space", "space", stage_space.to_dict(), out)
        for key, value in (
            ("recipe", base_data),
            ("budget", stage_budget),
            ("space", stage_space.to_dict()),
            ("narrowed_from", narrowed_from),
        ):
            if key not in study.user_attrs:
                study.set_user_attr(key, value)

        target = st.trials
        if sampler == "grid":
            size = stage_space.grid_size()
            if size < target:
                say(f"stage '{st.name}': the grid has {size} points; running {size} trials, not {target}")
            target = min(target, size)
        done = len(study.get_trials(deepcopy=False, states=_finished_states()))
        if done:
            resumed = True
            where = "study.db" if storage is None else url
            say(
                f"continuing study '{sname}' ({where} in {out}): {done} finished trial(s) kept, "
                f"{max(0, target - done)} to go"
            )
        if i > 0 and not exists and sampler != "grid":
            best_prev = results[-1].best()
            if best_prev is not None:
                raw = {k: stage_space.params[k].to_raw(v) for k, v in best_prev["params"].items()}
                study.enqueue_trial(raw, user_attrs={"enqueued": f"best of {results[-1].stage.name}"})
        remaining = max(0, target - done)
        if remaining:
            desc = ", ".join(f"{k} ~ {d.describe()}" for k, d in stage_space.params.items())
            say(
                f"stage '{st.name}': {remaining} trial(s), budget "
                f"{','.join(stage_budget) if stage_budget else 'as in the recipe'}; {desc}"
            )
            job = _Job(
                recipe=base_data,
                recipe_dir=None if base_dir is None else str(base_dir),
                space=stage_space,
                budget=stage_budget,
                storage=url,
                study_name=sname,
                stage=st.name,
                sampler=sampler,
                pruner=pruner,
                seed=int(base.seed) + 1000 * i,
                trial_dir=str((out / "trials" / st.name).resolve()),
                target=target,
                explode_factor=explode_factor,
                threads=None if workers == 1 else max(1, (os.cpu_count() or 1) // workers),
                workers=workers,
                verbose=log is not None,
            )
            _run_stage(job, remaining, workers, store, say)
        stage_result = StageResult(st, sname, stage_space, stage_budget, _trials_of(study), narrowed_from)
        results.append(stage_result)
        if stage_result.best() is None:
            failures = [r["reason"] for r in stage_result.rows() if r["state"] == "failed" and r["reason"]]
            hint = f"; first failure: {failures[0]}" if failures else ""
            raise TuneError(
                f"stage '{st.name}' of study '{sname}' has no complete trial ({stage_result.counts()}){hint}"
            )

    result = TuneResult(
        name=name,
        out_dir=out,
        storage=url if storage is not None else "study.db",
        stages=results,
        resumed=resumed,
        settings={
            "recipe": str(recipe) if isinstance(recipe, (str, os.PathLike)) else base.name,
            "space": space_obj.source,
            "sampler": sampler,
            "pruner": pruner,
            "workers": workers,
            "overrides": list(overrides),
            "explode_factor": explode_factor,
        },
    )
    best_stage = next(s for s in reversed(results) if s.best() is not None)
    result.best = best_stage.best()
    assert result.best is not None
    note = (
        f"tuned: stage {best_stage.stage.name}, trial {result.best['trial']}, "
        f"val accuracy {100 * result.best['val_accuracy']:.2f}%"
    )
    tuned = best_recipe(base_data, result.best["params"], note)
    write_outputs(result, tuned, plots=plots, log=say)
    return result
