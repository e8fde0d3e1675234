"""The hypothesis engine against the explicit explorer, and the spec machine against the checker."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from checker.cli import main
from checker.counterexample import confirm
from checker.engines import stateful
from checker.engines.explorer import explore as explicit
from checker.engines.stateful import SpecMachine, explore
from spec.configs import CONFIGS, SCENARIOS, config, scenario

CI = settings(derandomize=True, max_examples=80, stateful_step_count=60, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
VIOLATED = [s for s in SCENARIOS if s.expect]
CLEAN = [s for s in SCENARIOS if not s.expect]


class _Counted(SpecMachine):
    """The spec machine, counting across examples the mistakes it made, by rule."""

    mistakes: Counter[str] = Counter()

    def teardown(self) -> None:
        _Counted.mistakes.update(self.probes)
        super().teardown()


def test_spec_machine_correct_calls_are_clean_and_every_mistake_breaks_the_predicted_rule() -> None:
    _Counted.mistakes.clear()
    run_state_machine_as_test(_Counted, settings=CI)
    # the machine is not vacuous: it made many kinds of mistake, each flagged as predicted
    assert len(_Counted.mistakes) >= 20, sorted(_Counted.mistakes)


@pytest.mark.parametrize("s", VIOLATED, ids=lambda s: s.name)
def test_hypothesis_finds_the_rule_each_scenario_expects_and_its_counterexamples_replay(s) -> None:  # type: ignore[no-untyped-def]
    r = explore(s.config, examples=150, seed=1)
    assert r.verdict == "violated" and r.exit_status == 1
    assert s.expect in {c.rule for c in r.counterexamples}
    for cx in r.counterexamples:
        assert cx.engine == "hypothesis" and cx.seed == 1
        assert confirm(cx), cx.rule
        assert len(cx.schedule) == len(cx.events) == len(cx.states)


@pytest.mark.parametrize("c", [config("tiny"), config("small"), *(s.config for s in CLEAN)], ids=lambda c: c.name)
def test_hypothesis_never_finds_a_violation_the_explorer_says_is_unreachable(c) -> None:  # type: ignore[no-untyped-def]
    assert explicit(c).verdict == "holds"
    r = explore(c, examples=100, seed=3)
    assert r.verdict == "bounded" and r.counterexamples == [] and r.exit_status == 0
    assert "not a proof" in " ".join(r.notes)
    assert r.states >= 100 and r.transitions > 0


@pytest.mark.parametrize("c", [*CONFIGS, *(s.config for s in SCENARIOS)], ids=lambda c: c.name)
def test_the_rules_hypothesis_finds_are_among_the_explorers(c) -> None:  # type: ignore[no-untyped-def]
    found = {cx.rule for cx in explore(c, examples=40, seed=2).counterexamples}
    assert found <= {cx.rule for cx in explicit(c).counterexamples}


def test_a_seed_makes_the_run_reproducible() -> None:
    s = scenario("resv-order-no-ctx").config
    a, b = explore(s, examples=50, seed=7), explore(s, examples=50, seed=7)
    assert (a.states, a.transitions) == (b.states, b.transitions)
    assert [c.events for c in a.counterexamples] == [c.events for c in b.counterexamples]
    assert a.seed == 7 and explore(config("tiny"), examples=5).seed == stateful.DEFAULT_SEED


def test_the_depth_bound_limits_every_schedule() -> None:
    r = explore(scenario("rfc-2012").config, depth=4, examples=50)
    # the deadlock needs 7 moves: none is found, and no schedule is longer than the bound
    assert r.verdict == "bounded" and r.depth == 4 and r.depth_reached <= 4


def test_cli_hypothesis_engine(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["explore", "--engine", "hypothesis", "--scenario", "rfc-2012", "--seed", "1"]) == 1
    out = capsys.readouterr().out
    assert "LOCK-DEADLOCK" in out and "found by the hypothesis engine" in out
    assert "VIOLATED" in out and "seed 1" in out
    reproduce = [line for line in out.splitlines() if line.startswith("reproduce:")]
    assert len(reproduce) == 1 and "--engine hypothesis" in reproduce[0] and "--seed 1" in reproduce[0]
