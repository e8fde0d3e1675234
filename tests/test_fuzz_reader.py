"""Fuzzing the canonical reader: whatever the bytes, the only failure is the documented InputError.

Both engines get the same input and must fail (or not) the same way.
"""

from __future__ import annotations

import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checker.api import check_stream
from checker.core import InputError

OPS = ["dma_buf_export", "dma_buf_put", "dma_buf_attach", "dma_buf_map_attachment", "ioctl", "mmap", "close",
       "lost_events", "marker", "dma_resv_lock", "nope"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8)


@st.composite
def almost_events(draw: st.DrawFn) -> bytes:
    obj: dict[str, object] = {"op": draw(st.sampled_from(OPS) | st.text(max_size=10)),
                              "tid": draw(st.integers(-5, 5) | json_values)}
    if draw(st.booleans()):
        obj["kind"] = draw(st.sampled_from(["call", "syscall", "callback", "annotation", "x"]))
    obj["args"] = draw(st.dictionaries(st.sampled_from(["dmabuf", "attach", "fd", "direction", "cmd", "flags",
                                                         "length", "obj", "text", "sg_table"]), json_values,
                                       max_size=4) | json_values)
    if draw(st.booleans()):
        obj["ret"] = draw(json_values)
    return json.dumps(obj).encode() if draw(st.integers(0, 9)) else draw(st.binary(max_size=40))


def _outcome(data: bytes, engine: str) -> tuple[str, object]:
    try:
        r = check_stream(io.BytesIO(data), "fuzz.jsonl", engine=engine, keep_going=True)  # type: ignore[arg-type]
    except InputError as e:
        return ("error", str(e))
    return ("ok", ([f.key() for f in r.findings], [str(e) for e in r.errors], dict(r.withheld)))


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(st.lists(almost_events(), min_size=0, max_size=12), st.sampled_from([b"\n", b"\r\n"]))
def test_no_input_raises_anything_but_input_error(lines: list[bytes], newline: bytes) -> None:
    data = newline.join(lines) + (newline if lines else b"")
    assert _outcome(data, "compiled") == _outcome(data, "interpreter")
