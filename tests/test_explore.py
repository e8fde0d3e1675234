"""The explicit-state explorer, the configurations and scenarios, and `dmaspec explore`."""

from __future__ import annotations

import json
import subprocess
import sys

import networkx as nx
import pytest

from checker.cli import main
from checker.counterexample import confirm, trace_bytes
from checker.engines.explorer import explore
from checker.engines.model import ConfigError, Model
from checker.explore import scenario_agrees
from spec.configs import CONFIGS, SCENARIOS, config, scenario
from spec.lang import Actor, Config, EventKind, Goto, step

# Distinct states of the named configurations (symmetry-reduced): a spec or configuration change that alters
# them must be deliberate, and update these.
PINNED = {"tiny": 15, "small": 94, "ci": 725, "large": 2246}


@pytest.mark.parametrize("name", [c.name for c in CONFIGS])
def test_named_configurations_hold_and_their_state_counts_are_pinned(name: str) -> None:
    r = explore(config(name))
    assert r.verdict == "holds", [c.rule for c in r.counterexamples]
    assert r.states == PINNED[name]
    assert r.unreached == []  # every step of every program runs on some path: the configuration is not vacuous


@pytest.mark.parametrize("s", SCENARIOS, ids=lambda s: s.name)
def test_scenarios_give_their_expected_outcome(s) -> None:  # type: ignore[no-untyped-def]
    r = explore(s.config)
    assert scenario_agrees(s, r), (s.expect, r.verdict, [c.rule for c in r.counterexamples])
    if s.expect:
        assert r.verdict == "violated" and r.exit_status == 1
    else:
        assert r.verdict == "holds" and r.exit_status == 0


@pytest.mark.parametrize("s", [s for s in SCENARIOS if s.expect], ids=lambda s: s.name)
def test_every_counterexample_replays_through_the_compiled_executor_to_its_rule(s) -> None:  # type: ignore[no-untyped-def]
    r = explore(s.config)
    assert r.counterexamples
    for cx in r.counterexamples:
        assert confirm(cx), cx.rule
        assert len(cx.schedule) == len(cx.events) == len(cx.states)


def test_breadth_first_gives_the_shortest_deadlock() -> None:
    r = explore(scenario("rfc-2012").config)
    (cx,) = r.counterexamples
    # export A, fd, export B, fd, fork; then each process prepares one buffer: 7 events, no shorter schedule
    assert len(cx.events) == 7
    assert [e["args"].get("cmd") for e in cx.events[-2:]] == ["DMA_BUF_IOCTL_PREPARE_ACCESS"] * 2
    assert {e["tid"] for e in cx.waiting} == {10, 20}
    assert {(o.table, o.key) for o in cx.finding.objects} >= {("buffer", "A"), ("buffer", "B")}


def test_a_deadlock_counterexample_that_does_not_sleep_is_not_confirmed() -> None:
    r = explore(scenario("resv-order-no-ctx").config)
    cx = next(c for c in r.counterexamples if c.rule == "LOCK-DEADLOCK")
    from dataclasses import replace

    # drop t2's lock of B: t1 no longer sleeps in its lock of B
    events = tuple(e for e in cx.events if not (e["tid"] == 12 and e["op"] == "dma_resv_lock"))
    assert not confirm(replace(cx, events=events, schedule=cx.schedule[:len(events)]))


def test_a_rule_counterexample_with_the_breaking_event_removed_is_not_confirmed() -> None:
    r = explore(scenario("migration-while-mapped").config)
    (cx,) = r.counterexamples
    from dataclasses import replace

    assert not confirm(replace(cx, events=cx.events[:-1]))


def test_symmetry_reduction_merges_states_without_changing_the_verdict() -> None:
    full = explore(config("small"), symmetry=False)
    reduced = explore(config("small"))
    assert full.verdict == reduced.verdict == "holds"
    assert reduced.states < full.states
    assert reduced.symmetry and not full.symmetry


def test_a_depth_bound_says_bounded_not_holds() -> None:
    r = explore(config("small"), depth=5)
    assert r.verdict == "bounded" and r.depth_reached == 5 and r.exit_status == 0


def test_state_limit_makes_the_run_inconclusive() -> None:
    r = explore(config("ci"), max_states=50)
    assert r.verdict == "unknown" and r.exit_status == 3


def test_a_leak_at_the_end_of_every_schedule_is_an_end_of_trace_counterexample() -> None:
    leaky = Config("leaky", "latest", (Actor("exporter", 1, 1, (
        step("dma_buf_export", "b1", size=4096), step("get_dma_buf", dmabuf="b1"), step("dma_buf_put", dmabuf="b1"))),),
        "an exporter that takes a reference and drops only one")
    r = explore(leaky)
    (cx,) = r.counterexamples
    assert cx.rule == "REF-LEAK" and cx.finding.line == len(cx.events) + 2
    assert b'"partial":false' in trace_bytes(cx)
    assert confirm(cx)


def test_configuration_mistakes_are_clear_errors() -> None:
    prog = (step("dma_buf_put", dmabuf="nothing"),)
    with pytest.raises(ConfigError, match="names an object no step made"):
        explore(Config("bad", "latest", (Actor("a", 1, 1, prog),), ""))
    with pytest.raises(ConfigError, match="no step is labelled"):
        Model(Config("bad", "latest", (Actor("a", 1, 1, (Goto("nowhere"),)),), ""))
    with pytest.raises(ConfigError, match="does not exist"):
        Model(Config("bad", "5.7", (Actor("a", 1, 1, (step("dma_buf_vmap_unlocked", "v", dmabuf="b"),)),), ""))
    with pytest.raises(ConfigError, match="spawns"):
        Model(Config("bad", "latest", (Actor("a", 1, 1, (step("marker", kind=EventKind.ANNOTATION, spawns=("b",)),)),),
                     ""))


def test_symmetric_actors_must_really_be_interchangeable() -> None:
    c = config("small")
    imp1, imp2 = c.actors[1], c.actors[2]
    from dataclasses import replace

    odd = replace(imp2, program=imp2.program[:-1] + (step("dma_buf_put", dmabuf="b1"), step("marker",
                                                                                          kind=EventKind.ANNOTATION)))
    with pytest.raises(ConfigError, match="declared symmetric"):
        explore(replace(c, actors=(c.actors[0], imp1, odd)))


def test_graph_export_highlights_the_violating_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = explore(scenario("resv-order-no-ctx").config, keep_graph=True)
    g = r.graph
    assert isinstance(g, nx.DiGraph)
    from checker.engines.explorer import write_dot, write_graphml

    write_dot(g, str(tmp_path / "s.dot"))
    write_graphml(g, str(tmp_path / "s.graphml"))
    back = nx.read_graphml(str(tmp_path / "s.graphml"))
    assert back.number_of_nodes() == g.number_of_nodes()
    red = [n for n, d in g.nodes(data=True) if d.get("violation")]
    assert 0 in red and len(red) >= 5
    assert "color=red" in (tmp_path / "s.dot").read_text()


def test_cli_scenario_exit_status_report_and_artifacts(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["explore", "--scenario", "rfc-2012", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "LOCK-DEADLOCK" in out and "as expected" in out
    assert "reproduce: dmaspec explore --engine explicit --scenario rfc-2012 --profile rfc-2012-kds --depth 16" in out
    assert (tmp_path / "rfc-2012.LOCK-DEADLOCK.jsonl").exists()
    assert (tmp_path / "rfc-2012.states.dot").exists() and (tmp_path / "rfc-2012.states.graphml").exists()


def test_cli_says_what_it_proved(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["explore", "--config", "small", "--depth", "6"]) == 0
    out = capsys.readouterr().out
    assert "no violation up to depth 6 in config small" in out and "distinct states" in out
    assert main(["explore", "--config", "tiny"]) == 0
    assert "no violation in any reachable state" in capsys.readouterr().out


def test_cli_json(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["explore", "--scenario", "migration-while-mapped", "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "violated" and data["scenario"]["as_expected"] is True
    assert data["counterexamples"][0]["rule"] == "DYN-MOVE-WHILE-PINNED"


def test_cli_usage_errors(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["explore"]) == 2
    assert "name a --config or a --scenario" in capsys.readouterr().err
    assert main(["explore", "--config", "huge"]) == 2
    assert "unknown configuration 'huge'" in capsys.readouterr().err
    assert main(["explore", "--list"]) == 0
    assert "rfc-2012-prepare-multiple" in capsys.readouterr().out


def test_counterexample_trace_replays_from_the_command_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert main(["explore", "--scenario", "migration-while-mapped", "--out", str(tmp_path), "--format", "json"]) == 1
    trace = tmp_path / "migration-while-mapped.DYN-MOVE-WHILE-PINNED.jsonl"
    proc = subprocess.run([sys.executable, "-m", "checker", "check", "--format", "json", str(trace)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    rules = [f["rule"] for t in json.loads(proc.stdout)["traces"] for f in t["findings"]]
    assert rules == ["DYN-MOVE-WHILE-PINNED"]


@pytest.mark.parametrize("cfg", [*CONFIGS, *(s.config for s in SCENARIOS)], ids=lambda c: c.name)
def test_the_compiled_machine_explores_exactly_what_the_interpreter_does(cfg) -> None:  # type: ignore[no-untyped-def]
    fast = explore(cfg, symmetry=False)
    reference = explore(cfg, symmetry=False, machine="interpreter")
    assert (fast.verdict, fast.states, fast.transitions, fast.depth_reached) == (
        reference.verdict, reference.states, reference.transitions, reference.depth_reached)
    assert [(c.rule, c.events, c.finding.key()) for c in fast.counterexamples] == [
        (c.rule, c.events, c.finding.key()) for c in reference.counterexamples]


def _deadlock_trace(waiting: list[dict[str, object]], events: list[dict[str, object]]) -> bytes:
    head = {"format": "dmaspec-trace", "version": 1, "partial": True, "source": {"waiting": waiting}}
    return b"\n".join(json.dumps(x).encode() for x in [head, *events]) + b"\n"


def test_a_trace_whose_sleepers_can_go_on_is_not_a_deadlock() -> None:
    import io

    from checker.api import check_stream

    held = [{"op": "dma_resv_lock", "tid": 1, "args": {"obj": "A"}, "ret": 0}]
    sleeper = [{"op": "dma_resv_lock", "tid": 2, "args": {"obj": "A"}}]
    for engine in ("compiled", "interpreter"):
        r = check_stream(io.BytesIO(_deadlock_trace(sleeper, held)), "t.jsonl", engine=engine)  # type: ignore[arg-type]
        assert [(f.rule, f.line) for f in r.findings] == [("LOCK-DEADLOCK", 3)]
        released = [*held, {"op": "dma_resv_unlock", "tid": 1, "args": {"obj": "A"}}]
        r = check_stream(io.BytesIO(_deadlock_trace(sleeper, released)), "t.jsonl", engine=engine)  # type: ignore[arg-type]
        assert r.findings == []


def test_bad_waiting_calls_are_input_errors(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "t.jsonl"
    path.write_bytes(_deadlock_trace([{"op": "dma_resv_lok", "tid": 2, "args": {}}], []))
    assert main(["check", str(path)]) == 2
    assert "t.jsonl:1: header: waiting call 1: unknown op 'dma_resv_lok'; did you mean dma_resv_lock?" in (
        capsys.readouterr().err)


def test_a_deadlock_in_an_atomic_group_names_the_step_that_sleeps() -> None:
    from dataclasses import replace

    c = scenario("rfc-2012-prepare-multiple").config
    p1 = c.actors[0]
    # p1 never finishes its access to fd 3 (buffer A): p2's "prepare both" sleeps on A, its second step
    program = tuple(s for s in p1.program if not (getattr(s, "op", "") == "ioctl" and dict(s.args).get("fd") == 3
                                                   and dict(s.args).get("cmd") == "DMA_BUF_IOCTL_FINISH_ACCESS"))
    r = explore(replace(c, actors=(replace(p1, program=program), c.actors[1])))
    cx = next(x for x in r.counterexamples if x.rule == "LOCK-DEADLOCK")
    assert [(e["tid"], e["args"]["fd"]) for e in cx.waiting] == [(20, 3)]
    assert confirm(cx)
