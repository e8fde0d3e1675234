"""The command line: exit statuses, bad input, reports, rules listing."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

GOOD = (b'{"format":"dmaspec-trace","version":1,"profile":"latest"}\n'
        b'{"op":"dma_buf_export","tid":1,"args":{"size":4096},"ret":"b1"}\n'
        b'{"op":"dma_buf_attach","tid":1,"args":{"dmabuf":"b1","dev":"gpu"},"ret":"a1"}\n'
        b'{"op":"dma_buf_detach","tid":1,"args":{"dmabuf":"b1","attach":"a1"}}\n'
        b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n')
DOUBLE_PUT = GOOD + b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n'


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "checker", *args], input=stdin.decode() if stdin else None,
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def write(tmp_path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


@pytest.mark.parametrize("engine", ["compiled", "interpreter"])
def test_clean_trace_exits_0(tmp_path, engine: str) -> None:
    r = run("check", "--engine", engine, write(tmp_path, "ok.jsonl", GOOD))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "clean" in r.stdout


@pytest.mark.parametrize("engine", ["compiled", "interpreter"])
def test_finding_exits_1_with_rule_events_state_and_reproduce(tmp_path, engine: str) -> None:
    path = write(tmp_path, "bad.jsonl", DOUBLE_PUT)
    r = run("check", "--engine", engine, path)
    assert r.returncode == 1
    assert f"{path}:6: error: REF-USE-AFTER-RELEASE" in r.stdout
    assert "buffer 'b1' (released)" in r.stdout
    assert ">      6" in r.stdout and "      5  " in r.stdout  # the put that released it, then the bad one
    engine_flag = " --engine interpreter" if engine == "interpreter" else ""
    assert f"reproduce: dmaspec check --profile latest{engine_flag} {path}" in r.stdout


def test_json_report(tmp_path) -> None:
    r = run("check", "--format", "json", write(tmp_path, "bad.jsonl", DOUBLE_PUT))
    doc = json.loads(r.stdout)
    assert doc["format"] == "dmaspec-report" and doc["exit_status"] == 1 == r.returncode
    [finding] = doc["traces"][0]["findings"]
    assert finding["rule"] == "REF-USE-AFTER-RELEASE" and finding["line"] == 6
    assert finding["objects"][0]["state"]["live"] is False


@pytest.mark.parametrize(("data", "expected"), [
    (b"", "empty file"),
    (b"\n\n", "only blank lines"),
    (b'{"op":"dma_buf_export","tid":1,"ret":"b1"}\n{"op": "dma_buf_put", "tid": 1\n', ":2: malformed JSON"),
    (b'{"op":"dma_buf_mapp_attachment","tid":1}\n', "did you mean dma_buf_map_attachment?"),
    (b'{"op":"dma_buf_put","tid":1,"args":{}}\n', "missing argument 'dmabuf'"),
    (b'{"op":"dma_buf_put","tid":"7","args":{"dmabuf":"b"}}\n', '"tid" must be an integer'),
    (b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":1.5}}\n', "expected a handle"),
    (b'{"op":"mmap","tid":1,"args":{"fd":3,"length":4096},"ret":"0x7f00"}\n', "did you mean \"kind\": \"syscall\""),
    (b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\n', "not text"),
    (b'[1, 2, 3]\n', "expected a JSON object"),
    (b'{"op":"dma_buf_export","tid":1,"args":{}}\n', "return value"),
    (b'{"format":"dmaspec-trace","version":99}\n', "newer than this dmaspec reads"),
])
@pytest.mark.parametrize("engine", ["compiled", "interpreter"])
def test_bad_input_exits_2_with_file_and_line(tmp_path, data: bytes, expected: str, engine: str) -> None:
    path = write(tmp_path, "in.jsonl", data)
    r = run("check", "--engine", engine, path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert expected in r.stderr, r.stderr
    assert path in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_line_in_a_later_block_is_found_by_the_fast_path(tmp_path) -> None:
    body = b"".join(b'{"op":"marker","kind":"annotation","tid":1,"args":{"text":"%d"}}\n' % i for i in range(60000))
    path = write(tmp_path, "big.jsonl", body + b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":true}}\n')
    r = run("check", path)
    assert r.returncode == 2 and f"{path}:60001:" in r.stderr


def test_keep_going_checks_the_rest(tmp_path) -> None:
    data = GOOD.replace(b'{"op":"dma_buf_attach"', b'{"op":"dma_buf_atach"', 1) + \
        b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n'
    path = write(tmp_path, "kg.jsonl", data)
    r = run("check", "--keep-going", path)
    assert r.returncode == 2
    assert f"{path}:3: unknown op 'dma_buf_atach'" in r.stderr
    assert "REF-USE-AFTER-RELEASE" in r.stdout  # line 6 still checked


def test_stdin_gzip_and_directories(tmp_path) -> None:
    assert run("check", "-", stdin=GOOD).returncode == 0
    gz = tmp_path / "d" / "t.jsonl.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(DOUBLE_PUT))
    r = run("check", str(gz.parent))
    assert r.returncode == 1 and "REF-USE-AFTER-RELEASE" in r.stdout


def test_usage_errors_exit_2(tmp_path) -> None:
    assert run("check", "--profile", "banana", write(tmp_path, "ok.jsonl", GOOD)).returncode == 2
    assert run("check", str(tmp_path / "missing.jsonl")).returncode == 2
    assert run("check").returncode == 2
    assert run("frobnicate").returncode == 2


def test_gap_withholds_and_is_inconclusive(tmp_path) -> None:
    data = (b'{"op":"dma_buf_export","tid":1,"args":{},"ret":"b1"}\n'
            b'{"op":"lost_events","kind":"annotation","tid":1,"args":{"count":12}}\n'
            b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n'
            b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n')
    r = run("check", write(tmp_path, "gap.jsonl", data))
    assert r.returncode == 3, r.stdout
    assert "withheld" in r.stdout and "gap" in r.stdout


def test_unobserved_ops_narrow_rules(tmp_path) -> None:
    # get_dma_buf is inlined in real kernels: a recorder may not see it
    data = (b'{"op":"dma_buf_export","tid":1,"args":{},"ret":"b1"}\n'
            b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n'
            b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\n')
    path = write(tmp_path, "n.jsonl", data)
    assert run("check", path).returncode == 1
    r = run("check", "--unobserved", "get_dma_buf", path)
    # the rule is not decided by this trace: said, counted, and not a failure of the run
    assert r.returncode == 0 and "does not record get_dma_buf" in r.stdout
    assert "REF-USE-AFTER-RELEASE x1" in r.stdout and "cannot decide" in r.stdout


def test_profile_op_unavailable(tmp_path) -> None:
    data = (b'{"op":"dma_buf_export","tid":1,"args":{},"ret":"b1"}\n'
            b'{"op":"dma_buf_kmap","tid":1,"args":{"dmabuf":"b1","page_num":0},"ret":"v"}\n')
    r = run("check", "--no-leaks", write(tmp_path, "k.jsonl", data))
    assert r.returncode == 1 and "PROFILE-OP-UNAVAILABLE" in r.stdout


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_rules_listing(fmt: str) -> None:
    r = run("rules", "--profile", "6.2", "--format", fmt)
    assert r.returncode == 0
    assert "LOCK-RESV-REQUIRED" in r.stdout and "KMAP-OUTSIDE-BRACKET" not in r.stdout
    assert "drivers/dma-buf/dma-buf.c" in r.stdout
    r = run("rules", "--profile", "3.5", "--format", fmt)
    assert "KMAP-OUTSIDE-BRACKET" in r.stdout and "LOCK-RESV-REQUIRED" not in r.stdout


def test_spec_lint_is_clean() -> None:
    r = run("spec-lint")
    assert r.returncode == 0 and "consistent" in r.stdout


def test_main_job_of_the_readme_is_clean() -> None:
    r = run("check", os.path.join(ROOT, "traces", "ok"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_baseline_reports_only_new_findings(tmp_path) -> None:
    old = write(tmp_path, "old.jsonl", DOUBLE_PUT)
    base = str(tmp_path / "baseline.json")
    r = run("check", "--write-baseline", base, old)
    assert r.returncode == 0 and "wrote 1 finding(s)" in r.stderr
    r = run("check", "--baseline", base, old)
    assert r.returncode == 0 and "1 known finding(s) suppressed by the baseline" in r.stdout
    # the same bug with other pointers and tids is the same finding; a new one is reported
    rerun = DOUBLE_PUT.replace(b'"b1"', b'"0xffff888100000000"').replace(b'"tid":1', b'"tid":77')
    assert run("check", "--baseline", base, write(tmp_path, "old.jsonl", rerun)).returncode == 0
    new = rerun + b'{"op":"dma_buf_put","tid":77,"args":{"dmabuf":"0xffff888100000000"}}\n'
    r = run("check", "--baseline", base, write(tmp_path, "old.jsonl", new))
    assert r.returncode == 1 and r.stdout.count("REF-USE-AFTER-RELEASE:") == 1


def test_bad_baseline_is_an_input_error(tmp_path) -> None:
    base = write(tmp_path, "b.json", b'{"not": "a baseline"}')
    r = run("check", "--baseline", base, write(tmp_path, "ok.jsonl", GOOD))
    assert r.returncode == 2 and "not a baseline" in r.stderr


def test_output_writes_more_formats(tmp_path) -> None:
    out = tmp_path / "r.json"
    r = run("check", "--output", f"json={out}", write(tmp_path, "bad.jsonl", DOUBLE_PUT))
    assert r.returncode == 1 and "REF-USE-AFTER-RELEASE" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["traces"][0]["findings"][0]["fingerprint"]
    assert run("check", "--output", "yaml=x", write(tmp_path, "ok.jsonl", GOOD)).returncode == 2


def test_summary_table_by_rule(tmp_path) -> None:
    data = DOUBLE_PUT + b'{"op":"dma_buf_attach","tid":1,"args":{"dmabuf":"b2"},"ret":"a9"}\n'
    r = run("check", write(tmp_path, "t.jsonl", data))
    assert "findings by rule:" in r.stdout


@pytest.mark.parametrize("fmt", ["sarif", "html", "junit"])
def test_every_format_renders_from_the_cli(tmp_path, fmt: str) -> None:
    out = tmp_path / f"report.{fmt}"
    r = run("check", "--format", fmt, "--output", f"{fmt}={out}", write(tmp_path, "bad.jsonl", DOUBLE_PUT))
    assert r.returncode == 1
    assert "REF-USE-AFTER-RELEASE" in r.stdout and out.read_text() == r.stdout


def test_lock_order_analysis_from_the_cli() -> None:
    bad = os.path.join(ROOT, "traces", "lockorder", "bad", "abba-driver-mutexes.jsonl")
    assert run("check", bad).returncode == 0  # each event is fine on its own
    r = run("check", "--lock-order", bad)
    assert r.returncode == 1 and "LOCK-ORDER-CYCLE" in r.stdout
    assert "--lock-order" in r.stdout.split("reproduce:")[1].splitlines()[0]
    assert run("check", "--lock-order", os.path.join(ROOT, "traces", "lockorder", "ok")).returncode == 0
    assert run("check", "--lock-order", "-", stdin=GOOD).returncode == 2


def test_race_analysis_from_the_cli() -> None:
    bad = os.path.join(ROOT, "traces", "races", "bad", "two-threads-sync-write-overlap.jsonl")
    assert run("check", bad).returncode == 0
    r = run("check", "--races", bad)
    assert r.returncode == 1 and "RACE-UNORDERED-ACCESS" in r.stdout and "--races" in r.stdout
    assert run("check", "--races", os.path.join(ROOT, "traces", "races", "ok")).returncode == 0
