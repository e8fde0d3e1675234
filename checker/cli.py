"""The ``dmaspec`` command: the only module that prints.

Exit status: 0 clean, 1 findings, 2 bad input or usage, 3 inconclusive
(findings withheld because the trace has gaps or cannot see what a rule needs),
4 the lab itself failed (``dmaspec lab``: no kernel, the VM did not finish).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from typing import IO, NoReturn, cast

from checker import baseline, report
from checker.api import check_file
from checker.core import InputError, Result
from checker.lab import cli as lab_cli
from checker.trace import OPS_BY_NAME, expand_paths, open_binary
from spec import SPEC
from spec import profile as find_profile
from spec.lint import lint

EXIT_CLEAN, EXIT_FINDINGS, EXIT_INPUT, EXIT_INCONCLUSIVE = 0, 1, 2, 3
FORMATS = ("text", "json", "sarif", "junit", "html")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"dmaspec: error: {message} (see dmaspec {self.prog.split()[-1]} --help)", file=sys.stderr)
        raise SystemExit(EXIT_INPUT)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dmaspec", description="Check Linux dma-buf API usage against a formal spec.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    c = sub.add_parser("check", help="check recorded traces", description="Check traces: canonical JSON Lines, "
                       "ftrace text or strace output (directories, '-' for stdin and .gz accepted), each on its own; "
                       "with --join, a kernel trace and an strace of the same run as one trace. Exit 0 clean, "
                       "1 findings, 2 bad input, 3 inconclusive.")
    c.add_argument("paths", nargs="+", metavar="PATH")
    c.add_argument("--join", action="store_true",
                   help="the two PATHs are one run: a kernel trace (ftrace text) and an strace of it, in either "
                   "order; check them as one trace, aligned by the events both show (trace_marker writes, new "
                   "dma-buf fds, mmap, lseek, ioctls), each event both show once. Refused (exit 2) when they share "
                   "no process or no such event. Without --join, each PATH is its own trace, and a kernel trace "
                   "and an strace that share a pid get a note saying so")
    c.add_argument("--offset", type=float, metavar="SECONDS",
                   help="--join: strace time minus kernel time, instead of aligning by shared events")
    check_options(c)
    r = sub.add_parser("rules", help="list the rules in force for a profile")
    r.add_argument("--profile", default="latest")
    r.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    v = sub.add_parser("convert", help="convert a recording (ftrace, strace) to the canonical format",
                       description="Convert a recording to canonical JSON Lines: a header saying what the format "
                       "cannot see, then one event per line, each with \"src\", its line in the recording. "
                       "Exit 0, or 2 for input the reader cannot read.")
    v.add_argument("paths", nargs="+", metavar="IN", help="the recording ('-' for stdin; gzip is recognised); with "
                   "--join, a kernel trace and an strace of one run")
    v.add_argument("-o", "--output", metavar="OUT", default="-", help="where to write (default: standard output)")
    v.add_argument("--from", dest="fmt", choices=("dmaspec", "ftrace", "strace"),
                   help="the recording's format, instead of recognising it")
    v.add_argument("--join", action="store_true", help="join a kernel trace (ftrace text) and an strace of the same "
                   "run into one canonical trace, as dmaspec check --join checks it; \"src\" is then FILE:LINE")
    v.add_argument("--offset", type=float, metavar="SECONDS",
                   help="--join: strace time minus kernel time, instead of aligning by shared events")
    e = sub.add_parser("explore", help="explore every interleaving of a bounded configuration",
                       description="Explore a bounded configuration (or a design scenario) of the dma-buf "
                       "protocol: every interleaving up to a depth, with one of three engines over the same spec. "
                       "Exit 0 no violation within the bound (the report says exactly what was proved), "
                       "1 violation (each with a counterexample trace), 2 usage, 3 inconclusive.")
    e.add_argument("--engine", choices=("explicit", "bmc", "hypothesis"), default="explicit",
                   help="explicit: breadth-first over states (shortest counterexamples); bmc: z3 bounded model "
                   "checking; hypothesis: random schedules (stateful testing)")
    e.add_argument("--config", default=None, help="a named configuration (tiny, small, ci); see --list")
    e.add_argument("--scenario", default=None, help="a design scenario with its expected outcome; see --list")
    e.add_argument("--profile", default=None, help="kernel profile (default: the configuration's)")
    e.add_argument("--depth", type=int, default=None, help="bound on moves (default: the configuration's)")
    e.add_argument("--out", metavar="DIR", help="write counterexample traces and (explicit) the state graph, "
                   "DOT and GraphML with the violating paths highlighted, to DIR")
    e.add_argument("--no-symmetry", action="store_true", help="explicit: do not merge states that differ only by "
                   "permuting interchangeable actors")
    e.add_argument("--max-states", type=int, default=None, help="explicit: stop (inconclusive) past this many states")
    e.add_argument("--timeout", type=float, default=None, help="bmc: seconds per solver call (unknown: inconclusive)")
    e.add_argument("--seed", type=int, default=None, help="bmc and hypothesis: the random seed")
    e.add_argument("--examples", type=int, default=None, help="hypothesis: how many schedules to try")
    e.add_argument("--format", choices=("text", "json"), default="text")
    e.add_argument("--list", action="store_true", help="list the configurations and scenarios, then exit")
    x = sub.add_parser("export", help="export a configuration to Promela (SPIN) or an object kind to rvgen's .dot",
                       description="Export, derived from the spec: --to promela writes a configuration or scenario "
                       "as a Promela model for SPIN; --to dot writes the automaton of one object kind in the .dot "
                       "shape of the kernel's rvgen. Exit 0, or 2 for bad input.")
    x.add_argument("--to", required=True, choices=("promela", "dot"), help="the language to write")
    x.add_argument("--config", default=None, help="promela: a named configuration (dmaspec explore --list)")
    x.add_argument("--scenario", default=None, help="promela: a design scenario")
    x.add_argument("--kind", default=None, help="dot: the object kind (buffer, attachment)")
    x.add_argument("--profile", default=None, help="kernel profile (default: the configuration's, else latest)")
    x.add_argument("-o", "--output", metavar="FILE", default="-", help="where to write (default: standard output)")
    lab_cli.add_parser(sub, check_options)
    sub.add_parser("spec-lint", help="check the spec for inconsistencies")
    sub.add_parser("profiles", help="list the named profiles")
    return p


def check_options(c: argparse.ArgumentParser) -> None:
    """The options of ``dmaspec check`` that say how to check and report (shared with ``dmaspec lab run``)."""
    c.add_argument("--profile", help="kernel profile (rfc-2012, 3.5, 4.6, 5.7, 6.2, latest, or a version such as "
                   "6.1); default: the trace header's, else latest")
    c.add_argument("--from", dest="fmt", choices=("dmaspec", "ftrace", "strace"),
                   help="the traces' format, instead of recognising it (dmaspec: canonical JSON Lines)")
    c.add_argument("--engine", choices=("compiled", "interpreter"), default="compiled",
                   help="compiled (fast, default) or the reference interpreter")
    c.add_argument("--format", choices=FORMATS, default="text", help="the report on standard output")
    c.add_argument("--output", action="append", default=[], metavar="FORMAT=FILE",
                   help="also write a report to FILE (repeatable), e.g. --output sarif=dmaspec.sarif "
                   "--output html=report.html")
    c.add_argument("--junit-per-rule", action="store_true", help="JUnit: one test case per trace and rule")
    c.add_argument("--baseline", metavar="FILE", help="report only findings not recorded in FILE")
    c.add_argument("--write-baseline", metavar="FILE", help="record every finding's fingerprint in FILE")
    c.add_argument("--keep-going", action="store_true", help="report bad lines and check the rest of the file")
    c.add_argument("--no-leaks", action="store_true", help="do not check end-of-trace obligations (the trace stops "
                   "before the program's end)")
    c.add_argument("--unobserved", default="", metavar="OPS",
                   help="comma-separated ops the recorder cannot see; rules that depend on them are withheld")
    c.add_argument("--lock-order", action="store_true",
                   help="also look for potential deadlocks, lockdep's way: lock-order cycles across threads, "
                   "inversions of the kernel's primed lock order, and cycles of the fence wait-for graph (a thread "
                   "waits for a fence of another timeline before it signals one of its own), and actual deadlocks "
                   "of threads asleep in fence waits at the end of the trace (more passes over the trace)")
    c.add_argument("--races", action="store_true",
                   help="also look for unordered accesses to a buffer (Vetter's coherency model: barriers publish, "
                   "only fences, locks, fork and program order order); synchronisation the trace does not record "
                   "(V4L2 queues, binder, futexes) is not seen, so findings are warnings")
    c.add_argument("--predict", action="store_true",
                   help="also look for other orders of the same threads' events, which nothing recorded rules out, "
                   "that break a rule (searched window by window; warnings, each with a witness trace)")
    c.add_argument("--predict-window", type=int, default=12, metavar="N",
                   help="--predict: events per window (half overlapping; default 12)")
    c.add_argument("--predict-engine", choices=("explicit", "z3"), default=None,
                   help="--predict: how each window is searched: z3 (the bounded model checker's encoding, with "
                   "threads that share no object searched apart; default) or explicit (every state, "
                   "breadth-first; fast on small windows, grows steeply with the window)")
    c.add_argument("--predict-timeout", type=float, default=None, metavar="SECONDS",
                   help="--predict with z3: seconds per solver call (default 5); a window the solver gives up on "
                   "is searched by the explicit engine, up to 100,000 states, and past them is inconclusive (exit 3 "
                   "when nothing else is found), never a pass")
    c.add_argument("--predict-out", metavar="DIR", help="--predict: write each witness trace to DIR")
    c.add_argument("--conformance", action="store_true",
                   help="the trace comes from an unmodified kernel: compare every return value the spec predicts "
                   "with the recorded one; a disagreement, or a broken CORE-* guarantee, is a defect of the spec "
                   "(SPEC-KERNEL-DISAGREES), not of the program (on by default in dmaspec lab run)")
    c.add_argument("-q", "--quiet", action="store_true", help="findings and the summary only")


def render(fmt: str, results: list[Result], errors: list[InputError], status: int, args: argparse.Namespace,
           color: bool = False) -> str:
    """The report in ``fmt``: every reporter renders the same results."""
    if fmt == "text":
        return report.text(results, args.engine, errors, quiet=args.quiet, color=color)
    if fmt == "json":
        return report.as_json(results, status, errors, args.engine)
    reporter = importlib.import_module(f"checker.reporters.{fmt}")
    if fmt == "sarif":
        return cast(str, reporter.render(results, engine=args.engine, errors=errors))
    if fmt == "junit":
        return cast(str, reporter.render(results, errors, per_rule=args.junit_per_rule, engine=args.engine))
    return cast(str, reporter.render(results, errors, engine=args.engine))


class _Progress:
    """A progress line on a terminal: events read, rate, findings so far."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.start = self.last = time.monotonic()
        self.shown = False

    def __call__(self, line: int, findings: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.25:
            return
        self.last = now
        rate = line / max(now - self.start, 1e-9)
        sys.stderr.write(f"\r\033[K{self.path}: {line:,} lines, {rate:,.0f}/s, {findings} finding(s)")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def _outputs(specs: list[str]) -> list[tuple[str, str]]:
    out = []
    for spec in specs:
        fmt, sep, path = spec.partition("=")
        if not sep or fmt not in FORMATS or not path:
            raise ValueError(f"--output takes FORMAT=FILE with FORMAT one of {', '.join(FORMATS)}, not {spec!r}")
        out.append((fmt, path))
    return out


def _analyses(args: argparse.Namespace, path: str, result: Result, unobserved: frozenset[str]) -> None:
    """Run the whole-trace analyses asked for and merge their findings into ``result``."""
    extras: list[tuple[str, Result]] = []
    if args.lock_order:
        from checker.analysis import fencewait, lockorder
        from spec.rules import LOCK_DEADLOCK

        extras.append(("lock-order", lockorder.analyze(path, args.fmt).result))
        reported = any(f.rule == LOCK_DEADLOCK for f in result.findings)  # the same deadlock is reported once
        extras.append(("lock-order", fencewait.analyze(path, args.fmt, unobserved=unobserved,
                                                       lock_deadlock=reported).result))
    if args.races:
        from checker.analysis import races

        extras.append(("races", races.analyze(path, unobserved=unobserved, fmt=args.fmt).result))
    if args.predict:
        from checker.analysis import predict

        found = predict.analyze(path, window=args.predict_window, fmt=args.fmt, out_dir=args.predict_out,
                                unobserved=unobserved, engine=args.predict_engine or predict.ENGINE,
                                timeout=predict.TIMEOUT if args.predict_timeout is None else args.predict_timeout)
        assert found.result is not None
        result.conversion_notes += found.result.conversion_notes  # windows z3 gave up on or could not encode
        extras.append(("predict", found.result))
    if args.conformance:
        from checker.analysis import conformance

        conformance.recast(result)
        compared = conformance.analyze(path, fmt=args.fmt, profile=args.profile)
        result.conversion_notes.append(conformance.note(compared))
        extras.append(("conformance", compared.result))
    for flag, extra in extras:
        result.findings = sorted(result.findings + extra.findings, key=lambda f: f.line)
        result.withheld.update(extra.withheld)
        result.undecided.update(extra.undecided)
        for rule, ops in extra.narrowed.items():
            result.narrowed.setdefault(rule, ops)
        if flag not in result.analyses:
            result.analyses.append(flag)


def _check(args: argparse.Namespace) -> int:
    unobserved = frozenset(x.strip() for x in args.unobserved.split(",") if x.strip())
    unknown = sorted(x for x in unobserved if x not in OPS_BY_NAME)
    if unknown:
        print(f"dmaspec: error: --unobserved names unknown ops: {', '.join(unknown)}", file=sys.stderr)
        return EXIT_INPUT
    try:
        outputs = _outputs(args.output)
        if args.profile:
            find_profile(args.profile)
    except ValueError as e:
        print(f"dmaspec: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    if (args.lock_order or args.races or args.predict or args.conformance) and "-" in args.paths:
        print("dmaspec: error: --lock-order, --races, --predict and --conformance read the trace again: give a "
              "file, not standard input", file=sys.stderr)
        return EXIT_INPUT
    if args.predict_window < 2:
        print("dmaspec: error: --predict-window must be 2 or more", file=sys.stderr)
        return EXIT_INPUT
    if args.predict_timeout is not None and args.predict_timeout <= 0:
        print("dmaspec: error: --predict-timeout must be more than 0", file=sys.stderr)
        return EXIT_INPUT
    if getattr(args, "join", False):  # (dmaspec lab run hands its trace here without --join)
        return _check_join(args, unobserved, outputs)
    if getattr(args, "offset", None) is not None:
        print("dmaspec: error: --offset goes with --join", file=sys.stderr)
        return EXIT_INPUT
    try:
        paths = expand_paths(args.paths)
        known = baseline.load(args.baseline) if args.baseline else None
    except InputError as e:
        print(f"dmaspec: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    results: list[Result] = []
    errors: list[InputError] = []
    show_progress = sys.stderr.isatty() and not args.quiet and args.engine == "compiled"
    for path in paths:
        progress = _Progress(path) if show_progress else None
        try:
            result = check_file(path, profile=args.profile, engine=args.engine, keep_going=args.keep_going,
                                check_leaks=not args.no_leaks, unobserved=unobserved, progress=progress,
                                fmt=args.fmt)
            if not result.errors:
                _analyses(args, path, result, unobserved)
        except InputError as err:
            errors.append(err)
            if not args.keep_going:
                break
            continue
        finally:
            if progress is not None:
                progress.done()
        results.append(result)
        errors += result.errors
    if len(paths) > 1 and not args.quiet:
        from checker.join import hint

        for note in hint(paths):
            print(f"dmaspec: note: {note}", file=sys.stderr)
    return _finish(args, results, errors, known, outputs)


def _check_join(args: argparse.Namespace, unobserved: frozenset[str], outputs: list[tuple[str, str]]) -> int:
    """``dmaspec check --join KERNEL STRACE``: the two recordings checked as one trace."""
    from checker.api import check_join

    if args.lock_order or args.races or args.predict or args.conformance or args.fmt:
        print("dmaspec: error: --join does not go with --from, --lock-order, --races, --predict or --conformance; "
              "write the joined trace with dmaspec convert --join -o run.jsonl and check that", file=sys.stderr)
        return EXIT_INPUT
    try:
        known = baseline.load(args.baseline) if args.baseline else None
        result = check_join(args.paths, offset=args.offset, profile=args.profile, engine=args.engine,
                            keep_going=args.keep_going, check_leaks=not args.no_leaks, unobserved=unobserved)
    except InputError as err:
        return _finish(args, [], [err], None, outputs)
    return _finish(args, [result], list(result.errors), known, outputs)


def _finish(args: argparse.Namespace, results: list[Result], errors: list[InputError],
            known: frozenset[str] | None, outputs: list[tuple[str, str]]) -> int:
    """Apply the baseline, render the reports, and say the exit status."""
    if args.write_baseline:
        n = baseline.write(args.write_baseline, results)
        print(f"dmaspec: wrote {n} finding(s) to the baseline {args.write_baseline}", file=sys.stderr)
    if known is not None:
        baseline.apply(results, known)
    if errors:
        status = EXIT_INPUT
    elif args.write_baseline:
        status = EXIT_CLEAN
    elif any(r.findings for r in results):
        status = EXIT_FINDINGS
    elif any(r.inconclusive for r in results):
        status = EXIT_INCONCLUSIVE
    else:
        status = EXIT_CLEAN
    color = args.format == "text" and sys.stdout.isatty() and "NO_COLOR" not in os.environ
    sys.stdout.write(render(args.format, results, errors, status, args, color))
    for fmt, path in outputs:
        try:
            with open(path, "w", encoding="utf-8") as out:
                out.write(render(fmt, results, errors, status, args))
        except OSError as e:
            print(f"dmaspec: error: cannot write {path}: {e.strerror}", file=sys.stderr)
            return EXIT_INPUT
    if args.format != "json":
        for error in errors:
            print(f"{error}", file=sys.stderr)
    return status


def _convert(args: argparse.Namespace) -> int:
    """Write the canonical conversion of one recording (or, --join, of two joined); what was skipped on stderr."""
    from checker.readers import CanonicalStream, convert, header_line

    if not args.join and (len(args.paths) != 1 or args.offset is not None):
        print("dmaspec: error: convert takes one recording; --join joins a kernel trace and an strace of one run"
              + (" (and --offset goes with it)" if args.offset is not None else ""), file=sys.stderr)
        return EXIT_INPUT
    if args.join and args.fmt:
        print("dmaspec: error: --join recognises each recording's format: no --from", file=sys.stderr)
        return EXIT_INPUT
    out: IO[bytes] | None = None
    try:
        if args.join:
            from checker.join import join

            with join(args.paths, offset=args.offset, src=True) as joined:
                conversion = joined.conversion
                canonical = CanonicalStream(conversion, file=joined.name)
                out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
                out.write(header_line(conversion.header, conversion.format, joined.name))
                while chunk := canonical.read(1 << 16):
                    out.write(chunk)
        else:
            path = args.paths[0]
            with open_binary(path) as stream:
                conversion = convert(stream, path, args.fmt)
                canonical = CanonicalStream(conversion, src=True, file=path)
                out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
                out.write(header_line(conversion.header, conversion.format, path))
                while chunk := canonical.read(1 << 16):
                    out.write(chunk)
    except OSError as e:
        print(f"dmaspec: error: cannot read or write: {e.strerror}", file=sys.stderr)
        return EXIT_INPUT
    except InputError as e:
        print(f"{e}", file=sys.stderr)
        return EXIT_INPUT
    finally:
        if out is not None and out is not sys.stdout.buffer:
            out.close()
    skipped = sum(conversion.skipped.values())
    print(f"dmaspec: converted {len(canonical.lines):,} event(s) from {conversion.format}"
          + (f"; skipped {skipped:,}: " + ", ".join(f"{n} {why}" for why, n in conversion.skipped.most_common())
             if skipped else ""), file=sys.stderr)
    for note in conversion.notes:
        print(f"dmaspec: note: {note}", file=sys.stderr)
    return EXIT_CLEAN


def _explore(args: argparse.Namespace) -> int:
    from checker import explore
    from checker.engines.model import ConfigError
    from spec.configs import config as find_config
    from spec.configs import scenario as find_scenario

    if args.list:
        sys.stdout.write(explore.listing())
        return EXIT_CLEAN
    if bool(args.config) == bool(args.scenario):
        print("dmaspec: error: name a --config or a --scenario (dmaspec explore --list shows them)", file=sys.stderr)
        return EXIT_INPUT
    try:
        scenario = find_scenario(args.scenario) if args.scenario else None
        cfg = scenario.config if scenario else find_config(args.config)
        if args.profile:
            find_profile(args.profile)
        if args.depth is not None and args.depth < 0:
            raise ValueError("--depth must be 0 or more")
    except ValueError as e:
        print(f"dmaspec: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    command = " ".join(["dmaspec explore", f"--engine {args.engine}",
                        f"--scenario {args.scenario}" if scenario else f"--config {args.config}",
                        f"--profile {args.profile or cfg.profile}", f"--depth {args.depth or cfg.depth}",
                        *([f"--seed {args.seed}"] if args.seed is not None else []),
                        *([f"--timeout {args.timeout:g}"] if args.timeout is not None else []),
                        *([f"--examples {args.examples}"] if args.examples is not None else []),
                        *(["--no-symmetry"] if args.no_symmetry else [])])
    progress = None
    if sys.stderr.isatty() and args.format == "text":
        last = [0.0]

        def progress(states: int, depth: int, frontier: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.5:
                last[0] = now
                print(f"\r  {states:,} states, depth {depth}, frontier {frontier:,}   ", end="", file=sys.stderr)
    try:
        result = explore.run(args.engine, cfg, profile=args.profile, depth=args.depth, symmetry=not args.no_symmetry,
                             keep_graph=bool(args.out) and args.engine == "explicit", progress=progress,
                             max_states=args.max_states, seed=args.seed, timeout=args.timeout,
                             examples=args.examples)
    except ConfigError as e:
        print(f"dmaspec: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    if progress is not None:
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    traces = explore.write_artifacts(result, args.out) if args.out else {}
    render = explore.as_json if args.format == "json" else explore.text
    sys.stdout.write(render(result, command, scenario, traces))
    return result.exit_status


def _export(args: argparse.Namespace) -> int:
    from checker.engines.model import ConfigError
    from checker.export import KINDS, ExportError, automaton_dot, promela
    from spec.configs import config as find_config
    from spec.configs import scenario as find_scenario

    try:
        if args.profile:
            find_profile(args.profile)
        if args.to == "promela":
            if bool(args.config) == bool(args.scenario) or args.kind:
                raise ValueError("--to promela takes a --config or a --scenario (dmaspec explore --list shows "
                                 "them), and no --kind")
            cfg = find_scenario(args.scenario).config if args.scenario else find_config(args.config)
            text = promela(cfg, args.profile)
        else:
            if args.config or args.scenario or args.kind not in KINDS:
                raise ValueError(f"--to dot takes --kind {' or '.join(KINDS)}, and no --config or --scenario")
            text = automaton_dot(args.kind, args.profile)
    except (ValueError, ConfigError, ExportError) as e:
        print(f"dmaspec: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    if args.output == "-":
        sys.stdout.write(text)
    else:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            print(f"dmaspec: error: cannot write {args.output}: {e.strerror}", file=sys.stderr)
            return EXIT_INPUT
    return EXIT_CLEAN


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "export":
        return _export(args)
    if args.command == "lab":
        return lab_cli.main(args, _check)
    if args.command == "check":
        return _check(args)
    if args.command == "convert":
        return _convert(args)
    if args.command == "explore":
        return _explore(args)
    if args.command == "rules":
        try:
            sys.stdout.write(report.rules_table(args.profile, args.format))
        except ValueError as e:
            print(f"dmaspec: error: {e}", file=sys.stderr)
            return EXIT_INPUT
        return EXIT_CLEAN
    if args.command == "profiles":
        for p in SPEC.profiles:
            print(f"{p.name:<9} Linux {p.version[0]}.{p.version[1]:<4} {p.description}")
        return EXIT_CLEAN
    problems = lint(SPEC)
    for problem in problems:
        print(problem)
    print(f"spec: {len(SPEC.rules)} rules, {len(SPEC.actions)} actions, {len(SPEC.tables)} tables: "
          + ("consistent" if not problems else f"{len(problems)} problem(s)"))
    return EXIT_INPUT if problems else EXIT_CLEAN


def entry() -> None:
    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    entry()
