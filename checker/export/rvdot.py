"""The life of one object kind as a deterministic automaton, in the ``.dot`` shape of the kernel's rvgen.

The kernel's runtime-verification generator (``tools/verification/rvgen``)
turns a ``digraph state_automaton`` into a deterministic-automaton monitor:
one node line ``{node [shape = ...] "name"};`` per state, an invisible
``__init_<state>`` node and its edge marking the initial state, final states
drawn ``doublecircle`` (others ``circle``), then one ``"from" -> "to" [ label =
"ev1\\nev2" ];`` line per pair of states, events joined by ``\\n``.

Nothing here is written per kind but the abstraction of a row into a state
name.  The events are the kernel API calls (``CALL`` actions of the profile)
whose statements create or update rows of the kind's table; the transitions
are found by running those calls through the reference interpreter: from a
representative history of each state (the first found), each event is tried
bare and under the buffer's reservation lock, and a try that breaks no rule
gives the edge to the state it leaves the object in.  One representative per
state makes the automaton deterministic by construction.  A history names one
object per table (``HANDLES``) and a correct use neither adopts an object it
did not make nor makes one again while it lives, so events that would need a
second attachment or mapping are not edges.  A state is final when the spec's end-of-trace obligations
owe nothing about the object there.

- ``attachment``: unattached, detached, or attached (static or ``dyn_``),
  with ``_mapped`` (maps > 0) and ``_pinned`` (pins > 0).
- ``buffer``: unexported, released, or exported, with ``_shared`` (kernel
  references beyond the exporter's), ``_attached``, ``_vmapped`` and ``_cpu``
  (an open CPU-access bracket).

Example
-------
>>> from checker.export.rvdot import automaton_dot
>>> dot = automaton_dot("attachment", "latest")
>>> dot.splitlines()[0]
'digraph state_automaton {'
>>> '"attached" -> "attached_mapped" [ label = "dma_buf_map_attachment\\\\ndma_buf_map_attachment_unlocked" ];' in dot
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from checker.core import InputError
from checker.engines.interpreter import Interpreter
from spec import SPEC
from spec.lang import (
    Action,
    Adopt,
    Call,
    Create,
    EventKind,
    Exists,
    Get,
    Profile,
    Ret,
    Returns,
    Stmt,
    Update,
    Value,
)
from spec.lint import stmt_exprs, walk_expr, walk_stmts
from spec.profiles import profile as find_profile

KINDS = ("buffer", "attachment")
EventDict = dict[str, Any]
_PROCS = {p.name: p for p in SPEC.procedures}
# the one object of each table a history names
HANDLES: dict[str, Value] = {"buffer": "b1", "attachment": "att.1", "mapping": "sgt.1"}
_ARGS: dict[str, Value] = {"dmabuf": "b1", "attach": "att.1", "sg_table": "sgt.1", "direction": "DMA_BIDIRECTIONAL",
                           "dev": "dev1", "exp_name": "exp", "size": 4096, "map": "vaddr.1", "importer_ops": "ops.1",
                           "fd": 3, "page_num": 0}
_EXPORT: EventDict = {"op": "dma_buf_export", "args": {"exp_name": "exp", "size": 4096}, "ret": "b1"}
_LOCK: EventDict = {"op": "dma_resv_lock", "args": {"obj": "b1"}, "ret": 0}
_UNLOCK: EventDict = {"op": "dma_resv_unlock", "args": {"obj": "b1"}}


def _attachment_state(row: dict[str, Value] | None) -> str:
    if row is None:
        return "unattached"
    if not row["live"]:
        return "detached"
    name = ("dyn_" if row["dynamic"] else "") + "attached"
    name += "_mapped" if _count(row, "maps") > 0 else ""
    return name + ("_pinned" if _count(row, "pins") > 0 else "")


def _buffer_state(row: dict[str, Value] | None) -> str:
    if row is None:
        return "unexported"
    if not row["live"]:
        return "released"
    name = "exported"
    if _count(row, "refs") - _count(row, "fds") - _count(row, "mmaps") > 1:
        name += "_shared"
    for fld, suffix in (("attachments", "_attached"), ("vmap_count", "_vmapped"), ("cpu_open", "_cpu")):
        if _count(row, fld) > 0:
            name += suffix
    return name


def _count(row: dict[str, Value], name: str) -> int:
    v = row[name]
    return v if isinstance(v, int) else 0


_ABSTRACT: dict[str, tuple[Callable[[dict[str, Value] | None], str], tuple[EventDict, ...]]] = {
    "attachment": (_attachment_state, (_EXPORT,)),
    "buffer": (_buffer_state, ()),
}


def _writes(stmts: tuple[Stmt, ...], table: str, seen: frozenset[str] = frozenset()) -> bool:
    for s in walk_stmts(stmts):
        if isinstance(s, (Create, Update, Adopt)) and s.table == table and not isinstance(s, Adopt):
            return True
        if isinstance(s, Call) and s.name not in seen and _writes(_PROCS[s.name].body, table, seen | {s.name}):
            return True
    return False


def _ret(action: Action) -> Value:
    """A return value for a successful call: the handle of the object it names by its return value."""
    if action.returns is Returns.NOTHING:
        return None
    if action.returns is Returns.HANDLE:
        for s in walk_stmts(action.body):
            if isinstance(s, Create) and isinstance(s.key, Ret) and s.table in HANDLES:
                return HANDLES[s.table]
            for e in stmt_exprs(s):
                for sub in walk_expr(e):
                    if isinstance(sub, (Get, Exists)) and isinstance(sub.key, Ret) and sub.table in HANDLES:
                        return HANDLES[sub.table]
        return "vaddr.1"
    return 0 if action.returns is Returns.INT else 3


def events(kind: str, prof: Profile) -> list[EventDict]:
    """The calls that change rows of ``kind``'s table, one event each, in op order."""
    out: dict[str, EventDict] = {}
    for a in SPEC.actions:
        if a.kind is not EventKind.CALL or a.when is not None or not prof.admits_action(a) or a.op in out:
            continue
        if not _writes(a.body, kind):
            continue
        if any(not p.optional and p.name not in _ARGS for p in a.params):
            continue
        args = {p.name: _ARGS[p.name] for p in a.params if p.name in _ARGS}
        ev: EventDict = {"op": a.op, "args": args}
        ret = _ret(a)
        if ret is not None:
            ev["ret"] = ret
        out[a.op] = ev
    return [out[k] for k in sorted(out)]


def _run(prof: Profile, history: list[EventDict]) -> tuple[Interpreter, bool]:
    """Replay ``history``; whether it is a correct use: no rule broken, no object used that the history did
    not make (adopted), none made again while alive."""
    it = Interpreter(prof, "rvdot")
    try:
        for n, ev in enumerate(history, 1):
            it.feed_dict({"tid": 1, **ev}, n)
    except InputError:
        return it, False
    adopted = any(r.epoch < 0 for rows in it.tables.values() for r in rows.values())
    clean = not it.result.findings and not sum(it.result.withheld.values()) and not adopted and not it.result.reused
    return it, clean


def automaton_dot(kind: str, profile: Profile | str | None = None) -> str:
    """The automaton of ``kind`` (``buffer`` or ``attachment``) under ``profile``, as rvgen's ``.dot``."""
    if kind not in _ABSTRACT:
        raise ValueError(f"unknown object kind {kind!r}: use one of {', '.join(KINDS)}")
    prof = find_profile(profile) if isinstance(profile, str) else profile or find_profile(SPEC.default_profile)
    abstract, prelude = _ABSTRACT[kind]
    key = HANDLES[kind]

    def state_of(it: Interpreter) -> str:
        row = it.tables[kind].get(key)
        return abstract(row.fields if row is not None else None)

    start = list(prelude)
    init = state_of(_run(prof, start)[0])
    reps: dict[str, list[EventDict]] = {init: start}
    edges: dict[tuple[str, str], list[str]] = {}
    todo = [init]
    calls = events(kind, prof)
    while todo:
        src = todo.pop(0)
        for ev in calls:
            for wrap in ((ev,), (_LOCK, ev, _UNLOCK)):
                history = reps[src] + list(wrap)
                it, clean = _run(prof, history)
                if not clean:
                    continue
                dst = state_of(it)
                edges.setdefault((src, dst), []).append(ev["op"])
                if dst not in reps:
                    reps[dst] = history
                    todo.append(dst)
                break
    def owed(history: list[EventDict]) -> set[str]:
        it = _run(prof, history)[0]
        return {f.rule for f in it.finish().findings}

    # final: the end of the trace owes nothing the initial state does not already owe (the prelude's buffer)
    base = owed(start)
    finals = {name for name, history in reps.items() if owed(history) <= base}
    return _dot(init, sorted(reps), finals, edges)


def _dot(init: str, states: list[str], finals: set[str], edges: dict[tuple[str, str], list[str]]) -> str:
    lines = ["digraph state_automaton {", "\tcenter = true;", '\tsize = "7,11";']
    lines.append(f'\t{{node [shape = plaintext, style=invis, label=""] "__init_{init}"}};')
    for s in states:
        lines.append(f'\t{{node [shape = {"doublecircle" if s in finals else "circle"}] "{s}"}};')
    lines.append(f'\t"__init_{init}" -> "{init}";')
    for (src, dst), ops in sorted(edges.items()):
        label = "\\n".join(sorted(set(ops)))
        lines.append(f'\t"{src}" -> "{dst}" [ label = "{label}" ];')
    lines += ["\t{ rank = min ;", f'\t\t"__init_{init}";', f'\t\t"{init}";', "\t}", "}"]
    return "\n".join(lines) + "\n"


__all__ = ["HANDLES", "KINDS", "automaton_dot", "events"]
