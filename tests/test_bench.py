"""The benchmark scripts run (figures are theirs to print, not ours to assert)."""

from __future__ import annotations

import subprocess
import sys

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
