"""Readers of the trace formats users already have, each a converter to the canonical format.

A reader turns a recording (ftrace text, strace output, ...) into canonical
events, as a stream: it holds what the format needs to pair and fold events
(open calls per thread, file-to-buffer links), never the trace.  Checking a
recording is checking its conversion, so ``dmaspec check rec.txt`` and
``dmaspec convert rec.txt -o rec.jsonl && dmaspec check rec.jsonl`` give the
same findings; reports name the recording's own lines.

A reader says what its format cannot see (``Header.unobserved``), so the rules
that need it are narrowed, and counts what it skipped (``Conversion.skipped``,
reason -> count): an event it does not know is not an error.  Input it cannot
read at all is an ``InputError`` with the file and line.

>>> import io
>>> conv = convert(io.BytesIO(b'{"op": "dma_buf_put", "tid": 1, "args": {"dmabuf": "b"}}\\n'), "t.jsonl")
>>> conv.format
'dmaspec'
"""

from __future__ import annotations

import io
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import IO, Any

import orjson

from checker.core import InputError, Result
from checker.trace import Header

# What a reader yields: the recording's line the event comes from, and the canonical event object.
Converted = tuple[int, dict[str, Any]]

SNIFF_BYTES = 1 << 16


@dataclass
class Conversion:
    """A recording being converted: its header and a one-pass stream of canonical events."""

    format: str
    header: Header
    events: Iterator[Converted]
    skipped: Counter[str] = field(default_factory=Counter)  # filled while ``events`` is consumed
    notes: list[str] = field(default_factory=list)  # what the report should say about the conversion
    undecidable: dict[str, tuple[str, ...]] = field(default_factory=dict)  # rule -> what the format lacks for it


@dataclass(frozen=True)
class Reader:
    """One format: how to recognise it from the first bytes, and how to convert it."""

    name: str
    description: str
    sniff: Callable[[bytes], bool]
    read: Callable[[IO[bytes], str, bytes], Conversion]  # (stream past the head, file, head)


def _readers() -> list[Reader]:
    from checker.readers import ftrace, strace

    return [ftrace.READER, strace.READER]


def formats() -> dict[str, Reader]:
    """Every format a recording can be read in, by name (``--from``)."""
    return {r.name: r for r in _readers()}


CANONICAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".ndjson", ".ndjson.gz")


def is_canonical(head: bytes) -> bool:
    """The canonical format is JSON Lines: the first non-blank character opens an object."""
    return head.lstrip()[:1] == b"{"


def detect(head: bytes, file: str) -> Reader | None:
    """The reader of a recording whose first bytes are ``head``; None for the canonical format.

    What no reader recognises is canonical when it is named so (or is
    standard input, or empty), so its errors are the canonical reader's.
    """
    if is_canonical(head):
        return None
    for reader in _readers():
        if reader.sniff(head):
            return reader
    if file == "-" or file.endswith(CANONICAL_SUFFIXES) or not head.strip():
        return None
    known = ", ".join(sorted(formats()))
    raise InputError(file, 0, f"not a format I know: expected canonical JSON Lines or one of {known} "
                              "(see dmaspec convert --help; --from names the format)")


def convert(stream: IO[bytes], file: str, fmt: str | None = None) -> Conversion:
    """The conversion of the recording ``stream``: detected, or in format ``fmt``."""
    head = _peek(stream)
    if fmt is None or fmt == "dmaspec":
        reader = detect(head, file) if fmt is None else None
    else:
        try:
            reader = formats()[fmt]
        except KeyError:
            raise InputError(file, 0, f"unknown format {fmt!r}: one of dmaspec, {', '.join(sorted(formats()))}") \
                from None
    if reader is None:
        return _canonical(stream, file, head)
    return reader.read(stream, file, head)


def _peek(stream: IO[bytes]) -> bytes:
    """The first bytes of ``stream``, without consuming them when it can peek."""
    peek = getattr(stream, "peek", None)
    if peek is None:
        return b""
    head: bytes = peek(SNIFF_BYTES)[:SNIFF_BYTES]
    return head


def _canonical(stream: IO[bytes], file: str, head: bytes) -> Conversion:
    from checker.api import Prefixed, read_header
    from checker.trace import iter_lines, load_line

    header, pending, consumed = read_header(stream, file)

    def events() -> Iterator[Converted]:
        rest = io.BufferedReader(Prefixed(pending, stream))
        for n, raw in iter_lines(rest):
            yield n + consumed, load_line(raw, file, n + consumed)

    return Conversion("dmaspec", header or Header(), events())


# -- writing canonical lines -----------------------------------------------------------------

def header_line(header: Header, fmt: str, file: str) -> bytes:
    """The canonical header of a conversion: the profile, what the format cannot see, where it came from."""
    doc: dict[str, Any] = {"format": "dmaspec-trace", "version": 1}
    if header.profile:
        doc["profile"] = header.profile
    if header.unobserved:
        doc["unobserved"] = sorted(header.unobserved)
    if header.partial:
        doc["partial"] = True
    doc["source"] = {"converted_from": fmt, "file": file, **header.source}
    return orjson.dumps(doc) + b"\n"


class CanonicalStream(io.RawIOBase):
    """The canonical JSON Lines of a conversion, as a byte stream the executors read.

    ``lines`` collects the recording's line of each event (the i-th event is
    ``lines[i]``), so findings can name the recording's lines afterwards.
    With ``src``, each event also carries its recording line as ``"src"``
    (what ``dmaspec convert`` writes).
    """

    def __init__(self, conversion: Conversion, *, src: bool = False, file: str = "") -> None:
        self.events = conversion.events
        self.file = file
        self.lines = array("I")
        self.src = src
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = len(buffer)
        parts = [self.pending]
        size = len(self.pending)
        dumps, append_line = orjson.dumps, self.lines.append
        try:
            for line, event in self.events:
                if self.src:
                    event["src"] = line
                raw = dumps(event) + b"\n"
                append_line(line)
                parts.append(raw)
                size += len(raw)
                if size >= want:
                    break
        except InputError as e:
            e.recording = True  # type: ignore[attr-defined]  # already names the recording's line
            raise
        except orjson.JSONEncodeError as e:
            error = InputError(self.file, line, f"a number out of range ({e}): integers fit in 64 bits")
            error.recording = True  # type: ignore[attr-defined]
            raise error from None
        data = b"".join(parts)
        n = min(want, len(data))
        buffer[:n] = data[:n]
        self.pending = data[n:]
        return n


def source_line(lines: array[int], line: int) -> int:
    """The recording's line of canonical event ``line`` (1-based); past the end: the last line + 1."""
    if 1 <= line <= len(lines):
        return lines[line - 1]
    return (lines[-1] + 1) if lines else line


def remap(result: Result, lines: array[int]) -> None:
    """Make ``result`` name the recording's lines instead of the canonical stream's."""
    def at(n: int) -> int:
        return source_line(lines, n) if n else 0

    result.findings = [replace(f, line=at(f.line), objects=tuple(replace(o, born=at(o.born), last=at(o.last))
                                                                  for o in f.objects))
                       for f in result.findings]
    result.gaps = [at(n) for n in result.gaps]
    result.errors = [InputError(e.file, at(e.line), e.message) for e in result.errors]
