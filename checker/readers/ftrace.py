"""ftrace text: ``/sys/kernel/tracing/trace``, ``trace_pipe`` and ``trace-cmd report`` output.

What it reads, line by line:

- the line prefix in its variants: task names with spaces and dashes, the
  optional ``( tgid)`` column, 4- or 5-character flag columns or none, CPU,
  timestamp;
- kprobe and kretprobe events on the dma-buf core, recognised by the kernel
  function in the probe's own ``(func+off/size)`` or ``(caller <- func)``
  part, whatever the event is called, with fields named after the function's
  parameters (``dmabuf``, ``attach``, ``direction``, ``sg_table``, ``fd``,
  ``file``, ``cmd``, ``ret``; ``argN`` is the N-th parameter).  A return probe
  is paired with its call on the same thread;
- the ``dma_buf:*`` tracepoints (Linux 7.0+, buffers named by inode) and the
  ``dma_fence:*`` tracepoints (fences named by context and seqno): init,
  signalled, destroy, and ``dma_fence_wait_end``, which becomes a
  ``dma_fence_wait_timeout`` without its timeout or return value (the
  tracepoint records neither);
- ``function`` tracer lines (``func <-parent``), which only confirm nesting;
- ``tracing_mark_write`` markers, and ``CPU:N [LOST M EVENTS]``, which
  becomes a gap;
- the ``syscalls:sys_enter_*``/``sys_exit_*`` tracepoints, as the kernel
  prints them (``sys_dup2(oldfd: b, newfd: 14)``, ``sys_dup2 -> 0x14``) or
  as ``trace-cmd report`` does (``sys_enter_dup2: oldfd: 0x0000000b, ...``,
  ``sys_exit_dup2: 0x14``), paired per thread, and ``sched_process_fork``
  and ``sched_process_exit``.  They keep every process's table of dma-buf
  fds and mappings (``checker.readers.syscalls``, shared with the strace
  reader) and become ``close``, ``dup``, ``dup2``, ``dup3``, ``fcntl``,
  ``munmap``, ``fork``/``clone``, ``execve`` and ``exit_group`` events.

Kernel-internal nesting is folded: ``dma_buf_attach`` calling
``dma_buf_dynamic_attach``, an ``_unlocked`` variant calling the locked one,
and ``dma_buf_ioctl`` calling ``dma_buf_begin_cpu_access`` are one call by
the caller.  Userspace file operations (``dma_buf_llseek``, ``dma_buf_ioctl``,
``dma_buf_mmap_internal``) name a ``struct file``, not an fd: they become
system calls once the file is linked to its buffer (a ``file=`` field on the
export's return probe, or a call inside them that names the buffer) and the
buffer's fd is known; otherwise they are skipped and counted.  Inside a
traced ``ioctl``, ``mmap`` or ``lseek`` system call the fd is the call's own,
and the two are one event, written at the call's return.  What the
format cannot see goes into the header's ``unobserved``, so the rules that
need it are narrowed, never guessed.

>>> import io
>>> text = (b"# tracer: nop\\n"
...         b" app-7 [000] ..... 1.0: dma_buf_put: (dma_buf_put+0x4/0x30) dmabuf=0xffff1\\n")
>>> conv = READER.read(io.BytesIO(text), "t.txt", text)
>>> [(line, e["op"], e["args"]) for line, e in conv.events]
[(2, 'dma_buf_put', {'dmabuf': '0xffff1'})]
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from checker.core import InputError
from checker.readers import Conversion, Converted, Reader
from checker.readers import syscalls as fdt
from checker.trace import Header
from spec import kernel as K

# -- the line ------------------------------------------------------------------------------

PREFIX = re.compile(
    r"\s*(?P<comm>.*?)-(?P<tid>\d+)\s+(?:\(\s*(?P<tgid>\d+|-+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s:]{4,5})\s+)?(?P<ts>\d+(?:\.\d+)?):\s+(?P<rest>.*)")
FUNCTION = re.compile(r"(?P<func>[\w.$]+) <-(?P<parent>\S+)$")
EVENT = re.compile(r"(?P<name>[\w.:/-]+):\s*(?P<body>.*)$")  # trace-cmd pads the name: "dma_buf_put:      (..."
PROBE = re.compile(r"\((?:(?P<entry>[\w.]+)\+0x[0-9a-f]+/0x[0-9a-f]+|(?P<caller>[^)]*?) <- (?P<ret>[\w.]+))\)\s*")
FIELD = re.compile(r'([\w.]+)[=:]("(?:[^"\\]|\\.)*"|\S+)')
LOST = re.compile(r"\s*CPU:?\s*(?P<cpu>\d+)\s+\[LOST (?P<count>\d+) EVENTS\]")
# The flags column's third character: 'h' a hardirq, 'H' a hardirq inside a softirq, 's' a softirq.
IRQ_FLAG = {"h": "hardirq", "H": "hardirq", "s": "softirq"}
KERNEL_MARK = re.compile(r"dmaspec: kernel=(?P<release>\S+)")
# What userspace says of itself through trace_marker, which no tracer sees: an access to a dma-buf mapping
# (``dmaspec: mmap_access addr=0x... access=write``), checked like the canonical format's mmap_access.
ACCESS_MARK = re.compile(r"dmaspec: mmap_access addr=(?P<addr>0x[0-9a-fA-F]+) access=(?P<access>read|write|rw)\b")
# function_graph: [abstime |] CPU) [task-pid |] [duration] | body; events inside the graph are /* comments */.
GRAPH = re.compile(r"\s*(?:(?P<ts>\d+\.\d+)\s*\|\s*)?(?P<cpu>\d+)\)\s+(?:(?P<comm>\S.*?)-(?P<tid>\d+)\s+\|\s+)?"
                   r"(?P<duration>[^|]*)\|(?P<body>.*)$")
GRAPH_COMMENT = re.compile(r"/\*\s*(?P<event>.*?)\s*\*/$")
GRAPH_SWITCH = re.compile(r"\s*(?:-{8,}|\d+\)\s+\S.*=>\s+\S)")
WRITTEN = re.compile(r"#\s*entries-in-buffer/entries-written:\s*(?P<kept>\d+)/(?P<written>\d+)")
# System call tracepoints: the kernel's own text ("sys_close(fd: 3)", "sys_close -> 0x0"; values in hex without
# 0x, a user string after a pointer on newer kernels) and trace-cmd's, from the events' print fmt
# ("sys_enter_close: fd: 0x00000003", "sys_exit_close: 0x0").
SYS_ENTER = re.compile(r"sys_(?P<name>\w+)\((?P<args>.*)\)\s*$")
SYS_EXIT = re.compile(r"sys_(?P<name>\w+) -> (?P<ret>(?:0x)?[0-9a-fA-F]+)\s*$")
SYS_TRACEPOINT = re.compile(r"(?:syscalls:)?sys_(?P<dir>enter|exit)_(?P<name>\w+):\s*(?P<body>.*?)\s*$")
SYS_ARG = re.compile(r'(\w+): (?:0x)?([0-9a-fA-F]+)(?: "(?:[^"\\]|\\.)*"(?:\.\.\.)?)?')
# What ftrace-setup.sh writes after enabling the events: how many probes it defined, the syscalls and sched events
# it enabled.
EVENTS_MARK = re.compile(r"dmaspec: (?:kprobes=(?P<kprobes>\d+) )?syscalls=(?P<sys>[\w,]*)"
                         r"(?: sched=(?P<sched>[\w,]*))?(?: sync_flags=(?P<sync_flags>[01]))?")
FENCE_WAIT_IN_HEAD = re.compile(r": (?:dma_fence:)?dma_fence_wait_(?:start|end):")
SYS_IN_HEAD = re.compile(r": (?:sys_(?P<name>\w+)(?:\(| -> )|(?:syscalls:)?sys_(?:enter|exit)_(?P<tp>\w+):)")


def sniff(head: bytes) -> bool:
    """ftrace text: a ``# tracer:`` header, trace-cmd's ``cpus=``, or an event line with the ftrace prefix."""
    text = head.decode("utf-8", "replace")
    seen = 0
    for line in text.splitlines()[:200]:
        if line.startswith("# tracer:") or re.match(r"cpus=\d+$", line):
            return True
        if line.startswith("#") or not line.strip():
            continue
        if PREFIX.match(line) or LOST.match(line) or GRAPH.match(line):
            seen += 1
            if seen >= 1:
                return True
        else:
            return False
    return False


def pids_in(head: bytes) -> set[int]:
    """The processes (tgid, else thread) the first lines of an ftrace recording show.

    >>> sorted(pids_in(b" app-7 (   5) [000] ..... 1.0: tracing_mark_write: hi\\n"))
    [5]
    """
    out: set[int] = set()
    for line in head.decode("utf-8", "replace").splitlines()[:4096]:
        m = PREFIX.match(line)
        if m:
            tgid = m["tgid"]
            out.add(int(tgid) if tgid and tgid.isdigit() else int(m["tid"]))
    out.discard(0)
    return out


# -- what the kernel functions are ----------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """A dma-buf kernel function as the canonical format has it."""

    op: str
    params: tuple[str, ...]  # the function's parameters, in order (argN names the N-th)
    returns: str  # "handle", "number", "int" or "" (void)
    fop: bool = False  # a file operation on the dma-buf's struct file (userspace, by file pointer)


CALLS: dict[str, Call] = {c.op: c for c in (
    Call("dma_buf_export", ("exp_info",), "handle"),
    Call("dma_buf_fd", ("dmabuf", "flags"), "number"),
    Call("dma_buf_get", ("fd",), "handle"),
    Call("dma_buf_put", ("dmabuf",), ""),
    Call("dma_buf_attach", ("dmabuf", "dev"), "handle"),
    Call("dma_buf_dynamic_attach", ("dmabuf", "dev", "importer_ops", "importer_priv"), "handle"),
    Call("dma_buf_detach", ("dmabuf", "attach"), ""),
    Call("dma_buf_map_attachment", ("attach", "direction"), "handle"),
    Call("dma_buf_map_attachment_unlocked", ("attach", "direction"), "handle"),
    Call("dma_buf_unmap_attachment", ("attach", "sg_table", "direction"), ""),
    Call("dma_buf_unmap_attachment_unlocked", ("attach", "sg_table", "direction"), ""),
    Call("dma_buf_pin", ("attach",), "int"),
    Call("dma_buf_unpin", ("attach",), ""),
    Call("dma_buf_move_notify", ("dmabuf",), ""),
    Call("dma_buf_begin_cpu_access", ("dmabuf", "direction"), "int"),
    Call("dma_buf_end_cpu_access", ("dmabuf", "direction"), "int"),
    Call("dma_buf_vmap", ("dmabuf", "map"), "int"),
    Call("dma_buf_vmap_unlocked", ("dmabuf", "map"), "int"),
    Call("dma_buf_vunmap", ("dmabuf", "map"), ""),
    Call("dma_buf_vunmap_unlocked", ("dmabuf", "map"), ""),
    Call("dma_buf_mmap", ("dmabuf", "vma", "pgoff"), "int"),
    Call("dma_resv_reserve_fences", ("obj", "num_fences"), "int"),
    Call("dma_resv_add_fence", ("obj", "fence", "usage"), ""),
    Call("dma_fence_signal", ("fence",), "int"),
    Call("dma_fence_signal_locked", ("fence",), "int"),
    Call("dma_fence_signal_timestamp", ("fence", "timestamp"), "int"),
    Call("dma_fence_signal_timestamp_locked", ("fence", "timestamp"), "int"),
    Call("dma_fence_wait_timeout", ("fence", "intr", "timeout"), "int"),
    Call("dma_buf_llseek", ("file", "offset", "whence"), "int", fop=True),
    Call("dma_buf_ioctl", ("file", "cmd", "arg"), "int", fop=True),
    Call("dma_buf_mmap_internal", ("file", "vma"), "int", fop=True),
    Call("dma_buf_file_release", ("inode", "file"), "", fop=True),
    Call("dma_buf_release", ("dentry",), ""),
)}

# Calls the dma-buf core makes inside another one: (inner, outer).  The inner one is not the caller's.
FOLDED = {
    "dma_buf_dynamic_attach": ("dma_buf_attach",),
    "dma_buf_map_attachment": ("dma_buf_map_attachment_unlocked",),
    "dma_buf_unmap_attachment": ("dma_buf_unmap_attachment_unlocked",),
    "dma_buf_vmap": ("dma_buf_vmap_unlocked",),
    "dma_buf_vunmap": ("dma_buf_vunmap_unlocked",),
    "dma_buf_begin_cpu_access": ("dma_buf_ioctl",),
    "dma_buf_end_cpu_access": ("dma_buf_ioctl",),
}
# Arguments an inner call shares with its outer one (to fold entry-only probes, which have no return to nest by).
SAME_ARGS = {"dma_buf_unmap_attachment": ("attach", "sg_table"), "dma_buf_vunmap": ("dmabuf",)}

IOCTL_SYNC, IOCTL_EXPORT_SYNC_FILE, IOCTL_IMPORT_SYNC_FILE = 0x40086200, 0xC0086202, 0x40086203
SYNC_START, SYNC_END = 0, 4
# dma_buf_ioctl turns DMA_BUF_SYNC_{READ,WRITE,RW} into these directions for begin_cpu_access.
SYNC_OF_DIRECTION = {2: 1, 1: 2, 0: 3}  # DMA_FROM_DEVICE: READ, DMA_TO_DEVICE: WRITE, BIDIRECTIONAL: RW
PAGE_SIZE = 4096
EFAULT = 14

# What kernel tracing never shows, whatever was probed: userspace's own system calls (the file
# operations arrive by file pointer), inline functions, and what the CPU does with a mapping.
ALWAYS_UNOBSERVED = frozenset({
    "get_dma_buf", "dma_resv_lock", "dma_resv_lock_interruptible", "dma_resv_lock_slow",
    "dma_resv_lock_slow_interruptible", "dma_resv_trylock", "dma_resv_unlock", "ww_acquire_init",
    "ww_acquire_done", "ww_acquire_fini", "close", "dup", "dup2", "dup3", "fcntl", "fork", "vfork", "clone",
    "execve", "exit_group", "munmap", "cpu_access", "mmap_access", "fd_received", "mutex_lock",
    "mutex_lock_interruptible", "mutex_trylock", "mutex_unlock", "mmap_read_lock", "mmap_write_lock",
    "mmap_read_unlock", "mmap_write_unlock", "dma_fence_begin_signalling", "dma_fence_end_signalling", "alloc",
})
# The ops a traced system call shows: they leave the unobserved set when the trace has the call's events.
SYSCALL_OPS = {"close": ("close",), "dup": ("dup",), "dup2": ("dup2",), "dup3": ("dup3",), "fcntl": ("fcntl",),
               "munmap": ("munmap",), "execve": ("execve",), "exit_group": ("exit_group",)}
# What ftrace-setup.sh --syscalls enabled before it wrote the events marker (with sched_process_fork and _exit).
SETUP_SYSCALLS = frozenset({"close", "dup", "dup2", "dup3", "fcntl", "mmap", "munmap", "ioctl", "lseek", "execve",
                            "exit_group", "clone", "clone3"})
FORKS = frozenset({"clone", "clone3", "fork", "vfork"})
# A system call's arguments by position, where the reader needs them: trace-cmd and the kernel name them the same.
SYS_PARAMS = {"close": ("fd",), "dup": ("fildes",), "dup2": ("oldfd", "newfd"), "dup3": ("oldfd", "newfd", "flags"),
              "fcntl": ("fd", "cmd", "arg"), "ioctl": ("fd", "cmd", "arg"), "lseek": ("fd", "offset", "whence"),
              "mmap": ("addr", "len", "prot", "flags", "fd", "off"), "munmap": ("addr", "len"),
              "exit_group": ("error_code",), "clone": ("clone_flags",)}
# The system call a file operation runs inside.
FOP_SYSCALL = {"dma_buf_ioctl": "ioctl", "dma_buf_mmap_internal": "mmap", "dma_buf_llseek": "lseek"}
MAX_HELD = 1 << 16  # events held while a fork waits for its child's first line (thread or process?)

CLOEXEC_RULES = ("FD-NO-CLOEXEC", "FD-CLOEXEC-LATE")  # what a new fd's close-on-exec flag decides
# Rules the reader cannot feed, with what it lacks (a vmap's address is in an iosys_map the probes do not read).
UNDECIDABLE = {"VMAP-VUNMAP-ADDRESS": ("the vmap address",), "CORE-VMAP-SAME-ADDRESS": ("the vmap address",)}


# -- values --------------------------------------------------------------------------------

def value(raw: str) -> int | str:
    """A field's value: a quoted string, a decimal integer, or a hex handle (kept as its string)."""
    if raw.startswith('"'):
        return raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]
    if raw.startswith("0x"):
        try:
            return int(raw, 16) if len(raw) <= 10 else "0x" + format(int(raw, 16), "x")
        except ValueError:
            return raw
    try:
        return int(raw)
    except ValueError:
        return raw


def number(v: int | str | None) -> int | None:
    """A field as an integer (hex handles too), or None."""
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.startswith("0x"):
        try:
            return int(v, 16)
        except ValueError:
            return None
    return None


def handle(v: int | str | None) -> str | None:
    """A field as a handle: 0x-prefixed lowercase hex."""
    n = number(v)
    return None if n is None else "0x" + format(n & (1 << 64) - 1, "x")


def returned(v: int | str | None, returns: str) -> int | str | None:
    """A return value as the canonical ``ret``: a handle, or the negative errno of an error pointer."""
    n = number(v)
    if n is None:
        return None
    if n >= 1 << 63:
        n -= 1 << 64
    if returns == "handle":
        if -4095 <= n < 0:
            return n
        return handle(n)
    if n >= 1 << 31 and returns != "handle":
        n = n - (1 << 32) if n < 1 << 32 else n  # an s32 printed as x32
    return n


def is_null(v: int | str | None) -> bool:
    return number(v) == 0 or v in (None, "(null)", "(nil)")


def s64(v: int | None) -> int:
    v = (v or 0) & ((1 << 64) - 1)
    return v - (1 << 64) if v >= 1 << 63 else v


def s32(v: int | None) -> int:
    """A system call's int argument (fds, commands), printed as an unsigned long: -1 is ffffffffffffffff."""
    v = (v or 0) & 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


# -- per thread and per file ----------------------------------------------------------------

@dataclass
class Frame:
    """A call whose entry probe fired and whose return has not come yet."""

    func: str
    fields: dict[str, int | str]
    line: int
    folded: bool  # made by the dma-buf core inside another call: not emitted
    inner: list[Frame] = field(default_factory=list)  # folded calls that completed inside it


@dataclass
class Event:
    """What the prefix says about one line."""

    line: int
    comm: str
    tid: int
    pid: int  # the process whose fds the line's calls use
    cpu: int
    ts: float | None
    real: int | None = None  # the process itself, when it shares another's fd table (clone with CLONE_FILES)
    irq: str | None = None  # hardirq or softirq, from the flags column (its third character: h, H or s)


@dataclass
class FileState:
    """A dma-buf's struct file, as far as the trace links it."""

    dmabuf: str | None = None
    sync: int | None = None  # the access bits of an open DMA_BUF_IOCTL_SYNC start
    pending: list[tuple[Event, str, dict[str, int | str], int | str | None]] = field(default_factory=list)


MAX_PENDING = 64  # file operations held per file until it is linked to its buffer


@dataclass
class SysCall:
    """A system call whose ``sys_enter`` came and whose ``sys_exit`` has not."""

    name: str
    args: dict[str, int]
    pid: int
    # the file operation inside it, as its probes showed it: (func, fields, ret, file, the return probe's line)
    fop: tuple[str, dict[str, int | str], int | str | None, str, Event] | None = None
    child: int | None = None  # the child sched_process_fork showed (a fork already written)
    releases: list[tuple[Event, str]] = field(default_factory=list)  # files released inside: after the return


@dataclass(eq=False)
class ProcTable(fdt.Table):
    """A process's dma-buf fds and mappings, kept in the reader's index by buffer too."""

    pid: int = 0
    index: Tables | None = None

    def put_fd(self, fd: int, buffer: str, cloexec: bool) -> None:
        old = self.fds.get(fd)
        if old is not None and old[0] != buffer and self.index is not None:
            self._unindex(self.index.fds_of, old[0], (self.pid, fd))
        self.fds[fd] = (buffer, cloexec)
        if self.index is not None:
            self.index.fds_of.setdefault(buffer, {})[(self.pid, fd)] = None

    def drop_fd(self, fd: int) -> None:
        buffer, _ = self.fds.pop(fd)
        if self.index is not None:
            self._unindex(self.index.fds_of, buffer, (self.pid, fd))

    def put_map(self, addr: str, buffer: str) -> None:
        old = self.maps.get(addr)
        if old is not None and old != buffer and self.index is not None:
            self._unindex(self.index.maps_of, old, (self.pid, addr))
        self.maps[addr] = buffer
        if self.index is not None:
            self.index.maps_of.setdefault(buffer, {})[(self.pid, addr)] = None

    def drop_map(self, addr: str) -> None:
        buffer = self.maps.pop(addr)
        if self.index is not None:
            self._unindex(self.index.maps_of, buffer, (self.pid, addr))

    @staticmethod
    def _unindex(index: dict[str, dict[Any, None]], buffer: str, key: Any) -> None:
        where = index.get(buffer)
        if where is not None:
            where.pop(key, None)
            if not where:
                del index[buffer]


class Tables:
    """Every process's table (made on first use), and where each buffer has fds and mappings."""

    def __init__(self) -> None:
        self.procs: dict[int, ProcTable] = {}
        self.fds_of: dict[str, dict[tuple[int, int], None]] = {}
        self.maps_of: dict[str, dict[tuple[int, str], None]] = {}

    def __call__(self, pid: int) -> ProcTable:
        t = self.procs.get(pid)
        if t is None:
            t = self.procs[pid] = ProcTable(pid=pid, index=self)
        return t

    def fd_in(self, pid: int, buffer: str) -> int | None:
        """An fd of process ``pid`` that holds ``buffer``."""
        for p, fd in self.fds_of.get(buffer, ()):
            if p == pid:
                return fd
        return None

    def fork(self, parent: int, child: int) -> ProcTable:
        """The child's table: a copy of the parent's, replacing what a process with the child's pid left."""
        self.drop(child)
        t = self(child)
        source = self.procs.get(parent)
        if source is not None:
            for fd, (buffer, cloexec) in source.fds.items():
                t.put_fd(fd, buffer, cloexec)
            for addr, buffer in source.maps.items():
                t.put_map(addr, buffer)
        return t

    def drop(self, pid: int) -> None:
        """Forget process ``pid``'s table."""
        t = self.procs.pop(pid, None)
        if t is not None:
            t.clear()

    def prune(self, pid: int) -> None:
        t = self.procs.get(pid)
        if t is not None and not t.fds and not t.maps:
            del self.procs[pid]


class _Converter:
    def __init__(self, file: str, head: str, join: bool = False) -> None:
        self.file = file
        self.join = join  # for checker.join: say which events are inferred, and the buffer behind file operations
        self.skipped: Counter[str] = Counter()
        self.notes: list[str] = []
        self.stacks: dict[int, list[Frame]] = {}
        self.last_entry: dict[int, Frame] = {}  # the last entry-only call per thread (to fold its inner call)
        self.files: dict[str, FileState] = {}
        self.tables = Tables()  # every process's dma-buf fds and mappings, as the checker will see them
        self.exported: set[str] = set()  # buffers exported in the trace (their reference may be installed unseen)
        mark = EVENTS_MARK.search(head)
        self.kprobes = bool(re.search(r": \((?:dma_buf_\w+\+0x|[^)]* <- dma_buf_)", head)) or \
            bool(mark and int(mark["kprobes"] or 0))
        self.sync_flags = bool(re.search(r"dma_buf_ioctl\+0x[0-9a-f]+/0x[0-9a-f]+\)[^\n]* flags=", head))
        self.fd_flags = bool(re.search(r"dma_buf_fd\+0x[0-9a-f]+/0x[0-9a-f]+\)[^\n]* flags=", head))
        self.tgid = bool(re.search(r"-\d+\s+\(\s*(?:\d+|-+)\)\s+\[\d+\]", head))
        self.args_by_position: dict[str, dict[str, str]] = {}
        self.stack_trace = False
        self.graph_without_threads = False
        self.out: list[Converted] = []
        # -- system calls
        self.syscalls = False  # a sys_enter/sys_exit line was seen
        self.calls: dict[int, SysCall] = {}  # per thread: the system call in progress
        self.fops_probed = {f for f in FOP_SYSCALL if f"({f}+0x" in head}  # file operations the probes show
        self.involved: set[int] = set()  # processes with dma-buf events: their forks, execs and exits are written
        self.exited: set[int] = set()  # processes whose exit_group was written
        self.threads: dict[int, set[int]] = {}  # involved process -> its other threads seen alive
        self.leader_gone: set[int] = set()  # involved processes whose leader exited while threads ran on
        self.thread_pid: dict[int, int] = {}  # without the tgid column: threads created in the trace -> process
        self.files_of: dict[int, int] = {}  # process created with CLONE_FILES -> the process whose fds it shares
        self.undecided: dict[int, tuple[int, dict[str, Any], ProcTable]] = {}  # fork waiting for its child's tgid
        self.hidden_closes = 0  # fds and mappings the kernel released without a traced close or munmap
        # -- fence waits (the dma_fence_wait_start/_end tracepoints), unless probes on the call show them
        self.fence_waits_probed = "(dma_fence_wait_timeout+0x" in head
        self.fence_waits: dict[int, tuple[int, str]] = {}  # per thread: its wait in progress (line, fence)

    # -- emitting --

    def emit(self, ev: Event, op: str, args: dict[str, Any], ret: int | str | None = None,
             kind: str = "call", irq: bool = False, **private: Any) -> None:
        """Write one canonical event.  ``irq``: write the interrupt context the flags show as its ``ctx``.
        ``private``: fields for ``checker.join`` (named without their ``_``), written only when joining: ``why``
        an event is inferred rather than seen, the ``buf`` of a file operation.
        """
        event: dict[str, Any] = {"op": op, "tid": ev.tid, "pid": ev.pid, "args": args}
        if kind != "call":
            event["kind"] = kind
        if irq and ev.irq is not None:
            event["ctx"] = ev.irq
        if ret is not None:
            event["ret"] = ret
        if ev.ts is not None:
            event["ts"] = ev.ts
        event["comm"] = ev.comm
        event["cpu"] = ev.cpu
        if self.join:
            event.update({"_" + k: v for k, v in private.items() if v is not None})
        self.out.append((ev.line, event))
        if kind != "annotation":
            self.involved.add(ev.pid)
            if ev.tid != ev.pid and self.syscalls:
                self.threads.setdefault(ev.pid, set()).add(ev.tid)

    def apply(self, ev: Event, outcome: list[fdt.Out] | str, why: str = "syscall") -> None:
        """Emit what a system call became in the fd tables (``checker.readers.syscalls``), or count why not.

        ``why`` (for ``checker.join``): ``syscall``, a system call the syscall tracepoints showed (which an strace
        of the process shows too), else why the reader inferred it (``release``, ``reuse``, ``reinstall``).
        """
        if isinstance(outcome, str):
            self.skipped[outcome] += 1
            return
        for op, args, ret in outcome:
            self.emit(ev, op, args, ret, kind="syscall", why=why)

    def buffer_of(self, ev: Event, fd: int) -> str | None:
        """The buffer fd ``fd`` of the calling process holds (for ``checker.join``'s ``_buf``)."""
        held = self.tables.procs[ev.pid].fds.get(fd) if ev.pid in self.tables.procs else None
        return held[0] if held is not None else None

    # -- lines --

    def line(self, n: int, text: str) -> None:
        if self.stack_trace:
            if text.startswith((" =>", "=>")):
                return
            self.stack_trace = False
        if not text.strip() or text.startswith("#"):
            m = WRITTEN.match(text)
            if m and int(m["written"]) > int(m["kept"]):
                self.notes.append(f"the ring buffer overwrote {int(m['written']) - int(m['kept']):,} older events: "
                                  "objects from before the first line are adopted, and findings about them withheld")
            return
        m = PREFIX.match(text)
        if m is None:
            g = GRAPH.match(text)
            if g is not None:
                self.graph(n, g)
                return
            if GRAPH_SWITCH.match(text):
                return
            lost = LOST.match(text)
            if lost:
                self.lost(n, int(lost["cpu"]), int(lost["count"]))
                return
            if text.startswith(("CPU ", "cpus=", "version =", "#####")) or text.strip().startswith("#####"):
                return
            raise InputError(self.file, n, "not an ftrace line: expected 'TASK-PID [CPU] FLAGS TIMESTAMP: EVENT'")
        tid = int(m["tid"])
        tgid = m["tgid"]
        pid = int(tgid) if tgid and tgid.isdigit() else self.thread_pid.get(tid, tid) if self.thread_pid else tid
        flags = m["flags"]
        irq = IRQ_FLAG.get(flags[2]) if flags else None
        ev = Event(n, m["comm"], tid, pid, int(m["cpu"]), float(m["ts"]), irq=irq)
        if self.undecided and tid in self.undecided:
            self.decide(tid, "thread" if tgid and tgid.isdigit() and pid != tid else "process")
        if self.files_of and pid in self.files_of:
            ev.pid, ev.real = self.files_of[pid], pid
        self.event(ev, m["rest"])

    def event(self, ev: Event, rest: str) -> None:
        """One event (the part after the prefix); ``function_graph`` comments come here too."""
        n = ev.line
        if rest.startswith("CPU"):
            lost = LOST.match(rest)
            if lost:
                self.lost(n, int(lost["cpu"]), int(lost["count"]))
                return
        if " <-" in rest and ": " not in rest and FUNCTION.match(rest):
            return  # function tracer: the probes carry what is checked
        if rest.startswith("<stack trace>") or rest.startswith("<user stack trace>"):
            self.stack_trace = True
            return
        e = EVENT.match(rest)
        if e is None:
            if rest.startswith("sys_") and self.sys_line(ev, rest):
                return  # the kernel's text of a syscall event: sys_close(fd: 3), sys_close -> 0x0
            self.skipped["ftrace line without an event name"] += 1
            return
        name, body = e["name"], e["body"]
        if name in ("tracing_mark_write", "print"):
            text_ = body.removeprefix("tracing_mark_write: ")
            access = ACCESS_MARK.match(text_)
            if access:
                self.emit(ev, "mmap_access", {"addr": handle(access["addr"]), "access": access["access"]},
                          kind="annotation")
                return
            self.emit(ev, "marker", {"text": text_.rstrip()}, kind="annotation")
            return
        p = PROBE.match(body)
        if p:
            fields = {k: value(v) for k, v in FIELD.findall(body[p.end():])}
            if p["entry"]:
                self.entry(ev, p["entry"], fields)
            else:
                self.exit(ev, p["ret"], fields, p["caller"])
            return
        if name.startswith(("dma_fence:", "dma_fence_")):
            self.fence(ev, name.removeprefix("dma_fence:"), dict(FIELD.findall(body)))
            return
        if name.startswith(("sys_", "syscalls:")) and self.sys_line(ev, rest):
            return  # trace-cmd's: sys_enter_close: fd: 0x00000003, sys_exit_close: 0x0
        if name.startswith(("dma_buf:", "dma_buf_")) and not self.kprobes:
            self.tracepoint(ev, name.removeprefix("dma_buf:"), {k: value(v) for k, v in FIELD.findall(body)})
            return
        if name in ("sched_process_fork", "sched:sched_process_fork", "sched_process_exit",
                    "sched:sched_process_exit"):
            self.sched(ev, name.removeprefix("sched:"), {k: value(v) for k, v in FIELD.findall(body)})
            return
        self.skipped[f"ftrace event not about dma-buf ({name.split(':')[-1]})"] += 1

    def graph(self, n: int, g: re.Match[str]) -> None:
        """A ``function_graph`` line: a call, a return, or an event printed as a comment inside the graph."""
        body = g["body"].strip()
        comment = GRAPH_COMMENT.match(body)
        if comment is None:
            if body.endswith(("{", ";")) or body.startswith("}"):
                self.skipped["function_graph call (arguments are in kprobe events)"] += 1
            else:
                self.skipped["function_graph line the reader does not know"] += 1
            return
        if g["tid"] is None and not self.graph_without_threads:
            self.graph_without_threads = True
            self.notes.append("function_graph without funcgraph-proc: each CPU stands for a thread")
        tid = int(g["tid"]) if g["tid"] else int(g["cpu"])
        ts = float(g["ts"]) if g["ts"] else None
        self.event(Event(n, g["comm"] or "", tid, tid, int(g["cpu"]), ts), comment["event"])

    def lost(self, n: int, cpu: int, count: int) -> None:
        calls, self.calls = self.calls, {}
        for call in calls.values():  # system calls open across the gap cannot be paired
            self.unreturned(call)
        ev = Event(n, "", 0, 0, cpu, None)
        event: dict[str, Any] = {"op": "lost_events", "kind": "annotation", "tid": 0,
                                 "args": {"count": count, "cpu": cpu}}
        self.out.append((ev.line, event))
        self.stacks.clear()  # calls open across the gap cannot be paired
        self.last_entry.clear()
        self.fence_waits.clear()  # a wait open across the gap may have returned in it

    # -- kprobes --

    def named(self, func: str, fields: dict[str, int | str]) -> dict[str, int | str]:
        """Fields by the function's parameter names (``argN`` is the N-th parameter)."""
        call = CALLS[func]
        out = {}
        for k, v in fields.items():
            if k.startswith("arg") and k[3:].isdigit() and 0 < int(k[3:]) <= len(call.params):
                out[call.params[int(k[3:]) - 1]] = v
            else:
                out[self.args_by_position.get(func, {}).get(k, k)] = v
        return out

    def entry(self, ev: Event, func: str, fields: dict[str, int | str]) -> None:
        if func not in CALLS:
            self.skipped[f"kprobe on a function the spec does not model ({func})"] += 1
            return
        fields = self.named(func, fields)
        stack = self.stacks.setdefault(ev.tid, [])
        outer = FOLDED.get(func, ())
        folded = any(fr.func in outer for fr in stack)
        last = self.last_entry.pop(ev.tid, None)
        if not folded and last is not None and last.func in outer:
            same = SAME_ARGS.get(func, ())
            folded = bool(same) and all(last.fields.get(k) == fields.get(k) for k in same)
        frame = Frame(func, fields, ev.line, folded)
        if CALLS[func].returns == "" or func in ("dma_buf_file_release",):
            self.complete(ev, frame, None, stack)
            if not folded:
                self.last_entry[ev.tid] = frame
            return
        stack.append(frame)

    def exit(self, ev: Event, func: str, fields: dict[str, int | str], caller: str) -> None:
        if func not in CALLS:
            self.skipped[f"kretprobe on a function the spec does not model ({func})"] += 1
            return
        stack = self.stacks.get(ev.tid, [])
        for i in range(len(stack) - 1, -1, -1):
            if stack[i].func == func:
                break
        else:
            self.skipped[f"return without its call ({func})"] += 1
            return
        unreturned = stack[i + 1:]
        frame = stack[i]
        del stack[i:]
        for fr in unreturned:
            self.complete(ev, fr, None, stack + [frame])
        frame.fields.update({k: v for k, v in self.named(func, fields).items() if k != "ret"})
        self.complete(ev, frame, fields.get("ret"), stack)

    def complete(self, ev: Event, frame: Frame, ret: int | str | None, stack: list[Frame]) -> None:
        """A call is over: fold it into its caller, or emit it."""
        call = CALLS[frame.func]
        at = Event(ev.line, ev.comm, ev.tid, ev.pid, ev.cpu, ev.ts)
        if frame.folded:
            frame.fields["ret"] = ret if ret is not None else ""
            for outer in reversed(stack):
                if outer.func in FOLDED.get(frame.func, ()):
                    outer.inner.append(frame)
                    self.link_inner(outer, frame)
                    break
            return
        if call.fop:
            self.file_op(at, frame, ret)
            return
        if call.returns in ("handle", "number") and ret is None:
            self.skipped[f"call without its return probe ({frame.func})"] += 1
            return
        self.kernel_call(at, frame, ret)

    def link_inner(self, outer: Frame, inner: Frame) -> None:
        file = handle(outer.fields.get("file"))
        dmabuf = handle(inner.fields.get("dmabuf"))
        if file and dmabuf:
            self.link(file, dmabuf)

    def link(self, file: str, dmabuf: str) -> None:
        state = self.files.setdefault(file, FileState())
        if state.dmabuf != dmabuf:
            state.dmabuf = dmabuf
            held, state.pending = state.pending, []
            for ev, op, args, ret in held:  # file operations from before the link, in order
                self.syscall(ev, file, op, args, ret)

    def kernel_call(self, ev: Event, frame: Frame, ret: int | str | None) -> None:
        f, func = frame.fields, frame.func
        call = CALLS[func]
        r = returned(ret, call.returns) if ret is not None else None
        args: dict[str, Any] = {}
        if func == "dma_buf_export":
            for k in ("exp_name", "size"):
                if k in f:
                    args[k] = f[k]
            if isinstance(r, str):
                self.forget(ev, r)
                self.exported.add(r)
                if handle(f.get("file")):
                    self.link(handle(f.get("file")) or "", r)
            self.emit(ev, func, args, r)
            return
        if func == "dma_buf_release":
            return  # the core's own release: the model releases with the last reference
        for p in call.params:
            v = f.get(p)
            if v is None or p in ("exp_info",):
                continue
            if p in ("dmabuf", "attach", "sg_table", "fence", "obj", "vma", "importer_ops", "importer_priv"):
                args[p] = "0x0" if is_null(v) and p == "importer_ops" else handle(v)
            elif p == "map":
                continue
            elif p == "dev":
                args[p] = v if isinstance(v, str) and not v.startswith("0x") else handle(v)
            else:
                args[p] = number(v) if not isinstance(v, str) or v.startswith("0x") else v
        if func == "dma_buf_fd" and isinstance(r, int) and r >= 0 and args.get("dmabuf"):
            self.installed(ev, str(args["dmabuf"]), r, number(args.get("flags")))
        if func == "dma_buf_get" and isinstance(r, str) and isinstance(args.get("fd"), int):
            self.known_fd(ev, r, int(args["fd"]))
        if func in ("dma_buf_vmap", "dma_buf_vmap_unlocked"):
            if isinstance(r, int) and r < 0:
                self.emit(ev, func, args, r)
                return
            r = r if isinstance(r, str) else f"vmap:{args.get('dmabuf')}"  # before 5.11 the address is returned
        if func in ("dma_buf_vunmap", "dma_buf_vunmap_unlocked"):
            args["map"] = f"vmap:{args.get('dmabuf')}"
        self.emit(ev, func, args, r)

    # -- fds and files --

    def close_all(self, ev: Event, dmabuf: str, why: str) -> int:
        """Every mapping and fd of ``dmabuf`` is gone in a way the trace cannot show: write their munmap and close."""
        n = 0
        for pid, addr in list(self.tables.maps_of.get(dmabuf, ())):
            at = Event(ev.line, ev.comm, ev.tid, pid, ev.cpu, ev.ts)
            self.apply(at, fdt.munmap(self.tables(pid), addr, None, 0), why)
            self.tables.prune(pid)
            n += 1
        for pid, fd in list(self.tables.fds_of.get(dmabuf, ())):
            at = Event(ev.line, ev.comm, ev.tid, pid, ev.cpu, ev.ts)
            self.apply(at, fdt.close(self.tables(pid), fd, 0), why)
            self.tables.prune(pid)
            n += 1
        return n

    def forget(self, ev: Event, dmabuf: str) -> None:
        """A new buffer at ``dmabuf``'s address: the old one was freed, so its files, fds and mappings went first."""
        self.hidden_closes += self.close_all(ev, dmabuf, why="reuse")
        for file in [f for f, state in self.files.items() if state.dmabuf == dmabuf]:
            del self.files[file]

    def installed(self, ev: Event, dmabuf: str, fd: int, flags: int | None) -> None:
        """The buffer's reference went into fd ``fd`` of the calling process."""
        t = self.tables(ev.pid)
        old = t.fds.get(fd)
        if old is not None and old[0] != dmabuf:
            self.apply(ev, fdt.close(t, fd, 0), why="reinstall")  # closed unseen
            self.hidden_closes += 1
        t.put_fd(fd, dmabuf, bool((flags or 0) & K.O_CLOEXEC))

    def known_fd(self, ev: Event, dmabuf: str, fd: int) -> None:
        """``dma_buf_get(fd)`` showed that fd ``fd`` holds ``dmabuf``: its install may not have been seen."""
        if dmabuf not in self.tables.fds_of and dmabuf in self.exported:
            self.emit(ev, "dma_buf_fd", {"dmabuf": dmabuf, "flags": K.O_CLOEXEC}, fd, why="get")
            self.installed(ev, dmabuf, fd, K.O_CLOEXEC)
            if self.syscalls:
                self.note_once("an fd whose install the trace does not show (dma_buf_get found it) is taken as "
                               "created with O_CLOEXEC")

    def file_op(self, ev: Event, frame: Frame, ret: int | str | None) -> None:
        f = frame.fields
        file = handle(f.get("file"))
        if file is None:
            self.skipped[f"file operation without its file ({frame.func})"] += 1
            return
        call = self.calls.get(ev.tid) if self.calls else None
        if frame.func == "dma_buf_file_release":
            if call is not None:
                call.releases.append((ev, file))  # inside a close, dup2, munmap, execve: after what it does
            else:
                self.release_file(ev, file)
            return
        if call is not None and call.name == FOP_SYSCALL[frame.func] and call.fop is None:
            call.fop = (frame.func, dict(f), ret, file, ev)  # one event with its system call, at its return
            return
        state = self.files.setdefault(file, FileState())
        if state.dmabuf is None:
            if len(state.pending) < MAX_PENDING:
                state.pending.append((ev, frame.func, dict(f), ret))
            else:
                self.skipped["file operation on a file never linked to its dma-buf"] += 1
            return
        self.syscall(ev, file, frame.func, dict(f), ret)

    def syscall(self, ev: Event, file: str, func: str, f: dict[str, Any], ret: int | str | None) -> None:
        """A file operation outside a traced system call: on the fd its buffer was installed in."""
        fd = self.tables.fd_in(ev.pid, self.files[file].dmabuf or "")
        if fd is None:
            self.skipped[f"file operation on a dma-buf whose fd the trace does not show ({func})"] += 1
            return
        self.fop_event(ev, fd, func, f, returned(ret, "int") if ret is not None else None, None)

    def fop_event(self, ev: Event, fd: int, func: str, f: dict[str, Any], r: int | str | None,
                  sys: dict[str, int] | None) -> None:
        """A file operation on dma-buf fd ``fd`` as its system call: ``sys`` is the call's arguments, if traced."""
        buf = self.buffer_of(ev, fd)
        if func == "dma_buf_llseek":
            offset, whence = (s64(sys.get("offset")), sys.get("whence")) if sys else (number(f.get("offset")),
                                                                                    number(f.get("whence")))
            self.emit(ev, "lseek" if sys else "llseek", {"fd": fd, "offset": offset, "whence": whence}, r,
                      kind="syscall", buf=buf)
        elif func == "dma_buf_ioctl":
            self.ioctl(ev, fd, f, r)
        elif func == "dma_buf_mmap_internal":
            start, end = number(f.get("vm_start")), number(f.get("vm_end"))
            if sys is not None and ("len" in sys or start is not None and end is not None):
                length = sys["len"] if "len" in sys else (end or 0) - (start or 0)
                args: dict[str, Any] = {"fd": fd, "length": length, "offset": sys.get("off", 0)}
                for k in ("prot", "flags"):
                    if k in sys:
                        args[k] = sys[k]
                addr = fdt.address(r) if isinstance(r, int) and not -4096 < r < 0 else None
            elif start is None or end is None:
                self.skipped["dma_buf_mmap_internal without vm_start and vm_end"] += 1
                return
            else:
                args = {"fd": fd, "length": end - start, "offset": (number(f.get("vm_pgoff")) or 0) * PAGE_SIZE}
                addr = None if isinstance(r, int) and r < 0 else fdt.address(start)
            if addr is not None:
                fdt.mapped(self.tables(ev.pid), fd, addr)
                self.emit(ev, "mmap", args, addr, kind="syscall", buf=buf)
            else:
                self.emit(ev, "mmap", args, r, kind="syscall", buf=buf)

    def ioctl(self, ev: Event, fd: int, f: dict[str, Any], r: int | str | None) -> None:
        cmd = number(f.get("cmd"))
        if cmd is None:
            self.skipped["dma_buf_ioctl without cmd"] += 1
            return
        args: dict[str, Any] = {"fd": fd, "cmd": cmd}
        flags = number(f.get("flags"))
        if cmd in (IOCTL_SYNC, IOCTL_EXPORT_SYNC_FILE, IOCTL_IMPORT_SYNC_FILE) and r == -EFAULT:
            # The kernel could not read the argument: the flags the probe fetched (0 after a fault) are not
            # what it saw, and a call that failed there changed nothing.
            self.skipped["ioctl whose argument the kernel could not read (-EFAULT)"] += 1
            return
        buf = self.buffer_of(ev, fd)
        if cmd in (IOCTL_SYNC, IOCTL_EXPORT_SYNC_FILE, IOCTL_IMPORT_SYNC_FILE) and flags is None:
            if self.join:  # an strace of the run may show the flags: the join pairs the two
                self.emit(ev, "ioctl", args, r, kind="syscall", buf=buf, noflags=True)
                return
            what = "DMA_BUF_IOCTL_SYNC" if cmd == IOCTL_SYNC else "sync-file ioctl"
            self.skipped[f"{what} whose flags the trace does not record"] += 1
            return
        if flags is not None and cmd == IOCTL_SYNC:
            args["flags"] = flags
        elif flags is not None and cmd in (IOCTL_EXPORT_SYNC_FILE, IOCTL_IMPORT_SYNC_FILE):
            # The recorder reads 8 bytes at the argument; the structs are {__u32 flags; __s32 fd;}, so the fd
            # (-1 or garbage on input) is in the upper half on these little-endian machines.
            args["flags"] = flags & 0xFFFFFFFF
        self.emit(ev, "ioctl", args, r, kind="syscall", buf=buf)

    def release_file(self, ev: Event, file: str) -> None:
        """The file's last reference is gone: every fd and mapping of it went before."""
        state = self.files.pop(file, None)
        if state is None:
            return
        if state.pending:
            self.skipped["file operation on a file never linked to its dma-buf"] += len(state.pending)
        if state.dmabuf is not None:
            self.hidden_closes += self.close_all(ev, state.dmabuf, why="release")

    # -- system calls ----------------------------------------------------------------------

    def sys_line(self, ev: Event, rest: str) -> bool:
        """A syscall tracepoint line, in the kernel's text or trace-cmd's; False if ``rest`` is not one."""
        m = SYS_ENTER.match(rest)
        if m is not None:
            self.sys_enter(ev, m["name"], dict(SYS_ARG.findall(m["args"])))
            return True
        m = SYS_EXIT.match(rest)
        if m is not None:
            self.sys_exit(ev, m["name"], int(m["ret"].removeprefix("0x"), 16))
            return True
        m = SYS_TRACEPOINT.match(rest)
        if m is None:
            return False
        if m["dir"] == "enter":
            self.sys_enter(ev, m["name"], dict(SYS_ARG.findall(m["body"])))
            return True
        ret = re.match(r"(?:0x)?([0-9a-fA-F]+)$", m["body"])
        if ret is None:
            self.skipped["syscall exit without its value"] += 1
        else:
            self.sys_exit(ev, m["name"], int(ret[1], 16))
        return True

    def sys_enter(self, ev: Event, name: str, raw: dict[str, str]) -> None:
        self.syscalls = True
        params = SYS_PARAMS.get(name, ())
        args = {k: int(v, 16) for k, v in raw.items()}
        for i, v in enumerate(raw.values()):  # the same arguments by the names the reader uses
            if i < len(params) and params[i] not in args:
                args[params[i]] = int(v, 16)
        old = self.calls.pop(ev.tid, None)
        if old is not None:
            self.unreturned(old)
        if name == "exit_group":
            self.process_exit(ev, s32(args.get("error_code")))
            return
        self.calls[ev.tid] = SysCall(name, args, ev.pid)

    def unreturned(self, call: SysCall) -> None:
        """A call whose return the trace does not show (its exit event was not on yet, or lost): what its file
        operation's probes showed is written as they showed it, and the files released inside it are released."""
        self.skipped[f"system call whose return the trace does not show ({call.name})"] += 1
        if call.fop is not None:
            _, _, ret, _, at = call.fop
            fd = s32(call.args.get("fd"))
            self.sys_fop(at, call, fd, returned(ret, "int") if ret is not None else None, traced=False)
        for at, file in call.releases:
            self.release_file(at, file)

    def sys_exit(self, ev: Event, name: str, raw: int) -> None:
        self.syscalls = True
        ret = raw - (1 << 64) if raw >= 1 << 63 else raw
        call = self.calls.pop(ev.tid, None)
        if (call is None or call.name != name) and name in ("execve", "execveat"):
            # another thread's exec returns as the leader, whose own call (if any) never will
            tid = next((t for t, c in self.calls.items() if c.name == name and c.pid == ev.pid), None)
            if tid is not None:
                if call is not None:
                    self.unreturned(call)
                call = self.calls.pop(tid)
        if call is None or call.name != name:
            if call is not None:
                self.unreturned(call)
            if name in FORKS and ret == 0:
                self.skipped["a clone's return in the child"] += 1
            else:
                self.skipped[f"system call return without its call ({name})"] += 1
            return
        handler = SYSCALL_HANDLERS.get(name)
        if handler is None:
            self.skipped[fdt.NOT_ABOUT] += 1
        else:
            handler(self, ev, call, ret)
        for at, file in call.releases:
            self.release_file(at, file)

    def sys_close(self, ev: Event, call: SysCall, ret: int) -> None:
        self.apply(ev, fdt.close(self.tables(ev.pid), s32(call.args.get("fd")), ret))

    def sys_dup(self, ev: Event, call: SysCall, ret: int) -> None:
        self.apply(ev, fdt.dup(self.tables(ev.pid), s32(call.args.get("fildes")), ret))

    def sys_dup2(self, ev: Event, call: SysCall, ret: int) -> None:
        self.apply(ev, fdt.dup_to(self.tables(ev.pid), "dup2", s32(call.args.get("oldfd")),
                                  s32(call.args.get("newfd")), None, ret))

    def sys_dup3(self, ev: Event, call: SysCall, ret: int) -> None:
        self.apply(ev, fdt.dup_to(self.tables(ev.pid), "dup3", s32(call.args.get("oldfd")),
                                  s32(call.args.get("newfd")), call.args.get("flags", 0), ret))

    def sys_fcntl(self, ev: Event, call: SysCall, ret: int) -> None:
        self.apply(ev, fdt.fcntl(self.tables(ev.pid), s32(call.args.get("fd")), s32(call.args.get("cmd")),
                                 call.args.get("arg"), ret))

    def sys_munmap(self, ev: Event, call: SysCall, ret: int) -> None:
        self.apply(ev, fdt.munmap(self.tables(ev.pid), fdt.address(call.args.get("addr", 0)), call.args.get("len"),
                                  ret))

    def sys_ioctl(self, ev: Event, call: SysCall, ret: int) -> None:
        fd, cmd = s32(call.args.get("fd")), call.args.get("cmd", 0) & 0xFFFFFFFF
        t = self.tables(ev.pid)
        if call.fop is None:
            vfs = fdt.vfs_ioctl(t, fd, cmd, ret)
            if vfs is not None:
                self.apply(ev, vfs)
            elif fd not in t.fds:
                self.skipped[fdt.NOT_DMABUF_FD] += 1
            elif "dma_buf_ioctl" in self.fops_probed:
                self.skipped["ioctl on a dma-buf fd that dma_buf_ioctl did not see"] += 1
            else:
                self.ioctl(ev, fd, {"cmd": cmd}, ret)
            return
        self.sys_fop(ev, call, fd, ret)

    def sys_mmap(self, ev: Event, call: SysCall, ret: int) -> None:
        fd = s32(call.args.get("fd"))
        t = self.tables(ev.pid)
        if call.fop is not None:
            self.sys_fop(ev, call, fd, ret)
        elif fd < 0 or fd not in t.fds:
            self.skipped[fdt.NOT_DMABUF_FD if fd >= 0 else fdt.NOT_ABOUT] += 1
        elif "dma_buf_mmap_internal" in self.fops_probed:
            self.skipped["mmap of a dma-buf fd that dma_buf_mmap_internal did not see"] += 1
        else:
            self.fop_event(ev, fd, "dma_buf_mmap_internal", {}, ret, call.args)

    def sys_lseek(self, ev: Event, call: SysCall, ret: int) -> None:
        fd = s32(call.args.get("fd"))
        t = self.tables(ev.pid)
        if call.fop is not None:
            self.sys_fop(ev, call, fd, ret)
        elif fd not in t.fds:
            self.skipped[fdt.NOT_DMABUF_FD] += 1
        elif "dma_buf_llseek" in self.fops_probed:
            self.skipped["lseek on a dma-buf fd that dma_buf_llseek did not see"] += 1
        else:
            self.fop_event(ev, fd, "dma_buf_llseek", {}, ret, call.args)

    def sys_fop(self, ev: Event, call: SysCall, fd: int, ret: int | str | None, traced: bool = True) -> None:
        """A system call the kprobes saw reach the dma-buf file operation ``call.fop``: one event, on ``fd``
        (``traced``: with the call's own arguments and result; otherwise as the probes showed it)."""
        assert call.fop is not None
        func, fields, _, file, _ = call.fop
        self.fops_probed.add(func)
        t = self.tables(ev.pid)
        state = self.files.setdefault(file, FileState())
        held = t.fds.get(fd)
        if held is not None and state.dmabuf is None:
            self.link(file, held[0])
        elif held is None and state.dmabuf is not None:
            self.emit(ev, "fd_received", {"fd": fd, "dmabuf": state.dmabuf, "flags": K.O_CLOEXEC}, kind="annotation")
            t.put_fd(fd, state.dmabuf, True)
            self.note_once("a dma-buf fd the trace never showed created was used (received over a socket, or "
                           "created before the trace): written as fd_received, its close-on-exec flag taken as set")
        elif held is None:
            self.skipped[f"file operation on a dma-buf the trace never showed created ({func})"] += 1
            return
        elif held[0] != state.dmabuf:
            self.skipped[f"file operation on an fd the trace shows holding another dma-buf ({func})"] += 1
            return
        self.fop_event(ev, fd, func, fields, ret, call.args if traced else None)

    def sys_execve(self, ev: Event, call: SysCall, ret: int) -> None:
        real = ev.real if ev.real is not None else ev.pid
        if ret == 0 and real in self.files_of:  # exec unshares the fd table: the process gets a copy of it
            owner = self.files_of.pop(real)
            at = Event(ev.line, ev.comm, ev.tid, owner, ev.cpu, ev.ts)
            if self.tables.fork(owner, real).fds or real in self.involved:
                self.emit(at, "fork", {}, real, kind="syscall", why="syscall")
            self.involved.add(real)
            ev = Event(ev.line, ev.comm, ev.tid, real, ev.cpu, ev.ts)
        if real in self.files_of or ev.pid not in self.involved:
            self.skipped["execve of a process without dma-buf fds"] += 1
            return
        self.emit(ev, "execve", {}, ret, kind="syscall", why="syscall")
        if ret == 0:
            self.tables(ev.pid).exec()
            self.threads.pop(ev.pid, None)

    def sys_clone(self, ev: Event, call: SysCall, ret: int) -> None:
        if call.child is None and ret > 0:  # no sched_process_fork in the trace: the fork is written at its return
            self.fork(ev, call, ret, early=False)

    def process_exit(self, ev: Event, status: int | None) -> None:
        """The process is gone (``exit_group``, or its last thread's exit): its fds and mappings with it."""
        real = ev.real if ev.real is not None else ev.pid
        if real in self.files_of:
            del self.files_of[real]
            self.skipped["exit of a process sharing another's fd table"] += 1
            return
        if real in self.exited:
            return
        self.exited.add(real)
        if real not in self.involved:
            self.skipped["exit of a process without dma-buf fds"] += 1
            self.tables.drop(real)
            return
        self.emit(ev, "exit_group", {} if status is None else {"status": status}, kind="syscall", why="syscall")
        self.tables.drop(real)
        self.involved.discard(real)
        self.threads.pop(real, None)
        self.leader_gone.discard(real)

    def sched(self, ev: Event, name: str, f: dict[str, int | str]) -> None:
        pid, child = f.get("pid"), f.get("child_pid")
        if name == "sched_process_fork" and isinstance(child, int):
            self.syscalls = True
            call = self.calls.get(ev.tid)
            if call is not None and call.name in FORKS:
                call.child = child
            else:
                call = None
            self.fork(ev, call, child, early=True)
        elif name == "sched_process_exit" and isinstance(pid, int):
            self.syscalls = True
            real = ev.real if ev.real is not None else ev.pid
            if real not in self.involved or real in self.exited:
                if pid == real:
                    self.exited.discard(real)
                return
            others = self.threads.get(real)
            if others is not None:
                others.discard(pid)
            if pid == real:
                self.leader_gone.add(real)
            if real in self.leader_gone and not others:
                self.process_exit(ev, None)  # killed, or its last thread called exit()
                self.exited.discard(real)

    def fork(self, ev: Event, call: SysCall | None, child: int, early: bool) -> None:
        """Task ``child`` was created, by the parent's ``call`` if the trace shows it (``early``: at the fork's
        sched_process_fork, before the child ran, rather than at the call's return)."""
        if child in (ev.pid, ev.tid) or child <= 0:
            self.skipped["a fork whose child is its parent"] += 1
            return
        self.exited.discard(child)
        name = call.name if call is not None else ""
        flags = call.args.get("clone_flags") if call is not None and name == "clone" else None
        parent = ev.pid
        if flags is not None:
            shares = fdt.clone_shares(flags)
            if shares == "thread":
                if not self.tgid:
                    self.thread_pid[child] = parent
                if parent in self.involved:
                    self.threads.setdefault(parent, set()).add(child)
                    self.emit(ev, "clone", {"flags": flags}, child, kind="syscall", why="syscall")
                return
            if shares == "files":
                self.files_of[child] = parent
                self.skipped["clone sharing the fd table (CLONE_FILES): the child's fd events are its parent's"] += 1
                return
        if parent not in self.involved:
            return
        op, args = (name, {}) if name in ("fork", "vfork") else ("clone", {"flags": flags}) if flags is not None \
            else ("clone", {}) if name in ("clone", "clone3") else ("fork", {})
        if flags is None and name not in ("fork", "vfork") and early and self.tgid:
            # clone3's flags are in user memory, and a fork without a traced call may be a kernel thread or an
            # io_uring worker: the child's first line says (by its tgid) whether it is a thread or a process
            event: dict[str, Any] = {"op": op, "kind": "syscall", "tid": ev.tid, "pid": parent, "args": args,
                                     "ret": child}
            if ev.ts is not None:
                event["ts"] = ev.ts
            event.update(comm=ev.comm, cpu=ev.cpu)
            if self.join:
                event["_why"] = "syscall"
            self.out.append((ev.line, event))
            source = self.tables.procs.get(parent)
            snapshot = ProcTable(dict(source.fds), dict(source.maps)) if source is not None else ProcTable()
            self.undecided[child] = (parent, event, snapshot)
            return
        if flags is None and name not in ("fork", "vfork") and not self.tgid:
            self.note_once("tasks whose clone flags the trace does not show (clone3, or no traced call) are taken as "
                           "processes: without the tgid column (options/record-tgid) a thread cannot be told apart")
        self.emit(ev, op, args, child, kind="syscall", why="syscall")
        t = self.tables.fork(parent, child)
        if t.fds or t.maps:
            self.involved.add(child)
        else:
            self.tables.prune(child)

    def decide(self, child: int, what: str) -> None:
        """The child of a held fork printed its first line: a thread (the fork event goes) or a process."""
        parent, event, snapshot = self.undecided.pop(child)
        if what == "thread":
            self.out[:] = [x for x in self.out if x[1] is not event]
            if parent in self.involved:
                self.threads.setdefault(parent, set()).add(child)
            return
        self.involved.add(parent)
        self.tables.drop(child)
        t = self.tables(child)
        for fd, (buffer, cloexec) in snapshot.fds.items():
            t.put_fd(fd, buffer, cloexec)
        for addr, buffer in snapshot.maps.items():
            t.put_map(addr, buffer)
        if t.fds or t.maps:
            self.involved.add(child)

    def note_once(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # -- tracepoints --

    def fence(self, ev: Event, name: str, fields: dict[str, str]) -> None:
        """A ``dma_fence`` tracepoint.  Its events carry the interrupt context the flags show (``ctx``): a fence
        signalled from an interrupt handler is the hardware's, not the interrupted thread's (the fence wait-for
        graph), and a wait there sleeps in atomic context."""
        context, seqno = fields.get("context"), fields.get("seqno")
        if context is None or seqno is None or not context.isdigit() or not seqno.isdigit():
            self.skipped[f"dma_fence event without context and seqno ({name})"] += 1
            return
        if context == "0":
            self.skipped["the kernel's stub fence (context 0)"] += 1
            return
        fence = f"fence:{context}:{seqno}"
        if name == "dma_fence_init":
            self.emit(ev, "dma_fence_init", {"fence": fence, "context": int(context), "seqno": int(seqno)}, irq=True)
        elif name == "dma_fence_signaled":
            self.emit(ev, "dma_fence_signal", {"fence": fence}, irq=True)
        elif name == "dma_fence_destroy":
            self.emit(ev, "dma_fence_release", {"fence": fence}, irq=True)
        elif name in ("dma_fence_wait_start", "dma_fence_wait_end") and self.fence_waits_probed:
            self.skipped[f"{name} (the dma_fence_wait_timeout probes show the waits)"] += 1
        elif name == "dma_fence_wait_start":
            # dma_fence_wait_timeout traces the start and end of its sleep (drivers/dma-buf/dma-fence.c, 4.10+);
            # the call is written at its end, as every call is at its return: the start only says what is open
            self.fence_waits[ev.tid] = (ev.line, fence)
        elif name == "dma_fence_wait_end":
            self.fence_waits.pop(ev.tid, None)
            # neither the timeout nor the return value is traced: the wait is written without them, and the
            # fence wait-for graph makes an edge of it only when the fence signalled before it returned
            self.emit(ev, "dma_fence_wait_timeout", {"fence": fence}, irq=True)
        else:
            self.skipped[f"dma_fence event recorded for context only ({name})"] += 1

    def tracepoint(self, ev: Event, name: str, f: dict[str, int | str]) -> None:
        ino = f.get("ino")
        buf = f"ino:{ino}" if ino is not None else None
        attach = handle(f.get("attachment"))
        if buf is None:
            self.skipped[f"dma_buf tracepoint without ino ({name})"] += 1
        elif name == "dma_buf_export":
            self.forget(ev, buf)
            self.emit(ev, "dma_buf_export", {"exp_name": f.get("exp_name"), "size": f.get("size")}, buf)
        elif name == "dma_buf_fd" and isinstance(f.get("fd"), int):
            self.emit(ev, "dma_buf_fd", {"dmabuf": buf}, f["fd"])
            self.installed(ev, buf, int(f["fd"]), None)
        elif name == "dma_buf_get" and isinstance(f.get("fd"), int):
            self.emit(ev, "dma_buf_get", {"fd": f["fd"]}, buf)
        elif name == "dma_buf_put":
            self.emit(ev, "dma_buf_put", {"dmabuf": buf})
        elif name == "dma_buf_dynamic_attach" and attach:
            ops = "0x1" if f.get("is_dynamic") == 1 else "0x0"
            self.emit(ev, "dma_buf_dynamic_attach", {"dmabuf": buf, "dev": f.get("dev_name"), "importer_ops": ops},
                      attach)
        elif name == "dma_buf_detach" and attach:
            self.emit(ev, "dma_buf_detach", {"dmabuf": buf, "attach": attach})
        elif name == "dma_buf_mmap":
            self.emit(ev, "dma_buf_mmap", {"dmabuf": buf})
        else:
            self.skipped[f"dma_buf tracepoint the reader does not convert ({name})"] += 1

    def finish(self) -> None:
        for stack in self.stacks.values():
            for frame in stack:
                self.skipped[f"call still open at the end of the trace ({frame.func})"] += 1
        self.stacks.clear()
        calls, self.calls = self.calls, {}
        for call in calls.values():
            self.unreturned(call)
        self.decide_all()
        if self.fence_waits:
            lines = sorted(line for line, _ in self.fence_waits.values())
            where = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
            self.notes.append(f"{len(lines)} fence wait(s) had not returned when the trace ended (dma_fence_wait_start "
                              f"at line(s) {where}): not written, since a call is written at its return, and not "
                              "taken as asleep for good, since the recording may simply have stopped first")
        if self.syscalls and self.hidden_closes:
            self.notes.append(f"{self.hidden_closes} dma-buf fd(s) and mapping(s) were gone when the kernel released "
                              "their buffer without a traced close or munmap (close_range, or lost events): written "
                              "there")

    def decide_all(self) -> None:
        """Forks still waiting for their child: processes (a copy of the fds never withholds a release)."""
        for child in list(self.undecided):
            self.decide(child, "process")


# The system calls the reader converts, by name.
SYSCALL_HANDLERS: dict[str, Callable[[_Converter, Event, SysCall, int], None]] = {
    "close": _Converter.sys_close, "dup": _Converter.sys_dup, "dup2": _Converter.sys_dup2, "dup3": _Converter.sys_dup3,
    "fcntl": _Converter.sys_fcntl, "munmap": _Converter.sys_munmap, "ioctl": _Converter.sys_ioctl,
    "mmap": _Converter.sys_mmap, "lseek": _Converter.sys_lseek, "execve": _Converter.sys_execve,
    "execveat": _Converter.sys_execve, "clone": _Converter.sys_clone, "clone3": _Converter.sys_clone,
    "fork": _Converter.sys_clone, "vfork": _Converter.sys_clone,
}

TRACEPOINTS_UNOBSERVED = frozenset({
    "dma_buf_map_attachment", "dma_buf_map_attachment_unlocked", "dma_buf_unmap_attachment",
    "dma_buf_unmap_attachment_unlocked", "dma_buf_begin_cpu_access", "dma_buf_end_cpu_access", "dma_buf_vmap",
    "dma_buf_vunmap", "dma_buf_vmap_unlocked", "dma_buf_vunmap_unlocked", "dma_buf_pin", "dma_buf_unpin",
    "dma_buf_move_notify", "dma_buf_attach", "vmap", "vunmap", "release", "mmap", "ioctl", "llseek", "lseek",
    "dma_resv_reserve_fences", "dma_resv_add_fence", "dma_fence_set_error", "dma_fence_wait",
    "dma_fence_wait_timeout",
})


def traced_syscalls(text: str) -> tuple[frozenset[str], bool]:
    """The system calls whose events the trace has, and whether it has ``sched_process_fork``, from its first lines.

    ``ftrace-setup.sh`` says which it enabled in a ``dmaspec: kprobes=N syscalls=... sched=...`` marker; a trace
    of the script without that marker (its kernel marker, and syscall lines) has the set it always enabled; any
    other trace has the calls whose lines its head shows.

    >>> names, forks = traced_syscalls(" a-1 [0] 1.0: tracing_mark_write: dmaspec: syscalls=close,dup3 "
    ...                                "sched=sched_process_fork,sched_process_exit\\n")
    >>> sorted(names), forks
    (['close', 'dup3'], True)
    >>> traced_syscalls(" a-1 [0] 1.0: sys_close(fd: 3)\\n")
    (frozenset({'close'}), False)
    """
    mark = EVENTS_MARK.search(text)
    if mark is not None:
        return frozenset(n for n in mark["sys"].split(",") if n), "sched_process_fork" in (mark["sched"] or "")
    seen = frozenset(m["name"] or m["tp"] for m in SYS_IN_HEAD.finditer(text))
    if not seen:
        return frozenset(), False
    if KERNEL_MARK.search(text):
        return SETUP_SYSCALLS, True
    return seen, "sched_process_fork:" in text


def read(stream: IO[bytes], file: str, head: bytes, *, join: bool = False) -> Conversion:
    """The conversion of ftrace text ``stream`` (at its start; ``head`` is a peek of it).

    ``join``: for ``checker.join``, which joins it with an strace of the same run.  Events carry fields of the
    join's own, starting with ``_``: ``_why`` an event is inferred rather than seen (the ``close`` and ``munmap``
    of a file's release, ``reuse`` or ``reinstall``, the ``dma_buf_fd`` ``dma_buf_get`` showed) or comes from the
    syscall tracepoints (``syscall``: an strace of the process shows it too), ``_buf`` the buffer of a file
    operation, and ``DMA_BUF_IOCTL_SYNC`` without its flags is written, marked ``_noflags``, for the join to pair
    with the strace's.
    """
    text = head.decode("utf-8", "replace")
    conv = _Converter(file, text, join)
    mark = KERNEL_MARK.search(text)
    profile = None
    if mark:
        release = mark["release"]
        m = re.match(r"(\d+)\.(\d+)", release)
        profile = f"{m[1]}.{m[2]}" if m else None
    unobserved = set(ALWAYS_UNOBSERVED)
    events_mark = EVENTS_MARK.search(text)
    if events_mark is not None and events_mark["sync_flags"] == "1":
        conv.sync_flags = True  # the recorder's probe reads them, though no SYNC came in the first lines
    if not conv.sync_flags:
        unobserved.add("ioctl")
    if not conv.kprobes:
        unobserved |= TRACEPOINTS_UNOBSERVED
    # Fence waits show as their probes, or as the dma_fence_wait_start/_end tracepoints (4.10+), which
    # ftrace-setup.sh always enables with the dma_fence group (its events marker says it ran).
    old_kernel = profile is not None and tuple(map(int, profile.split("."))) < (4, 10)
    if conv.fence_waits_probed or (not old_kernel and (events_mark is not None or FENCE_WAIT_IN_HEAD.search(text))):
        unobserved -= set(K.FENCE_WAITS)
    else:
        unobserved |= set(K.FENCE_WAITS)
    # callbacks are seen only as function-tracer lines without arguments
    unobserved |= {"vmap", "vunmap", "attach", "detach", "map_dma_buf", "unmap_dma_buf", "release",
                   "begin_cpu_access", "end_cpu_access", "pin", "unpin", "move_notify", "kmap", "kmap_atomic"}
    notes = []
    syscalls, forks = traced_syscalls(text)
    for name in syscalls:
        unobserved -= set(SYSCALL_OPS.get(name, ()))
    if forks:
        unobserved -= {"fork", "vfork", "clone"}
    elif {"clone", "clone3"} <= syscalls:
        unobserved.discard("clone")
    if syscalls and conv.kprobes:
        # an fd that arrived unseen (SCM_RIGHTS, pidfd_getfd, binder) shows when the dma-buf file operations see it
        # used: the reader writes its fd_received there.  One never used is missing, which withholds findings.
        unobserved.discard("fd_received")
    if syscalls and "close_range" not in syscalls:
        notes.append("close_range is not traced: a dma-buf fd it closes stays open in the checker's view until the "
                     "kernel releases the buffer")
    if profile is None:
        notes.append("the trace does not say which kernel recorded it: checked as the latest unless --profile is "
                     "given (traces/record/ftrace-setup.sh writes it as a marker)")
    if not conv.tgid:
        notes.append("no tgid column (options/record-tgid): thread ids stand for processes")
    source: dict[str, Any] = {"tracer": "ftrace", "kprobes": conv.kprobes, "sync_flags": conv.sync_flags,
                              "fd_flags": conv.fd_flags, "tgid": conv.tgid}
    if syscalls:
        source["syscalls"] = sorted(syscalls)
    header = Header(profile=profile, unobserved=frozenset(unobserved), source=source)
    conversion = Conversion("ftrace", header, iter(()), conv.skipped, notes)
    conversion.undecidable = dict(UNDECIDABLE)
    if syscalls and not conv.kprobes:
        conversion.undecidable.update({r: ("the close-on-exec flag of new dma-buf fds (the dma_buf tracepoints do not "
                                           "record it)",) for r in CLOEXEC_RULES})
    elif syscalls and re.search(r"\(dma_buf_fd\+0x[0-9a-f]+/0x[0-9a-f]+\)(?![^\n]*\b(?:flags|arg2)=)", text):
        conversion.undecidable.update({r: ("the close-on-exec flag of new dma-buf fds (a flags= field on the "
                                           "dma_buf_fd probe)",) for r in CLOEXEC_RULES})
    conversion.events = _events(stream, file, conv, conversion)
    return conversion


def _events(stream: IO[bytes], file: str, conv: _Converter, conversion: Conversion) -> Iterator[Converted]:
    out = conv.out
    for n, raw in enumerate(stream, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(file, n, "not text: expected ftrace output, one event per line") from None
        conv.line(n, text.rstrip("\r\n"))
        if out:
            if conv.undecided:  # a fork waits for its child's first line: what came after it waits too
                if len(out) < MAX_HELD:
                    continue
                conv.decide_all()
            yield from out
            out.clear()
    conv.finish()
    yield from out
    out.clear()
    conversion.notes.extend(conv.notes)


READER = Reader("ftrace", "ftrace text (trace, trace_pipe, trace-cmd report)", sniff, read)
