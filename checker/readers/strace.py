r"""strace output: the system calls userspace makes on dma-buf fds, as canonical events.

Reads what ``strace -f -tt -yy -v`` prints (and plainer variants: without
``-y``, ``-f`` or timestamps; ``-t``, ``-ttt``, ``-r``; ``-T``; ``[pid N]``
prefixes or a pid column; one ``-ff`` file, whose name ends in the pid).
``traces/formats/strace.md`` is the user's reference; in short:

- Buffers userspace creates become what the kernel did in that ioctl: a
  ``dma_buf_export`` (``exp_name`` the heap's name, ``udmabuf``, ``drm`` or
  ``v4l2``) and a ``dma_buf_fd`` returning the new fd, for
  ``DMA_HEAP_IOCTL_ALLOC``, ``UDMABUF_CREATE[_LIST]``,
  ``DRM_IOCTL_PRIME_HANDLE_TO_FD`` and ``VIDIOC_EXPBUF``.  strace shows no
  kernel address or inode for a dma-buf (``-y`` prints ``/dmabuf:<name>``, the
  kernel's ``dmabuffs_dname``), so the handle is synthetic and unique in the
  trace: ``strace:<line>``.
- ``close``, ``dup``/``dup2``/``dup3``, ``fcntl``, ``mmap``/``munmap``,
  ``lseek``/``_llseek`` and ``ioctl`` on fds the reader has seen become
  dma-bufs are emitted as system calls; ``fork``/``vfork``/``clone``/``clone3``,
  ``execve`` and ``exit_group`` (or ``+++ exited``/``+++ killed``) always.
- A dma-buf fd that arrives otherwise, when ``-y`` shows it (``SCM_RIGHTS``,
  ``pidfd_getfd``, inherited from before the trace), is an ``fd_received``.
- Anything else is skipped and counted by reason.

``tid`` is strace's pid column; ``pid`` is the thread group, followed through
``clone(CLONE_THREAD)``.  Lines without a pid belong to the only traced task.

>>> import io
>>> from checker.readers import convert
>>> text = b'''\
... 1200  10:00:00.000100 openat(AT_FDCWD, "/dev/dma_heap/system", O_RDONLY|O_CLOEXEC) = 3</dev/dma_heap/system>
... 1200  10:00:00.000200 ioctl(3</dev/dma_heap/system>, DMA_HEAP_IOCTL_ALLOC, {len=4096, fd_flags=O_RDWR|O_CLOEXEC, \
... heap_flags=0} => {fd=4</dmabuf:>}) = 0
... 1200  10:00:00.000300 close(4</dmabuf:>) = 0
... '''
>>> conv = convert(io.BufferedReader(io.BytesIO(text)), "app.strace", "strace")
>>> for line, event in conv.events:
...     print(line, event["op"], event["args"], event.get("ret"))
2 dma_buf_export {'exp_name': 'system', 'size': 4096} strace:2
2 dma_buf_fd {'dmabuf': 'strace:2', 'flags': 524290} 4
3 close {'fd': 4} 0
>>> dict(conv.skipped)
{'dma-buf device opened': 1}
"""

from __future__ import annotations

import errno as _errno
import os
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from checker.core import InputError
from checker.readers import Conversion, Converted, Reader
from checker.readers import syscalls as fdt
from checker.trace import OPS_BY_NAME, Header
from spec import kernel as K
from spec.lang import EventKind

# -- what strace cannot see ------------------------------------------------------------------

#: Canonical ops a strace recording cannot contain: every kernel-internal call, callback and annotation, except the
#: ones this reader synthesises from system calls it sees (``dma_buf_export`` and ``dma_buf_fd`` for the creating
#: ioctls, ``fd_received``).  ``mmap`` is a callback too but shares its name with the system call, which strace sees.
UNOBSERVED: frozenset[str] = frozenset(
    op for op, kinds in OPS_BY_NAME.items()
    if EventKind.SYSCALL not in kinds and op not in {"dma_buf_export", "dma_buf_fd", "fd_received", "lost_events",
                                                     "marker"})

# -- constants (Linux, x86-64 and arm64 numbering) ---------------------------------------------

O_FLAGS = {
    "O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2, "O_CREAT": 0o100, "O_EXCL": 0o200, "O_NOCTTY": 0o400,
    "O_TRUNC": 0o1000, "O_APPEND": 0o2000, "O_NONBLOCK": 0o4000, "O_NDELAY": 0o4000, "O_DSYNC": 0o10000,
    "O_ASYNC": 0o20000, "FASYNC": 0o20000, "O_DIRECT": 0o40000, "O_LARGEFILE": 0o100000, "O_DIRECTORY": 0o200000,
    "O_NOFOLLOW": 0o400000, "O_NOATIME": 0o1000000, "O_CLOEXEC": K.O_CLOEXEC, "O_SYNC": 0o4010000,
    "O_PATH": 0o10000000, "O_TMPFILE": 0o20200000,
    "DRM_CLOEXEC": K.O_CLOEXEC, "DRM_RDWR": 2,
}
PROT_FLAGS = {"PROT_NONE": 0, "PROT_READ": 1, "PROT_WRITE": 2, "PROT_EXEC": 4, "PROT_SEM": 8,
              "PROT_GROWSDOWN": 0x01000000, "PROT_GROWSUP": 0x02000000}
MAP_FLAGS = {
    "MAP_FILE": 0, "MAP_SHARED": 1, "MAP_PRIVATE": 2, "MAP_SHARED_VALIDATE": 3, "MAP_FIXED": 0x10,
    "MAP_ANONYMOUS": 0x20, "MAP_ANON": 0x20, "MAP_32BIT": 0x40, "MAP_GROWSDOWN": 0x100, "MAP_DENYWRITE": 0x800,
    "MAP_EXECUTABLE": 0x1000, "MAP_LOCKED": 0x2000, "MAP_NORESERVE": 0x4000, "MAP_POPULATE": 0x8000,
    "MAP_NONBLOCK": 0x10000, "MAP_STACK": 0x20000, "MAP_HUGETLB": 0x40000, "MAP_SYNC": 0x80000,
    "MAP_FIXED_NOREPLACE": 0x100000, "MAP_UNINITIALIZED": 0x4000000,
}
SIGNALS = {
    "SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6, "SIGIOT": 6, "SIGBUS": 7,
    "SIGFPE": 8, "SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12, "SIGPIPE": 13, "SIGALRM": 14,
    "SIGTERM": 15, "SIGSTKFLT": 16, "SIGCHLD": 17, "SIGCONT": 18, "SIGSTOP": 19, "SIGTSTP": 20, "SIGTTIN": 21,
    "SIGTTOU": 22, "SIGURG": 23, "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27, "SIGWINCH": 28,
    "SIGIO": 29, "SIGPOLL": 29, "SIGPWR": 30, "SIGSYS": 31,
}
CLONE_FLAGS = {
    "CLONE_NEWTIME": 0x80, "CLONE_VM": 0x100, "CLONE_FS": 0x200, "CLONE_FILES": 0x400, "CLONE_SIGHAND": 0x800,
    "CLONE_PIDFD": 0x1000, "CLONE_PTRACE": 0x2000, "CLONE_VFORK": 0x4000, "CLONE_PARENT": 0x8000,
    "CLONE_THREAD": 0x10000, "CLONE_NEWNS": 0x20000, "CLONE_SYSVSEM": 0x40000, "CLONE_SETTLS": 0x80000,
    "CLONE_PARENT_SETTID": 0x100000, "CLONE_CHILD_CLEARTID": 0x200000, "CLONE_DETACHED": 0x400000,
    "CLONE_UNTRACED": 0x800000, "CLONE_CHILD_SETTID": 0x1000000, "CLONE_NEWCGROUP": 0x2000000,
    "CLONE_NEWUTS": 0x4000000, "CLONE_NEWIPC": 0x8000000, "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000, "CLONE_IO": 0x80000000,
    "CLONE_CLEAR_SIGHAND": 0x100000000, "CLONE_INTO_CGROUP": 0x200000000, **SIGNALS,
}
CLONE_THREAD = fdt.CLONE_THREAD
SYNC_FLAGS = {"DMA_BUF_SYNC_READ": K.SYNC_READ, "DMA_BUF_SYNC_WRITE": K.SYNC_WRITE, "DMA_BUF_SYNC_RW": K.SYNC_RW,
              "DMA_BUF_SYNC_START": 0, "DMA_BUF_SYNC_END": K.SYNC_END}
UDMABUF_FLAGS = {"UDMABUF_FLAGS_CLOEXEC": 1}
FCNTL_CMDS = fdt.FCNTL_CMDS
WHENCE = {"SEEK_SET": 0, "SEEK_CUR": 1, "SEEK_END": 2, "SEEK_DATA": 3, "SEEK_HOLE": 4}
CLOSE_RANGE_CLOEXEC = 4
MSG_CMSG_CLOEXEC = 0x40000000


def _ioc(direction: int, kind: str, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | nr


_W, _R = 1, 2
#: The ioctls that create a dma-buf fd (include/uapi/linux/dma-heap.h, udmabuf.h, drm.h, videodev2.h).
CREATORS: dict[str, int] = {
    "DMA_HEAP_IOCTL_ALLOC": _ioc(_R | _W, "H", 0, 24),
    "UDMABUF_CREATE": _ioc(_W, "u", 0x42, 24),
    "UDMABUF_CREATE_LIST": _ioc(_W, "u", 0x43, 8),
    "DRM_IOCTL_PRIME_HANDLE_TO_FD": _ioc(_R | _W, "d", 0x2D, 12),
    "VIDIOC_EXPBUF": _ioc(_R | _W, "V", 16, 64),
}
CREATOR_NAMES = {v: k for k, v in CREATORS.items()}
IOCTL_NUMBERS: dict[str, int] = {**K.IOCTLS, "DMA_BUF_SET_NAME": K.IOCTLS["DMA_BUF_SET_NAME_B"]}
IOCTL_BY_NUMBER: dict[int, str] = dict(K.IOCTL_NAMES)
IOC_DIRS = {"_IOC_NONE": 0, "_IOC_WRITE": _W, "_IOC_READ": _R}

ERRNOS: dict[str, int] = {name: num for num, name in _errno.errorcode.items()}
RESTARTS = {"ERESTARTSYS", "ERESTARTNOINTR", "ERESTARTNOHAND", "ERESTART_RESTARTBLOCK", "ERESTART_RESTART"}

# -- line shapes ---------------------------------------------------------------------------------

_HEAD = re.compile(
    r"(?:\[pid\s+(?P<pid1>\d+)\]\s*|(?P<pid2>\d+)\s+)?"
    r"(?:(?P<hms>\d{1,2}:\d\d:\d\d(?:\.\d+)?)\s+|(?P<sec>\d+\.\d+)\s+)?"
    r"(?:\[\s*[0-9a-fA-F?]+\]\s*)*"
    r"(?P<body>.*)", re.S)
_CALL = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)\((?P<rest>.*)", re.S)
_DONE = re.compile(r"(?P<args>.*)\)\s+=\s+(?P<rv>0x[0-9a-fA-F]+|-?\d+|\?)(?P<tail>.*)", re.S)
_RESUMED = re.compile(r"<\.\.\. (?P<name>[A-Za-z_][A-Za-z0-9_]*) resumed>(?P<rest>.*)", re.S)
_EXITED = re.compile(r"\+\+\+ exited with (?P<status>-?\d+) \+\+\+")
_KILLED = re.compile(r"\+\+\+ killed by (?P<sig>[A-Z0-9_+]+)(?: \(core dumped\))? \+\+\+")
_SUPERSEDED = re.compile(r"\+\+\+ superseded by execve in pid (?P<pid>\d+) \+\+\+")
_SIGNAL = re.compile(r"--- .* ---")
_STRACE_MSG = re.compile(r"(?:strace: .*|\[ Process PID=\d+ runs in .* mode\. \])")
_ATTACHED = re.compile(r"strace: Process (?P<pid>\d+) attached")
_SPLIT_MSG = re.compile(r"(?P<head>.*?\S.*?)(?P<msg>strace: Process \d+ (?:attached|detached))")
_SUMMARY = re.compile(r"% time .*|-{3,}[ -]*|\s*\d+\.\d+\s+\d+\.\d+\s+\d+\s+\d+(?:\s+\d+)?\s+\w+")
_ERRNAME = re.compile(r"(?P<name>E[A-Z0-9_]+)\b")
_TIMING = re.compile(r"\s*<(?P<seconds>\d+(?:\.\d+)?)>\s*$")
_FD = re.compile(r"(?P<fd>-?\d+|AT_FDCWD)(?:<(?P<path>.*)>)?(?:\(deleted\))?", re.S)
_ARGNAME = re.compile(r"[a-z_][a-z0-9_]*=(?![=>])")
_UNIX = re.compile(r"(?:UNIX(?:-[A-Z]+)?:\[(?P<ino>\d+)(?:->(?P<peer>\d+))?|socket:\[(?P<sino>\d+)\])")
_PIDFD = re.compile(r"pidfd:\[?(?P<pid>\d+)\]?")
_RELEASE = re.compile(r'release="(?P<major>\d+)\.(?P<minor>\d+)')
_IOC = re.compile(r"_IOC\((?P<dir>[_A-Z|]+|0|0x[0-9a-fA-F]+),\s*(?P<type>0x[0-9a-fA-F]+|\d+),\s*"
                  r"(?P<nr>0x[0-9a-fA-F]+|\d+),\s*(?P<size>0x[0-9a-fA-F]+|\d+)\)")
_HEXSTRING = re.compile(r'"((?:\\x[0-9a-fA-F]{2})*)"')
_NUMBER = re.compile(r"(?P<neg>-)?(?:0[xX](?P<hex>[0-9a-fA-F]{1,32})|0(?P<oct>[0-7]{1,40})|(?P<dec>\d{1,40}))")
_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_SIZE_FIELD = re.compile(r"\bsize=(0x[0-9a-fA-F]+|\d+)")
_SNIFF = re.compile(
    r"\s*(?:\[pid\s+\d+\]\s*|\d+\s+)?(?:\d{1,2}:\d\d:\d\d(?:\.\d+)?\s+|\d+\.\d+\s+)?(?:\[\s*[0-9a-fA-F?]+\]\s*)*"
    r"(?P<what>[a-z_][a-z0-9_]*\(.*(?:\)\s+=\s+(?:0x[0-9a-fA-F]+|-?\d+|\?).*|<unfinished \.\.\.>\s*)"
    r"|<\.\.\. [a-z_0-9]+ resumed>.*|--- .* ---|\+\+\+ (?:exited|killed|superseded) .* \+\+\+"
    r"|strace: Process \d+ (?:attached|detached).*)\s*")

NOT_ABOUT = fdt.NOT_ABOUT
NOT_DMABUF_FD = fdt.NOT_DMABUF_FD
NO_RESULT = fdt.NO_RESULT
ANON = -1  # the traced task whose pid strace has not printed yet
MAX_QUEUE = 1 << 16  # events held back while ANON's pid is unknown
MAX_PENDING_CREATES = 64
MAX_IN_FLIGHT = 1 << 12  # fds sent over sockets and not yet received
MAX_UNSEEN = 1 << 12  # children forked that never printed a line (strace without -f): their fd tables
MAX_REMEMBERED = 1 << 12  # socketpairs, exported GEM handles


class _Unparseable(Exception):
    """An argument list the reader cannot interpret: the line is skipped and counted."""


# -- sniffing ---------------------------------------------------------------------------------------

def sniff(head: bytes) -> bool:
    """Whether ``head`` looks like strace output: most of its first lines have strace's line shapes.

    >>> sniff(b'1234  12:00:00.123456 openat(AT_FDCWD, "/dev/dma_heap/system", O_RDONLY|O_CLOEXEC) = 3\\n')
    True
    >>> sniff(b'execve("./a.out", ["./a.out"], 0x7ffd6c0c1e48 /* 20 vars */) = 0\\n[pid  42] close(3) = 0\\n')
    True
    >>> sniff(b'# tracer: nop\\n   weston-1412  [001] .....   500.000274: dma_buf_fd: fd=27\\n')
    False
    >>> sniff(b'{"op": "close", "tid": 1, "args": {"fd": 3}}\\n')
    False
    """
    text = head.decode("latin-1")
    if text.lstrip()[:1] in ("{", "#"):
        return False
    lines = text.split("\n")
    if not head.endswith(b"\n") and len(lines) > 1:
        lines.pop()  # cut at the end of the peek
    lines = [ln for ln in lines[:200] if ln.strip()]
    if not lines:
        return False
    calls = shaped = 0
    for ln in lines:
        m = _SNIFF.fullmatch(ln.rstrip("\r"))
        if m:
            shaped += 1
            calls += m.group("what")[:1].isalpha()
    return calls > 0 and shaped * 2 >= len(lines)


def pids_in(head: bytes) -> set[int]:
    """The processes and threads the first lines of an strace recording show (its pid column, or what
    ``set_tid_address`` returned).

    >>> sorted(pids_in(b'42  10:00:00.000001 close(3) = 0\\n43  10:00:00.000002 close(4) = 0\\n'))
    [42, 43]
    """
    out: set[int] = set()
    for line in head.decode("latin-1").split("\n")[:4096]:
        m = _HEAD.fullmatch(line.strip())
        if m is None:
            continue
        pid = m.group("pid1") or m.group("pid2")
        if pid:
            out.add(int(pid))
        tid = re.match(r"set_tid_address\(.*\)\s+=\s+(\d+)", m.group("body"))
        if tid:
            out.add(int(tid.group(1)))
    return out


# -- small parsers ----------------------------------------------------------------------------------

_TOKEN = re.compile(r'\\.|"(?:[^"\\]|\\.)*"?|/\*.*?(?:\*/|$)|[()\[\]{}<>,]', re.S)


def _split(text: str) -> list[str]:
    """Top-level comma-separated items of an argument list (strings, brackets, comments and fd paths kept whole)."""
    out: list[str] = []
    depth = angle = 0
    start = 0
    for m in _TOKEN.finditer(text):
        ch = m.group()[0]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                raise _Unparseable("unbalanced brackets")
        elif ch == "<":
            i = m.start()
            if angle or (i and (text[i - 1].isalnum() or text[i - 1] == ">")):
                angle += 1
        elif ch == ">":
            if angle and text[m.start() - 1] != "-":
                angle -= 1
        elif ch == "," and not depth and not angle:
            out.append(text[start:m.start()].strip())
            start = m.end()
    if depth or angle:
        raise _Unparseable("unbalanced brackets")
    last = text[start:].strip()
    if last or out:
        out.append(last)
    return out


def _strip_name(arg: str) -> str:
    """``fd=3`` -> ``3`` (strace -N prints argument names)."""
    m = _ARGNAME.match(arg)
    return arg[m.end():] if m and not arg.startswith("{") else arg


def _int(text: str) -> int:
    s = _COMMENT.sub("", text).strip() if "/*" in text else text.strip()
    m = _NUMBER.fullmatch(s)
    if m is None:
        raise _Unparseable(f"not a number: {text[:40]!r}")
    if m.group("hex"):
        v = int(m.group("hex"), 16)
    elif m.group("oct"):
        v = int(m.group("oct"), 8)
    else:
        v = int(m.group("dec"))
    v = -v if m.group("neg") else v
    if not -(1 << 63) <= v < (1 << 64):
        raise _Unparseable("number out of range")
    return v


def _flags(text: str, table: dict[str, int], strict: bool = True) -> int:
    s = _COMMENT.sub("", text).strip()
    if not s:
        raise _Unparseable("empty flags")
    value = 0
    for tok in s.split("|"):
        tok = tok.strip()
        if tok in table:
            value |= table[tok]
        elif tok[:1].isdigit() or tok[:1] == "-":
            value |= _int(tok)
        elif strict:
            raise _Unparseable(f"unknown flag {tok[:40]!r}")
    return value


def _fd(text: str) -> tuple[int, str | None]:
    m = _FD.fullmatch(_strip_name(text).strip())
    if not m or m.group("fd") == "AT_FDCWD":
        raise _Unparseable("not an fd")
    return _int(m.group("fd")), m.group("path")


def _is_marker(path: str | None) -> bool:
    """A path of tracefs's ``trace_marker`` (under ``/sys/kernel/tracing`` or ``/sys/kernel/debug/tracing``)."""
    return path is not None and path.split("<", 1)[0].endswith("/trace_marker")


def _is_dmabuf(path: str | None) -> bool:
    """A path strace printed for an fd (-y) that names a dma-buf: ``/dmabuf:<name>`` or ``anon_inode:dmabuf``."""
    return path is not None and path.startswith(("/dmabuf:", "anon_inode:dmabuf"))


def _cstring(text: str) -> tuple[bytes, str]:
    """The bytes of a C string literal at the start of ``text`` (strace escapes), and what follows it."""
    if not text.startswith('"'):
        raise _Unparseable("not a string")
    m = _HEXSTRING.match(text)
    if m:  # what strace -v prints for ioctl structs: every byte as \\xNN
        return bytes.fromhex(m.group(1).replace("\\x", "")), text[m.end():]
    out = bytearray()
    i, n = 1, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            return bytes(out), text[i + 1:]
        if ch != "\\":
            out += ch.encode("latin-1", "replace")
            i += 1
            continue
        if i + 1 >= n:
            break
        e = text[i + 1]
        if e == "x":
            digits = re.match(r"[0-9a-fA-F]{1,2}", text[i + 2:i + 4])
            if not digits:
                raise _Unparseable("bad escape")
            out.append(int(digits.group(), 16))
            i += 2 + len(digits.group())
        elif e in "01234567":
            digits = re.match(r"[0-7]{1,3}", text[i + 1:i + 4])
            assert digits is not None
            out.append(int(digits.group(), 8) & 0xFF)
            i += 1 + len(digits.group())
        else:
            out.append({"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8}.get(e, ord(e) & 0xFF))
            i += 2
    raise _Unparseable("unterminated string")


@dataclass
class _Arg:
    """A struct argument as strace printed it: named fields, or raw bytes (``-v``, strace 6.11+), before and after."""

    fields: dict[str, str] = field(default_factory=dict)
    before: bytes | None = None
    after: bytes | None = None
    text: str = ""

    def u(self, name: str, offset: int, size: int, after: bool = False, signed: bool = False) -> int | None:
        """Field ``name`` if printed, else the little-endian integer at ``offset`` of the raw bytes."""
        if name in self.fields:
            return _int(self.fields[name].split("<", 1)[0])
        data = self.after if after else self.before
        if data is None or len(data) < offset + size:
            return None
        return int.from_bytes(data[offset:offset + size], "little", signed=signed)


def _struct_arg(text: str) -> _Arg:
    """A struct argument: ``{a=1, b=X|Y} => {c=5}``, or hex bytes ``"\\x01..." => "\\x05..."``, or a pointer."""
    arg = _Arg(text=text)
    parts = re.split(r"\s+=>\s+", text.strip(), maxsplit=1) if "=>" in text else [text.strip()]
    for k, part in enumerate(parts):
        if part.startswith("{") and part.endswith("}"):
            for item in _split(part[1:-1]):
                if "=" in item:
                    key, _, value = item.partition("=")
                    arg.fields[key.strip()] = value.strip()
        elif part.startswith('"'):
            data, _ = _cstring(part)
            if k == 0:
                arg.before = data
            if k == len(parts) - 1:
                arg.after = data
    return arg


def _ioctl_cmd(text: str) -> tuple[int | None, list[str]]:
    """The command number (when printed or known) and the names strace gave it."""
    s = _strip_name(text).strip()
    comment = re.search(r"/\*\s*(.*?)\s*\*/", s)
    names_text = comment.group(1) if comment else s
    bare = _COMMENT.sub("", s).strip()
    number: int | None = None
    m = _IOC.fullmatch(bare)
    if m:
        d = m.group("dir")
        direction = _flags(d, IOC_DIRS) if not d[:1].isdigit() else _int(d)
        number = _ioc(direction, chr(_int(m.group("type")) & 0xFF), _int(m.group("nr")), _int(m.group("size")))
        return number, []
    if bare[:1].isdigit():
        number = _int(bare)
    names = [n.strip() for n in names_text.split(" or ")] if not names_text[:1].isdigit() else []
    names = [n for n in names if re.fullmatch(r"[A-Z_][A-Z0-9_]*", n)]
    if number is None:
        for n in names:
            if n in IOCTL_NUMBERS:
                number = IOCTL_NUMBERS[n]
            elif n in CREATORS:
                number = CREATORS[n]
    return number, names


# -- the reader's state -------------------------------------------------------------------------------

@dataclass
class _Proc(fdt.Table):
    """One process (thread group) as the reader mirrors the checker's view of it: its dma-buf fds and mappings
    (``fdt.Table``), and what strace needs besides."""

    devs: dict[int, str] = field(default_factory=dict)  # fd -> path, for dma-buf devices opened (without -y)
    threads: set[int] = field(default_factory=set)
    creates: deque[tuple[str, int | None, int]] = field(default_factory=deque)  # creating ioctls whose fd is unseen
    marks: set[int] = field(default_factory=set)  # fds open on tracefs's trace_marker (without -y)
    dead: bool = False

    def fork(self) -> _Proc:
        return _Proc(dict(self.fds), dict(self.maps), dict(self.devs), marks=set(self.marks))


@dataclass
class _Pending:
    """A call strace printed as ``<unfinished ...>``."""

    name: str
    text: str
    line: int
    child: int | None = None  # a fork whose child showed up before the call returned


@dataclass
class _Call:
    """One complete system call line."""

    name: str
    args: list[str]
    rv: str
    errname: str | None
    ret_path: str | None
    tid: int
    line: int
    ts: float | None
    end: float | None = None  # when the call returned, if strace shows it (-T; the line of a resumed call)
    resumed: bool = False  # printed in two halves: ``ts`` is the second half's time, not the call's start

    def ret(self) -> int | None:
        """The return value as the canonical format wants it: the value, or a negative errno; None for ``?``."""
        if self.rv == "?":
            if self.errname in RESTARTS:
                return -K.EINTR
            return None
        v = _int(self.rv)
        if v == -1 and self.errname is not None:
            if self.errname in RESTARTS:
                return -K.EINTR
            num = ERRNOS.get(self.errname)
            if num is None:
                m = re.fullmatch(r"ERRNO_(\d+)", self.errname)
                if not m:
                    raise _Unparseable(f"unknown errno {self.errname}")
                num = int(m.group(1))
            return -num
        return v

    def arg(self, i: int) -> str:
        if i >= len(self.args):
            raise _Unparseable(f"{self.name}: argument {i + 1} missing")
        return _strip_name(self.args[i])


HANDLED = frozenset({
    "close", "close_range", "dup", "dup2", "dup3", "fcntl", "fcntl64", "lseek", "_llseek", "llseek", "mmap", "mmap2",
    "munmap", "ioctl", "fork", "vfork", "clone", "clone2", "clone3", "execve", "execveat", "exit_group", "exit",
    "openat", "open", "openat2", "creat", "sendmsg", "recvmsg", "socketpair", "pidfd_getfd", "set_tid_address",
    "gettid", "getpid", "write"})
FORKS = frozenset({"fork", "vfork", "clone", "clone2", "clone3"})
DEVICE_PREFIXES = ("/dev/dma_heap/", "/dev/udmabuf", "/dev/dri/", "/dev/video")


class _Converter:
    """Turns strace lines into canonical events, one line at a time."""

    def __init__(self, stream: IO[bytes], file: str, conv: Conversion, join: bool = False) -> None:
        self.stream = stream
        self.file = file
        self.conv = conv
        self.join = join  # for checker.join: every fd's system calls, and when each call started and returned
        self.skipped = conv.skipped
        self.out: list[tuple[int, dict[str, Any]]] = []
        self.queue: deque[tuple[int, dict[str, Any]]] = deque()
        self.procs: dict[int, _Proc] = {}
        self.tgid: dict[int, int] = {}  # known tasks: tid -> thread group
        self.seen: set[int] = set()  # tasks that printed a line and did not exit
        self.called_exit: set[int] = set()  # threads that called exit() (one thread, not the process)
        self.pending: dict[int, _Pending] = {}
        self.alias: dict[int, int] = {}  # strace pid -> task key (the pid ANON turned out to be)
        self.anon_pid: int | None = None  # what ANON resolves to, once known
        self.anon_used = False
        self.last_unprefixed: int | None = None
        self.in_flight: dict[int, deque[str | None]] = {}  # receiving socket inode -> handles sent, in order
        self.in_flight_count = 0
        self.peer: dict[int, int] = {}  # socket inode -> peer inode (socketpair)
        self.unseen: dict[int, None] = {}  # children forked that have printed nothing yet, oldest first
        self.prime: dict[tuple[int, int, int], str] = {}  # (pid, drm fd, GEM handle) -> buffer exported from it
        self.ts_mode: str | None = None
        self.ts_total = 0.0
        self.notes: set[str] = set()
        m = re.search(r"\.(\d+)$", os.path.basename(file))
        if m and 0 < int(m.group(1)) < (1 << 31):
            self.resolve(int(m.group(1)))  # strace -ff -o NAME writes NAME.<pid>

    # -- bookkeeping ------------------------------------------------------------------------

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.add(text)
            self.conv.notes.append(text)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def proc(self, tid: int) -> _Proc:
        tg = self.tgid.setdefault(tid, tid)
        p = self.procs.get(tg)
        if p is None:
            p = self.procs[tg] = _Proc()
        p.threads.add(tid)
        return p

    def emit(self, c: _Call, op: str, kind: str, args: dict[str, Any], ret: Any = None, tid: int | None = None) -> None:
        t = c.tid if tid is None else tid
        event: dict[str, Any] = {"op": op, "kind": kind, "tid": t, "pid": self.tgid.get(t, t), "args": args}
        if ret is not None:
            event["ret"] = ret
        if c.ts is not None:
            event["ts"] = c.ts
        if self.join:  # fields of checker.join's own, which it removes: when the call started and returned
            if c.ts is not None and not c.resumed:
                event["_t0"] = c.ts
            if c.end is not None:
                event["_t1"] = c.end
        self.out.append((c.line, event))

    def export(self, c: _Call, exp_name: str, size: int | None, fd: int, fd_flags: int, seen: bool = True) -> None:
        """What the kernel did in a creating ioctl: export a buffer and install it in a new fd.

        ``seen``: on the ioctl's own line; otherwise attributed to a later line that showed the fd.
        """
        handle = f"strace:{c.line}"
        while any(handle == h for h, _ in self.proc(c.tid).fds.values()):
            handle += "'"
        args: dict[str, Any] = {"exp_name": exp_name}
        if size is not None and 0 <= size < (1 << 63):
            args["size"] = size
        self.emit(c, "dma_buf_export", "call", args, handle)
        self.emit(c, "dma_buf_fd", "call", {"dmabuf": handle, "flags": fd_flags}, fd)
        if self.join and not seen:
            for _, event in self.out[-2:]:
                event["_why"] = "adopted"  # not at the time of the ioctl: no time anchor
        self.proc(c.tid).put_fd(fd, handle, bool(fd_flags & K.O_CLOEXEC))

    def receive(self, c: _Call, fd: int, handle: str | None, cloexec: bool | None) -> None:
        """A dma-buf fd that arrived in the process some way other than the calls this reader models."""
        if handle is None:
            handle = f"strace:{c.line}:fd{fd}"
        if cloexec is None:
            cloexec = True
            self.note("close-on-exec of dma-buf fds of unknown origin is taken as set")
        self.emit(c, "fd_received", "annotation", {"fd": fd, "dmabuf": handle, "flags": K.O_CLOEXEC if cloexec else 0})
        self.proc(c.tid).put_fd(fd, handle, cloexec)

    def adopt(self, c: _Call, fd: int, path: str | None) -> None:
        """A dma-buf fd -y shows that the reader has not seen created: a creation it could not see, or received."""
        p = self.proc(c.tid)
        if not _is_dmabuf(path) or fd in p.fds:
            return
        if p.creates:
            exp_name, size, line = p.creates.popleft()
            self.note(f"a creating ioctl's new fd was not printed (line {line}): attributed to the first dma-buf fd "
                      "-y showed afterwards; its close-on-exec flag is taken as set (use strace -v, 6.11 or later)")
            self.export(c, exp_name, size, fd, K.O_CLOEXEC, seen=False)
            return
        self.receive(c, fd, None, None)

    def key(self, pid: int | None, line_is_resumed: str | None) -> int:
        """The task key of a line: its pid, or the only traced task when strace printed none."""
        if pid is None:
            live = [t for t in self.seen if not self._dead(t)]
            if len(live) == 1:
                task = live[0]
            elif not live:
                alive = [t for t in self.tgid if not self._dead(t)]
                task = alive[-1] if alive else ANON
            else:
                task = self.last_unprefixed if self.last_unprefixed in live else max(live)
            if task == ANON:
                self.anon_used = True
            self.last_unprefixed = task
            self.seen.add(task)
            return task
        if pid in self.alias:
            return self.alias[pid]
        if pid in self.tgid or pid in self.seen:
            self.seen.add(pid)
            self.unseen.pop(pid, None)
            return pid
        # a pid never seen: the unprefixed task showing its pid, or a child announced before its fork returned
        if line_is_resumed and self.anon_used and self.anon_pid is None:
            pend = self.pending.get(ANON)
            if pend is not None and pend.name == line_is_resumed:
                self.resolve(pid)
                return ANON
        forks = [(p.line, t) for t, p in self.pending.items() if p.name in FORKS and p.child is None]
        if forks:
            _, parent = min(forks)
            self.early_fork(parent, pid)
        elif self.anon_used and self.anon_pid is None and ANON in self.seen:
            self.resolve(pid)
            return ANON
        self.seen.add(pid)
        return pid

    def _dead(self, tid: int) -> bool:
        p = self.procs.get(self.tgid.get(tid, tid))
        return p is not None and p.dead

    def resolve(self, pid: int) -> None:
        """ANON turned out to be ``pid``."""
        if self.anon_pid is None:
            self.anon_pid = pid
            self.alias[pid] = ANON

    # -- lines ----------------------------------------------------------------------------------------

    def events(self) -> Iterator[Converted]:
        carry = ""
        n = 0
        for n, raw in enumerate(self.stream, 1):
            text = raw.decode("latin-1").rstrip("\r\n")
            if carry:
                text, carry = carry + text, ""
            if not text.strip():
                continue
            split = _SPLIT_MSG.fullmatch(text) if "strace: Process" in text else None
            if split and not _STRACE_MSG.fullmatch(text.strip()):
                carry = split.group("head")  # strace's message cut a line in two (strace -f without -o): a child's
                self.skip("strace message")
                continue
            try:
                self.line(text, n, not raw.endswith(b"\n"))
            except _Unparseable:
                self.skip("unparseable arguments")  # events the line made before are kept: state moved with them
            yield from self.flush()
        if carry:
            self.skip("truncated last line")
        if self.anon_used and self.anon_pid is None and self.queue:
            self.resolve(1)
            self.note("strace printed no pid for the traced process and the trace does not show it: tid 1 is used")
        yield from self.flush(final=True)
        self.finish_notes()

    def flush(self, final: bool = False) -> Iterator[Converted]:
        out, self.out = self.out, []
        if self.anon_pid is None:
            self.queue.extend(out)
            if len(self.queue) > MAX_QUEUE:
                self.resolve(1)
                self.note("strace printed no pid for the traced process in the first events: tid 1 is used")
            elif not final:
                if not any(e["tid"] == ANON or e["pid"] == ANON for _, e in self.queue):
                    out = list(self.queue)
                    self.queue.clear()
                    yield from out
                return
        if self.queue:
            out = [*self.queue, *out]
            self.queue.clear()
        real = self.anon_pid if self.anon_pid is not None else 1
        for line, e in out:
            if e["tid"] == ANON:
                e["tid"] = real
            if e["pid"] == ANON:
                e["pid"] = real
            yield line, e

    def finish_notes(self) -> None:
        running = [t for t, p in self.procs.items() if not p.dead and (p.fds or p.maps)]
        if running:
            self.note(f"{len(running)} process(es) holding dma-bufs had not exited at the end of the trace: if "
                      "strace stopped before the program did, check with --no-leaks")
        if self.pending:
            self.note(f"{len(self.pending)} call(s) were unfinished at the end of the trace")

    def bad(self, n: int, text: str) -> InputError:
        return InputError(self.file, n, "expected a strace line: [pid] [time] syscall(args) = result, "
                                        "syscall(args <unfinished ...>, <... syscall resumed>args) = result, "
                                        "--- SIGNAL {...} --- or +++ exited with N +++, found "
                                        f"{text.strip()[:60]!r}")

    def line(self, text: str, n: int, last: bool) -> None:
        stripped = text.strip()
        if stripped.startswith("> "):
            self.skip("stack trace (-k)")
            return
        if stripped[:1] in "%-0123456789" and _SUMMARY.fullmatch(stripped):
            self.skip("strace -c summary")
            return
        m = _HEAD.fullmatch(stripped)
        assert m is not None  # every part is optional
        body = m.group("body")
        pid_text = m.group("pid1") or m.group("pid2")
        pid = int(pid_text) if pid_text else None
        if pid is not None and not 0 < pid < (1 << 31):
            raise InputError(self.file, n, f"pid {pid} out of range")
        ts = self.timestamp(m.group("hms"), m.group("sec"))
        self._line_now, self._ts_now = n, ts
        if _STRACE_MSG.fullmatch(body):
            a = _ATTACHED.match(body)
            if a and not any(p.name in FORKS for p in self.pending.values()):
                attached = int(a.group("pid"))
                if 0 < attached < (1 << 31) and (self.anon_used or not self.seen):
                    self.resolve(attached)  # strace -p: lines without a pid are this process's
            self.skip("strace message")
            return
        resumed = _RESUMED.fullmatch(body)
        if resumed:
            tid = self.key(pid, resumed.group("name"))
            self.resume(tid, resumed.group("name"), resumed.group("rest"), n, ts)
            return
        call = _CALL.fullmatch(body)
        if call:
            rest = call.group("rest")
            name = call.group("name")
            if rest.rstrip().endswith("<unfinished ...>"):
                tid = self.key(pid, None)
                self.pending[tid] = _Pending(name, rest.rstrip()[:-len("<unfinished ...>")].rstrip(" ") + " ", n)
                if name == "exit":
                    self.called_exit.add(tid)
                return
            if rest.rstrip().endswith("<detached ...>"):
                self.key(pid, None)
                self.skip("detached during the call")
                return
            done = _DONE.fullmatch(rest)
            if done is None:
                if last:
                    self.skip("truncated last line")
                    return
                raise self.bad(n, text)
            tid = self.key(pid, None)
            self.complete(name, done, tid, n, ts)
            return
        if _SIGNAL.fullmatch(body):
            self.key(pid, None)
            self.skip("signal")
            return
        ex = _EXITED.fullmatch(body)
        kill = _KILLED.fullmatch(body)
        if ex or kill:
            tid = self.key(pid, None)
            status = _int(ex.group("status")) if ex else None
            self.exited(tid, status, killed=kill is not None, line=n, ts=ts)
            return
        sup = _SUPERSEDED.fullmatch(body)
        if sup:
            leader = self.key(pid, None)
            other = int(sup.group("pid"))
            other = self.alias.get(other, other)
            if other in self.pending:
                self.pending[leader] = self.pending.pop(other)
            self.forget(other)
            self.skip("execve by another thread")
            return
        if last:
            self.skip("truncated last line")
            return
        raise self.bad(n, text)

    def timestamp(self, hms: str | None, sec: str | None) -> float | None:
        if hms:
            h, mi, s = hms.split(":")
            return int(h) * 3600 + int(mi) * 60 + float(s)
        if sec:
            v = float(sec)
            if self.ts_mode is None:
                self.ts_mode = "relative" if v < 1e6 else "absolute"
            if self.ts_mode == "relative":
                self.ts_total += v
                return round(self.ts_total, 9)
            return v
        return None

    def resume(self, tid: int, name: str, rest: str, n: int, ts: float | None) -> None:
        pend = self.pending.pop(tid, None)
        if pend is None or pend.name != name:
            self.skip("resumed without its start")
            return
        rest = rest.replace(" <unfinished ...>", "")
        done = _DONE.fullmatch(pend.text + rest.lstrip(" ") if pend.text.endswith(" ") else pend.text + rest)
        if done is None:
            done = _DONE.fullmatch(pend.text.rstrip(" ") + rest)
        if done is None:
            self.skip("unparseable arguments")
            return
        if pend.child is not None:
            self.skip("fork: recorded when the child appeared")
            return
        self.complete(name, done, tid, n, ts, resumed=True)

    def complete(self, name: str, done: re.Match[str], tid: int, n: int, ts: float | None,
                 resumed: bool = False) -> None:
        timing = _TIMING.search(done.group("tail"))
        end = ts if resumed else None  # strace stamps the second half of a call when it returns
        if timing is not None and ts is not None and not resumed:
            end = round(ts + float(timing.group("seconds")), 9)
        tail = _TIMING.sub("", done.group("tail")).strip()
        ret_path: str | None = None
        if tail.startswith("<"):
            close = _matching_angle(tail)
            ret_path, tail = tail[1:close], tail[close + 1:]
        if tail.startswith("(deleted)"):
            tail = tail[len("(deleted)"):]
        err = _ERRNAME.match(tail.strip())
        args_text = done.group("args")
        if name not in HANDLED:
            if "dmabuf" in args_text or _is_dmabuf(ret_path):
                c = _Call(name, _split(args_text), done.group("rv"), err.group("name") if err else None, ret_path,
                          tid, n, ts, end, resumed)
                self.adopt_args(c)
                rv = c.ret()
                if rv is not None and rv >= 0 and _is_dmabuf(ret_path):
                    self.adopt(c, rv, ret_path)
            self.skip(NOT_ABOUT)
            return
        c = _Call(name, _split(args_text), done.group("rv"), err.group("name") if err else None, ret_path, tid, n, ts,
                  end, resumed)
        if name not in FORKS and "dmabuf" in args_text:
            self.adopt_args(c)
        getattr(self, "sys_" + name.lstrip("_"))(c)

    def adopt_args(self, c: _Call) -> None:
        for a in c.args:
            m = _FD.fullmatch(_strip_name(a))
            if m and m.group("fd") != "AT_FDCWD" and _is_dmabuf(m.group("path")):
                fd = _int(m.group("fd"))
                if 0 <= fd < (1 << 31):
                    self.adopt(c, fd, m.group("path"))

    # -- processes --------------------------------------------------------------------------------

    def forget(self, tid: int, drop: bool = False) -> None:
        """A task is gone (``drop``: and its process, if it has no other thread)."""
        tg = self.tgid.pop(tid, tid)
        self.seen.discard(tid)
        self.called_exit.discard(tid)
        self.pending.pop(tid, None)
        self.unseen.pop(tid, None)
        p = self.procs.get(tg)
        if p is not None:
            p.threads.discard(tid)
            if (p.dead or drop) and not p.threads:
                del self.procs[tg]

    def teardown(self, c: _Call, status: int | None) -> None:
        p = self.proc(c.tid)
        if p.dead:
            return
        self.emit(c, "exit_group", "syscall", {} if status is None else {"status": status})
        p.dead = True
        p.clear()
        p.devs.clear()
        p.creates.clear()

    def exited(self, tid: int, status: int | None, killed: bool, line: int, ts: float | None) -> None:
        tg = self.tgid.get(tid, tid)
        p = self.proc(tid)
        p.threads.discard(tid)
        execing = any(self.tgid.get(t) == tg and q.name in ("execve", "execveat") for t, q in self.pending.items())
        whole = killed or (tid == tg and tid not in self.called_exit) or not p.threads
        c = _Call("exit_group", [], "?", None, None, tid, line, ts)
        if whole and not (execing and not killed and p.threads):
            if not p.dead:
                self.teardown(c, None if status is None or not 0 <= status < 256 else status)
            else:
                self.skip("process exit already recorded")
        else:
            self.skip("thread exit")
        self.forget(tid)

    def start_child(self, parent: int, child: int, flags: int) -> None:
        if child in self.alias:
            child = self.alias[child]
        old_tg = self.tgid.get(child)
        if old_tg is not None and old_tg != child:
            self.forget(child)
        if flags & CLONE_THREAD:
            tg = self.tgid.setdefault(parent, parent)
            self.tgid[child] = tg
            self.proc(parent).threads.add(child)
        else:
            self.tgid[child] = child
            self.procs[child] = self.proc(parent).fork()
            self.procs[child].threads.add(child)
        if child not in self.seen:  # without -f, children never show up: forget the oldest of those
            self.unseen[child] = None
            while len(self.unseen) > MAX_UNSEEN:
                old = next(iter(self.unseen))
                self.forget(old, drop=True)

    def early_fork(self, parent: int, child: int) -> None:
        """A task strace printed before its parent's fork returned: the fork happened, record it now."""
        pend = self.pending[parent]
        pend.child = child
        c = _Call(pend.name, [], str(child), None, None, parent, 0, None)
        try:
            args = _split(pend.text.rstrip(" ,"))
        except _Unparseable:
            args = []
        c.args = args
        self.fork_event(c, child)

    def fork_event(self, c: _Call, child: int) -> None:
        flags = 0
        if c.name in ("clone", "clone2"):
            for a in c.args:
                if a.startswith("flags="):
                    flags = _flags(a[len("flags="):], CLONE_FLAGS, strict=False)
        elif c.name == "clone3" and c.args:
            s = _struct_arg(c.args[0])
            flags = _flags(s.fields.get("flags", "0"), CLONE_FLAGS, strict=False)
        if c.line == 0:  # early: the line the child appeared on
            c.line = self._line_now
            c.ts = self._ts_now
        if c.name in ("fork", "vfork"):
            self.emit(c, c.name, "syscall", {}, child)
        else:
            self.emit(c, "clone", "syscall", {"flags": flags}, child)
        if child > 0:
            self.start_child(c.tid, child, flags)

    _line_now = 0
    _ts_now: float | None = None

    # -- system calls ---------------------------------------------------------------------------------

    def known(self, c: _Call, fd: int) -> bool:
        """Whether to record a system call on ``fd``: a dma-buf the reader has seen, or any fd when joined with a
        kernel trace, which may know it is one (the checker ignores calls on other fds)."""
        if fd in self.proc(c.tid).fds or self.join:
            return True
        self.skip(NOT_DMABUF_FD)
        return False

    def apply(self, c: _Call, outcome: list[fdt.Out] | str) -> None:
        """Emit what a call became in the fd tables (``checker.readers.syscalls``), or count why it did not."""
        if isinstance(outcome, str):
            self.skip(outcome)
            return
        for op, args, ret in outcome:
            self.emit(c, op, "syscall", args, ret)

    def sys_close(self, c: _Call) -> None:
        fd, _ = _fd(c.arg(0))
        p = self.proc(c.tid)
        p.devs.pop(fd, None)
        p.marks.discard(fd)
        self.apply(c, fdt.close(p, fd, c.ret(), every=self.join))

    def sys_close_range(self, c: _Call) -> None:
        first = _int(c.arg(0))
        last_text = _COMMENT.sub("", c.arg(1)).strip()
        last = (1 << 32) - 1 if last_text in ("~0", "~0U", "UINT_MAX") else _int(last_text)
        flags = _flags(c.arg(2), {"CLOSE_RANGE_UNSHARE": 2, "CLOSE_RANGE_CLOEXEC": CLOSE_RANGE_CLOEXEC}) \
            if len(c.args) > 2 else 0
        p = self.proc(c.tid)
        fds = sorted(fd for fd in p.fds if first <= fd <= last) if c.ret() == 0 else []
        for fd in fds:
            if flags & CLOSE_RANGE_CLOEXEC:
                self.apply(c, fdt.fcntl(p, fd, "F_SETFD", K.FD_CLOEXEC, 0))
            else:
                self.apply(c, fdt.close(p, fd, 0))
        if self.join and c.ret() == 0:
            # fds a kernel trace knows to be dma-bufs may be in the range too: checker.join closes them
            self.emit(c, "_close_range", "syscall", {"first": first, "last": last,
                                                     "cloexec": bool(flags & CLOSE_RANGE_CLOEXEC)}, 0)
        elif not fds:
            self.skip(NOT_DMABUF_FD)

    def sys_dup(self, c: _Call) -> None:
        fd, _ = _fd(c.arg(0))
        self.apply(c, fdt.dup(self.proc(c.tid), fd, c.ret(), every=self.join))

    def sys_dup2(self, c: _Call) -> None:
        fd, _ = _fd(c.arg(0))
        newfd, _ = _fd(c.arg(1))
        self.apply(c, fdt.dup_to(self.proc(c.tid), "dup2", fd, newfd, None, c.ret(), every=self.join))

    def sys_dup3(self, c: _Call) -> None:
        fd, _ = _fd(c.arg(0))
        newfd, _ = _fd(c.arg(1))
        flags = _flags(c.arg(2), O_FLAGS) if len(c.args) > 2 else 0
        self.apply(c, fdt.dup_to(self.proc(c.tid), "dup3", fd, newfd, flags, c.ret(), every=self.join))

    def sys_fcntl(self, c: _Call) -> None:
        fd, _ = _fd(c.arg(0))
        cmd_text = _COMMENT.sub("", c.arg(1)).strip()
        cmd = fdt.FCNTL_NAMES.get(_int(cmd_text), cmd_text) if cmd_text[:1].isdigit() else cmd_text
        p = self.proc(c.tid)
        arg: int | None = None
        if len(c.args) > 2 and cmd in ("F_DUPFD", "F_DUPFD_CLOEXEC", "F_SETFD") and (fd in p.fds or self.join):
            arg = _flags(c.arg(2), {"FD_CLOEXEC": K.FD_CLOEXEC}) if cmd == "F_SETFD" else _int(c.arg(2))
        self.apply(c, fdt.fcntl(p, fd, cmd, arg, c.ret(), every=self.join))

    sys_fcntl64 = sys_fcntl

    def sys_lseek(self, c: _Call) -> None:
        fd, _ = _fd(c.arg(0))
        if not self.known(c, fd):
            return
        whence = _COMMENT.sub("", c.arg(2)).strip()
        w: int | str = whence if whence in WHENCE else _int(whence)
        self.emit(c, "lseek", "syscall", {"fd": fd, "offset": _int(c.arg(1)), "whence": w}, c.ret())

    def sys_llseek(self, c: _Call) -> None:
        fd, _ = _fd(c.arg(0))
        if not self.known(c, fd):
            return
        if len(c.args) == 5:  # fd, offset_high, offset_low, [result], whence
            offset = (_int(c.arg(1)) << 32) | _int(c.arg(2))
            result_text, whence = c.arg(3), _COMMENT.sub("", c.arg(4)).strip()
        else:
            offset, result_text, whence = _int(c.arg(1)), c.arg(2), _COMMENT.sub("", c.arg(3)).strip()
        ret = c.ret()
        if ret == 0:
            ret = _int(result_text.strip("[]")) if result_text.startswith("[") else None
        w: int | str = whence if whence in WHENCE else _int(whence)
        self.emit(c, "llseek", "syscall", {"fd": fd, "offset": offset, "whence": w}, ret)

    def sys_mmap(self, c: _Call) -> None:
        if len(c.args) < 6:
            self.skip(NOT_ABOUT)
            return
        fd_text = c.arg(4)
        if fd_text.startswith("-"):
            self.skip(NOT_ABOUT)
            return
        fd, _ = _fd(fd_text)
        if not self.known(c, fd):
            return
        args: dict[str, Any] = {"fd": fd, "length": _int(c.arg(1)), "offset": _int(c.arg(5))}
        try:
            args["prot"] = _flags(c.arg(2), PROT_FLAGS)
            args["flags"] = _flags(c.arg(3), MAP_FLAGS)
        except _Unparseable:
            pass
        ret = c.ret()
        if ret is None:
            self.skip(NO_RESULT)
            return
        p = self.proc(c.tid)
        if ret >= 0 or c.rv.startswith("0x"):
            addr = fdt.address(ret)
            self.emit(c, "mmap", "syscall", args, addr)
            fdt.mapped(p, fd, addr)
        else:
            self.emit(c, "mmap", "syscall", args, ret)

    sys_mmap2 = sys_mmap

    def sys_munmap(self, c: _Call) -> None:
        p = self.proc(c.tid)
        addr = fdt.address(_int(c.arg(0)))
        length = _int(c.arg(1)) if addr in p.maps or self.join else None
        self.apply(c, fdt.munmap(p, addr, length, c.ret(), every=self.join))

    def sys_ioctl(self, c: _Call) -> None:
        fd, path = _fd(c.arg(0))
        number, names = _ioctl_cmd(c.arg(1))
        creator = CREATOR_NAMES.get(number) if number is not None else None
        if creator is None:
            creator = next((n for n in names if n in CREATORS), None)
        if fd in self.proc(c.tid).fds:
            creator = None  # on a dma-buf: a command its ioctl does not know, unless the VFS answers it first
        if fd in self.proc(c.tid).fds or self.join and creator is None:
            vfs = number if number is not None else next((fdt.VFS_IOCTLS[n] for n in names if n in fdt.VFS_IOCTLS),
                                                          None)
            outcome = fdt.vfs_ioctl(self.proc(c.tid), fd, vfs, c.ret(), every=self.join) if vfs is not None else None
            if outcome is not None:
                self.apply(c, outcome)
                return
        if fd not in self.proc(c.tid).fds and creator is None and not (
                self.join and (number in IOCTL_BY_NUMBER or any(n in IOCTL_NUMBERS for n in names))):
            self.skip(NOT_DMABUF_FD)  # (joined with a kernel trace: dma-buf commands on any fd are recorded)
            return
        arg = _struct_arg(_strip_name(c.args[2])) if len(c.args) > 2 else _Arg()
        if creator is not None:
            self.create(c, creator, fd, path, arg)
            return
        cmd: int | str
        canonical = next((n for n in names if n in IOCTL_NUMBERS), None)
        if number is not None and number in IOCTL_BY_NUMBER:
            canonical = IOCTL_BY_NUMBER[number]
        if canonical is not None:
            cmd = canonical
        elif number is not None:
            cmd = number
        elif names:
            cmd = names[0]
        else:
            raise _Unparseable("ioctl command")
        args: dict[str, Any] = {"fd": fd, "cmd": cmd}
        flags: int | None = None
        if canonical == "DMA_BUF_IOCTL_SYNC":
            flags = _sync_flags(arg, 8)
        elif canonical in K.SYNC_FILE_IOCTLS:
            flags = _sync_flags(arg, 4)
        elif canonical in K.SET_NAME_IOCTLS and arg.before is not None and not arg.text.startswith('"\\x') \
                and all(32 <= b < 127 for b in arg.before.rstrip(b"\0")):
            args["name"] = arg.before.rstrip(b"\0").decode("ascii")
        if flags is not None:
            args["flags"] = flags
        self.emit(c, "ioctl", "syscall", args, c.ret())

    def create(self, c: _Call, creator: str, fd: int, path: str | None, arg: _Arg) -> None:
        """DMA_HEAP_IOCTL_ALLOC, UDMABUF_CREATE[_LIST], DRM_IOCTL_PRIME_HANDLE_TO_FD, VIDIOC_EXPBUF."""
        p = self.proc(c.tid)
        ret = c.ret()
        if path is None:
            path = p.devs.get(fd)
        if ret is None or ret < 0:
            self.skip("creating ioctl failed")
            return
        size: int | None = None
        new_fd: int | None
        flags: int | None
        if creator == "DMA_HEAP_IOCTL_ALLOC":
            exp_name = path[len("/dev/dma_heap/"):].split("<", 1)[0] if path and path.startswith(
                "/dev/dma_heap/") else "dma_heap"
            size = arg.u("len", 0, 8)
            flags = _open_flags(arg, "fd_flags", 12)
            new_fd = arg.u("fd", 8, 4, after=True)
        elif creator in ("UDMABUF_CREATE", "UDMABUF_CREATE_LIST"):
            exp_name = "udmabuf"
            new_fd = ret
            raw = arg.fields.get("flags")
            if raw is not None:
                uflags: int | None = _flags(raw, UDMABUF_FLAGS)
            else:
                uflags = arg.u("flags", 4 if creator == "UDMABUF_CREATE" else 0, 4)
            flags = None if uflags is None else (K.O_CLOEXEC if uflags & 1 else 0)
            if creator == "UDMABUF_CREATE":
                size = arg.u("size", 16, 8)
            else:
                sizes = [_int(s) for s in _SIZE_FIELD.findall(arg.text)]
                size = sum(sizes) if sizes else None
        elif creator == "DRM_IOCTL_PRIME_HANDLE_TO_FD":
            exp_name = "drm"
            flags = _open_flags(arg, "flags", 4)
            new_fd = arg.u("fd", 8, 4, after=True, signed=True)
            gem = arg.u("handle", 0, 4)
            if new_fd is not None and gem is not None and flags is not None:
                cached = self.prime.get((self.tgid.get(c.tid, c.tid), fd, gem))
                if cached is not None and self.referenced(cached):
                    self.emit(c, "get_dma_buf", "call", {"dmabuf": cached})
                    self.emit(c, "dma_buf_fd", "call", {"dmabuf": cached, "flags": flags}, new_fd)
                    p.put_fd(new_fd, cached, bool(flags & K.O_CLOEXEC))
                    return
                self.export(c, exp_name, None, new_fd, flags)
                self.prime[(self.tgid.get(c.tid, c.tid), fd, gem)] = p.fds[new_fd][0]
                _bound(self.prime)
                return
        else:  # VIDIOC_EXPBUF: strace decodes it
            exp_name = "v4l2"
            flags = _open_flags(arg, "flags", 12)
            new_fd = arg.u("fd", 16, 4, after=True, signed=True)
        if new_fd is None or not 0 <= new_fd < (1 << 31):
            if len(p.creates) < MAX_PENDING_CREATES:
                p.creates.append((exp_name, size, c.line))
            self.skip("creating ioctl: new fd not shown (strace 6.11+ with -v prints it)")
            return
        if flags is None:
            flags = K.O_CLOEXEC
            self.note(f"{creator} without its struct decoded: the new fd's close-on-exec flag is taken as set "
                      "(strace -v, 6.11 or later, prints it)")
        self.export(c, exp_name, size, new_fd, flags)

    def referenced(self, handle: str) -> bool:
        return any(h == handle for q in self.procs.values() for h, _ in q.fds.values()) or \
            any(h == handle for q in self.procs.values() for h in q.maps.values())

    def _forkish(self, c: _Call) -> None:
        ret = c.ret()
        if ret is None:
            self.skip(NO_RESULT)
            return
        self.fork_event(c, ret)

    sys_fork = sys_vfork = sys_clone = sys_clone2 = sys_clone3 = _forkish

    def sys_execve(self, c: _Call) -> None:
        ret = c.ret()
        args: dict[str, Any] = {}
        try:
            data, _ = _cstring(c.arg(0) if c.name == "execve" else c.arg(1))
            args["filename"] = data.decode("utf-8", "replace")
        except _Unparseable:
            pass
        if ret is None:
            self.skip(NO_RESULT)
            return
        self.emit(c, "execve", "syscall", args, ret)
        if ret == 0:
            p = self.proc(c.tid)
            p.exec()
            p.devs.clear()
            p.creates.clear()
            tg = self.tgid.get(c.tid, c.tid)
            p.threads = {c.tid}
            for t in [t for t, g in self.tgid.items() if g == tg and t != c.tid]:
                self.tgid.pop(t, None)

    sys_execveat = sys_execve

    def sys_exit_group(self, c: _Call) -> None:
        status = _int(c.arg(0)) if c.args else None
        self.teardown(c, status if status is not None and 0 <= status < (1 << 31) else None)

    def sys_exit(self, c: _Call) -> None:
        self.called_exit.add(c.tid)
        self.skip("thread exit")

    def sys_openat(self, c: _Call) -> None:
        path: str | None = None
        for a in c.args[:2]:
            if a.startswith('"'):
                path = _cstring(a)[0].decode("utf-8", "replace")
        ret = c.ret()
        shown = c.ret_path or path
        if ret is not None and ret >= 0 and shown and _is_marker(shown):
            self.proc(c.tid).marks.add(ret)
            self.skip("trace_marker opened")
            return
        if ret is not None and ret >= 0 and shown and shown.startswith(DEVICE_PREFIXES):
            self.proc(c.tid).devs[ret] = shown.split("<", 1)[0]
            self.skip("dma-buf device opened")
            return
        if ret is not None and ret >= 0 and _is_dmabuf(c.ret_path):
            self.adopt(c, ret, c.ret_path)
            return
        self.skip(NOT_ABOUT)

    sys_open = sys_openat2 = sys_creat = sys_openat

    def sys_write(self, c: _Call) -> None:
        """A write to tracefs's ``trace_marker``: the program's own comment, which a kernel trace shows too."""
        fd, path = _fd(c.arg(0))
        ret = c.ret()
        if not (_is_marker(path) or path is None and fd in self.proc(c.tid).marks) or ret is None or ret < 0:
            self.skip(NOT_ABOUT)
            return
        data, rest = _cstring(c.arg(1))
        text = data.decode("utf-8", "replace").rstrip("\n")
        cut = rest.startswith("...")  # strace -s: the string is longer than strace prints
        self.emit(c, "marker", "annotation", {"text": text + ("..." if cut else "")})
        if self.join and cut:
            self.out[-1][1]["_prefix"] = text

    def sys_set_tid_address(self, c: _Call) -> None:
        ret = c.ret()
        if c.tid == ANON and self.anon_pid is None and ret is not None and 0 < ret < (1 << 31):
            self.resolve(ret)
        self.skip(NOT_ABOUT)

    sys_gettid = sys_getpid = sys_set_tid_address

    def sys_socketpair(self, c: _Call) -> None:
        ends = [int(m.group("ino") or m.group("sino")) for m in _UNIX.finditer(c.arg(3))] if len(c.args) > 3 else []
        if len(ends) == 2:
            self.peer[ends[0]], self.peer[ends[1]] = ends[1], ends[0]
            _bound(self.peer)
        self.skip(NOT_ABOUT)

    def _socket(self, text: str) -> tuple[int | None, int | None]:
        m = _UNIX.search(text)
        if not m:
            return None, None
        ino = int(m.group("ino") or m.group("sino"))
        peer = int(m.group("peer")) if m.group("peer") else self.peer.get(ino)
        return ino, peer

    def sys_sendmsg(self, c: _Call) -> None:
        ret = c.ret()
        rights = _scm_rights(c.arg(1)) if len(c.args) > 1 else []
        if ret is None or ret < 0 or not rights:
            self.skip(NOT_ABOUT)
            return
        _, peer = self._socket(c.arg(0))
        if peer is None:
            self.skip("fds sent to a socket whose peer is unknown (strace -yy shows it)")
            return
        p = self.proc(c.tid)
        q = self.in_flight.setdefault(peer, deque())
        for fd, _ in rights:
            q.append(p.fds[fd][0] if fd in p.fds else None)
            self.in_flight_count += 1
        while self.in_flight_count > MAX_IN_FLIGHT:
            oldest = next(iter(self.in_flight))
            self.in_flight_count -= len(self.in_flight.pop(oldest))
        self.skip("fds sent (recorded when received)")

    def sys_recvmsg(self, c: _Call) -> None:
        ret = c.ret()
        rights = _scm_rights(c.arg(1)) if len(c.args) > 1 else []
        if ret is None or ret < 0 or not rights:
            self.skip(NOT_ABOUT)
            return
        ino, _ = self._socket(c.arg(0))
        q = self.in_flight.get(ino) if ino is not None else None
        flags_text = c.arg(2) if len(c.args) > 2 else "0"
        cloexec = bool(_flags(flags_text, {"MSG_CMSG_CLOEXEC": MSG_CMSG_CLOEXEC}, strict=False) & MSG_CMSG_CLOEXEC)
        p = self.proc(c.tid)
        got = False
        for fd, path in rights:
            handle = q.popleft() if q else None
            if q is not None:
                self.in_flight_count -= 1
            if (handle is not None or _is_dmabuf(path)) and 0 <= fd < (1 << 31) and fd not in p.fds:
                self.receive(c, fd, handle, cloexec)
                got = True
        if not got:
            self.skip(NOT_ABOUT)

    def sys_pidfd_getfd(self, c: _Call) -> None:
        ret = c.ret()
        m = _PIDFD.search(c.arg(0))
        target = int(m.group("pid")) if m else None
        handle: str | None = None
        if target is not None:
            key = self.alias.get(target, target)
            owner = self.procs.get(self.tgid.get(key, key))
            entry = owner.fds.get(_int(c.arg(1))) if owner is not None else None
            handle = entry[0] if entry else None
        if ret is None or ret < 0 or (handle is None and not _is_dmabuf(c.ret_path)):
            self.skip(NOT_ABOUT)
            return
        self.receive(c, ret, handle, True)


def _bound(table: dict[Any, Any]) -> None:
    """Forget the oldest entries of a table that only helps (socket peers, GEM handles) beyond its bound."""
    while len(table) > MAX_REMEMBERED:
        del table[next(iter(table))]


def _matching_angle(text: str) -> int:
    depth = 0
    for i, ch in enumerate(text):
        if ch == "<":
            depth += 1
        elif ch == ">" and (i == 0 or text[i - 1] != "-"):
            depth -= 1
            if depth == 0:
                return i
    raise _Unparseable("unbalanced <>")


def _sync_flags(arg: _Arg, size: int) -> int | None:
    raw = arg.fields.get("flags")
    if raw is not None:
        return _flags(raw, SYNC_FLAGS)
    return arg.u("flags", 0, size)


def _open_flags(arg: _Arg, name: str, offset: int) -> int | None:
    raw = arg.fields.get(name)
    if raw is not None:
        return _flags(raw, O_FLAGS)
    return arg.u(name, offset, 4)


def _scm_rights(msg: str) -> list[tuple[int, str | None]]:
    """The fds an SCM_RIGHTS control message carries, with the paths -y printed."""
    out: list[tuple[int, str | None]] = []
    for m in re.finditer(r"cmsg_type=SCM_RIGHTS, cmsg_data=\[", msg):
        start = m.end()
        depth, i = 1, start
        while i < len(msg) and depth:
            depth += {"[": 1, "]": -1}.get(msg[i], 0)
            i += 1
        for item in _split(msg[start:i - 1]):
            if item and item != "...":
                out.append(_fd(item))
    return out


# -- the reader -----------------------------------------------------------------------------------------

SYNC_RULES = ("SYNC-END-WITHOUT-START", "SYNC-END-DIRECTION", "SYNC-START-TWICE", "SYNC-LEAK", "SYNC-RETRY",
              "CORE-SYNC-FLAGS")
CLOEXEC_RULES = ("FD-NO-CLOEXEC", "FD-CLOEXEC-LATE")
_SYNC_SHOWN = re.compile(r"(?:DMA_BUF_IOCTL_SYNC|0x40086200)[^,(]*, (?P<arg>[\"{]|0x[0-9a-fA-F]+\)|NULL\))")
_CREATE_SHOWN = re.compile(r"(?:DMA_HEAP_IOCTL_ALLOC|UDMABUF_CREATE(?:_LIST)?|DRM_IOCTL_PRIME_HANDLE_TO_FD|0xc0184800"
                           r"|0x40187542|0x40087543|0xc00c642d)[^,(]*, (?P<arg>[\"{]|0x[0-9a-fA-F]+\)|NULL\))")


def _starts_midway(head: str) -> bool:
    """Whether the recording starts in the middle of the program: its first call is not an ``execve``.

    ``strace -p`` attaches to a running program, and usually detaches before it ends.

    >>> _starts_midway('4242  execve("./app", ["./app"], 0x7ffd /* 20 vars */) = 0\\n')
    False
    >>> _starts_midway('strace: Process 4242 attached\\nclose(3) = 0\\n')
    True
    """
    for line in head.split("\n", 64)[:64]:
        stripped = line.strip()
        if not stripped or _STRACE_MSG.fullmatch(stripped) and not _ATTACHED.match(stripped):
            continue
        m = _HEAD.fullmatch(stripped)
        return m is None or not m.group("body").startswith(("execve(", "execveat("))
    return False


def undecidable(head: str) -> dict[str, tuple[str, ...]]:
    """Rules the recording cannot decide, as its first lines show: ioctl structs printed as pointers.

    strace before 6.11, or without ``-v``, prints the argument of ``DMA_BUF_IOCTL_SYNC`` and of the creating
    ioctls as an address: the SYNC flags, and the close-on-exec flag of new dma-buf fds, are not in the trace.

    >>> undecidable('ioctl(4</dmabuf:>, DMA_BUF_IOCTL_SYNC, 0x7ffd5c4e2a10) = 0')["SYNC-LEAK"]
    ('DMA_BUF_IOCTL_SYNC flags (strace 6.11+ with -v prints them)',)
    >>> undecidable('ioctl(4</dmabuf:>, DMA_BUF_IOCTL_SYNC, "\\\\x01\\\\x00") = 0')
    {}
    """
    out: dict[str, tuple[str, ...]] = {}
    sync = {m.group("arg")[:1] for m in _SYNC_SHOWN.finditer(head)}
    if sync and not sync & {'"', "{"}:
        out.update({r: ("DMA_BUF_IOCTL_SYNC flags (strace 6.11+ with -v prints them)",) for r in SYNC_RULES})
    create = {m.group("arg")[:1] for m in _CREATE_SHOWN.finditer(head)}
    if create and not create & {'"', "{"}:
        out.update({r: ("the close-on-exec flag of new dma-buf fds (strace 6.11+ with -v prints it)",)
                    for r in CLOEXEC_RULES})
    return out

def read(stream: IO[bytes], file: str, head: bytes, *, join: bool = False) -> Conversion:
    """The conversion of strace output ``stream`` (a binary stream at its start; ``head`` is a peek of it).

    ``join``: for ``checker.join``, which joins it with a kernel trace of the same run.  System calls on every
    fd are written (the kernel trace may know an fd is a dma-buf that strace cannot tell), with fields of the
    join's own, starting with ``_``: when the call started (``_t0``) and returned (``_t1``, with ``-T``).
    """
    text = head.decode("latin-1")
    profile: str | None = None
    m = _RELEASE.search(text)
    if m and (int(m.group("major")), int(m.group("minor"))) >= (3, 3):
        profile = f"{int(m.group('major'))}.{int(m.group('minor'))}"
    decorated = re.search(r"\(\d+<[^>]", text) is not None
    source: dict[str, Any] = {"recorder": "strace", "decode_fds": decorated}
    if m:
        source["kernel"] = text[m.start() + len('release="'):text.find('"', m.start() + len('release="'))][:64]
    header = Header(profile=profile, unobserved=UNOBSERVED, partial=_starts_midway(text), source=source)
    conv = Conversion("strace", header, iter(()))
    conv.notes.append("strace sees system calls only: kernel-internal dma-buf calls, exporter callbacks and CPU "
                      "accesses to mappings are not in the trace (listed as unobserved)")
    if head and not decorated:
        conv.notes.append("no fd paths (strace -y): dma-buf fds received from other processes or inherited from "
                          "before the trace cannot be recognised")
    conv.undecidable = undecidable(text)
    conv.events = _Converter(stream, file, conv, join).events()
    return conv


READER = Reader("strace", "strace output (strace -f -tt -yy -v; plainer variants too)", sniff, read)
