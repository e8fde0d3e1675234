"""Conformance: the spec's predicted return values against a kernel's, and guarantees recast as spec defects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from checker.analysis import conformance
from spec import SPEC
from spec.lang import Kind

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "traces" / "conformance"
REAL = ROOT / "traces" / "real"  # a copy of ../shared/real-traces
DISAGREE = sorted((CORPUS / "disagree").glob("*.jsonl"))


def _dmaspec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "checker", *args], capture_output=True, text=True, cwd=ROOT,
                          check=False)


def test_a_kernel_that_agrees_gives_no_finding_and_every_case_is_counted() -> None:
    c = conformance.analyze(str(CORPUS / "agrees.jsonl"))
    assert c.result.findings == []
    assert c.disagreed == 0
    assert {(r.action.split("[")[0], r.label): r.agreed for r in c.rows} == {
        ("syscall:llseek", "SEEK_END with offset 0: the size"): 1,
        ("syscall:llseek", "SEEK_SET with offset 0: 0"): 1,
        ("syscall:llseek", "whence other than SEEK_SET or SEEK_END"): 1,
        ("syscall:llseek", "a non-zero offset"): 1,
        ("syscall:ioctl", "SYNC flags outside DMA_BUF_SYNC_VALID_FLAGS_MASK or without READ/WRITE"): 2,
        ("syscall:ioctl", "sync-file flags other than READ/WRITE, or neither"): 1,
        ("syscall:ioctl", "a command dma_buf_ioctl does not know"): 1,
        ("syscall:mmap", "a mapping past the end of the dma-buf"): 2,
        ("syscall:ioctl", "the fd was closed"): 1,
        ("syscall:close", "the fd was closed"): 1,
    }


@pytest.mark.parametrize("path", DISAGREE, ids=[p.stem for p in DISAGREE])
def test_each_disagreement_is_one_spec_defect_at_the_call(path: Path) -> None:
    c = conformance.analyze(str(path))
    last = len(path.read_text().splitlines())
    assert [(f.rule, f.line) for f in c.result.findings] == [("SPEC-KERNEL-DISAGREES", last)]
    assert c.disagreed == 1
    (row,) = [r for r in c.rows if r.disagreed]
    mismatch = row.mismatches[0]
    recorded = json.loads(path.read_text().splitlines()[-1])
    assert mismatch.line == last and mismatch.returned == recorded["ret"]
    assert "the spec predicts" in c.result.findings[0].detail


def test_the_cli_recasts_a_broken_guarantee_as_a_spec_defect() -> None:
    trace = str(CORPUS / "disagree" / "sync-invalid-flags-accepted.jsonl")
    plain = _dmaspec("check", "--format", "json", trace)
    assert plain.returncode == 1
    assert [f["rule"] for f in json.loads(plain.stdout)["traces"][0]["findings"]] == ["CORE-SYNC-FLAGS"]
    recast = _dmaspec("check", "--format", "json", "--conformance", trace)
    assert recast.returncode == 1
    found = json.loads(recast.stdout)["traces"][0]["findings"]
    assert [f["rule"] for f in found] == ["SPEC-KERNEL-DISAGREES"]
    assert "CORE-SYNC-FLAGS" in found[0]["detail"] and "-EINVAL (-22)" in found[0]["detail"]


def test_a_guarantee_with_no_predicted_outcome_is_still_a_spec_defect(tmp_path: Path) -> None:
    # The exporter's vmap callback runs on a second vmap: CORE-VMAP-ONCE, which no outcome predicts.
    trace = ROOT / "traces" / "bad" / "CORE-VMAP-ONCE"
    path = next(trace.glob("*.jsonl"))
    c = conformance.analyze(str(path))
    assert [f.rule for f in c.result.findings] == ["SPEC-KERNEL-DISAGREES"]
    assert "CORE-VMAP-ONCE" in c.result.findings[0].detail


def test_the_cli_says_how_many_values_were_compared() -> None:
    out = _dmaspec("check", "--conformance", str(CORPUS / "agrees.jsonl"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "conformance: 12 return value(s) the spec predicts, in 10 case(s); the kernel agreed with every one" \
        in out.stdout


@pytest.mark.parametrize("name", ["trace-6.12-function.txt", "trace-6.1-function.txt"])
def test_the_real_kernel_traces_agree_with_the_spec(name: str) -> None:
    path = REAL / name
    c = conformance.analyze(str(path), fmt="ftrace")
    assert c.result.findings == [], [f.detail for f in c.result.findings]


def test_outcomes_name_guarantee_rules_only() -> None:
    guarantees = {r.id for r in SPEC.rules if r.kind is Kind.GUARANTEE}
    named = {o.rule for a in SPEC.actions for o in a.outcomes if o.rule}
    assert named and named <= guarantees
    assert {"CORE-SYNC-FLAGS", "CORE-SYNC-FILE-FLAGS", "CORE-IOCTL-UNKNOWN", "CORE-LLSEEK", "CORE-MMAP-TOO-LARGE",
            "CORE-VMAP-SAME-ADDRESS"} <= named


def test_the_agreement_table_shows_every_case_and_failed_runs() -> None:
    agreed = conformance.analyze(str(CORPUS / "agrees.jsonl"))
    wrong = conformance.analyze(str(CORPUS / "disagree" / "llseek-end-wrong-size.jsonl"))
    text = conformance.table({"good": agreed, "bad": wrong, "broken": None})
    lines = text.splitlines()
    assert lines[0].split() == ["case", "rule", "good", "bad", "broken"]
    seek_end = next(line for line in lines if line.startswith("syscall:llseek: SEEK_END with offset 0"))
    assert seek_end.split()[-6:] == ["CORE-LLSEEK", "1/1", "0/1", "DISAGREES", "run", "failed"]
    never = next(line for line in lines if line.startswith("syscall:lseek: SEEK_END with offset 0"))
    assert never.split()[-4:] == ["-", "-", "run", "failed"]
    assert all("run failed" in line for line in lines[1:])
    cases = conformance.all_outcomes("6.12")
    assert len(lines) == 1 + len(cases)
    markdown = conformance.table({"good": agreed}, "markdown")
    assert markdown.startswith("| case | rule | good |\n|---|---|---|\n")


def test_the_explorers_make_the_kernel_answer_as_the_spec_predicts() -> None:
    from checker.engines.model import Model
    from spec.lang import Actor, Config, EventKind, step

    syscall = EventKind.SYSCALL
    prog = (step("dma_buf_export", "0xb1", exp_name="x", size=8192),
            step("dma_buf_fd", 5, dmabuf="0xb1", flags=524288),
            step("ioctl", 0, kind=syscall, fd=5, cmd="DMA_BUF_IOCTL_SYNC", flags=8),
            step("llseek", 0, kind=syscall, fd=5, offset=0, whence="SEEK_END"))
    model = Model(Config("conformance", "6.12", (Actor("user", 1, 1, prog),), "outcomes decide the returns"))
    state = model.initial()
    rets = []
    while not model.finished(state):
        (move,) = list(model.moves(state))
        rets.append(move.events[-1].get("ret"))
        state = move.target
    assert rets == ["0xb1", 5, -22, 8192]

