"""The reference interpreter: evaluates the spec's statements directly.

This is the oracle the compiled executor is held to.  It favours being
obviously right over being fast: rows are dicts, expressions are walked on
every event, and events are validated one at a time by ``checker.trace``.

Semantics (shared with the compiled executor):

- A row is *uncertain* when it was adopted (the object predates the trace)
  or was created before the last gap (lost events).  After a gap, an absent
  row is uncertain too: it may have been created in the gap.
- A failed ``Require`` is reported only when none of its objects is
  uncertain and its rule is not narrowed by what the trace cannot see;
  otherwise it is counted as withheld.  ``abort`` ends the action either way.
- A ``Create`` on a live row means the trace missed the old object's
  release: it is counted (``Result.reused``) and the new object replaces it.
- Tombstones are kept per table up to ``TOMBSTONES_PER_TABLE``.

Example
-------
>>> from checker.engines.interpreter import Interpreter
>>> from spec import profile
>>> it = Interpreter(profile("latest"), "example")
>>> it.feed_dict({"op": "dma_buf_export", "tid": 1, "args": {"size": 4096}, "ret": "b1"}, 1)
>>> it.feed_dict({"op": "dma_buf_put", "tid": 1, "args": {"dmabuf": "b1"}}, 2)
>>> it.feed_dict({"op": "dma_buf_put", "tid": 1, "args": {"dmabuf": "b1"}}, 3)
>>> [(f.rule, f.line) for f in it.finish().findings]
[('REF-USE-AFTER-RELEASE', 3)]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from checker.core import TOMBSTONES_PER_TABLE, Finding, InputError, ObjectState, Result
from checker.trace import Event, event_ret, load_line, select, validate
from spec import SPEC
from spec.analysis import narrowed_rules
from spec.kernel import is_err_ptr
from spec.lang import (
    Adopt, And, Arg, Arith, ArithOp, Bump, Call, Cmp, CmpOp, Cond, Const, Create, EventField, Exists, Expr, ForEach,
    Get, If, Ignore, In, IsErrno, IsErrPtr, IsNone, Key, KeyPart, Let, Local, Not, Or, Profile, Require, Ret,
    RowField, Stmt, Stop, Update, Value,
)
from spec.rules import PROFILE_OP

_CMP = {
    CmpOp.EQ: lambda a, b: a == b, CmpOp.NE: lambda a, b: a != b, CmpOp.LT: lambda a, b: a < b,
    CmpOp.LE: lambda a, b: a <= b, CmpOp.GT: lambda a, b: a > b, CmpOp.GE: lambda a, b: a >= b,
}
_ARITH = {
    ArithOp.ADD: lambda a, b: a + b, ArithOp.SUB: lambda a, b: a - b, ArithOp.BITAND: lambda a, b: a & b,
    ArithOp.BITOR: lambda a, b: a | b, ArithOp.FLOORDIV: lambda a, b: a // b,
}
_DEFAULTS = {t.name: {f.name: f.default for f in t.fields} for t in SPEC.tables}
_PROCS = {p.name: p for p in SPEC.procedures}


class _Halt(Exception):
    """Ends the current action (abort, Stop or Ignore)."""


class Row:
    __slots__ = ("fields", "epoch", "born", "last")

    def __init__(self, fields: dict[str, Value], epoch: int, line: int) -> None:
        self.fields = fields
        self.epoch = epoch
        self.born = line
        self.last = line


class _Env:
    __slots__ = ("event", "ret", "locals", "row_key", "row")

    def __init__(self, event: Event | None, ret: Value, locals_: dict[str, Value]) -> None:
        self.event = event
        self.ret = ret
        self.locals = locals_
        self.row_key: Value = None
        self.row: Row | None = None


def evaluate_selector(expr: Expr, event: Event) -> bool:
    """Evaluate an action's ``when`` (which reads only arguments)."""
    return bool(_eval(expr, _Env(event, None, {}), None))


def _eval(e: Expr, env: _Env, m: Interpreter | None) -> Any:
    t = type(e)
    if t is Const:
        return e.value  # type: ignore[union-attr]
    if t is Arg:
        assert env.event is not None
        return env.event.args.get(e.name)  # type: ignore[union-attr]
    if t is Ret:
        return env.ret
    if t is EventField:
        assert env.event is not None
        return getattr(env.event, e.name)  # type: ignore[union-attr]
    if t is Local:
        return env.locals[e.name]  # type: ignore[union-attr]
    if t is RowField:
        if e.name == "key":  # type: ignore[union-attr]
            return env.row_key
        assert env.row is not None
        return env.row.fields[e.name]  # type: ignore[union-attr]
    if t is Key:
        return tuple(_eval(p, env, m) for p in e.parts)  # type: ignore[union-attr]
    if t is KeyPart:
        return _eval(e.key, env, m)[e.index]  # type: ignore[union-attr]
    if t is Get:
        assert m is not None
        row = m.tables[e.table].get(_eval(e.key, env, m))  # type: ignore[union-attr]
        return row.fields[e.name] if row is not None else _DEFAULTS[e.table][e.name]  # type: ignore[union-attr]
    if t is Exists:
        assert m is not None
        return _eval(e.key, env, m) in m.tables[e.table]  # type: ignore[union-attr]
    if t is Not:
        return not _eval(e.arg, env, m)  # type: ignore[union-attr]
    if t is And:
        return all(_eval(a, env, m) for a in e.args)  # type: ignore[union-attr]
    if t is Or:
        return any(_eval(a, env, m) for a in e.args)  # type: ignore[union-attr]
    if t is Cmp:
        return _CMP[e.op](_eval(e.left, env, m), _eval(e.right, env, m))  # type: ignore[union-attr]
    if t is Arith:
        return _ARITH[e.op](_eval(e.left, env, m), _eval(e.right, env, m))  # type: ignore[union-attr]
    if t is IsErrno:
        v = _eval(e.arg, env, m)  # type: ignore[union-attr]
        return isinstance(v, int) and not isinstance(v, bool) and v < 0
    if t is IsErrPtr:
        v = _eval(e.arg, env, m)  # type: ignore[union-attr]
        return isinstance(v, str) and is_err_ptr(v)
    if t is IsNone:
        return _eval(e.arg, env, m) is None  # type: ignore[union-attr]
    if t is In:
        return _eval(e.arg, env, m) in e.values  # type: ignore[union-attr]
    if t is Cond:
        return _eval(e.then if _eval(e.test, env, m) else e.orelse, env, m)  # type: ignore[union-attr]
    raise AssertionError(f"unknown expression {e!r}")


class Interpreter:
    """Replays canonical events against the spec for one profile."""

    def __init__(self, profile: Profile, file: str, *, unobserved: frozenset[str] = frozenset(),
                 check_leaks: bool = True) -> None:
        self.profile = profile
        self.file = file
        self.tables: dict[str, dict[Value, Row]] = {t.name: {} for t in SPEC.tables}
        self.dead: dict[str, deque[Value]] = {t.name: deque() for t in SPEC.tables}
        self.epoch = 0
        self.active = {r.id for r in SPEC.rules if profile.admits_rule(r)}
        self.narrowed = narrowed_rules(unobserved) if unobserved else {}
        self.check_leaks = check_leaks
        self.result = Result(file, profile.name, leaks_checked=check_leaks,
                             narrowed={r: ops for r, ops in self.narrowed.items() if r in self.active})
        self.last_line = 0

    # -- feeding ---------------------------------------------------------------------------

    def feed_dict(self, obj: dict[str, Any], line: int) -> None:
        self.feed(validate(obj, self.file, line))

    def feed_lines(self, lines: Iterable[tuple[int, bytes]], *, keep_going: bool = False) -> None:
        for line, raw in lines:
            try:
                self.feed(validate(load_line(raw, self.file, line), self.file, line))
            except InputError as e:
                if not keep_going:
                    raise
                self.result.errors.append(e)

    def feed(self, event: Event) -> None:
        self.last_line = event.line
        action, available = select(event, self.profile)
        ret = event_ret(event, action, self.file) if action is not None else None
        self.result.events += 1
        if not available:
            self._report(PROFILE_OP, event.line, event.op, event.tid, ())
            return
        if action is None:
            return
        env = _Env(event, ret, {})
        try:
            self._run(action.body, env)
        except _Halt:
            pass

    def finish(self) -> Result:
        if self.check_leaks:
            env = _Env(None, None, {})
            try:
                self._run(SPEC.at_end, env, end=True)
            except _Halt:
                pass
        return self.result

    # -- statements ------------------------------------------------------------------------

    def _run(self, stmts: tuple[Stmt, ...], env: _Env, end: bool = False) -> None:
        for s in stmts:
            self._exec(s, env, end)

    def _line(self, env: _Env, end: bool) -> int:
        return self.last_line + 1 if end or env.event is None else env.event.line

    def _exec(self, s: Stmt, env: _Env, end: bool) -> None:
        t = type(s)
        if t is Require:
            assert isinstance(s, Require)
            if s.rule not in self.active or _eval(s.cond, env, self):
                return
            objs = tuple((o.table, _eval(o.key, env, self)) for o in s.objects)
            ev = env.event
            self._report(s.rule, self._line(env, end), ev.op if ev else "<end of trace>", ev.tid if ev else None, objs)
            if s.abort:
                raise _Halt
        elif t is Let:
            assert isinstance(s, Let)
            env.locals[s.name] = _eval(s.value, env, self)
        elif t is Create:
            assert isinstance(s, Create)
            key = _eval(s.key, env, self)
            values = {n: _eval(v, env, self) for n, v in s.values}
            table = self.tables[s.table]
            old = table.get(key)
            if old is not None and old.fields["live"]:
                self.result.reused += 1
            fields = dict(_DEFAULTS[s.table])
            fields.update(values)
            table.pop(key, None)
            table[key] = Row(fields, self.epoch, self._line(env, end))
        elif t is Adopt:
            assert isinstance(s, Adopt)
            key = _eval(s.key, env, self)
            if key not in self.tables[s.table]:
                fields = dict(_DEFAULTS[s.table])
                fields.update({n: _eval(v, env, self) for n, v in s.values})
                self.tables[s.table][key] = Row(fields, -1, 0)
        elif t is Update:
            assert isinstance(s, Update)
            key = _eval(s.key, env, self)
            value = _eval(s.value, env, self)
            line = self._line(env, end)
            row = self.tables[s.table].get(key)
            if row is None:
                row = self.tables[s.table][key] = Row(dict(_DEFAULTS[s.table]), self.epoch, line)
            row.fields[s.name] = value
            row.last = line
            if s.name == "live" and not value:
                self._bury(s.table, key)
        elif t is If:
            assert isinstance(s, If)
            self._run(s.then if _eval(s.test, env, self) else s.orelse, env, end)
        elif t is ForEach:
            assert isinstance(s, ForEach)
            table = self.tables[s.table]
            saved = (env.row_key, env.row)
            for key in list(table):
                row = table.get(key)
                if row is None:
                    continue
                env.row_key, env.row = key, row
                if _eval(s.where, env, self):
                    self._run(s.body, env, end)
            env.row_key, env.row = saved
        elif t is Call:
            assert isinstance(s, Call)
            proc = _PROCS[s.name]
            inner = _Env(env.event, env.ret, {n: _eval(v, env, self) for n, v in s.args})
            self._run(proc.body, inner, end)
        elif t is Ignore:
            assert isinstance(s, Ignore)
            if _eval(s.when, env, self):
                self.result.ignored[s.reason] += 1
                raise _Halt
        elif t is Stop:
            assert isinstance(s, Stop)
            if _eval(s.when, env, self):
                raise _Halt
        elif t is Bump:
            self.epoch += 1
            self.result.gaps.append(self._line(env, end))
        else:
            raise AssertionError(f"unknown statement {s!r}")

    def _bury(self, table: str, key: Value) -> None:
        q = self.dead[table]
        q.append(key)
        if len(q) > TOMBSTONES_PER_TABLE:
            old = q.popleft()
            row = self.tables[table].get(old)
            if row is not None and not row.fields["live"]:
                del self.tables[table][old]

    # -- findings --------------------------------------------------------------------------

    def _report(self, rule: str, line: int, op: str, tid: int | None, objs: tuple[tuple[str, Value], ...]) -> None:
        states = tuple(self._state(t, k) for t, k in objs)
        if rule in self.narrowed or any(s.uncertain for s in states):
            self.result.withheld[rule] += 1
            return
        self.result.findings.append(Finding(rule, line, op, tid, states))

    def _state(self, table: str, key: Value) -> ObjectState:
        row = self.tables[table].get(key)
        if row is None:
            return ObjectState(table, key, False, tuple(_DEFAULTS[table].items()), 0, 0, self.epoch > 0)
        return ObjectState(table, key, True, tuple(row.fields.items()), row.born, row.last, row.epoch < self.epoch)
