import json
import math

import numpy as np
import pytest

from gradcraft.diagnostics import (
    Finding,
    count_verdicts,
    findings_to_markdown,
    format_findings,
    print_findings,
    worst_verdict,
)


def test_finding_rejects_unknown_verdict():
    with pytest.raises(ValueError, match="verdict"):
        Finding("x", "fatal", "s")


def test_to_dict_is_strict_json_with_numpy_and_nan():
    f = Finding("gradients", "problem", "s", "r", layer="0", step=3,
                details={"a": np.float32(1.5), "b": np.arange(3), "c": math.nan, "d": {"e": np.int64(2)}})
    text = json.dumps(f.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["details"]["a"] == 1.5 and back["details"]["b"] == [0, 1, 2] and back["details"]["c"] == "nan"
    assert back["layer"] == "0" and back["step"] == 3


def test_worst_verdict_and_counts():
    fs = [Finding("a", "ok", "s"), Finding("b", "warning", "s"), Finding("c", "ok", "s")]
    assert worst_verdict(fs) == "warning"
    assert worst_verdict([]) == "ok"
    assert count_verdicts(fs) == {"ok": 2, "warning": 1, "problem": 0}


def test_formatting_lists_worst_first_with_remedy():
    fs = [Finding("a", "ok", "fine."), Finding("b", "problem", "broken.", "fix it.")]
    text = format_findings(fs, title="T")
    lines = text.splitlines()
    assert lines[0] == "T" and lines[1].startswith("[PROBLEM] b: broken. Try: fix it.")
    assert "1 problem(s), 0 warning(s), 1 check(s) ok" in lines[-1]
    md = findings_to_markdown(fs)
    assert md.index("PROBLEM") < md.index("**ok**") and "*Try:* fix it." in md
    assert findings_to_markdown([]).startswith("_No findings")


def test_print_findings_plain_and_rich(capsys):
    print_findings([Finding("a", "warning", "look.", "try this.")], title="Title")
    out = capsys.readouterr().out
    assert "Title" in out and "look." in out and "try this." in out
