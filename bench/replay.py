"""Replay benchmark: how fast the engines check long, realistic, correct traces.

Generates canonical traces (JSON Lines) of N events that check clean under the
``latest`` profile -- many processes and threads running dma-buf lifecycles
interleaved: V4L2 capture into GPU-exported buffers read back through mmap
and DMA_BUF_IOCTL_SYNC, Wayland clients whose buffers a compositor imports
with dynamic attachments, pins and locked mappings, reservation fences, and
kernel CPU access with begin/end_cpu_access and vmap -- with buffers created
and released all the time, so the live set stays at a few hundred objects
while the number of distinct handles grows with the length of the trace.
Where a frame passes from one thread to another, the trace records what
orders the hand-off in a real stack (the V4L2 queue locks videobuf2 runs the
queue ioctls under, the compositor's wait for the client's fence), so the
trace is also clean for ``--lock-order`` and ``--races``.

For each size it prints: reading and decoding alone (msgspec, 1 MiB blocks,
as the executor reads), the compiled executor end to end, the interpreter,
and the peak memory of each, every measurement in a fresh subprocess; then
the goals and whether they are met.  Beside them, an ftrace text row: the
same kind of work as kprobe events of a stock kernel (``generate_ftrace``), at
most 1M kprobe events (20k with ``--quick``), checked end to end through the
ftrace reader.  And a mixed row: a kernel trace and an strace of the same
synthetic run (``bench/mixed.py``), joined by ``check_join()`` (both read twice,
aligned, merged), at most 200k frames (2k with ``--quick``).  It asserts only
that the traces check clean: a benchmark of a trace full of findings measures
the wrong thing.

Usage::

    python bench/replay.py                      # 1M and 10M events
    python bench/replay.py --events 1000000     # one size
    python bench/replay.py --quick              # 100k events (the smoke test)
    python bench/replay.py --profile            # also cProfile the compiled engine

This script does not measure the other engines (explorer, solver), and its
figures are for this machine only: compare them run to run, not across hosts.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Union

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Goals (printed next to the figures; never asserted).
GOAL_COMPILED_RATE = 1_000_000  # events/s, on the 1M trace
GOAL_SPEEDUP = 10.0  # compiled / interpreter
GOAL_10M_SECONDS = 15.0
GOAL_PEAK_MB = 500.0
GOAL_MEMORY_GROWTH = 1.25  # peak RSS of the largest size / of the smallest: "not growing"
INTERPRETER_CAP = 1_000_000  # the interpreter runs on at most this many events (a prefix)

# -- trace generation -----------------------------------------------------------------------
#
# Each session is a generator of event lines *without* their timestamp and
# closing brace; the scheduler interleaves sessions, stamps a global,
# increasing ``ts`` and writes in batches.  A session yields a string (one
# event) or a tuple of strings (events that must stay together, such as a
# reservation-lock critical section, so that no other event of the same
# thread lands inside it).

Item = Union[str, tuple[str, ...]]

O_RDWR = 0o2
O_CLOEXEC = 0o2000000
CLONE_THREAD_FLAGS = 0x3D0F00  # what pthread_create passes: VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|...
PROT_RW, MAP_SHARED = 3, 1
SYNC_READ, SYNC_WRITE, SYNC_END = 1, 2, 4
EINTR = 4
IMPORTER_OPS = "0xffffffffc0a1b2c0"  # amdgpu's dma_buf_attach_ops, a module address


def _page(n: int) -> int:
    return (n + 4095) // 4096 * 4096


# Frame sizes: NV12 720p/1080p/4K and RGBA 1080p/1440p, page aligned.
NV12_SIZES = (_page(1280 * 720 * 3 // 2), _page(1920 * 1080 * 3 // 2), _page(3840 * 2160 * 3 // 2))
RGBA_SIZES = (_page(1920 * 1080 * 4), _page(2560 * 1440 * 4))
GPU_EXPORTERS = ("i915", "amdgpu", "xe")
CAMERA_DEVS = ("0000:00:14.3", "0000:00:05.0", "ipu6-isys")
CODEC_DEVS = ("0000:00:02.0", "fdea0000.video-codec")
DISPLAY_DEV = "0000:03:00.0"


class FdTable:
    """A process's file descriptors: the lowest free number first, as the kernel allocates."""

    def __init__(self, first: int) -> None:
        self.next = first
        self.free: list[int] = []

    def get(self) -> int:
        if self.free:
            return heapq.heappop(self.free)
        self.next += 1
        return self.next - 1

    def put(self, fd: int) -> None:
        heapq.heappush(self.free, fd)


@dataclass
class Stats:
    events: int = 0
    buffers: int = 0
    attachments: int = 0
    mappings: int = 0
    fences: int = 0
    processes: int = 0
    live_buffers: int = 0
    max_live_buffers: int = 0
    sessions: dict[str, int] = field(default_factory=dict)


class World:
    """Allocators shared by all sessions: pids, tids, handles, fence timelines."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.stopping = False
        self.stats = Stats()
        self.n_tid = 1400
        self.n_buf = self.n_att = self.n_sg = self.n_fence = self.n_vaddr = self.n_uaddr = self.n_priv = 0
        self.n_lock = 0
        # one queue lock per encoder device: v4l2-mem2mem drivers such as hantro hand every context of the
        # device the same mutex as their queues' lock (m2m_ctx->q_lock = &vpu->vpu_mutex)
        self.codec_locks = {dev: self.new_lock() for dev in CODEC_DEVS}
        self.seqno: dict[int, int] = {}
        self.n_ctx = 1 << 12
        # the compositor: one long-lived process all Wayland sessions share
        self.comp_pid, self.comp_tid = self.new_process()
        self.comp_who = who(self.comp_tid, self.comp_pid, "gnome-shell")
        self.comp_fds = FdTable(40)
        self.comp_ctx = self.new_fence_context()

    def new_process(self) -> tuple[int, int]:
        self.n_tid += self.rng.randint(3, 40)
        self.stats.processes += 1
        return self.n_tid, self.n_tid

    def new_tid(self) -> int:
        self.n_tid += 1
        return self.n_tid

    def new_buf(self) -> str:
        self.n_buf += 1
        return f"0xffff8881{self.n_buf * 0x400:08x}"

    def new_att(self) -> str:
        self.n_att += 1
        return f"0xffff8882{self.n_att * 0x100:08x}"

    def new_sg(self) -> str:
        self.n_sg += 1
        return f"0xffff8883{self.n_sg * 0x80:08x}"

    def new_vaddr(self) -> str:
        self.n_vaddr += 1
        return f"0xffffc900{self.n_vaddr * 0x10000:08x}"

    def new_uaddr(self) -> str:
        self.n_uaddr += 1
        return f"0x7f{self.n_uaddr * 0x4000:08x}000"

    def new_priv(self) -> str:
        self.n_priv += 1
        return f"0xffff8885{self.n_priv * 0x400:08x}"

    def new_lock(self) -> str:
        self.n_lock += 1
        return f"0xffff8889{self.n_lock * 0x200:08x}"

    def new_fence_context(self) -> int:
        self.n_ctx += 1
        self.seqno[self.n_ctx] = 0
        return self.n_ctx

    def new_fence(self, ctx: int) -> tuple[str, int]:
        self.n_fence += 1
        seq = self.seqno[ctx] + 1
        self.seqno[ctx] = seq
        return f"0xffff8884{self.n_fence * 0x80:08x}", seq

    def pool(self, n: int) -> None:
        s = self.stats
        s.live_buffers += n
        if s.live_buffers > s.max_live_buffers:
            s.max_live_buffers = s.live_buffers

    def finish_stats(self) -> Stats:
        s = self.stats
        s.buffers, s.attachments, s.mappings, s.fences = self.n_buf, self.n_att, self.n_sg, self.n_fence
        return s


# Event-line fragments.  Handles are JSON strings, numbers are numbers.

def who(tid: int, pid: int, comm: str) -> str:
    """The fields naming the thread of an event."""
    return f'"tid":{tid},"pid":{pid},"comm":"{comm}"'


def _export(who: str, b: str, name: str, size: int) -> str:
    return (f'{{"op":"dma_buf_export",{who},"args":{{"exp_name":"{name}","size":{size},'
            f'"flags":{O_RDWR}}},"ret":"{b}"')


def _sync(who: str, fd: int, flags: int, ret: int = 0) -> str:
    return (f'{{"op":"ioctl","kind":"syscall",{who},"args":{{"fd":{fd},'
            f'"cmd":"DMA_BUF_IOCTL_SYNC","flags":{flags}}},"ret":{ret}')


def _lock(who: str, b: str, op: str = "dma_resv_lock") -> str:
    return f'{{"op":"{op}",{who},"args":{{"obj":"{b}"}},"ret":0'


def _unlock(who: str, b: str) -> str:
    return f'{{"op":"dma_resv_unlock",{who},"args":{{"obj":"{b}"}}'


IRQ_WHO = tuple(f'"tid":0,"pid":0,"ctx":"hardirq","comm":"swapper/{cpu}"' for cpu in range(8))


def _signal(f: str) -> str:
    # completion interrupt: the fence is signalled in hard-irq context, on some CPU's idle task
    return f'{{"op":"dma_fence_signal",{IRQ_WHO[ord(f[-3]) & 7]},"args":{{"fence":"{f}"}},"ret":0'


def _mutex(who: str, lock: str, name: str, op: str = "mutex_lock") -> str:
    return f'{{"op":"{op}",{who},"args":{{"lock":"{lock}","name":"{name}"}}'


def _mutex_unlock(who: str, lock: str) -> str:
    return f'{{"op":"mutex_unlock",{who},"args":{{"lock":"{lock}"}}'


# The queue locks videobuf2 runs the queue ioctls under (video_ioctl2 takes vdev->queue->lock for
# VIDIOC_QBUF/DQBUF), by lockdep class: uvcvideo's (uvc_queue_init: queue->queue.lock = &queue->mutex)
# and hantro's (one mutex per device for every m2m context's queues).
CAMERA_QUEUE_LOCK = "&queue->mutex"
CODEC_QUEUE_LOCK = "&vpu->vpu_mutex"


def _close(who: str, fd: int) -> str:
    return f'{{"op":"close","kind":"syscall",{who},"args":{{"fd":{fd}}},"ret":0'


def _clone(who: str, child: int) -> str:
    return (f'{{"op":"clone","kind":"syscall",{who},"args":{{"flags":{CLONE_THREAD_FLAGS}}},'
            f'"ret":{child}')


def _exit(who: str) -> str:
    return f'{{"op":"exit_group","kind":"syscall",{who},"args":{{"status":0}}'


CameraBuffer = tuple[str, int, str, str]  # buffer, fd, attachment, mmap address
CameraFrame = tuple[str, int, str, str, str, str]  # ... and the queued frame's sg_table and fence


def camera_session(w: World) -> Iterator[Item]:
    """A capture app: V4L2 imports GPU-exported buffers, DMA from the sensor, the app reads frames via mmap.

    The streaming thread dequeues frames, the app's thread reads them and requeues the one it let go of;
    both queue ioctls run under the capture queue's vb2 lock, which orders each hand-off.
    """
    rng = w.rng
    pid, main = w.new_process()
    stream = w.new_tid()
    app = rng.choice(("cheese", "gst-launch-1.0", "obs", "zoom"))
    tmain, tstream = who(main, pid, app), who(stream, pid, "v4l2src0:src")
    yield _clone(tmain, stream)
    fds = FdTable(7)
    fctx = w.new_fence_context()
    qlock = w.new_lock()  # the capture queue's vb2 lock
    dev = rng.choice(CAMERA_DEVS)
    exporter = rng.choice(GPU_EXPORTERS)
    generations = rng.randint(4, 12)

    def qbuf(t: str, buf: CameraBuffer, queued: deque[CameraFrame]) -> tuple[str, ...]:
        # VIDIOC_QBUF(DMABUF): video_ioctl2 runs it under the vb2 queue's lock, and videobuf2's
        # __prepare_dmabuf maps the attachment (map_dmabuf) before the driver gets the buffer
        b, fd, a, addr = buf
        sg = w.new_sg()
        fence, seq = w.new_fence(fctx)
        queued.append((b, fd, a, addr, sg, fence))
        return (_mutex(t, qlock, CAMERA_QUEUE_LOCK),
                f'{{"op":"dma_buf_map_attachment_unlocked",{t},"args":{{"attach":"{a}",'
                f'"direction":"DMA_FROM_DEVICE"}},"ret":"{sg}"',
                f'{{"op":"dma_fence_init",{t},"args":{{"fence":"{fence}","context":{fctx},"seqno":{seq}}}',
                _mutex_unlock(t, qlock))

    for gen in range(generations):
        size = rng.choice(NV12_SIZES)
        nb = rng.choice((4, 4, 5, 6, 8))
        pool = []
        w.pool(nb)
        for _ in range(nb):  # VIDIOC_REQBUFS + QBUF(DMABUF) for each buffer of the pool
            b, fd, a, addr = w.new_buf(), fds.get(), w.new_att(), w.new_uaddr()
            yield _export(tmain, b, exporter, size)
            yield f'{{"op":"dma_buf_fd",{tmain},"args":{{"dmabuf":"{b}","flags":{O_CLOEXEC | O_RDWR}}},"ret":{fd}'  # noqa: E501
            yield (f'{{"op":"lseek","kind":"syscall",{tmain},"args":{{"fd":{fd},"offset":0,'
                   f'"whence":"SEEK_END"}},"ret":{size}')
            yield f'{{"op":"dma_buf_get",{tstream},"args":{{"fd":{fd}}},"ret":"{b}"'
            yield f'{{"op":"dma_buf_attach",{tstream},"args":{{"dmabuf":"{b}","dev":"{dev}"}},"ret":"{a}"'  # noqa: E501
            yield (f'{{"op":"mmap","kind":"syscall",{tmain},"args":{{"fd":{fd},"length":{size},'
                   f'"offset":0,"prot":{PROT_RW},"flags":{MAP_SHARED}}},"ret":"{addr}"')
            pool.append((b, fd, a, addr))
        frames = rng.randint(100, 400)
        queued: deque[CameraFrame] = deque()
        f = 0

        # STREAMON: the streaming thread queues every buffer of the pool
        while f < min(frames, nb) and not w.stopping:
            yield qbuf(tstream, pool[f], queued)
            f += 1
        held: CameraBuffer | None = None
        while queued:
            b, fd, a, addr, sg, fence = queued.popleft()  # the oldest frame completes
            yield _signal(fence)
            # VIDIOC_DQBUF in the streaming thread, under the queue's lock: videobuf2's __vb2_dqbuf unmaps
            # the frame's dma-buf (the vb2 of the kernels that map at QBUF and unmap at DQBUF)
            yield (_mutex(tstream, qlock, CAMERA_QUEUE_LOCK),
                   f'{{"op":"dma_buf_unmap_attachment_unlocked",{tstream},"args":{{"attach":"{a}",'
                   f'"sg_table":"{sg}","direction":"DMA_FROM_DEVICE"}}',
                   _mutex_unlock(tstream, qlock))
            # The frame is pushed to the app's thread, which lets go of the frame it held: the buffer pool
            # requeues a released buffer from the thread that releases it (GStreamer's v4l2 pool, FFmpeg's
            # v4l2 input), so this VIDIOC_QBUF takes the queue's lock after the DQBUF above released it.  A
            # frame that came with no requeue (the first after STREAMON, those after the last QBUF) is
            # dropped unread: nothing the kernel does orders the app after its DQBUF.
            requeued = False
            if held is not None and f < frames and not w.stopping:
                yield qbuf(tmain, held, queued)
                f += 1
                requeued = True
            held = (b, fd, a, addr)
            if requeued and rng.random() < 0.6:  # the app reads the frame on the CPU, bracketed by SYNC
                if rng.random() < 0.02:
                    yield _sync(tmain, fd, SYNC_READ, -EINTR)  # interrupted: restarted with the same flags
                yield _sync(tmain, fd, SYNC_READ)
                yield f'{{"op":"mmap_access","kind":"annotation",{tmain},"args":{{"addr":"{addr}","access":"read"}}'  # noqa: E501
                yield _sync(tmain, fd, SYNC_END | SYNC_READ)
        # VIDIOC_REQBUFS(0): the driver drops its attachments and references; on the last pool, half the
        # apps just exit and let the kernel close their fds and mappings
        last = gen == generations - 1 or w.stopping
        by_exit = last and rng.random() < 0.5
        for b, fd, a, addr in pool:
            yield f'{{"op":"dma_buf_detach",{tstream},"args":{{"dmabuf":"{b}","attach":"{a}"}}'
            yield f'{{"op":"dma_buf_put",{tstream},"args":{{"dmabuf":"{b}"}}'
            if not by_exit:
                yield f'{{"op":"munmap","kind":"syscall",{tmain},"args":{{"addr":"{addr}","length":{size}}},"ret":0'  # noqa: E501
                yield _close(tmain, fd)
                fds.put(fd)
        w.pool(-nb)
        if last:
            break
    yield _exit(tmain)


def wayland_session(w: World) -> Iterator[Item]:
    """A GPU client renders into a swapchain; the compositor imports each buffer dynamically and samples it."""
    rng = w.rng
    pid, main = w.new_process()
    render = w.new_tid()
    app = rng.choice(("firefox", "mpv", "vkcube", "chrome", "blender"))
    tmain, trender = who(main, pid, app), who(render, pid, app[:8] + ":gpu0")
    yield _clone(tmain, render)
    tk, kfds = w.comp_who, w.comp_fds
    fds = FdTable(5)
    cctx = w.new_fence_context()
    exporter = rng.choice(GPU_EXPORTERS)
    generations = rng.randint(2, 8)
    for _ in range(generations):  # a swapchain per window size
        size = rng.choice(RGBA_SIZES)
        nb = rng.choice((2, 3, 3, 4))
        chain = []
        w.pool(nb)
        for _ in range(nb):
            b, fd, kfd, a, vaddr = w.new_buf(), fds.get(), kfds.get(), w.new_att(), w.new_vaddr()
            yield _export(trender, b, exporter, size)
            yield f'{{"op":"dma_buf_fd",{trender},"args":{{"dmabuf":"{b}","flags":{O_CLOEXEC | O_RDWR}}},"ret":{fd}'  # noqa: E501
            # zwp_linux_dmabuf_v1: the fd reaches the compositor over the socket
            yield f'{{"op":"fd_received","kind":"annotation",{tk},"args":{{"fd":{kfd},"dmabuf":"{b}"}}'  # noqa: E501
            yield (f'{{"op":"lseek","kind":"syscall",{tk},"args":{{"fd":{kfd},"offset":0,'
                   f'"whence":"SEEK_END"}},"ret":{size}')
            yield f'{{"op":"dma_buf_get",{tk},"args":{{"fd":{kfd}}},"ret":"{b}"'
            yield (f'{{"op":"dma_buf_dynamic_attach",{tk},"args":{{"dmabuf":"{b}",'
                   f'"dev":"{DISPLAY_DEV}","importer_ops":"{IMPORTER_OPS}","importer_priv":"{w.new_priv()}"}},'
                   f'"ret":"{a}"')
            yield (_lock(tk, b),
                   f'{{"op":"dma_buf_pin",{tk},"args":{{"attach":"{a}"}},"ret":0',
                   _unlock(tk, b))
            chain.append((b, fd, kfd, a, vaddr))
        frames = rng.randint(150, 600)
        for f in range(frames):
            if w.stopping:
                break
            b, fd, kfd, a, vaddr = chain[f % nb]
            fence, seq = w.new_fence(cctx)
            # the client submits rendering: its job's fence goes into the buffer's reservation object
            yield (f'{{"op":"dma_fence_init",{trender},"args":{{"fence":"{fence}","context":{cctx},"seqno":{seq}}}',  # noqa: E501
                   _lock(trender, b),
                   f'{{"op":"dma_resv_reserve_fences",{trender},"args":{{"obj":"{b}","num_fences":1}},"ret":0',  # noqa: E501
                   f'{{"op":"dma_resv_add_fence",{trender},"args":{{"obj":"{b}","fence":"{fence}","usage":"write"}}',  # noqa: E501
                   _unlock(trender, b))
            yield _signal(fence)
            # the compositor samples the buffer for its next frame once the client's rendering is done:
            # implicit sync, the atomic commit waits for the write fence the buffer's reservation object
            # holds (drm_gem_plane_helper_prepare_fb, drm_atomic_helper_wait_for_fences)
            yield f'{{"op":"dma_fence_wait",{tk},"args":{{"fence":"{fence}","intr":0}},"ret":0'
            sg = w.new_sg()
            yield (_lock(tk, b),
                   f'{{"op":"dma_buf_map_attachment",{tk},"args":{{"attach":"{a}","direction":"DMA_BIDIRECTIONAL"}},"ret":"{sg}"',  # noqa: E501
                   _unlock(tk, b))
            kfence, kseq = w.new_fence(w.comp_ctx)
            yield f'{{"op":"dma_fence_init",{tk},"args":{{"fence":"{kfence}","context":{w.comp_ctx},"seqno":{kseq}}}'  # noqa: E501
            yield _signal(kfence)
            yield (_lock(tk, b),
                   f'{{"op":"dma_buf_unmap_attachment",{tk},"args":{{"attach":"{a}","sg_table":"{sg}","direction":"DMA_BIDIRECTIONAL"}}',  # noqa: E501
                   _unlock(tk, b))
            if rng.random() < 0.01:  # a screenshot: the compositor's kernel side reads the buffer with the CPU
                yield (f'{{"op":"dma_buf_begin_cpu_access",{tk},"args":{{"dmabuf":"{b}",'
                       f'"direction":"DMA_FROM_DEVICE"}},"ret":0')
                yield f'{{"op":"dma_buf_vmap_unlocked",{tk},"args":{{"dmabuf":"{b}"}},"ret":"{vaddr}"'  # noqa: E501
                yield f'{{"op":"cpu_access","kind":"annotation",{tk},"args":{{"dmabuf":"{b}","access":"read"}}'  # noqa: E501
                yield (f'{{"op":"dma_buf_vunmap_unlocked",{tk},"args":{{"dmabuf":"{b}",'
                       f'"map":"{vaddr}"}}')
                yield (f'{{"op":"dma_buf_end_cpu_access",{tk},"args":{{"dmabuf":"{b}",'
                       f'"direction":"DMA_FROM_DEVICE"}},"ret":0')
        # the swapchain is destroyed: the compositor releases its import, then the client its buffers
        for b, fd, kfd, a, _ in chain:
            yield (_lock(tk, b),
                   f'{{"op":"dma_buf_unpin",{tk},"args":{{"attach":"{a}"}}',
                   _unlock(tk, b))
            yield f'{{"op":"dma_buf_detach",{tk},"args":{{"dmabuf":"{b}","attach":"{a}"}}'
            yield f'{{"op":"dma_buf_put",{tk},"args":{{"dmabuf":"{b}"}}'
            yield _close(tk, kfd)
            kfds.put(kfd)
            yield _close(trender, fd)
            fds.put(fd)
        w.pool(-nb)
        if w.stopping:
            break
    yield _exit(tmain)


def encoder_session(w: World) -> Iterator[Item]:
    """A video encoder: the app fills frames through mmap, the kernel stamps an overlay with vmap, the codec reads."""
    rng = w.rng
    pid, main = w.new_process()
    enc = w.new_tid()
    tmain, tenc = who(main, pid, "ffmpeg"), who(enc, pid, "enc0:src")
    yield _clone(tmain, enc)
    fds = FdTable(4)
    ectx = w.new_fence_context()
    dev = rng.choice(CODEC_DEVS)
    qlock = w.codec_locks[dev]
    exporter = rng.choice(GPU_EXPORTERS)
    generations = rng.randint(3, 10)
    for _ in range(generations):
        size = rng.choice(NV12_SIZES)
        nb = rng.choice((2, 3, 4))
        pool = []
        w.pool(nb)
        for _ in range(nb):
            b, fd, a, addr, vaddr = w.new_buf(), fds.get(), w.new_att(), w.new_uaddr(), w.new_vaddr()
            yield _export(tmain, b, exporter, size)
            yield f'{{"op":"dma_buf_fd",{tmain},"args":{{"dmabuf":"{b}","flags":{O_CLOEXEC | O_RDWR}}},"ret":{fd}'  # noqa: E501
            yield (f'{{"op":"ioctl","kind":"syscall",{tmain},"args":{{"fd":{fd},'
                   f'"cmd":"DMA_BUF_SET_NAME_B","name":"enc-input"}},"ret":0')
            yield (f'{{"op":"mmap","kind":"syscall",{tmain},"args":{{"fd":{fd},"length":{size},'
                   f'"offset":0,"prot":{PROT_RW},"flags":{MAP_SHARED}}},"ret":"{addr}"')
            yield f'{{"op":"dma_buf_get",{tenc},"args":{{"fd":{fd}}},"ret":"{b}"'
            yield f'{{"op":"dma_buf_attach",{tenc},"args":{{"dmabuf":"{b}","dev":"{dev}"}},"ret":"{a}"'  # noqa: E501
            pool.append((b, fd, a, addr, vaddr))
        frames = rng.randint(100, 500)
        for f in range(frames):
            if w.stopping:
                break
            b, fd, a, addr, vaddr = pool[f % nb]
            # The frames cross a V4L2 mem2mem encoder: the app queues raw frames on its OUTPUT queue, the
            # encoder thread (the encoder element's task) queues and dequeues bitstream buffers on its
            # CAPTURE queue.  Both queues of an m2m context run their ioctls under one lock (m2m_ctx->q_lock,
            # hantro's per-device vpu_mutex), so each hand-off is ordered by that lock.  Before refilling a
            # buffer the app gets it back with VIDIOC_DQBUF(OUTPUT), which returns it only once the job that
            # read it is done and its bitstream dequeued (below).
            if f >= nb:
                yield (_mutex(tmain, qlock, CODEC_QUEUE_LOCK), _mutex_unlock(tmain, qlock))
            # the app writes the raw frame
            yield _sync(tmain, fd, SYNC_WRITE)
            yield f'{{"op":"mmap_access","kind":"annotation",{tmain},"args":{{"addr":"{addr}","access":"write"}}'  # noqa: E501
            yield _sync(tmain, fd, SYNC_END | SYNC_WRITE)
            # VIDIOC_QBUF(OUTPUT) of the filled frame; then the encoder thread's VIDIOC_QBUF(CAPTURE) of an
            # empty bitstream buffer, which schedules the job (v4l2_m2m_try_schedule) on that frame
            yield (_mutex(tmain, qlock, CODEC_QUEUE_LOCK), _mutex_unlock(tmain, qlock))
            yield (_mutex(tenc, qlock, CODEC_QUEUE_LOCK), _mutex_unlock(tenc, qlock))
            if rng.random() < 0.1:  # the driver stamps a timestamp overlay with the CPU
                yield (f'{{"op":"dma_buf_begin_cpu_access",{tenc},"args":{{"dmabuf":"{b}",'
                       f'"direction":"DMA_BIDIRECTIONAL"}},"ret":0')
                yield f'{{"op":"dma_buf_vmap_unlocked",{tenc},"args":{{"dmabuf":"{b}"}},"ret":"{vaddr}"'  # noqa: E501
                yield f'{{"op":"cpu_access","kind":"annotation",{tenc},"args":{{"dmabuf":"{b}","access":"rw"}}'  # noqa: E501
                yield (f'{{"op":"dma_buf_vunmap_unlocked",{tenc},"args":{{"dmabuf":"{b}",'
                       f'"map":"{vaddr}"}}')
                yield (f'{{"op":"dma_buf_end_cpu_access",{tenc},"args":{{"dmabuf":"{b}",'
                       f'"direction":"DMA_BIDIRECTIONAL"}},"ret":0')
            # the codec maps the frame under the reservation lock (interruptible: now and then a signal)
            sg = w.new_sg()
            lock: tuple[str, ...] = ()
            if rng.random() < 0.03:
                lock = (f'{{"op":"dma_resv_lock_interruptible",{tenc},"args":{{"obj":"{b}"}},'
                        f'"ret":-{EINTR}',)
            yield (*lock, _lock(tenc, b, "dma_resv_lock_interruptible"),
                   f'{{"op":"dma_buf_map_attachment",{tenc},"args":{{"attach":"{a}","direction":"DMA_TO_DEVICE"}},"ret":"{sg}"',  # noqa: E501
                   _unlock(tenc, b))
            fence, seq = w.new_fence(ectx)
            yield f'{{"op":"dma_fence_init",{tenc},"args":{{"fence":"{fence}","context":{ectx},"seqno":{seq}}}'  # noqa: E501
            yield _signal(fence)
            yield (_lock(tenc, b),
                   f'{{"op":"dma_buf_unmap_attachment",{tenc},"args":{{"attach":"{a}","sg_table":"{sg}","direction":"DMA_TO_DEVICE"}}',  # noqa: E501
                   _unlock(tenc, b))
            # the job is done (v4l2_m2m_buf_done on both buffers): the encoder thread's VIDIOC_DQBUF(CAPTURE)
            # of the bitstream, under the context's lock, before the app's VIDIOC_DQBUF(OUTPUT) of the frame
            yield (_mutex(tenc, qlock, CODEC_QUEUE_LOCK), _mutex_unlock(tenc, qlock))
        for b, fd, a, addr, _ in pool:
            yield f'{{"op":"dma_buf_detach",{tenc},"args":{{"dmabuf":"{b}","attach":"{a}"}}'
            yield f'{{"op":"dma_buf_put",{tenc},"args":{{"dmabuf":"{b}"}}'
            yield f'{{"op":"munmap","kind":"syscall",{tmain},"args":{{"addr":"{addr}","length":{size}}},"ret":0'  # noqa: E501
            yield _close(tmain, fd)
            fds.put(fd)
        w.pool(-nb)
        if w.stopping:
            break
    yield _exit(tmain)


SESSION_KINDS = ((camera_session, 0.4), (wayland_session, 0.4), (encoder_session, 0.2))
HEADER = ('{"format":"dmaspec-trace","version":1,"profile":"latest",'
          '"source":{"generator":"bench/replay.py","seed":%d}}\n')


def generate(path: str, n_events: int, *, seed: int = 2024, concurrent: int = 16) -> Stats:
    """Write a correct trace of exactly ``n_events`` events to ``path``, streaming.

    ``concurrent`` sessions run at once; when one ends another starts, until
    the trace is nearly long enough; then every session winds down (releases
    everything, exits), the compositor waits for vblanks until the count is
    reached, and exits last.
    """
    w = World(seed)
    rng = w.rng
    kinds = [k for k, _ in SESSION_KINDS]
    weights = [p for _, p in SESSION_KINDS]

    def new_session() -> Iterator[Item]:
        kind = rng.choices(kinds, weights)[0]
        w.stats.sessions[kind.__name__] = w.stats.sessions.get(kind.__name__, 0) + 1
        return kind(w)

    active = [new_session() for _ in range(concurrent)]
    deltas = [rng.randint(1, 40) for _ in range(4096)]  # microseconds between events
    t = 4_170_000_000  # the trace starts at 4170 s of uptime, in microseconds
    di = 0
    out: list[str] = []
    app = out.append
    written = 0
    rnd = rng.random
    # a session winds down in about 30 events (100 at worst: caught setting up a pool of 8 buffers), so
    # new work stops this far from the end; the compositor's vblanks fill what the wind-down leaves
    margin = min(100 * concurrent, n_events // 2)
    with open(path, "w", encoding="ascii", buffering=1 << 20) as fh:
        fh.write(HEADER % seed)
        for phase in (0, 1):
            limit = n_events - margin if phase == 0 else n_events
            while active and written < limit:
                i = int(rnd() * len(active))
                try:
                    item = next(active[i])
                except StopIteration:
                    if phase == 0:
                        active[i] = new_session()
                    else:
                        active[i] = active[-1]
                        active.pop()
                    continue
                if item.__class__ is str:
                    t += deltas[di & 4095]
                    di += 1
                    app(f'{item},"ts":{t // 1000000}.{t % 1000000:06d}}}\n')
                    written += 1
                else:
                    for body in item:
                        t += deltas[di & 4095]
                        di += 1
                        app(f'{body},"ts":{t // 1000000}.{t % 1000000:06d}}}\n')
                    written += len(item)
                if len(out) >= 8192:
                    fh.write("".join(out))
                    out.clear()
            w.stopping = True
        if active:
            raise RuntimeError(f"the sessions did not wind down within {margin} events; raise the margin")
        # the compositor keeps presenting until the count is reached, then exits
        tk = w.comp_who
        while written < n_events - 1:
            left = n_events - 1 - written
            if left == 1:
                bodies = [f'{{"op":"marker","kind":"annotation",{tk},"args":{{"text":"idle"}}']
            else:
                fence, seq = w.new_fence(w.comp_ctx)
                bodies = [f'{{"op":"dma_fence_init",{tk},"args":{{"fence":"{fence}",'
                          f'"context":{w.comp_ctx},"seqno":{seq}}}', _signal(fence)]
                if left % 2:  # an odd count: the compositor also waits for this vblank
                    bodies.insert(1, f'{{"op":"dma_fence_wait_timeout",{tk},'
                                     f'"args":{{"fence":"{fence}","intr":1,"timeout":16}},"ret":16')
            for body in bodies:
                t += deltas[di & 4095]
                di += 1
                app(f'{body},"ts":{t // 1000000}.{t % 1000000:06d}}}\n')
                written += 1
        t += deltas[di & 4095]
        app(f'{_exit(tk)},"ts":{t // 1000000}.{t % 1000000:06d}}}\n')
        written += 1
        fh.write("".join(out))
    stats = w.finish_stats()
    stats.events = written
    return stats


def write_prefix(src: str, dst: str, n_events: int) -> None:
    """The header and the first ``n_events`` events of ``src`` (a partial trace: checked without leaks)."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        fout.write(fin.readline())  # the header
        left = n_events
        while left > 0:
            block = fin.read(1 << 20)
            if not block:
                break
            lines = block.count(b"\n")
            if lines >= left:
                cut = -1
                for _ in range(left):
                    cut = block.index(b"\n", cut + 1)
                fout.write(block[:cut + 1])
                break
            # a partial last line is finished by the next block
            fout.write(block)
            left -= lines


# -- ftrace text ----------------------------------------------------------------------------
#
# The same kind of work as a stock kernel records it: kprobe and kretprobe events on the dma-buf
# core in the shapes of the real 6.12 recordings (BTF-named fields, ``( tgid)`` column, 5-character
# flags, the probe definitions of traces/record/ftrace-setup.sh), with ``function`` tracer lines in
# between.  Each process exports a pool of buffers, links each one's ``struct file`` (``file=`` on
# the export's return probe), installs an fd, seeks and maps it; its render thread imports them
# (dma_buf_get, an attach the core turns into a dynamic attach) and maps and unmaps them per frame
# while the main thread brackets CPU writes with DMA_BUF_IOCTL_SYNC; then everything is unmapped,
# detached, put and closed.  Fresh pointers for every buffer, attachment and sg_table.

FTRACE_CAP = 1_000_000  # kprobe events of the ftrace row at most (at larger sizes, this many)
FTRACE_QUICK = 20_000  # the ftrace row's size in --quick
MIXED_CAP = 200_000  # frames of the mixed row at most (a frame: two SYNC ioctls, seen by both recordings)
MIXED_QUICK = 2_000
FTRACE_HEADER = """\
# tracer: function
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
# (main thread, render thread, exporter, where dma_buf_export returns to, where dma_buf_fd returns to)
FTRACE_APPS = (("camera-hal", "Render Thread", "system", "system_heap_allocate+0x11a/0x400",
                "dma_heap_ioctl+0x146/0x300"),
               ("dmabuf-exercise", "dmabuf-exercise", "udmabuf", "udmabuf_create+0x49e/0x650",
                "udmabuf_create+0x4bd/0x650"),
               ("weston", "weston:gl0", "drm", "drm_gem_dmabuf_export+0x18/0x90 [drm]",
                "drm_gem_prime_handle_to_fd+0xa5/0x280 [drm]"))


@dataclass
class FtraceStats:
    kprobes: int = 0  # kprobe and kretprobe lines: the size the row is named by
    lines: int = 0  # every event line (kprobes, function tracer lines, the marker)
    buffers: int = 0


def ftrace_session(w: World, st: FtraceStats) -> Iterator[list[tuple[str, str, str]]]:
    """One process: a pool of buffers through their whole life.  Yields steps: (thread, flags, event) lines."""
    rng = w.rng
    pid, main = w.new_process()
    render = w.new_tid()
    comm, rcomm, exporter, export_site, fd_site = rng.choice(FTRACE_APPS)
    me = f" {comm}-{main:<7} ({pid:>7}) [{rng.randrange(8):03d}]"
    rt = f" {rcomm}-{render:<7} ({pid:>7}) [{rng.randrange(8):03d}]"
    fds = FdTable(5)
    dev = rng.choice(('"vgem"', '"0000:03:00.0"', '"i915"'))
    arg = f"0x7ffc{rng.randrange(1 << 24):06x}0"
    for _ in range(rng.randint(2, 6)):
        size = rng.choice(NV12_SIZES)
        pool = []
        for _ in range(rng.choice((2, 3, 4))):
            st.buffers += 1
            n = st.buffers
            b, a, fd = w.new_buf(), w.new_att(), fds.get()
            file, inode = f"0xffff8886{n * 0x100:08x}", f"0xffff8887{n * 0x200:08x}"
            dentry = f"0xffff8888{n * 0xc0:08x}"
            va = w.new_uaddr()
            yield [(me, "...1.", f"dma_buf_export: (dma_buf_export+0x4/0x2c0) exp_name=\"{exporter}\" size={size} "
                                 "flags=0x2 ops=0xffffffff82935120 priv=0xff196cf64232d880"),
                   (me, "...1.", f"dma_buf_export <-{export_site.split('+')[0]}"),
                   (me, ".....", "dma_resv_init <-dma_buf_export"),
                   (me, ".....", f"dma_buf_export_ret: ({export_site} <- dma_buf_export) ret={b} size={size} "
                                 f"exp_name=\"{exporter}\" file={file}"),
                   (me, "...1.", f"dma_buf_fd: (dma_buf_fd+0x4/0x50) dmabuf={b} size={size} exp_name=\"{exporter}\" "
                                 "flags=0x80002"),
                   (me, "...1.", f"dma_buf_fd <-{fd_site.split('+')[0]}"),
                   (me, ".....", f"dma_buf_fd_ret: ({fd_site} <- dma_buf_fd) ret={fd}")]
            yield [(me, "...1.", f"dma_buf_llseek: (dma_buf_llseek+0x4/0x70) file={file} offset=0 whence=2"),
                   (me, ".....", f"dma_buf_llseek_ret: (ksys_lseek+0x69/0xb0 <- dma_buf_llseek) ret={size}"),
                   (me, "...1.", f"dma_buf_mmap_internal: (dma_buf_mmap_internal+0x4/0x50) file={file} "
                                 f"vm_start={va} vm_end=0x{int(va, 16) + size:x} vm_pgoff=0"),
                   (me, ".....", "dma_buf_mmap_internal_ret: (mmap_region+0x5a1/0xa60 <- dma_buf_mmap_internal) ret=0")]
            yield [(rt, "...1.", f"dma_buf_get: (dma_buf_get+0x4/0x50) fd={fd}"),
                   (rt, "...1.", "dma_buf_get <-drm_gem_prime_fd_to_handle"),
                   (rt, ".....", f"dma_buf_get_ret: (drm_gem_prime_fd_to_handle+0x27/0x210 [drm] <- dma_buf_get) "
                                 f"ret={b}"),
                   (rt, "...1.", f"dma_buf_attach: (dma_buf_attach+0x4/0x20) dmabuf={b} dev={dev}"),
                   (rt, "...1.", f"dma_buf_dynamic_attach: (dma_buf_dynamic_attach+0x4/0x260) dmabuf={b} dev={dev} "
                                 "importer_ops=0x0"),
                   (rt, "...1.", "dma_buf_dynamic_attach <-[unknown/kretprobe'd]"),
                   (rt, ".....", f"dma_buf_dynamic_attach_ret: ([unknown/kretprobe'd] <- dma_buf_dynamic_attach) "
                                 f"ret={a}"),
                   (rt, ".....", f"dma_buf_attach_ret: (drm_gem_prime_import_dev+0x44/0x170 [drm] <- dma_buf_attach) "
                                 f"ret={a}")]
            st.kprobes += 16
            st.lines += 21
            pool.append((b, a, fd, file, inode, dentry))
        for f in range(rng.randint(5, 40)):
            if w.stopping and f:
                break
            b, a, fd, file, _, _ = pool[f % len(pool)]
            sg = w.new_sg()
            yield [(rt, "...1.", f"dma_buf_map_attachment_unlocked: (dma_buf_map_attachment_unlocked+0x4/0x70) "
                                 f"attach={a} direction=0"),
                   (rt, "...1.", f"dma_buf_map_attachment: (dma_buf_map_attachment+0x4/0xf0) attach={a} direction=0"),
                   (rt, ".....", f"dma_buf_map_attachment_ret: (dma_buf_map_attachment_unlocked+0x37/0x70 <- "
                                 f"dma_buf_map_attachment) ret={sg} nents=4 orig_nents=4"),
                   (rt, ".....", f"dma_buf_map_attachment_unlocked_ret: (drm_gem_prime_import_dev+0x70/0x170 [drm] <- "
                                 f"dma_buf_map_attachment_unlocked) ret={sg}")]
            yield [(me, "...1.", f"dma_buf_ioctl: (dma_buf_ioctl+0x4/0x410) file={file} cmd=0x40086200 arg={arg} "
                                 "flags=0x2"),
                   (me, "...1.", "dma_buf_ioctl <-__x64_sys_ioctl"),
                   (me, "...1.", f"dma_buf_begin_cpu_access: (dma_buf_begin_cpu_access+0x4/0x70) dmabuf={b} "
                                 "direction=1"),
                   (me, ".....", "system_heap_dma_buf_begin_cpu_access <-dma_buf_begin_cpu_access"),
                   (me, ".....", "dma_buf_begin_cpu_access_ret: (dma_buf_ioctl+0x348/0x410 <- "
                                 "dma_buf_begin_cpu_access) ret=0"),
                   (me, ".....", "dma_buf_ioctl_ret: (__x64_sys_ioctl+0x97/0xc0 <- dma_buf_ioctl) ret=0"),
                   (me, "...1.", f"dma_buf_ioctl: (dma_buf_ioctl+0x4/0x410) file={file} cmd=0x40086200 arg={arg} "
                                 "flags=0x6"),
                   (me, ".....", "dma_buf_ioctl_ret: (__x64_sys_ioctl+0x97/0xc0 <- dma_buf_ioctl) ret=0")]
            yield [(rt, "...1.", f"dma_buf_unmap_attachment_unlocked: (dma_buf_unmap_attachment_unlocked+0x4/0x70) "
                                 f"attach={a} sg_table={sg} direction=0"),
                   (rt, "...1.", f"dma_buf_unmap_attachment: (dma_buf_unmap_attachment+0x4/0x90) attach={a} "
                                 f"sg_table={sg} direction=0")]
            st.kprobes += 12
            st.lines += 14
        for b, a, fd, file, inode, dentry in pool:
            yield [(rt, "...1.", f"dma_buf_detach: (dma_buf_detach+0x4/0xd0) dmabuf={b} attach={a}"),
                   (rt, "...1.", "dma_buf_detach <-drm_prime_gem_destroy"),
                   (rt, "...1.", f"dma_buf_put: (dma_buf_put+0x4/0x30) dmabuf={b} exp_name=\"{exporter}\"")]
            yield [(me, "...1.", f"dma_buf_file_release: (dma_buf_file_release+0x4/0x80) inode={inode} file={file}"),
                   (me, "...1.", "dma_buf_file_release <-__fput"),
                   (me, "...1.", f"dma_buf_release: (dma_buf_release+0x4/0x90) dentry={dentry}"),
                   (me, "...1.", "dma_buf_release <-__dentry_kill")]
            fds.put(fd)
            st.kprobes += 4
            st.lines += 7
        if w.stopping:
            return


def generate_ftrace(path: str, n_kprobes: int, *, seed: int = 2024, concurrent: int = 16) -> FtraceStats:
    """Write a correct ftrace text trace of about ``n_kprobes`` kprobe events (a few more: every process winds down)."""
    w = World(seed)
    st = FtraceStats()
    rng = w.rng
    active = [ftrace_session(w, st) for _ in range(concurrent)]
    deltas = [rng.randint(1, 40) for _ in range(4096)]
    t = 4_170_000_000
    di = 0
    out: list[str] = []
    app = out.append
    rnd = rng.random
    with open(path, "w", encoding="ascii", buffering=1 << 20) as fh:
        fh.write(FTRACE_HEADER)
        fh.write(f" {'gnome-shell':>16}-{w.comp_tid:<7} ({w.comp_pid:>7}) [000] ..... {t / 1e6:12.6f}: "
                 "tracing_mark_write: dmaspec: kernel=6.12.57-amd64\n")
        st.lines += 1
        while active:
            if st.kprobes >= n_kprobes:
                w.stopping = True
            i = int(rnd() * len(active))
            try:
                step = next(active[i])
            except StopIteration:
                if w.stopping:
                    active[i] = active[-1]
                    active.pop()
                else:
                    active[i] = ftrace_session(w, st)
                continue
            for who_, flags, event in step:
                t += deltas[di & 4095]
                di += 1
                app(f"{who_} {flags} {t // 1000000:>5}.{t % 1000000:06d}: {event}\n")
            if len(out) >= 8192:
                fh.write("".join(out))
                out.clear()
        fh.write("".join(out))
    return st


# -- measurements, each in a fresh subprocess ----------------------------------------------
#
# Peak memory is the child's own ru_maxrss (getrusage(RUSAGE_SELF) at its end).
# The parent's getrusage(RUSAGE_CHILDREN).ru_maxrss is the maximum over *all*
# children reaped so far, so after the 10M run every later figure would read
# the same: it cannot separate measurements; the child's own figure can.
# ``rss0`` is the high-water mark after the imports, before the run.

_PRELUDE = """
import gc, json, resource, sys, time
sys.path.insert(0, {root!r})
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
"""

DECODE_CHILD = _PRELUDE + """
import msgspec
typed = sys.argv[2] == "typed"
if typed:
    from checker.engines.runtime import load_module
    from spec import profile
    decode = load_module(profile("latest")).DECODER.decode_lines
else:
    decode = msgspec.json.Decoder().decode_lines
rss0 = peak()
BLOCK = 1 << 20
c0 = time.process_time()
t0 = time.perf_counter()
gc.disable()  # as the executor does
n = 0
with open(sys.argv[1], "rb") as f:
    f.readline()  # the header: the executor reads it apart from the events
    rest = b""
    while True:
        block = f.read(BLOCK)
        if not block:
            if rest.strip():
                n += len(decode(rest))
            break
        buf = rest + block if rest else block
        cut = buf.rfind(b"\\n")
        if cut < 0:
            rest = buf
            continue
        chunk, rest = buf[:cut + 1], buf[cut + 1:]
        n += len(decode(chunk))
dt = time.perf_counter() - t0
print(json.dumps({{"seconds": dt, "cpu": time.process_time() - c0, "events": n, "rss0": rss0, "peak": peak()}}))
"""

CHECK_CHILD = _PRELUDE + """
from checker.api import check_file
rss0 = peak()
c0 = time.process_time()
t0 = time.perf_counter()
r = check_file(sys.argv[1], engine=sys.argv[2], check_leaks=sys.argv[3] == "1")
dt = time.perf_counter() - t0
print(json.dumps({{"seconds": dt, "cpu": time.process_time() - c0, "events": r.events, "rss0": rss0, "peak": peak(),
                  "findings": [[f.rule, f.line] for f in r.findings[:20]], "n_findings": len(r.findings),
                  "withheld": dict(r.withheld), "errors": [str(e) for e in r.errors[:5]],
                  "ignored": dict(r.ignored), "reused": r.reused, "gaps": len(r.gaps)}}))
"""

PROFILE_CHILD = _PRELUDE + """
import cProfile, io, pstats
from checker.api import read_header
from checker.engines.runtime import CompiledExecutor
from spec import profile
path = sys.argv[1]
prof = cProfile.Profile()
with open(path, "rb") as stream:
    header, pending, consumed = read_header(stream, path)
    ex = CompiledExecutor(profile("latest"), path)
    prof.enable()
    ex.run(stream, first_line=consumed, prefix=pending)
    r = ex.finish()
    prof.disable()
s = io.StringIO()
pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(15)
print(s.getvalue())
print("rows per table at the end (live / all):")
for name, table in ex.tables.items():
    if table:
        live = sum(1 for row in table.values() if row[0])
        print(f"  {{name:14}} {{live:>9,}} / {{len(table):>9,}}")
print(f"events {{r.events:,}}, findings {{len(r.findings)}}")
"""


MIXED_CHILD = _PRELUDE + """
from checker.api import check_join
rss0 = peak()
c0 = time.process_time()
t0 = time.perf_counter()
r = check_join(sys.argv[1:3])
dt = time.perf_counter() - t0
print(json.dumps({{"seconds": dt, "cpu": time.process_time() - c0, "events": r.events, "rss0": rss0, "peak": peak(),
                  "findings": [[f.rule, f.line] for f in r.findings[:20]], "n_findings": len(r.findings),
                  "withheld": dict(r.withheld), "errors": [str(e) for e in r.errors[:5]],
                  "notes": [n for n in r.conversion_notes if n.startswith(("joined", "seen by both"))]}}))
"""

STARTUP_CHILD = _PRELUDE + """
t0 = time.perf_counter()
from checker.api import check_file
t1 = time.perf_counter()
r = check_file(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "first_call": t2 - t1, "events": r.events}}))
"""


def run_child(code: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", code.format(root=ROOT), *args], capture_output=True, text=True,
                          cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement failed ({' '.join(args)}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def check_clean(name: str, m: dict[str, Any],
                keys: tuple[str, ...] = ("n_findings", "withheld", "errors", "ignored", "reused", "gaps")) -> None:
    """The one assertion of this benchmark: the generated trace checks clean."""
    problems = {k: m[k] for k in keys if m[k]}
    if problems:
        raise AssertionError(f"{name}: the generated trace does not check clean: {problems}; "
                             f"first findings: {m['findings']}")


# -- the report ------------------------------------------------------------------------------

def fmt_n(n: float) -> str:
    return f"{n:,.0f}"


def mb(v: float) -> str:
    return f"{v:,.0f} MB"


@dataclass
class SizeResult:
    events: int
    file_mb: float
    gen_seconds: float
    stats: Stats
    decode: dict[str, Any]
    typed: dict[str, Any]
    compiled: dict[str, Any]
    interp: dict[str, Any]
    interp_events: int
    startup: dict[str, Any]
    ftrace: FtraceResult | None = None
    mixed: MixedResult | None = None

    @property
    def compiled_rate(self) -> float:
        return float(self.compiled["events"] / self.compiled["seconds"])

    @property
    def interp_rate(self) -> float:
        return float(self.interp["events"] / self.interp["seconds"])


@dataclass
class FtraceResult:
    stats: FtraceStats
    file_mb: float
    gen_seconds: float
    check: dict[str, Any]


@dataclass
class MixedResult:
    frames: int
    kernel_lines: int
    strace_lines: int
    file_mb: float
    check: dict[str, Any]


def measure_mixed(frames: int, workdir: str, seed: int, keep: bool) -> MixedResult:
    """check_join() on a kernel trace and an strace of one run of ``frames`` frames (bench/mixed.py)."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from bench.mixed import write_pair

    kernel = os.path.join(workdir, f"mixed-{frames}.ftrace")
    strace = os.path.join(workdir, f"mixed-{frames}.strace")
    pair = write_pair(kernel, strace, frames, seed=seed)
    file_mb = (os.path.getsize(kernel) + os.path.getsize(strace)) / 1e6
    print(f"[mixed, {fmt_n(frames)} frames] generated {kernel} and {strace} ({file_mb:,.0f} MB)", flush=True)
    check = run_child(MIXED_CHILD, kernel, strace)
    # (an strace has system calls on other files, which the checker ignores: not a problem here)
    check_clean(f"{kernel} + {strace} (joined)", check, ("n_findings", "withheld", "errors"))
    if not keep:
        os.unlink(kernel)
        os.unlink(strace)
    return MixedResult(pair.frames, pair.kernel_lines, pair.strace_lines, file_mb, check)


def measure_ftrace(n_kprobes: int, workdir: str, seed: int, keep: bool) -> FtraceResult:
    """check_file() on an ftrace text trace of about ``n_kprobes`` kprobe events (compiled engine)."""
    path = os.path.join(workdir, f"replay-{n_kprobes}-kprobes.ftrace.txt")
    t0 = time.perf_counter()
    stats = generate_ftrace(path, n_kprobes, seed=seed)
    gen_seconds = time.perf_counter() - t0
    file_mb = os.path.getsize(path) / 1e6
    print(f"[ftrace text, {fmt_n(stats.kprobes)} kprobe events] generated {path} ({file_mb:,.0f} MB) in "
          f"{gen_seconds:.1f} s", flush=True)
    check = run_child(CHECK_CHILD, path, "compiled", "1")
    check_clean(f"{path} (ftrace text, compiled)", check)
    if not check["events"]:
        raise AssertionError(f"{path}: the ftrace reader converted no event")
    if not keep:
        os.unlink(path)
    return FtraceResult(stats, file_mb, gen_seconds, check)


def measure_size(n: int, workdir: str, seed: int) -> SizeResult:
    path = os.path.join(workdir, f"replay-{n}.jsonl")
    t0 = time.perf_counter()
    stats = generate(path, n, seed=seed)
    gen_seconds = time.perf_counter() - t0
    file_mb = os.path.getsize(path) / 1e6
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n[{fmt_n(n)} events] generated {path} ({file_mb:,.0f} MB) in {gen_seconds:.1f} s; "
          f"load average {load} on {os.cpu_count()} CPUs before measuring", flush=True)

    tiny = os.path.join(workdir, f"replay-{n}-first-10.jsonl")
    write_prefix(path, tiny, 10)
    startup = run_child(STARTUP_CHILD, tiny)
    os.unlink(tiny)
    decode = run_child(DECODE_CHILD, path, "generic")
    typed = run_child(DECODE_CHILD, path, "typed")
    compiled = run_child(CHECK_CHILD, path, "compiled", "1")
    check_clean(f"{path} (compiled)", compiled)
    if n > INTERPRETER_CAP:
        ipath = os.path.join(workdir, f"replay-{n}-first-{INTERPRETER_CAP}.jsonl")
        write_prefix(path, ipath, INTERPRETER_CAP)
        interp = run_child(CHECK_CHILD, ipath, "interpreter", "0")  # a prefix: objects are still live at its end
        check_clean(f"{ipath} (interpreter)", interp)
        os.unlink(ipath)
        interp_events = INTERPRETER_CAP
    else:
        interp = run_child(CHECK_CHILD, path, "interpreter", "1")
        check_clean(f"{path} (interpreter)", interp)
        interp_events = n
    for name, m in (("decode", decode), ("typed decode", typed), ("compiled", compiled)):
        if m["events"] != n:
            raise AssertionError(f"{name} saw {m['events']} events, expected {n}")
    return SizeResult(n, file_mb, gen_seconds, stats, decode, typed, compiled, interp, interp_events, startup)


def print_size(r: SizeResult) -> None:
    s = r.stats
    print(f"\n== {fmt_n(r.events)} events ({r.file_mb:,.0f} MB; {fmt_n(s.processes)} processes, "
          f"{fmt_n(s.buffers)} buffers, {fmt_n(s.attachments)} attachments, {fmt_n(s.mappings)} sg_tables, "
          f"{fmt_n(s.fences)} fences; at most {s.max_live_buffers} buffers live; generated in {r.gen_seconds:.1f} s)")
    print(f"{'':46}{'events':>11}{'wall':>9}{'events/s':>12}{'cpu':>9}{'peak RSS':>10}{'after imports':>15}")
    rows = [
        ("read + decode (msgspec.json.Decoder())", r.decode),
        ("read + decode (typed, the executor's DECODER)", r.typed),
        ("compiled executor, check_file()", r.compiled),
        ("interpreter" + (f", first {fmt_n(r.interp_events)} events only" if r.interp_events < r.events else ""),
         r.interp),
    ]
    for label, m in rows:
        rate = m["events"] / m["seconds"]
        print(f"{label:46}{fmt_n(m['events']):>11}{m['seconds']:>8.2f}s{fmt_n(rate):>12}{m['cpu']:>8.2f}s"
              f"{mb(m['peak']):>10}{mb(m['rss0']):>15}")
    note = " (interpreter rate measured on the prefix)" if r.interp_events < r.events else ""
    if r.ftrace is not None:
        ft, m = r.ftrace, r.ftrace.check
        rate = ft.stats.kprobes / m["seconds"]
        label = "ftrace text (kprobe events), check_file()"
        print(f"{label:46}{fmt_n(ft.stats.kprobes):>11}{m['seconds']:>8.2f}s{fmt_n(rate):>12}{m['cpu']:>8.2f}s"
              f"{mb(m['peak']):>10}{mb(m['rss0']):>15}")
    if r.mixed is not None:
        mx, m = r.mixed, r.mixed.check
        lines = mx.kernel_lines + mx.strace_lines
        label = "ftrace + strace joined, check_join()"
        print(f"{label:46}{fmt_n(lines):>11}{m['seconds']:>8.2f}s{fmt_n(lines / m['seconds']):>12}{m['cpu']:>8.2f}s"
              f"{mb(m['peak']):>10}{mb(m['rss0']):>15}")
    print(f"compiled / interpreter: {r.compiled_rate / r.interp_rate:.1f}x{note}")
    if r.ftrace is not None:
        ft, m = r.ftrace, r.ftrace.check
        capped = " (capped: fewer events than the rows above)" if ft.stats.kprobes < r.events else ""
        print(f"ftrace text{capped}: {fmt_n(ft.stats.kprobes)} kprobe events and "
              f"{fmt_n(ft.stats.lines - ft.stats.kprobes)} other lines (function tracer, the kernel marker; "
              f"{ft.file_mb:,.0f} MB, {fmt_n(ft.stats.buffers)} buffers) became {fmt_n(m['events'])} canonical "
              f"events: {fmt_n(ft.stats.lines / m['seconds'])} lines/s, {fmt_n(m['events'] / m['seconds'])} "
              "canonical events/s, end to end through the reader")
    if r.mixed is not None:
        mx, m = r.mixed, r.mixed.check
        print(f"mixed: {fmt_n(mx.frames)} frames as {fmt_n(mx.kernel_lines)} kernel trace lines and "
              f"{fmt_n(mx.strace_lines)} strace lines ({mx.file_mb:,.0f} MB), each read twice (alignment, merge), "
              f"became {fmt_n(m['events'])} joined events: {fmt_n((mx.kernel_lines + mx.strace_lines) / m['seconds'])} "
              f"recording lines/s, {fmt_n(m['events'] / m['seconds'])} joined events/s")
        for line in m["notes"]:
            print(f"  {line}")
    print(f"fixed cost in the compiled figure: {r.startup['first_call']:.2f} s for the first check_file() of a "
          f"process (a 10-event trace; loading the generated module), besides {r.startup['import']:.2f} s to import "
          "checker.api (not timed)")
    print(f"decoding alone is {100 * r.typed['seconds'] / r.compiled['seconds']:.0f}% of the compiled run "
          f"(typed decoder), {100 * r.decode['seconds'] / r.compiled['seconds']:.0f}% with the generic one")


def print_goals(results: list[SizeResult]) -> None:
    print("\n== goals (figures, not assertions)")
    rows: list[tuple[str, str, bool | None]] = []

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "NOT MET")

    stated = [r for r in results if r.events == 1_000_000]
    for r in stated or results[:1]:
        note = "" if stated else f" (indicative: measured on {fmt_n(r.events)})"
        rows.append((f"compiled >= {fmt_n(GOAL_COMPILED_RATE)} events/s on 1M{note}",
                     f"{fmt_n(r.compiled_rate)} events/s", r.compiled_rate >= GOAL_COMPILED_RATE))
    for r in results:
        ratio = r.compiled_rate / r.interp_rate
        where = fmt_n(r.events) + (f"; interpreter on the first {fmt_n(r.interp_events)}"
                                   if r.interp_events < r.events else "")
        rows.append((f"compiled >= {GOAL_SPEEDUP:.0f}x interpreter ({where})", f"{ratio:.1f}x", ratio >= GOAL_SPEEDUP))
    for r in results:
        if r.events == 10_000_000:
            secs, peak = r.compiled["seconds"], r.compiled["peak"]
            rows.append((f"10M in <= {GOAL_10M_SECONDS:.0f} s", f"{secs:.1f} s", secs <= GOAL_10M_SECONDS))
            rows.append((f"10M peak RSS <= {GOAL_PEAK_MB:.0f} MB", mb(peak), peak <= GOAL_PEAK_MB))
    if len(results) >= 2:
        small, large = results[0], results[-1]
        growth = large.compiled["peak"] / small.compiled["peak"]
        rows.append((f"compiled peak memory not growing with length ({fmt_n(small.events)} -> "
                     f"{fmt_n(large.events)}: ratio <= {GOAL_MEMORY_GROWTH})",
                     f"{mb(small.compiled['peak'])} -> {mb(large.compiled['peak'])} ({growth:.2f}x)",
                     growth <= GOAL_MEMORY_GROWTH))
    else:
        rows.append(("peak memory not growing with length", "needs two sizes", None))
    width = max(len(g) for g, _, _ in rows)
    for goal, figure, ok in rows:
        print(f"  {goal:{width}}  {figure:>28}  {verdict(ok)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000], metavar="N",
                    help="trace sizes, in events (default: 1000000 10000000)")
    ap.add_argument("--quick", action="store_true", help="100k events only (the smoke test)")
    ap.add_argument("--out", help="write the traces here (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the generated traces")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--profile", action="store_true",
                    help="also cProfile the compiled engine on the largest trace of at most 1M events")
    args = ap.parse_args(argv)
    sizes = [100_000] if args.quick else sorted(args.events)
    if any(n < 1000 for n in sizes):
        ap.error("--events: at least 1000 events")

    workdir = args.out or tempfile.mkdtemp(prefix="dmaspec-bench-")
    os.makedirs(workdir, exist_ok=True)
    print(f"dmaspec replay benchmark: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, traces in {workdir}")
    results: list[SizeResult] = []
    ftrace: dict[int, FtraceResult] = {}
    mixed: dict[int, MixedResult] = {}
    try:
        for n in sizes:
            r = measure_size(n, workdir, args.seed)
            n_kprobes = FTRACE_QUICK if args.quick else min(n, FTRACE_CAP)
            if n_kprobes not in ftrace:  # the row is capped: one measurement serves every larger size
                ftrace[n_kprobes] = measure_ftrace(n_kprobes, workdir, args.seed, args.keep)
            r.ftrace = ftrace[n_kprobes]
            frames = MIXED_QUICK if args.quick else min(n // 10, MIXED_CAP)
            if frames not in mixed:
                mixed[frames] = measure_mixed(frames, workdir, args.seed, args.keep)
            r.mixed = mixed[frames]
            print_size(r)
            results.append(r)
        print_goals(results)
        if args.profile:
            n = max([s for s in sizes if s <= 1_000_000] or [min(sizes)])
            print(f"\n== cProfile of the compiled engine on {fmt_n(n)} events (top 15 by tottime)")
            proc = subprocess.run([sys.executable, "-c", PROFILE_CHILD.format(root=ROOT),
                                   os.path.join(workdir, f"replay-{n}.jsonl")], capture_output=True, text=True,
                                  cwd=ROOT, check=True)
            print(proc.stdout)
    finally:
        if not args.keep:
            if args.out:
                for n in sizes:
                    p = os.path.join(workdir, f"replay-{n}.jsonl")
                    if os.path.exists(p):
                        os.unlink(p)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    print("\nall generated traces checked clean (no findings, nothing withheld, no input errors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
