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
