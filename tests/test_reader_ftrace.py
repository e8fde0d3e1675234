"""The ftrace reader: real recordings from stock kernels, line shapes, folding, gaps, and what it cannot see."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from checker.api import check_file, check_stream
from checker.core import InputError, Result
from checker.readers import convert, formats
from checker.readers.ftrace import PREFIX, sniff

ROOT = Path(__file__).resolve().parent.parent
REAL = ROOT / "traces" / "real"  # a copy of ../shared/real-traces, so a fresh clone has them
REAL_TRACES = sorted(REAL.glob("trace-*.txt"))
SAMPLES = ROOT / "traces" / "ftrace"
SCHEMA = Draft202012Validator(json.loads((ROOT / "traces/schema/dmaspec-trace-v1.schema.json").read_text()))
HEADER = "# tracer: nop\n#\n"


def kp(func: str, fields: str, *, tid: int = 100, tgid: int | None = 100, ts: float = 1.0, comm: str = "app") -> str:
    """A kprobe entry line."""
    col = f" ({tgid:>7})" if tgid is not None else ""
    return f" {comm}-{tid}{col} [000] ...1. {ts:12.6f}: {func}: ({func}+0x4/0x40) {fields}\n"


def kr(func: str, ret: str, *, tid: int = 100, tgid: int | None = 100, ts: float = 1.0, comm: str = "app",
       caller: str = "drv_import+0x10/0x80 [drv]") -> str:
    """A kretprobe line."""
    col = f" ({tgid:>7})" if tgid is not None else ""
    return f" {comm}-{tid}{col} [000] ..... {ts:12.6f}: {func}_ret: ({caller} <- {func}) ret={ret}\n"


def events(text: str) -> list[tuple[int, dict[str, object]]]:
    data = text.encode()
    return list(convert(io.BufferedReader(io.BytesIO(data)), "t.txt").events)


def read(data: bytes, name: str = "t.txt") -> Any:
    """The conversion of ``data``, peeking at as much of it as check_file() does."""
    return convert(io.BufferedReader(io.BytesIO(data), 1 << 16), name)


def check(text: str, **options: object) -> Result:
    return check_stream(io.BufferedReader(io.BytesIO(text.encode())), "t.txt", **options)  # type: ignore[arg-type]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "checker", *args], capture_output=True, text=True, cwd=ROOT,
                          check=False)


# -- real recordings ------------------------------------------------------------------------

def test_the_real_recordings_are_here() -> None:
    assert [p.name for p in REAL_TRACES] == ["trace-6.1-function.txt", "trace-6.12-function.txt"]


@pytest.mark.parametrize("path", REAL_TRACES, ids=lambda p: p.name)
@pytest.mark.parametrize("engine", ["compiled", "interpreter"])
def test_real_recordings_of_correct_usage_check_clean(path: Path, engine: str) -> None:
    result = check_file(str(path), engine=engine)
    assert result.source_format == "ftrace"
    assert result.findings == [] and not result.withheld and not result.errors
    assert result.events > 50  # the imports, exports, mmaps and llseeks were read, not skipped
    assert result.ignored  # and what was not converted is counted


@pytest.mark.parametrize("path", REAL_TRACES, ids=lambda p: p.name)
def test_real_recordings_from_the_command_line(path: Path) -> None:
    r = cli("check", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no finding" in r.stdout and "not decidable" in r.stdout


def test_real_recording_converts_to_valid_canonical_lines(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    r = cli("convert", str(REAL / "trace-6.12-function.txt"), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "converted" in r.stderr and "skipped" in r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["format"] == "dmaspec-trace" and "get_dma_buf" in lines[0]["unobserved"]
    for obj in lines:
        assert not list(SCHEMA.iter_errors(obj)), obj
    ops = {o["op"] for o in lines[1:]}
    assert {"dma_buf_export", "dma_buf_fd", "dma_buf_get", "dma_buf_attach", "dma_buf_map_attachment_unlocked",
            "dma_buf_unmap_attachment_unlocked", "dma_buf_detach", "dma_buf_put", "dma_buf_vmap_unlocked",
            "dma_buf_vunmap_unlocked", "llseek", "mmap", "close", "marker"} <= ops
    # folded: the core's inner calls are not the importer's
    assert not ops & {"dma_buf_dynamic_attach", "dma_buf_map_attachment", "dma_buf_unmap_attachment"}
    # each event says where it came from (file operations held until their file is linked come at the link)
    src = [o["src"] for o in lines[1:]]
    assert min(src) > 12 and max(src) <= len((REAL / "trace-6.12-function.txt").read_text().splitlines())
    # and the conversion checks as the recording does
    assert cli("check", str(out)).returncode == 0


def test_real_recording_lines_in_reports_are_the_recording_s(tmp_path: Path) -> None:
    text = (REAL / "trace-6.12-function.txt").read_text().splitlines(keepends=True)
    # drop the importer's unmap: detach while mapped, at the recording's own detach line
    unmap = next(i for i, x in enumerate(text) if "dma_buf_unmap_attachment_unlocked: (" in x)
    detach = next(i for i, x in enumerate(text) if "dma_buf_detach: (" in x)
    bad = tmp_path / "bad.txt"
    bad.write_text("".join(text[:unmap] + text[unmap + 4:]))
    result = check_file(str(bad))
    (finding,) = [f for f in result.findings if f.rule == "ATT-DETACH-WHILE-MAPPED"]
    assert finding.line == detach + 1 - 4  # four lines of the unmap were dropped before it
    assert "dma_buf_detach: (" in bad.read_text().splitlines()[finding.line - 1]


# -- samples --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted((SAMPLES / "ok").glob("*.ftrace")), ids=lambda p: p.name)
def test_ok_samples_check_clean(path: Path) -> None:
    result = check_file(str(path))
    assert result.findings == [] and not result.inconclusive and result.events >= 3


BAD = sorted((SAMPLES / "bad").glob("*/*.ftrace"))


@pytest.mark.parametrize("path", BAD, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("engine", ["compiled", "interpreter"])
def test_bad_samples_break_their_rule(path: Path, engine: str) -> None:
    result = check_file(str(path), engine=engine)
    assert {f.rule for f in result.findings} == {path.parent.name}


def test_lost_events_withhold_what_depends_on_the_gap() -> None:
    path = SAMPLES / "inconclusive" / "detach-after-lost-events.ftrace"
    result = check_file(str(path))
    assert result.findings == [] and result.withheld == {"ATT-DETACH-WHILE-MAPPED": 1} and result.inconclusive
    assert result.gaps == [10]  # the recording's line of CPU:0 [LOST 1523 EVENTS]
    r = cli("check", str(path))
    assert r.returncode == 3 and "gap" in r.stdout


def test_lost_events_do_not_hide_what_came_after() -> None:
    after = (kp("dma_buf_attach", 'dmabuf=0xa dev="x"', ts=2) + kr("dma_buf_attach", "0xb", ts=2)
             + kp("dma_buf_map_attachment", "attach=0xb direction=0", ts=3)
             + kr("dma_buf_map_attachment", "0xc", ts=3)
             + kp("dma_buf_detach", "dmabuf=0xa attach=0xb", ts=4))
    result = check(HEADER + "CPU:1 [LOST 10 EVENTS]\n" + kp("dma_buf_export", 'exp_name="e"')
                   + kr("dma_buf_export", "0xa") + after)
    assert [f.rule for f in result.findings] == ["ATT-DETACH-WHILE-MAPPED"] and result.gaps == [3]


# -- line shapes ----------------------------------------------------------------------------

@pytest.mark.parametrize("line, comm, tid, tgid, cpu", [
    (" dmabuf-exercise-194     (    194) [001] .....     9.965212: x: y", "dmabuf-exercise", 194, "194", 1),
    ("          <idle>-0       [003] d..2.  5.1: x: y", "<idle>", 0, None, 3),
    ("   Render Thread-4300  [001] ...1   100.001: x: y", "Render Thread", 4300, None, 1),
    (" vivid-000-vid-c-195     (    195) [001] .....    10.042375: x: y", "vivid-000-vid-c", 195, "195", 1),
    ("  kworker/u8:3-91    (-------) [002] dN.1. 12.5: x: y", "kworker/u8:3", 91, "-------", 2),
    ("  trace-cmd-5611  [000]  4521.874563: x: y", "trace-cmd", 5611, None, 0),
    ("  app-12 [000] 99: x: y", "app", 12, None, 0),
])
def test_prefix_variants(line: str, comm: str, tid: int, tgid: str | None, cpu: int) -> None:
    m = PREFIX.match(line)
    assert m is not None
    assert (m["comm"], int(m["tid"]), m["tgid"], int(m["cpu"]), m["rest"]) == (comm, tid, tgid, cpu, "x: y")


def test_tgid_is_the_process_and_without_it_the_thread_stands_for_it() -> None:
    with_tgid = events(HEADER + kp("dma_buf_put", "dmabuf=0xa", tid=7, tgid=5))
    assert [(e["tid"], e["pid"]) for _, e in with_tgid] == [(7, 5)]
    conv = convert(io.BufferedReader(io.BytesIO((HEADER + kp("dma_buf_put", "dmabuf=0xa", tid=7, tgid=None))
                                                .encode())), "t.txt")
    assert [(e["tid"], e["pid"]) for _, e in conv.events] == [(7, 7)]
    assert any("tgid" in n for n in conv.notes)


def test_return_probes_pair_per_thread_and_error_pointers_become_errnos() -> None:
    text = (HEADER + kp("dma_buf_get", "fd=5", tid=1) + kp("dma_buf_get", "fd=6", tid=2)
            + kr("dma_buf_get", "0xffffffffffffffea", tid=2) + kr("dma_buf_get", "0xffff888000001000", tid=1))
    got = [(e["tid"], e["args"], e["ret"]) for _, e in events(text)]
    assert got == [(2, {"fd": 6}, -22), (1, {"fd": 5}, "0xffff888000001000")]


def test_fields_by_position_and_in_any_order() -> None:
    text = HEADER + kp("dma_buf_detach", "arg2=0xbb arg1=0xaa")
    assert [e["args"] for _, e in events(text)] == [{"dmabuf": "0xaa", "attach": "0xbb"}]


def test_stack_traces_function_lines_and_markers() -> None:
    text = (HEADER + " app-1 [000] ...1. 1.0: <stack trace>\n => dma_buf_put\n => drv_release\n"
            + " app-1 [000] ..... 1.0: dma_buf_put <-drv_release\n"
            + " app-1 [000] ..... 1.0: tracing_mark_write: step 2: close\n" + kp("dma_buf_put", "dmabuf=0x1", tid=1))
    got = [(n, e["op"]) for n, e in events(text)]
    assert got == [(7, "marker"), (8, "dma_buf_put")]


def test_kernel_marker_names_the_profile() -> None:
    text = HEADER + " app-1 [000] ..... 1.0: tracing_mark_write: dmaspec: kernel=6.1.0-28-amd64\n"
    conv = convert(io.BufferedReader(io.BytesIO(text.encode())), "t.txt")
    assert conv.header.profile == "6.1"
    assert check(text).profile.startswith("6.1")


def test_entry_only_unlocked_call_folds_its_inner_call_but_not_a_second_call() -> None:
    args = "attach=0xb sg_table=0xc direction=0"
    once = kp("dma_buf_unmap_attachment_unlocked", args) + kp("dma_buf_unmap_attachment", args)
    assert [e["op"] for _, e in events(HEADER + once)] == ["dma_buf_unmap_attachment_unlocked"]
    other_args = "attach=0xd sg_table=0xe direction=0"
    other = kp("dma_buf_unmap_attachment_unlocked", args) + kp("dma_buf_unmap_attachment", other_args)
    assert [e["op"] for _, e in events(HEADER + other)] == ["dma_buf_unmap_attachment_unlocked",
                                                            "dma_buf_unmap_attachment"]


def test_sync_ioctl_is_checked_only_when_its_flags_are_recorded() -> None:
    base = (kp("dma_buf_export", 'exp_name="system"') + kr("dma_buf_export", "0xa file=0xf")
            + kp("dma_buf_fd", "dmabuf=0xa flags=0x80000") + kr("dma_buf_fd", "4"))
    end = kp("dma_buf_ioctl", "file=0xf cmd=0x40086200 arg=0x7ff0 flags=0x6") + kr("dma_buf_ioctl", "0")
    seen = events(HEADER + base + end)
    assert [(e["op"], e["args"]) for _, e in seen][-1] == ("ioctl", {"fd": 4, "cmd": 0x40086200, "flags": 6})
    blind = HEADER + base + end.replace(" flags=0x6", "")
    conv = convert(io.BufferedReader(io.BytesIO(blind.encode())), "t.txt")
    assert [e["op"] for _, e in conv.events] == ["dma_buf_export", "dma_buf_fd"]
    assert "ioctl" in conv.header.unobserved
    assert conv.skipped["DMA_BUF_IOCTL_SYNC whose flags the trace does not record"] == 1


def test_sync_file_flags_are_the_low_half_of_what_the_recorder_reads() -> None:
    # ftrace-setup.sh reads 8 bytes at the ioctl argument: {__u32 flags; __s32 fd;}, the fd (-1) on top.
    base = (kp("dma_buf_export", 'exp_name="system"') + kr("dma_buf_export", "0xa file=0xf")
            + kp("dma_buf_fd", "dmabuf=0xa flags=0x80000") + kr("dma_buf_fd", "4"))
    export = (kp("dma_buf_ioctl", "file=0xf cmd=0xc0086202 arg=0x7ff0 flags=0xffffffff00000001")
              + kr("dma_buf_ioctl", "0"))
    seen = events(HEADER + base + export)
    assert [(e["op"], e["args"]) for _, e in seen][-1] == ("ioctl", {"fd": 4, "cmd": 0xC0086202, "flags": 1})
    assert check(HEADER + base + export).findings == []


def test_an_ioctl_whose_argument_faulted_carries_no_flags() -> None:
    # A bad pointer: the probe's user-memory fetch reads 0, the kernel returns -EFAULT before looking at flags.
    base = (kp("dma_buf_export", 'exp_name="system"') + kr("dma_buf_export", "0xa file=0xf")
            + kp("dma_buf_fd", "dmabuf=0xa flags=0x80000") + kr("dma_buf_fd", "4"))
    bad = kp("dma_buf_ioctl", "file=0xf cmd=0x40086200 arg=0x8 flags=0") + kr("dma_buf_ioctl", "-14")
    conv = convert(io.BufferedReader(io.BytesIO((HEADER + base + bad).encode())), "t.txt")
    assert [e["op"] for _, e in conv.events] == ["dma_buf_export", "dma_buf_fd"]
    assert conv.skipped["ioctl whose argument the kernel could not read (-EFAULT)"] == 1
    result = check(HEADER + base + bad)
    assert result.findings == [] and not result.withheld


def mark(text: str, *, tid: int = 100) -> str:
    return f" app-{tid} ({tid:>7}) [000] ..... {1.0:12.6f}: tracing_mark_write: {text}\n"


def test_a_program_that_marks_its_mapping_accesses_has_them_checked() -> None:
    mapped = (kp("dma_buf_export", 'exp_name="system"') + kr("dma_buf_export", "0xa file=0xf")
              + kp("dma_buf_fd", "dmabuf=0xa flags=0x80000") + kr("dma_buf_fd", "4")
              + kp("dma_buf_mmap_internal", "file=0xf vm_start=0x7f0000000000 vm_end=0x7f0000001000 vm_pgoff=0")
              + kr("dma_buf_mmap_internal", "0"))
    access = mark("dmaspec: mmap_access addr=0x7f0000000000 access=write")
    start = kp("dma_buf_ioctl", "file=0xf cmd=0x40086200 arg=0x1 flags=0x2") + kr("dma_buf_ioctl", "0")
    end = kp("dma_buf_ioctl", "file=0xf cmd=0x40086200 arg=0x1 flags=0x6") + kr("dma_buf_ioctl", "0")
    head = HEADER + mark("dmaspec: kernel=6.12.1")
    assert [(e["op"], e["args"]) for _, e in events(head + mapped + access)][-1] == (
        "mmap_access", {"addr": "0x7f0000000000", "access": "write"})
    # munmap and close are unobserved without syscall events: the rules are not decided, the cases counted
    bare = check(head + mapped + access, check_leaks=False)
    assert bare.findings == [] and bare.undecided["MMAP-ACCESS-WITHOUT-SYNC"] == 1
    bracketed = check(head + mapped + start + access + end, check_leaks=False)
    assert bracketed.findings == [] and not bracketed.undecided
    read_only = start.replace("flags=0x2", "flags=0x1")
    wrong = check(head + mapped + read_only + access, check_leaks=False)
    assert wrong.undecided["SYNC-ACCESS-DIRECTION"] == 1


def test_the_recorders_marker_says_the_sync_flags_are_read() -> None:
    base = (kp("dma_buf_export", 'exp_name="system"') + kr("dma_buf_export", "0xa file=0xf")
            + kp("dma_buf_fd", "dmabuf=0xa flags=0x80000") + kr("dma_buf_fd", "4"))
    head = HEADER + mark("dmaspec: kernel=6.12.1")
    said = head + mark("dmaspec: kprobes=48 syscalls= sched= sync_flags=1")
    silent = head + mark("dmaspec: kprobes=48 syscalls= sched= sync_flags=0")
    for text, hidden in ((said, False), (silent, True)):
        conv = convert(io.BufferedReader(io.BytesIO((text + base).encode())), "t.txt")
        assert ("ioctl" in conv.header.unobserved) is hidden


def test_file_operations_before_the_link_are_kept_until_it() -> None:
    text = (HEADER + kp("dma_buf_export", 'exp_name="e"') + kr("dma_buf_export", "0xa")
            + kp("dma_buf_fd", "dmabuf=0xa flags=0") + kr("dma_buf_fd", "3")
            + kp("dma_buf_llseek", "file=0xf offset=0 whence=2") + kr("dma_buf_llseek", "4096")
            + kp("dma_buf_ioctl", "file=0xf cmd=0x40086200 arg=0x1") + kp("dma_buf_begin_cpu_access",
                                                                        "dmabuf=0xa direction=2")
            + kr("dma_buf_begin_cpu_access", "0") + kr("dma_buf_ioctl", "0")
            + kp("dma_buf_file_release", "inode=0x1 file=0xf"))
    got = [(e["op"], e["args"].get("fd")) for _, e in events(text)]  # type: ignore[union-attr]
    assert got == [("dma_buf_export", None), ("dma_buf_fd", None), ("llseek", 3), ("close", 3)]


def test_dma_buf_get_of_an_fd_the_trace_never_showed_installs_the_export_reference() -> None:
    text = (HEADER + kp("dma_buf_export", 'exp_name="drm"') + kr("dma_buf_export", "0xa")
            + kp("dma_buf_get", "fd=8") + kr("dma_buf_get", "0xa") + kp("dma_buf_put", "dmabuf=0xa"))
    assert [(e["op"], e.get("ret")) for _, e in events(text)] == [
        ("dma_buf_export", "0xa"), ("dma_buf_fd", 8), ("dma_buf_get", "0xa"), ("dma_buf_put", None)]
    result = check(text)
    assert result.findings == [] and not result.withheld


def test_fence_tracepoints() -> None:
    line = " app-1 [000] ...1. 1.0: dma_fence_{}: driver=vgem timeline=vgem context=7 seqno={}\n"
    text = HEADER + line.format("init", 3) + line.format("signaled", 3) + line.format("signaled", 3) \
        + line.format("destroy", 3) + line.format("init", 0).replace("context=7", "context=0")
    got = [(e["op"], e["args"]) for _, e in events(text)]
    assert got[0] == ("dma_fence_init", {"fence": "fence:7:3", "context": 7, "seqno": 3})
    assert [op for op, _ in got] == ["dma_fence_init", "dma_fence_signal", "dma_fence_signal", "dma_fence_release"]
    assert [f.rule for f in check(text).findings] == ["FENCE-SIGNAL-TWICE"]


FENCE = " {comm}-{tid} [00{cpu}] {flags} {ts}: dma_fence_{name}: driver=vgem timeline=unbound context={ctx} seqno=1\n"


def fence_line(name: str, tid: int, ctx: int, ts: str, flags: str = ".....", comm: str = "app") -> str:
    return FENCE.format(comm=comm, tid=tid, cpu=tid % 2, flags=flags, ts=ts, name=name, ctx=ctx)


def test_a_fence_wait_is_written_at_its_end_without_timeout_or_return() -> None:
    """dma_fence_wait_start/_end (the real 6.12 lines: traces/ftrace/ok/sync-waits-for-vgem-fence.ftrace)."""
    text = HEADER + fence_line("init", 1, 1, "1.0") + fence_line("wait_start", 1, 1, "1.1") \
        + fence_line("signaled", 2, 1, "1.2", "d..1.") + fence_line("wait_end", 1, 1, "1.3")
    conv = read(text.encode())
    got = [(n, e["op"], e["tid"], e["args"], e.get("ret")) for n, e in conv.events]
    assert got == [(3, "dma_fence_init", 1, {"fence": "fence:1:1", "context": 1, "seqno": 1}, None),
                   (5, "dma_fence_signal", 2, {"fence": "fence:1:1"}, None),
                   (6, "dma_fence_wait_timeout", 1, {"fence": "fence:1:1"}, None)]
    # the wait tracepoints show every wait: the ops are observed
    assert not {"dma_fence_wait", "dma_fence_wait_timeout"} & conv.header.unobserved
    assert conv.notes == [] or all("fence wait" not in n for n in conv.notes)


def test_a_fence_wait_still_open_at_the_end_is_noted_not_written_nor_taken_as_a_hang() -> None:
    text = HEADER + fence_line("init", 1, 1, "1.0") + fence_line("wait_start", 1, 1, "1.1")
    conv = read(text.encode())
    assert [e["op"] for _, e in conv.events] == ["dma_fence_init"]
    assert any(n.startswith("1 fence wait(s) had not returned when the trace ended (dma_fence_wait_start at "
                            "line(s) 4)") for n in conv.notes), conv.notes
    assert "waiting" not in conv.header.source
    # the fence is still unsignalled, which its own rule reports; nobody is taken as asleep for good
    assert [f.rule for f in check(text).findings] == ["FENCE-NEVER-SIGNALLED"]


def test_without_the_wait_tracepoints_fence_waits_are_unobserved() -> None:
    """A trace that shows fence events but no wait line, and says nothing of how it was recorded, may have had
    only some dma_fence events enabled: its waits are unobserved, kprobes or not."""
    plain = HEADER + fence_line("init", 1, 1, "1.0") + fence_line("signaled", 1, 1, "1.1")
    assert {"dma_fence_wait", "dma_fence_wait_timeout"} <= read(plain.encode()).header.unobserved
    with_probes = HEADER + kp("dma_buf_put", "dmabuf=0xa") + fence_line("init", 1, 1, "1.0")
    assert {"dma_fence_wait", "dma_fence_wait_timeout"} <= read(with_probes.encode()).header.unobserved
    # ftrace-setup.sh enables the whole dma_fence group, its marker says it ran
    marked = HEADER + " sh-1 [000] ..... 0.5: tracing_mark_write: dmaspec: kprobes=3 syscalls= sched=\n" + plain
    assert not {"dma_fence_wait", "dma_fence_wait_timeout"} & read(marked.encode()).header.unobserved
    # but before 4.10 the tracepoints did not exist
    old = marked.replace("dmaspec: kprobes", "dmaspec: kernel=4.9.337\n sh-1 [000] ..... 0.6: "
                                             "tracing_mark_write: dmaspec: kprobes")
    assert {"dma_fence_wait", "dma_fence_wait_timeout"} <= read(old.encode()).header.unobserved


def test_probes_on_dma_fence_wait_timeout_take_precedence_over_the_wait_tracepoints() -> None:
    text = HEADER + fence_line("init", 1, 1, "1.0") \
        + " app-1 [000] ...1. 1.05: w: (dma_fence_wait_timeout+0x4/0x90) fence=0xf1 intr=1 timeout=100\n" \
        + fence_line("wait_start", 1, 1, "1.1") + fence_line("wait_end", 1, 1, "1.3")
    conv = read(text.encode())
    assert not [e for _, e in conv.events if e["op"] == "dma_fence_wait_timeout" and e["args"]["fence"] == "fence:1:1"]
    assert conv.skipped["dma_fence_wait_end (the dma_fence_wait_timeout probes show the waits)"] == 1


def test_interrupt_context_comes_from_the_flags_for_fence_events() -> None:
    text = HEADER + fence_line("init", 1, 1, "1.0") + fence_line("signaled", 0, 1, "1.1", "d.h1.", "<idle>") \
        + fence_line("init", 1, 2, "1.2") + fence_line("signaled", 1, 2, "1.3", "..s1.") \
        + fence_line("init", 1, 3, "1.4") + fence_line("signaled", 1, 3, "1.5", "d..1.")
    got = [(e["args"]["fence"], e.get("ctx")) for _, e in read(text.encode()).events if e["op"] == "dma_fence_signal"]
    assert got == [("fence:1:1", "hardirq"), ("fence:2:1", "softirq"), ("fence:3:1", None)]


def test_dma_buf_tracepoints_of_linux_7() -> None:
    p = " app-1 [000] ...1. 1.0: dma_buf_{}: exp_name=system size=4096 ino=77{}\n"
    text = (HEADER + p.format("export", "") + p.format("fd", " fd=5") + p.format("get", " fd=5")
            + p.format("dynamic_attach", " attachment:0xffff1 is_dynamic=0 dev_name=0000:03:00.0")
            + p.format("detach", " attachment:0xffff1 is_dynamic=0 dev_name=0000:03:00.0") + p.format("put", ""))
    conv = convert(io.BufferedReader(io.BytesIO(text.encode())), "t.txt")
    got = [(e["op"], e.get("ret")) for _, e in conv.events]
    assert got == [("dma_buf_export", "ino:77"), ("dma_buf_fd", 5), ("dma_buf_get", "ino:77"),
                   ("dma_buf_dynamic_attach", "0xffff1"), ("dma_buf_detach", None), ("dma_buf_put", None)]
    # the tracepoints do not show mappings: rules about them are narrowed, not guessed
    assert {"dma_buf_map_attachment", "dma_buf_vmap", "dma_buf_begin_cpu_access"} <= conv.header.unobserved
    assert check(text).findings == []


# -- what is not ftrace ---------------------------------------------------------------------

def test_sniffing() -> None:
    assert sniff((REAL / "trace-6.1-function.txt").read_bytes()[:4096])
    assert sniff(b"cpus=2\n  app-1 [000] 1.0: x: y\n")
    assert not sniff(b'{"op": "dma_buf_put"}\n')
    assert not sniff(b"1234  12:00:00.000001 close(3) = 0\n")
    assert "ftrace" in formats()


def test_garbage_in_an_ftrace_file_is_an_error_with_its_line() -> None:
    text = HEADER + kp("dma_buf_put", "dmabuf=0x1") + "this is not ftrace\n"
    with pytest.raises(InputError) as err:
        check(text)
    assert (err.value.file, err.value.line) == ("t.txt", 4) and "not an ftrace line" in err.value.message


def test_an_unknown_format_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\nworld\n")
    r = cli("check", str(path))
    assert r.returncode == 2 and "not a format I know" in r.stderr and "Traceback" not in r.stderr
    r = cli("convert", str(path))
    assert r.returncode == 2 and "not a format I know" in r.stderr


def test_content_decides_the_format_and_from_overrides_it(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(HEADER + kp("dma_buf_put", "dmabuf=0x1"))
    r = cli("check", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    r = cli("check", "--from", "dmaspec", str(path))
    assert r.returncode == 2 and f"{path}:1: malformed JSON" in r.stderr


def test_gzip_recordings(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "t.ftrace.gz"
    path.write_bytes(gzip.compress((REAL / "trace-6.1-function.txt").read_bytes()))
    result = check_file(str(path))
    assert result.source_format == "ftrace" and result.findings == [] and result.events > 50
    assert os.path.basename(result.file) == "t.ftrace.gz"


def test_function_graph_reads_the_events_inside_the_graph() -> None:
    path = SAMPLES / "ok" / "function-graph-with-kprobes.ftrace"
    conv = convert(io.BufferedReader(io.BytesIO(path.read_bytes())), str(path))
    got = [(n, e["op"], e["tid"], e.get("ret")) for n, e in conv.events]
    assert got == [(10, "dma_buf_attach", 194, "0xffff2"), (15, "dma_buf_detach", 194, None),
                   (16, "marker", 194, None)]
    assert conv.skipped["function_graph call (arguments are in kprobe events)"] == 5
    no_proc = "# tracer: function_graph\n 0)               |  /* dma_buf_put: (dma_buf_put+0x4/0x30) dmabuf=0x1 */\n"
    conv = convert(io.BufferedReader(io.BytesIO(no_proc.encode())), "g.txt")
    assert [(e["op"], e["tid"]) for _, e in conv.events] == [("dma_buf_put", 0)]
    assert any("funcgraph-proc" in note for note in conv.notes)


def test_the_bundled_copy_is_the_shared_recording() -> None:
    shared = ROOT.parent / "shared" / "real-traces"
    for path in REAL_TRACES:
        original = shared / path.name
        # a fresh clone without ../shared checks the copy alone; beside it, the copy must not drift
        assert not original.exists() or original.read_bytes() == path.read_bytes(), path.name


# -- system calls ---------------------------------------------------------------------------

LAB = REAL / "fdplay-6.12-syscalls.txt"  # fdplay.c on Debian's 6.12.107, ftrace-setup.sh --function --syscalls
FD_OPS = {"close", "dup", "dup2", "dup3", "fcntl", "fork", "vfork", "clone", "execve", "exit_group", "munmap",
          "fd_received"}


def line_of(path: Path, *needles: str, after: int = 0) -> int:
    """The 1-based number of the first line after line ``after`` that has every needle."""
    for n, text in enumerate(path.read_text().splitlines(), 1):
        if n > after and all(x in text for x in needles):
            return n
    raise AssertionError(needles)


def sc(rest: str, *, tid: int = 700, tgid: int | None = 700, ts: float = 1.0, comm: str = "app") -> str:
    """A line of any event, as the kernel prints it."""
    col = f" ({tgid:>7})" if tgid is not None else ""
    return f" {comm}-{tid}{col} [000] ...1. {ts:12.6f}: {rest}\n"


def heap_fd(fd: int = 5, flags: str = "0x2", **who: Any) -> str:
    """A dma-heap allocation in a traced ioctl on /dev/dma_heap/system (fd 3) that installs ``fd``."""
    return (sc("sys_ioctl(fd: 3, cmd: c0184800, arg: 7ffd0)", **who)
            + sc('dma_buf_export: (dma_buf_export+0x4/0x2c0) exp_name="system" size=4096', **who)
            + sc("dma_buf_export_ret: (system_heap_allocate+0x1f0/0x400 <- dma_buf_export) ret=0xb0 file=0xf0", **who)
            + sc(f"dma_buf_fd: (dma_buf_fd+0x4/0x50) dmabuf=0xb0 flags={flags}", **who)
            + sc(f"dma_buf_fd_ret: (dma_heap_ioctl+0x1c5/0x2b0 <- dma_buf_fd) ret={fd}", **who)
            + sc("sys_ioctl -> 0x0", **who))


MARK = ("tracing_mark_write: dmaspec: kprobes=52 syscalls=close,close_range,dup,dup2,dup3,fcntl,mmap,munmap,ioctl,"
        "lseek,execve,exit_group,clone,clone3 sched=sched_process_fork,sched_process_exit")
EVENTS_MARK = sc(MARK)


def rules(result: Result) -> list[tuple[str, int]]:
    return [(f.rule, f.line) for f in result.findings]


@pytest.mark.parametrize("engine", ["compiled", "interpreter"])
def test_the_lab_recording_with_syscalls_breaks_exactly_the_two_fd_rules(engine: str) -> None:
    """fdplay sets close-on-exec late on a dup'd fd, and its child execs holding fd 20 from dup2 without it."""
    result = check_file(str(LAB), engine=engine)
    setfd = line_of(LAB, "sys_fcntl -> 0x0", after=line_of(LAB, "sys_fcntl(fd: 6, cmd: 2, arg: 1)"))
    execve = line_of(LAB, "exe-650", "sys_execve -> 0x0")
    assert rules(result) == [("FD-CLOEXEC-LATE", setfd), ("FD-NO-CLOEXEC", execve)]
    assert [o.key for f in result.findings for o in f.objects] == [(649, 6), (650, 20)]
    assert not result.withheld and not result.inconclusive and not result.errors
    assert not {"FD-NO-CLOEXEC", "FD-CLOEXEC-LATE", "SYNC-LEAK", "CORE-IOCTL-UNKNOWN"} & set(result.narrowed)


def test_the_lab_recording_converts_each_call_once() -> None:
    conv = read(LAB.read_bytes(), str(LAB))
    assert not FD_OPS & conv.header.unobserved
    got = [(e["pid"], e["op"], e["args"], e.get("ret")) for _, e in conv.events if e["op"] != "marker"]
    b = "0xff33aaf4c194bc00"
    assert got == [
        (649, "dma_buf_export", {"exp_name": "udmabuf", "size": 16384}, b),
        (649, "dma_buf_fd", {"dmabuf": b, "flags": 0x80000}, 5),
        (649, "dup", {"fd": 5}, 6),
        (649, "dup2", {"fd": 5, "newfd": 20}, 20),
        (649, "dup3", {"fd": 5, "newfd": 21, "flags": 0x80000}, 21),
        (649, "fcntl", {"fd": 6, "cmd": "F_SETFD", "arg": 1}, 0),
        (649, "fcntl", {"fd": 20, "cmd": "F_DUPFD_CLOEXEC", "arg": 30}, 30),
        # the kprobes inside mmap and ioctl and the system calls are one event each, at the call's return
        (649, "mmap", {"fd": 5, "length": 16384, "offset": 0, "prot": 3, "flags": 1}, "0x7f6e7393d000"),
        (649, "ioctl", {"fd": 5, "cmd": 0x40086200, "flags": 2}, 0),
        (649, "ioctl", {"fd": 5, "cmd": 0x40086200, "flags": 6}, 0),
        (649, "munmap", {"addr": "0x7f6e7393d000", "length": 16384}, 0),
        (649, "clone", {"flags": 0x1200011}, 650),
        (650, "close", {"fd": 5}, 0),
        (650, "close", {"fd": 21}, 0),
        (650, "execve", {}, 0),  # closes 6 and 30 (close-on-exec); 20 survives
        (650, "exit_group", {"status": 0}, None),
        (649, "close", {"fd": 6}, 0),
        (649, "close", {"fd": 20}, 0),
        (649, "close", {"fd": 21}, 0),  # the second close(21) failed with EBADF on an fd no longer open: skipped
        (649, "close", {"fd": 30}, 0),
        (649, "close", {"fd": 5}, 0),  # the last reference: the file is released inside this close
        (649, "exit_group", {"status": 0}, None),
    ]
    # the init shell's own fds, the ioctls on /dev/udmabuf and the tty, the trace_marker fd: not dma-buf events
    assert conv.skipped["fd not known to be a dma-buf"] > 200
    assert conv.skipped["system call whose return the trace does not show (close)"] == 4  # exits not on yet


def test_without_syscall_events_fd_operations_stay_unobserved() -> None:
    for path in REAL_TRACES:
        conv = read(path.read_bytes(), str(path))
        assert conv.header.unobserved >= FD_OPS, path.name
        assert "syscalls" not in conv.header.source


def test_the_events_marker_says_which_syscalls_the_trace_has() -> None:
    text = (HEADER + sc("tracing_mark_write: dmaspec: kernel=6.12.57-amd64")
            + sc("tracing_mark_write: dmaspec: kprobes=52 syscalls=close,dup3,mmap,ioctl,execve,exit_group,clone,"
                 "clone3 sched=")
            + sc("sys_close(fd: 3)") + sc("sys_close -> 0x0"))
    conv = read(text.encode())
    assert FD_OPS & conv.header.unobserved == {"dup", "dup2", "fcntl", "fork", "vfork", "munmap"}
    assert conv.header.source["kprobes"]  # the marker says so, whether the first lines show one or not
    assert conv.header.source["syscalls"] == ["clone", "clone3", "close", "dup3", "execve", "exit_group", "ioctl",
                                              "mmap"]
    assert any("close_range is not traced" in n for n in conv.notes)
    # a recording of the script before it wrote that marker: its kernel marker and syscall lines
    old = (HEADER + sc("tracing_mark_write: dmaspec: kernel=6.12.57-amd64") + sc("sys_close(fd: 3)")
           + sc("dma_buf_put: (dma_buf_put+0x4/0x30) dmabuf=0xa"))
    conv = read(old.encode())
    assert not FD_OPS & conv.header.unobserved
    # anyone else's: the calls its first lines show
    other = HEADER + sc("sys_close(fd: 3)") + sc("sys_dup2 -> 0x1")
    conv = read(other.encode())
    # without kprobes, an fd that arrives unseen is never seen used: fd_received stays unobserved
    assert FD_OPS & conv.header.unobserved == FD_OPS - {"close", "dup2"}


def trace_cmd(text: str) -> str:
    """``text`` as trace-cmd report prints it: no flags or tgid column, event names padded, syscall events from
    their print fmt (how ``traces/ftrace/ok/trace-cmd-report-fork-exec.ftrace`` was made)."""
    out = ["cpus=2\n"]
    for line in text.splitlines():
        m = PREFIX.match(line)
        if m is None:
            continue
        rest = m["rest"]
        enter = re.match(r"sys_(\w+)\((.*)\)$", rest)
        leave = re.match(r"sys_(\w+) -> (0x[0-9a-f]+)$", rest)
        if enter:
            args = ", ".join(f"{k}: 0x{int(v, 16):08x}" for k, v in re.findall(r"(\w+): ([0-9a-f]+)", enter[2]))
            rest = f"{'sys_enter_' + enter[1] + ':':<21} {args}"
        elif leave:
            rest = f"{'sys_exit_' + leave[1] + ':':<21} {leave[2]}"
        else:
            name, _, body = rest.partition(": ")
            rest = f"{name + ':':<21} {body}"
        out.append(f"{m['comm']:>16}-{m['tid']:<5} [{m['cpu']}] {m['ts']}: {rest}\n")
    return "".join(out)


def test_trace_cmd_report_syscall_lines_read_as_the_kernel_s() -> None:
    def ops(c: Any) -> list[tuple[str, object, object]]:
        return [(e["op"], e["args"], e.get("ret")) for _, e in c.events]

    for name, report_name in (("bad/FD-NO-CLOEXEC/fork-exec-without-cloexec.ftrace", None),
                              ("ok/fork-exec-with-cloexec.ftrace", "ok/trace-cmd-report-fork-exec.ftrace")):
        path = SAMPLES / name
        text = trace_cmd(path.read_text())
        if report_name is not None:
            assert (SAMPLES / report_name).read_text() == text
        assert "sys_enter_clone:      clone_flags: 0x01200011, newsp: 0x00000000" in text
        assert "sys_exit_clone:       0x2bd" in text and "dma_buf_fd_ret:       (dma_heap_ioctl+" in text
        kernel, report = read(path.read_bytes(), str(path)), read(text.encode(), "report.txt")
        assert report.format == "ftrace"
        assert ops(report) == ops(kernel)
        assert [f.rule for f in check(text).findings] == [f.rule for f in check_file(str(path)).findings]


def test_lost_events_between_a_call_and_its_return_decide_nothing_about_the_fd() -> None:
    path = SAMPLES / "inconclusive" / "cloexec-set-across-lost-events.ftrace"
    result = check_file(str(path))
    assert result.findings == [] and result.withheld == {"FD-NO-CLOEXEC": 1} and result.inconclusive
    assert result.gaps == [line_of(path, "LOST 4096 EVENTS")]
    conv = read(path.read_bytes(), str(path))
    list(conv.events)
    assert conv.skipped["system call return without its call (fcntl)"] == 1


def test_negative_returns_and_closes_that_fail() -> None:
    text = (HEADER + EVENTS_MARK + heap_fd() + sc("sys_dup(fildes: 5)") + sc("sys_dup -> 0x6")
            + sc("sys_close(fd: 6)") + sc("sys_close -> 0xfffffffffffffffc")  # EINTR: the fd is gone all the same
            + sc("sys_close(fd: 5)") + sc("sys_close -> 0xfffffffffffffff7")  # EBADF: nothing was closed
            + sc("sys_execve(filename: 55d0, argv: 7ffd, envp: 7ffe)") + sc("sys_execve -> 0x0"))
    got = [(e["op"], e.get("ret")) for _, e in events(text) if e.get("kind") == "syscall"]
    assert got == [("dup", 6), ("close", -4), ("close", -9), ("execve", 0)]
    assert [(f.rule, [o.key for o in f.objects]) for f in check(text).findings] == [("FD-NO-CLOEXEC", [(700, 5)])]


def sync_ioctl(fd: int, flags: int, *, probe: bool = True) -> str:
    """DMA_BUF_IOCTL_SYNC on ``fd`` as a traced system call, with the dma_buf_ioctl probe inside."""
    inner = (sc(f"dma_buf_ioctl: (dma_buf_ioctl+0x4/0x410) file=0xf0 cmd=0x40086200 arg=0x7ffd flags=0x{flags:x}")
             + sc("dma_buf_ioctl_ret: (__x64_sys_ioctl+0x97/0xc0 <- dma_buf_ioctl) ret=0")) if probe else ""
    return sc(f"sys_ioctl(fd: {fd:x}, cmd: 40086200, arg: 7ffd)") + inner + sc("sys_ioctl -> 0x0")


def test_fioclex_sets_close_on_exec_and_the_vfs_ioctls_are_not_dma_buf_ioctls() -> None:
    text = (HEADER + EVENTS_MARK + heap_fd()
            + sc("sys_ioctl(fd: 5, cmd: 5421, arg: 7ffd)") + sc("sys_ioctl -> 0x0")  # FIONBIO
            + sc("sys_ioctl(fd: 5, cmd: 5451, arg: 0)") + sc("sys_ioctl -> 0x0")  # FIOCLEX
            + sync_ioctl(5, 2) + sync_ioctl(5, 6)
            + sc("sys_execve(filename: 55d0, argv: 7ffd, envp: 7ffe)") + sc("sys_execve -> 0x0"))
    got = [(e["op"], e["args"]) for _, e in events(text) if e.get("kind") == "syscall"]
    assert got == [("fcntl", {"fd": 5, "cmd": "F_SETFD", "arg": 1}),
                   ("ioctl", {"fd": 5, "cmd": 0x40086200, "flags": 2}),
                   ("ioctl", {"fd": 5, "cmd": 0x40086200, "flags": 6}), ("execve", {})]
    assert [f.rule for f in check(text).findings] == ["FD-CLOEXEC-LATE"]


def test_an_ioctl_the_dma_buf_core_did_not_see_is_not_a_dma_buf_ioctl() -> None:
    """With the dma_buf_ioctl probe in the trace, an ioctl on a dma-buf fd that it did not see is not converted
    (the fd's table is stale, or the call failed before the file's ioctl); without the probe, the system call is
    all there is, and a SYNC without its flags is skipped."""
    text = HEADER + EVENTS_MARK + heap_fd() + sync_ioctl(5, 2) + sync_ioctl(5, 6, probe=False)
    conv = read(text.encode())
    assert [e["args"].get("flags") for _, e in conv.events if e["op"] == "ioctl"] == [2]
    assert conv.skipped["ioctl on a dma-buf fd that dma_buf_ioctl did not see"] == 1
    blind = HEADER + EVENTS_MARK + heap_fd() + sync_ioctl(5, 2, probe=False)
    conv = read(blind.encode())
    assert [e["op"] for _, e in conv.events if e["op"] == "ioctl"] == []
    assert conv.skipped["DMA_BUF_IOCTL_SYNC whose flags the trace does not record"] == 1


def test_a_process_killed_without_exit_group_exits_with_its_last_thread() -> None:
    text = (HEADER + EVENTS_MARK + heap_fd(flags="0x80002") + sync_ioctl(5, 2)
            + sc("sys_close(fd: 5)", tid=701) + sc("sys_close -> 0x9", tid=701)  # a second thread, seen
            + sc("sched_process_exit: comm=app pid=700 prio=120", ts=2)  # SIGKILL: the leader goes first
            + sc("sched_process_exit: comm=app pid=701 prio=120", tid=701, ts=2))
    got = [(n, e["op"]) for n, e in events(text) if e.get("kind") == "syscall"]
    assert got[-1] == (text.count("\n"), "exit_group")  # at the last thread's exit, not the leader's
    assert [f.rule for f in check(text).findings] == ["SYNC-LEAK"]


def test_an_exec_in_a_thread_returns_as_the_leader() -> None:
    text = (HEADER + EVENTS_MARK + heap_fd()
            + sc("sys_ioctl(fd: 0, cmd: 5401, arg: 7ffd)")  # the leader, in a call it never returns from
            + sc("sys_execve(filename: 55d0, argv: 7ffd, envp: 7ffe)", tid=703)
            + sc("sys_execve -> 0x0"))  # de_thread: the thread took the leader's pid
    assert [(e["op"], e.get("ret")) for _, e in events(text) if e.get("kind") == "syscall"] == [("execve", 0)]
    assert [f.rule for f in check(text).findings] == ["FD-NO-CLOEXEC"]


def test_a_clone_files_child_shares_the_fd_table_until_it_execs() -> None:
    text = (HEADER + EVENTS_MARK + heap_fd()
            + sc("sys_clone(clone_flags: 511, newsp: 0, parent_tidptr: 0, child_tidptr: 0, tls: 0)")  # VM|FILES|CHLD
            + sc("sched_process_fork: comm=app pid=700 child_comm=app child_pid=710")
            + sc("sys_clone -> 0x2c6")
            + sc("sys_dup(fildes: 5)", tid=710, tgid=710) + sc("sys_dup -> 0x6", tid=710, tgid=710)
            + sc("sys_execve(filename: 55d0, argv: 7ffd, envp: 7ffe)", tid=710, tgid=710)
            + sc("sys_execve -> 0x0", tid=710, tgid=710)
            + sc("sys_exit_group(error_code: 0)", tid=710, tgid=710)
            + sc("sys_close(fd: 6)") + sc("sys_close -> 0x0") + sc("sys_close(fd: 5)") + sc("sys_close -> 0x0"))
    got = [(e["pid"], e["op"], e["args"], e.get("ret")) for _, e in events(text) if e.get("kind") == "syscall"]
    assert got == [(700, "dup", {"fd": 5}, 6),  # the child's dup is in the table it shares with its parent
                   (700, "fork", {}, 710),  # exec gives the child a copy of that table ...
                   (710, "execve", {}, 0),  # ... whose fds 5 and 6 survive the exec
                   (710, "exit_group", {"status": 0}, None),
                   (700, "close", {"fd": 6}, 0), (700, "close", {"fd": 5}, 0)]
    assert [(f.rule, [o.key for o in f.objects]) for f in check(text).findings] == [
        ("FD-NO-CLOEXEC", [(710, 5)]), ("FD-NO-CLOEXEC", [(710, 6)])]


def test_without_the_tgid_column_a_thread_clone_is_its_process() -> None:
    who: dict[str, Any] = {"tgid": None}
    text = (HEADER + sc(MARK, **who) + heap_fd(**who)
            + sc("sys_clone(clone_flags: 3d0f00, newsp: 0, parent_tidptr: 0, child_tidptr: 0, tls: 0)", **who)
            + sc("sched_process_fork: comm=app pid=700 child_comm=app child_pid=701", **who)
            + sc("sys_clone -> 0x2bd", **who)
            + sc("sys_close(fd: 5)", tid=701, **who) + sc("sys_close -> 0x0", tid=701, **who)
            + sc("sys_execve(filename: 55d0, argv: 7ffd, envp: 7ffe)", **who) + sc("sys_execve -> 0x0", **who))
    got = [(e["tid"], e["pid"], e["op"]) for _, e in events(text) if e.get("kind") == "syscall"]
    assert got == [(700, 700, "clone"), (701, 700, "close"), (700, 700, "execve")]
    assert check(text).findings == []


def test_a_fork_waits_for_its_child_to_say_thread_or_process() -> None:
    clone3 = (sc("sys_clone3(uargs: 7ffd, size: 58)") + sc("sched_process_fork: comm=app pid=700 child_comm=app "
                                                           "child_pid=701") + sc("sys_clone3 -> 0x2bd"))
    after = sc("sys_dup(fildes: 5)") + sc("sys_dup -> 0x6")
    thread = HEADER + EVENTS_MARK + heap_fd() + clone3 + after + sc("sys_clone3 -> 0x0", tid=701, tgid=700)
    process = HEADER + EVENTS_MARK + heap_fd() + clone3 + after + sc("sys_clone3 -> 0x0", tid=701, tgid=701)
    never = HEADER + EVENTS_MARK + heap_fd() + clone3 + after
    assert [e["op"] for _, e in events(thread) if e.get("kind") == "syscall"] == ["dup"]
    assert [(e["op"], e.get("ret")) for _, e in events(process) if e.get("kind") == "syscall"] == [
        ("clone", 701), ("dup", 6)]
    assert [e["op"] for _, e in events(never) if e.get("kind") == "syscall"] == ["clone", "dup"]  # taken as a process


def test_a_file_operation_whose_system_call_return_is_lost_is_written_as_its_probes_showed_it() -> None:
    start, end = sync_ioctl(5, 2), sync_ioctl(5, 6)
    cut = start[:start.rindex(" app-")]  # the sys_exit of the SYNC start is lost
    text = HEADER + EVENTS_MARK + heap_fd() + cut + "CPU:0 [LOST 3 EVENTS]\n" + end
    got = [(n, e["op"], e["args"].get("flags")) for n, e in events(text) if e["op"] in ("ioctl", "lost_events")]
    n = text.count("\n")
    # at the return probe's line, before the gap
    assert got == [(n - 5, "ioctl", 2), (n - 4, "lost_events", None), (n, "ioctl", 6)]
    result = check(text)
    assert result.findings == [] and result.gaps == [n - 4]
