"""JUnit XML: the dialect Jenkins, GitLab and the GitHub Actions test reporters read.

One ``<testsuites>`` holding one ``<testsuite name="dmaspec">``, with the
counts (tests, failures, errors, skipped) and the time on both.  By default
each trace is one ``<testcase>``: ``classname`` is ``dmaspec.`` and the
trace's directory with dots (``traces/bad/REF-LEAK/x.jsonl`` gives
``dmaspec.traces.bad.REF-LEAK``), ``name`` is the file's name.

- findings: a ``<failure>`` whose ``message`` counts them and names the rules,
  ``type`` is the first rule, and whose text is the text report of every
  finding (as ``dmaspec check`` prints it: events, object states, sources,
  the command that reproduces it);
- inconclusive (findings withheld, none reported): ``<skipped
  message="inconclusive: ...">``, never a pass;
- bad input, whether the trace could not be read at all or some lines were
  bad (``--keep-going``): ``<error type="InputError">`` with ``file:line:
  message``.  Input errors also found in a result's ``errors`` are reported
  once, on that trace's test case.

With ``per_rule=True`` each trace is a class (``classname`` adds the file's
name) with one test case per rule that produced a finding or a withheld one
(named by the rule ID), one ``input`` test case for its input errors, and one
``clean`` test case when it has neither.

The tree is built with ``xml.etree.ElementTree``, which escapes all text taken
from traces, and characters XML 1.0 cannot hold (control characters, lone
surrogates) are written as ``\\xNN`` / ``\\uNNNN`` escapes first.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence

from checker.core import Finding, InputError, Result
from checker.report import event_lines, finding_text, notes_of

SUITE = "dmaspec"

# What XML 1.0 cannot hold: https://www.w3.org/TR/xml/#charsets
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_safe(text: str) -> str:
    r"""``text`` with every character XML 1.0 cannot hold written as an escape.

    >>> xml_safe("ok\tline\x1b[31m\x00")
    'ok\tline\\x1b[31m\\x00'
    """
    return _NOT_XML.sub(_escape_char, text)


def _escape_char(m: re.Match[str]) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _components(path: str) -> list[str]:
    if path == "-":
        return ["stdin"]
    parts = os.path.normpath(path).replace(os.sep, "/").split("/")
    return [p.replace(".", "_") for p in parts if p not in ("", ".")]


def _stem(name: str) -> str:
    for suffix in (".jsonl.gz", ".jsonl", ".json", ".ndjson", ".gz"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def classname(path: str, per_rule: bool = False) -> str:
    """``dmaspec.`` and the trace's directory with dots (and, per rule, the file's name).

    >>> classname("traces/bad/REF-LEAK/get-without-put.jsonl")
    'dmaspec.traces.bad.REF-LEAK'
    >>> classname("./runs/2024.05/app.jsonl.gz", per_rule=True)
    'dmaspec.runs.2024_05.app'
    """
    parts = _components(path)
    if path != "-":
        last = parts.pop() if parts else ""
        if per_rule:
            parts.append(_stem(os.path.basename(path)).replace(".", "_") or last)
    return ".".join([SUITE, *parts])


def _testname(path: str) -> str:
    return "<stdin>" if path == "-" else os.path.basename(path) or path


def _failure_message(findings: Sequence[Finding]) -> str:
    rules = list(dict.fromkeys(f.rule for f in findings))
    return f"{len(findings)} finding(s): {', '.join(rules)}"


def _error_key(e: InputError) -> tuple[str, int, str]:
    return (e.file, e.line, e.message)


class _Suite:
    """The test cases and their counts, as they are added."""

    def __init__(self, durations: Mapping[str, float]) -> None:
        self.cases: list[ET.Element] = []
        self.counts: Counter[str] = Counter()
        self.durations = durations
        self.time = 0.0

    def case(self, cls: str, name: str, file: str, share: int = 1) -> ET.Element:
        """A new test case; ``share`` test cases split the trace's time."""
        seconds = self.durations.get(file, 0.0) / share
        self.time += seconds
        el = ET.Element("testcase", classname=xml_safe(cls), name=xml_safe(name), file=xml_safe(file),
                        time=f"{seconds:.3f}")
        self.cases.append(el)
        self.counts["tests"] += 1
        return el

    def failure(self, case: ET.Element, message: str, kind: str, text: str) -> None:
        ET.SubElement(case, "failure", message=xml_safe(message), type=xml_safe(kind)).text = xml_safe(text)
        self.counts["failures"] += 1

    def error(self, case: ET.Element, errors: Sequence[InputError]) -> None:
        message = str(errors[0]) + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
        el = ET.SubElement(case, "error", message=xml_safe(message), type="InputError")
        el.text = xml_safe("\n".join(str(e) for e in errors))
        self.counts["errors"] += 1

    def skipped(self, case: ET.Element, message: str) -> None:
        ET.SubElement(case, "skipped", message=xml_safe(message))
        self.counts["skipped"] += 1

    def system_out(self, case: ET.Element, notes: Sequence[str]) -> None:
        if notes:
            ET.SubElement(case, "system-out").text = xml_safe("".join(f"note: {n}\n" for n in notes))

    def attrs(self) -> dict[str, str]:
        return {k: str(self.counts[k]) for k in ("tests", "failures", "errors", "skipped")} | {
            "time": f"{self.time:.3f}"}


def _findings_text(findings: Sequence[Finding], result: Result, lines: dict[int, str], engine: str) -> str:
    return "\n\n".join(finding_text(f, result, lines, engine) for f in findings)


def _inconclusive(result: Result) -> str:
    return "inconclusive: " + "; ".join(notes_of(result))


def _rule_withheld(result: Result, rule: str) -> str:
    if result.undecided[rule]:
        return (f"not decided: {result.undecided[rule]} possible {rule} finding(s), a rule this trace cannot decide "
                f"because it does not record {', '.join(result.narrowed[rule])}")
    n = result.withheld[rule]
    why = "the trace cannot prove them"
    if result.gaps:
        why = f"the trace has {len(result.gaps)} gap(s) of lost events (first at line {result.gaps[0]})"
    return f"inconclusive: {n} {rule} finding(s) withheld because {why}"


def _trace(suite: _Suite, result: Result, errors: Sequence[InputError], engine: str) -> None:
    case = suite.case(classname(result.file), _testname(result.file), result.file)
    if errors:
        suite.error(case, errors)
    if result.findings:
        lines = event_lines(result, {n for f in result.findings for n in (*f.related_lines, f.line)})
        text = _findings_text(result.findings, result, lines, engine)
        suite.failure(case, _failure_message(result.findings), result.findings[0].rule, text)
    elif result.withheld and not errors:
        suite.skipped(case, _inconclusive(result))
    suite.system_out(case, notes_of(result))


def _trace_per_rule(suite: _Suite, result: Result, errors: Sequence[InputError], engine: str) -> None:
    rules = list(dict.fromkeys([f.rule for f in result.findings] + sorted(result.withheld | result.undecided)))
    share = len(rules) + bool(errors) or 1
    cls = classname(result.file, per_rule=True)
    lines = event_lines(result, {n for f in result.findings for n in (*f.related_lines, f.line)})
    for rule in rules:
        case = suite.case(cls, rule, result.file, share)
        found = [f for f in result.findings if f.rule == rule]
        if found:
            text = _findings_text(found, result, lines, engine)
            if result.withheld[rule] or result.undecided[rule]:
                text += "\n\nnote: " + _rule_withheld(result, rule).removeprefix("inconclusive: ")
            suite.failure(case, _failure_message(found), rule, text)
        else:
            suite.skipped(case, _rule_withheld(result, rule))
    if errors:
        suite.error(suite.case(cls, "input", result.file, share), errors)
    if not rules and not errors:
        suite.system_out(suite.case(cls, "clean", result.file, share), notes_of(result))


def render(results: Sequence[Result], errors: Sequence[InputError] = (), *, per_rule: bool = False,
           engine: str = "compiled", durations: Mapping[str, float] | None = None) -> str:
    """The JUnit XML document for ``results`` and the input ``errors``.

    ``errors`` are the input errors of the run (a trace that could not be read,
    or bad lines); those already in a result's ``errors`` are reported with that
    trace, the others as a test case of their own per file.  ``durations`` maps
    a trace's file to the seconds its check took (0 when absent).
    """
    suite = _Suite(durations or {})
    in_results = {_error_key(e) for r in results for e in r.errors}
    for r in results:
        (_trace_per_rule if per_rule else _trace)(suite, r, r.errors, engine)
    orphans: dict[str, list[InputError]] = {}
    for e in errors:
        if _error_key(e) not in in_results:
            orphans.setdefault(e.file, []).append(e)
    for file, errs in orphans.items():
        if per_rule:
            case = suite.case(classname(file, per_rule=True), "input", file)
        else:
            case = suite.case(classname(file), _testname(file), file)
        suite.error(case, errs)

    root = ET.Element("testsuites", {"name": SUITE, **suite.attrs()})
    el = ET.SubElement(root, "testsuite", {"name": SUITE, **suite.attrs()})
    el.extend(suite.cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
