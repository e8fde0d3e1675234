"""The finite vocabulary of a bounded configuration: every row a step can write, every value a handle can hold.

Symbolic engines (the z3 bounded model checker, the Promela export) need the
state as a fixed set of variables: one per (table, key, field).  The
configuration fixes every argument, so the keys a step can touch come from
its arguments, its return values, the thread and process, and fields other
steps wrote.  ``universe`` finds them by running every step's statements
abstractly, with each expression standing for the *set* of values it may
take, until nothing grows.  Fields that arithmetic changes (counters) are
``numeric``: any integer; such a field may not be part of a key.

A configuration may start from rows already there (``rows``: the state a
recorded trace's earlier events left, for ``dmaspec check --predict``): their
keys and values seed the sets.

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from checker.engines.model import Model
from checker.trace import Event, select, validate
from spec import SPEC
from spec.kernel import is_err_ptr
from spec.lang import (
    Action,
    Adopt,
    And,
    Arg,
    Arith,
    ArithOp,
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
    Step,
    Stmt,
    Stop,
    Update,
    Value,
)

_DEFAULTS = {t.name: {f.name: f.default for f in t.fields} for t in SPEC.tables}
_FIELDS = {t.name: t.field_names() for t in SPEC.tables}
_TABLES = {t.name: t for t in SPEC.tables}
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
    row_key: tuple[Value] | None = None  # the one row a ForEach visits, when rows are visited one by one


class _Abstract:
    def __init__(self, bits: bool = False, counted: bool = False) -> None:
        self.keys: dict[str, set[Value]] = {t.name: set() for t in SPEC.tables}
        self.values: dict[tuple[str, str], set[object]] = {
            (t.name, f.name): {f.default} for t in SPEC.tables for f in t.fields}
        self.grew = False
        self.bits = bits  # masks and divisions of finite sets are finite: compute them
        self.counted = counted  # sums too: the run is bounded (``universe(depth=...)``), so they stay finite

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
            case Arith(op=op, left=left, right=right):
                if not self.bits or (op in (ArithOp.ADD, ArithOp.SUB) and not self.counted):
                    return frozenset({TOP})
                return _bitwise(op, self.ev(left, env), self.ev(right, env))
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
            if self.counted and len(target) > FINITE:
                target.add(TOP)  # too many to list: a counter
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


_BITWISE = {ArithOp.BITAND: lambda x, y: x & y, ArithOp.BITOR: lambda x, y: x | y,
            ArithOp.FLOORDIV: lambda x, y: x // y, ArithOp.ADD: lambda x, y: x + y, ArithOp.SUB: lambda x, y: x - y}
FINITE = 64  # a field with more values than this is a counter: any integer


def _bitwise(op: ArithOp, a: AnyValue, b: AnyValue) -> AnyValue:
    """The values of an operation over two finite sets (any integer if either is a counter's)."""
    if TOP in a or TOP in b or len(a) * len(b) > 256:
        return frozenset({TOP})
    out: set[object] = set()
    for x in a:
        for y in b:
            if isinstance(x, int) and isinstance(y, int) and not isinstance(x, bool) and not isinstance(y, bool):
                if op is ArithOp.FLOORDIV and y == 0:
                    continue  # the interpreter would fail: no path goes on
                out.add(_BITWISE[op](x, y))
    return frozenset(out) if out else frozenset({TOP})


def _calls(config: Config, model: Model) -> list[tuple[int, int, Step, Event, Action | None]]:
    """Every step of ``model``'s programs: (actor, pc, step, the event it makes, the action that selects)."""
    out = []
    for i, pc, st in model.steps():
        actor = config.actors[i]
        event = validate(st.event(actor.tid, actor.pid, st.ret), "universe", 0)
        action, _ = select(event, model.profile)
        out.append((i, pc, st, event, action))
    return out


def _run_callback(a: _Abstract, cb: str, st: Step, event: Event, prof: Profile) -> None:
    """Run, in ``a``, the body of the callback ``cb`` that step ``st``'s call (``event``) invokes, with the arguments
    of the call that the callback takes."""
    cb_event = validate({"op": cb, "kind": EventKind.CALLBACK.value, "tid": event.tid, "pid": event.pid,
                         "args": {k: v for k, v in st.args if k in {p.name for p in _callback(cb).params}}},
                        "universe", 0)
    cb_action, _ = select(cb_event, prof)
    if cb_action is not None:
        a.run(cb_action.body, _Env(cb_event, frozenset({None}), {}))


def universe(config: Config, profile: Profile | None = None,
             rows: Iterable[tuple[str, Value, tuple[Value, ...]]] = (), *, bits: bool = False,
             depth: int | None = None) -> Universe:
    """The vocabulary of ``config``, starting from ``rows`` (table, key, field values): see the module docstring.

    ``bits``: a mask or a division of values from finite sets is computed (``flags & SYNC_RW`` of recorded
    flags is one of a few values, a field holding it an enum rather than a counter); sums and differences
    always make counters, so the sets stay finite.  Without it, every arithmetic result is a counter (the
    Promela export's reading).  ``depth`` (with ``bits``): only schedules of that many moves matter, so the
    run stops after that many rounds of every step, which reach every value such a schedule can, and sums are
    computed too: a reference count that starts at 1 takes a few values within a window, not any integer (a
    field with more than ``FINITE`` values is still a counter).

    >>> from spec.lang import Actor, Config, step
    >>> cfg = Config("put", "latest", (Actor("t", 1, 1, (step("dma_buf_put", dmabuf="b0"),)),), "")
    >>> from spec import SPEC
    >>> buffer = next(t for t in SPEC.tables if t.name == "buffer")
    >>> fields = tuple(f.default for f in buffer.fields)
    >>> universe(cfg, rows=[("buffer", "b0", fields)]).keys["buffer"]
    ('b0',)
    """
    model = Model(config, profile)
    prof = model.profile
    a = _Abstract(bits, counted=bits and depth is not None)
    for table, key, row in rows:
        a.keys[table].add(key)
        for f, v in zip(_FIELDS[table], row, strict=True):
            a.values[(table, f)].add(v)
    calls = _calls(config, model)
    a.grew = True
    rounds = 0
    while a.grew and (depth is None or rounds < depth):
        a.grew = False
        rounds += 1
        for _i, _pc, st, event, action in calls:
            if action is None:
                continue
            env = _Env(event, frozenset({st.ret}), {})
            rets: set[object] = {st.ret}
            for outcome in action.outcomes:
                rets |= a.ev(outcome.value, env)
            env.rets = frozenset(rets)
            for cb, _cond in action.invokes:
                _run_callback(a, cb, st, event, prof)
            a.run(action.body, env)
    numeric = frozenset(k for k, vs in a.values.items() if TOP in vs)
    keys = {t: tuple(sorted(ks, key=repr)) for t, ks in a.keys.items()}
    values = {k: frozenset(cast(Value, v) for v in vs if v is not TOP) for k, vs in a.values.items()}
    out = Universe(keys, values, numeric)
    out.events = [(i, pc, n, ev) for n, (i, pc, _st, ev, _a) in enumerate(calls)]
    return out


# -- footprints: the rows each step can read or write ------------------------------------------------------


class _Footprint(_Abstract):
    """The abstract run again, with value sets per row (table, key, field) rather than per field, recording the
    rows each step reads or writes.

    Per row it keeps the values the row may hold while it exists; a read of a row that may be absent adds
    the field's default.  A row is known to exist after a test that it does (``Exists`` as a conjunct of an
    ``If``'s test, of a ``Require`` that aborts, or negated under an ``Ignore`` or ``Stop``) or after an ``If``
    that makes it when it does not: so a call on a known fd reads that fd's buffer, not the default no row
    holds.  A ForEach visits each row of the universe on its own and counts it only when its ``where`` can
    hold for that row's values: a loop over the attachments of buffer B does not depend on the attachments
    no step ever points at B."""

    def __init__(self, u: Universe, rows: Iterable[tuple[str, Value, tuple[Value, ...]]]) -> None:
        super().__init__(bits=True)
        for t, ks in u.keys.items():
            self.keys[t] = set(ks)
        self.at: dict[tuple[str, Value, str], set[object]] = {}
        for table, key, values in rows:
            for f, v in zip(_FIELDS[table], values, strict=True):
                self.at.setdefault((table, key, f), set()).add(v)
        self.touched: set[tuple[str, Value]] | None = None
        self.written: set[tuple[str, Value]] = set()
        self.always: frozenset[tuple[str, Value]] = frozenset((t, k) for t, k, _ in rows)  # rows are never removed
        self.present: set[tuple[str, Value]] = set(self.always)  # rows known to exist at this point of the action

    def _touch(self, table: str, keys: AnyValue, write: bool = False) -> None:
        if TOP in keys:
            raise Unbounded(f"a key of table {table} depends on a counter")
        if self.touched is not None:
            self.touched.update((table, cast(Value, k)) for k in keys)
        if write:
            self.written.update((table, cast(Value, k)) for k in keys)

    def _values(self, table: str, key: object, name: str) -> set[object]:
        vals = self.at.get((table, cast(Value, key), name), set())
        return vals if (table, key) in self.present else vals | {_DEFAULTS[table][name]}

    def ev(self, e: Expr, env: _Env) -> AnyValue:  # noqa: C901 - one case per node type
        match e:
            case Get(table=table, key=key, name=name):
                ks = self.ev(key, env)
                self._touch(table, ks)
                return frozenset(v for k in ks for v in self._values(table, k, name))
            case Exists(table=table, key=key):
                self._touch(table, self.ev(key, env))
                return BOOLS
            case RowField(name="key") if env.row_key is not None:
                return frozenset(env.row_key)
            case RowField(name=name) if env.row_key is not None:
                assert env.row_table is not None
                return frozenset(self._values(env.row_table, env.row_key[0], name))
            # the parent's cases that do not look inside: every row an operand reads counts
            case Not() | And() | Or() | Cmp() | In() | IsNone() | IsErrno() | IsErrPtr():
                return self.truths(e, env)
            case Arith(op=op, left=left, right=right):
                a, b = self.ev(left, env), self.ev(right, env)  # every row an operand reads counts
                return frozenset({TOP}) if op in (ArithOp.ADD, ArithOp.SUB) and not self.counted else _bitwise(
                    op, a, b)
            case Cond(test=test, then=then, orelse=orelse):
                t = self.truths(test, env)
                return (self.ev(then, env) if True in t else frozenset()) | (
                    self.ev(orelse, env) if False in t else frozenset())
        return super().ev(e, env)

    def truths(self, e: Expr, env: _Env) -> AnyValue:  # noqa: C901 - one case per node type
        """The truth values ``e`` may take (a subset of BOOLS), as precise as the value sets allow."""
        match e:
            case And(args=args):
                ts = [self.truths(x, env) for x in args]
                return frozenset({False}) if any(t == {False} for t in ts) else (
                    frozenset({True}) if all(t == {True} for t in ts) else BOOLS)
            case Or(args=args):
                ts = [self.truths(x, env) for x in args]
                return frozenset({True}) if any(t == {True} for t in ts) else (
                    frozenset({False}) if all(t == {False} for t in ts) else BOOLS)
            case Not(arg=arg):
                return frozenset(not t for t in self.truths(arg, env))
            case Cmp(op=op, left=left, right=right):
                a, b = self.ev(left, env), self.ev(right, env)
                if TOP in a or TOP in b or len(a) * len(b) > 4096:
                    return BOOLS
                out = set()
                for x in a:
                    for y in b:
                        try:
                            out.add(bool(_CMP[op.name](x, y)))
                        except TypeError:
                            return BOOLS
                return frozenset(out)
            case In(arg=arg, values=values):
                a = self.ev(arg, env)
                return BOOLS if TOP in a else frozenset(v in values for v in a)
            case IsNone(arg=arg):
                a = self.ev(arg, env)
                return BOOLS if TOP in a else frozenset(v is None for v in a)
            case IsErrno(arg=arg):
                a = self.ev(arg, env)
                return BOOLS if TOP in a else frozenset(
                    isinstance(v, int) and not isinstance(v, bool) and v < 0 for v in a)
            case IsErrPtr(arg=arg):
                a = self.ev(arg, env)
                return BOOLS if TOP in a else frozenset(isinstance(v, str) and is_err_ptr(v) for v in a)
        vals = self.ev(e, env)
        return BOOLS if TOP in vals else frozenset(bool(v) for v in vals)

    def _exists(self, e: Expr, env: _Env, positive: bool) -> set[tuple[str, Value]]:
        """The rows that exist when ``e`` is ``positive``: its ``Exists`` conjuncts naming one key each."""
        match e:
            case Not(arg=arg):
                return self._exists(arg, env, not positive)
            case And(args=args) if positive:
                return set().union(*(self._exists(x, env, True) for x in args))
            case Or(args=args) if not positive:
                return set().union(*(self._exists(x, env, False) for x in args))
            case Exists(table=table, key=key) if positive:
                saved, self.touched = self.touched, None
                ks = self.ev(key, env)
                self.touched = saved
                if len(ks) == 1 and TOP not in ks:
                    return {(table, cast(Value, next(iter(ks))))}
        return set()

    def run(self, stmts: tuple[Stmt, ...], env: _Env) -> None:  # noqa: C901 - one case per node type
        for s in stmts:
            match s:
                case Create(table=table, key=key, values=values) | Adopt(table=table, key=key, values=values):
                    ks = self.ev(key, env)
                    self._touch(table, ks, write=True)
                    given = {n: self.ev(v, env) for n, v in values}
                    for k in ks:
                        for f in _FIELDS[table]:
                            self._write_at(table, k, f, given.get(f, frozenset({_DEFAULTS[table][f]})))
                    if len(ks) == 1:
                        self.present.add((table, cast(Value, next(iter(ks)))))
                case Update(table=table, key=key, name=name, value=value):
                    ks = self.ev(key, env)
                    self._touch(table, ks, write=True)
                    vals = self.ev(value, env)
                    for k in ks:
                        if (table, k) not in self.present:  # an update of an absent row makes it, with defaults
                            for f in _FIELDS[table]:
                                self._write_at(table, k, f, frozenset({_DEFAULTS[table][f]}))
                        self._write_at(table, k, name, vals)
                case ForEach(table=table, where=where, body=body, index=index):
                    part = _TABLES[table].index
                    wanted = self.ev(index, env) if index is not None else None
                    for k in sorted(self.keys[table], key=repr):
                        if wanted is not None and part is not None and isinstance(k, tuple) and k[part] not in wanted:
                            continue
                        inner = _Env(env.event, env.rets, dict(env.locals), table, (k,))
                        outer = set(self.present)
                        self.present.add((table, k))  # a row it visits exists
                        saved, self.touched = self.touched, None
                        can = True in self.truths(where, inner)
                        self.touched = saved
                        if can:
                            self._touch(table, frozenset({k}))
                            self.truths(where, inner)  # the rows its test reads
                            self.run(body, inner)
                            for n, v in inner.locals.items():
                                env.locals[n] = env.locals.get(n, frozenset()) | v
                        self.present = outer
                case If(test=test, then=then, orelse=orelse):
                    t = self.truths(test, env)
                    before = set(self.present)
                    after: set[tuple[str, Value]] | None = None
                    for branch, body in ((True, then), (False, orelse)):
                        if branch not in t:
                            continue
                        self.present = before | self._exists(test, env, branch)
                        self.run(body, env)
                        after = set(self.present) if after is None else after & self.present
                    self.present = after if after is not None else before
                case Require(cond=cond, abort=abort):
                    self.truths(cond, env)
                    if abort:
                        self.present |= self._exists(cond, env, True)
                case Ignore(when=when) | Stop(when=when):
                    self.truths(when, env)
                    self.present |= self._exists(when, env, False)
                case Call(name=name, args=args):
                    self.run(_PROCS[name].body, _Env(env.event, env.rets, {n: self.ev(v, env) for n, v in args},
                                                     env.row_table, env.row_key))
                case _:
                    super().run((s,), env)

    def _write_at(self, table: str, key: object, name: str, vals: AnyValue) -> None:
        vals = frozenset(v for v in vals if v is not TOP)  # a counter: any integer, never a key
        slot = self.at.setdefault((table, cast(Value, key), name), set())
        if not vals <= slot:
            slot |= vals
            self.grew = True


_CMP = {"EQ": lambda a, b: a == b, "NE": lambda a, b: a != b, "LT": lambda a, b: a < b,
        "LE": lambda a, b: a <= b, "GT": lambda a, b: a > b, "GE": lambda a, b: a >= b}


@dataclass
class Footprints:
    """What ``footprints`` gives: the rows each step (actor, pc) may read or write, and those any step may
    write."""

    touched: dict[tuple[int, int], frozenset[tuple[str, Value]]]
    written: frozenset[tuple[str, Value]]

    def shared(self, step: tuple[int, int]) -> frozenset[tuple[str, Value]]:
        """The rows of ``step`` through which steps can affect each other: those some step may write (a row
        no step writes, such as an absent one every reader sees as its defaults, holds the same values
        whatever the order, so it ties no steps together)."""
        return self.touched[step] & self.written


def footprints(config: Config, profile: Profile | None = None,
               rows: Iterable[tuple[str, Value, tuple[Value, ...]]] = (), *,
               recorded: bool = False) -> Footprints:
    """The rows (table, key) each step (actor, pc) of ``config`` may read or write, from ``rows`` on.

    Two steps that share no row some step writes commute: in either order they leave the same state and
    break the same rules, so actors whose steps share none can be searched apart.  Over-approximated like
    the universe, with value sets kept per row; the kernel's ``waits``, ``outcomes`` and the exporter
    callbacks it ``invokes`` count.  ``recorded``: the steps are a recorded trace's (``Model(recorded=True)``),
    so each returns its recorded value and its callbacks are steps of their own.

    >>> from spec.lang import Actor, Config, step
    >>> cfg = Config("three", "latest", (Actor("a", 1, 1, (step("dma_buf_export", "b1", size=1),)),
    ...                                   Actor("b", 2, 1, (step("dma_buf_put", dmabuf="b1"),)),
    ...                                   Actor("c", 3, 3, (step("dma_buf_export", "b2", size=1),))), "")
    >>> f = footprints(cfg)
    >>> {step: sorted(f.shared(step)) for step in f.touched}
    {(0, 0): [('buffer', 'b1')], (1, 0): [('buffer', 'b1')], (2, 0): [('buffer', 'b2')]}

    Thread 3's export commutes with the other two; the put and the first export do not.
    """
    rows = list(rows)
    u = universe(config, profile, rows, bits=True)
    model = Model(config, profile)
    prof = model.profile
    a = _Footprint(u, rows)
    calls = _calls(config, model)

    def visit(st: Step, event: Event, action: Action) -> None:
        env = _Env(event, frozenset({st.ret}), {})
        a.present = set(a.always)
        if action.waits is not None:
            a.truths(action.waits, env)
        rets: set[object] = {st.ret}
        for outcome in action.outcomes:
            a.truths(outcome.when, env)
            values = a.ev(outcome.value, env)
            if not recorded:
                rets |= values
        env.rets = frozenset(rets)
        for cb, cond in action.invokes:
            if recorded:
                break
            a.truths(cond, env)
            _run_callback(a, cb, st, event, prof)
        a.run(action.body, env)

    a.grew = True
    while a.grew:
        a.grew = False
        for _i, _pc, st, event, action in calls:
            if action is not None:
                visit(st, event, action)
    out: dict[tuple[int, int], frozenset[tuple[str, Value]]] = {}
    for i, pc, st, event, action in calls:
        a.touched = set()
        if action is not None:
            visit(st, event, action)
        out[(i, pc)] = out.get((i, pc), frozenset()) | frozenset(a.touched)
    return Footprints(out, frozenset(a.written))


def _callback(op: str) -> Action:
    for act in SPEC.actions:
        if act.kind is EventKind.CALLBACK and act.op == op:
            return act
    raise KeyError(op)


__all__ = ["TOP", "Footprints", "Unbounded", "Universe", "footprints", "universe"]
