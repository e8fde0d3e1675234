"""The records every engine produces and every reporter renders.

A ``Finding`` is one broken rule at one event, with the state of the objects
involved.  A ``Result`` is what checking one trace gives: findings, what was
withheld because the trace cannot prove it, what was not about dma-buf, and
the gaps.  ``InputError`` is bad input, with file and line.  Nothing here
prints.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field

from spec import SPEC
from spec.analysis import narrowed_rules
from spec.lang import Profile, Value

_RULES = {r.id: r for r in SPEC.rules}

# How many objects at rest (released, unlocked, signalled...) each engine
# remembers per table, so that a use after release is recognised; older ones
# are forgotten (a later use of such a handle is an unknown object, never a
# false finding).  This bounds the model's memory whatever the trace's length.
TOMBSTONES_PER_TABLE = 1 << 14


class InputError(Exception):
    """Bad input: the file, the line (0 for the file as a whole) and what was expected."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")
        self.file = file
        self.line = line
        self.message = message


@dataclass(frozen=True)
class ObjectState:
    """An object a finding is about, as the model had it when the rule broke."""

    table: str
    key: Value
    present: bool
    fields: tuple[tuple[str, Value], ...]
    born: int  # line of the event that created it (0: not in the trace)
    last: int  # line of the last event that changed it
    uncertain: bool

    def describe(self) -> str:
        state = ", ".join(f"{k}={_show(v)}" for k, v in self.fields if k != "live")
        if not self.present:
            return f"{self.table} {_show(self.key)}: never seen in the trace"
        alive = "live" if dict(self.fields).get("live", True) else "released"
        return f"{self.table} {_show(self.key)} ({alive}): {state}"


def _show(v: Value) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_show(x) for x in v) + ")"
    return repr(v) if isinstance(v, str) else str(v)


@dataclass(frozen=True)
class Finding:
    rule: str
    line: int  # the event at which the rule broke (the last line + 1 for end-of-trace obligations)
    op: str
    tid: int | None
    objects: tuple[ObjectState, ...]
    fingerprint: str = ""  # stable across runs: see fingerprints()
    detail: str = ""  # what an analysis adds: a predicted schedule and where its witness trace is

    @property
    def related_lines(self) -> tuple[int, ...]:
        """Lines of the events that made the objects what they are, in trace order."""
        lines = {o.born for o in self.objects if o.born} | {o.last for o in self.objects if o.last}
        lines.discard(self.line)
        return tuple(sorted(lines))

    def key(self) -> tuple[str, int, tuple[tuple[str, Value], ...]]:
        """What two engines must agree on."""
        return (self.rule, self.line, tuple((o.table, o.key) for o in self.objects))


@dataclass
class Result:
    """The outcome of checking one trace."""

    file: str
    profile: str
    events: int = 0
    findings: list[Finding] = field(default_factory=list)
    withheld: Counter[str] = field(default_factory=Counter)  # rule -> findings not reported: uncertain objects
    undecided: Counter[str] = field(default_factory=Counter)  # rule -> would-be findings of narrowed rules
    ignored: Counter[str] = field(default_factory=Counter)  # reason -> events not about dma-buf
    gaps: list[int] = field(default_factory=list)  # lines of lost-event markers
    reused: int = 0  # handles returned while the model had them live (a missed release)
    errors: list[InputError] = field(default_factory=list)
    narrowed: dict[str, tuple[str, ...]] = field(default_factory=dict)  # rule -> unobserved ops it needs
    leaks_checked: bool = True
    suppressed: int = 0  # findings known from a baseline, not reported
    analyses: list[str] = field(default_factory=list)  # whole-trace analyses that ran too (their CLI flags)
    source_format: str = "dmaspec"  # the recording's format, when it was converted (checker.readers)
    conversion_notes: list[str] = field(default_factory=list)  # what the reader says about the conversion
    joined: tuple[str, ...] = ()  # the recordings joined into this trace (dmaspec check --join), in that order
    join_options: tuple[str, ...] = ()  # the options that reproduce the join (--offset)
    origins: dict[int, tuple[str, int]] = field(default_factory=dict)  # joined: line -> (recording, its line)
    _fingerprint_counts: Counter[str] = field(default_factory=Counter, repr=False)

    @property
    def inconclusive(self) -> bool:
        return bool(self.withheld) or bool(self.errors)

    def judge(self, rule: str, line: int, op: str, tid: int | None, states: tuple[ObjectState, ...],
              detail: str = "") -> None:
        """Record a broken rule: a finding, or not reported when the trace cannot prove it.

        A rule that depends on an op the trace does not record (``narrowed``)
        is not decided by this trace at all: its would-be findings are counted
        as ``undecided``, and the report says which ops it lacks.  A finding
        about an uncertain object (adopted mid-trace, or alive across a gap)
        is ``withheld``, which makes the run inconclusive.  Both engines
        report through here.
        """
        if rule in self.narrowed:
            self.undecided[rule] += 1
            return
        if any(s.uncertain for s in states):
            self.withheld[rule] += 1
            return
        roles = "|".join(o.table for o in states)
        attrs = "|".join(f"{k}={v!r}" for o in states for k, v in sorted(o.fields) if k in STABLE_FIELDS)
        base = f"{rule}\0{op}\0{os.path.basename(self.file)}\0{roles}\0{attrs}"
        self._fingerprint_counts[base] += 1
        fingerprint = hashlib.sha256(f"{base}\0{self._fingerprint_counts[base]}".encode()).hexdigest()[:24]
        self.findings.append(Finding(rule, line, op, tid, states, fingerprint, detail))


# Object fields that are the same from run to run (names, sizes, directions), unlike pointers and times.
STABLE_FIELDS = frozenset({"exp_name", "dev", "size", "direction", "dynamic", "cloexec", "length"})


def fingerprints(result: Result) -> list[str]:
    """The stable fingerprint of each finding of ``result``, in order (given when the finding was made).

    Built from what does not change between two runs of the same program: the
    rule, the operation, the trace's file name, the kinds (roles) of the objects
    involved and their run-stable attributes (exporter name, device, size,
    direction), and how many findings with all of that came before it in the
    trace; never from raw pointers, fd numbers, pids or times.

    >>> import io
    >>> from checker.api import check_stream
    >>> r = check_stream(io.BytesIO(b'{"op":"dma_buf_export","tid":1,"args":{"exp_name":"i915"},"ret":"0xffff1"}\\n'
    ...                             b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"0xffff1"}}\\n'
    ...                             b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"0xffff1"}}\\n'), "run1/app.jsonl")
    >>> r2 = check_stream(io.BytesIO(b'{"op":"dma_buf_export","tid":9,"args":{"exp_name":"i915"},"ret":"0xabcd"}\\n'
    ...                              b'{"op":"dma_buf_put","tid":9,"args":{"dmabuf":"0xabcd"}}\\n'
    ...                              b'{"op":"dma_buf_put","tid":9,"args":{"dmabuf":"0xabcd"}}\\n'), "run2/app.jsonl")
    >>> fingerprints(r) == fingerprints(r2)
    True
    """
    return [f.fingerprint for f in result.findings]


def new_result(file: str, profile: Profile, unobserved: frozenset[str], check_leaks: bool) -> Result:
    """The empty result of checking ``file``, with the rules the trace cannot decide."""
    narrowed = narrowed_rules(unobserved) if unobserved else {}
    return Result(file, profile.name, leaks_checked=check_leaks,
                  narrowed={r: ops for r, ops in narrowed.items() if profile.admits_rule(_RULES[r])})


@dataclass(frozen=True)
class Counterexample:
    """A schedule that breaks a rule, whichever engine found it: the one record every reporter renders.

    ``events`` are canonical trace events, in order; ``schedule`` names the
    actor that made each; ``states`` holds, after each event, the state of
    the objects the finding is about.  For a deadlock (``LOCK-DEADLOCK``),
    ``waiting`` holds the call each sleeping thread is in.  Written out
    (``checker.counterexample.trace_bytes``) it is a trace that the compiled
    executor replays to the same rule.
    """

    finding: Finding
    events: tuple[dict[str, object], ...]
    schedule: tuple[str, ...]
    states: tuple[tuple[ObjectState, ...], ...]
    engine: str
    config: str
    profile: str
    waiting: tuple[dict[str, object], ...] = ()
    seed: int | None = None

    @property
    def rule(self) -> str:
        return self.finding.rule


@dataclass
class Exploration:
    """What exploring a configuration gives: a verdict and exactly what it covers.

    ``verdict`` is ``violated`` (counterexamples), ``bounded`` (no violation
    within ``depth`` moves, but deeper states exist), ``holds`` (every
    reachable state was explored: no violation at any depth) or ``unknown``
    (a solver gave up, a time or state limit was hit: nothing is proved).
    """

    engine: str
    config: str
    profile: str
    depth: int
    verdict: str = "bounded"
    states: int = 0  # distinct states (after symmetry reduction, when used)
    transitions: int = 0
    depth_reached: int = 0
    elapsed: float = 0.0
    counterexamples: list[Counterexample] = field(default_factory=list)
    unreached: list[str] = field(default_factory=list)  # steps no explored path made (a vacuity warning)
    notes: list[str] = field(default_factory=list)
    seed: int | None = None
    timeout: float | None = None
    symmetry: bool = False
    graph: object | None = None  # the explicit explorer's networkx.DiGraph, when kept

    @property
    def exit_status(self) -> int:
        return {"violated": 1, "unknown": 3}.get(self.verdict, 0)
