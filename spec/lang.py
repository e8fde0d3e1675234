"""The small language the dma-buf spec is written in.

Everything an engine needs to know about a rule is a frozen dataclass that the
engine can walk: expressions (``Expr``), statements (``Stmt``), and the
declarations that hold them (``Table``, ``Param``, ``Action``, ``Rule``,
``Profile``).  There are no lambdas and no callbacks, so the interpreter, the
code generator, and later the z3 encoder and the explorer all read the same
data.

The model's state is a set of *tables*.  A table maps a key (a handle string,
an integer, or a tuple of those) to a *row* of named fields.  A row that is
present but no longer ``live`` is a tombstone: the object was released,
detached or unmapped, and a later use of the same handle is a use-after-free.
A key that is absent was never seen; reading a field of an absent row yields
the field's default.

What this module does not do: evaluate anything.  Semantics live in the
engines (``checker.engines.interpreter`` is the reference).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Union

Value = Union[int, str, bool, None, tuple["Value", ...]]


# --------------------------------------------------------------------------
# Expressions
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    """A literal value."""

    value: Value


@dataclass(frozen=True)
class Arg:
    """An argument of the current event, normalised by its ``Param`` type."""

    name: str


@dataclass(frozen=True)
class Ret:
    """The current event's return value (a handle, a number, or -errno)."""


@dataclass(frozen=True)
class EventField:
    """A top-level field of the current event: ``tid``, ``pid`` or ``ctx``."""

    name: str


@dataclass(frozen=True)
class Local:
    """A name bound by ``Let`` (or a procedure parameter)."""

    name: str


@dataclass(frozen=True)
class RowField:
    """A field of the row a ``ForEach`` is visiting (``key`` for its key)."""

    name: str


@dataclass(frozen=True)
class Key:
    """A composite key: the tuple of its parts' values."""

    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class KeyPart:
    """Part ``index`` of a composite key value."""

    key: Expr
    index: int


@dataclass(frozen=True)
class Get:
    """Field ``name`` of the row at ``key`` in ``table`` (default if absent)."""

    table: str
    key: Expr
    name: str


@dataclass(frozen=True)
class Exists:
    """Whether ``table`` has a row (live or tombstone) at ``key``."""

    table: str
    key: Expr


@dataclass(frozen=True)
class Not:
    arg: Expr


@dataclass(frozen=True)
class And:
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    args: tuple[Expr, ...]


class CmpOp(Enum):
    EQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


@dataclass(frozen=True)
class Cmp:
    op: CmpOp
    left: Expr
    right: Expr


class ArithOp(Enum):
    ADD = "+"
    SUB = "-"
    BITAND = "&"
    BITOR = "|"
    FLOORDIV = "//"


@dataclass(frozen=True)
class Arith:
    op: ArithOp
    left: Expr
    right: Expr


@dataclass(frozen=True)
class IsErrno:
    """True when the value is an int below zero (a call that failed)."""

    arg: Expr


@dataclass(frozen=True)
class IsErrPtr:
    """True when a handle string spells an ``ERR_PTR()`` value."""

    arg: Expr


@dataclass(frozen=True)
class In:
    """Membership of a value in a fixed set of constants."""

    arg: Expr
    values: frozenset[Value]


@dataclass(frozen=True)
class IsNone:
    """True when the value is absent (an optional argument not given)."""

    arg: Expr


@dataclass(frozen=True)
class Cond:
    """``then`` if ``test`` else ``orelse``."""

    test: Expr
    then: Expr
    orelse: Expr


Expr = Union[
    Const, Arg, Ret, EventField, Local, RowField, Key, KeyPart, Get, Exists, Not, And,
    Or, Cmp, Arith, IsErrno, IsErrPtr, In, IsNone, Cond,
]


# --------------------------------------------------------------------------
# Statements
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjRef:
    """An object a finding is about: a table and the expression of its key."""

    table: str
    key: Expr


@dataclass(frozen=True)
class Require:
    """The rule ``rule`` holds when ``cond`` is true; otherwise a finding.

    ``objects`` are the objects the finding is about: their state is shown,
    and when any of them is uncertain (adopted mid-trace, or alive across a
    gap in the trace) the finding is withheld rather than reported.
    ``abort`` stops the rest of the action after a violation (used when the
    action's effects make no sense on a broken state, such as a use after
    release).
    """

    rule: str
    cond: Expr
    objects: tuple[ObjRef, ...] = ()
    abort: bool = False


@dataclass(frozen=True)
class Let:
    name: str
    value: Expr


@dataclass(frozen=True)
class Create:
    """Make a new live row at ``key`` (replacing a tombstone)."""

    table: str
    key: Expr
    values: tuple[tuple[str, Expr], ...] = ()


@dataclass(frozen=True)
class Adopt:
    """Create an uncertain live row at ``key`` if none is present.

    Used for objects that existed before the trace started: the model gives
    them default state, and any finding about them is withheld.
    """

    table: str
    key: Expr
    values: tuple[tuple[str, Expr], ...] = ()


@dataclass(frozen=True)
class Update:
    """Set ``name`` of the row at ``key``; an absent row is created first, with defaults."""

    table: str
    key: Expr
    name: str
    value: Expr


@dataclass(frozen=True)
class If:
    test: Expr
    then: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...] = ()


@dataclass(frozen=True)
class ForEach:
    """Run ``body`` for each present row of ``table`` for which ``where`` holds.

    Rows are visited in insertion order over a snapshot of the keys taken
    before the body runs.  With ``index``, only rows whose key part
    ``Table.index`` equals its value are visited (the same rows, in the same
    order, as ``where`` alone would give when ``where`` implies it; engines
    may look them up instead of scanning).
    """

    table: str
    where: Expr
    body: tuple[Stmt, ...]
    index: Expr | None = None


@dataclass(frozen=True)
class Call:
    """Run the procedure ``name`` with its parameters bound to ``args``."""

    name: str
    args: tuple[tuple[str, Expr], ...]


@dataclass(frozen=True)
class Ignore:
    """Stop the action, counting the event as not about dma-buf (``reason``)."""

    when: Expr
    reason: str


@dataclass(frozen=True)
class Stop:
    """Stop the action here (no finding, no count)."""

    when: Expr


@dataclass(frozen=True)
class Bump:
    """Advance the gap epoch: every row alive now becomes uncertain."""


Stmt = Union[Require, Let, Create, Adopt, Update, If, ForEach, Call, Ignore, Stop, Bump]


# --------------------------------------------------------------------------
# Declarations
# --------------------------------------------------------------------------


Version = tuple[int, int]


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"


class Who(Enum):
    IMPORTER = "importer"
    EXPORTER = "exporter"
    USERSPACE = "userspace"
    CALLER = "any caller"
    CORE = "core"
    SPEC = "the spec"  # the spec disagrees with a real kernel: the spec is at fault


class Kind(Enum):
    """What a rule constrains."""

    GUARD = "guard"  # the caller's obligation at a call
    GUARANTEE = "guarantee"  # what the dma-buf core promises (conformance)
    OBLIGATION = "obligation"  # owed by the end of the trace or at exit
    ANALYSIS = "analysis"  # decided over the whole trace by an analysis in checker.analysis, not per event


@dataclass(frozen=True)
class Source:
    """Where a rule comes from: a kernel file and function, or a seed document."""

    path: str
    symbol: str = ""
    note: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: {self.symbol}" if self.symbol else self.path
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class Rule:
    id: str
    message: str
    severity: Severity
    who: Who
    kind: Kind
    sources: tuple[Source, ...]
    since: Version = (3, 3)
    until: Version | None = None  # first version where it no longer holds
    features: frozenset[str] = frozenset()  # all needed by the profile
    catalog: str = ""  # the RULES.md entry it refines
    explain: str = ""  # a longer note for `dmaspec rules`


class ParamType(Enum):
    HANDLE = "handle"  # an opaque object id (a pointer as a string)
    INT = "int"
    STR = "str"
    DIRECTION = "direction"  # enum dma_data_direction, by name or number
    IOCTL = "ioctl"  # an ioctl command, by name or number
    WHENCE = "whence"  # SEEK_SET/SEEK_CUR/SEEK_END, by name or number
    ACCESS = "access"  # "read", "write" or "rw"
    FCNTL = "fcntl"  # an fcntl command, by name or number


@dataclass(frozen=True)
class Param:
    name: str
    type: ParamType
    optional: bool = False
    doc: str = ""


class EventKind(Enum):
    CALL = "call"  # a dma-buf, dma-resv or dma-fence kernel API call
    SYSCALL = "syscall"  # a userspace system call
    CALLBACK = "callback"  # a dma_buf_ops (or importer ops) member invoked
    ANNOTATION = "annotation"  # what the recorder saw: accesses, gaps, exit


class Returns(Enum):
    NOTHING = "nothing"  # void
    HANDLE = "handle"  # a handle, or -errno; required
    INT = "int"  # a number or -errno; may be absent
    NUMBER = "number"  # a number or -errno; required (an fd or a pid the model keys on)


@dataclass(frozen=True)
class Outcome:
    """A return value the kernel decides: when ``when`` holds on the state before the call, it returns ``value``.

    ``label`` says the case in a few words ("flags outside the valid mask");
    ``rule``, when set, is the guarantee rule whose promise this is
    (``CORE-SYNC-FLAGS``).  The explorers make calls return it; the lab's
    conformance check compares it with what a real kernel returned.
    """

    when: Expr
    value: Expr
    label: str
    rule: str = ""


@dataclass(frozen=True)
class Action:
    """One operation of the API, with the statements it runs.

    ``when`` selects among actions sharing ``(kind, op)`` (the ioctl
    commands); the first whose ``when`` holds runs.
    """

    op: str
    kind: EventKind
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    returns: Returns = Returns.NOTHING
    when: Expr | None = None
    since: Version = (3, 3)
    until: Version | None = None
    features: frozenset[str] = frozenset()
    excludes: frozenset[str] = frozenset()  # none of these may be in the profile
    sleeps: bool = False
    doc: str = ""
    source: Source | None = None
    # What the kernel does, beyond what a recorded call shows; read by the explorers, which make calls
    # rather than replay them.  ``waits``: the call sleeps, without returning, while this holds (a lock
    # another thread holds, a fence not yet signalled); it reads no ``Ret``.  ``outcomes``: the value the
    # core returns when a condition holds (the first that does), whatever the caller hoped for (-EDEADLK
    # from a ww_mutex, the cached vmap address).  ``invokes``: exporter callbacks (``CALLBACK`` ops) the
    # core calls before returning, each when its condition holds on the state before the call.
    waits: Expr | None = None
    outcomes: tuple[Outcome, ...] = ()
    invokes: tuple[tuple[str, Expr], ...] = ()

    @property
    def name(self) -> str:
        return f"{self.kind.value}:{self.op}" + (f"[{describe_when(self.when)}]" if self.when else "")


@dataclass(frozen=True)
class FieldDecl:
    name: str
    default: Value
    doc: str = ""


@dataclass(frozen=True)
class Table:
    """An object kind of the model.

    ``dead_rule`` is the rule broken when an action names a row of this table
    that is a tombstone (``live`` false).  ``rest`` (over ``RowField``) says
    when a row holds nothing a rule still needs (a released object, a lock
    not held): engines then may forget it, oldest first, past a bound, so
    memory does not grow with the trace; a forgotten row reads as never seen,
    which can only withhold findings, never make one.  ``index`` names the key
    part (the pid) that ``ForEach(index=...)`` selects on.
    """

    name: str
    fields: tuple[FieldDecl, ...]
    doc: str = ""
    dead_rule: str = ""
    rest: Expr | None = None
    index: int | None = None

    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def rest_fields(self) -> frozenset[str]:
        """The fields ``rest`` reads: an update of one of these (or of any, when it reads none) may bring a
        row to rest, so engines test it then, and only then, to agree on what they forget."""
        if self.rest is None:
            return frozenset()
        found: set[str] = set()
        todo: list[object] = [self.rest]
        while todo:
            e = todo.pop()
            if isinstance(e, RowField) and e.name != "key":
                found.add(e.name)
            elif hasattr(e, "__dataclass_fields__"):
                for name in e.__dataclass_fields__:
                    v = getattr(e, name)
                    todo.extend(v if isinstance(v, tuple) else [v])
        return frozenset(found) or frozenset(self.field_names())

    def default(self, name: str) -> Value:
        for f in self.fields:
            if f.name == name:
                return f.default
        raise KeyError(f"table {self.name} has no field {name!r}")


@dataclass(frozen=True)
class Procedure:
    name: str
    params: tuple[str, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Profile:
    name: str
    version: Version
    features: frozenset[str]
    description: str

    def admits(self, since: Version, until: Version | None, features: frozenset[str],
               excludes: frozenset[str] = frozenset()) -> bool:
        return (since <= self.version and (until is None or self.version < until)
                and features <= self.features and not (excludes & self.features))

    def admits_rule(self, rule: Rule) -> bool:
        return self.admits(rule.since, rule.until, rule.features)

    def admits_action(self, action: Action) -> bool:
        return self.admits(action.since, action.until, action.features, action.excludes)


@dataclass(frozen=True)
class Spec:
    tables: tuple[Table, ...]
    rules: tuple[Rule, ...]
    actions: tuple[Action, ...]
    procedures: tuple[Procedure, ...]
    at_end: tuple[Stmt, ...]
    profiles: tuple[Profile, ...]
    default_profile: str = field(default="latest")

    def table(self, name: str) -> Table:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def procedure(self, name: str) -> Procedure:
        for p in self.procedures:
            if p.name == name:
                return p
        raise KeyError(name)


# --------------------------------------------------------------------------
# Bounded configurations: the programs the explorers run
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One call an actor makes: a canonical event without its line.

    ``ret`` is what the call returns unless the core decides
    (``Action.outcomes``).  ``on`` jumps to a label of the actor's program
    when the call returns that value; ``label`` names the step.  ``spawns``
    starts actors that were waiting to be started (a thread or process this
    call creates, or hands the object to).  ``after`` orders the step after
    other actors' steps, each named by actor and instruction index (for
    straight-line programs: what a recorded trace shows one thread's call
    depends on, such as the call that made the handle it uses).
    """

    op: str
    args: tuple[tuple[str, Value], ...] = ()
    ret: Value = None
    kind: EventKind = EventKind.CALL
    on: tuple[tuple[Value, str], ...] = ()
    label: str = ""
    spawns: tuple[str, ...] = ()
    after: tuple[tuple[str, int], ...] = ()

    def event(self, tid: int, pid: int, ret: Value) -> dict[str, Value | dict[str, Value]]:
        """The canonical event this step is, made by thread ``tid`` of process ``pid``, returning ``ret``."""
        out: dict[str, Value | dict[str, Value]] = {"op": self.op}
        if self.kind is not EventKind.CALL:
            out["kind"] = self.kind.value
        out.update({"tid": tid, "pid": pid, "args": dict(self.args)})
        if ret is not None:
            out["ret"] = ret
        return out


@dataclass(frozen=True)
class Atomic:
    """Steps made as one: none runs until all can run without waiting (the RFC's "prepare multiple")."""

    steps: tuple[Step, ...]
    label: str = ""


@dataclass(frozen=True)
class Goto:
    """Continue at the step labelled ``label``."""

    label: str


Instr = Union[Step, Atomic, Goto]


@dataclass(frozen=True)
class Actor:
    """A thread that runs ``program`` from its first instruction to its last."""

    name: str
    tid: int
    pid: int
    program: tuple[Instr, ...]
    role: str = ""  # importer, exporter, userspace
    started: bool = True  # False: it waits for a step that ``spawns`` it


@dataclass(frozen=True)
class Config:
    """A bounded configuration: the actors, the kernel profile, the default depth.

    ``symmetric`` lists groups of actors whose programs are the same up to
    renaming their own handles (the names they make contain the actor's
    name, and nothing else does): the explorer treats states that differ
    only by permuting such actors as one.
    """

    name: str
    profile: str
    actors: tuple[Actor, ...]
    description: str
    depth: int = 12
    symmetric: tuple[tuple[str, ...], ...] = ()
    sources: tuple[Source, ...] = ()


@dataclass(frozen=True)
class Scenario:
    """A design question the seeds argue about, as a configuration with the answer it must give.

    ``expect`` is the rule a counterexample must break (``LOCK-DEADLOCK`` for
    a deadlock), or ``""`` when no interleaving up to ``config.depth`` may
    break any.
    """

    name: str
    config: Config
    expect: str
    doc: str
    sources: tuple[Source, ...] = ()


def step(op: str, ret: Value = None, *, kind: EventKind = EventKind.CALL, on: dict[Value, str] | None = None,
         label: str = "", spawns: tuple[str, ...] = (), **args: Value) -> Step:
    """A ``Step`` with keyword arguments: ``step("dma_buf_put", dmabuf="b1")``."""
    return Step(op, tuple(args.items()), ret, kind, tuple((on or {}).items()), label, spawns)


def describe_when(expr: Expr | None) -> str:
    """A short text for an action selector (``cmd == DMA_BUF_IOCTL_SYNC``)."""
    if expr is None:
        return ""
    if isinstance(expr, Cmp) and isinstance(expr.left, Arg) and isinstance(expr.right, Const):
        return f"{expr.left.name}={expr.right.value}"
    if isinstance(expr, In) and isinstance(expr.arg, Arg):
        return f"{expr.arg.name} in {sorted(str(v) for v in expr.values)}"
    return repr(expr)


# --------------------------------------------------------------------------
# Constructors that keep the spec readable
# --------------------------------------------------------------------------


def c(value: Value) -> Const:
    return Const(value)


def eq(a: Expr, b: Expr | Value) -> Cmp:
    return Cmp(CmpOp.EQ, a, _lift(b))


def ne(a: Expr, b: Expr | Value) -> Cmp:
    return Cmp(CmpOp.NE, a, _lift(b))


def lt(a: Expr, b: Expr | Value) -> Cmp:
    return Cmp(CmpOp.LT, a, _lift(b))


def le(a: Expr, b: Expr | Value) -> Cmp:
    return Cmp(CmpOp.LE, a, _lift(b))


def gt(a: Expr, b: Expr | Value) -> Cmp:
    return Cmp(CmpOp.GT, a, _lift(b))


def ge(a: Expr, b: Expr | Value) -> Cmp:
    return Cmp(CmpOp.GE, a, _lift(b))


def add(a: Expr, b: Expr | Value) -> Arith:
    return Arith(ArithOp.ADD, a, _lift(b))


def sub(a: Expr, b: Expr | Value) -> Arith:
    return Arith(ArithOp.SUB, a, _lift(b))


def band(a: Expr, b: Expr | Value) -> Arith:
    return Arith(ArithOp.BITAND, a, _lift(b))


def all_of(*args: Expr) -> And:
    return And(tuple(args))


def any_of(*args: Expr) -> Or:
    return Or(tuple(args))


def one_of(a: Expr, *values: Value) -> In:
    return In(a, frozenset(values))


def ok() -> Not:
    """The call succeeded: its return value is not a negative errno."""
    return Not(IsErrno(Ret()))


def failed() -> IsErrno:
    return IsErrno(Ret())


def inc(table: str, key: Expr, name: str, by: int = 1) -> Update:
    return Update(table, key, name, add(Get(table, key, name), by))


def dec(table: str, key: Expr, name: str, by: int = 1) -> Update:
    return Update(table, key, name, sub(Get(table, key, name), by))


def live(table: str, key: Expr) -> Get:
    return Get(table, key, "live")


def obj(table: str, key: Expr) -> ObjRef:
    return ObjRef(table, key)


TID = EventField("tid")
PID = EventField("pid")
CTX = EventField("ctx")


def _lift(v: Expr | Value) -> Expr:
    if isinstance(v, (int, str, bool, tuple)) or v is None:
        return Const(v)
    return v
