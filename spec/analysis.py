"""What each rule depends on, derived from the statements (no list kept by hand).

A rule reads some fields of some tables; an operation writes some.  If an
operation that writes what a rule reads is invisible to a trace (a recorder
that cannot see ``get_dma_buf``, which the kernel inlines), the rule's
verdicts on that trace cannot be trusted: the rule is *narrowed* and its
findings are withheld, and the report says why.

>>> sorted(narrowed_rules(frozenset({"get_dma_buf"})))[:3]
['ATT-DETACH-WHILE-MAPPED', 'ATT-DETACH-WHILE-PINNED', 'ATT-USE-AFTER-DETACH']
"""

from __future__ import annotations

from functools import cache

from spec import SPEC
from spec.lang import Adopt, Call, Create, Exists, Get, Let, Require, Stmt, Update
from spec.lint import stmt_exprs, walk_expr, walk_stmts

Field = tuple[str, str]


@cache
def _proc_writes(name: str) -> frozenset[Field]:
    return _writes(SPEC.procedure(name).body)


def _writes(stmts: tuple[Stmt, ...]) -> frozenset[Field]:
    out: set[Field] = set()
    for s in walk_stmts(stmts):
        if isinstance(s, Update):
            out.add((s.table, s.name))
        elif isinstance(s, (Create, Adopt)):
            out |= {(s.table, f) for f in SPEC.table(s.table).field_names()}
        elif isinstance(s, Call):
            out |= _proc_writes(s.name)
    return frozenset(out)


def _reads(req: Require, lets: list[Let]) -> set[Field]:
    out: set[Field] = {(o.table, "live") for o in req.objects}
    exprs = [req.cond] + [let.value for let in lets]
    for e in exprs:
        for sub in walk_expr(e):
            if isinstance(sub, Get):
                out.add((sub.table, sub.name))
            elif isinstance(sub, Exists):
                out.add((sub.table, "live"))
    return out


@cache
def rule_dependencies() -> dict[str, frozenset[str]]:
    """For each rule, the ops whose events change what the rule reads."""
    writers: dict[Field, set[str]] = {}
    for a in SPEC.actions:
        for f in _writes(a.body):
            writers.setdefault(f, set()).add(a.op)
    deps: dict[str, set[str]] = {r.id: set() for r in SPEC.rules}
    bodies = [a.body for a in SPEC.actions] + [p.body for p in SPEC.procedures] + [SPEC.at_end]
    for body in bodies:
        stmts = list(walk_stmts(body))
        lets = [s for s in stmts if isinstance(s, Let)]
        for s in stmts:
            if isinstance(s, Require):
                for f in _reads(s, lets):
                    deps[s.rule] |= writers.get(f, set())
    return {r: frozenset(ops) for r, ops in deps.items()}


def narrowed_rules(unobserved: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """Rules a trace that cannot see ``unobserved`` ops cannot decide, with the ops."""
    out: dict[str, tuple[str, ...]] = {}
    for rule, ops in rule_dependencies().items():
        missing = ops & unobserved
        if missing:
            out[rule] = tuple(sorted(missing))
    return out


__all__ = ["narrowed_rules", "rule_dependencies", "stmt_exprs"]
