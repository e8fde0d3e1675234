"""Predictive analysis: schedules of a recorded trace's own threads that would break a rule.

A trace in which nothing went wrong this time may still hold a race: thread A
unmaps while thread B drops the last reference, and on another day B goes
first.  This analysis slides a window over the trace (``window`` events,
half overlapping) and, for each window with two or more threads, searches
every order of the window's events that nothing recorded rules out, over a
model of the window (``checker.engines.model``, ``recorded=True``):

- each thread keeps its own order;
- a call that uses a handle (or an fd of its process) another thread's call
  made (returned, or initialised as ``dma_fence_init`` does its fence) runs
  after that call; a process's calls run after the fork that made it;
- a lock is taken only when free, a fence wait returns only after the signal
  (the spec's ``waits``), and every call must return what it returned in the
  recording (an ``outcome`` that says otherwise rules the order out);
- the state at the window's start is the one the earlier events left.

Two engines search a window (``engine``):

- ``z3`` (the default): the bounded model checker's encoding of the same
  model (``checker.engines.bmc.search``: the spec's statements lowered to z3,
  every depth unrolled at once, one query for every guard rule the recording
  does not break there).  Threads whose calls share no object (the rows each
  call may touch, ``checker.engines.universe.footprints``) are searched apart
  and, within a group, of two adjacent calls that commute only one order is,
  so the cost grows with the window's size rather than with its
  interleavings.  When the solver gives up (``timeout`` seconds a call), the
  explicit engine searches the window, up to ``RESCUE_STATES`` states; a
  window neither decides is inconclusive (withheld, noted: never a pass).  A
  window the encoding cannot express is searched by the explicit engine
  (noted).
- ``explicit``: every state, breadth-first (``checker.engines.explorer``),
  each rule with its shortest schedule; fast on small windows, but the states
  grow with the interleavings (see ``bench/analysis.py``).

Both give the same rules in the same windows (``tests/test_predict.py`` holds
them to it), not always the same schedule.

A schedule that breaks a rule the recording does not break in that window is
written as a *witness*: the trace's earlier events, then the window in the
new order.  It is replayed through the compiled executor, and only a witness
that gives the rule is reported (``PREDICT-REORDER``, a warning, at the line
of the recorded event that breaks it in the witness), so an object from
before the trace (whose state is a guess) never makes a prediction.

What it does not see: synchronisation the trace does not record (futexes,
pipes, V4L2 queues), so a prediction may be a schedule the program never
allows; races wider than a window; orders across a lost-events marker (such
a window is not searched, and noted).  It holds the trace in memory.

Example
-------
>>> import json, os, tempfile
>>> events = [
...     {"op": "dma_buf_export", "tid": 1, "args": {"size": 4096}, "ret": "b1"},
...     {"op": "dma_buf_attach", "tid": 1, "args": {"dmabuf": "b1"}, "ret": "a1"},
...     {"op": "get_dma_buf", "tid": 1, "args": {"dmabuf": "b1"}},
...     {"op": "dma_buf_detach", "tid": 2, "args": {"dmabuf": "b1", "attach": "a1"}},
...     {"op": "dma_buf_put", "tid": 2, "args": {"dmabuf": "b1"}},
...     {"op": "dma_buf_put", "tid": 1, "args": {"dmabuf": "b1"}}]
>>> path = os.path.join(tempfile.mkdtemp(), "t.jsonl")
>>> with open(path, "w") as f:
...     _ = f.write("\\n".join(json.dumps(e) for e in events) + "\\n")
>>> r = analyze(path, window=6)
>>> [(f.rule, f.line, f.detail.split(" (")[0]) for f in r.result.findings]
[('PREDICT-REORDER', 3, 'predicted: REF-USE-AFTER-RELEASE')]
>>> [(p.rule, p.line) for p in analyze(path, window=6, engine="explicit").predictions]
[('REF-USE-AFTER-RELEASE', 3)]

Thread 2's detach and put may run before thread 1's ``get_dma_buf`` (line 3):
nothing recorded orders them, and then the put drops the last reference.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from checker.core import Counterexample, Exploration, Result, new_result
from checker.engines.explorer import explore
from checker.engines.model import Model, Rows, sorted_rows
from checker.engines.runtime import CompiledExecutor
from checker.trace import FORMAT, FORMAT_VERSION, Event, Header
from spec import SPEC
from spec.lang import Actor, Arg, Bump, Call, Config, Create, EventKind, Kind, Returns, Step, Stmt, Value
from spec.lint import walk_stmts
from spec.profiles import profile as find_profile
from spec.rules import PREDICT_REORDER

WINDOW = 12
ENGINES = ("explicit", "z3")
ENGINE = "z3"  # faster from window 8 on and the only one that scales (README: Predicting other schedules)
TIMEOUT = 5.0  # z3: seconds per solver call; past it the explicit engine tries the window
RESCUE_STATES = 100_000  # the explicit engine's states on a window z3 gave up on; past them, it is inconclusive
_RULES = {r.id: r for r in SPEC.rules}
_GUARDS = frozenset(r.id for r in SPEC.rules if r.kind is Kind.GUARD)
_HANDLE_RETURNS = {a.op for a in SPEC.actions if a.returns is Returns.HANDLE}
_FORKS = {"fork", "vfork", "clone"}  # their return is the new process


def _installs_fd(stmts: tuple[Stmt, ...]) -> bool:
    return any(isinstance(s, Call) and s.name == "install_fd" for s in walk_stmts(stmts))


# the ops that make an fd of the calling process (the spec's install_fd): its number is their return
_FD_MAKERS = {a.op for a in SPEC.actions if _installs_fd(a.body)} - _FORKS


def _arg_makers() -> dict[str, set[str]]:
    """The ops that make an object an argument names (dma_fence_init's fence, ww_acquire_init's context)."""
    out: dict[str, set[str]] = {}
    for a in SPEC.actions:
        for s in walk_stmts(a.body):
            if isinstance(s, Create) and isinstance(s.key, Arg):
                out.setdefault(a.op, set()).add(s.key.name)
    return out


_ARG_MAKERS = _arg_makers()
# lost-events markers: what happened in the gap is unknown, so no order of a window across one is predicted
_GAPS = {a.op for a in SPEC.actions if any(isinstance(s, Bump) for s in walk_stmts(a.body))}


@dataclass
class Prediction:
    rule: str  # the rule the other schedule breaks
    line: int  # the recorded line of the event that breaks it
    window: tuple[int, int]  # first and last line of the window
    counterexample: Counterexample
    witness: bytes  # the witness trace
    path: str = ""  # where it was written, if anywhere


@dataclass
class PredictResult:
    file: str
    profile: str
    window: int
    engine: str = ENGINE
    windows: int = 0  # windows explored (two threads or more)
    states: int = 0  # explicit: distinct states explored
    solver_calls: int = 0  # z3: one per group of threads searched, plus one per schedule found
    predictions: list[Prediction] = field(default_factory=list)  # one per rule and line, in the first window
    found: set[tuple[str, tuple[int, int]]] = field(default_factory=set)  # (rule, window): every confirmed witness
    unconfirmed: int = 0  # schedules whose witness the executor did not replay to the rule (withheld objects)
    inconclusive: list[tuple[tuple[int, int], str]] = field(default_factory=list)  # windows left undecided, why
    gaps: list[tuple[int, int]] = field(default_factory=list)  # windows not searched: they hold a lost-events marker
    fallbacks: list[tuple[tuple[int, int], str]] = field(default_factory=list)  # z3: windows it cannot encode, why
    rescued: list[tuple[int, int]] = field(default_factory=list)  # z3 gave up, the explicit engine decided them
    result: Result | None = None


def _raw(e: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"op": e.op}
    if e.kind is not EventKind.CALL:
        out["kind"] = e.kind.value
    out.update({"tid": e.tid, "pid": e.pid})
    if e.ctx is not None:
        out["ctx"] = e.ctx
    out["args"] = {k: v for k, v in e.args.items() if v is not None}
    if e.ret is not None:
        out["ret"] = e.ret
    return out


def _config(name: str, profile: str, events: list[Event]) -> tuple[Config, list[list[int]]]:
    """The window as a configuration: one actor per thread, ordered by what the recording shows depends on what."""
    tids = list(dict.fromkeys(e.tid for e in events))
    index = {t: n for n, t in enumerate(tids)}
    programs: list[list[Step]] = [[] for _ in tids]
    lines: list[list[int]] = [[] for _ in tids]
    made: dict[object, tuple[int, int]] = {}  # handle or (pid, fd) -> (actor, step) that made it
    forked: dict[int, tuple[int, int]] = {}  # child pid -> the fork
    for e in events:
        a = index[e.tid]
        after: set[tuple[str, int]] = set()
        for v in e.args.values():
            if isinstance(v, str) and v in made and made[v][0] != a:
                after.add((f"t{tids[made[v][0]]}", made[v][1]))
        fd = e.args.get("fd")
        if isinstance(fd, int) and (e.pid, fd) in made and made[(e.pid, fd)][0] != a:
            after.add((f"t{tids[made[(e.pid, fd)][0]]}", made[(e.pid, fd)][1]))
        if not programs[a] and e.pid in forked and forked[e.pid][0] != a:
            after.add((f"t{tids[forked[e.pid][0]]}", forked[e.pid][1]))
        n = len(programs[a])
        args = tuple((k, v) for k, v in e.args.items() if v is not None)
        programs[a].append(Step(e.op, args, e.ret, e.kind, after=tuple(sorted(after))))
        lines[a].append(e.line)
        if isinstance(e.ret, str) and e.op in _HANDLE_RETURNS:
            made[e.ret] = (a, n)
        for arg in _ARG_MAKERS.get(e.op, ()):
            if isinstance(e.args.get(arg), str):
                made[e.args[arg]] = (a, n)
        if e.op in _FD_MAKERS and isinstance(e.ret, int) and e.ret >= 0:
            made[(e.pid, e.ret)] = (a, n)
        if e.op == "fd_received" and isinstance(e.args.get("fd"), int):
            made[(e.pid, e.args["fd"])] = (a, n)
        if e.op in _FORKS and isinstance(e.ret, int) and e.ret > 0:
            forked[e.ret] = (a, n)
    pids = {e.tid: e.pid for e in events}
    actors = tuple(Actor(f"t{t}", t, pids[t], tuple(programs[index[t]])) for t in tids)
    return Config(name, profile, actors, f"a window of {len(events)} events", depth=len(events)), lines


class _Prefix:
    """The state the events before a window leave, kept by the compiled executor as the trace goes by."""

    def __init__(self, profile: str, file: str) -> None:
        self.ex = CompiledExecutor(find_profile(profile), file, check_leaks=False)
        self.decode = self.ex.module.DECODER.decode
        self.width = {t.name: len(t.fields) for t in SPEC.tables}

    def feed(self, raw: dict[str, Any], line: int) -> None:
        struct = self.decode(orjson.dumps(raw))
        self.ex.handlers[struct.__class__](struct, line)

    def rows(self, events: list[Event]) -> Rows:
        """The rows the window's ``events`` can reach: those keyed by a handle, thread or process they name,
        and, through the handles those rows hold, theirs (an attachment's buffer, a buffer's reservation
        object), to a fixpoint.  Every move copies the state, so the rest (other buffers, the tombstones the
        executor remembers) would only cost time; a prediction is confirmed on the whole trace anyway."""
        names: set[object] = set()
        for e in events:
            names.update(v for v in (*e.args.values(), e.ret) if isinstance(v, str))
            names.update((e.tid, e.pid))
        picked: dict[tuple[str, object], tuple[Value, ...]] = {}
        grew = True
        while grew:
            grew = False
            for table, content in self.ex.tables.items():
                n = self.width[table]
                for key, r in content.items():
                    if (table, key) in picked:
                        continue
                    parts = key if isinstance(key, tuple) else (key,)
                    if any(p in names for p in parts):
                        picked[(table, key)] = tuple(r[:n])
                        names.update(v for v in r[:n] if isinstance(v, str) and v)
                        grew = True
        return sorted_rows([(t, k, v) for (t, k), v in picked.items()])  # type: ignore[misc]


def _recorded_line(line: int, start: int, events: list[Event], order: list[int]) -> int:
    """The recorded trace's line of a witness's ``line``: the witness is a header, the ``start`` events before
    the window as recorded, then the window's events in the recorded lines ``order``.  0 (an object from
    before the trace) stays 0."""
    if line < 2:
        return line
    if line - 2 < start:
        return events[line - 2].line
    return order[line - 2 - start]


def _witness(header: dict[str, Any], prefix: list[dict[str, Any]], cx: Counterexample) -> bytes:
    lines = [orjson.dumps(header)] + [orjson.dumps(e) for e in prefix] + [orjson.dumps(e) for e in cx.events]
    return b"\n".join(lines) + b"\n"


def analyze(path: str, *, window: int = WINDOW, fmt: str | None = None, out_dir: str | None = None,
            unobserved: Iterable[str] = (), engine: str = ENGINE, timeout: float = TIMEOUT) -> PredictResult:
    """Predict rule-breaking schedules of the trace at ``path``; see the module docstring.

    ``engine`` searches each window: ``explicit`` (every state, breadth-first) or ``z3`` (the bounded model
    checker's unrolling, ``timeout`` seconds per solver call).
    """
    from checker.analysis.common import read_events
    from checker.api import check_stream

    if window < 2:
        raise ValueError("--predict-window must be 2 or more")
    if engine not in ENGINES:
        raise ValueError(f"--predict-engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    header = Header()
    events: list[Event] = []
    for item in read_events(path, fmt):
        if isinstance(item, Header):
            header = item
        else:
            events.append(item)
    profile = header.profile or "latest"
    hidden = frozenset(unobserved) | header.unobserved
    out = PredictResult(path, profile, window, engine)
    result = new_result(path, find_profile(profile), hidden, False)
    raws = [_raw(e) for e in events]
    prefix = _Prefix(profile, path)
    witness_header = {"format": FORMAT, "version": FORMAT_VERSION, "profile": profile, "unobserved": sorted(hidden),
                      "partial": True}
    seen: set[tuple[str, int]] = set()
    step = max(1, window // 2)
    fed = 0
    already = _recorded(raws, witness_header)
    for start in range(0, max(1, len(events) - 1), step):
        chunk = events[start:start + window]
        while fed < start:
            prefix.feed(raws[fed], events[fed].line)
            fed += 1
        if len({e.tid for e in chunk}) < 2:
            continue
        span = (chunk[0].line, chunk[-1].line)
        if any(e.op in _GAPS for e in chunk):
            out.gaps.append(span)
            continue
        config, lines = _config(f"{os.path.basename(path)}:{chunk[0].line}", profile, chunk)
        model = Model(config, recorded=True, initial_rows=prefix.rows(chunk))
        recorded = {rule for rule, n in already if start <= n < start + len(chunk)}
        out.windows += 1
        try:
            exploration = _search(out, config, model, _GUARDS - recorded, span, timeout)
        except AssertionError as e:  # checker.counterexample.build: the model and the interpreter disagree on a path
            if not str(e).startswith("path does not break"):
                raise
            # so far, only with an object from before the trace two of the window's threads use: the model, which
            # keeps no uncertainty from one move to the next, takes it as known after the first
            out.inconclusive.append((span, "the model and the checker disagree on an order there (an object from "
                                           "before the trace?)"))
            continue
        for cx in exploration.counterexamples:
            rule = _RULES[cx.rule]
            if rule.kind is not Kind.GUARD or cx.rule in recorded:
                continue
            source = {"tool": "dmaspec check --predict", "trace": path, "window": list(span),
                      "engine": "z3" if exploration.engine == "bmc" else exploration.engine,
                      "schedule": list(cx.schedule)}
            witness = _witness({**witness_header, "source": source}, raws[:start], cx)
            check = check_stream(io.BytesIO(witness), "witness.jsonl", check_leaks=False)
            hit = [f for f in check.findings if f.rule == cx.rule and f.line > start + 1]
            if not hit:
                out.unconfirmed += 1
                continue
            out.found.add((cx.rule, span))
            # the recorded line of each event of the reordered window, in the witness's order
            names = [a.name for a in config.actors]
            order = [lines[names.index(w)][sum(1 for x in cx.schedule[:n] if x == w)]
                     for n, w in enumerate(cx.schedule)]
            line = _recorded_line(hit[0].line, start, events, order)  # the event that breaks the rule
            # the objects' lines are the witness's: name the recorded events instead
            objects = tuple(replace(o, born=_recorded_line(o.born, start, events, order),
                                    last=_recorded_line(o.last, start, events, order)) for o in hit[0].objects)
            key = (cx.rule, line)
            if key in seen:
                continue
            seen.add(key)
            pred = Prediction(cx.rule, line, span, cx, witness)
            if out_dir is not None:
                os.makedirs(out_dir, exist_ok=True)
                pred.path = os.path.join(out_dir, f"{os.path.basename(path)}.predict.{line}.{cx.rule}.jsonl")
                with open(pred.path, "wb") as f:
                    f.write(witness)
            out.predictions.append(pred)
            detail = (f"predicted: {cx.rule} ({_RULES[cx.rule].message}) if the events of lines "
                      f"{span[0]}-{span[1]} run in the order {', '.join(map(str, order))}\n"
                      + (f"witness: {pred.path} (dmaspec check replays it to {cx.rule})" if pred.path else
                         "witness: write it with --predict-out DIR"))
            result.judge(PREDICT_REORDER, line, hit[0].op, hit[0].tid, objects, detail)
    result.findings.sort(key=lambda f: f.line)
    result.conversion_notes += notes(out)
    if out.inconclusive:
        result.withheld[PREDICT_REORDER] += len(out.inconclusive)  # not a pass: the run is inconclusive
    out.result = result
    return out


def _search(out: PredictResult, config: Config, model: Model, targets: frozenset[str], span: tuple[int, int],
            timeout: float) -> Exploration:
    """Every rule of the window's schedules: with the explorer, or with z3 for the ``targets`` (the guards the
    recording does not break there), falling back to the explorer for a window the encoding cannot express."""
    if out.engine == "z3":
        from checker.engines import bmc
        from checker.engines.universe import Unbounded

        try:
            found = bmc.search(config, targets, model=model, timeout=timeout, seed=0, reorder_only=True)
        except (bmc.EncodingError, Unbounded) as e:
            out.fallbacks.append((span, str(e)))
        else:
            out.solver_calls += _calls(found)
            if found.verdict != "unknown":
                return found
            # the solver gave up: the explicit engine may still decide the window (few threads sharing
            # everything have few states however long the window), within a bound
            why = next(n for n in found.notes if "gave up" in n).split(": ")[0]
            exploration = explore(config, model=model, obligations=False, symmetry=False, max_states=RESCUE_STATES)
            out.states += exploration.states
            if exploration.verdict == "unknown":
                out.inconclusive.append((span, f"{why}, and the explicit engine stopped at {exploration.states:,} "
                                               "states"))
                found.counterexamples += [c for c in exploration.counterexamples
                                          if c.rule not in {x.rule for x in found.counterexamples}]
                return found
            out.rescued.append(span)
            return exploration
    exploration = explore(config, model=model, obligations=False, symmetry=False)
    out.states += exploration.states
    return exploration


def _calls(found: Exploration) -> int:
    """The solver calls ``bmc.search`` noted."""
    for note in found.notes:
        if note.startswith("solver calls: "):
            return int(note.removeprefix("solver calls: "))
    return 0


def notes(r: PredictResult) -> list[str]:
    """What the report must say about how the windows were searched: windows left inconclusive, windows z3
    could not encode (searched by the explicit engine), windows not searched because of lost events.

    >>> r = PredictResult("t.jsonl", "latest", 12, "z3", inconclusive=[((3, 14), "the solver gave up (timeout)")],
    ...                   fallbacks=[((9, 20), "why")], gaps=[(30, 41)], rescued=[(15, 26)])
    >>> for n in notes(r):
    ...     print(n)
    --predict: 1 window(s) inconclusive (lines 3-14: the solver gave up (timeout)): an order there may break a rule
    --predict: 1 window(s) the solver gave up on, decided by the explicit engine (lines 15-26)
    --predict: 1 window(s) searched by the explicit engine, z3 cannot encode them (lines 9-20: why)
    --predict: 1 window(s) not searched, they hold a lost-events marker (lines 30-41)
    """
    out = []
    if r.inconclusive:
        where = "; ".join(f"{a}-{b}: {why}" for (a, b), why in r.inconclusive[:3]) + (
            "; ..." if len(r.inconclusive) > 3 else "")
        out.append(f"--predict: {len(r.inconclusive)} window(s) inconclusive (lines {where}): an order there may "
                   "break a rule")
    if r.rescued:
        where = ", ".join(f"{a}-{b}" for a, b in r.rescued[:5]) + (", ..." if len(r.rescued) > 5 else "")
        out.append(f"--predict: {len(r.rescued)} window(s) the solver gave up on, decided by the explicit engine "
                   f"(lines {where})")
    if r.fallbacks:
        (a, b), why = r.fallbacks[0]
        out.append(f"--predict: {len(r.fallbacks)} window(s) searched by the explicit engine, z3 cannot encode them "
                   f"(lines {a}-{b}: {why}" + (", ..." if len(r.fallbacks) > 1 else "") + ")")
    if r.gaps:
        where = ", ".join(f"{a}-{b}" for a, b in r.gaps[:5]) + (", ..." if len(r.gaps) > 5 else "")
        out.append(f"--predict: {len(r.gaps)} window(s) not searched, they hold a lost-events marker (lines {where})")
    return out


def _recorded(raws: list[dict[str, Any]], header: dict[str, Any]) -> list[tuple[str, int]]:
    """What the recording itself breaks, as (rule, event index): findings already, not predictions."""
    from checker.api import check_stream

    data = b"\n".join([orjson.dumps(header)] + [orjson.dumps(e) for e in raws]) + b"\n"
    check = check_stream(io.BytesIO(data), "recorded.jsonl", check_leaks=False)
    return [(f.rule, f.line - 2) for f in check.findings]


__all__ = ["ENGINE", "ENGINES", "RESCUE_STATES", "TIMEOUT", "WINDOW", "PredictResult", "Prediction", "analyze",
           "notes"]
