"""mypy --strict and ruff over spec/ and checker/ (the generated modules excluded)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_mypy_strict() -> None:
    r = subprocess.run([sys.executable, "-m", "mypy", "spec", "checker"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff() -> None:
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "spec", "checker", "tests", "bench"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
