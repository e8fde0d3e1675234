"""Reader fuzzing: what tests/test_fuzz_readers.py runs in CI, for as many examples as asked.

For each recording format (``--format``, default every one ``checker.readers.formats()``
knows) and each kind of input -- random bytes, random text lines, valid lines of the
format mutated by family (``edits``, ``lines``, ``fields``, ``numbers``; see
``MUTATIONS`` in the test module), and ``same-line`` (a check fails at the line its
conversion fails at) -- it runs ``--examples`` hypothesis examples of the test module's
property: converting and checking on both engines raises nothing but InputError, on a
line of the input, and the engines agree.

It prints examples/s per format and kind.  A failure is shrunk by hypothesis; the
smallest input is written to a file (``--out``, default a temporary directory) with the
commands that reproduce it, and the run goes on with the next kind.  Exit status 1 when
anything failed.  Seeded (``--seed``): the same seed, the same inputs.

Usage::

    python bench/fuzz.py --examples 20000 --format ftrace
    python bench/fuzz.py --examples 2000 --kind numbers --kind fields --seed 7
    python bench/fuzz.py --examples 500            # every format, every kind

Figures are for this machine only; they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import hypothesis  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as fixed_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests import test_fuzz_readers as F  # noqa: E402

KINDS = ("bytes", "text", *F.MUTATIONS, "same-line")
PROGRESS_SECONDS = 30.0


def inputs(fmt: str, kind: str) -> st.SearchStrategy[tuple[bytes, bool]]:
    """(input, keep_going) for one format and kind of input, as the tests draw them."""
    data: st.SearchStrategy[bytes]
    if kind == "bytes":
        data = F.random_bytes()
    elif kind == "text":
        data = F.random_text()
    elif kind == "same-line":
        data = st.sampled_from(["edits", "lines"]).flatmap(lambda family: F.mutated(fmt, family))
    else:
        data = F.mutated(fmt, kind)
    return st.tuples(data, st.booleans() if kind != "same-line" else st.just(False))


def prop(fmt: str, kind: str, data: bytes, keep_going: bool) -> None:
    if kind == "same-line":
        F.same_line(data, fmt)
    else:
        F.outcome(data, fmt, keep_going)


@dataclass
class Row:
    fmt: str
    kind: str
    examples: int  # generated before the first failure (all of them when none)
    seconds: float  # to generate and check them
    failure: BaseException | None = None
    data: bytes = b""
    keep_going: bool = False
    path: str = ""

    @property
    def rate(self) -> float:
        return self.examples / self.seconds if self.seconds else 0.0


def run(fmt: str, kind: str, n: int, seed: int) -> Row:
    """``n`` examples of one format and kind; on a failure, the smallest failing input hypothesis found."""
    state: dict[str, Any] = {"calls": 0, "first": None, "last": None, "progress": time.perf_counter()}
    t0 = time.perf_counter()

    @settings(max_examples=n, deadline=None, database=None, derandomize=False, print_blob=False,
              suppress_health_check=list(HealthCheck), phases=(Phase.generate, Phase.shrink),
              report_multiple_bugs=False)
    @fixed_seed(seed)
    @given(inputs(fmt, kind))
    def fuzz(case: tuple[bytes, bool]) -> None:
        data, keep_going = case
        state["calls"] += 1
        now = time.perf_counter()
        if now - state["progress"] >= PROGRESS_SECONDS and state["first"] is None:
            state["progress"] = now
            print(f"  ... {fmt} {kind}: {state['calls']:,} examples, {state['calls'] / (now - t0):,.0f}/s",
                  flush=True)
        try:
            prop(fmt, kind, data, keep_going)
        except Exception:
            if state["first"] is None:
                state["first"] = (state["calls"], time.perf_counter() - t0)
            state["last"] = (data, keep_going)  # hypothesis replays the smallest failing input last
            raise

    try:
        fuzz()
    except Exception as e:
        calls, seconds = state["first"] or (state["calls"], time.perf_counter() - t0)
        data, keep_going = state["last"] or (b"", False)
        return Row(fmt, kind, calls, seconds, e, data, keep_going)
    return Row(fmt, kind, state["calls"], time.perf_counter() - t0)


def write_reproducer(row: Row, out: str) -> str:
    os.makedirs(out, exist_ok=True)
    digest = hashlib.sha1(row.data).hexdigest()[:10]
    path = os.path.join(out, f"{row.fmt}-{row.kind}-{digest}.txt")
    with open(path, "wb") as f:
        f.write(row.data)
    return path


def describe(row: Row) -> list[str]:
    e = row.failure
    assert e is not None
    where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    lines = [f"{type(e).__name__}: {first}" + (f"  (at {os.path.relpath(where.filename, ROOT)}:{where.lineno})"
                                                 if where else "")]
    shown = repr(row.data) if len(row.data) <= 400 else repr(row.data[:400]) + f"... ({len(row.data):,} bytes)"
    lines.append(f"smallest input ({len(row.data):,} bytes): {shown}")
    lines.append(f"written to {row.path}; reproduce with:")
    if row.kind == "same-line":
        call = f"same_line(open({row.path!r}, 'rb').read(), {row.fmt!r})"
    else:
        call = f"outcome(open({row.path!r}, 'rb').read(), {row.fmt!r}, {row.keep_going})"
    lines.append(f"  cd {ROOT} && python -c \"from tests.test_fuzz_readers import *; {call}\"")
    lines.append(f"  dmaspec check --from {row.fmt}{' --keep-going' if row.keep_going else ''} {row.path}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=1000, metavar="N",
                    help="examples per format and kind of input (default: 1000)")
    ap.add_argument("--format", action="append", choices=F.FORMATS, dest="formats", metavar="FORMAT",
                    help=f"a format to fuzz (repeatable; default: all of {', '.join(F.FORMATS)})")
    ap.add_argument("--kind", action="append", choices=KINDS, dest="kinds", metavar="KIND",
                    help=f"a kind of input (repeatable; default: all of {', '.join(KINDS)})")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--out", help="write the inputs that fail here (default: a temporary directory)")
    args = ap.parse_args(argv)
    if args.examples < 1:
        ap.error("--examples: at least 1")
    formats, kinds = args.formats or F.FORMATS, args.kinds or list(KINDS)
    real = F.real_trace_dir()
    print(f"dmaspec reader fuzzing: python {sys.version.split()[0]}, hypothesis {hypothesis.__version__}, "
          f"seed {args.seed}, {args.examples:,} examples per format and kind; real ftrace recordings: "
          f"{real or 'not found (set DMASPEC_REAL_TRACES)'}", flush=True)
    for fmt in formats:
        print(f"  {fmt}: {len(F.samples(fmt)):,} sample lines to mutate", flush=True)
    out = args.out or ""
    rows: list[Row] = []
    print(f"\n{'format':10}{'kind':12}{'examples':>10}{'seconds':>10}{'examples/s':>12}  result", flush=True)
    for fmt in formats:
        for kind in kinds:
            row = run(fmt, kind, args.examples, args.seed)
            rows.append(row)
            result = "ok"
            if row.failure is not None:
                out = out or tempfile.mkdtemp(prefix="dmaspec-fuzz-")
                row.path = write_reproducer(row, out)
                result = "FAILED"
            print(f"{fmt:10}{kind:12}{row.examples:>10,}{row.seconds:>10.1f}{row.rate:>12,.0f}  {result}", flush=True)
            if row.failure is not None:
                for line in describe(row):
                    print(f"    {line}", flush=True)
    total = sum(r.examples for r in rows)
    seconds = sum(r.seconds for r in rows)
    failed = [r for r in rows if r.failure is not None]
    print(f"\n{total:,} examples in {seconds:.1f} s: {total / seconds if seconds else 0:,.0f} examples/s; "
          f"{len(failed)} failing format and kind(s)" + (f"; reproducers in {out}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
