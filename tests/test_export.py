"""The Promela export checked by SPIN against the explicit explorer, the rvgen automata, and `dmaspec export`."""

from __future__ import annotations

import os
import re

import pytest

from checker.cli import main
from checker.engines.explorer import explore
from checker.export import ExportError, automaton_dot, promela, rule_indices
from checker.export.promela import CONFIG_ERROR, SpinRun, parse_pan, run_spin, spin_tools
from spec.configs import CONFIGS, SCENARIOS, config, scenario
from spec.lang import Actor, Config, EventKind, step

_MISSING = spin_tools()
if _MISSING and os.environ.get("CI"):
    pytest.fail(f"CI must run the SPIN tests, but {_MISSING} (.ci/run installs spin)", pytrace=False)
needs_spin = pytest.mark.skipif(_MISSING is not None, reason=f"SPIN tests: {_MISSING} on this machine "
                                "(apt-get install spin gcc)")

LEAKY = Config("leaky", "latest", (Actor("exporter", 1, 1, (
    step("dma_buf_export", "b1", size=4096), step("get_dma_buf", dmabuf="b1"), step("dma_buf_put", dmabuf="b1"))),),
    "an exporter that takes a reference and drops only one")
DOUBLE_PUT = Config("double-put", "latest", (Actor("exporter", 1, 1, (
    step("dma_buf_export", "b1", size=4096), step("dma_buf_put", dmabuf="b1"), step("dma_buf_put", dmabuf="b1"))),),
    "an exporter that drops its reference twice")
UNMADE = Config("unmade", "latest", (Actor("a", 1, 1, (step("dma_buf_put", dmabuf="nothing"),)),),
                "a put of a buffer no step made")

_RUNS: dict[str, SpinRun] = {}


def spin_of(name: str, cfg: Config) -> SpinRun:
    """One SPIN run per configuration for the whole module (each compiles a verifier)."""
    if name not in _RUNS:
        _RUNS[name] = run_spin(cfg, depth=20_000)
    return _RUNS[name]


CASES = [*((c.name, c) for c in CONFIGS if c.name in ("tiny", "small", "ci")),
         *((s.name, s.config) for s in SCENARIOS), ("leaky", LEAKY), ("double-put", DOUBLE_PUT)]


@needs_spin
@pytest.mark.parametrize(("name", "cfg"), CASES, ids=[n for n, _ in CASES])
def test_spin_and_the_explicit_explorer_agree_on_what_fails(name: str, cfg: Config) -> None:
    spin = spin_of(name, cfg)
    assert not spin.truncated, spin.output
    assert spin.states > 0
    explicit = explore(cfg, depth=200)  # past every configuration's longest path: the whole state space
    assert explicit.verdict in ("holds", "violated")
    assert spin.rules == {c.rule for c in explicit.counterexamples}, spin.output


@needs_spin
@pytest.mark.parametrize("s", SCENARIOS, ids=lambda s: s.name)
def test_spin_gives_each_scenario_its_expected_outcome(s) -> None:  # type: ignore[no-untyped-def]
    spin = spin_of(s.name, s.config)
    assert (s.expect in spin.rules) if s.expect else not spin.rules


@needs_spin
def test_a_step_on_an_object_no_step_made_is_reported_as_the_configuration_error() -> None:
    assert run_spin(UNMADE).rules == {CONFIG_ERROR}


def test_the_promela_text_is_deterministic_and_names_its_rules() -> None:
    a, b = promela(config("ci")), promela(config("ci"))
    assert a == b
    numbers = {int(n) for n in re.findall(r"assert\(violated != (\d+)\)", a)}
    table = {int(n): rule for n, rule in re.findall(r"/\* +(\d+) = ([A-Z0-9-]+) \*/", a)}
    assert numbers and numbers <= set(table)
    assert all(rule_indices()[rule] == n for n, rule in table.items())
    assert a.count("active proctype") == len(config("ci").actors) + 1


def test_every_rule_in_the_model_comes_from_the_spec_not_from_the_exporter() -> None:
    import inspect

    from checker.export import promela as module

    source = inspect.getsource(module)
    for rule in rule_indices():
        if rule != CONFIG_ERROR:
            assert f'"{rule}"' not in source


def test_an_atomic_group_is_one_guarded_block() -> None:
    text = promela(scenario("rfc-2012-prepare-multiple").config)
    assert text.count("ioctl + ioctl") == 2  # one block per process for its "prepare multiple"


def test_unsupported_constructs_are_clear_errors() -> None:
    from checker.export.promela import _halts
    from spec.lang import Const, ForEach, Require, Stop

    with pytest.raises(ExportError, match="Bump"):  # lost_events runs Bump: a gap has no meaning here
        promela(Config("gap", "latest", (Actor("a", 1, 1, (
            step("dma_buf_export", "b1", size=4096), step("lost_events", kind=EventKind.ANNOTATION),
            step("dma_buf_put", dmabuf="b1"))),), ""))
    # a ForEach body that may stop the action would make the row order matter: refused
    assert _halts((ForEach("buffer", Const(True), (Stop(Const(True)),)),))
    assert _halts((Require("REF-LEAK", Const(True), (), abort=True),))
    assert not _halts((Require("REF-LEAK", Const(True)),))


def test_promela_export_of_an_unknown_profile_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        promela(config("tiny"), "no-such-profile")


def test_parse_pan_reads_rules_deadlocks_and_statistics() -> None:
    out = ("pan:1: assertion violated (violated!=8) (at depth 3)\npan:2: invalid end state (at depth 9)\n"
           "\tinvalid end states\t+\nState-vector 28 byte, depth reached 7, errors: 2\n"
           "       10 states, stored\n       12 transitions (= stored+matched)\n")
    run = parse_pan(out)
    number = {n: r for r, n in rule_indices().items()}
    assert run.rules == {number[8], "LOCK-DEADLOCK"}
    assert (run.states, run.transitions, run.depth) == (10, 12, 7)
    assert parse_pan("\tinvalid end states\t+\n").rules == set()  # the header is not a deadlock


# -- rvgen automata --------------------------------------------------------------------------------------


def parse_rv_dot(text: str) -> tuple[str, set[str], set[str], dict[tuple[str, str], str]]:
    """Read the automaton as rvgen's line-oriented reader does: node lines, the initial marker, then edges.

    Returns (initial state, states, final states, transitions (state, event) -> state); a second
    transition for the same state and event (not deterministic) fails the test."""
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["digraph", "state_automaton"]
    cursor = next(i for i, line in enumerate(lines) if line.split() and line.split()[0] == "{node")
    states: set[str] = set()
    finals: set[str] = set()
    initial = ""
    while lines[cursor].split()[0] == "{node":
        name = lines[cursor].split()[-1].replace('"', "").replace("};", "")
        if name.startswith("__init_"):
            initial = name[len("__init_"):]
        else:
            states.add(name)
            if "doublecircle" in lines[cursor]:
                finals.add(name)
        cursor += 1
    assert lines[cursor].strip() == f'"__init_{initial}" -> "{initial}";'
    cursor += 1
    delta: dict[tuple[str, str], str] = {}
    while lines[cursor].lstrip().startswith('"'):
        parts = lines[cursor].split()
        assert parts[1] == "->" and parts[-1] == "];"
        src, dst = parts[0].strip('"'), parts[2].strip('"')
        for event in parts[-2].strip('"').split("\\n"):
            assert (src, event) not in delta, f"two transitions for {src} on {event}"
            assert re.fullmatch(r"[a-z_][a-z0-9_]*", event)
            delta[(src, event)] = dst
        cursor += 1
    assert initial in states
    assert {s for s, _ in delta} | set(delta.values()) <= states
    return initial, states, finals, delta


def test_the_attachment_automaton() -> None:
    initial, states, finals, delta = parse_rv_dot(automaton_dot("attachment", "latest"))
    assert initial == "unattached"
    assert {"unattached", "attached", "attached_mapped", "detached", "dyn_attached", "dyn_attached_pinned",
            "dyn_attached_mapped_pinned"} <= states
    assert finals == {"unattached", "detached"}
    assert delta[("unattached", "dma_buf_attach")] == "attached"
    assert delta[("attached", "dma_buf_map_attachment")] == "attached_mapped"
    assert delta[("attached_mapped", "dma_buf_unmap_attachment")] == "attached"
    assert delta[("dyn_attached", "dma_buf_pin")] == "dyn_attached_pinned"
    assert ("attached", "dma_buf_pin") not in delta  # a static attachment cannot be pinned (DYN-PIN-STATIC)
    assert ("attached_mapped", "dma_buf_detach") not in delta  # detach while mapped breaks a rule


def test_the_buffer_automaton() -> None:
    initial, states, finals, delta = parse_rv_dot(automaton_dot("buffer", "latest"))
    assert initial == "unexported"
    assert {"unexported", "exported", "exported_shared", "exported_attached", "exported_vmapped", "released"} <= states
    assert finals == {"unexported", "released"}
    assert delta[("unexported", "dma_buf_export")] == "exported"
    assert delta[("exported", "dma_buf_put")] == "released"
    assert delta[("exported_shared", "dma_buf_put")] == "exported"
    assert ("exported_attached", "dma_buf_put") not in delta  # release while attached breaks a rule
    assert ("released", "dma_buf_put") not in delta


def test_automata_follow_the_profile() -> None:
    _, _, _, old = parse_rv_dot(automaton_dot("attachment", "4.6"))
    assert not any(event == "dma_buf_pin" for _, event in old)  # pinning came in 5.7
    with pytest.raises(ValueError, match="unknown object kind"):
        automaton_dot("fence")


# -- the command --------------------------------------------------------------------------------------------


def test_cli_export_promela_and_dot(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "tiny.pml"
    assert main(["export", "--to", "promela", "--config", "tiny", "-o", str(out)]) == 0
    assert out.read_text() == promela(config("tiny"))
    assert main(["export", "--to", "promela", "--scenario", "rfc-2012"]) == 0
    assert "p_p2" in capsys.readouterr().out
    assert main(["export", "--to", "dot", "--kind", "buffer", "--profile", "6.2"]) == 0
    assert capsys.readouterr().out == automaton_dot("buffer", "6.2")


@pytest.mark.parametrize("argv", [
    ["export", "--to", "promela"],
    ["export", "--to", "promela", "--config", "tiny", "--scenario", "rfc-2012"],
    ["export", "--to", "promela", "--config", "nope"],
    ["export", "--to", "dot"],
    ["export", "--to", "dot", "--kind", "fence"],
    ["export", "--to", "dot", "--kind", "buffer", "--config", "tiny"],
    ["export", "--to", "promela", "--config", "tiny", "--profile", "nope"],
    ["export", "--to", "promela", "--config", "tiny", "-o", "/nonexistent/dir/x.pml"],
])
def test_cli_export_bad_input_exits_2(argv: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(argv) == 2
    assert "dmaspec: error:" in capsys.readouterr().err


def test_cli_export_needs_to(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as e:
        main(["export", "--config", "tiny"])
    assert e.value.code == 2
