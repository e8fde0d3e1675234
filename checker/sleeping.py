"""Deadlocks in a trace: threads that were asleep in a call when it ended, and would sleep forever.

A trace header may list, under ``source.waiting``, calls that threads were
sleeping in when the recording stopped (the explorers write this for a
deadlock counterexample; a hung-task capture can too).  Each is an event
without a return.  When every one of them would still sleep in the state the
trace leaves (its action's ``waits`` holds: the lock is held, the fence
unsignalled), no thread can wake another: ``LOCK-DEADLOCK``, reported after
the last event with the objects the sleepers wait on.  If any could go on,
nothing is reported.

Example
-------
>>> import io, json
>>> from checker.api import check_stream
>>> head = {"format": "dmaspec-trace", "version": 1, "partial": True, "source": {"waiting": [
...     {"op": "dma_resv_lock", "tid": 2, "args": {"obj": "A"}}]}}
>>> events = [{"op": "dma_resv_lock", "tid": 1, "args": {"obj": "A"}, "ret": 0}]
>>> data = "\\n".join(json.dumps(x) for x in [head, *events]).encode()
>>> [(f.rule, f.line) for f in check_stream(io.BytesIO(data), "t.jsonl").findings]
[('LOCK-DEADLOCK', 3)]
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from checker.core import InputError, ObjectState, Result
from checker.engines.interpreter import evaluate
from checker.trace import Event, select, validate
from spec import SPEC
from spec.lang import Get, Profile, Value
from spec.lint import walk_expr
from spec.rules import LOCK_DEADLOCK

WAITED_ON = ("resv", "fence", "buffer", "rfc_access")  # the tables a sleeping call's condition names


class _RowView:
    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Value]) -> None:
        self.fields = fields


class _TableView:
    __slots__ = ("rows", "names")

    def __init__(self, rows: dict[Value, list[Any]], names: tuple[str, ...]) -> None:
        self.rows = rows
        self.names = names

    def get(self, key: Value) -> _RowView | None:
        r = self.rows.get(key)
        return None if r is None else _RowView(dict(zip(self.names, r, strict=False)))

    def __contains__(self, key: Value) -> bool:
        return key in self.rows


def compiled_view(tables: dict[str, dict[Value, list[Any]]]) -> SimpleNamespace:
    """The compiled executor's tables as ``evaluate`` reads a machine (``.tables[name].get(key).fields``)."""
    return SimpleNamespace(tables={t.name: _TableView(tables[t.name], t.field_names()) for t in SPEC.tables})


def waiting_calls(source: dict[str, Any], file: str) -> list[Event]:
    """The calls the header says threads were sleeping in, validated (an error names line 1, the header)."""
    raw = source.get("waiting", [])
    if not isinstance(raw, list):
        raise InputError(file, 1, 'header: "source"."waiting" must be a list of events (calls threads sleep in)')
    out = []
    for n, ev in enumerate(raw, 1):
        if not isinstance(ev, dict):
            raise InputError(file, 1, f'header: waiting call {n} must be an event object')
        try:
            out.append(validate(ev, file, 1))
        except InputError as e:
            raise InputError(file, 1, f"header: waiting call {n}: {e.message}") from None
    return out


def deadlock(machine: Any, profile: Profile, calls: list[Event],
             state_of: Callable[[str, Value], ObjectState]) -> tuple[ObjectState, ...] | None:
    """The objects ``calls`` sleep on, when every one of them would sleep in ``machine``'s state; else None."""
    objects: dict[tuple[str, Value], ObjectState] = {}
    for event in calls:
        action, _ = select(event, profile)
        if action is None or action.waits is None or not evaluate(action.waits, event, machine):
            return None  # this one could go on: no deadlock is proved
        for sub in walk_expr(action.waits):
            if isinstance(sub, Get) and sub.table in WAITED_ON:
                key = evaluate(sub.key, event, machine)
                if key not in (None, "") and (sub.table, key) not in objects:
                    objects[(sub.table, key)] = state_of(sub.table, key)
    return tuple(objects.values())


def judge_deadlock(result: Result, machine: Any, profile: Profile, calls: list[Event], line: int,
                   state_of: Callable[[str, Value], ObjectState]) -> None:
    """Report ``LOCK-DEADLOCK`` at ``line`` when every call in ``calls`` would sleep in ``machine``'s state."""
    objects = deadlock(machine, profile, calls, state_of) if calls else None
    if objects is not None:
        result.judge(LOCK_DEADLOCK, line, calls[0].op, calls[0].tid, objects)


__all__ = ["compiled_view", "deadlock", "judge_deadlock", "waiting_calls"]
