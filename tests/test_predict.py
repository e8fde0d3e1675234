"""Predictive analysis (dmaspec check --predict): other schedules of a trace's own threads."""

from __future__ import annotations

import io
import json
import os

import pytest

from checker.analysis.predict import analyze
from checker.api import check_stream
from checker.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BAD = os.path.join(ROOT, "traces", "predict", "bad")
OK = os.path.join(ROOT, "traces", "predict", "ok")


def test_a_put_racing_an_unmap_is_predicted_with_a_witness_that_replays_to_its_rule(tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = analyze(os.path.join(BAD, "put-races-unmap.jsonl"), out_dir=str(tmp_path))
    rules = {p.rule for p in r.predictions}
    assert "REF-RELEASE-WHILE-ATTACHED" in rules  # the worker's put before the importer's detach
    assert r.result is not None and all(f.rule == "PREDICT-REORDER" for f in r.result.findings)
    for p in r.predictions:
        # the witness is the trace's events in another order, and the executor gives the rule on it
        check = check_stream(io.BytesIO(p.witness), "w.jsonl")
        assert p.rule in {f.rule for f in check.findings}
        assert os.path.exists(p.path)
        assert json.loads(p.witness.splitlines()[0])["source"]["window"] == list(p.window)
    # the recording itself breaks nothing
    with open(os.path.join(BAD, "put-races-unmap.jsonl"), "rb") as f:
        assert check_stream(f, "t").findings == []


@pytest.mark.parametrize("name", sorted(os.listdir(OK)))
def test_orders_the_trace_rules_out_are_not_predicted(name: str) -> None:
    r = analyze(os.path.join(OK, name))
    assert r.predictions == [] and r.windows >= 1


def test_a_close_before_dma_buf_get_is_ruled_out_by_the_recorded_return() -> None:
    # dma_buf_get(fd) returned the buffer, so the close of that fd cannot have come first (it would be -EBADF)
    r = analyze(os.path.join(OK, "importer-holds-its-own-reference.jsonl"))
    assert not any(p.rule == "REF-USE-AFTER-RELEASE" for p in r.predictions)


def test_the_window_bounds_what_is_reordered() -> None:
    # two events at a time: only the adjacent detach (line 6) and put (line 7) can swap
    r = analyze(os.path.join(BAD, "put-races-unmap.jsonl"), window=2)
    assert [(p.rule, p.line, p.window) for p in r.predictions] == [("REF-RELEASE-WHILE-ATTACHED", 7, (6, 7))]


def test_cli_predict(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = os.path.join(BAD, "put-races-unmap.jsonl")
    assert main(["check", path]) == 0
    capsys.readouterr()
    assert main(["check", "--predict", "--predict-out", str(tmp_path), path]) == 1
    out = capsys.readouterr().out
    assert "PREDICT-REORDER" in out and "predicted: REF-RELEASE-WHILE-ATTACHED" in out and "witness:" in out
    witnesses = sorted(os.listdir(tmp_path))
    assert witnesses and all(w.startswith("put-races-unmap.jsonl.predict.") for w in witnesses)
    assert main(["check", "--format", "json", "--predict", path]) == 1
    finding = json.loads(capsys.readouterr().out)["traces"][0]["findings"][0]
    assert finding["rule"] == "PREDICT-REORDER" and finding["detail"].startswith("predicted: ")
    assert main(["check", "--predict", "--predict-window", "1", path]) == 2
    assert main(["check", "--predict", "-"]) == 2
