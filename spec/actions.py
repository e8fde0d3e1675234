"""Every operation of the API, as data: parameters, guards, effects, guarantees.

An event is recorded when its call returns (it carries the return value), so
the exporter callbacks a call makes appear *before* the call's own event.
Operations whose behaviour changed across kernels are split into variants
with disjoint version ranges; a profile sees exactly one.

Conventions used below: ``B`` is the ``dmabuf`` argument, ``A`` the
``attach`` argument; ``use(table, key)`` is the prelude every use of an
object gets (not an error pointer, known or adopted, still live).
"""

from __future__ import annotations

from spec import kernel as K
from spec import rules as R
from spec.lang import (
    CTX,
    PID,
    TID,
    Action,
    Adopt,
    Arg,
    Arith,
    ArithOp,
    Bump,
    Call,
    Cond,
    Const,
    Create,
    EventKind,
    Exists,
    Expr,
    ForEach,
    Get,
    If,
    Ignore,
    In,
    IsErrPtr,
    IsNone,
    Key,
    KeyPart,
    Let,
    Local,
    Not,
    Outcome,
    Param,
    ParamType,
    Require,
    Ret,
    Returns,
    RowField,
    Source,
    Stmt,
    Stop,
    Update,
    Version,
    all_of,
    any_of,
    band,
    dec,
    eq,
    failed,
    gt,
    inc,
    le,
    live,
    ne,
    obj,
    ok,
    one_of,
    sub,
)
from spec.model import TABLES

H, I, S_, D = ParamType.HANDLE, ParamType.INT, ParamType.STR, ParamType.DIRECTION
CALL, SYSCALL, CALLBACK, NOTE = EventKind.CALL, EventKind.SYSCALL, EventKind.CALLBACK, EventKind.ANNOTATION

B = Arg("dmabuf")
A = Arg("attach")
RET = Ret()
DMABUF_C = R.DMABUF_C

TABLE_DEAD_RULE = {t.name: t.dead_rule for t in TABLES if t.dead_rule}


def p(name: str, type_: ParamType = H, optional: bool = False, doc: str = "") -> Param:
    return Param(name, type_, optional, doc)


def use(table: str, key: Expr, *, adopt: tuple[tuple[str, Expr], ...] | None = ()) -> list[Stmt]:
    """The prelude of every use of an object named by an argument.

    ``adopt=None`` means an unknown object is not adopted (the dead-object
    rule then cannot fire for it either, as its default is live).
    """
    out: list[Stmt] = [Require(R.API_ERR_PTR, Not(IsErrPtr(key)), (), abort=True)]
    if adopt is not None:
        out.append(If(Not(Exists(table, key)), (Adopt(table, key, adopt),)))
    out.append(Require(TABLE_DEAD_RULE[table], live(table, key), (obj(table, key),), abort=True))
    return out


def resv_of(b: Expr) -> Get:
    return Get("buffer", b, "resv")


def holds_resv(b: Expr) -> Expr:
    return eq(Get("resv", resv_of(b), "holder"), TID)


def need_resv(b: Expr, rule: str = R.LOCK_RESV_REQUIRED) -> Require:
    return Require(rule, holds_resv(b), (obj("buffer", b), obj("resv", resv_of(b))))


def no_resv(b: Expr) -> Require:
    return Require(R.LOCK_RESV_FORBIDDEN, Not(holds_resv(b)), (obj("buffer", b), obj("resv", resv_of(b))))


def kernel_refs(b: Expr) -> Expr:
    """References held by kernel code: all, less those of fds and vmas."""
    return sub(sub(Get("buffer", b, "refs"), Get("buffer", b, "fds")), Get("buffer", b, "mmaps"))


def att_buf(a: Expr = A) -> Get:
    return Get("attachment", a, "buffer")


SLEEP_PRELUDE: tuple[Stmt, ...] = (
    Require(R.CTX_SLEEP_ATOMIC, Not(In(CTX, frozenset(K.ATOMIC_CONTEXTS))), ()),
    Require(R.KMAP_ATOMIC_SLEEP, eq(Get("task", TID, "kmap_atomic"), 0), (obj("task", TID),)),
)

ACTIONS: list[Action] = []


def action(
    op: str,
    kind: EventKind,
    params: tuple[Param, ...],
    body: list[Stmt] | tuple[Stmt, ...],
    *,
    returns: Returns = Returns.NOTHING,
    when: Expr | None = None,
    since: Version = (3, 3),
    until: Version | None = None,
    features: frozenset[str] = frozenset(),
    excludes: frozenset[str] = frozenset(),
    sleeps: bool = False,
    doc: str = "",
    source: Source | None = None,
    waits: Expr | None = None,
    outcomes: tuple[Outcome, ...] = (),
    invokes: tuple[tuple[str, Expr], ...] = (),
) -> None:
    full = (SLEEP_PRELUDE if sleeps else ()) + tuple(body)
    ACTIONS.append(Action(op, kind, params, full, returns, when, since, until, features, excludes, sleeps, doc,
                          source, waits, outcomes, invokes))


def src(symbol: str, path: str = DMABUF_C) -> Source:
    return Source(path, symbol)


# ---------------------------------------------------------------------------------------
# Export, fds, references
# ---------------------------------------------------------------------------------------

action("dma_buf_export", CALL,
       (p("exp_name", S_, True), p("size", I, True), p("resv", H, True), p("flags", I, True)),
       [If(ok(), (
           Create("buffer", RET, (
               ("size", Cond(IsNone(Arg("size")), Const(0), Arg("size"))),
               ("resv", Cond(IsNone(Arg("resv")), RET, Arg("resv"))),
               ("exp_name", Cond(IsNone(Arg("exp_name")), Const(""), Arg("exp_name"))),
           )),
       ))],
       returns=Returns.HANDLE, sleeps=True, source=src("dma_buf_export"),
       doc="The exporter wraps its buffer; the dma-buf starts with one reference, the exporter's. "
       "Without a resv argument the buffer's embedded reservation object is named by the buffer's handle.")

action("dma_buf_fd", CALL, (p("dmabuf"), p("flags", I, True)),
       [*use("buffer", B), no_resv(B),
        If(ok(), (
            Require(R.REF_FD_UNOWNED, gt(kernel_refs(B), 0), (obj("buffer", B),)),
            Call("install_fd", (("fdkey", Key((PID, RET))), ("b", B),
                                ("cloexec", ne(band(Cond(IsNone(Arg("flags")), Const(0), Arg("flags")),
                                                    K.O_CLOEXEC), 0)))),
        ))],
       returns=Returns.NUMBER, sleeps=True, source=src("dma_buf_fd"),
       doc="Installs the caller's reference in a new fd of the calling process; takes no reference.")

# An fd the trace saw closed (and not opened again) gives -EBADF to any call that names it.
FD_CLOSED = (Outcome(all_of(Exists("fd", Key((PID, Arg("fd")))), Not(live("fd", Key((PID, Arg("fd")))))),
                      Const(-K.EBADF), "the fd was closed"),)
action("dma_buf_get", CALL, (p("fd", I),),
       [If(ok(), (*use("buffer", RET), inc("buffer", RET, "refs")))],
       returns=Returns.HANDLE, source=src("dma_buf_get"), outcomes=FD_CLOSED)

action("get_dma_buf", CALL, (p("dmabuf"),), [*use("buffer", B), inc("buffer", B, "refs")],
       source=src("get_dma_buf", R.DMABUF_H))

action("dma_buf_put", CALL, (p("dmabuf"),),
       [*use("buffer", B), no_resv(B),
        Require(R.REF_PUT_UNOWNED, gt(kernel_refs(B), 0), (obj("buffer", B),), abort=True),
        Call("drop_ref", (("b", B),))],
       source=src("dma_buf_put"))

# ---------------------------------------------------------------------------------------
# Attachments and mappings
# ---------------------------------------------------------------------------------------

NULL_HANDLES = frozenset({None, "0", "0x0", "(null)", "(nil)", "0000000000000000"})


def _attach_body(dynamic: Expr) -> list[Stmt]:
    return [*use("buffer", B), no_resv(B),
            If(ok(), (
                Create("attachment", RET, (("buffer", B), ("dynamic", dynamic),
                                           ("dev", Cond(IsNone(Arg("dev")), Const(""), Arg("dev"))))),
                inc("buffer", B, "attachments"),
            ))]


action("dma_buf_attach", CALL, (p("dmabuf"), p("dev", S_, True)), _attach_body(Const(False)),
       returns=Returns.HANDLE, sleeps=True, source=src("dma_buf_attach"))
action("dma_buf_dynamic_attach", CALL,
       (p("dmabuf"), p("dev", S_, True), p("importer_ops", H, True), p("importer_priv", H, True)),
       _attach_body(Not(In(Arg("importer_ops"), NULL_HANDLES))),
       returns=Returns.HANDLE, sleeps=True, since=(5, 7), source=src("dma_buf_dynamic_attach"),
       doc="A dynamic attachment when importer_ops is given and not NULL.")

action("dma_buf_detach", CALL, (p("dmabuf"), p("attach")),
       [*use("buffer", B),
        If(Not(Exists("attachment", A)), (Adopt("attachment", A, (("buffer", B),)), inc("buffer", B, "attachments"))),
        *use("attachment", A, adopt=None),
        no_resv(B),
        Require(R.ATT_WRONG_BUFFER, eq(att_buf(), B), (obj("attachment", A), obj("buffer", B))),
        Require(R.ATT_DETACH_MAPPED, eq(Get("attachment", A, "maps"), 0), (obj("attachment", A),)),
        Require(R.ATT_DETACH_PINNED, eq(Get("attachment", A, "pins"), 0), (obj("attachment", A),)),
        Update("attachment", A, "live", Const(False)),
        dec("buffer", att_buf(), "attachments")],
       sleeps=True, source=src("dma_buf_detach"))


def _lock_rule(lock: str) -> list[Stmt]:
    """The locking rule of map/unmap/vmap/vunmap in a variant.

    ``none``: no rule (before 5.7); ``dynamic``: dynamic attachments need the
    lock (5.7 to 6.1); ``all``: every caller holds it (6.2+); ``unlocked``:
    the _unlocked variants, which must not hold it.
    """
    if lock == "dynamic":
        return [If(Get("attachment", A, "dynamic"), (need_resv(att_buf()),))]
    if lock == "all":
        return [need_resv(att_buf())]
    if lock == "unlocked":
        return [no_resv(att_buf())]
    return []


def _map_body(lock: str, cached: bool) -> list[Stmt]:
    S = RET
    create: list[Stmt] = [Create("mapping", S, (("attachment", A), ("direction", Arg("direction")))),
                          inc("attachment", A, "maps")]
    effect: list[Stmt]
    if cached:
        same = all_of(Exists("mapping", S), live("mapping", S), eq(Get("mapping", S, "attachment"), A))
        effect = [If(same, (inc("mapping", S, "refs"),), tuple(create))]
    else:
        effect = create
    return [*use("attachment", A),
            Require(R.REF_USE_AFTER_RELEASE, live("buffer", att_buf()), (obj("buffer", att_buf()),), abort=True),
            *_lock_rule(lock),
            If(ok(), tuple(effect))]


def _unmap_body(lock: str) -> list[Stmt]:
    S = Arg("sg_table")
    return [*use("attachment", A),
            *_lock_rule(lock),
            Require(R.MAP_UNMAP_MISMATCH, Exists("mapping", S), (obj("attachment", A),), abort=True),
            Require(R.MAP_DOUBLE_UNMAP, live("mapping", S), (obj("mapping", S), obj("attachment", A)), abort=True),
            Require(R.MAP_UNMAP_MISMATCH, eq(Get("mapping", S, "attachment"), A),
                    (obj("mapping", S), obj("attachment", A)), abort=True),
            Require(R.MAP_UNMAP_DIRECTION, eq(Get("mapping", S, "direction"), Arg("direction")),
                    (obj("mapping", S),)),
            dec("mapping", S, "refs"),
            If(eq(Get("mapping", S, "refs"), 0), (
                Update("mapping", S, "live", Const(False)),
                dec("attachment", A, "maps"),
            ))]


MAP_PARAMS = (p("attach"), p("direction", D))
UNMAP_PARAMS = (p("attach"), p("sg_table"), p("direction", D))
# (since, until, lock, cached): sg_table caching went away in 6.15
for since, until, lock, cached in (((3, 3), (5, 7), "none", True), ((5, 7), (6, 2), "dynamic", True),
                                   ((6, 2), (6, 15), "all", True), ((6, 15), None, "all", False)):
    action("dma_buf_map_attachment", CALL, MAP_PARAMS, _map_body(lock, cached), returns=Returns.HANDLE,
           since=since, until=until, sleeps=True, source=src("dma_buf_map_attachment"),
           doc="Maps the attachment for device DMA; the sg_table must be unmapped with the same attachment "
           "and direction. Before 6.15 the core may hand back its cached sg_table again.")
    action("dma_buf_unmap_attachment", CALL, UNMAP_PARAMS, _unmap_body(lock), since=since, until=until,
           sleeps=True, source=src("dma_buf_unmap_attachment"))

def resv_busy(b: Expr) -> Expr:
    """Someone (the caller too) holds the buffer's reservation lock: a call that takes it sleeps."""
    return ne(Get("resv", resv_of(b), "holder"), 0)


for since, until, cached in (((6, 2), (6, 15), True), ((6, 15), None, False)):
    action("dma_buf_map_attachment_unlocked", CALL, MAP_PARAMS, _map_body("unlocked", cached),
           returns=Returns.HANDLE, since=since, until=until, sleeps=True, waits=resv_busy(att_buf()),
           source=src("dma_buf_map_attachment_unlocked"))
    action("dma_buf_unmap_attachment_unlocked", CALL, UNMAP_PARAMS, _unmap_body("unlocked"), since=since,
           until=until, sleeps=True, waits=resv_busy(att_buf()), source=src("dma_buf_unmap_attachment_unlocked"))

# -- dynamic importers ---------------------------------------------------------------------

action("dma_buf_pin", CALL, (p("attach"),),
       [*use("attachment", A), need_resv(att_buf()),
        Require(R.DYN_PIN_STATIC, Get("attachment", A, "dynamic"), (obj("attachment", A),)),
        If(ok(), (inc("attachment", A, "pins"),))],
       returns=Returns.INT, since=(5, 7), source=src("dma_buf_pin"))
action("dma_buf_unpin", CALL, (p("attach"),),
       [*use("attachment", A), need_resv(att_buf()),
        Require(R.DYN_PIN_STATIC, Get("attachment", A, "dynamic"), (obj("attachment", A),)),
        Require(R.DYN_UNPIN_UNPINNED, gt(Get("attachment", A, "pins"), 0), (obj("attachment", A),), abort=True),
        dec("attachment", A, "pins")],
       since=(5, 7), source=src("dma_buf_unpin"))
action("dma_buf_move_notify", CALL, (p("dmabuf"),),
       [*use("buffer", B),
        need_resv(B, R.LOCK_MOVE_NOTIFY),
        ForEach("attachment", all_of(RowField("live"), eq(RowField("buffer"), B)), (
            Require(R.DYN_MOVE_PINNED,
                    all_of(eq(RowField("pins"), 0), any_of(RowField("dynamic"), eq(RowField("maps"), 0))),
                    (obj("attachment", RowField("key")),)),
        ))],
       since=(5, 7), source=src("dma_buf_move_notify"),
       doc="The exporter tells dynamic importers the backing storage moves; static importers' mappings and "
       "pins forbid the move.")

# ---------------------------------------------------------------------------------------
# Kernel CPU access: begin/end, kmap, kmap_atomic, vmap
# ---------------------------------------------------------------------------------------

D_ = Arg("direction")
CPU_KEY = Key((B, D_))
FAIL_KEY = Key((B, TID))
CPU_PARAMS = (p("dmabuf"), p("direction", D), p("start", I, True), p("len", I, True))


def _close_cpu_bracket(directions: tuple[Expr | int, ...]) -> Stmt:
    """Close one open bracket: in the first of ``directions`` that has one."""
    first, rest = directions[0], directions[1:]
    key = Key((B, first if not isinstance(first, int) else Const(first)))
    return If(gt(Get("cpu_access", key, "open"), 0), (dec("cpu_access", key, "open"),),
              (_close_cpu_bracket(rest),) if rest else ())

action("dma_buf_begin_cpu_access", CALL, CPU_PARAMS,
       [*use("buffer", B), no_resv(B),
        If(ok(), (
            inc("cpu_access", CPU_KEY, "open"),
            inc("buffer", B, "cpu_open"),
            Update("cpu_failed", FAIL_KEY, "failed", Const(False)),
        ), (Update("cpu_failed", FAIL_KEY, "failed", Const(True)),))],
       returns=Returns.INT, since=(3, 4), sleeps=True, source=src("dma_buf_begin_cpu_access"),
       doc="Prepares the buffer for CPU access in a direction; a failure grants no access.")
action("dma_buf_end_cpu_access", CALL, CPU_PARAMS,
       [*use("buffer", B), no_resv(B),
        Require(R.CPU_END_AFTER_FAILED_BEGIN,
                Not(all_of(eq(Get("buffer", B, "cpu_open"), 0), Get("cpu_failed", FAIL_KEY, "failed"))),
                (obj("buffer", B),), abort=True),
        Require(R.CPU_END_WITHOUT_BEGIN, gt(Get("buffer", B, "cpu_open"), 0), (obj("buffer", B),), abort=True),
        Require(R.CPU_END_DIRECTION, gt(Get("cpu_access", CPU_KEY, "open"), 0),
                (obj("buffer", B), obj("cpu_access", CPU_KEY))),
        # the kernel keeps no pairing: whatever the direction, the caller's bracket is over
        _close_cpu_bracket((D_, K.DMA_BIDIRECTIONAL, K.DMA_TO_DEVICE, K.DMA_FROM_DEVICE, K.DMA_NONE)),
        dec("buffer", B, "cpu_open")],
       returns=Returns.INT, since=(3, 4), sleeps=True, source=src("dma_buf_end_cpu_access"))

PAGE_KEY = Key((B, Arg("page_num")))
action("dma_buf_kmap", CALL, (p("dmabuf"), p("page_num", I)),
       [*use("buffer", B),
        Require(R.KMAP_OUTSIDE, gt(Get("buffer", B, "cpu_open"), 0), (obj("buffer", B),)),
        If(ok(), (inc("kmap", PAGE_KEY, "count"),))],
       returns=Returns.HANDLE, since=(3, 4), until=(5, 6), sleeps=True, source=src("dma_buf_kmap"))
action("dma_buf_kunmap", CALL, (p("dmabuf"), p("page_num", I), p("vaddr", H, True)),
       [*use("buffer", B),
        Require(R.KMAP_UNMAP_MISMATCH, gt(Get("kmap", PAGE_KEY, "count"), 0), (obj("buffer", B),), abort=True),
        dec("kmap", PAGE_KEY, "count")],
       since=(3, 4), until=(5, 6), source=src("dma_buf_kunmap"))
action("dma_buf_kmap_atomic", CALL, (p("dmabuf"), p("page_num", I)),
       [*use("buffer", B),
        Require(R.KMAP_OUTSIDE, gt(Get("buffer", B, "cpu_open"), 0), (obj("buffer", B),)),
        If(ok(), (
            inc("kmap", PAGE_KEY, "atomic"),
            inc("task", TID, "kmap_atomic"),
            Require(R.KMAP_ATOMIC_LIMIT, le(Get("task", TID, "kmap_atomic"), 2), (obj("task", TID),)),
        ))],
       returns=Returns.HANDLE, since=(3, 4), until=(4, 19), source=src("dma_buf_kmap_atomic"))
action("dma_buf_kunmap_atomic", CALL, (p("dmabuf"), p("page_num", I), p("vaddr", H, True)),
       [*use("buffer", B),
        Require(R.KMAP_UNMAP_MISMATCH, gt(Get("kmap", PAGE_KEY, "atomic"), 0), (obj("buffer", B),), abort=True),
        dec("kmap", PAGE_KEY, "atomic"),
        dec("task", TID, "kmap_atomic")],
       since=(3, 4), until=(4, 19), source=src("dma_buf_kunmap_atomic"))


def _vmap_body(lock: str) -> list[Stmt]:
    pre: list[Stmt] = [need_resv(B)] if lock == "all" else [no_resv(B)] if lock == "unlocked" else []
    return [*use("buffer", B), *pre,
            If(ok(), (
                If(eq(Get("buffer", B, "vmap_count"), 0),
                   (Update("buffer", B, "vmap_ptr", RET),),
                   (Require(R.CORE_VMAP_SAME, eq(RET, Get("buffer", B, "vmap_ptr")), (obj("buffer", B),)),)),
                inc("buffer", B, "vmap_count"),
            ))]


def _vunmap_body(lock: str) -> list[Stmt]:
    pre: list[Stmt] = [need_resv(B)] if lock == "all" else [no_resv(B)] if lock == "unlocked" else []
    return [*use("buffer", B), *pre,
            Require(R.VMAP_UNBALANCED, gt(Get("buffer", B, "vmap_count"), 0), (obj("buffer", B),), abort=True),
            Require(R.VMAP_ADDRESS, eq(Arg("map"), Get("buffer", B, "vmap_ptr")), (obj("buffer", B),)),
            dec("buffer", B, "vmap_count"),
            If(eq(Get("buffer", B, "vmap_count"), 0), (Update("buffer", B, "vmap_ptr", Const("")),))]


# what the core does in dma_buf_vmap()/dma_buf_vunmap(): the exporter's vmap on the first, vunmap on the last,
# and every later vmap gets the address the first returned
VMAP_COUNT = Get("buffer", B, "vmap_count")
VMAP_INVOKES = (("vmap", eq(VMAP_COUNT, 0)),)
VMAP_OUTCOMES = (Outcome(gt(VMAP_COUNT, 0), Get("buffer", B, "vmap_ptr"), "already vmapped: the cached address",
                         R.CORE_VMAP_SAME),)
VUNMAP_INVOKES = (("vunmap", eq(VMAP_COUNT, 1)),)
for since, until, lock in (((3, 5), (6, 2), "none"), ((6, 2), None, "all")):
    action("dma_buf_vmap", CALL, (p("dmabuf"),), _vmap_body(lock), returns=Returns.HANDLE, since=since,
           until=until, sleeps=True, source=src("dma_buf_vmap"), invokes=VMAP_INVOKES, outcomes=VMAP_OUTCOMES,
           doc="The core counts vmaps: the exporter's vmap runs on the first, every caller gets the same address.")
    action("dma_buf_vunmap", CALL, (p("dmabuf"), p("map")), _vunmap_body(lock), since=since, until=until,
           sleeps=True, source=src("dma_buf_vunmap"), invokes=VUNMAP_INVOKES)
action("dma_buf_vmap_unlocked", CALL, (p("dmabuf"),), _vmap_body("unlocked"), returns=Returns.HANDLE,
       since=(6, 2), sleeps=True, source=src("dma_buf_vmap_unlocked"), waits=resv_busy(B),
       invokes=VMAP_INVOKES, outcomes=VMAP_OUTCOMES)
action("dma_buf_vunmap_unlocked", CALL, (p("dmabuf"), p("map")), _vunmap_body("unlocked"), since=(6, 2),
       sleeps=True, source=src("dma_buf_vunmap_unlocked"), waits=resv_busy(B),
       invokes=VUNMAP_INVOKES)

action("dma_buf_mmap", CALL, (p("dmabuf"), p("vma", H, True), p("pgoff", I, True)),
       [*use("buffer", B), no_resv(B)],
       returns=Returns.INT, since=(3, 5), sleeps=True, source=src("dma_buf_mmap"),
       doc="An importer redirects its own mmap to the dma-buf.")

# ---------------------------------------------------------------------------------------
# Reservation locks and fences
# ---------------------------------------------------------------------------------------

O = Arg("obj")


WW_CTX = Arg("ctx")
NO_CTX = In(WW_CTX, NULL_HANDLES)  # ctx NULL: a single object, no deadlock avoidance


def _took_resv(ctx: Expr) -> tuple[Stmt, ...]:
    """The thread now holds the reservation object (in acquire context ``ctx``, or none)."""
    return (Update("resv", O, "holder", TID), Update("resv", O, "reserved", Const(0)),
            Update("resv", O, "ctx", Cond(In(ctx, NULL_HANDLES), Const(""), ctx)),
            inc("task", TID, "resv_held"))


def _lock_body(succeeded: Expr, slow: bool) -> list[Stmt]:
    """dma_resv_lock and its variants: ww_mutex rules, then the effect."""
    backoff_done = any_of(NO_CTX, Not(Get("ww_ctx", WW_CTX, "backoff")), eq(Get("ww_ctx", WW_CTX, "held"), 0))
    return [
        # the same context again gets -EALREADY (handled); without one it is a self-deadlock
        Require(R.LOCK_RESV_RECURSIVE, any_of(ne(Get("resv", O, "holder"), TID),
                                              all_of(Not(NO_CTX), eq(RET, -K.EALREADY))),
                (obj("resv", O),), abort=True),
        Require(R.RESV_EDEADLK_NO_BACKOFF, backoff_done, (obj("ww_ctx", WW_CTX),)),
        If(all_of(NO_CTX, succeeded), (
            Require(R.RESV_MULTIPLE_WITHOUT_CTX, eq(Get("task", TID, "resv_held"), 0), (obj("task", TID),)),
        )),
        If(succeeded, (
            *_took_resv(WW_CTX),
            If(Not(NO_CTX), (inc("ww_ctx", WW_CTX, "held"), Update("ww_ctx", WW_CTX, "backoff", Const(False)))),
        )),
        *([] if slow else [If(all_of(Not(NO_CTX), eq(RET, -K.EDEADLK)),
                              (Update("ww_ctx", WW_CTX, "backoff", Const(True)),))]),
    ]


# What ww_mutex does when the lock is taken (kernel/locking/ww_mutex.h, wait-die, which reservation_ww_class
# uses): the same context again gets -EALREADY; a context that holds locks and finds the lock held by an
# older context (smaller stamp) dies with -EDEADLK; everyone else sleeps until the lock is free.  Without a
# context nothing backs off: a thread that locks what it holds sleeps forever.
HOLDER = Get("resv", O, "holder")
HOLDER_CTX = Get("resv", O, "ctx")
ALREADY = all_of(eq(HOLDER, TID), Not(NO_CTX), eq(HOLDER_CTX, WW_CTX))
DIES = all_of(ne(HOLDER, 0), Not(NO_CTX), ne(HOLDER_CTX, WW_CTX), ne(HOLDER_CTX, ""),
              gt(Get("ww_ctx", WW_CTX, "held"), 0),
              gt(Get("ww_ctx", WW_CTX, "stamp"), Get("ww_ctx", HOLDER_CTX, "stamp")))
LOCK_OUTCOMES = (Outcome(ALREADY, Const(-K.EALREADY), "the context holds it already"),
                 Outcome(DIES, Const(-K.EDEADLK), "a younger context that holds locks meets an older holder"))
WW_SRC = Source("kernel/locking/ww_mutex.h", "__ww_mutex_check_kill")
for name in ("dma_resv_lock", "dma_resv_lock_interruptible"):
    action(name, CALL, (p("obj"), p("ctx", H, True)), _lock_body(ok(), slow=False), returns=Returns.INT,
           since=(3, 17), sleeps=True, source=src(name, R.RESV_C), waits=all_of(ne(HOLDER, 0), Not(ALREADY), Not(DIES)),
           outcomes=LOCK_OUTCOMES)
# the slow path is for a context that holds nothing after backing off: it just sleeps for the contended lock
action("dma_resv_lock_slow_interruptible", CALL, (p("obj"), p("ctx", H, True)), _lock_body(ok(), slow=True),
       returns=Returns.INT, since=(3, 17), sleeps=True, source=src("dma_resv_lock_slow_interruptible", R.RESV_C),
       waits=ne(HOLDER, 0))
action("dma_resv_lock_slow", CALL, (p("obj"), p("ctx", H, True)), _lock_body(Const(True), slow=True), since=(3, 17),
       sleeps=True, source=src("dma_resv_lock_slow", R.RESV_C), waits=ne(HOLDER, 0))
action("dma_resv_trylock", CALL, (p("obj"),),
       [If(eq(RET, 1), _took_resv(Const(None)))],
       returns=Returns.INT, since=(3, 17), source=src("dma_resv_trylock", R.RESV_C),
       outcomes=(Outcome(ne(HOLDER, 0), Const(0), "held by someone"),))
RESV_CTX = Get("resv", O, "ctx")
action("dma_resv_unlock", CALL, (p("obj"),),
       [If(Not(Exists("resv", O)), (Adopt("resv", O, (("holder", TID),)),)),
        Require(R.LOCK_RESV_UNLOCK, eq(Get("resv", O, "holder"), TID), (obj("resv", O),), abort=True),
        If(gt(Get("task", TID, "resv_held"), 0), (dec("task", TID, "resv_held"),)),
        If(all_of(ne(RESV_CTX, ""), gt(Get("ww_ctx", RESV_CTX, "held"), 0)), (dec("ww_ctx", RESV_CTX, "held"),)),
        Update("resv", O, "ctx", Const("")),
        Update("resv", O, "holder", Const(0)),
        Update("resv", O, "reserved", Const(0))],
       since=(3, 17), source=src("dma_resv_unlock", R.RESV_C))
action("dma_resv_reserve_fences", CALL, (p("obj"), p("num_fences", I)),
       [Require(R.RESV_FENCE_UNLOCKED, eq(Get("resv", O, "holder"), TID), (obj("resv", O),)),
        If(ok(), (Update("resv", O, "reserved", Arith(ArithOp.ADD, Get("resv", O, "reserved"),
                                                       Arg("num_fences"))),))],
       returns=Returns.INT, since=(5, 19), sleeps=True, source=src("dma_resv_reserve_fences", R.RESV_C))
action("dma_resv_add_fence", CALL, (p("obj"), p("fence"), p("usage", S_, True)),
       [Require(R.RESV_FENCE_UNLOCKED, eq(Get("resv", O, "holder"), TID), (obj("resv", O),)),
        Require(R.RESV_ADD_UNRESERVED, gt(Get("resv", O, "reserved"), 0), (obj("resv", O),)),
        If(gt(Get("resv", O, "reserved"), 0), (dec("resv", O, "reserved"),))],
       since=(5, 19), source=src("dma_resv_add_fence", R.RESV_C))

FN = Arg("fence")
CTXK = Arg("context")
action("dma_fence_init", CALL, (p("fence"), p("context", I), p("seqno", I)),
       [Require(R.FENCE_SEQNO, any_of(eq(CTXK, 0),  # context 0: the core's stub fences, all seqno 0
                                      Not(Exists("fence_context", CTXK)),
                                      gt(Arg("seqno"), Get("fence_context", CTXK, "last_seqno"))),
                (obj("fence_context", CTXK),)),
        Update("fence_context", CTXK, "last_seqno", Arg("seqno")),
        Create("fence", FN, (("context", CTXK), ("seqno", Arg("seqno"))))],
       since=(3, 17), source=src("dma_fence_init", R.FENCE_C))
for name in K.FENCE_SIGNALS:
    action(name, CALL, (p("fence"), p("timestamp", I, True)),
           [If(Not(Exists("fence", FN)), (Adopt("fence", FN, ()),)),
            Require(R.FENCE_SIGNAL_TWICE, Not(Get("fence", FN, "signaled")), (obj("fence", FN),), abort=True),
            Update("fence", FN, "signaled", Const(True))],
           returns=Returns.INT, since=(3, 17), source=src(name, R.FENCE_C))
action("dma_fence_set_error", CALL, (p("fence"), p("error", I)),
       [If(Not(Exists("fence", FN)), (Adopt("fence", FN, ()),)),
        Require(R.FENCE_ERROR_AFTER_SIGNAL, Not(Get("fence", FN, "signaled")), (obj("fence", FN),))],
       since=(4, 11), source=src("dma_fence_set_error", R.FENCE_C))
action("dma_fence_release", CALL, (p("fence"),),
       [If(Exists("fence", FN), (Update("fence", FN, "live", Const(False)),))],
       since=(3, 17), source=src("dma_fence_release", R.FENCE_C),
       doc="The last reference to a fence is gone; its address may be reused by a new fence.")
for name in K.FENCE_WAITS:
    action(name, CALL, (p("fence"), p("intr", I, True), p("timeout", I, True)), [], returns=Returns.INT,
           since=(3, 17), sleeps=True, source=src(name, R.FENCE_C),
           waits=all_of(Exists("fence", FN), live("fence", FN), Not(Get("fence", FN, "signaled"))))

# -- other locks and what lockdep counts as locks (read by the lock-order analysis) ----------------
# These carry no rule of their own here: the lock-order graph (checker/analysis) reads them; the sleeping
# context rules apply.
LOCK_SRC = Source("kernel/locking/mutex.c", "mutex_lock")
for name, sleeps, ret in (("mutex_lock", True, Returns.NOTHING), ("mutex_lock_interruptible", True, Returns.INT),
                          ("mutex_trylock", False, Returns.INT), ("mutex_unlock", False, Returns.NOTHING)):
    action(name, CALL, (p("lock"), p("name", S_, True)), [], returns=ret, sleeps=sleeps, source=LOCK_SRC,
           doc="A driver mutex (lock is its address, name its lockdep class).")
for name, sleeps in (("mmap_read_lock", True), ("mmap_write_lock", True), ("mmap_read_unlock", False),
                     ("mmap_write_unlock", False)):
    action(name, CALL, (p("mm", H, True),), [], sleeps=sleeps, source=Source("include/linux/mmap_lock.h", name),
           doc="The process's mmap_lock (mm defaults to the calling process's).")
WW_CLASS = Cond(IsNone(Arg("ww_class")), Const("reservation_ww_class"), Arg("ww_class"))
action("ww_acquire_init", CALL, (p("ctx"), p("ww_class", S_, True)),
       [inc("ww_class", WW_CLASS, "stamp"),
        Create("ww_ctx", WW_CTX, (("stamp", Get("ww_class", WW_CLASS, "stamp")),))], since=(3, 17),
       source=Source("include/linux/ww_mutex.h", "ww_acquire_init"),
       doc="A wound/wait acquire context for locking several reservation objects.")
action("ww_acquire_done", CALL, (p("ctx"),), [], since=(3, 17),
       source=Source("include/linux/ww_mutex.h", "ww_acquire_done"), doc="No more locks will be taken in ctx.")
action("ww_acquire_fini", CALL, (p("ctx"),),
       [If(Not(Exists("ww_ctx", WW_CTX)), (Adopt("ww_ctx", WW_CTX, ()),)),
        Require(R.RESV_CTX_FINI_HELD, eq(Get("ww_ctx", WW_CTX, "held"), 0), (obj("ww_ctx", WW_CTX),)),
        Update("ww_ctx", WW_CTX, "live", Const(False))],
       since=(3, 17), source=Source("include/linux/ww_mutex.h", "ww_acquire_fini"),
       doc="The acquire context ends; its locks must all be unlocked first.")
action("dma_fence_begin_signalling", CALL, (), [], returns=Returns.INT, since=(5, 8),
       source=src("dma_fence_begin_signalling", R.FENCE_C),
       doc="Start of a fence signalling critical section (ret is the cookie).")
action("dma_fence_end_signalling", CALL, (p("cookie", I, True),), [], since=(5, 8),
       source=src("dma_fence_end_signalling", R.FENCE_C), doc="End of a fence signalling critical section.")
action("alloc", NOTE, (p("gfp", S_),), [],
       doc="A memory allocation with these GFP flags (GFP_KERNEL may recurse into reclaim: fs_reclaim).")

# ---------------------------------------------------------------------------------------
# Userspace: fds, processes, mmap, ioctl, llseek
# ---------------------------------------------------------------------------------------

FD = Arg("fd")
FDKEY = Key((PID, FD))
FDBUF = Local("buf")
# For outcomes, which read the state before the call (no locals): what the core decides on a live dma-buf fd
# before any exporter callback runs.  The lab's conformance check compares them with a real kernel's answers.
LIVE_FD = all_of(Exists("fd", FDKEY), live("fd", FDKEY))
FD_SIZE = Get("buffer", Get("fd", FDKEY, "buffer"), "size")


def _known_fd(key: Expr = FDKEY) -> list[Stmt]:
    """Syscalls on fds not known to be dma-bufs are not about dma-buf."""
    return [Ignore(Not(all_of(Exists("fd", key), live("fd", key))), "fd not known to be a dma-buf"),
            Let("buf", Get("fd", key, "buffer"))]


def _dup(newkey: Expr, cloexec: Expr) -> list[Stmt]:
    return [*_known_fd(),
            If(ok(), (Call("install_fd", (("fdkey", newkey), ("b", FDBUF), ("cloexec", cloexec))),
                      inc("buffer", FDBUF, "refs")))]


action("close", SYSCALL, (p("fd", I),),
       [*_known_fd(), If(ne(RET, -K.EBADF), (Call("close_fd", (("fdkey", FDKEY),)),))],
       returns=Returns.INT, source=Source("fs/open.c", "close_fd"), outcomes=FD_CLOSED)
action("dup", SYSCALL, (p("fd", I),), _dup(Key((PID, RET)), Const(False)), returns=Returns.NUMBER,
       outcomes=FD_CLOSED)
action("dup2", SYSCALL, (p("fd", I), p("newfd", I)),
       [Stop(eq(FD, Arg("newfd"))), *_dup(Key((PID, Arg("newfd"))), Const(False))], returns=Returns.INT)
action("dup3", SYSCALL, (p("fd", I), p("newfd", I), p("flags", I, True)),
       _dup(Key((PID, Arg("newfd"))),
            ne(band(Cond(IsNone(Arg("flags")), Const(0), Arg("flags")), K.O_CLOEXEC), 0)),
       returns=Returns.INT)

FCNTL_PARAMS = (p("fd", I), p("cmd", ParamType.FCNTL), p("arg", I, True))
action("fcntl", SYSCALL, FCNTL_PARAMS, _dup(Key((PID, RET)), Const(False)), returns=Returns.NUMBER,
       when=eq(Arg("cmd"), "F_DUPFD"))
action("fcntl", SYSCALL, FCNTL_PARAMS, _dup(Key((PID, RET)), Const(True)), returns=Returns.NUMBER,
       when=eq(Arg("cmd"), "F_DUPFD_CLOEXEC"))
action("fcntl", SYSCALL, FCNTL_PARAMS,
       [*_known_fd(),
        Stop(failed()),
        Let("cloexec", ne(band(Cond(IsNone(Arg("arg")), Const(0), Arg("arg")), K.FD_CLOEXEC), 0)),
        Require(R.FD_CLOEXEC_LATE, Not(all_of(Local("cloexec"), Not(Get("fd", FDKEY, "cloexec")))),
                (obj("fd", FDKEY),)),
        Update("fd", FDKEY, "cloexec", Local("cloexec"))],
       returns=Returns.INT, when=eq(Arg("cmd"), "F_SETFD"))
action("fcntl", SYSCALL, FCNTL_PARAMS, [], returns=Returns.INT, doc="Other fcntl commands change nothing here.")

ROWPID = KeyPart(RowField("key"), 0)
OWN_LIVE = all_of(RowField("live"), eq(ROWPID, PID))
CHILD = RET


def _fork_body() -> list[Stmt]:
    return [Stop(Not(gt(RET, 0))),
            ForEach("fd", OWN_LIVE, index=PID, body=(
                Call("install_fd", (("fdkey", Key((CHILD, KeyPart(RowField("key"), 1)))), ("b", RowField("buffer")),
                                    ("cloexec", RowField("cloexec")))),
                inc("buffer", RowField("buffer"), "refs"),
            )),
            ForEach("vma", OWN_LIVE, index=PID, body=(
                Create("vma", Key((CHILD, KeyPart(RowField("key"), 1))),
                       (("buffer", RowField("buffer")), ("length", RowField("length")))),
                inc("buffer", RowField("buffer"), "mmaps"),
                inc("buffer", RowField("buffer"), "refs"),
            ))]


CLONE_THREAD = 0x10000
action("fork", SYSCALL, (), _fork_body(), returns=Returns.NUMBER,
       doc="The child (the return value) gets a copy of every fd and mapping: one more reference each.")
action("vfork", SYSCALL, (), _fork_body(), returns=Returns.NUMBER)
action("clone", SYSCALL, (p("flags", I, True),),
       [Stop(ne(band(Cond(IsNone(Arg("flags")), Const(0), Arg("flags")), CLONE_THREAD), 0)), *_fork_body()],
       returns=Returns.NUMBER, doc="A new thread (CLONE_THREAD) shares everything; a new process is a fork.")


def _process_teardown(exec_: bool) -> list[Stmt]:
    """What the kernel cleans up at exit (or exec), and what it does not."""
    own = all_of(RowField("live"), eq(ROWPID, PID))
    out: list[Stmt] = [
        ForEach("sync", all_of(own, gt(RowField("open"), 0)), index=PID, body=(
            Require(R.SYNC_LEAK, Const(False), (obj("sync", RowField("key")),)),
            Update("sync", RowField("key"), "open", Const(0)),
        )),
        ForEach("sync_cover", own, index=PID, body=(
            Update("sync_cover", RowField("key"), "open", Const(0)),
            Update("sync_cover", RowField("key"), "reads", Const(0)),
            Update("sync_cover", RowField("key"), "writes", Const(0)),
        )),
        ForEach("sync", all_of(own, ne(RowField("retry"), 0)), index=PID, body=(
            Require(R.SYNC_RETRY, Const(False), (obj("sync", RowField("key")),)),
            Update("sync", RowField("key"), "retry", Const(0)),
        )),
        ForEach("rfc_access", all_of(own, gt(RowField("open"), 0)), index=PID, body=(
            Require(R.RFC_PREPARE_LEAK, Const(False), (obj("rfc_access", RowField("key")),)),
            Update("rfc_access", RowField("key"), "open", Const(0)),
        )),
    ]
    if exec_:
        out.append(ForEach("fd", own, index=PID, body=(
            If(RowField("cloexec"), (Call("close_fd", (("fdkey", RowField("key")),)),),
               (Require(R.FD_NO_CLOEXEC, Const(False), (obj("fd", RowField("key")),)),)),
        )))
    else:
        out.append(ForEach("fd", own, index=PID, body=(Call("close_fd", (("fdkey", RowField("key")),)),)))
    out.append(ForEach("vma", own, index=PID, body=(Call("unmap_vma", (("vkey", RowField("key")),)),)))
    return out


action("execve", SYSCALL, (p("filename", S_, True),), [Stop(failed()), *_process_teardown(True)],
       returns=Returns.INT, source=Source("fs/exec.c", "do_close_on_exec"),
       doc="fds with O_CLOEXEC are closed, the others survive; mappings go away.")
action("exit_group", SYSCALL, (p("status", I, True),), _process_teardown(False),
       source=Source("kernel/exit.c", "do_exit"),
       doc="The kernel closes every fd and mapping of the process; open SYNC brackets it does not end.")

PAGE = K.PAGE_SIZE
MMAP_PAGES = Arith(ArithOp.ADD, Arith(ArithOp.FLOORDIV, Cond(IsNone(Arg("offset")), Const(0), Arg("offset")),
                                      Const(PAGE)),
                   Arith(ArithOp.FLOORDIV, Arith(ArithOp.ADD, Arg("length"), Const(PAGE - 1)), Const(PAGE)))
BUF_PAGES = Arith(ArithOp.FLOORDIV, Get("buffer", FDBUF, "size"), Const(PAGE))
MMAP_OUTCOMES = FD_CLOSED + (
    Outcome(all_of(LIVE_FD, ne(FD_SIZE, 0),
                   gt(MMAP_PAGES, Arith(ArithOp.FLOORDIV, FD_SIZE, Const(PAGE)))),
            Const(-K.EINVAL), "a mapping past the end of the dma-buf", R.CORE_MMAP_SIZE),)
MMAP_PARAMS = (p("fd", I), p("length", I), p("offset", I, True), p("prot", I, True), p("flags", I, True),
               p("addr", H, True))
MMAP_BODY: list[Stmt] = [
    *_known_fd(), *use("buffer", FDBUF),
    Require(R.CORE_MMAP_SIZE, any_of(failed(), eq(Get("buffer", FDBUF, "size"), 0), le(MMAP_PAGES, BUF_PAGES)), ()),
    If(ok(), (
        Create("vma", Key((PID, RET)), (("buffer", FDBUF), ("length", Arg("length")))),
        inc("buffer", FDBUF, "mmaps"),
        inc("buffer", FDBUF, "refs"),
    ))]
action("mmap", SYSCALL, MMAP_PARAMS, MMAP_BODY, returns=Returns.HANDLE, since=(3, 5), outcomes=MMAP_OUTCOMES,
       source=src("dma_buf_mmap_internal"), doc="The vma holds a reference to the dma-buf's file.")
action("mmap", SYSCALL, MMAP_PARAMS, MMAP_BODY, returns=Returns.HANDLE, until=(3, 5), outcomes=MMAP_OUTCOMES,
       features=frozenset({"rfc2012"}), source=Source(R.SEED_RFC, "dma_buf_mmap"))
action("munmap", SYSCALL, (p("addr"), p("length", I, True)),
       [Ignore(Not(all_of(Exists("vma", Key((PID, Arg("addr")))), live("vma", Key((PID, Arg("addr")))))),
               "address not a known dma-buf mapping"),
        If(ok(), (Call("unmap_vma", (("vkey", Key((PID, Arg("addr")))),)),))],
       returns=Returns.INT)

FLAGS = Arg("flags")
SYNC_KEY = Key((PID, FDBUF, TID))  # pairing: a thread's START and END
COVER_KEY = Key((PID, FDBUF))  # coverage: what the process's open brackets allow
IOCTL_PARAMS = (p("fd", I), p("cmd", ParamType.IOCTL), p("flags", I, True), p("name", S_, True))


def ioctl(cmd: str | None, body: list[Stmt], outcomes: tuple[Outcome, ...] = (), **kw: object) -> None:
    when = eq(Arg("cmd"), cmd) if cmd else None
    action("ioctl", SYSCALL, IOCTL_PARAMS, [*_known_fd(), *use("buffer", FDBUF), *body], returns=Returns.INT,
           when=when, outcomes=FD_CLOSED + outcomes, **kw)  # type: ignore[arg-type]


SYNC_VALID = all_of(eq(band(FLAGS, -8), 0), ne(band(FLAGS, K.SYNC_RW), 0))
SYNC_OUTCOMES = (Outcome(all_of(LIVE_FD, Not(IsNone(FLAGS)), Not(SYNC_VALID)), Const(-K.EINVAL),
                         "SYNC flags outside DMA_BUF_SYNC_VALID_FLAGS_MASK or without READ/WRITE", R.CORE_SYNC_FLAGS),)
SYNC_FILE_VALID = all_of(eq(band(FLAGS, -4), 0), ne(band(FLAGS, K.SYNC_RW), 0))
SYNC_FILE_OUTCOMES = (Outcome(all_of(LIVE_FD, Not(IsNone(FLAGS)), Not(SYNC_FILE_VALID)), Const(-K.EINVAL),
                              "sync-file flags other than READ/WRITE, or neither", R.CORE_SYNC_FILE_FLAGS),)
ioctl("DMA_BUF_IOCTL_SYNC", [
    Ignore(IsNone(FLAGS), "SYNC flags not recorded"),
    Require(R.CORE_SYNC_FLAGS, any_of(failed(), IsNone(RET), SYNC_VALID), ()),
    Stop(Not(SYNC_VALID)),
    Require(R.SYNC_RETRY, any_of(eq(Get("sync", SYNC_KEY, "retry"), 0), eq(Get("sync", SYNC_KEY, "retry"), FLAGS)),
            (obj("sync", SYNC_KEY),)),
    Update("sync", SYNC_KEY, "retry", Const(0)),
    If(one_of(RET, -K.EINTR, -K.EAGAIN, -K.ERESTARTSYS), (Update("sync", SYNC_KEY, "retry", FLAGS),)),
    Stop(failed()),
    If(ne(band(FLAGS, K.SYNC_END), 0), (
        # the fd too: a START that a gap (lost events, a recording begun mid-run) hid leaves the fd
        # uncertain, and the finding is withheld rather than guessed
        Require(R.SYNC_END_WITHOUT_START, gt(Get("sync", SYNC_KEY, "open"), 0),
                (obj("sync", SYNC_KEY), obj("fd", FDKEY)), abort=True),
        Require(R.SYNC_END_DIRECTION, eq(band(FLAGS, K.SYNC_RW), Get("sync", SYNC_KEY, "flags")),
                (obj("sync", SYNC_KEY),)),
        dec("sync", SYNC_KEY, "open"),
        Call("sync_cover", (("key", COVER_KEY), ("flags", Get("sync", SYNC_KEY, "flags")), ("by", Const(-1)))),
    ), (
        Require(R.SYNC_START_TWICE, eq(Get("sync", SYNC_KEY, "open"), 0), (obj("sync", SYNC_KEY),)),
        inc("sync", SYNC_KEY, "open"),
        Update("sync", SYNC_KEY, "flags", band(FLAGS, K.SYNC_RW)),
        Call("sync_cover", (("key", COVER_KEY), ("flags", band(FLAGS, K.SYNC_RW)), ("by", Const(1)))),
    )),
], outcomes=SYNC_OUTCOMES, since=(4, 6), source=src("dma_buf_ioctl"),
    doc="Userspace brackets CPU access to an mmap with START and END, same read/write flags; the kernel "
    "validates the flags exactly and keeps no pairing state.")
for name in sorted(K.SET_NAME_IOCTLS):
    ioctl(name, [], since=(5, 3), source=src("dma_buf_set_name"))
for name in sorted(K.SYNC_FILE_IOCTLS):
    ioctl(name, [
        Ignore(IsNone(FLAGS), "sync-file flags not recorded"),
        Require(R.CORE_SYNC_FILE_FLAGS, any_of(failed(), IsNone(RET), SYNC_FILE_VALID), ()),
    ], outcomes=SYNC_FILE_OUTCOMES, since=(6, 0),
        source=src("dma_buf_export_sync_file" if "EXPORT" in name else "dma_buf_import_sync_file"))
RFC_KEY = Key((PID, FDBUF))
RFC_FEATURE = frozenset({"rfc2012"})
KDS = frozenset({"kds"})
PREPARE: list[Stmt] = [If(ok(), (inc("rfc_access", RFC_KEY, "open"), inc("buffer", FDBUF, "rfc_open")))]
ioctl("DMA_BUF_IOCTL_PREPARE_ACCESS", PREPARE, features=RFC_FEATURE, excludes=KDS,
      source=Source(R.SEED_RFC, "dma_buf_ioctl"))
# The thread's "future enhancement" (ARM's KDS): PREPARE_ACCESS also synchronises, sleeping while another
# process has the buffer prepared.
ioctl("DMA_BUF_IOCTL_PREPARE_ACCESS", PREPARE, features=RFC_FEATURE | KDS,
      waits=gt(Get("buffer", Get("fd", FDKEY, "buffer"), "rfc_open"),
               Get("rfc_access", Key((PID, Get("fd", FDKEY, "buffer"))), "open")),
      source=Source(R.SEED_RFC, "", "the prepare ioctl could block until that device had finished"))
ioctl("DMA_BUF_IOCTL_FINISH_ACCESS", [
    Require(R.RFC_FINISH_WITHOUT_PREPARE, gt(Get("rfc_access", RFC_KEY, "open"), 0),
            (obj("rfc_access", RFC_KEY), obj("fd", FDKEY)), abort=True),
    dec("rfc_access", RFC_KEY, "open"), dec("buffer", FDBUF, "rfc_open")], features=RFC_FEATURE,
      source=Source(R.SEED_RFC, "dma_buf_ioctl"))
ioctl(None, [Stop(IsNone(RET)), Require(R.CORE_IOCTL_UNKNOWN, eq(RET, -K.ENOTTY), ())], excludes=RFC_FEATURE,
      outcomes=(Outcome(LIVE_FD, Const(-K.ENOTTY), "a command dma_buf_ioctl does not know", R.CORE_IOCTL_UNKNOWN),),
      source=src("dma_buf_ioctl"), doc="Any other command fails with ENOTTY.")
ioctl(None, [Stop(IsNone(RET)), Require(R.CORE_IOCTL_UNKNOWN, eq(RET, -K.EINVAL), ())], features=RFC_FEATURE,
      outcomes=(Outcome(LIVE_FD, Const(-K.EINVAL), "a command the RFC's ioctl does not know", R.CORE_IOCTL_UNKNOWN),),
      source=Source(R.SEED_RFC, "dma_buf_ioctl"), doc="The RFC's ioctl fails other commands with EINVAL.")

WH = Arg("whence")
SIZE = Get("buffer", FDBUF, "size")
LLSEEK_OK = all_of(eq(Arg("offset"), 0),
                   any_of(all_of(eq(WH, K.SEEK_SET), eq(RET, 0)),
                          all_of(eq(WH, K.SEEK_END), any_of(eq(SIZE, 0), eq(RET, SIZE)))))
# dma_buf_llseek: the base first (SEEK_END: the size, SEEK_SET: 0, anything else -EINVAL), then offset 0 only.
LLSEEK_OUTCOMES = (
    Outcome(all_of(LIVE_FD, Not(one_of(WH, K.SEEK_SET, K.SEEK_END))), Const(-K.EINVAL),
            "whence other than SEEK_SET or SEEK_END", R.CORE_LLSEEK),
    Outcome(all_of(LIVE_FD, ne(Arg("offset"), 0)), Const(-K.EINVAL), "a non-zero offset", R.CORE_LLSEEK),
    Outcome(all_of(LIVE_FD, eq(WH, K.SEEK_SET)), Const(0), "SEEK_SET with offset 0: 0", R.CORE_LLSEEK),
    Outcome(all_of(LIVE_FD, eq(WH, K.SEEK_END), ne(FD_SIZE, 0)), FD_SIZE, "SEEK_END with offset 0: the size",
            R.CORE_LLSEEK),
)
for name in ("lseek", "llseek"):
    action(name, SYSCALL, (p("fd", I), p("offset", I), p("whence", ParamType.WHENCE)),
           [*_known_fd(), *use("buffer", FDBUF), Stop(IsNone(RET)),
            Require(R.CORE_LLSEEK, any_of(failed(), LLSEEK_OK), ())],
           returns=Returns.INT, source=src("dma_buf_llseek"), outcomes=FD_CLOSED + LLSEEK_OUTCOMES,
           doc="Only size discovery: offset 0 with SEEK_END (the size) or SEEK_SET (0).")

# ---------------------------------------------------------------------------------------
# Exporter callbacks (dma_buf_ops members) and importer callbacks
# ---------------------------------------------------------------------------------------

CB_PARAMS = (p("dmabuf", H, True), p("attach", H, True), p("direction", D, True), p("sg_table", H, True),
             p("map", H, True))
action("vmap", CALLBACK, CB_PARAMS,
       [Stop(IsNone(B)),
        Require(R.CORE_VMAP_ONCE, eq(Get("buffer", B, "vmap_count"), 0), (obj("buffer", B),))],
       since=(3, 5), source=src("dma_buf_vmap"))
action("vunmap", CALLBACK, CB_PARAMS,
       [Stop(IsNone(B)),
        Require(R.CORE_VUNMAP_ONCE, eq(Get("buffer", B, "vmap_count"), 1), (obj("buffer", B),))],
       since=(3, 5), source=src("dma_buf_vunmap"))
for name, since in (("attach", (3, 3)), ("detach", (3, 3)), ("map_dma_buf", (3, 3)), ("unmap_dma_buf", (3, 3)),
                    ("release", (3, 3)), ("begin_cpu_access", (3, 4)), ("end_cpu_access", (3, 4)),
                    ("mmap", (3, 5)), ("pin", (5, 7)), ("unpin", (5, 7)), ("move_notify", (5, 7)),
                    ("kmap", (3, 4)), ("kmap_atomic", (3, 4))):
    ops = "dma_buf_attach_ops" if name == "move_notify" else "dma_buf_ops"
    action(name, CALLBACK, CB_PARAMS, [], since=since, source=Source(R.DMABUF_H, f"struct {ops}::{name}"))

# ---------------------------------------------------------------------------------------
# Annotations: what the recorder saw besides calls
# ---------------------------------------------------------------------------------------

ACC = Arg("access")


def OPEN(direction: int) -> Get:
    return Get("cpu_access", Key((B, Const(direction))), "open")


CPU_COMPATIBLE = any_of(gt(OPEN(K.DMA_BIDIRECTIONAL), 0),
                        all_of(any_of(eq(band(ACC, K.ACCESS_WRITE), 0), gt(OPEN(K.DMA_TO_DEVICE), 0)),
                               any_of(eq(band(ACC, K.ACCESS_READ), 0), gt(OPEN(K.DMA_FROM_DEVICE), 0))))
action("cpu_access", NOTE, (p("dmabuf"), p("access", ParamType.ACCESS)),
       [*use("buffer", B),
        Require(R.CPU_ACCESS_OUTSIDE, gt(Get("buffer", B, "cpu_open"), 0), (obj("buffer", B),), abort=True),
        Require(R.CPU_ACCESS_DIRECTION, CPU_COMPATIBLE, (obj("buffer", B),))],
       doc="Kernel code read or wrote the buffer through a kmap or vmap.")
VKEY = Key((PID, Arg("addr")))
action("mmap_access", NOTE, (p("addr"), p("access", ParamType.ACCESS)),
       [Ignore(Not(all_of(Exists("vma", VKEY), live("vma", VKEY))), "address not a known dma-buf mapping"),
        Let("buf", Get("vma", VKEY, "buffer")),
        Require(R.MMAP_ACCESS_WITHOUT_SYNC, gt(Get("sync_cover", COVER_KEY, "open"), 0),
                (obj("sync_cover", COVER_KEY),), abort=True),
        Require(R.SYNC_ACCESS_DIRECTION,
                all_of(any_of(eq(band(ACC, K.ACCESS_READ), 0), gt(Get("sync_cover", COVER_KEY, "reads"), 0)),
                       any_of(eq(band(ACC, K.ACCESS_WRITE), 0), gt(Get("sync_cover", COVER_KEY, "writes"), 0))),
                (obj("sync_cover", COVER_KEY),)),
        Require(R.RFC_ACCESS_WITHOUT_PREPARE, gt(Get("rfc_access", RFC_KEY, "open"), 0),
                (obj("rfc_access", RFC_KEY),))],
       doc="Userspace read or wrote a mapping; addr is the address mmap returned.")
action("fd_received", NOTE, (p("fd", I), p("dmabuf"), p("flags", I, True)),
       [*use("buffer", B),
        Call("install_fd", (("fdkey", FDKEY), ("b", B),
                            ("cloexec", ne(band(Cond(IsNone(Arg("flags")), Const(0), Arg("flags")), K.O_CLOEXEC), 0)))),
        inc("buffer", B, "refs")],
       doc="A dma-buf fd arrived in this process (SCM_RIGHTS, pidfd_getfd, binder): a new reference; flags "
       "carries O_CLOEXEC when the receiver asked for it (pidfd_getfd and binder always set it).")
action("lost_events", NOTE, (p("count", I, True), p("cpu", I, True)), [Bump()],
       doc="The recorder lost events here: what was alive is uncertain from now on.")
action("marker", NOTE, (p("text", S_, True),), [], doc="A comment from the traced program (trace_marker).")

# ---------------------------------------------------------------------------------------
# End of trace: what must have been released
# ---------------------------------------------------------------------------------------

RK = RowField("key")
AT_END: tuple[Stmt, ...] = (
    # Each leak is reported at its innermost object: a leaked mapping, not also its attachment and buffer;
    # and not at all where an earlier finding (detach while mapped, release while attached) explains it.
    ForEach("buffer", all_of(RowField("live"), eq(RowField("attachments"), 0)), (
        Require(R.VMAP_LEAK, eq(RowField("vmap_count"), 0), (obj("buffer", RK),)),
        If(eq(RowField("vmap_count"), 0), (
            Require(R.REF_LEAK, le(sub(sub(RowField("refs"), RowField("fds")), RowField("mmaps")), 0),
                    (obj("buffer", RK),)),
        )),
    )),
    ForEach("attachment", all_of(RowField("live"), eq(RowField("maps"), 0), live("buffer", RowField("buffer"))), (
        Require(R.ATT_LEAK, Const(False), (obj("attachment", RK),)),
    )),
    ForEach("mapping", all_of(RowField("live"), live("attachment", RowField("attachment"))),
            (Require(R.MAP_LEAK, Const(False), (obj("mapping", RK),)),)),
    ForEach("cpu_access", gt(RowField("open"), 0), (Require(R.CPU_LEAK, Const(False), (obj("cpu_access", RK),)),)),
    ForEach("kmap", any_of(gt(RowField("count"), 0), gt(RowField("atomic"), 0)),
            (Require(R.KMAP_LEAK, Const(False), (obj("kmap", RK),)),)),
    ForEach("sync", gt(RowField("open"), 0), (Require(R.SYNC_LEAK, Const(False), (obj("sync", RK),)),)),
    ForEach("sync", ne(RowField("retry"), 0), (Require(R.SYNC_RETRY, Const(False), (obj("sync", RK),)),)),
    ForEach("rfc_access", gt(RowField("open"), 0),
            (Require(R.RFC_PREPARE_LEAK, Const(False), (obj("rfc_access", RK),)),)),
    ForEach("resv", ne(RowField("holder"), 0), (Require(R.LOCK_RESV_LEAK, Const(False), (obj("resv", RK),)),)),
    ForEach("fence", all_of(RowField("live"), Not(RowField("signaled"))),
            (Require(R.FENCE_NEVER_SIGNALLED, Const(False), (obj("fence", RK),)),)),
)

__all__ = ["ACTIONS", "AT_END"]
