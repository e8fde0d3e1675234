"""SARIF 2.1.0: results as one static-analysis log, for GitHub code scanning and SARIF viewers.

One run holds every trace checked.  The driver lists every rule of the spec;
each finding is a result at its line of the trace, with a code flow of the
events that led there (one thread flow per thread, events in trace order,
re-read from the file) and the state of the objects when the rule broke.
Its ``partialFingerprints`` carry ``checker.core.fingerprints``, so an alert
keeps its identity from run to run.  What makes a verdict inconclusive
(withheld findings, gaps, narrowed rules, input errors) is in the run's
``properties`` and the invocation's notifications.

The log is built as plain dicts and serialised with orjson: nothing is escaped
by hand.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

from checker.core import Finding, InputError, ObjectState, Result, fingerprints
from checker.report import event_lines, located, notes_of, reproduce, summary, versions
from spec import SPEC
from spec.lang import Rule, Value

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SRCROOT = "%SRCROOT%"
FINGERPRINT_KEY = "dmaspecFingerprint/v1"
END_OF_TRACE = "<end of trace>"

# GitHub code scanning keeps (and shows) at most this many thread-flow
# locations per result; a longer history is cut to the newest events.
MAX_FLOW_LOCATIONS = 1000

_RULES = list(SPEC.rules)
_RULE_INDEX = {r.id: i for i, r in enumerate(_RULES)}

Json = dict[str, Any]


def tool_version() -> str:
    try:
        return metadata.version("dmaspec")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def render(results: list[Result], *, engine: str = "compiled", errors: Iterable[InputError] = (),
           srcroot: str | None = None) -> str:
    """The SARIF 2.1.0 log (JSON text) of checking ``results``.

    ``errors`` are input errors that left no result (a file that could not be
    read, say); those inside the results are reported too, once each.
    ``srcroot`` is the directory relative trace paths are relative to (the
    current directory by default).
    """
    return orjson.dumps(sarif_log(results, engine=engine, errors=errors, srcroot=srcroot),
                        option=orjson.OPT_INDENT_2).decode() + "\n"


def sarif_log(results: list[Result], *, engine: str = "compiled", errors: Iterable[InputError] = (),
              srcroot: str | None = None) -> Json:
    """The SARIF log as a dict (what ``render`` serialises)."""
    all_errors = _unique_errors([e for r in results for e in r.errors] + list(errors))
    sarif_results: list[Json] = []
    for r in results:
        sarif_results += _results_of(r, engine)
    root = Path(srcroot) if srcroot is not None else Path.cwd()
    run: Json = {
        "tool": {"driver": _driver()},
        "originalUriBaseIds": {SRCROOT: {
            "uri": root.resolve().as_uri().rstrip("/") + "/",
            "description": {"text": "The directory the trace paths are relative to."},
        }},
        "invocations": [_invocation(results, all_errors)],
        "results": sarif_results,
        "properties": _run_properties(results, all_errors, engine),
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


# -- the driver and its rules ------------------------------------------------------------


def _driver() -> Json:
    version = tool_version()
    return {
        "name": "dmaspec",
        "version": version,
        "semanticVersion": version,
        "rules": [_rule(r) for r in _RULES],
    }


def _rule_name(rule_id: str) -> str:
    """``ATT-DETACH-WHILE-MAPPED`` -> ``AttDetachWhileMapped``."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", rule_id) if part)


def _rule(rule: Rule) -> Json:
    sources = [str(s) for s in rule.sources]
    text = [rule.message + "."]
    if rule.explain:
        text.append(rule.explain)
    text.append(f"Who: {rule.who.value} ({rule.kind.value}). Applies to {versions(rule)}.")
    if rule.catalog:
        text.append(f"Catalog: {rule.catalog}.")
    text += [f"Source: {s}" for s in sources]
    markdown = [f"**{rule.message}**", ""]
    if rule.explain:
        markdown += [rule.explain, ""]
    markdown.append(f"- who: {rule.who.value} ({rule.kind.value})")
    markdown.append(f"- applies to: {versions(rule)}")
    if rule.catalog:
        markdown.append(f"- catalog: {rule.catalog}")
    markdown += [f"- source: `{s}`" for s in sources]
    return {
        "id": rule.id,
        "name": _rule_name(rule.id),
        "shortDescription": {"text": rule.message},
        "fullDescription": {"text": rule.explain or rule.message},
        "help": {"text": "\n".join(text), "markdown": "\n".join(markdown)},
        "defaultConfiguration": {"level": rule.severity.value},
        "properties": {
            "severity": rule.severity.value,
            "who": rule.who.value,
            "kind": rule.kind.value,
            "versions": versions(rule),
            "since": ".".join(map(str, rule.since)),
            "until": ".".join(map(str, rule.until)) if rule.until else None,
            "features": sorted(rule.features),
            "catalog": rule.catalog,
            "sources": sources,
            "tags": ["dma-buf", rule.kind.value],
        },
    }


# -- results -----------------------------------------------------------------------------


def _artifact(file: str) -> Json:
    """Where a trace is: relative paths against %SRCROOT%, absolute ones as file URIs."""
    if file == "-":
        return {"uri": "-", "description": {"text": "standard input"}}
    path = Path(file)
    if path.is_absolute():
        return {"uri": path.as_uri()}
    posix = file.replace(os.sep, "/")
    while posix.startswith("./"):
        posix = posix[2:]
    return {"uri": urllib.parse.quote(posix, safe="/"), "uriBaseId": SRCROOT}


def _physical(file: str, line: int) -> Json:
    return {"artifactLocation": _artifact(file), "region": {"startLine": max(line, 1)}}


def _at_end(f: Finding) -> bool:
    return f.op == END_OF_TRACE


def _shown_line(f: Finding) -> int:
    """The line a result points at: an end-of-trace obligation (reported at the last line + 1) points
    at the trace's last event."""
    return max(f.line - 1, 1) if _at_end(f) else f.line


def _flow_lines(f: Finding) -> tuple[list[int], int]:
    """The events a code flow shows, in trace order, and how many older ones were left out.

    The finding's own event always stays, with the most recent related events.
    """
    related = list(f.related_lines)
    room = MAX_FLOW_LOCATIONS - 1
    omitted = max(len(related) - room, 0)
    kept = related[omitted:]
    return (kept if _at_end(f) else kept + [f.line]), omitted


def _results_of(r: Result, engine: str) -> list[Json]:
    prints = fingerprints(r)
    flows = [_flow_lines(f) for f in r.findings]
    wanted = {n for lines, _ in flows for n in lines}
    text = event_lines(r, wanted)
    command = reproduce(r, engine)
    return [_result(f, r, fp, lines, omitted, text, command)
            for f, fp, (lines, omitted) in zip(r.findings, prints, flows, strict=True)]


def _object_name(o: ObjectState) -> str:
    return f"{o.table} {_value_text(o.key)}"


def _value_text(v: Value) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_value_text(x) for x in v) + ")"
    return str(v)


def _message(f: Finding, rule: Rule) -> str:
    text = rule.message + (" at the end of the trace" if _at_end(f) else "")
    states = "; ".join(o.describe() for o in f.objects)
    return f"{text}. State: {states}." if states else f"{text}."


def _result(f: Finding, r: Result, fingerprint: str, lines: list[int], omitted: int, text: dict[int, str],
            command: str) -> Json:
    rule = _RULES[_RULE_INDEX[f.rule]]
    return {
        "ruleId": f.rule,
        "ruleIndex": _RULE_INDEX[f.rule],
        "level": rule.severity.value,
        "message": {"text": _message(f, rule)},
        "locations": [{"physicalLocation": _physical(*located(r, _shown_line(f)))}],
        "codeFlows": [_code_flow(f, r, lines, omitted, text)],
        "partialFingerprints": {FINGERPRINT_KEY: fingerprint},
        "properties": {
            "traceLine": f.line,
            "atEndOfTrace": _at_end(f),
            "op": f.op,
            "tid": f.tid,
            "relatedLines": list(f.related_lines),
            "profile": r.profile,
            "objects": [_object_props(o) for o in f.objects],
            "reproduce": command,
        },
    }


def _object_props(o: ObjectState) -> Json:
    return {"table": o.table, "key": o.key, "present": o.present, "born": o.born, "last": o.last,
            "state": dict(o.fields), "description": o.describe()}


def _event(line_text: str | None) -> tuple[Json | None, str | None]:
    """The parsed event of a trace line and its one-line rendering (op and arguments)."""
    if line_text is None:
        return None, None
    try:
        event = orjson.loads(line_text)
    except orjson.JSONDecodeError:
        return None, _clip(line_text)
    if not isinstance(event, dict):
        return None, _clip(line_text)
    args = event.get("args")
    shown = ", ".join(f"{k}={_json(v)}" for k, v in args.items()) if isinstance(args, dict) else ""
    call = f"{event.get('op', '?')}({shown})"
    if "ret" in event:
        call += f" = {_json(event['ret'])}"
    return event, _clip(call)


def _json(v: object) -> str:
    return v if isinstance(v, str) else orjson.dumps(v).decode()


def _clip(text: str, width: int = 300) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _thread_key(tid: object) -> str:
    return f"tid {tid}" if tid is not None and not isinstance(tid, (dict, list)) else "unknown thread"


def _code_flow(f: Finding, r: Result, lines: list[int], omitted: int, text: dict[int, str]) -> Json:
    threads: dict[str, list[Json]] = {}
    tids: dict[str, object] = {}
    order = 0
    for n in lines:
        event, call = _event(text.get(n))
        here = n == f.line and not _at_end(f)
        tid: object = event.get("tid") if event is not None else (f.tid if here else None)
        if call is None:
            call = f"{f.op} (line {n})" if here else f"event at line {n}"
        order += 1
        loc = _flow_location(f, r, n, call, order, here)
        key = _thread_key(tid)
        tids.setdefault(key, tid if key.startswith("tid ") else None)
        threads.setdefault(key, []).append(loc)
    flows: list[Json] = [{"id": key, "message": {"text": f"thread {tids[key]}" if key.startswith("tid ") else key},
                          "locations": locs, "properties": {"tid": tids[key]}}
                         for key, locs in threads.items()]
    if _at_end(f):
        order += 1
        end = _flow_location(f, r, _shown_line(f), "the trace ends", order, True)
        flows.append({"id": "end of trace", "message": {"text": "end of the trace"}, "locations": [end]})
    message = f"{len(lines)} event(s) that led to {f.rule}, in trace order"
    if omitted:
        message += f"; {omitted} older event(s) left out"
    return {"message": {"text": message}, "threadFlows": flows, "properties": {"omittedEvents": omitted}}


def _flow_location(f: Finding, r: Result, line: int, call: str, order: int, here: bool) -> Json:
    roles = []
    for o in f.objects:
        did = [what for what, at in (("created", o.born), ("last changed", o.last)) if at == line]
        if did and not here:
            roles.append({"object": _object_name(o), "role": " and ".join(did) + " here",
                          "stateAtFinding": o.describe()})
    loc: Json = {
        "location": {"physicalLocation": _physical(*located(r, line)), "message": {"text": call}},
        "executionOrder": order,
        "importance": "essential" if here else "important",
        "properties": {"line": line, "objects": roles},
    }
    if here:
        loc["state"] = {_object_name(o): {"text": o.describe()} for o in f.objects}
        broke = f"the trace ends with {f.rule} owed" if _at_end(f) else f"{call}: {f.rule} breaks here"
        loc["location"]["message"]["text"] = broke
    return loc


# -- the invocation and the run's properties ---------------------------------------------


def _unique_errors(errors: list[InputError]) -> list[InputError]:
    seen: set[tuple[str, int, str]] = set()
    out = []
    for e in errors:
        key = (e.file, e.line, e.message)
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


def _invocation(results: list[Result], errors: list[InputError]) -> Json:
    notes: list[Json] = []
    for e in errors:
        note: Json = {"level": "error", "message": {"text": str(e)}, "descriptor": {"id": "input-error"}}
        if e.file != "-" or e.line:
            note["locations"] = [{"physicalLocation": _physical(e.file, e.line) if e.line else
                                  {"artifactLocation": _artifact(e.file)}}]
        notes.append(note)
    for r in results:
        for text in notes_of(r):
            notes.append({"level": "warning" if r.inconclusive else "note",
                          "message": {"text": f"{r.file}: {text}"},
                          "descriptor": {"id": "inconclusive" if r.inconclusive else "trace-note"},
                          "locations": [{"physicalLocation": {"artifactLocation": _artifact(
                              r.joined[0] if r.joined else r.file)}}]})
    invocation: Json = {"executionSuccessful": not errors}
    if notes:
        invocation["toolExecutionNotifications"] = notes
    return invocation


def _run_properties(results: list[Result], errors: list[InputError], engine: str) -> Json:
    traces = [{
        "file": r.file,
        "profile": r.profile,
        "events": r.events,
        "findings": len(r.findings),
        "inconclusive": r.inconclusive,
        "withheld": dict(sorted(r.withheld.items())),
        "withheldTotal": sum(r.withheld.values()),
        "undecided": dict(sorted(r.undecided.items())),
        "format": r.source_format,
        "gaps": list(r.gaps),
        "narrowed": {rule: list(ops) for rule, ops in sorted(r.narrowed.items())},
        "reusedHandles": r.reused,
        "ignored": dict(sorted(r.ignored.items())),
        "leaksChecked": r.leaks_checked,
        "errors": [{"line": e.line, "message": e.message} for e in r.errors],
        "reproduce": reproduce(r, engine),
    } for r in results]
    return {
        "engine": engine,
        "inconclusive": any(r.inconclusive for r in results) or bool(errors),
        "summary": summary(results, errors),
        "traces": traces,
    }
