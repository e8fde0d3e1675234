"""Named bounded configurations and the design scenarios, as data.

A configuration is a few actors (exporter, importer threads, userspace
processes), each a short program of calls, and a kernel profile.  The
explorers (``dmaspec explore``) run every interleaving of the programs
through the spec; a program never says what a rule is, only what a driver
or a process does.  Handles an actor makes contain its name
(``att.imp1``), so actors with the same program up to that name are
interchangeable (``Config.symmetric``).

- ``tiny``: one exporter hands a buffer to one importer, which maps it with
  the ``_unlocked`` calls.
- ``small``: two importers share the exporter's buffer and map it under the
  reservation lock (6.2+ convention); the exporter drops its reference at
  any point.
- ``ci``: ``small`` plus a userspace process that mmaps the buffer through an
  fd and brackets its access with ``DMA_BUF_IOCTL_SYNC``.
- ``large``: ``ci`` with a third importer (the benchmark's configuration).

The scenarios (``SCENARIOS``) answer questions the seeds argue about, each
with the outcome the tests hold it to.

>>> [c.name for c in CONFIGS]
['tiny', 'small', 'ci', 'large']
>>> scenario("rfc-2012").expect
'LOCK-DEADLOCK'
"""

from __future__ import annotations

from spec import kernel as K
from spec import rules as R
from spec.lang import Actor, Atomic, Config, EventKind, Goto, Instr, Scenario, Source, Step, step

SYSCALL = EventKind.SYSCALL
BIDI = "DMA_BIDIRECTIONAL"
SYNC = "DMA_BUF_IOCTL_SYNC"
SYNC_START_RW = K.SYNC_RW
SYNC_END_RW = K.SYNC_END | K.SYNC_RW


def _exporter(handoff: tuple[str, ...], *, extra_refs: int | None = None, before_put: tuple[Instr, ...] = (),
              buffer: str = "b1") -> Actor:
    """Exports ``buffer``, takes a reference for each actor it hands the buffer to, starts them, drops its own."""
    refs = len(handoff) if extra_refs is None else extra_refs
    program: list[Instr] = [step("dma_buf_export", buffer, exp_name="exp", size=4096)]
    program += [step("get_dma_buf", dmabuf=buffer) for _ in range(refs)]
    program.append(Step("marker", (("text", "handoff"),), kind=EventKind.ANNOTATION, spawns=handoff))
    program += [*before_put, step("dma_buf_put", dmabuf=buffer)]
    return Actor("exporter", 1, 1, tuple(program), "exporter")


def _importer_unlocked(name: str, tid: int, buffer: str = "b1") -> Actor:
    att, sgt = f"att.{name}", f"sgt.{name}"
    return Actor(name, tid, 1, (
        step("dma_buf_attach", att, dmabuf=buffer, dev=name),
        step("dma_buf_map_attachment_unlocked", sgt, attach=att, direction=BIDI),
        step("dma_buf_unmap_attachment_unlocked", attach=att, sg_table=sgt, direction=BIDI),
        step("dma_buf_detach", dmabuf=buffer, attach=att),
        step("dma_buf_put", dmabuf=buffer),
    ), "importer", started=False)


def _importer_locked(name: str, tid: int, buffer: str = "b1") -> Actor:
    att, sgt = f"att.{name}", f"sgt.{name}"
    return Actor(name, tid, 1, (
        step("dma_buf_attach", att, dmabuf=buffer, dev=name),
        step("dma_resv_lock", 0, obj=buffer),
        step("dma_buf_map_attachment", sgt, attach=att, direction=BIDI),
        step("dma_resv_unlock", obj=buffer),
        step("dma_resv_lock", 0, obj=buffer),
        step("dma_buf_unmap_attachment", attach=att, sg_table=sgt, direction=BIDI),
        step("dma_resv_unlock", obj=buffer),
        step("dma_buf_detach", dmabuf=buffer, attach=att),
        step("dma_buf_put", dmabuf=buffer),
    ), "importer", started=False)


def _mmap_user(pid: int) -> Actor:
    """A process that gets the buffer as fd 3 and reads and writes it through an mmap."""
    return Actor("user", pid, pid, (
        step("dma_buf_fd", 3, dmabuf="b1", flags=K.O_CLOEXEC),
        step("mmap", "0x7f0000", kind=SYSCALL, fd=3, length=4096),
        step("ioctl", 0, kind=SYSCALL, fd=3, cmd=SYNC, flags=SYNC_START_RW),
        step("mmap_access", kind=EventKind.ANNOTATION, addr="0x7f0000", access="rw"),
        step("ioctl", 0, kind=SYSCALL, fd=3, cmd=SYNC, flags=SYNC_END_RW),
        step("munmap", 0, kind=SYSCALL, addr="0x7f0000", length=4096),
        step("close", 0, kind=SYSCALL, fd=3),
    ), "userspace", started=False)


GUIDE = Source(R.SEED_GUIDE, "", "the importer's attach, map, unmap, detach sequence")
CONFIGS: tuple[Config, ...] = (
    Config("tiny", "latest", (_exporter(("imp1",)), _importer_unlocked("imp1", 11)),
           "one exporter hands its buffer to one importer, which maps it with the _unlocked calls", depth=10,
           sources=(GUIDE,)),
    Config("small", "latest",
           (_exporter(("imp1", "imp2")), _importer_locked("imp1", 11), _importer_locked("imp2", 12)),
           "two importers map one buffer under its reservation lock while the exporter drops its reference",
           depth=24, symmetric=(("imp1", "imp2"),), sources=(GUIDE, Source(R.DMABUF_C, "DOC: locking convention"))),
    Config("ci", "latest",
           (_exporter(("imp1", "imp2", "user")), _importer_locked("imp1", 11), _importer_locked("imp2", 12),
            _mmap_user(40)),
           "small, and a process that mmaps the buffer through an fd and brackets its access with SYNC",
           depth=32, symmetric=(("imp1", "imp2"),),
           sources=(GUIDE, Source(R.SEED_MMAP, "", "userspace mmap with SYNC brackets"))),
    Config("large", "latest",
           (_exporter(("imp1", "imp2", "imp3", "user")), _importer_locked("imp1", 11), _importer_locked("imp2", 12),
            _importer_locked("imp3", 13), _mmap_user(40)),
           "ci with a third importer: the benchmark's configuration", depth=60, symmetric=(("imp1", "imp2", "imp3"),),
           sources=(GUIDE,)),
)


# -- scenarios ------------------------------------------------------------------------------------------


def _rfc_processes(atomic: bool) -> tuple[Actor, ...]:
    """Process 10 exports buffers A and B as fds 3 and 4 and forks process 20; each prepares both, in
    opposite orders (or in one "prepare multiple" step), then finishes and closes them."""
    def prepare(fd: int) -> Step:
        return step("ioctl", 0, kind=SYSCALL, fd=fd, cmd="DMA_BUF_IOCTL_PREPARE_ACCESS")

    def finish(fd: int) -> Step:
        return step("ioctl", 0, kind=SYSCALL, fd=fd, cmd="DMA_BUF_IOCTL_FINISH_ACCESS")

    def body(first: int, second: int) -> tuple[Instr, ...]:
        both: tuple[Instr, ...] = ((Atomic((prepare(first), prepare(second))),) if atomic
                                   else (prepare(first), prepare(second)))
        return (*both, finish(second), finish(first), step("close", 0, kind=SYSCALL, fd=3),
                step("close", 0, kind=SYSCALL, fd=4))

    p1 = Actor("p1", 10, 10, (
        step("dma_buf_export", "A", exp_name="exp", size=4096), step("dma_buf_fd", 3, dmabuf="A"),
        step("dma_buf_export", "B", exp_name="exp", size=4096), step("dma_buf_fd", 4, dmabuf="B"),
        step("fork", 20, kind=SYSCALL, spawns=("p2",)),
        *body(3, 4)), "userspace")
    p2 = Actor("p2", 20, 20, body(4, 3), "userspace", started=False)
    return p1, p2


def _two_buffers(lock_a: tuple[Instr, ...], lock_b: tuple[Instr, ...]) -> tuple[Actor, ...]:
    """An exporter makes buffers A and B, starts threads t1 and t2, which run ``lock_a``/``lock_b`` on the
    buffers' reservation objects, and drops its references (the threads take the locks only)."""
    exporter = Actor("exporter", 1, 1, (
        step("dma_buf_export", "A", exp_name="exp", size=4096),
        step("dma_buf_export", "B", exp_name="exp", size=4096),
        Step("marker", (("text", "handoff"),), kind=EventKind.ANNOTATION, spawns=("t1", "t2")),
        step("dma_buf_put", dmabuf="A"),
        step("dma_buf_put", dmabuf="B"),
    ), "exporter")
    return exporter, Actor("t1", 11, 1, lock_a, "importer", False), Actor("t2", 12, 1, lock_b, "importer", False)


def _lock_two_no_ctx(first: str, second: str) -> tuple[Instr, ...]:
    return (step("dma_resv_lock", 0, obj=first), step("dma_resv_lock", 0, obj=second),
            step("dma_resv_unlock", obj=second), step("dma_resv_unlock", obj=first))


def _lock_two_ww(name: str, first: str, second: str) -> tuple[Instr, ...]:
    """Lock two reservation objects in a ww acquire context, backing off on -EDEADLK (ww_mutex.rst's loop):
    unlock what is held, sleep on the contended lock with the slow path, then take the other again."""
    ctx = f"ctx.{name}"
    deadlk = -K.EDEADLK
    return (
        step("ww_acquire_init", ctx=ctx, ww_class="reservation_ww_class"),
        step("dma_resv_lock", 0, obj=first, ctx=ctx),
        step("dma_resv_lock", 0, obj=second, ctx=ctx, on={deadlk: "back_off_second"}),
        step("ww_acquire_done", ctx=ctx, label="locked"),
        step("dma_resv_unlock", obj=second),
        step("dma_resv_unlock", obj=first),
        step("ww_acquire_fini", ctx=ctx),
        Goto("end"),
        step("dma_resv_unlock", obj=first, label="back_off_second"),
        step("dma_resv_lock_slow", obj=second, ctx=ctx),
        step("dma_resv_lock", 0, obj=first, ctx=ctx, on={deadlk: "back_off_first"}),
        Goto("locked"),
        step("dma_resv_unlock", obj=second, label="back_off_first"),
        step("dma_resv_lock_slow", obj=first, ctx=ctx),
        step("dma_resv_lock", 0, obj=second, ctx=ctx, on={deadlk: "back_off_second"}),
        Goto("locked"),
        step("marker", kind=EventKind.ANNOTATION, text="done", label="end"),
    )


def _vmap_user(name: str, tid: int) -> Actor:
    return Actor(name, tid, 1, (
        step("dma_resv_lock", 0, obj="b1"),
        step("dma_buf_vmap", "vaddr.b1", dmabuf="b1"),
        step("dma_resv_unlock", obj="b1"),
        step("dma_resv_lock", 0, obj="b1"),
        step("dma_buf_vunmap", dmabuf="b1", map="vaddr.b1"),
        step("dma_resv_unlock", obj="b1"),
        step("dma_buf_put", dmabuf="b1"),
    ), "importer", started=False)


def _migration(dynamic: bool) -> tuple[Actor, ...]:
    move = (step("dma_resv_lock", 0, obj="b1"), step("dma_buf_move_notify", dmabuf="b1"),
            step("dma_resv_unlock", obj="b1"))
    att, sgt = "att.imp1", "sgt.imp1"
    attach = (step("dma_buf_dynamic_attach", att, dmabuf="b1", dev="imp1", importer_ops="ops.imp1") if dynamic
              else step("dma_buf_attach", att, dmabuf="b1", dev="imp1"))
    importer = Actor("imp1", 11, 1, (
        attach,
        step("dma_resv_lock", 0, obj="b1"),
        step("dma_buf_map_attachment", sgt, attach=att, direction=BIDI),
        step("dma_resv_unlock", obj="b1"),
        step("dma_resv_lock", 0, obj="b1"),
        step("dma_buf_unmap_attachment", attach=att, sg_table=sgt, direction=BIDI),
        step("dma_resv_unlock", obj="b1"),
        step("dma_buf_detach", dmabuf="b1", attach=att),
        step("dma_buf_put", dmabuf="b1"),
    ), "importer", started=False)
    return _exporter(("imp1",), before_put=move), importer


WW = Source("kernel/locking/ww_mutex.h", "__ww_mutex_check_kill", "wait-die")
RFC = Source(R.SEED_RFC, "", "Alan Cox's question and the atomic prepare-multiple answer")
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("rfc-2012", Config("rfc-2012", "rfc-2012-kds", _rfc_processes(False),
                                "two processes prepare two buffers in opposite orders with a blocking "
                                "PREPARE_ACCESS", depth=16),
             R.LOCK_DEADLOCK, "With PREPARE_ACCESS used for synchronisation (KDS), each process holds one buffer "
             "prepared and sleeps for the other: the deadlock Alan Cox asked about.", (RFC,)),
    Scenario("rfc-2012-prepare-multiple", Config("rfc-2012-prepare-multiple", "rfc-2012-kds",
                                                 _rfc_processes(True),
                                                 "the same, each preparing both buffers in one atomic step",
                                                 depth=16),
             "", "An atomic \"prepare multiple\" that sleeps until all the buffers are free: no deadlock.", (RFC,)),
    Scenario("resv-order-no-ctx", Config("resv-order-no-ctx", "latest",
                                         _two_buffers(_lock_two_no_ctx("A", "B"), _lock_two_no_ctx("B", "A")),
                                         "two threads lock two reservation objects in opposite orders without an "
                                         "acquire context", depth=12),
             R.LOCK_DEADLOCK, "Without a ww acquire context nothing backs off: each thread holds one lock and "
             "sleeps for the other.", (WW, Source(R.RESV_C, "dma_resv_lock"))),
    Scenario("resv-order-ww-backoff", Config("resv-order-ww-backoff", "latest",
                                             _two_buffers(_lock_two_ww("t1", "A", "B"), _lock_two_ww("t2", "B", "A")),
                                             "the same in ww acquire contexts that back off on -EDEADLK", depth=30),
             "", "Wait-die: the younger context that holds a lock gets -EDEADLK, unlocks, and sleeps on the "
             "contended lock with the slow path; no interleaving deadlocks.", (WW,)),
    Scenario("unlocked-under-resv", Config("unlocked-under-resv", "6.2", (
        _exporter(("imp1",)),
        Actor("imp1", 11, 1, (
            step("dma_buf_attach", "att.imp1", dmabuf="b1", dev="imp1"),
            step("dma_resv_lock", 0, obj="b1"),
            step("dma_buf_map_attachment_unlocked", "sgt.imp1", attach="att.imp1", direction=BIDI),
            step("dma_resv_unlock", obj="b1"),
        ), "importer", started=False)), "an importer calls an _unlocked variant while it holds the reservation lock",
        depth=10),
             R.LOCK_DEADLOCK, "The _unlocked variant takes the reservation lock itself; ww_mutex is not recursive, so "
             "the importer sleeps on its own lock.", (Source(R.DMABUF_C, "dma_buf_map_attachment_unlocked"),)),
    Scenario("vmap-two-users", Config("vmap-two-users", "latest", (
        _exporter(("k1", "k2")), _vmap_user("k1", 11), _vmap_user("k2", 12)),
        "two kernel users vmap and vunmap one buffer", depth=24, symmetric=(("k1", "k2"),)),
             "", "The core counts vmaps: the exporter's vmap runs only for the first and vunmap only for the last, "
             "in every interleaving (CORE-VMAP-ONCE, CORE-VUNMAP-ONCE).", (Source(R.DMABUF_C, "dma_buf_vmap"),)),
    Scenario("migration-while-mapped", Config("migration-while-mapped", "latest", _migration(False),
                                              "the exporter moves the backing storage while a static importer may "
                                              "have it mapped", depth=16),
             R.DYN_MOVE_PINNED,
             "A static importer's mapping fixes the storage in place: moving it then is caught.",
             (Source(R.SEED_GUIDE, "", "Migration of backing storage"), Source(R.SEED_MODEL))),
    Scenario("migration-dynamic", Config("migration-dynamic", "latest", _migration(True),
                                         "the same with a dynamic importer, which move_notify tells", depth=16),
             "", "A dynamic importer's mapping may be moved under the reservation lock: no finding.",
             (Source(R.SEED_GUIDE, "", "Migration of backing storage"),)),
)


def config(name: str) -> Config:
    """The named configuration (a scenario's name gives its configuration)."""
    for c in CONFIGS:
        if c.name == name:
            return c
    for s in SCENARIOS:
        if s.name == name:
            return s.config
    names = ", ".join(c.name for c in CONFIGS)
    raise ValueError(f"unknown configuration {name!r}: use one of {names}, or a scenario (dmaspec explore --list)")


def scenario(name: str) -> Scenario:
    for s in SCENARIOS:
        if s.name == name:
            return s
    names = ", ".join(s.name for s in SCENARIOS)
    raise ValueError(f"unknown scenario {name!r}: use one of {names}")


__all__ = ["CONFIGS", "SCENARIOS", "config", "scenario"]
