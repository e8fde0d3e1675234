"""Mixed sources: a kernel trace and an strace of one run, checked as one trace (``dmaspec check --join``)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from bench.mixed import write_pair
from checker import join as J
from checker.api import check_file, check_join
from checker.core import InputError
from checker.readers import convert
from checker.trace import open_binary, validate

ROOT = Path(__file__).resolve().parent.parent
MIXED = ROOT / "traces" / "mixed"
OK = (MIXED / "ok" / "heap-sync.ftrace", MIXED / "ok" / "heap-sync.strace")
BAD = sorted(p for p in (MIXED / "bad").iterdir() if p.is_dir())
TRACE_SCHEMA = Draft202012Validator(json.loads((ROOT / "traces/schema/dmaspec-trace-v1.schema.json").read_text()))
REPORT_SCHEMA = Draft202012Validator(json.loads((ROOT / "docs/report-v1.schema.json").read_text()))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "checker", *args], capture_output=True, text=True, cwd=ROOT,
                          check=False)


def pair(directory: Path) -> tuple[str, str]:
    kernel, = directory.glob("*.ftrace")
    strace, = directory.glob("*.strace")
    return str(kernel.relative_to(ROOT)), str(strace.relative_to(ROOT))


def joined_events(paths: list[str], **options: object) -> list[dict[str, object]]:
    with J.join(paths, **options) as j:  # type: ignore[arg-type]
        return [event for _, event in j.conversion.events]


# -- the samples ------------------------------------------------------------------------------

def test_the_correct_pair_checks_clean_joined_and_apart() -> None:
    paths = [str(p.relative_to(ROOT)) for p in OK]
    r = cli("check", "--join", *paths)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "joined traces/mixed/ok/heap-sync.ftrace (kernel trace) and traces/mixed/ok/heap-sync.strace" in r.stdout
    assert "no finding; clean" in r.stdout
    result = check_join(paths)
    assert result.findings == [] and not result.inconclusive and result.source_format == "ftrace+strace"
    assert result.joined == tuple(paths)
    for path in paths:
        assert check_file(path).findings == []


@pytest.mark.parametrize("directory", BAD, ids=[d.name for d in BAD])
def test_each_bad_pair_breaks_its_rule_only_when_joined(directory: Path) -> None:
    kernel, strace = pair(directory)
    r = cli("check", "--join", strace, kernel)  # either order
    assert r.returncode == 1, r.stdout + r.stderr
    result = check_join([kernel, strace])
    assert [f.rule for f in result.findings] == [directory.name]
    reference = check_join([kernel, strace], engine="interpreter")
    assert [f.key() for f in reference.findings] == [f.key() for f in result.findings]
    for path in (kernel, strace):
        alone = check_file(path)
        assert alone.findings == [], f"{path} shows {directory.name} on its own: not a join test"
    # the report points at the recordings' own lines, and reproduces the join
    finding = result.findings[0]
    file, line = result.origins[finding.line]
    assert file in (kernel, strace) and line > 0
    assert f"{file}:{line}: " in r.stdout and f"reproduce: dmaspec check --join --profile 6.12 {kernel} {strace}" \
        in r.stdout


def test_sync_flags_come_from_the_strace_and_the_buffer_from_the_kernel() -> None:
    events = joined_events(list(pair(MIXED / "bad" / "SYNC-END-DIRECTION")))
    syncs = [e for e in events if e["op"] == "ioctl"]
    assert [e["args"]["flags"] for e in syncs] == [1, 6]  # type: ignore[index]
    export, = (e for e in events if e["op"] == "dma_buf_export")
    assert export["ret"] == "0xffff88810a7e2400" and export["args"] == {"exp_name": "acme_npu", "size": 1048576}


def test_an_event_both_show_appears_once() -> None:
    events = joined_events([str(p) for p in OK])
    ops = [(e["op"], e.get("kind", "call")) for e in events]
    assert ops.count(("dma_buf_export", "call")) == 1 and ops.count(("dma_buf_fd", "call")) == 1
    assert ops.count(("mmap", "syscall")) == 1 and ops.count(("munmap", "syscall")) == 1
    assert ops.count(("ioctl", "syscall")) == 2 and ops.count(("lseek", "syscall")) == 2
    assert ops.count(("llseek", "syscall")) == 0  # the kernel's llseek is the strace's lseek
    assert [e["args"]["fd"] for e in events if e["op"] == "close"] == [4, 4, 5]  # type: ignore[index]
    assert ops.count(("marker", "annotation")) == 6  # five the program wrote, each once, and the setup's
    # the kernel names the buffer; the strace's name for it is gone
    assert not any("strace:" in json.dumps(e) for e in events)
    # ... and the strace's arguments are kept (prot and flags only the strace shows)
    mmap, = (e for e in events if e["op"] == "mmap")
    assert mmap["args"] == {"fd": 5, "length": 65536, "offset": 0, "prot": 3, "flags": 1}
    for n, event in enumerate(events, 1):
        assert not [k for k in event if k.startswith("_")], event
        validate(event, "joined", n)
        assert TRACE_SCHEMA.is_valid(event), event


def test_the_joined_trace_is_in_time_order_and_on_the_kernel_clock() -> None:
    events = joined_events([str(p) for p in OK])
    times = [float(e["ts"]) for e in events]  # type: ignore[arg-type]
    assert times == sorted(times)
    assert times[0] > 99 and times[-1] < 101


def test_convert_join_writes_a_canonical_trace_that_checks_the_same(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    kernel, strace = pair(MIXED / "bad" / "FD-NO-CLOEXEC")
    r = cli("convert", "--join", kernel, strace, "-o", str(out))
    assert r.returncode == 0, r.stderr
    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["format"] == "dmaspec-trace" and header["source"]["converted_from"] == "ftrace+strace"
    assert header["source"]["alignment"]["anchors"] >= 2
    assert {"close", "execve", "ioctl", "dma_buf_get", "fork", "clone"}.isdisjoint(header["unobserved"])
    assert {"get_dma_buf", "dma_resv_lock", "mmap_access"} <= set(header["unobserved"])
    for line in lines[1:]:
        event = json.loads(line)
        assert TRACE_SCHEMA.is_valid(event), event
        assert str(event["src"]).split(":")[0] in (kernel, strace)
    assert [f.rule for f in check_file(str(out)).findings] == ["FD-NO-CLOEXEC"]
    r = cli("convert", kernel, strace)
    assert r.returncode == 2 and "--join" in r.stderr


# -- refusing what cannot be joined -------------------------------------------------------------

def test_recordings_of_another_run_are_refused() -> None:
    r = cli("check", "--join", str(OK[0].relative_to(ROOT)), "traces/mixed/unaligned/other-run.strace")
    assert r.returncode == 2
    assert "traces/mixed/unaligned/other-run.strace: cannot join with traces/mixed/ok/heap-sync.ftrace: no process " \
           "in common" in r.stderr
    assert "Traceback" not in r.stderr


def test_recordings_with_no_event_in_common_are_refused_unless_offset_is_given() -> None:
    args = ("check", "--join", str(OK[0].relative_to(ROOT)), "traces/mixed/unaligned/no-shared-event.strace")
    r = cli(*args)
    assert r.returncode == 2 and "cannot be aligned" in r.stderr and "--offset" in r.stderr
    r = cli(*args, "--offset", "38468")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "strace time = kernel time + 38468.000000 s (given with --offset)" in r.stdout
    with pytest.raises(InputError, match="cannot be aligned"):
        check_join([str(OK[0]), "traces/mixed/unaligned/no-shared-event.strace"])


@pytest.mark.parametrize("args, message", [
    (("check", "--join", "traces/mixed/ok/heap-sync.ftrace"), "--join takes two files"),
    (("check", "--join", "traces/mixed/ok/heap-sync.strace", "traces/mixed/unaligned/other-run.strace"),
     "both files are strace"),
    (("check", "--join", "traces/mixed/ok", "traces/mixed/ok/heap-sync.strace"), "not a directory"),
    (("check", "--join", "traces/ok/compositor-mmap-sync.jsonl", "traces/mixed/ok/heap-sync.strace"),
     "canonical JSON Lines"),
    (("check", "--join", "--races", *(str(p.relative_to(ROOT)) for p in OK)), "dmaspec convert --join"),
    (("check", "--offset", "3", "traces/mixed/ok/heap-sync.strace"), "--offset goes with --join"),
])
def test_usage_errors(args: tuple[str, ...], message: str) -> None:
    r = cli(*args)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_line_that_does_not_parse_names_its_file_and_line(tmp_path: Path) -> None:
    strace = tmp_path / "app.strace"
    lines = OK[1].read_text().splitlines(keepends=True)
    lines.insert(12, "this is the program's own output\n")
    strace.write_text("".join(lines))
    r = cli("check", "--join", str(OK[0].relative_to(ROOT)), str(strace))
    assert r.returncode == 2 and f"{strace}:13: expected a strace line" in r.stderr, r.stderr
    kernel = tmp_path / "k.ftrace"
    lines = OK[0].read_text().splitlines(keepends=True)
    lines.insert(20, "garbage\n")
    kernel.write_text("".join(lines))
    r = cli("check", "--join", str(kernel), str(OK[1].relative_to(ROOT)))
    assert r.returncode == 2 and f"{kernel}:21: not an ftrace line" in r.stderr, r.stderr


def test_a_thread_in_two_different_processes_is_refused(tmp_path: Path) -> None:
    kernel = tmp_path / "k.ftrace"
    kernel.write_text(OK[0].read_text().replace("(   4211)", "(   4200)"))
    with pytest.raises(InputError, match="thread 4211 is in process 4200 in the kernel trace but in 4211"):
        check_join([str(kernel), str(OK[1])])


def test_an_strace_without_timestamps_is_refused(tmp_path: Path) -> None:
    strace = tmp_path / "app.strace"
    strace.write_text("".join(line.split(" ", 3)[0] + "  " + line.split(" ", 3)[3]
                              for line in OK[1].read_text().splitlines(keepends=True)))
    with pytest.raises(InputError, match="no timestamps"):
        check_join([str(OK[0]), str(strace)])


# -- never silently apart -----------------------------------------------------------------------

def test_checked_apart_a_kernel_trace_and_an_strace_of_one_run_get_a_note() -> None:
    r = cli("check", "traces/mixed/ok")
    assert r.returncode == 0
    assert ("dmaspec: note: traces/mixed/ok/heap-sync.ftrace and traces/mixed/ok/heap-sync.strace look like "
            "recordings of one run (both show pid 4211) and were checked separately: dmaspec check --join "
            "traces/mixed/ok/heap-sync.ftrace traces/mixed/ok/heap-sync.strace checks them together") in r.stderr
    r = cli("check", "traces/mixed/ok/heap-sync.ftrace", "traces/mixed/unaligned/other-run.strace")
    assert "--join" not in r.stderr


# -- alignment ----------------------------------------------------------------------------------

def test_alignment_rests_on_anchors_and_says_so() -> None:
    with J.join([str(p) for p in OK]) as j:
        a = j.alignment
    assert abs(a.offset - 38468.0) < 1e-4 and a.scale == 1.0 and not a.given
    assert {x.kind for x in a.anchors} >= {"marker", "mmap", "seek", "ioctl"}
    assert a.residual < 500e-6
    assert "strace time = kernel time + 38467.99" in a.describe() and "anchor(s)" in a.describe()
    # every strace stamp (a call's start) is at or before the kernel's view of that call
    assert all(a.to_kernel(x.strace_time) <= x.kernel_time + 1e-9 for x in a.anchors)


@pytest.mark.parametrize("offset, drift", [(38400.0, 0.0), (-12.5, 0.0), (1_700_000_000.25, 0.0), (5000.0, 80.0)])
def test_alignment_recovers_the_offset_and_drift_of_a_long_run(tmp_path: Path, offset: float, drift: float) -> None:
    kernel, strace = tmp_path / "run.ftrace", tmp_path / "run.strace"
    if offset > 1e9:  # strace -ttt: seconds since the epoch
        write_pair(str(kernel), str(strace), 3000, offset=offset, drift=drift)
        text = strace.read_text().splitlines(keepends=True)
        strace.write_text("".join(_epoch(line, offset) for line in text))
    else:
        write_pair(str(kernel), str(strace), 3000, offset=offset % 86400, drift=drift)
    k, s = J.survey(J.Recording(str(kernel), "ftrace", J.KERNEL)), J.survey(J.Recording(str(strace), "strace",
                                                                                         J.STRACE))
    a = J.align(k, s)
    assert abs(a.scale - (1 + drift * 1e-6)) < 10e-6
    assert abs(a.to_kernel(s.first or 0) - (k.first or 0)) < 0.01
    result = check_join([str(kernel), str(strace)])
    assert result.findings == [] and not result.inconclusive, result.conversion_notes


def _epoch(line: str, offset: float) -> str:
    """An ``-tt`` line as ``-ttt`` prints it (the day of ``offset``)."""
    pid, hms, rest = line.split(" ", 2)[0], line.split()[1], line.split(" ", 3)[3]
    h, m, sec = hms.split(":")
    day = offset - offset % 86400
    return f"{pid}  {day + int(h) * 3600 + int(m) * 60 + float(sec):.6f} {rest}"


def test_a_trace_crossing_midnight_keeps_its_order() -> None:
    clock = J._Clock()
    assert [clock(t) for t in (86399.5, 86399.9, 0.1, 0.2)] == [86399.5, 86399.9, 86400.1, 86400.2]


# -- streams -------------------------------------------------------------------------------------

def test_the_merge_streams_with_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel, strace = tmp_path / "run.ftrace", tmp_path / "run.strace"
    written = write_pair(str(kernel), str(strace), 6_000)
    most = [0]
    release = J.Merger.release

    def watched(self: J.Merger) -> object:
        most[0] = max(most[0], len(self.pending))
        return release(self)

    monkeypatch.setattr(J.Merger, "release", watched)
    with J.join([str(kernel), str(strace)]) as j:
        events = j.conversion.events
        first = next(events)  # nothing is read before it is asked for
        n = 1 + sum(1 for _ in events)
    assert first[1]["op"] == "marker"
    assert n > written.frames * 2
    assert most[0] < 200, most[0]  # events held back at once, whatever the length of the run


def test_an_event_waits_for_its_counterpart_at_most_the_window() -> None:
    assert J.WINDOW <= 1.0 and J.MAX_PENDING <= 1 << 17


# -- renaming and what each side cannot see ------------------------------------------------------

def test_a_buffer_the_kernel_trace_saw_created_unseen_takes_the_strace_name(tmp_path: Path) -> None:
    """The kernel trace started after the buffer was made: its dma_buf_get says which strace fd it is."""
    kernel = tmp_path / "k.ftrace"
    kernel.write_text("".join(line for line in OK[0].read_text().splitlines(keepends=True)
                              if "dma_buf_export" not in line and "dma_buf_fd" not in line))
    events = joined_events([str(kernel), str(OK[1])])
    get, = (e for e in events if e["op"] == "dma_buf_get")
    export, = (e for e in events if e["op"] == "dma_buf_export")
    assert get["ret"] == export["ret"] == "strace:10"
    assert all(e["args"].get("dmabuf") in (None, "strace:10") for e in events)  # type: ignore[union-attr]
    result = check_join([str(kernel), str(OK[1])])
    assert result.findings == [] and not result.inconclusive


def test_what_one_side_cannot_decide_the_other_may() -> None:
    kernel, strace = pair(MIXED / "bad" / "FD-NO-CLOEXEC")
    with J.join([kernel, strace]) as j:
        assert "FD-NO-CLOEXEC" not in j.conversion.undecidable  # the strace lacks the flags; the kernel has them
        assert "VMAP-VUNMAP-ADDRESS" in j.conversion.undecidable  # neither has the vmap address
        list(j.conversion.events)
    with open_binary(strace) as stream:
        alone = convert(stream, strace)
        assert "FD-NO-CLOEXEC" in alone.undecidable


def test_reports_of_a_join_name_the_recordings(tmp_path: Path) -> None:
    kernel, strace = pair(MIXED / "bad" / "SYNC-END-DIRECTION")
    sarif = tmp_path / "out.sarif"
    r = cli("check", "--join", kernel, strace, "--format", "json", "--output", f"sarif={sarif}")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert REPORT_SCHEMA.is_valid(doc), list(REPORT_SCHEMA.iter_errors(doc))[:3]
    trace, = doc["traces"]
    assert trace["format"] == "ftrace+strace" and trace["joined"]["files"] == [kernel, strace]
    finding, = trace["findings"]
    assert trace["joined"]["origins"][str(finding["line"])] == {"file": strace, "line": 11}
    result = json.loads(sarif.read_text())["runs"][0]["results"][0]
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"].endswith("npu-no-y.strace") and location["region"]["startLine"] == 11


# -- the readers' side of it ------------------------------------------------------------------------

def test_strace_writes_to_trace_marker_are_markers() -> None:
    with open_binary(str(OK[1])) as stream:
        conv = convert(stream, str(OK[1]))
        markers = [e["args"]["text"] for _, e in conv.events if e["op"] == "marker"]
    assert markers == ["camera-hal: start", "camera-hal: heap alloc", "camera-hal: cpu write bracket",
                       "camera-hal: gpu import", "camera-hal: done"]


def test_a_marker_strace_cut_short_still_anchors() -> None:
    """strace -s cuts long strings: the marker is a prefix of the kernel's, and still pairs with it."""
    text = b'42  10:00:00.000100 write(3</sys/kernel/tracing/trace_marker>, "a long marker"..., 40) = 40\n'
    conv = convert(io.BufferedReader(io.BytesIO(text)), "a.strace")
    (_, event), = conv.events
    assert event["args"] == {"text": "a long marker..."}
    full = "a long marker that strace did not print whole"
    assert J._texts_agree(("a long marker", True), (full, False))
    assert not J._texts_agree(("a long markex", True), (full, False))
    assert not J._texts_agree(("a long marker", False), (full, False))


def test_a_kernel_trace_that_stops_early_makes_the_join_partial(tmp_path: Path) -> None:
    kernel = tmp_path / "k.ftrace"
    lines = OK[0].read_text().splitlines(keepends=True)
    kernel.write_text("".join(lines[:lines.index(next(x for x in lines if "gpu import" in x))]))
    result = check_join([str(kernel), str(OK[1])])
    assert not result.leaks_checked
    assert any("the kernel trace stops" in note for note in result.conversion_notes)
    assert check_join([str(p) for p in OK]).leaks_checked


def _npu(tmp_path: Path, child: list[str], *, cloexec: bool = True, y: bool = False) -> list[str]:
    """The SYNC-END-DIRECTION pair with its SYNC END fixed, the buffer opened with or without O_CLOEXEC, and a
    child forked (its lines, ``CHILD`` for its pid) before the parent closes the buffer."""
    kernel_in, strace_in = pair(MIXED / "bad" / "SYNC-END-DIRECTION")
    kernel = (ROOT / kernel_in).read_text()
    if not cloexec:
        kernel = kernel.replace("flags=0x80002", "flags=0x2")
    lines = (ROOT / strace_in).read_text().replace('"\\x06\\x00', '"\\x05\\x00').splitlines(keepends=True)
    if y:
        lines = [line.replace("(5,", "(5</dmabuf:>,").replace(" 5, 0)", " 5</dmabuf:>, 0)") for line in lines]
    at = next(i for i, line in enumerate(lines) if "munmap" in line)
    forked = ["5120  09:15:30.254200 clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, "
              "child_tidptr=0x7f8e6a1f9a10) = 5130\n"]
    forked += [f"5130  09:15:30.2543{n:02d} {text}\n" for n, text in enumerate(child)]
    lines[at:at] = forked
    (tmp_path / "k.ftrace").write_text(kernel)
    (tmp_path / "s.strace").write_text("".join(lines))
    return [str(tmp_path / "k.ftrace"), str(tmp_path / "s.strace")]


EXEC = 'execve("/usr/bin/upload", ["/usr/bin/upload"], 0x7ffe5d1c3a08 /* 2 vars */) = 0'


def test_an_fd_only_the_kernel_trace_knows_is_followed_into_a_child(tmp_path: Path) -> None:
    paths = _npu(tmp_path, [EXEC, "exit_group(0) = ?", "+++ exited with 0 +++"], cloexec=False)
    result = check_join(paths)
    assert [f.rule for f in result.findings] == ["FD-NO-CLOEXEC"]
    assert result.findings[0].objects[0].key == (5130, 5)
    assert check_join(_npu(tmp_path, [EXEC, "exit_group(0) = ?", "+++ exited with 0 +++"])).findings == []


@pytest.mark.parametrize("closing, rules", [
    ("close_range(3, ~0U, 0) = 0", []), ("close(5) = 0", []), ("dup2(0, 5) = 5", []),
    # setting close-on-exec after the fact is a finding of its own (another thread may exec first)
    ("fcntl(5, F_SETFD, FD_CLOEXEC) = 0", ["FD-CLOEXEC-LATE"]),
    ("close_range(5, 5, CLOSE_RANGE_CLOEXEC) = 0", ["FD-CLOEXEC-LATE"]),
])
def test_strace_calls_on_an_fd_it_cannot_tell_is_a_dma_buf_still_count(tmp_path: Path, closing: str,
                                                                      rules: list[str]) -> None:
    """strace without -y cannot tell fd 5 is a dma-buf; the kernel trace can: the child's close_range, close, dup2
    onto it, or close-on-exec set on it, before its execve, is no leak."""
    result = check_join(_npu(tmp_path, [closing, EXEC, "exit_group(0) = ?", "+++ exited with 0 +++"], cloexec=False))
    assert [f.rule for f in result.findings] == rules and not result.inconclusive


def test_an_fd_strace_saw_arrive_from_nowhere_is_the_kernel_trace_buffer(tmp_path: Path) -> None:
    """With -y but no creating ioctl it knows, strace takes fd 5 for a dma-buf of unknown origin, received from
    somewhere; joined, it is the buffer the kernel trace saw the driver install there."""
    kernel, strace = _npu(tmp_path, [], y=True)
    strace_path = Path(strace)
    strace_path.write_text(strace_path.read_text().replace('"\\x05\\x00', '"\\x06\\x00'))  # END with other flags
    alone = check_file(strace)
    assert [f.objects[0].key for f in alone.findings] == [(5120, "strace:8:fd5", 5120)]
    events = joined_events([kernel, strace])
    assert not [e for e in events if e["op"] == "fd_received"]
    result = check_join([kernel, strace])
    assert [f.objects[0].key for f in result.findings] == [(5120, "0xffff88810a7e2400", 5120)]


def test_a_kernel_trace_that_starts_late_is_a_gap(tmp_path: Path) -> None:
    kernel, strace = tmp_path / "run.ftrace", tmp_path / "run.strace"
    write_pair(str(kernel), str(strace), 1500)
    lines = kernel.read_text().splitlines(keepends=True)
    body = [line for line in lines if not line.startswith("#")]
    kernel.write_text("".join([line for line in lines if line.startswith("#")] + body[len(body) // 3:]))
    result = check_join([str(kernel), str(strace)])
    assert result.findings == [] and not result.inconclusive and len(result.gaps) == 1
    assert any("the kernel trace starts after the strace shows dma-buf events" in n for n in result.conversion_notes)
    assert check_join([str(p) for p in OK]).gaps == []


def test_buffers_named_by_inode_join_the_strace_fds(tmp_path: Path) -> None:
    """Linux 7.0's dma_buf tracepoints name a buffer by its inode: the strace's fds join it through dma_buf_fd."""
    p = "      camera-hal-4211    (   4211) [002] ...1. {:12.6f}: dma_buf_{}: exp_name=system size=65536 ino=4242{}\n"
    m = "      camera-hal-4211    (   4211) [002] ..... {:12.6f}: tracing_mark_write: camera-hal: {}\n"
    kernel = tmp_path / "k.ftrace"
    kernel.write_text("# tracer: nop\n#\n" + "".join([
        m.format(100.001237, "start"), m.format(100.002236, "heap alloc"), p.format(100.002538, "export", ""),
        p.format(100.002566, "fd", " fd=5"), m.format(100.003834, "cpu write bracket"),
        m.format(100.004933, "gpu import"), p.format(100.005151, "get", " fd=5"),
        p.format(100.005236, "dynamic_attach", " attachment:0xffff88801a2b3c00 is_dynamic=0 dev_name=0000:03:00.0"),
        p.format(100.006102, "detach", " attachment:0xffff88801a2b3c00 is_dynamic=0 dev_name=0000:03:00.0"),
        p.format(100.006140, "put", ""), m.format(100.006937, "done")]))
    events = joined_events([str(kernel), str(OK[1])])
    assert {e["ret"] for e in events if e["op"] in ("dma_buf_export", "dma_buf_get")} == {"ino:4242"}
    syncs = [e for e in events if e["op"] == "ioctl"]
    assert [e["args"]["flags"] for e in syncs] == [2, 6]  # type: ignore[index]
    result = check_join([str(kernel), str(OK[1])])
    assert result.findings == [] and not result.inconclusive


def test_strace_durations_order_each_call_after_what_the_kernel_did_in_it(tmp_path: Path) -> None:
    """With -T, strace says when each call returned: the join puts the call there, after the kernel's events."""
    strace = tmp_path / "app.strace"
    strace.write_text("".join(line.rstrip("\n") + (" <0.000200>\n" if " = " in line and "= ?" not in line else "\n")
                              for line in OK[1].read_text().splitlines(keepends=True)))
    events = joined_events([str(OK[0]), str(strace)])
    ops = [e["op"] for e in events]
    assert ops.count("ioctl") == 2 and ops.count("mmap") == 1 and ops.count("dma_buf_fd") == 1
    close = ops.index("close", ops.index("dma_buf_put"))  # close(4) of the GPU, then close(5): after the put
    assert events[close]["args"] == {"fd": 4}
    times = [float(e["ts"]) for e in events]  # type: ignore[arg-type]
    assert times == sorted(times)
    assert check_join([str(OK[0]), str(strace)]).findings == []


def test_a_kernel_trace_with_syscall_tracepoints_joins_without_doubling_the_calls(tmp_path: Path) -> None:
    """The ftrace reader writes the system calls its syscall tracepoints show; in a process the strace shows too,
    the join keeps the strace's (each call once), and the joined trace checks clean."""
    sys_lines = {
        "100.004500": ["sys_munmap(addr: 7f5a375b2000, len: 10000)", "sys_munmap -> 0x0"],
        "100.006700": ["sys_close(fd: 5)", "sys_close -> 0x0"],
        "100.007000": ["sys_exit_group(error_code: 0)"],
    }
    prefix = "      camera-hal-4211    (   4211) [002] ...1.   "
    out = []
    for line in OK[0].read_text().splitlines(keepends=True):
        ts = line.split(": ", 1)[0].rsplit(" ", 1)[-1] if "camera-hal" in line else ""
        for at in [t for t in sys_lines if ts and float(ts) > float(t)]:
            for n, body in enumerate(sys_lines.pop(at)):
                out.append(f"{prefix}{float(at) + n * 1e-6:.6f}: {body}\n")
        out.append(line)
    out += [f"{prefix}{float(at) + n * 1e-6:.6f}: {body}\n" for at, bodies in sys_lines.items()
            for n, body in enumerate(bodies)]
    kernel = tmp_path / "k.ftrace"
    kernel.write_text("".join(out))
    with open_binary(str(kernel)) as stream:
        apart = list(convert(stream, str(kernel)).events)
    assert [e["op"] for _, e in apart if e.get("kind") == "syscall" and e["op"] in ("close", "munmap")] == \
        ["munmap", "close"]  # read from the tracepoints
    events = joined_events([str(kernel), str(OK[1])])
    assert [e["args"] for e in events if e["op"] == "close"] == [{"fd": 4}, {"fd": 4}, {"fd": 5}]
    assert [e["op"] for e in events].count("munmap") == 1 and [e["op"] for e in events].count("exit_group") == 1
    result = check_join([str(kernel), str(OK[1])])
    assert result.findings == [] and not result.inconclusive
