"""``dmaspec explore``: run one engine over a configuration and render what it found.

The engines are interchangeable behind ``run``: each takes a configuration
and a bound and returns an ``Exploration`` whose counterexamples are
``Counterexample`` records built the same way (``checker.counterexample``).
This module renders explorations (text and JSON) and writes their artifacts;
it prints nothing (``checker.cli`` does).

Example
-------
>>> from checker.explore import run
>>> from spec.configs import scenario
>>> r = run("explicit", scenario("rfc-2012").config)
>>> r.verdict, [c.rule for c in r.counterexamples]
('violated', ['LOCK-DEADLOCK'])
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from typing import Any, cast

from checker.core import Counterexample, Exploration
from checker.counterexample import summary, trace_bytes
from spec import SPEC
from spec.configs import CONFIGS, SCENARIOS
from spec.lang import Config, Scenario
from spec.profiles import profile as find_profile

ENGINES = ("explicit", "bmc", "hypothesis")
_RULES = {r.id: r for r in SPEC.rules}


def run(engine: str, config: Config, *, profile: str | None = None, depth: int | None = None,
        symmetry: bool = True, keep_graph: bool = False, progress: Callable[[int, int, int], None] | None = None,
        max_states: int | None = None, seed: int | None = None, timeout: float | None = None,
        examples: int | None = None) -> Exploration:
    """Explore ``config`` with ``engine`` (explicit, bmc or hypothesis)."""
    prof = find_profile(profile) if profile else None
    if engine == "explicit":
        from checker.engines.explorer import explore

        return explore(config, profile=prof, depth=depth, symmetry=symmetry, keep_graph=keep_graph,
                       progress=progress, max_states=max_states)
    if engine == "bmc":
        bmc = importlib.import_module("checker.engines.bmc")
        return cast(Exploration, bmc.check(config, profile=prof, depth=depth, timeout=timeout, seed=seed))
    if engine == "hypothesis":
        stateful = importlib.import_module("checker.engines.stateful")
        return cast(Exploration, stateful.explore(config, profile=prof, depth=depth, examples=examples, seed=seed))
    raise ValueError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")


def listing() -> str:
    lines = ["configurations:"]
    lines += [f"  {c.name:<28} {c.profile:<13} depth {c.depth:<3} {c.description}" for c in CONFIGS]
    lines.append("scenarios (--scenario NAME):")
    for s in SCENARIOS:
        expect = f"expect {s.expect}" if s.expect else "expect no violation"
        lines.append(f"  {s.name:<28} {s.config.profile:<13} {expect}: {s.config.description}")
    return "\n".join(lines) + "\n"


def _args(args: object) -> str:
    if not isinstance(args, dict):
        return ""
    return ", ".join(f"{k}={v}" for k, v in args.items() if v is not None)


def _event_text(ev: dict[str, Any]) -> str:
    ret = f" = {ev['ret']!r}" if "ret" in ev else ""
    kind = ev.get("kind", "call")
    prefix = {"callback": "[exporter callback] ", "annotation": "# ", "syscall": "syscall "}.get(kind, "")
    return f"{prefix}{ev['op']}({_args(ev.get('args'))}){ret}"


def counterexample_text(cx: Counterexample, trace_path: str | None = None) -> str:
    rule = _RULES[cx.rule]
    out = [f"{cx.rule}: {rule.message}",
           f"  found by the {cx.engine} engine in config {cx.config} (profile {cx.profile}), "
           f"{len(cx.events)} event(s):"]
    width = max((len(s) for s in cx.schedule), default=4)
    for n, (ev, who) in enumerate(zip(cx.events, cx.schedule, strict=True), 2):
        mark = "  <-- here" if n == cx.finding.line else ""
        out.append(f"  {n:>4}  {who:<{width}}  tid {ev['tid']:<4} {_event_text(ev)}{mark}")
    if cx.waiting:
        out.append("  then every thread still running sleeps:")
        for ev in cx.waiting:
            out.append(f"        tid {ev['tid']:<4} in {_event_text(ev)}")
    if cx.finding.objects:
        out.append("  state:" if cx.waiting else "  state when it broke:")
        out += [f"        {o.describe()}" for o in cx.finding.objects]
    if trace_path:
        out.append(f"  replays with: dmaspec check {trace_path}")
    return "\n".join(out)


def verdict_line(r: Exploration) -> str:
    rate = f"{r.states / r.elapsed:,.0f} states/s" if r.elapsed > 0 else ""
    size = (f"{r.states:,} distinct states{' (symmetry-reduced)' if r.symmetry else ''}, "
            f"{r.transitions:,} transitions, {r.elapsed:.2f} s" + (f", {rate}" if rate else ""))
    if r.engine == "bmc":
        size = f"{r.elapsed:.2f} s" + (f", seed {r.seed}" if r.seed is not None else "") + (
            f", timeout {r.timeout:g} s" if r.timeout else "")
    if r.engine == "hypothesis":
        size = f"{r.transitions:,} steps in {r.states:,} examples, {r.elapsed:.2f} s" + (
            f", seed {r.seed}" if r.seed is not None else "")
    where = f"config {r.config} (profile {r.profile}), engine {r.engine}"
    if r.verdict == "violated":
        rules = ", ".join(c.rule for c in r.counterexamples)
        return f"VIOLATED in {where}: {rules}; {size}"
    if r.verdict == "holds":
        return f"no violation in any reachable state of {where}: every interleaving ran to its end; {size}"
    if r.verdict == "bounded" and r.engine == "hypothesis":
        return (f"no violation found in {where} by random schedules of up to {r.depth} moves (not a proof: "
                f"other schedules were not tried); {size}")
    if r.verdict == "bounded":
        return (f"no violation up to depth {r.depth} in {where} (every interleaving; deeper states exist, so "
                f"nothing is proved beyond it); {size}")
    return f"INCONCLUSIVE in {where}: nothing is proved; {size}"


def text(r: Exploration, command: str, scenario: Scenario | None = None, traces: dict[str, str] | None = None) -> str:
    out = []
    for cx in r.counterexamples:
        out.append(counterexample_text(cx, (traces or {}).get(cx.rule)))
        out.append("")
    out.append(verdict_line(r))
    out += [f"note: {n}" for n in r.notes]
    if r.unreached:
        shown = ", ".join(r.unreached[:6]) + (f" and {len(r.unreached) - 6} more" if len(r.unreached) > 6 else "")
        out.append(f"note: {len(r.unreached)} step(s) were never made on any explored path: {shown}")
    if scenario is not None:
        out.append(scenario_line(scenario, r))
    out.append(f"reproduce: {command}")
    return "\n".join(out) + "\n"


def scenario_agrees(s: Scenario, r: Exploration) -> bool:
    """Whether the exploration gives the scenario's expected answer."""
    if s.expect:
        return s.expect in {c.rule for c in r.counterexamples}
    return r.verdict in ("holds", "bounded")


def scenario_line(s: Scenario, r: Exploration) -> str:
    expect = s.expect or "no violation"
    got = "as expected" if scenario_agrees(s, r) else "NOT as expected"
    return f"scenario {s.name}: expected {expect}: {got}. {s.doc}"


def as_json(r: Exploration, command: str, scenario: Scenario | None = None,
            traces: dict[str, str] | None = None) -> str:
    data: dict[str, Any] = {
        "engine": r.engine, "config": r.config, "profile": r.profile, "depth": r.depth, "verdict": r.verdict,
        "exit_status": r.exit_status, "states": r.states, "transitions": r.transitions,
        "depth_reached": r.depth_reached, "elapsed": round(r.elapsed, 4), "symmetry": r.symmetry, "seed": r.seed,
        "timeout": r.timeout, "notes": r.notes, "unreached": r.unreached,
        "counterexamples": [{**summary(c), "trace": (traces or {}).get(c.rule)} for c in r.counterexamples],
        "reproduce": command,
    }
    if scenario is not None:
        data["scenario"] = {"name": scenario.name, "expect": scenario.expect or None,
                            "as_expected": scenario_agrees(scenario, r)}
    return json.dumps(data, indent=2, default=str) + "\n"


def write_artifacts(r: Exploration, out_dir: str) -> dict[str, str]:
    """Counterexample traces (``CONFIG.RULE.jsonl``) and, when kept, the state graph (DOT, GraphML)."""
    os.makedirs(out_dir, exist_ok=True)
    traces = {}
    for cx in r.counterexamples:
        path = os.path.join(out_dir, f"{r.config}.{cx.rule}.jsonl")
        with open(path, "wb") as f:
            f.write(trace_bytes(cx))
        traces[cx.rule] = path
    if r.graph is not None:
        from checker.engines.explorer import write_dot, write_graphml

        write_dot(r.graph, os.path.join(out_dir, f"{r.config}.states.dot"))
        write_graphml(r.graph, os.path.join(out_dir, f"{r.config}.states.graphml"))
    return traces


__all__ = ["ENGINES", "as_json", "listing", "run", "scenario_agrees", "text", "write_artifacts"]
