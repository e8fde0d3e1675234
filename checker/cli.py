"""The ``dmaspec`` command: the only module that prints.

Exit status: 0 clean, 1 findings, 2 bad input or usage, 3 inconclusive
(findings withheld because the trace has gaps or cannot see what a rule needs).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from checker import report
from checker.api import check_file
from checker.core import InputError, Result
from checker.trace import OPS_BY_NAME, expand_paths
from spec import SPEC
from spec import profile as find_profile
from spec.lint import lint

EXIT_CLEAN, EXIT_FINDINGS, EXIT_INPUT, EXIT_INCONCLUSIVE = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"dmaspec: error: {message} (see dmaspec {self.prog.split()[-1]} --help)", file=sys.stderr)
        raise SystemExit(EXIT_INPUT)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dmaspec", description="Check Linux dma-buf API usage against a formal spec.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    c = sub.add_parser("check", help="check recorded traces", description="Check canonical traces (JSON Lines; "
                       "directories, '-' for stdin and .gz accepted). Exit 0 clean, 1 findings, 2 bad input, "
                       "3 inconclusive.")
    c.add_argument("paths", nargs="+", metavar="PATH")
    c.add_argument("--profile", help="kernel profile (rfc-2012, 3.5, 4.6, 5.7, 6.2, latest, or a version such as "
                   "6.1); default: the trace header's, else latest")
    c.add_argument("--engine", choices=("compiled", "interpreter"), default="compiled",
                   help="compiled (fast, default) or the reference interpreter")
    c.add_argument("--format", choices=("text", "json"), default="text")
    c.add_argument("--keep-going", action="store_true", help="report bad lines and check the rest of the file")
    c.add_argument("--no-leaks", action="store_true", help="do not check end-of-trace obligations (the trace stops "
                   "before the program's end)")
    c.add_argument("--unobserved", default="", metavar="OPS",
                   help="comma-separated ops the recorder cannot see; rules that depend on them are withheld")
    c.add_argument("-q", "--quiet", action="store_true", help="findings and the summary only")
    r = sub.add_parser("rules", help="list the rules in force for a profile")
    r.add_argument("--profile", default="latest")
    r.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    sub.add_parser("spec-lint", help="check the spec for inconsistencies")
    sub.add_parser("profiles", help="list the named profiles")
    return p


def _check(args: argparse.Namespace) -> int:
    unobserved = frozenset(x.strip() for x in args.unobserved.split(",") if x.strip())
    unknown = sorted(x for x in unobserved if x not in OPS_BY_NAME)
    if unknown:
        print(f"dmaspec: error: --unobserved names unknown ops: {', '.join(unknown)}", file=sys.stderr)
        return EXIT_INPUT
    if args.profile:
        try:
            find_profile(args.profile)
        except ValueError as e:
            print(f"dmaspec: error: {e}", file=sys.stderr)
            return EXIT_INPUT
    try:
        paths = expand_paths(args.paths)
    except InputError as e:
        print(f"dmaspec: error: {e}", file=sys.stderr)
        return EXIT_INPUT
    results: list[Result] = []
    errors: list[InputError] = []
    for path in paths:
        try:
            result = check_file(path, profile=args.profile, engine=args.engine, keep_going=args.keep_going,
                                check_leaks=not args.no_leaks, unobserved=unobserved)
        except InputError as err:
            errors.append(err)
            if not args.keep_going:
                break
            continue
        results.append(result)
        errors += result.errors
    if errors:
        status = EXIT_INPUT
    elif any(r.findings for r in results):
        status = EXIT_FINDINGS
    elif any(r.inconclusive for r in results):
        status = EXIT_INCONCLUSIVE
    else:
        status = EXIT_CLEAN
    if args.format == "json":
        sys.stdout.write(report.as_json(results, status, errors, args.engine))
    else:
        sys.stdout.write(report.text(results, args.engine, errors, quiet=args.quiet))
        for error in errors:
            print(f"{error}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        return _check(args)
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
