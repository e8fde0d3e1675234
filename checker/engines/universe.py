"""The finite vocabulary of a bounded configuration: every row a step can write, every value a handle can hold.

Symbolic engines (the z3 bounded model checker, the Promela export) need the
state as a fixed set of variables: one per (table, key, field).  The
configuration fixes every argument, so the keys a step can touch come from
its arguments, its return values, the thread and process, and fields other
steps wrote.  ``universe`` finds them by running every step's statements
abstractly, with each expression standing for the *set* of values it may
take, until nothing grows.  Fields that arithmetic changes (counters) are
``numeric``: any integer; such a field may not be part of a key.

This is an over-approximation: some keys may never be written on any real
path.  A row outside the universe is never written, so engines read it as
absent (its defaults), which is what the interpreter does too.

Example
-------
>>> from checker.engines.universe import universe
>>> from spec.configs import config
>>> u = universe(config("tiny"))
>>> u.keys["attachment"]
('att.imp1',)
>>> ("buffer", "refs") in u.numeric
True
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import cast

from checker.engines.model import Model
from checker.trace import Event, select, validate
from spec import SPEC
from spec.lang import (
    Action,
    Adopt,
    And,
    Arg,
    Arith,
    Bump,
    Call,
    Cmp,
    Cond,
    Config,
    Const,
    Create,
    EventField,
    EventKind,
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

_DEFAULTS = {t.name: {f.name: f.default for f in t.fields} for t in SPEC.tables}
_PROCS = {p.name: p for p in SPEC.procedures}


class Unbounded(Exception):
    """A key depends on a counter: the configuration has no finite vocabulary."""


class _Top:
    """Any integer (a counter)."""

    def __repr__(self) -> str:
        return "TOP"


TOP = _Top()
AnyValue = frozenset[object]
BOOLS: AnyValue = frozenset({True, False})


@dataclass
class Universe:
    """Keys per table (sorted by repr) and value sets per (table, field); ``numeric`` fields hold any integer."""

    keys: dict[str, tuple[Value, ...]]
    values: dict[tuple[str, str], frozenset[Value]]
    numeric: frozenset[tuple[str, str]]
    events: list[tuple[int, int, int, Event]] = field(default_factory=list)  # (actor, pc, step, event)


@dataclass
class _Env:
    event: Event
    rets: AnyValue
    locals: dict[str, AnyValue]
    row_table: str | None = None


class _Abstract:
    def __init__(self) -> None:
        self.keys: dict[str, set[Value]] = {t.name: set() for t in SPEC.tables}
        self.values: dict[tuple[str, str], set[object]] = {
            (t.name, f.name): {f.default} for t in SPEC.tables for f in t.fields}
        self.grew = False

    # -- expressions: the set of values each may take -------------------------------------------------------

    def ev(self, e: Expr, env: _Env) -> AnyValue:  # noqa: C901 - one case per node type
        match e:
            case Const(value=v):
                return frozenset({v})
            case Arg(name=name):
                return frozenset({env.event.args.get(name)})
            case Ret():
                return env.rets
            case EventField(name=name):
                return frozenset({getattr(env.event, name)})
            case Local(name=name):
                return env.locals[name]
            case RowField(name="key"):
                assert env.row_table is not None
                return frozenset(self.keys[env.row_table])
            case RowField(name=name):
                assert env.row_table is not None
                return frozenset(self.values[(env.row_table, name)])
            case Key(parts=parts):
                sets = [self.ev(p, env) for p in parts]
                if any(TOP in s for s in sets):
                    raise Unbounded(f"a key of {e!r} depends on a counter")
                return frozenset(itertools.product(*sets))
            case KeyPart(key=key, index=index):
                return frozenset(k[index] for k in self.ev(key, env) if isinstance(k, tuple))
            case Get(table=table, name=name):
                return frozenset(self.values[(table, name)])
            case Arith():
                return frozenset({TOP})
            case Cond(then=then, orelse=orelse):
                return self.ev(then, env) | self.ev(orelse, env)
            case Exists() | Not() | And() | Or() | Cmp() | IsErrno() | IsErrPtr() | In() | IsNone():
                return BOOLS
        raise AssertionError(f"unknown expression {e!r}")

    def _keys(self, table: str, key: Expr, env: _Env) -> None:
        ks = self.ev(key, env)
        if TOP in ks:
            raise Unbounded(f"a key of table {table} depends on a counter")
        new = {cast(Value, k) for k in ks if k not in self.keys[table]}
        if new:
            self.keys[table] |= new
            self.grew = True

    def _write(self, table: str, name: str, vals: AnyValue) -> None:
        target = self.values[(table, name)]
        if not vals <= target:
            target |= vals
            self.grew = True

    # -- statements -------------------------------------------------------------------------------------------

    def run(self, stmts: tuple[Stmt, ...], env: _Env) -> None:  # noqa: C901 - one case per node type
        for s in stmts:
            match s:
                case Let(name=name, value=value):
                    env.locals[name] = env.locals.get(name, frozenset()) | self.ev(value, env)
                case Create(table=table, key=key, values=values) | Adopt(table=table, key=key, values=values):
                    self._keys(table, key, env)
                    for n, v in values:
                        self._write(table, n, self.ev(v, env))
                case Update(table=table, key=key, name=name, value=value):
                    self._keys(table, key, env)
                    self._write(table, name, self.ev(value, env))
                case If(then=then, orelse=orelse):
                    self.run(then, env)
                    self.run(orelse, env)
                case ForEach(table=table, body=body):
                    inner = _Env(env.event, env.rets, env.locals, table)
                    self.run(body, inner)
                case Call(name=name, args=args):
                    proc = _PROCS[name]
                    self.run(proc.body, _Env(env.event, env.rets, {n: self.ev(v, env) for n, v in args},
                                             env.row_table))
                case Require() | Ignore() | Stop() | Bump():
                    pass
                case _:
                    raise AssertionError(f"unknown statement {s!r}")


def universe(config: Config, profile: Profile | None = None) -> Universe:
    """The vocabulary of ``config``: see the module docstring."""
    model = Model(config, profile)
    prof = model.profile
    a = _Abstract()
    calls = []
    for i, pc, st in model.steps():
        actor = config.actors[i]
        event = validate(st.event(actor.tid, actor.pid, st.ret), "universe", 0)
        action, _ = select(event, prof)
        calls.append((i, pc, st, event, action))
    a.grew = True
    while a.grew:
        a.grew = False
        for _i, _pc, st, event, action in calls:
            if action is None:
                continue
            env = _Env(event, frozenset({st.ret}), {})
            rets: set[object] = {st.ret}
            for outcome in action.outcomes:
                rets |= a.ev(outcome.value, env)
            env.rets = frozenset(rets)
            for cb, _cond in action.invokes:
                cb_event = validate({"op": cb, "kind": EventKind.CALLBACK.value, "tid": event.tid, "pid": event.pid,
                                     "args": {k: v for k, v in st.args
                                              if k in {p.name for p in _callback(cb).params}}}, "universe", 0)
                cb_action, _ = select(cb_event, prof)
                if cb_action is not None:
                    a.run(cb_action.body, _Env(cb_event, frozenset({None}), {}))
            a.run(action.body, env)
    numeric = frozenset(k for k, vs in a.values.items() if TOP in vs)
    keys = {t: tuple(sorted(ks, key=repr)) for t, ks in a.keys.items()}
    values = {k: frozenset(cast(Value, v) for v in vs if v is not TOP) for k, vs in a.values.items()}
    out = Universe(keys, values, numeric)
    out.events = [(i, pc, n, ev) for n, (i, pc, _st, ev, _a) in enumerate(calls)]
    return out


def _callback(op: str) -> Action:
    for act in SPEC.actions:
        if act.kind is EventKind.CALLBACK and act.op == op:
            return act
    raise KeyError(op)


__all__ = ["TOP", "Unbounded", "Universe", "universe"]
