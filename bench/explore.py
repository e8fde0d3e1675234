"""Exploration benchmark: the explicit explorer, SPIN on the exported model, z3 per depth, hypothesis steps/s.

For each named configuration (``--config``, default all of ``spec.configs.CONFIGS``):

- the explicit explorer, with and without symmetry reduction: distinct states, transitions, seconds, states/s;
- SPIN on the same configuration exported as Promela (``dmaspec export --to promela``), compiled with gcc:
  states stored and states/s as pan reports them, in the same run (SPIN is not installed silently: when
  ``spin`` or ``gcc`` is missing, the row says how to get it);
- the z3 bounded model checker: seconds to settle each depth K (``--depths``, default 4..15);
- the hypothesis engine: steps/s over ``--examples`` random schedules.

Usage::

    python bench/explore.py                       # every configuration, every engine
    python bench/explore.py --config ci --depths 4,8,12,15
    python bench/explore.py --quick               # tiny and small, depths 4..8: a smoke run

Figures are for this machine only; they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from checker.engines.explorer import explore  # noqa: E402
from spec.configs import CONFIGS, SCENARIOS, config  # noqa: E402
from spec.lang import Config  # noqa: E402


def _row(*cells: object) -> str:
    widths = (34, 12, 12, 10, 14)
    return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                            strict=False)))


def explicit_rows(cfg: Config) -> list[str]:
    out = []
    for symmetry in ((True, False) if cfg.symmetric else (True,)):
        r = explore(cfg, symmetry=symmetry)
        label = f"explicit {cfg.name}" + (" (symmetry)" if symmetry and cfg.symmetric else "")
        out.append(_row(label, f"{r.states:,}", f"{r.transitions:,}", f"{r.elapsed:.3f}",
                        f"{r.states / r.elapsed:,.0f}" if r.elapsed else "-"))
    return out


def spin_row(cfg: Config) -> str:
    label = f"spin {cfg.name}"
    missing = [tool for tool in ("spin", "gcc") if shutil.which(tool) is None]
    if missing:
        return f"{label}: {' and '.join(missing)} not found; install with: sudo apt-get install {' '.join(missing)}"
    from checker.export.promela import run_spin

    t0 = time.perf_counter()
    run = run_spin(cfg)
    wall = time.perf_counter() - t0
    rate = f"{run.states / run.seconds:,.0f}" if run.seconds > 0 else "-"
    return _row(label + f" (wall {wall:.2f} s)", f"{run.states:,}", f"{run.transitions:,}", f"{run.seconds:.3f}",
                rate) + ("  (depth bound cut the search)" if run.truncated else "")


def bmc_rows(cfg: Config, depths: list[int], timeout: float) -> list[str]:
    try:
        bmc = importlib.import_module("checker.engines.bmc")
    except ImportError:
        return [f"bmc {cfg.name}: this dmaspec has no z3 engine"]
    out = []
    for k in depths:
        t0 = time.perf_counter()
        r = bmc.check(cfg, depth=k, timeout=timeout)
        elapsed = time.perf_counter() - t0
        rules = ",".join(c.rule for c in r.counterexamples) or "-"
        out.append(f"  bmc {cfg.name:<30} K={k:<3} {elapsed:8.2f} s  {r.verdict:<9} {rules}")
    return out


def hypothesis_row(cfg: Config, examples: int) -> str:
    try:
        stateful = importlib.import_module("checker.engines.stateful")
    except ImportError:
        return f"hypothesis {cfg.name}: this dmaspec has no hypothesis engine"
    t0 = time.perf_counter()
    r = stateful.explore(cfg, examples=examples, seed=0)
    elapsed = time.perf_counter() - t0
    return (f"  hypothesis {cfg.name:<23} {r.transitions:,} steps in {r.states:,} examples, {elapsed:.2f} s: "
            f"{r.transitions / elapsed:,.0f} steps/s, {r.verdict}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", action="append", help="a configuration or scenario (repeatable); default: all "
                    "named configurations")
    ap.add_argument("--depths", default="4,5,6,7,8,9,10,11,12,13,14,15", help="z3 depths, comma-separated")
    ap.add_argument("--timeout", type=float, default=120.0, help="z3 seconds per solver call")
    ap.add_argument("--examples", type=int, default=200, help="hypothesis schedules per configuration")
    ap.add_argument("--scenarios", action="store_true", help="also every scenario (explicit explorer only)")
    ap.add_argument("--quick", action="store_true", help="tiny and small, z3 depths 4..8, 50 hypothesis examples")
    args = ap.parse_args()
    names = args.config or ([c.name for c in CONFIGS[:2]] if args.quick else [c.name for c in CONFIGS])
    depths = [4, 5, 6, 7, 8] if args.quick else [int(d) for d in args.depths.split(",")]
    examples = 50 if args.quick else args.examples
    print(f"python {sys.version.split()[0]} on {os.cpu_count()} CPU(s)\n")
    print(_row("explicit state space", "states", "transitions", "seconds", "states/s"))
    for name in names:
        cfg = config(name)
        for line in explicit_rows(cfg):
            print(line)
        print(spin_row(cfg))
    if args.scenarios:
        for s in SCENARIOS:
            for line in explicit_rows(s.config):
                print(line)
    print("\nz3 bounded model checking, seconds per depth")
    for name in names:
        for line in bmc_rows(config(name), depths, args.timeout):
            print(line)
    print("\nhypothesis stateful testing")
    for name in names:
        print(hypothesis_row(config(name), examples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
