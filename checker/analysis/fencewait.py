"""The fence wait-for analysis: timelines that wait on each other, lockdep's way, read from one recorded trace.

A fence is signalled by whoever runs the job it stands for; a thread that
waits for a fence (``dma_fence_wait``, ``dma_fence_wait_timeout``) before it
signals one of its own makes its fence depend on the other.  The wait-for
graph follows that chain, *waiter -> fence -> the thread that signals it ->
what that thread waits for*, and its cycles are deadlocks: the fence
signalling annotation (``dma_fence_begin_signalling``, drivers/dma-buf/
dma-fence.c) forbids exactly this inside a signalling section, and
``Documentation/driver-api/dma-buf.rst`` ("Indefinite DMA Fences") explains
why a fence that waits on itself, however indirectly, never signals.

As lockdep keys locks by class, the graph's nodes are *timelines*: fence
contexts, named by the ``context`` of ``dma_fence_init`` ("all fences on the
same context are fully ordered", DOC: DMA fences overview).  Then:

* **edges** (``C -> D``: signalling C depends on D).  When thread T waits for
  a fence of timeline D and later signals a fence of timeline C, with no
  signal of C by T in between (the same job: since T's previous signal of C,
  or since the trace or the last gap began), the edge C -> D is added with its
  witness: the wait and the signal, in trace order.  T's latest such wait per
  timeline is kept, so the witness is the wait nearest the signal;
* **a cycle** C -> D -> ... -> C is a potential deadlock in another schedule
  (``FENCE-WAIT-CYCLE``), reported at the signal that closed it with one
  witness per edge, the closing edge last, like lockdep's dependency chain;
* **an actual deadlock** at the end of the trace (``FENCE-WAIT-DEADLOCK``):
  the header's ``source.waiting`` lists the calls threads sleep in.  A thread
  asleep in a fence wait is *stuck* when the fence is unsignalled and every
  thread that signals that fence's timeline in the trace is stuck the same
  way (and no interrupt ever signalled it); a cycle of stuck threads is
  reported after the last event, with, per link, the fence, its waiter, and
  the signaller with the line that shows it signals that timeline.  When
  every sleeping call is stuck, the check itself reports ``LOCK-DEADLOCK``
  (``checker.sleeping``); ``analyze(..., lock_deadlock=True)`` then leaves
  the same deadlock out (counted in ``exempt``), so it is reported once.

Who signals a fence: the thread that signalled it in the trace; for a fence
never signalled, the threads that signal its timeline elsewhere in the
trace; else nobody known, and no edge (``notes`` counts why).  A signal made
in interrupt context (event ``ctx`` ``hardirq`` or ``softirq``) is the
hardware's: its ``tid`` is whatever thread was interrupted, so it adds no
edge, and a timeline an interrupt ever signalled has a signaller that does
not sleep.

What is not an edge (each would be a false alarm for a correct driver):

=========================================  ========================================================
wait                                       why it adds no edge
=========================================  ========================================================
for a fence signalled before the waiting   it could not block: the wait began after the thread's
thread's previous event                    previous event (events are written when calls return)
for a fence of the waiter's own timeline   the timeline's fences are ordered; waiting for an earlier
                                           one of them is how a timeline is used (a self-edge)
``dma_fence_wait_timeout`` timeout 0       a poll: ``dma_fence_default_wait`` returns at once
``dma_fence_wait_timeout`` without its     it may have been a poll: the ``dma_fence_wait_end``
timeout, returned before the signal        tracepoint records neither timeout nor return value
for a fence the trace never initialised,   its timeline and whether it was already signalled are
or one from before a ``lost_events`` gap   unknown: never guess
a signal in interrupt context              the interrupted thread did not signal it
=========================================  ========================================================

A wait that timed out (``ret`` 0), was interrupted (``-ERESTARTSYS``) or
failed is still an edge, as in lockdep's view (``__dma_fence_might_wait`` is
annotated before any of that is known): the thread waited, and its signal
came after; a cycle of bounded waits stalls every job for its timeout and
then signals fences whose work never ran.  A wait inside a signalling
section is an edge like any other here, and an inversion of the kernel's
primed order for the lock-order analysis (``LOCK-ORDER-INVERSION``).  The
sections do not delimit jobs: a section lies within the span from the
thread's previous signal of a timeline to its next, so its waits are in that
span already, and a wait made before the section still delays the signal
(program order).  Waits that never returned are not edges (they have no
signal after them): they are the sleepers of the end-of-trace check.  A
``lost_events`` gap forgets every fence and every thread's pending waits (a
missed edge, never a false one); the edges found before it stay.  When the
header lists a signal op as ``unobserved``, a fence may have been signalled
unseen, so both rules are narrowed (undecided).

Memory: the graph (one node per timeline, one edge per ordered pair, each
keeping its first witness and at most ``WITNESSES_PER_EDGE - 1`` more from
other threads), at most ``MAX_FENCES`` fences (oldest forgotten first: a
later wait on one is unknown, no edge), and per thread its latest wait per
timeline (at most ``MAX_WAITS_PER_THREAD``) and its latest signal per
timeline.  Nothing else grows with the trace.

>>> from checker.trace import validate
>>> g = FenceWaitGraph("t.jsonl")
>>> for n, (tid, op, fence, ctx) in enumerate([
...         (1, "dma_fence_init", "a1", 1), (2, "dma_fence_init", "b1", 2), (2, "dma_fence_signal", "b1", 0),
...         (1, "dma_fence_wait", "b1", 0), (1, "dma_fence_signal", "a1", 0),   # timeline 1 waited for 2
...         (1, "dma_fence_init", "a2", 1), (2, "dma_fence_init", "b2", 2), (1, "dma_fence_signal", "a2", 0),
...         (2, "dma_fence_wait", "a2", 0), (2, "dma_fence_signal", "b2", 0)], 1):  # and 2 for 1
...     args = {"fence": fence, "context": ctx, "seqno": int(fence[1])} if op == "dma_fence_init" else {"fence": fence}
...     g.feed(validate({"op": op, "tid": tid, "args": args, "ret": 0}, "t.jsonl", n))
>>> sorted(g.graph.edges)
[('context 1', 'context 2'), ('context 2', 'context 1')]
>>> [(f.rule, f.line, f.related_lines) for f in g.findings()]
[('FENCE-WAIT-CYCLE', 10, (4, 5, 9))]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx  # type: ignore[import-untyped]

from checker.analysis.common import distinct_cycles, int_value, name_of, read_events
from checker.core import Finding, ObjectState, Result
from checker.sleeping import waiting_calls
from checker.trace import Event, Header
from spec import kernel as K
from spec import rules as R
from spec.lang import Value

# -- the rules (in spec/rules.py, like every rule) ----------------------------------------------

FENCE_WAIT_CYCLE = R.FENCE_WAIT_CYCLE
FENCE_WAIT_DEADLOCK = R.FENCE_WAIT_DEADLOCK

SIGNALS = frozenset(K.FENCE_SIGNALS)
WAITS = frozenset(K.FENCE_WAITS)
IRQ_CONTEXTS = frozenset({"hardirq", "softirq"})  # the event's ctx: the interrupted thread is not the signaller

WITNESSES_PER_EDGE = 4  # the first, and up to 3 from other threads
MAX_FENCES = 1 << 16  # fences remembered (oldest forgotten first)
MAX_WAITS_PER_THREAD = 64  # timelines a thread's pending waits are remembered for
MAX_CYCLE_LENGTH = 8
MAX_CYCLES = 1_000  # simple cycles examined per call of reports()
SMALL_COMPONENT = 16  # components up to this many timelines have all their short cycles searched


# -- records -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class FenceOp:
    """One event of a witness: a wait for, or a signal of, a fence; its line, thread, op, and the fence's timeline
    (graph node) and seqno."""

    line: int
    tid: int
    op: str
    fence: str
    timeline: str
    seqno: int | None


@dataclass(frozen=True)
class Dependency:
    """Why an edge C -> D exists: thread ``tid`` waited for a fence of D (``wait``) and then, with no signal of C
    by it in between, signalled a fence of C (``signal``)."""

    wait: FenceOp
    signal: FenceOp

    @property
    def tid(self) -> int:
        return self.signal.tid


@dataclass(frozen=True)
class Sleeper:
    """A link of an actual deadlock: ``tid`` sleeps (the header's ``source.waiting``) in ``op`` on ``fence``, which
    is unsignalled; ``signaller`` signals its timeline (its latest signal of it is at line ``evidence``) and is
    asleep too."""

    tid: int
    op: str
    fence: str
    timeline: str
    seqno: int | None
    init_line: int
    signaller: int
    evidence: int


@dataclass(frozen=True)
class FenceWaitReport:
    """A finding and why: for a cycle, one dependency per edge in the cycle's order (the closing one last); for a
    deadlock, one sleeper per link."""

    finding: Finding
    chain: tuple[Dependency, ...] = ()
    sleepers: tuple[Sleeper, ...] = ()


@dataclass
class FenceWaitResult:
    """What the analysis of one trace gives: reports, the wait-for graph, and what it could not use."""

    file: str
    profile: str
    events: int
    reports: list[FenceWaitReport]
    graph: Any  # networkx.DiGraph: nodes are timelines (attrs key, signallers, irq), edges carry "dependencies"
    exempt: Counter[str]  # findings not reported, by reason
    notes: Counter[str]  # waits and signals that made no edge, by reason
    gaps: list[int]
    result: Result  # the findings as a checker.core.Result, for the reporters

    @property
    def findings(self) -> list[Finding]:
        return [r.finding for r in self.reports]


@dataclass
class _Fence:
    timeline: str
    seqno: int | None
    init_line: int
    signal_line: int = 0


@dataclass
class _Thread:
    last_line: int = 0  # its previous event: a wait it makes began after this
    waits: dict[str, FenceOp] = field(default_factory=dict)  # timeline -> its latest wait that may have blocked
    signalled: dict[str, int] = field(default_factory=dict)  # timeline -> the line of its latest signal of it


# -- the graph ---------------------------------------------------------------------------------

class FenceWaitGraph:
    """Feed validated events in trace order; ``reports()`` (or ``findings()``) at any time."""

    def __init__(self, file: str, profile: str = "latest", unobserved: Iterable[str] = ()) -> None:
        self.file = file
        self.profile = profile
        self.graph: Any = nx.DiGraph()
        self.events = 0
        self.last_line = 0
        self.gaps: list[int] = []
        self.exempt: Counter[str] = Counter()
        self.notes: Counter[str] = Counter()
        self.narrowed = tuple(sorted(set(unobserved) & SIGNALS))
        self._fences: dict[str, _Fence] = {}
        self._threads: dict[int, _Thread] = {}

    # -- events --

    def feed(self, event: Event) -> None:
        self.events += 1
        self.last_line = event.line
        op, kind = event.op, event.kind.value
        if kind == "annotation" and op == "lost_events":
            self.gaps.append(event.line)
            self._fences.clear()
            self._threads.clear()
            return
        thread = self._threads.get(event.tid)
        if thread is None:
            thread = self._threads[event.tid] = _Thread()
        if kind == "call":
            if op == "dma_fence_init":
                self._init(event)
            elif op in SIGNALS:
                self._signal(event, thread)
            elif op in WAITS:
                self._wait(event, thread)
            elif op == "dma_fence_release":
                self._fences.pop(name_of(event.args.get("fence")), None)
        if event.ctx not in IRQ_CONTEXTS:  # an interrupt is not the interrupted thread's program order
            thread.last_line = event.line

    def _init(self, event: Event) -> None:
        fence = name_of(event.args.get("fence"))
        context = event.args.get("context")
        self._fences.pop(fence, None)
        if context is None or int_value(context) == 0:
            return  # context 0: the core's stub fence, always signalled
        self._fences[fence] = _Fence(f"context {context}", int_value(event.args.get("seqno")), event.line)
        if len(self._fences) > MAX_FENCES:
            del self._fences[next(iter(self._fences))]
        node = f"context {context}"
        if node not in self.graph:
            self.graph.add_node(node, key=context, signallers={}, irq=0)

    def _signal(self, event: Event, thread: _Thread) -> None:
        ret = int_value(event.ret)
        if ret is not None and ret < 0:
            return  # -EINVAL: it was signalled already; nothing happened
        fence = name_of(event.args.get("fence"))
        rec = self._fences.get(fence)
        if rec is None:
            self.notes["signals of fences the trace never initialised (timeline unknown)"] += 1
            return
        if rec.signal_line:
            return  # signalled twice: FENCE-SIGNAL-TWICE, the spec's
        rec.signal_line = event.line
        node = self.graph.nodes[rec.timeline]
        if event.ctx in IRQ_CONTEXTS:
            node["irq"] = event.line
            self.notes["signals in interrupt context (the hardware's, no thread's)"] += 1
            return
        node["signallers"][event.tid] = event.line
        signal = FenceOp(event.line, event.tid, event.op, fence, rec.timeline, rec.seqno)
        since = thread.signalled.get(rec.timeline, 0)
        for wait in thread.waits.values():
            if wait.line > since and wait.timeline != rec.timeline:
                self._add_edge(Dependency(wait, signal))
        thread.signalled[rec.timeline] = event.line

    def _wait(self, event: Event, thread: _Thread) -> None:
        if event.op == "dma_fence_wait_timeout" and int_value(event.args.get("timeout")) == 0:
            self.notes["polls (timeout 0): they never block"] += 1
            return
        fence = name_of(event.args.get("fence"))
        rec = self._fences.get(fence)
        if rec is None:
            self.notes["waits for fences the trace never initialised, or from before a gap"] += 1
            return
        if rec.signal_line and rec.signal_line < thread.last_line:
            self.notes["waits for fences signalled before the wait began"] += 1
            return
        if not rec.signal_line and event.op == "dma_fence_wait_timeout" and event.args.get("timeout") is None:
            self.notes["waits of unknown timeout that returned before the signal (a poll, or one that timed out)"] += 1
            return
        thread.waits.pop(rec.timeline, None)
        thread.waits[rec.timeline] = FenceOp(event.line, event.tid, event.op, fence, rec.timeline, rec.seqno)
        if len(thread.waits) > MAX_WAITS_PER_THREAD:
            del thread.waits[next(iter(thread.waits))]

    def _add_edge(self, dep: Dependency) -> None:
        source, target = dep.signal.timeline, dep.wait.timeline
        data = self.graph.get_edge_data(source, target)
        if data is None:
            self.graph.add_edge(source, target, dependencies=[dep])
            return
        deps: list[Dependency] = data["dependencies"]
        if len(deps) < WITNESSES_PER_EDGE and all(d.tid != dep.tid for d in deps):
            deps.append(dep)

    # -- results --

    def reports(self, waiting: Iterable[Event] = (), lock_deadlock: bool = False) -> list[FenceWaitReport]:
        """The cycles of the graph as it is, and the actual deadlocks among the ``waiting`` calls (the header's
        ``source.waiting``) after the last event, by line.  ``lock_deadlock``: the check reported
        ``LOCK-DEADLOCK`` for this trace, which is the same deadlock, so it is not reported again."""
        return self.judge(waiting, lock_deadlock)[0]

    def judge(self, waiting: Iterable[Event] = (), lock_deadlock: bool = False) -> tuple[list[FenceWaitReport],
                                                                                        Result]:
        """``reports()``, and the findings as a ``checker.core.Result`` (with what was narrowed and undecided)."""
        result = Result(self.file, self.profile, events=self.events, gaps=list(self.gaps))
        if self.narrowed:
            result.narrowed = {FENCE_WAIT_CYCLE: self.narrowed, FENCE_WAIT_DEADLOCK: self.narrowed}
        self.exempt = Counter()
        found: list[tuple[int, str, str, int, tuple[ObjectState, ...], tuple[Dependency, ...],
                          tuple[Sleeper, ...]]] = []
        for chain in self._cycles():
            closing = max(chain, key=lambda d: d.signal.line)
            start = (chain.index(closing) + 1) % len(chain)
            chain = chain[start:] + chain[:start]
            states = tuple(_edge_state(d, self.graph) for d in chain)
            found.append((closing.signal.line, FENCE_WAIT_CYCLE, closing.signal.op, closing.tid, states, chain, ()))
        for cycle in self._deadlocks(list(waiting)):
            if lock_deadlock:
                self.exempt["reported as LOCK-DEADLOCK"] += 1
                continue
            states = tuple(_sleeper_state(s, self.graph) for s in cycle)
            found.append((self.last_line + 1, FENCE_WAIT_DEADLOCK, cycle[0].op, cycle[0].tid, states, (), cycle))
        out = []
        for line, rule, op, tid, states, chain, sleepers in sorted(found, key=lambda x: (x[0], x[1])):
            before = len(result.findings)
            result.judge(rule, line, op, tid, states)
            if len(result.findings) > before:
                out.append(FenceWaitReport(result.findings[-1], chain, sleepers))
        return out, result

    def findings(self) -> list[Finding]:
        return [r.finding for r in self.reports()]

    def _cycles(self) -> Iterator[tuple[Dependency, ...]]:
        """One chain per cycle of the graph, each cycle once: for each edge u -> v (in the order the edges appeared)
        the shortest way back v ->* u, and in small components every simple cycle up to MAX_CYCLE_LENGTH; at most
        MAX_CYCLES cycles.  Each edge's witness is its first one: the cycle is reported where it first closed."""
        seen: set[tuple[str, ...]] = set()
        examined = 0
        for component in sorted(nx.strongly_connected_components(self.graph), key=min):
            if len(component) < 2:
                continue
            sub = self.graph.subgraph(component)
            edges = sorted(sub.edges, key=lambda e: sub.edges[e]["dependencies"][0].signal.line)
            for cycle in distinct_cycles(sub, edges, seen, SMALL_COMPONENT, MAX_CYCLE_LENGTH):
                first = cycle.index(min(cycle))
                canonical = tuple(cycle[first:] + cycle[:first])
                examined += 1
                if examined > MAX_CYCLES:
                    self.exempt["not searched (too many cycles)"] += 1
                    return
                pairs = zip(canonical, canonical[1:] + canonical[:1], strict=True)
                yield tuple(self.graph.edges[a, b]["dependencies"][0] for a, b in pairs)

    def _deadlocks(self, waiting: list[Event]) -> list[tuple[Sleeper, ...]]:
        """The cycles of threads stuck in fence waits at the end: each asleep on an unsignalled fence whose every
        known signaller is stuck too (the greatest such set), one cycle per strongly connected part of it."""
        candidates: dict[int, tuple[Event, _Fence, dict[int, int]]] = {}
        for call in waiting:
            if call.op not in WAITS or (call.op == "dma_fence_wait_timeout"
                                        and int_value(call.args.get("timeout")) == 0):
                continue
            rec = self._fences.get(name_of(call.args.get("fence")))
            if rec is None or rec.signal_line:
                continue
            node = self.graph.nodes[rec.timeline]
            if node["irq"] or not node["signallers"]:
                continue  # an interrupt may signal it, or nobody known does
            candidates.setdefault(call.tid, (call, rec, node["signallers"]))
        stuck = set(candidates)
        changed = True
        while changed:
            changed = False
            for tid in sorted(stuck):
                if any(s not in stuck for s in candidates[tid][2]):
                    stuck.discard(tid)
                    changed = True
        waits_for = nx.DiGraph()
        waits_for.add_nodes_from(stuck)
        waits_for.add_edges_from((t, s) for t in stuck for s in candidates[t][2])
        out: list[tuple[Sleeper, ...]] = []
        for part in sorted(nx.strongly_connected_components(waits_for), key=min):
            start = min(part)
            if len(part) == 1 and not waits_for.has_edge(start, start):
                continue  # stuck behind a cycle, not in one: that cycle is reported
            path, tid = [], start
            while tid not in path:
                path.append(tid)
                tid = min(s for s in candidates[tid][2] if s in part)
            cycle = path[path.index(tid):]
            links = []
            for t, nxt in zip(cycle, cycle[1:] + cycle[:1], strict=True):
                call, rec, signallers = candidates[t]
                links.append(Sleeper(t, call.op, name_of(call.args.get("fence")), rec.timeline, rec.seqno,
                                     rec.init_line, nxt, signallers[nxt]))
            out.append(tuple(links))
        return out


def _key(graph: Any, timeline: str) -> Value:
    key: Value = graph.nodes[timeline]["key"]
    return key


def _edge_state(dep: Dependency, graph: Any) -> ObjectState:
    """The signalled timeline of one edge: who signalled what after waiting for what (born: the wait, last: the
    signal)."""
    fields: tuple[tuple[str, Value], ...] = (
        ("tid", dep.tid), ("waited_for", dep.wait.fence), ("its_context", _key(graph, dep.wait.timeline)),
        ("then_signalled", dep.signal.fence), ("seqno", dep.signal.seqno))
    return ObjectState("fence_context", _key(graph, dep.signal.timeline), True, fields, dep.wait.line,
                       dep.signal.line, False)


def _sleeper_state(s: Sleeper, graph: Any) -> ObjectState:
    """One link of a deadlock: the fence slept on, who sleeps on it and who would signal it (born: its init,
    last: the signaller's latest signal of its timeline)."""
    fields: tuple[tuple[str, Value], ...] = (
        ("context", _key(graph, s.timeline)), ("seqno", s.seqno), ("signaled", False), ("waiter", s.tid),
        ("signaller", s.signaller), ("signaller_asleep", True))
    return ObjectState("fence", s.fence, True, fields, s.init_line, s.evidence, False)


# -- files -------------------------------------------------------------------------------------

def analyze(path: str, fmt: str | None = None, unobserved: Iterable[str] = (),
            lock_deadlock: bool = False) -> FenceWaitResult:
    """The fence wait-for analysis of the trace at ``path`` (``-`` for stdin; gzip is recognised).

    Streams the file, validating each event as the checker does (``InputError`` on bad input).  ``unobserved``
    adds to the header's list; ``lock_deadlock`` says the check already reported ``LOCK-DEADLOCK`` for this
    trace (the actual deadlock is then not reported twice).
    """
    graph: FenceWaitGraph | None = None
    profile = "latest"
    extra = frozenset(unobserved)
    hidden = extra
    waiting: list[Event] = []
    for item in read_events(path, fmt):
        if isinstance(item, Header):
            profile = item.profile or profile
            hidden = item.unobserved | extra
            waiting = waiting_calls(item.source, path)
            continue
        if graph is None:
            graph = FenceWaitGraph(path, profile, hidden)
        graph.feed(item)
    if graph is None:
        graph = FenceWaitGraph(path, profile, hidden)
    reports, result = graph.judge(waiting, lock_deadlock)
    return FenceWaitResult(path, profile, graph.events, reports, graph.graph, graph.exempt, graph.notes, graph.gaps,
                           result)
