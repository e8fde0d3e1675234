"""Counterexamples: made from an engine's path, written as traces, and replayed to their rule.

Every engine (explorer, bounded model checker, hypothesis machine) hands a
path of moves to ``build``, which replays the path's events through the
reference interpreter to make the finding, exactly as ``dmaspec check``
would.  ``trace_bytes`` writes it in the canonical format (a header naming
the engine, configuration and schedule, then the events), and ``confirm``
replays that trace through the compiled executor and says whether it gives
the same rule at the same event, so no engine can report what the checker
would not.

Example
-------
>>> from checker.engines.explorer import explore
>>> from spec.configs import scenario
>>> result = explore(scenario("resv-order-no-ctx").config)
>>> cx = [c for c in result.counterexamples if c.rule == "LOCK-DEADLOCK"][0]
>>> confirm(cx)
True
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import orjson

from checker.core import Counterexample, Finding, ObjectState
from checker.engines.model import FIRST_LINE, Model, State, Transition, replay
from checker.trace import FORMAT, FORMAT_VERSION, validate
from spec.rules import LOCK_DEADLOCK


def build(model: Model, path: Sequence[Transition], rule: str, engine: str, *, end: State | None = None,
          seed: int | None = None) -> Counterexample:
    """The counterexample of ``path`` breaking ``rule``.

    ``end`` is the last state when the rule broke there rather than at an
    event: at the end of the trace (a leak) or as a deadlock.
    """
    events = tuple(e for t in path for e in t.events)
    schedule = tuple(model.actor_name(t.actor) for t in path for _ in t.events)
    waiting: tuple[dict[str, object], ...] = ()
    if rule == LOCK_DEADLOCK:
        assert end is not None
        finding = model.deadlock_finding(end, len(events) + FIRST_LINE)
        waiting = tuple(dict(st.event(model.actors[i].tid, model.actors[i].pid, None))
                        for i, _, st in model.waiting(end))
    else:
        it, findings = replay(model.profile, events, model.initial().rows)
        if end is not None:
            it.finish()
            findings = list(it.result.findings)
        matches = [f for f in findings if f.rule == rule]
        if not matches:
            raise AssertionError(f"path does not break {rule} when replayed: the model and the interpreter disagree")
        finding = matches[0]
    return Counterexample(finding, events, schedule, _states(model, events, finding), engine, model.config.name,
                          model.profile.name, waiting, seed)


def _states(model: Model, events: tuple[dict[str, object], ...],
            finding: Finding) -> tuple[tuple[ObjectState, ...], ...]:
    it, _ = replay(model.profile, (), model.initial().rows)
    keys = [(o.table, o.key) for o in finding.objects]
    out = []
    for n, ev in enumerate(events, FIRST_LINE):
        it.feed(validate(dict(ev), it.file, n))
        out.append(tuple(it.object_state(t, k) for t, k in keys))
    return tuple(out)


def header(cx: Counterexample) -> dict[str, object]:
    source: dict[str, object] = {"tool": "dmaspec explore", "engine": cx.engine, "config": cx.config,
                                 "rule": cx.rule, "schedule": list(cx.schedule)}
    if cx.waiting:
        source["waiting"] = list(cx.waiting)
    if cx.seed is not None:
        source["seed"] = cx.seed
    # A schedule that stops at a broken rule or with threads asleep is not a whole program run: no leak
    # checks.  One that breaks an end-of-trace obligation ran every actor to its end.
    partial = cx.finding.line < len(cx.events) + FIRST_LINE or cx.rule == LOCK_DEADLOCK
    return {"format": FORMAT, "version": FORMAT_VERSION, "profile": cx.profile, "partial": partial,
            "source": source}


def trace_bytes(cx: Counterexample) -> bytes:
    """The counterexample as a canonical trace (JSON Lines, header first)."""
    lines = [orjson.dumps(header(cx))] + [orjson.dumps(e) for e in cx.events]
    return b"\n".join(lines) + b"\n"


def confirm(cx: Counterexample) -> bool:
    """Whether the compiled executor, replaying the trace, breaks the same rule at the same event.

    A deadlock's trace lists the calls its threads sleep in (header
    ``source.waiting``); the executor reports ``LOCK-DEADLOCK`` after the last
    event when every one of them would still sleep (``checker.sleeping``).
    """
    from checker.api import check_stream  # local: checker.api pulls in the readers

    result = check_stream(io.BytesIO(trace_bytes(cx)), "counterexample.jsonl", engine="compiled")
    return cx.finding.line in [f.line for f in result.findings if f.rule == cx.rule]


def summary(cx: Counterexample) -> dict[str, object]:
    """The counterexample as JSON-ready data (for reports)."""
    return {"rule": cx.rule, "engine": cx.engine, "config": cx.config, "profile": cx.profile,
            "line": cx.finding.line, "events": list(cx.events), "schedule": list(cx.schedule),
            "waiting": list(cx.waiting), "seed": cx.seed}


__all__ = ["build", "confirm", "header", "summary", "trace_bytes"]
