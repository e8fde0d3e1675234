"""The coherency-race analysis: accesses to one buffer that no synchronisation orders, read from one trace.

Vetter's coherency model for dma-buf (seed 004; RULES.md MODEL-001, MODEL-002)
makes the calls that open and close an access *barriers*: a device's writes
show up only after its ``dma_buf_unmap_attachment``, a CPU's only after its
``dma_buf_end_cpu_access`` (``DMA_BUF_IOCTL_SYNC`` END from userspace), and a
reader sees them only if its own opening barrier (map, begin_cpu_access, SYNC
START) comes *after* that publication; "any concurrent operations are allowed
to yield garbage".  The barriers publish; they do not order.  The ordering has
to come from elsewhere: a fence the reader waits for, a lock both sides take,
program order, fork.  SYNC in particular "does not prevent other processes or
devices from accessing the memory at the same time" (SYNC-005).

Access windows on a buffer (the ``dma_buf`` handle):

=================  =========================================  ======================================
window             opened ... closed by                       reads / writes
=================  =========================================  ======================================
device             ``dma_buf_map_attachment[_unlocked]``      writes for DMA_FROM_DEVICE, reads for
                   (its ``ret`` sg_table) ... the unmap of    DMA_TO_DEVICE, both for
                   that attachment and sg_table               DMA_BIDIRECTIONAL
kernel CPU         ``dma_buf_begin_cpu_access`` ...           reads for DMA_FROM_DEVICE, writes for
                   ``dma_buf_end_cpu_access`` (same           DMA_TO_DEVICE, both for
                   direction)                                 DMA_BIDIRECTIONAL
userspace CPU      ``DMA_BUF_IOCTL_SYNC`` START ... END on    READ flag (1) reads, WRITE flag (2)
                   the same thread                            writes
=================  =========================================  ======================================

Attachments map to their buffer through the ``ret`` of ``dma_buf_attach`` /
``dma_buf_dynamic_attach``; file descriptors through ``dma_buf_fd``, ``dup``,
``dup2``, ``dup3``, ``fcntl(F_DUPFD*)``, ``fd_received`` and fork (per
process).  A failed call (negative ``ret``) opens or closes nothing.

Happens-before is tracked with vector clocks: program order per thread; a
fence signal (``dma_fence_signal*``) before a later successful wait on the same
fence (``dma_fence_wait`` with ``ret`` >= 0, ``dma_fence_wait_timeout`` with
``ret`` > 0: 0 is a timeout); ``dma_resv_unlock`` before the next lock of the
same object, ``mutex_unlock`` before the next lock of the same mutex (failed
and unsuccessful trylocks order nothing); fork, vfork and clone (the parent's
past before all of the child's events).  The locks the ``_unlocked`` map and
vmap variants take internally are not recorded, and are not counted.

A race (``RACE-UNORDERED-ACCESS``) is two windows on one buffer, from
different threads or one a device window and the other a CPU window, at least
one of them writing, that happens-before does not order: neither's close
happens-before the other's open.  Since happens-before follows the trace's
order, this is decided when the second window opens: the first is still open,
or its close does not happen-before that open.  The finding is at the event
that opens the second window, with both windows as the buffer's state (their
open and close lines are the related lines; a window never closed is open to
the end of the trace).  Each racing pair is reported once.

A race is uncertain, and withheld, when a ``lost_events`` gap lies between the
two opens (the edge that ordered them may be lost), or when the header lists as
``unobserved`` an operation the analysis reads.  A successful wait for a fence
whose signal is not in the trace orders nothing: such a trace can give a race
the recorder could not see was ordered.

Memory: the open windows; per buffer at most ``HISTORY`` closed windows
(oldest forgotten first: a missed race, never a false one), and a closed
window is forgotten as soon as every thread seen so far has synchronised with
its close (checked every ``PRUNE_EVERY`` events; a thread that never
synchronises with the others keeps everything up to ``HISTORY``).  The handle
tables follow the trace's releases: attachments until detach, sg_tables until
unmap, fds until close or exit, fences until init or release.  One vector clock
per thread and per lock, so the state grows with the numbers of threads and
locks, not with the number of events; and the races found are kept.

>>> from checker.trace import validate
>>> a = RaceAnalysis("t.jsonl")
>>> for n, (tid, op, args, ret) in enumerate([
...         (1, "dma_buf_attach", {"dmabuf": "b"}, "at"),
...         (1, "dma_buf_map_attachment", {"attach": "at", "direction": "DMA_FROM_DEVICE"}, "sg"),
...         (2, "dma_buf_begin_cpu_access", {"dmabuf": "b", "direction": "DMA_FROM_DEVICE"}, 0)], 1):
...     a.feed(validate({"op": op, "tid": tid, "args": args, "ret": ret}, "t.jsonl", n))
>>> [(f.rule, f.line, f.related_lines) for f in a.findings()]
[('RACE-UNORDERED-ACCESS', 3, (2,))]
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from checker.analysis.common import int_value, name_of, read_events
from checker.core import Finding, ObjectState, Result
from checker.trace import Event, Header
from spec import kernel as K
from spec import rules as R
from spec.lang import Returns, Value
from spec.values import normalize_ret

# -- the rule (to be defined in spec/rules.py as Kind.ANALYSIS) -----------------------------------

RACE_UNORDERED_ACCESS = R.RACE_UNORDERED_ACCESS

HISTORY = 64  # closed windows remembered per buffer
PRUNE_EVERY = 4096  # events between two sweeps forgetting the closed windows every thread has synchronised with

DEVICE, KERNEL, USER = "device", "kernel CPU", "userspace CPU"
READ, WRITE = 1, 2

MAPS = frozenset({"dma_buf_map_attachment", "dma_buf_map_attachment_unlocked"})
UNMAPS = frozenset({"dma_buf_unmap_attachment", "dma_buf_unmap_attachment_unlocked"})
ATTACHES = frozenset({"dma_buf_attach", "dma_buf_dynamic_attach"})
SIGNALS = frozenset(K.FENCE_SIGNALS)
RESV_LOCKS = frozenset({"dma_resv_lock", "dma_resv_lock_interruptible", "dma_resv_lock_slow",
                        "dma_resv_lock_slow_interruptible"})
MUTEX_LOCKS = frozenset({"mutex_lock", "mutex_lock_interruptible"})
FORKS = frozenset({"fork", "vfork", "clone"})
CLONE_THREAD = 0x10000
EBADF = 9

# What the analysis reads: a trace that cannot see one of these cannot prove a race.
OPS_READ = (MAPS | UNMAPS | ATTACHES | SIGNALS | frozenset(K.FENCE_WAITS) | RESV_LOCKS | MUTEX_LOCKS | FORKS
            | frozenset({"dma_buf_begin_cpu_access", "dma_buf_end_cpu_access", "dma_resv_trylock", "dma_resv_unlock",
                         "mutex_trylock", "mutex_unlock", "dma_buf_fd", "dup", "dup2", "dup3", "fcntl", "fd_received",
                         "ioctl", "close"}))

DIRECTION_NAMES = {v: k for k, v in K.DIRECTIONS.items()}
# enum dma_data_direction -> what the device does, what the CPU does (begin_cpu_access's direction)
DEVICE_ACCESS = {K.DMA_BIDIRECTIONAL: READ | WRITE, K.DMA_TO_DEVICE: READ, K.DMA_FROM_DEVICE: WRITE, K.DMA_NONE: 0}
CPU_ACCESS = {K.DMA_BIDIRECTIONAL: READ | WRITE, K.DMA_TO_DEVICE: WRITE, K.DMA_FROM_DEVICE: READ, K.DMA_NONE: 0}
ACCESS_NAMES = {READ: "read", WRITE: "write", READ | WRITE: "read-write"}

Clock = dict[int, int]


# -- records -----------------------------------------------------------------------------------

@dataclass(eq=False)
class Window:
    """One access window on a buffer: who, how, and the lines and clock of its barriers."""

    buffer: str
    agent: str  # DEVICE, KERNEL or USER
    tid: int  # the thread that opened it (for a device: the one that mapped)
    op: str
    open_line: int
    access: int  # READ | WRITE bits
    direction: Value  # the direction's name, or the SYNC flags' names
    dev: str | None = None
    close_line: int = 0  # 0 while open
    close_time: int = 0  # the closing thread's own clock component at the close
    close_tid: int = 0

    def fields(self) -> tuple[tuple[str, Value], ...]:
        out: list[tuple[str, Value]] = [("window", self.agent), ("direction", self.direction),
                                        ("access", ACCESS_NAMES.get(self.access, "none")), ("tid", self.tid)]
        if self.dev is not None:
            out.append(("dev", self.dev))
        out += [("opened", self.open_line), ("closed", self.close_line or "open to the end of the trace")]
        return tuple(out)

    def state(self, uncertain: bool) -> ObjectState:
        return ObjectState("buffer", self.buffer, True, self.fields(), self.open_line,
                           self.close_line or self.open_line, uncertain)


@dataclass(frozen=True)
class Race:
    """Two windows on one buffer that nothing orders; ``second`` opened at the finding's line."""

    first: Window
    second: Window
    uncertain: bool


@dataclass
class _Buffer:
    open: list[Window] = field(default_factory=list)
    closed: deque[Window] = field(default_factory=lambda: deque(maxlen=HISTORY))


@dataclass
class RaceResult:
    """What the analysis of one trace gives: the races (as findings too) and how much it tracked."""

    file: str
    profile: str
    events: int
    races: list[Race]
    windows: int  # access windows opened
    remembered: int  # windows held at the end (open, and closed ones not yet forgotten)
    gaps: list[int]
    result: Result  # the findings as a checker.core.Result, for the reporters

    @property
    def findings(self) -> list[Finding]:
        return self.result.findings


# -- the analysis ------------------------------------------------------------------------------

class RaceAnalysis:
    """Feed validated events in trace order; ``findings()`` (or ``races``) at any time."""

    def __init__(self, file: str, profile: str = "latest", unobserved: Iterable[str] = ()) -> None:
        self.file = file
        self.profile = profile
        self.events = 0
        self.windows = 0
        self.gaps: list[int] = []
        self.races: list[Race] = []
        self.narrowed = tuple(sorted(set(unobserved) & OPS_READ))
        self._clocks: dict[int, Clock] = {}
        self._buffers: dict[str, _Buffer] = {}
        self._attach: dict[str, tuple[str, str | None]] = {}  # attachment -> (buffer, dev)
        self._mapped: dict[tuple[str, str], list[Window]] = {}  # (attachment, sg_table) -> device windows
        self._fds: dict[tuple[int, int], str] = {}  # (pid, fd) -> buffer
        self._fences: dict[str, Clock] = {}  # signalled fences
        self._locks: dict[str, Clock] = {}  # "resv X" / "mutex X" -> clock at the last unlock

    # -- events --

    def feed(self, event: Event) -> None:
        self.events += 1
        if self.events % PRUNE_EVERY == 0:
            self._prune()
        op, args, kind = event.op, event.args, event.kind.value
        if kind == "annotation":
            if op == "lost_events":
                self.gaps.append(event.line)
            elif op == "fd_received":
                self._fds[(event.pid, int_value(args.get("fd")) or 0)] = name_of(args.get("dmabuf"))
            return
        if kind == "syscall":
            self._syscall(event)
            return
        if kind != "call":
            return
        ret = int_value(event.ret)
        failed = ret is not None and ret < 0
        if op in ATTACHES:
            att = _handle_ret(event.ret)
            if att is not None:
                dev = args.get("dev")
                self._attach[att] = (name_of(args.get("dmabuf")), dev if isinstance(dev, str) else None)
        elif op == "dma_buf_detach":
            self._attach.pop(name_of(args.get("attach")), None)
        elif op in MAPS:
            self._map(event)
        elif op in UNMAPS:
            stack = self._mapped.get((name_of(args.get("attach")), name_of(args.get("sg_table"))))
            if stack:
                self._close(stack.pop(), event)
                if not stack:
                    del self._mapped[(name_of(args.get("attach")), name_of(args.get("sg_table")))]
        elif op == "dma_buf_begin_cpu_access" and not failed:
            direction = int_value(args.get("direction"))
            if direction is not None:
                self._open(event, name_of(args.get("dmabuf")), KERNEL, CPU_ACCESS.get(direction, 0),
                           DIRECTION_NAMES.get(direction, direction))
        elif op == "dma_buf_end_cpu_access" and not failed:
            direction = int_value(args.get("direction"))
            buf = self._buffers.get(name_of(args.get("dmabuf")))
            if buf is not None:
                name = DIRECTION_NAMES.get(direction, direction) if direction is not None else None
                self._close_matching(buf, event, KERNEL, lambda w: w.direction == name)
        elif op == "dma_buf_export":
            exported = _handle_ret(event.ret)
            if exported is not None:  # a new buffer: the windows of one that had the handle are gone
                self._buffers.pop(exported, None)
        elif op in SIGNALS and not failed:
            fence = name_of(args.get("fence"))
            self._fences[fence] = _join(self._fences.get(fence, {}), self._release(event.tid))
        elif op in K.FENCE_WAITS:
            ok = ret is None or ret > 0 or (ret == 0 and op == "dma_fence_wait")
            signalled = self._fences.get(name_of(args.get("fence")))
            if ok and signalled is not None:
                self._acquire(event.tid, signalled)
        elif op in ("dma_fence_init", "dma_fence_release"):
            self._fences.pop(name_of(args.get("fence")), None)
        elif op in RESV_LOCKS or op == "dma_resv_trylock":
            taken = ret == 1 if op == "dma_resv_trylock" else not failed
            if taken:
                self._acquire(event.tid, self._locks.get(f"resv {name_of(args.get('obj'))}"))
        elif op == "dma_resv_unlock":
            self._locks[f"resv {name_of(args.get('obj'))}"] = self._release(event.tid)
        elif op in MUTEX_LOCKS or op == "mutex_trylock":
            taken = ret == 1 if op == "mutex_trylock" else not failed
            if taken:
                self._acquire(event.tid, self._locks.get(f"mutex {name_of(args.get('lock'))}"))
        elif op == "mutex_unlock":
            self._locks[f"mutex {name_of(args.get('lock'))}"] = self._release(event.tid)
        elif op == "dma_buf_fd" and ret is not None and ret >= 0:
            self._fds[(event.pid, ret)] = name_of(args.get("dmabuf"))

    def _syscall(self, event: Event) -> None:
        op, args, pid = event.op, event.args, event.pid
        ret = int_value(event.ret)
        fd = int_value(args.get("fd"))
        if op == "ioctl" and args.get("cmd") == "DMA_BUF_IOCTL_SYNC" and (ret is None or ret >= 0):
            flags = int_value(args.get("flags"))
            buffer = self._fds.get((pid, fd if fd is not None else -1))
            if flags is None or buffer is None:
                return
            access = flags & (READ | WRITE)
            name = _sync_names(access)
            if flags & K.SYNC_END:
                buf = self._buffers.get(buffer)
                if buf is not None and not self._close_matching(
                        buf, event, USER, lambda w: w.tid == event.tid and w.access == access):
                    self._close_matching(buf, event, USER, lambda w: w.tid == event.tid)
            else:
                self._open(event, buffer, USER, access, name)
        elif op in ("dup", "dup2", "dup3") or (op == "fcntl" and args.get("cmd") in ("F_DUPFD", "F_DUPFD_CLOEXEC")):
            buffer = self._fds.get((pid, fd if fd is not None else -1))
            if ret is not None and ret >= 0 and buffer is not None and ret != fd:
                self._fds[(pid, ret)] = buffer
        elif op == "close" and fd is not None and ret != -EBADF:
            self._fds.pop((pid, fd), None)
        elif op in FORKS and ret is not None and ret > 0:
            parent = self._release(event.tid)
            self._clocks[ret] = _join(self._clocks.get(ret, {ret: 1}), parent)
            flags = int_value(args.get("flags")) or 0
            if not (op == "clone" and flags & CLONE_THREAD):
                for (p, f), b in list(self._fds.items()):
                    if p == pid:
                        self._fds[(ret, f)] = b
        elif op == "exit_group":
            for key in [k for k in self._fds if k[0] == pid]:
                del self._fds[key]

    # -- vector clocks --

    def _clock(self, tid: int) -> Clock:
        c = self._clocks.get(tid)
        if c is None:
            c = self._clocks[tid] = {tid: 1}
        return c

    def _release(self, tid: int) -> Clock:
        """The thread's clock as published by a release (unlock, signal, fork); its own time moves on."""
        c = self._clock(tid)
        published = dict(c)
        c[tid] += 1
        return published

    def _acquire(self, tid: int, published: Clock | None) -> None:
        if published:
            c = self._clock(tid)
            for t, v in published.items():
                if c.get(t, 0) < v:
                    c[t] = v

    # -- windows --

    def _map(self, event: Event) -> None:
        sg = _handle_ret(event.ret)
        att = name_of(event.args.get("attach"))
        known = self._attach.get(att)
        if sg is None or known is None:
            return
        direction = int_value(event.args.get("direction"))
        if direction is None:
            return
        w = self._open(event, known[0], DEVICE, DEVICE_ACCESS.get(direction, 0),
                       DIRECTION_NAMES.get(direction, direction), known[1])
        self._mapped.setdefault((att, sg), []).append(w)

    def _open(self, event: Event, buffer: str, agent: str, access: int, direction: Value,
              dev: str | None = None) -> Window:
        self.windows += 1
        w = Window(buffer, agent, event.tid, event.op, event.line, access, direction, dev)
        buf = self._buffers.get(buffer)
        if buf is None:
            buf = self._buffers[buffer] = _Buffer()
        now = self._clock(event.tid)
        gap = self.gaps[-1] if self.gaps else 0
        for other in (*buf.closed, *buf.open):
            if not access or not other.access or not (access | other.access) & WRITE:
                continue  # DMA_NONE (or no SYNC flags) accesses nothing; two reads do not conflict
            if other.tid == event.tid and (other.agent == DEVICE) == (agent == DEVICE):
                continue  # one thread's CPU windows, or its devices: program order
            if other.close_line and other.close_time <= now.get(other.close_tid, 0):
                continue  # other's close happens-before this open
            self.races.append(Race(other, w, gap > other.open_line))
        buf.open.append(w)
        return w

    def _close(self, w: Window, event: Event) -> None:
        w.close_line = event.line
        w.close_tid = event.tid
        w.close_time = self._clock(event.tid)[event.tid]
        buf = self._buffers.get(w.buffer)
        if buf is not None and w in buf.open:  # else the handle was exported anew: the old buffer is gone
            buf.open.remove(w)
            buf.closed.append(w)

    def _close_matching(self, buf: _Buffer, event: Event, agent: str, match: Callable[[Window], bool]) -> bool:
        """Close the latest open window of ``agent`` that ``match``es, this thread's first."""
        candidates = [w for w in buf.open if w.agent == agent and match(w)]
        if not candidates:
            return False
        mine = [w for w in candidates if w.tid == event.tid]
        self._close((mine or candidates)[-1], event)
        return True

    def _prune(self) -> None:
        """Forget closed windows whose close every thread seen so far has synchronised with, and idle buffers."""
        floor: Clock = {}
        clocks = list(self._clocks.values())
        for t in self._clocks:
            floor[t] = min(c.get(t, 0) for c in clocks)
        for key, buf in list(self._buffers.items()):
            if buf.closed:
                kept = [w for w in buf.closed if w.close_time > floor.get(w.close_tid, 0)]
                if len(kept) != len(buf.closed):
                    buf.closed = deque(kept, maxlen=HISTORY)
            if not buf.open and not buf.closed:
                del self._buffers[key]

    # -- results --

    def remembered(self) -> int:
        """How many windows the analysis holds now: open ones, and closed ones not yet forgotten."""
        return sum(len(b.open) + len(b.closed) for b in self._buffers.values())

    def result(self) -> Result:
        """The races found so far as findings, by line, with both windows as they are now."""
        result = Result(self.file, self.profile, events=self.events, gaps=list(self.gaps))
        if self.narrowed:
            result.narrowed = {RACE_UNORDERED_ACCESS: self.narrowed}
        for race in sorted(self.races, key=lambda r: (r.second.open_line, r.first.open_line)):
            states = (race.first.state(race.uncertain), race.second.state(race.uncertain))
            result.judge(RACE_UNORDERED_ACCESS, race.second.open_line, race.second.op, race.second.tid, states)
        return result

    def findings(self) -> list[Finding]:
        return self.result().findings


def _sync_names(access: int) -> str:
    return {READ: "DMA_BUF_SYNC_READ", WRITE: "DMA_BUF_SYNC_WRITE", READ | WRITE: "DMA_BUF_SYNC_RW"}.get(access, "0")


def _join(a: Clock, b: Clock) -> Clock:
    out = dict(a)
    for t, v in b.items():
        if out.get(t, 0) < v:
            out[t] = v
    return out


def _handle_ret(ret: Value) -> str | None:
    """The handle a creating call returned, or None when it failed (or returned nothing usable)."""
    try:
        value = normalize_ret(Returns.HANDLE, ret)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


# -- files -------------------------------------------------------------------------------------

def analyze(path: str, unobserved: Iterable[str] = (), fmt: str | None = None) -> RaceResult:
    """The coherency-race analysis of the trace at ``path`` (``-`` for stdin; gzip is recognised).

    Streams the file, validating each event as the checker does (``InputError`` on bad input).  ``unobserved``
    adds to the header's list (``dmaspec check --unobserved``): races are withheld when an op the analysis
    reads is among them.
    """
    analysis: RaceAnalysis | None = None
    profile = "latest"
    extra = frozenset(unobserved)
    unobserved = extra
    for item in read_events(path, fmt):
        if isinstance(item, Header):
            profile = item.profile or profile
            unobserved = item.unobserved | extra
            continue
        if analysis is None:
            analysis = RaceAnalysis(path, profile, unobserved)
        analysis.feed(item)
    if analysis is None:
        analysis = RaceAnalysis(path, profile, unobserved)
    result = analysis.result()
    return RaceResult(path, profile, analysis.events, list(analysis.races), analysis.windows, analysis.remembered(),
                      analysis.gaps, result)
