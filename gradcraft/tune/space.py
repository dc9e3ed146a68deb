"""Search spaces: which recipe keys a search varies, over which distributions, in which stages.

A search space is a YAML file next to a recipe::

    description: learning rate, weight decay and dropout of the MLP
    grid: 3                                   # points per continuous axis for --sampler grid
    params:
      optimizer.lr:           {distribution: log_uniform, low: 1.0e-4, high: 1.0e-2}
      optimizer.weight_decay: {distribution: log_uniform, low: 1.0e-3, high: 0.3}
      model.dropout:          {distribution: uniform, low: 0.0, high: 0.5}
      batch_size:             {distribution: int, low: 64, high: 256, log: true}
      model.widths:           {distribution: categorical, choices: [[512, 256], [1024, 512]]}
    stages:                                   # optional: coarse-to-fine
      - {name: coarse, trials: 30, budget: "epochs=2,subset=20000"}
      - {name: fine, trials: 6, budget: "epochs=12", top_k: 5, widen: 0.25}

Each key of ``params`` is a recipe key path, as ``--set`` takes it (``regularizers.0.weight``,
``model.layers.1.p``). Distributions:

* ``log_uniform``: ``log x ~ U(log low, log high)`` (sample the exponent; for rates and
  strengths that matter by their order of magnitude); needs ``0 < low < high``;
* ``uniform``: ``x ~ U(low, high)``;
* ``int``: an integer in ``[low, high]``; ``log: true`` makes it log-uniform;
* ``categorical``: one of ``choices`` (any YAML values: numbers, strings, lists, mappings).

``grid: n`` on an entry (or at the top level for every continuous axis) sets how many points
grid search puts on it: ``linspace(low, high, n)``, or ``geomspace`` for log axes; categorical
axes use their choices.

Stages run one after another; stage ``s + 1`` narrows every axis around the ``top_k`` best
trials of stage ``s`` (:func:`narrow`). A stage's ``budget`` uses ``--budget`` syntax
(``epochs=N,subset=M,key.path=value``).
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Categorical",
    "Distribution",
    "FloatRange",
    "IntRange",
    "SearchSpace",
    "SpaceError",
    "Stage",
    "load_space",
    "narrow",
    "narrow_space",
    "parse_space",
    "yaml_text",
]

DISTRIBUTIONS = ("log_uniform", "uniform", "int", "categorical")
_TOP_KEYS = ("description", "grid", "params", "stages")
_STAGE_KEYS = ("name", "trials", "budget", "top_k", "widen")


class SpaceError(ValueError):
    """A malformed search space; the message names the file and the offending key."""


def yaml_text(value: Any) -> str:
    """``value`` as one line of YAML that PyYAML reads back to the same value (``1.0e-05``,
    not JSON's ``1e-05``, which YAML 1.1 reads as a string)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    return text.removesuffix("...").strip()


# ============================================================================ distributions
@dataclass(frozen=True)
class FloatRange:
    """A continuous axis on ``[low, high]``; uniform in ``log x`` when ``log``."""

    low: float
    high: float
    log: bool = False
    grid: int | None = None

    @property
    def kind(self) -> str:
        return "log_uniform" if self.log else "uniform"

    def suggest(self, trial: Any, name: str) -> float:
        return float(trial.suggest_float(name, self.low, self.high, log=self.log))

    def grid_values(self, default: int | None = None) -> list[float]:
        n = self.grid or default
        if n is None:
            raise ValueError("no grid size")
        pts = np.geomspace(self.low, self.high, n) if self.log else np.linspace(self.low, self.high, n)
        return [float(v) for v in pts]

    def to_value(self, raw: Any) -> float:
        return float(raw)

    def to_raw(self, value: Any) -> float:
        return float(value)

    def describe(self) -> str:
        return f"{self.kind}({self.low:.4g}, {self.high:.4g})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"distribution": self.kind, "low": self.low, "high": self.high}
        if self.grid is not None:
            out["grid"] = self.grid
        return out


@dataclass(frozen=True)
class IntRange:
    """An integer axis on ``[low, high]`` (both included); log-uniform when ``log``."""

    low: int
    high: int
    log: bool = False
    grid: int | None = None

    kind = "int"

    def suggest(self, trial: Any, name: str) -> int:
        return int(trial.suggest_int(name, self.low, self.high, log=self.log))

    def grid_values(self, default: int | None = None) -> list[int]:
        n = self.grid or default
        if n is None:
            raise ValueError("no grid size")
        pts = np.geomspace(self.low, self.high, n) if self.log else np.linspace(self.low, self.high, n)
        return sorted({round(float(v)) for v in pts})

    def to_value(self, raw: Any) -> int:
        return int(raw)

    def to_raw(self, value: Any) -> int:
        return int(value)

    def describe(self) -> str:
        return f"int({self.low}, {self.high}{', log' if self.log else ''})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"distribution": "int", "low": self.low, "high": self.high}
        if self.log:
            out["log"] = True
        if self.grid is not None:
            out["grid"] = self.grid
        return out


@dataclass(frozen=True)
class Categorical:
    """One of ``choices``. Optuna stores scalars as they are and other values (lists,
    mappings) by their one-line YAML text; :meth:`to_value` maps a stored value back."""

    choices: tuple[Any, ...]
    log = False
    kind = "categorical"

    @property
    def labels(self) -> list[Any]:
        return [c if _is_scalar(c) else yaml_text(c) for c in self.choices]

    def suggest(self, trial: Any, name: str) -> Any:
        return self.to_value(trial.suggest_categorical(name, self.labels))

    def grid_values(self, default: int | None = None) -> list[Any]:
        return self.labels

    def to_value(self, raw: Any) -> Any:
        for label, choice in zip(self.labels, self.choices):
            if label == raw and type(label) is type(raw):
                return choice
        raise ValueError(f"Expected one of {self.labels}. Received: {raw!r}")

    def to_raw(self, value: Any) -> Any:
        """The value Optuna stores for the choice ``value`` (its label)."""
        for label, choice in zip(self.labels, self.choices):
            if choice == value and type(choice) is type(value):
                return label
        raise ValueError(f"Expected one of {list(self.choices)}. Received: {value!r}")

    def describe(self) -> str:
        return "{" + ", ".join(str(label) for label in self.labels) + "}"

    def to_dict(self) -> dict[str, Any]:
        return {"distribution": "categorical", "choices": list(self.choices)}


Distribution = FloatRange | IntRange | Categorical


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


# ============================================================================ space
@dataclass(frozen=True)
class Stage:
    """One stage of a search.

    Attributes:
        name: used in output paths and the report (``coarse``, ``fine``).
        trials: how many finished trials (complete or pruned) the stage runs to.
        budget: ``--budget`` pairs for its trials (``epochs=2,subset=20000``).
        top_k: for a later stage: how many of the previous stage's best trials set the
            narrowed ranges (default: the best quarter, at least 2).
        widen: for a later stage: how far the top-k span is widened on each side, as a
            fraction of the span (see :func:`narrow`).
    """

    name: str
    trials: int
    budget: str | None = None
    top_k: int | None = None
    widen: float = 0.25


@dataclass(frozen=True)
class SearchSpace:
    """Recipe key → distribution, optionally with stages (coarse-to-fine).

    Attributes:
        params: recipe key path → :class:`FloatRange` / :class:`IntRange` / :class:`Categorical`.
        stages: the stages in order (empty: one stage, sized by ``--trials``).
        grid: default grid points per continuous axis for grid search.
        description: free text for the report.
        source: how errors name the space (its file).
    """

    params: dict[str, Distribution]
    stages: tuple[Stage, ...] = ()
    grid: int | None = None
    description: str = ""
    source: str = "search space"

    def grid_space(self) -> dict[str, list[Any]]:
        """Every axis's grid points (for Optuna's ``GridSampler``).

        Raises:
            SpaceError: for a continuous axis without a grid size.
        """
        out: dict[str, list[Any]] = {}
        for key, dist in self.params.items():
            if not isinstance(dist, Categorical) and dist.grid is None and self.grid is None:
                raise SpaceError(
                    f"{self.source}: {key}: Expected 'grid: N' (points on this axis) for grid search, on "
                    f"the entry or at the top level. Received: {dist.describe()} without one"
                )
            out[key] = dist.grid_values(self.grid)
        return out

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid_space().values())

    def to_dict(self) -> dict[str, Any]:
        """The space as plain YAML types (without stages; what a stage searched)."""
        return {key: dist.to_dict() for key, dist in self.params.items()}


def _fail(source: str, key: str, message: str) -> SpaceError:
    return SpaceError(f"{source}: {key}: {message}")


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _number(value: Any, source: str, key: str, what: str, integer: bool = False) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, str) and not integer:
        try:
            value, ok = float(value), True  # YAML 1.1 reads 1e-3 (no dot) as a string
        except ValueError:
            ok = False
    if isinstance(value, bool) or not ok or (not integer and not math.isfinite(float(value))):
        kind = "an integer" if integer else "a finite number"
        raise _fail(source, key, f"Expected {what} to be {kind}. Received: {what}={value!r}")
    return int(value) if integer else float(value)


def _parse_distribution(key: str, spec: Any, source: str) -> Distribution:
    if not isinstance(spec, Mapping):
        raise _fail(
            source,
            key,
            "Expected a mapping such as {distribution: log_uniform, low: 1.0e-4, high: 1.0e-2}. "
            f"Received: {spec!r}",
        )
    kind = spec.get("distribution")
    if kind not in DISTRIBUTIONS:
        raise _fail(
            source,
            key,
            f"Expected distribution one of {', '.join(DISTRIBUTIONS)}. Received: distribution={kind!r}"
            + _suggest(str(kind), DISTRIBUTIONS),
        )
    allowed = (
        ("distribution", "choices") if kind == "categorical" else ("distribution", "low", "high", "grid")
    )
    if kind == "int":
        allowed += ("log",)
    for name in spec:
        if name not in allowed:
            raise _fail(
                source,
                key,
                f"Expected keys {', '.join(allowed)} for a {kind} axis. Received: unknown key {name!r}"
                + _suggest(str(name), allowed),
            )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _fail(source, key, f"Expected a non-empty list of choices. Received: choices={choices!r}")
        labels = [c if _is_scalar(c) else yaml_text(c) for c in choices]
        if len({(type(x).__name__, x) for x in labels}) != len(labels):
            raise _fail(source, key, f"Expected distinct choices. Received: choices={choices!r}")
        return Categorical(tuple(choices))
    for name in ("low", "high"):
        if name not in spec:
            raise _fail(source, key, f"Expected '{name}' for a {kind} axis. Received: {dict(spec)!r}")
    integer = kind == "int"
    low = _number(spec["low"], source, key, "low", integer)
    high = _number(spec["high"], source, key, "high", integer)
    if not low < high:
        raise _fail(source, key, f"Expected low < high. Received: low={low!r}, high={high!r}")
    log = kind == "log_uniform" or bool(spec.get("log", False))
    if kind == "int" and not isinstance(spec.get("log", False), bool):
        raise _fail(source, key, f"Expected log: true or false. Received: log={spec['log']!r}")
    if log and low <= 0:
        raise _fail(
            source,
            key,
            f"Expected low > 0 on a log axis (the exponent is sampled). Received: low={low!r}",
        )
    grid = spec.get("grid")
    if grid is not None:
        grid = _number(grid, source, key, "grid", integer=True)
        if grid < 2:
            raise _fail(source, key, f"Expected grid >= 2 points. Received: grid={grid}")
    if integer:
        return IntRange(low, high, log, grid)
    return FloatRange(low, high, log, grid)


def _parse_stage(i: int, spec: Any, source: str) -> Stage:
    where = f"stages.{i}"
    if not isinstance(spec, Mapping):
        raise _fail(source, where, f"Expected a mapping with trials and budget. Received: {spec!r}")
    for name in spec:
        if name not in _STAGE_KEYS:
            raise _fail(
                source,
                where,
                f"Expected keys {', '.join(_STAGE_KEYS)}. Received: unknown key {name!r}"
                + _suggest(str(name), _STAGE_KEYS),
            )
    if "trials" not in spec:
        raise _fail(source, where, f"Expected 'trials: N'. Received: {dict(spec)!r}")
    trials = _number(spec["trials"], source, where, "trials", integer=True)
    if trials < 1:
        raise _fail(source, where, f"Expected trials >= 1. Received: trials={trials}")
    name = str(spec.get("name", f"stage{i + 1}"))
    if not name or any(c in name for c in "/\\ ") or name in (".", ".."):
        raise _fail(source, where, f"Expected a name usable as a directory name. Received: name={name!r}")
    budget = spec.get("budget")
    if budget is not None and not isinstance(budget, str):
        raise _fail(source, where, f"Expected budget as text (epochs=N,subset=M). Received: {budget!r}")
    top_k = spec.get("top_k")
    if top_k is not None:
        if i == 0:
            raise _fail(source, where, "Expected no top_k on the first stage (it has no earlier stage)")
        top_k = _number(top_k, source, where, "top_k", integer=True)
        if top_k < 1:
            raise _fail(source, where, f"Expected top_k >= 1. Received: top_k={top_k}")
    widen = _number(spec.get("widen", 0.25), source, where, "widen")
    if widen < 0:
        raise _fail(source, where, f"Expected widen >= 0. Received: widen={widen}")
    return Stage(name, trials, budget, top_k, widen)


def parse_space(data: Any, source: str = "search space") -> SearchSpace:
    """Validate a search space given as parsed YAML.

    Raises:
        SpaceError: naming ``source`` and the offending key, e.g.
            ``space.yaml: optimizer.lr: Expected low > 0 on a log axis (...). Received: low=0.0``.
    """
    if not isinstance(data, Mapping):
        raise SpaceError(f"{source}: Expected a mapping with a 'params' section. Received: {data!r}")
    for name in data:
        if name not in _TOP_KEYS:
            raise _fail(
                source,
                str(name),
                f"Expected top-level keys {', '.join(_TOP_KEYS)}. Received: unknown key {name!r}"
                + _suggest(str(name), _TOP_KEYS),
            )
    params = data.get("params")
    if not isinstance(params, Mapping) or not params:
        raise _fail(
            source, "params", f"Expected a mapping of recipe keys to distributions. Received: {params!r}"
        )
    dists = {str(key): _parse_distribution(str(key), spec, source) for key, spec in params.items()}
    grid = data.get("grid")
    if grid is not None:
        grid = _number(grid, source, "grid", "grid", integer=True)
        if grid < 2:
            raise _fail(source, "grid", f"Expected grid >= 2 points. Received: grid={grid}")
    stages_data = data.get("stages") or []
    if not isinstance(stages_data, list):
        raise _fail(source, "stages", f"Expected a list of stages. Received: {stages_data!r}")
    stages = tuple(_parse_stage(i, s, source) for i, s in enumerate(stages_data))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise _fail(source, "stages", f"Expected distinct stage names. Received: {names}")
    return SearchSpace(dists, stages, grid, str(data.get("description") or ""), source)


def load_space(path: str | os.PathLike[str]) -> SearchSpace:
    """Read and validate a search-space YAML file.

    Raises:
        FileNotFoundError: if there is no such file.
        SpaceError: for invalid YAML or an invalid entry (naming the key).
    """
    import yaml

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such search-space file")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise SpaceError(f"{file}{line}: not valid YAML: {getattr(err, 'problem', None) or err}") from None
    return parse_space(data, source=str(path))


# ============================================================================ coarse-to-fine
def narrow(
    dist: Distribution, values: Sequence[Any], widen: float = 0.25, min_span: float = 0.1
) -> Distribution:
    """The range of ``dist`` narrowed around ``values`` (the best trials' values).

    With ``t = log10`` on log axes (identity otherwise), ``[a, b]`` the span of ``t(values)``
    and ``[L, H]`` the original range in ``t``, the new range is centred on ``c = (a + b)/2``::

        s    = max(b − a, min_span · (H − L))          # never collapse to a point
        new  = [c − (1/2 + widen)·s, c + (1/2 + widen)·s] ∩ [L, H]

    so with a span wider than ``min_span`` it is ``[a − widen·s, b + widen·s]``, clipped to the
    original range. Integer axes round outwards (and keep at least two values); categorical
    axes keep the choices that occur in ``values``, in their original order.

    Raises:
        ValueError: without values.
    """
    if not values:
        raise ValueError("Expected at least one value to narrow around. Received: none")
    if isinstance(dist, Categorical):
        seen = list(values)
        kept = tuple(c for c, label in zip(dist.choices, dist.labels) if c in seen or label in seen)
        return Categorical(kept or dist.choices)

    def t(x: float) -> float:
        return math.log10(x) if dist.log else float(x)

    def inv(x: float) -> float:
        return 10.0**x if dist.log else x

    lo_t, hi_t = t(dist.low), t(dist.high)
    vals = [t(min(max(float(v), dist.low), dist.high)) for v in values]
    a, b = min(vals), max(vals)
    s = max(b - a, min_span * (hi_t - lo_t))
    c = 0.5 * (a + b)
    half = (0.5 + widen) * s
    new_lo, new_hi = max(lo_t, c - half), min(hi_t, c + half)
    if isinstance(dist, IntRange):
        low = max(dist.low, math.floor(inv(new_lo) + 1e-9))
        high = min(dist.high, math.ceil(inv(new_hi) - 1e-9))
        if low >= high:
            low, high = (low - 1, high) if low > dist.low else (low, high + 1)
        return replace(dist, low=int(low), high=int(high))
    low, high = inv(new_lo), inv(new_hi)
    # keep the original bounds exactly where clipped (no round trip through log10)
    low = dist.low if new_lo <= lo_t else low
    high = dist.high if new_hi >= hi_t else high
    return replace(dist, low=float(low), high=float(high))


def narrow_space(
    space: SearchSpace, best_params: Sequence[Mapping[str, Any]], widen: float = 0.25
) -> SearchSpace:
    """Every axis of ``space`` narrowed around the values in ``best_params`` (one mapping of
    key → value per top trial; see :func:`narrow`). Stages and grid sizes are kept."""
    params: dict[str, Distribution] = {}
    for key, dist in space.params.items():
        values = [p[key] for p in best_params if key in p]
        params[key] = narrow(dist, values, widen) if values else dist
    return replace(space, params=params)
