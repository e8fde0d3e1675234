"""``dmaspec lab``: the command line of the lab (fetch, list, run, conformance).

Exit status of ``lab run``: the check's (0 clean, 1 findings, 2 bad input,
3 inconclusive), or 4 when the lab itself failed: the kernel could not be
had, the VM did not boot, did not finish in time, or sent no whole trace
(its console log is shown).  ``lab fetch`` and ``lab list``: 0, or 4.
``lab conformance``: 0 when the spec agrees with every kernel on every
compared call, 1 when it found spec defects, 4 when a run failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_LAB = 4


def add_parser(sub: Any, check_options: Any) -> None:
    """Add ``lab`` and its subcommands to the ``dmaspec`` parser's subparsers."""
    from checker.lab.kernels import DEFAULT_RELEASE, RELEASES

    lab = sub.add_parser("lab", help="run a program against a real Linux kernel under qemu and check its trace",
                         description="Boot a stock Linux kernel under qemu (software emulation), run a program "
                         "with dma-buf tracing on, and check the trace. Kernels are fetched once into a cache "
                         "($DMASPEC_LAB_CACHE, else ~/.cache/dmaspec/lab). Exit 4 when the lab itself fails.")
    lsub = lab.add_subparsers(dest="lab_command", required=True, parser_class=type(lab))
    releases = ", ".join(f"{n} ({r.note})" for n, r in RELEASES.items())
    f = lsub.add_parser("fetch", help="get a kernel into the lab's cache",
                        description=f"Download a Debian release's stock kernel (apt-get download through a private "
                        f"apt configuration: the machine's apt sources are not touched), or add a kernel you have "
                        f"with --kernel and --modules. Releases: {releases}.")
    f.add_argument("releases", nargs="*", metavar="RELEASE", help=f"default: {DEFAULT_RELEASE}")
    f.add_argument("--all", action="store_true", help="every release the lab knows")
    f.add_argument("--refresh", action="store_true", help="download again even when cached")
    f.add_argument("--kernel", type=Path, metavar="VMLINUZ", help="your own kernel image (with --modules, --name)")
    f.add_argument("--modules", type=Path, metavar="DIR", help="its module tree, lib/modules/<release>")
    f.add_argument("--config", type=Path, metavar="FILE", help="its build configuration (optional)")
    f.add_argument("--name", help="the name to cache your own kernel under")
    lsub.add_parser("list", help="the kernels in the cache")
    r = lsub.add_parser("run", help="run a program in the VM, record and check its trace",
                        description="Boot a cached kernel, load vgem and vivid (if the kernel has them as "
                        "modules), record with traces/record/ftrace-setup.sh, run PROGRAM ARGS as root, and check "
                        "the trace. PROGRAM may be static or dynamically linked (its libraries are copied). "
                        "Exit: the check's, or 4 when the VM failed.")
    r.add_argument("--kernel", default=None, metavar="NAME", help=f"a cached kernel (default: {DEFAULT_RELEASE})")
    r.add_argument("--module", action="append", default=[], metavar="NAME[=PARAMS]",
                   help="a module to load (repeatable), e.g. --module 'vivid=n_devs=2'")
    r.add_argument("--no-default-modules", action="store_true", help="load only the --module ones")
    r.add_argument("--file", action="append", default=[], metavar="SRC[:DEST]",
                   help="also put a file in the VM (default destination: /lab/work/NAME, the program's directory)")
    r.add_argument("--timeout", type=float, default=300.0, help="seconds the VM may run (default 300)")
    r.add_argument("--out", type=Path, metavar="DIR", help="keep the trace and console log in DIR "
                   "(default: the cache's runs/PROGRAM)")
    r.add_argument("--exerciser", action="store_true", help="run the bundled exerciser (traces/record/lab/)")
    r.add_argument("--no-conformance", action="store_true", help="do not compare the kernel's return values with "
                   "the spec's predictions (dmaspec check --conformance, on by default here)")
    check_options(r)
    r.add_argument("program", nargs="?", metavar="PROGRAM")
    r.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    c = lsub.add_parser("conformance", help="the spec against the kernel: every predicted return value compared",
                        description="Run the exerciser on each cached kernel (or --kernel ones) and compare every "
                        "call whose return value the spec predicts with what the kernel returned. Exit 0 full "
                        "agreement, 1 spec defects found, 4 a run failed.")
    c.add_argument("--kernel", action="append", default=[], metavar="NAME", help="a cached kernel (repeatable)")
    c.add_argument("--timeout", type=float, default=300.0, help="seconds each VM may run (default 300)")
    c.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    c.add_argument("--out", type=Path, metavar="DIR", help="keep each kernel's trace and console log under DIR")


def _fail(e: Exception) -> int:
    from checker.lab.kernels import LabError

    assert isinstance(e, LabError)
    print(f"dmaspec lab: error: {e.message}", file=sys.stderr)
    if e.log:
        print("\n".join("  | " + line for line in e.log.rstrip().splitlines()[-30:]), file=sys.stderr)
    if e.hint:
        print(f"dmaspec lab: {e.hint}", file=sys.stderr)
    return EXIT_LAB


def main(args: argparse.Namespace, check: Any) -> int:
    """Run ``dmaspec lab <command>``; ``check`` is the ``dmaspec check`` handler the run hands its trace to."""
    from checker.lab.kernels import LabError

    try:
        if args.lab_command == "fetch":
            return _fetch(args)
        if args.lab_command == "list":
            return _list()
        if args.lab_command == "run":
            return _run(args, check)
        return _conformance(args)
    except LabError as e:
        return _fail(e)


def _fetch(args: argparse.Namespace) -> int:
    from checker.lab import kernels

    if args.kernel or args.modules:
        if not (args.kernel and args.modules and args.name):
            print("dmaspec lab: error: your own kernel needs --kernel, --modules and --name", file=sys.stderr)
            return 2
        k = kernels.add_local(args.name, args.kernel, args.modules, config=args.config)
        print(f"{k.name}: {k.release} (profile {k.profile}) from {k.source}")
        return 0
    names = list(kernels.RELEASES) if args.all else (args.releases or [kernels.DEFAULT_RELEASE])
    for name in names:
        log: list[str] = []
        k = kernels.fetch(name, refresh=args.refresh, log=log)
        for line in log:
            print(f"dmaspec lab: {line}", file=sys.stderr)
        print(f"{k.name}: {k.release} (profile {k.profile}) from {k.source}")
    return 0


def _list() -> int:
    from checker.lab import kernels

    found = list(kernels.cached_kernels())
    if not found:
        print(f"no kernels in {kernels.cache_root()}; get one with: dmaspec lab fetch", file=sys.stderr)
    for k in found:
        print(f"{k.name:<12} {k.release:<28} profile {k.profile:<6} {k.source}")
    return 0


def _modules(specs: list[str]) -> list[tuple[str, str]]:
    out = []
    for spec in specs:
        name, _, params = spec.partition("=")
        out.append((name, params.replace(",", " ") if params else ""))
    return out


def _files(specs: list[str]) -> list[tuple[Path, str]]:
    out = []
    for spec in specs:
        src, sep, dest = spec.partition(":")
        path = Path(src)
        out.append((path, dest if sep and dest else f"/lab/work/{path.name}"))
    return out


def _run(args: argparse.Namespace, check: Any) -> int:
    from checker import lab

    if args.exerciser == bool(args.program):
        print("dmaspec lab: error: give a PROGRAM or --exerciser (one of them)", file=sys.stderr)
        return 2
    if args.program and not Path(args.program).is_file():
        print(f"dmaspec lab: error: {args.program}: no such program", file=sys.stderr)
        return 2
    k = lab.kernel(args.kernel)
    program = lab.build_exerciser(lab.cache_root() / "build") if args.exerciser else Path(args.program)
    for src, _ in _files(args.file):
        if not src.is_file():
            print(f"dmaspec lab: error: --file {src}: no such file", file=sys.stderr)
            return 2
    wanted = _modules(args.module)
    modules = None if not wanted and not args.no_default_modules else \
        ([] if args.no_default_modules else lab.available_modules(k, lab.DEFAULT_MODULES)[0]) + wanted
    print(f"dmaspec lab: booting {k.name} ({k.release}) under qemu; a run takes about half a minute",
          file=sys.stderr)
    result = lab.run(program, args.args, k, modules=modules, workdir=args.out, timeout=args.timeout,
                     extra_files=_files(args.file))
    for line in result.output:
        print(f"  | {line}", file=sys.stderr)
    for note in result.notes:
        if note.startswith("module ") and note.endswith(" loaded"):
            continue
        print(f"dmaspec lab: {note}", file=sys.stderr)
    if result.failure:
        print(f"dmaspec lab: error: {result.failure}", file=sys.stderr)
        log = result.console_path.read_text(errors="replace").splitlines() if result.console_path.exists() else []
        print("\n".join("  console | " + line for line in log[-40:]), file=sys.stderr)
        print(f"dmaspec lab: the console log is {result.console_path}", file=sys.stderr)
        return EXIT_LAB
    print(f"dmaspec lab: {program.name} exited with status {result.status} after {result.elapsed:.1f} s in the VM; "
          f"trace: {result.trace_path}", file=sys.stderr)
    args.paths = [str(result.trace_path)]
    args.fmt = "ftrace"
    args.conformance = not args.no_conformance
    status: int = check(args)
    return status


def _conformance(args: argparse.Namespace) -> int:
    import json

    from checker import lab
    from checker.analysis import conformance
    from checker.core import InputError

    chosen = [lab.kernel(name) for name in args.kernel] or list(lab.cached_kernels())
    if not chosen:
        raise lab.LabError("no kernels in the lab cache", hint="run: dmaspec lab fetch --all")
    program = lab.build_exerciser(lab.cache_root() / "build")
    runs: dict[str, conformance.Conformance | None] = {}
    failed = False
    for k in chosen:
        print(f"dmaspec lab: {k.name} ({k.release}): running the exerciser", file=sys.stderr)
        workdir = args.out / k.name if args.out else None
        result = lab.run(program, [], k, workdir=workdir, timeout=args.timeout)
        if result.failure:
            print(f"dmaspec lab: {k.name}: {result.failure} (console log: {result.console_path})", file=sys.stderr)
            runs[k.name] = None
            failed = True
            continue
        if result.status != 0:
            print(f"dmaspec lab: {k.name}: the exerciser exited with status {result.status}:", file=sys.stderr)
            for line in result.output:
                if line.startswith(("FAIL", "exerciser:")):
                    print(f"  | {line}", file=sys.stderr)
        try:
            runs[k.name] = conformance.analyze(str(result.trace_path), fmt="ftrace", profile=k.profile)
        except InputError as e:
            print(f"dmaspec lab: {k.name}: {e}", file=sys.stderr)
            runs[k.name] = None
            failed = True
    defects = [(name, f) for name, c in runs.items() if c is not None for f in c.result.findings]
    if args.format == "json":
        out = {name: None if c is None else {
            "profile": c.profile, "events": c.events, "agreed": c.agreed, "disagreed": c.disagreed,
            "rows": [{"action": r.action, "case": r.label, "rule": r.rule, "agreed": r.agreed,
                      "disagreed": r.disagreed,
                      "mismatches": [{"line": m.line, "op": m.op, "args": m.args, "predicted": m.predicted,
                                      "returned": m.returned} for m in r.mismatches]} for r in c.rows],
            "defects": [{"line": f.line, "detail": f.detail} for f in c.result.findings]}
            for name, c in runs.items()}
        print(json.dumps(out, indent=2, default=str))
    else:
        sys.stdout.write(conformance.table(runs, args.format))
        for name, f in defects:
            print(f"{name}: line {f.line}: {f.detail}")
        compared = sum(c.agreed + c.disagreed for c in runs.values() if c is not None)
        verdict = "full agreement" if not defects else f"{len(defects)} spec defect(s)"
        print(f"conformance: {len(runs)} kernel(s), {compared} compared return value(s): {verdict}"
              + ("; some runs failed" if failed else ""))
    if failed:
        return EXIT_LAB
    return 1 if defects else 0
