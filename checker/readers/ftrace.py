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
  ``dma_fence:*`` tracepoints (fences named by context and seqno);
- ``function`` tracer lines (``func <-parent``), which only confirm nesting;
- ``tracing_mark_write`` markers, and ``CPU:N [LOST M EVENTS]``, which
  becomes a gap.

Kernel-internal nesting is folded: ``dma_buf_attach`` calling
``dma_buf_dynamic_attach``, an ``_unlocked`` variant calling the locked one,
and ``dma_buf_ioctl`` calling ``dma_buf_begin_cpu_access`` are one call by
the caller.  Userspace file operations (``dma_buf_llseek``, ``dma_buf_ioctl``,
``dma_buf_mmap_internal``) name a ``struct file``, not an fd: they become
system calls once the file is linked to its buffer (a ``file=`` field on the
export's return probe, or a call inside them that names the buffer) and the
buffer's fd is known; otherwise they are skipped and counted.  What the
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from checker.core import InputError
from checker.readers import Conversion, Converted, Reader
from checker.trace import Header

# -- the line ------------------------------------------------------------------------------

PREFIX = re.compile(
    r"\s*(?P<comm>.*?)-(?P<tid>\d+)\s+(?:\(\s*(?P<tgid>\d+|-+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
    r"(?:(?P<flags>[^\s:]{4,5})\s+)?(?P<ts>\d+(?:\.\d+)?):\s+(?P<rest>.*)")
FUNCTION = re.compile(r"(?P<func>[\w.$]+) <-(?P<parent>\S+)$")
EVENT = re.compile(r"(?P<name>[\w.:/-]+):\s?(?P<body>.*)$")
PROBE = re.compile(r"\((?:(?P<entry>[\w.]+)\+0x[0-9a-f]+/0x[0-9a-f]+|(?P<caller>[^)]*?) <- (?P<ret>[\w.]+))\)\s*")
FIELD = re.compile(r'([\w.]+)[=:]("(?:[^"\\]|\\.)*"|\S+)')
LOST = re.compile(r"\s*CPU:?\s*(?P<cpu>\d+)\s+\[LOST (?P<count>\d+) EVENTS\]")
KERNEL_MARK = re.compile(r"dmaspec: kernel=(?P<release>\S+)")
# function_graph: [abstime |] CPU) [task-pid |] [duration] | body; events inside the graph are /* comments */.
GRAPH = re.compile(r"\s*(?:(?P<ts>\d+\.\d+)\s*\|\s*)?(?P<cpu>\d+)\)\s+(?:(?P<comm>\S.*?)-(?P<tid>\d+)\s+\|\s+)?"
                   r"(?P<duration>[^|]*)\|(?P<body>.*)$")
GRAPH_COMMENT = re.compile(r"/\*\s*(?P<event>.*?)\s*\*/$")
GRAPH_SWITCH = re.compile(r"\s*(?:-{8,}|\d+\)\s+\S.*=>\s+\S)")
WRITTEN = re.compile(r"#\s*entries-in-buffer/entries-written:\s*(?P<kept>\d+)/(?P<written>\d+)")


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
    pid: int
    cpu: int
    ts: float | None


@dataclass
class FileState:
    """A dma-buf's struct file, as far as the trace links it."""

    dmabuf: str | None = None
    vmas: list[str] = field(default_factory=list)
    sync: int | None = None  # the access bits of an open DMA_BUF_IOCTL_SYNC start
    pending: list[tuple[Event, str, dict[str, int | str], int | str | None]] = field(default_factory=list)


MAX_PENDING = 64  # file operations held per file until it is linked to its buffer


class _Converter:
    def __init__(self, file: str, head: str, join: bool = False) -> None:
        self.file = file
        self.join = join  # for checker.join: say which events are inferred, and the buffer behind file operations
        self.skipped: Counter[str] = Counter()
        self.notes: list[str] = []
        self.stacks: dict[int, list[Frame]] = {}
        self.last_entry: dict[int, Frame] = {}  # the last entry-only call per thread (to fold its inner call)
        self.files: dict[str, FileState] = {}
        self.fds: dict[str, tuple[int, int]] = {}  # dmabuf -> (pid, fd) its reference is installed in
        self.fd_owner: dict[tuple[int, int], str] = {}  # (pid, fd) -> dmabuf
        self.exported: set[str] = set()  # buffers exported in the trace (their reference may be installed unseen)
        self.kprobes = bool(re.search(r": \((?:dma_buf_\w+\+0x|[^)]* <- dma_buf_)", head))
        self.sync_flags = bool(re.search(r"dma_buf_ioctl\+0x[0-9a-f]+/0x[0-9a-f]+\)[^\n]* flags=", head))
        self.fd_flags = bool(re.search(r"dma_buf_fd\+0x[0-9a-f]+/0x[0-9a-f]+\)[^\n]* flags=", head))
        self.tgid = bool(re.search(r"-\d+\s+\(\s*(?:\d+|-+)\)\s+\[\d+\]", head))
        self.args_by_position: dict[str, dict[str, str]] = {}
        self.stack_trace = False
        self.graph_without_threads = False
        self.out: list[Converted] = []

    # -- emitting --

    def emit(self, ev: Event, op: str, args: dict[str, Any], ret: int | str | None = None,
             kind: str = "call", **private: Any) -> None:
        """Write one canonical event.  ``private``: fields for ``checker.join`` (named without their ``_``),
        written only when joining: ``why`` an event is inferred rather than seen, the ``buf`` of a file operation.
        """
        event: dict[str, Any] = {"op": op, "tid": ev.tid, "pid": ev.pid, "args": args}
        if kind != "call":
            event["kind"] = kind
        if ret is not None:
            event["ret"] = ret
        if ev.ts is not None:
            event["ts"] = ev.ts
        event["comm"] = ev.comm
        event["cpu"] = ev.cpu
        if self.join:
            event.update({"_" + k: v for k, v in private.items() if v is not None})
        self.out.append((ev.line, event))

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
        pid = int(tgid) if tgid and tgid.isdigit() else tid
        ev = Event(n, m["comm"], tid, pid, int(m["cpu"]), float(m["ts"]))
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
            self.skipped["ftrace line without an event name"] += 1
            return
        name, body = e["name"], e["body"]
        if name in ("tracing_mark_write", "print"):
            text_ = body.removeprefix("tracing_mark_write: ")
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
        if name.startswith(("dma_buf:", "dma_buf_")) and not self.kprobes:
            self.tracepoint(ev, name.removeprefix("dma_buf:"), {k: value(v) for k, v in FIELD.findall(body)})
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
        ev = Event(n, "", 0, 0, cpu, None)
        event: dict[str, Any] = {"op": "lost_events", "kind": "annotation", "tid": 0,
                                 "args": {"count": count, "cpu": cpu}}
        self.out.append((ev.line, event))
        self.stacks.clear()  # calls open across the gap cannot be paired
        self.last_entry.clear()

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
            self.installed(ev, str(args["dmabuf"]), r)
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

    def forget(self, ev: Event, dmabuf: str) -> None:
        """A new buffer at ``dmabuf``'s address: the old one was freed, so its file and fd went first."""
        where = self.fds.pop(dmabuf, None)
        if where is not None:
            self.fd_owner.pop(where, None)
            self.emit(Event(ev.line, ev.comm, ev.tid, where[0], ev.cpu, ev.ts), "close", {"fd": where[1]}, 0,
                      kind="syscall", why="reuse")
        for file in [f for f, state in self.files.items() if state.dmabuf == dmabuf]:
            del self.files[file]

    def installed(self, ev: Event, dmabuf: str, fd: int) -> None:
        """The buffer's reference went into fd ``fd`` of the calling process."""
        key = (ev.pid, fd)
        old = self.fd_owner.get(key)
        if old is not None and old != dmabuf:
            self.emit(ev, "close", {"fd": fd}, 0, kind="syscall", why="reinstall")  # closed unseen
            self.fds.pop(old, None)
        self.fds[dmabuf] = key
        self.fd_owner[key] = dmabuf

    def known_fd(self, ev: Event, dmabuf: str, fd: int) -> None:
        """``dma_buf_get(fd)`` showed that fd ``fd`` holds ``dmabuf``: its install may not have been seen."""
        if self.fds.get(dmabuf) == (ev.pid, fd):
            return
        if dmabuf not in self.fds and dmabuf in self.exported:
            self.emit(ev, "dma_buf_fd", {"dmabuf": dmabuf}, fd, why="get")
            self.installed(ev, dmabuf, fd)

    def file_op(self, ev: Event, frame: Frame, ret: int | str | None) -> None:
        f = frame.fields
        file = handle(f.get("file"))
        if file is None:
            self.skipped[f"file operation without its file ({frame.func})"] += 1
            return
        state = self.files.setdefault(file, FileState())
        if frame.func == "dma_buf_file_release":
            self.release_file(ev, file, state)
            return
        if state.dmabuf is None:
            if len(state.pending) < MAX_PENDING:
                state.pending.append((ev, frame.func, dict(f), ret))
            else:
                self.skipped["file operation on a file never linked to its dma-buf"] += 1
            return
        self.syscall(ev, file, frame.func, dict(f), ret)

    def syscall(self, ev: Event, file: str, func: str, f: dict[str, Any], ret: int | str | None) -> None:
        state = self.files[file]
        where = self.fds.get(state.dmabuf or "")
        if where is None or where[0] != ev.pid:
            self.skipped[f"file operation on a dma-buf whose fd the trace does not show ({func})"] += 1
            return
        fd = where[1]
        r = returned(ret, "int") if ret is not None else None
        if func == "dma_buf_llseek":
            self.emit(ev, "llseek", {"fd": fd, "offset": number(f.get("offset")), "whence": number(f.get("whence"))},
                      r, kind="syscall", buf=state.dmabuf)
        elif func == "dma_buf_ioctl":
            self.ioctl(ev, fd, state, f, r)
        elif func == "dma_buf_mmap_internal":
            start, end = number(f.get("vm_start")), number(f.get("vm_end"))
            if start is None or end is None:
                self.skipped["dma_buf_mmap_internal without vm_start and vm_end"] += 1
                return
            args = {"fd": fd, "length": end - start, "offset": (number(f.get("vm_pgoff")) or 0) * PAGE_SIZE}
            addr = handle(start) or ""
            if not (isinstance(r, int) and r < 0):
                state.vmas.append(addr)
                self.emit(ev, "mmap", args, addr, kind="syscall", buf=state.dmabuf)
            else:
                self.emit(ev, "mmap", args, r, kind="syscall", buf=state.dmabuf)

    def ioctl(self, ev: Event, fd: int, state: FileState, f: dict[str, Any], r: int | str | None) -> None:
        cmd = number(f.get("cmd"))
        if cmd is None:
            self.skipped["dma_buf_ioctl without cmd"] += 1
            return
        args: dict[str, Any] = {"fd": fd, "cmd": cmd}
        flags = number(f.get("flags"))
        if cmd in (IOCTL_SYNC, IOCTL_EXPORT_SYNC_FILE, IOCTL_IMPORT_SYNC_FILE) and flags is None:
            if self.join:  # an strace of the run may show the flags: the join pairs the two
                self.emit(ev, "ioctl", args, r, kind="syscall", buf=state.dmabuf, noflags=True)
                return
            what = "DMA_BUF_IOCTL_SYNC" if cmd == IOCTL_SYNC else "sync-file ioctl"
            self.skipped[f"{what} whose flags the trace does not record"] += 1
            return
        if flags is not None and cmd in (IOCTL_SYNC, IOCTL_EXPORT_SYNC_FILE, IOCTL_IMPORT_SYNC_FILE):
            args["flags"] = flags
        self.emit(ev, "ioctl", args, r, kind="syscall", buf=state.dmabuf)

    def release_file(self, ev: Event, file: str, state: FileState) -> None:
        """The file's last reference is gone: every fd and mapping of it went before."""
        if state.pending:
            self.skipped["file operation on a file never linked to its dma-buf"] += len(state.pending)
        dmabuf = state.dmabuf
        where = self.fds.get(dmabuf or "")
        if dmabuf is not None and where is not None:
            pid, fd = where
            at = Event(ev.line, ev.comm, ev.tid, pid, ev.cpu, ev.ts)
            for addr in state.vmas:
                self.emit(at, "munmap", {"addr": addr}, 0, kind="syscall", why="release")
            self.emit(at, "close", {"fd": fd}, 0, kind="syscall", why="release")
            del self.fds[dmabuf]
            self.fd_owner.pop(where, None)
        del self.files[file]

    # -- tracepoints --

    def fence(self, ev: Event, name: str, fields: dict[str, str]) -> None:
        context, seqno = fields.get("context"), fields.get("seqno")
        if context is None or seqno is None or not context.isdigit() or not seqno.isdigit():
            self.skipped[f"dma_fence event without context and seqno ({name})"] += 1
            return
        if context == "0":
            self.skipped["the kernel's stub fence (context 0)"] += 1
            return
        fence = f"fence:{context}:{seqno}"
        if name == "dma_fence_init":
            self.emit(ev, "dma_fence_init", {"fence": fence, "context": int(context), "seqno": int(seqno)})
        elif name == "dma_fence_signaled":
            self.emit(ev, "dma_fence_signal", {"fence": fence})
        elif name == "dma_fence_destroy":
            self.emit(ev, "dma_fence_release", {"fence": fence})
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
            self.installed(ev, buf, int(f["fd"]))
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


TRACEPOINTS_UNOBSERVED = frozenset({
    "dma_buf_map_attachment", "dma_buf_map_attachment_unlocked", "dma_buf_unmap_attachment",
    "dma_buf_unmap_attachment_unlocked", "dma_buf_begin_cpu_access", "dma_buf_end_cpu_access", "dma_buf_vmap",
    "dma_buf_vunmap", "dma_buf_vmap_unlocked", "dma_buf_vunmap_unlocked", "dma_buf_pin", "dma_buf_unpin",
    "dma_buf_move_notify", "dma_buf_attach", "vmap", "vunmap", "release", "mmap", "ioctl", "llseek", "lseek",
    "dma_resv_reserve_fences", "dma_resv_add_fence", "dma_fence_set_error", "dma_fence_wait",
    "dma_fence_wait_timeout",
})


def read(stream: IO[bytes], file: str, head: bytes, *, join: bool = False) -> Conversion:
    """The conversion of ftrace text ``stream`` (at its start; ``head`` is a peek of it).

    ``join``: for ``checker.join``, which joins it with an strace of the same run.  Events carry fields of the
    join's own, starting with ``_``: ``_why`` an event is inferred rather than seen (the ``close`` and ``munmap``
    of a file's release), ``_buf`` the buffer of a file operation, and ``DMA_BUF_IOCTL_SYNC`` without its flags
    is written, marked ``_noflags``, for the join to pair with the strace's.
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
    if not conv.sync_flags:
        unobserved.add("ioctl")
    if not conv.kprobes:
        unobserved |= TRACEPOINTS_UNOBSERVED
    # callbacks are seen only as function-tracer lines without arguments
    unobserved |= {"vmap", "vunmap", "attach", "detach", "map_dma_buf", "unmap_dma_buf", "release",
                   "begin_cpu_access", "end_cpu_access", "pin", "unpin", "move_notify", "kmap", "kmap_atomic"}
    notes = []
    if profile is None:
        notes.append("the trace does not say which kernel recorded it: checked as the latest unless --profile is "
                     "given (traces/record/ftrace-setup.sh writes it as a marker)")
    if not conv.tgid:
        notes.append("no tgid column (options/record-tgid): thread ids stand for processes")
    header = Header(profile=profile, unobserved=frozenset(unobserved),
                    source={"tracer": "ftrace", "kprobes": conv.kprobes, "sync_flags": conv.sync_flags,
                            "fd_flags": conv.fd_flags, "tgid": conv.tgid})
    conversion = Conversion("ftrace", header, iter(()), conv.skipped, notes)
    conversion.undecidable = dict(UNDECIDABLE)
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
            yield from out
            out.clear()
    conv.finish()
    conversion.notes.extend(conv.notes)


READER = Reader("ftrace", "ftrace text (trace, trace_pipe, trace-cmd report)", sniff, read)
