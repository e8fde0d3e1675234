"""The fence wait-for analysis: each trace under traces/fencewait/bad gives its finding with the right chain, each
under traces/fencewait/ok none; what is and is not an edge; the end-of-trace deadlock and LOCK-DEADLOCK reported
once; gaps, narrowing, the CLI and streaming a long trace."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checker import report
from checker.analysis.fencewait import (
    FENCE_WAIT_CYCLE,
    FENCE_WAIT_DEADLOCK,
    MAX_FENCES,
    FenceWaitGraph,
    FenceWaitResult,
    analyze,
)
from checker.api import check_file
from checker.cli import main
from checker.core import InputError
from checker.trace import validate
from spec.rules import LOCK_DEADLOCK
from tests.conftest import TRACES, write_trace

DIR = os.path.join(TRACES, "fencewait")
OK = sorted(os.path.join(DIR, "ok", f) for f in os.listdir(os.path.join(DIR, "ok"))
            if f.endswith((".jsonl", ".ftrace")))
BAD_DIR = os.path.join(DIR, "bad")

# trace -> (rule, line, chain): for a cycle, (wait line, signal line, tid) per edge, the closing edge last; for a
# deadlock, (waiter, fence, signaller, line of the signaller's latest signal of the fence's timeline) per link
EXPECTED: dict[str, tuple[str, int, list[tuple[Any, ...]]]] = {
    "two-timelines-wait-on-each-other.jsonl": (FENCE_WAIT_CYCLE, 11, [(5, 6, 301), (10, 11, 302)]),
    # the same, recorded as ftrace text: each wait is its dma_fence_wait_end line
    "two-timelines-wait-on-each-other.ftrace": (FENCE_WAIT_CYCLE, 21, [(14, 15, 301), (20, 21, 302)]),
    "three-timelines-cycle.jsonl": (FENCE_WAIT_CYCLE, 14, [(8, 9, 401), (6, 7, 402), (13, 14, 403)]),
    "two-threads-asleep-on-each-others-fences.jsonl": (
        FENCE_WAIT_DEADLOCK, 8, [(501, "0xffff888030000322", 502, 5), (502, "0xffff888030000312", 501, 4)]),
    "every-sleeper-stuck-lock-deadlock-too.jsonl": (
        FENCE_WAIT_DEADLOCK, 8, [(501, "0xffff888030000322", 502, 5), (502, "0xffff888030000312", 501, 4)]),
}

# What the per-event check says about each trace (the analysis's findings come on top with --lock-order).
PER_EVENT = {"every-sleeper-stuck-lock-deadlock-too.jsonl": {LOCK_DEADLOCK}}
# What `dmaspec check --lock-order` reports: one deadlock once.
WITH_LOCK_ORDER = {name: {rule} for name, (rule, _, _) in EXPECTED.items()}
WITH_LOCK_ORDER["every-sleeper-stuck-lock-deadlock-too.jsonl"] = {LOCK_DEADLOCK}


def test_every_bad_trace_is_expected() -> None:
    assert sorted(os.listdir(BAD_DIR)) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_trace_gives_its_finding_and_chain(name: str) -> None:
    rule, line, chain = EXPECTED[name]
    result = analyze(os.path.join(BAD_DIR, name))
    assert [(r.finding.rule, r.finding.line) for r in result.reports] == [(rule, line)]
    [rep] = result.reports
    if rule == FENCE_WAIT_CYCLE:
        assert [(d.wait.line, d.signal.line, d.tid) for d in rep.chain] == chain
        assert rep.chain[-1].signal.line == line  # the closing signal is the finding's event
        for d, nxt in zip(rep.chain, rep.chain[1:] + rep.chain[:1], strict=True):
            assert d.wait.timeline == nxt.signal.timeline  # C -> D, D -> ...: the chain is a cycle
            assert d.wait.line < d.signal.line and d.wait.tid == d.signal.tid
        assert rep.finding.related_lines == tuple(sorted({n for a, b, _ in chain for n in (a, b)} - {line}))
    else:
        assert [(s.tid, s.fence, s.signaller, s.evidence) for s in rep.sleepers] == chain
        assert line == result.events + 2  # after the last event (the header is line 1)
    assert rep.finding.fingerprint


@pytest.mark.parametrize("path", sorted(os.path.join(BAD_DIR, f) for f in EXPECTED) + OK, ids=os.path.basename)
def test_per_event_rules_and_lock_order_on_the_corpus(path: str) -> None:
    """The per-event rules have nothing to say (but for PER_EVENT): the analysis sees these; and the lock-order
    graph, which runs with it, finds nothing."""
    from checker.analysis import lockorder

    for engine in ("compiled", "interpreter"):
        checked = check_file(path, engine=engine)
        assert {f.rule for f in checked.findings} == PER_EVENT.get(os.path.basename(path), set())
        assert not checked.withheld and not checked.errors
    assert lockorder.analyze(path).findings == []


@pytest.mark.parametrize("path", OK, ids=os.path.basename)
def test_ok_trace_has_no_finding(path: str) -> None:
    result = analyze(path)
    assert result.findings == [], [(f.rule, f.line) for f in result.findings]


def test_ok_traces_make_no_edge_for_the_right_reason() -> None:
    def run(name: str) -> FenceWaitResult:
        return analyze(os.path.join(DIR, "ok", name))

    r = run("waits-on-already-signalled-fences.jsonl")
    assert set(r.graph.edges) == set() and r.notes["waits for fences signalled before the wait began"] == 2
    r = run("cpu-read-after-device-write-ping-pong.jsonl")
    assert set(r.graph.edges) == {("context 42", "context 41")}  # the reader waits for the device, not back
    assert r.graph.nodes["context 41"]["signallers"] == {} and r.graph.nodes["context 41"]["irq"]
    r = run("own-timeline-wait-and-a-poll.jsonl")
    assert set(r.graph.edges) == {("context 52", "context 51")}
    assert r.notes["polls (timeout 0): they never block"] == 1
    assert set(run("dependency-chain-without-cycle.jsonl").graph.edges) == {("context 21", "context 22"),
                                                                           ("context 22", "context 23")}
    assert set(run("one-timeline-waits-on-another-one-way.jsonl").graph.edges) == {("context 11", "context 12")}


def test_lock_deadlock_is_the_same_deadlock_reported_once() -> None:
    path = os.path.join(BAD_DIR, "every-sleeper-stuck-lock-deadlock-too.jsonl")
    result = analyze(path, lock_deadlock=True)
    assert result.findings == [] and result.exempt == {"reported as LOCK-DEADLOCK": 1}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_findings_render(name: str) -> None:
    path = os.path.join(BAD_DIR, name)
    result = analyze(path)
    for f in result.findings:
        lines = report.read_lines(path, set(f.related_lines) | {f.line} | set(report.window(f)))
        text = report.finding_text(f, result.result, lines)
        assert text.startswith(f"{path}:{f.line}: error: {f.rule}: ")
        for n in f.related_lines:
            assert f"   *{n:>7}  " in text
    assert report.text([result.result])


# -- the CLI -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_lock_order_flag_reports_the_fence_findings(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = os.path.join(BAD_DIR, name)
    assert main(["check", "--lock-order", "--format", "json", path]) == 1
    out = json.loads(capsys.readouterr().out)
    [trace] = out["traces"]
    assert {f["rule"] for f in trace["findings"]} == WITH_LOCK_ORDER[name]


def test_lock_order_flag_on_the_ok_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--lock-order", os.path.join(DIR, "ok")]) == 0
    bad = os.path.join(BAD_DIR, "two-timelines-wait-on-each-other.jsonl")
    assert main(["check", bad]) == 0  # each event is fine on its own
    capsys.readouterr()
    assert main(["check", "--lock-order", bad]) == 1
    text = capsys.readouterr().out
    assert "FENCE-WAIT-CYCLE" in text and "--lock-order" in text.split("reproduce:")[1].splitlines()[0]


def test_help_documents_the_fence_graph(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    assert "fence wait-for graph" in " ".join(capsys.readouterr().out.split())


# -- edges, fed event by event ----------------------------------------------------------------

def _feed(events: list[dict[str, Any]]) -> FenceWaitGraph:
    g = FenceWaitGraph("mem.jsonl")
    for n, e in enumerate(events, 1):
        g.feed(validate(e, "mem.jsonl", n))
    return g


def _init(tid: int, fence: str, ctx: int, seq: int = 1) -> dict[str, Any]:
    return {"op": "dma_fence_init", "tid": tid, "args": {"fence": fence, "context": ctx, "seqno": seq}}


def _signal(tid: int, fence: str, ret: int = 0, **extra: Any) -> dict[str, Any]:
    return {"op": "dma_fence_signal", "tid": tid, "args": {"fence": fence}, "ret": ret, **extra}


def _wait(tid: int, fence: str, ret: int = 0, timeout: int | None = None) -> dict[str, Any]:
    op = "dma_fence_wait" if timeout is None else "dma_fence_wait_timeout"
    return {"op": op, "tid": tid, "args": {"fence": fence, "timeout": timeout}, "ret": ret}


def _abba(first: list[dict[str, Any]] | None = None, wait_ret: int = 0,
          timeout: int | None = None) -> list[dict[str, Any]]:
    """Thread 1 signals timeline 1 after waiting for 2; thread 2 signals 2 after waiting for 1."""
    return [*(first or []), _init(1, "a1", 1), _init(2, "b1", 2), _signal(2, "b1"),
            _wait(1, "b1", wait_ret, timeout), _signal(1, "a1"), _init(1, "a2", 1, 2), _init(2, "b2", 2, 2),
            _signal(1, "a2"), _wait(2, "a2", wait_ret, timeout), _signal(2, "b2")]


def test_the_basic_cycle() -> None:
    g = _feed(_abba())
    assert [(f.rule, f.line) for f in g.findings()] == [(FENCE_WAIT_CYCLE, 10)]
    [f] = g.findings()
    assert [o.key for o in f.objects] == [1, 2] and f.objects[0].table == "fence_context"
    assert dict(f.objects[1].fields) == {"tid": 2, "waited_for": "a2", "its_context": 1, "then_signalled": "b2",
                                         "seqno": 2}


@pytest.mark.parametrize(("ret", "timeout"), [(0, 10), (-512, None), (-4, None), (3, 10)])
def test_a_wait_that_timed_out_or_was_interrupted_is_still_a_dependency(ret: int, timeout: int | None) -> None:
    assert [f.rule for f in _feed(_abba(wait_ret=ret, timeout=timeout)).findings()] == [FENCE_WAIT_CYCLE]


def test_a_poll_is_no_dependency() -> None:
    assert _feed(_abba(timeout=0, wait_ret=1)).graph.number_of_edges() == 0


def test_a_wait_for_a_signalled_fence_counts_only_if_it_may_have_blocked() -> None:
    # b1 is signalled (line 3) after thread 1's previous event (line 1): the wait may have blocked
    g = _feed([_init(1, "a1", 1), _init(2, "b1", 2), _signal(2, "b1"), _wait(1, "b1"), _signal(1, "a1")])
    assert set(g.graph.edges) == {("context 1", "context 2")}
    # thread 1 did something after the signal and before the wait: the fence was signalled when it began
    g = _feed([_init(1, "a1", 1), _init(2, "b1", 2), _signal(2, "b1"),
               {"op": "marker", "kind": "annotation", "tid": 1}, _wait(1, "b1"), _signal(1, "a1")])
    assert set(g.graph.edges) == set()
    # an interrupt on thread 1 is not thread 1's program order
    g = _feed([_init(1, "a1", 1), _init(2, "b1", 2), _init(3, "c1", 3), _signal(2, "b1"),
               _signal(1, "c1", ctx="hardirq"), _wait(1, "b1"), _signal(1, "a1")])
    assert set(g.graph.edges) == {("context 1", "context 2")}


def test_only_waits_since_the_threads_previous_signal_of_the_timeline() -> None:
    g = _feed([_init(1, "a1", 1), _init(1, "a2", 1, 2), _init(2, "b1", 2), _signal(2, "b1"), _wait(1, "b1"),
               _signal(1, "a1"), _signal(1, "a2"), _init(3, "c1", 3), _signal(1, "c1")])
    # a1 waited for b1; a2 (same timeline, after a1's signal) did not; c1 (another timeline) did
    assert [(u, v, [(d.wait.line, d.signal.line) for d in deps]) for u, v, deps in
            g.graph.edges(data="dependencies")] == [("context 1", "context 2", [(5, 6)]),
                                                    ("context 3", "context 2", [(5, 9)])]


def test_what_is_never_an_edge() -> None:
    g = _feed([
        _init(1, "a1", 1), _init(1, "a2", 1, 2), _signal(1, "a1"), _wait(2, "a1"),  # thread 2 signals no timeline
        _wait(1, "a1"), _signal(1, "a2"),  # own timeline
        _wait(1, "unknown"), _signal(1, "unknown"),  # never initialised
        _init(1, "stub", 0, 0), _wait(1, "stub"),  # the stub fence (context 0)
        _init(2, "b1", 2), _signal(2, "b1", ctx="hardirq"), _init(1, "a3", 1, 3), _signal(1, "a3"),
        _signal(2, "b1", ret=-22)])  # a failed signal is no signal
    assert set(g.graph.edges) == set()
    assert g.notes == {"waits for fences the trace never initialised, or from before a gap": 2,
                       "signals of fences the trace never initialised (timeline unknown)": 1,
                       "signals in interrupt context (the hardware's, no thread's)": 1}
    assert g.graph.nodes["context 2"]["signallers"] == {} and g.graph.nodes["context 2"]["irq"] == 12


def test_lost_events_forget_fences_and_pending_waits() -> None:
    gap = {"op": "lost_events", "kind": "annotation", "tid": 9, "args": {"count": 3}}
    events = _abba()
    # a gap between thread 1's wait and its signal: the wait is forgotten
    g = _feed([*events[:4], gap, *events[4:]])
    assert set(g.graph.edges) == {("context 2", "context 1")} and g.findings() == [] and g.gaps == [5]
    # a gap after the fences' init: they are unknown, and so are waits on them
    g = _feed([*events[:7], gap, *events[7:]])
    assert set(g.graph.edges) == {("context 1", "context 2")}
    # edges found before a gap stay: the cycle closes after it with fences created after it
    g = _feed([*events[:5], gap, _init(1, "a2", 1, 2), _init(2, "b2", 2, 2), _signal(1, "a2"), _wait(2, "a2"),
               _signal(2, "b2")])
    assert [(f.rule, f.line) for f in g.findings()] == [(FENCE_WAIT_CYCLE, 11)]


def test_witnesses_from_other_threads_are_kept() -> None:
    events = _abba()
    more = [_init(3, "a9", 1, 9), _init(2, "b9", 2, 9), _signal(2, "b9"), _wait(3, "b9"), _signal(3, "a9")]
    g = _feed(events + more)
    assert [d.tid for d in g.graph.edges["context 1", "context 2"]["dependencies"]] == [1, 3]
    assert len(g.findings()) == 1  # one cycle, reported once, with the first witnesses


def test_three_cycles_in_one_component_are_each_reported_once() -> None:
    events: list[dict[str, Any]] = []
    n = 0

    def edge(src: int, dst: int) -> None:  # a thread of src waits for a fence of dst, then signals src
        nonlocal n
        n += 1
        signaller, waiter = 100 + dst, 10 * src + n
        events.extend([_init(waiter, f"s{n}", src, n), _init(signaller, f"d{n}", dst, n), _signal(signaller, f"d{n}"),
                       _wait(waiter, f"d{n}"), _signal(waiter, f"s{n}")])

    for a, b in [(1, 2), (2, 1), (2, 3), (3, 1), (1, 3)]:
        edge(a, b)
    g = _feed(events)
    cycles = {tuple(o.key for o in f.objects) for f in g.findings()}
    assert len(g.findings()) == len(cycles) == 3  # 1-2, 1-2-3 and 1-3 (each rotated to its closing edge)


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from checker.analysis import fencewait

    monkeypatch.setattr(fencewait, "MAX_FENCES", 8)
    monkeypatch.setattr(fencewait, "MAX_WAITS_PER_THREAD", 2)
    events = [_init(1, f"f{i}", 10 + i) for i in range(20)] + [_wait(2, f"f{i}") for i in range(12, 20)]
    g = _feed(events)
    assert len(g._fences) == 8 and len(g._threads[2].waits) == 2
    assert MAX_FENCES > 8  # the real bound is unchanged


# -- the end of the trace ----------------------------------------------------------------------

def _deadlock(tmp_path: Path, events: list[dict[str, Any]], waiting: list[dict[str, Any]], **head: Any) -> str:
    path = tmp_path / "t.jsonl"
    header = {"format": "dmaspec-trace", "version": 1, "partial": True, "source": {"waiting": waiting}, **head}
    path.write_text("\n".join(json.dumps(x) for x in [header, *events]) + "\n")
    return str(path)


def _sleep(tid: int, fence: str, timeout: int | None = None) -> dict[str, Any]:
    op = "dma_fence_wait" if timeout is None else "dma_fence_wait_timeout"
    return {"op": op, "tid": tid, "args": {"fence": fence, "timeout": timeout}}


SIGNALLERS = [_init(1, "a1", 1), _init(2, "b1", 2), _signal(1, "a1"), _signal(2, "b1"), _init(1, "a2", 1, 2),
              _init(2, "b2", 2, 2)]


def test_a_thread_asleep_on_its_own_timeline_is_a_deadlock_of_one(tmp_path: Path) -> None:
    r = analyze(_deadlock(tmp_path, SIGNALLERS, [_sleep(1, "a2")]))
    assert [(f.rule, f.line) for f in r.findings] == [(FENCE_WAIT_DEADLOCK, 8)]
    assert [(s.tid, s.signaller) for s in r.reports[0].sleepers] == [(1, 1)]


@pytest.mark.parametrize(("why", "extra", "waiting"), [
    ("the fence is signalled", [_signal(2, "b2")], [_sleep(1, "b2"), _sleep(2, "a2")]),
    ("a signaller is awake", [_init(3, "b3", 2, 3), _signal(3, "b3")], [_sleep(1, "b2"), _sleep(2, "a2")]),
    ("an interrupt signals the timeline", [_init(2, "b3", 2, 3), _signal(2, "b3", ctx="hardirq")],
     [_sleep(1, "b2"), _sleep(2, "a2")]),
    ("nobody known signals it", [_init(3, "c1", 3)], [_sleep(1, "c1"), _sleep(2, "a2")]),
    ("a poll does not sleep", [], [_sleep(1, "b2", timeout=0), _sleep(2, "a2")]),
    ("the signaller sleeps on a lock, not a fence", [], [_sleep(1, "b2"),
                                                         {"op": "dma_resv_lock", "tid": 2, "args": {"obj": "x"}}]),
])
def test_what_is_not_an_actual_deadlock(tmp_path: Path, why: str, extra: list[dict[str, Any]],
                                        waiting: list[dict[str, Any]]) -> None:
    r = analyze(_deadlock(tmp_path, SIGNALLERS + extra, waiting))
    assert r.findings == [], why


def test_a_thread_stuck_behind_a_cycle_is_not_reported_separately(tmp_path: Path) -> None:
    events = [*SIGNALLERS, _init(3, "c1", 3), _signal(3, "c1"), _init(3, "c2", 3, 2)]
    r = analyze(_deadlock(tmp_path, events, [_sleep(1, "b2"), _sleep(2, "a2"), _sleep(4, "c2"), _sleep(3, "a2")]))
    [rep] = r.reports
    assert [s.tid for s in rep.sleepers] == [1, 2]


def test_unobserved_signals_narrow_both_rules(tmp_path: Path) -> None:
    path = _deadlock(tmp_path, _abba(), [_sleep(1, "a9")], unobserved=["dma_fence_signal_locked"])
    r = analyze(path)
    assert r.findings == [] and r.result.undecided == {FENCE_WAIT_CYCLE: 1}
    assert set(r.result.narrowed) == {FENCE_WAIT_CYCLE, FENCE_WAIT_DEADLOCK}
    assert analyze(_deadlock(tmp_path, _abba(), [])).findings != []


def test_bad_waiting_calls_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError) as e:
        analyze(_deadlock(tmp_path, SIGNALLERS, [{"op": "dma_fence_wait", "tid": 1}]))
    assert e.value.line == 1 and "waiting call 1" in e.value.message


# -- files ----------------------------------------------------------------------------------

def _workload(n: int) -> Iterator[dict[str, Any]]:
    """Render and copy workers that wait for each other one way only (render waits for copy), fences signalled
    by interrupts, readers that poll or wait for already signalled fences; one planted cycle at the start."""
    yield from _abba()
    count, seq = 10, 10
    while count < n:
        seq += 1
        out = [_init(301, f"copy{seq}", 12, seq), _init(300, f"render{seq}", 11, seq), _signal(301, f"copy{seq}"),
               _wait(300, f"copy{seq}"), _signal(300, f"render{seq}"), _init(302, f"hw{seq}", 13, seq),
               _signal(302, f"hw{seq}", ctx="hardirq"), _wait(303, f"hw{seq}", ret=1, timeout=0),
               {"op": "dma_fence_release", "tid": 303, "args": {"fence": f"hw{seq}"}}]
        count += len(out)
        yield from out


def test_streams_a_long_trace(tmp_path: Path) -> None:
    p = tmp_path / "long.jsonl"
    n = write_trace(p, _workload(200_000))
    result = analyze(str(p))
    assert result.events == n >= 200_000
    assert [(f.rule, f.line) for f in result.findings] == [(FENCE_WAIT_CYCLE, 11)]
    assert result.graph.number_of_nodes() == 5 and result.graph.number_of_edges() == 3


def test_bad_input_is_an_input_error(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"op":"dma_fence_init","tid":1,"args":{"fence":"a"}}\n')
    with pytest.raises(InputError) as e:
        analyze(str(p))
    assert e.value.line == 1
    with pytest.raises(InputError):
        analyze(str(tmp_path / "missing.jsonl"))
