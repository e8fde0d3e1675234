"""What each rule depends on, derived from the statements (no list kept by hand).

A rule reads fields of tables; operations write fields, and a write depends
on the fields its value, its key and the conditions guarding it read (a
buffer is released, ``live`` written, *because* ``refs`` reached zero).  The
closure of that flow gives, for each rule, every operation whose events can
change its verdict.  If a trace cannot see one of them (a recorder that
misses ``get_dma_buf``, which the kernel inlines), the rule is *narrowed*:
its findings on that trace are withheld, and the report says why.

Adopting an unknown object is not a write here: adopted objects are
uncertain, and findings about them are withheld anyway.

>>> "REF-USE-AFTER-RELEASE" in narrowed_rules(frozenset({"get_dma_buf"}))
True
>>> "SYNC-END-DIRECTION" in narrowed_rules(frozenset({"get_dma_buf"}))
False
"""

from __future__ import annotations

from functools import cache

from spec import SPEC
from spec.lang import (
    Call,
    Create,
    Exists,
    Expr,
    ForEach,
    Get,
    If,
    Ignore,
    Let,
    Local,
    Require,
    RowField,
    Stmt,
    Stop,
    Update,
)
from spec.lint import walk_expr

Field = tuple[str, str]


class _Flow:
    def __init__(self) -> None:
        self.edges: dict[Field, set[Field]] = {}
        self.writers: dict[Field, set[str]] = {}
        self.rule_reads: dict[str, set[Field]] = {r.id: set() for r in SPEC.rules}

    def reads(self, e: Expr, lets: dict[str, frozenset[Field]], table: str | None) -> set[Field]:
        out: set[Field] = set()
        for sub in walk_expr(e):
            if isinstance(sub, Get):
                out.add((sub.table, sub.name))
            elif isinstance(sub, Exists):
                out.add((sub.table, "live"))
            elif isinstance(sub, Local):
                out |= lets.get(sub.name, frozenset())
            elif isinstance(sub, RowField) and sub.name != "key" and table is not None:
                out.add((table, sub.name))
        return out

    def write(self, target: Field, sources: set[Field], op: str) -> None:
        self.edges.setdefault(target, set()).update(sources)
        self.writers.setdefault(target, set()).add(op)

    def run(self, stmts: tuple[Stmt, ...], op: str, guard: frozenset[Field], lets: dict[str, frozenset[Field]],
            table: str | None) -> None:
        for s in stmts:
            if isinstance(s, Let):
                lets[s.name] = frozenset(self.reads(s.value, lets, table)) | guard
            elif isinstance(s, Update):
                src = self.reads(s.value, lets, table) | self.reads(s.key, lets, table) | guard
                self.write((s.table, s.name), src, op)
            elif isinstance(s, Create):
                src = self.reads(s.key, lets, table) | guard
                for _, v in s.values:
                    src |= self.reads(v, lets, table)
                for f in SPEC.table(s.table).field_names():
                    self.write((s.table, f), src, op)
            elif isinstance(s, If):
                g = guard | self.reads(s.test, lets, table)
                self.run(s.then, op, g, dict(lets), table)
                self.run(s.orelse, op, g, dict(lets), table)
            elif isinstance(s, ForEach):
                g = guard | self.reads(s.where, lets, s.table) | {(s.table, "live")}
                self.run(s.body, op, g, dict(lets), s.table)
            elif isinstance(s, Call):
                proc = SPEC.procedure(s.name)
                params = {n: frozenset(self.reads(v, lets, table)) | guard for n, v in s.args}
                self.run(proc.body, op, guard, params, None)
            elif isinstance(s, Require):
                reads = self.reads(s.cond, lets, table) | guard
                for o in s.objects:
                    reads |= {(o.table, "live")} | self.reads(o.key, lets, table)
                self.rule_reads[s.rule] |= reads
            elif isinstance(s, (Ignore, Stop)):
                guard = guard | self.reads(s.when, lets, table)


@cache
def rule_dependencies() -> dict[str, frozenset[str]]:
    """For each rule, the ops whose events can change its verdict."""
    flow = _Flow()
    for a in SPEC.actions:
        flow.run(a.body, a.op, frozenset(), {}, None)
    flow.run(SPEC.at_end, "<end of trace>", frozenset(), {}, None)
    deps: dict[str, frozenset[str]] = {}
    for rule, reads in flow.rule_reads.items():
        seen = set(reads)
        todo = list(reads)
        while todo:
            for src in flow.edges.get(todo.pop(), ()):
                if src not in seen:
                    seen.add(src)
                    todo.append(src)
        deps[rule] = frozenset(op for f in seen for op in flow.writers.get(f, ()))
    return deps


def narrowed_rules(unobserved: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """Rules a trace that cannot see ``unobserved`` ops cannot decide, with the ops."""
    out: dict[str, tuple[str, ...]] = {}
    for rule, ops in rule_dependencies().items():
        missing = ops & unobserved
        if missing:
            out[rule] = tuple(sorted(missing))
    return out


__all__ = ["narrowed_rules", "rule_dependencies"]
