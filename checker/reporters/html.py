"""The HTML report: one self-contained page a reviewer opens in a browser.

``render`` gives a summary (traces, events, findings by severity, what was
withheld, counts by rule linking to the findings), then one section per
finding: the rule and where it comes from, the reproduce command, a sequence
diagram (inline SVG: a lifeline per thread and per object, an arrow per event),
the events re-read from the trace, and the state of each object.

Everything that comes from a trace (ops, arguments, handles, names, the file's
own name) is untrusted: it reaches the page only through ``_esc``, as text or
as a quoted attribute value, never in a style, a script or a URL.  The page
fetches nothing (no fonts, scripts or images), and its Content-Security-Policy
forbids it to, so that even a mistake here could not run a script.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from checker.core import Finding, InputError, ObjectState, Result, fingerprints
from checker.report import event_lines, notes_of, reproduce, summary, versions, where
from spec import SPEC
from spec.lang import Value

_RULES = {r.id: r for r in SPEC.rules}
_END = "<end of trace>"
_SEVERITIES = ("error", "warning")
MAX_FINDINGS = 1000  # findings shown in full; the rest are counted in the summary
_LINKS_PER_RULE = 30

# Characters shown as escapes rather than as themselves: controls (C0 but tab and
# newline, DEL, C1), bidirectional overrides and isolates (which could reorder
# what the reviewer reads), line/paragraph separators, BOM, lone surrogates and
# the two noncharacters.
_INVISIBLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069"
                        "\ufeff\ud800-\udfff\ufffe\uffff]")


def _esc(value: object) -> str:
    """``value`` as HTML text or a quoted attribute value: invisible characters shown, markup escaped."""
    text = value if isinstance(value, str) else str(value)
    text = _INVISIBLE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)
    return html.escape(text, quote=True)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def _middle(text: str, width: int) -> str:
    """``text`` shortened in the middle (handles differ at both ends)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head):]


def _show(v: Value) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(repr(x) if isinstance(x, str) else _show(x) for x in v) + ")"
    return v if isinstance(v, str) else str(v)


def _json(v: object) -> str:
    try:
        return json.dumps(v, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return repr(v)


def _scalar_parts(v: object) -> list[int | str]:
    """The strings and integers a value is made of (what a handle or a key can be)."""
    if isinstance(v, bool) or v is None:
        return []
    if isinstance(v, int | str):
        return [v]
    if isinstance(v, tuple | list):
        return [p for x in v for p in _scalar_parts(x)]
    return []


# --- events, as re-read from the trace ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    line: int
    op: str
    label: str  # what the diagram's arrow says
    tid: str | None  # as shown; None when the trace does not say
    comm: str  # the task's name (the kernel's are at most 15 characters)
    args: str
    ret: str
    raw: str  # the line as written (clipped), or why it is not shown
    values: frozenset[int | str]  # what the event names: arguments, return value, thread, process
    end: bool = False  # the end of the trace, where obligations fall due


def _event(n: int, text: str | None, f: Finding) -> _Event:
    breaking = n == f.line
    if text is None:
        if breaking and f.op == _END:
            return _Event(n, "end of trace", "end of trace", None, "", "", "", "the end of the trace", frozenset(),
                          end=True)
        shown = f.op if breaking else "?"
        return _Event(n, shown, shown, str(f.tid) if breaking and f.tid is not None else None, "",
                      "", "", "(the line could not be re-read from the trace)", frozenset())
    raw = _clip(text, 2000)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
    if not isinstance(obj, dict):
        shown = f.op if breaking else "?"
        return _Event(n, shown, shown, None, "", _clip(text, 300), "", raw, frozenset())
    op = obj.get("op")
    label = op_text = op if isinstance(op, str) else _json(op)
    kind = obj.get("kind")
    if isinstance(kind, str) and kind not in ("", "call"):
        op_text = f"{op_text} ({kind})"
    tid = obj.get("tid")
    comm = obj.get("comm")
    args = obj.get("args")
    values: set[int | str] = set()
    if isinstance(args, dict):
        if isinstance(args.get("cmd"), str | int) and not isinstance(args["cmd"], bool):
            label = f"{label} {args['cmd']}"  # an ioctl: its command says what it does
        args_text = ", ".join(f"{k}={_json(v)}" for k, v in args.items())
        for v in args.values():
            values.update(_scalar_parts(v))
    else:
        args_text = "" if args is None else _json(args)
    for k in ("ret", "tid", "pid"):
        values.update(_scalar_parts(obj.get(k)))
    return _Event(n, _clip(op_text, 120), _clip(label, 120), None if tid is None else _clip(_json(tid), 40),
                  _clip(comm, 16) if isinstance(comm, str) else "", _clip(args_text, 400),
                  _clip(_json(obj["ret"]), 64) if "ret" in obj else "", raw, frozenset(values))


def _touches(ev: _Event, o: ObjectState) -> str:
    """How ``ev`` touched ``o``: created it, last changed it, names it, or '' (not at all)."""
    if ev.end:
        return "still open"
    if o.born and ev.line == o.born:
        return "created"
    if o.last and ev.line == o.last:
        return "last changed"
    parts = _scalar_parts(o.key)
    return "named" if parts and all(p in ev.values for p in parts) else ""


# --- the page ----------------------------------------------------------------------------------------------------

_CSS = """
:root{--fg:#1d2330;--muted:#5b6472;--line:#d5dae1;--bg:#fff;--alt:#f5f7fa;--err:#b3261e;--errbg:#fdecea;
--warn:#8a5a00;--warnbg:#fff4d6;--ok:#1e6b34;--okbg:#e6f4ea;--thr:#dbe8fb;--thrb:#3b6db3;--obj:#fdf0d8;--objb:#a86b00}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1240px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}
h2{font-size:18px;margin:28px 0 8px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:16px;margin:18px 0 6px}
h4{font-size:13px;margin:14px 0 4px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
code{overflow-wrap:anywhere}
a{color:#1f5fbf}
.verdict{font-size:15px;padding:8px 12px;border-radius:6px;background:var(--alt);border-left:5px solid var(--muted)}
.verdict.bad{background:var(--errbg);border-color:var(--err)}
.verdict.unsure{background:var(--warnbg);border-color:var(--warn)}
.verdict.clean{background:var(--okbg);border-color:var(--ok)}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:6px 14px;min-width:110px;background:var(--alt)}
.card b{display:block;font-size:20px}
.card.error b{color:var(--err)}
.card.warning b{color:var(--warn)}
.sev{display:inline-block;font-size:11px;font-weight:600;text-transform:uppercase;padding:1px 7px;border-radius:9px;
vertical-align:2px}
.sev.error{background:var(--errbg);color:var(--err);border:1px solid var(--err)}
.sev.warning{background:var(--warnbg);color:var(--warn);border:1px solid var(--warn)}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:4px 0 8px;width:100%}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top}
th{background:var(--alt);font-weight:600;white-space:nowrap}
td.num{text-align:right;white-space:nowrap}
td.args{overflow-wrap:anywhere;min-width:16em}
td.ret{overflow-wrap:anywhere;min-width:10em;max-width:16em}
td.links a{margin-right:8px;white-space:nowrap;display:inline-block}
td.rid{white-space:nowrap}
td.key{min-width:13em}
td.who{white-space:nowrap}
td.touch{min-width:15em}
th.narrow{width:1%}
table.rules td:nth-child(4){min-width:18em}
tr.hit td{background:var(--errbg);font-weight:600}
.finding{border:1px solid var(--line);border-left:6px solid var(--err);border-radius:6px;padding:4px 16px 10px;
margin:18px 0;background:var(--bg)}
.finding.warning{border-left-color:var(--warn)}
.finding:target{box-shadow:0 0 0 3px #9cc1f5}
.finding h3 .rid{font-family:ui-monospace,"DejaVu Sans Mono",monospace;text-decoration:none}
.finding h3 .msg{font-weight:400}
.where{margin:2px 0 6px;color:var(--muted)}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0}
dl.meta dt{color:var(--muted)}
dl.meta dd{margin:0;min-width:0}
dl.meta ul{margin:0;padding-left:18px}
.cmd{display:block;background:#1d2330;color:#f1f3f6;padding:5px 9px;border-radius:4px;white-space:pre-wrap}
.trace{margin-top:26px;font-size:15px;overflow-wrap:anywhere}
.back{font-size:12px;margin:6px 0 0}
ul.notes li{margin:2px 0;overflow-wrap:anywhere}
details summary{cursor:pointer;font-weight:600;margin:10px 0 4px}
footer{color:var(--muted);font-size:12px;margin-top:36px}
svg.seq{display:block;margin:4px 0 6px;background:#fcfdfe;border:1px solid var(--line);border-radius:4px}
svg.seq text{font-family:system-ui,sans-serif;font-size:12px;fill:var(--fg)}
svg.seq .life{stroke:#9aa3ae;stroke-width:1;stroke-dasharray:4 4}
svg.seq .thr rect{fill:var(--thr);stroke:var(--thrb)}
svg.seq .obj rect{fill:var(--obj);stroke:var(--objb)}
svg.seq .ghost rect{stroke-dasharray:3 3}
svg.seq .lane .h1{font-weight:600}
svg.seq .lane .h2{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:11px;fill:var(--muted)}
svg.seq .ln{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:11px;fill:var(--muted)}
svg.seq .arrow{stroke:#33475b;stroke-width:1.4;fill:none}
svg.seq .head{fill:#33475b}
svg.seq .op{paint-order:stroke;stroke:#fcfdfe;stroke-width:4px;stroke-linejoin:round}
svg.seq .band{fill:var(--errbg)}
svg.seq .hit .arrow{stroke:var(--err);stroke-width:2.2}
svg.seq .hit .head{fill:var(--err)}
svg.seq .hit .op{font-weight:700;fill:var(--err);stroke:var(--errbg)}
svg.seq .hit .ln{fill:var(--err);font-weight:700}
svg.seq .endline{stroke:var(--err);stroke-width:2;stroke-dasharray:7 4}
svg.seq .open{fill:var(--bg);stroke:var(--err);stroke-width:2}
svg.seq .dot{fill:#33475b}
@media print{.finding{break-inside:avoid-page}.cmd{background:none;color:var(--fg);border:1px solid var(--line)}}
"""

# Sequence diagram geometry, in pixels: lanes are as wide as fits the page, within bounds.
_LEFT, _HEAD, _ROW, _PAD, _FIT = 44, 42, 36, 12, 1150
_CHAR = 7  # a generous width of one character of a label
_MONO = 7  # of one character of a handle under a lifeline's head


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'none'; font-src 'none'; "
            "script-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'")


def _object_label(o: ObjectState) -> str:
    return f"{o.table} {_middle(_show(o.key), 24)}"


def _diagram(f: Finding, events: list[_Event], objects: list[ObjectState], touched: list[list[str]]) -> str:
    threads: list[str] = []
    comms: dict[str, str] = {}
    for ev in events:
        if ev.end:
            continue
        t = ev.tid if ev.tid is not None else "?"
        if t not in threads:
            threads.append(t)
        if ev.comm and t not in comms:
            comms[t] = ev.comm
    lanes = max(len(threads) + len(objects), 1)
    lane = max(170, min(250, (_FIT - _LEFT) // lanes))
    width = _LEFT + lanes * lane + _PAD
    for ev, hows in zip(events, touched, strict=True):  # room for messages a thread sends itself
        if not ev.end and not any(hows):
            x0 = _LEFT + threads.index(ev.tid if ev.tid is not None else "?") * lane + lane // 2
            width = max(width, x0 + 36 + 8 * len(_clip(ev.label, 44)) + _PAD)  # bold when it breaks
    top = _PAD + _HEAD + 8
    height = top + len(events) * _ROW + _PAD
    key_chars = (lane - 28) // _MONO

    def cx(i: int) -> int:
        return _LEFT + i * lane + lane // 2

    label = (f"Sequence diagram of {len(events)} event(s) between {len(threads)} thread(s) and "
             f"{len(objects)} object(s); the event at line {f.line} breaks {f.rule}")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="seq" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(label)}">']
    bottom = height - _PAD
    # the breaking event's band first, under everything
    for i, ev in enumerate(events):
        if ev.line == f.line:
            out.append(f'<rect class="band" x="1" y="{top + i * _ROW}" width="{width - 2}" height="{_ROW}"/>')
    heads: list[tuple[int, str, str, str, str]] = []
    for i, t in enumerate(threads):
        tip = f"thread {t}" + (f" ({comms[t]})" if t in comms else "")
        heads.append((cx(i), "thr", tip, f"thread {_middle(t, key_chars - 7)}", _middle(comms.get(t, ""), key_chars)))
    for j, o in enumerate(objects):
        kind = "obj" if o.present else "obj ghost"
        heads.append((cx(len(threads) + j), kind, o.describe(), o.table, _middle(_show(o.key), key_chars)))
    for x, kind, tip, h1, h2 in heads:
        out.append(f'<line class="life" x1="{x}" y1="{_PAD + _HEAD}" x2="{x}" y2="{bottom}"/>')
        out.append(f'<g class="lane {kind}"><title>{_esc(_clip(tip, 600))}</title>'
                   f'<rect x="{x - lane // 2 + 8}" y="{_PAD}" width="{lane - 16}" height="{_HEAD}" rx="5"/>'
                   f'<text class="h1" x="{x}" y="{_PAD + 17}" text-anchor="middle">{_esc(h1)}</text>'
                   f'<text class="h2" x="{x}" y="{_PAD + 33}" text-anchor="middle">{_esc(h2)}</text></g>')
    for i, ev in enumerate(events):
        y = top + i * _ROW + _ROW // 2 + 6
        hit = " hit" if ev.line == f.line else ""
        out.append(f'<g class="ev{hit}"><title>{_esc(f"line {ev.line}: {ev.raw}")}</title>')
        out.append(f'<text class="ln" x="{_LEFT - 6}" y="{y + 4}" text-anchor="end">{ev.line}</text>')
        targets = [cx(len(threads) + j) for j, how in enumerate(touched[i]) if how]
        if ev.end:
            out.append(f'<line class="endline" x1="{_LEFT}" y1="{y}" x2="{width - _PAD}" y2="{y}"/>')
            out.append(f'<text class="op" x="{_LEFT + 4}" y="{y - 7}">end of trace: still open</text>')
            out.extend(f'<circle class="open" cx="{x}" cy="{y}" r="6"/>' for x in targets)
        elif targets:
            x0 = cx(threads.index(ev.tid if ev.tid is not None else "?"))
            for x1 in targets:
                out.append(f'<line class="arrow" x1="{x0}" y1="{y}" x2="{x1 - 9}" y2="{y}"/>')
                out.append(f'<polygon class="head" points="{x1 - 1},{y} {x1 - 11},{y - 5} {x1 - 11},{y + 5}"/>')
            out.append(f'<circle class="dot" cx="{x0}" cy="{y}" r="3"/>')
            chars = max(14, (max(targets) - x0 - 16) // _CHAR)
            out.append(f'<text class="op" x="{x0 + 8}" y="{y - 7}">{_esc(_clip(ev.label, chars))}</text>')
        else:  # an event that names no object shown: a message to itself
            x0 = cx(threads.index(ev.tid if ev.tid is not None else "?"))
            out.append(f'<path class="arrow" d="M{x0} {y - 9} h24 v14 h-15"/>')
            out.append(f'<polygon class="head" points="{x0 + 1},{y + 5} {x0 + 11},{y} {x0 + 11},{y + 10}"/>')
            out.append(f'<text class="op" x="{x0 + 32}" y="{y + 1}">{_esc(_clip(ev.label, 44))}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _finding(f: Finding, anchor: str, number: int, result: Result, lines: dict[int, str], engine: str) -> str:
    rule = _RULES[f.rule]
    sev = rule.severity.value
    shown = sorted({*f.related_lines, f.line})
    events = [_event(n, lines.get(n), f) for n in shown]
    objects: list[ObjectState] = []
    for o in f.objects:
        if all((o.table, o.key) != (p.table, p.key) for p in objects):
            objects.append(o)
    touched = [[_touches(ev, o) for o in objects] for ev in events]
    at = where(result, f.line)
    thread = f" · thread {f.tid}" if f.tid is not None else ""
    out = [f'<article class="finding {_esc(sev)}" id="{anchor}">',
           f'<h3><span class="sev {_esc(sev)}">{_esc(sev)}</span> <a class="rid" href="#{anchor}">{_esc(f.rule)}</a>'
           f' <span class="msg">{_esc(rule.message)}</span></h3>',
           f'<p class="where">#{number} · <code>{_esc(at)}</code> · <code>{_esc(f.op)}</code>{_esc(thread)}</p>',
           '<dl class="meta">',
           f"<dt>rule</dt><dd><code>{_esc(f.rule)}</code>: {_esc(rule.who.value)} {_esc(rule.kind.value)}; "
           f"{_esc(versions(rule))}; checked as profile <code>{_esc(result.profile)}</code></dd>",
           "<dt>sources</dt><dd><ul>" + "".join(f"<li><code>{_esc(s)}</code></li>" for s in rule.sources)
           + "</ul></dd>"]
    if rule.explain:
        out.append(f"<dt>why</dt><dd>{_esc(rule.explain)}</dd>")
    out.append(f'<dt>reproduce</dt><dd><code class="cmd">{_esc(reproduce(result, engine))}</code></dd></dl>')
    out.append('<h4>Sequence</h4><div class="scroll">' + _diagram(f, events, objects, touched) + "</div>")
    out.append('<h4>Events, in trace order</h4><div class="scroll"><table class="events"><thead><tr><th>line</th>'
               "<th>thread</th><th>op</th><th>args</th><th>ret</th><th>objects touched</th></tr></thead><tbody>")
    for ev, hows in zip(events, touched, strict=True):
        hit = ev.line == f.line
        who = "" if ev.tid is None else ev.tid + (f" ({ev.comm})" if ev.comm else "")
        objs = "<br>".join(f"{_esc(_object_label(o))} <small>({_esc(how)})</small>"
                           for o, how in zip(objects, hows, strict=True) if how)
        row = '<tr class="hit"' if hit else "<tr"
        out.append(f'{row} title="{_esc(ev.raw)}"><td class="num">'
                   f'{"▶ " if hit else ""}{ev.line}</td><td class="mono who">{_esc(who)}</td>'
                   f'<td class="mono">{_esc(ev.op)}</td><td class="args mono">{_esc(ev.args)}</td>'
                   f'<td class="ret mono">{_esc(ev.ret)}</td><td class="touch">{objs or "—"}</td></tr>')
    out.append("</tbody></table></div>")
    if objects:
        out.append('<h4>Objects when the rule broke</h4><div class="scroll"><table class="objects"><thead><tr>'
                   "<th>object</th><th>state</th><th class='narrow'>created</th><th class='narrow'>last changed</th>"
                   "</tr></thead><tbody>")
        for o in objects:
            flags = " <small>(uncertain)</small>" if o.uncertain else ""
            out.append(f'<tr><td class="mono key">{_esc(o.table)}<br><code>{_esc(_show(o.key))}</code>{flags}</td>'
                       f'<td class="args mono">{_esc(o.describe())}</td>'
                       f'<td class="num">{f"line {o.born}" if o.born else "not in the trace"}</td>'
                       f'<td class="num">{f"line {o.last}" if o.last else "—"}</td></tr>')
        out.append("</tbody></table></div>")
    else:
        out.append("<p>The rule concerns the event itself; no object was involved.</p>")
    out.append(f'<p class="back"><a href="#summary">↑ summary</a> · <a href="#rule-{_esc(f.rule)}">'
               f"all {_esc(f.rule)}</a></p></article>")
    return "\n".join(out)


def render(results: Sequence[Result], errors: Sequence[InputError] = (), *, engine: str = "compiled",
           max_findings: int = MAX_FINDINGS) -> str:
    """The report of ``results`` (and input ``errors``) as one self-contained HTML5 document.

    The first ``max_findings`` findings get a section each; the summary counts them all.
    """
    used: set[str] = set()
    anchors: list[list[str]] = []  # per result, per finding shown in full
    shown_total = 0
    for r in results:
        mine = []
        for fp in fingerprints(r)[: max(0, max_findings - shown_total)]:
            anchor, k = f"f-{fp}", 2
            while anchor in used:
                anchor, k = f"f-{fp}-{k}", k + 1
            used.add(anchor)
            mine.append(anchor)
        shown_total += len(mine)
        anchors.append(mine)

    findings = [(r, f) for r in results for f in r.findings]
    by_sev = Counter(_RULES[f.rule].severity.value for _, f in findings)
    withheld = sum(sum(r.withheld.values()) for r in results)
    input_errors = list(errors) + [e for r in results for e in r.errors]
    verdict_cls = "bad" if findings else "unsure" if withheld or input_errors else "clean"
    title = f"dmaspec report: {len(findings)} finding(s) in {len(results)} trace(s)"

    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{_esc(_csp())}">',
           '<meta name="referrer" content="no-referrer">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_esc(title)}</title>", f"<style>{_CSS}</style></head>", "<body><main>",
           '<h1>dmaspec report</h1><section id="summary"><h2>Summary</h2>',
           f'<p class="verdict {verdict_cls}">{_esc(summary(list(results), input_errors))}</p>']
    if not findings:
        out.append("<p><strong>No finding.</strong> " + (
            "But the verdict is inconclusive: see the notes below.</p>" if withheld or input_errors
            else "Every rule in force held on every trace checked.</p>"))
    cards = [(str(len(results)), "trace(s)", ""), (f"{sum(r.events for r in results):,}", "event(s)", ""),
             (str(len(findings)), "finding(s)", "")]
    cards += [(str(by_sev[s]), s + "(s)", s) for s in _SEVERITIES if by_sev[s]]
    cards += [(str(n), s + "(s)", "") for s, n in sorted(by_sev.items()) if s not in _SEVERITIES]
    cards += [(str(withheld), "withheld (inconclusive)", "")] if withheld else []
    cards += [(str(len(input_errors)), "input error(s)", "error")] if input_errors else []
    out.append('<div class="cards">' + "".join(f'<div class="card {_esc(cls)}"><b>{_esc(n)}</b>{_esc(what)}</div>'
                                                for n, what, cls in cards) + "</div>")

    if findings:
        per_rule: dict[str, list[tuple[Result, Finding, str | None]]] = {}
        for r, mine in zip(results, anchors, strict=True):
            for i, f in enumerate(r.findings):
                per_rule.setdefault(f.rule, []).append((r, f, mine[i] if i < len(mine) else None))
        out.append('<h3>Findings by rule</h3><div class="scroll"><table class="rules"><thead><tr><th>rule</th>'
                   "<th>severity</th><th>findings</th><th>message</th><th>where</th></tr></thead><tbody>")
        order = sorted(per_rule, key=lambda rid: (_SEVERITIES.index(_RULES[rid].severity.value)
                                                  if _RULES[rid].severity.value in _SEVERITIES else 9, rid))
        for rid in order:
            rows = per_rule[rid]
            rule = _RULES[rid]
            links = [f'<a href="#{a}" title="{_esc(where(r, f.line))}">{_esc(_link_text(r, f))}</a>'
                     for r, f, a in rows if a][:_LINKS_PER_RULE]
            more = len(rows) - len(links)
            if more:
                links.append(f"<span>and {more} more</span>")
            first = next((a for _, _, a in rows if a), None)
            name = f'<a href="#{first}">{_esc(rid)}</a>' if first else _esc(rid)
            out.append(f'<tr id="rule-{_esc(rid)}"><td class="mono rid">{name}</td><td><span class="sev '
                       f'{_esc(rule.severity.value)}">{_esc(rule.severity.value)}</span></td>'
                       f'<td class="num">{len(rows)}</td><td>{_esc(rule.message)}</td>'
                       f'<td class="links">{"".join(links)}</td></tr>')
        out.append("</tbody></table></div>")
        if shown_total < len(findings):
            out.append(f"<p>Only the first {shown_total} of {len(findings)} findings are shown in full; the text and "
                       "JSON reports list them all.</p>")

    notes = [(r, notes_of(r)) for r in results]
    notes = [(r, n) for r, n in notes if n]
    if notes:
        out.append('<h3>Notes: what the verdict depends on</h3><ul class="notes">')
        out.extend(f"<li><code>{_esc(r.file)}</code>: {_esc('; '.join(n))}</li>" for r, n in notes)
        out.append("</ul>")
    if input_errors:
        out.append('<h3>Input errors</h3><ul class="notes">')
        out.extend(f"<li><code>{_esc(str(e))}</code></li>" for e in input_errors)
        out.append("</ul>")
    if results:
        out.append(f'<details><summary>Traces checked ({len(results)})</summary><div class="scroll">'
                   '<table class="traces"><thead><tr><th>trace</th><th>profile</th><th>events</th><th>findings</th>'
                   "<th>withheld</th></tr></thead><tbody>")
        for r in results:
            out.append(f'<tr><td class="mono">{_esc(r.file)}</td><td class="mono">{_esc(r.profile)}</td>'
                       f'<td class="num">{r.events:,}</td><td class="num">{len(r.findings)}</td>'
                       f'<td class="num">{sum(r.withheld.values())}</td></tr>')
        out.append("</tbody></table></div></details>")
    out.append("</section>")

    if shown_total:
        out.append('<section id="findings"><h2>Findings</h2>')
        number = 0
        for r, mine in zip(results, anchors, strict=True):
            if not mine:
                continue
            out.append(f'<p class="trace"><strong>{_esc(r.file)}</strong> · profile <code>{_esc(r.profile)}</code>'
                       f" · {r.events:,} event(s) · {len(r.findings)} finding(s)</p>")
            lines = event_lines(r, {n for f in r.findings[: len(mine)] for n in (*f.related_lines, f.line)})
            for f, anchor in zip(r.findings, mine, strict=False):
                number += 1
                out.append(_finding(f, anchor, number, r, lines, engine))
        out.append("</section>")
    out.append('<footer>Generated by dmaspec. This page is self-contained: it loads nothing and runs no script. '
               "Text taken from traces is shown escaped; invisible characters appear as <code>\\x..</code> or "
               "<code>\\u....</code>.</footer></main></body></html>")
    return "\n".join(out) + "\n"


def _link_text(r: Result, f: Finding) -> str:
    name = where(r, f.line).rsplit("/", 1)[-1]
    return _middle(name, 50)
