"""Eager consistency checks of the spec: run at import and by ``dmaspec spec-lint``.

It checks what would otherwise fail late or silently: duplicate rule IDs,
rules without a source, statements naming unknown rules, tables, fields,
procedures or arguments, and rules no statement can ever produce.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterator

from spec.lang import (
    Action,
    Adopt,
    And,
    Arg,
    Arith,
    Call,
    Cmp,
    CmpOp,
    Cond,
    Create,
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
    Kind,
    Let,
    Local,
    Not,
    Or,
    Require,
    Ret,
    RowField,
    Spec,
    Stmt,
    Stop,
    Update,
)


def walk_expr(e: Expr) -> Iterator[Expr]:
    """Every sub-expression of ``e``, ``e`` first."""
    yield e
    if isinstance(e, (Not, IsErrno, IsErrPtr, IsNone, In)):
        yield from walk_expr(e.arg)
    elif isinstance(e, (And, Or)):
        for a in e.args:
            yield from walk_expr(a)
    elif isinstance(e, (Cmp, Arith)):
        yield from walk_expr(e.left)
        yield from walk_expr(e.right)
    elif isinstance(e, Key):
        for a in e.parts:
            yield from walk_expr(a)
    elif isinstance(e, (KeyPart, Get, Exists)):
        yield from walk_expr(e.key)
    elif isinstance(e, Cond):
        yield from walk_expr(e.test)
        yield from walk_expr(e.then)
        yield from walk_expr(e.orelse)


def walk_stmts(stmts: tuple[Stmt, ...]) -> Iterator[Stmt]:
    """Every statement, nested ones included, in order."""
    for s in stmts:
        yield s
        if isinstance(s, If):
            yield from walk_stmts(s.then)
            yield from walk_stmts(s.orelse)
        elif isinstance(s, ForEach):
            yield from walk_stmts(s.body)


def stmt_exprs(s: Stmt) -> Iterator[Expr]:
    """The expressions a statement holds directly."""
    if isinstance(s, Require):
        yield s.cond
        for o in s.objects:
            yield o.key
    elif isinstance(s, Let):
        yield s.value
    elif isinstance(s, (Create, Adopt)):
        yield s.key
        for _, v in s.values:
            yield v
    elif isinstance(s, Update):
        yield s.key
        yield s.value
    elif isinstance(s, If):
        yield s.test
    elif isinstance(s, ForEach):
        yield s.where
    elif isinstance(s, Call):
        for _, v in s.args:
            yield v
    elif isinstance(s, (Ignore, Stop)):
        yield s.when


def lint(spec: Spec) -> list[str]:
    problems: list[str] = []
    ids = [r.id for r in spec.rules]
    for rid in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"rule {rid} is defined twice")
    for r in spec.rules:
        if not r.sources:
            problems.append(f"rule {r.id} cites no source")
        if not r.message or "\n" in r.message:
            problems.append(f"rule {r.id} needs a one-line message")
    known_rules = set(ids)
    tables = {t.name: t for t in spec.tables}
    procs = {p.name: p for p in spec.procedures}
    used: set[str] = set()

    def check(where: str, stmts: tuple[Stmt, ...], params: set[str] | None) -> None:
        for s in walk_stmts(stmts):
            if isinstance(s, Require):
                used.add(s.rule)
                if s.rule not in known_rules:
                    problems.append(f"{where}: unknown rule {s.rule}")
                for o in s.objects:
                    if o.table not in tables:
                        problems.append(f"{where}: unknown table {o.table}")
            if isinstance(s, (Create, Adopt, Update, ForEach)) and s.table not in tables:
                problems.append(f"{where}: unknown table {s.table}")
            if isinstance(s, ForEach) and s.index is not None and s.table in tables:
                part = tables[s.table].index
                if part is None:
                    problems.append(f"{where}: ForEach over {s.table} by index, but the table has none")
                elif not any(isinstance(e, Cmp) and e.op is CmpOp.EQ and s.index in (e.left, e.right)
                             and KeyPart(RowField("key"), part) in (e.left, e.right) for e in walk_expr(s.where)):
                    problems.append(f"{where}: ForEach over {s.table} by index, but where does not select on it")
            if isinstance(s, Update) and s.table in tables and s.name not in tables[s.table].field_names():
                problems.append(f"{where}: table {s.table} has no field {s.name}")
            if isinstance(s, (Create, Adopt)) and s.table in tables:
                for name, _ in s.values:
                    if name not in tables[s.table].field_names():
                        problems.append(f"{where}: table {s.table} has no field {name}")
            if isinstance(s, Call):
                if s.name not in procs:
                    problems.append(f"{where}: unknown procedure {s.name}")
                elif {n for n, _ in s.args} != set(procs[s.name].params):
                    problems.append(f"{where}: call of {s.name} with arguments {sorted(n for n, _ in s.args)}")
            for e in stmt_exprs(s):
                for sub in walk_expr(e):
                    if isinstance(sub, (Get, Exists)) and sub.table not in tables:
                        problems.append(f"{where}: unknown table {sub.table}")
                    if isinstance(sub, Get) and sub.table in tables and sub.name not in tables[sub.table].field_names():
                        problems.append(f"{where}: table {sub.table} has no field {sub.name}")
                    if isinstance(sub, Arg) and params is not None and sub.name not in params:
                        problems.append(f"{where}: argument {sub.name} is not a parameter")

    rules_by_id = {r.id: r for r in spec.rules}
    for a in spec.actions:
        check(a.name, a.body, {p.name for p in a.params})
        for prm in a.params:
            if not prm.name.isidentifier() or keyword.iskeyword(prm.name):
                problems.append(f"{a.name}: parameter {prm.name!r} must be an identifier engines can generate from")
        callbacks = {b.op for b in spec.actions if b.kind is EventKind.CALLBACK}
        kernel_exprs = [("waits", a.waits)] if a.waits is not None else []
        kernel_exprs += [("outcome", e) for o in a.outcomes for e in (o.when, o.value)]
        kernel_exprs += [("invokes", cond) for _, cond in a.invokes]
        for what, expr in kernel_exprs:
            for sub in walk_expr(expr):
                if isinstance(sub, (Get, Exists)) and sub.table not in tables:
                    problems.append(f"{a.name}: {what} reads unknown table {sub.table}")
                elif isinstance(sub, Get) and sub.name not in tables[sub.table].field_names():
                    problems.append(f"{a.name}: {what} reads unknown field {sub.table}.{sub.name}")
                elif isinstance(sub, Arg) and sub.name not in {p.name for p in a.params}:
                    problems.append(f"{a.name}: {what} argument {sub.name} is not a parameter")
                elif isinstance(sub, (Ret, Local, RowField)):
                    problems.append(f"{a.name}: {what} may read only arguments, the event's fields and the state")
        for o in a.outcomes:
            if not o.label:
                problems.append(f"{a.name}: an outcome without a label")
            rule = rules_by_id.get(o.rule)
            if o.rule and (rule is None or rule.kind is not Kind.GUARANTEE):
                problems.append(f"{a.name}: outcome {o.label!r} names {o.rule}, which is not a guarantee rule")
        for cb, _ in a.invokes:
            if cb not in callbacks:
                problems.append(f"{a.name}: invokes {cb}, which is not a callback")
        if a.when is not None:
            for sub in walk_expr(a.when):
                if isinstance(sub, Arg) and sub.name not in {p.name for p in a.params}:
                    problems.append(f"{a.name}: selector argument {sub.name} is not a parameter")
    for p in spec.procedures:
        check(f"procedure {p.name}", p.body, set())
    check("end of trace", spec.at_end, set())
    by_analysis = {r.id for r in spec.rules if r.kind is Kind.ANALYSIS}
    for rid in sorted(known_rules - used - by_analysis - {"PROFILE-OP-UNAVAILABLE"}):
        problems.append(f"rule {rid} is never checked by any statement")
    for rid in sorted(used & by_analysis):
        problems.append(f"rule {rid} is an analysis's, but a statement checks it")
    for t in spec.tables:
        if "live" not in t.field_names():
            problems.append(f"table {t.name} lacks the live field")
    seen: dict[tuple[str, str], list[Action]] = {}
    for a in spec.actions:
        seen.setdefault((a.kind.value, a.op), []).append(a)
    for (kind, op), group in seen.items():
        if len({tuple(p.name for p in a.params) for a in group}) > 1 and not all(a.when is not None or a is group[-1]
                                                                                 for a in group):
            problems.append(f"{kind}:{op}: variants disagree on parameters")
    return problems
