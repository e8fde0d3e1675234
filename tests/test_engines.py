"""The two engines against each other, and the generated code against its generator."""

from __future__ import annotations

import io

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checker.api import check_stream
from checker.core import TOMBSTONES_PER_TABLE
from checker.engines import compiler
from checker.trace import GROUPS, PARAMS
from spec import SPEC
from spec import kernel as K
from spec.lang import EventKind, ParamType, Returns

HANDLES = ["b1", "b2", "a1", "a2", "s1", "s2", "v1", "f1", "0xffffffffffffffea"]


@pytest.mark.parametrize("profile", SPEC.profiles, ids=lambda p: p.name)
def test_regenerating_the_compiled_executor_is_a_no_op(profile) -> None:
    with open(compiler.module_path(profile)) as f:
        assert f.read() == compiler.generate(profile), "run: python -m checker.engines.compiler"


def test_regenerating_the_event_structs_is_a_no_op() -> None:
    with open(compiler.EVENTS_PATH) as f:
        assert f.read() == compiler.generate_events(), "run: python -m checker.engines.compiler"


def test_checked_in_modules_are_the_ones_loaded() -> None:
    from checker.engines.runtime import events_module, load_module

    assert load_module(SPEC.profiles[-1]).__name__ == "checker.engines.generated.p_latest"
    assert events_module().__name__ == "checker.engines.generated.events"


def _value(ptype: ParamType) -> st.SearchStrategy[object]:
    return {
        ParamType.HANDLE: st.sampled_from(HANDLES),
        ParamType.INT: st.integers(-30, 10) | st.sampled_from([4096, 8192, 524288]),
        ParamType.STR: st.sampled_from(["gpu", "vivid", "F_SETFD"]),
        ParamType.DIRECTION: st.sampled_from([0, 1, 2, "DMA_TO_DEVICE", "DMA_FROM_DEVICE"]),
        ParamType.IOCTL: st.sampled_from(sorted(K.IOCTLS) + [0x1234]),
        ParamType.WHENCE: st.sampled_from(["SEEK_SET", "SEEK_END", "SEEK_CUR", 0, 1, 2, 7]),
        ParamType.ACCESS: st.sampled_from(["read", "write", "rw", 1, 2, 3, 4]),  # numbers too, as the spec reads
        ParamType.FCNTL: st.sampled_from(["F_SETFD", "F_DUPFD", "F_DUPFD_CLOEXEC", "F_GETFL"]),
    }[ptype]


OPS = sorted(GROUPS, key=lambda k: (k[0].value, k[1]))


@st.composite
def events(draw: st.DrawFn) -> dict[str, object]:
    kind, op = draw(st.sampled_from(OPS))
    args = {}
    for name, (ptype, required) in PARAMS[(kind, op)].items():
        if required or draw(st.booleans()):
            args[name] = draw(_value(ptype))
    returns = {a.returns for a in GROUPS[(kind, op)]}
    ev: dict[str, object] = {"op": op, "kind": kind.value, "tid": draw(st.sampled_from([1, 2, 3])),
                             "pid": draw(st.sampled_from([1, 2, 10])), "args": args}
    if Returns.HANDLE in returns:
        ev["ret"] = draw(st.sampled_from(HANDLES) | st.sampled_from([-4, -12, -22]))
    elif returns & {Returns.NUMBER, Returns.INT}:
        ev["ret"] = draw(st.integers(-30, 12) | st.sampled_from([4096, 8192, -25, -4]))
    if kind is EventKind.CALL and draw(st.integers(0, 9)) == 0:
        ev["ctx"] = "atomic"
    return ev


# named profiles use the checked-in generated modules; other versions are generated on the fly
PROFILE_NAMES = [p.name for p in SPEC.profiles] + ["4.19", "5.10", "6.1", "6.14"]


def _run(data: bytes, engine: str, profile: str, tombstones: int = TOMBSTONES_PER_TABLE):
    try:
        return check_stream(io.BytesIO(data), "gen.jsonl", engine=engine, profile=profile, keep_going=True,  # type: ignore[arg-type]
                            tombstones=tombstones)
    except Exception as e:  # InputError on the whole file, compared below
        return e


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(events(), min_size=1, max_size=40), st.sampled_from(PROFILE_NAMES))
def test_interpreter_and_compiled_agree_on_random_traces(evs: list[dict[str, object]], profile: str) -> None:
    _agree(b"".join(orjson.dumps(e) + b"\n" for e in evs), profile, TOMBSTONES_PER_TABLE)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(events(), min_size=1, max_size=60), st.sampled_from(PROFILE_NAMES))
def test_engines_agree_on_what_they_forget(evs: list[dict[str, object]], profile: str) -> None:
    """With room for two resting rows a table, both engines forget the same rows at the same events."""
    _agree(b"".join(orjson.dumps(e) + b"\n" for e in evs), profile, 2)


def _agree(data: bytes, profile: str, tombstones: int) -> None:
    a, b = _run(data, "interpreter", profile, tombstones), _run(data, "compiled", profile, tombstones)
    if isinstance(a, Exception) or isinstance(b, Exception):
        assert str(a) == str(b)
        return
    assert [f.key() for f in a.findings] == [f.key() for f in b.findings]
    assert [[(o.table, o.key, o.fields, o.born, o.last, o.uncertain) for o in f.objects] for f in a.findings] == \
        [[(o.table, o.key, o.fields, o.born, o.last, o.uncertain) for o in f.objects] for f in b.findings]
    assert (a.withheld, a.ignored, a.gaps, a.reused, a.events) == (b.withheld, b.ignored, b.gaps, b.reused, b.events)
    assert [str(e) for e in a.errors] == [str(e) for e in b.errors]


def test_tombstones_are_bounded_and_forgotten_handles_are_unknown_not_released() -> None:
    n = TOMBSTONES_PER_TABLE + 10
    lines = []
    for i in range(n):
        lines.append(b'{"op":"dma_buf_export","tid":1,"args":{},"ret":"b%d"}' % i)
        lines.append(b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b%d"}}' % i)
    lines.append(b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b0"}}')  # forgotten: unknown, withheld
    lines.append(b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b%d"}}' % (n - 1))  # remembered: reported
    data = b"\n".join(lines) + b"\n"
    for engine in ("compiled", "interpreter"):
        r = check_stream(io.BytesIO(data), "t", engine=engine)  # type: ignore[arg-type]
        assert [(f.rule, f.line) for f in r.findings] == [("REF-USE-AFTER-RELEASE", 2 * n + 2)]


@pytest.mark.parametrize("engine", ["compiled", "interpreter"])
def test_a_sync_end_whose_start_a_gap_may_have_hidden_is_withheld_not_reported(engine: str) -> None:
    import io
    import json

    from checker.api import check_stream

    header = {"format": "dmaspec-trace", "version": 1, "profile": "6.12"}
    made = [{"op": "dma_buf_export", "tid": 1, "args": {"exp_name": "x", "size": 4096}, "ret": "0xb1"},
            {"op": "dma_buf_fd", "tid": 1, "args": {"dmabuf": "0xb1", "flags": 524288}, "ret": 5}]
    gap = [{"op": "lost_events", "kind": "annotation", "tid": 0, "args": {"count": 10, "cpu": 0}}]
    end = [{"op": "ioctl", "kind": "syscall", "tid": 1, "args": {"fd": 5, "cmd": "DMA_BUF_IOCTL_SYNC", "flags": 5},
            "ret": 0}]

    def run(events: list[dict[str, object]]) -> tuple[list[str], dict[str, int]]:
        data = "\n".join(json.dumps(e) for e in [header, *events]).encode()
        r = check_stream(io.BytesIO(data), "t.jsonl", engine=engine, check_leaks=False)  # type: ignore[arg-type]
        return [f.rule for f in r.findings], dict(r.withheld)

    assert run(made + gap + end) == ([], {"SYNC-END-WITHOUT-START": 1})  # the START may be in the gap
    assert run(gap + made + end) == (["SYNC-END-WITHOUT-START"], {})  # the buffer is younger than the gap
