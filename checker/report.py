"""Reporters: pure functions from results to text.  Engines never print.

``text`` reads like a lockdep splat: the rule, the events that led there in
trace order (re-read from the file), the state of each object, where the rule
comes from, and the command that reproduces it.  ``json`` is the same
content, versioned (``REPORT_VERSION``) and documented by the JSON Schema
``docs/report-v1.schema.json``.  SARIF, JUnit and HTML live in
``checker.reporters``.
"""

from __future__ import annotations

import gzip
import shlex
from collections import Counter
from typing import Any

import orjson

from checker.core import Finding, InputError, Result, fingerprints
from spec import SPEC
from spec.lang import Rule

REPORT_VERSION = 1
_RULES = {r.id: r for r in SPEC.rules}


def versions(rule: Rule) -> str:
    since = f"{rule.since[0]}.{rule.since[1]}"
    if rule.until:
        return f"Linux {since} to {rule.until[0]}.{rule.until[1] - 1}" if rule.until[1] else f"Linux {since}+"
    text = f"Linux {since}+"
    if rule.features:
        text += " (" + ", ".join(sorted(rule.features)) + ")"
    return text


def read_lines(path: str, wanted: set[int]) -> dict[int, str]:
    """The text of the given lines of a trace file (empty for stdin)."""
    if path == "-" or not wanted:
        return {}
    out: dict[int, str] = {}
    last = max(wanted)
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if gz else open
        with opener(path, "rb") as f:
            for n, line in enumerate(f, 1):
                if n in wanted:
                    out[n] = line.decode("utf-8", "replace").rstrip("\r\n")
                if n >= last:
                    break
    except OSError:
        return {}
    return out


def located(result: Result, line: int) -> tuple[str, int]:
    """Where event ``line`` of a result's trace is: in its file or, for two recordings joined (``dmaspec check
    --join``), in the recording it comes from."""
    if result.joined and line in result.origins:
        return result.origins[line]
    return result.file, line


def where(result: Result, line: int) -> str:
    """``FILE:LINE`` of an event of a result's trace (``located``); a joined trace's end is its name."""
    file, n = located(result, line)
    if result.joined and (file, n) == (result.file, line):
        return result.file
    return f"{file}:{n}" if n else file


def event_lines(result: Result, wanted: set[int]) -> dict[int, str]:
    """The text of the given events of a result's trace, re-read from its file (or the recordings joined)."""
    if not result.joined:
        return read_lines(result.file, wanted)
    by_file: dict[str, dict[int, int]] = {}
    for n in wanted:
        if n in result.origins:
            file, line = result.origins[n]
            by_file.setdefault(file, {})[line] = n
    out: dict[int, str] = {}
    for file, lines in by_file.items():
        for line, text in read_lines(file, set(lines)).items():
            out[lines[line]] = text
    return out


def reproduce(result: Result, engine: str = "compiled") -> str:
    parts = ["dmaspec", "check", *(["--join"] if result.joined else []), "--profile", result.profile]
    if engine != "compiled":
        parts += ["--engine", engine]
    if not result.leaks_checked:
        parts.append("--no-leaks")
    parts += [f"--{analysis}" for analysis in result.analyses]
    parts += [*result.join_options, *result.joined] if result.joined else [result.file]
    return shlex.join(parts)


def _clip(text: str, width: int = 150) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


_COLORS = {"error": "\033[1;31m", "warning": "\033[1;33m", "rule": "\033[1m", "mark": "\033[1;36m",
           "dim": "\033[2m"}
_RESET = "\033[0m"


def _paint(text: str, what: str, color: bool) -> str:
    return f"{_COLORS[what]}{text}{_RESET}" if color else text


def finding_text(f: Finding, result: Result, lines: dict[int, str], engine: str = "compiled",
                 color: bool = False) -> str:
    rule = _RULES[f.rule]
    sev = _paint(rule.severity.value, rule.severity.value, color)
    out = [f"{where(result, f.line)}: {sev}: {_paint(f.rule, 'rule', color)}: {rule.message}"]
    who = f"{rule.who.value} {rule.kind.value}"
    out.append(f"  rule:   {f.rule} ({who}; {versions(rule)}; checked as profile {result.profile})")
    for s in rule.sources:
        out.append(f"  source: {s}")
    involved = set(f.related_lines)
    shown = sorted(involved | {f.line} | {n for n in window(f) if n in lines})
    if shown:
        out.append("  events, in trace order: (* made the objects what they are, > broke the rule)")
        previous = 0
        for n in shown:
            if previous and n > previous + 1:
                out.append("          ...")
            previous = n
            mark = _paint(">", "mark", color) if n == f.line else "*" if n in involved else " "
            text = lines.get(n)
            if text is None:
                text = "<end of trace>" if f.op == "<end of trace>" and n == f.line else f"({f.op})"
            label = f"{n:>7}" if not result.joined else " " + where(result, n)
            out.append(f"   {mark}{label}  {_clip(text)}")
    if f.objects:
        out.append("  state when the rule broke:")
        for o in f.objects:
            out.append(f"    {o.describe()}")
    out += [f"  {line}" for line in f.detail.splitlines()]
    out.append(_paint(f"  reproduce: {reproduce(result, engine)}", "dim", color) if color else
               f"  reproduce: {reproduce(result, engine)}")
    return "\n".join(out)


CONTEXT = 2  # events shown before the one that broke the rule, involved or not


def window(f: Finding) -> range:
    """The lines just before the finding's event: what else was going on."""
    return range(max(1, f.line - CONTEXT), f.line)


def text(results: list[Result], engine: str = "compiled", errors: list[InputError] | None = None,
         quiet: bool = False, color: bool = False) -> str:
    """The terminal report; input errors count in the summary (the CLI prints them to stderr)."""
    out: list[str] = []
    for r in results:
        wanted = {n for f in r.findings for n in (*f.related_lines, f.line, *window(f))}
        lines = event_lines(r, wanted)
        for f in r.findings:
            out.append(finding_text(f, r, lines, engine, color))
            out.append("")
        notes = notes_of(r)
        if notes and not quiet:
            out.append(f"{r.file}: note: " + "; ".join(notes))
    table = by_rule(results)
    if len(table) > 1:
        out.append("")
        out.append("findings by rule:")
        out += [f"  {n:>6}  {rule:<28} {_RULES[rule].severity.value:<8} {_RULES[rule].message}" for rule, n in table]
    out.append(summary(results, errors or []))
    return "\n".join(out) + "\n"


def by_rule(results: list[Result]) -> list[tuple[str, int]]:
    """Findings counted by rule, most first."""
    counts = Counter(f.rule for r in results for f in r.findings)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def notes_of(r: Result) -> list[str]:
    """What the reader must know to trust the verdict: gaps, narrowing, withheld, ignored."""
    notes = []
    if r.withheld:
        withheld = ", ".join(f"{rule} x{n}" for rule, n in sorted(r.withheld.items()))
        notes.append(f"{sum(r.withheld.values())} finding(s) withheld because the trace cannot prove them ({withheld})")
    if r.gaps:
        first = where(r, r.gaps[0]) if r.joined else f"line {r.gaps[0]}"
        notes.append(f"{len(r.gaps)} gap(s) of lost events (first at {first}): objects alive then are uncertain")
    if r.narrowed:
        ops = sorted({op for v in r.narrowed.values() for op in v})
        notes.append(f"{len(r.narrowed)} rule(s) not decidable because the trace does not record {', '.join(ops)}")
    if r.undecided:
        rules = ", ".join(f"{rule} x{n}" for rule, n in sorted(r.undecided.items()))
        notes.append(f"{sum(r.undecided.values())} possible finding(s) of those rules not decided ({rules})")
    notes.extend(r.conversion_notes)
    if r.suppressed:
        notes.append(f"{r.suppressed} known finding(s) suppressed by the baseline")
    if r.reused:
        notes.append(f"{r.reused} handle(s) returned while still live in the model: the trace missed a release")
    if r.ignored:
        notes.append(", ".join(f"{n} event(s) ignored: {reason}" for reason, n in sorted(r.ignored.items())))
    if not r.leaks_checked:
        notes.append("end-of-trace obligations (leaks) not checked")
    return notes


def summary(results: list[Result], errors: list[InputError]) -> str:
    events = sum(r.events for r in results)
    findings = [f for r in results for f in r.findings]
    sev = Counter(_RULES[f.rule].severity.value for f in findings)
    bad = sum(1 for r in results if r.findings)
    withheld = sum(sum(r.withheld.values()) for r in results)
    parts = [f"checked {len(results)} trace(s), {events:,} event(s):"]
    if findings:
        kinds = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in sorted(sev.items()))
        parts.append(f"{len(findings)} finding(s) ({kinds}) in {bad} trace(s)")
    else:
        parts.append("no finding")
    if withheld:
        parts.append(f"{withheld} withheld (inconclusive)")
    undecided = sum(sum(r.undecided.values()) for r in results)
    if undecided:
        parts.append(f"{undecided} possible finding(s) of rules the trace cannot decide")
    if errors:
        parts.append(f"{len(errors)} input error(s)")
    if not findings and not withheld and not errors and not undecided:
        parts.append("clean")
    return " ".join(parts[:1]) + " " + "; ".join(parts[1:])


def as_json(results: list[Result], exit_status: int, errors: list[InputError], engine: str = "compiled") -> str:
    traces: list[dict[str, Any]] = []
    for r in results:
        traces.append({
            "file": r.file, "profile": r.profile, "events": r.events,
            "findings": [{
                "rule": f.rule, "severity": _RULES[f.rule].severity.value, "message": _RULES[f.rule].message,
                "line": f.line, "op": f.op, "tid": f.tid, "related_lines": list(f.related_lines),
                "objects": [{"table": o.table, "key": o.key, "present": o.present, "born": o.born, "last": o.last,
                             "state": dict(o.fields)} for o in f.objects],
                "sources": [str(s) for s in _RULES[f.rule].sources],
                "reproduce": reproduce(r, engine), "fingerprint": fp,
                **({"detail": f.detail} if f.detail else {}),
            } for f, fp in zip(r.findings, fingerprints(r), strict=True)],
            "withheld": dict(r.withheld), "undecided": dict(r.undecided), "format": r.source_format,
            "ignored": dict(r.ignored), "gaps": r.gaps, "reused_handles": r.reused,
            "narrowed": {k: list(v) for k, v in r.narrowed.items()}, "leaks_checked": r.leaks_checked,
            "suppressed_by_baseline": r.suppressed,
            "errors": [{"file": e.file, "line": e.line, "message": e.message} for e in r.errors],
            **({"joined": {"files": list(r.joined), "origins": {
                str(n): {"file": file, "line": line} for n, (file, line) in sorted(r.origins.items())}}}
               if r.joined else {}),
        })
    doc = {"format": "dmaspec-report", "version": REPORT_VERSION, "exit_status": exit_status, "traces": traces,
           "errors": [{"file": e.file, "line": e.line, "message": e.message} for e in errors],
           "summary": summary(results, errors)}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n"


def rules_table(profile_name: str, fmt: str) -> str:
    from spec import profile

    prof = profile(profile_name)
    rules = [r for r in SPEC.rules if prof.admits_rule(r)]
    if fmt == "json":
        return orjson.dumps([{
            "id": r.id, "message": r.message, "severity": r.severity.value, "who": r.who.value, "kind": r.kind.value,
            "since": ".".join(map(str, r.since)), "until": ".".join(map(str, r.until)) if r.until else None,
            "features": sorted(r.features), "sources": [str(s) for s in r.sources], "catalog": r.catalog,
            "explain": r.explain,
        } for r in rules], option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "markdown":
        out = [f"# dma-buf rules in force for profile `{prof.name}` (Linux {prof.version[0]}.{prof.version[1]})", "",
               f"{prof.description}.", "", "| ID | severity | who | kind | versions | rule | sources |",
               "|---|---|---|---|---|---|---|"]
        for r in rules:
            srcs = "; ".join(str(s).replace("|", "\\|") for s in r.sources)
            out.append(f"| `{r.id}` | {r.severity.value} | {r.who.value} | {r.kind.value} | {versions(r)} | "
                       f"{r.message} | {srcs} |")
        return "\n".join(out) + "\n"
    out = [f"{len(rules)} rules in force for profile {prof.name} (Linux {prof.version[0]}.{prof.version[1]}): "
           f"{prof.description}", ""]
    for r in rules:
        out.append(f"{r.id:<28} {r.severity.value:<7} {r.who.value:<10} {versions(r):<20} {r.message}")
        for s in r.sources:
            out.append(f"{'':<28} source: {s}")
    return "\n".join(out) + "\n"
