"""Predictive analysis (dmaspec check --predict): other schedules of a trace's own threads."""

from __future__ import annotations

import io
import json
import os
import random

import pytest

from checker.analysis.predict import analyze
from checker.api import check_stream
from checker.cli import main
from tests.conftest import write_trace

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


@pytest.mark.parametrize("engine", ["explicit", "z3"])
def test_close_racing_dma_buf_fd_names_the_recorded_events_of_its_schedule(engine: str) -> None:
    """The export ioctl's late get_dma_buf (line 4) after another thread's close of the new fd (line 5): the
    finding's objects name the recorded lines that made them, the close included, not the witness's lines."""
    r = analyze(os.path.join(BAD, "close-races-dma-buf-fd.jsonl"), engine=engine)
    assert [(p.rule, p.line) for p in r.predictions] == [("REF-USE-AFTER-RELEASE", 4)]
    assert r.result is not None
    [finding] = r.result.findings
    [buffer] = finding.objects
    assert (buffer.table, buffer.born, buffer.last) == ("buffer", 2, 5)
    assert "run in the order 2, 3, 5, 4" in finding.detail


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


# -- the z3 engine ------------------------------------------------------------------------------------------------

ENGINES = ["explicit", "z3"]
CORPUS = [os.path.join(BAD, n) for n in sorted(os.listdir(BAD))] + [os.path.join(OK, n) for n in sorted(os.listdir(OK))]


def racy_trace(seed: int, buffers: int = 2) -> list[dict[str, object]]:
    """A small recording of threads sharing buffers, in a random order that respects what the program does.

    For each buffer, an exporter thread exports it and makes an fd; an importer thread (of the same process, which
    may take a reference of its own with dma_buf_get, or of another one, which receives the fd) attaches, maybe
    maps and unmaps, maybe takes the reservation lock, detaches and drops its reference; a fence may order the
    exporter's wait after the importer's signal; the exporter closes its fd once the importer holds its reference
    (a synchronisation the trace does not record) and drops its own reference.  Threads are interleaved at random
    (a call runs after the calls that make what it uses), so some recordings break rules themselves and many can be
    reordered into ones that do.
    """
    rng = random.Random(seed)
    pid_of = {11: 1, 12: 1, 13: 1, 21: 2}
    fds = {1: 5, 2: 5}
    threads: dict[int, list[tuple[dict[str, object], set[object], set[object]]]] = {}

    def add(tid: int, op: str, args: dict[str, object], ret: object = None, needs: set[object] | None = None,
            makes: set[object] | None = None) -> None:
        event: dict[str, object] = {"op": op, "tid": tid, "pid": pid_of[tid], "args": args}
        if ret is not None:
            event["ret"] = ret
        if op == "close":
            event["kind"] = "syscall"
        if op == "fd_received":
            event["kind"] = "annotation"
        threads.setdefault(tid, []).append((event, needs or set(), makes or set()))

    for n in range(buffers):
        b, att, sg, fence = f"0xb{n}", f"0xa{n}", f"0xs{n}", f"0xf{n}"
        exp, imp = rng.sample(sorted(pid_of), 2)
        fd = fds[pid_of[exp]]
        fds[pid_of[exp]] += 1
        add(exp, "dma_buf_export", {"exp_name": "gpu", "size": 4096}, b, makes={b})
        add(exp, "dma_buf_fd", {"dmabuf": b, "flags": 524288}, fd, needs={b}, makes={("fd", b)})
        own = rng.random() < 0.6  # the importer takes a reference of its own
        if pid_of[exp] != pid_of[imp]:
            theirs = fds[pid_of[imp]]
            fds[pid_of[imp]] += 1
            add(imp, "fd_received", {"fd": theirs, "dmabuf": b}, needs={("fd", b)}, makes={("got", b)})
            own = True
        elif own:
            add(imp, "dma_buf_get", {"fd": fd}, b, needs={("fd", b)}, makes={("got", b)})
        add(imp, "dma_buf_attach", {"dmabuf": b, "dev": "cam"}, att, needs={b})
        if rng.random() < 0.7:
            add(imp, "dma_buf_map_attachment_unlocked", {"attach": att, "direction": "DMA_FROM_DEVICE"}, sg)
            add(imp, "dma_buf_unmap_attachment_unlocked", {"attach": att, "sg_table": sg,
                                                           "direction": "DMA_FROM_DEVICE"})
        fenced = rng.random() < 0.5
        if fenced:
            add(exp, "dma_fence_init", {"fence": fence, "context": 10 + n, "seqno": 1}, makes={fence})
        if rng.random() < 0.4:
            add(imp, "dma_resv_lock", {"obj": b}, 0)
            add(imp, "dma_resv_unlock", {"obj": b})
        add(imp, "dma_buf_detach", {"dmabuf": b, "attach": att})
        if fenced:
            add(imp, "dma_fence_signal", {"fence": fence}, 0, needs={fence}, makes={("signal", fence)})
            add(exp, "dma_fence_wait", {"fence": fence}, 0, needs={("signal", fence)})
        if own and pid_of[exp] == pid_of[imp]:
            add(imp, "dma_buf_put", {"dmabuf": b})
        elif own:
            add(imp, "close", {"fd": theirs}, 0)
        add(exp, "close", {"fd": fd}, 0, needs={("got", b)} if own else set())
        add(exp, "dma_buf_put", {"dmabuf": b})
    made: set[object] = set()
    at = dict.fromkeys(threads, 0)
    out = []
    while any(at[t] < len(threads[t]) for t in threads):
        ready = [t for t in sorted(threads) if at[t] < len(threads[t]) and threads[t][at[t]][1] <= made]
        if not ready:  # what it waits for comes later in its own thread: let it go
            t = min(t for t in threads if at[t] < len(threads[t]))
            threads[t][at[t]][1].clear()
            continue
        t = rng.choice(ready)
        event, _, makes = threads[t][at[t]]
        at[t] += 1
        made |= makes
        out.append(event)
    return out


def _agree(path: str, window: int) -> int:
    """Both engines find the same rules in the same windows, and every witness replays to its rule."""
    runs = {engine: analyze(path, window=window, engine=engine) for engine in ENGINES}
    for r in runs.values():
        assert not r.inconclusive and not r.fallbacks, (path, r.inconclusive, r.fallbacks)
        for p in r.predictions:
            check = check_stream(io.BytesIO(p.witness), "w.jsonl", check_leaks=False)
            assert p.rule in {f.rule for f in check.findings}, (path, p.rule, p.window)
    assert runs["explicit"].found == runs["z3"].found, (path, window)
    assert runs["explicit"].windows == runs["z3"].windows
    return len(runs["z3"].found)


@pytest.mark.parametrize("path", CORPUS, ids=os.path.basename)
@pytest.mark.parametrize("window", [2, 4, 12])
def test_both_engines_predict_the_same_on_the_corpus(path: str, window: int) -> None:
    _agree(path, window)


def test_both_engines_predict_the_same_on_generated_recordings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    found = 0
    for seed, buffers, window in [*((s, 2, 8) for s in range(10)), *((s, 3, 12) for s in range(100, 106))]:
        path = str(tmp_path / f"racy-{seed}.jsonl")
        write_trace(path, racy_trace(seed, buffers), profile="latest")
        found += _agree(path, window)
    assert found >= 20  # the generator makes races: the comparison is not between two empty sets


@pytest.mark.parametrize("engine", ENGINES)
def test_the_engines_find_the_issues_lifecycle_races(engine: str) -> None:
    r = analyze(os.path.join(BAD, "put-races-unmap.jsonl"), engine=engine)
    assert {p.rule for p in r.predictions} == {"REF-RELEASE-WHILE-ATTACHED", "REF-USE-AFTER-RELEASE"}
    r = analyze(os.path.join(BAD, "detach-races-unmap.jsonl"), engine=engine)
    assert {(p.rule, p.line) for p in r.predictions} == {("ATT-USE-AFTER-DETACH", 4), ("ATT-DETACH-WHILE-MAPPED", 6)}


def test_a_fence_wait_runs_after_the_fence_is_initialised() -> None:
    # the teardown thread's wait names the fence thread 100 initialises: it cannot run before that (nor, so, its
    # detach before the worker's signal), which dma_fence_init's argument, not its return, says
    r = analyze(os.path.join(OK, "detach-after-fence.jsonl"), engine="z3")
    assert r.predictions == [] and r.found == set()
    from checker.analysis import predict
    from checker.analysis.common import read_events
    from checker.trace import Event

    events = [e for e in read_events(os.path.join(OK, "detach-after-fence.jsonl"), None) if isinstance(e, Event)]
    cfg, _ = predict._config("window", "latest", events)
    teardown = next(a for a in cfg.actors if a.tid == 300)
    assert cfg.name == "window" and teardown.program[0].after == (("t100", 2),)  # the wait, after the init


class _GivesUp:
    """A solver that never decides."""

    def __init__(self) -> None:
        import z3

        self.z3 = z3

    def set(self, *args: object) -> None:
        pass

    def add(self, *args: object) -> None:
        pass

    def check(self, *args: object) -> object:
        return self.z3.unknown

    def reason_unknown(self) -> str:
        return "timeout"


def test_a_window_the_solver_gives_up_on_is_searched_by_the_explicit_engine(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from checker.engines import bmc

    monkeypatch.setattr(bmc, "_SOLVER", _GivesUp)
    r = analyze(os.path.join(BAD, "put-races-unmap.jsonl"), engine="z3")
    assert {p.rule for p in r.predictions} == {"REF-RELEASE-WHILE-ATTACHED", "REF-USE-AFTER-RELEASE"}
    assert r.rescued == [(2, 7)] and r.inconclusive == [] and r.states > 0
    assert r.result is not None and not r.result.inconclusive
    assert "--predict: 1 window(s) the solver gave up on, decided by the explicit engine (lines 2-7)" in \
        r.result.conversion_notes


def test_a_window_neither_engine_decides_is_inconclusive_never_a_pass(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from checker.analysis import predict
    from checker.engines import bmc

    monkeypatch.setattr(bmc, "_SOLVER", _GivesUp)
    monkeypatch.setattr(predict, "RESCUE_STATES", 2)
    path = os.path.join(BAD, "put-races-unmap.jsonl")
    r = analyze(path, engine="z3")
    assert r.predictions == [] and r.rescued == []
    assert r.inconclusive == [((2, 7), "the solver gave up (timeout), and the explicit engine stopped at 2 states")]
    assert r.result is not None and r.result.inconclusive and r.result.withheld["PREDICT-REORDER"] == 1
    assert "--predict: 1 window(s) inconclusive (lines 2-7: the solver gave up (timeout), and the explicit engine " \
           "stopped at 2 states): an order there may break a rule" in r.result.conversion_notes
    assert main(["check", "--predict", "--predict-engine", "z3", path]) == 3
    out = capsys.readouterr().out
    assert "inconclusive" in out and "the solver gave up" in out


def test_a_window_z3_cannot_encode_is_searched_by_the_explicit_engine(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from checker.engines import bmc

    def cannot(*args: object, **kwargs: object) -> None:
        raise bmc.EncodingError("a lost-events marker (Bump) cannot be encoded")

    monkeypatch.setattr(bmc, "search", cannot)
    r = analyze(os.path.join(BAD, "put-races-unmap.jsonl"), engine="z3")
    assert {p.rule for p in r.predictions} == {"REF-RELEASE-WHILE-ATTACHED", "REF-USE-AFTER-RELEASE"}
    assert r.fallbacks == [((2, 7), "a lost-events marker (Bump) cannot be encoded")] and r.states > 0
    assert r.result is not None and not r.result.inconclusive
    assert any("searched by the explicit engine, z3 cannot encode them" in n for n in r.result.conversion_notes)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_window_across_lost_events_is_not_searched(engine: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with open(os.path.join(BAD, "put-races-unmap.jsonl")) as f:
        events = [json.loads(line) for line in f.readlines()[1:]]
    events.insert(3, {"op": "lost_events", "kind": "annotation", "tid": 300, "args": {"count": 3}})
    path = str(tmp_path / "gap.jsonl")
    write_trace(path, events, profile="latest")
    r = analyze(path, engine=engine)
    assert r.predictions == [] and r.gaps == [(2, 8)] and r.windows == 0
    assert r.result is not None and "lost-events marker (lines 2-8)" in r.result.conversion_notes[0]


@pytest.mark.parametrize("engine", ENGINES)
def test_threads_sharing_an_object_from_before_the_trace_make_the_window_inconclusive(engine: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # the model takes the buffer as known once the first put adopted it; the checker does not: no prediction, and
    # the window is not passed either
    path = str(tmp_path / "adopted.jsonl")
    write_trace(path, [{"op": "dma_buf_put", "tid": 1, "args": {"dmabuf": "0xb0"}},
                       {"op": "dma_buf_put", "tid": 2, "args": {"dmabuf": "0xb0"}}], profile="latest")
    r = analyze(path, engine=engine)
    assert r.predictions == [] and [span for span, _ in r.inconclusive] == [(2, 3)]
    assert r.result is not None and r.result.inconclusive


def test_threads_that_share_no_object_are_searched_apart() -> None:
    from checker.engines import bmc
    from spec.lang import Actor, Config, Step, step

    put = Step("dma_buf_put", (("dmabuf", "b1"),), after=(("exporter", 0),))
    cfg = Config("race", "latest", (
        Actor("exporter", 1, 1, (step("dma_buf_export", "b1", size=4096), step("get_dma_buf", dmabuf="b1"),
                                 step("dma_buf_put", dmabuf="b1"))),
        Actor("user", 2, 1, (put,)),
        Actor("other", 3, 3, (step("dma_buf_export", "b2", size=4096), step("get_dma_buf", dmabuf="b2"))),
        Actor("again", 4, 3, (step("dma_buf_export", "b3", size=4096),))), "")
    rules = ["REF-USE-AFTER-RELEASE", "REF-PUT-UNOWNED"]
    apart = bmc.search(cfg, rules)
    assert apart.notes[0] == "independent groups of actors: exporter user | other | again"
    together = bmc.search(cfg, rules, independent=False)
    assert together.notes[0] == "independent groups of actors: exporter user other again"
    assert [c.rule for c in apart.counterexamples] == [c.rule for c in together.counterexamples] == [
        "REF-USE-AFTER-RELEASE"]
    assert apart.verdict == together.verdict == "violated"
    assert bmc.search(cfg, ["REF-PUT-UNOWNED"], reorder_only=True).verdict == "holds"
    # the user's put after the exporter's: every step that shares the buffer is ordered, so every schedule is the
    # program's own order up to commuting steps, and nothing is asked of the solver
    ordered = Config("ordered", "latest", (cfg.actors[0], Actor("user", 2, 1, (
        Step("dma_buf_put", (("dmabuf", "b1"),), after=(("exporter", 2),)),)), cfg.actors[2]), "")
    r = bmc.search(ordered, rules, reorder_only=True)
    assert r.verdict == "holds" and "solver calls: 0" in r.notes
    assert bmc.search(ordered, rules).verdict == "holds"  # which a full search confirms


def test_cli_predict_engines(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = os.path.join(BAD, "put-races-unmap.jsonl")
    outs = {}
    for engine in ENGINES:
        assert main(["check", "--format", "json", "--predict", "--predict-engine", engine, path]) == 1
        outs[engine] = [(f["rule"], f["line"], f["detail"].split(" if ")[0])  # the orders may differ: z3's
                        for f in json.loads(capsys.readouterr().out)["traces"][0]["findings"]]  # are not the shortest
    assert outs["explicit"] == outs["z3"] and outs["z3"]
    assert main(["check", "--predict", "--predict-engine", "z3", "--predict-timeout", "5",
                 "--predict-out", str(tmp_path), path]) == 1
    capsys.readouterr()
    for name in os.listdir(tmp_path):
        with open(tmp_path / name, "rb") as f:
            assert json.loads(f.readline())["source"]["engine"] == "z3"
    assert main(["check", "--predict", "--predict-timeout", "0", path]) == 2
    with pytest.raises(SystemExit) as usage:
        main(["check", "--predict", "--predict-engine", "spin", path])
    assert usage.value.code == 2
