"""The explicit-state explorer: breadth-first over a configuration's states.

Breadth-first, so every counterexample is a shortest schedule to its rule;
states are deduplicated (up to permutations of the configuration's
symmetric actors, when asked); each rule gets its first, shortest,
counterexample.  A state where every actor has finished is checked against
the spec's end-of-trace obligations; a state where some have not and none
can move is a deadlock (``LOCK-DEADLOCK``).  The reachable graph can be kept
as a ``networkx.DiGraph`` and written as DOT or GraphML with the
counterexamples' paths highlighted.

What it does not do: partial-order reduction, or exploring past an error
state (a path ends at its first broken rule).

Example
-------
>>> from checker.engines.explorer import explore
>>> from spec.configs import config
>>> r = explore(config("tiny"))
>>> r.verdict, r.states
('holds', 15)
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import networkx as nx  # type: ignore[import-untyped]

from checker.core import Counterexample, Exploration
from checker.counterexample import build
from checker.engines.model import ConfigError, Model, State, Transition, sorted_rows
from spec import SPEC
from spec.lang import (
    Config,
    Create,
    EventField,
    Exists,
    Get,
    Key,
    Profile,
    Stmt,
    Update,
    Value,
)
from spec.lint import stmt_exprs, walk_expr, walk_stmts
from spec.rules import LOCK_DEADLOCK

Progress = Callable[[int, int, int], None]
Row = tuple[str, Value, tuple[Value, ...]]  # (distinct states, depth, frontier size)


@dataclass
class _Search:
    model: Model
    canon: Callable[[State], State]
    parents: dict[State, tuple[State | None, Transition | None]] = field(default_factory=dict)
    reps: dict[State, State] = field(default_factory=dict)
    found: dict[str, Counterexample] = field(default_factory=dict)
    ran: set[tuple[int, int]] = field(default_factory=set)
    graph: nx.DiGraph | None = None

    paths: dict[str, list[State]] = field(default_factory=dict)

    def keys(self, key: State) -> list[State]:
        """The states from the initial one to ``key``."""
        out = [key]
        parent = self.parents[key][0]
        while parent is not None:
            out.append(parent)
            parent = self.parents[parent][0]
        out.reverse()
        return out

    def report(self, rule: str, key: State, last: Transition | None = None, end: State | None = None) -> None:
        if rule in self.found:
            return
        keys = self.keys(key)
        path = [t for k in keys[1:] for t in [self.parents[k][1]] if t is not None]
        self.found[rule] = build(self.model, path + ([last] if last else []), rule, "explicit", end=end)
        self.paths[rule] = keys


def explore(config: Config, *, profile: Profile | None = None, depth: int | None = None, symmetry: bool = True,
            keep_graph: bool = False, progress: Progress | None = None, max_states: int | None = None,
            machine: str = "compiled", model: Model | None = None, obligations: bool = True) -> Exploration:
    """Explore every interleaving of ``config`` up to ``depth`` moves (the configuration's own by default).

    ``machine`` runs each call on the compiled executor's handlers (fast) or on the reference interpreter.
    ``model`` is a model of ``config`` made already (a recorded trace's, for prediction); without
    ``obligations``, states where no actor can move are not judged (neither leaks nor deadlock: a window of a
    recording ends where the recording goes on).
    """
    model = model or Model(config, profile, machine=machine)
    bound = config.depth if depth is None else depth
    sym = Symmetry(model) if symmetry and config.symmetric else None
    canon: Callable[[State], State] = sym.canonical if sym else (lambda s: s)
    search = _Search(model, canon, graph=nx.DiGraph() if keep_graph else None)
    result = Exploration("explicit", config.name, model.profile.name, bound, symmetry=sym is not None)
    start = time.perf_counter()
    init = model.initial()
    key0 = canon(init)
    search.parents[key0] = (None, None)
    search.reps[key0] = init
    if search.graph is not None:
        search.graph.add_node(0, label=_label(model, init))
    ids: dict[State, int] = {key0: 0}
    frontier = [key0]
    level = 0
    deeper = False
    limited = False
    while frontier:
        nxt: list[State] = []
        for key in frontier:
            state = search.reps[key]
            moves = model.moves(state)
            if not moves:
                if not obligations:
                    continue
                if model.finished(state):
                    for rule in model.end(state):
                        search.report(rule, key, end=state)
                else:
                    search.report(LOCK_DEADLOCK, key, end=state)
                continue
            if level >= bound:
                deeper = True
                continue
            for t in moves:
                result.transitions += 1
                search.ran.add((t.actor, state.pcs[t.actor]))
                if t.broken:
                    for rule in dict.fromkeys(t.broken):
                        search.report(rule, key, last=t)
                    if search.graph is not None:
                        err = len(ids) + len(search.graph) + 1_000_000
                        search.graph.add_node(err, label=" ".join(dict.fromkeys(t.broken)), error=True)
                        search.graph.add_edge(ids[key], err, label=_edge(model, t))
                    continue
                k2 = canon(t.target)
                if k2 not in search.parents:
                    search.parents[k2] = (key, t)
                    search.reps[k2] = t.target
                    ids[k2] = len(ids)
                    if search.graph is not None:
                        search.graph.add_node(ids[k2], label=_label(model, t.target))
                    nxt.append(k2)
                if search.graph is not None:
                    search.graph.add_edge(ids[key], ids[k2], label=_edge(model, t))
            if max_states is not None and len(search.parents) >= max_states:
                limited = True
                break
        if limited:
            break
        if nxt:
            level += 1
        frontier = nxt
        if progress is not None:
            progress(len(search.parents), level, len(frontier))
    result.states = len(search.parents)
    result.depth_reached = level
    result.elapsed = time.perf_counter() - start
    result.counterexamples = sorted(search.found.values(), key=lambda c: (len(c.events), c.rule))
    result.unreached = [f"{model.actor_name(i)}: {st.op} (step {pc + 1})" for i, pc, st in model.steps()
                        if (i, pc) not in search.ran]
    if result.counterexamples:
        result.verdict = "violated"
    elif limited:
        result.verdict = "unknown"
        result.notes.append(f"stopped at the state limit ({max_states:,} states): nothing is proved")
    elif deeper:
        result.verdict = "bounded"
    else:
        result.verdict = "holds"
    if search.graph is not None:
        _highlight(search, ids)
        result.graph = search.graph
    return result


def _label(model: Model, state: State) -> str:
    return " ".join(f"{model.actor_name(i)}@{pc}" for i, pc in enumerate(state.pcs))


def _edge(model: Model, t: Transition) -> str:
    return f"{model.actor_name(t.actor)}: {t.events[-1]['op']}"


def _highlight(search: _Search, ids: dict[State, int]) -> None:
    """Mark the counterexamples' paths (edges and states) in the graph."""
    assert search.graph is not None
    for rule, keys in search.paths.items():
        nodes = [ids[k] for k in keys]
        for n in nodes:
            search.graph.nodes[n]["violation"] = True
            search.graph.nodes[n].setdefault("rules", rule)
        for a, b in zip(nodes, nodes[1:], strict=False):
            search.graph.edges[a, b]["violation"] = True


def write_dot(graph: nx.DiGraph, path: str) -> None:
    """The state graph as Graphviz DOT; counterexample paths in red, error states as boxes."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("digraph states {\n  node [shape=ellipse fontsize=9]; edge [fontsize=8];\n")
        for n, data in graph.nodes(data=True):
            attrs = [f'label="{_esc(str(data.get("label", n)))}"']
            if data.get("error"):
                attrs += ["shape=box", "color=red", "fontcolor=red"]
            elif data.get("violation"):
                attrs.append("color=red")
            f.write(f"  s{n} [{' '.join(attrs)}];\n")
        for a, b, data in graph.edges(data=True):
            attrs = [f'label="{_esc(str(data.get("label", "")))}"']
            if data.get("violation") or graph.nodes[b].get("error"):
                attrs += ["color=red", "penwidth=2"]
            f.write(f"  s{a} -> s{b} [{' '.join(attrs)}];\n")
        f.write("}\n")


def write_graphml(graph: nx.DiGraph, path: str) -> None:
    g = nx.DiGraph()
    for n, data in graph.nodes(data=True):
        g.add_node(n, **{k: (str(v) if not isinstance(v, bool) else v) for k, v in data.items()})
    for a, b, data in graph.edges(data=True):
        g.add_edge(a, b, **{k: (str(v) if not isinstance(v, bool) else v) for k, v in data.items()})
    nx.write_graphml(g, path)


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


# -- symmetry -------------------------------------------------------------------------------------------


def _tid_slots() -> tuple[frozenset[tuple[str, str]], frozenset[tuple[str, int | None]]]:
    """Where the spec stores thread ids: (table, field) values and (table, key part) positions (None: the key)."""
    fields: set[tuple[str, str]] = set()
    keys: set[tuple[str, int | None]] = set()
    tid = EventField("tid")

    def visit(stmts: tuple[Stmt, ...]) -> None:
        for s in walk_stmts(stmts):
            if isinstance(s, (Update,)) and s.value == tid:
                fields.add((s.table, s.name))
            if isinstance(s, Create):
                fields.update((s.table, n) for n, v in s.values if v == tid)
            if isinstance(s, (Update, Create)):
                _key(s.table, s.key)
            for e in stmt_exprs(s):
                for sub in walk_expr(e):
                    if isinstance(sub, (Get, Exists)):
                        _key(sub.table, sub.key)

    def _key(table: str, key: object) -> None:
        if key == tid:
            keys.add((table, None))
        elif isinstance(key, Key):
            keys.update((table, n) for n, part in enumerate(key.parts) if part == tid)

    for a in SPEC.actions:
        visit(a.body)
    for p in SPEC.procedures:
        visit(p.body)
    return frozenset(fields), frozenset(keys)


TID_FIELDS, TID_KEYS = _tid_slots()
_FIELD_NAMES = {t.name: t.field_names() for t in SPEC.tables}


class Symmetry:
    """Canonical states up to permuting each group of ``Config.symmetric`` actors.

    Two actors are interchangeable when they are threads of one process and
    their programs are the same once each one's name (in the handles it
    makes: ``att.imp1``) and thread id are swapped; the constructor checks
    that.  A state's canonical form is the least, over the group
    permutations, of its renamed forms.
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        index = {a.name: i for i, a in enumerate(model.actors)}
        perms: list[dict[int, int]] = []
        groups = []
        for group in model.config.symmetric:
            idx = [index[n] for n in group]
            if len({model.actors[i].pid for i in idx}) != 1:
                raise ConfigError(f"config {model.config.name}: symmetric actors {', '.join(group)} must be threads "
                                  "of one process")
            groups.append(idx)
        for combo in itertools.product(*[list(itertools.permutations(g)) for g in groups]):
            mapping: dict[int, int] = {}
            for g, perm in zip(groups, combo, strict=True):
                mapping.update(dict(zip(g, perm, strict=True)))
            perms.append(mapping)
        self._renames = [self._renaming(m) for m in perms if any(a != b for a, b in m.items())]
        self._memo: list[dict[Row, Row]] = [{} for _ in self._renames]
        for names, tids, mapping in self._renames:
            for a, b in mapping.items():
                mine = [self._rename_value(model.step_event(a, pc, None), names, tids)
                        for pc in range(len(model.actors[a].program)) if _is_step(model, a, pc)]
                theirs = [model.step_event(b, pc, None)
                          for pc in range(len(model.actors[b].program)) if _is_step(model, b, pc)]
                mine = [{**e, "tid": tids.get(e["tid"], e["tid"])} for e in mine
                        if isinstance(e, dict)]
                if mine != theirs:
                    raise ConfigError(f"config {model.config.name}: actors {model.actor_name(a)} and "
                                      f"{model.actor_name(b)} are declared symmetric but their programs differ "
                                      "beyond their names")

    def _renaming(self, mapping: dict[int, int]) -> tuple[dict[str, str], dict[int, int], dict[int, int]]:
        actors = self.model.actors
        names = {actors[a].name: actors[b].name for a, b in mapping.items()}
        tids = {actors[a].tid: actors[b].tid for a, b in mapping.items()}
        return names, tids, mapping

    def _rename_value(self, v: object, names: dict[str, str], tids: dict[int, int]) -> object:
        if isinstance(v, str):
            if "." in v:
                parts = v.split(".")
                return ".".join(names.get(p, p) for p in parts)
            return names.get(v, v)
        if isinstance(v, tuple):
            return tuple(self._rename_value(x, names, tids) for x in v)
        if isinstance(v, dict):
            return {k: self._rename_value(x, names, tids) for k, x in v.items()}
        return v

    def _rename_row(self, row: Row, names: dict[str, str], tids: dict[int, int]) -> Row:
        table, key, values = row
        key2 = self._rename_value(key, names, tids)
        if (table, None) in TID_KEYS and isinstance(key2, int):
            key2 = tids.get(key2, key2)
        elif isinstance(key2, tuple):
            key2 = tuple(tids.get(p, p) if (table, n) in TID_KEYS and isinstance(p, int) else p
                         for n, p in enumerate(key2))
        names_of = _FIELD_NAMES[table]
        vals = tuple(tids.get(v, v) if (table, names_of[n]) in TID_FIELDS and isinstance(v, int)
                     else self._rename_value(v, names, tids) for n, v in enumerate(values))
        return (table, key2, vals)  # type: ignore[return-value]

    def canonical(self, state: State) -> State:
        best = state
        for n, (names, tids, mapping) in enumerate(self._renames):
            pcs = list(state.pcs)
            for a, b in mapping.items():
                pcs[b] = state.pcs[a]
            memo = self._memo[n]  # rows recur across states: rename each once per permutation
            rows = []
            for row in state.rows:
                renamed = memo.get(row)
                if renamed is None:
                    renamed = memo[row] = self._rename_row(row, names, tids)
                rows.append(renamed)
            cand = State(tuple(pcs), sorted_rows(rows))  # the order Model gives its own states
            if _less(cand, best):
                best = cand
        return best


def _less(a: State, b: State) -> bool:
    if a.pcs != b.pcs:
        return a.pcs < b.pcs
    try:
        return a.rows < b.rows
    except TypeError:  # values of mixed types at one place
        return repr(a.rows) < repr(b.rows)


def _is_step(model: Model, i: int, pc: int) -> bool:
    from spec.lang import Step

    return isinstance(model.actors[i].program[pc], Step)


__all__ = ["Symmetry", "explore", "write_dot", "write_graphml"]
