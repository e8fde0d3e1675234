"""The bounded model checker: the configuration's transition system, lowered to z3, unrolled move by move.

The state after ``k`` moves is one z3 variable per (table, key, field) of the
configuration's universe (``checker.engines.universe``), a *present* flag per
(table, key), and a pc per actor.  Each move is a choice of actor; the move is
enabled when that actor's pc is a call whose ``waits`` is false, and its
effect is the symbolic execution of the spec's statements for that call
(exporter callbacks from ``invokes`` first, the return value from
``outcomes``), written as terms over the state before it.  Nothing about a
rule is written here: each ``Require``, ``Create``, ``Update``, ``If``,
``ForEach`` and ``Call`` of the spec is lowered as the reference interpreter
runs it (a failed ``Require`` sets its rule's *broken* flag for that move;
``abort``, ``Stop`` and ``Ignore`` end the action; rules the profile does not
admit are skipped).  Since every step's arguments are constants, the
encoding is specialised per (actor, pc): only keys read from the state are
symbolic, and they are resolved over the universe's keys.

Depths 0, 1, 2, ... K are solved incrementally (one solver, assumptions per
query): at each depth, is there a schedule whose last move breaks a rule not
found yet, or whose last state is a deadlock (``LOCK-DEADLOCK``) or a
finished state that breaks an end-of-trace obligation?  Paths stop at their
first broken rule, as in the explicit explorer, so each rule's depth is its
shortest.  A model is decoded into its schedule, replayed through
``checker.engines.model.Model`` (every intermediate state is compared with
the solver's, so an encoding bug raises ``EncodingError`` instead of being
reported) and made into a ``Counterexample`` by ``checker.counterexample``.
When no path reaches some depth, the state space is exhausted: ``holds``.

The same lowering serves a recorded trace's windows (``dmaspec check
--predict``, ``checker.analysis.predict``), given a ``Model(recorded=True,
initial_rows=...)``: the state starts from those rows (the universe is
seeded with them); a recorded step whose ``outcomes`` give another return
than the recorded one is not enabled; ``invokes`` adds nothing (the callbacks
are recorded steps); and what an event breaks while an ``Adopt`` makes a row
(an object from before the recording) is withheld, as the model withholds it.
For those, ``search`` unrolls every depth at once instead, paths may stop
after any move, and one query asks for any rule still to find; footprints
(``universe.footprints``) split the actors into groups searched apart and
rule out one order of adjacent commuting steps.  Enum variables carry the set
of values the moves to their frame can leave, so a read from one resolves
over those values rather than the field's whole domain.

What it does not do: prove anything beyond ``depth`` (``bounded``), reduce by
symmetry, or visit ``ForEach`` rows in insertion order (it visits them in the
universe's key order, which is the order the model loads them in; rows made
earlier in the same action could be visited in another order; no spec
statement depends on that).  A ``Bump`` (lost events) cannot be encoded.  A
solver ``unknown`` or timeout makes the verdict ``unknown``.

Example
-------
>>> from checker.engines.bmc import check
>>> from spec.configs import scenario
>>> r = check(scenario("resv-order-no-ctx").config, depth=8)
>>> r.verdict, [(c.rule, len(c.events)) for c in r.counterexamples]
('violated', [('RESV-MULTIPLE-WITHOUT-CTX', 5), ('LOCK-DEADLOCK', 7)])
>>> check(scenario("resv-order-no-ctx").config, depth=3).verdict
'bounded'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Union

import z3  # type: ignore[import-untyped]
from z3.z3types import Ast as _Ast  # type: ignore[import-untyped]

from checker.core import Counterexample, Exploration
from checker.counterexample import build
from checker.engines.model import NOT_STARTED, Model, Rows, State, Transition
from checker.engines.universe import Footprints, Universe, footprints, universe
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
from spec.rules import LOCK_DEADLOCK, PROFILE_OP
from spec.values import normalize_ret

Z = Any  # a z3 term (z3 is untyped)
BoolT = Union[bool, Z]  # a Python bool (folded) or a z3 Bool
DEFAULT_TIMEOUT = 60.0


def _solver() -> Any:
    """Preprocess (constants, equalities: most state variables are defined by one) before each search; on these
    unrollings this is several times faster than the incremental SMT core, which keeps every definition."""
    return z3.Then("simplify", "propagate-values", "solve-eqs", "smt").solver()


_SOLVER: Callable[[], Any] = _solver
_DEFAULTS = {t.name: {f.name: f.default for f in t.fields} for t in SPEC.tables}
_FIELDS = {t.name: t.field_names() for t in SPEC.tables}
_TABLES = {t.name: t for t in SPEC.tables}
_PROCS = {p.name: p for p in SPEC.procedures}
_CALLBACK_PARAMS = {a.op: {p.name for p in a.params} for a in SPEC.actions if a.kind is EventKind.CALLBACK}


class EncodingError(Exception):
    """The encoding cannot express something, or disagrees with the model on a replayed schedule."""


# -- booleans, folded where they are constants ---------------------------------------------------------


# The encoding makes terms by the million on long unrollings; z3's Python operators coerce and check every
# argument (``z3.If`` costs about 30 us), so the few constructors it uses call the C API directly: every
# term here is of the main context, and both branches of an ite have the same sort.

_TRUE, _FALSE = z3.Z3_L_TRUE, z3.Z3_L_FALSE
_NUMERAL = z3.Z3_NUMERAL_AST
_INTS: dict[int, Z] = {}


def _const_bool(b: BoolT) -> bool | None:
    if isinstance(b, bool):
        return b
    v = z3.Z3_get_bool_value(b.ctx_ref(), b.as_ast())
    return True if v == _TRUE else False if v == _FALSE else None


def _is_numeral(t: Z) -> bool:
    return bool(z3.Z3_get_ast_kind(t.ctx_ref(), t.as_ast()) == _NUMERAL)


def _numeral(t: Z) -> int:
    """The value of an integer numeral (whichever Python class wraps it)."""
    return int(z3.Z3_get_numeral_string(t.ctx_ref(), t.as_ast()))


def _ival(v: int) -> Z:
    """The z3 integer ``v`` (cached: making one takes several calls into z3)."""
    t = _INTS.get(v)
    if t is None:
        t = _INTS[v] = z3.IntVal(v)
    return t


def _ast_array(xs: list[Z]) -> tuple[Any, int]:
    return (_Ast * len(xs))(*[x.as_ast() for x in xs]), len(xs)


def _mk_and(xs: list[Z]) -> Z:
    ctx = xs[0].ctx
    arr, n = _ast_array(xs)
    return z3.BoolRef(z3.Z3_mk_and(ctx.ref(), n, arr), ctx)


def _mk_or(xs: list[Z]) -> Z:
    ctx = xs[0].ctx
    arr, n = _ast_array(xs)
    return z3.BoolRef(z3.Z3_mk_or(ctx.ref(), n, arr), ctx)


def _mk_if(c: Z, a: Z, b: Z) -> Z:
    if isinstance(a, z3.BoolRef) is not isinstance(b, z3.BoolRef):
        return z3.If(c, a, b)
    ctx = c.ctx
    ast = z3.Z3_mk_ite(ctx.ref(), c.as_ast(), a.as_ast(), b.as_ast())
    return z3.BoolRef(ast, ctx) if isinstance(a, z3.BoolRef) else z3.ArithRef(ast, ctx)


def _eq(a: Z, v: int) -> Z:
    """``a == v`` for a z3 integer ``a``."""
    ctx = a.ctx
    return z3.BoolRef(z3.Z3_mk_eq(ctx.ref(), a.as_ast(), _ival(v).as_ast()), ctx)


def _and(*xs: BoolT) -> BoolT:
    out = []
    for x in xs:
        c = _const_bool(x)
        if c is False:
            return False
        if c is None:
            out.append(x)
    if not out:
        return True
    return out[0] if len(out) == 1 else _mk_and(out)


def _or(*xs: BoolT) -> BoolT:
    out = []
    for x in xs:
        c = _const_bool(x)
        if c is True:
            return True
        if c is None:
            out.append(x)
    if not out:
        return False
    return out[0] if len(out) == 1 else _mk_or(out)


def _not(x: BoolT) -> BoolT:
    c = _const_bool(x)
    if c is not None:
        return not c
    assert not isinstance(x, bool)
    ctx = x.ctx
    return z3.BoolRef(z3.Z3_mk_not(ctx.ref(), x.as_ast()), ctx)


def _zb(x: BoolT) -> Z:
    return z3.BoolVal(x) if isinstance(x, bool) else x


def _ite(c: BoolT, a: Z, b: Z) -> Z:
    """``a`` if ``c`` else ``b`` over z3 terms (or Python bools for Bool terms)."""
    k = _const_bool(c)
    if k is True:
        return a
    if k is False:
        return b
    if a is b:
        return a
    if isinstance(a, bool) or isinstance(b, bool):
        if a is True and b is False:
            return c
        if a is False and b is True:
            return _not(c)
        return _mk_if(c, _zb(a), _zb(b))
    if z3.eq(a, b):
        return a
    return _mk_if(c, a, b)


# -- symbolic values ---------------------------------------------------------------------------------------


class _C:
    """A constant."""

    __slots__ = ("v",)

    def __init__(self, v: Value) -> None:
        self.v = v


class _Ch:
    """One of finitely many constants, each under its guard (the guards are exclusive and exhaustive)."""

    __slots__ = ("opts",)

    def __init__(self, opts: list[tuple[BoolT, Value]]) -> None:
        self.opts = opts


class _N:
    """Any integer (a counter): a z3 Int."""

    __slots__ = ("t",)

    def __init__(self, t: Z) -> None:
        self.t = t


class _B:
    """A z3 Bool."""

    __slots__ = ("t",)

    def __init__(self, t: Z) -> None:
        self.t = t


SV = Union[_C, _Ch, _N, _B]


def _vkey(v: Value) -> tuple[str, Value]:
    return (type(v).__name__, v)


def _choice(opts: Iterable[tuple[BoolT, Value]]) -> SV:
    """A choice, its equal values merged and impossible ones dropped (a constant when only one remains)."""
    merged: dict[tuple[str, Value], list[Any]] = {}
    for g, v in opts:
        if _const_bool(g) is False:
            continue
        slot = merged.setdefault(_vkey(v), [v, []])
        slot[1].append(g)
    if len(merged) == 1:
        return _C(next(iter(merged.values()))[0])
    if not merged:
        raise EncodingError("a value with no possible case")
    return _Ch([(_or(*gs), v) for v, gs in merged.values()])


def _opts(x: SV) -> list[tuple[BoolT, Value]]:
    if isinstance(x, _C):
        return [(True, x.v)]
    if isinstance(x, _Ch):
        return x.opts
    if isinstance(x, _B):
        return [(x.t, True), (z3.Not(x.t), False)]
    raise EncodingError("a counter used where a finite value is needed (a key, a handle)")


def _truth(x: SV) -> BoolT:
    if isinstance(x, _C):
        return bool(x.v)
    if isinstance(x, _B):
        return x.t
    if isinstance(x, _N):
        return x.t != 0
    return _or(*(g for g, v in x.opts if v))


def _is_int(v: Value) -> bool:
    return isinstance(v, int)


def _int(x: SV) -> Z:
    """A z3 Int for a value that is an integer wherever it matters."""
    if isinstance(x, _N):
        return x.t
    if isinstance(x, _B):
        return _mk_if(x.t, _ival(1), _ival(0))
    opts = [(g, int(v)) for g, v in _opts(x) if _is_int(v)]  # type: ignore[arg-type]
    if not opts:
        raise EncodingError(f"arithmetic on a value that is never an integer: {_opts(x)}")
    out = _ival(opts[-1][1])
    for g, v in reversed(opts[:-1]):
        out = _ite(g, _ival(v), out)
    return out


def _sv_bool(b: BoolT) -> SV:
    c = _const_bool(b)
    return _C(c) if c is not None else _B(b)


def _sv_ite(c: BoolT, a: SV, b: SV) -> SV:
    k = _const_bool(c)
    if k is True:
        return a
    if k is False:
        return b
    if a is b:
        return a
    if isinstance(a, _N) or isinstance(b, _N):
        return _N(_ite(c, _int(a), _int(b)))
    if isinstance(a, _B) and isinstance(b, _B):
        return _B(_ite(c, a.t, b.t))
    return _choice([(_and(c, g), v) for g, v in _opts(a)] + [(_and(_not(c), g), v) for g, v in _opts(b)])


def _map(x: SV, f: Callable[[Value], Value]) -> SV:
    if isinstance(x, _C):
        return _C(f(x.v))
    return _choice([(g, f(v)) for g, v in _opts(x)])


_PY_CMP: dict[CmpOp, Callable[[Any, Any], bool]] = {
    CmpOp.EQ: lambda a, b: a == b, CmpOp.NE: lambda a, b: a != b, CmpOp.LT: lambda a, b: a < b,
    CmpOp.LE: lambda a, b: a <= b, CmpOp.GT: lambda a, b: a > b, CmpOp.GE: lambda a, b: a >= b,
}
_Z_CMP: dict[CmpOp, Callable[[Z, Z], Z]] = {
    CmpOp.EQ: lambda a, b: a == b, CmpOp.NE: lambda a, b: a != b, CmpOp.LT: lambda a, b: a < b,
    CmpOp.LE: lambda a, b: a <= b, CmpOp.GT: lambda a, b: a > b, CmpOp.GE: lambda a, b: a >= b,
}


def _py_cmp(op: CmpOp, a: Value, b: Value) -> bool:
    try:
        return _PY_CMP[op](a, b)
    except TypeError:
        return False  # the interpreter would fail here: no path reaches it


def _cmp(op: CmpOp, a: SV, b: SV) -> SV:
    if isinstance(a, _C) and isinstance(b, _C):
        return _C(_py_cmp(op, a.v, b.v))
    if isinstance(a, _N) or isinstance(b, _N):
        other, num = (b, a) if isinstance(a, _N) else (a, b)
        if op in (CmpOp.EQ, CmpOp.NE) and isinstance(num, _N) and not isinstance(other, _N):
            same = _or(*(_and(g, num.t == v) for g, v in _opts(other) if _is_int(v)))
            return _sv_bool(same if op is CmpOp.EQ else _not(same))
        return _sv_bool(_Z_CMP[op](_int(a), _int(b)))
    oa, ob = _opts(a), _opts(b)
    cases = [_and(ga, gb) for ga, va in oa for gb, vb in ob if _py_cmp(op, va, vb)]
    return _sv_bool(_or(*cases))


def _arith(op: ArithOp, a: SV, b: SV) -> SV:
    py: dict[ArithOp, Callable[[Any, Any], Any]] = {
        ArithOp.ADD: lambda x, y: x + y, ArithOp.SUB: lambda x, y: x - y, ArithOp.BITAND: lambda x, y: x & y,
        ArithOp.BITOR: lambda x, y: x | y, ArithOp.FLOORDIV: lambda x, y: x // y}
    if isinstance(a, _C) and isinstance(b, _C):
        return _C(py[op](a.v, b.v))
    if not isinstance(a, _N) and not isinstance(b, _N) and (
            (op is not ArithOp.ADD and op is not ArithOp.SUB) or len(_opts(a)) * len(_opts(b)) <= 64):
        # finitely many values (a field of a bounded universe holds a counter as an enum): no arithmetic at all
        return _choice([(_and(ga, gb), py[op](va, vb)) for ga, va in _opts(a) for gb, vb in _opts(b)
                        if _is_int(va) and _is_int(vb)])
    x, y = _int(a), _int(b)
    if op is ArithOp.ADD:
        return _N(x + y)
    if op is ArithOp.SUB:
        return _N(x - y)
    if op is ArithOp.FLOORDIV:
        if isinstance(b, _C) and isinstance(b.v, int) and b.v > 0:
            return _N(x / y)  # SMT-LIB div floors for a positive divisor, as Python's // does
        raise EncodingError("floor division of a counter by a non-constant")
    mask = b.v if isinstance(b, _C) else a.v if isinstance(a, _C) else None
    if isinstance(mask, int) and not isinstance(mask, bool) and 0 <= mask < 1 << 62 and bin(mask).count("1") <= 8:
        # a counter and a constant mask, bit by bit in linear integer arithmetic (z3's int2bv and bv2int are slow):
        # bit k of v is (v div 2^k) mod 2, for negative v too, as for Python's infinite two's complement
        v = y if isinstance(a, _C) else x
        bits = [(1 << k, (v / (1 << k)) % 2) for k in range(mask.bit_length()) if mask >> k & 1]
        if op is ArithOp.BITAND:
            return _N(z3.Sum([bit * weight for weight, bit in bits]) if bits else _ival(0))
        return _N(v + z3.Sum([(1 - bit) * weight for weight, bit in bits])) if bits else _N(v)
    bx, by = z3.Int2BV(x, 64), z3.Int2BV(y, 64)
    r = (bx & by) if op is ArithOp.BITAND else (bx | by)
    # two's complement back to an integer
    return _N(z3.If(z3.Extract(63, 63, r) == 1, z3.BV2Int(r) - (1 << 64), z3.BV2Int(r)))


# -- layout: the state's variables -----------------------------------------------------------------------

Var = tuple[str, int, str]  # (table, key index, field); field "" is the present flag; ("pc", actor, "") a pc


@dataclass
class _Layout:
    keys: dict[str, tuple[Value, ...]]
    index: dict[str, dict[tuple[str, Value], int]]
    kind: dict[tuple[str, str], str]  # num, bool, enum
    dom: dict[tuple[str, str], list[Value]]
    code: dict[tuple[str, str], dict[tuple[str, Value], int]]
    vars: list[Var] = field(default_factory=list)
    # the codes a frame's enum variable may hold (by z3 id): the values the moves to that frame can leave, which
    # are usually far fewer than the field's whole domain (an fd holds one buffer, not any buffer)
    possible: dict[int, frozenset[int]] = field(default_factory=dict)

    @staticmethod
    def of(u: Universe) -> _Layout:
        keys = {t: ks for t, ks in u.keys.items() if ks}
        lay = _Layout(keys, {t: {_vkey(k): n for n, k in enumerate(ks)} for t, ks in keys.items()}, {}, {}, {})
        for t in keys:
            lay.vars += [(t, n, "") for n in range(len(keys[t]))]
            for f in _FIELDS[t]:
                dom = sorted(set(u.values[(t, f)]) | {_DEFAULTS[t][f]}, key=repr)
                if (t, f) in u.numeric:
                    lay.kind[(t, f)] = "num"
                elif all(isinstance(v, bool) for v in dom):
                    lay.kind[(t, f)] = "bool"
                else:
                    lay.kind[(t, f)] = "enum"
                    lay.dom[(t, f)] = dom
                    lay.code[(t, f)] = {_vkey(v): n for n, v in enumerate(dom)}
                lay.vars += [(t, n, f) for n in range(len(keys[t]))]
        return lay

    def key_index(self, table: str, key: Value) -> int | None:
        return self.index.get(table, {}).get(_vkey(key))

    def initial(self, rows: Rows = ()) -> dict[Var, Z]:
        """The state holding ``rows`` (none: every table empty), as constants."""
        out: dict[Var, Z] = {}
        for t, n, f in self.vars:
            out[(t, n, f)] = False if not f else self.encode(t, f, _C(_DEFAULTS[t][f]))
        for t, key, values in rows:
            at = self.key_index(t, key)
            if at is None:
                raise EncodingError(f"an initial row of {t} at {key!r}, outside the universe")
            out[(t, at, "")] = True
            for f, v in zip(_FIELDS[t], values, strict=True):
                out[(t, at, f)] = self.encode(t, f, _C(v))
        return out

    def fresh(self, k: int) -> dict[Var, Z]:
        return {v: self.var(v, k) for v in self.vars}

    def var(self, v: Var, k: int) -> Z:
        """The variable of ``v`` after ``k`` moves."""
        t, n, f = v
        name = f"{t}[{self.keys[t][n]!r}].{f or 'present'}@{k}"
        kind = self.kind.get((t, f), "bool") if f else "bool"
        return z3.Bool(name) if kind == "bool" else z3.Int(name)

    def read(self, t: str, f: str, term: Z) -> SV:
        kind = self.kind[(t, f)]
        if kind == "bool":
            return _sv_bool(term)
        if kind == "num":
            return _C(_numeral(term)) if _is_numeral(term) else _N(term)
        dom = self.dom[(t, f)]
        if _is_numeral(term):
            return _C(dom[_numeral(term)])
        codes = self.codes(term)
        if codes is None:
            return _Ch([(_eq(term, n), v) for n, v in enumerate(dom)])
        if len(codes) == 1:
            return _C(dom[next(iter(codes))])
        return _Ch([(_eq(term, n), dom[n]) for n in sorted(codes)])

    def codes(self, term: Z) -> frozenset[int] | None:
        """The codes an enum term may hold, when it is built of numerals, ites and frame variables whose codes
        are known (None: any code of the domain)."""
        ref = term.ctx_ref()
        memo: dict[int, frozenset[int] | None] = {}

        def walk(a: Any) -> frozenset[int] | None:
            ident = z3.Z3_get_ast_id(ref, a)
            if ident in memo:
                return memo[ident]
            kind = z3.Z3_get_ast_kind(ref, a)
            out: frozenset[int] | None = None
            if kind == _NUMERAL:
                out = frozenset({int(z3.Z3_get_numeral_string(ref, a))})
            elif kind == z3.Z3_APP_AST:
                op = z3.Z3_get_decl_kind(ref, z3.Z3_get_app_decl(ref, a))
                if op == z3.Z3_OP_ITE:
                    x, y = walk(z3.Z3_get_app_arg(ref, a, 1)), walk(z3.Z3_get_app_arg(ref, a, 2))
                    out = None if x is None or y is None else x | y
                elif op == z3.Z3_OP_UNINTERPRETED:
                    out = self.possible.get(ident)
            memo[ident] = out
            return out

        return walk(term.as_ast())

    def encode(self, t: str, f: str, x: SV) -> Z:
        kind = self.kind[(t, f)]
        if kind == "num":
            return _int(x)
        if kind == "bool":
            if isinstance(x, _B):
                return x.t
            if not all(isinstance(v, bool) for _, v in _opts(x)):
                raise EncodingError(f"{t}.{f}: a non-boolean value for a boolean field")
            return _truth(x)
        code = self.code[(t, f)]
        opts = _opts(x)
        try:
            codes = [(g, code[_vkey(v)]) for g, v in opts]
        except KeyError as e:
            raise EncodingError(f"{t}.{f}: value {e} is outside the universe") from None
        out = _ival(codes[-1][1])
        for g, c in reversed(codes[:-1]):
            out = _ite(g, _ival(c), out)
        return out

    def decode(self, t: str, f: str, value: Z) -> Value:
        kind = self.kind[(t, f)]
        if kind == "bool":
            return bool(z3.is_true(value))
        if kind == "num":
            return int(value.as_long())
        out: Value = self.dom[(t, f)][int(value.as_long())]
        return out


# -- symbolic execution of the spec's statements -------------------------------------------------------


@dataclass
class _Env:
    event: Event | None
    ret: SV
    locals: dict[str, SV]
    row: tuple[str, int] | None = None  # (table, key index) a ForEach visits


class _Exec:
    """Runs statements over a symbolic state (``state``), accumulating each rule's broken condition."""

    def __init__(self, lay: _Layout, state: dict[Var, Z], active: frozenset[str]) -> None:
        self.lay = lay
        self.state = state
        self.active = active
        self.broken: dict[str, BoolT] = {}
        self.adopted: BoolT = False  # an Adopt made a row: the object predates the recording
        # the variables a write may have changed (the others are the state's own), in the order of the writes: terms
        # are made in that order, and z3's search depends on the order terms are made in
        self.written: dict[Var, None] = {}

    # expressions

    def ev(self, e: Expr, env: _Env) -> SV:  # noqa: C901 - one case per node type
        match e:
            case Const(value=v):
                return _C(v)
            case Arg(name=name):
                assert env.event is not None
                return _C(env.event.args.get(name))
            case Ret():
                return env.ret
            case EventField(name=name):
                assert env.event is not None
                return _C(getattr(env.event, name))
            case Local(name=name):
                return env.locals[name]
            case RowField(name="key"):
                assert env.row is not None
                return _C(self.lay.keys[env.row[0]][env.row[1]])
            case RowField(name=name):
                assert env.row is not None
                t, n = env.row
                return self.lay.read(t, name, self.state[(t, n, name)])
            case Key(parts=parts):
                parts_sv = [self.ev(p, env) for p in parts]
                if all(isinstance(p, _C) for p in parts_sv):
                    return _C(tuple(p.v for p in parts_sv))  # type: ignore[union-attr]
                combos: list[tuple[BoolT, tuple[Value, ...]]] = [(True, ())]
                for part_sv in parts_sv:
                    combos = [(_and(g, g2), acc + (x,)) for g, acc in combos for g2, x in _opts(part_sv)]
                return _choice(combos)
            case KeyPart(key=key, index=index):
                return _map(self.ev(key, env), lambda k: k[index] if isinstance(k, tuple) else None)
            case Get(table=table, key=key, name=name):
                return self.get(table, self.ev(key, env), name)
            case Exists(table=table, key=key):
                return _sv_bool(_or(*(_and(g, self.present(table, k)) for g, k in _opts(self.ev(key, env)))))
            case Not(arg=arg):
                return _sv_bool(_not(_truth(self.ev(arg, env))))
            case And(args=args):
                out: list[BoolT] = []
                for a in args:  # short-circuit on constants, as Python's all() does
                    truth = _truth(self.ev(a, env))
                    if _const_bool(truth) is False:
                        return _C(False)
                    out.append(truth)
                return _sv_bool(_and(*out))
            case Or(args=args):
                out = []
                for a in args:
                    truth = _truth(self.ev(a, env))
                    if _const_bool(truth) is True:
                        return _C(True)
                    out.append(truth)
                return _sv_bool(_or(*out))
            case Cmp(op=op, left=left, right=right):
                return _cmp(op, self.ev(left, env), self.ev(right, env))
            case Arith(op=aop, left=left, right=right):
                return _arith(aop, self.ev(left, env), self.ev(right, env))
            case IsErrno(arg=arg):
                x = self.ev(arg, env)
                if isinstance(x, _N):
                    return _sv_bool(x.t < 0)
                return _sv_bool(_or(*(g for g, v in _opts(x)
                                      if isinstance(v, int) and not isinstance(v, bool) and v < 0)))
            case IsErrPtr(arg=arg):
                x = self.ev(arg, env)
                if isinstance(x, _N):
                    return _C(False)
                return _sv_bool(_or(*(g for g, v in _opts(x) if isinstance(v, str) and is_err_ptr(v))))
            case IsNone(arg=arg):
                x = self.ev(arg, env)
                if isinstance(x, _N):
                    return _C(False)
                return _sv_bool(_or(*(g for g, v in _opts(x) if v is None)))
            case In(arg=arg, values=values):
                x = self.ev(arg, env)
                if isinstance(x, _N):
                    return _sv_bool(_or(*(x.t == v for v in values if isinstance(v, int))))
                return _sv_bool(_or(*(g for g, v in _opts(x) if v in values)))
            case Cond(test=test, then=then, orelse=orelse):
                c = _truth(self.ev(test, env))
                k = _const_bool(c)
                if k is not None:
                    return self.ev(then if k else orelse, env)
                return _sv_ite(c, self.ev(then, env), self.ev(orelse, env))
        raise AssertionError(f"unknown expression {e!r}")

    def present(self, table: str, key: Value) -> BoolT:
        n = self.lay.key_index(table, key)
        return False if n is None else self.state[(table, n, "")]

    def get(self, table: str, key: SV, name: str) -> SV:
        if isinstance(key, _C):
            n = self.lay.key_index(table, key.v)
            if n is None:
                return _C(_DEFAULTS[table][name])
            return self.lay.read(table, name, self.state[(table, n, name)])
        out: SV | None = None
        for g, k in reversed(_opts(key)):
            v = self.get(table, _C(k), name)
            out = v if out is None else _sv_ite(g, v, out)
        assert out is not None
        return out

    # statements: ``h`` is the condition, relative to the block's entry, that the action still runs;
    # ``path`` the absolute condition of the block's entry

    def write(self, var: Var, term: Z, h: BoolT) -> None:
        self.state[var] = _ite(h, term, self.state[var])
        self.written[var] = None

    def run(self, stmts: tuple[Stmt, ...], env: _Env, path: BoolT, h: BoolT) -> BoolT:
        for s in stmts:
            if _const_bool(h) is False:
                break
            h = self.exec(s, env, path, h)
        return h

    def _keys(self, table: str, key: SV) -> list[tuple[BoolT, int]]:
        out = []
        for g, k in _opts(key):
            n = self.lay.key_index(table, k)
            if n is None:
                if _const_bool(g) is False:
                    continue
                raise EncodingError(f"a write to {table} at {k!r}, outside the universe")
            out.append((g, n))
        return out

    def _create(self, table: str, key: SV, values: dict[str, SV], h: BoolT, only_absent: bool,
                path: BoolT = True) -> None:
        for g, n in self._keys(table, key):
            guard = _and(h, g, _not(self.state[(table, n, "")]) if only_absent else True)
            if only_absent:
                self.adopted = _or(self.adopted, _and(path, guard))
            self.write((table, n, ""), True, guard)
            for f in _FIELDS[table]:
                v = values.get(f, _C(_DEFAULTS[table][f]))
                self.write((table, n, f), self.lay.encode(table, f, v), guard)

    def exec(self, s: Stmt, env: _Env, path: BoolT, h: BoolT) -> BoolT:  # noqa: C901 - one case per node type
        if isinstance(s, Require):
            if s.rule not in self.active:
                return h
            c = _truth(self.ev(s.cond, env))
            fail = _and(path, h, _not(c))
            if _const_bool(fail) is not False:
                self.broken[s.rule] = _or(self.broken.get(s.rule, False), fail)
            return _and(h, c) if s.abort else h
        if isinstance(s, Let):
            env.locals[s.name] = self.ev(s.value, env)
            return h
        if isinstance(s, Create):
            key = self.ev(s.key, env)
            self._create(s.table, key, {n: self.ev(v, env) for n, v in s.values}, h, False)
            return h
        if isinstance(s, Adopt):
            key = self.ev(s.key, env)
            self._create(s.table, key, {n: self.ev(v, env) for n, v in s.values}, h, True, path)
            return h
        if isinstance(s, Update):
            key = self.ev(s.key, env)
            value = self.ev(s.value, env)
            term = self.lay.encode(s.table, s.name, value)
            for g, n in self._keys(s.table, key):
                guard = _and(h, g)
                self.write((s.table, n, ""), True, guard)
                self.write((s.table, n, s.name), term, guard)
            return h
        if isinstance(s, If):
            return self._branch(_truth(self.ev(s.test, env)), s.then, s.orelse, env, path, h)
        if isinstance(s, ForEach):
            table = s.table
            saved = env.row
            idx: SV | None = self.ev(s.index, env) if s.index is not None else None
            part = _TABLES[table].index
            snapshot = [(n, self.state[(table, n, "")]) for n in range(len(self.lay.keys.get(table, ())))]
            for n, was in snapshot:
                if _const_bool(was) is False:
                    continue
                row_key = self.lay.keys[table][n]
                sel: BoolT = True
                if idx is not None:
                    assert part is not None and isinstance(row_key, tuple)
                    sel = _truth(_cmp(CmpOp.EQ, _C(row_key[part]), idx))
                if _const_bool(sel) is False:
                    continue
                env.row = (table, n)
                visit = _and(was, sel, _truth(self.ev(s.where, env)))
                h = self._branch(visit, s.body, (), env, path, h)
                env.row = saved
            env.row = saved
            return h
        if isinstance(s, Call):
            proc = _PROCS[s.name]
            inner = _Env(env.event, env.ret, {n: self.ev(v, env) for n, v in s.args})
            return self.run(proc.body, inner, path, h)
        if isinstance(s, (Ignore, Stop)):
            return _and(h, _not(_truth(self.ev(s.when, env))))
        if isinstance(s, Bump):
            if _const_bool(_and(path, h)) is not False:
                raise EncodingError("a lost-events marker (Bump) cannot be encoded")
            return h
        raise AssertionError(f"unknown statement {s!r}")

    def _branch(self, test: BoolT, then: tuple[Stmt, ...], orelse: tuple[Stmt, ...], env: _Env, path: BoolT,
                h: BoolT) -> BoolT:
        k = _const_bool(test)
        if k is not None:
            return self.run(then if k else orelse, env, path, h)
        old = self.state
        old_locals = env.locals
        here = _and(path, h)
        results = []
        for cond, body in ((test, then), (_not(test), orelse)):
            if not body:
                results.append((old, old_locals, True))
                continue
            self.state = dict(old)
            env.locals = dict(old_locals)
            hb = self.run(body, env, _and(here, cond), True)
            results.append((self.state, env.locals, hb))
        (st_t, loc_t, h_t), (st_e, loc_e, h_e) = results
        merged = dict(old)
        for var in self.written:
            before = old[var]
            a, b = st_t[var], st_e[var]
            if a is before and b is before:
                continue
            merged[var] = _ite(h, _ite(test, a, b), before)
        self.state = merged
        locs = dict(loc_e)
        for name, v in loc_t.items():
            locs[name] = _sv_ite(test, v, loc_e[name]) if name in loc_e and loc_e[name] is not v else v
        env.locals = locs
        return _and(h, _ite(test, _zb(h_t), _zb(h_e)) if h_t is not h_e else h_t)


# -- one move of one actor -------------------------------------------------------------------------------


@dataclass
class _Move:
    enabled: BoolT
    state: dict[Var, Z]
    broken: dict[str, BoolT]
    next_pc: Z | int
    spawns: tuple[int, ...]
    written: frozenset[Var] = frozenset()  # the variables whose term may differ from the state's it ran on


class _System:
    """The configuration's moves and end obligations, encoded over any symbolic state."""

    def __init__(self, model: Model, lay: _Layout) -> None:
        self.model = model
        self.lay = lay
        self.profile: Profile = model.profile
        self.recorded = model.recorded
        self.active = frozenset(r.id for r in SPEC.rules if self.profile.admits_rule(r))
        self.programs = [a.program for a in model.actors]
        self.labels = model.labels  # the model resolves labels and gotos: one reading of a program
        self.resolve = model.resolve
        self.index = {a.name: i for i, a in enumerate(model.actors)}

    def steps_at(self, i: int, pc: int) -> tuple[Step, ...]:
        instr = self.programs[i][pc]
        steps = instr.steps if isinstance(instr, Atomic) else (instr,)
        assert all(isinstance(s, Step) for s in steps)
        return steps  # type: ignore[return-value]

    def successors(self, i: int, pc: int) -> set[int]:
        last = self.steps_at(i, pc)[-1]
        return {self.resolve(i, pc + 1)} | {self.resolve(i, self.labels[i][label]) for _, label in last.on}

    def spawned(self, i: int, pc: int) -> tuple[int, ...]:
        return tuple(self.index[name] for st in self.steps_at(i, pc) for name in st.spawns)

    def initial_pcs(self) -> list[int]:
        return [self.resolve(i, 0) if a.started else NOT_STARTED for i, a in enumerate(self.model.actors)]

    def _event(self, i: int, st: Step, ret: Value = None) -> Event:
        actor = self.model.actors[i]
        return validate(st.event(actor.tid, actor.pid, ret), f"config {self.model.config.name}", 0)

    def move(self, i: int, pc: int, state: dict[Var, Z], pcs: list[Z | int]) -> _Move:
        x = _Exec(self.lay, dict(state), self.active)
        actor = self.model.actors[i]
        enabled: BoolT = True
        ret: SV = _C(None)
        for n, st in enumerate(self.steps_at(i, pc)):
            gate: BoolT = True if n == 0 else _not(_or(*x.broken.values()))
            for name, before in getattr(st, "after", ()):  # ordered after another actor's step
                other = pcs[self.index[name]]
                enabled = _and(enabled, _or(_not(gate), other > before))
            probe = self._event(i, st)
            action, _ = select(probe, self.profile)
            penv = _Env(probe, _C(None), {})
            if action is not None and action.waits is not None:
                enabled = _and(enabled, _or(_not(gate), _not(_truth(x.ev(action.waits, penv)))))
            ret = _C(st.ret)
            if action is not None:
                for outcome in reversed(action.outcomes):
                    ret = _sv_ite(_truth(x.ev(outcome.when, penv)), x.ev(outcome.value, penv), ret)
                if self.recorded:
                    # the kernel must return what the recording shows; its callbacks are recorded steps of their own
                    same = _truth(_cmp(CmpOp.EQ, ret, _C(st.ret)))
                    enabled = _and(enabled, _or(_not(gate), same))
                    ret = _C(st.ret)
                    self._run_recorded(x, action, probe, _map(ret, _normalizer(action)), gate)
                    continue
                for cb, cond in action.invokes:
                    c = _and(gate, _truth(x.ev(cond, penv)))
                    args = {k: v for k, v in st.args if k in _CALLBACK_PARAMS[cb]}
                    cb_event = validate({"op": cb, "kind": EventKind.CALLBACK.value, "tid": actor.tid,
                                         "pid": actor.pid, "args": args}, "bmc", 0)
                    cb_action, available = select(cb_event, self.profile)
                    if not available:
                        x.broken[PROFILE_OP] = _or(x.broken.get(PROFILE_OP, False), c)
                    elif cb_action is not None:
                        self._run_event(x, cb_action, cb_event, _C(None), c)
                self._run_event(x, action, probe, _map(ret, _normalizer(action)), gate)
        last = self.steps_at(i, pc)[-1]
        nxt: Z | int
        targets = []
        for g, v in _opts(ret):
            t = self.resolve(i, pc + 1)
            for value, label in last.on:
                if v == value:
                    t = self.resolve(i, self.labels[i][label])
                    break
            targets.append((g, t))
        if len({t for _, t in targets}) == 1:
            nxt = targets[0][1]
        else:
            nxt = _ival(targets[-1][1])
            for g, t in reversed(targets[:-1]):
                nxt = _ite(g, _ival(t), nxt)
        return _Move(enabled, x.state, x.broken, nxt, self.spawned(i, pc), frozenset(x.written))

    def _run_event(self, x: _Exec, action: Action, event: Event, ret: SV, gate: BoolT) -> None:
        env = _Env(event, ret, {})
        x._branch(gate, action.body, (), env, True, True)

    def _run_recorded(self, x: _Exec, action: Action, event: Event, ret: SV, gate: BoolT) -> None:
        """A recorded event: what it breaks counts only when it adopted nothing (as the model's ``recorded``
        mode withholds the findings of an event that met an object from before the recording)."""
        before, x.broken, x.adopted = x.broken, {}, False
        self._run_event(x, action, event, ret, gate)
        fresh = _not(x.adopted)
        merged = dict(before)
        for rule, b in x.broken.items():
            merged[rule] = _or(merged.get(rule, False), _and(b, fresh))
        x.broken = merged

    def end(self, state: dict[Var, Z]) -> dict[str, BoolT]:
        x = _Exec(self.lay, dict(state), self.active)
        x.run(SPEC.at_end, _Env(None, _C(None), {}), True, True)
        return x.broken


# -- the unrolling ---------------------------------------------------------------------------------------


@dataclass
class _Frame:
    """The state after ``k`` moves, and the encoding of the moves from it."""

    vars: dict[Var, Z]
    pcs: list[Z | int]
    pc_sets: list[set[int]]
    moves: dict[tuple[int, int], _Move] = field(default_factory=dict)
    enabled: list[BoolT] = field(default_factory=list)


class _Order:
    """What a straight-line configuration's ``after`` and program order say about when a step can run.

    The steps made after ``k`` moves are a set closed under "runs after" of exactly ``k`` steps, so actor
    ``i`` is at ``pc`` after ``k`` moves only if every step its first ``pc`` steps need fits in ``k``
    (``need``) and the steps that need step ``pc`` fit in the rest (``blocked``); and step ``pc`` is the
    move from there only if what it needs has run.  Configurations with jumps, atomic groups or actors
    started later have no such order (``of`` gives None): their pcs are not pruned.
    """

    def __init__(self, programs: list[tuple[Step, ...]], index: dict[str, int]) -> None:
        ids = {(i, pc): n for n, (i, pc) in enumerate((i, pc) for i, p in enumerate(programs) for pc in range(len(p)))}
        self.total = len(ids)
        preds: list[int] = [0] * self.total  # bitset of the steps each one needs (itself included)
        for (i, pc), n in ids.items():
            preds[n] = 1 << n
            if pc > 0:
                preds[n] |= preds[ids[(i, pc - 1)]]
            for name, before in programs[i][pc].after:
                preds[n] |= preds[ids[(index[name], before)]]
        succs = [0] * self.total
        for n in range(self.total):
            for m in _bits(preds[n]):
                succs[m] |= 1 << n
        self.ids, self.preds = ids, preds
        self.need = {key: bin(preds[n]).count("1") for key, n in ids.items()}
        self.blocked = {key: bin(succs[n]).count("1") for key, n in ids.items()}
        self.ends = [len(p) for p in programs]

    @staticmethod
    def of(model: Model) -> _Order | None:
        programs: list[tuple[Step, ...]] = []
        index = {a.name: i for i, a in enumerate(model.actors)}
        for a in model.actors:
            if not a.started or not all(isinstance(x, Step) and not x.on and not x.spawns for x in a.program):
                return None
            programs.append(a.program)  # type: ignore[arg-type]
        for p in programs:
            for st in p:
                if any(before >= len(programs[index[name]]) for name, before in st.after):
                    return None  # after a step that does not exist: the model never runs it
        return _Order(programs, index)

    def ordered(self, a: tuple[int, int], b: tuple[int, int]) -> bool:
        """Whether one of steps ``a`` and ``b`` (actor, pc) runs after the other in every schedule."""
        na, nb = self.ids[a], self.ids[b]
        return bool(self.preds[nb] >> na & 1 or self.preds[na] >> nb & 1)

    def at(self, i: int, pc: int, k: int) -> bool:
        """Whether actor ``i`` can be at ``pc`` after ``k`` moves."""
        return ((pc == 0 or self.need[(i, pc - 1)] <= k)
                and (pc == self.ends[i] or k <= self.total - self.blocked[(i, pc)]))

    def movable(self, i: int, pc: int, k: int) -> bool:
        """Whether step ``pc`` of actor ``i`` can be move ``k`` (counted from 0)."""
        return self.need[(i, pc)] - 1 <= k and self.at(i, pc, k)


def _bits(x: int) -> Iterable[int]:
    n = 0
    while x:
        if x & 1:
            yield n
        x >>= 1
        n += 1


class _Unrolling:
    """The moves from frame to frame, constrained in one solver.

    ``partial``: a path may stop after any move (move ``k`` is made only when ``active[k]``, and every later
    one is then made too); a move that breaks a rule is the path's last.  Then one query over the whole
    unrolling asks for a violation at any depth (``search``), instead of one query per depth (``check``).
    """

    def __init__(self, config: Config, profile: Profile | None, seed: int, timeout: float,
                 model: Model | None = None, partial: bool = False,
                 commute: Callable[[int, int, int, int], bool] | None = None, depth: int | None = None) -> None:
        self.partial = partial
        self.commute = commute  # whether step (i, p) and step (j, q) commute
        self.guards: list[dict[tuple[int, int], BoolT]] = []
        self.active: list[BoolT] = []
        self.model = model or Model(config, profile)
        rows = self.model.initial().rows
        # with the depth known, counters that take few values within it are enums (no arithmetic to solve)
        self.lay = _Layout.of(universe(config, self.model.profile, rows, bits=True, depth=depth))
        self.sys = _System(self.model, self.lay)
        self.order = _Order.of(self.model)
        self.solver = _SOLVER()
        self.solver.set("random_seed", seed)
        self.solver.set("timeout", max(1, int(timeout * 1000)))
        z3.set_param("smt.random_seed", seed)
        pcs0 = self.sys.initial_pcs()
        self.frames = [_Frame(self.lay.initial(rows), list(pcs0), [{p} for p in pcs0])]
        self.choices: list[Z] = []
        self.broken: list[dict[str, BoolT]] = []
        self.nactors = len(self.model.actors)
        self.ends = [len(p) for p in self.sys.programs]

    def expand(self, k: int) -> None:
        """Encode the moves from frame ``k`` (and whether each actor can move there)."""
        fr = self.frames[k]
        if fr.enabled or len(fr.moves):
            return
        for i in range(self.nactors):
            options = []
            for pc in sorted(fr.pc_sets[i]):
                if pc == NOT_STARTED or pc >= self.ends[i]:
                    continue
                if self.order is not None and not self.order.movable(i, pc, k):
                    continue
                mv = self.sys.move(i, pc, fr.vars, fr.pcs)
                if _const_bool(mv.enabled) is False:
                    continue  # it cannot move there
                fr.moves[(i, pc)] = mv
                options.append(_and(self._at(fr.pcs[i], pc), mv.enabled))
            fr.enabled.append(_or(*options))

    @staticmethod
    def _at(pc: Z | int, value: int) -> BoolT:
        return _at_term(pc, value)

    def finished(self, k: int) -> BoolT:
        fr = self.frames[k]
        return _and(*(self._at(fr.pcs[i], self.ends[i]) for i in range(self.nactors)))

    def deadlock(self, k: int) -> BoolT:
        self.expand(k)
        fr = self.frames[k]
        return _and(_not(self.finished(k)), *(_not(e) for e in fr.enabled))

    def can_move(self, k: int) -> BoolT:
        self.expand(k)
        return _or(*self.frames[k].enabled)

    def add_transition(self, k: int) -> None:
        """Constrain move ``k`` (from frame k to a new frame k + 1)."""
        self.expand(k)
        fr = self.frames[k]
        mv = z3.Int(f"move@{k}")
        self.choices.append(mv)
        s = self.solver
        act: BoolT = True
        if self.partial:
            act = z3.Bool(f"active@{k}")
            if k > 0:
                s.add(_zb(_or(_not(act), _and(self.active[k - 1], self.no_broken(k - 1)))))
            self.active.append(act)
        s.add(_zb(_or(_not(act), *(_and(_eq(mv, i), fr.enabled[i]) for i in range(self.nactors)))))
        guards: dict[tuple[int, int], BoolT] = {}
        for (i, pc) in fr.moves:
            guards[(i, pc)] = _and(act, _eq(mv, i), self._at(fr.pcs[i], pc))
        if self.commute is not None and k > 0:
            # of two adjacent steps that commute, only one order: the lower actor's first (either order leaves the
            # same state and breaks the same rules, so no rule is lost; fewer schedules are left to refute)
            for (i, p), g1 in self.guards[k - 1].items():
                for (j, q), g2 in guards.items():
                    if i > j and self.commute(i, p, j, q):
                        s.add(_zb(_or(_not(g1), _not(g2))))
        self.guards.append(guards)
        nxt: dict[Var, Z] = dict(fr.vars)
        written = set().union(*(m.written for m in fr.moves.values()))
        for var in [v for v in fr.vars if v in written]:  # in the layout's order: the encoding is deterministic
            cur = fr.vars[var]
            term = cur
            for key, m in fr.moves.items():
                v = m.state[var]
                if v is not cur:
                    term = _ite(guards[key], v, term)
            if term is cur or isinstance(term, bool) or _is_numeral(term) or _const_bool(term) is not None:
                nxt[var] = term  # unchanged, or the same constant whatever the move: no new variable
            else:
                nxt[var] = self.lay.var(var, k + 1)
                s.add(nxt[var] == term)
                if var[2] and self.lay.kind.get((var[0], var[2])) == "enum":
                    codes = self.lay.codes(term)
                    if codes is not None:
                        self.lay.possible[nxt[var].get_id()] = codes
        pcs: list[Z | int] = []
        sets: list[set[int]] = []
        for i in range(self.nactors):
            cur_pc = fr.pcs[i]
            term_pc: Z | int = cur_pc
            new_set = set(fr.pc_sets[i])
            for (j, pc), m in fr.moves.items():
                if j == i:
                    term_pc = _ite(guards[(j, pc)], _int_term(m.next_pc), _int_term(term_pc))
                    new_set |= self.sys.successors(i, pc)
                if i in m.spawns and NOT_STARTED in fr.pc_sets[i]:
                    start = self.sys.resolve(i, 0)
                    term_pc = _ite(_and(guards[(j, pc)], self._at(cur_pc, NOT_STARTED)), z3.IntVal(start),
                                   _int_term(term_pc))
                    new_set.add(start)
            if self.order is not None:
                pruned = {pc for pc in new_set if self.order.at(i, pc, k + 1)}
                if pruned != new_set:
                    # the order rules the others out: say so to the solver, so that no path skips a step
                    s.add(_zb(_or(_not(act), *(_at_term(term_pc, pc) for pc in sorted(pruned)))))
                    new_set = pruned
            if len(new_set) == 1:
                pcs.append(next(iter(new_set)))
            else:
                v = z3.Int(f"pc.{self.model.actors[i].name}@{k + 1}")
                s.add(v == _int_term(term_pc))
                pcs.append(v)
            sets.append(new_set)
        broken: dict[str, BoolT] = {}
        for key, m in fr.moves.items():
            for rule, b in m.broken.items():
                broken[rule] = _or(broken.get(rule, False), _and(guards[key], b))
        self.broken.append(broken)
        self.frames.append(_Frame(nxt, pcs, sets))

    def no_broken(self, k: int) -> BoolT:
        return _not(_or(*self.broken[k].values())) if k >= 0 else True


def _normalizer(action: Action) -> Callable[[Value], Value]:
    """How the interpreter reads a return value of ``action`` (handles as strings, failures as negative ints)."""
    return lambda v: normalize_ret(action.returns, v)


def _at_term(pc: Z | int, value: int) -> BoolT:
    return pc == value if isinstance(pc, int) else _eq_int(pc, value)


def _eq_int(term: Z, value: int) -> BoolT:
    if _is_numeral(term):
        return _numeral(term) == value
    return _eq(term, value)


def _int_term(x: Z | int) -> Z:
    return _ival(x) if isinstance(x, int) else x


# -- the checker -------------------------------------------------------------------------------------------


@dataclass
class _Found:
    rule: str
    depth: int
    schedule: list[int]
    at_end: bool  # broke at the last state (leak, deadlock) rather than at the last move


def check(config: Config, *, profile: Profile | None = None, depth: int | None = None, timeout: float | None = None,
          seed: int | None = None, model: Model | None = None, rules: Collection[str] | None = None,
          obligations: bool = True) -> Exploration:
    """Every rule some schedule of at most ``depth`` moves breaks, each with its shortest counterexample.

    ``model`` is a model of ``config`` made already: a recorded trace's (``recorded=True``, with the rows the
    recording's earlier events left), for ``dmaspec check --predict``; its semantics are encoded (a move
    whose kernel outcome contradicts the recorded return is impossible; callbacks are recorded steps; the
    rules an event breaks while adopting an object from before the recording are withheld).  ``rules``: look
    only for these (paths still end at the first rule they break, whichever it is).  Without
    ``obligations``, states where no actor moves are not judged (neither leaks nor deadlock), as the
    explicit explorer's ``obligations=False``.
    """
    bound = config.depth if depth is None else depth
    secs = DEFAULT_TIMEOUT if timeout is None else timeout
    rseed = 0 if seed is None else seed
    start = time.perf_counter()
    u = _Unrolling(config, profile, rseed, secs, model)
    result = Exploration("bmc", config.name, u.model.profile.name, bound, seed=rseed, timeout=secs)
    found: dict[str, Counterexample] = {}
    depths: dict[str, int] = {}
    times: list[str] = []
    wanted = sorted({r.id for r in SPEC.rules} | {PROFILE_OP} if rules is None else set(rules))
    unknown = ""
    exhausted = False
    reached = 0
    for j in range(bound + 1):
        t0 = time.perf_counter()
        if j > 0:
            u.add_transition(j - 1)
        reached = j
        fin = u.finished(j) if obligations else False
        ends = u.sys.end(u.frames[j].vars) if _const_bool(fin) is not False else {}
        last_ok = u.no_broken(j - 1)
        viol: dict[str, BoolT] = {}
        for rule in wanted:
            at_move = u.broken[j - 1].get(rule, False) if j > 0 else False
            at_end = _and(last_ok, fin, ends.get(rule, False))
            viol[rule] = _or(at_move, at_end)
        if obligations and LOCK_DEADLOCK in wanted:
            viol[LOCK_DEADLOCK] = _or(viol.get(LOCK_DEADLOCK, False), _and(last_ok, u.deadlock(j)))
        while True:
            todo = [r for r, v in viol.items() if r not in found and _const_bool(v) is not False]
            if not todo:
                break
            q = z3.Bool(f"query@{j}.{len(found)}")
            u.solver.add(z3.Implies(q, _zb(_or(*(viol[r] for r in todo)))))
            answer = u.solver.check(q)
            if answer == z3.unknown:
                unknown = f"the solver gave up at depth {j} ({u.solver.reason_unknown()}): nothing is proved"
                break
            if answer == z3.unsat:
                break
            m = u.solver.model()
            sched = [m.eval(c, model_completion=True).as_long() for c in u.choices[:j]]
            hit = [r for r in todo if z3.is_true(m.eval(_zb(viol[r]), model_completion=True))]
            for rule in hit:
                at_move = j > 0 and z3.is_true(m.eval(_zb(u.broken[j - 1].get(rule, False)), model_completion=True))
                found[rule] = _counterexample(u, m, _Found(rule, j, sched, not at_move), rseed)
                depths[rule] = j
        times.append(f"{j}: {time.perf_counter() - t0:.2f} s")
        if unknown:
            break
        if j > 0:
            u.solver.add(_zb(u.no_broken(j - 1)))
        alive = u.solver.check()
        if alive == z3.unknown:
            unknown = f"the solver gave up at depth {j} ({u.solver.reason_unknown()}): nothing is proved"
            break
        if alive == z3.unsat:
            exhausted = True
            reached = max(0, j - 1)
            break
    if not unknown and not exhausted:
        # one more move from some state at the bound: deeper states exist, or the state space is exhausted
        u.solver.push()
        u.solver.add(_zb(u.can_move(bound)))
        deeper = u.solver.check()
        u.solver.pop()
        if deeper == z3.unknown:
            unknown = f"the solver gave up deciding whether states deeper than {bound} exist"
        exhausted = deeper == z3.unsat
    result.counterexamples = sorted(found.values(), key=lambda c: (depths[c.rule], len(c.events), c.rule))
    result.depth_reached = reached
    result.elapsed = time.perf_counter() - start
    result.notes.append("solve time per depth: " + ", ".join(times))
    if depths:
        result.notes.append("shortest depth (moves) per rule: " + ", ".join(
            f"{r} {d}" for r, d in sorted(depths.items(), key=lambda x: (x[1], x[0]))))
    if found:
        result.verdict = "violated"
        if unknown:
            result.notes.append(unknown.replace("nothing is proved", "rules not found by then are not ruled out"))
    elif unknown:
        result.verdict = "unknown"
        result.notes.append(unknown)
    else:
        result.verdict = "holds" if exhausted else "bounded"
    return result


def search(config: Config, rules: Collection[str], *, profile: Profile | None = None, depth: int | None = None,
           timeout: float | None = None, seed: int | None = None, model: Model | None = None,
           independent: bool = True, reorder_only: bool = False) -> Exploration:
    """Some schedule of at most ``depth`` moves that breaks each of ``rules`` at a move, if one exists.

    Unlike ``check``, it unrolls every depth at once (paths may stop after any move, and end at the first
    rule they break, whichever it is) and asks one query for all the rules not found yet: one solver call,
    plus one per schedule found, instead of one or two per depth; the schedules are not the shortest.  No
    end-of-trace obligation or deadlock is judged.  ``model``: as for ``check`` (a recorded trace's window,
    for ``dmaspec check --predict``).

    With ``independent``, steps that share no row some step writes (``universe.footprints``) and that no
    ``after`` ties commute: in either order they leave the same state and break the same rules.  So actors
    that share no such row with each other, and that no ``after`` or ``spawns`` ties, are searched apart, a
    group at a time (a schedule breaks a rule exactly when its steps of one group, in their order, do: a
    recording's threads mostly work on objects of their own, so one search over many threads becomes several
    small ones); and within a group, of two adjacent steps that commute only one order is searched.
    ``reorder_only``: a group is searched only if it has two schedules that differ in more than the order of
    commuting steps, that is two steps of different actors that neither ``after`` nor program order orders
    and that do not commute; otherwise every schedule breaks what the program's own order does (for a
    recording, the recorded order, whose findings are the checker's, not predictions).

    Verdict: ``violated``; ``holds`` when no schedule breaks the rules and no step is left beyond ``depth``;
    ``bounded`` when steps may be; ``unknown`` when the solver gave up (or timed out) on some group.

    >>> from spec.lang import Actor, Config, Step, step
    >>> put = Config("race", "latest", (
    ...     Actor("exporter", 1, 1, (step("dma_buf_export", "b1", size=4096), step("get_dma_buf", dmabuf="b1"),
    ...                              step("dma_buf_put", dmabuf="b1"))),
    ...     Actor("user", 2, 1, (Step("dma_buf_put", (("dmabuf", "b1"),), after=(("exporter", 0),)),)),
    ...     Actor("other", 3, 3, (step("dma_buf_export", "b2", size=4096), step("dma_buf_put", dmabuf="b2")))), "")
    >>> r = search(put, ["REF-USE-AFTER-RELEASE", "REF-PUT-UNOWNED"])
    >>> r.verdict, [(c.rule, c.schedule) for c in r.counterexamples]
    ('violated', [('REF-USE-AFTER-RELEASE', ('exporter', 'user', 'exporter'))])
    >>> r.notes[0]
    'independent groups of actors: exporter user | other'
    """
    secs = DEFAULT_TIMEOUT if timeout is None else timeout
    rseed = 0 if seed is None else seed
    start = time.perf_counter()
    model = model or Model(config, profile)
    bound = config.depth if depth is None else depth
    result = Exploration("bmc", config.name, model.profile.name, bound, seed=rseed, timeout=secs)
    rows = model.initial().rows
    prints = footprints(model.config, model.profile, rows, recorded=model.recorded) if independent else None
    groups = _groups(model, prints) if prints is not None else [list(range(len(model.actors)))]
    found: dict[str, Counterexample] = {}
    calls = 0
    unknown: list[str] = []
    exhausted = True
    result.notes.append("independent groups of actors: " + " | ".join(
        " ".join(model.actor_name(i) for i in g) for g in groups))
    for g in groups:
        if reorder_only and len(g) < 2:
            continue
        if len(groups) == 1:
            sub, sub_model = config, model
        else:
            # the rows its steps may touch: the others stay as they are whatever it does
            assert prints is not None
            near = frozenset().union(*(t for (i, _), t in prints.touched.items() if i in g))
            sub = replace(config, actors=tuple(config.actors[i] for i in g), symmetric=())
            sub_model = Model(sub, model.profile, recorded=model.recorded,
                              initial_rows=tuple(r for r in rows if (r[0], r[1]) in near))
        todo = sorted(set(rules) - set(found))
        if not todo:
            break
        commute = _commute(model, prints, g) if prints is not None else None
        if reorder_only and commute is not None and _one_order(sub_model, commute):
            continue
        part = _search_group(sub, sub_model, todo, bound, secs, rseed, commute)
        calls += part.calls
        exhausted = exhausted and part.exhausted
        if part.unknown:
            unknown.append(part.unknown)
        for rule, cx in part.found.items():
            found.setdefault(rule, cx)
    result.counterexamples = sorted(found.values(), key=lambda c: (len(c.events), c.rule))
    result.depth_reached = bound
    result.elapsed = time.perf_counter() - start
    result.notes.append(f"solver calls: {calls}")
    if unknown:
        result.verdict = "unknown"
        result.notes.append(unknown[0] + (": rules not found by then are not ruled out" if found else
                                          ": nothing is proved"))
    elif found:
        result.verdict = "violated"
    else:
        result.verdict = "holds" if exhausted else "bounded"
    return result


def _groups(model: Model, prints: Footprints) -> list[list[int]]:
    """The model's actors in groups that share no row any step may write and that no ``after`` or ``spawns``
    ties: the order of steps of different groups does not matter."""
    n = len(model.actors)
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(x: int, y: int) -> None:
        parent[find(x)] = find(y)

    index = {a.name: i for i, a in enumerate(model.actors)}
    owner: dict[tuple[str, Value], int] = {}
    for i, pc in prints.touched:
        for row in prints.shared((i, pc)):
            if row in owner:
                union(i, owner[row])
            else:
                owner[row] = i
    for i, _pc, st in model.steps():
        for name, _ in st.after:
            union(i, index[name])
        for name in st.spawns:
            union(i, index[name])
    out: dict[int, list[int]] = {}
    for i in range(n):
        out.setdefault(find(i), []).append(i)
    return sorted(out.values())


@dataclass
class _Part:
    found: dict[str, Counterexample]
    calls: int
    unknown: str
    exhausted: bool


def _commute(model: Model, prints: Footprints, group: list[int]) -> Callable[[int, int, int, int], bool]:
    """Whether step ``p`` of the group's actor ``i`` and step ``q`` of its actor ``j`` commute: they share no row
    some step writes, and neither runs right after the other (``after``)."""
    names = [model.actor_name(a) for a in group]

    def commute(i: int, p: int, j: int, q: int) -> bool:
        a, b = group[i], group[j]
        if prints.shared((a, p)) & prints.shared((b, q)):
            return False
        sa, sb = model.actors[a].program[p], model.actors[b].program[q]
        if not isinstance(sa, Step) or not isinstance(sb, Step):
            return False  # an atomic group: left alone
        return (names[i], p) not in sb.after and (names[j], q) not in sa.after

    return commute


def _one_order(model: Model, commute: Callable[[int, int, int, int], bool]) -> bool:
    """Whether every two steps of different actors are ordered (``after``, program order) or commute: then all
    schedules are the program's own order up to swapping commuting steps, and each step sees what it saw there."""
    order = _Order.of(model)
    if order is None:
        return False
    steps = [(i, pc) for i, a in enumerate(model.actors) for pc in range(len(a.program))]
    return all(order.ordered(a, b) or commute(*a, *b) for a in steps for b in steps if a[0] < b[0])


def _search_group(config: Config, model: Model, rules: list[str], depth: int, secs: float, seed: int,
                  commute: Callable[[int, int, int, int], bool] | None = None) -> _Part:
    order = _Order.of(model)
    bound = depth if order is None else min(depth, order.total)
    u = _Unrolling(config, None, seed, secs, model, partial=True, commute=commute, depth=bound)
    for k in range(bound):
        u.add_transition(k)
    found: dict[str, Counterexample] = {}
    calls = 0
    unknown = ""
    while True:
        todo = {r: _or(*(b.get(r, False) for b in u.broken)) for r in rules if r not in found}
        todo = {r: v for r, v in todo.items() if _const_bool(v) is not False}
        if not todo:
            break
        q = z3.Bool(f"query.{len(found)}")
        u.solver.add(z3.Implies(q, _zb(_or(*todo.values()))))
        calls += 1
        answer = u.solver.check(q)
        if answer == z3.unknown:
            unknown = f"the solver gave up ({u.solver.reason_unknown()})"
            break
        if answer == z3.unsat:
            break
        m = u.solver.model()

        def true(b: BoolT, m: Any = m) -> bool:
            return bool(z3.is_true(m.eval(_zb(b), model_completion=True)))

        n = sum(1 for a in u.active if true(a))
        sched = [m.eval(c, model_completion=True).as_long() for c in u.choices[:n]]
        hit = [r for r in todo if n > 0 and true(u.broken[n - 1].get(r, False))]
        if not hit:
            raise EncodingError(f"schedule {sched}: the solver's violation is not at its last move")
        for rule in hit:
            found[rule] = _counterexample(u, m, _Found(rule, n, sched, False), seed)
    exhausted = u.order is not None and bound >= u.order.total
    return _Part(found, calls, unknown, exhausted)


def shortest_depths(result: Exploration) -> dict[str, int]:
    """The shortest depth (moves) per rule, as ``check`` noted it."""
    for note in result.notes:
        if note.startswith("shortest depth (moves) per rule: "):
            items = note.split(": ", 1)[1].split(", ")
            return {r: int(d) for r, d in (item.rsplit(" ", 1) for item in items)}
    return {}


def _counterexample(u: _Unrolling, m: Any, f: _Found, seed: int) -> Counterexample:
    """Replay the solver's schedule through the model, checking it against the solver's states."""
    model = u.model
    state = model.initial()
    path: list[Transition] = []
    _compare(u, m, 0, state)
    for k, actor in enumerate(f.schedule):
        moves = [t for t in model.moves(state) if t.actor == actor]
        if not moves:
            raise EncodingError(f"schedule {f.schedule}: {model.actor_name(actor)} cannot move at step {k}")
        t = moves[0]
        claimed = {r for r, b in u.broken[k].items() if z3.is_true(m.eval(_zb(b), model_completion=True))}
        if claimed != set(t.broken):
            raise EncodingError(f"schedule {f.schedule}, move {k}: the encoding breaks {sorted(claimed)}, the "
                                f"model {sorted(t.broken)}")
        path.append(t)
        state = t.target
        if k + 1 < len(f.schedule) or not t.broken:
            _compare(u, m, k + 1, state)
    if f.rule == LOCK_DEADLOCK and f.at_end:
        if not model.deadlocked(state):
            raise EncodingError(f"schedule {f.schedule} does not deadlock when replayed")
        return build(model, path, LOCK_DEADLOCK, "bmc", end=state, seed=seed)
    if f.at_end:
        if not model.finished(state) or f.rule not in model.end(state):
            raise EncodingError(f"schedule {f.schedule} does not break {f.rule} at its end when replayed")
        return build(model, path, f.rule, "bmc", end=state, seed=seed)
    if not path or f.rule not in path[-1].broken:
        raise EncodingError(f"schedule {f.schedule} does not break {f.rule} when replayed")
    return build(model, path, f.rule, "bmc", seed=seed)


def _compare(u: _Unrolling, m: Any, k: int, state: State) -> None:
    fr = u.frames[k]
    pcs = tuple(p if isinstance(p, int) else m.eval(p, model_completion=True).as_long() for p in fr.pcs)
    rows = []
    for t, keys in u.lay.keys.items():
        for n, key in enumerate(keys):
            if not z3.is_true(m.eval(_zb(fr.vars[(t, n, "")]), model_completion=True)):
                continue
            vals = tuple(u.lay.decode(t, f, m.eval(_zb(fr.vars[(t, n, f)]), model_completion=True))
                         for f in _FIELDS[t])
            rows.append((t, key, vals))
    if pcs != state.pcs or {(t, _vkey(k)): v for t, k, v in rows} != {(t, _vkey(k)): v for t, k, v in state.rows}:
        raise EncodingError(f"after {k} moves the encoding has pcs {pcs} and rows {rows}, the model {state.pcs} "
                            f"and {state.rows}")


def exit_status(verdict: str) -> int:
    """What ``dmaspec explore`` exits with for a verdict (as ``Exploration.exit_status``)."""
    return Exploration("bmc", "", "", 0, verdict=verdict).exit_status


__all__ = ["DEFAULT_TIMEOUT", "EncodingError", "check", "exit_status", "search", "shortest_depths"]
