"""The lock-order analysis: potential deadlocks, lockdep's way, read from one recorded trace.

The per-event rules of the spec see one thread's call at a time.  A deadlock
needs two threads (or a thread and the kernel's own paths) taking the same
locks in opposite orders, and a trace rarely shows the deadlock itself: it
shows each order once, on a good day.  This module builds what lockdep builds
at run time: for every lock a thread acquires while it holds another, an edge
*held -> acquired* of a lock-order graph, with the two events that witness it
(the dependency chain).  Then:

* a cycle in the graph is a potential deadlock (``LOCK-ORDER-CYCLE``), unless
  the predictive-deadlock literature's filters say the orders can never
  interleave: every edge comes from one thread; every witness thread held one
  common *gate* lock at both acquisitions of its edge; or the cycle is among
  reservation locks all taken in ww acquire contexts (the ``-EDEADLK`` backoff
  of ww_mutex breaks it).  A cycle through the fence "lock" (``dma_fence_map``)
  is never filtered by thread or gate: a fence wait blocks on whoever signals,
  which may be the waiter itself later, or a thread that needs the gate;
* one acquisition against the kernel's primed order is enough
  (``LOCK-ORDER-INVERSION``): ``dma_resv_lockdep()`` teaches lockdep at boot
  that ``mmap_lock`` -> ww acquire context -> reservation locks ->
  ``fs_reclaim`` -> fence waits (``dma_fence_map``), because page faults,
  shrinkers and mmu notifiers take them in that order on every system.
  Taking ``mmap_lock`` under a reservation lock, or a reservation lock, a
  GFP_KERNEL/NOFS/NOIO allocation or a fence wait inside a fence signalling
  section, closes a cycle with those kernel paths.

What counts as a lock (lockdep's view):

=======================  ======================================  ==================================
lock                     instance (graph node)                   class
=======================  ======================================  ==================================
reservation lock         ``resv <obj>``                          ``reservation_ww_class_mutex``
driver mutex             ``mutex <name>`` (else ``<lock>``)      ``name`` (else the address)
mmap_lock                ``mmap_lock <mm>`` (else the pid's mm)  ``mmap_lock``
GFP_KERNEL etc. alloc    ``fs_reclaim`` (taken and released)     ``fs_reclaim``
fence wait / section     ``dma_fence_map`` (wait: taken and      ``dma_fence_map``
                         released; section: held begin..end)
ww acquire context       not a node (never contended)            ``reservation_ww_class_acquire``
=======================  ======================================  ==================================

A trylock never blocks, so it adds no edge and no inversion, but the lock it
takes (``ret`` 1) is held from then on.  A blocking attempt that fails
(``-EDEADLK``, ``-EINTR``) adds its edges, as lockdep does (the thread was
waiting), but holds nothing; ``-EALREADY`` (the context holds it already)
does nothing.  Recursive locking and unlocking what is not held are the
spec's rules: here they are ignored.  A ``lost_events`` gap forgets what
every thread held (a missed edge, never a false one).

Memory: per thread the held stack; the graph, one node per lock instance and
one edge per ordered pair ever nested, each edge keeping its first witness and
at most ``WITNESSES_PER_EDGE - 1`` more that differ in thread, gate locks or
ww-ness (so that the filters are not fooled by which thread came first); and
one record per (held class, acquired class) inversion.  Nothing else grows
with the trace.

>>> from checker.trace import validate
>>> g = LockOrderGraph("t.jsonl")
>>> for n, (tid, op, lock) in enumerate([(1, "mutex_lock", "a"), (1, "mutex_lock", "b"), (1, "mutex_unlock", "b"),
...         (1, "mutex_unlock", "a"), (2, "mutex_lock", "b"), (2, "mutex_lock", "a"), (2, "mutex_unlock", "a"),
...         (2, "mutex_unlock", "b")], 1):
...     g.feed(validate({"op": op, "tid": tid, "args": {"lock": lock}}, "t.jsonl", n))
>>> [(f.rule, f.line, f.related_lines) for f in g.findings()]
[('LOCK-ORDER-CYCLE', 6, (1, 2, 5))]
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx  # type: ignore[import-untyped]

from checker.analysis.common import distinct_cycles, int_value, name_of, read_events
from checker.core import Finding, ObjectState, Result
from checker.trace import Event, Header
from spec import kernel as K
from spec import rules as R
from spec.lang import Value

# -- the rules (in spec/rules.py, like every rule) ----------------------------------------------

LOCK_ORDER_CYCLE = R.LOCK_ORDER_CYCLE
LOCK_ORDER_INVERSION = R.LOCK_ORDER_INVERSION

# -- lock classes ------------------------------------------------------------------------------

RESV_CLASS = "reservation_ww_class_mutex"
WW_CTX_CLASS = "reservation_ww_class_acquire"
MMAP_CLASS = "mmap_lock"
RECLAIM_CLASS = "fs_reclaim"
FENCE_CLASS = "dma_fence_map"
FS_RECLAIM = "fs_reclaim"  # the pseudo locks' graph nodes
FENCE_MAP = "dma_fence_map"

# dma_resv_lockdep(): mmap_lock -> ww acquire ctx -> reservation lock -> fs_reclaim -> dma_fence_map.
PRIMED_RANK = {MMAP_CLASS: 0, WW_CTX_CLASS: 1, RESV_CLASS: 2, RECLAIM_CLASS: 3, FENCE_CLASS: 4}

# GFP flags whose allocations may enter direct reclaim (__need_fs_reclaim: __GFP_DIRECT_RECLAIM set).
RECLAIMING_GFP = frozenset({"GFP_KERNEL", "GFP_KERNEL_ACCOUNT", "GFP_NOFS", "GFP_NOIO", "GFP_USER", "GFP_HIGHUSER",
                            "GFP_HIGHUSER_MOVABLE", "__GFP_DIRECT_RECLAIM", "__GFP_RECLAIM"})
NON_RECLAIMING_GFP = frozenset({"__GFP_NOLOCKDEP"})

RESV_LOCKS = frozenset({"dma_resv_lock", "dma_resv_lock_interruptible", "dma_resv_lock_slow",
                        "dma_resv_lock_slow_interruptible"})
MUTEX_LOCKS = frozenset({"mutex_lock", "mutex_lock_interruptible"})
MMAP_LOCKS = {"mmap_read_lock": False, "mmap_write_lock": True}  # op -> exclusive
MMAP_UNLOCKS = frozenset({"mmap_read_unlock", "mmap_write_unlock"})
FENCE_WAITS = frozenset(K.FENCE_WAITS)

WITNESSES_PER_EDGE = 4  # the first, and up to 3 that differ in (thread, gates, ww)
MAX_CYCLE_LENGTH = 8  # longer cycles are not searched (lockdep's chains are rarely longer than 4)
MAX_CYCLES = 1_000  # simple cycles examined per call of findings()
SMALL_COMPONENT = 16  # components up to this many locks have all their cycles searched
MAX_CHOICES = 256  # witness combinations tried per cycle (all of them for cycles of up to 4 edges)


# -- records -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Acquisition:
    """One event that acquired (or tried to acquire) a lock: the file line, thread, op and lock."""

    line: int
    tid: int
    op: str
    lock: str  # the graph node (or the ww context)


@dataclass(frozen=True)
class Witness:
    """Why an edge held -> acquired exists: the event that took ``held`` and the later one that took ``acquired``.

    ``gates`` are the exclusive locks the thread held at both events; ``ww`` that both are reservation locks
    taken in ww acquire contexts.
    """

    held: Acquisition
    acquired: Acquisition
    gates: frozenset[str]
    ww: bool

    @property
    def tid(self) -> int:
        return self.acquired.tid


@dataclass(frozen=True)
class LockOrderReport:
    """A finding and its dependency chain: one witness per edge, in the cycle's order (one for an inversion)."""

    finding: Finding
    chain: tuple[Witness, ...]


@dataclass
class _Held:
    instance: str  # what unlock names: the reservation object, the mutex's address, the mm
    node: str | None  # the graph node; None for a ww acquire context (never contended)
    cls: str
    acq: Acquisition
    ww: bool  # a reservation lock taken with a ww acquire context
    exclusive: bool  # could serialise two threads (a gate): not read locks, sections or contexts
    below: frozenset[str] = frozenset()  # exclusive instances held when this one was taken, still held


@dataclass
class _Thread:
    held: list[_Held] = field(default_factory=list)
    sections: int = 0  # nested fence signalling sections


@dataclass
class LockOrderResult:
    """What the analysis of one trace gives: reports (findings with their chains) and the graph."""

    file: str
    profile: str
    events: int
    reports: list[LockOrderReport]
    graph: Any  # networkx.DiGraph: nodes are locks (attrs kind, key, cls), edges carry "witnesses"
    exempt: Counter[str]  # cycles not reported, by the filter that excused them
    gaps: list[int]
    result: Result  # the findings as a checker.core.Result, for the reporters

    @property
    def findings(self) -> list[Finding]:
        return [r.finding for r in self.reports]


# -- the graph ---------------------------------------------------------------------------------

class LockOrderGraph:
    """Feed validated events in trace order; ``findings()`` (or ``reports()``) at any time."""

    def __init__(self, file: str, profile: str = "latest") -> None:
        self.file = file
        self.profile = profile
        self.graph: Any = nx.DiGraph()
        self.events = 0
        self.gaps: list[int] = []
        self.exempt: Counter[str] = Counter()
        self._threads: dict[int, _Thread] = {}
        self._inversions: dict[tuple[str, str], tuple[_Held, Acquisition, str, frozenset[str]]] = {}

    # -- events --

    def feed(self, event: Event) -> None:
        self.events += 1
        op, args = event.op, event.args
        if event.kind.value == "annotation":
            if op == "alloc" and _reclaims(args.get("gfp")):
                self._acquire(event, FS_RECLAIM, FS_RECLAIM, RECLAIM_CLASS, "fs_reclaim", hold=False)
            elif op == "lost_events":
                self.gaps.append(event.line)
                self._threads.clear()
            return
        if event.kind.value != "call":
            return
        ret = int_value(event.ret)
        if op in RESV_LOCKS:
            obj = name_of(args.get("obj"))
            if ret == -K.EALREADY:
                return
            ww = args.get("ctx") is not None
            self._acquire(event, f"resv {obj}", f"resv {obj}", RESV_CLASS, "resv", hold=ret is None or ret >= 0,
                          ww=ww)
        elif op == "dma_resv_trylock":
            obj = name_of(args.get("obj"))
            self._acquire(event, f"resv {obj}", f"resv {obj}", RESV_CLASS, "resv", hold=ret == 1, trylock=True)
        elif op in MUTEX_LOCKS or op == "mutex_trylock":
            addr, name = name_of(args.get("lock")), args.get("name")
            cls = name if isinstance(name, str) and name else addr
            trylock = op == "mutex_trylock"
            hold = ret == 1 if trylock else ret is None or ret >= 0
            self._acquire(event, f"mutex {cls}", f"mutex {addr}", cls, "mutex", hold=hold, trylock=trylock)
        elif op in MMAP_LOCKS:
            mm = _mm(event)
            self._acquire(event, f"mmap_lock {mm}", f"mmap_lock {mm}", MMAP_CLASS, "mmap_lock", hold=True,
                          exclusive=MMAP_LOCKS[op])
        elif op in FENCE_WAITS:
            self._acquire(event, FENCE_MAP, FENCE_MAP, FENCE_CLASS, "dma_fence_map", hold=False, wait=True)
        elif op == "dma_fence_begin_signalling":
            section = self._thread(event.tid)
            if section.sections == 0:
                self._acquire(event, FENCE_MAP, FENCE_MAP, FENCE_CLASS, "dma_fence_map", hold=True, exclusive=False)
            section.sections += 1
        elif op == "dma_fence_end_signalling":
            ending = self._threads.get(event.tid)
            if ending is not None and ending.sections:
                ending.sections -= 1
                if ending.sections == 0:
                    self._release(event.tid, FENCE_MAP)
        elif op == "ww_acquire_init":
            ctx = name_of(args.get("ctx"))
            self._acquire(event, None, f"ww_ctx {ctx}", WW_CTX_CLASS, "ww_acquire_ctx", hold=True, exclusive=False)
        elif op == "ww_acquire_fini":
            self._release(event.tid, f"ww_ctx {name_of(args.get('ctx'))}")
        elif op == "dma_resv_unlock":
            self._release(event.tid, f"resv {name_of(args.get('obj'))}")
        elif op == "mutex_unlock":
            self._release(event.tid, f"mutex {name_of(args.get('lock'))}")
        elif op in MMAP_UNLOCKS:
            self._release(event.tid, f"mmap_lock {_mm(event)}")

    def _thread(self, tid: int) -> _Thread:
        t = self._threads.get(tid)
        if t is None:
            t = self._threads[tid] = _Thread()
        return t

    def _acquire(self, event: Event, node: str | None, instance: str, cls: str, kind: str, *, hold: bool,
                 ww: bool = False, trylock: bool = False, exclusive: bool = True, wait: bool = False) -> None:
        t = self._thread(event.tid)
        acq = Acquisition(event.line, event.tid, event.op, node or instance)
        if node is not None and node not in self.graph:
            self.graph.add_node(node, kind=kind, key=node.split(" ", 1)[-1], cls=cls)
        if not trylock:
            self._check_primed(t, acq, cls, wait)
        if any(h.instance == instance and h.node == node for h in t.held):
            return  # recursive (or a fence wait inside a signalling section: an inversion, no edge)
        if not trylock and node is not None:
            for h in t.held:
                if h.node is not None and h.node != node:
                    self._add_edge(h, acq, ww and h.ww)
        if hold:
            below = frozenset(h.instance for h in t.held if h.exclusive)
            t.held.append(_Held(instance, node, cls, acq, ww, exclusive, below))
        elif not t.held and not t.sections:
            del self._threads[event.tid]

    def _release(self, tid: int, instance: str) -> None:
        t = self._threads.get(tid)
        if t is None:
            return
        for i in range(len(t.held) - 1, -1, -1):
            if t.held[i].instance == instance:
                gone = t.held.pop(i)
                if gone.exclusive:  # out of order: those taken after it no longer hold it at both ends
                    for h in t.held[i:]:
                        h.below = h.below - {instance}
                break
        if not t.held and not t.sections:
            del self._threads[tid]

    def _add_edge(self, held: _Held, acq: Acquisition, ww: bool) -> None:
        assert held.node is not None and acq.lock is not None
        data = self.graph.get_edge_data(held.node, acq.lock)
        if data is None:
            self.graph.add_edge(held.node, acq.lock, witnesses=[Witness(held.acq, acq, held.below, ww)])
            return
        witnesses: list[Witness] = data["witnesses"]
        if len(witnesses) >= WITNESSES_PER_EDGE:
            return
        if all((w.tid, w.gates, w.ww) != (acq.tid, held.below, ww) for w in witnesses):
            witnesses.append(Witness(held.acq, acq, held.below, ww))

    def _check_primed(self, t: _Thread, acq: Acquisition, cls: str, wait: bool) -> None:
        rank = PRIMED_RANK.get(cls)
        if rank is None:
            return
        for h in reversed(t.held):
            held_rank = PRIMED_RANK.get(h.cls)
            if held_rank is None:
                continue
            if held_rank > rank or (wait and h.cls == FENCE_CLASS):
                pair = (h.cls, cls)
                if pair not in self._inversions:
                    self._inversions[pair] = (h, acq, cls, h.below)
                return

    # -- results --

    def reports(self) -> list[LockOrderReport]:
        """The inversions seen so far and the cycles of the graph as it is, by line."""
        result = Result(self.file, self.profile)
        self.exempt = Counter()
        found: list[tuple[int, str, Acquisition, tuple[ObjectState, ...], tuple[Witness, ...]]] = []
        for h, acq, cls, gates in self._inversions.values():
            held_state = self._state(h.node or h.instance, h.cls, h.acq, h.acq, (("then", acq.lock),))
            new_state = self._state(acq.lock, cls, acq, acq, ())
            witness = Witness(h.acq, acq, gates, False)
            found.append((acq.line, LOCK_ORDER_INVERSION, acq, (held_state, new_state), (witness,)))
        for chain in self._cycles():
            closing = max(chain, key=lambda w: w.acquired.line)
            start = (chain.index(closing) + 1) % len(chain)
            chain = chain[start:] + chain[:start]  # the closing edge last
            states = tuple(self._state(w.held.lock, self.graph.nodes[w.held.lock]["cls"], w.held, w.acquired,
                                       (("tid", w.tid), ("then", w.acquired.lock))) for w in chain)
            found.append((closing.acquired.line, LOCK_ORDER_CYCLE, closing.acquired, states, chain))
        out = []
        for line, rule, acq, states, chain in sorted(found, key=lambda x: (x[0], x[1])):
            result.judge(rule, line, acq.op, acq.tid, states)
            out.append(LockOrderReport(result.findings[-1], chain))
        return out

    def findings(self) -> list[Finding]:
        return [r.finding for r in self.reports()]

    def _state(self, lock: str, cls: str, born: Acquisition, last: Acquisition,
               extra: tuple[tuple[str, Value], ...]) -> ObjectState:
        attrs = self.graph.nodes[lock] if lock in self.graph else {"kind": "ww_acquire_ctx", "key": lock.split(" ")[-1]}
        return ObjectState(attrs["kind"], attrs["key"], True, (("class", cls), *extra), born.line, last.line, False)

    def _cycles(self) -> Iterator[tuple[Witness, ...]]:
        """One chain per cycle that can deadlock, each cycle once.

        Within each strongly connected component: a component whose edges are all ww (reservation locks in
        acquire contexts) is excused as a whole.  Otherwise every cycle that can deadlock goes through an edge
        that is not all ww: for each such edge u -> v, the shortest way back v ->* u (lockdep's search); and in
        small components every simple cycle up to MAX_CYCLE_LENGTH, so that when the shortest cycle is excused
        a longer one that is not is still found.  At most MAX_CYCLES cycles are examined per call.
        """
        seen: set[tuple[str, ...]] = set()
        examined = 0
        for component in sorted(nx.strongly_connected_components(self.graph), key=min):
            if len(component) < 2:
                continue
            sub = self.graph.subgraph(component)
            open_edges = sorted((e for e in sub.edges if not all(w.ww for w in sub.edges[e]["witnesses"])),
                                key=lambda e: sub.edges[e]["witnesses"][0].acquired.line)
            if not open_edges:
                self.exempt["ww acquire contexts"] += 1
                continue
            for cycle in distinct_cycles(sub, open_edges, seen, SMALL_COMPONENT, MAX_CYCLE_LENGTH):
                examined += 1
                if examined > MAX_CYCLES:
                    self.exempt["not searched (too many cycles)"] += 1
                    return
                pairs = zip(cycle, cycle[1:] + cycle[:1], strict=True)
                edges = [self.graph.edges[a, b]["witnesses"] for a, b in pairs]
                chain, reason = _choose(cycle, edges, self.graph)
                if chain is None:
                    self.exempt[reason] += 1
                else:
                    yield chain



def _exemption(chain: tuple[Witness, ...], through_fence: bool, all_resv: bool) -> str:
    """Why the chain cannot deadlock, or "" when it can."""
    if all_resv and all(w.ww for w in chain):
        return "ww acquire contexts"
    if through_fence:
        return ""
    if len({w.tid for w in chain}) == 1:
        return "one thread"
    if frozenset.intersection(*(w.gates for w in chain)):
        return "common gate lock"
    return ""


def _choose(cycle: list[str], edges: list[list[Witness]], graph: Any) -> tuple[tuple[Witness, ...] | None, str]:
    """A choice of one witness per edge that can deadlock (first witnesses first), or why none can."""
    through_fence = FENCE_MAP in cycle
    all_resv = all(graph.nodes[n]["kind"] == "resv" for n in cycle)
    first = tuple(e[0] for e in edges)
    for n, chain in enumerate(itertools.product(*edges)):
        if n >= MAX_CHOICES:
            break
        if not _exemption(chain, through_fence, all_resv):
            return chain, ""
    return None, _exemption(first, through_fence, all_resv) or "no deadlocking choice of witnesses"


def _reclaims(gfp: Value) -> bool:
    if not isinstance(gfp, str):
        return False
    flags = {f.strip() for f in gfp.replace(",", "|").split("|")}
    return bool(flags & RECLAIMING_GFP) and not flags & NON_RECLAIMING_GFP


def _mm(event: Event) -> str:
    mm = event.args.get("mm")
    return name_of(mm) if mm is not None else f"mm of pid {event.pid}"


# -- files -------------------------------------------------------------------------------------

def analyze(path: str, fmt: str | None = None) -> LockOrderResult:
    """The lock-order analysis of the trace at ``path`` (``-`` for stdin; gzip is recognised).

    Streams the file, validating each event as the checker does (``InputError`` on bad input).
    """
    graph: LockOrderGraph | None = None
    profile = "latest"
    for item in read_events(path, fmt):
        if isinstance(item, Header):
            profile = item.profile or profile
            continue
        if graph is None:
            graph = LockOrderGraph(path, profile)
        graph.feed(item)
    if graph is None:
        graph = LockOrderGraph(path, profile)
    reports = graph.reports()
    result = Result(path, profile, events=graph.events, gaps=list(graph.gaps))
    result.findings = [r.finding for r in reports]
    return LockOrderResult(path, profile, graph.events, reports, graph.graph, graph.exempt, graph.gaps, result)
