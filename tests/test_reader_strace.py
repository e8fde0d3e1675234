"""The strace reader: the samples, each line shape strace prints, the pids it does not print, and fuzzing."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checker.api import check_conversion, check_file, check_stream
from checker.core import InputError, Result
from checker.readers import CanonicalStream, Conversion, convert, detect, header_line
from checker.readers.strace import SYNC_RULES, UNOBSERVED, sniff
from checker.trace import OPS_BY_NAME, validate
from spec.analysis import narrowed_rules
from spec.lang import EventKind

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "traces" / "strace"
OK = sorted((SAMPLES / "ok").glob("*.strace"))
BAD = sorted((p.parent.name, p) for p in (SAMPLES / "bad").glob("*/*.strace"))
# where in its recording each rule breaks: a piece of the line the finding names
BROKEN_AT = {"SYNC-END-WITHOUT-START": "DMA_BUF_IOCTL_SYNC", "SYNC-END-DIRECTION": "DMA_BUF_IOCTL_SYNC",
             "SYNC-START-TWICE": "DMA_BUF_IOCTL_SYNC", "SYNC-LEAK": "exit_group(", "SYNC-RETRY": "exit_group(",
             "FD-NO-CLOEXEC": "execve(", "FD-CLOEXEC-LATE": "F_SETFD", "CORE-LLSEEK": "lseek(",
             "CORE-MMAP-TOO-LARGE": "mmap(", "CORE-IOCTL-UNKNOWN": "TCGETS", "CORE-SYNC-FLAGS": "DMA_BUF_IOCTL_SYNC"}
HEAP = ('1200  10:00:00.000100 openat(AT_FDCWD, "/dev/dma_heap/system", O_RDONLY|O_CLOEXEC) = 3</dev/dma_heap/system>\n'
        '1200  10:00:00.000200 ioctl(3</dev/dma_heap/system>, DMA_HEAP_IOCTL_ALLOC, {len=4096, '
        'fd_flags=O_RDWR|O_CLOEXEC, heap_flags=0} => {fd=4</dmabuf:>}) = 0\n')


def hexs(data: bytes) -> str:
    """Bytes as strace -v (6.11+) prints an ioctl struct it does not decode."""
    return '"' + "".join(f"\\x{b:02x}" for b in data) + '"'


def heap_raw(fd: int, flags: int, size: int = 4096) -> str:
    """The struct dma_heap_allocation_data of an allocation, before => after."""
    def data(out: int) -> bytes:
        return size.to_bytes(8, "little") + out.to_bytes(4, "little") + flags.to_bytes(4, "little") + bytes(8)
    return f"{hexs(data(0))} => {hexs(data(fd))}"


def sync_raw(flags: int) -> str:
    return hexs(flags.to_bytes(8, "little"))


def conversion(text: str, file: str = "t.strace") -> Conversion:
    return convert(io.BufferedReader(io.BytesIO(text.encode())), file, "strace")


def events(text: str, file: str = "t.strace") -> list[tuple[int, dict[str, Any]]]:
    return list(conversion(text, file).events)


def ops(text: str) -> list[tuple[str, dict[str, Any], Any]]:
    return [(e["op"], e["args"], e.get("ret")) for _, e in events(text)]


def check(text: str, engine: str = "compiled") -> Result:
    return check_conversion(conversion(text), "t.strace", engine=engine)  # type: ignore[arg-type]


# -- the samples ------------------------------------------------------------------------------

def test_there_are_samples_of_each_kind() -> None:
    assert len(OK) >= 10 and len(BAD) >= 10
    assert {rule for rule, _ in BAD} == set(BROKEN_AT)


@pytest.mark.parametrize("path", OK, ids=lambda p: p.name)
@pytest.mark.parametrize("engine", ["compiled", "interpreter"])
def test_correct_samples_check_clean(path: Path, engine: str) -> None:
    result = check_file(str(path), engine=engine)
    assert result.source_format == "strace"
    assert result.findings == [] and not result.withheld and not result.errors
    assert result.events >= 4
    assert not result.undecided
    # the child's file of strace -ff starts after the fork: the end of the trace owes nothing
    assert conversion(path.read_text(), str(path)).header.partial == (path.name == "ff-child.strace")


@pytest.mark.parametrize(("rule", "path"), BAD, ids=[f"{r}/{p.name}" for r, p in BAD])
@pytest.mark.parametrize("engine", ["compiled", "interpreter"])
def test_bad_samples_break_exactly_their_rule(rule: str, path: Path, engine: str) -> None:
    result = check_file(str(path), engine=engine)
    assert [f.rule for f in result.findings] == [rule]
    line = path.read_text().splitlines()[result.findings[0].line - 1]
    assert BROKEN_AT[rule] in line, line


@pytest.mark.parametrize("path", OK + [p for _, p in BAD], ids=lambda p: p.name)
def test_samples_convert_to_valid_canonical_events(path: Path) -> None:
    with open(path, "rb") as f:
        conv = convert(f, str(path))  # detected
        assert conv.format == "strace"
        lines = path.read_text().count("\n") + 1
        made = {"dma_buf_export", "fd_received"}
        seen = set()
        for n, event in conv.events:
            assert 1 <= n <= lines
            validate(event, str(path), n)
            seen.add(event["op"])
    assert seen & made, "no dma-buf was created or received"
    assert conv.skipped  # the rest of the recording was counted, not dropped silently


@pytest.mark.parametrize("path", OK[:3], ids=lambda p: p.name)
def test_canonical_lines_check_like_the_conversion(path: Path) -> None:
    """Converting to JSON Lines and checking those gives the same as checking the recording."""
    with open(path, "rb") as f:
        conv = convert(f, str(path), "strace")
        data = header_line(conv.header, conv.format, str(path)) + CanonicalStream(conv).read()
    canonical = check_stream(io.BufferedReader(io.BytesIO(data)), "c.jsonl", fmt="dmaspec")
    direct = check_file(str(path))
    assert canonical.events == direct.events > 0
    assert canonical.findings == direct.findings == []


def test_sniff_recognises_every_sample_and_nothing_else() -> None:
    for path in OK + [p for _, p in BAD]:
        head = path.read_bytes()[:1 << 16]
        assert sniff(head), path
        assert detect(head, str(path)) is not None and detect(head, str(path)).name == "strace"  # type: ignore[union-attr]
    assert not sniff(b'{"op": "close", "kind": "syscall", "tid": 1, "args": {"fd": 3}}\n')
    assert not sniff(b"# tracer: function\n#\n  weston-1412  [001] ....  500.000274: dma_buf_fd <-drm_prime\n")
    assert not sniff(b"  weston-1412  [001] .... 500.000274: dma_buf_export: (dma_buf_export+0x4/0x2c0)\n")
    assert not sniff(b"hello world\nthis is not strace\n")
    assert not sniff(b"")
    assert sniff(b'[pid  42] close(3) = 0\n')
    assert sniff(b'execve("./a.out", ["./a.out"], 0x7ffd6c0c1e48 /* 20 vars */) = 0\n')
    assert sniff(b"     0.000000 execve(\"/bin/true\", [\"true\"], 0x7ffc /* 1 var */) = 0\n")


# -- line shapes ------------------------------------------------------------------------------

@pytest.mark.parametrize(("prefix", "tid", "ts"), [
    ("1200  10:00:00.500000 ", 1200, 36000.5),      # -f -o, -tt
    ("[pid  1200] 10:00:00 ", 1200, 36000.0),       # -f to stderr, -t
    ("1200  1700000000.250000 ", 1200, 1700000000.25),  # -ttt
    ("[pid 1200] ", 1200, None),                    # no timestamps
    ("1200  10:00:00.500000 [00007f12a4b3c4d5] ", 1200, 36000.5),  # -i
    ("1200  10:00:00.500000123 ", 1200, 36000.500000123),  # nanosecond precision
])
def test_prefixes_give_tid_and_ts(prefix: str, tid: int, ts: float | None) -> None:
    text = HEAP + f"{prefix}close(4</dmabuf:>) = 0 <0.000012>\n"
    (n, close), = [(n, e) for n, e in events(text) if e["op"] == "close"]
    assert (n, close["tid"], close["pid"]) == (3, tid, tid)
    assert close.get("ts") == (None if ts is None else pytest.approx(ts, abs=1e-9))
    assert close["ret"] == 0 and close["kind"] == "syscall"


def test_relative_timestamps_add_up() -> None:
    text = ("1200       0.000000 " + HEAP.splitlines()[1].split(" ", 3)[3] + "\n"
            "1200       0.250000 close(4</dmabuf:>) = 0\n")
    got = [e.get("ts") for _, e in events(text)]
    assert got == [0.0, 0.0, 0.25]


def test_creating_ioctl_decoded_struct_becomes_export_and_fd() -> None:
    assert ops(HEAP) == [("dma_buf_export", {"exp_name": "system", "size": 4096}, "strace:2"),
                         ("dma_buf_fd", {"dmabuf": "strace:2", "flags": 0o2000002}, 4)]


def test_creating_ioctl_hex_struct_strace_611() -> None:
    text = (f'7  ioctl(3</dev/dma_heap/linux,cma>, DMA_HEAP_IOCTL_ALLOC, {heap_raw(9, 2, 8192)}) = 0\n'
            '7  close(9</dmabuf:>) = 0\n')
    assert ops(text) == [("dma_buf_export", {"exp_name": "linux,cma", "size": 8192}, "strace:1"),
                         ("dma_buf_fd", {"dmabuf": "strace:1", "flags": 2}, 9),
                         ("close", {"fd": 9}, 0)]


def test_raw_ioctl_numbers_and_ioc_macro() -> None:
    text = (f"7  ioctl(3, 0xc0184800, {heap_raw(4, 0o2000002)}) = 0\n"
            f"7  ioctl(4, 0x40086200 /* DMA_BUF_IOCTL_SYNC */, {sync_raw(1)}) = 0\n"
            f"7  ioctl(4, _IOC(_IOC_WRITE, 0x62, 0, 0x8), {sync_raw(5)}) = 0\n"
            f"7  ioctl(4, BINDER_SET_IDLE_TIMEOUT or DMA_BUF_IOCTL_IMPORT_SYNC_FILE, {hexs(bytes([2, 0, 0, 0, 9, 0, 0, 0]))}) = 0\n"  # noqa: E501
            "7  ioctl(4, _IOC(_IOC_NONE, 0x5a, 0, 0), 0) = -1 EINVAL (Invalid argument)\n")
    got = [(a.get("cmd"), a.get("flags")) for op, a, _ in ops(text) if op == "ioctl"]
    assert got == [("DMA_BUF_IOCTL_SYNC", 1), ("DMA_BUF_IOCTL_SYNC", 5), ("DMA_BUF_IOCTL_IMPORT_SYNC_FILE", 2),
                   ("DMA_BUF_IOCTL_PREPARE_ACCESS", None)]
    assert [op for op, _, _ in ops(text)][:2] == ["dma_buf_export", "dma_buf_fd"]


def test_sync_with_a_pointer_argument_has_no_flags() -> None:
    text = HEAP + "1200  ioctl(4</dmabuf:>, DMA_BUF_IOCTL_SYNC, 0x7ffd5c4e2a10) = 0\n"
    assert ops(text)[-1] == ("ioctl", {"fd": 4, "cmd": "DMA_BUF_IOCTL_SYNC"}, 0)
    # the head shows SYNC structs as pointers: the rules that need their flags cannot be decided
    assert conversion(text).undecidable.keys() == set(SYNC_RULES)
    decoded = text + f"1200  ioctl(4</dmabuf:>, DMA_BUF_IOCTL_SYNC, {sync_raw(1)}) = 0\n"
    assert conversion(decoded).undecidable == {}


def test_decoded_sync_flags_and_set_name() -> None:
    text = HEAP + ("1200  ioctl(4</dmabuf:>, DMA_BUF_IOCTL_SYNC, {flags=DMA_BUF_SYNC_START|DMA_BUF_SYNC_READ}) = 0\n"
                   "1200  ioctl(4</dmabuf:>, DMA_BUF_IOCTL_SYNC, {flags=DMA_BUF_SYNC_END|DMA_BUF_SYNC_RW}) = 0\n"
                   '1200  ioctl(4</dmabuf:>, DMA_BUF_SET_NAME_B, "frame0") = 0\n'
                   "1200  ioctl(4</dmabuf:frame0>, TCGETS, 0x7ffc) = -1 ENOTTY (Inappropriate ioctl for device)\n"
                   "1200  ioctl(4</dmabuf:frame0>, DMA_HEAP_IOCTL_ALLOC, 0x7ffc) = -1 ENOTTY (Inappropriate ioctl for "
                   "device)\n")
    assert [a for op, a, _ in ops(text) if op == "ioctl"] == [
        {"fd": 4, "cmd": "DMA_BUF_IOCTL_SYNC", "flags": 1}, {"fd": 4, "cmd": "DMA_BUF_IOCTL_SYNC", "flags": 7},
        {"fd": 4, "cmd": "DMA_BUF_SET_NAME_B", "name": "frame0"}, {"fd": 4, "cmd": "TCGETS"},
        {"fd": 4, "cmd": 0xc0184800}]
    assert ops(text)[-1][2] == -25


def test_eintr_and_erestartsys_are_minus_eintr_and_a_question_mark_is_no_ret() -> None:
    text = HEAP + (f"1200  ioctl(4</dmabuf:>, DMA_BUF_IOCTL_SYNC, {sync_raw(1)}) = -1 EINTR (Interrupted system call)\n"
                   f"1200  ioctl(4</dmabuf:>, DMA_BUF_IOCTL_SYNC, {sync_raw(1)}) = ? ERESTARTSYS (To be restarted if "
                   "SA_RESTART is set)\n"
                   "1200  --- SIGINT {si_signo=SIGINT, si_code=SI_KERNEL} ---\n"
                   f"1200  ioctl(4</dmabuf:>, DMA_BUF_IOCTL_SYNC, {sync_raw(1)}) = ?\n")
    conv = conversion(text)
    got = [e.get("ret", "absent") for _, e in conv.events if e["op"] == "ioctl"]
    assert got == [-4, -4, "absent"]
    assert conv.skipped["signal"] == 1


def test_unfinished_and_resumed_pair_per_pid() -> None:
    text = HEAP + ("1200  10:00:01.000000 clone(child_stack=NULL, flags=CLONE_VM|CLONE_FILES|CLONE_THREAD) = 1201\n"
                   f"1201  10:00:01.100000 ioctl(4</dmabuf:>, DMA_BUF_IOCTL_SYNC, {sync_raw(2)} <unfinished ...>\n"
                   f"1200  10:00:01.200000 ioctl(4</dmabuf:>, DMA_BUF_IOCTL_SYNC,  <unfinished ...>\n"
                   "1201  10:00:01.300000 <... ioctl resumed>) = 0\n"
                   f"1200  10:00:01.400000 <... ioctl resumed>{sync_raw(1)}) = 0\n"
                   "1200  10:00:01.500000 <... close resumed>) = 0\n")
    conv = conversion(text)
    got = [(n, e["tid"], e["pid"], e["args"].get("flags"), e["ts"]) for n, e in conv.events if e["op"] == "ioctl"]
    assert got == [(6, 1201, 1200, 2, 36001.3), (7, 1200, 1200, 1, 36001.4)]
    assert conv.skipped["resumed without its start"] == 1


def test_a_child_printed_before_its_fork_returns_is_forked_first() -> None:
    text = HEAP + ("1200  vfork( <unfinished ...>\n"
                   '1300  execve("/bin/true", ["true"], 0x7ffc /* 1 var */ <unfinished ...>\n'
                   "1200  <... vfork resumed>) = 1300\n"
                   "1300  <... execve resumed>) = 0\n")
    conv = conversion(text)
    got = [(n, e["op"], e["tid"], e.get("ret")) for n, e in conv.events][2:]
    assert got == [(4, "vfork", 1200, 1300), (6, "execve", 1300, 0)]
    assert conv.skipped["fork: recorded when the child appeared"] == 1


def test_threads_belong_to_their_process_and_forks_copy_fds() -> None:
    text = HEAP + ("1200  clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM, "
                   "exit_signal=0} => {parent_tid=[1201]}, 88) = 1201\n"
                   "1201  clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD) = 1300\n"
                   "1300  close(4</dmabuf:>) = 0\n"
                   "1300  +++ exited with 0 +++\n"
                   "1201  close(4</dmabuf:>) = 0\n")
    got = [(e["op"], e["tid"], e["pid"], e["args"], e.get("ret")) for _, e in events(text)][2:]
    assert got == [("clone", 1200, 1200, {"flags": 0x50f00}, 1201),
                   ("clone", 1201, 1200, {"flags": 0x1200000 | 17}, 1300),
                   ("close", 1300, 1300, {"fd": 4}, 0),
                   ("exit_group", 1300, 1300, {"status": 0}, None),
                   ("close", 1201, 1200, {"fd": 4}, 0)]


def test_exit_lines_end_processes_once() -> None:
    text = HEAP + ("1200  clone(child_stack=NULL, flags=CLONE_VM|CLONE_THREAD) = 1201\n"
                   "1201  exit(0) = ?\n"
                   "1201  +++ exited with 0 +++\n"
                   "1200  exit_group(3) = ?\n"
                   "1200  +++ exited with 3 +++\n"
                   "1300  +++ killed by SIGKILL (core dumped) +++\n")
    got = [(e["op"], e["tid"], e["args"]) for _, e in events(text) if e["op"] == "exit_group"]
    assert got == [("exit_group", 1200, {"status": 3}), ("exit_group", 1300, {})]


def test_execve_keeps_only_fds_without_cloexec() -> None:
    text = HEAP + ("1200  dup(4</dmabuf:>) = 5</dmabuf:>\n"
                   '1200  execve("/bin/sh", ["sh"], 0x7ffc /* 3 vars */) = 0\n'
                   "1200  close(4) = 0\n"
                   "1200  close(5) = 0\n")
    conv = conversion(text)
    assert [(e["op"], e["args"]) for _, e in conv.events][2:] == [
        ("dup", {"fd": 4}), ("execve", {"filename": "/bin/sh"}), ("close", {"fd": 5})]
    assert conv.skipped["fd not known to be a dma-buf"] == 1
    assert [f.rule for f in check(text).findings] == ["FD-NO-CLOEXEC"]


def test_fioclex_is_close_on_exec_and_the_vfs_ioctls_never_reach_the_dma_buf() -> None:
    """The VFS answers FIOCLEX, FIONCLEX, FIONBIO... for every file: they are not unknown dma-buf ioctls."""
    text = HEAP + ("1200  dup(4</dmabuf:>) = 5</dmabuf:>\n"
                   "1200  ioctl(5</dmabuf:>, FIONBIO, [1]) = 0\n"
                   "1200  ioctl(5</dmabuf:>, FIOCLEX) = 0\n"
                   "1200  ioctl(4</dmabuf:>, 0x5450) = 0\n"  # FIONCLEX, as a number
                   '1200  execve("/bin/sh", ["sh"], 0x7ffc /* 3 vars */) = 0\n')
    conv = conversion(text)
    assert [(e["op"], e["args"]) for _, e in conv.events][3:] == [
        ("fcntl", {"fd": 5, "cmd": "F_SETFD", "arg": 1}), ("fcntl", {"fd": 4, "cmd": "F_SETFD", "arg": 0}),
        ("execve", {"filename": "/bin/sh"})]
    assert conv.skipped["ioctl the VFS answers itself (never reaches the dma-buf)"] == 1
    assert [(f.rule, [o.key for o in f.objects]) for f in check(text).findings] == [
        ("FD-CLOEXEC-LATE", [(1200, 5)]), ("FD-NO-CLOEXEC", [(1200, 4)])]


def test_dup_family_fcntl_lseek_mmap_munmap() -> None:
    text = HEAP + ("1200  dup2(4</dmabuf:>, 10</dev/null>) = 10</dmabuf:>\n"
                   "1200  dup3(4</dmabuf:>, 11, O_CLOEXEC) = 11</dmabuf:>\n"
                   "1200  fcntl(4</dmabuf:>, F_DUPFD_CLOEXEC, 0) = 12</dmabuf:>\n"
                   "1200  fcntl(10</dmabuf:>, F_SETFD, FD_CLOEXEC) = 0\n"
                   "1200  fcntl(10</dmabuf:>, F_GETFD) = 0x1 (flags FD_CLOEXEC)\n"
                   "1200  lseek(4</dmabuf:>, 0, SEEK_END) = 4096\n"
                   "1200  _llseek(4</dmabuf:>, 0, [4096], SEEK_END) = 0\n"
                   "1200  mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_SHARED, 12</dmabuf:>, 0) = 0x7f3a2c000000\n"
                   "1200  mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f3a2d000000\n"
                   "1200  munmap(0x7f3a2d000000, 8192) = 0\n"
                   "1200  munmap(0x7F3A2C000000, 4096) = 0\n"
                   "1200  dup2(3</dev/dma_heap/system>, 11</dmabuf:>) = 11</dev/dma_heap/system>\n")
    assert ops(text)[2:] == [
        ("dup2", {"fd": 4, "newfd": 10}, 10),
        ("dup3", {"fd": 4, "newfd": 11, "flags": 0o2000000}, 11),
        ("fcntl", {"fd": 4, "cmd": "F_DUPFD_CLOEXEC", "arg": 0}, 12),
        ("fcntl", {"fd": 10, "cmd": "F_SETFD", "arg": 1}, 0),
        ("lseek", {"fd": 4, "offset": 0, "whence": "SEEK_END"}, 4096),
        ("llseek", {"fd": 4, "offset": 0, "whence": "SEEK_END"}, 4096),
        ("mmap", {"fd": 12, "length": 4096, "offset": 0, "prot": 3, "flags": 1}, "0x7f3a2c000000"),
        ("munmap", {"addr": "0x7f3a2c000000", "length": 4096}, 0),
        ("close", {"fd": 11}, 0),  # dup2 of another file onto a dma-buf fd closes it
    ]
    assert [f.rule for f in check(text).findings] == ["FD-CLOEXEC-LATE"]


def test_close_range_closes_or_marks_the_dma_buf_fds_in_range() -> None:
    text = HEAP + ("1200  dup(4</dmabuf:>) = 7</dmabuf:>\n"
                   "1200  close_range(5, ~0U, CLOSE_RANGE_CLOEXEC) = 0\n"
                   "1200  close_range(3, 4294967295, 0) = 0\n")
    assert ops(text)[3:] == [("fcntl", {"fd": 7, "cmd": "F_SETFD", "arg": 1}, 0),
                             ("close", {"fd": 4}, 0), ("close", {"fd": 7}, 0)]


def test_udmabuf_and_prime_and_v4l2_exports() -> None:
    udmabuf = hexs((5).to_bytes(4, "little") + (1).to_bytes(4, "little") + bytes(8) + (8192).to_bytes(8, "little"))
    def prime(fd: int) -> str:
        return (f"{hexs(bytes([7, 0, 0, 0, 2, 0, 8, 0, 255, 255, 255, 255]))} => "
                f"{hexs(bytes([7, 0, 0, 0, 2, 0, 8, 0, fd, 0, 0, 0]))}")
    text = (f"1  ioctl(3</dev/udmabuf>, UDMABUF_CREATE, {udmabuf}) = 6\n"
            "1  ioctl(4</dev/udmabuf>, UDMABUF_CREATE_LIST, {flags=UDMABUF_FLAGS_CLOEXEC, count=2, "
            "list=[{memfd=5, offset=0, size=4096}, {memfd=5, offset=4096, size=4096}]}) = 7\n"
            f"1  ioctl(8</dev/dri/renderD128>, DRM_IOCTL_PRIME_HANDLE_TO_FD, {prime(9)}) = 0\n"
            f"1  ioctl(8</dev/dri/renderD128>, DRM_IOCTL_PRIME_HANDLE_TO_FD, {prime(10)}) = 0\n"
            "1  ioctl(11</dev/video0>, VIDIOC_EXPBUF, {type=V4L2_BUF_TYPE_VIDEO_CAPTURE, index=0, plane=0, "
            "flags=O_RDONLY} => {fd=12</dmabuf:>}) = 0\n"
            "1  ioctl(11</dev/video0>, VIDIOC_EXPBUF, {type=V4L2_BUF_TYPE_VIDEO_CAPTURE, index=1, plane=0, "
            "flags=O_RDONLY}) = -1 EINVAL (Invalid argument)\n")
    got = [(op, a, r) for op, a, r in ops(text)]
    assert got == [
        ("dma_buf_export", {"exp_name": "udmabuf", "size": 8192}, "strace:1"),
        ("dma_buf_fd", {"dmabuf": "strace:1", "flags": 0o2000000}, 6),
        ("dma_buf_export", {"exp_name": "udmabuf", "size": 8192}, "strace:2"),
        ("dma_buf_fd", {"dmabuf": "strace:2", "flags": 0o2000000}, 7),
        ("dma_buf_export", {"exp_name": "drm"}, "strace:3"),
        ("dma_buf_fd", {"dmabuf": "strace:3", "flags": 0o2000002}, 9),
        # the same GEM object again, while its buffer lives: the same dma-buf, one more reference
        ("get_dma_buf", {"dmabuf": "strace:3"}, None),
        ("dma_buf_fd", {"dmabuf": "strace:3", "flags": 0o2000002}, 10),
        ("dma_buf_export", {"exp_name": "v4l2"}, "strace:5"),
        ("dma_buf_fd", {"dmabuf": "strace:5", "flags": 0}, 12),
    ]


def test_a_creation_whose_fd_is_not_shown_is_attributed_to_the_next_dma_buf_fd() -> None:
    text = ("1  ioctl(3</dev/dma_heap/system>, DMA_HEAP_IOCTL_ALLOC, 0x7ffd6c0c1e40) = 0\n"
            "1  mmap(NULL, 4096, PROT_READ, MAP_SHARED, 5</dmabuf:>, 0) = 0x7f0000000000\n")
    conv = conversion(text)
    assert [(n, e["op"], e.get("ret")) for n, e in conv.events] == [
        (2, "dma_buf_export", "strace:2"), (2, "dma_buf_fd", 5), (2, "mmap", "0x7f0000000000")]
    assert conv.undecidable.keys() == {"FD-NO-CLOEXEC", "FD-CLOEXEC-LATE"}
    assert any("attributed" in n for n in conv.notes)


# -- fds that arrive -------------------------------------------------------------------------

def test_y_shows_dma_bufs_of_unknown_origin_as_received_and_without_y_they_are_skipped() -> None:
    with_y = ("1  10:00:00 fstat(5</dmabuf:cam>, {st_mode=S_IFREG|0600, st_size=4096}) = 0\n"
              "1  close(5</dmabuf:cam>) = 0\n")
    assert ops(with_y) == [("fd_received", {"fd": 5, "dmabuf": "strace:1:fd5", "flags": 0o2000000}, None),
                           ("close", {"fd": 5}, 0)]
    old_kernel = "1  ioctl(5<anon_inode:dmabuf>, DMA_BUF_IOCTL_SYNC, 0x7ffc) = 0\n"
    assert [op for op, _, _ in ops(old_kernel)] == ["fd_received", "ioctl"]
    without_y = conversion("1  close(5) = 0\n")
    assert list(without_y.events) == [] and without_y.skipped["fd not known to be a dma-buf"] == 1
    assert any("strace -y" in n for n in without_y.notes)


def test_scm_rights_passes_the_senders_buffer() -> None:
    text = HEAP + ("1200  socketpair(AF_UNIX, SOCK_STREAM, 0, [5<socket:[100]>, 6<socket:[101]>]) = 0\n"
                   "1200  sendmsg(5<socket:[100]>, {msg_name=NULL, msg_iov=[{iov_base=\"x\", iov_len=1}], "
                   "msg_iovlen=1, msg_control=[{cmsg_len=20, cmsg_level=SOL_SOCKET, cmsg_type=SCM_RIGHTS, "
                   "cmsg_data=[4</dmabuf:>]}], msg_controllen=24, msg_flags=0}, 0) = 1\n"
                   "1300  recvmsg(9<UNIX-STREAM:[101->100]>, {msg_name=NULL, msg_iov=[{iov_base=\"x\", iov_len=1}], "
                   "msg_iovlen=1, msg_control=[{cmsg_len=20, cmsg_level=SOL_SOCKET, cmsg_type=SCM_RIGHTS, "
                   "cmsg_data=[7</dmabuf:>]}], msg_controllen=24, msg_flags=MSG_CMSG_CLOEXEC}, MSG_CMSG_CLOEXEC) = 1\n"
                   "1301  recvmsg(3<UNIX-STREAM:[201->200]>, {msg_control=[{cmsg_len=20, cmsg_level=SOL_SOCKET, "
                   "cmsg_type=SCM_RIGHTS, cmsg_data=[8</dmabuf:>]}], msg_flags=0}, 0) = 1\n")
    assert [(e["tid"], e["args"]) for _, e in events(text) if e["op"] == "fd_received"] == [
        (1300, {"fd": 7, "dmabuf": "strace:2", "flags": 0o2000000}),
        (1301, {"fd": 8, "dmabuf": "strace:6:fd8", "flags": 0})]


def test_pidfd_getfd_takes_the_targets_buffer() -> None:
    text = HEAP + "1300  pidfd_getfd(3<pidfd:1200>, 4, 0) = 6</dmabuf:>\n"
    assert ops(text)[-1] == ("fd_received", {"fd": 6, "dmabuf": "strace:2", "flags": 0o2000000}, None)


# -- pids strace did not print ------------------------------------------------------------------

def test_lines_without_a_pid_take_the_pid_set_tid_address_shows() -> None:
    text = ('execve("./a.out", ["./a.out"], 0x7ffc /* 20 vars */) = 0\n'
            "set_tid_address(0x7f1f8b6e4a10) = 4242\n" + HEAP.replace("1200  ", ""))
    got = {(e["tid"], e["pid"]) for _, e in events(text)}
    assert got == {(4242, 4242)}


def test_pid_prefixes_appear_when_strace_f_follows_a_second_task() -> None:
    """strace -f without -o prints [pid N] only while it traces more than one task."""
    text = (HEAP.replace("1200  ", "")
            + "clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTIDstrace: Process 1301 attached\n"
            ", child_tidptr=0x7f) = 1301\n"
            "[pid  1301] close(4</dmabuf:>) = 0\n"
            "[pid  1300] close(4</dmabuf:>) = 0\n"
            "[pid  1301] +++ exited with 0 +++\n"
            "exit_group(0) = ?\n")
    conv = conversion(text)
    got = [(n, e["op"], e["tid"]) for n, e in conv.events]
    assert got == [(2, "dma_buf_export", 1300), (2, "dma_buf_fd", 1300), (4, "clone", 1300), (5, "close", 1301),
                   (6, "close", 1300), (7, "exit_group", 1301), (8, "exit_group", 1300)]
    assert conv.skipped["strace message"] == 1


def test_no_pid_anywhere_is_tid_1_with_a_note() -> None:
    conv = conversion(HEAP.replace("1200  ", ""))
    assert {e["tid"] for _, e in conv.events} == {1}
    assert any("tid 1" in n for n in conv.notes)


def test_strace_ff_file_name_gives_the_pid() -> None:
    assert {e["tid"] for _, e in events(HEAP.replace("1200  ", ""), file="/tmp/out.3141")} == {3141}


def test_strace_p_attach_is_partial_and_names_the_pid() -> None:
    conv = conversion("strace: Process 777 attached\n" + HEAP.replace("1200  ", ""))
    assert conv.header.partial
    assert {e["tid"] for _, e in conv.events} == {777}
    # with -o, strace writes its messages to standard error: a trace that does not start with execve started midway
    assert conversion(HEAP).header.partial
    assert not conversion('execve("./app", ["./app"], 0x7ffd /* 20 vars */) = 0\n' + HEAP).header.partial


# -- header, profile, errors ----------------------------------------------------------------------

def test_header_lists_exactly_what_strace_cannot_see() -> None:
    header = conversion('1200  execve("./app", ["./app"], 0x7ffd /* 20 vars */) = 0\n' + HEAP).header
    assert header.unobserved == UNOBSERVED
    assert "dma_buf_put" in UNOBSERVED and "mmap_access" in UNOBSERVED and "get_dma_buf" in UNOBSERVED
    assert not UNOBSERVED & {"mmap", "ioctl", "close", "dma_buf_export", "dma_buf_fd", "fd_received"}
    assert all(EventKind.SYSCALL not in OPS_BY_NAME[op] for op in UNOBSERVED)
    narrowed = narrowed_rules(UNOBSERVED)
    assert "REF-LEAK" in narrowed
    assert not {"SYNC-END-WITHOUT-START", "FD-NO-CLOEXEC", "SYNC-RETRY", "CORE-LLSEEK"} & narrowed.keys()
    assert header.profile is None and header.source["recorder"] == "strace" and not header.partial


def test_uname_in_the_head_gives_the_profile() -> None:
    uname = ('1  uname({sysname="Linux", nodename="vm", release="6.12.0-1-amd64", version="#1 SMP", '
             'machine="x86_64"}) = 0\n')
    conv = conversion(uname + HEAP)
    assert conv.header.profile == "6.12" and conv.header.source["kernel"] == "6.12.0-1-amd64"
    assert conversion(uname.replace("6.12.0", "2.6.32") + HEAP).header.profile is None


def test_a_garbage_line_is_an_input_error_at_its_line() -> None:
    with pytest.raises(InputError) as e:
        events(HEAP + "this is not strace\n1200  close(4) = 0\n")
    assert (e.value.file, e.value.line) == ("t.strace", 3)
    assert "expected a strace line" in e.value.message


def test_a_truncated_last_line_is_skipped_and_odd_arguments_are_counted() -> None:
    conv = conversion(HEAP + "1200  ioctl(4</dmabuf:>, DMA_BUF_IOCTL_SYNC, {fla")
    assert [e["op"] for _, e in conv.events] == ["dma_buf_export", "dma_buf_fd"]
    assert conv.skipped["truncated last line"] == 1
    conv = conversion(HEAP + "1200  ioctl(4</dmabuf:>, DMA_BUF_IOCTL_SYNC, {flags=DMA_BUF_SYNC_WEIRD}) = 0\n"
                             "1200  close(4</dmabuf:>, ((() = 0\n")
    assert [e["op"] for _, e in conv.events] == ["dma_buf_export", "dma_buf_fd"]
    assert conv.skipped["unparseable arguments"] == 2


def test_stack_traces_summaries_and_argument_names() -> None:
    text = HEAP + (" > /usr/lib/x86_64-linux-gnu/libc.so.6(ioctl+0xb) [0x11c3eb]\n"
                   "1200  ioctl(fd=4</dmabuf:>, op=DMA_BUF_IOCTL_SYNC, "
                   "argp={flags=DMA_BUF_SYNC_START|DMA_BUF_SYNC_READ}) = 0\n"
                   "% time     seconds  usecs/call     calls    errors syscall\n"
                   "------ ----------- ----------- --------- --------- ----------------\n"
                   " 100.00    0.000012           1        10           ioctl\n")
    conv = conversion(text)
    assert [e["args"] for _, e in conv.events][-1] == {"fd": 4, "cmd": "DMA_BUF_IOCTL_SYNC", "flags": 1}
    assert conv.skipped["stack trace (-k)"] == 1 and conv.skipped["strace -c summary"] == 3


def test_events_stream_one_line_at_a_time() -> None:
    """The reader pulls lines as events are consumed: a huge trace is never read whole."""
    class Endless(io.RawIOBase):
        def __init__(self) -> None:
            self.lines = 0
            self.pending = HEAP.encode()

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            while len(self.pending) < len(b):
                self.pending += b"1200  ioctl(4</dmabuf:>, TCGETS, 0x7f) = -1 ENOTTY (Inappropriate ioctl for device)\n"
                self.lines += 1
            b[:], self.pending = self.pending[:len(b)], self.pending[len(b):]
            return len(b)

    raw = Endless()
    conv = convert(io.BufferedReader(raw, 4096), "endless.strace", "strace")
    it: Iterator[tuple[int, dict[str, Any]]] = conv.events
    first = [next(it) for _ in range(5)]
    assert [e["op"] for _, e in first] == ["dma_buf_export", "dma_buf_fd", "ioctl", "ioctl", "ioctl"]
    assert raw.lines < 1000


# -- fuzzing ----------------------------------------------------------------------------------------

LINES = [line for path in OK + [p for _, p in BAD] for line in path.read_bytes().splitlines()]
PIECES = [b"(", b")", b"{", b"}", b"<", b">", b'"', b"\\", b",", b"=", b" <unfinished ...>", b"<... ioctl resumed>",
          b"-1", b"?", b"99999999999999999999999", b"0x", b"\x00", b"\xff", b" => ", b"</dmabuf:>", b"strace: "]
FUZZ = settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)


def _convert_and_check(data: bytes) -> None:
    """Nothing but InputError; every event the reader makes is a valid canonical event that checks."""
    try:
        conv = convert(io.BufferedReader(io.BytesIO(data)), "f.strace", "strace")
        made = list(conv.events)
    except InputError as e:
        assert e.file == "f.strace" and 0 <= e.line <= data.count(b"\n") + 1
        return
    for n, event in made:
        validate(event, "f.strace", n)
    try:
        for engine in ("compiled", "interpreter"):
            check_conversion(convert(io.BufferedReader(io.BytesIO(data)), "f.strace", "strace"), "f.strace",
                             engine=engine)
    except InputError as e:  # a recording the reader read is checked: the checker may only refuse it as input
        raise AssertionError(f"the conversion of a readable recording failed to check: {e}") from None


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    start = draw(st.integers(0, len(LINES) - 1))
    lines = list(LINES[start:start + draw(st.integers(1, 20))])
    if draw(st.booleans()):
        lines = LINES[:draw(st.integers(1, 40))] + lines
    for _ in range(draw(st.integers(1, 4))):
        lines = lines or [b""]
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        j = draw(st.integers(0, max(len(line) - 1, 0)))
        how = draw(st.integers(0, 7))
        if how == 0:
            lines[i] = line[:j]
        elif how == 1:
            lines[i] = line[:j] + line[j + 1:]
        elif how == 2:
            lines[i] = line[:j] + draw(st.sampled_from(PIECES)) + line[j:]
        elif how == 3:
            lines.insert(i, draw(st.sampled_from(LINES)))
        elif how == 4:
            del lines[i]
        elif how == 5:
            lines[i] = line.replace(b"= 0", draw(st.sampled_from([b"= -1 EINTR (x)", b"= ?", b"= 0x", b"= -1 EWAT"])))
        elif how == 6:
            pid = draw(st.sampled_from([b"1 ", b"[pid 2] ", b"", b"99999999999 ", b"0 "]))
            lines[i] = pid + line.split(b" ", 1)[-1]
        else:
            lines[i] = line[:j] + draw(st.binary(max_size=8)) + line[j:]
    return b"\n".join(lines) + draw(st.sampled_from([b"\n", b""]))


@settings(FUZZ, max_examples=600)
@given(mutated())
def test_fuzz_mutated_recordings_raise_nothing_but_input_error(data: bytes) -> None:
    _convert_and_check(data)


@settings(FUZZ, max_examples=300)
@given(st.binary(max_size=400) | st.lists(st.text(max_size=80), max_size=10).map(lambda ls: "\n".join(ls).encode()))
def test_fuzz_random_input_raises_nothing_but_input_error(data: bytes) -> None:
    _convert_and_check(data)


def test_the_fuzzing_sees_every_sample() -> None:
    assert len(LINES) > 500 and os.path.isdir(SAMPLES)
