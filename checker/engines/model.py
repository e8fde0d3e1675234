"""The transition system of a bounded configuration, derived from the spec.

A configuration (``spec.configs``) gives each actor a program of calls.  The
model answers the three questions every explorer asks (Stateright's
``init_states / actions / next_state``):

- ``initial()``: every actor at its first call, no objects.
- ``moves(state)``: for each actor whose next call can return now (its
  action's ``waits`` does not hold), the events it makes (the exporter
  callbacks the core ``invokes``, then the call, returning what the core's
  ``outcomes`` say or else what the program expects) and the state after.
- ``end(state)`` and ``deadlock(state)``: what a state where every actor has
  finished owes (the spec's end-of-trace obligations), and whether a state
  where some have not is stuck.

Nothing about a rule is written here: each call runs through the reference
interpreter (``checker.engines.interpreter``), so the explorer, the replay
of its counterexamples and the trace checker cannot disagree on what a call
does.  What this module does not do: search (``checker.engines.explorer``),
or reduce by symmetry beyond offering ``canonical()``.

Example
-------
>>> from checker.engines.model import Model
>>> from spec.configs import config
>>> m = Model(config("tiny"))
>>> s = m.initial()
>>> [m.actor_name(t.actor) for t in m.moves(s)]
['exporter']
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from checker.core import Finding
from checker.engines.interpreter import Interpreter, Row, evaluate
from checker.sleeping import compiled_view, deadlock
from checker.trace import Event, select, validate
from spec import SPEC
from spec.lang import Action, Atomic, Config, EventKind, Goto, Instr, Profile, Step, Value
from spec.profiles import profile as find_profile
from spec.rules import LOCK_DEADLOCK

EventDict = dict[str, Any]
_FIELDS = {t.name: t.field_names() for t in SPEC.tables}
_CALLBACK_PARAMS = {a.op: {p.name for p in a.params} for a in SPEC.actions if a.kind is EventKind.CALLBACK}
Rows = tuple[tuple[str, Value, tuple[Value, ...]], ...]
NOT_STARTED = -1  # the pc of an actor no step has spawned yet


class ConfigError(Exception):
    """A configuration the model cannot run: a bad label, an unknown op, a use of an object never made."""


@dataclass(frozen=True)
class State:
    """The actors' program counters (``len(program)`` when finished) and every table row, frozen."""

    pcs: tuple[int, ...]
    rows: Rows


@dataclass(frozen=True)
class Transition:
    """One move: ``actor`` made ``events`` (callbacks, then its call) and the model went to ``target``.

    ``broken`` lists the rules the events broke, in order; a transition that
    breaks one ends the path (its target is an error state).
    """

    actor: int
    events: tuple[EventDict, ...]
    target: State
    broken: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Call:
    """A step, ready to run: validated once per return value it can have."""

    step: Step
    action: Action | None


def _sort_key(v: Value) -> str:
    return repr(v)


class Model:
    """A configuration's transition system under one kernel profile."""

    def __init__(self, config: Config, profile: Profile | None = None, *, machine: str = "compiled",
                 recorded: bool = False, initial_rows: Rows = ()) -> None:
        """``recorded``: the programs are a recorded trace's threads (``checker.analysis.predict``): their
        callbacks and return values are recorded too, so the core's ``invokes`` add nothing, an ``outcome``
        that contradicts the recorded return makes the move impossible in that state, and objects from
        before the recording (adopted) are allowed, their findings withheld.  ``initial_rows``: the state
        the recording's earlier events left."""
        self.config = config
        self.recorded = recorded
        self._initial_rows = initial_rows
        self.profile = profile or find_profile(config.profile)
        self.actors = config.actors
        self._programs: list[tuple[Instr, ...]] = [a.program for a in config.actors]
        self.labels: list[dict[str, int]] = [self._label_table(a.name, a.program) for a in config.actors]
        self._calls: dict[tuple[int, int, int], _Call] = {}
        self._events: dict[tuple[int, int, int, Value], Event] = {}
        self._callbacks: dict[tuple[int, int, int, str], tuple[EventDict, Event]] = {}
        self._it = Interpreter(self.profile, f"config {config.name}", tombstones=1 << 30)
        self._machine: _Machine = _compiled(self.profile) if machine == "compiled" else _Interpreted(self._it)
        self._index = {a.name: i for i, a in enumerate(config.actors)}
        if len(self._index) != len(config.actors):
            raise ConfigError(f"config {config.name}: two actors have the same name")
        self._check_ops()

    # -- the three questions -------------------------------------------------------------------------

    def initial(self) -> State:
        pcs = tuple(self.resolve(i, 0) if a.started else NOT_STARTED for i, a in enumerate(self.actors))
        return State(pcs, self._initial_rows)

    def moves(self, state: State) -> list[Transition]:
        """Every move an actor can make from ``state``, in actor order; none once a rule is broken."""
        out = []
        for i, pc in enumerate(state.pcs):
            if pc >= len(self._programs[i]) or pc == NOT_STARTED:
                continue
            t = self._move(state, i, pc)
            if t is not None:
                out.append(t)
        return out

    def finished(self, state: State) -> bool:
        return all(pc >= len(p) for pc, p in zip(state.pcs, self._programs, strict=True))

    def end(self, state: State) -> list[str]:
        """The end-of-trace obligations a finished state breaks (leaks), by rule."""
        it = self._load(state)
        findings_before = len(it.result.findings)
        it.finish()
        return [f.rule for f in it.result.findings[findings_before:]]

    def waiting(self, state: State) -> list[tuple[int, int, Step]]:
        """The actors that have started and not finished, each with the call it sleeps in (in a deadlock, all
        of them): ``(actor, n, step)``, ``n`` the step's place in an atomic group (the first one that sleeps
        in ``state``), else 0."""
        out = []
        view = None
        for i, pc in enumerate(state.pcs):
            if not NOT_STARTED < pc < len(self._programs[i]):
                continue
            instr = self._programs[i][pc]
            n = 0
            if isinstance(instr, Atomic):
                if view is None:
                    view = self._load(state)
                for k in range(len(instr.steps)):
                    action = self._call(i, pc, k).action
                    if action is not None and action.waits is not None and evaluate(
                            action.waits, self._event(i, pc, k, None), view):
                        n = k
                        break
            out.append((i, n, self._step(i, pc, n)))
        return out

    def deadlocked(self, state: State) -> bool:
        return not self.finished(state) and not self.moves(state)

    # -- what reports need -----------------------------------------------------------------------------

    def actor_name(self, i: int) -> str:
        return self.actors[i].name

    def deadlock_finding(self, state: State, line: int) -> Finding:
        """The ``LOCK-DEADLOCK`` finding of a stuck state: the objects the sleeping calls wait on."""
        waiting = self.waiting(state)
        if not waiting:
            raise ConfigError(f"config {self.config.name}: no actor can move and none has started that could: "
                              "a step that spawns them is never made")
        it = self._load(state)
        calls = [self._event(i, state.pcs[i], n, None) for i, n, _ in waiting]
        objects = deadlock(it, self.profile, calls, it.object_state)  # None: some wait on a step (``after``)
        i, _, st = waiting[0]
        return Finding(LOCK_DEADLOCK, line, st.op, self.actors[i].tid, objects or ())

    def step_event(self, i: int, pc: int, ret: Value) -> EventDict:
        actor = self.actors[i]
        return self._first_step(i, pc).event(actor.tid, actor.pid, ret)

    def steps(self) -> Iterator[tuple[int, int, Step]]:
        """Every step of every program: (actor, pc, step); an atomic group's steps share its pc."""
        for i, program in enumerate(self._programs):
            for pc, instr in enumerate(program):
                if isinstance(instr, Step):
                    yield i, pc, instr
                elif isinstance(instr, Atomic):
                    for s in instr.steps:
                        yield i, pc, s

    # -- moves ----------------------------------------------------------------------------------------------

    def _move(self, state: State, i: int, pc: int) -> Transition | None:
        instr = self._programs[i][pc]
        steps = instr.steps if isinstance(instr, Atomic) else (instr,)
        assert all(isinstance(s, Step) for s in steps)
        mach = self._machine
        mach.load(state.rows)
        it = mach.view
        events: list[EventDict] = []
        broken: list[str] = []
        ret: Value = None
        for n, st in enumerate(steps):
            assert isinstance(st, Step)
            for name, before in st.after:
                if not state.pcs[self._index[name]] > before:
                    return None  # what it depends on has not happened yet
            call = self._call(i, pc, n)
            probe = self._event(i, pc, n, None)
            action = call.action
            if action is not None and action.waits is not None and evaluate(action.waits, probe, it):
                return None  # it sleeps: no move (for a group, none of its steps runs)
            ret = st.ret
            if action is not None:
                for outcome in action.outcomes:
                    if evaluate(outcome.when, probe, it):
                        ret = evaluate(outcome.value, probe, it)
                        break
                if self.recorded:
                    if ret != st.ret:
                        return None  # the kernel would have returned something else: not this schedule
                    action = None  # its callbacks are recorded steps of their own
            if action is not None:
                for cb, cond in action.invokes:
                    if evaluate(cond, probe, it):
                        cb_raw, cb_event = self._callback(i, pc, n, cb)
                        events.append(cb_raw)
                        broken += self._check(mach.feed(cb_raw, cb_event), cb_raw)
            event = self._event(i, pc, n, ret)
            events.append(st.event(self.actors[i].tid, self.actors[i].pid, ret))
            broken += self._check(mach.feed(events[-1], event), events[-1])
            if broken:
                break
        nxt = pc + 1
        last = steps[-1]
        assert isinstance(last, Step)
        for value, label in last.on:
            if ret == value:
                nxt = self.labels[i][label]
                break
        pcs = list(state.pcs)
        pcs[i] = self.resolve(i, nxt)
        for st in steps:
            assert isinstance(st, Step)
            for name in st.spawns:
                j = self._index[name]
                if pcs[j] == NOT_STARTED:
                    pcs[j] = self.resolve(j, 0)
        return Transition(i, tuple(events), State(tuple(pcs), mach.dump()), tuple(broken))

    def _check(self, broken: list[str] | None, event: EventDict) -> list[str]:
        if broken is None and self.recorded:
            return []  # an object from before the recording: its findings are withheld
        if broken is None:
            raise ConfigError(f"config {self.config.name}: {event['op']} by thread {event['tid']} names an object no "
                              "step made; every object a program uses must be made by a step before it")
        return broken

    def _callback(self, i: int, pc: int, n: int, cb: str) -> tuple[EventDict, Event]:
        """The exporter callback ``cb`` the core invokes for step ``n`` at ``pc`` of actor ``i``."""
        key = (i, pc, n, cb)
        made = self._callbacks.get(key)
        if made is None:
            args = {k: v for k, v in self._step(i, pc, n).args if k in _CALLBACK_PARAMS[cb]}
            raw: EventDict = {"op": cb, "kind": EventKind.CALLBACK.value, "tid": self.actors[i].tid,
                              "pid": self.actors[i].pid, "args": args}
            made = self._callbacks[key] = (raw, validate(raw, self._it.file, 0))
        return dict(made[0]), made[1]

    # -- state <-> interpreter -----------------------------------------------------------------------------

    def _load(self, state: State) -> Interpreter:
        """The reference interpreter, holding ``state`` (for end obligations and what reports show)."""
        _load_interpreter(self._it, state.rows)
        return self._it

    # -- programs --------------------------------------------------------------------------------------------

    def _label_table(self, actor: str, program: tuple[Instr, ...]) -> dict[str, int]:
        labels: dict[str, int] = {}
        for pc, instr in enumerate(program):
            label = instr.label if isinstance(instr, (Step, Atomic)) else ""
            if label:
                if label in labels:
                    raise ConfigError(f"actor {actor}: label {label!r} is used twice")
                labels[label] = pc
        for instr in program:
            targets = [instr.label] if isinstance(instr, Goto) else [t for _, t in instr.on] if isinstance(
                instr, Step) else [t for s in instr.steps for _, t in s.on]
            for t in targets:
                if t not in labels:
                    raise ConfigError(f"actor {actor}: no step is labelled {t!r}")
        return labels

    def resolve(self, i: int, pc: int) -> int:
        """The pc of the next call at or after ``pc``, following gotos."""
        program = self._programs[i]
        for _ in range(len(program) + 1):
            if pc >= len(program):
                return len(program)
            instr = program[pc]
            if not isinstance(instr, Goto):
                return pc
            pc = self.labels[i][instr.label]
        raise ConfigError(f"actor {self.actors[i].name}: its gotos loop without making a call")

    def _first_step(self, i: int, pc: int) -> Step:
        instr = self._programs[i][pc]
        st = instr.steps[0] if isinstance(instr, Atomic) else instr
        assert isinstance(st, Step)
        return st

    def _step(self, i: int, pc: int, n: int) -> Step:
        instr = self._programs[i][pc]
        st = instr.steps[n] if isinstance(instr, Atomic) else instr
        assert isinstance(st, Step)
        return st

    def _call(self, i: int, pc: int, n: int) -> _Call:
        key = (i, pc, n)
        call = self._calls.get(key)
        if call is None:
            event = self._event(i, pc, n, None)
            action, available = select(event, self.profile)
            if not available:
                raise ConfigError(f"actor {self.actors[i].name}: {event.op} does not exist in the {self.profile.name} "
                                  "profile's kernel")
            call = self._calls[key] = _Call(self._step(i, pc, n), action)
        return call

    def _event(self, i: int, pc: int, n: int, ret: Value) -> Event:
        key = (i, pc, n, ret)
        event = self._events.get(key)
        if event is None:
            st = self._step(i, pc, n)
            try:
                event = validate(st.event(self.actors[i].tid, self.actors[i].pid, ret), self._it.file, 0)
            except Exception as e:  # an InputError: the program's own mistake
                raise ConfigError(f"actor {self.actors[i].name}, step {pc}: {e}") from None
            self._events[key] = event
        return event

    def _check_ops(self) -> None:
        for _, _, st in self.steps():
            for name, _ in st.after:
                if name not in self._index:
                    raise ConfigError(f"config {self.config.name}: {st.op} runs after a step of {name!r}, which is "
                                      "not an actor")
            for name in st.spawns:
                if name not in self._index or self.actors[self._index[name]].started:
                    raise ConfigError(f"config {self.config.name}: {st.op} spawns {name!r}, which is not an actor "
                                      "waiting to be started (started=False)")
        for i, pc, _ in self.steps():
            instr = self._programs[i][pc]
            for n in range(len(instr.steps) if isinstance(instr, Atomic) else 1):
                self._call(i, pc, n)


# -- the machines a move runs on: the reference interpreter, or the compiled executor's handlers --------------


def _load_interpreter(it: Interpreter, rows: Rows) -> None:
    tables: dict[str, dict[Value, Row]] = {t: {} for t in _FIELDS}
    for table, key, values in rows:
        tables[table][key] = Row(dict(zip(_FIELDS[table], values, strict=True)), 0, 0)
    it.tables = tables
    it.result.findings.clear()
    it.result.withheld.clear()


def sorted_rows(rows: list[tuple[str, Value, tuple[Value, ...]]]) -> Rows:
    try:
        rows.sort(key=lambda r: (r[0], r[1]))
    except TypeError:  # keys of mixed types in one table
        rows.sort(key=lambda r: (r[0], _sort_key(r[1])))
    return tuple(rows)


class _Machine:
    """Runs events on a loaded state: ``feed`` gives the rules broken, or None when an object was adopted."""

    view: Any  # what ``evaluate`` reads: ``.tables[name].get(key).fields`` and ``key in .tables[name]``

    def load(self, rows: Rows) -> None:
        raise NotImplementedError

    def feed(self, raw: EventDict, event: Event) -> list[str] | None:
        raise NotImplementedError

    def dump(self) -> Rows:
        raise NotImplementedError


class _Interpreted(_Machine):
    """The reference: every statement walked by the interpreter."""

    def __init__(self, it: Interpreter) -> None:
        self.view = self.it = Interpreter(it.profile, it.file, tombstones=1 << 30)

    def load(self, rows: Rows) -> None:
        _load_interpreter(self.it, rows)

    def feed(self, raw: EventDict, event: Event) -> list[str] | None:
        it = self.it
        before = len(it.result.findings)
        withheld = sum(it.result.withheld.values())
        it.feed(event)
        adopted = any(r.epoch < 0 for rows in it.tables.values() for r in rows.values())
        if adopted or sum(it.result.withheld.values()) != withheld:
            return None
        return [f.rule for f in it.result.findings[before:]]

    def dump(self) -> Rows:
        rows = []
        for table, content in self.it.tables.items():
            names = _FIELDS[table]
            for key, row in content.items():
                rows.append((table, key, tuple(row.fields[n] for n in names)))
        return sorted_rows(rows)


_MACHINES: dict[Profile, _Compiled] = {}


def _compiled(profile: Profile) -> _Compiled:
    """One compiled machine per profile: a move loads its whole state, so models can share it."""
    machine = _MACHINES.get(profile)
    if machine is None:
        machine = _MACHINES[profile] = _Compiled(profile)
    return machine


class _Compiled(_Machine):
    """The compiled executor's generated handlers (the fast path; held equal to the interpreter by tests)."""

    def __init__(self, profile: Profile) -> None:
        from checker.engines.runtime import CompiledExecutor

        self.ex = ex = CompiledExecutor(profile, "explore", tombstones=1 << 62)
        self._decode = ex.module.DECODER.decode
        self._structs: dict[int, Any] = {}
        self._keep: list[Event] = []  # the events whose ids key _structs
        self._width = {t: len(names) for t, names in _FIELDS.items()}
        self._indexed = {t.name: t.index for t in SPEC.tables if t.index is not None}
        self.view = compiled_view(ex.tables)

    def load(self, rows: Rows) -> None:
        ex = self.ex
        for t in ex.tables.values():
            if t:
                t.clear()
        for x in ex.index.values():
            if x:
                x.clear()
        for g in ex.retired.values():
            if g:
                g.clear()
        tables, index, indexed = ex.tables, ex.index, self._indexed
        for table, key, values in rows:
            tables[table][key] = [*values, 0, 0, 0, False]
            part = indexed.get(table)
            if part is not None:
                index[table].setdefault(key[part], {})[key] = None  # type: ignore[index]
        ex.result.findings.clear()
        ex.result.withheld.clear()

    def feed(self, raw: EventDict, event: Event) -> list[str] | None:
        struct = self._structs.get(id(event))
        if struct is None:  # events are cached by the model, so their ids are stable
            struct = self._structs[id(event)] = self._decode(orjson.dumps(raw))
            self._keep.append(event)
        result = self.ex.result
        before = len(result.findings)
        tables = self.ex.tables
        sizes = [len(t) for t in tables.values()]
        self.ex.handlers[struct.__class__](struct, 1)
        if result.withheld:
            return None
        for (table, rows), size in zip(tables.items(), sizes, strict=True):
            if len(rows) > size and any(r[self._width[table]] < 0 for r in rows.values()):
                return None  # adopted: an object no step made
        return [f.rule for f in result.findings[before:]]

    def dump(self) -> Rows:
        rows = []
        width = self._width
        for table, content in self.ex.tables.items():
            if content:
                n = width[table]
                rows += [(table, key, tuple(r[:n])) for key, r in content.items()]
        return sorted_rows(rows)


FIRST_LINE = 2  # a counterexample's trace has its header on line 1


def replay(profile: Profile, events: Iterable[EventDict], rows: Rows = ()) -> tuple[Interpreter, list[Finding]]:
    """Feed ``events`` to an interpreter holding ``rows`` (none: a fresh one), numbered by their line in the
    written trace; its findings."""
    it = Interpreter(profile, "counterexample")
    if rows:
        _load_interpreter(it, rows)
    for n, ev in enumerate(events, FIRST_LINE):
        it.feed(validate(ev, it.file, n))
    return it, list(it.result.findings)


__all__ = ["FIRST_LINE", "ConfigError", "Model", "State", "Transition", "replay"]
