"""The z3 bounded model checker agrees with the explicit explorer, and its counterexamples replay."""

from __future__ import annotations

import pytest

from checker.cli import main
from checker.core import Exploration
from checker.counterexample import confirm
from checker.engines import bmc
from checker.engines.explorer import explore
from spec import SPEC
from spec.configs import SCENARIOS, config, scenario
from spec.lang import Actor, Config, EventKind, Kind, Step, step
from spec.rules import LOCK_DEADLOCK, PROFILE_OP

DEPTH = 10  # modest: every scenario's expected counterexample is shorter; the whole module stays fast
NAMES = ["tiny", "small", *(s.name for s in SCENARIOS)]


def _rules(r: Exploration) -> set[str]:
    return {c.rule for c in r.counterexamples}


def _explicit_depth(cfg: Config, rule: str, bound: int) -> int:
    """The fewest moves the explicit explorer needs to break ``rule`` (it is breadth-first)."""
    for d in range(bound + 1):
        if rule in _rules(explore(cfg, depth=d)):
            return d
    raise AssertionError(f"the explorer does not break {rule} within {bound} moves")


@pytest.mark.parametrize("name", NAMES)
def test_bmc_and_the_explorer_agree_on_what_breaks_within_the_depth(name: str) -> None:
    cfg = config(name)
    b = bmc.check(cfg, depth=DEPTH)
    e = explore(cfg, depth=DEPTH)
    assert _rules(b) == _rules(e), (sorted(_rules(b)), sorted(_rules(e)))
    assert b.verdict == e.verdict  # violated, bounded, or holds when no state lies deeper
    assert b.engine == "bmc" and b.depth == DEPTH and b.seed == 0 and b.timeout == bmc.DEFAULT_TIMEOUT
    depths = bmc.shortest_depths(b)
    assert set(depths) == _rules(b)
    for cx in b.counterexamples:
        assert cx.engine == "bmc" and cx.seed == 0
        assert confirm(cx), cx.rule
        assert len(cx.schedule) == len(cx.events) == len(cx.states)
        assert depths[cx.rule] == _explicit_depth(cfg, cx.rule, DEPTH)


@pytest.mark.parametrize("s", [s for s in SCENARIOS if s.expect], ids=lambda s: s.name)
def test_each_violating_scenario_gives_its_expected_rule(s) -> None:  # type: ignore[no-untyped-def]
    r = bmc.check(s.config, depth=DEPTH)
    assert s.expect in _rules(r) and r.verdict == "violated" and r.exit_status == 1


def test_a_deadlock_counterexample_names_the_sleeping_calls() -> None:
    r = bmc.check(scenario("resv-order-no-ctx").config, depth=8)
    cx = next(c for c in r.counterexamples if c.rule == LOCK_DEADLOCK)
    assert {e["tid"] for e in cx.waiting} == {11, 12}
    assert [e["op"] for e in cx.waiting] == ["dma_resv_lock", "dma_resv_lock"]
    assert confirm(cx)


def test_an_end_of_trace_obligation_is_found_at_the_finished_state() -> None:
    leaky = Config("leaky", "latest", (Actor("exporter", 1, 1, (
        step("dma_buf_export", "b1", size=4096), step("get_dma_buf", dmabuf="b1"), step("dma_buf_put", dmabuf="b1"))),),
        "an exporter that takes a reference and drops only one")
    r = bmc.check(leaky, depth=5)
    (cx,) = r.counterexamples
    assert cx.rule == "REF-LEAK" and cx.finding.line == len(cx.events) + 2
    assert bmc.shortest_depths(r) == {"REF-LEAK": 3}
    assert confirm(cx)


def test_no_state_beyond_the_depth_says_holds_and_a_deeper_one_says_bounded() -> None:
    assert bmc.check(config("tiny"), depth=12).verdict == "holds"
    r = bmc.check(config("small"), depth=5)
    assert r.verdict == "bounded" and r.exit_status == 0
    assert any(n.startswith("solve time per depth: 0: ") for n in r.notes)


def test_a_solver_that_gives_up_makes_the_run_unknown_never_a_pass() -> None:
    r = bmc.check(config("small"), depth=15, timeout=0.001)  # 1 ms per call: too little for the deep queries
    assert r.verdict == "unknown" and r.exit_status == 3
    assert any("gave up" in n and "nothing is proved" in n for n in r.notes)
    assert r.timeout == 0.001
    assert [bmc.exit_status(v) for v in ("violated", "bounded", "holds", "unknown")] == [1, 0, 0, 3]


def test_a_schedule_that_does_not_break_the_claimed_rule_raises() -> None:
    u = bmc._Unrolling(config("tiny"), None, 0, 10.0)
    for k in range(2):
        u.add_transition(k)
    assert str(u.solver.check()) == "sat"
    m = u.solver.model()
    sched = [m.eval(c, model_completion=True).as_long() for c in u.choices]
    with pytest.raises(bmc.EncodingError, match="does not break"):
        bmc._counterexample(u, m, bmc._Found("REF-LEAK", 2, sched, False), 0)


def test_the_seed_is_recorded_in_the_counterexamples() -> None:
    r = bmc.check(scenario("unlocked-under-resv").config, depth=DEPTH, seed=7)
    assert r.seed == 7 and all(c.seed == 7 for c in r.counterexamples)


def test_cli_bmc_scenario(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["explore", "--engine", "bmc", "--scenario", "resv-order-no-ctx"]) == 1
    out = capsys.readouterr().out
    assert "LOCK-DEADLOCK" in out and "found by the bmc engine" in out and "as expected" in out
    assert "reproduce: dmaspec explore --engine bmc --scenario resv-order-no-ctx" in out


# -- search: every depth at once, for the rules broken at a move (dmaspec check --predict's engine) ----------------

_AT_A_MOVE = sorted({r.id for r in SPEC.rules if r.kind is not Kind.OBLIGATION} - {LOCK_DEADLOCK} | {PROFILE_OP})


@pytest.mark.parametrize("independent", [True, False], ids=["groups", "whole"])
@pytest.mark.parametrize("name", NAMES)
def test_search_finds_what_the_explorer_finds_at_a_move(name: str, independent: bool) -> None:
    cfg = config(name)
    s = bmc.search(cfg, _AT_A_MOVE, depth=DEPTH, independent=independent)
    e = explore(cfg, depth=DEPTH, obligations=False)
    wanted = {c.rule for c in e.counterexamples} - {LOCK_DEADLOCK}
    assert {c.rule for c in s.counterexamples} == wanted, name
    assert s.verdict in (("violated",) if wanted else ("holds", "bounded"))
    for cx in s.counterexamples:
        assert cx.engine == "bmc" and confirm(cx), cx.rule


def test_search_on_a_recorded_window_honours_recorded_returns() -> None:
    # dma_buf_get(fd 5) returned the buffer: a schedule with the close of fd 5 first would have it return -EBADF
    from checker.engines.model import Model

    exporter = (step("dma_buf_export", "b1", size=4096), step("dma_buf_fd", 5, dmabuf="b1"),
                Step("close", (("fd", 5),), 0, EventKind.SYSCALL))
    importer = (Step("dma_buf_get", (("fd", 5),), "b1", after=(("exporter", 1),)), step("dma_buf_put", dmabuf="b1"))
    cfg = Config("window", "latest", (Actor("exporter", 1, 1, exporter), Actor("importer", 2, 1, importer)), "",
                 depth=5)
    rules = ["REF-USE-AFTER-RELEASE", "REF-PUT-UNOWNED"]
    # not a recording: the kernel's outcome decides (-EBADF), and the importer's put drops the last reference
    free = bmc.search(cfg, rules)
    assert [c.rule for c in free.counterexamples] == ["REF-USE-AFTER-RELEASE"]
    assert free.counterexamples[0].schedule == ("exporter", "exporter", "exporter", "importer", "importer")
    assert [c.rule for c in explore(cfg, obligations=False).counterexamples] == ["REF-USE-AFTER-RELEASE"]
    recorded = bmc.search(cfg, rules, model=Model(cfg, recorded=True))
    assert recorded.verdict == "holds" and recorded.counterexamples == []
    assert recorded.counterexamples == explore(cfg, model=Model(cfg, recorded=True), obligations=False).counterexamples
    # check(), depth by depth, encodes the same: shortest schedules, the recorded semantics, no end obligations
    shortest = bmc.check(cfg, rules=rules, obligations=False)
    assert [(c.rule, c.schedule) for c in shortest.counterexamples] == [
        (c.rule, c.schedule) for c in explore(cfg, obligations=False).counterexamples]
    assert bmc.check(cfg, model=Model(cfg, recorded=True), rules=rules, obligations=False).verdict == "holds"


def test_search_starts_from_the_rows_given() -> None:
    from checker.engines.model import Model
    from spec.lang import Step as S

    # buffer b0 exists before the window, with one reference; two threads each drop one
    buffer = next(t for t in SPEC.tables if t.name == "buffer")
    fields = tuple(True if f.name == "live" else 1 if f.name == "refs" else f.default for f in buffer.fields)
    cfg = Config("rows", "latest", (Actor("a", 1, 1, (S("dma_buf_put", (("dmabuf", "b0"),)),)),
                                    Actor("b", 2, 1, (S("dma_buf_put", (("dmabuf", "b0"),)),))), "", depth=2)
    m = Model(cfg, recorded=True, initial_rows=(("buffer", "b0", fields),))
    r = bmc.search(cfg, ["REF-USE-AFTER-RELEASE", "REF-PUT-UNOWNED"], model=m)
    assert [(c.rule, len(c.events)) for c in r.counterexamples] == [("REF-USE-AFTER-RELEASE", 2)]
    assert r.counterexamples[0].finding.objects[0].fields[1] == ("refs", 0)  # the row's one reference, dropped


def test_a_search_the_solver_gives_up_on_is_unknown_never_a_pass() -> None:
    r = bmc.search(config("small"), _AT_A_MOVE, depth=12, timeout=0.001)  # 1 ms: too little for the query
    assert r.verdict == "unknown" and r.exit_status == 3 and r.counterexamples == []
    assert "the solver gave up (timeout): nothing is proved" in r.notes
