"""The JUnit XML reporter: a document CI servers parse, whatever the traces hold."""

from __future__ import annotations

import gzip
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from checker.api import check_file
from checker.core import InputError, Result
from checker.reporters import junit
from tests.conftest import TRACES

OK = os.path.join(TRACES, "ok", "compositor-mmap-sync.jsonl")
MAP_LEAK = os.path.join(TRACES, "bad", "MAP-LEAK", "frame-mapping-never-unmapped.jsonl")
BAD_DIR = os.path.join(TRACES, "bad")
BAD = sorted((rule, os.path.join(BAD_DIR, rule, f)) for rule in os.listdir(BAD_DIR)
             for f in os.listdir(os.path.join(BAD_DIR, rule)) if f.endswith(".jsonl"))

GAP = (b'{"op":"dma_buf_export","tid":1,"args":{},"ret":"b1"}\n'
       b'{"op":"lost_events","kind":"annotation","tid":1,"args":{"count":12}}\n'
       b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n'
       b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n')
# Two rules broken: b1 is put twice (line 3), b2 is never put (a leak at the end).
TWO_RULES = (b'{"op":"dma_buf_export","tid":1,"args":{"exp_name":"i915"},"ret":"b1"}\n'
             b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n'
             b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n'
             b'{"op":"dma_buf_export","tid":1,"args":{"exp_name":"i915"},"ret":"b2"}\n')
# A leaked buffer whose export line (shown in the report) and state carry markup and control characters.
HOSTILE = (b'{"op":"marker","kind":"annotation","tid":1,'
           b'"args":{"text":"]]><![CDATA[<script>alert(1)</script>\\u0000"}}\n'
           b'{"op":"dma_buf_export","tid":1,"args":{"exp_name":"<script>alert(1)</script>]]>&amp;\\u0001\\u001b[31m",'
           b'"size":4096},"ret":"0xb<img src=x>"}\n'
           b'{"op":"marker","kind":"annotation","tid":1,"args":{"text":"\\u0007\\ud834\\udd1e </testsuite>"}}\n')


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def parse(xml: str) -> ET.Element:
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ET.fromstring(xml.encode("utf-8"))
    assert root.tag == "testsuites"
    return root


def suite(root: ET.Element) -> ET.Element:
    (el,) = root.findall("testsuite")
    assert el.get("name") == "dmaspec"
    return el


def counts(el: ET.Element) -> dict[str, int]:
    return {k: int(el.get(k, "-1")) for k in ("tests", "failures", "errors", "skipped")}


def test_one_testcase_per_trace_with_counts(tmp_path: Path) -> None:
    gap = write(tmp_path, "gap.jsonl", GAP)
    missing = str(tmp_path / "missing.jsonl")
    with pytest.raises(InputError) as err:
        check_file(missing)
    results = [check_file(OK), check_file(MAP_LEAK), check_file(gap)]
    root = parse(junit.render(results, [err.value], durations={OK: 0.25, MAP_LEAK: 1.5}))
    el = suite(root)
    expected = {"tests": 4, "failures": 1, "errors": 1, "skipped": 1}
    assert counts(root) == counts(el) == expected
    assert float(el.get("time", "")) == pytest.approx(1.75)
    cases = el.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        (junit.classname(OK), "compositor-mmap-sync.jsonl"),
        (junit.classname(MAP_LEAK), "frame-mapping-never-unmapped.jsonl"),
        (junit.classname(gap), "gap.jsonl"),
        (junit.classname(missing), "missing.jsonl"),
    ]
    assert junit.classname("traces/bad/MAP-LEAK/x.jsonl") == "dmaspec.traces.bad.MAP-LEAK"
    assert cases[0].get("time") == "0.250" and list(cases[0]) == []  # a pass: no child at all
    assert [c.tag for c in cases[1]] == ["failure"]
    assert [c.tag for c in cases[2]] == ["skipped", "system-out"]
    assert [c.tag for c in cases[3]] == ["error"]


def test_failure_holds_the_text_report() -> None:
    result = check_file(MAP_LEAK)
    (case,) = suite(parse(junit.render([result]))).findall("testcase")
    (failure,) = case.findall("failure")
    assert failure.get("message") == "1 finding(s): MAP-LEAK"
    assert failure.get("type") == "MAP-LEAK"
    text = failure.text or ""
    assert f"{MAP_LEAK}:10: warning: MAP-LEAK: a mapping is never unmapped" in text
    assert "events, in trace order:" in text and "dma_buf_map_attachment_unlocked" in text
    assert f"reproduce: dmaspec check --profile latest {MAP_LEAK}" in text


def test_several_findings_name_each_rule_once(tmp_path: Path) -> None:
    result = check_file(write(tmp_path, "two.jsonl", TWO_RULES))
    assert [f.rule for f in result.findings] == ["REF-USE-AFTER-RELEASE", "REF-LEAK"]
    (failure,) = suite(parse(junit.render([result]))).iter("failure")
    assert failure.get("message") == "2 finding(s): REF-USE-AFTER-RELEASE, REF-LEAK"
    assert failure.get("type") == "REF-USE-AFTER-RELEASE"
    assert "two.jsonl:3: error: REF-USE-AFTER-RELEASE" in (failure.text or "")
    assert "two.jsonl:5:" in (failure.text or "") and "REF-LEAK" in (failure.text or "")


def test_every_bad_corpus_trace_fails_with_its_rule() -> None:
    results = [check_file(path) for _, path in BAD]
    el = suite(parse(junit.render(results)))
    assert counts(el) == {"tests": len(BAD), "failures": len(BAD), "errors": 0, "skipped": 0}
    for (rule, _), case in zip(BAD, el.findall("testcase"), strict=True):
        assert rule in (case.find("failure").get("message") or "")  # type: ignore[union-attr]


def test_hostile_content_is_escaped_and_the_document_parses(tmp_path: Path) -> None:
    name = "a<script>]]>&\x01\x1b\x7f\u2603.jsonl"
    path = write(tmp_path, name, HOSTILE)
    result = check_file(path)
    assert [f.rule for f in result.findings] == ["REF-LEAK"]
    bogus = InputError(str(tmp_path / "b]]>\x00.jsonl"), 3, "bad <tag> ]]> \x0b\x0c\ud800 \"quote'")
    for per_rule in (False, True):
        xml = junit.render([result], [bogus], per_rule=per_rule)
        assert "<script>" not in xml and "]]>" not in xml and "<img" not in xml and "<tag>" not in xml
        for c in "\x00\x01\x0b\x0c\x1b\ud800":
            assert c not in xml
        el = suite(parse(xml))
        assert counts(el)["failures"] == 1 and counts(el)["errors"] == 1
        case, bad = el.findall("testcase")
        assert case.get("file") == path.replace("\x01", "\\x01").replace("\x1b", "\\x1b")
        text = case.find("failure").text or ""  # type: ignore[union-attr]
        # Escaped, not lost: what the trace holds comes back when the document is parsed.
        assert "<script>alert(1)</script>]]>&amp;" in text and "0xb<img src=x>" in text
        assert "a<script>]]>&\\x01\\x1b\x7f\u2603.jsonl:4: warning: REF-LEAK" in text
        error = bad.find("error")
        assert error is not None and error.get("type") == "InputError"
        assert error.get("message") == f"{tmp_path}/b]]>\\x00.jsonl:3: bad <tag> ]]> \\x0b\\x0c\\ud800 \"quote'"


def test_xml_safe_keeps_what_xml_holds() -> None:
    keep = "tab\tnl\ncr\r é \u2603 \U0001d11e \x7f \x85 \ufffd"
    assert junit.xml_safe(keep) == keep
    assert junit.xml_safe("\x00\x08\x0b\x1f\ud800\udfff\ufffe\uffff") == \
        "\\x00\\x08\\x0b\\x1f\\ud800\\udfff\\ufffe\\uffff"


def test_inconclusive_is_skipped_never_passed(tmp_path: Path) -> None:
    result = check_file(write(tmp_path, "gap.jsonl", GAP))
    assert result.inconclusive and not result.findings
    (case,) = suite(parse(junit.render([result]))).findall("testcase")
    skipped = case.find("skipped")
    assert skipped is not None
    message = skipped.get("message") or ""
    assert message.startswith("inconclusive: 1 finding(s) withheld")
    assert "REF-USE-AFTER-RELEASE x1" in message and "gap" in message
    assert "withheld" in (case.findtext("system-out") or "")


def test_unobserved_ops_say_why_per_rule(tmp_path: Path) -> None:
    path = write(tmp_path, "n.jsonl", b"".join(TWO_RULES.splitlines(keepends=True)[:3]))
    result = check_file(path, unobserved=frozenset({"get_dma_buf"}))
    assert result.undecided and not result.findings and not result.inconclusive
    (case,) = suite(parse(junit.render([result], per_rule=True))).findall("testcase")
    assert case.get("name") == "REF-USE-AFTER-RELEASE"
    assert (case.find("skipped").get("message") or "").startswith(  # type: ignore[union-attr]
        "not decided: 1 possible REF-USE-AFTER-RELEASE finding(s), a rule this trace cannot decide because it "
        "does not record get_dma_buf")
    # per trace, a rule the trace cannot decide does not make the run inconclusive
    (whole,) = suite(parse(junit.render([result]))).findall("testcase")
    assert whole.find("skipped") is None and whole.find("failure") is None
    assert "not decided" in (whole.findtext("system-out") or "")


def test_input_errors_are_errors(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.jsonl", b'{"op":"dma_buf_export","tid":1,"args":{},"ret":"b1"}\n{"op":\n')
    with pytest.raises(InputError) as err:
        check_file(broken)
    (case,) = suite(parse(junit.render([], [err.value]))).findall("testcase")
    assert case.get("name") == "broken.jsonl"
    error = case.find("error")
    assert error is not None and error.get("message") == str(err.value)
    assert (error.get("message") or "").startswith(f"{broken}:2: malformed JSON")


def test_bad_lines_kept_going_are_reported_once_with_their_trace(tmp_path: Path) -> None:
    data = TWO_RULES[:TWO_RULES.index(b"\n") + 1] + b"not json\n" + TWO_RULES[TWO_RULES.index(b"\n") + 1:]
    result = check_file(write(tmp_path, "k.jsonl", data), keep_going=True)
    assert result.errors and result.findings
    # The CLI passes every input error, those of the results included.
    root = parse(junit.render([result], list(result.errors)))
    assert counts(root) == {"tests": 1, "failures": 1, "errors": 1, "skipped": 0}
    (case,) = suite(root).findall("testcase")
    assert [c.tag for c in case] == ["error", "failure"]  # the JUnit schema's order
    error = case.find("error")
    assert error is not None and error.get("message") == str(result.errors[0])
    assert (error.get("message") or "").startswith(f"{tmp_path}/k.jsonl:2: malformed JSON")


def test_per_rule(tmp_path: Path) -> None:
    two = write(tmp_path, "two.jsonl", TWO_RULES)
    gap = write(tmp_path, "gap.jsonl", GAP)
    results = [check_file(two), check_file(OK), check_file(gap)]
    root = parse(junit.render(results, [InputError("x/y.jsonl", 0, "cannot read")], per_rule=True,
                              durations={two: 1.0}))
    el = suite(root)
    assert counts(el) == {"tests": 5, "failures": 2, "errors": 1, "skipped": 1}
    cases = [(c.get("classname"), c.get("name"), [x.tag for x in c]) for c in el.findall("testcase")]
    two_cls = junit.classname(two, per_rule=True)
    assert two_cls == junit.classname(two) + ".two"
    assert cases == [
        (two_cls, "REF-USE-AFTER-RELEASE", ["failure"]),
        (two_cls, "REF-LEAK", ["failure"]),
        (junit.classname(OK) + ".compositor-mmap-sync", "clean", []),
        (junit.classname(gap) + ".gap", "REF-USE-AFTER-RELEASE", ["skipped"]),
        ("dmaspec.x.y", "input", ["error"]),
    ]
    first, second = el.findall("testcase")[:2]
    assert first.get("time") == second.get("time") == "0.500"
    # Each rule's failure holds that rule's findings only.
    assert "REF-LEAK" not in (first.findtext("failure") or "")
    assert "REF-USE-AFTER-RELEASE" not in (second.findtext("failure") or "")
    assert second.find("failure").get("message") == "1 finding(s): REF-LEAK"  # type: ignore[union-attr]


def test_gzip_and_stdin_names(tmp_path: Path) -> None:
    gz = tmp_path / "runs.2024" / "t.jsonl.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(Path(MAP_LEAK).read_bytes()))
    result = check_file(str(gz))
    (case,) = suite(parse(junit.render([result], per_rule=True))).findall("testcase")
    assert case.get("classname", "").endswith(".runs_2024.t") and case.get("name") == "MAP-LEAK"
    assert "dma_buf_map_attachment_unlocked" in (case.findtext("failure") or "")  # lines re-read through gzip
    stdin = Result("-", "latest")
    (case,) = suite(parse(junit.render([stdin]))).findall("testcase")
    assert (case.get("classname"), case.get("name")) == ("dmaspec.stdin", "<stdin>")


def test_empty_run() -> None:
    root = parse(junit.render([]))
    assert counts(root) == {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    assert suite(root).findall("testcase") == []
