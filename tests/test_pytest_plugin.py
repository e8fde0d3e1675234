"""The pytest plugin: traces under the configured paths are test items, and nothing else changes."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import TRACES

pytest_plugins = ["pytester"]

OK = os.path.join(TRACES, "ok", "compositor-mmap-sync.jsonl")
MAP_LEAK = os.path.join(TRACES, "bad", "MAP-LEAK", "frame-mapping-never-unmapped.jsonl")
GAP = (b'{"op":"dma_buf_export","tid":1,"args":{},"ret":"b1"}\n'
       b'{"op":"lost_events","kind":"annotation","tid":1,"args":{"count":12}}\n'
       b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n'
       b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n')
BROKEN = b'{"op":"dma_buf_export","tid":1,"args":{},"ret":"b1"}\n{"op":"dma_buf_put",\n'
A_TEST = "def test_ordinary():\n    assert True\n"


def traces(pytester: pytest.Pytester, where: str = "traces", extra: dict[str, bytes] | None = None) -> Path:
    """A good and a bad trace from the corpus (and ``extra``) in ``where`` under the pytester directory."""
    root = pytester.path / where
    (root / "sub").mkdir(parents=True)
    shutil.copy(OK, root / "good.jsonl")
    shutil.copy(MAP_LEAK, root / "sub" / "leaky.jsonl")
    (root / "README.md").write_text("not a trace\n")
    (root / "notes.json").write_text("{}\n")
    for name, data in (extra or {}).items():
        (root / name).write_bytes(data)
    return root


# Each in-process run imports its plugins afresh: leave out those the tests do not need.
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*QUIET, *args)


def no_traceback(output: str) -> None:
    assert "Traceback" not in output
    assert "pytest_plugin.py" not in output and "def runtest" not in output
    assert not [line for line in output.splitlines() if line.startswith(("E   ", ">   "))]


def test_a_good_and_a_bad_trace(pytester: pytest.Pytester) -> None:
    traces(pytester)
    result = run(pytester, "--dmaspec-traces", "traces", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "traces/good.jsonl::good.jsonl PASSED*",
        "traces/sub/leaky.jsonl::leaky.jsonl FAILED*",
        "*_ dmaspec: leaky.jsonl _*",
        "traces/sub/leaky.jsonl:10: warning: MAP-LEAK: a mapping is never unmapped",
        "  rule:   MAP-LEAK (*",
        "  events, in trace order:*",
        "*>     10  <end of trace>",
        "  reproduce: dmaspec check --profile latest traces/sub/leaky.jsonl",
        "",
        "checked 1 trace(s), 8 event(s): 1 finding(s) (1 warning) in 1 trace(s)",
        "*short test summary info*",
        "FAILED traces/sub/leaky.jsonl::leaky.jsonl*",
    ])
    no_traceback(result.stdout.str())
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_ini_option(pytester: pytest.Pytester) -> None:
    traces(pytester, "recorded")
    pytester.makepyfile(test_app=A_TEST)
    pytester.makeini("[pytest]\ndmaspec_traces = recorded\n")
    result = run(pytester)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["recorded/sub/leaky.jsonl:10: warning: MAP-LEAK: *"])
    # Paths in the configuration are relative to the configuration file, wherever pytest starts.
    result = run(pytester, "--rootdir", str(pytester.path),
                                str(pytester.path / "recorded"))
    result.assert_outcomes(passed=1, failed=1)


def test_pyproject_list_and_testpaths(pytester: pytest.Pytester) -> None:
    traces(pytester, "a")
    traces(pytester, "b")
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_app.py").write_text(A_TEST)
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ntestpaths = ["tests"]\ndmaspec_traces = ["a", "b"]\n')
    result = run(pytester)
    result.assert_outcomes(passed=3, failed=2)
    # Named tests only: the configured traces stay out of it, unless the arguments lead into them.
    run(pytester, "tests/test_app.py").assert_outcomes(passed=1)
    run(pytester, "b/sub").assert_outcomes(failed=1)
    result = run(pytester, "a/sub/leaky.jsonl::leaky.jsonl")
    result.assert_outcomes(failed=1)


def test_without_the_option_nothing_extra_is_collected(pytester: pytest.Pytester) -> None:
    traces(pytester)
    pytester.makepyfile(test_app=A_TEST)
    result = run(pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["test_app.py::test_ordinary", "", "1 test collected*"])
    assert ".jsonl" not in result.stdout.str()
    run(pytester, "traces").assert_outcomes()  # a trace is not a test by itself


def test_command_line_paths_join_named_tests(pytester: pytest.Pytester) -> None:
    traces(pytester)
    pytester.makepyfile(test_app=A_TEST)
    result = run(pytester, "test_app.py", "--dmaspec-traces", "traces",
                                "--dmaspec-traces", "traces/sub")  # overlapping: each trace once
    result.assert_outcomes(passed=2, failed=1)


def test_marker_selects_and_deselects(pytester: pytest.Pytester) -> None:
    traces(pytester)
    pytester.makepyfile(test_app=A_TEST)
    args = ("--strict-markers", "--dmaspec-traces", "traces")
    run(pytester, *args, "-m", "dmaspec").assert_outcomes(passed=1, failed=1, deselected=1)
    run(pytester, *args, "-m", "not dmaspec").assert_outcomes(passed=1, deselected=2)
    run(pytester, *args, "-k", "leaky").assert_outcomes(failed=1, deselected=2)
    result = run(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.dmaspec: a dma-buf trace checked by dmaspec*"])


def test_inconclusive_is_skipped_with_the_reason(pytester: pytest.Pytester) -> None:
    traces(pytester, extra={"gap.jsonl": GAP})
    result = run(pytester, "-rs", "--dmaspec-traces", "traces")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    assert ("SKIPPED [1] traces/gap.jsonl:1: inconclusive: 1 finding(s) withheld because the trace cannot prove them "
            "(REF-USE-AFTER-RELEASE x1); 1 gap(s) of lost events (first at line 2)") in result.stdout.str()


def test_bad_input_fails_with_file_and_line(pytester: pytest.Pytester) -> None:
    traces(pytester, extra={"broken.jsonl": BROKEN})
    result = run(pytester, "--dmaspec-traces", "traces")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*_ dmaspec: broken.jsonl _*",
                                 "traces/broken.jsonl:2: malformed JSON (*): expected one JSON object per line"])
    no_traceback(result.stdout.str())


def test_profile_option(pytester: pytest.Pytester) -> None:
    traces(pytester)
    result = run(pytester, "--dmaspec-traces", "traces", "--dmaspec-profile", "6.1")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["  reproduce: dmaspec check --profile 6.1 traces/sub/leaky.jsonl"])
    result = run(pytester, "--dmaspec-traces", "traces", "--dmaspec-profile", "banana")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dmaspec-profile: unknown profile 'banana'*"])


def test_bad_paths_are_usage_errors(pytester: pytest.Pytester) -> None:
    result = run(pytester, "--dmaspec-traces", "missing")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dmaspec-traces: no such file or directory: *missing"])
    pytester.mkdir("empty")
    result = run(pytester, "--dmaspec-traces", "empty")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dmaspec-traces: no trace files (*.jsonl, *.jsonl.gz) under *empty"])


def test_gzip_traces(pytester: pytest.Pytester) -> None:
    traces(pytester, extra={"leaky-too.jsonl.gz": gzip.compress(Path(MAP_LEAK).read_bytes())})
    # an editable install's metadata can make pytest warn that the plugin's package was imported before rewriting
    result = run(pytester, "-W", "error", "-W", "ignore::pytest.PytestAssertRewriteWarning",
                 "--dmaspec-traces", "traces")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["traces/leaky-too.jsonl.gz:10: warning: MAP-LEAK: *"])


def test_trace_paths_pytest_would_not_recurse_into(pytester: pytest.Pytester) -> None:
    # build/ and dot-directories are in pytest's default norecursedirs: the traces there are checked all the same.
    traces(pytester, "build/traces")
    traces(pytester, ".recorded")
    pytester.makepyfile(test_app=A_TEST)
    pytester.makeini("[pytest]\ndmaspec_traces = .recorded\n")
    run(pytester).assert_outcomes(passed=2, failed=1)
    run(pytester, ".").assert_outcomes(passed=2, failed=1)
    result = run(pytester, ".", "--dmaspec-traces", "build/traces")
    result.assert_outcomes(passed=3, failed=2)
    result = run(pytester, "--collect-only", "-q", "build/traces/sub",
                                "--dmaspec-traces", "build/traces")
    result.stdout.fnmatch_lines(["build/traces/sub/leaky.jsonl::leaky.jsonl", "", "1 test collected*"])
