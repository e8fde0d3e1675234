"""Conformance: the return values the spec predicts, against those a real kernel gave.

Some return values are the dma-buf core's to decide, whatever the caller or
the exporter does: DMA_BUF_IOCTL_SYNC with flags outside the valid mask is
``-EINVAL``, an unknown ioctl is ``-ENOTTY``, ``llseek`` answers only size
discovery, a mapping past the end of the buffer is refused, a second vmap
returns the cached address, a closed fd is ``-EBADF``.  The spec says each of
these as an :class:`~spec.lang.Outcome` of the action (its condition on the
state before the call, the value, a label, and the guarantee rule whose
promise it is); the explorers make calls return them.

On a trace recorded from a stock kernel (``dmaspec lab run``, or
``dmaspec check --conformance``) this analysis replays the trace through the
reference interpreter and, before each event, evaluates its action's
outcomes on the state so far.  The first outcome whose condition holds is the
spec's prediction; it is compared with the ``ret`` the kernel recorded.  A
disagreement is a defect of the spec, not of the driver:
``SPEC-KERNEL-DISAGREES``, with the prediction, the kernel's answer and the
outcome's label.  A guarantee rule (``CORE-*``) broken by such a trace is the
same kind of defect, and is reported the same way.

Nothing is predicted when the event has no return value, when the value the
spec would predict is unknown to the trace (the buffer's size, a vmap address
the probes did not read), or when the condition reads an argument the trace
did not record.

>>> import io, json, tempfile, os
>>> events = [{"op": "dma_buf_export", "tid": 1, "args": {"exp_name": "x", "size": 8192}, "ret": "0xb1"},
...           {"op": "dma_buf_fd", "tid": 1, "args": {"dmabuf": "0xb1", "flags": 524288}, "ret": 5},
...           {"op": "llseek", "kind": "syscall", "tid": 1, "args": {"fd": 5, "offset": 0, "whence": 2},
...            "ret": 8192},
...           {"op": "ioctl", "kind": "syscall", "tid": 1, "args": {"fd": 5, "cmd": "DMA_BUF_IOCTL_SYNC",
...            "flags": 8}, "ret": 0}]
>>> with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
...     _ = f.write("\\n".join(json.dumps(e) for e in events))
>>> c = analyze(f.name)
>>> [(row.label, row.agreed, row.disagreed) for row in c.rows]  # doctest: +NORMALIZE_WHITESPACE
[('SEEK_END with offset 0: the size', 1, 0),
 ('SYNC flags outside DMA_BUF_SYNC_VALID_FLAGS_MASK or without READ/WRITE', 0, 1)]
>>> [(f.rule, f.line) for f in c.result.findings]
[('SPEC-KERNEL-DISAGREES', 4)]
>>> os.unlink(f.name)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from checker.analysis.common import read_events
from checker.core import Finding, Result, new_result
from checker.engines.interpreter import Interpreter, evaluate
from checker.trace import Event, Header, event_ret, select
from spec import SPEC
from spec import profile as find_profile
from spec.kernel import ERRNO_NAMES
from spec.lang import Action, Kind, Outcome, Value
from spec.rules import SPEC_KERNEL_DISAGREES

_GUARANTEES = frozenset(r.id for r in SPEC.rules if r.kind is Kind.GUARANTEE)


@dataclass
class Mismatch:
    """One call where the kernel returned something other than the spec's prediction."""

    line: int
    op: str
    args: dict[str, Value]
    predicted: Value
    returned: Value


@dataclass
class Row:
    """One predicted outcome of one action: how often the kernel agreed, and its first disagreement."""

    action: str
    label: str
    rule: str
    agreed: int = 0
    disagreed: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)  # the first few

    @property
    def compared(self) -> int:
        return self.agreed + self.disagreed


MISMATCHES_KEPT = 5


@dataclass
class Conformance:
    """What one trace says about the spec: a row per predicted outcome met, and the findings."""

    file: str
    profile: str
    events: int
    rows: list[Row]
    result: Result

    @property
    def agreed(self) -> int:
        return sum(r.agreed for r in self.rows)

    @property
    def disagreed(self) -> int:
        return sum(r.disagreed for r in self.rows)


def show(v: Value) -> str:
    """A return value as a reader of kernel code writes it: ``-EINVAL (-22)``, a number, or a handle."""
    if isinstance(v, int) and not isinstance(v, bool) and v < 0 and -v in ERRNO_NAMES:
        return f"-{ERRNO_NAMES[-v]} ({v})"
    return str(v)


def _prediction(action: Action, event: Event, machine: Interpreter) -> tuple[Outcome, Value] | None:
    for outcome in action.outcomes:
        try:
            holds = evaluate(outcome.when, event, machine)
        except TypeError:  # an argument the trace did not record
            return None
        if holds:
            value = evaluate(outcome.value, event, machine)
            return None if value in (None, "") else (outcome, value)
    return None


class _Checker:
    def __init__(self, file: str, profile: str, unobserved: frozenset[str]) -> None:
        self.file = file
        self.profile = find_profile(profile)
        self.machine = Interpreter(self.profile, file, unobserved=unobserved, check_leaks=False)
        self.rows: dict[tuple[str, str], Row] = {}
        self.result = new_result(file, self.profile, unobserved, False)
        self.events = 0

    def feed(self, event: Event) -> None:
        self.events += 1
        action, available = select(event, self.profile)
        if action is not None and available and action.outcomes and event.ret is not None:
            found = _prediction(action, event, self.machine)
            if found is not None:
                outcome, predicted = found
                returned = event_ret(event, action, self.file)
                row = self.rows.setdefault((action.name, outcome.label), Row(action.name, outcome.label, outcome.rule))
                if returned == predicted:
                    row.agreed += 1
                else:
                    row.disagreed += 1
                    if len(row.mismatches) < MISMATCHES_KEPT:
                        row.mismatches.append(Mismatch(event.line, event.op, dict(event.args), predicted, returned))
                    self.result.judge(SPEC_KERNEL_DISAGREES, event.line, event.op, event.tid, (), detail=(
                        f"{action.name}: {outcome.label}: the spec predicts {show(predicted)}, the kernel returned "
                        f"{show(returned)}" + (f" (the promise of {outcome.rule})" if outcome.rule else "")))
        self.machine.feed(event)

    def finish(self) -> Conformance:
        predicted_lines = {f.line for f in self.result.findings}
        for f in self.machine.finish().findings:
            if f.rule in _GUARANTEES and f.line not in predicted_lines:
                self.result.judge(SPEC_KERNEL_DISAGREES, f.line, f.op, f.tid, f.objects,
                                  detail=f"the core's guarantee {f.rule} does not hold on this kernel")
        self.result.events = self.events
        self.result.findings.sort(key=lambda x: x.line)
        return Conformance(self.file, self.profile.name, self.events, list(self.rows.values()), self.result)


def analyze(path: str, fmt: str | None = None, profile: str | None = None) -> Conformance:
    """Compare every return value the spec predicts in the trace at ``path`` with the recorded one."""
    checker: _Checker | None = None
    for item in read_events(path, fmt):
        if isinstance(item, Header):
            checker = _Checker(path, profile or item.profile or "latest", item.unobserved)
            continue
        if checker is None:
            checker = _Checker(path, profile or "latest", frozenset())
        checker.feed(item)
    if checker is None:
        checker = _Checker(path, profile or "latest", frozenset())
    return checker.finish()


def note(c: Conformance) -> str:
    """One line for a report: how many predicted return values were compared, and how they fared."""
    if not c.rows:
        return "conformance: no call in the trace has a return value the spec predicts"
    verdict = "the kernel agreed with every one" if not c.disagreed else \
        f"the kernel disagreed with {c.disagreed}: spec defects (SPEC-KERNEL-DISAGREES)"
    return (f"conformance: {c.agreed + c.disagreed} return value(s) the spec predicts, in {len(c.rows)} case(s); "
            + verdict)


def all_outcomes(profile: str) -> list[tuple[str, str, str]]:
    """Every (action, label, rule) the spec predicts in ``profile``: the rows a full conformance table has."""
    prof = find_profile(profile)
    return [(a.name, o.label, o.rule) for a in SPEC.actions if prof.admits_action(a) for o in a.outcomes]


def table(runs: dict[str, Conformance | None], fmt: str = "text") -> str:
    """The agreement table of several kernels' runs: a row per predicted outcome, a column per kernel.

    A cell is ``agreed/compared``, ``-`` when the run never met the case, and ``n/a`` when the kernel's
    profile has no such action; ``None`` for a kernel is a run that failed.
    """
    names = list(runs)
    keys: list[tuple[str, str, str]] = []
    for c in runs.values():
        if c is not None:
            for key in all_outcomes(c.profile):
                if key not in keys:
                    keys.append(key)
    header = ["case", "rule", *names]
    body: list[list[str]] = []
    for action, label, rule in keys:
        cells = []
        for name in names:
            c = runs[name]
            if c is None:
                cells.append("run failed")
                continue
            if (action, label, rule) not in all_outcomes(c.profile):
                cells.append("n/a")
                continue
            row = next((r for r in c.rows if (r.action, r.label) == (action, label)), None)
            cells.append("-" if row is None else f"{row.agreed}/{row.compared}" + (" DISAGREES" if row.disagreed
                                                                                   else ""))
        body.append([f"{action}: {label}", rule or "", *cells])
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
        return "\n".join(lines) + "\n"
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *body]) + "\n"


def recast(result: Result) -> None:
    """Drop ``result``'s guarantee findings: on a stock kernel's trace they are spec defects, which
    :func:`analyze` reports as ``SPEC-KERNEL-DISAGREES``."""
    result.findings = [f for f in result.findings if f.rule not in _GUARANTEES]


__all__ = ["Conformance", "Finding", "Mismatch", "Row", "all_outcomes", "analyze", "note", "recast", "show", "table"]
