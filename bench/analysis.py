"""Whole-trace analysis benchmark: lock-order graph, coherency races, and predictive analysis.

On a trace from ``bench/replay.py``'s generator (many processes and threads, correct usage; ``--events``,
default 1M), it times in one process each:

- ``--lock-order``: the lock-order graph (``checker.analysis.lockorder.analyze``) and the fence wait-for graph
  (``checker.analysis.fencewait.analyze``), each a pass of its own: events/s and what it found;
- ``--races`` (``checker.analysis.races.analyze``): events/s and what it found;
- ``--predict`` (``checker.analysis.predict.analyze``) on the trace's first ``--predict-events`` events
  (default 2,000: it holds the trace in memory and searches every window), for each window size in
  ``--windows`` (default 4, 8, 12, 16, 24) and each engine in ``--predict-engines`` (default both):
  seconds (wall and CPU: the machine may be shared), windows searched, states (explicit) or solver calls
  (z3), predictions, windows left inconclusive.  The explicit engine's cost grows with the interleavings a
  window holds: it is run up to ``--explicit-max-window`` (default 12; 16 takes minutes, 24 does not finish).

Usage::

    python bench/analysis.py                       # 1M events; predict on the first 2,000
    python bench/analysis.py --events 100000 --windows 6,12 --predict-engines z3
    python bench/analysis.py --quick               # 20k events, predict on 1,000 with windows 4 and 8

The generated trace records the synchronisation at each hand-off of a frame between threads (the V4L2
queues' locks, the compositor's fence waits), so every analysis should find nothing on it: a finding is a
bug in the generator or in the analysis.  Figures are for this machine only; they are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.replay import fmt_n, generate, write_prefix  # noqa: E402
from checker.analysis import fencewait, lockorder, predict, races  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--predict-events", type=int, default=2_000)
    ap.add_argument("--windows", default="4,8,12,16,24")
    ap.add_argument("--predict-engines", default="explicit,z3")
    ap.add_argument("--explicit-max-window", type=int, default=12)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.events
    n_predict = 1_000 if args.quick else args.predict_events
    windows = [4, 8] if args.quick else [int(w) for w in args.windows.split(",")]
    engines = [e for e in args.predict_engines.split(",") if e]
    if any(e not in predict.ENGINES for e in engines):
        ap.error(f"--predict-engines: choose among {', '.join(predict.ENGINES)}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"analysis-{n}.jsonl")
        stats = generate(path, n, seed=args.seed)
        print(f"{fmt_n(n)} events, {stats.processes} processes, {stats.buffers:,} buffers, {stats.fences:,} fences "
              f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs)\n")
        print(f"{'analysis':44}{'events':>10}{'seconds':>10}{'events/s':>12}  found")
        t0 = time.perf_counter()
        lo = lockorder.analyze(path)
        dt = time.perf_counter() - t0
        rules = [f.rule for f in lo.result.findings]
        print(f"{'lock-order graph (--lock-order)':44}{fmt_n(n):>10}{dt:>10.2f}{fmt_n(n / dt):>12}  "
              f"{len(rules)} finding(s)")
        t0 = time.perf_counter()
        fw = fencewait.analyze(path)
        dt = time.perf_counter() - t0
        print(f"{'fence wait-for graph (--lock-order)':44}{fmt_n(n):>10}{dt:>10.2f}{fmt_n(n / dt):>12}  "
              f"{len(fw.result.findings)} finding(s), {fw.graph.number_of_nodes()} timelines, "
              f"{fw.graph.number_of_edges()} edges")
        t0 = time.perf_counter()
        rc = races.analyze(path)
        dt = time.perf_counter() - t0
        print(f"{'coherency races (--races)':44}{fmt_n(n):>10}{dt:>10.2f}{fmt_n(n / dt):>12}  "
              f"{len(rc.result.findings)} finding(s)")
        prefix = os.path.join(tmp, f"analysis-first-{n_predict}.jsonl")
        write_prefix(path, prefix, n_predict)
        print(f"\npredictive analysis (--predict) on the first {fmt_n(n_predict)} events")
        print(f"{'engine':>9}{'window':>8}{'seconds':>10}{'cpu s':>9}{'events/s':>12}{'windows':>9}"
              f"{'states':>10}{'calls':>8}  predictions")
        for w in windows:
            for engine in engines:
                if engine == "explicit" and w > args.explicit_max_window:
                    print(f"{engine:>9}{w:>8}{'-':>10}{'-':>9}{'-':>12}{'-':>9}{'-':>10}{'-':>8}  not run "
                          f"(--explicit-max-window {args.explicit_max_window})")
                    continue
                t0, c0 = time.perf_counter(), time.process_time()
                pr = predict.analyze(prefix, window=w, engine=engine)
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                print(f"{engine:>9}{w:>8}{dt:>10.2f}{cpu:>9.2f}{fmt_n(n_predict / dt):>12}{pr.windows:>9,}"
                      f"{pr.states:>10,}{pr.solver_calls:>8,}  {len(pr.predictions)} ({pr.unconfirmed} unconfirmed"
                      f"{f', {len(pr.inconclusive)} window(s) inconclusive' if pr.inconclusive else ''})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
