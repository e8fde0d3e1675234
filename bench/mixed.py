"""Mixed sources: a kernel trace and an strace of the same synthetic run, and how fast they check joined.

``write_pair`` writes the two recordings a correct program would leave: a process allocating dma-heap
buffers, mapping them, bracketing CPU writes with ``DMA_BUF_IOCTL_SYNC``, importing each into a GPU (kernel
calls only the kernel trace sees) and closing them, with a ``trace_marker`` line every few frames.  The
kernel trace has kprobe events on a stock kernel (no SYNC flags); the strace has ``-f -tt -yy -v``
output (the flags).  The strace's clock is the kernel's shifted by ``offset`` and, with ``drift``, running
that many parts per million fast.  Both check clean, separately and joined.

Usage::

    python bench/mixed.py                  # 20k frames
    python bench/mixed.py --frames 200000

It prints, for the pair: the size of each recording, each one checked on its own, the two joined
(``dmaspec check --join``: both read twice, aligned, merged), and the alignment found.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

PID = 4211
HEAP_FD, DRM_FD, MARKER_FD = 4, 6, 3
SIZE = 1 << 20
KERNEL_HEADER = """\
# tracer: nop
#
#                                          _-----=> irqs-off/BH-disabled
#                                         / _----=> need-resched
#                                        | / _---=> hardirq/softirq
#                                        || / _--=> preempt-depth
#                                        ||| / _-=> migrate-disable
#                                        |||| /     delay
#           TASK-PID       TGID    CPU#  |||||  TIMESTAMP  FUNCTION
#              | |           |       |   |||||     |         |
"""


@dataclass
class Pair:
    """What ``write_pair`` wrote."""

    kernel_lines: int = 0
    strace_lines: int = 0
    buffers: int = 0
    frames: int = 0


def _hms(t: float) -> str:
    t %= 86400
    h, rest = divmod(t, 3600)
    m, s = divmod(rest, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:09.6f}"


def _le(value: int, size: int) -> str:
    return "".join(f"\\x{b:02x}" for b in value.to_bytes(size, "little"))


class _Writer:
    def __init__(self, kernel: str, strace: str, offset: float, drift: float, seed: int) -> None:
        self.k = open(kernel, "w", encoding="utf-8")  # noqa: SIM115
        self.s = open(strace, "w", encoding="utf-8")  # noqa: SIM115
        self.offset, self.scale = offset, 1.0 + drift * 1e-6
        self.rng = random.Random(seed)
        self.now = 100.0  # kernel clock, seconds since boot
        self.pair = Pair()
        self.k.write(KERNEL_HEADER)
        self.kline(" ftrace-setup.sh-4100    (   4100) [000] .....",
                   "tracing_mark_write: dmaspec: kernel=6.12.57-amd64")

    def close(self) -> None:
        self.k.close()
        self.s.close()

    def kline(self, who: str, text: str, t: float | None = None) -> None:
        self.k.write(f"{who} {t if t is not None else self.now:12.6f}: {text}\n")
        self.pair.kernel_lines += 1

    def call(self, text: str, ret: str, kernel: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        """One system call: strace's line (stamped at its start), then the kernel's events inside it."""
        self.now += self.rng.uniform(80e-6, 400e-6)
        strace_time = self.offset + self.scale * self.now
        self.s.write(f"{PID}  {_hms(strace_time)} {text} = {ret}\n")
        self.pair.strace_lines += 1
        t = self.now
        for flags, event in kernel:
            t += self.rng.uniform(2e-6, 12e-6)
            self.kline(f"      camera-hal-{PID}    ({PID:>7}) [002] {flags}", event, t)
        self.now = t


def write_pair(kernel: str, strace: str, frames: int, *, offset: float = 38400.0, drift: float = 0.0,
               seed: int = 7) -> Pair:
    """Write a kernel trace and an strace of one correct run of ``frames`` frames; see the module's docstring."""
    w = _Writer(kernel, strace, offset, drift, seed)
    try:
        w.call('execve("./camera-hal", ["./camera-hal"], ["PATH=/usr/bin:/bin"])', "0")
        w.call("set_tid_address(0x7f5a375c2a10)", str(PID))
        w.call('openat(AT_FDCWD</tmp/cam>, "/sys/kernel/tracing/trace_marker", O_WRONLY|O_CLOEXEC)',
               f"{MARKER_FD}</sys/kernel/tracing/trace_marker>")
        w.call('openat(AT_FDCWD</tmp/cam>, "/dev/dma_heap/system", O_RDONLY|O_CLOEXEC)',
               f"{HEAP_FD}</dev/dma_heap/system<char 251:0>>")
        w.call("openat(AT_FDCWD</tmp/cam>, \"/dev/dri/renderD128\", O_RDWR|O_CLOEXEC)",
               f"{DRM_FD}</dev/dri/renderD128<char 226:128>>")
        done = 0
        while done < frames:
            _buffer(w, min(frames - done, w.rng.randint(8, 64)))
            done = w.pair.frames
        w.call("exit_group(0)", "?")
        w.s.write(f"{PID}  {_hms(w.offset + w.scale * (w.now + 1e-4))} +++ exited with 0 +++\n")
        w.pair.strace_lines += 1
    finally:
        w.close()
    return w.pair


def _marker(w: _Writer, text: str) -> None:
    w.call(f'write({MARKER_FD}</sys/kernel/tracing/trace_marker>, "{text}", {len(text)})', str(len(text)),
           [(".....", f"tracing_mark_write: {text}")])


def _buffer(w: _Writer, frames: int) -> None:
    """One buffer's life: allocate, map, ``frames`` SYNC write brackets, a GPU import, unmap, close."""
    w.pair.buffers += 1
    n = w.pair.buffers
    buf, file = f"0xffff8880{n * 0x400:08x}", f"0xffff8885{n * 0x400:08x}"
    att, sg = f"0xffff8881{n * 0x200:08x}", f"0xffff8882{n * 0x100:08x}"
    fd = 5
    va = 0x7f5a00000000 + n * SIZE * 2
    _marker(w, f"camera-hal: buffer {n}")
    before = _le(SIZE, 8) + _le(0, 4) + _le(0x80002, 4) + _le(0, 8)
    after = _le(SIZE, 8) + _le(fd, 4) + _le(0x80002, 4) + _le(0, 8)
    w.call(f'ioctl({HEAP_FD}</dev/dma_heap/system<char 251:0>>, DMA_HEAP_IOCTL_ALLOC, "{before}" => "{after}")', "0",
           [("...1.", f'dma_buf_export: (dma_buf_export+0x4/0x2c0) exp_name="system" size={SIZE} flags=0x2'),
            (".....", f"dma_buf_export_ret: (system_heap_allocate+0x37a/0x400 <- dma_buf_export) ret={buf} "
                      f'size={SIZE} exp_name="system" file={file}'),
            ("...1.", f'dma_buf_fd: (dma_buf_fd+0x4/0x50) dmabuf={buf} size={SIZE} exp_name="system" flags=0x80002'),
            (".....", f"dma_buf_fd_ret: (dma_heap_ioctl+0x146/0x300 <- dma_buf_fd) ret={fd}")])
    w.call(f"mmap(NULL, {SIZE}, PROT_READ|PROT_WRITE, MAP_SHARED, {fd}</dmabuf:>, 0)", f"0x{va:x}",
           [("...1.", f"dma_buf_mmap_internal: (dma_buf_mmap_internal+0x4/0x50) file={file} vm_start=0x{va:x} "
                      f"vm_end=0x{va + SIZE:x} vm_pgoff=0"),
            (".....", "dma_buf_mmap_internal_ret: (__mmap_region+0x697/0xb10 <- dma_buf_mmap_internal) ret=0")])
    for frame in range(frames):
        w.pair.frames += 1
        if frame % 8 == 0:
            _marker(w, f"camera-hal: frame {w.pair.frames}")
        arg = "0x7ffc1345e320"
        w.call(f'ioctl({fd}</dmabuf:>, DMA_BUF_IOCTL_SYNC, "{_le(2, 8)}")', "0",
               [("...1.", f"dma_buf_ioctl: (dma_buf_ioctl+0x4/0x410) file={file} cmd=0x40086200 arg={arg}"),
                ("...1.", f"dma_buf_begin_cpu_access: (dma_buf_begin_cpu_access+0x4/0x70) dmabuf={buf} direction=1"),
                (".....", "dma_buf_begin_cpu_access_ret: (dma_buf_ioctl+0x348/0x410 <- dma_buf_begin_cpu_access) "
                          "ret=0"),
                (".....", "dma_buf_ioctl_ret: (__x64_sys_ioctl+0x97/0xc0 <- dma_buf_ioctl) ret=0")])
        w.call(f'ioctl({fd}</dmabuf:>, DMA_BUF_IOCTL_SYNC, "{_le(6, 8)}")', "0",
               [("...1.", f"dma_buf_ioctl: (dma_buf_ioctl+0x4/0x410) file={file} cmd=0x40086200 arg={arg}"),
                (".....", "dma_buf_ioctl_ret: (__x64_sys_ioctl+0x97/0xc0 <- dma_buf_ioctl) ret=0")])
    drm = f"{DRM_FD}</dev/dri/renderD128<char 226:128>>"
    w.call(f"ioctl({drm}, DRM_IOCTL_PRIME_FD_TO_HANDLE, {{fd={fd}</dmabuf:>, flags=0}} => {{handle={n}}})", "0",
           [("...1.", f"dma_buf_get: (dma_buf_get+0x4/0x50) fd={fd}"),
            (".....", f"dma_buf_get_ret: (drm_gem_prime_fd_to_handle+0x27/0x210 [drm] <- dma_buf_get) ret={buf}"),
            ("...1.", f'dma_buf_attach: (dma_buf_attach+0x4/0x20) dmabuf={buf} dev="0000:03:00.0"'),
            ("...1.", f'dma_buf_dynamic_attach: (dma_buf_dynamic_attach+0x4/0x260) dmabuf={buf} dev="0000:03:00.0" '
                      "importer_ops=0x0"),
            (".....", f"dma_buf_dynamic_attach_ret: ([unknown/kretprobe'd] <- dma_buf_dynamic_attach) ret={att}"),
            (".....", f"dma_buf_attach_ret: (drm_gem_prime_import_dev+0x44/0x170 [drm] <- dma_buf_attach) ret={att}"),
            ("...1.", f"dma_buf_map_attachment_unlocked: (dma_buf_map_attachment_unlocked+0x4/0x70) attach={att} "
                      "direction=0"),
            ("...1.", f"dma_buf_map_attachment: (dma_buf_map_attachment+0x4/0xf0) attach={att} direction=0"),
            (".....", f"dma_buf_map_attachment_ret: (dma_buf_map_attachment_unlocked+0x37/0x70 <- "
                      f"dma_buf_map_attachment) ret={sg} nents=16 orig_nents=16"),
            (".....", f"dma_buf_map_attachment_unlocked_ret: (drm_gem_prime_import_dev+0x70/0x170 [drm] <- "
                      f"dma_buf_map_attachment_unlocked) ret={sg}")])
    w.call(f"ioctl({drm}, DRM_IOCTL_GEM_CLOSE, {{handle={n}}})", "0",
           [("...1.", f"dma_buf_unmap_attachment_unlocked: (dma_buf_unmap_attachment_unlocked+0x4/0x70) "
                      f"attach={att} sg_table={sg} direction=0"),
            ("...1.", f"dma_buf_unmap_attachment: (dma_buf_unmap_attachment+0x4/0x90) attach={att} sg_table={sg} "
                      "direction=0"),
            ("...1.", f"dma_buf_detach: (dma_buf_detach+0x4/0xd0) dmabuf={buf} attach={att}"),
            ("...1.", f"dma_buf_put: (dma_buf_put+0x4/0x30) dmabuf={buf}")])
    w.call(f"munmap(0x{va:x}, {SIZE})", "0")
    w.call(f"close({fd}</dmabuf:>)", "0",
           [("...1.", f"dma_buf_file_release: (dma_buf_file_release+0x4/0x80) inode=0xffff8886{n * 0x100:08x} "
                      f"file={file}"),
            ("...1.", f"dma_buf_release: (dma_buf_release+0x4/0x90) dentry=0xffff8887{n * 0x100:08x}")])


def main() -> int:
    from checker.api import check_file, check_join

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--drift", type=float, default=0.0, help="ppm the strace's clock runs fast")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dmaspec-mixed-") as tmp:
        kernel, strace = os.path.join(tmp, "run.ftrace"), os.path.join(tmp, "run.strace")
        start = time.perf_counter()
        pair = write_pair(kernel, strace, args.frames, drift=args.drift)
        print(f"mixed sources: {pair.frames:,} frames, {pair.buffers:,} buffers: kernel trace {pair.kernel_lines:,} "
              f"lines ({os.path.getsize(kernel) / 1e6:.1f} MB), strace {pair.strace_lines:,} lines "
              f"({os.path.getsize(strace) / 1e6:.1f} MB); written in {time.perf_counter() - start:.1f} s")
        status = 0
        rows = []
        for name, run in (("ftrace alone, check_file()", lambda: check_file(kernel)),
                          ("strace alone, check_file()", lambda: check_file(strace)),
                          ("joined, check_join()", lambda: check_join([kernel, strace]))):
            start = time.perf_counter()
            result = run()
            took = time.perf_counter() - start
            lines = pair.kernel_lines * ("ftrace" in name or "joined" in name) + \
                pair.strace_lines * ("strace" in name or "joined" in name)
            rows.append((name, result.events, took, lines / took))
            if result.findings or result.inconclusive:
                print(f"  {name}: NOT CLEAN: {[f.rule for f in result.findings]} {dict(result.withheld)}")
                status = 1
            if "joined" in name:
                notes = [n for n in result.conversion_notes if n.startswith(("joined", "seen by both"))]
        for name, events, took, rate in rows:
            print(f"  {name:<28} {events:>10,} events  {took:7.2f} s  {rate:>10,.0f} recording lines/s")
        for note in notes:
            print(f"  {note}")
        if status == 0:
            print("all mixed traces checked clean")
    return status


if __name__ == "__main__":
    sys.exit(main())
