"""The corpus: correct traces check clean, each bad trace produces exactly its rule.

Both engines run every trace and must agree finding for finding.
"""

from __future__ import annotations

import os

import pytest

from checker.api import check_file
from spec import SPEC
from spec.lang import Kind
from tests.conftest import TRACES

OK = sorted(os.path.join(TRACES, "ok", f) for f in os.listdir(os.path.join(TRACES, "ok")) if f.endswith(".jsonl"))
BAD_DIR = os.path.join(TRACES, "bad")
BAD = sorted((rule, os.path.join(BAD_DIR, rule, f)) for rule in os.listdir(BAD_DIR)
             for f in os.listdir(os.path.join(BAD_DIR, rule)) if f.endswith(".jsonl"))


def _both(path: str):
    compiled = check_file(path, engine="compiled")
    interpreted = check_file(path, engine="interpreter")
    assert [f.key() for f in compiled.findings] == [f.key() for f in interpreted.findings]
    assert compiled.withheld == interpreted.withheld
    assert compiled.events == interpreted.events
    return compiled


@pytest.mark.parametrize("path", OK, ids=os.path.basename)
def test_ok_trace_is_clean(path: str) -> None:
    result = _both(path)
    assert result.findings == [], [(f.rule, f.line) for f in result.findings]
    assert not result.withheld and not result.errors


@pytest.mark.parametrize(("rule", "path"), BAD, ids=[f"{r}/{os.path.basename(p)}" for r, p in BAD])
def test_bad_trace_breaks_its_rule(rule: str, path: str) -> None:
    result = _both(path)
    assert result.findings, f"{path} produced no finding"
    assert {f.rule for f in result.findings} == {rule}, [(f.rule, f.line) for f in result.findings]


PER_EVENT = [r for r in SPEC.rules if r.kind is not Kind.ANALYSIS]  # analyses have their own corpus and tests


def test_every_rule_has_a_failing_trace() -> None:
    covered = {rule for rule, _ in BAD}
    missing = sorted(r.id for r in PER_EVENT if r.id not in covered)
    assert not missing, f"rules without a trace in traces/bad/: {missing}"


def test_every_rule_has_a_passing_trace() -> None:
    """Each rule is exercised (its guarded operations occur) by some clean trace."""
    from tests.rule_coverage import rules_exercised

    exercised = rules_exercised(OK)
    missing = sorted(r.id for r in PER_EVENT if r.id not in exercised)
    assert not missing, f"rules no clean trace exercises: {missing}"
