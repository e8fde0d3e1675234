"""The benchmark scripts run (figures are theirs to print, not ours to assert)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def test_replay_benchmark_quick_run_checks_its_trace_clean() -> None:
    r = subprocess.run([sys.executable, "bench/replay.py", "--quick"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "compiled executor" in r.stdout and "events/s" in r.stdout
    assert "all generated traces checked clean" in r.stdout
    assert "ftrace text (kprobe events), check_file()" in r.stdout
    assert "ftrace + strace joined, check_join()" in r.stdout and "recording lines/s" in r.stdout


def test_mixed_benchmark_checks_its_pair_clean() -> None:
    r = subprocess.run([sys.executable, "bench/mixed.py", "--frames", "500"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "all mixed traces checked clean" in r.stdout and "anchor(s)" in r.stdout


def test_analysis_benchmark_quick_run_prints_every_analysis() -> None:
    r = subprocess.run([sys.executable, "bench/analysis.py", "--quick"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "lock-order graph (--lock-order)" in r.stdout and "coherency races (--races)" in r.stdout
    assert "fence wait-for graph (--lock-order)" in r.stdout
    assert "predictive analysis (--predict)" in r.stdout and "window" in r.stdout


def test_fuzz_benchmark_runs_and_reports() -> None:
    """bench/fuzz.py fuzzes every format and prints its rate; a failure it finds comes with a reproducer."""
    r = subprocess.run([sys.executable, "bench/fuzz.py", "--examples", "20", "--kind", "bytes", "--kind", "edits"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "examples/s" in r.stdout and " examples in " in r.stdout, r.stdout
    assert ("FAILED" in r.stdout and "reproduce with" in r.stdout) == (r.returncode == 1), r.stdout


@pytest.mark.parametrize("seed", [2024, 7])
def test_replay_generator_records_its_hand_offs(tmp_path: Path, seed: int) -> None:
    """The generated trace is correct for every check: the per-event rules, --lock-order and --races.

    Its threads hand frames to each other (a capture thread and the app, an app and its encoder, clients
    and the compositor); the generator records the queue locks and fence waits that order those hand-offs,
    so the race analysis has nothing to report and its benchmark row measures a clean trace.
    """
    from bench.replay import generate
    from checker.analysis import fencewait, lockorder, races
    from checker.api import check_file

    path = str(tmp_path / f"replay-{seed}.jsonl")
    stats = generate(path, 20_000, seed=seed)
    assert stats.events == 20_000
    r = check_file(path)
    assert r.events == 20_000
    assert not r.findings and not r.withheld and not r.errors and not r.ignored and not r.reused, r.findings[:5]
    lo = lockorder.analyze(path)
    assert not lo.result.findings, lo.result.findings[:5]
    assert lo.graph.number_of_nodes() > 0  # the queue locks and reservation locks are there
    fw = fencewait.analyze(path)
    assert not fw.result.findings, fw.result.findings[:5]
    rc = races.analyze(path)
    assert rc.windows > 1000 and not rc.findings, rc.findings[:5]
