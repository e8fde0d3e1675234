"""The objects of the model (tables) and the procedures several actions share.

Reference counting follows the kernel: a dma-buf *is* a ``struct file``, and
its references are the file's.  ``dma_buf_export`` creates the file with one
reference owned by the exporter; ``dma_buf_fd`` moves that reference into an
fd without taking a new one; ``dma_buf_get``/``get_dma_buf``, ``dup``,
``fork`` and ``mmap`` take one each; ``dma_buf_put``, ``close``, ``munmap`` and
process exit drop one.  When the count reaches zero the buffer is released.
The model splits the count by holder only as far as the kernel does:
``refs - fds - mmaps`` is what kernel code holds.
"""

from __future__ import annotations

from spec import rules as R
from spec.lang import (
    Call,
    Const,
    Create,
    Exists,
    FieldDecl,
    Get,
    If,
    Local,
    Not,
    Procedure,
    Require,
    RowField,
    Table,
    Update,
    add,
    all_of,
    any_of,
    band,
    dec,
    eq,
    inc,
    ne,
    obj,
)

F = FieldDecl
DEAD = Not(RowField("live"))  # released, detached, unmapped, closed: only a tombstone is left

TABLES: tuple[Table, ...] = (
    Table("buffer", (
        F("live", True),
        F("refs", 1, "all references: the struct file's count"),
        F("fds", 0, "file descriptors, in all processes, that refer to it"),
        F("mmaps", 0, "userspace mappings (each vma holds a file reference)"),
        F("size", 0, "size in bytes; 0 when the trace did not say"),
        F("resv", "", "handle of its reservation object"),
        F("exp_name", ""),
        F("attachments", 0, "live attachments"),
        F("vmap_count", 0, "the core's vmapping_counter"),
        F("vmap_ptr", "", "the address every vmap of it returns"),
        F("cpu_open", 0, "open begin_cpu_access() brackets, any direction"),
        F("rfc_open", 0, "open RFC PREPARE_ACCESS brackets, all processes"),
    ), "a struct dma_buf", dead_rule=R.REF_USE_AFTER_RELEASE, rest=DEAD),
    Table("fd", (
        F("live", True), F("buffer", ""), F("cloexec", False),
    ), "a file descriptor for a dma-buf, keyed (pid, fd)", rest=DEAD, index=0),
    Table("vma", (
        F("live", True), F("buffer", ""), F("length", 0),
    ), "a userspace mapping of a dma-buf, keyed (pid, address)", rest=DEAD, index=0),
    Table("attachment", (
        F("live", True), F("buffer", ""), F("dynamic", False), F("maps", 0, "live mappings"),
        F("pins", 0), F("dev", ""),
    ), "a struct dma_buf_attachment", dead_rule=R.ATT_USE_AFTER_DETACH, rest=DEAD),
    Table("mapping", (
        F("live", True), F("attachment", ""), F("direction", 0),
        F("refs", 1, "maps returning this sg_table (the core's cached mapping before 6.15)"),
    ), "an sg_table returned by dma_buf_map_attachment()", dead_rule=R.MAP_DOUBLE_UNMAP, rest=DEAD),
    Table("cpu_access", (
        F("live", True), F("open", 0),
    ), "open begin_cpu_access() brackets, keyed (buffer, direction)", rest=eq(RowField("open"), 0)),
    Table("cpu_failed", (
        F("live", True), F("failed", False),
    ), "whether the last begin_cpu_access() by a thread failed, keyed (buffer, tid)",
       rest=Not(RowField("failed"))),
    Table("kmap", (
        F("live", True), F("count", 0), F("atomic", 0),
    ), "kmapped pages of a buffer, keyed (buffer, page)",
       rest=all_of(eq(RowField("count"), 0), eq(RowField("atomic"), 0))),
    Table("task", (
        F("live", True), F("kmap_atomic", 0, "kmap_atomic mappings held"),
        F("resv_held", 0, "reservation locks held"),
    ), "a thread, keyed by tid", rest=all_of(eq(RowField("kmap_atomic"), 0), eq(RowField("resv_held"), 0))),
    Table("sync", (
        F("live", True), F("open", 0, "SYNC START not yet ended"), F("flags", 0, "read/write flags of the START"),
        F("retry", 0, "flags of an interrupted SYNC that must be restarted"),
    ), "a thread's DMA_BUF_IOCTL_SYNC brackets on a buffer, keyed (pid, buffer, tid)",
       rest=all_of(eq(RowField("open"), 0), eq(RowField("retry"), 0)), index=0),
    Table("sync_cover", (
        F("live", True), F("open", 0, "open SYNC brackets"), F("reads", 0, "open brackets with READ"),
        F("writes", 0, "open brackets with WRITE"),
    ), "what a process's open SYNC brackets on a buffer allow it to access, keyed (pid, buffer)",
       rest=eq(RowField("open"), 0), index=0),
    Table("rfc_access", (
        F("live", True), F("open", 0),
    ), "a process's RFC PREPARE_ACCESS brackets, keyed (pid, buffer)", rest=eq(RowField("open"), 0), index=0),
    Table("resv", (
        F("live", True), F("holder", 0, "tid holding the lock, 0 when free"),
        F("reserved", 0, "fence slots reserved in this lock hold"),
        F("ctx", "", "the ww acquire context it was locked in, if any"),
    ), "a struct dma_resv (reservation object)", rest=eq(RowField("holder"), 0)),
    Table("ww_class", (
        F("live", True), F("stamp", 0, "the class's stamp counter: ww_acquire_init() takes the next"),
    ), "a struct ww_class (reservation_ww_class for every dma_resv)"),
    Table("ww_ctx", (
        F("live", True), F("held", 0, "reservation locks held in this context (its acquired count)"),
        F("stamp", 0, "its age: a smaller stamp is an older context, which wins a wait-die conflict"),
        F("backoff", False, "-EDEADLK was returned: unlock all, then lock the contended object (slow path)"),
    ), "a ww_acquire_ctx", rest=Not(RowField("live"))),
    Table("fence", (
        F("live", True), F("context", 0), F("seqno", 0), F("signaled", False),
    ), "a struct dma_fence",
       rest=any_of(Not(RowField("live")), RowField("signaled"))),
    Table("fence_context", (
        F("live", True), F("last_seqno", -1),
    ), "a fence context (timeline), keyed by its number",
       rest=Const(True)),
)


# -- procedures ----------------------------------------------------------------------

_B = Local("b")
_FD = Local("fdkey")
_VMA = Local("vkey")

DROP_REF = Procedure("drop_ref", ("b",), (
    dec("buffer", _B, "refs"),
    If(eq(Get("buffer", _B, "refs"), 0), (
        Require(R.REF_RELEASE_VMAPPED, eq(Get("buffer", _B, "vmap_count"), 0), (obj("buffer", _B),)),
        Require(R.REF_RELEASE_ATTACHED, eq(Get("buffer", _B, "attachments"), 0), (obj("buffer", _B),)),
        Update("buffer", _B, "live", Const(False)),
    )),
))

CLOSE_FD = Procedure("close_fd", ("fdkey",), (
    Update("fd", _FD, "live", Const(False)),
    dec("buffer", Get("fd", _FD, "buffer"), "fds"),
    Call("drop_ref", (("b", Get("fd", _FD, "buffer")),)),
))

UNMAP_VMA = Procedure("unmap_vma", ("vkey",), (
    Update("vma", _VMA, "live", Const(False)),
    dec("buffer", Get("vma", _VMA, "buffer"), "mmaps"),
    Call("drop_ref", (("b", Get("vma", _VMA, "buffer")),)),
))

# A new fd for buffer b; dup2()/dup3() onto an open fd close that fd first.  It
# takes no reference: dma_buf_fd() installs the caller's, and the callers that
# take one (dup, fork, receiving an fd) say so.
INSTALL_FD = Procedure("install_fd", ("fdkey", "b", "cloexec"), (
    If(all_of(Exists("fd", _FD), Get("fd", _FD, "live")), (Call("close_fd", (("fdkey", _FD),)),)),
    Create("fd", _FD, (("buffer", _B), ("cloexec", Local("cloexec")))),
    inc("buffer", _B, "fds"),
))

# A SYNC bracket with read/write flags opens (by=1) or closes (by=-1) for the process.
_K = Local("key")
SYNC_COVER = Procedure("sync_cover", ("key", "flags", "by"), (
    Update("sync_cover", _K, "open", add(Get("sync_cover", _K, "open"), Local("by"))),
    If(ne(band(Local("flags"), 1), 0), (Update("sync_cover", _K, "reads", add(Get("sync_cover", _K, "reads"),
                                                                               Local("by"))),)),
    If(ne(band(Local("flags"), 2), 0), (Update("sync_cover", _K, "writes", add(Get("sync_cover", _K, "writes"),
                                                                                Local("by"))),)),
))

PROCEDURES: tuple[Procedure, ...] = (DROP_REF, CLOSE_FD, UNMAP_VMA, INSTALL_FD, SYNC_COVER)
