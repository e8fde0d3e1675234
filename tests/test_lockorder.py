"""The lock-order analysis: each trace under traces/lockorder/bad gives its finding with the right dependency
chain, each under traces/lockorder/ok none; the corner cases of acquisition; streaming a long trace."""

from __future__ import annotations

import gzip
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checker import report
from checker.analysis.lockorder import (
    LOCK_ORDER_CYCLE,
    LOCK_ORDER_INVERSION,
    LockOrderGraph,
    LockOrderResult,
    analyze,
)
from checker.api import check_file
from checker.core import InputError
from checker.trace import validate
from tests.conftest import TRACES, write_trace

DIR = os.path.join(TRACES, "lockorder")
OK = sorted(os.path.join(DIR, "ok", f) for f in os.listdir(os.path.join(DIR, "ok")) if f.endswith(".jsonl"))
BAD_DIR = os.path.join(DIR, "bad")

# trace -> (rule, line, chain as (line that took the held lock, line that took the next one, tid) per edge)
EXPECTED: dict[str, tuple[str, int, list[tuple[int, int, int]]]] = {
    "abba-driver-mutexes.jsonl": (LOCK_ORDER_CYCLE, 7, [(2, 3, 101), (6, 7, 102)]),
    "resv-then-mmap-lock.jsonl": (LOCK_ORDER_INVERSION, 4, [(3, 4, 101)]),
    "resv-abba-without-ctx.jsonl": (LOCK_ORDER_CYCLE, 7, [(2, 3, 101), (6, 7, 102)]),
    "resv-in-signalling-section.jsonl": (LOCK_ORDER_INVERSION, 4, [(3, 4, 101)]),
    "three-lock-cycle.jsonl": (LOCK_ORDER_CYCLE, 11, [(2, 3, 101), (6, 7, 102), (10, 11, 103)]),
    "fence-wait-under-mutex-signaller-takes-it.jsonl": (LOCK_ORDER_CYCLE, 9, [(3, 4, 201), (8, 9, 101)]),
    "gfp-kernel-in-signalling-section.jsonl": (LOCK_ORDER_INVERSION, 4, [(3, 4, 101)]),
    "fence-wait-in-signalling-section.jsonl": (LOCK_ORDER_INVERSION, 6, [(5, 6, 101)]),
}


def test_every_bad_trace_is_expected() -> None:
    assert sorted(os.listdir(BAD_DIR)) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_trace_gives_its_finding_and_chain(name: str) -> None:
    rule, line, chain = EXPECTED[name]
    result = analyze(os.path.join(BAD_DIR, name))
    assert [(r.finding.rule, r.finding.line) for r in result.reports] == [(rule, line)]
    [rep] = result.reports
    assert [(w.held.line, w.acquired.line, w.tid) for w in rep.chain] == chain
    assert rep.chain[-1].acquired.line == line  # the closing acquisition is the finding's event
    assert rep.finding.related_lines == tuple(sorted({n for a, b, _ in chain for n in (a, b)} - {line}))
    assert rep.finding.fingerprint


# A second reservation lock without an acquire context is also a per-event rule of the spec.
PER_EVENT = {"resv-abba-without-ctx.jsonl": {"RESV-MULTIPLE-WITHOUT-CTX"}}


@pytest.mark.parametrize("path", sorted(os.path.join(BAD_DIR, f) for f in EXPECTED) + OK, ids=os.path.basename)
def test_trace_is_clean_canonical_input(path: str) -> None:
    """The per-event rules have nothing to say (but for PER_EVENT): the analysis sees these."""
    for engine in ("compiled", "interpreter"):
        checked = check_file(path, engine=engine)
        assert {f.rule for f in checked.findings} == PER_EVENT.get(os.path.basename(path), set())
        assert not checked.withheld and not checked.errors


@pytest.mark.parametrize("path", OK, ids=os.path.basename)
def test_ok_trace_has_no_finding(path: str) -> None:
    result = analyze(path)
    assert result.findings == [], [(f.rule, f.line) for f in result.findings]


def test_ok_traces_are_excused_by_the_right_filter() -> None:
    def exempt(name: str) -> dict[str, int]:
        return dict(analyze(os.path.join(DIR, "ok", name)).exempt)

    assert exempt("ww-backoff-opposite-orders.jsonl") == {"ww acquire contexts": 1}
    assert exempt("single-thread-abba.jsonl") == {"one thread": 1}
    assert exempt("abba-under-gate-mutex.jsonl") == {"common gate lock": 1}
    assert exempt("trylock-in-opposite-order.jsonl") == {}  # no edge at all: a trylock cannot block


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


# -- corner cases, fed event by event ---------------------------------------------------------

def _feed(events: list[dict[str, Any]]) -> LockOrderGraph:
    g = LockOrderGraph("mem.jsonl")
    for n, e in enumerate(events, 1):
        g.feed(validate(e, "mem.jsonl", n))
    return g


def _lock(tid: int, obj: str, ctx: str | None = None, ret: int = 0, op: str = "dma_resv_lock") -> dict[str, Any]:
    return {"op": op, "tid": tid, "args": {"obj": obj, "ctx": ctx}, "ret": ret}


def _unlock(tid: int, obj: str) -> dict[str, Any]:
    return {"op": "dma_resv_unlock", "tid": tid, "args": {"obj": obj}}


def _mutex(tid: int, lock: str, op: str = "mutex_lock", ret: int | None = None) -> dict[str, Any]:
    return {"op": op, "tid": tid, "args": {"lock": lock}, "ret": ret}


def test_resv_taken_without_ctx_under_another_is_not_excused_by_ww() -> None:
    g = _feed([_lock(1, "b1", "c1"), _lock(1, "b2", "c1"), _unlock(1, "b2"), _unlock(1, "b1"),
               _lock(2, "b2"), _lock(2, "b1", "c2"), _unlock(2, "b1"), _unlock(2, "b2")])
    assert [(f.rule, f.line) for f in g.findings()] == [(LOCK_ORDER_CYCLE, 6)]


def test_failed_and_interrupted_attempts() -> None:
    # -EINTR: the thread waited, so the order counts, but the lock is not held (no edge b2 -> x later);
    # -EALREADY: nothing; a trylock that fails holds nothing.
    g = _feed([_lock(1, "b1"), _lock(1, "b2", ret=-4, op="dma_resv_lock_interruptible"), _mutex(1, "x"),
               _mutex(1, "x", "mutex_unlock"), _unlock(1, "b1"),
               _lock(2, "b3", "c"), _lock(2, "b3", "c", ret=-114),
               {"op": "dma_resv_trylock", "tid": 2, "args": {"obj": "b4"}, "ret": 0}, _mutex(2, "y"),
               _mutex(2, "y", "mutex_unlock"), _unlock(2, "b3")])
    edges = set(g.graph.edges)
    assert ("resv b1", "resv b2") in edges and ("resv b1", "mutex x") in edges
    assert not any(a == "resv b2" for a, _ in edges)
    assert edges & {("resv b3", "resv b3"), ("resv b4", "mutex y")} == set()
    assert ("resv b3", "mutex y") in edges
    assert g._threads == {}  # everything released: no per-thread state left


def test_trylock_adds_no_edge_but_is_held() -> None:
    g = _feed([_mutex(1, "a"), {"op": "dma_resv_trylock", "tid": 1, "args": {"obj": "b"}, "ret": 1}, _mutex(1, "c")])
    assert set(g.graph.edges) == {("mutex a", "mutex c"), ("resv b", "mutex c")}


def test_mistakes_are_ignored() -> None:
    g = _feed([_unlock(1, "never-locked"), _mutex(1, "a"), _mutex(1, "a"), _mutex(2, "a", "mutex_unlock"),
               {"op": "mmap_write_unlock", "tid": 3}, {"op": "dma_fence_end_signalling", "tid": 3},
               {"op": "ww_acquire_fini", "tid": 3, "args": {"ctx": "c"}}])
    assert g.findings() == [] and set(g.graph.edges) == set()


def test_out_of_order_unlock_is_no_longer_a_gate() -> None:
    # Thread 1 takes G, A, releases G, then takes B: G does not gate A -> B.
    g = _feed([_mutex(1, "g"), _mutex(1, "a"), _mutex(1, "g", "mutex_unlock"), _mutex(1, "b"),
               _mutex(1, "b", "mutex_unlock"), _mutex(1, "a", "mutex_unlock"),
               _mutex(2, "g"), _mutex(2, "b"), _mutex(2, "a"), _mutex(2, "a", "mutex_unlock"),
               _mutex(2, "b", "mutex_unlock"), _mutex(2, "g", "mutex_unlock")])
    assert [(f.rule, f.line) for f in g.findings()] == [(LOCK_ORDER_CYCLE, 9)]


def test_a_later_witness_from_another_thread_is_kept() -> None:
    # The first witness of each edge is thread 1's, but thread 2 also takes b -> a: a real cycle.
    g = _feed([_mutex(1, "a"), _mutex(1, "b"), _mutex(1, "b", "mutex_unlock"), _mutex(1, "a", "mutex_unlock"),
               _mutex(1, "b"), _mutex(1, "a"), _mutex(1, "a", "mutex_unlock"), _mutex(1, "b", "mutex_unlock"),
               _mutex(2, "b"), _mutex(2, "a"), _mutex(2, "a", "mutex_unlock"), _mutex(2, "b", "mutex_unlock")])
    [rep] = g.reports()
    assert [(w.held.line, w.acquired.line, w.tid) for w in rep.chain] == [(1, 2, 1), (9, 10, 2)]


@pytest.mark.parametrize(("op", "pid2", "cycle"), [("mmap_read", 10, True),  # readers share: no gate
                                                  ("mmap_write", 10, False),  # one writer at a time: a gate
                                                  ("mmap_write", 11, True)])  # another process's mm: no gate
def test_mmap_lock_is_per_mm_and_only_the_writer_gates(op: str, pid2: int, cycle: bool) -> None:
    events: list[dict[str, Any]] = []
    for tid, pid, order in ((1, 10, ("a", "b")), (2, pid2, ("b", "a"))):
        events += [{"op": f"{op}_lock", "tid": tid, "pid": pid}, _mutex(tid, order[0]), _mutex(tid, order[1]),
                   _mutex(tid, order[1], "mutex_unlock"), _mutex(tid, order[0], "mutex_unlock"),
                   {"op": f"{op}_unlock", "tid": tid, "pid": pid}]
    g = _feed(events)
    assert [f.rule for f in g.findings()] == ([LOCK_ORDER_CYCLE] if cycle else [])
    assert f"mmap_lock mm of pid {pid2}" in g.graph and g._threads == {}


def test_ww_context_is_ordered_after_mmap_lock() -> None:
    g = _feed([{"op": "ww_acquire_init", "tid": 1, "args": {"ctx": "c"}}, {"op": "mmap_read_lock", "tid": 1},
               {"op": "mmap_read_unlock", "tid": 1}, {"op": "ww_acquire_fini", "tid": 1, "args": {"ctx": "c"}}])
    [f] = g.findings()
    assert (f.rule, f.line, f.related_lines) == (LOCK_ORDER_INVERSION, 2, (1,))
    assert f.objects[0].table == "ww_acquire_ctx" and f.objects[0].key == "c"


def test_inversions_are_reported_once_per_pair_of_classes() -> None:
    events = []
    for obj in ("b1", "b2"):
        events += [_lock(1, obj), {"op": "mmap_read_lock", "tid": 1}, {"op": "mmap_read_unlock", "tid": 1},
                   _unlock(1, obj)]
    assert [(f.rule, f.line) for f in _feed(events).findings()] == [(LOCK_ORDER_INVERSION, 2)]


@pytest.mark.parametrize(("gfp", "reclaims"), [("GFP_KERNEL", True), ("GFP_NOFS", True), ("GFP_NOIO", True),
                                               ("GFP_KERNEL|__GFP_NOWARN", True), ("GFP_ATOMIC", False),
                                               ("GFP_NOWAIT | __GFP_NOWARN", False),
                                               ("GFP_KERNEL | __GFP_NOLOCKDEP", False)])
def test_which_allocations_enter_reclaim(gfp: str, reclaims: bool) -> None:
    g = _feed([{"op": "dma_fence_begin_signalling", "tid": 1, "ret": 1},
               {"op": "alloc", "kind": "annotation", "tid": 1, "args": {"gfp": gfp}},
               {"op": "dma_fence_end_signalling", "tid": 1, "args": {"cookie": 1}}])
    assert [f.rule for f in g.findings()] == ([LOCK_ORDER_INVERSION] if reclaims else [])


def test_nested_signalling_sections() -> None:
    g = _feed([{"op": "dma_fence_begin_signalling", "tid": 1, "ret": 1},
               {"op": "dma_fence_begin_signalling", "tid": 1, "ret": 0},
               {"op": "dma_fence_end_signalling", "tid": 1, "args": {"cookie": 0}},
               _lock(1, "b"), _unlock(1, "b"),
               {"op": "dma_fence_end_signalling", "tid": 1, "args": {"cookie": 1}},
               _lock(1, "b"), _unlock(1, "b")])
    assert [(f.rule, f.line) for f in g.findings()] == [(LOCK_ORDER_INVERSION, 4)]


def test_lost_events_forget_what_was_held() -> None:
    g = _feed([_mutex(1, "a"), {"op": "lost_events", "kind": "annotation", "tid": 1}, _mutex(1, "b"),
               _mutex(2, "b"), _mutex(2, "a")])
    assert g.findings() == [] and g.gaps == [2]


# -- files ----------------------------------------------------------------------------------

def test_gzip_and_headerless_input(tmp_path: Path) -> None:
    src = os.path.join(BAD_DIR, "abba-driver-mutexes.jsonl")
    with open(src, "rb") as f:
        data = f.read()
    gz = tmp_path / "t.jsonl.gz"
    gz.write_bytes(gzip.compress(data))
    assert [(f.rule, f.line) for f in analyze(str(gz)).findings] == [(LOCK_ORDER_CYCLE, 7)]
    bare = tmp_path / "bare.jsonl"
    bare.write_bytes(b"\n" + data.split(b"\n", 1)[1])  # no header; the blank line keeps the numbering
    result = analyze(str(bare))
    assert result.profile == "latest" and [(f.rule, f.line) for f in result.findings] == [(LOCK_ORDER_CYCLE, 7)]


@pytest.mark.parametrize(("text", "line"), [(b'{"op":"mutex_lock","tid":1}\n', 1),
                                            (b'{"op":"marker","kind":"annotation","tid":1}\n{"format":"dmaspec-trace",'
                                             b'"version":1}\n', 2),
                                            (b'{"op":"mutex_lock","tid":1,"args":{"lock":"a"}}\nnot json\n', 2)])
def test_bad_input_is_an_input_error(tmp_path: Path, text: bytes, line: int) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_bytes(text)
    with pytest.raises(InputError) as e:
        analyze(str(p))
    assert e.value.line == line
    with pytest.raises(InputError):
        analyze(str(tmp_path / "missing.jsonl"))


def _workload(n: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """A driver's life: execbufs lock BOs in ww contexts in any order, allocate, wait; ioctls nest two
    mutexes in one order; signallers stay clean.  One planted ABBA (lines 3 and 4 of the file)."""
    rng = random.Random(seed)
    yield _mutex(900, "planted_a")
    yield _mutex(900, "planted_b")
    yield _mutex(900, "planted_b", "mutex_unlock")
    yield _mutex(900, "planted_a", "mutex_unlock")
    yield _mutex(901, "planted_b")
    yield _mutex(901, "planted_a")
    yield _mutex(901, "planted_a", "mutex_unlock")
    yield _mutex(901, "planted_b", "mutex_unlock")
    count, job = 8, 0
    while count < n:
        tid = rng.randrange(100, 132)
        kind = rng.random()
        job += 1
        if kind < 0.5:
            ctx = f"ctx{job}"
            bos = rng.sample(range(256), rng.randrange(1, 4))
            out: list[dict[str, Any]] = [{"op": "ww_acquire_init", "tid": tid, "args": {"ctx": ctx}}]
            out += [_lock(tid, f"bo{b}", ctx) for b in bos]
            out += [{"op": "alloc", "kind": "annotation", "tid": tid, "args": {"gfp": "GFP_KERNEL"}},
                    {"op": "dma_fence_wait", "tid": tid, "args": {"fence": f"f{job}"}, "ret": 0}]
            out += [_unlock(tid, f"bo{b}") for b in bos]
            out.append({"op": "ww_acquire_fini", "tid": tid, "args": {"ctx": ctx}})
        elif kind < 0.8:
            file, bo = f"file{rng.randrange(64)}", f"bo{rng.randrange(256)}"
            out = [_mutex(tid, "dev_lock"), _mutex(tid, file), _lock(tid, bo), _unlock(tid, bo),
                   _mutex(tid, file, "mutex_unlock"), _mutex(tid, "dev_lock", "mutex_unlock")]
        else:
            out = [{"op": "dma_fence_begin_signalling", "tid": tid, "ret": 1},
                   {"op": "alloc", "kind": "annotation", "tid": tid, "args": {"gfp": "GFP_ATOMIC"}},
                   {"op": "dma_fence_signal", "tid": tid, "args": {"fence": f"f{job}"}, "ret": 0},
                   {"op": "dma_fence_end_signalling", "tid": tid, "args": {"cookie": 1}}]
        count += len(out)
        yield from out


def test_streams_a_long_trace(tmp_path: Path) -> None:
    p = tmp_path / "long.jsonl"
    n = write_trace(p, _workload(200_000))
    result: LockOrderResult = analyze(str(p))
    assert result.events == n >= 200_000
    assert [(f.rule, f.line, f.related_lines) for f in result.findings] == [(LOCK_ORDER_CYCLE, 7, (2, 3, 6))]
    assert result.graph.number_of_nodes() <= 2 + 1 + 64 + 256 + 2  # planted, dev_lock, files, BOs, pseudo locks
    assert result.exempt["ww acquire contexts"] > 0
