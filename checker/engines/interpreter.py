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
- A row that reaches its table's ``rest`` condition is queued (once: a
  row already waiting is not queued again); past ``TOMBSTONES_PER_TABLE``
  queued keys, the oldest leave the queue and are forgotten if still at rest.

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

import contextlib
from collections import deque
from collections.abc import Iterable
from typing import Any

from checker.core import TOMBSTONES_PER_TABLE, InputError, ObjectState, Result, new_result
from checker.trace import Event, event_ret, load_line, select, validate
from spec import SPEC
from spec.kernel import is_err_ptr
from spec.lang import (
    Adopt,
    And,
    Arg,
    Arith,
    ArithOp,
    Bump,
    Call,
    Cmp,
    CmpOp,
    Cond,
    Const,
    Create,
    EventField,
    Exists,
    Expr,
    ForEach,
    Get,
    If,
    Ignore,
    In,
    IsErrno,
    IsErrPtr,
    IsNone,
    Key,
    KeyPart,
    Let,
    Local,
    Not,
    Or,
    Profile,
    Require,
    Ret,
    RowField,
    Stmt,
    Stop,
    Update,
    Value,
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
_TABLES = {t.name: t for t in SPEC.tables}
_PROCS = {p.name: p for p in SPEC.procedures}


class _Halt(Exception):
    """Ends the current action (abort, Stop or Ignore)."""


class Row:
    __slots__ = ("fields", "epoch", "born", "last", "queued")

    def __init__(self, fields: dict[str, Value], epoch: int, line: int) -> None:
        self.fields = fields
        self.epoch = epoch
        self.born = line
        self.last = line
        self.queued = False  # its key waits in the table's retirement queue


class _Env:
    __slots__ = ("event", "ret", "locals", "row_key", "row")

    def __init__(self, event: Event | None, ret: Value, locals_: dict[str, Value]) -> None:
        self.event = event
        self.ret = ret
        self.locals = locals_
        self.row_key: Value = None
        self.row: Row | None = None


def evaluate(expr: Expr, event: Event, machine: Interpreter) -> Any:
    """The value of ``expr`` for ``event`` in ``machine``'s state (``Ret`` reads the event's ``ret``)."""
    return _eval(expr, _Env(event, event.ret, {}), machine)


def evaluate_selector(expr: Expr, event: Event) -> bool:
    """Evaluate an action's ``when`` (which reads only arguments)."""
    return bool(_eval(expr, _Env(event, None, {}), None))


def _eval(e: Expr, env: _Env, m: Interpreter | None) -> Any:  # noqa: C901 - one case per node type
    match e:
        case Const(value=v):
            return v
        case Arg(name=name):
            assert env.event is not None
            return env.event.args.get(name)
        case Ret():
            return env.ret
        case EventField(name=name):
            assert env.event is not None
            return getattr(env.event, name)
        case Local(name=name):
            return env.locals[name]
        case RowField(name="key"):
            return env.row_key
        case RowField(name=name):
            assert env.row is not None
            return env.row.fields[name]
        case Key(parts=parts):
            return tuple(_eval(p, env, m) for p in parts)
        case KeyPart(key=key, index=index):
            return _eval(key, env, m)[index]
        case Get(table=table, key=key, name=name):
            assert m is not None
            row = m.tables[table].get(_eval(key, env, m))
            return row.fields[name] if row is not None else _DEFAULTS[table][name]
        case Exists(table=table, key=key):
            assert m is not None
            return _eval(key, env, m) in m.tables[table]
        case Not(arg=arg):
            return not _eval(arg, env, m)
        case And(args=args):
            return all(_eval(a, env, m) for a in args)
        case Or(args=args):
            return any(_eval(a, env, m) for a in args)
        case Cmp(op=op, left=left, right=right):
            return _CMP[op](_eval(left, env, m), _eval(right, env, m))
        case Arith(op=aop, left=left, right=right):
            return _ARITH[aop](_eval(left, env, m), _eval(right, env, m))
        case IsErrno(arg=arg):
            v = _eval(arg, env, m)
            return isinstance(v, int) and not isinstance(v, bool) and v < 0
        case IsErrPtr(arg=arg):
            v = _eval(arg, env, m)
            return isinstance(v, str) and is_err_ptr(v)
        case IsNone(arg=arg):
            return _eval(arg, env, m) is None
        case In(arg=arg, values=values):
            return _eval(arg, env, m) in values
        case Cond(test=test, then=then, orelse=orelse):
            return _eval(then if _eval(test, env, m) else orelse, env, m)
    raise AssertionError(f"unknown expression {e!r}")


class Interpreter:
    """Replays canonical events against the spec for one profile."""

    def __init__(self, profile: Profile, file: str, *, unobserved: frozenset[str] = frozenset(),
                 check_leaks: bool = True, tombstones: int = TOMBSTONES_PER_TABLE) -> None:
        self.profile = profile
        self.tombstones = tombstones
        self.file = file
        self.tables: dict[str, dict[Value, Row]] = {t.name: {} for t in SPEC.tables}
        self.retired: dict[str, deque[Value]] = {t.name: deque() for t in SPEC.tables}
        self.epoch = 0
        self.active = {r.id for r in SPEC.rules if profile.admits_rule(r)}
        self.check_leaks = check_leaks
        self.result = new_result(file, profile, unobserved, check_leaks)
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
        action, available = select(event, self.profile)
        ret = event_ret(event, action, self.file) if action is not None else None
        self.last_line = event.line
        self.result.events += 1
        if not available:
            self._report(PROFILE_OP, event.line, event.op, event.tid, ())
            return
        if action is None:
            return
        env = _Env(event, ret, {})
        with contextlib.suppress(_Halt):
            self._run(action.body, env)

    def finish(self) -> Result:
        if self.check_leaks:
            env = _Env(None, None, {})
            with contextlib.suppress(_Halt):
                self._run(SPEC.at_end, env, end=True)
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
            row = table[key] = Row(fields, self.epoch, self._line(env, end))
            self._settle(s.table, key, row)
        elif t is Adopt:
            assert isinstance(s, Adopt)
            key = _eval(s.key, env, self)
            if key not in self.tables[s.table]:
                fields = dict(_DEFAULTS[s.table])
                fields.update({n: _eval(v, env, self) for n, v in s.values})
                row = self.tables[s.table][key] = Row(fields, -1, 0)
                self._settle(s.table, key, row)
        elif t is Update:
            assert isinstance(s, Update)
            key = _eval(s.key, env, self)
            value = _eval(s.value, env, self)
            line = self._line(env, end)
            target = self.tables[s.table].get(key)
            if target is None:
                target = self.tables[s.table][key] = Row(dict(_DEFAULTS[s.table]), self.epoch, line)
            target.fields[s.name] = value
            target.last = line
            if s.name in _TABLES[s.table].rest_fields():
                self._settle(s.table, key, target)
        elif t is If:
            assert isinstance(s, If)
            self._run(s.then if _eval(s.test, env, self) else s.orelse, env, end)
        elif t is ForEach:
            assert isinstance(s, ForEach)
            table = self.tables[s.table]
            saved = (env.row_key, env.row)
            keys = list(table)
            if s.index is not None:
                part, value = _TABLES[s.table].index, _eval(s.index, env, self)
                assert part is not None
                keys = [k for k in keys if k[part] == value]  # type: ignore[index]
            for key in keys:
                visited = table.get(key)
                if visited is None:
                    continue
                env.row_key, env.row = key, visited
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

    def _at_rest(self, table: str, key: Value, row: Row) -> bool:
        rest = _TABLES[table].rest
        if rest is None:
            return False
        env = _Env(None, None, {})
        env.row_key, env.row = key, row
        return bool(_eval(rest, env, self))

    def _settle(self, table: str, key: Value, row: Row) -> None:
        """Queue a row that came to rest; forget the oldest queued rows still at rest past the bound."""
        if row.queued or not self._at_rest(table, key, row):
            return
        row.queued = True
        q = self.retired[table]
        q.append(key)
        rows = self.tables[table]
        while len(q) > self.tombstones:
            old = q.popleft()
            r = rows.get(old)
            if r is None:
                continue
            r.queued = False
            if self._at_rest(table, old, r):
                del rows[old]

    # -- findings --------------------------------------------------------------------------

    def _report(self, rule: str, line: int, op: str, tid: int | None, objs: tuple[tuple[str, Value], ...]) -> None:
        self.result.judge(rule, line, op, tid, tuple(self._state(t, k) for t, k in objs))

    def object_state(self, table: str, key: Value) -> ObjectState:
        """The object at ``key`` of ``table`` as a finding would show it."""
        return self._state(table, key)

    def _state(self, table: str, key: Value) -> ObjectState:
        row = self.tables[table].get(key)
        if row is None:
            return ObjectState(table, key, False, tuple(_DEFAULTS[table].items()), 0, 0, self.epoch > 0)
        return ObjectState(table, key, True, tuple(row.fields.items()), row.born, row.last, row.epoch < self.epoch)
