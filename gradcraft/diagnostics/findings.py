"""``Finding``: one diagnosis in plain words, with a verdict and what to try.

Every check of the babysitter — before training (:func:`gradcraft.diagnostics.diagnose`) and
during it (:class:`gradcraft.diagnostics.Monitor`) — returns findings::

    Finding(check="activations", verdict="problem", layer="4",
            summary="83% of the tanh outputs of layer '4' are saturated (|y| > 0.99) ...",
            remedy="Initialize with Xavier (model.init: xavier_normal) ...",
            details={"saturated": 0.83, "std": 0.97})

The verdict is one of ``"ok"`` (the check passed), ``"warning"`` (worth a look, training
may still work) and ``"problem"`` (training will not work well as it is). Findings print as
one line each (:func:`format_findings`), render as a markdown list
(:func:`findings_to_markdown`) and serialize to JSON (:meth:`Finding.to_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "VERDICTS",
    "Finding",
    "Verdict",
    "count_verdicts",
    "findings_to_markdown",
    "format_findings",
    "print_findings",
    "worst_verdict",
]

Verdict = Literal["ok", "warning", "problem"]
VERDICTS: tuple[str, ...] = ("ok", "warning", "problem")
_RANK = {v: i for i, v in enumerate(VERDICTS)}
_MARK = {"ok": "ok", "warning": "WARNING", "problem": "PROBLEM"}
_STYLE = {"ok": "green", "warning": "yellow", "problem": "bold red"}


def _jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars/arrays turned into Python numbers and lists, and
    non-finite floats into strings (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else str(f)
    return value


@dataclass
class Finding:
    """One diagnosis.

    Attributes:
        check: which check produced it (``"initial_loss"``, ``"overfit_subset"``,
            ``"lr_range"``, ``"activations"``, ``"gradients"``, ``"data.scaling"``,
            ``"data.balance"``, ``"data.duplicates"``, ``"update_ratio"``, ``"nan"``,
            ``"loss_explosion"``, ``"learning_curves"``, ...).
        verdict: ``"ok"``, ``"warning"`` or ``"problem"``.
        summary: what was measured and what it means, in one or two plain sentences.
        remedy: what to try (empty when nothing needs doing).
        layer: the layer concerned (its dotted name in the model), if any.
        step: the optimizer step at which it was observed (findings made during training).
        details: the numbers behind the verdict (JSON-serializable).
    """

    check: str
    verdict: Verdict
    summary: str
    remedy: str = ""
    layer: str | None = None
    step: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in _RANK:
            raise ValueError(f"Expected verdict in {VERDICTS}. Received: verdict={self.verdict!r}")

    @property
    def is_problem(self) -> bool:
        return self.verdict == "problem"

    @property
    def is_ok(self) -> bool:
        return self.verdict == "ok"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (NumPy numbers converted, NaN/inf as strings)."""
        out: dict[str, Any] = {"check": self.check, "verdict": self.verdict, "summary": self.summary}
        if self.remedy:
            out["remedy"] = self.remedy
        if self.layer is not None:
            out["layer"] = self.layer
        if self.step is not None:
            out["step"] = int(self.step)
        if self.details:
            out["details"] = _jsonable(self.details)
        return out

    def line(self) -> str:
        """One line: ``[PROBLEM] activations: summary Try: remedy``."""
        text = f"[{_MARK[self.verdict]}] {self.check}: {self.summary}"
        if self.remedy:
            text += f" Try: {self.remedy}"
        return text

    def __str__(self) -> str:
        return self.line()


def worst_verdict(findings: Iterable[Finding]) -> Verdict:
    """The most severe verdict among ``findings`` (``"ok"`` for none)."""
    worst: Verdict = "ok"
    for f in findings:
        if _RANK[f.verdict] > _RANK[worst]:
            worst = f.verdict
    return worst


def count_verdicts(findings: Iterable[Finding]) -> dict[str, int]:
    """``{"ok": n, "warning": n, "problem": n}``."""
    counts = dict.fromkeys(VERDICTS, 0)
    for f in findings:
        counts[f.verdict] += 1
    return counts


def _summary_line(findings: Sequence[Finding]) -> str:
    c = count_verdicts(findings)
    return f"{c['problem']} problem(s), {c['warning']} warning(s), {c['ok']} check(s) ok"


def format_findings(findings: Sequence[Finding], title: str | None = None) -> str:
    """Plain text: an optional title, one line per finding (worst first, stable within a
    verdict), then a count of verdicts."""
    lines = [title] if title else []
    ordered = sorted(findings, key=lambda f: -_RANK[f.verdict])
    lines += [f.line() for f in ordered]
    lines.append(_summary_line(findings))
    return "\n".join(lines)


def print_findings(findings: Sequence[Finding], title: str | None = None, console: Any = None) -> None:
    """Print findings to the terminal, coloured by verdict when ``rich`` is installed.

    Args:
        findings: what to print.
        title: an optional heading.
        console: a ``rich.console.Console`` to print to (default: a new one on stdout).
    """
    try:
        from rich.console import Console
        from rich.markup import escape
    except ImportError:
        print(format_findings(findings, title))
        return
    console = console or Console()
    if title:
        console.print(f"[bold]{escape(title)}[/bold]")
    for f in sorted(findings, key=lambda f: -_RANK[f.verdict]):
        style = _STYLE[f.verdict]
        text = f"[{style}]{_MARK[f.verdict]:>7}[/{style}] [bold]{escape(f.check)}[/bold]: {escape(f.summary)}"
        if f.remedy:
            text += f"\n        [dim]Try:[/dim] {escape(f.remedy)}"
        console.print(text, highlight=False)
    console.print(_summary_line(findings), highlight=False)


def findings_to_markdown(findings: Sequence[Finding]) -> str:
    """A markdown list, worst first: ``- **PROBLEM** `check` (layer): summary — *Try:* remedy``."""
    if not findings:
        return "_No findings._\n"
    lines = []
    for f in sorted(findings, key=lambda f: -_RANK[f.verdict]):
        where = f" (layer `{f.layer}`)" if f.layer else ""
        when = f" at step {f.step}" if f.step is not None else ""
        text = f"- **{_MARK[f.verdict]}** `{f.check}`{where}{when}: {f.summary}"
        if f.remedy:
            text += f" *Try:* {f.remedy}"
        lines.append(text)
    lines.append("")
    lines.append(_summary_line(findings) + ".")
    return "\n".join(lines) + "\n"
