"""Fuzzing every recording reader (``checker.readers.formats()``): whatever the bytes, the only failure is InputError.

For each format: random bytes, random text lines, and valid lines mutated by
family (``MUTATIONS``: character edits, line edits and ``[LOST]`` lines,
garbage fields, huge and negative numbers), each family its own test case so a
failure is isolated.  The valid lines are the format's samples: those below,
the project's ``traces/<format>/`` recordings and, for ftrace, the real
recordings of stock kernels (``real_traces()``); a format with none of its own
is fuzzed with everyone's, so a reader added to ``checker.readers`` is fuzzed
without a change here.  Each input is converted with ``convert`` (every event
consumed) and checked with ``check_stream`` on both engines (``outcome()``):

- nothing but ``InputError`` escapes; an InputError names ``f.txt`` and a line
  of the input (0: the file as a whole);
- a conversion yields events on lines of the input only;
- both engines agree: they fail alike (line and message), or give the same
  findings, ``withheld`` and ``undecided`` counters and kept-going errors.

Apart (``same_line()``): a check that fails because the reader cannot read a
line names the line the conversion names.  ``KNOWN_INPUTS`` keeps the
smallest inputs the fuzzing failed on, and ``bench/fuzz.py`` runs the same
strategies for longer.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checker.api import check_stream
from checker.core import InputError
from checker.readers import SNIFF_BYTES, convert, detect, formats
from checker.trace import validate

FILE = "f.txt"
ENGINES = ("compiled", "interpreter")
FORMATS = sorted(formats())

# -- the real recordings --------------------------------------------------------------------

REAL_TRACE_NAMES = ("trace-6.12-function.txt", "trace-6.1-function.txt")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_TRACE_DIRS = (os.environ.get("DMASPEC_REAL_TRACES", ""), os.path.join(_ROOT, "traces", "real"),
                   os.path.join(_ROOT, "..", "shared", "real-traces"))


def real_trace_dir() -> str | None:
    """Where the real ftrace recordings are: $DMASPEC_REAL_TRACES, traces/real, or ../shared/real-traces."""
    for d in REAL_TRACE_DIRS:
        if d and all(os.path.isfile(os.path.join(d, n)) for n in REAL_TRACE_NAMES):
            return d
    return None


@cache
def real_traces() -> dict[str, bytes]:
    d = real_trace_dir()
    if d is None:
        return {}
    out = {}
    for name in REAL_TRACE_NAMES:
        with open(os.path.join(d, name), "rb") as f:
            out[name] = f.read()
    return out


# -- samples of each format -------------------------------------------------------------------
#
# ftrace: lines of the real recordings (so the fuzzing does not depend on finding them), plus the
# variants they do not show: trace-cmd report, trace_pipe without flags, the dma_buf:* tracepoints.

FTRACE_SAMPLES = b"""\
# tracer: function
#
# entries-in-buffer/entries-written: 1034/1034   #P:2
#           TASK-PID       TGID    CPU#  |||||  TIMESTAMP  FUNCTION
#              | |           |       |   |||||     |         |
 dmabuf-exercise-194     (    194) [001] .....     9.965212: tracing_mark_write: dmabuf-exercise: start (pid 194)
 dmabuf-exercise-194     (    194) [001] .....     9.968748: udmabuf_ioctl <-__x64_sys_ioctl
 dmabuf-exercise-194     (    194) [001] ...1.     9.969418: udmabuf_create: (udmabuf_create+0x0/0x650) head_flags=0x1 head_count=1
 dmabuf-exercise-194     (    194) [001] .....     9.970964: udmabuf_create_ret: (udmabuf_ioctl+0xfa/0x190 <- udmabuf_create) ret=-22
 dmabuf-exercise-194     (    194) [001] ...1.     9.973671: dma_buf_export: (dma_buf_export+0x4/0x2c0) exp_name="udmabuf" size=16384 flags=0x2 ops=0xffffffff82935120 priv=0xff196cf64232d880
 dmabuf-exercise-194     (    194) [001] ...1.     9.973795: dma_buf_export <-udmabuf_create
 dmabuf-exercise-194     (    194) [001] ...1.     9.975225: <stack trace>
 => dma_buf_export
 => udmabuf_create
 dmabuf-exercise-194     (    194) [001] .....     9.975560: dma_resv_init <-dma_buf_export
 dmabuf-exercise-194     (    194) [001] .....     9.975638: dma_buf_export_ret: (udmabuf_create+0x49e/0x650 <- dma_buf_export) ret=0xff196cf641961800 size=16384 exp_name="udmabuf"
 dmabuf-exercise-194     (    194) [001] ...1.     9.975710: dma_buf_fd: (dma_buf_fd+0x4/0x50) dmabuf=0xff196cf641961800 size=16384 exp_name="udmabuf" flags=0x0
 dmabuf-exercise-194     (    194) [001] .....     9.975766: dma_buf_fd_ret: (udmabuf_create+0x4bd/0x650 <- dma_buf_fd) ret=6
 dmabuf-exercise-194     (    194) [001] ...1.     9.980000: dma_buf_llseek: (dma_buf_llseek+0x4/0x70) file=0xff196cf6419f8000 offset=0 whence=2
 dmabuf-exercise-194     (    194) [001] .....     9.980042: dma_buf_llseek_ret: (ksys_lseek+0x69/0xb0 <- dma_buf_llseek) ret=16384
 dmabuf-exercise-194     (    194) [001] ...1.     9.981500: dma_buf_mmap_internal: (dma_buf_mmap_internal+0x4/0x50) file=0xff196cf6419f8000 vm_start=0x7f954edd1000 vm_end=0x7f954edd5000 vm_pgoff=0
 dmabuf-exercise-194     (    194) [001] .....     9.982137: dma_buf_mmap_internal_ret: (mmap_file+0x16/0x30 <- dma_buf_mmap_internal) ret=0
 dmabuf-exercise-194     (    194) [001] ...1.     9.982400: dma_buf_ioctl: (dma_buf_ioctl+0x4/0x420) file=0xff196cf6419f8000 cmd=0x40086200 arg=0x7ffdee58b350 flags=0x2
 dmabuf-exercise-194     (    194) [001] ...1.     9.982420: dma_buf_begin_cpu_access: (dma_buf_begin_cpu_access+0x4/0x70) dmabuf=0xff196cf641961800 direction=1
 dmabuf-exercise-194     (    194) [001] .....     9.982442: dma_buf_begin_cpu_access_ret: (dma_buf_ioctl+0x359/0x420 <- dma_buf_begin_cpu_access) ret=0
 dmabuf-exercise-194     (    194) [001] .....     9.982451: dma_buf_ioctl_ret: (__x64_sys_ioctl+0x90/0xd0 <- dma_buf_ioctl) ret=0
 dmabuf-exercise-194     (    194) [001] ...1.    10.004801: dma_buf_get: (dma_buf_get+0x4/0x50) fd=6
 dmabuf-exercise-194     (    194) [001] .....    10.004842: dma_buf_get_ret: (drm_gem_prime_fd_to_handle+0x27/0x210 [drm] <- dma_buf_get) ret=0xff196cf641961800
 dmabuf-exercise-194     (    194) [001] ...1.    10.004921: dma_buf_attach: (dma_buf_attach+0x4/0x20) dmabuf=0xff196cf641961800 dev="vgem"
 dmabuf-exercise-194     (    194) [001] ...1.    10.004939: dma_buf_dynamic_attach: (dma_buf_dynamic_attach+0x4/0x260) dmabuf=0xff196cf641961800 dev="vgem" importer_ops=0x0
 dmabuf-exercise-194     (    194) [001] ...1.    10.004942: dma_buf_dynamic_attach <-[unknown/kretprobe'd]
 dmabuf-exercise-194     (    194) [001] .....    10.005138: dma_buf_dynamic_attach_ret: ([unknown/kretprobe'd] <- dma_buf_dynamic_attach) ret=0xff196cf65c41be40
 dmabuf-exercise-194     (    194) [001] .....    10.005145: dma_buf_attach_ret: (drm_gem_prime_import_dev+0x44/0x170 [drm] <- dma_buf_attach) ret=0xff196cf65c41be40
 dmabuf-exercise-194     (    194) [001] ...1.    10.005174: dma_buf_map_attachment_unlocked: (dma_buf_map_attachment_unlocked+0x4/0x70) attach=0xff196cf65c41be40 direction=0
 dmabuf-exercise-194     (    194) [001] ...1.    10.005208: dma_buf_map_attachment: (dma_buf_map_attachment+0x4/0xf0) attach=0xff196cf65c41be40 direction=0
 dmabuf-exercise-194     (    194) [001] .....    10.005444: dma_buf_map_attachment_ret: (dma_buf_map_attachment_unlocked+0x37/0x70 <- dma_buf_map_attachment) ret=0xff196cf65bfb7680 nents=4 orig_nents=4
 dmabuf-exercise-194     (    194) [001] .....    10.005460: dma_buf_map_attachment_unlocked_ret: (drm_gem_prime_import_dev+0x70/0x170 [drm] <- dma_buf_map_attachment_unlocked) ret=0xff196cf65bfb7680
 dmabuf-exercise-194     (    194) [001] ...1.    10.006707: dma_buf_put: (dma_buf_put+0x4/0x30) dmabuf=0xff196cf641961800 exp_name="udmabuf"
 dmabuf-exercise-194     (    194) [001] ...1.    10.008894: dma_buf_unmap_attachment_unlocked: (dma_buf_unmap_attachment_unlocked+0x4/0x70) attach=0xff196cf65c41be40 sg_table=0xff196cf65bfb7680 direction=0
 dmabuf-exercise-194     (    194) [001] ...1.    10.008934: dma_buf_unmap_attachment: (dma_buf_unmap_attachment+0x4/0x90) attach=0xff196cf65c41be40 sg_table=0xff196cf65bfb7680 direction=0
 dmabuf-exercise-194     (    194) [001] ...1.    10.008980: dma_buf_detach: (dma_buf_detach+0x4/0xd0) dmabuf=0xff196cf641961800 attach=0xff196cf65c41be40
 dmabuf-exercise-194     (    194) [001] ...1.    10.009089: dma_buf_put: (dma_buf_put+0x4/0x30) dmabuf=0xff196cf641961800 exp_name="udmabuf"
 dmabuf-exercise-194     (    194) [001] ...1.    10.011159: dma_buf_get: (dma_buf_get+0x4/0x50) fd=5
 dmabuf-exercise-194     (    194) [001] .....    10.011175: dma_buf_get_ret: (drm_gem_prime_fd_to_handle+0x27/0x210 [drm] <- dma_buf_get) ret=0xffffffffffffffea
 dmabuf-exercise-194     (    194) [001] .....    10.018427: dma_fence_init: driver=vgem timeline=unbound context=1 seqno=1
 dmabuf-exercise-194     (    194) [001] d..1.    10.019550: dma_fence_signaled: driver=vgem timeline=unbound context=1 seqno=1
 dmabuf-exercise-194     (    194) [001] .....    10.019600: dma_fence_destroy: driver=vgem timeline=unbound context=1 seqno=1
 dmabuf-exercise-194     (    194) [001] ...1.    10.020607: dma_buf_file_release: (dma_buf_file_release+0x4/0x80) inode=0xff196cf641498000 file=0xff196cf6419f8000
 dmabuf-exercise-194     (    194) [001] ...1.    10.020700: dma_buf_release: (dma_buf_release+0x4/0x90) dentry=0xff196cf641462840
 dmabuf-exercise-141     (    141) [000] ...1.     8.329729: dma_buf_export: (dma_buf_export+0x0/0x2e0) exp_name="drm" size=16384 flags=0x80002
 dmabuf-exercise-141     (    141) [000] .....     8.331326: dma_buf_export_ret: (drm_gem_dmabuf_export+0x18/0x90 [drm] <- dma_buf_export) ret=0xff31109c81920e00
 dmabuf-exercise-141     (    141) [000] ...1.     8.331500: dma_buf_fd: (dma_buf_fd+0x0/0x40) dmabuf=0xff31109c81920e00 size=16384 flags=0x80002
 dmabuf-exercise-141     (    141) [000] ...1.     8.378983: dma_buf_attach: (dma_buf_attach+0x0/0x10) dmabuf=0xff31109c81920800 dev=0xff31109c825b7c10
 dmabuf-exercise-141     (    141) [000] ...1.     8.380000: dma_buf_vmap: (dma_buf_vmap+0x0/0x70) arg1=0xff31109c81920800 arg2=0xffffc90000123000
 dmabuf-exercise-141     (    141) [000] .....     8.380100: dma_buf_vmap_ret: (drm_gem_vmap+0x2b/0x50 [drm] <- dma_buf_vmap) ret=0
 dmabuf-exercise-141     (    141) [000] ...1.     8.380200: dma_buf_vunmap: (dma_buf_vunmap+0x0/0x60) arg1=0xff31109c81920800 arg2=0xffffc90000123000
CPU:1 [LOST 5 EVENTS]
##### CPU 1 buffer started ####
cpus=2
 weston-1412  [003]  500.000274: dma_buf_put:          (dma_buf_put+0x4/0x30) dmabuf=0xffff888107c1a000
 <...>-1412  [003] d.h2.  500.000300: dma_buf:dma_buf_export: exp_name=i915 size=3133440 ino=12345
 kworker/u16:3-88    [002] .... 500.000400: dma_buf:dma_buf_fd: exp_name=i915 ino=12345 fd=7
 kworker/u16:3-88    [002] .... 500.000500: dma_buf:dma_buf_dynamic_attach: exp_name=i915 ino=12345 attachment=0xffff1 is_dynamic=1 dev_name=0000:03:00.0
 kworker/u16:3-88    [002] .... 500.000600: dma_buf:dma_buf_detach: exp_name=i915 ino=12345 attachment=0xffff1 is_dynamic=1 dev_name=0000:03:00.0
 kworker/u16:3-88    [002] .... 500.000700: dma_buf:dma_buf_put: exp_name=i915 ino=12345
 Xwayland-900    [001] ....   12.500000: tracing_mark_write: dmaspec: kernel=6.12.117
"""  # noqa: E501

STRACE_SAMPLES = b"""\
1402  10:15:02.123456 openat(AT_FDCWD, "/dev/dma_heap/system", O_RDONLY|O_CLOEXEC) = 3</dev/dma_heap/system>
1402  10:15:02.123500 ioctl(3</dev/dma_heap/system>, DMA_HEAP_IOCTL_ALLOC, {len=16384, fd_flags=O_RDWR|O_CLOEXEC, heap_flags=0} => {fd=4</dmabuf:system>}) = 0
1402  10:15:02.123600 lseek(4</dmabuf:system>, 0, SEEK_END) = 16384
1402  10:15:02.123700 mmap(NULL, 16384, PROT_READ|PROT_WRITE, MAP_SHARED, 4</dmabuf:system>, 0) = 0x7f3a2c000000
1402  10:15:02.123800 ioctl(4</dmabuf:system>, DMA_BUF_IOCTL_SYNC, {flags=DMA_BUF_SYNC_START|DMA_BUF_SYNC_WRITE}) = 0
1402  10:15:02.123900 ioctl(4</dmabuf:system>, DMA_BUF_IOCTL_SYNC, {flags=DMA_BUF_SYNC_END|DMA_BUF_SYNC_WRITE}) = 0
1402  10:15:02.124000 ioctl(4</dmabuf:system>, DMA_BUF_SET_NAME_B, "frame0") = 0
1402  10:15:02.124100 ioctl(4</dmabuf:system>, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, {flags=DMA_BUF_SYNC_READ, fd=5<anon_inode:sync_file>}) = 0
1402  10:15:02.124150 ioctl(4</dmabuf:system>, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, {flags=DMA_BUF_SYNC_WRITE, fd=5<anon_inode:sync_file>}) = 0
1402  10:15:02.124200 dup(4</dmabuf:system>) = 6</dmabuf:system>
1402  10:15:02.124250 dup3(4</dmabuf:system>, 9, O_CLOEXEC) = 9</dmabuf:system>
1402  10:15:02.124300 fcntl(4</dmabuf:system>, F_DUPFD_CLOEXEC, 0) = 7</dmabuf:system>
1402  10:15:02.124400 clone(child_stack=0x7f3a2b7fef70, flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, parent_tid=[1403], tls=0x7f3a2b7ff640, child_tidptr=0x7f3a2b7ff910) = 1403
1403  10:15:02.124500 ioctl(4</dmabuf:system>, DMA_BUF_IOCTL_SYNC, {flags=DMA_BUF_SYNC_START|DMA_BUF_SYNC_READ} <unfinished ...>
1402  10:15:02.124550 munmap(0x7f3a2c000000, 16384) = 0
1403  10:15:02.124600 <... ioctl resumed>) = 0
1403  10:15:02.124700 ioctl(4</dmabuf:system>, DMA_BUF_IOCTL_SYNC, {flags=DMA_BUF_SYNC_END|DMA_BUF_SYNC_READ}) = -1 EINTR (Interrupted system call)
1402  10:15:02.124800 close(6</dmabuf:system>) = 0
1402  10:15:02.125000 sendmsg(8<socket:[31337]>, {msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="\\1\\0", iov_len=2}], msg_iovlen=1, msg_control=[{cmsg_len=20, cmsg_level=SOL_SOCKET, cmsg_type=SCM_RIGHTS, cmsg_data=[4</dmabuf:system>]}], msg_controllen=24, msg_flags=0}, MSG_NOSIGNAL) = 2
1402  10:15:02.125100 ioctl(9</dev/video0>, VIDIOC_EXPBUF, {type=V4L2_BUF_TYPE_VIDEO_CAPTURE, index=0, plane=0, flags=O_RDWR|O_CLOEXEC, fd=10<anon_inode:dmabuf>}) = 0
1402  10:15:02.125200 ioctl(11</dev/dri/card0>, DRM_IOCTL_PRIME_FD_TO_HANDLE, {fd=10<anon_inode:dmabuf>, handle=0} => {handle=1}) = 0
1402  10:15:02.125300 close(10<anon_inode:dmabuf>) = 0
1402  10:15:02.125400 close(4</dmabuf:system>) = 0
1403  10:15:02.125450 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=1404, si_uid=1000, si_status=0, si_utime=0, si_stime=0} ---
1402  10:15:02.125500 exit_group(0)     = ?
1402  10:15:02.125600 +++ exited with 0 +++
strace: Process 1403 attached
[pid  1403] 10:15:02.124500 ioctl(4, DMA_BUF_IOCTL_SYNC, {flags=DMA_BUF_SYNC_START|DMA_BUF_SYNC_RW}) = 0
1700000000.123456 ioctl(4<anon_inode:dmabuf>, DMA_BUF_IOCTL_SYNC, 0x7ffd5c4e2a10) = 0
ioctl(4, DMA_BUF_IOCTL_SYNC, {flags=DMA_BUF_SYNC_END|DMA_BUF_SYNC_RW}) = 0
mmap(NULL, 4096, PROT_READ, MAP_SHARED, 4, 0) = -1 EINVAL (Invalid argument)
"""  # noqa: E501

SAMPLES: dict[str, list[bytes]] = {
    "ftrace": FTRACE_SAMPLES.splitlines(),
    "strace": STRACE_SAMPLES.splitlines(),
}


def sample_files(fmt: str) -> list[str]:
    """The project's sample recordings of ``fmt``: every file below ``traces/<fmt>/`` but documentation."""
    root = os.path.join(_ROOT, "traces", fmt)
    found = []
    for d, _, files in os.walk(root):
        found += [os.path.join(d, f) for f in files if not f.endswith((".md", ".json", ".jsonl"))]
    return sorted(found)


@cache
def samples(fmt: str) -> list[bytes]:
    """Valid lines of ``fmt`` to mutate: the samples above, ``traces/<fmt>/`` and (ftrace) the real recordings.

    A format with none of its own gets everyone's.
    """
    own = list(SAMPLES.get(fmt, []))
    for path in sample_files(fmt):
        with open(path, "rb") as f:
            own += f.read().splitlines()
    if fmt == "ftrace":
        own += [line for data in real_traces().values() for line in data.splitlines()]
    if not own:
        own = [line for name in sorted(SAMPLES) for line in samples(name)]
    return own


# -- the property ---------------------------------------------------------------------------

def line_count(data: bytes) -> int:
    """The lines of ``data`` as the readers number them (split at ``\\n``; a last line without one counts)."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def stream(data: bytes) -> io.BufferedReader:
    return io.BufferedReader(io.BytesIO(data))


def _input_error(e: InputError, data: bytes, what: str) -> tuple[str, int, str]:
    n = line_count(data)
    assert e.file == FILE, f"{what}: InputError names {e.file!r}, not the input: {e}"
    assert 0 <= e.line <= n, f"{what}: InputError at line {e.line}, but the input has {n} line(s): {e}"
    return ("error", e.line, e.message)


def converted(data: bytes, fmt: str | None) -> tuple[str, int, str]:
    """Convert ``data``, consume every event: ("ok", number of events, "") or ("error", line, message)."""
    n = line_count(data)
    try:
        conv = convert(stream(data), FILE, fmt=fmt)
        events = 0
        for line, event in conv.events:
            assert 1 <= line <= n, f"conversion: event on line {line}, but the input has {n} line(s): {event}"
            assert isinstance(event, dict) and isinstance(event.get("op"), str), f"conversion: not an event: {event}"
            events += 1
    except InputError as e:
        return _input_error(e, data, "conversion")
    return ("ok", events, "")


def checked(data: bytes, fmt: str | None, engine: str, keep_going: bool = False) -> tuple[Any, ...]:
    """Check ``data`` with ``engine``: ("error", line, message) or ("ok", finding keys, withheld, undecided, errors)."""
    try:
        r = check_stream(stream(data), FILE, fmt=fmt, engine=engine, keep_going=keep_going)  # type: ignore[arg-type]
    except InputError as e:
        return _input_error(e, data, f"check ({engine})")
    for kept in r.errors:
        _input_error(kept, data, f"check ({engine}, kept going)")
    return ("ok", [f.key() for f in r.findings], dict(r.withheld), dict(r.undecided),
            [(kept.line, kept.message) for kept in r.errors])


def outcome(data: bytes, fmt: str | None, keep_going: bool = False) -> tuple[Any, ...]:
    """The property: convert, then check on both engines; only InputError, within the input, and the engines agree.

    Raises AssertionError, or what the code under test raised, when it does not hold.
    """
    converted(data, fmt)
    compiled, interp = (checked(data, fmt, engine, keep_going) for engine in ENGINES)
    assert compiled == interp, f"the engines disagree:\n  compiled:    {compiled}\n  interpreter: {interp}"
    return compiled


def detected(data: bytes) -> str | None:
    """The format ``dmaspec check`` would read ``data`` in (None: canonical, or none it knows)."""
    try:
        reader = detect(data[:SNIFF_BYTES], FILE)
    except InputError:
        return None
    return reader.name if reader else None


def same_line(data: bytes, fmt: str | None) -> None:
    """A recording the reader cannot read makes the check fail at the line the conversion fails at."""
    conv = converted(data, fmt)
    if conv[0] == "error":
        check = checked(data, fmt, "compiled")
        assert check[:2] == conv[:2], (f"the conversion fails at line {conv[1]} ({conv[2]}), "
                                       f"the check at line {check[1]} ({check[2]})")


# -- strategies -----------------------------------------------------------------------------

LOST_LINES = (b"CPU:1 [LOST 5 EVENTS]", b"CPU 3 [LOST 0 EVENTS]", b"CPU:0 [LOST 1 EVENTS]",
              b" app-7 [000] ..... 1.0: CPU:1 [LOST 5 EVENTS]")
GARBAGE = (b"zz", b"0x", b"0xzz", b"0x-1", b"--1", b'"', b'""', b'"unbalanced', b'unbalanced"', b"1e308", b"nan",
           b"inf", b"(null)", b"", b"=", b"\xff\xfe", b"\x00", b"\\", b"{", b"}", b"(", b")", b"[", b"<", b"=>")
NUMBERS = (b"99999999999999999999999999999", b"-99999999999999999999999999999", b"18446744073709551616",
           b"18446744073709551615", b"9223372036854775808", b"-9223372036854775809", b"9223372036854775807",
           b"-9223372036854775808", b"4294967296", b"4294967295", b"-1", b"-22", b"0", b"007",
           b"0xffffffffffffffff", b"0x10000000000000000", b"0xffffffffffffffffffffffffffff", b"-0x10")
HUGE_LOST = (b"CPU:99999999999999999999 [LOST 1 EVENTS]", b"CPU:1 [LOST 18446744073709551616 EVENTS]",
             b"CPU:1 [LOST 18446744073709551615 EVENTS]", b"CPU:4294967296 [LOST 1 EVENTS]")
INSERTED = (b"# tracer: nop", b"cpus=2", b"", b"   ", b"=> dma_buf_put", b"<stack trace>",
            b" app-7 [000] ..... 1.0: tracing_mark_write: dmaspec: kernel=6.1.0",
            b" app-7 [000] ..... 1.0: tracing_mark_write: dmaspec: kernel=99.1",
            b" app-7 [000] ..... 1.0: tracing_mark_write: dmaspec: kernel=2.x",
            b" app-7 [000] ..... 1.0: <stack trace>", b"+++ exited with 0 +++", b"--- SIGSEGV {si_signo=SIGSEGV} ---",
            b"1 00:00:00.000000 <... ioctl resumed>) = 0", b"1 ioctl(4, DMA_BUF_IOCTL_SYNC <unfinished ...>",
            b'{"op": "dma_buf_put", "tid": 1, "args": {"dmabuf": "b"}}',
            b'{"format": "dmaspec-trace", "version": 1}')
FIELD_VALUE = re.compile(rb"(?<==)\s?(\"(?:[^\"\\]|\\.)*\"?|[^\s,)}\]]+)")
NUMBER = re.compile(rb"-?(?:0x[0-9a-f]+|\d+)")

# Mutations, by family: a family that makes a reader fail is one failing test case, the others still run.
MUTATIONS: dict[str, tuple[str, ...]] = {
    "edits": ("truncate", "delete", "duplicate_char", "swap_chars", "crlf", "no_newline"),
    "lines": ("swap_lines", "duplicate_line", "delete_line", "lost", "insert", "random_line", "other_sample"),
    "fields": ("garbage", "quote"),
    "numbers": ("number", "number_field", "huge_lost"),
}


def _mutate(draw: st.DrawFn, op: str, lines: list[bytes], pool: list[bytes]) -> None:
    if not lines:
        lines.append(b"")
    i = draw(st.integers(0, len(lines) - 1))
    line = lines[i]
    j = draw(st.integers(0, max(len(line) - 1, 0)))
    if op == "truncate":
        lines[i] = line[:j]
    elif op == "delete":
        lines[i] = line[:j] + line[j + 1:]
    elif op == "duplicate_char":
        lines[i] = line[:j + 1] + line[j:]
    elif op == "swap_chars":
        lines[i] = line[:j] + line[j + 1:j + 2] + line[j:j + 1] + line[j + 2:]
    elif op == "quote":
        lines[i] = line[:j] + draw(st.sampled_from([b'"', b"'", b"(", b")", b"{", b"}", b"<", b">", b"["])) + line[j:]
    elif op == "crlf":
        lines[i] = line + b"\r"
    elif op == "swap_lines":
        k = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[k] = lines[k], lines[i]
    elif op == "duplicate_line":
        lines.insert(i, line)
    elif op == "delete_line" and len(lines) > 1:
        del lines[i]
    elif op == "lost":
        lines.insert(i, draw(st.sampled_from(LOST_LINES)))
    elif op == "insert":
        lines.insert(i, draw(st.sampled_from(INSERTED)))
    elif op == "random_line":
        lines.insert(i, draw(st.binary(max_size=40) | st.text(max_size=40).map(lambda s: s.encode())))
    elif op == "other_sample":
        lines.insert(i, draw(st.sampled_from(pool)))
    elif op in ("garbage", "number", "number_field"):
        pattern = NUMBER if op == "number" else FIELD_VALUE
        values = GARBAGE if op == "garbage" else NUMBERS
        spans = [m.span(1 if pattern is FIELD_VALUE else 0) for m in pattern.finditer(line)]
        if spans:
            a, b = spans[draw(st.integers(0, len(spans) - 1))]
            lines[i] = line[:a] + draw(st.sampled_from(values)) + line[b:]
    elif op == "huge_lost":
        lines.insert(i, draw(st.sampled_from(HUGE_LOST)))


@st.composite
def mutated(draw: st.DrawFn, fmt: str, family: str | None = None) -> bytes:
    """A window of valid lines of ``fmt`` (after its first lines, sometimes), mutated one to four times.

    ``family``: the mutations of ``MUTATIONS[family]`` only (default: all of them).
    """
    pool = samples(fmt)
    ops = MUTATIONS[family] if family else tuple(op for ops in MUTATIONS.values() for op in ops)
    start = draw(st.integers(0, len(pool) - 1))
    lines = list(pool[start:start + draw(st.integers(1, 16))])
    if draw(st.booleans()):
        lines = pool[:draw(st.integers(1, 5))] + lines  # the head decides what a reader expects
    done = [draw(st.sampled_from(ops)) for _ in range(draw(st.integers(1, 4)))]
    for op in done:
        _mutate(draw, op, lines, pool)
    data = b"\n".join(lines)
    return data if "no_newline" in done else data + b"\n"


def random_text(max_lines: int = 12) -> st.SearchStrategy[bytes]:
    return st.lists(st.text(max_size=60), max_size=max_lines).map(lambda ls: "".join(s + "\n" for s in ls).encode())


def random_bytes(max_size: int = 300) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=max_size)


# -- the tests ------------------------------------------------------------------------------

FUZZ = settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(FUZZ, max_examples=100)
@given(data=random_bytes(), keep_going=st.booleans())
def test_random_bytes_raise_nothing_but_input_error(fmt: str, data: bytes, keep_going: bool) -> None:
    outcome(data, fmt, keep_going)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(FUZZ, max_examples=100)
@given(data=random_text(), keep_going=st.booleans())
def test_random_text_lines_raise_nothing_but_input_error(fmt: str, data: bytes, keep_going: bool) -> None:
    outcome(data, fmt, keep_going)


@pytest.mark.parametrize("family", sorted(MUTATIONS))
@pytest.mark.parametrize("fmt", FORMATS)
@settings(FUZZ, max_examples=150)
@given(data=st.data(), keep_going=st.booleans(), detect=st.booleans())
def test_mutated_valid_lines_raise_nothing_but_input_error(fmt: str, family: str, data: st.DataObject,
                                                           keep_going: bool, detect: bool) -> None:
    """``detect``: read as ``dmaspec check`` does, the format recognised from the head, when it is ``fmt``."""
    raw = data.draw(mutated(fmt, family), label="input")
    outcome(raw, None if detect and detected(raw) == fmt else fmt, keep_going)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(FUZZ, max_examples=150)
@given(data=st.data())
def test_a_check_fails_at_the_line_its_conversion_fails_at(fmt: str, data: st.DataObject) -> None:
    same_line(data.draw(mutated(fmt, data.draw(st.sampled_from(["edits", "lines"]))), label="input"), fmt)


# The smallest inputs the fuzzing found a failure with (each its own case), and inputs that must keep working.
KNOWN_INPUTS = {
    "ftrace-huge-cpu-in-lost-line": ("ftrace", b"CPU:99999999999999999999 [LOST 1 EVENTS]\n"),
    "ftrace-huge-tid": ("ftrace", b"a-99999999999999999999 [0] 1: tracing_mark_write: x\n"),
    "ftrace-error-after-an-event": ("ftrace", b"CPU:1 [LOST 5 EVENTS]\n\nc\n"),
    "strace-malformed-hex": ("strace", b"munmap(0x, 1) = 0\n"),
    "ftrace-lost-line": ("ftrace", b"CPU:1 [LOST 5 EVENTS]\n"),
    "ftrace-not-text": ("ftrace", b" a-1 [000] 1.0: tracing_mark_write: x\n\xff\n"),
    "ftrace-max-u64-fields": ("ftrace", b" a-1 [000] 1.0: dma_buf_put: (dma_buf_put+0x4/0x30) "
                                        b"dmabuf=0xffffffffffffffffffff\n"),
}


@pytest.mark.parametrize("name", sorted(KNOWN_INPUTS))
def test_known_inputs(name: str) -> None:
    fmt, data = KNOWN_INPUTS[name]
    outcome(data, fmt)
    same_line(data, fmt)


def test_every_format_has_lines_to_mutate() -> None:
    assert FORMATS, "checker.readers.formats() is empty"
    for fmt in FORMATS:
        assert len(samples(fmt)) >= 20, f"{fmt}: too few samples to mutate"


def _kprobe(ts: int, func: str, fields: str) -> bytes:
    return f" app-1402 ( 1402) [001] ...1. 80.{ts:06d}: {func}: ({func}+0x4/0x70) {fields}\n".encode()


def _kretprobe(ts: int, func: str, ret: str) -> bytes:
    return f" app-1402 ( 1402) [001] ..... 80.{ts:06d}: {func}_ret: (drv+0x1/0x9 <- {func}) ret={ret}\n".encode()


UNMAPPED_TWICE = (_kprobe(1, "dma_buf_attach", "dmabuf=0xffff8880aa000000 dev=\"i915\"")
                  + _kretprobe(2, "dma_buf_attach", "0xffff8880bb000000")
                  + _kprobe(3, "dma_buf_map_attachment", "attach=0xffff8880bb000000 direction=0")
                  + _kretprobe(4, "dma_buf_map_attachment", "0xffff8880cc000000")
                  + 2 * _kprobe(5, "dma_buf_unmap_attachment", "attach=0xffff8880bb000000 sg_table=0xffff8880cc000000 "
                                                               "direction=0"))


def test_the_property_fails_when_it_should() -> None:
    """The checks above can fail: an InputError outside the input is caught, and findings are compared."""
    with pytest.raises(AssertionError, match="line 7"):
        _input_error(InputError(FILE, 7, "x"), b"one line\n", "test")
    with pytest.raises(AssertionError, match="names"):
        _input_error(InputError("other.txt", 1, "x"), b"one line\n", "test")
    found = outcome(UNMAPPED_TWICE, "ftrace")
    assert found[0] == "ok" and [key[0] for key in found[1]] == ["MAP-DOUBLE-UNMAP"], found


# -- the real recordings, line by line ------------------------------------------------------

def _converted_events(data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    yield from convert(stream(data), FILE, fmt="ftrace").events


@pytest.mark.parametrize("name", REAL_TRACE_NAMES)
def test_real_trace_converts_to_valid_canonical_events_and_checks_clean(name: str) -> None:
    traces = real_traces()
    assert traces, (f"the real ftrace recordings ({', '.join(REAL_TRACE_NAMES)}) are in none of "
                    f"{[d for d in REAL_TRACE_DIRS if d]}; set DMASPEC_REAL_TRACES to their directory")
    data = traces[name]
    n = line_count(data)
    ops = set()
    count = 0
    for line, event in _converted_events(data):
        assert 1 <= line <= n
        validate(event, FILE, line)  # raises InputError: the reader produced an invalid canonical event
        ops.add(event["op"])
        count += 1
    assert count >= 50
    assert {"dma_buf_export", "dma_buf_fd", "dma_buf_get", "dma_buf_put", "dma_buf_detach", "llseek", "ioctl",
            "marker"} <= ops, sorted(ops)
    assert ops & {"dma_buf_attach", "dma_buf_dynamic_attach"} and ops & {"dma_buf_map_attachment",
                                                                        "dma_buf_map_attachment_unlocked"}
    for engine in ENGINES:
        r = check_stream(stream(data), FILE, engine=engine)  # type: ignore[arg-type]
        assert r.source_format == "ftrace"
        assert r.findings == [] and not r.withheld and not r.errors, (engine, [f.key() for f in r.findings])


@pytest.mark.parametrize("name", REAL_TRACE_NAMES)
def test_real_trace_windows_convert_to_valid_canonical_events(name: str) -> None:
    """Started and stopped anywhere (a ring buffer that wrapped, a recording cut short): still valid events."""
    traces = real_traces()
    assert traces, f"the real ftrace recordings are in none of {[d for d in REAL_TRACE_DIRS if d]}"
    lines = traces[name].splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if not line.lstrip().startswith(b"=>")]  # not inside a stack trace
    count = 0
    for cut in starts[::5]:
        data = b"".join(lines[cut:cut + 60])
        for line, event in _converted_events(data):
            assert 1 <= line <= line_count(data)
            validate(event, FILE, line)
            count += 1
    assert count >= len(starts) // 10, "the windows hardly convert to any event"
