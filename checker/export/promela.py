"""A bounded configuration as a Promela model for SPIN, lowered from the spec's statements.

Nothing about a rule is written here: every step's action body (the spec's
statements, with the step's constant arguments) is lowered into Promela, so
SPIN checks the same rules the explicit explorer does (``tests/test_export.py``
holds them to the same verdicts).

The model:

- State: one global array per (table, field) that some step can change, over
  the configuration's universe of keys (``checker.engines.universe``), plus a
  ``present`` flag array per table; an index one past the last key stands for
  "not in the universe" and always reads the defaults.  Fields no step changes
  are constants and are folded away.  Values are ints: numbers as themselves,
  booleans 0/1, ``None`` as ``NONE``, and each string (a handle) as a
  ``#define`` far above any number the configuration uses.
- One active proctype per actor.  Each instruction is a labelled option
  ``atomic { violated == 0 && !waits -> d_step { callbacks; call } ; goto next }``,
  so a call whose action ``waits`` blocks; ``outcomes`` pick the return value
  into a hidden variable; ``on`` branches and gotos become Promela gotos; an
  ``Atomic`` group is one d_step whose guard is the spec's "none runs until
  all can run" condition, computed by symbolic execution of the group.
  An actor that waits to be spawned guards its first instruction with its
  started flag, which the spawning step sets.
- A ``Require`` that fails sets ``violated`` to the rule's number and asserts
  ``violated != N``: SPIN's error message names the number, and the comment
  table at the top of the model (and ``rule_indices()``) maps it to the rule.
  Once ``violated`` is set every process leaves for its end label, so a path
  stops at its first broken rule, as in the explorer.
- End obligations: a monitor process waits, at an ``end`` label, until every
  actor has finished, then runs ``SPEC.at_end`` over the universe's keys.
- Deadlock: SPIN's own invalid-end-state check.  Actors end at an ``end_``
  label; one blocked anywhere else is ``LOCK-DEADLOCK``.

``run_spin`` compiles and runs the model (``spin -a``, ``gcc``, ``pan``) and
reads back which rules failed, for tests and benchmarks.

Constructs with no faithful lowering raise ``ExportError``: ``Bump`` (gaps),
a halt inside ``ForEach`` (row order would matter), keys computed from counters.

Example
-------
>>> from checker.export.promela import promela, rule_indices
>>> from spec.configs import config
>>> text = promela(config("tiny"))
>>> "active proctype p_exporter()" in text and "assert(violated != " in text
True
>>> rule_indices()["REF-LEAK"] > 0
True
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from checker.engines.model import Model
from checker.engines.universe import Universe, universe
from checker.trace import Event, event_ret, select, validate
from spec import SPEC
from spec.kernel import is_err_ptr
from spec.lang import (
    Action,
    Adopt,
    And,
    Arg,
    Arith,
    ArithOp,
    Atomic,
    Bump,
    Call,
    Cmp,
    CmpOp,
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
    Goto,
    If,
    Ignore,
    In,
    Instr,
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
from spec.lint import walk_stmts
from spec.profiles import profile as find_profile
from spec.rules import LOCK_DEADLOCK

STR_BASE = 1 << 20  # string codes start here; no number a configuration uses may reach it
CONFIG_ERROR = "CONFIG-UNMADE-OBJECT"  # a step names an object no step made (the explorer's ConfigError)
_PROCS = {p.name: p for p in SPEC.procedures}
_TABLES = {t.name: t for t in SPEC.tables}


class ExportError(Exception):
    """The configuration or the spec uses a construct this export cannot lower faithfully."""


def rule_indices() -> dict[str, int]:
    """The number ``violated`` holds for each rule (and for the configuration error), from 1."""
    out = {r.id: n for n, r in enumerate(SPEC.rules, 1)}
    out[CONFIG_ERROR] = len(out) + 1
    return out


# -- values -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Val:
    """A value at generation time (``text`` None: ``value`` is known) or a Promela int expression.

    ``cands`` are the values a dynamic one may take (None: any integer);
    ``parts`` is a composite key with some dynamic part.
    """

    value: Value = None
    text: str | None = None
    cands: frozenset[Value] | None = None
    parts: tuple[_Val, ...] | None = None

    @property
    def static(self) -> bool:
        return self.text is None and self.parts is None


def _s(v: Value) -> _Val:
    return _Val(v)


TRUE, FALSE = _s(True), _s(False)
BOOLS: frozenset[Value] = frozenset({True, False})


def _d(text: str, cands: frozenset[Value] | None = BOOLS) -> _Val:
    return _Val(None, text, cands)


class _Codes:
    """The Promela spelling of each value; strings are numbered in order of first use."""

    def __init__(self) -> None:
        self.strings: dict[str, int] = {}

    def __call__(self, v: Value) -> str:
        if v is None:
            return "NONE"
        if isinstance(v, bool):
            return "1" if v else "0"
        if isinstance(v, int):
            if not -STR_BASE < v < STR_BASE:
                raise ExportError(f"the number {v} is too large for this export's value encoding")
            return str(v)
        if isinstance(v, str):
            return f"S{self.strings.setdefault(v, len(self.strings) + 1)}"
        raise ExportError(f"the composite value {v!r} is used outside a key")

    def defines(self) -> list[str]:
        out = [f"#define NONE {STR_BASE}"]
        for s, n in self.strings.items():
            out.append(f"#define S{n} {STR_BASE + n}  /* {s!r} */".replace("*/", "* /", 1 if "*/" in s else 0))
        return out


def _union(a: frozenset[Value] | None, b: frozenset[Value] | None) -> frozenset[Value] | None:
    return None if a is None or b is None else a | b


@dataclass
class _Env:
    event: Event | None
    ret: _Val
    locals: dict[str, _Val] = field(default_factory=dict)
    row: tuple[str, int, Value] | None = None  # ForEach: table, key index, key


class _Lower:
    """The expression compiler both lowerings share; ``read`` and ``present`` say where state comes from."""

    def __init__(self, gen: _Gen) -> None:
        self.g = gen
        self.codes = gen.codes

    # -- hooks ---------------------------------------------------------------------------------------------

    def read(self, table: str, name: str, idx: _Val) -> _Val:
        raise NotImplementedError

    def present(self, table: str, idx: _Val) -> _Val:
        raise NotImplementedError

    # -- booleans ------------------------------------------------------------------------------------------

    def truth(self, v: _Val) -> _Val:
        """Python truthiness of ``v`` as a Promela condition."""
        if v.static:
            return TRUE if v.value else FALSE
        if v.text is None:
            raise ExportError("a composite key used as a condition")
        if v.cands is not None and v.cands <= BOOLS:
            return v
        falsy = ["0"] if v.cands is None else sorted({self.codes(c) for c in v.cands if not c and c is not False}
                                                     | ({"0"} if False in v.cands else set()))
        if not falsy:
            return TRUE
        return _d("(" + " && ".join(f"{v.text} != {f}" for f in falsy) + ")")

    @staticmethod
    def neg(v: _Val) -> _Val:
        return _s(not v.value) if v.static else _d(f"!{_paren(v.text or '')}")

    @staticmethod
    def conj(*vs: _Val) -> _Val:
        texts = []
        for v in vs:
            if v.static:
                if not v.value:
                    return FALSE
                continue
            texts.append(v.text or "")
        if not texts:
            return TRUE
        return _d(texts[0] if len(texts) == 1 else "(" + " && ".join(texts) + ")")

    @staticmethod
    def disj(*vs: _Val) -> _Val:
        texts = []
        for v in vs:
            if v.static:
                if v.value:
                    return TRUE
                continue
            texts.append(v.text or "")
        if not texts:
            return FALSE
        return _d(texts[0] if len(texts) == 1 else "(" + " || ".join(texts) + ")")

    def eq(self, a: _Val, b: _Val) -> _Val:
        if a.parts is not None or b.parts is not None or isinstance(a.value, tuple) or isinstance(b.value, tuple):
            raise ExportError("a comparison of composite keys")
        if a.static and b.static:
            return _s(a.value == b.value)
        if a.static:
            a, b = b, a
        if b.static and a.cands is not None and b.value not in a.cands:
            return FALSE
        return _d(f"({self.text(a)} == {self.text(b)})")

    def text(self, v: _Val) -> str:
        if v.parts is not None:
            raise ExportError("a composite key used as a scalar")
        return self.codes(v.value) if v.text is None else v.text

    # -- expressions ---------------------------------------------------------------------------------------

    def ex(self, e: Expr, env: _Env) -> _Val:  # noqa: C901 - one case per node type
        match e:
            case Const(value=literal):
                return _s(literal)
            case Arg(name=name):
                return _s(self._event(env, e).args.get(name))
            case Ret():
                return env.ret
            case EventField(name=name):
                return _s(getattr(self._event(env, e), name))
            case Local(name=name):
                if name not in env.locals:
                    raise ExportError(f"the local {name!r} is bound on only some paths")
                return env.locals[name]
            case RowField(name=name):
                if env.row is None:
                    raise ExportError(f"{e!r} outside a ForEach")
                table, idx, key = env.row
                return _s(key) if name == "key" else self.read(table, name, _s(idx))
            case Key(parts=parts):
                vals = tuple(self.ex(p, env) for p in parts)
                if all(v.static for v in vals):
                    return _s(tuple(v.value for v in vals))
                return _Val(parts=vals)
            case KeyPart(key=key, index=index):
                k = self.ex(key, env)
                if k.static and isinstance(k.value, tuple):
                    return _s(k.value[index])
                if k.parts is not None:
                    return k.parts[index]
                raise ExportError(f"{e!r}: a part of a value that is not a composite key")
            case Get(table=table, key=key, name=name):
                return self.read(table, name, self.index(table, self.ex(key, env)))
            case Exists(table=table, key=key):
                return self.present(table, self.index(table, self.ex(key, env)))
            case Not(arg=arg):
                return self.neg(self.truth(self.ex(arg, env)))
            case And(args=args):
                out = []
                for a in args:
                    v = self.truth(self.ex(a, env))
                    if v.static and not v.value:
                        return FALSE
                    out.append(v)
                return self.conj(*out)
            case Or(args=args):
                out = []
                for a in args:
                    v = self.truth(self.ex(a, env))
                    if v.static and v.value:
                        return TRUE
                    out.append(v)
                return self.disj(*out)
            case Cmp(op=op, left=left, right=right):
                return self._cmp(op, self.ex(left, env), self.ex(right, env))
            case Arith(op=aop, left=left, right=right):
                return self._arith(aop, self.ex(left, env), self.ex(right, env))
            case IsErrno(arg=arg):
                v = self.ex(arg, env)
                if v.static:
                    x = v.value
                    return _s(isinstance(x, int) and not isinstance(x, bool) and x < 0)
                if v.cands is not None and not any(isinstance(c, int) and not isinstance(c, bool) and c < 0
                                                   for c in v.cands):
                    return FALSE
                return _d(f"({self.text(v)} < 0)")
            case IsErrPtr(arg=arg):
                v = self.ex(arg, env)
                if v.static:
                    return _s(isinstance(v.value, str) and is_err_ptr(v.value))
                bad = sorted(c for c in (v.cands or ()) if isinstance(c, str) and is_err_ptr(c))
                return self.disj(*(self.eq(v, _s(c)) for c in bad))
            case IsNone(arg=arg):
                v = self.ex(arg, env)
                if v.static:
                    return _s(v.value is None)
                if v.cands is None or None not in v.cands:
                    return FALSE
                return _d(f"({self.text(v)} == NONE)")
            case In(arg=arg, values=values):
                v = self.ex(arg, env)
                if v.static:
                    return _s(v.value in values)
                return self.disj(*(self.eq(v, _s(c)) for c in sorted(values, key=repr)
                                   if not isinstance(c, tuple) and (v.cands is None or c in v.cands)))
            case Cond(test=test, then=then, orelse=orelse):
                t = self.truth(self.ex(test, env))
                if t.static:
                    return self.ex(then if t.value else orelse, env)
                return self.cond(t, self.ex(then, env), self.ex(orelse, env))
        raise ExportError(f"unsupported expression {e!r}")

    def cond(self, t: _Val, a: _Val, b: _Val) -> _Val:
        if t.static:
            return a if t.value else b
        if a.static and b.static and a.value == b.value and type(a.value) is type(b.value):
            return a
        cands = _union(a.cands if not a.static else frozenset({a.value}),
                       b.cands if not b.static else frozenset({b.value}))
        return _d(f"({t.text} -> {self.text(a)} : {self.text(b)})", cands)

    @staticmethod
    def _event(env: _Env, e: Expr) -> Event:
        if env.event is None:
            raise ExportError(f"{e!r} at the end of the trace, where there is no event")
        return env.event

    def _cmp(self, op: CmpOp, a: _Val, b: _Val) -> _Val:
        if op is CmpOp.EQ:
            return self.eq(a, b)
        if op is CmpOp.NE:
            return self.neg(self.eq(a, b))
        if a.static and b.static:
            try:
                return _s(bool({CmpOp.LT: a.value < b.value, CmpOp.LE: a.value <= b.value,  # type: ignore[operator]
                                CmpOp.GT: a.value > b.value, CmpOp.GE: a.value >= b.value}[op]))  # type: ignore[operator]
            except TypeError:
                raise ExportError(f"an ordering of {a.value!r} and {b.value!r}") from None
        return _d(f"({self.text(a)} {op.value} {self.text(b)})")

    def _arith(self, op: ArithOp, a: _Val, b: _Val) -> _Val:
        if a.static and b.static:
            x, y = a.value, b.value
            if not isinstance(x, int) or not isinstance(y, int):
                raise ExportError(f"arithmetic on {x!r} and {y!r}")
            r = {ArithOp.ADD: lambda: x + y, ArithOp.SUB: lambda: x - y, ArithOp.BITAND: lambda: x & y,
                 ArithOp.BITOR: lambda: x | y, ArithOp.FLOORDIV: lambda: x // y}[op]()
            return _s(r)
        ta, tb = self.text(a), self.text(b)
        if op is ArithOp.FLOORDIV:
            if not (b.static and isinstance(b.value, int) and b.value > 0):
                raise ExportError("floor division by a value not known to be positive")
            d = b.value
            return _d(f"(({ta} >= 0) -> (({ta}) / {d}) : -(({d - 1} - ({ta})) / {d}))", None)
        return _d(f"({ta} {op.value} {tb})", None)

    # -- keys ----------------------------------------------------------------------------------------------

    def index(self, table: str, k: _Val) -> _Val:
        """The key number of ``k`` in ``table``'s universe (one past the last: not in it)."""
        keys = self.g.u.keys[table]
        nk = len(keys)
        if k.static:
            return _s(self.g.key_index[table].get(k.value, nk))
        options: list[tuple[_Val, int]] = []
        for i, key in enumerate(keys):
            if k.parts is not None:
                if not isinstance(key, tuple) or len(key) != len(k.parts):
                    continue
                c = self.conj(*(self.eq(p, _s(kp)) for p, kp in zip(k.parts, key, strict=True)))
            else:
                if k.cands is None:
                    raise ExportError(f"a key of table {table} computed from a counter")
                c = self.eq(k, _s(key))
            if not (c.static and not c.value):
                options.append((c, i))
        out = _s(nk)
        for c, i in reversed(options):
            out = self.cond(c, _s(i), out) if not (c.static and c.value) else _s(i)
        return out


def _paren(t: str) -> str:
    return t if t.startswith("(") and t.endswith(")") or re.fullmatch(r"[\w\[\]]+", t) else f"({t})"


def _halts(stmts: tuple[Stmt, ...], seen: frozenset[str] = frozenset()) -> bool:
    """Whether running ``stmts`` may stop the action (abort, Stop, Ignore), procedures included."""
    for s in walk_stmts(stmts):
        if isinstance(s, (Stop, Ignore)) or isinstance(s, Require) and s.abort:
            return True
        if isinstance(s, Call) and s.name not in seen and _halts(_PROCS[s.name].body, seen | {s.name}):
            return True
    return False


def _writes(stmts: tuple[Stmt, ...], table: str, seen: frozenset[str] = frozenset()) -> bool:
    for s in walk_stmts(stmts):
        if isinstance(s, (Create, Adopt, Update)) and s.table == table:
            return True
        if isinstance(s, Call) and s.name not in seen and _writes(_PROCS[s.name].body, table, seen | {s.name}):
            return True
    return False


# -- the emitting lowering: statements into the body of a d_step -------------------------------------------


class _Emit(_Lower):
    def __init__(self, gen: _Gen) -> None:
        super().__init__(gen)
        self.lines: list[str] = []
        self.depth = 0
        self.temps = 0
        self.halt = ""
        self.halt_used = False

    def out(self, line: str) -> None:
        self.lines.append("  " * self.depth + line)

    def temp(self, v: _Val) -> _Val:
        """``v`` fixed now: a dynamic value is copied into a hidden temporary."""
        if v.static:
            return v
        if v.parts is not None:
            return _Val(parts=tuple(self.temp(p) for p in v.parts))
        name = f"_t{self.temps}"
        self.temps += 1
        self.g.max_temps = max(self.g.max_temps, self.temps)
        self.out(f"{name} = {v.text};")
        return _d(name, v.cands)

    def read(self, table: str, name: str, idx: _Val) -> _Val:
        return self.g.read_array(table, name, idx)

    def present(self, table: str, idx: _Val) -> _Val:
        return self.g.read_present(table, idx)

    def write(self, table: str, name: str, idx: _Val, v: _Val) -> None:
        if (table, name) not in self.g.stored:
            default = _TABLES[table].default(name)
            same = v.static and v.value == default and type(v.value) is type(default)
            if not same and (v.static or not (v.cands is not None and v.cands <= {default})):
                raise ExportError(f"{table}.{name} is written with {v!r}, outside the universe's values")
            return
        self.out(f"{self.g.array(table, name)}[{self.text(idx)}] = {self.text(v)};")

    def set_present(self, table: str, idx: _Val) -> None:
        self.out(f"{self.g.array(table, '')}[{self.text(idx)}] = 1;")

    def violation(self, rule: str) -> None:
        n = self.g.rule_no[rule]
        self.g.used_rules.add(rule)
        self.out(f"violated = {n}; assert(violated != {n});  /* {rule} */")

    def stop(self) -> None:
        self.halt_used = True
        self.out(f"goto {self.halt};")

    def branch(self, test: _Val, then: list[Stmt] | tuple[Stmt, ...], orelse: tuple[Stmt, ...], env: _Env) -> bool:
        """``if :: test -> then :: else -> orelse fi``; whether the code after it may run."""
        if test.static:
            return self.run(tuple(then) if test.value else orelse, env)
        self.out("if")
        self.out(f":: {test.text} ->")
        self.depth += 1
        env_then = _Env(env.event, env.ret, dict(env.locals), env.row)
        a = self.run(tuple(then), env_then)
        self.depth -= 1
        self.out(":: else ->")
        self.depth += 1
        env_else = _Env(env.event, env.ret, dict(env.locals), env.row)
        b = self.run(orelse, env_else)
        if not orelse:
            self.out("skip;")
        self.depth -= 1
        self.out("fi;")
        for name in set(env_then.locals) | set(env_else.locals):
            v1, v2 = env_then.locals.get(name), env_else.locals.get(name)
            if v1 == v2 and v1 is not None:
                env.locals[name] = v1
            else:
                env.locals.pop(name, None)
        return a or b

    def run(self, stmts: tuple[Stmt, ...], env: _Env) -> bool:
        before = len(self.lines)
        for s in stmts:
            if not self.stmt(s, env):
                return False
        if len(self.lines) == before:
            self.out("skip;")
        return True

    def stmt(self, s: Stmt, env: _Env) -> bool:  # noqa: C901 - one case per statement type
        match s:
            case Require(rule=rule, cond=cond, abort=abort):
                if rule not in self.g.active:
                    return True
                c = self.truth(self.ex(cond, env))
                if c.static and c.value:
                    return True
                if c.static:
                    self.violation(rule)
                    if abort:
                        self.stop()
                        return False
                    return True
                self.out("if")
                self.out(f":: {self.neg(c).text} ->")
                self.depth += 1
                self.violation(rule)
                if abort:
                    self.stop()
                self.depth -= 1
                self.out(":: else -> skip")
                self.out("fi;")
            case Let(name=name, value=value):
                env.locals[name] = self.temp(self.ex(value, env))
            case Create(table=table, key=key, values=values):
                idx = self.temp(self.index(table, self.ex(key, env)))
                self._check_in_universe(table, idx, key)
                given = {n: self.temp(self.ex(v, env)) for n, v in values}
                for f in _TABLES[table].fields:
                    self.write(table, f.name, idx, given.get(f.name, _s(f.default)))
                self.set_present(table, idx)
            case Adopt(table=table, key=key, values=values):
                idx = self.temp(self.index(table, self.ex(key, env)))
                absent = self.neg(self.present(table, idx))
                if not (absent.static and not absent.value):
                    # the explorer's model refuses a configuration that uses an object no step made
                    self.out("if")
                    self.out(f":: {absent.text if not absent.static else 'true'} ->")
                    self.depth += 1
                    self.violation(CONFIG_ERROR)
                    self.stop()
                    self.depth -= 1
                    self.out(":: else -> skip")
                    self.out("fi;")
            case Update(table=table, key=key, name=name, value=value):
                idx = self.temp(self.index(table, self.ex(key, env)))
                v = self.temp(self.ex(value, env))
                self._check_in_universe(table, idx, key)
                self.write(table, name, idx, v)
                self.set_present(table, idx)
            case If(test=test, then=then, orelse=orelse):
                return self.branch(self.truth(self.ex(test, env)), then, orelse, env)
            case ForEach(table=table, where=where, body=body, index=index):
                if _halts(body):
                    raise ExportError(f"a ForEach over {table} whose body may stop the action: the row order "
                                      "would matter")
                part = _TABLES[table].index
                sel = self.ex(index, env) if index is not None else None
                snapshot = _writes(body, table)
                rows: list[tuple[int, Value, _Val]] = []
                for i, row_key in enumerate(self.g.u.keys[table]):
                    if sel is not None and sel.static and part is not None and isinstance(row_key, tuple) \
                            and row_key[part] != sel.value:
                        continue
                    here = self.present(table, _s(i))
                    rows.append((i, row_key, self.temp(here) if snapshot else here))
                for i, row_key, here in rows:
                    inner = _Env(env.event, env.ret, env.locals, (table, i, row_key))
                    self.branch(self.conj(here, self.truth(self.ex(where, inner))), body, (), inner)
            case Call(name=name, args=args):
                bound = {n: self.temp(self.ex(v, env)) for n, v in args}
                return self.run(_PROCS[name].body, _Env(env.event, env.ret, bound))
            case Ignore(when=when) | Stop(when=when):
                w = self.truth(self.ex(when, env))
                if w.static and not w.value:
                    return True
                if w.static:
                    self.stop()
                    return False
                self.out(f"if :: {w.text} -> goto {self.halt} :: else -> skip fi;")
                self.halt_used = True
            case Bump():
                raise ExportError("Bump (lost events) has no meaning in a configuration")
            case _:
                raise ExportError(f"unsupported statement {s!r}")
        return True

    def _check_in_universe(self, table: str, idx: _Val, key: Expr) -> None:
        if idx.static and idx.value == len(self.g.u.keys[table]):
            raise ExportError(f"a write to {table} at {key!r}, a key outside the universe")


# -- the symbolic lowering: the guard of an atomic group ---------------------------------------------------


@dataclass
class _Write:
    cond: _Val
    table: str
    name: str  # "" for the present flag
    idx: _Val
    value: _Val


class _Sym(_Lower):
    """Runs statements without emitting: writes go to an overlay, reads see it; collects when a rule breaks."""

    def __init__(self, gen: _Gen) -> None:
        super().__init__(gen)
        self.writes: list[_Write] = []
        self.broken = FALSE

    def _over(self, table: str, name: str, idx: _Val, base: _Val) -> _Val:
        out = base
        for w in self.writes:
            if w.table != table or w.name != name:
                continue
            if idx.static and w.idx.static and idx.value != w.idx.value:
                continue
            c = self.conj(w.cond, self.eq(idx, w.idx))
            out = self.cond(c, w.value, out)
        return out

    def read(self, table: str, name: str, idx: _Val) -> _Val:
        return self._over(table, name, idx, self.g.read_array(table, name, idx))

    def present(self, table: str, idx: _Val) -> _Val:
        return self._over(table, "", idx, self.g.read_present(table, idx))

    def run(self, stmts: tuple[Stmt, ...], env: _Env, pc: _Val) -> _Val:  # noqa: C901
        for s in stmts:
            if pc.static and not pc.value:
                return pc
            match s:
                case Require(rule=rule, cond=cond, abort=abort):
                    if rule not in self.g.active:
                        continue
                    c = self.truth(self.ex(cond, env))
                    self.broken = self.disj(self.broken, self.conj(pc, self.neg(c)))
                    if abort:
                        pc = self.conj(pc, c)
                case Let(name=name, value=value):
                    env.locals[name] = self.ex(value, env)
                case Create(table=table, key=key, values=values):
                    idx = self.index(table, self.ex(key, env))
                    given = {n: self.ex(v, env) for n, v in values}
                    for f in _TABLES[table].fields:
                        self.writes.append(_Write(pc, table, f.name, idx, given.get(f.name, _s(f.default))))
                    self.writes.append(_Write(pc, table, "", idx, TRUE))
                case Adopt(table=table, key=key):
                    idx = self.index(table, self.ex(key, env))
                    absent = self.neg(self.present(table, idx))
                    self.broken = self.disj(self.broken, self.conj(pc, absent))
                    pc = self.conj(pc, self.neg(absent))
                case Update(table=table, key=key, name=name, value=value):
                    idx = self.index(table, self.ex(key, env))
                    v = self.ex(value, env)
                    self.writes.append(_Write(pc, table, name, idx, v))
                    self.writes.append(_Write(pc, table, "", idx, TRUE))
                case If(test=test, then=then, orelse=orelse):
                    t = self.truth(self.ex(test, env))
                    a = self.run(then, env, self.conj(pc, t))
                    b = self.run(orelse, env, self.conj(pc, self.neg(t)))
                    pc = self.disj(a, b)
                case ForEach(table=table, where=where, body=body):
                    if _halts(body):
                        raise ExportError(f"a ForEach over {table} whose body may stop the action")
                    heres = [(i, k, self.present(table, _s(i))) for i, k in enumerate(self.g.u.keys[table])]
                    for i, row_key, here in heres:
                        inner = _Env(env.event, env.ret, env.locals, (table, i, row_key))
                        self.run(body, inner, self.conj(pc, here, self.truth(self.ex(where, inner))))
                case Call(name=name, args=args):
                    bound = {n: self.ex(v, env) for n, v in args}
                    pc = self.run(_PROCS[name].body, _Env(env.event, env.ret, bound), pc)
                case Ignore(when=when) | Stop(when=when):
                    pc = self.conj(pc, self.neg(self.truth(self.ex(when, env))))
                case Bump():
                    raise ExportError("Bump (lost events) has no meaning in a configuration")
                case _:
                    raise ExportError(f"unsupported statement {s!r}")
        return pc


# -- the generator -------------------------------------------------------------------------------------------


@dataclass
class _Call:
    """One step, resolved: its event (ret as the program says), its action, its callbacks' events and actions."""

    step: Step
    event: Event
    action: Action | None
    ret: Value
    callbacks: tuple[tuple[str, Expr, Event, Action | None], ...]


class _Gen:
    def __init__(self, config: Config, profile: Profile | None) -> None:
        self.config = config
        self.model = Model(config, profile)  # refuses bad labels, unknown ops, spawns of running actors
        self.profile = self.model.profile
        self.u: Universe = universe(config, self.profile)
        self.codes = _Codes()
        self.key_index = {t: {k: i for i, k in enumerate(ks)} for t, ks in self.u.keys.items()}
        self.stored: set[tuple[str, str]] = set()
        for t in SPEC.tables:
            if not self.u.keys[t.name]:
                continue
            for f in t.fields:
                vals = self.u.values[(t.name, f.name)]
                if (t.name, f.name) in self.u.numeric or len(vals) > 1:
                    self.stored.add((t.name, f.name))
        self.active = {r.id for r in SPEC.rules if self.profile.admits_rule(r)}
        self.rule_no = rule_indices()
        self.used_rules: set[str] = set()
        self.max_temps = 0
        self.halts = 0
        for (tname, fname), held in self.u.values.items():
            for x in held:
                if isinstance(x, int) and not isinstance(x, bool) and abs(x) >= STR_BASE:
                    raise ExportError(f"{tname}.{fname} may hold {x}, too large for this export's value encoding")

    # -- state ---------------------------------------------------------------------------------------------

    @staticmethod
    def array(table: str, name: str) -> str:
        return f"{table}_{name}" if name else f"{table}_present"

    def read_array(self, table: str, name: str, idx: _Val) -> _Val:
        default = _TABLES[table].default(name)
        if (table, name) not in self.stored or idx.static and idx.value == len(self.u.keys[table]):
            return _s(default)
        cands = None if (table, name) in self.u.numeric else self.u.values[(table, name)]
        i = self.codes(idx.value) if idx.static else idx.text
        return _d(f"{self.array(table, name)}[{i}]", cands)

    def read_present(self, table: str, idx: _Val) -> _Val:
        if not self.u.keys[table] or idx.static and idx.value == len(self.u.keys[table]):
            return FALSE
        i = self.codes(idx.value) if idx.static else idx.text
        return _d(f"{self.array(table, '')}[{i}]")

    def declarations(self) -> list[str]:
        out = []
        for t in SPEC.tables:
            keys = self.u.keys[t.name]
            if not keys:
                continue
            out.append(f"/* {t.name}: " + ", ".join(f"{i}={k!r}" for i, k in enumerate(keys))
                       + f", {len(keys)}=not in the universe */")
            out.append(f"bit {self.array(t.name, '')}[{len(keys) + 1}];")
            for f in t.fields:
                if (t.name, f.name) not in self.stored:
                    continue
                vals = self.u.values[(t.name, f.name)]
                kind = "bit" if (t.name, f.name) not in self.u.numeric and vals <= BOOLS else "int"
                init = self.codes(f.default)
                out.append(f"{kind} {self.array(t.name, f.name)}[{len(keys) + 1}]"
                           + (f" = {init}" if init != "0" else "") + ";")
        return out

    # -- steps ---------------------------------------------------------------------------------------------

    def resolve(self, i: int, n: int, step: Step) -> _Call:
        actor = self.config.actors[i]
        event = validate(step.event(actor.tid, actor.pid, step.ret), f"config {self.config.name}", 0)
        action, _ = select(event, self.profile)
        ret = event_ret(event, action, event.op) if action is not None else step.ret
        cbs = []
        if action is not None:
            for cb, cond in action.invokes:
                params = next(a for a in SPEC.actions if a.kind is EventKind.CALLBACK and a.op == cb).params
                names = {p.name for p in params}
                cb_event = validate({"op": cb, "kind": EventKind.CALLBACK.value, "tid": actor.tid, "pid": actor.pid,
                                     "args": {k: v for k, v in step.args if k in names}}, "callback", 0)
                cbs.append((cb, cond, cb_event, select(cb_event, self.profile)[0]))
        return _Call(step, event, action, ret, tuple(cbs))

    def ret_of(self, low: _Lower, call: _Call, env: _Env) -> _Val:
        """The value the call returns: the first outcome whose condition holds, else the program's."""
        out = _s(call.ret)
        if call.action is None:
            return out
        for outcome in reversed(call.action.outcomes):
            v = low.ex(outcome.value, env)
            if v.static and call.action is not None:
                v = _s(_normal(call.action, v.value))
            out = low.cond(low.truth(low.ex(outcome.when, env)), v, out)
        return out

    def waits(self, low: _Lower, call: _Call, env: _Env) -> _Val:
        if call.action is None or call.action.waits is None:
            return FALSE
        return low.truth(low.ex(call.action.waits, env))

    def guard(self, calls: list[_Call]) -> _Val:
        """When the instruction can run: no step waits, each judged on the state the steps before it leave;
        a step that breaks a rule ends the group there (the explorer's model does the same)."""
        sym = _Sym(self)
        parts: list[tuple[_Val, _Val]] = []
        for n, call in enumerate(calls):
            probe = _Env(call.event, _s(None))
            w = self.waits(sym, call, probe)
            if n == len(calls) - 1:
                parts.append((w, FALSE))
                break
            sym.broken = FALSE
            env = _Env(call.event, self.ret_of(sym, call, probe))
            for _cb, cond, cb_event, cb_action in call.callbacks:
                fire = sym.truth(sym.ex(cond, probe))
                if cb_action is not None:
                    sym.run(cb_action.body, _Env(cb_event, _s(None)), fire)
            if call.action is not None:
                sym.run(call.action.body, env, TRUE)
            parts.append((w, sym.broken))
        out = TRUE
        for w, broken in reversed(parts):
            out = sym.conj(sym.neg(w), sym.disj(broken, out))
        return out

    def body(self, emit: _Emit, calls: list[_Call]) -> _Val:
        """Emit the instruction's calls; the return value of the last."""
        ret = _s(None)
        for n, call in enumerate(calls):
            probe = _Env(call.event, _s(None))
            ret = emit.temp(self.ret_of(emit, call, probe))
            if not ret.static:
                ret = _d(ret.text or "", ret.cands)
            for cb, cond, cb_event, cb_action in call.callbacks:
                fire = emit.truth(emit.ex(cond, probe))
                if cb_action is None:
                    continue
                emit.out(f"/* callback {cb} */")
                self._action(emit, cb_action.body, _Env(cb_event, _s(None)), fire)
            if call.action is not None:
                emit.out(f"/* {call.event.op} */")
                self._action(emit, call.action.body, _Env(call.event, ret), TRUE)
            for name in call.step.spawns:
                emit.out(f"st_{_ident(name)} = 1;")
            if n < len(calls) - 1:
                emit.out("if :: violated != 0 -> goto _grp :: else -> skip fi;")
                emit.halt_used = True
        return ret

    def _action(self, emit: _Emit, body: tuple[Stmt, ...], env: _Env, when: _Val) -> None:
        self.halts += 1
        saved = emit.halt, emit.halt_used
        emit.halt, emit.halt_used = f"_h{self.halts}", False
        if when.static:
            if when.value:
                emit.run(body, env)
        else:
            emit.branch(when, body, (), env)
        if emit.halt_used:
            emit.out(f"{emit.halt}: skip;")
        emit.halt, emit.halt_used = saved

    # -- the model -----------------------------------------------------------------------------------------

    def text(self) -> str:
        actors = self.config.actors
        procs: list[str] = []
        for i, actor in enumerate(actors):
            procs += self._proctype(i, actor.name, actor.program, actor.started)
        procs += self._monitor()
        head = [f"/* dmaspec: configuration {self.config.name!r}, profile {self.profile.name!r}, generated from the "
                "spec by checker.export.promela */",
                "/* violated holds the number of the first rule a path breaks; SPIN reports",
                "   'assertion violated (violated != N)' with N from this table, and an invalid end state",
                f"   for a deadlock ({LOCK_DEADLOCK}). */"]
        for rule, n in sorted(self.rule_no.items(), key=lambda kv: kv[1]):
            if rule in self.used_rules:
                head.append(f"/* {n:3d} = {rule} */")
        head += self.codes.defines()
        head.append("")
        head.append("int violated;")
        head.append("byte _fin;  /* actors that have finished */")
        for a in actors:
            if not a.started:
                head.append(f"bit st_{_ident(a.name)};  /* {a.name} was spawned */")
        for n in range(self.max_temps):
            head.append(f"hidden int _t{n};")
        head += self.declarations()
        return "\n".join(head + [""] + procs) + "\n"

    def _proctype(self, i: int, name: str, program: tuple[Instr, ...], started: bool) -> list[str]:
        labels = {ins.label: pc for pc, ins in enumerate(program) if not isinstance(ins, Goto) and ins.label}

        def resolve(pc: int) -> int:
            for _ in range(len(program) + 1):
                if pc >= len(program) or not isinstance(program[pc], Goto):
                    return min(pc, len(program))
                ins = program[pc]
                assert isinstance(ins, Goto)
                pc = labels[ins.label]
            raise ExportError(f"actor {name}: its gotos loop without making a call")

        def target(pc: int) -> str:
            return "end_" if pc >= len(program) else f"L{pc}"

        actor = self.config.actors[i]
        out = [f"active proctype p_{_ident(name)}()  /* tid {actor.tid}, pid {actor.pid} */", "{"]
        first = resolve(0)
        if first >= len(program):
            out.append("  _fin++;")
        for pc, ins in enumerate(program):
            if isinstance(ins, Goto):
                continue
            steps = ins.steps if isinstance(ins, Atomic) else (ins,)
            calls = [self.resolve(i, n, st) for n, st in enumerate(steps)]
            guard = self.guard(calls)
            conds = ["violated == 0"]
            if not started and pc == first:
                conds.append(f"st_{_ident(name)}")
            if not guard.static:
                conds.append(guard.text or "")
            elif not guard.value:
                conds.append("false")
            emit = _Emit(self)
            emit.depth = 3
            ret = self.body(emit, calls)
            if emit.halt_used and len(calls) > 1:
                emit.out("_grp: skip;")
            last = steps[-1]
            nexts: list[tuple[_Val, int]] = []
            for value, label in last.on:
                nexts.append((emit.eq(ret, _s(value)), resolve(labels[label])))
            nexts.append((TRUE, resolve(pc + 1)))
            chosen: list[tuple[_Val, int]] = []
            for c, t in nexts:
                if c.static and not c.value:
                    continue
                chosen.append((c, t))
                if c.static:
                    break
            ops = " + ".join(st.op for st in steps)
            out.append(f"L{pc}:  /* {ops} */")
            out.append("  if")
            out.append(f"  :: atomic {{ ({' && '.join(conds)}) ->")
            out.append("      d_step {")
            out += emit.lines
            out.append("      };")
            if len(chosen) == 1:
                t = chosen[0][1]
                out.append(f"      {'_fin++; ' if t >= len(program) else ''}goto {target(t)}")
            else:
                out.append("      if")
                for c, t in chosen:
                    test = "else" if c.static else c.text
                    out.append(f"      :: {test} -> {'_fin++; ' if t >= len(program) else ''}goto {target(t)}")
                out.append("      fi")
            out.append("    }")
            out.append("  :: violated != 0 -> goto end_")
            out.append("  fi;")
        out.append("end_: skip")
        out.append("}")
        out.append("")
        return out

    def _monitor(self) -> list[str]:
        emit = _Emit(self)
        emit.depth = 3
        self._action(emit, SPEC.at_end, _Env(None, _s(None)), TRUE)
        n = len(self.config.actors)
        return ["active proctype p_end_of_trace()  /* the spec's end-of-trace obligations */", "{",
                "end_wait:", "  if", f"  :: atomic {{ (violated == 0 && _fin == {n}) ->", "      d_step {",
                *emit.lines, "      }", "    }", "  :: violated != 0 -> skip", "  fi", "}", ""]


def _normal(action: Action, v: Value) -> Value:
    from spec.values import normalize_ret

    try:
        return normalize_ret(action.returns, v)
    except ValueError:
        return v


def _ident(name: str) -> str:
    return re.sub(r"\W", "_", name)


def promela(config: Config, profile: Profile | str | None = None) -> str:
    """``config`` as a Promela model (see the module docstring); deterministic text."""
    prof = find_profile(profile) if isinstance(profile, str) else profile
    return _Gen(config, prof).text()


# -- running SPIN ------------------------------------------------------------------------------------------


@dataclass
class SpinRun:
    """What one SPIN run found: the rules broken (``LOCK-DEADLOCK`` for an invalid end state), and its size."""

    rules: set[str]
    states: int
    transitions: int
    depth: int
    seconds: float  # pan's search alone
    truncated: bool  # the depth bound cut the search: nothing beyond it is proved
    output: str


def spin_tools() -> str | None:
    """Why SPIN cannot run here (``spin`` or a C compiler missing), or None."""
    missing = [t for t in ("spin", "gcc") if shutil.which(t) is None]
    return f"{' and '.join(missing)} not installed" if missing else None


def run_spin(config: Config, profile: Profile | str | None = None, *, depth: int = 10_000, workdir: str | None = None,
             timeout: float = 600) -> SpinRun:
    """Export ``config``, verify it with SPIN (safety: assertions and invalid end states, every error), and
    read back which rules failed."""
    text = promela(config, profile)
    with tempfile.TemporaryDirectory(prefix="dmaspec-spin-") as tmp:
        where = workdir or tmp
        os.makedirs(where, exist_ok=True)
        model = os.path.join(where, "model.pml")
        with open(model, "w", encoding="utf-8") as f:
            f.write(text)
        subprocess.run(["spin", "-a", "model.pml"], cwd=where, check=True, capture_output=True, timeout=timeout)
        subprocess.run(["gcc", "-O2", "-DSAFETY", "-DNOFAIR", "-o", "pan", "pan.c"], cwd=where, check=True,
                       capture_output=True, timeout=timeout)
        start = time.perf_counter()
        done = subprocess.run(["./pan", f"-m{depth}", "-c0", "-n"], cwd=where, capture_output=True, text=True,
                              timeout=timeout)
        elapsed = time.perf_counter() - start
    return parse_pan(done.stdout + done.stderr, elapsed)


_NUMBERS = {n: r for r, n in rule_indices().items()}


def parse_pan(output: str, seconds: float = 0.0) -> SpinRun:
    """The rules a pan run reports, and its statistics."""
    rules: set[str] = set()
    for m in re.finditer(r"assertion violated \(violated!=(\d+)\)", output):
        rules.add(_NUMBERS.get(int(m.group(1)), f"#{m.group(1)}"))
    if re.search(r"pan:\d+: invalid end state", output):
        rules.add(LOCK_DEADLOCK)

    def num(pattern: str) -> int:
        m = re.search(pattern, output)
        return int(m.group(1)) if m else 0

    return SpinRun(rules, num(r"(\d+) states, stored"), num(r"(\d+) transitions"),
                   num(r"depth reached (\d+)"), seconds, "max search depth too small" in output, output)


__all__ = ["CONFIG_ERROR", "ExportError", "SpinRun", "parse_pan", "promela", "rule_indices", "run_spin",
           "spin_tools"]
