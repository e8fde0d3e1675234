"""Issue 5's done-when, as a table: for every class of misuse it names, traces under traces/ that must produce
the class's rule and traces that must not, each run the way a user runs it (``dmaspec check`` with the flag of the
analysis that decides the rule, JSON report).  The per-rule corpora have their own, finer tests (test_corpus,
test_lockorder, test_fencewait, test_races, test_predict); this one says where each class of the issue lives."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest

from checker.cli import main
from spec import SPEC
from spec import rules as R
from spec.lang import Kind
from tests.conftest import TRACES

FLAGS = {"check": [], "lock-order": ["--lock-order"], "races": ["--races"], "predict": ["--predict"]}


@dataclass(frozen=True)
class Case:
    """One class of the issue: the rule that reports it, traces that must produce it and traces that must not
    (paths under traces/), and how they are checked; ``profile`` overrides the traces' own."""

    what: str
    rule: str
    produce: tuple[str, ...]
    clean: tuple[str, ...]
    how: str = "check"
    profile: str | None = None


CASES = (
    # -- lock order (lockdep's graph) ---------------------------------------------------------------------
    Case("lock-order cycle across threads", R.LOCK_ORDER_CYCLE,
         ("lockorder/bad/abba-driver-mutexes.jsonl", "lockorder/bad/resv-abba-without-ctx.jsonl",
          "lockorder/bad/three-lock-cycle.jsonl", "lockorder/bad/fence-wait-under-mutex-signaller-takes-it.jsonl"),
         ("lockorder/ok/abba-under-gate-mutex.jsonl", "lockorder/ok/single-thread-abba.jsonl",
          "lockorder/ok/trylock-in-opposite-order.jsonl", "lockorder/ok/ww-backoff-opposite-orders.jsonl"),
         "lock-order"),
    Case("inversion of the primed order (dma_resv_lockdep)", R.LOCK_ORDER_INVERSION,
         ("lockorder/bad/resv-then-mmap-lock.jsonl",),
         ("lockorder/ok/primed-order-page-fault.jsonl", "lockorder/ok/gfp-kernel-under-resv.jsonl",
          "lockorder/ok/fence-wait-under-resv.jsonl"), "lock-order"),
    # -- ww_mutex ----------------------------------------------------------------------------------------------
    Case("multiple reservation locks without an acquire context", R.RESV_MULTIPLE_WITHOUT_CTX,
         ("bad/RESV-MULTIPLE-WITHOUT-CTX/resv-abba-without-ctx.jsonl",),
         ("ok/ww-acquire-context-backoff.jsonl", "ok/ww-ctx-relock-returns-ealready.jsonl")),
    Case("-EDEADLK not followed by releasing every lock, then the slow-path lock", R.RESV_EDEADLK_NO_BACKOFF,
         ("bad/RESV-EDEADLK-NO-BACKOFF/slow-lock-keeping-the-first.jsonl",
          "bad/RESV-EDEADLK-NO-BACKOFF/releases-only-some-before-slow-lock.jsonl"),
         ("ok/ww-acquire-context-backoff.jsonl", "lockorder/ok/ww-backoff-opposite-orders.jsonl")),
    Case("-EALREADY taken for a second lock", R.LOCK_RESV_UNLOCK,
         ("bad/LOCK-RESV-UNLOCK-NOT-HELD/ealready-counted-as-a-second-lock.jsonl",),
         ("ok/ww-ctx-relock-returns-ealready.jsonl",)),
    Case("-EALREADY is the handled relock, not recursion", R.LOCK_RESV_RECURSIVE,
         ("bad/LOCK-RESV-RECURSIVE/helper-relocks-held-resv.jsonl",),
         ("ok/ww-ctx-relock-returns-ealready.jsonl",
          "bad/LOCK-RESV-UNLOCK-NOT-HELD/ealready-counted-as-a-second-lock.jsonl")),
    Case("unlock without lock", R.LOCK_RESV_UNLOCK,
         ("bad/LOCK-RESV-UNLOCK-NOT-HELD/double-unlock-on-error-path.jsonl",),
         ("ok/ww-acquire-context-backoff.jsonl", "ok/fences-and-reservations.jsonl")),
    Case("acquire context finished with locks held", R.RESV_CTX_FINI_HELD,
         ("bad/RESV-CTX-FINI-HELD/fini-before-unlock.jsonl",),
         ("ok/ww-acquire-context-backoff.jsonl", "ok/ww-ctx-relock-returns-ealready.jsonl")),
    Case("fences added without reserving slots", R.RESV_ADD_UNRESERVED,
         ("bad/RESV-ADD-FENCE-UNRESERVED/add-fence-without-reserve.jsonl",
          "bad/RESV-ADD-FENCE-UNRESERVED/reservation-lost-across-relock.jsonl"),
         ("ok/fences-and-reservations.jsonl", "ok/rdma-dynamic-importer-6.1.jsonl")),
    Case("fences reserved or added without the reservation lock", R.RESV_FENCE_UNLOCKED,
         ("bad/RESV-FENCE-UNLOCKED/add-fence-without-resv-lock.jsonl",),
         ("ok/fences-and-reservations.jsonl",)),
    # -- the locking convention, by profile ----------------------------------------------------------------------
    Case("reservation lock required (6.2+ every importer; 5.7-6.1 dynamic ones)", R.LOCK_RESV_REQUIRED,
         ("bad/LOCK-RESV-REQUIRED/map-attachment-without-resv-lock.jsonl",
          "bad/LOCK-RESV-REQUIRED/dynamic-map-without-resv-lock-5.15.jsonl"),
         ("ok/rdma-dynamic-importer-6.1.jsonl", "ok/locking-6.2-static-and-dynamic.jsonl",
          "ok/dynamic-importer-move-notify.jsonl")),
    Case("a static importer mapping without the lock is fine before 6.2", R.LOCK_RESV_REQUIRED,
         (), ("bad/LOCK-RESV-REQUIRED/map-attachment-without-resv-lock.jsonl",), profile="6.1"),
    Case("reservation lock forbidden (6.2+: the callee takes it)", R.LOCK_RESV_FORBIDDEN,
         ("bad/LOCK-RESV-FORBIDDEN/begin-cpu-access-under-resv-lock.jsonl",
          "bad/LOCK-RESV-FORBIDDEN/map-unlocked-while-holding-resv.jsonl"),
         ("ok/locking-6.2-static-and-dynamic.jsonl", "ok/kernel-vmap-two-users.jsonl")),
    Case("before 6.2 the core does not take the lock in begin_cpu_access", R.LOCK_RESV_FORBIDDEN,
         (), ("bad/LOCK-RESV-FORBIDDEN/begin-cpu-access-under-resv-lock.jsonl",), profile="6.1"),
    Case("move_notify without the reservation lock", R.LOCK_MOVE_NOTIFY,
         ("bad/LOCK-MOVE-NOTIFY-RESV/move-notify-before-locking.jsonl",),
         ("ok/dynamic-importer-move-notify.jsonl", "ok/rdma-dynamic-importer-6.1.jsonl")),
    Case("recursive acquisition", R.LOCK_RESV_RECURSIVE,
         ("bad/LOCK-RESV-RECURSIVE/helper-relocks-held-resv.jsonl",),
         ("ok/locking-6.2-static-and-dynamic.jsonl", "ok/ww-ctx-relock-returns-ealready.jsonl")),
    # -- fences ---------------------------------------------------------------------------------------------------
    Case("a fence signalled twice", R.FENCE_SIGNAL_TWICE, ("bad/FENCE-SIGNAL-TWICE/irq-and-timeout-both-signal.jsonl",),
         ("ok/fences-and-reservations.jsonl", "ok/stub-fences-share-context-0.jsonl")),
    Case("seqno not increasing on its context", R.FENCE_SEQNO,
         ("bad/FENCE-SEQNO-ORDER/seqno-reused-after-reset.jsonl",),
         ("ok/fences-and-reservations.jsonl", "ok/stub-fences-share-context-0.jsonl")),
    Case("error set after signalling", R.FENCE_ERROR_AFTER_SIGNAL,
         ("bad/FENCE-ERROR-AFTER-SIGNAL/set-error-after-signal.jsonl",), ("ok/fences-and-reservations.jsonl",)),
    Case("fence wait, reservation lock, GFP_KERNEL inside a signalling section", R.LOCK_ORDER_INVERSION,
         ("lockorder/bad/fence-wait-in-signalling-section.jsonl", "lockorder/bad/resv-in-signalling-section.jsonl",
          "lockorder/bad/gfp-kernel-in-signalling-section.jsonl"),
         ("lockorder/ok/signalling-section-without-waits-locks-or-reclaim.jsonl",), "lock-order"),
    Case("fence wait-for graph: timelines waiting on each other", R.FENCE_WAIT_CYCLE,
         ("fencewait/bad/two-timelines-wait-on-each-other.jsonl", "fencewait/bad/three-timelines-cycle.jsonl",
          "fencewait/bad/two-timelines-wait-on-each-other.ftrace"),
         ("fencewait/ok/waits-on-already-signalled-fences.jsonl", "fencewait/ok/dependency-chain-without-cycle.jsonl",
          "fencewait/ok/poll-returns-before-the-signal.ftrace",
          "fencewait/ok/interrupt-signals-are-the-hardwares.ftrace",
          "ftrace/ok/sync-waits-for-vgem-fence.ftrace",
          "fencewait/ok/one-timeline-waits-on-another-one-way.jsonl",
          "fencewait/ok/cpu-read-after-device-write-ping-pong.jsonl", "fencewait/ok/own-timeline-wait-and-a-poll.jsonl",
          "ok/fences-and-reservations.jsonl"), "lock-order"),
    Case("fence wait-for graph: threads asleep on each other's fences", R.FENCE_WAIT_DEADLOCK,
         ("fencewait/bad/two-threads-asleep-on-each-others-fences.jsonl",),
         ("fencewait/bad/every-sleeper-stuck-lock-deadlock-too.jsonl",  # reported once, as LOCK-DEADLOCK
          "fencewait/ok/waits-on-already-signalled-fences.jsonl"), "lock-order"),
    Case("every sleeping thread stuck", R.LOCK_DEADLOCK, ("fencewait/bad/every-sleeper-stuck-lock-deadlock-too.jsonl",),
         ("fencewait/bad/two-threads-asleep-on-each-others-fences.jsonl",), "lock-order"),
    Case("a fence never signalled by the end of the trace", R.FENCE_NEVER_SIGNALLED,
         ("bad/FENCE-NEVER-SIGNALLED/job-dropped-without-signal.jsonl",),
         ("ok/fences-and-reservations.jsonl", "fencewait/bad/two-threads-asleep-on-each-others-fences.jsonl")),
    # -- coherency and predicted interleavings ----------------------------------------------------------------------
    Case("coherency races", R.RACE_UNORDERED_ACCESS,
         ("races/bad/gpu-write-overlaps-userspace-sync-read.jsonl",
          "races/bad/kernel-cpu-write-overlaps-device-read.jsonl", "races/bad/two-threads-sync-write-overlap.jsonl"),
         ("races/ok/gpu-write-fence-then-userspace-sync-read.jsonl",
          "races/ok/kernel-cpu-write-then-device-read-program-order.jsonl",
          "races/ok/kernel-cpu-writes-under-mutex.jsonl", "races/ok/two-threads-sync-read-overlap.jsonl"), "races"),
    Case("predicted interleavings", R.PREDICT_REORDER,
         ("predict/bad/put-races-unmap.jsonl", "predict/bad/detach-races-unmap.jsonl",
          "predict/bad/close-races-dma-buf-fd.jsonl"),
         ("predict/ok/importer-holds-its-own-reference.jsonl", "predict/ok/put-after-fence.jsonl",
          "predict/ok/detach-after-fence.jsonl", "predict/ok/reference-taken-before-dma-buf-fd.jsonl"), "predict"),
)


def _rules(path: str, how: str, profile: str | None, capsys: pytest.CaptureFixture[str]) -> set[str]:
    argv = ["check", "--format", "json", *FLAGS[how], *(["--profile", profile] if profile else []), path]
    status = main(argv)
    out = json.loads(capsys.readouterr().out)
    assert status in (0, 1), out
    return {f["rule"] for t in out["traces"] for f in t["findings"]}


RUNS = [(c, path, True) for c in CASES for path in c.produce] + [(c, path, False) for c in CASES for path in c.clean]


@pytest.mark.parametrize(("case", "path", "produces"), RUNS,
                         ids=[f"{c.rule}:{'bad' if p else 'ok'}:{os.path.basename(t)}" for c, t, p in RUNS])
def test_each_class_has_traces_that_must_and_must_not_produce_it(case: Case, path: str, produces: bool,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    rules = _rules(os.path.join(TRACES, path), case.how, case.profile, capsys)
    assert (case.rule in rules) is produces, f"{case.what}: {path} gave {sorted(rules)}"


def test_every_class_has_both_kinds_of_trace() -> None:
    by_rule: dict[str, tuple[set[str], set[str]]] = {}
    for c in CASES:
        produce, clean = by_rule.setdefault(c.rule, (set(), set()))
        produce.update(c.produce)
        clean.update(c.clean)
    assert all(produce and clean for produce, clean in by_rule.values()), sorted(
        r for r, (p, c) in by_rule.items() if not (p and c))


def test_every_analysis_rule_is_a_class_of_the_table() -> None:
    """Rules decided over the whole trace have no traces/bad/RULE/ directory: each is in the table instead."""
    analysis = {r.id for r in SPEC.rules if r.kind is Kind.ANALYSIS}
    # The lab's conformance rule has its own corpus: traces/conformance/ (tests/test_conformance.py).
    assert analysis - {"SPEC-KERNEL-DISAGREES"} <= {c.rule for c in CASES}
