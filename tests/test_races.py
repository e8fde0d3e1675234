"""The coherency-race analysis: each trace under traces/races/bad gives its race with both windows, each under
traces/races/ok none; the happens-before relations one by one; bounded memory; streaming a long trace."""

from __future__ import annotations

import gzip
import itertools
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checker import report
from checker.analysis import races
from checker.analysis.races import HISTORY, RACE_UNORDERED_ACCESS, RaceAnalysis, RaceResult, analyze
from checker.api import check_file
from checker.core import InputError
from checker.trace import validate
from tests.conftest import TRACES, write_trace

DIR = os.path.join(TRACES, "races")
OK = sorted(os.path.join(DIR, "ok", f) for f in os.listdir(os.path.join(DIR, "ok")) if f.endswith(".jsonl"))
BAD_DIR = os.path.join(DIR, "bad")

# trace -> (line of the finding, related lines, (first window, second window))
EXPECTED: dict[str, tuple[int, tuple[int, ...], tuple[str, str]]] = {
    "gpu-write-overlaps-userspace-sync-read.jsonl": (10, (8, 12, 13), ("device", "userspace CPU")),
    "two-threads-sync-write-overlap.jsonl": (7, (6, 10, 11), ("userspace CPU", "userspace CPU")),
    "kernel-cpu-write-overlaps-device-read.jsonl": (7, (5, 11, 12), ("device", "kernel CPU")),
}


def test_every_bad_trace_is_expected() -> None:
    assert sorted(os.listdir(BAD_DIR)) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_trace_gives_its_race(name: str) -> None:
    line, related, windows = EXPECTED[name]
    result = analyze(os.path.join(BAD_DIR, name))
    assert [(f.rule, f.line, f.related_lines) for f in result.findings] == [(RACE_UNORDERED_ACCESS, line, related)]
    [f] = result.findings
    [race] = result.races
    assert (race.first.agent, race.second.agent) == windows
    assert race.second.open_line == line and race.first.open_line < line
    assert {race.first.open_line, race.first.close_line, race.second.close_line} == set(related)
    assert [o.table for o in f.objects] == ["buffer", "buffer"] and f.objects[0].key == f.objects[1].key
    assert "write" in {dict(o.fields)["access"] for o in f.objects} or "read-write" in {
        dict(o.fields)["access"] for o in f.objects}
    assert f.fingerprint and result.result.events == result.events


@pytest.mark.parametrize("path", sorted(os.path.join(BAD_DIR, f) for f in EXPECTED) + OK, ids=os.path.basename)
def test_trace_is_clean_canonical_input(path: str) -> None:
    """The per-event rules have nothing to say: races are the analysis's alone."""
    for engine in ("compiled", "interpreter"):
        checked = check_file(path, engine=engine)
        assert checked.findings == [] and not checked.withheld and not checked.errors


@pytest.mark.parametrize("path", OK, ids=os.path.basename)
def test_ok_trace_has_no_race(path: str) -> None:
    result = analyze(path)
    assert result.findings == [], [(f.rule, f.line) for f in result.findings]
    assert result.windows >= 2


def test_without_the_fence_wait_the_ok_trace_races(tmp_path: Path) -> None:
    """The fence is what orders the GPU's writes and the read-back: drop the wait and the race is back."""
    src = Path(DIR, "ok", "gpu-write-fence-then-userspace-sync-read.jsonl").read_bytes().split(b"\n")
    p = tmp_path / "no-wait.jsonl"
    p.write_bytes(b"\n".join(b"" if b'"dma_fence_wait"' in raw else raw for raw in src))  # keeps the numbering
    assert [(f.line, f.related_lines) for f in analyze(str(p)).findings] == [(14, (9, 10, 16))]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_findings_render(name: str) -> None:
    path = os.path.join(BAD_DIR, name)
    result = analyze(path)
    for f in result.findings:
        lines = report.read_lines(path, set(f.related_lines) | {f.line} | set(report.window(f)))
        text = report.finding_text(f, result.result, lines)
        assert text.startswith(f"{path}:{f.line}: warning: {RACE_UNORDERED_ACCESS}: ")
        for n in f.related_lines:
            assert f"   *{n:>7}  " in text
        assert "buffer '0xffff888012340000' (live): window=" in text
    assert report.text([result.result])


# -- happens-before, fed event by event -------------------------------------------------------

def _feed(events: list[dict[str, Any]], unobserved: tuple[str, ...] = ()) -> RaceAnalysis:
    a = RaceAnalysis("mem.jsonl", unobserved=unobserved)
    for n, e in enumerate(events, 1):
        a.feed(validate(e, "mem.jsonl", n))
    return a


def _attach(tid: int, buf: str = "b", att: str = "at") -> dict[str, Any]:
    return {"op": "dma_buf_attach", "tid": tid, "args": {"dmabuf": buf}, "ret": att}


def _map(tid: int, direction: str, att: str = "at", sg: str = "sg", ret: Any = None) -> dict[str, Any]:
    return {"op": "dma_buf_map_attachment", "tid": tid, "args": {"attach": att, "direction": direction},
            "ret": sg if ret is None else ret}


def _unmap(tid: int, direction: str, att: str = "at", sg: str = "sg") -> dict[str, Any]:
    return {"op": "dma_buf_unmap_attachment", "tid": tid, "args": {"attach": att, "sg_table": sg,
                                                                    "direction": direction}}


def _cpu(tid: int, direction: str, end: bool = False, buf: str = "b", ret: int = 0) -> dict[str, Any]:
    op = "dma_buf_end_cpu_access" if end else "dma_buf_begin_cpu_access"
    return {"op": op, "tid": tid, "args": {"dmabuf": buf, "direction": direction}, "ret": ret}


def _sync(tid: int, flags: int, fd: int = 5, pid: int = 100) -> dict[str, Any]:
    return {"op": "ioctl", "kind": "syscall", "tid": tid, "pid": pid,
            "args": {"fd": fd, "cmd": "DMA_BUF_IOCTL_SYNC", "flags": flags}, "ret": 0}


def _fd(tid: int = 100, buf: str = "b", fd: int = 5) -> dict[str, Any]:
    return {"op": "dma_buf_fd", "tid": tid, "pid": 100, "args": {"dmabuf": buf}, "ret": fd}


def _op(op: str, tid: int, ret: Any = None, **args: Any) -> dict[str, Any]:
    return {"op": op, "tid": tid, "args": args, "ret": ret}


def _lines(a: RaceAnalysis) -> list[tuple[int, tuple[int, ...]]]:
    return [(f.line, f.related_lines) for f in a.findings()]


WRITER = [_cpu(1, "DMA_TO_DEVICE"), _cpu(1, "DMA_TO_DEVICE", end=True)]  # lines 1, 2: thread 1 writes


@pytest.mark.parametrize(("between", "race"), [
    ([], True),
    ([_op("dma_fence_signal", 1, 0, fence="f"), _op("dma_fence_wait", 2, 0, fence="f")], False),
    ([_op("dma_fence_signal", 1, 0, fence="f"), _op("dma_fence_wait_timeout", 2, 5, fence="f", timeout=9)], False),
    ([_op("dma_fence_signal", 1, 0, fence="f"), _op("dma_fence_wait_timeout", 2, 0, fence="f")], True),  # timed out
    ([_op("dma_fence_signal", 1, 0, fence="f"), _op("dma_fence_wait", 2, -512, fence="f")], True),  # interrupted
    ([_op("dma_fence_wait", 2, 0, fence="f"), _op("dma_fence_signal", 1, 0, fence="f")], True),  # wrong order
    ([_op("dma_fence_signal", 1, 0, fence="f"), _op("dma_fence_wait", 2, 0, fence="g")], True),  # another fence
    ([_op("dma_fence_signal", 1, 0, fence="f"), _op("dma_fence_release", 3, fence="f"),
      _op("dma_fence_wait", 2, 0, fence="f")], True),  # the address names a new fence
    ([_op("dma_resv_lock", 1, 0, obj="r"), _op("dma_resv_unlock", 1, obj="r"), _op("dma_resv_lock", 2, 0, obj="r"),
      _op("dma_resv_unlock", 2, obj="r")], False),
    ([_op("dma_resv_lock", 1, 0, obj="r"), _op("dma_resv_unlock", 1, obj="r"),
      _op("dma_resv_trylock", 2, 0, obj="r")], True),  # the trylock failed
    ([_op("dma_resv_lock", 1, 0, obj="r"), _op("dma_resv_unlock", 1, obj="r"),
      _op("dma_resv_lock_interruptible", 2, -4, obj="r")], True),  # interrupted
    ([_op("mutex_lock", 1, lock="m"), _op("mutex_unlock", 1, lock="m"), _op("mutex_trylock", 2, 1, lock="m"),
      _op("mutex_unlock", 2, lock="m")], False),
    ([_op("mutex_lock", 1, lock="m"), _op("mutex_unlock", 1, lock="m"), _op("mutex_lock", 2, lock="n")], True),
    ([{"op": "fork", "kind": "syscall", "tid": 1, "ret": 2}], False),
    ([{"op": "clone", "kind": "syscall", "tid": 1, "args": {"flags": 0x10000}, "ret": 2}], False),
    ([{"op": "fork", "kind": "syscall", "tid": 1, "ret": 3}], True),  # another child
])
def test_what_orders_a_write_before_a_read(between: list[dict[str, Any]], race: bool) -> None:
    a = _feed([*WRITER, *between, _cpu(2, "DMA_FROM_DEVICE"), _cpu(2, "DMA_FROM_DEVICE", end=True)])
    opened = 3 + len(between)
    assert _lines(a) == ([(opened, (1, 2, opened + 1))] if race else [])


def test_the_unlock_before_the_close_does_not_order_it() -> None:
    # Thread 1 unlocks inside its window: thread 2's lock sees the window open, not closed.
    a = _feed([_cpu(1, "DMA_TO_DEVICE"), _op("mutex_lock", 1, lock="m"), _op("mutex_unlock", 1, lock="m"),
               _cpu(1, "DMA_TO_DEVICE", end=True), _op("mutex_lock", 2, lock="m"), _cpu(2, "DMA_FROM_DEVICE")])
    assert _lines(a) == [(6, (1, 4))]


@pytest.mark.parametrize(("device", "cpu", "race"), [
    ("DMA_TO_DEVICE", "DMA_FROM_DEVICE", False),  # the device reads, the CPU reads
    ("DMA_FROM_DEVICE", "DMA_FROM_DEVICE", True),  # the device writes
    ("DMA_BIDIRECTIONAL", "DMA_FROM_DEVICE", True),
    ("DMA_TO_DEVICE", "DMA_TO_DEVICE", True),  # the CPU writes
    ("DMA_TO_DEVICE", "DMA_BIDIRECTIONAL", True),
    ("DMA_NONE", "DMA_BIDIRECTIONAL", False),  # DMA_NONE: the device accesses nothing
])
def test_directions(device: str, cpu: str, race: bool) -> None:
    a = _feed([_attach(1), _map(1, device), _cpu(2, cpu), _cpu(2, cpu, end=True), _unmap(1, device)])
    assert [f.line for f in a.findings()] == ([3] if race else [])


def test_device_and_cpu_windows_of_one_thread_overlap() -> None:
    """Program order orders a thread's barriers, not its device's accesses: a CPU access under its own mapping
    races; after the unmap it does not; two devices one thread maps are not compared."""
    a = _feed([_attach(1), _map(1, "DMA_FROM_DEVICE"), _cpu(1, "DMA_FROM_DEVICE"), _cpu(1, "DMA_FROM_DEVICE", True),
               _attach(1, att="at2"), _map(1, "DMA_BIDIRECTIONAL", att="at2", sg="sg2"),
               _unmap(1, "DMA_BIDIRECTIONAL", att="at2", sg="sg2"), _unmap(1, "DMA_FROM_DEVICE"),
               _cpu(1, "DMA_BIDIRECTIONAL"), _cpu(1, "DMA_BIDIRECTIONAL", True)])
    assert _lines(a) == [(3, (2, 4, 8))]


def test_userspace_windows_and_fds() -> None:
    a = _feed([_fd(), {"op": "dup", "kind": "syscall", "tid": 100, "args": {"fd": 5}, "ret": 6},
               _sync(100, 2), _sync(101, 1, fd=6),  # 3, 4: a write and a read through two fds of one buffer
               _sync(101, 5, fd=6), _sync(100, 6),
               {"op": "close", "kind": "syscall", "tid": 100, "args": {"fd": 6}, "ret": 0},
               _sync(101, 1, fd=6),  # fd 6 is closed: not a dma-buf any more, nothing opens
               _sync(102, 1, pid=200)])  # fd 5 of another process: unknown
    assert _lines(a) == [(4, (3, 5, 6))] and a.windows == 2


def test_sync_end_closes_the_threads_own_window() -> None:
    # Thread 101's END does not close thread 100's window; 100's END with other flags closes its only one.
    a = _feed([_fd(), _sync(100, 1), _sync(101, 5), _sync(100, 6), _sync(102, 2)])
    assert _lines(a) == [(5, (2, 4))]  # closed at 4 by its own thread, not at 3; 102 is not ordered after it
    assert [w.open_line for w in a._buffers["b"].open] == [5]


def test_failed_calls_open_nothing() -> None:
    a = _feed([_attach(1), _map(1, "DMA_FROM_DEVICE", ret=-12), _cpu(2, "DMA_TO_DEVICE", ret=-512), _fd(),
               {**_sync(100, 2), "ret": -4}, _cpu(3, "DMA_FROM_DEVICE")])
    assert _lines(a) == [] and a.windows == 1


def test_cached_sg_table_is_mapped_twice() -> None:
    # Before 6.15 the core hands out its cached sg_table again: two windows, closed one by one.
    a = _feed([_attach(1), _map(1, "DMA_FROM_DEVICE"), _map(1, "DMA_FROM_DEVICE"), _unmap(1, "DMA_FROM_DEVICE"),
               _cpu(2, "DMA_FROM_DEVICE"), _cpu(2, "DMA_FROM_DEVICE", True), _unmap(1, "DMA_FROM_DEVICE")])
    assert _lines(a) == [(5, (2, 6, 7)), (5, (3, 4, 6))]
    assert sorted((r.first.open_line, r.first.close_line) for r in a.races) == [(2, 7), (3, 4)]


def test_each_pair_once_and_windows_open_to_the_end() -> None:
    a = _feed([_attach(1), _map(1, "DMA_FROM_DEVICE"), _cpu(2, "DMA_FROM_DEVICE"), _cpu(3, "DMA_FROM_DEVICE")])
    fs = a.findings()
    assert [(f.line, f.related_lines) for f in fs] == [(3, (2,)), (4, (2,))]
    assert dict(fs[0].objects[0].fields)["closed"] == "open to the end of the trace"


def test_a_new_export_forgets_the_old_buffers_windows() -> None:
    a = _feed([_cpu(1, "DMA_TO_DEVICE"), _op("dma_buf_export", 1, "b"),
               _cpu(2, "DMA_FROM_DEVICE"), _cpu(1, "DMA_TO_DEVICE", True)])
    assert _lines(a) == []


def test_lost_events_and_unobserved_ops_withhold() -> None:
    gap = {"op": "lost_events", "kind": "annotation", "tid": 9, "args": {"count": 3}}
    a = _feed([*WRITER, gap, _cpu(2, "DMA_FROM_DEVICE")])
    result = a.result()
    assert result.findings == [] and result.withheld == {RACE_UNORDERED_ACCESS: 1} and a.gaps == [3]
    b = _feed([gap, *WRITER, _cpu(2, "DMA_FROM_DEVICE")])  # the gap is before both: nothing could be lost
    assert [f.line for f in b.findings()] == [4]
    c = _feed([*WRITER, _cpu(2, "DMA_FROM_DEVICE")], unobserved=("dma_fence_signal", "get_dma_buf"))
    assert c.result().findings == [] and c.result().narrowed == {RACE_UNORDERED_ACCESS: ("dma_fence_signal",)}


def test_history_is_bounded_and_synchronised_windows_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(races, "PRUNE_EVERY", 10)
    events: list[dict[str, Any]] = [_op("mutex_unlock", 2, lock="x")]  # thread 2 exists, never synchronises
    for _ in range(3 * HISTORY):  # thread 1 writes and never synchronises with anyone
        events += WRITER
    a = _feed(events)
    assert len(a._buffers["b"].closed) == HISTORY
    # Everyone synchronises with thread 1 through a mutex: its windows are forgotten, and so is the buffer.
    sync = [_op("mutex_lock", 1, lock="m"), _op("mutex_unlock", 1, lock="m")]
    sync += [_op("mutex_lock", 2, lock="m"), _op("mutex_unlock", 2, lock="m")]
    b = _feed([_op("mutex_lock", 2, lock="m"), _op("mutex_unlock", 2, lock="m"), *events, *sync,
               *[_op("marker", 3) | {"kind": "annotation"}] * 10])
    assert b._buffers == {}


# -- files ----------------------------------------------------------------------------------

def test_unobserved_from_the_command_line() -> None:
    result = analyze(os.path.join(BAD_DIR, "two-threads-sync-write-overlap.jsonl"), unobserved=["mutex_unlock"])
    assert result.findings == [] and result.result.undecided == {RACE_UNORDERED_ACCESS: 1}
    assert not result.result.withheld and not result.result.inconclusive


def test_gzip_and_headerless_input(tmp_path: Path) -> None:
    name = "two-threads-sync-write-overlap.jsonl"
    data = Path(BAD_DIR, name).read_bytes()
    gz = tmp_path / "t.jsonl.gz"
    gz.write_bytes(gzip.compress(data))
    assert [f.line for f in analyze(str(gz)).findings] == [EXPECTED[name][0]]
    bare = tmp_path / "bare.jsonl"
    bare.write_bytes(b"\n" + data.split(b"\n", 1)[1])
    result = analyze(str(bare))
    assert result.profile == "latest" and [f.line for f in result.findings] == [EXPECTED[name][0]]


@pytest.mark.parametrize(("text", "line"), [(b'{"op":"mutex_lock","tid":1}\n', 1),
                                            (b'{"op":"marker","kind":"annotation","tid":1}\n{"format":"dmaspec-trace",'
                                             b'"version":1}\n', 2)])
def test_bad_input_is_an_input_error(tmp_path: Path, text: bytes, line: int) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_bytes(text)
    with pytest.raises(InputError) as e:
        analyze(str(p))
    assert e.value.line == line
    with pytest.raises(InputError):
        analyze(str(tmp_path / "missing.jsonl"))


def _workload(n: int, seed: int = 11) -> Iterator[dict[str, Any]]:
    """A render loop: GPU threads write buffers and signal per-job fences, CPU threads wait and read them back,
    kernel threads write; every access to a buffer under its mutex.  One planted race (line 4 of the file)."""
    rng = random.Random(seed)
    yield _attach(900, "planted", "pat")
    yield _map(900, "DMA_FROM_DEVICE", "pat", "psg")
    yield _cpu(901, "DMA_FROM_DEVICE", buf="planted")
    yield _cpu(901, "DMA_FROM_DEVICE", end=True, buf="planted")
    yield _unmap(900, "DMA_FROM_DEVICE", "pat", "psg")
    count, job = 5, 0
    while count < n:
        job += 1
        buf = f"bo{rng.randrange(128)}"
        lock, unlock = _op("mutex_lock", 0, lock=f"lock-{buf}"), _op("mutex_unlock", 0, lock=f"lock-{buf}")
        if rng.random() < 0.6:
            gpu, cpu = rng.randrange(100, 108), rng.randrange(200, 216)
            att, sg, fence = f"at{job}", f"sg{job}", f"f{job}"
            out = [_attach(gpu, buf, att), lock | {"tid": gpu}, _map(gpu, "DMA_FROM_DEVICE", att, sg),
                   _unmap(gpu, "DMA_FROM_DEVICE", att, sg), _op("dma_fence_signal", gpu, 0, fence=fence),
                   unlock | {"tid": gpu}, _op("dma_buf_detach", gpu, dmabuf=buf, attach=att),
                   _op("dma_fence_wait", cpu, 0, fence=fence), lock | {"tid": cpu},
                   _cpu(cpu, "DMA_FROM_DEVICE", buf=buf), _cpu(cpu, "DMA_FROM_DEVICE", end=True, buf=buf),
                   unlock | {"tid": cpu},
                   _op("dma_fence_release", cpu, fence=fence)]
        else:
            tid = rng.randrange(300, 308)
            out = [lock | {"tid": tid}, _cpu(tid, "DMA_TO_DEVICE", buf=buf),
                   _cpu(tid, "DMA_TO_DEVICE", end=True, buf=buf), unlock | {"tid": tid}]
        count += len(out)
        yield from out


def test_streams_a_long_trace(tmp_path: Path) -> None:
    p = tmp_path / "long.jsonl"
    n = write_trace(p, _workload(100_000))
    result: RaceResult = analyze(str(p))
    assert result.events == n >= 100_000
    assert [(f.line, f.related_lines, f.objects[0].key) for f in result.findings] == [(4, (3, 5, 6), "planted")]
    assert result.windows > 15_000
    assert result.remembered <= 128 * HISTORY + 2  # per buffer: threads 900 and 901 never synchronise


def test_windows_everyone_synchronised_with_are_forgotten() -> None:
    """Without the planted threads, which never synchronise with anyone, every thread soon learns of every close
    through the mutexes and fences: the analysis holds a few windows per buffer, far below its HISTORY bound."""
    a = RaceAnalysis("mem.jsonl")
    for n, e in enumerate(itertools.islice(_workload(100_000), 5, None), 1):
        a.feed(validate(e, "mem.jsonl", n))
    assert a.findings() == [] and a.events >= 99_000
    assert a.remembered() < 128 * HISTORY // 4
