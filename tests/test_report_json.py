"""The JSON report follows its documented, versioned schema (docs/report-v1.schema.json)."""

from __future__ import annotations

import json
import os

from jsonschema import Draft202012Validator

from checker import report
from checker.api import check_file
from checker.core import InputError
from tests.conftest import ROOT, TRACES

with open(os.path.join(ROOT, "docs", "report-v1.schema.json")) as _f:
    SCHEMA = json.load(_f)


def _bad_results():
    bad = os.path.join(TRACES, "bad")
    return [check_file(os.path.join(bad, rule, f)) for rule in sorted(os.listdir(bad))
            for f in sorted(os.listdir(os.path.join(bad, rule)))]


def test_schema_is_valid() -> None:
    Draft202012Validator.check_schema(SCHEMA)


def test_reports_of_the_corpus_follow_the_schema() -> None:
    results = _bad_results()
    doc = json.loads(report.as_json(results, 1, [InputError("x.jsonl", 3, "unknown op 'foo'")]))
    errors = sorted(Draft202012Validator(SCHEMA).iter_errors(doc), key=str)
    assert not errors, errors[0]
    assert sum(len(t["findings"]) for t in doc["traces"]) == sum(len(r.findings) for r in results) > 0


def test_clean_report_follows_the_schema() -> None:
    ok = os.path.join(TRACES, "ok")
    results = [check_file(os.path.join(ok, f)) for f in sorted(os.listdir(ok))]
    Draft202012Validator(SCHEMA).validate(json.loads(report.as_json(results, 0, [])))
