"""Joining a kernel trace and an strace of the same run into one canonical trace (``dmaspec check --join``).

A kernel trace (ftrace text) sees the dma-buf core: buffers by address, attachments, mappings, fences, and the
file operations on a dma-buf's ``struct file``; it cannot see userspace's own system calls (``close``, ``dup``,
``fork``, ``execve``), nor, on distribution kernels, the flags of ``DMA_BUF_IOCTL_SYNC``.  An strace of the
program sees exactly those, and none of the kernel's calls.  Joined, each decides what the other cannot.

The join is asked for, never guessed (``--join``): two recordings, one ftrace and one strace, read twice.

1. **Alignment.**  The two have no common clock (ftrace: seconds since boot, or another trace clock; strace
   ``-tt``: the time of day).  The first pass collects *anchors*, events both recorders see in the same
   thread: ``trace_marker`` writes (the kernel's ``tracing_mark_write``, strace's ``write`` to
   ``trace_marker``), the new fd of a creating ioctl (``dma_buf_fd``), ``mmap`` by its address, ``lseek`` and
   ioctls on dma-bufs by their arguments and result.  The offset most anchors agree on (a vote over all
   candidate pairs) is refined by a least-squares line (offset and, over long traces, drift) through the
   anchors that agree with it; the strace's timestamps, taken when each call started, are then placed just
   before the kernel's view of the same call.  Fewer than two anchors: the join is refused (exit status 2),
   unless ``--offset`` gives the offset.
2. **Merge.**  The second pass reads both conversions as streams and merges them in time order, holding
   events only while their counterpart in the other recording may still come (at most ``WINDOW`` seconds,
   and ``MAX_PENDING`` events).  An event both saw appears once: a buffer's creation keeps the kernel's
   events (its address, which then names the buffer in the strace's events too), a system call keeps the
   strace's arguments and result, with what only the kernel had (SYNC flags), at the kernel's place in the
   order.  What the kernel reader inferred rather than saw (the ``close`` and ``munmap`` at a file's release)
   is kept only when the strace did not show it already.

The joined trace's header lists as unobserved only what neither recording sees.

>>> import io
>>> key = match_key({"op": "mmap", "kind": "syscall", "tid": 7, "args": {"fd": 4}, "ret": "0x7f0000"})
>>> key
('mmap', 7, '0x7f0000')
"""

from __future__ import annotations

import math
import os
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from statistics import median
from typing import IO, Any

from checker.core import InputError, Result
from checker.readers import SNIFF_BYTES, Conversion, Converted, detect
from checker.trace import Header, open_binary
from spec import kernel as K
from spec.analysis import narrowed_rules
from spec.lang import ParamType
from spec.values import normalize

KERNEL, STRACE = 0, 1
SIDE_SHIFT = 31  # a joined event's origin: (side << SIDE_SHIFT) | line
MAX_LINE = (1 << SIDE_SHIFT) - 1

WINDOW = 1.0  # seconds an event waits for its counterpart in the other recording
MAX_PENDING = 1 << 17  # events held back at most; beyond, the oldest stops waiting
VOTE_WIDTH = 0.005  # seconds: anchor offsets within this agree
MIN_ANCHORS = 2
MAX_ANCHORS = 1 << 16  # anchor candidates kept per recording (a sample consistent across the two beyond)
MAX_PAIRS = 64  # candidate pairs tried for one key seen several times
DRIFT_SPAN = 1.0  # seconds of anchors (and DRIFT_ANCHORS of them) needed to estimate drift as well as the offset
DRIFT_ANCHORS = 10
MAX_DRIFT = 1e-3  # a clock running faster than this (1000 ppm) is not in seconds
ERESTART = range(512, 517)  # ERESTARTSYS..ERESTART_RESTARTBLOCK: what a program sees as -EINTR
CLONE_THREAD = 0x10000
CLOEXEC_RULES = ("FD-NO-CLOEXEC", "FD-CLOEXEC-LATE")
INFERRED_CLOSES = ("release", "reuse", "reinstall")


# -- what both recordings see -----------------------------------------------------------------

def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _errno(ret: Any) -> Any:
    """A result as a program sees it: the kernel's ``-ERESTART*`` is strace's ``-EINTR``."""
    if isinstance(ret, int) and -ret in ERESTART:
        return -K.EINTR
    return ret


def _named(kind: ParamType, value: Any) -> Any:
    try:
        return normalize(kind, value)
    except ValueError:
        return value


def match_key(event: dict[str, Any]) -> tuple[Any, ...] | None:
    """What identifies an event both a kernel trace and an strace can show, within one thread; None if
    only one of them can.

    >>> match_key({"op": "dma_buf_fd", "tid": 7, "args": {"dmabuf": "0xffff1"}, "ret": 5})
    ('fd', 7, 5)
    >>> match_key({"op": "ioctl", "kind": "syscall", "tid": 7, "args": {"fd": 5, "cmd": 0x40086200}, "ret": -512})
    ('ioctl', 7, 'DMA_BUF_IOCTL_SYNC', -4)
    >>> match_key({"op": "close", "kind": "syscall", "tid": 7, "pid": 6, "args": {"fd": 5}, "ret": 0})
    ('close', 6, 5)
    >>> match_key({"op": "dup", "kind": "syscall", "tid": 7, "args": {"fd": 5}, "ret": 6}) is None
    True
    """
    op, kind, tid = event.get("op"), event.get("kind", "call"), event.get("tid")
    args: dict[str, Any] = event.get("args") or {}
    ret = event.get("ret")
    if kind == "call" and op == "dma_buf_fd":
        fd = _number(ret)
        return ("fd", tid, fd) if fd is not None and fd >= 0 else None
    if kind == "annotation" and op == "marker":
        return ("marker", tid)
    if kind != "syscall":
        return None
    if op == "close":  # the kernel trace infers a close where a file is released; keyed by process
        return ("close", event.get("pid", tid), args.get("fd"))
    if op == "munmap":
        return ("munmap", event.get("pid", tid), args.get("addr"))
    if op == "mmap":
        return ("mmap", tid, ret) if isinstance(ret, str) else ("mmap!", tid, args.get("length"), _errno(ret))
    if op in ("lseek", "llseek"):
        return ("seek", tid, args.get("offset"), _named(ParamType.WHENCE, args.get("whence")), _errno(ret))
    if op == "ioctl" and args.get("cmd") is not None:
        return ("ioctl", tid, _named(ParamType.IOCTL, args["cmd"]), _errno(ret))
    return None


def _marker_text(event: dict[str, Any]) -> tuple[str, bool]:
    """A marker's text, and whether it is only a prefix (strace cut the string)."""
    prefix = event.get("_prefix")
    if isinstance(prefix, str):
        return prefix, True
    text = (event.get("args") or {}).get("text")
    return (text if isinstance(text, str) else ""), False


def _texts_agree(a: tuple[str, bool], b: tuple[str, bool]) -> bool:
    (ta, pa), (tb, pb) = a, b
    if pa and pb:
        return ta.startswith(tb) or tb.startswith(ta)
    if pa:
        return tb.startswith(ta)
    if pb:
        return ta.startswith(tb)
    return ta == tb


# -- the recordings ---------------------------------------------------------------------------------

@dataclass
class Recording:
    """One of the two recordings: its file, format and role."""

    file: str
    format: str  # "ftrace" or "strace"
    side: int  # KERNEL or STRACE


def roles(paths: list[str]) -> tuple[Recording, Recording]:
    """The kernel trace and the strace among ``paths`` (in either order), or the reason they cannot be joined."""
    if len(paths) != 2 or "-" in paths:
        raise InputError(" ".join(paths) or "-", 0, "--join takes two files: a kernel trace (ftrace text) and an "
                                                   "strace of the same run")
    found: list[Recording] = []
    for path in paths:
        if os.path.isdir(path):
            raise InputError(path, 0, "--join takes two files, not a directory")
        with _open(path) as stream:
            head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES] if hasattr(stream, "peek") else b""
            reader = detect(head, path)
        if reader is None or reader.name not in ("ftrace", "strace"):
            raise InputError(path, 0, "--join reads a kernel trace (ftrace text) and an strace; this is canonical "
                                      "JSON Lines, whose timestamps have no known unit")
        found.append(Recording(path, reader.name, KERNEL if reader.name == "ftrace" else STRACE))
    if found[0].side == found[1].side:
        raise InputError(paths[1], 0, f"--join needs one kernel trace (ftrace text) and one strace; both files are "
                                      f"{found[0].format}")
    kernel, strace = sorted(found, key=lambda r: r.side)
    return kernel, strace


def _open(path: str) -> IO[bytes]:
    try:
        return open_binary(path)
    except OSError as e:
        raise InputError(path, 0, f"cannot read: {e.strerror}") from None


def _convert(rec: Recording, stream: IO[bytes]) -> Conversion:
    from checker.readers import ftrace, strace

    head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES] if hasattr(stream, "peek") else b""
    if rec.side == KERNEL:
        return ftrace.read(stream, rec.file, head, join=True)
    return strace.read(stream, rec.file, head, join=True)


class _Clock:
    """A recording's timestamps as seconds that never go back by a day (strace ``-tt`` wraps at midnight)."""

    def __init__(self) -> None:
        self.days = 0.0
        self.last: float | None = None

    def __call__(self, ts: float) -> float:
        if self.last is not None and ts + self.days < self.last - 43200:
            self.days += 86400.0
        t = ts + self.days
        self.last = t if self.last is None else max(self.last, t)
        return t


# -- the first pass: anchors ---------------------------------------------------------------------------

@dataclass
class Survey:
    """What the first pass over one recording found: its anchor candidates, threads and time span."""

    rec: Recording
    header: Header = field(default_factory=Header)
    keys: dict[tuple[Any, ...], list[tuple[float, int]]] = field(default_factory=dict)  # key -> [(time, line)]
    markers: dict[int, list[tuple[float, int, str, bool]]] = field(default_factory=dict)  # tid -> (t, line, text, cut)
    pids: dict[int, int] = field(default_factory=dict)  # tid -> pid
    first: float | None = None
    last: float | None = None
    first_line: int = 0
    first_shared: float | None = None  # the first and last event the other recording could show too
    last_shared: float | None = None
    events: int = 0
    untimed: int = 0
    kept: int = 0
    sample: int = 0  # keys kept are those whose hash is 0 modulo 2**sample

    def _keep(self, key: tuple[Any, ...]) -> bool:
        return self.sample == 0 or zlib.crc32(repr(key).encode()) % (1 << self.sample) == 0

    def add(self, key: tuple[Any, ...], t: float, line: int) -> None:
        if self._keep(key):
            self.keys.setdefault(key, []).append((t, line))
            self.kept += 1
            self._resample()

    def add_marker(self, tid: int, t: float, line: int, text: str, cut: bool) -> None:
        if self._keep(("marker", tid, text[:8])):
            self.markers.setdefault(tid, []).append((t, line, text, cut))
            self.kept += 1
            self._resample()

    def _resample(self) -> None:
        """Past ``MAX_ANCHORS``, keep half the keys: the same half in both recordings (by a hash of the key)."""
        while self.kept > MAX_ANCHORS:
            self.sample += 1
            self.keys = {k: v for k, v in self.keys.items() if self._keep(k)}
            self.markers = {tid: kept for tid, ms in self.markers.items()
                            if (kept := [m for m in ms if self._keep(("marker", tid, m[2][:8]))])}
            self.kept = sum(map(len, self.keys.values())) + sum(map(len, self.markers.values()))


def survey(rec: Recording) -> Survey:
    """Read one recording through its conversion and collect what alignment needs (bounded)."""
    out = Survey(rec)
    clock = _Clock()
    with _open(rec.file) as stream:
        conv = _convert(rec, stream)
        out.header = conv.header
        for line, event in conv.events:
            out.events += 1
            tid, pid = event.get("tid"), event.get("pid")
            if isinstance(tid, int) and isinstance(pid, int) and tid and len(out.pids) < MAX_ANCHORS:
                out.pids.setdefault(tid, pid)
            ts = event.get("ts")
            if not isinstance(ts, (int, float)):
                out.untimed += event.get("op") != "lost_events"
                continue
            t = clock(float(ts))
            if out.first is None:
                out.first_line = line
            out.first = t if out.first is None else min(out.first, t)
            out.last = t if out.last is None else max(out.last, t)
            if event.get("_why"):
                continue  # inferred, not seen when it happened
            if rec.side == STRACE:
                t0 = event.get("_t0")
                if not isinstance(t0, (int, float)):
                    continue  # a resumed call: its start is not known
                t = clock(float(t0))
            key = match_key(event)
            if key is None or key[0] in ("close", "munmap"):
                continue
            out.first_shared = t if out.first_shared is None else min(out.first_shared, t)
            out.last_shared = t if out.last_shared is None else max(out.last_shared, t)
            if key[0] == "marker":
                text, cut = _marker_text(event)
                if text and isinstance(tid, int):
                    out.add_marker(tid, t, line, text, cut)
                continue
            out.add(key, t, line)
    return out


@dataclass(frozen=True)
class Anchor:
    """An event both recordings show: where each has it."""

    kind: str  # marker, fd, mmap, seek, ioctl
    tid: int
    kernel_time: float
    strace_time: float
    kernel_line: int
    strace_line: int


@dataclass(frozen=True)
class Alignment:
    """How the strace's clock maps to the kernel trace's: ``strace = offset + scale * kernel``."""

    offset: float
    scale: float = 1.0
    anchors: tuple[Anchor, ...] = ()
    residual: float = 0.0  # seconds: the spread of the anchors about the line
    given: bool = False  # --offset

    def to_kernel(self, strace_time: float) -> float:
        """A strace timestamp on the kernel trace's clock.

        >>> Alignment(36000.5).to_kernel(36010.75)
        10.25
        """
        return (strace_time - self.offset) / self.scale

    def describe(self) -> str:
        """One line for the report: the offset, and what it rests on."""
        if self.given:
            return f"strace time = kernel time + {self.offset:.6f} s (given with --offset)"
        kinds = Counter(a.kind for a in self.anchors)
        drift = f", drift {(self.scale - 1) * 1e6:+.1f} ppm" if self.scale != 1.0 else ""
        return (f"strace time = kernel time + {self.offset:.6f} s{drift}, from {len(self.anchors)} anchor(s) ("
                + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + f"), residual {self.residual * 1e6:.0f} us")


def _pairs(kl: list[tuple[float, int]], sl: list[tuple[float, int]]) -> Iterator[tuple[int, int]]:
    """Candidate pairs of two occurrence lists of one key: all of them when few, else near-diagonal ones."""
    n, m = len(kl), len(sl)
    if n * m <= MAX_PAIRS:
        for i in range(n):
            for j in range(m):
                yield i, j
        return
    for i in range(n):
        centre = i * m // n
        for j in range(max(0, centre - 2), min(m, centre + 3)):
            yield i, j


def _keyed(k: Survey, s: Survey) -> list[tuple[tuple[Any, ...], list[tuple[float, int]], list[tuple[float, int]]]]:
    """The keys both recordings have, with each one's occurrences; markers keyed by their (full) text."""
    out = [(key, kl, s.keys[key]) for key, kl in k.keys.items() if key in s.keys]
    for tid, kms in k.markers.items():
        sms = s.markers.get(tid)
        if not sms:
            continue
        texts = sorted({text for _, _, text, _ in kms})
        by_text: dict[str, list[tuple[float, int]]] = {}
        for t, line, text, _ in kms:
            by_text.setdefault(text, []).append((t, line))
        strace_by: dict[str, list[tuple[float, int]]] = {}
        for t, line, text, cut in sms:
            if cut:
                lo, hi = bisect_left(texts, text), bisect_right(texts, text + "\U0010ffff")
                if hi - lo != 1:
                    continue  # cut short where several markers agree: not an anchor
                text = texts[lo]
            strace_by.setdefault(text, []).append((t, line))
        out += [(("marker", tid, text), by_text[text], sl) for text, sl in strace_by.items() if text in by_text]
    return out


def align(k: Survey, s: Survey) -> Alignment:
    """The alignment most anchors agree on, refined; ``InputError`` when the anchors cannot support one."""
    keyed = _keyed(k, s)
    votes: list[tuple[float, float]] = []  # (offset, weight)
    for _, kl, sl in keyed:
        pairs = list(_pairs(kl, sl))
        per = Counter(i for i, _ in pairs)
        votes += [(sl[j][0] - kl[i][0], 1.0 / per[i]) for i, j in pairs]
    if not votes:
        raise _unaligned(k, s, "no event appears in both recordings")
    votes.sort()
    best, best_weight, lo, weight = (0, 0), 0.0, 0, 0.0
    for hi, (offset, w) in enumerate(votes):
        weight += w
        while offset - votes[lo][0] > VOTE_WIDTH:
            weight -= votes[lo][1]
            lo += 1
        if weight > best_weight + 1e-9:
            best, best_weight = (lo, hi), weight
    guess = median(o for o, _ in votes[best[0]:best[1] + 1])
    anchors = _match(keyed, guess)
    if len(anchors) < MIN_ANCHORS:
        raise _unaligned(k, s, f"only {len(anchors)} event(s) appear in both at one offset")
    offset, scale, kept = _fit(anchors)
    if len(kept) < MIN_ANCHORS:
        raise _unaligned(k, s, "the events both show do not agree on an offset")
    if abs(scale - 1.0) > MAX_DRIFT:
        raise InputError(k.rec.file, 0, f"cannot join: its clock runs {scale:.6f} times as fast as the strace's; "
                                        "record with a trace clock in seconds (trace_clock local, global, mono or "
                                        "boot), not x86-tsc or counter")
    residuals = [a.strace_time - (offset + scale * a.kernel_time) for a in kept]
    top = max(residuals)
    return Alignment(offset + top, scale, tuple(kept), top - min(residuals))


def _match(keyed: list[tuple[tuple[Any, ...], list[tuple[float, int]], list[tuple[float, int]]]],
           guess: float) -> list[Anchor]:
    """Pair each kernel occurrence with the strace occurrence nearest the guessed offset (one to one)."""
    candidates: list[tuple[float, int, tuple[Any, ...], tuple[float, int], tuple[float, int]]] = []
    for n, (key, kl, sl) in enumerate(keyed):
        times = [t for t, _ in sl]
        for tk, lk in kl:
            j = bisect_left(times, tk + guess)
            for jj in (j - 1, j):
                if 0 <= jj < len(sl) and abs(sl[jj][0] - tk - guess) <= VOTE_WIDTH:
                    candidates.append((abs(sl[jj][0] - tk - guess), n, key, (tk, lk), sl[jj]))
    candidates.sort(key=lambda c: c[0])
    used_k: set[tuple[int, int]] = set()
    used_s: set[tuple[int, int]] = set()
    out = []
    for _, n, key, (tk, lk), (ts, ls) in candidates:
        if (n, lk) in used_k or (n, ls) in used_s:
            continue
        used_k.add((n, lk))
        used_s.add((n, ls))
        out.append(Anchor(str(key[0]), int(key[1]), tk, ts, lk, ls))
    return sorted(out, key=lambda a: a.kernel_time)


def _line(anchors: list[Anchor]) -> tuple[float, float]:
    xs = [a.kernel_time for a in anchors]
    ys = [a.strace_time for a in anchors]
    if len(anchors) >= DRIFT_ANCHORS and max(xs) - min(xs) >= DRIFT_SPAN:
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mx) ** 2 for x in xs)
        scale = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
        return my - scale * mx, scale
    return median(y - x for x, y in zip(xs, ys, strict=True)), 1.0


def _fit(anchors: list[Anchor]) -> tuple[float, float, list[Anchor]]:
    """A line through the anchors, refitted without those far from it (robust to a few wrong pairs)."""
    offset, scale = _line(anchors)
    for _ in range(2):
        residuals = [a.strace_time - (offset + scale * a.kernel_time) for a in anchors]
        centre = median(residuals)
        spread = median(abs(r - centre) for r in residuals)
        bound = max(6 * spread, 200e-6)
        anchors = [a for a, r in zip(anchors, residuals, strict=True) if abs(r - centre) <= bound]
        if len(anchors) < MIN_ANCHORS:
            return offset, scale, anchors
        offset, scale = _line(anchors)
    return offset, scale, anchors


def _unaligned(k: Survey, s: Survey, why: str) -> InputError:
    return InputError(s.rec.file, 0, f"cannot join with {k.rec.file}: {why}, so the two clocks cannot be aligned "
                                     "(the program can write trace_marker lines, which both show: record the strace "
                                     "with write in -e trace=; or give --offset SECONDS, strace time minus kernel "
                                     "time)")


def check_processes(k: Survey, s: Survey) -> None:
    """The two must share a process, and agree on which process each shared thread is in."""
    common = set(k.pids) & set(s.pids)
    if not common:
        shown = ", ".join(str(p) for p in sorted(set(s.pids.values()))[:8])
        raise InputError(s.rec.file, 0, f"cannot join with {k.rec.file}: no process in common (the strace shows "
                                        f"pid(s) {shown or 'none'}, which the kernel trace never shows): not the "
                                        "same run, or the strace runs in another pid namespace")
    if k.header.source.get("tgid"):
        for tid in sorted(common):
            if k.pids[tid] != s.pids[tid]:
                raise InputError(s.rec.file, 0, f"cannot join with {k.rec.file}: thread {tid} is in process "
                                                f"{k.pids[tid]} in the kernel trace but in {s.pids[tid]} in the strace")


# -- the second pass: merging ------------------------------------------------------------------------

@dataclass(eq=False)
class _Entry:
    side: int
    line: int
    event: dict[str, Any]
    time: float  # on the kernel trace's clock, never going back within a side
    seq: int = 0
    key: tuple[Any, ...] | None = None
    waiting: bool = False
    dropped: bool = False
    origin: tuple[int, int] | None = None  # where reports point for it, when not its own line: (side, line)


class Fds:
    """The fds and userspace mappings of dma-bufs per process, as the merged events leave them.

    >>> fds = Fds()
    >>> fds.observe({"op": "dma_buf_fd", "tid": 3, "pid": 3, "args": {"dmabuf": "b", "flags": 0}, "ret": 5})
    >>> fds.observe({"op": "fork", "kind": "syscall", "tid": 3, "pid": 3, "args": {}, "ret": 9})
    >>> fds.get(9, 5), fds.cloexec(9, 5)
    ('b', False)
    """

    def __init__(self) -> None:
        self.fds: dict[int, dict[int, tuple[str, bool]]] = {}
        self.vmas: dict[int, dict[str, str]] = {}

    def get(self, pid: int, fd: Any) -> str | None:
        entry = self.fds.get(pid, {}).get(fd) if isinstance(fd, int) else None
        return entry[0] if entry else None

    def cloexec(self, pid: int, fd: int) -> bool:
        return self.fds.get(pid, {}).get(fd, ("", False))[1]

    def mapped(self, pid: int, addr: Any) -> bool:
        return isinstance(addr, str) and addr in self.vmas.get(pid, {})

    def open_fds(self, pid: int) -> list[int]:
        return sorted(self.fds.get(pid, {}))

    def observe(self, event: dict[str, Any]) -> None:
        """Follow one event (already merged and renamed)."""
        op, kind, pid = event.get("op"), event.get("kind", "call"), event.get("pid", event.get("tid"))
        args: dict[str, Any] = event.get("args") or {}
        ret: Any = event.get("ret")
        fd: Any = ret if op == "dma_buf_fd" else args.get("fd")
        if not isinstance(pid, int):
            return
        fds = self.fds.setdefault(pid, {})
        if kind in ("call", "annotation") and op in ("dma_buf_fd", "fd_received"):
            buf = args.get("dmabuf")
            if _number(fd) is not None and fd >= 0 and isinstance(buf, str):
                fds[fd] = (buf, bool((_number(args.get("flags")) or 0) & K.O_CLOEXEC))
            return
        if kind != "syscall":
            return
        ok = ret is None or isinstance(ret, str) or isinstance(ret, int) and ret >= 0
        if op == "close" and ret != -K.EBADF:
            fds.pop(fd, None)
        elif op in ("dup", "fcntl") and _number(ret) is not None and ret >= 0 and fd in fds:
            cmd = _named(ParamType.FCNTL, args.get("cmd")) if op == "fcntl" else "F_DUPFD"
            if cmd in ("F_DUPFD", "F_DUPFD_CLOEXEC"):
                fds[ret] = (fds[fd][0], cmd == "F_DUPFD_CLOEXEC")
            elif cmd == "F_SETFD":
                fds[fd] = (fds[fd][0], bool((_number(args.get("arg")) or 0) & K.FD_CLOEXEC))
        elif op in ("dup2", "dup3") and ok and args.get("newfd") != fd:
            newfd: Any = args.get("newfd")
            if fd in fds:
                fds[newfd] = (fds[fd][0], bool((_number(args.get("flags")) or 0) & K.O_CLOEXEC))
            else:
                fds.pop(newfd, None)
        elif op in ("fork", "vfork", "clone") and _number(ret) is not None and ret > 0:
            if op != "clone" or not (_number(args.get("flags")) or 0) & CLONE_THREAD:
                self.fds[ret] = dict(fds)
                self.vmas[ret] = dict(self.vmas.get(pid, {}))
        elif op == "execve" and (ret is None or ret == 0):
            self.fds[pid] = {n: e for n, e in fds.items() if not e[1]}
            self.vmas.pop(pid, None)
        elif op == "exit_group":
            self.fds.pop(pid, None)
            self.vmas.pop(pid, None)
        elif op == "mmap" and isinstance(ret, str) and fd in fds:
            self.vmas.setdefault(pid, {})[ret] = fds[fd][0]
        elif op == "munmap" and ok and isinstance(args.get("addr"), str):
            self.vmas.get(pid, {}).pop(args["addr"], None)


class Merger:
    """The second pass: both conversions merged in time order, each event both saw once."""

    def __init__(self, kernel: Conversion, strace: Conversion, files: tuple[str, str], alignment: Alignment,
                 strace_pids: dict[int, int], kernel_tgid: bool, src: bool = False,
                 gap: tuple[int, int, float] | None = None) -> None:
        self.convs = (kernel, strace)
        self.files = files
        self.alignment = alignment
        self.strace_pids = strace_pids
        self.traced = set(strace_pids.values()) | set(strace_pids)
        self.kernel_tgid = kernel_tgid
        self.src = src
        self.gap = gap  # (side, line, time): one recording starts later than the other, in the middle of the run
        self.pending: deque[_Entry] = deque()
        self.waiting: dict[tuple[Any, ...], deque[_Entry]] = {}
        self.alias: OrderedDict[str, str] = OrderedDict()  # the strace's names of buffers the kernel names
        self.view = Fds()  # as events arrive: which fds are dma-bufs, to know what may have a counterpart
        self.table = Fds()  # as events leave, in the merged order
        self.kernel_exports: OrderedDict[str, None] = OrderedDict()
        self.strace_exports: OrderedDict[str, _Entry] = OrderedDict()
        self.last_seq: OrderedDict[tuple[int, int], int] = OrderedDict()  # (side, tid) -> its latest arrival
        self.heads = (-math.inf, -math.inf)
        self.seq = 0
        self.stats: Counter[str] = Counter()  # events both recordings show, kept once, by kind
        self.dropped: Counter[str] = Counter()  # events left out otherwise, by reason

    # -- reading --

    def _timed(self, side: int) -> Iterator[_Entry]:
        clock = _Clock()
        last = -math.inf
        for line, event in self.convs[side].events:
            if line > MAX_LINE:
                raise InputError(self.files[side], line, "too many lines to join")
            ts = event.get("ts")
            if side == STRACE:  # placed when it returned (-T), else when it started, on the kernel's clock
                t1 = event.get("_t1")
                when = t1 if isinstance(t1, (int, float)) else ts
                t = self.alignment.to_kernel(clock(float(when))) if isinstance(when, (int, float)) else last
                if isinstance(when, (int, float)):
                    event["ts"] = round(t, 6)
            else:
                t = float(ts) if isinstance(ts, (int, float)) else last
                if not self.kernel_tgid and isinstance(event.get("tid"), int):
                    event["pid"] = self.strace_pids.get(event["tid"], event.get("pid"))
            last = max(last, t)
            yield _Entry(side, line, event, last)

    def events(self) -> Iterator[Converted]:
        """The merged stream: (origin, event), origin being ``(side << SIDE_SHIFT) | line``."""
        streams = (self._timed(KERNEL), self._timed(STRACE))
        heads: list[_Entry | None] = [next(streams[0], None), next(streams[1], None)]
        while heads[0] is not None or heads[1] is not None:
            k, s = heads
            side = KERNEL if s is None or (k is not None and k.time <= s.time) else STRACE
            entry = heads[side]
            assert entry is not None
            heads[side] = next(streams[side], None)
            self.heads = (heads[0].time if heads[0] else math.inf, heads[1].time if heads[1] else math.inf)
            if self.gap is not None and entry.time >= self.gap[2]:
                gap_side, line, t = self.gap
                self.gap = None
                self.arrive(_Entry(gap_side, line, {"op": "lost_events", "kind": "annotation", "tid": 0, "args": {},
                                                    "ts": round(t, 6)}, t))
            self.arrive(entry)
            yield from self.release()
        self.heads = (math.inf, math.inf)
        yield from self.release()

    # -- pairing --

    def canon(self, handle: Any) -> Any:
        for _ in range(8):
            if not isinstance(handle, str) or handle not in self.alias:
                return handle
            handle = self.alias[handle]
        return handle

    def same(self, a: str, b: str) -> None:
        """``a`` names the buffer ``b`` names: events still to leave say ``b``."""
        if self.canon(b) != a and a != b:
            self.alias[a] = self.canon(b)
            _bound(self.alias, 1 << 16)

    def buffer(self, entry: _Entry) -> Any:
        event = entry.event
        if entry.side == KERNEL:
            return self.canon(event.get("_buf"))
        return self.canon(self.view.get(event.get("pid", event["tid"]), (event.get("args") or {}).get("fd")))

    def could_pair(self, entry: _Entry) -> bool:
        """Whether the other recording may show this event too (else it need not wait)."""
        event = entry.event
        if entry.side == KERNEL:
            return event.get("pid") in self.traced or event.get("tid") in self.traced
        if event.get("kind") == "syscall":
            pid, args = event.get("pid", event["tid"]), event.get("args") or {}
            if event.get("op") == "munmap":
                return self.view.mapped(pid, args.get("addr"))
            return self.view.get(pid, args.get("fd")) is not None
        return True

    def agree(self, a: _Entry, b: _Entry) -> bool:
        if a.key is not None and a.key[0] == "marker":
            return _texts_agree(_marker_text(a.event), _marker_text(b.event))
        if a.key is not None and a.key[0] == "fd":
            return True
        x, y = self.buffer(a), self.buffer(b)
        return x is None or y is None or x == y

    def arrive(self, entry: _Entry) -> None:
        self.seq += 1
        entry.seq = self.seq
        event = entry.event
        if entry.side == KERNEL and event.get("op") == "dma_buf_export" and isinstance(event.get("ret"), str):
            self.kernel_exports[event["ret"]] = None
            _bound(self.kernel_exports)
        if entry.side == STRACE and event.get("op") == "dma_buf_export" and isinstance(event.get("ret"), str):
            # waits with the dma_buf_fd that follows it: if the kernel trace shows the creation, it goes
            self.strace_exports[event["ret"]] = entry
            _bound(self.strace_exports)
            entry.key, entry.waiting = ("export", event["ret"]), True
            self.waiting.setdefault(entry.key, deque()).append(entry)
        why = event.get("_why")
        if entry.side == KERNEL and why == "syscall" and (event.get("pid") in self.traced
                                                          or event.get("tid") in self.traced):
            # a system call the kernel trace's syscall tracepoints showed, in a process the strace shows: the
            # strace has it too, with its arguments (the kernel's fd tables only decided which calls to write)
            entry.dropped = True
            self.stats["system calls both show (the kernel trace's syscall tracepoints)"] += 1
            return
        key = match_key(event) if why in (None, "adopted", *INFERRED_CLOSES) else None
        if key is not None and key[0] in ("close", "munmap") and entry.side == KERNEL and why is None:
            key = None
        if key is not None and self.could_pair(entry):
            entry.key = key
            partner = next((c for c in self.waiting.get(key, ()) if c.side != entry.side and not c.dropped
                            and abs(c.time - entry.time) <= WINDOW and self.agree(c, entry)), None)
            if partner is not None:
                self.pair(partner, entry)
            else:
                entry.waiting = True
                self.waiting.setdefault(key, deque()).append(entry)
        if not why:
            self.view.observe(event)
        if not entry.dropped:
            self.pending.append(entry)
        self.last_seq[(entry.side, event.get("tid", 0))] = entry.seq
        _bound(self.last_seq, 1 << 16)

    def pair(self, waited: _Entry, new: _Entry) -> None:
        """Two events are one: keep it once."""
        assert waited.key is not None
        self._stop_waiting(waited)
        s, k = (waited, new) if waited.side == STRACE else (new, waited)
        kind = waited.key[0]
        if kind == "fd":
            kargs, sargs = k.event["args"], s.event["args"]
            if kargs.get("flags") is None and sargs.get("flags") is not None:
                kargs["flags"] = sargs["flags"]
            ours = sargs.get("dmabuf")
            if isinstance(ours, str) and isinstance(kargs.get("dmabuf"), str):
                self.same(ours, kargs["dmabuf"])
                export = self.strace_exports.pop(ours, None)
                if export is not None and export.waiting:
                    self._stop_waiting(export)
                    export.dropped = kargs["dmabuf"] in self.kernel_exports  # else it stays, renamed
            s.dropped = True
            self.stats["buffers created"] += 1
            return
        if kind == "marker":
            s.dropped = True
            self.stats["trace_marker writes"] += 1
            return
        combined = dict(s.event)
        combined["args"] = dict(s.event.get("args") or {})
        if combined["args"].get("flags") is None and (k.event.get("args") or {}).get("flags") is not None:
            combined["args"]["flags"] = k.event["args"]["flags"]
        for name in ("comm", "cpu"):
            if name in k.event:
                combined[name] = k.event[name]
        inferred = bool(k.event.get("_why"))
        tid = s.event.get("tid", 0)
        # the later of the two places, unless another event of the thread came between them on that side
        later, earlier = (new, waited)
        if self.last_seq.get((earlier.side, tid), 0) > earlier.seq:
            later, earlier = earlier, later
        combined["ts"] = later.event.get("ts", combined.get("ts"))
        later.event = combined
        later.origin = (s.side, s.line)  # reports show the strace's line: the call as the program made it
        earlier.dropped = True
        self.stats["closes and munmaps the kernel trace inferred" if inferred else "system calls"] += 1

    def _stop_waiting(self, entry: _Entry) -> None:
        assert entry.key is not None
        queue = self.waiting[entry.key]
        queue.remove(entry)
        if not queue:
            del self.waiting[entry.key]
        entry.waiting = False

    def unpaired(self, entry: _Entry) -> None:
        """An event that waited for its counterpart in vain."""
        if entry.side == KERNEL and entry.event.get("_noflags"):
            entry.dropped = True  # the kernel's SYNC without flags: nothing the checker can use
            self.dropped["kernel trace's DMA_BUF_IOCTL_SYNC without flags, not in the strace"] += 1

    # -- leaving --

    def release(self) -> Iterator[Converted]:
        pending = self.pending
        while pending:
            entry = pending[0]
            if entry.dropped:
                pending.popleft()
                continue
            if entry.waiting:
                if self.heads[1 - entry.side] <= entry.time + WINDOW and len(pending) < MAX_PENDING:
                    return
                self._stop_waiting(entry)
                self.unpaired(entry)
                if entry.dropped:
                    pending.popleft()
                    continue
            pending.popleft()
            yield from self.leave(entry)

    def leave(self, entry: _Entry) -> Iterator[Converted]:
        event = entry.event
        private = {k: event.pop(k) for k in [k for k in event if k.startswith("_")]}
        why = private.get("_why")
        op, kind = event.get("op"), event.get("kind", "call")
        pid: Any = event.get("pid", event.get("tid"))
        args: dict[str, Any] = event.get("args") or {}
        table = self.table
        side, line = entry.origin or (entry.side, entry.line)
        origin = (side << SIDE_SHIFT) | line
        before: list[dict[str, Any]] = []
        if entry.side == KERNEL and why in INFERRED_CLOSES:
            gone = table.get(pid, args.get("fd")) is None if op == "close" else not table.mapped(pid, args.get("addr"))
            if gone:
                self.stats["closes and munmaps the kernel trace inferred"] += 1
                return
        elif entry.side == KERNEL and why == "get" and table.get(pid, event.get("ret")) is not None:
            return
        elif entry.side == STRACE and op == "fd_received" and table.get(pid, args.get("fd")) is not None:
            self.same(str(args.get("dmabuf")), str(table.get(pid, args.get("fd"))))
            self.stats["fds the kernel trace saw installed"] += 1
            return
        elif entry.side == STRACE and op == "_close_range":
            first, last = _number(args.get("first")) or 0, _number(args.get("last")) or 0
            for fd in table.open_fds(pid):
                if first <= fd <= last:
                    if args.get("cloexec"):
                        before.append(dict(event, op="fcntl", args={"fd": fd, "cmd": "F_SETFD", "arg": 1}, ret=0))
                    else:
                        before.append(dict(event, op="close", args={"fd": fd}, ret=0))
            event = {}
        elif entry.side == STRACE and op in ("dup2", "dup3") and table.get(pid, args.get("fd")) is None \
                and table.get(pid, args.get("newfd")) is not None and args.get("fd") != args.get("newfd") \
                and _number(event.get("ret")) is not None and event["ret"] >= 0:
            before.append(dict(event, op="close", args={"fd": args["newfd"]}, ret=0))  # onto a dma-buf: closes it
        elif entry.side == KERNEL and op == "dma_buf_get" and isinstance(event.get("ret"), str):
            mine = table.get(pid, args.get("fd"))
            theirs = self.canon(event["ret"])
            if mine is not None and mine != theirs and theirs not in self.kernel_exports:
                self.same(event["ret"], mine)
        if op == "dma_buf_fd" and kind == "call" and args.get("flags") is None:
            args["flags"] = K.O_CLOEXEC  # how it was opened is not recorded: taken as close-on-exec, as strace does
            self.stats["fds whose close-on-exec flag neither shows (taken as set)"] += 1
        for out in (*before, event):
            if not out:
                continue
            self._rename(out)
            table.observe(out)
            if self.src:
                out["src"] = f"{self.files[side]}:{line}"
            yield origin, out

    def _rename(self, event: dict[str, Any]) -> None:
        if not self.alias:
            return
        args = event.get("args")
        if isinstance(args, dict):
            for name, value in args.items():
                if isinstance(value, str) and value in self.alias:
                    args[name] = self.canon(value)
        ret = event.get("ret")
        if isinstance(ret, str) and ret in self.alias:
            event["ret"] = self.canon(ret)


def _bound(table: OrderedDict[Any, Any], limit: int = 1 << 14) -> None:
    while len(table) > limit:
        table.popitem(last=False)


# -- the join as a conversion --------------------------------------------------------------------------

@dataclass
class Joined:
    """Two recordings of one run, joined: a conversion (one pass) and how its lines map back.

    Use as a context manager: it holds both files open.
    """

    kernel: Recording
    strace: Recording
    alignment: Alignment
    conversion: Conversion
    streams: tuple[IO[bytes], IO[bytes]]

    @property
    def files(self) -> tuple[str, str]:
        return self.kernel.file, self.strace.file

    @property
    def name(self) -> str:
        """How reports name the joined trace."""
        return f"{self.kernel.file}+{self.strace.file}"

    def __enter__(self) -> Joined:
        return self

    def __exit__(self, *exc: object) -> None:
        for stream in self.streams:
            stream.close()


def join(paths: list[str], *, offset: float | None = None, src: bool = False) -> Joined:
    """Join a kernel trace and an strace of one run (``paths`` in either order).

    ``offset``: strace time minus kernel time, in seconds, instead of aligning by anchors.
    ``src``: each event names where it comes from, ``"FILE:LINE"`` (what ``dmaspec convert`` writes).
    ``InputError`` when they cannot be joined (exit status 2).
    """
    kernel, strace = roles(paths)
    k, s = survey(kernel), survey(strace)
    if s.untimed and s.first is None:
        raise InputError(strace.file, 0, "cannot join: the strace has no timestamps (record it with -tt, -ttt or -r)")
    check_processes(k, s)
    alignment = Alignment(offset, given=True) if offset is not None else align(k, s)
    streams = (_open(kernel.file), _open(strace.file))
    try:
        kconv, sconv = _convert(kernel, streams[0]), _convert(strace, streams[1])
    except BaseException:
        for stream in streams:
            stream.close()
        raise
    header, notes = _header(k, s, kconv.header, sconv.header, alignment)
    gap = _gap(k, s, sconv.header, alignment)
    if gap is not None:
        late = "the kernel trace starts after the strace shows dma-buf events" if gap[0] == KERNEL else \
            "the strace was attached to the running program"
        notes.append(f"{late}: a gap of lost events where it starts ({gap[2]:.6f} on the kernel trace's clock), "
                     "after which what was alive is uncertain")
    merger = Merger(kconv, sconv, (kernel.file, strace.file), alignment, s.pids,
                    bool(kconv.header.source.get("tgid")), src, gap)
    conversion = Conversion("ftrace+strace", header, iter(()), Counter(), notes)
    conversion.undecidable = _undecidable(kconv, sconv)

    def events() -> Iterator[Converted]:
        yield from merger.events()
        for side, conv in ((kernel, kconv), (strace, sconv)):
            conversion.skipped.update(conv.skipped)
            conversion.notes += [f"{side.file}: {note}" for note in conv.notes]
        if merger.stats:
            conversion.notes.append("seen by both recordings, kept once: " + ", ".join(
                f"{n} {what}" for what, n in merger.stats.most_common()))
        for reason, n in merger.dropped.items():
            conversion.skipped[reason] += n

    conversion.events = events()
    return Joined(kernel, strace, alignment, conversion, streams)


def _header(k: Survey, s: Survey, kh: Header, sh: Header, alignment: Alignment) -> tuple[Header, list[str]]:
    notes = [f"joined {k.rec.file} (kernel trace) and {s.rec.file} (strace): {alignment.describe()}"]
    partial = kh.partial or sh.partial
    slack = max(2 * alignment.residual, 0.001)
    if k.last is not None and s.last_shared is not None:
        late = alignment.to_kernel(s.last_shared) - k.last
        if late > slack:  # the strace shows an event the kernel would have shown, after the kernel trace's end
            partial = True
            notes.append(f"the kernel trace stops {late:.3f} s before the strace's last dma-buf event: end-of-trace "
                         "obligations are not checked")
    source: dict[str, Any] = {
        "joined": [{"file": k.rec.file, "format": k.rec.format, **kh.source},
                   {"file": s.rec.file, "format": s.rec.format, **sh.source}],
        "alignment": {"offset": alignment.offset, "scale": alignment.scale, "anchors": len(alignment.anchors),
                      "residual": alignment.residual, "given": alignment.given},
    }
    header = Header(profile=kh.profile or sh.profile, unobserved=kh.unobserved & sh.unobserved, partial=partial,
                    source=source)
    return header, notes


def _gap(k: Survey, s: Survey, sh: Header, alignment: Alignment) -> tuple[int, int, float] | None:
    """Where one recording starts in the middle of what the other shows: (its side, its first line, the time).

    The kernel trace starting after an event of the strace's it would show misses the kernel calls before it;
    an strace attached to a running program (its header says it starts midway) misses the system calls before it.
    The join writes a ``lost_events`` there, which makes what is alive uncertain: findings about it are withheld.
    """
    if k.first is None or s.first is None:
        return None
    slack = max(2 * alignment.residual, 0.001)
    if s.first_shared is not None and k.first > alignment.to_kernel(s.first_shared) + slack:
        return KERNEL, k.first_line, k.first  # the strace shows an event the kernel trace would have, before it
    strace_first = alignment.to_kernel(s.first)
    if sh.partial and strace_first > k.first + slack:
        return STRACE, s.first_line, strace_first
    return None


def _undecidable(kernel: Conversion, strace: Conversion) -> dict[str, tuple[str, ...]]:
    """Rules neither recording can decide: what one lacks, the other may show."""
    def decides(conv: Conversion, rule: str) -> bool:
        return rule not in narrowed_rules(conv.header.unobserved) and rule not in conv.undecidable

    out: dict[str, tuple[str, ...]] = {}
    for conv, other in ((kernel, strace), (strace, kernel)):
        for rule, lacks in conv.undecidable.items():
            if decides(other, rule):
                continue
            if conv is strace and rule in CLOEXEC_RULES and kernel.header.source.get("fd_flags"):
                continue  # the kernel trace shows each new fd's flags
            out[rule] = tuple(sorted(set(out.get(rule, ()) + lacks)))
    return out


# -- findings back to the recordings -------------------------------------------------------------------

def origin(files: tuple[str, ...], encoded: int) -> tuple[str, int]:
    """The file and line an encoded origin names.

    >>> origin(("k.txt", "a.strace"), (1 << SIDE_SHIFT) | 12)
    ('a.strace', 12)
    """
    return files[encoded >> SIDE_SHIFT], encoded & MAX_LINE


def locate(result: Result, lines: array[int], files: tuple[str, ...]) -> None:
    """Record where each event a finding shows comes from: ``result.origins``, by joined line."""
    from checker.report import window

    wanted: set[int] = set(result.gaps)
    for f in result.findings:
        wanted |= {f.line, *f.related_lines, *window(f)}
    result.origins = {n: origin(files, lines[n - 1]) for n in sorted(wanted) if 1 <= n <= len(lines)}


def relocate(error: InputError, lines: array[int], files: tuple[str, ...], name: str) -> InputError:
    """An error about a joined event, about the recording line it comes from instead."""
    if error.file != name or not 1 <= error.line <= len(lines):
        return error
    file, line = origin(files, lines[error.line - 1])
    return InputError(file, line, f"{error.message} (in the join of {files[0]} and {files[1]})")


def hint(paths: list[str]) -> list[str]:
    """For recordings checked separately: pairs of a kernel trace and an strace that look like one run (they
    share a pid in their first lines), and how to check them together."""
    from checker.readers import ftrace, strace

    found: dict[int, list[tuple[str, set[int]]]] = {KERNEL: [], STRACE: []}
    for path in paths[:64]:
        if path == "-":
            continue
        try:
            with open_binary(path) as stream:
                head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES] if hasattr(stream, "peek") else b""
                reader = detect(head, path)
        except (OSError, InputError):
            continue
        if reader is ftrace.READER:
            found[KERNEL].append((path, ftrace.pids_in(head)))
        elif reader is strace.READER:
            found[STRACE].append((path, strace.pids_in(head)))
    out = []
    for kpath, kpids in found[KERNEL]:
        for spath, spids in found[STRACE]:
            common = kpids & spids
            if common:
                out.append(f"{kpath} and {spath} look like recordings of one run (both show pid {min(common)}) and "
                           f"were checked separately: dmaspec check --join {kpath} {spath} checks them together")
    return out[:4]


__all__ = ["Alignment", "Anchor", "Fds", "Joined", "Merger", "Recording", "Survey", "align", "hint", "join",
           "locate", "match_key", "origin", "relocate", "roles", "survey"]
