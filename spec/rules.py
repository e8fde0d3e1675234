"""The rule registry: every rule's stable ID, message, severity, versions and sources.

Rules are referred to from statements by ID (``Require(rule=...)``); the
names below are module constants so a typo fails at import, not at run time.
IDs never change meaning: a rule that changes is a new ID.

Source paths name the kernel file and function the rule was read from (the
dma-buf core is ``drivers/dma-buf/dma-buf.c``), or a seed document under
``shared/seeds`` by file name; ``catalog`` names the entry of the shared
rule catalog (RULES.md) a rule refines.
"""

from __future__ import annotations

from spec.lang import Kind, Rule, Severity, Source, Version, Who

DMABUF_C = "drivers/dma-buf/dma-buf.c"
DMABUF_H = "include/linux/dma-buf.h"
UAPI_H = "include/uapi/linux/dma-buf.h"
RESV_C = "drivers/dma-buf/dma-resv.c"
FENCE_C = "drivers/dma-buf/dma-fence.c"
SEED_MMAP = "seeds/000_02370be209e482f9.txt"
SEED_GUIDE = "seeds/001_926aa092f5b10283.txt"
SEED_CACHE = "seeds/002_04c2f8eae86a331e.txt"
SEED_RFC = "seeds/003_589913a197f46437.txt"
SEED_MODEL = "seeds/004_fd1cb159df6407f4.txt"
LOCKDOC = "Documentation/driver-api/dma-buf.rst"

E, W = Severity.ERROR, Severity.WARNING
IMP, EXP, USR, ANY, CORE = Who.IMPORTER, Who.EXPORTER, Who.USERSPACE, Who.CALLER, Who.CORE
GUARD, GUAR, OBL = Kind.GUARD, Kind.GUARANTEE, Kind.OBLIGATION

_RULES: list[Rule] = []


def _rule(
    id: str,
    message: str,
    severity: Severity,
    who: Who,
    kind: Kind,
    sources: tuple[Source, ...],
    *,
    since: Version = (3, 3),
    until: Version | None = None,
    features: frozenset[str] = frozenset(),
    catalog: str = "",
    explain: str = "",
) -> str:
    _RULES.append(Rule(id, message, severity, who, kind, sources, since, until, features, catalog, explain))
    return id


def S(path: str, symbol: str = "", note: str = "") -> Source:
    return Source(path, symbol, note)


# -- trace-level ---------------------------------------------------------------
API_ERR_PTR = _rule(
    "API-ERR-PTR-USED", "an error pointer returned by a failed call is used as an object", E, ANY, GUARD,
    (S(DMABUF_C, "dma_buf_attach", "returns ERR_PTR on failure"), S(DMABUF_C, "dma_buf_export")),
    catalog="LIFE-001, ATT-002",
    explain="dma_buf_export, dma_buf_get, dma_buf_attach and dma_buf_map_attachment return ERR_PTR(-errno) "
    "on failure; the caller must check IS_ERR() before using the result.")
PROFILE_OP = _rule(
    "PROFILE-OP-UNAVAILABLE", "the trace calls an operation that does not exist in this kernel version", E, ANY, GUARD,
    (S(SEED_GUIDE, "", "API history"), S("RULES.md", "0.1 Version timeline")),
    explain="The operation was added later or removed earlier than the profile's kernel version: the trace "
    "was recorded on another kernel, or the profile is wrong (choose it with --profile).")

# -- references and release (LIFE-*) -----------------------------------------------
REF_USE_AFTER_RELEASE = _rule(
    "REF-USE-AFTER-RELEASE", "a dma-buf is used after its last reference was dropped", E, ANY, GUARD,
    (S(DMABUF_C, "dma_buf_put"), S(DMABUF_C, "dma_buf_release"), S(SEED_GUIDE, "", "dma_buf_put")),
    catalog="LIFE-005")
REF_PUT_UNOWNED = _rule(
    "REF-PUT-UNOWNED", "dma_buf_put() drops a reference the kernel does not hold: every reference left "
    "belongs to a file descriptor or a userspace mapping", E, ANY, GUARD,
    (S(DMABUF_C, "dma_buf_put"), S(DMABUF_C, "dma_buf_fd", "installs the caller's reference, takes none")),
    catalog="LIFE-004, LIFE-005")
REF_FD_UNOWNED = _rule(
    "REF-FD-UNOWNED", "dma_buf_fd() installs a reference the caller does not hold", E, EXP, GUARD,
    (S(DMABUF_C, "dma_buf_fd", "fd_install() of dmabuf->file without get_file()"),),
    catalog="LIFE-004",
    explain="dma_buf_fd() hands the caller's own reference to the new fd. Calling it when every reference "
    "already belongs to an fd or a mapping (e.g. twice on one export reference) sets up a double release.")
REF_RELEASE_VMAPPED = _rule(
    "REF-RELEASE-WHILE-VMAPPED", "the last reference to a dma-buf is dropped while it is still vmapped", E, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_release", "BUG_ON(dmabuf->vmapping_counter)"),), since=(3, 5), catalog="LIFE-006, VMAP-002")
REF_RELEASE_ATTACHED = _rule(
    "REF-RELEASE-WHILE-ATTACHED", "the last reference to a dma-buf is dropped while attachments remain", E, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_release", "WARN_ON(!list_empty(&dmabuf->attachments))"),
     S(SEED_GUIDE, "", "detach, then dma_buf_put")), catalog="LIFE-006, ATT-003")
REF_LEAK = _rule(
    "REF-LEAK", "a kernel reference to a dma-buf is never dropped", W, ANY, OBL,
    (S(DMABUF_C, "dma_buf_get"), S(SEED_GUIDE, "", "release the reference acquired with dma_buf_get()")),
    catalog="LIFE-005")

# -- file descriptors (FD-*) -----------------------------------------------------------
FD_NO_CLOEXEC = _rule(
    "FD-NO-CLOEXEC", "a dma-buf fd without O_CLOEXEC survives execve()", W, USR, GUARD,
    (S(SEED_GUIDE, "", "Miscellaneous notes: FD_CLOEXEC must be set"), S(DMABUF_C, "dma_buf_fd")),
    catalog="FD-001",
    explain="A leaked fd gives the new program access to the buffer; the guide calls this a potential "
    "security hole. Create the fd with O_CLOEXEC (every exporter API must offer it).")
FD_CLOEXEC_LATE = _rule(
    "FD-CLOEXEC-LATE", "O_CLOEXEC is set on a dma-buf fd after it was created, which races with fork+exec", W, USR,
    GUARD, (S(SEED_GUIDE, "", "Miscellaneous notes: set O_CLOEXEC atomically when the fd is created"),),
    catalog="FD-001")

# -- attachments (ATT-*) ---------------------------------------------------------------
ATT_USE_AFTER_DETACH = _rule(
    "ATT-USE-AFTER-DETACH", "an attachment is used after dma_buf_detach()", E, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_detach", "frees the attachment"), S(SEED_GUIDE, "", "map needs an attach")),
    catalog="ATT-001, ATT-003")
ATT_DETACH_MAPPED = _rule(
    "ATT-DETACH-WHILE-MAPPED", "dma_buf_detach() while the attachment still has a mapping", E, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_detach"), S(DMABUF_C, "DOC: dma buf device access", "detach after cleaning up any mappings")),
    catalog="ATT-003")
ATT_DETACH_PINNED = _rule(
    "ATT-DETACH-WHILE-PINNED", "dma_buf_detach() while the attachment is still pinned", E, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_unpin"), S(DMABUF_C, "dma_buf_detach")), since=(5, 7), catalog="DYN-003")
ATT_WRONG_BUFFER = _rule(
    "ATT-WRONG-BUFFER", "dma_buf_detach() names a different dma-buf than the one attached", E, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_detach", "WARN_ON(dmabuf != attach->dmabuf)"),), catalog="ATT-003")
ATT_LEAK = _rule(
    "ATT-LEAK", "an attachment is never detached", W, IMP, OBL,
    (S(DMABUF_C, "DOC: dma buf device access"), S(SEED_GUIDE, "", "disconnect: detach, then put")), catalog="ATT-003")

# -- mappings (MAP-*) ------------------------------------------------------------------
MAP_UNMAP_MISMATCH = _rule(
    "MAP-UNMAP-MISMATCH", "dma_buf_unmap_attachment() with an sg_table that this attachment did not map", E, IMP,
    GUARD, (S(DMABUF_C, "dma_buf_unmap_attachment"), S(DMABUF_H, "struct dma_buf_ops::unmap_dma_buf")),
    catalog="MAP-001")
MAP_UNMAP_DIRECTION = _rule(
    "MAP-UNMAP-DIRECTION", "dma_buf_unmap_attachment() with a different direction than the map", E, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_unmap_attachment"), S(SEED_GUIDE, "", "unmap_dma_buf(attach, sg_table, direction)")),
    catalog="MAP-001")
MAP_DOUBLE_UNMAP = _rule(
    "MAP-DOUBLE-UNMAP", "an sg_table is unmapped twice", E, IMP, GUARD,
    (S(DMABUF_H, "struct dma_buf_ops::map_dma_buf", "ownership of the sg_table returns to the exporter at unmap"),),
    catalog="MAP-001")
MAP_LEAK = _rule(
    "MAP-LEAK", "a mapping is never unmapped", W, IMP, OBL,
    (S(DMABUF_C, "dma_buf_map_attachment", "the backing storage stays pinned while mapped"),
     S(SEED_GUIDE, "", "map/unmap bracket DMA")), catalog="MAP-001, MAP-002")

# -- dynamic importers and migration (DYN-*) -----------------------------------------
DYN_PIN_STATIC = _rule(
    "DYN-PIN-STATIC", "dma_buf_pin()/dma_buf_unpin() on a static (non-dynamic) attachment", E, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_pin", "WARN_ON(!attach->importer_ops)"),), since=(5, 7), catalog="DYN-003")
DYN_UNPIN_UNPINNED = _rule(
    "DYN-UNPIN-UNPINNED", "dma_buf_unpin() on an attachment that is not pinned", E, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_unpin"),), since=(5, 7), catalog="DYN-003")
DYN_MOVE_PINNED = _rule(
    "DYN-MOVE-WHILE-PINNED", "the exporter moves a buffer that is pinned or mapped by a static importer", E, EXP,
    GUARD, (S(SEED_GUIDE, "", "Migration of backing storage"),
            S(SEED_MODEL, "", "migrate while attached, not while mapped"),
            S(DMABUF_C, "dma_buf_move_notify")), since=(5, 7), catalog="MODEL-003, DYN-004",
    explain="A static importer's mapping and any pin fix the backing storage in place; only dynamic "
    "importers are told about a move (move_notify) and may re-map.")

# -- kernel CPU access (CPU-*, KMAP-*) --------------------------------------------------
CPU_END_WITHOUT_BEGIN = _rule(
    "CPU-END-WITHOUT-BEGIN", "dma_buf_end_cpu_access() without a matching dma_buf_begin_cpu_access()", E, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_end_cpu_access"), S(SEED_GUIDE, "", "Kernel cpu access: begin, access, end")),
    since=(3, 4), catalog="CPU-001")
CPU_END_AFTER_FAILED_BEGIN = _rule(
    "CPU-END-AFTER-FAILED-BEGIN", "dma_buf_end_cpu_access() after dma_buf_begin_cpu_access() failed: "
    "a failed begin grants no access", E, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_begin_cpu_access", "may fail, e.g. -ENOMEM or -EINTR"),
     S(SEED_GUIDE, "", "This step might fail")),
    since=(3, 4), catalog="CPU-003")
CPU_END_DIRECTION = _rule(
    "CPU-END-DIRECTION", "dma_buf_end_cpu_access() with a different direction than the open begin", E, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_end_cpu_access"), S(DMABUF_H, "struct dma_buf_ops::end_cpu_access")),
    since=(3, 4), catalog="CPU-001")
CPU_ACCESS_OUTSIDE = _rule(
    "CPU-ACCESS-OUTSIDE-BRACKET", "kernel CPU access to a dma-buf outside begin/end_cpu_access()", W, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_begin_cpu_access", "only bracketed access is coherent"), S(SEED_MODEL, "", "barriers")),
    since=(3, 4), catalog="CPU-001, MODEL-001")
CPU_ACCESS_DIRECTION = _rule(
    "CPU-ACCESS-DIRECTION", "kernel CPU access in a direction the open begin_cpu_access() did not announce", W, IMP,
    GUARD, (S(SEED_GUIDE, "", "access with a different direction might return stale or bogus data"),),
    since=(3, 4), catalog="CPU-002")
CPU_LEAK = _rule(
    "CPU-BRACKET-LEAK", "dma_buf_begin_cpu_access() is never ended", W, IMP, OBL,
    (S(DMABUF_C, "dma_buf_end_cpu_access"),), since=(3, 4), catalog="CPU-001")
KMAP_OUTSIDE = _rule(
    "KMAP-OUTSIDE-BRACKET", "dma_buf_kmap() outside a begin/end_cpu_access() bracket", E, IMP, GUARD,
    (S(SEED_GUIDE, "", "kmap calls outside of the range of begin_cpu_access are undefined"),),
    since=(3, 4), until=(5, 6), catalog="KMAP-001")
KMAP_UNMAP_MISMATCH = _rule(
    "KMAP-UNMAP-MISMATCH", "dma_buf_kunmap() of a page that is not kmapped", E, IMP, GUARD,
    (S(SEED_GUIDE, "", "dma_buf_kunmap(dmabuf, page_num, vaddr)"),), since=(3, 4), until=(5, 6), catalog="KMAP-001")
KMAP_LEAK = _rule(
    "KMAP-LEAK", "a dma_buf_kmap() is never unmapped", W, IMP, OBL,
    (S(SEED_GUIDE, "", "before accessing a chunk it needs to be mapped; afterwards unmapped again"),),
    since=(3, 4), until=(5, 6), catalog="KMAP-001")
KMAP_ATOMIC_LIMIT = _rule(
    "KMAP-ATOMIC-LIMIT", "more than two dma_buf_kmap_atomic() mappings held at once in one context", E, IMP, GUARD,
    (S(SEED_GUIDE, "", "at most 2 atomic dma_buf kmaps at the same time"),), since=(3, 4), until=(4, 19),
    catalog="KMAP-002")
KMAP_ATOMIC_SLEEP = _rule(
    "KMAP-ATOMIC-SLEEP", "a call that may sleep while a dma_buf_kmap_atomic() mapping is held", E, IMP, GUARD,
    (S(SEED_GUIDE, "", "neither importer nor exporter may block when using kmap_atomic"),),
    since=(3, 4), until=(4, 19), catalog="KMAP-002")
CTX_SLEEP_ATOMIC = _rule(
    "CTX-SLEEP-IN-ATOMIC", "a dma-buf call that may sleep is made from atomic or interrupt context", E, ANY, GUARD,
    (S(DMABUF_C, "dma_buf_map_attachment", "might_sleep via dma_resv_lock and allocations"),
     S(FENCE_C, "DOC: fence signalling annotation")),
    catalog="FENCE-004")

# -- vmap (VMAP-*) -------------------------------------------------------------------
VMAP_UNBALANCED = _rule(
    "VMAP-VUNMAP-UNBALANCED", "dma_buf_vunmap() on a dma-buf that is not vmapped", E, IMP, GUARD,
    (S(DMABUF_C, "dma_buf_vunmap", "BUG_ON(!dmabuf->vmapping_counter)"),), since=(3, 5), catalog="VMAP-002")
VMAP_ADDRESS = _rule(
    "VMAP-VUNMAP-ADDRESS", "dma_buf_vunmap() with an address other than the one dma_buf_vmap() returned", E, IMP,
    GUARD, (S(DMABUF_C, "dma_buf_vunmap", "BUG_ON(!iosys_map_is_equal(&dmabuf->vmap_ptr, map))"),),
    since=(3, 5), catalog="VMAP-002")
VMAP_LEAK = _rule(
    "VMAP-LEAK", "a dma_buf_vmap() is never vunmapped", W, IMP, OBL,
    (S(DMABUF_C, "dma_buf_vmap"), S(SEED_GUIDE, "", "vmap space is a limited resource")), since=(3, 5),
    catalog="VMAP-002")
CORE_VMAP_ONCE = _rule(
    "CORE-VMAP-ONCE", "the exporter's vmap callback runs while the buffer is already vmapped", E, CORE, GUAR,
    (S(DMABUF_C, "dma_buf_vmap", "calls ops->vmap only when vmapping_counter is 0"),
     S(SEED_GUIDE, "", "calls down into the exporter's vmap only when no vmapping exists")),
    since=(3, 5), catalog="VMAP-001")
CORE_VUNMAP_ONCE = _rule(
    "CORE-VUNMAP-ONCE", "the exporter's vunmap callback runs while other vmaps remain", E, CORE, GUAR,
    (S(DMABUF_C, "dma_buf_vunmap", "calls ops->vunmap only when the counter drops to 0"),
     S(SEED_GUIDE, "", "only unmaps it once")), since=(3, 5), catalog="VMAP-001")
CORE_VMAP_SAME = _rule(
    "CORE-VMAP-SAME-ADDRESS", "dma_buf_vmap() returns a different address while the buffer is already vmapped", E,
    CORE, GUAR, (S(DMABUF_C, "dma_buf_vmap", "returns dmabuf->vmap_ptr when already vmapped"),),
    since=(3, 5), catalog="VMAP-001")

# -- userspace mmap and SYNC (MMAP-*, SYNC-*) ------------------------------------------
CORE_MMAP_SIZE = _rule(
    "CORE-MMAP-TOO-LARGE", "the core accepted a userspace mapping larger than the dma-buf", E, CORE, GUAR,
    (S(DMABUF_C, "dma_buf_mmap_internal", "vm_pgoff + vma_pages > size >> PAGE_SHIFT gives -EINVAL"),
     S(SEED_GUIDE, "", "the core checks whether a vma is too large")), since=(3, 5), catalog="MMAP-001")
MMAP_ACCESS_WITHOUT_SYNC = _rule(
    "MMAP-ACCESS-WITHOUT-SYNC", "userspace accesses an mmap of a dma-buf outside DMA_BUF_IOCTL_SYNC START/END",
    W, USR, GUARD, (S(DMABUF_C, "DOC: cpu access", "userspace cannot rely on coherent access"),
                    S(UAPI_H, "struct dma_buf_sync")), since=(4, 6), catalog="SYNC-001, MMAP-002")
SYNC_ACCESS_DIRECTION = _rule(
    "SYNC-ACCESS-DIRECTION", "userspace access to an mmap in a direction the open SYNC START did not announce",
    W, USR, GUARD, (S(UAPI_H, "struct dma_buf_sync", "READ/WRITE flags"),), since=(4, 6), catalog="SYNC-001, CPU-002")
SYNC_END_WITHOUT_START = _rule(
    "SYNC-END-WITHOUT-START", "DMA_BUF_IOCTL_SYNC END without a matching START", E, USR, GUARD,
    (S(UAPI_H, "struct dma_buf_sync"), S(DMABUF_C, "dma_buf_ioctl", "the kernel keeps no pairing state")),
    since=(4, 6), catalog="SYNC-001, SYNC-002")
SYNC_END_DIRECTION = _rule(
    "SYNC-END-DIRECTION", "DMA_BUF_IOCTL_SYNC END with different read/write flags than its START", E, USR, GUARD,
    (S(UAPI_H, "struct dma_buf_sync", "END with the same read/write flags"),), since=(4, 6), catalog="SYNC-001")
SYNC_START_TWICE = _rule(
    "SYNC-START-TWICE", "DMA_BUF_IOCTL_SYNC START while an earlier START on the buffer is still open", W, USR, GUARD,
    (S(UAPI_H, "struct dma_buf_sync"), S(DMABUF_C, "dma_buf_ioctl")), since=(4, 6), catalog="SYNC-001")
SYNC_LEAK = _rule(
    "SYNC-LEAK", "DMA_BUF_IOCTL_SYNC START is never ended", W, USR, OBL,
    (S(UAPI_H, "struct dma_buf_sync"), S(SEED_GUIDE, "", "SYNC_START, access, SYNC_END")), since=(4, 6),
    catalog="SYNC-001")
SYNC_RETRY = _rule(
    "SYNC-RETRY", "DMA_BUF_IOCTL_SYNC failed with EINTR or EAGAIN and was not restarted", E, USR, GUARD,
    (S(SEED_GUIDE, "", "can fail with -EAGAIN or -EINTR, in which case it must be restarted"),
     S(DMABUF_C, "DOC: cpu access")), since=(4, 6), catalog="SYNC-004")
CORE_SYNC_FLAGS = _rule(
    "CORE-SYNC-FLAGS", "the core accepted DMA_BUF_IOCTL_SYNC flags it must reject", E, CORE, GUAR,
    (S(DMABUF_C, "dma_buf_ioctl", "flags outside VALID_FLAGS_MASK or without READ/WRITE give -EINVAL"),
     S(UAPI_H, "DMA_BUF_SYNC_VALID_FLAGS_MASK")), since=(4, 6), catalog="SYNC-003")
CORE_SYNC_FILE_FLAGS = _rule(
    "CORE-SYNC-FILE-FLAGS", "the core accepted sync-file ioctl flags it must reject", E, CORE, GUAR,
    (S(DMABUF_C, "dma_buf_export_sync_file"), S(DMABUF_C, "dma_buf_import_sync_file")), since=(6, 0),
    catalog="SYNC-006, SYNC-007")
CORE_IOCTL_UNKNOWN = _rule(
    "CORE-IOCTL-UNKNOWN", "an unknown ioctl on a dma-buf fd did not fail with ENOTTY (EINVAL in the 2012 RFC)", E,
    CORE, GUAR, (S(DMABUF_C, "dma_buf_ioctl", "default: return -ENOTTY"), S(SEED_RFC, "dma_buf_ioctl", "-EINVAL")),
    catalog="FD-004, MODEL-004")
CORE_LLSEEK = _rule(
    "CORE-LLSEEK", "llseek on a dma-buf succeeded for something other than size discovery, or SEEK_END did not "
    "return the size", E, CORE, GUAR,
    (S(DMABUF_C, "dma_buf_llseek"), S(SEED_GUIDE, "", "only offset=0 and whence=SEEK_END|SEEK_SET")),
    since=(3, 12), catalog="FD-002")

# -- the 2012 RFC (seed 003) ---------------------------------------------------------
RFC = frozenset({"rfc2012"})
RFC_FINISH_WITHOUT_PREPARE = _rule(
    "RFC-FINISH-WITHOUT-PREPARE", "FINISH_ACCESS without a matching PREPARE_ACCESS", E, USR, GUARD,
    (S(SEED_RFC, "", "access bracketed with DMA_BUF_IOCTL_{PREPARE,FINISH}_ACCESS"),), features=RFC,
    catalog="MODEL-004")
RFC_ACCESS_WITHOUT_PREPARE = _rule(
    "RFC-ACCESS-WITHOUT-PREPARE", "userspace accesses an mmap outside PREPARE_ACCESS/FINISH_ACCESS", W, USR, GUARD,
    (S(SEED_RFC, "", "userspace access should be bracketed"),), features=RFC, catalog="MODEL-004")
RFC_PREPARE_LEAK = _rule(
    "RFC-PREPARE-LEAK", "PREPARE_ACCESS is never finished", W, USR, OBL,
    (S(SEED_RFC, "", "bracketed with PREPARE/FINISH"),), features=RFC, catalog="MODEL-004")
# -- locking convention (LOCK-*) ----------------------------------------------------
LOCK_RESV_REQUIRED = _rule(
    "LOCK-RESV-REQUIRED", "a call that needs the dma-buf's reservation lock is made without holding it", E, IMP,
    GUARD, (S(DMABUF_C, "DOC: locking convention"), S(DMABUF_C, "dma_buf_map_attachment", "dma_resv_assert_held")),
    since=(5, 7), catalog="LOCK-001, DYN-002, VMAP-003",
    explain="From 6.2 importers hold the reservation lock for pin, unpin, map, unmap, vmap and vunmap "
    "(or use the _unlocked variants); from 5.7 to 6.1 only dynamic attachments' map/unmap and pin/unpin need it.")
LOCK_RESV_FORBIDDEN = _rule(
    "LOCK-RESV-FORBIDDEN", "a call that takes the dma-buf's reservation lock itself is made while holding it", E, ANY,
    GUARD, (S(DMABUF_C, "DOC: locking convention"), S(LOCKDOC, "", "dynamic locking convention")),
    since=(6, 2), catalog="LOCK-002, CPU-004, ATT-004",
    explain="attach, detach, put, begin/end_cpu_access, dma_buf_mmap and every _unlocked variant must be called "
    "without the reservation lock: they (or the exporter callbacks they invoke) take it, and ww_mutex is not "
    "recursive.")
LOCK_MOVE_NOTIFY = _rule(
    "LOCK-MOVE-NOTIFY-RESV", "dma_buf_move_notify() is called without holding the reservation lock", E, EXP, GUARD,
    (S(DMABUF_C, "dma_buf_move_notify", "dma_resv_assert_held"),), since=(5, 7), catalog="LOCK-005, DYN-004")
LOCK_RESV_RECURSIVE = _rule(
    "LOCK-RESV-RECURSIVE", "a thread locks a reservation object it already holds", E, ANY, GUARD,
    (S(RESV_C, "dma_resv_lock", "ww_mutex: -EALREADY with the same context, deadlock without one"),),
    since=(3, 17), catalog="RESV-002, LOCK-002")
LOCK_RESV_UNLOCK = _rule(
    "LOCK-RESV-UNLOCK-NOT-HELD", "dma_resv_unlock() by a thread that does not hold the lock", E, ANY, GUARD,
    (S(RESV_C, "dma_resv_unlock"),), since=(3, 17), catalog="RESV-001")
RESV_MULTIPLE_WITHOUT_CTX = _rule(
    "RESV-MULTIPLE-WITHOUT-CTX", "a second reservation lock is taken without a ww acquire context", E, ANY, GUARD,
    (S(RESV_C, "dma_resv_lock", "a ww_acquire_ctx is passed to unwind if a cycle is detected"),
     S("include/linux/ww_mutex.h", "ww_mutex_lock", "ctx NULL: no deadlock avoidance")),
    since=(3, 17), catalog="RESV-001",
    explain="Reservation objects are locked by many parties in no fixed order; holding two without an acquire "
    "context gives up the wound/wait deadlock avoidance (lockdep reports recursive locking).")
RESV_EDEADLK_NO_BACKOFF = _rule(
    "RESV-EDEADLK-NO-BACKOFF", "after -EDEADLK a lock is taken while the acquire context still holds others", E, ANY,
    GUARD, (S(RESV_C, "dma_resv_lock", "on -EDEADLK unlock all locks of ctx, then dma_resv_lock_slow()"),
            S(RESV_C, "dma_resv_lock_slow")),
    since=(3, 17), catalog="RESV-002")
RESV_CTX_FINI_HELD = _rule(
    "RESV-CTX-FINI-HELD", "ww_acquire_fini() while the acquire context still holds reservation locks", E, ANY,
    GUARD, (S("include/linux/ww_mutex.h", "ww_acquire_fini", "DEBUG_LOCKS_WARN_ON(ctx->acquired)"),),
    since=(3, 17), catalog="RESV-001")
LOCK_RESV_LEAK = _rule(
    "LOCK-RESV-LEAK", "a reservation lock is still held at the end of the trace", W, ANY, OBL,
    (S(RESV_C, "dma_resv_unlock"),), since=(3, 17), catalog="RESV-001")

# -- fences (FENCE-*, RESV-*) --------------------------------------------------------
FENCE_SIGNAL_TWICE = _rule(
    "FENCE-SIGNAL-TWICE", "a dma_fence is signalled twice", E, EXP, GUARD,
    (S(FENCE_C, "dma_fence_signal_timestamp_locked", "test_and_set_bit(SIGNALED)"),), since=(3, 17),
    catalog="FENCE-001")
FENCE_SEQNO = _rule(
    "FENCE-SEQNO-ORDER", "a dma_fence's seqno does not increase on its context", W, EXP, GUARD,
    (S(FENCE_C, "dma_fence_init", "a linear increasing sequence number for this context"),), since=(3, 17),
    catalog="FENCE-002")
FENCE_ERROR_AFTER_SIGNAL = _rule(
    "FENCE-ERROR-AFTER-SIGNAL", "dma_fence_set_error() on a fence that is already signalled", E, EXP, GUARD,
    (S(FENCE_C, "dma_fence_set_error", "must be called before signalling"),), since=(4, 11), catalog="FENCE-006")
FENCE_NEVER_SIGNALLED = _rule(
    "FENCE-NEVER-SIGNALLED", "a dma_fence is never signalled", W, EXP, OBL,
    (S(FENCE_C, "DOC: fence cross-driver contract", "fences must signal in bounded time"),), since=(3, 17),
    catalog="FENCE-003")
RESV_FENCE_UNLOCKED = _rule(
    "RESV-FENCE-UNLOCKED", "fence slots are reserved or a fence is added without holding the reservation lock", E,
    ANY, GUARD, (S(RESV_C, "dma_resv_reserve_fences", "dma_resv_assert_held"), S(RESV_C, "dma_resv_add_fence")),
    since=(5, 19), catalog="RESV-004")
RESV_ADD_UNRESERVED = _rule(
    "RESV-ADD-FENCE-UNRESERVED", "dma_resv_add_fence() without a slot reserved in the same lock hold", E, ANY,
    GUARD, (S(RESV_C, "dma_resv_add_fence", "slots must be reserved with dma_resv_reserve_fences()"),
            S(RESV_C, "dma_resv_unlock", "resets the reservation")), since=(5, 19), catalog="RESV-004")

# -- lock order: decided by checker.analysis.lockorder over the whole trace ------------------------
LOCKDEP_C = "kernel/locking/lockdep.c"
LOCK_ORDER_CYCLE = _rule(
    "LOCK-ORDER-CYCLE", "threads take locks in orders that form a cycle: a potential deadlock", E, ANY, Kind.ANALYSIS,
    (S(LOCKDEP_C, "check_noncircular", "a new dependency closes a circle: possible circular locking"),
     S(RESV_C, "dma_resv_lockdep", "the orders every kernel takes around reservation locks"),
     S(FENCE_C, "dma_fence_begin_signalling", "a fence wait is an acquisition of dma_fence_map")),
    catalog="RESV-003, FENCE-004",
    explain="Each edge held -> acquired was seen in the trace, with the two events that witness it. A cycle whose "
    "edges all come from one thread, whose witnesses all hold one common lock at both acquisitions, or that joins "
    "reservation locks all taken in ww acquire contexts is not reported: those orders cannot interleave, or "
    "ww_mutex backs off with -EDEADLK. A cycle through a fence wait is always reported.")
LOCK_ORDER_INVERSION = _rule(
    "LOCK-ORDER-INVERSION", "a lock is taken against the kernel's primed order: mmap_lock, ww acquire context, "
    "reservation locks, fs_reclaim (GFP_KERNEL allocations), fence waits and signalling sections", E, ANY,
    Kind.ANALYSIS,
    (S(RESV_C, "dma_resv_lockdep", "primes mmap_lock -> reservation_ww_class -> fs_reclaim -> dma_fence_map"),
     S(FENCE_C, "dma_fence_begin_signalling", "no dma_resv_lock, GFP_KERNEL or dma_fence_wait inside"),
     S(FENCE_C, "__dma_fence_might_wait")),
    since=(3, 17), catalog="RESV-003, FENCE-004",
    explain="Page faults take reservation locks under mmap_lock, shrinkers and mmu notifiers wait for fences under "
    "fs_reclaim, and signalling a fence must not wait for anything that waits for fences. Taking mmap_lock "
    "(copy_from_user, get_user_pages) under a reservation lock, or a reservation lock, a GFP_KERNEL, GFP_NOFS or "
    "GFP_NOIO allocation or a fence wait inside a signalling section, closes a cycle with those paths.")

# -- fence waits: decided by checker.analysis.fencewait over the whole trace (dmaspec check --lock-order) ----------
FENCE_WAIT_CYCLE = _rule(
    "FENCE-WAIT-CYCLE", "fence timelines wait on each other in a cycle: each one's signalling thread waits for a "
    "fence of the next before it signals, a potential deadlock", E, ANY, Kind.ANALYSIS,
    (S(FENCE_C, "DOC: fence signalling annotation", "signalling a fence must not depend on a wait for a fence "
       "whose signalling depends on it"),
     S(FENCE_C, "DOC: DMA fences overview", "all fences on the same context are fully ordered"),
     S(LOCKDOC, "Indefinite DMA Fences", "a fence that waits, however indirectly, on itself never signals"),
     S(LOCKDEP_C, "check_noncircular", "a new dependency closes a circle; here fence contexts are the classes")),
    since=(3, 17), catalog="FENCE-003, FENCE-004",
    explain="A thread that waits for a fence of timeline D (dma_fence_wait*) and then signals a fence of timeline C, "
    "with no signal of C by it in between, makes C depend on D: in another schedule the C fence cannot signal "
    "before that D fence does. Timelines are fence contexts, as lockdep's lock classes: a cycle C -> D -> ... -> C "
    "is reported with the wait and the signal that witness each edge. A wait for a fence signalled before the "
    "waiting thread's previous event cannot block and is no edge; neither is a wait for a fence of the thread's own "
    "timeline (its fences are ordered), a zero-timeout poll, a wait for a fence the trace never initialised, nor "
    "a signal from interrupt context (the hardware signals, not the interrupted thread).")
FENCE_WAIT_DEADLOCK = _rule(
    "FENCE-WAIT-DEADLOCK", "threads sleep at the end of the trace in fence waits that form a cycle: each waits for "
    "a fence that only another of them signals", E, ANY, Kind.ANALYSIS,
    (S(FENCE_C, "dma_fence_wait_timeout", "sleeps until the fence signals"),
     S(FENCE_C, "DOC: fence cross-driver contract", "fences must signal in bounded time"),
     S(LOCKDOC, "Indefinite DMA Fences", "a fence that waits, however indirectly, on itself never signals")),
    since=(3, 17), catalog="FENCE-003, FENCE-004",
    explain="The trace header's source.waiting lists the calls threads sleep in when the trace ends. A thread asleep "
    "in a fence wait is stuck when the fence is unsignalled and every thread that signals its timeline in the trace "
    "is itself stuck the same way, and no interrupt ever signalled that timeline; a cycle of such threads is an "
    "actual deadlock. When every sleeping call is stuck, the check reports LOCK-DEADLOCK and this analysis does not "
    "report the same deadlock again.")
RACE_UNORDERED_ACCESS = _rule(
    "RACE-UNORDERED-ACCESS", "two accesses to a buffer overlap, at least one writing, and nothing orders them: "
    "the barriers publish, they do not synchronise", W, ANY, Kind.ANALYSIS,
    (S(SEED_MODEL, "", "map/unmap and cpu start/finish are barriers; concurrent operations yield garbage"),
     S(DMABUF_C, "dma_buf_begin_cpu_access", "DOC: cpu access")),
    catalog="MODEL-001, MODEL-002, SYNC-005",
    explain="Access windows: device map..unmap (writes for DMA_FROM_DEVICE, reads for DMA_TO_DEVICE, both for "
    "DMA_BIDIRECTIONAL), kernel begin..end_cpu_access (the reverse), userspace DMA_BUF_IOCTL_SYNC START..END per "
    "thread (READ/WRITE flags). Two windows on one buffer from different threads, or a device and a CPU window, "
    "race unless a fence signal/wait, a reservation or mutex unlock/lock, fork or program order puts one's close "
    "before the other's open. Synchronisation the trace does not record (V4L2 queues, binder, futexes) is not seen.")

PREDICT_REORDER = _rule(
    "PREDICT-REORDER", "the same threads' events, in another order that nothing recorded rules out, break a rule",
    W, ANY, Kind.ANALYSIS,
    (S(SEED_MODEL, "", "concurrent operations yield garbage: only barriers, fences and locks order them"),
     S(DMABUF_C, "dma_buf_put", "the last put releases the buffer, whichever thread makes it")),
    catalog="REF-001, ATT-001, MAP-001",
    explain="Found by `dmaspec check --predict`: within a window of events, each thread keeps its own order, a "
    "call that uses a handle or fd runs after the call that made it, a forked process after its fork, a lock "
    "is taken only when free, a fence wait returns only after the signal, and every call returns what it "
    "returned in the recording. A schedule of the window that breaks a rule then is reported with the rule, "
    "and written as a trace that `dmaspec check` replays to that rule. Synchronisation the trace does not "
    "record (a futex, a pipe, a V4L2 queue) is not seen: a prediction is a warning.")

# -- deadlock: decided by the explorers (checker.engines), which run calls rather than replay them ---------
WW_MUTEX_H = "kernel/locking/ww_mutex.h"
LOCK_DEADLOCK = _rule(
    "LOCK-DEADLOCK", "every thread still running sleeps on something only a sleeping thread can release: "
    "none can go on", E, ANY, Kind.ANALYSIS,
    (S(WW_MUTEX_H, "__ww_mutex_check_kill", "wait-die: only a context that holds locks backs off, so locks "
       "taken without an acquire context can deadlock"),
     S(RESV_C, "dma_resv_lock", "a NULL context is a plain ww_mutex_lock: no -EDEADLK, no deadlock avoidance"),
     S(SEED_RFC, "", "Alan Cox: how do you avoid deadlocks on a blocking prepare without prepare-multiple?")),
    catalog="RESV-002, RESV-003",
    explain="Found by `dmaspec explore`: a reachable state in which each unfinished thread waits (for a "
    "reservation lock, a fence, an exclusive PREPARE_ACCESS) on a thread that waits too, or on itself. The "
    "counterexample is the schedule that gets there and the calls each thread is sleeping in.")

# -- the spec against a real kernel (dmaspec lab, dmaspec check --conformance) ------------------------
SPEC_KERNEL_DISAGREES = _rule(
    "SPEC-KERNEL-DISAGREES", "a stock kernel returned something other than what the spec predicts: a defect "
    "of the spec, not of the program", E, Who.SPEC, Kind.ANALYSIS,
    (S(DMABUF_C, "dma_buf_ioctl", "the core's own checks decide these return values"),
     S(DMABUF_C, "dma_buf_llseek"), S(DMABUF_C, "dma_buf_mmap_internal"), S(DMABUF_C, "dma_buf_vmap")),
    explain="Found by `dmaspec lab run` and `dmaspec check --conformance`, on traces from an unmodified kernel: "
    "each outcome the spec predicts (its condition on the state before the call, and the value) is compared "
    "with the kernel's return value, and every guarantee rule (CORE-*) the trace breaks is counted the same "
    "way. The kernel is the authority: the spec must be fixed.")

RULES: tuple[Rule, ...] = tuple(_RULES)
