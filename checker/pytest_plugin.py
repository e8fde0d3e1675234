"""A pytest plugin: every dma-buf trace under the given paths is a test.

Installed with dmaspec (entry point ``pytest11``, plugin name ``dmaspec``;
``-p no:dmaspec`` turns it off).  It does nothing unless trace paths are
given, on the command line (``--dmaspec-traces PATH``, repeatable) or in the
configuration (``dmaspec_traces``, a list of paths relative to the
configuration file).  Then each ``*.jsonl`` or ``*.jsonl.gz`` file under them
is one test item, named after the file and marked ``dmaspec``:

- it passes when the trace checks clean;
- it fails with the text report of its findings, as ``dmaspec check`` prints
  them (no Python traceback), or with ``file:line: message`` for bad input;
- it is skipped when it is inconclusive (findings withheld because the trace
  cannot prove them), with how many and why.

``--dmaspec-profile P`` (or ``dmaspec_profile``) overrides the profile that
the traces' headers name.  Paths given with ``--dmaspec-traces`` are always
checked; paths from the configuration are checked when pytest runs the whole
suite (no path arguments, started in the root directory, as ``testpaths``
works) or when a path argument holds them (``pytest .``).  A path argument
inside a trace path narrows it to that argument (``pytest traces/bad``,
``pytest traces/x.jsonl::x.jsonl``).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import pytest

# The checker and the spec are imported only when traces are checked: the plugin loads in every pytest run.

TRACE_SUFFIXES = (".jsonl", ".jsonl.gz")
_ROOTS = pytest.StashKey[tuple[Path, ...]]()  # every configured trace path
_INJECTED = pytest.StashKey[tuple[Path, ...]]()  # those pytest's own collection does not reach
_PROFILE = pytest.StashKey[str | None]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dmaspec", "dma-buf trace checking (dmaspec)")
    group.addoption("--dmaspec-traces", action="append", default=[], metavar="PATH", dest="dmaspec_traces",
                    help="check every *.jsonl / *.jsonl.gz trace under PATH as a test (repeatable)")
    group.addoption("--dmaspec-profile", default=None, metavar="P", dest="dmaspec_profile",
                    help="kernel profile to check the traces against (default: each trace header's, else latest)")
    parser.addini("dmaspec_traces", "trace files or directories that dmaspec checks as tests", type="paths",
                  default=[])
    parser.addini("dmaspec_profile", "kernel profile dmaspec checks the traces against", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dmaspec: a dma-buf trace checked by dmaspec against the spec")
    here = config.invocation_params.dir
    cli = [_absolute(here / p) for p in config.getoption("dmaspec_traces")]
    ini = [_absolute(Path(p)) for p in config.getini("dmaspec_traces")]
    for path, origin in [*((p, "--dmaspec-traces") for p in cli), *((p, "dmaspec_traces") for p in ini)]:
        if not path.exists():
            raise pytest.UsageError(f"{origin}: no such file or directory: {path}")
        if path.is_dir() and not any(_traces_under(path)):
            raise pytest.UsageError(f"{origin}: no trace files (*.jsonl, *.jsonl.gz) under {path}")
    profile = config.getoption("dmaspec_profile") or config.getini("dmaspec_profile") or None
    if profile:
        from spec import profile as find_profile

        try:
            find_profile(profile)
        except ValueError as e:
            origin = "--dmaspec-profile" if config.getoption("dmaspec_profile") else "dmaspec_profile"
            raise pytest.UsageError(f"{origin}: {e}") from None
    config.stash[_ROOTS] = tuple(dict.fromkeys(cli + ini))
    config.stash[_PROFILE] = profile
    # The paths to check: every command-line one; configured ones on a whole run or below a path argument.
    # Those that hold a path argument are narrowed to it: pytest's own collection reaches the traces there
    # (pytest_collect_file), as it must for `pytest traces/x.jsonl::x.jsonl`.  The others are added to the
    # session whole (pytest_make_collect_report), norecursedirs or not, and pytest_collect_file leaves them.
    args = _arg_paths(config)
    whole_run = config.args_source != pytest.Config.ArgsSource.ARGS and here == config.rootpath
    wanted = cli + [r for r in ini if whole_run or any(_within(r, a) for a in args)]
    config.stash[_INJECTED] = tuple(r for r in dict.fromkeys(wanted) if not any(_within(a, r) for a in args))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> TraceFile | None:
    roots = parent.config.stash.get(_ROOTS, ())
    if not roots or not _is_trace(file_path):
        return None
    path = _absolute(file_path)
    if any(_within(path, r) for r in roots) and not any(_within(path, r) for r in parent.config.stash[_INJECTED]):
        return TraceFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, pytest.CollectReport,
                                                                         pytest.CollectReport]:
    rep = yield
    injected = collector.config.stash.get(_INJECTED, ())
    if isinstance(collector, pytest.Session) and injected and rep.passed:
        seen: set[Path] = set()
        for root in injected:
            for path in _traces_under(root):
                if path not in seen:
                    seen.add(path)
                    rep.result.append(TraceFile.from_parent(collector, path=path))
    return rep


class TraceFile(pytest.File):
    """A trace file: it holds one test item, named after the file."""

    def collect(self) -> Iterable[TraceItem]:
        yield TraceItem.from_parent(self, name=self.path.name)


class TraceFailed(Exception):
    """The trace broke rules or could not be read: the report is the failure."""


class TraceItem(pytest.Item):
    """Checking one trace with dmaspec."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker("dmaspec")

    def runtest(self) -> None:
        from checker import report
        from checker.api import check_file
        from checker.core import InputError

        path = _shown(self.path, self.config.invocation_params.dir)
        try:
            result = check_file(path, profile=self.config.stash.get(_PROFILE, None))
        except InputError as e:
            raise TraceFailed(str(e)) from None
        if result.findings or result.errors:
            text = report.text([result], errors=result.errors).rstrip("\n")
            raise TraceFailed("\n".join([text, *map(str, result.errors)]))
        if result.inconclusive:
            # Reported at the trace (its first line), not at this line of the plugin.
            raise pytest.skip.Exception("inconclusive: " + "; ".join(report.notes_of(result)),
                                        _use_item_location=True)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str | Any:
        if isinstance(excinfo.value, TraceFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, 0, f"dmaspec: {self.name}"


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _is_trace(path: Path) -> bool:
    return path.name.endswith(TRACE_SUFFIXES)


def _traces_under(root: Path) -> Iterable[Path]:
    """The trace files under ``root`` (itself, if it is one), in sorted order."""
    if not root.is_dir():
        if _is_trace(root) or root.is_file():
            yield root
        return
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            if f.endswith(TRACE_SUFFIXES):
                yield Path(top, f)


def _arg_paths(config: pytest.Config) -> list[Path]:
    """The paths pytest's own collection starts from (test IDs reduced to their files)."""
    out = []
    for arg in config.args:
        path = _absolute(config.invocation_params.dir / arg.split("::")[0])
        if path.exists():
            out.append(path)
    return out


def _shown(path: Path, here: Path) -> str:
    """``path`` as reports show it: relative to where pytest was started, when it lies below."""
    rel = os.path.relpath(path, here)
    return str(path) if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel
