"""Checking a trace file: the one entry point the CLI, tests and benchmarks use.

>>> from checker.api import check_file
>>> result = check_file("traces/ok/v4l2-capture-imports-gpu-buffer.jsonl")
>>> result.findings, result.inconclusive
([], False)
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, Literal

from checker.core import TOMBSTONES_PER_TABLE, InputError, Result
from checker.engines.interpreter import Interpreter
from checker.engines.runtime import BLOCK, CompiledExecutor
from checker.readers import SNIFF_BYTES, CanonicalStream, Conversion, convert, detect, remap, source_line
from checker.sleeping import compiled_view, judge_deadlock, waiting_calls
from checker.trace import Header, is_header, iter_lines, load_line, open_binary, parse_header
from spec import profile as find_profile
from spec.lang import Profile

Engine = Literal["compiled", "interpreter"]


def read_header(stream: IO[bytes], file: str) -> tuple[Header | None, bytes, int]:
    """The header (if the first non-blank line is one), the bytes read past it, and lines consumed."""
    consumed = 0
    while True:
        raw = stream.readline()
        if not raw:
            if consumed == 0:
                raise InputError(file, 0, "empty file: expected JSON Lines, one event per line")
            raise InputError(file, 0, "no events: the file has only blank lines")
        consumed += 1
        if raw.strip():
            break
    try:
        obj = load_line(raw.rstrip(b"\r\n"), file, consumed)
    except InputError:
        return None, raw, consumed - 1
    if is_header(obj):
        return parse_header(obj, file), b"", consumed
    return None, raw, consumed - 1


def _settings(header: Header, file: str, profile: str | None, unobserved: frozenset[str],
              check_leaks: bool) -> tuple[Profile, frozenset[str], bool]:
    """The profile (``profile`` over the header's), the unobserved ops and whether leaks are checked."""
    try:
        prof = find_profile(profile or header.profile or "latest")
    except ValueError as e:
        raise InputError(file, 0, str(e)) from None
    return prof, unobserved | header.unobserved, check_leaks and not header.partial


def check_stream(stream: IO[bytes], file: str, *, profile: str | None = None, engine: Engine = "compiled",
                 keep_going: bool = False, check_leaks: bool = True, unobserved: frozenset[str] = frozenset(),
                 progress: Callable[[int, int], None] | None = None,
                 tombstones: int = TOMBSTONES_PER_TABLE, fmt: str | None = None) -> Result:
    """Check one trace read from ``stream``; ``profile`` overrides the header's.

    The trace may be canonical JSON Lines or any recording a reader knows
    (``checker.readers``): detected, or named by ``fmt``.  A recording is
    checked through its conversion, and the result names its own lines.
    """
    if fmt != "dmaspec":
        if not isinstance(stream, io.BufferedReader) and not hasattr(stream, "peek"):
            stream = io.BufferedReader(Prefixed(b"", stream), 1 << 16)
        head = stream.peek(SNIFF_BYTES)[:SNIFF_BYTES]
        if fmt is not None or detect(head, file) is not None:
            conversion = convert(stream, file, fmt)
            return check_conversion(conversion, file, profile=profile, engine=engine, keep_going=keep_going,
                                    check_leaks=check_leaks, unobserved=unobserved, progress=progress,
                                    tombstones=tombstones)
    header, pending, consumed = read_header(stream, file)
    prof, hidden, leaks = _settings(header or Header(), file, profile, unobserved, check_leaks)
    sleepers = waiting_calls(header.source, file) if header is not None else []
    if engine == "interpreter":
        it = Interpreter(prof, file, unobserved=hidden, check_leaks=leaks, tombstones=tombstones)
        lines = iter_lines(io.BufferedReader(Prefixed(pending, stream)))
        it.feed_lines(((n + consumed, raw) for n, raw in lines), keep_going=keep_going)
        judge_deadlock(it.result, it, prof, sleepers, it.last_line + 1, it.object_state)
        return it.finish()
    ex = CompiledExecutor(prof, file, unobserved=hidden, check_leaks=leaks, tombstones=tombstones)
    ex.run(stream, first_line=consumed, keep_going=keep_going, prefix=pending, progress=progress)
    judge_deadlock(ex.result, compiled_view(ex.tables), prof, sleepers, ex.last_line + 1, ex.object_state)
    return ex.finish()


def check_conversion(conversion: Conversion, file: str, *, profile: str | None = None,
                     engine: Engine = "compiled", keep_going: bool = False, check_leaks: bool = True,
                     unobserved: frozenset[str] = frozenset(), progress: Callable[[int, int], None] | None = None,
                     tombstones: int = TOMBSTONES_PER_TABLE, joined: tuple[str, ...] = ()) -> Result:
    """Check a recording through its canonical conversion; the result names the recording's lines.

    ``joined``: the conversion joins these recordings (``checker.join``); the result's lines are then the
    joined trace's, and ``Result.origins`` says which recording line each one a finding shows comes from.
    """
    prof, hidden, leaks = _settings(conversion.header, file, profile, unobserved, check_leaks)
    canonical = CanonicalStream(conversion, file=file)
    try:
        if engine == "interpreter":
            it = Interpreter(prof, file, unobserved=hidden, check_leaks=leaks, tombstones=tombstones)
            it.result.narrowed.update(conversion.undecidable)
            it.feed_lines(iter_lines(io.BufferedReader(canonical)), keep_going=keep_going)
            result = it.finish()
        else:
            ex = CompiledExecutor(prof, file, unobserved=hidden, check_leaks=leaks, tombstones=tombstones)
            ex.result.narrowed.update(conversion.undecidable)
            ex.run(io.BufferedReader(canonical, BLOCK), keep_going=keep_going, progress=progress)
            result = ex.finish()
    except InputError as e:
        if e.file != file or not e.line or getattr(e, "recording", False):
            raise
        if joined:
            from checker.join import relocate

            raise relocate(e, canonical.lines, joined, file) from None
        raise InputError(file, source_line(canonical.lines, e.line),
                         f"{e.message} (in the {conversion.format} reader's conversion)") from None
    if joined:
        from checker.join import locate, relocate

        result.joined = joined
        result.errors = [relocate(e, canonical.lines, joined, file) for e in result.errors]
        locate(result, canonical.lines, joined)
    else:
        remap(result, canonical.lines)
    for reason, n in conversion.skipped.items():
        result.ignored[reason] += n
    result.source_format = conversion.format
    result.conversion_notes = list(conversion.notes)
    return result


def check_join(paths: list[str], *, offset: float | None = None, **options: object) -> Result:
    """Check a kernel trace and an strace of one run as one trace (``dmaspec check --join``; ``checker.join``).

    ``offset``: strace time minus kernel time, in seconds, when the two share no event to align them by.
    Findings name the joined trace's lines; ``Result.origins`` maps them to the recordings'.

    >>> r = check_join(["traces/mixed/ok/heap-sync.ftrace", "traces/mixed/ok/heap-sync.strace"])
    >>> r.findings, r.source_format
    ([], 'ftrace+strace')
    """
    from checker.join import join

    options.pop("fmt", None)
    with join(paths, offset=offset) as joined:
        result = check_conversion(joined.conversion, joined.name, joined=joined.files,
                                  **options)  # type: ignore[arg-type]
    if offset is not None:
        result.join_options = ("--offset", repr(offset))
    return result


def check_file(path: str, **options: object) -> Result:
    """Check the trace at ``path`` (``-`` for stdin; gzip is recognised)."""
    try:
        stream = open_binary(path)
    except OSError as e:
        raise InputError(path, 0, f"cannot read: {e.strerror}") from None
    with stream:
        return check_stream(stream, path, **options)  # type: ignore[arg-type]


class Prefixed(io.RawIOBase):
    """A raw stream that yields ``prefix`` and then the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: IO[bytes]) -> None:
        self.prefix = prefix
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.prefix:
            n = min(len(buffer), len(self.prefix))
            buffer[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        data = self.stream.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)
