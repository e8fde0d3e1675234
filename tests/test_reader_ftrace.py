"""The ftrace reader: real recordings from stock kernels, line shapes, folding, gaps, and what it cannot see."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

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
