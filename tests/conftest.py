from __future__ import annotations

import os
from collections.abc import Iterable

import orjson
import pytest

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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--skip-lab", action="store_true",
                     help="skip the tests that boot a kernel under qemu (marked lab); CI runs them")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--skip-lab"):
        return
    skip = pytest.mark.skip(reason="--skip-lab: this test boots a kernel under qemu")
    for item in items:
        if item.get_closest_marker("lab") is not None:
            item.add_marker(skip)
