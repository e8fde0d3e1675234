"""Random schedules with hypothesis: an engine over the model, and a machine over the spec's own API.

Two ``hypothesis.stateful.RuleBasedStateMachine`` classes live here.

``explore`` (``dmaspec explore --engine hypothesis``) runs a machine over
the same ``checker.engines.model.Model`` the explicit explorer searches: its
one rule picks one of the moves the model allows and takes it.  A move that
breaks a rule, a state where the unfinished actors all sleep
(``LOCK-DEADLOCK``), and a finished state that breaks an end-of-trace
obligation each fail the run; hypothesis shrinks the schedule, and the
shrunk one becomes a ``Counterexample`` built like every other engine's
(``checker.counterexample.build``).  A rule once found is then treated as
the end of a path, and the search runs again for the others, until a run
finds nothing new.  Random testing never proves anything: with no
violation the verdict is ``bounded``, and the notes say how many schedules
were tried.  The run is seeded (seed 0 unless told), so it is reproducible.

``SpecMachine`` is for the test suite: it makes dma-buf calls as a careful
importer, exporter and process would (export, references, fds, attach,
map and unmap under the reservation lock, CPU access brackets, vmap, mmap
with ``DMA_BUF_IOCTL_SYNC``...), appending each as a canonical event to a
trace that the reference interpreter and the compiled executor must both
find clean after every step (leaks are checked at teardown, against the
leaks the machine predicts).  Its ``break_*`` rules each make one mistake
on a copy of the trace and state the rule a reader of ``spec.rules``
expects it to break; the machine asserts that the compiled executor, and
the interpreter, flag exactly that rule at that event.

What this module does not do: prove anything, or explore past an error
(a path ends at its first broken rule, as in the explicit explorer).

Example
-------
>>> from checker.engines.stateful import explore
>>> from spec.configs import config, scenario
>>> r = explore(scenario("rfc-2012").config, examples=100, seed=1)
>>> r.verdict, [c.rule for c in r.counterexamples], r.seed
('violated', ['LOCK-DEADLOCK'], 1)
>>> explore(config("tiny"), examples=20).verdict
'bounded'
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

try:
    from hypothesis import HealthCheck, Phase, Verbosity, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st
    from hypothesis.reporting import with_reporter
    from hypothesis.stateful import (
        Bundle,
        MultipleResults,
        RuleBasedStateMachine,
        invariant,
        multiple,
        precondition,
        rule,
        run_state_machine_as_test,
    )
except ImportError as e:  # pragma: no cover - hypothesis is a test dependency
    raise ImportError("the hypothesis engine needs the hypothesis package (pip install hypothesis)") from e

from checker.core import Counterexample, Exploration, Finding
from checker.counterexample import build
from checker.engines.interpreter import Interpreter
from checker.engines.model import Model, State, Transition
from checker.engines.runtime import CompiledExecutor
from checker.trace import FORMAT, FORMAT_VERSION, validate
from spec import kernel as K
from spec import rules as R
from spec.lang import Config, Profile
from spec.profiles import profile as find_profile

DEFAULT_EXAMPLES = 200
DEFAULT_SEED = 0


# --------------------------------------------------------------------------------------------------------
# The engine: random schedules of a configuration's model
# --------------------------------------------------------------------------------------------------------


class _Found(Exception):
    """A schedule broke ``rules``: after the moves of ``path``, or (``end``) in the state it reached."""

    def __init__(self, rules: tuple[str, ...], path: tuple[Transition, ...], end: State | None) -> None:
        super().__init__(", ".join(rules))
        self.rules = rules
        self.path = path
        self.end = end


@dataclass
class _Tally:
    examples: int = 0
    steps: int = 0
    longest: int = 0
    ran: set[tuple[int, int]] = field(default_factory=set)


class _Moves:
    """``model.moves``, remembered: random schedules come back to the same states again and again."""

    LIMIT = 1 << 16

    def __init__(self, model: Model) -> None:
        self.model = model
        self.known: dict[State, list[Transition]] = {}

    def __call__(self, state: State) -> list[Transition]:
        moves = self.known.get(state)
        if moves is None:
            moves = self.model.moves(state)
            if len(self.known) < self.LIMIT:
                self.known[state] = moves
        return moves


def _schedule_machine(model: Model, bound: int, ignore: frozenset[str], tally: _Tally,
                      moves_of: _Moves) -> type[RuleBasedStateMachine]:
    """A machine that takes one of ``model``'s moves per step, up to ``bound`` moves; ``ignore``d rules end a path
    quietly (they were found already)."""

    class ScheduleMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            tally.examples += 1
            self.state = model.initial()
            self.path: list[Transition] = []
            self.next: list[Transition] = moves_of(self.state)
            self.over = False
            self.checked = False

        @rule(data=st.data())
        def move(self, data: st.DataObject) -> None:
            if self.over or len(self.path) >= bound:
                return
            t = self.next[data.draw(st.integers(0, len(self.next) - 1), label="move")]
            tally.steps += 1
            tally.ran.add((t.actor, self.state.pcs[t.actor]))
            self.path.append(t)
            tally.longest = max(tally.longest, len(self.path))
            if t.broken:
                self.over = True
                new = tuple(r for r in dict.fromkeys(t.broken) if r not in ignore)
                if new:
                    raise _Found(new, tuple(self.path), None)
                return
            self.state = t.target
            self.next = moves_of(self.state)
            self.checked = False

        @invariant()
        def settled(self) -> None:
            """A state no actor can leave is finished (its obligations are checked) or deadlocked."""
            if self.checked or self.over:
                return
            self.checked = True
            if self.next:
                return
            self.over = True
            rules = tuple(dict.fromkeys(model.end(self.state))) if model.finished(self.state) else (R.LOCK_DEADLOCK,)
            new = tuple(r for r in rules if r not in ignore)
            if new:
                raise _Found(new, tuple(self.path), self.state)

    ScheduleMachine.__name__ = ScheduleMachine.__qualname__ = f"Schedules_{model.config.name.replace('-', '_')}"
    return ScheduleMachine


def _settings(examples: int, steps: int) -> settings:
    return settings(max_examples=examples, stateful_step_count=max(1, steps), deadline=None, database=None,
                    derandomize=False, suppress_health_check=list(HealthCheck), phases=(Phase.generate, Phase.shrink),
                    report_multiple_bugs=False, verbosity=Verbosity.quiet, print_blob=False)


def _run(machine: type[RuleBasedStateMachine], options: settings, seed: int) -> _Found | None:
    """Run ``machine``; the (shrunk) schedule that failed it, if one did."""
    seeded = hypothesis_seed(seed)(machine)
    try:
        with with_reporter(lambda _text: None):
            run_state_machine_as_test(seeded, settings=options)
    except _Found as found:
        return found
    return None


def explore(config: Config, *, profile: Profile | None = None, depth: int | None = None, examples: int | None = None,
            seed: int | None = None) -> Exploration:
    """Run ``examples`` random schedules (per round) of ``config`` of up to ``depth`` moves; seeded by ``seed``."""
    model = Model(config, profile)
    bound = config.depth if depth is None else depth
    budget = DEFAULT_EXAMPLES if examples is None else max(1, examples)
    used_seed = DEFAULT_SEED if seed is None else seed
    result = Exploration("hypothesis", config.name, model.profile.name, bound, seed=used_seed)
    tally = _Tally()
    options = _settings(budget, bound)
    found: dict[str, Counterexample] = {}
    moves_of = _Moves(model)
    start = time.perf_counter()
    rounds = 0
    while True:
        rounds += 1
        failure = _run(_schedule_machine(model, bound, frozenset(found), tally, moves_of), options, used_seed)
        if failure is None:
            break
        for rule_id in failure.rules:
            found[rule_id] = build(model, failure.path, rule_id, "hypothesis", end=failure.end, seed=used_seed)
    result.elapsed = time.perf_counter() - start
    result.states = tally.examples
    result.transitions = tally.steps
    result.depth_reached = tally.longest
    result.counterexamples = sorted(found.values(), key=lambda c: (len(c.events), c.rule))
    result.unreached = [f"{model.actor_name(i)}: {st_.op} (step {pc + 1})" for i, pc, st_ in model.steps()
                        if (i, pc) not in tally.ran]
    if result.counterexamples:
        result.verdict = "violated"
        result.notes.append(f"{rounds} round(s) of up to {budget} random schedules, each of up to {bound} moves; "
                            "each rule found is shrunk to a short schedule, not necessarily the shortest")
    else:
        result.verdict = "bounded"
        result.notes.append(f"{tally.examples} random schedules of up to {bound} moves found no violation; "
                            "this is not a proof (dmaspec explore --engine explicit searches them all)")
    return result


# --------------------------------------------------------------------------------------------------------
# The spec machine: correct calls, deliberate mistakes, and what the checker says about them
# --------------------------------------------------------------------------------------------------------

TID = PID = 1
DIRECTIONS = ("DMA_BIDIRECTIONAL", "DMA_TO_DEVICE", "DMA_FROM_DEVICE")
SYNC_FLAGS = (K.SYNC_READ, K.SYNC_WRITE, K.SYNC_RW)
ACCESS_BITS = {"read": K.SYNC_READ, "write": K.SYNC_WRITE, "rw": K.SYNC_RW}
SIZE = 2 * K.PAGE_SIZE
MAX_LIVE_BUFFERS = 2  # few buffers, so that steps go into using them rather than making more
EventDict = dict[str, Any]


@dataclass
class _Buf:
    handle: str
    kref: int = 1  # references kernel code (the machine) holds
    fds: set[int] = field(default_factory=set)
    vmas: set[str] = field(default_factory=set)
    atts: set[str] = field(default_factory=set)  # live attachments
    vmaps: int = 0
    vaddr: str = ""
    cpu: Counter[str] = field(default_factory=Counter)  # open begin_cpu_access brackets, by direction
    cpu_failed: bool = False  # the last begin_cpu_access failed
    sync: int = 0  # read/write flags of the open SYNC START (0: none)
    live: bool = True

    @property
    def refs(self) -> int:
        return self.kref + len(self.fds) + len(self.vmas)


@dataclass
class _Att:
    handle: str
    buf: str
    dynamic: bool
    maps: set[str] = field(default_factory=set)
    pins: int = 0
    live: bool = True


@dataclass
class _Map:
    handle: str
    att: str
    direction: str
    live: bool = True


class SpecMachine(RuleBasedStateMachine):
    """One thread (tid 1 of process 1) using the dma-buf API on the ``PROFILE`` kernel; see the module docstring.

    The correct rules do nothing when the object drawn is in no state for
    the call (a released buffer, a detached attachment...): a bundle keeps
    every handle ever made, so the mistakes have something to use too.
    """

    PROFILE = "latest"
    buffers = Bundle("buffers")
    attachments = Bundle("attachments")
    mappings = Bundle("mappings")
    fds = Bundle("fds")
    vmas = Bundle("vmas")

    def __init__(self) -> None:
        super().__init__()
        self.profile = find_profile(self.PROFILE)
        self.file = "spec-machine.jsonl"
        self.trace: list[EventDict] = []
        self.it = Interpreter(self.profile, self.file)
        self.ex = CompiledExecutor(self.profile, self.file)
        self.bufs: dict[str, _Buf] = {}
        self.atts: dict[str, _Att] = {}
        self.maps: dict[str, _Map] = {}
        self.open_fds: dict[int, str] = {}
        self.live_vmas: dict[str, str] = {}
        self.locked_ever: set[str] = set()  # reservation objects the trace has shown locked
        self.held = ""  # the buffer whose reservation lock the thread holds (one at most: no acquire context)
        self.made = 0
        self.probes: Counter[str] = Counter()  # mistakes made, by the rule they break (for the tests)
        self.failed = False

    # -- events -----------------------------------------------------------------------------------------

    def _new(self, prefix: str) -> str:
        self.made += 1
        return f"{prefix}.{self.made}"

    @staticmethod
    def _event(op: str, ret: object = None, kind: str = "call", **args: object) -> EventDict:
        ev: EventDict = {"op": op}
        if kind != "call":
            ev["kind"] = kind
        ev.update({"tid": TID, "pid": PID, "args": args})
        if ret is not None:
            ev["ret"] = ret
        return ev

    def _emit(self, *events: EventDict) -> None:
        """Append ``events`` to the trace, and feed them to both engines."""
        for ev in events:
            if ev["op"] == "dma_resv_lock":
                self.locked_ever.add(ev["args"]["obj"])
            self.trace.append(ev)
            line = len(self.trace) + 1  # line 1 is the header
            self.it.feed(validate(dict(ev), self.file, line))
            self.ex.run(io.BytesIO(orjson.dumps(ev) + b"\n"), first_line=line - 1)

    def _expect(self, ok: bool, message: str) -> None:
        if not ok:
            self.failed = True
            raise AssertionError(message)

    def _locked(self, b: str, *calls: EventDict) -> list[EventDict]:
        """``calls`` under ``b``'s reservation lock: taken and dropped around them unless already held."""
        if self.held == b:
            return list(calls)
        return [self._event("dma_resv_lock", 0, obj=b), *calls, self._event("dma_resv_unlock", obj=b)]

    def _can_lock(self, b: str) -> bool:
        return self.held in ("", b)

    # -- the trace as a file -------------------------------------------------------------------------------

    def _bytes(self, events: Iterable[EventDict]) -> bytes:
        head = {"format": FORMAT, "version": FORMAT_VERSION, "profile": self.PROFILE}
        return b"".join(orjson.dumps(e) + b"\n" for e in [head, *events])

    def _replay(self, events: list[EventDict], *, leaks: bool) -> tuple[list[Finding], list[Finding]]:
        """The compiled executor's findings on ``events`` as a whole trace, and the interpreter's."""
        from checker.api import check_stream  # local: checker.api pulls in the readers

        compiled = check_stream(io.BytesIO(self._bytes(events)), self.file, engine="compiled", check_leaks=leaks)
        reference = check_stream(io.BytesIO(self._bytes(events)), self.file, engine="interpreter", check_leaks=leaks)
        return compiled.findings, reference.findings

    def _mistake(self, predicted: tuple[str, ...], *events: EventDict) -> None:
        """Replay the trace, then ``events`` (setup calls, then the mistake): the rules ``predicted`` break at the
        last event, and nothing else breaks anywhere."""
        probe = self.trace + list(events)
        line = len(probe) + 1
        compiled, reference = self._replay(probe, leaks=False)
        got = sorted((f.rule, f.line) for f in compiled)
        self._expect(got == sorted((r, line) for r in predicted),
                     f"{events[-1]['op']}: predicted {list(predicted)} at line {line}, the compiled executor says "
                     f"{got}")
        self._expect([f.key() for f in compiled] == [f.key() for f in reference],
                     f"{events[-1]['op']}: the interpreter disagrees with the compiled executor")
        for r in predicted:
            self.probes[r] += 1

    # -- export, references, fds -------------------------------------------------------------------------

    def _buf(self, b: str) -> _Buf:
        return self.bufs[b]

    def _may_drop(self, buf: _Buf) -> bool:
        """Dropping one reference leaves the buffer alive, or releases it with nothing still using it."""
        return buf.refs > 1 or not (buf.atts or buf.vmaps or sum(buf.cpu.values()))

    def _dropped(self, buf: _Buf) -> None:
        if buf.refs == 0:
            buf.live = False

    @precondition(lambda self: sum(b.live for b in self.bufs.values()) < MAX_LIVE_BUFFERS)
    @rule(target=buffers)
    def export(self) -> str:
        b = self._new("buf")
        self._emit(self._event("dma_buf_export", b, exp_name="spec-machine", size=SIZE))
        self.bufs[b] = _Buf(b)
        return b

    @rule(b=buffers)
    def get(self, b: str) -> None:
        buf = self._buf(b)
        if buf.live and buf.kref > 0:
            self._emit(self._event("get_dma_buf", dmabuf=b))
            buf.kref += 1

    @rule(b=buffers)
    def put(self, b: str) -> None:
        buf = self._buf(b)
        if buf.live and buf.kref > 0 and self.held != b and self._may_drop(buf):
            self._emit(self._event("dma_buf_put", dmabuf=b))
            buf.kref -= 1
            self._dropped(buf)

    @rule(target=fds, b=buffers)
    def fd(self, b: str) -> int | MultipleResults[int]:
        """dma_buf_fd() moves one of the caller's references into a new fd (the lowest free one)."""
        buf = self._buf(b)
        if not (buf.live and buf.kref > 0 and self.held != b):
            return multiple()
        fd = next(n for n in range(3, 1 << 16) if n not in self.open_fds)
        self._emit(self._event("dma_buf_fd", fd, dmabuf=b, flags=K.O_CLOEXEC))
        buf.kref -= 1
        buf.fds.add(fd)
        self.open_fds[fd] = b
        return fd

    @rule(fd=fds)
    def close(self, fd: int) -> None:
        b = self.open_fds.get(fd)
        if b is None:
            return
        buf = self._buf(b)
        if buf.sync and len(buf.fds) == 1:
            return  # the last fd must end the SYNC bracket first
        if self._may_drop(buf):
            self._emit(self._event("close", 0, kind="syscall", fd=fd))
            buf.fds.discard(fd)
            del self.open_fds[fd]
            self._dropped(buf)

    # -- userspace mmap and SYNC ----------------------------------------------------------------------------

    @rule(target=vmas, fd=fds)
    def mmap(self, fd: int) -> str | MultipleResults[str]:
        b = self.open_fds.get(fd)
        if b is None:
            return multiple()
        addr = f"0x7f{self.made + 1:06x}000"
        self.made += 1
        self._emit(self._event("mmap", addr, kind="syscall", fd=fd, length=SIZE))
        self._buf(b).vmas.add(addr)
        self.live_vmas[addr] = b
        return addr

    @rule(addr=vmas)
    def munmap(self, addr: str) -> None:
        b = self.live_vmas.get(addr)
        if b is None or not self._may_drop(self._buf(b)):
            return
        self._emit(self._event("munmap", 0, kind="syscall", addr=addr, length=SIZE))
        buf = self._buf(b)
        buf.vmas.discard(addr)
        del self.live_vmas[addr]
        self._dropped(buf)

    def _sync(self, fd: int, flags: int) -> EventDict:
        return self._event("ioctl", 0, kind="syscall", fd=fd, cmd="DMA_BUF_IOCTL_SYNC", flags=flags)

    @rule(fd=fds, flags=st.sampled_from(SYNC_FLAGS))
    def sync_start(self, fd: int, flags: int) -> None:
        b = self.open_fds.get(fd)
        if b is not None and not self._buf(b).sync:
            self._emit(self._sync(fd, K.SYNC_START | flags))
            self._buf(b).sync = flags

    @rule(fd=fds)
    def sync_end(self, fd: int) -> None:
        b = self.open_fds.get(fd)
        if b is not None and self._buf(b).sync:
            self._emit(self._sync(fd, K.SYNC_END | self._buf(b).sync))
            self._buf(b).sync = 0

    @rule(addr=vmas, access=st.sampled_from(sorted(ACCESS_BITS)))
    def access(self, addr: str, access: str) -> None:
        b = self.live_vmas.get(addr)
        if b is not None and ACCESS_BITS[access] & ~self._buf(b).sync == 0:
            self._emit(self._event("mmap_access", kind="annotation", addr=addr, access=access))

    # -- the reservation lock -------------------------------------------------------------------------------

    @rule(b=buffers)
    def lock(self, b: str) -> None:
        buf = self._buf(b)
        if not self.held and buf.live and buf.kref > 0:
            self._emit(self._event("dma_resv_lock", 0, obj=b))
            self.held = b

    @rule()
    def unlock(self) -> None:
        if self.held:
            self._emit(self._event("dma_resv_unlock", obj=self.held))
            self.held = ""

    # -- attachments and mappings ----------------------------------------------------------------------------

    @rule(target=attachments, b=buffers, dynamic=st.booleans())
    def attach(self, b: str, dynamic: bool) -> str | MultipleResults[str]:
        buf = self._buf(b)
        if not (buf.live and buf.kref > 0 and self.held != b):
            return multiple()
        a = self._new("att")
        if dynamic:
            self._emit(self._event("dma_buf_dynamic_attach", a, dmabuf=b, dev=f"dev{self.made}",
                                   importer_ops=f"ops.{a}"))
        else:
            self._emit(self._event("dma_buf_attach", a, dmabuf=b, dev=f"dev{self.made}"))
        self.atts[a] = _Att(a, b, dynamic)
        buf.atts.add(a)
        return a

    @rule(a=attachments)
    def detach(self, a: str) -> None:
        att = self.atts.get(a)
        if att is not None and att.live and not att.maps and not att.pins and self.held != att.buf:
            self._emit(self._event("dma_buf_detach", dmabuf=att.buf, attach=a))
            att.live = False
            self._buf(att.buf).atts.discard(a)

    @rule(target=mappings, a=attachments, direction=st.sampled_from(DIRECTIONS), unlocked=st.booleans())
    def map(self, a: str, direction: str, unlocked: bool) -> str | MultipleResults[str]:
        att = self.atts.get(a)
        if att is None or not att.live:
            return multiple()
        s = f"sgt.{self.made + 1}"
        if unlocked and self.held != att.buf:
            events = [self._event("dma_buf_map_attachment_unlocked", s, attach=a, direction=direction)]
        elif self._can_lock(att.buf):
            events = self._locked(att.buf, self._event("dma_buf_map_attachment", s, attach=a, direction=direction))
        else:
            return multiple()
        self.made += 1
        self._emit(*events)
        self.maps[s] = _Map(s, a, direction)
        att.maps.add(s)
        return s

    @rule(s=mappings, unlocked=st.booleans())
    def unmap(self, s: str, unlocked: bool) -> None:
        m = self.maps.get(s)
        if m is None or not m.live:
            return
        att = self.atts[m.att]
        call = dict(attach=m.att, sg_table=s, direction=m.direction)
        if unlocked and self.held != att.buf:
            self._emit(self._event("dma_buf_unmap_attachment_unlocked", **call))
        elif self._can_lock(att.buf):
            self._emit(*self._locked(att.buf, self._event("dma_buf_unmap_attachment", **call)))
        else:
            return
        m.live = False
        att.maps.discard(s)

    @rule(a=attachments)
    def pin(self, a: str) -> None:
        att = self.atts.get(a)
        if att is not None and att.live and att.dynamic and self._can_lock(att.buf):
            self._emit(*self._locked(att.buf, self._event("dma_buf_pin", 0, attach=a)))
            att.pins += 1

    @rule(a=attachments)
    def unpin(self, a: str) -> None:
        att = self.atts.get(a)
        if att is not None and att.pins and self._can_lock(att.buf):
            self._emit(*self._locked(att.buf, self._event("dma_buf_unpin", attach=a)))
            att.pins -= 1

    def _fixed(self, buf: _Buf) -> bool:
        """Some attachment fixes the backing storage in place: pinned, or mapped by a static importer."""
        return any(self.atts[a].pins or (self.atts[a].maps and not self.atts[a].dynamic) for a in buf.atts)

    @rule(b=buffers)
    def move(self, b: str) -> None:
        """The exporter moves the backing storage, which it may do while nothing fixes it in place."""
        buf = self._buf(b)
        if buf.live and buf.kref > 0 and self._can_lock(b) and not self._fixed(buf):
            self._emit(*self._locked(b, self._event("dma_buf_move_notify", dmabuf=b)))

    # -- kernel CPU access and vmap ------------------------------------------------------------------------------

    @rule(b=buffers, direction=st.sampled_from(DIRECTIONS), fails=st.booleans())
    def begin_cpu(self, b: str, direction: str, fails: bool) -> None:
        """begin_cpu_access(); when it fails (-EINTR) the caller must not end it."""
        buf = self._buf(b)
        if not (buf.live and buf.kref > 0 and self.held != b):
            return
        self._emit(self._event("dma_buf_begin_cpu_access", -K.EINTR if fails else 0, dmabuf=b, direction=direction))
        if fails:
            buf.cpu_failed = True
        else:
            buf.cpu[direction] += 1
            buf.cpu_failed = False

    @rule(b=buffers)
    def end_cpu(self, b: str) -> None:
        buf = self._buf(b)
        open_ = sorted(d for d, n in buf.cpu.items() if n)
        if open_ and self.held != b:
            self._emit(self._event("dma_buf_end_cpu_access", 0, dmabuf=b, direction=open_[0]))
            buf.cpu[open_[0]] -= 1

    @staticmethod
    def _cpu_granted(buf: _Buf) -> int:
        """The accesses (read, write bits) the open brackets allow: the CPU writes what goes to the device and
        reads what came from it."""
        allows = {"DMA_BIDIRECTIONAL": K.SYNC_RW, "DMA_TO_DEVICE": K.SYNC_WRITE, "DMA_FROM_DEVICE": K.SYNC_READ}
        granted = 0
        for d, n in buf.cpu.items():
            if n:
                granted |= allows[d]
        return granted

    @rule(b=buffers, access=st.sampled_from(sorted(ACCESS_BITS)))
    def cpu_access(self, b: str, access: str) -> None:
        """Kernel code reads or writes the buffer inside a bracket whose direction allows it."""
        buf = self._buf(b)
        granted = self._cpu_granted(buf)
        if buf.live and granted and ACCESS_BITS[access] & ~granted == 0:
            self._emit(self._event("cpu_access", kind="annotation", dmabuf=b, access=access))

    @rule(b=buffers, unlocked=st.booleans())
    def vmap(self, b: str, unlocked: bool) -> None:
        """dma_buf_vmap(); the core calls the exporter's vmap for the first only, and every caller gets its address."""
        buf = self._buf(b)
        if not (buf.live and buf.kref > 0):
            return
        addr = buf.vaddr or f"vaddr.{self.made + 1}"
        events = [self._event("vmap", kind="callback", dmabuf=b)] if not buf.vmaps else []
        if unlocked and self.held != b:
            events.append(self._event("dma_buf_vmap_unlocked", addr, dmabuf=b))
        elif self._can_lock(b):
            events = self._locked(b, *events, self._event("dma_buf_vmap", addr, dmabuf=b))
        else:
            return
        self.made += 1
        self._emit(*events)
        buf.vmaps += 1
        buf.vaddr = addr

    @rule(b=buffers, unlocked=st.booleans())
    def vunmap(self, b: str, unlocked: bool) -> None:
        buf = self._buf(b)
        if not buf.vmaps:
            return
        events = [self._event("vunmap", kind="callback", dmabuf=b)] if buf.vmaps == 1 else []
        if unlocked and self.held != b:
            events.append(self._event("dma_buf_vunmap_unlocked", dmabuf=b, map=buf.vaddr))
        elif self._can_lock(b):
            events = self._locked(b, *events, self._event("dma_buf_vunmap", dmabuf=b, map=buf.vaddr))
        else:
            return
        self._emit(*events)
        buf.vmaps -= 1
        if not buf.vmaps:
            buf.vaddr = ""

    # -- mistakes: each states the rule it breaks -----------------------------------------------------------------

    def _dead_buffer(self, b: str) -> tuple[str, ...]:
        return () if self._buf(b).live else (R.REF_USE_AFTER_RELEASE,)

    def _release_lock(self) -> list[EventDict]:
        """Setup for a mistake that needs the thread to hold no reservation lock."""
        return [self._event("dma_resv_unlock", obj=self.held)] if self.held else []

    def _take_lock(self, b: str) -> list[EventDict]:
        """Setup for a mistake made under ``b``'s reservation lock."""
        if self.held == b:
            return []
        return [*self._release_lock(), self._event("dma_resv_lock", 0, obj=b)]

    @rule(s=mappings)
    def break_unmap_twice(self, s: str) -> None:
        m = self.maps.get(s)
        if m is None or m.live or not self.atts[m.att].live:
            return
        b = self.atts[m.att].buf
        self._mistake((R.MAP_DOUBLE_UNMAP,), *self._take_lock(b), self._event(
            "dma_buf_unmap_attachment", attach=m.att, sg_table=s, direction=m.direction))

    @rule(s=mappings, direction=st.sampled_from(DIRECTIONS))
    def break_unmap_direction(self, s: str, direction: str) -> None:
        m = self.maps.get(s)
        if m is None or not m.live or direction == m.direction:
            return
        b = self.atts[m.att].buf
        self._mistake((R.MAP_UNMAP_DIRECTION,), *self._take_lock(b), self._event(
            "dma_buf_unmap_attachment", attach=m.att, sg_table=s, direction=direction))

    @rule(a=attachments)
    def break_detach_while_mapped(self, a: str) -> None:
        att = self.atts.get(a)
        if att is None or not att.live or not att.maps:
            return
        predicted = (R.ATT_DETACH_MAPPED,) + ((R.ATT_DETACH_PINNED,) if att.pins else ())
        self._mistake(predicted, *self._release_lock(), self._event("dma_buf_detach", dmabuf=att.buf, attach=a))

    @rule(a=attachments)
    def break_detach_twice(self, a: str) -> None:
        att = self.atts.get(a)
        if att is None or att.live:
            return
        predicted = self._dead_buffer(att.buf) or (R.ATT_USE_AFTER_DETACH,)
        self._mistake(predicted, *self._release_lock(), self._event("dma_buf_detach", dmabuf=att.buf, attach=a))

    @rule(b=buffers)
    def break_put_one_too_many(self, b: str) -> None:
        """A put when the machine holds no reference of its own: the buffer is released, or every reference left
        belongs to an fd or a mapping."""
        buf = self._buf(b)
        if buf.kref:
            return
        predicted = self._dead_buffer(b) or (R.REF_PUT_UNOWNED,)
        self._mistake(predicted, *self._release_lock(), self._event("dma_buf_put", dmabuf=b))

    @rule(b=buffers)
    def break_put_last_while_attached(self, b: str) -> None:
        """The last reference dropped while attachments (or a vmap) remain."""
        buf = self._buf(b)
        if not (buf.live and buf.kref == 1 and buf.refs == 1 and (buf.atts or buf.vmaps)):
            return
        predicted = ((R.REF_RELEASE_VMAPPED,) if buf.vmaps else ()) + ((R.REF_RELEASE_ATTACHED,) if buf.atts else ())
        self._mistake(predicted, *self._release_lock(), self._event("dma_buf_put", dmabuf=b))

    @rule(b=buffers)
    def break_fd_unowned(self, b: str) -> None:
        buf = self._buf(b)
        if buf.live and not buf.kref:
            self._mistake((R.REF_FD_UNOWNED,), *self._release_lock(),
                          self._event("dma_buf_fd", 99, dmabuf=b, flags=K.O_CLOEXEC))

    @rule(b=buffers, direction=st.sampled_from(DIRECTIONS))
    def break_end_cpu_without_begin(self, b: str, direction: str) -> None:
        buf = self._buf(b)
        if sum(buf.cpu.values()):
            return
        predicted = self._dead_buffer(b) or (
            (R.CPU_END_AFTER_FAILED_BEGIN,) if buf.cpu_failed else (R.CPU_END_WITHOUT_BEGIN,))
        self._mistake(predicted, *self._release_lock(),
                      self._event("dma_buf_end_cpu_access", 0, dmabuf=b, direction=direction))

    @rule(b=buffers, direction=st.sampled_from(DIRECTIONS))
    def break_end_cpu_direction(self, b: str, direction: str) -> None:
        buf = self._buf(b)
        if not sum(buf.cpu.values()) or buf.cpu[direction]:
            return
        self._mistake((R.CPU_END_DIRECTION,), *self._release_lock(),
                      self._event("dma_buf_end_cpu_access", 0, dmabuf=b, direction=direction))

    @rule(b=buffers, access=st.sampled_from(sorted(ACCESS_BITS)))
    def break_cpu_access(self, b: str, access: str) -> None:
        """Kernel CPU access outside any bracket, or in a direction no open bracket announced."""
        buf = self._buf(b)
        if not buf.live:
            return
        granted = self._cpu_granted(buf)
        if not sum(buf.cpu.values()):
            predicted = (R.CPU_ACCESS_OUTSIDE,)
        elif ACCESS_BITS[access] & ~granted:
            predicted = (R.CPU_ACCESS_DIRECTION,)
        else:
            return
        self._mistake(predicted, self._event("cpu_access", kind="annotation", dmabuf=b, access=access))

    @rule(fd=fds)
    def break_sync_end_without_start(self, fd: int) -> None:
        b = self.open_fds.get(fd)
        if b is not None and not self._buf(b).sync:
            self._mistake((R.SYNC_END_WITHOUT_START,), self._sync(fd, K.SYNC_END | K.SYNC_RW))

    @rule(fd=fds, flags=st.sampled_from(SYNC_FLAGS))
    def break_sync_end_direction(self, fd: int, flags: int) -> None:
        b = self.open_fds.get(fd)
        if b is not None and self._buf(b).sync not in (0, flags):
            self._mistake((R.SYNC_END_DIRECTION,), self._sync(fd, K.SYNC_END | flags))

    @rule(fd=fds)
    def break_sync_start_twice(self, fd: int) -> None:
        b = self.open_fds.get(fd)
        if b is not None and self._buf(b).sync:
            self._mistake((R.SYNC_START_TWICE,), self._sync(fd, K.SYNC_START | K.SYNC_RW))

    @rule(addr=vmas, access=st.sampled_from(sorted(ACCESS_BITS)))
    def break_access_without_sync(self, addr: str, access: str) -> None:
        b = self.live_vmas.get(addr)
        if b is None:
            return
        granted = self._buf(b).sync
        if not granted:
            predicted = (R.MMAP_ACCESS_WITHOUT_SYNC,)
        elif ACCESS_BITS[access] & ~granted:
            predicted = (R.SYNC_ACCESS_DIRECTION,)
        else:
            return
        self._mistake(predicted, self._event("mmap_access", kind="annotation", addr=addr, access=access))

    @rule(a=attachments, direction=st.sampled_from(DIRECTIONS))
    def break_map_without_lock(self, a: str, direction: str) -> None:
        """Since 6.2 the importer holds the reservation lock for dma_buf_map_attachment()."""
        att = self.atts.get(a)
        if att is None or not att.live or not self._buf(att.buf).live:
            return
        self._mistake((R.LOCK_RESV_REQUIRED,), *self._release_lock(),
                      self._event("dma_buf_map_attachment", "sgt.bad", attach=a, direction=direction))

    @rule(a=attachments, direction=st.sampled_from(DIRECTIONS))
    def break_unlocked_under_lock(self, a: str, direction: str) -> None:
        """The _unlocked variant takes the reservation lock itself: calling it with the lock held."""
        att = self.atts.get(a)
        if att is None or not att.live or not self._buf(att.buf).live:
            return
        self._mistake((R.LOCK_RESV_FORBIDDEN,), *self._take_lock(att.buf),
                      self._event("dma_buf_map_attachment_unlocked", "sgt.bad", attach=a, direction=direction))

    @rule(b=buffers)
    def break_attach_under_lock(self, b: str) -> None:
        if self._buf(b).live:
            self._mistake((R.LOCK_RESV_FORBIDDEN,), *self._take_lock(b),
                          self._event("dma_buf_attach", "att.bad", dmabuf=b, dev="bad"))

    @rule(b=buffers)
    def break_vunmap_unbalanced(self, b: str) -> None:
        buf = self._buf(b)
        if buf.live and not buf.vmaps:
            self._mistake((R.VMAP_UNBALANCED,), *self._take_lock(b),
                          self._event("dma_buf_vunmap", dmabuf=b, map="vaddr.bad"))

    @rule(b=buffers)
    def break_vunmap_address(self, b: str) -> None:
        buf = self._buf(b)
        if buf.live and buf.vmaps:
            self._mistake((R.VMAP_ADDRESS,), *self._take_lock(b),
                          self._event("dma_buf_vunmap", dmabuf=b, map="vaddr.bad"))

    @rule(b=buffers)
    def break_unlock_not_held(self, b: str) -> None:
        """An unlock of a lock the thread does not hold.  Of a lock the trace never showed taken, the checker
        cannot tell: the trace may have begun with it held (the spec adopts it), so it predicts nothing."""
        if self.held != b:
            predicted = (R.LOCK_RESV_UNLOCK,) if b in self.locked_ever else ()
            self._mistake(predicted, self._event("dma_resv_unlock", obj=b))

    @rule()
    def break_lock_twice(self) -> None:
        if self.held:
            self._mistake((R.LOCK_RESV_RECURSIVE,), self._event("dma_resv_lock", 0, obj=self.held))

    @rule(b=buffers)
    def break_second_lock_without_ctx(self, b: str) -> None:
        if self.held and self.held != b and self._buf(b).live:
            self._mistake((R.RESV_MULTIPLE_WITHOUT_CTX,), self._event("dma_resv_lock", 0, obj=b))

    @rule(a=attachments)
    def break_pin_static(self, a: str) -> None:
        att = self.atts.get(a)
        if att is not None and att.live and not att.dynamic:
            self._mistake((R.DYN_PIN_STATIC,), *self._take_lock(att.buf), self._event("dma_buf_pin", 0, attach=a))

    @rule(a=attachments)
    def break_unpin_unpinned(self, a: str) -> None:
        att = self.atts.get(a)
        if att is not None and att.live and att.dynamic and not att.pins:
            self._mistake((R.DYN_UNPIN_UNPINNED,), *self._take_lock(att.buf), self._event("dma_buf_unpin", attach=a))

    @rule(b=buffers, locked=st.booleans())
    def break_move(self, b: str, locked: bool) -> None:
        """move_notify while something fixes the storage in place, or without the reservation lock."""
        buf = self._buf(b)
        if not buf.live:
            return
        fixed = tuple(R.DYN_MOVE_PINNED for a in sorted(buf.atts)
                      if self.atts[a].pins or (self.atts[a].maps and not self.atts[a].dynamic))
        if locked and fixed:
            self._mistake(fixed, *self._take_lock(b), self._event("dma_buf_move_notify", dmabuf=b))
        elif not locked:
            self._mistake((R.LOCK_MOVE_NOTIFY, *fixed), *self._release_lock(),
                          self._event("dma_buf_move_notify", dmabuf=b))

    # -- invariants and teardown ---------------------------------------------------------------------------------

    @invariant()
    def both_engines_find_nothing(self) -> None:
        self._expect(not self.ex.result.findings, f"the compiled executor flags a correct trace: "
                     f"{[(f.rule, f.line) for f in self.ex.result.findings]}")
        self._expect(not self.it.result.findings, f"the interpreter flags a correct trace: "
                     f"{[(f.rule, f.line) for f in self.it.result.findings]}")

    def predicted_leaks(self) -> set[str]:
        """What a reader of ``spec.actions.AT_END`` expects the end of the trace to report now: each leak at its
        innermost object (a mapping, not its attachment; an attachment, not its buffer's reference)."""
        out: set[str] = set()
        for buf in self.bufs.values():
            if buf.live and not buf.atts:
                if buf.vmaps:
                    out.add(R.VMAP_LEAK)
                elif buf.kref:
                    out.add(R.REF_LEAK)
            if sum(buf.cpu.values()):
                out.add(R.CPU_LEAK)
            if buf.sync:
                out.add(R.SYNC_LEAK)
        for att in self.atts.values():
            if att.live and not att.maps and self._buf(att.buf).live:
                out.add(R.ATT_LEAK)
            if att.live:
                out.update(R.MAP_LEAK for s in att.maps if self.maps[s].live)
        if self.held:
            out.add(R.LOCK_RESV_LEAK)
        return out

    def cleanup(self) -> None:
        """Release everything, in an order that breaks no rule."""
        self.unlock()
        for fd, b in sorted(self.open_fds.items()):
            if self._buf(b).sync:
                self.sync_end(fd)
        for b, buf in sorted(self.bufs.items()):
            while sum(buf.cpu.values()):
                self.end_cpu(b)
        for s, m in sorted(self.maps.items()):
            if m.live:
                self.unmap(s, unlocked=False)
        for a, att in sorted(self.atts.items()):
            while att.pins:
                self.unpin(a)
            self.detach(a)
        for b, buf in sorted(self.bufs.items()):
            while buf.vmaps:
                self.vunmap(b, unlocked=False)
        for fd in sorted(self.open_fds):
            self.close(fd)
        for addr in sorted(self.live_vmas):
            self.munmap(addr)
        for b, buf in sorted(self.bufs.items()):
            while buf.kref:
                self.put(b)
        self._expect(all(not buf.live for buf in self.bufs.values()), "cleanup left a buffer alive")

    def teardown(self) -> None:
        if self.failed:
            return  # a failure is being reported: do not replace it
        if self.trace:
            compiled, reference = self._replay(self.trace, leaks=True)
            line = len(self.trace) + 2
            self._expect({f.rule for f in compiled} == self.predicted_leaks() and all(f.line == line for f in compiled),
                         f"at the end: predicted leaks {sorted(self.predicted_leaks())}, the compiled executor says "
                         f"{sorted((f.rule, f.line) for f in compiled)}")
            self._expect([f.key() for f in compiled] == [f.key() for f in reference],
                         "at the end: the interpreter disagrees with the compiled executor")
        self.cleanup()
        self.both_engines_find_nothing()
        it, ex = self.it.finish(), self.ex.finish()
        self._expect(not it.findings and not ex.findings,
                     f"leaks after cleanup: {[(f.rule, f.line) for f in ex.findings or it.findings]}")


__all__ = ["DEFAULT_EXAMPLES", "DEFAULT_SEED", "SpecMachine", "explore"]
