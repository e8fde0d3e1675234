from __future__ import annotations

import os
from collections.abc import Iterable

import orjson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRACES = os.path.join(ROOT, "traces")


def write_trace(path: str | os.PathLike[str], events: Iterable[dict[str, object]], profile: str = "6.8") -> int:
    """Write a canonical trace (a header, then one event a line); returns the number of events."""
    n = 0
    with open(path, "wb") as f:
        f.write(orjson.dumps({"format": "dmaspec-trace", "version": 1, "profile": profile}) + b"\n")
        for e in events:
            f.write(orjson.dumps(e) + b"\n")
            n += 1
    return n
