"""What the whole-trace analyses share: reading a trace as validated events, small value helpers, and the
bounded cycle search of the lockdep-style graphs."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import networkx as nx  # type: ignore[import-untyped]

from checker.core import InputError
from checker.readers import convert, detect
from checker.trace import Event, Header, is_header, iter_lines, load_line, open_binary, parse_header, validate
from spec.lang import Value


def read_events(path: str, fmt: str | None = None) -> Iterator[Header | Event]:
    """The trace at ``path`` (``-`` for stdin; gzip is recognised): its header first if it has one, then its
    events, each validated as the checker does (``InputError`` on bad input), streamed.  A recording in another
    format (``checker.readers``) is read through its conversion, with its own line numbers."""
    try:
        stream = open_binary(path)
    except OSError as e:
        raise InputError(path, 0, f"cannot read: {e.strerror}") from None
    with stream:
        head = stream.peek(1 << 16) if hasattr(stream, "peek") else b""
        if fmt not in (None, "dmaspec") or (fmt is None and detect(head, path) is not None):
            conversion = convert(stream, path, fmt)
            yield conversion.header
            for n, obj in conversion.events:
                yield validate(obj, path, n)
            return
        first = True
        for n, raw in iter_lines(stream):
            obj = load_line(raw, path, n)
            if is_header(obj):
                if not first:
                    raise InputError(path, n, "a header is only allowed on the first line")
                yield parse_header(obj, path)
            else:
                yield validate(obj, path, n)
            first = False


def int_value(v: Value) -> int | None:
    """An integer argument or return value (decimal or 0x-prefixed strings too), else None."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError:
            return None
    return None


def name_of(v: Value) -> str:
    """A value as the string that names an object."""
    return v if isinstance(v, str) else str(v)


def short_cycles(graph: Any, bound: int) -> Iterator[list[Any]]:
    """The simple cycles of the networkx ``graph`` of at most ``bound`` nodes (networkx 3.0 has no length_bound)."""
    try:
        cycles: Iterator[list[Any]] = nx.simple_cycles(graph, length_bound=bound)
    except TypeError:
        cycles = (c for c in nx.simple_cycles(graph) if len(c) <= bound)
    return cycles


def distinct_cycles(sub: Any, edges: list[tuple[Any, Any]], seen: set[tuple[Any, ...]], small: int,
                    bound: int) -> Iterator[list[Any]]:
    """The cycles of the strongly connected ``sub`` that lockdep-style analyses report, each once across calls
    sharing ``seen``: for each edge u -> v of ``edges`` (in order), the shortest way back v ->* u; and, when
    ``sub`` has at most ``small`` nodes, every simple cycle of at most ``bound`` nodes.  A cycle comes as found
    (starting where its search started); ``seen`` keeps its rotation that starts at its least node.

    >>> g = nx.DiGraph([("a", "b"), ("b", "a"), ("b", "c"), ("c", "a")])
    >>> seen: set[tuple[Any, ...]] = set()
    >>> sorted(sorted(c) for c in distinct_cycles(g, [("a", "b"), ("b", "a")], seen, small=16, bound=8))
    [['a', 'b'], ['a', 'b', 'c']]
    >>> sorted(seen), list(distinct_cycles(g, [("a", "b")], seen, small=16, bound=8))
    ([('a', 'b'), ('a', 'b', 'c')], [])
    """
    candidates: Iterator[list[Any]] = ([u, *nx.shortest_path(sub, v, u)[:-1]] for u, v in edges)
    if len(sub) <= small:
        candidates = itertools.chain(candidates, short_cycles(sub, bound))
    for cycle in candidates:
        first = cycle.index(min(cycle))
        canonical = tuple(cycle[first:] + cycle[:first])
        if canonical not in seen:
            seen.add(canonical)
            yield cycle
