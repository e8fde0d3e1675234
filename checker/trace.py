"""Reading canonical traces: files, directories, stdin and gzip; the header; events.

The canonical format is JSON Lines (``traces/README.md``).  This module
validates one event at a time against the spec (the oracle path, and the
error path of the fast executor), so both engines reject the same input with
the same message.  It streams: nothing here holds more than one line.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import IO, Any

import orjson

from checker.core import InputError
from spec import SPEC
from spec import kernel as K
from spec.lang import Action, EventKind, Param, ParamType, Profile, Value
from spec.profiles import profile as find_profile
from spec.values import normalize, normalize_ret

FORMAT = "dmaspec-trace"
FORMAT_VERSION = 1
KINDS = {k.value: k for k in EventKind}


@dataclass(frozen=True)
class Header:
    """The optional first line of a trace."""

    version: int = FORMAT_VERSION
    profile: str | None = None
    unobserved: frozenset[str] = frozenset()
    partial: bool = False
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """One canonical event, validated; args normalised per the spec's parameter types."""

    line: int
    op: str
    kind: EventKind
    tid: int
    pid: int
    ctx: str | None
    args: dict[str, Value]
    ret: Value


# -- the spec's view of ops ------------------------------------------------------------

GROUPS: dict[tuple[EventKind, str], tuple[Action, ...]] = {}
for _a in SPEC.actions:
    GROUPS[(_a.kind, _a.op)] = GROUPS.get((_a.kind, _a.op), ()) + (_a,)
OPS_BY_NAME: dict[str, list[EventKind]] = {}
for (_k, _op) in GROUPS:
    OPS_BY_NAME.setdefault(_op, []).append(_k)


def group_params(group: tuple[Action, ...]) -> dict[str, tuple[ParamType, bool]]:
    """Each parameter of an op's variants: its type and whether every variant requires it."""
    out: dict[str, tuple[ParamType, bool]] = {}
    for a in group:
        for p in a.params:
            prev = out.get(p.name)
            required = not p.optional and (prev is None or prev[1])
            out[p.name] = (p.type, required)
    for name, (t, _) in list(out.items()):
        if any(name not in {p.name for p in a.params} for a in group):
            out[name] = (t, False)
    return out


PARAMS: dict[tuple[EventKind, str], dict[str, tuple[ParamType, bool]]] = {k: group_params(g) for k, g in GROUPS.items()}


def _param_list(params: tuple[Param, ...]) -> str:
    return ", ".join(p.name + ("?" if p.optional else "") for p in params)


# -- opening inputs ---------------------------------------------------------------------

TRACE_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".ndjson", ".strace", ".strace.gz", ".ftrace", ".ftrace.gz")


def expand_paths(paths: list[str]) -> list[str]:
    """Files named, and the trace files under directories named, sorted; ``-`` is stdin."""
    out: list[str] = []
    for p in paths:
        if p == "-":
            out.append(p)
        elif os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p):
                dirs.sort()
                found += [os.path.join(root, f) for f in files if f.endswith(TRACE_SUFFIXES)]
            if not found:
                raise InputError(p, 0, "directory has no trace files (*.jsonl, *.strace, *.ftrace, or those .gz)")
            out += sorted(found)
        elif os.path.exists(p):
            out.append(p)
        else:
            raise InputError(p, 0, "no such file or directory")
    return out


def open_binary(path: str) -> IO[bytes]:
    """A binary stream of the trace: stdin for ``-``, transparently gunzipped."""
    raw: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb", buffering=1 << 16)  # noqa: SIM115
    peek = raw.peek(2)[:2] if isinstance(raw, io.BufferedReader) else b""
    if peek != b"\x1f\x8b":
        return raw
    if path == "-":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    raw.close()
    return gzip.open(path, "rb")  # type: ignore[return-value]  # closing it closes the file


def parse_header(obj: dict[str, Any], file: str) -> Header:
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(file, 1, 'header: "version" must be a positive integer')
    if version > FORMAT_VERSION:
        raise InputError(file, 1, f"header: format version {version} is newer than this dmaspec reads "
                                  f"({FORMAT_VERSION}); upgrade dmaspec")
    prof = obj.get("profile")
    if prof is not None:
        if not isinstance(prof, str):
            raise InputError(file, 1, 'header: "profile" must be a string')
        try:
            find_profile(prof)
        except ValueError as e:
            raise InputError(file, 1, f"header: {e}") from None
    unobserved = obj.get("unobserved", [])
    if not isinstance(unobserved, list) or not all(isinstance(x, str) for x in unobserved):
        raise InputError(file, 1, 'header: "unobserved" must be a list of op names')
    unknown = [x for x in unobserved if x not in OPS_BY_NAME]
    if unknown:
        raise InputError(file, 1, f"header: unobserved names unknown ops: {', '.join(unknown)}")
    partial = obj.get("partial", False)
    if not isinstance(partial, bool):
        raise InputError(file, 1, 'header: "partial" must be true or false')
    source = obj.get("source", {})
    return Header(version, prof, frozenset(unobserved), partial, source if isinstance(source, dict) else {})


def is_header(obj: object) -> bool:
    return isinstance(obj, dict) and obj.get("format") == FORMAT


def load_line(raw: bytes, file: str, line: int) -> dict[str, Any]:
    """Decode one line to a JSON object, or say what is wrong with it."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        if b"\x00" in raw or any(b > 0x7F for b in raw[:64]) and not _utf8(raw):
            raise InputError(file, line, "not text: expected one JSON object per line") from None
        raise InputError(file, line, f"malformed JSON ({e.args[0].split(':')[0]}): expected one JSON object "
                                     "per line") from None
    if not isinstance(obj, dict):
        raise InputError(file, line, f"expected a JSON object, found {type(obj).__name__}")
    return obj


def _utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def fits_64(value: int) -> bool:
    """JSON integers in a trace fit in 64 bits, signed or unsigned."""
    return -(1 << 63) <= value < (1 << 64)


def validate(obj: dict[str, Any], file: str, line: int) -> Event:
    """The event a decoded line describes, validated against the spec.

    >>> e = validate({"op": "dma_buf_put", "tid": 7, "args": {"dmabuf": "b1"}}, "t.jsonl", 3)
    >>> (e.op, e.kind.value, e.pid, e.args)
    ('dma_buf_put', 'call', 7, {'dmabuf': 'b1'})
    """
    def bad(msg: str) -> InputError:
        return InputError(file, line, msg)

    op = obj.get("op")
    if not isinstance(op, str):
        raise bad('missing "op": every event names its operation')
    kind_name = obj.get("kind", "call")
    if kind_name not in KINDS:
        raise bad(f'"kind" must be one of {", ".join(KINDS)}, not {kind_name!r}')
    kind = KINDS[kind_name]
    if (kind, op) not in GROUPS:
        if op in OPS_BY_NAME:
            kinds = " or ".join(f'"kind": "{k.value}"' for k in OPS_BY_NAME[op])
            raise bad(f"{op!r} is not a {kind.value} event; did you mean {kinds}?")
        close = get_close_matches(op, list(OPS_BY_NAME), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise bad(f"unknown op {op!r}{hint}")
    tid = obj.get("tid")
    if not isinstance(tid, int) or isinstance(tid, bool) or not fits_64(tid):
        raise bad(f'{op}: "tid" must be an integer thread id')
    pid = obj.get("pid", tid)
    if not isinstance(pid, int) or isinstance(pid, bool) or not fits_64(pid):
        raise bad(f'{op}: "pid" must be an integer process id')
    ctx = obj.get("ctx")
    if ctx is not None and ctx not in K.CONTEXTS:
        raise bad(f'{op}: "ctx" must be one of {", ".join(K.CONTEXTS)}')
    for name, typ in (("ts", (int, float)), ("comm", (str,)), ("cpu", (int,))):
        v = obj.get(name)
        if v is not None and (not isinstance(v, typ) or isinstance(v, bool) or isinstance(v, int) and not fits_64(v)):
            raise bad(f'{op}: "{name}" has the wrong type')
    raw_args = obj.get("args", {})
    if not isinstance(raw_args, dict):
        raise bad(f'{op}: "args" must be a JSON object')
    args: dict[str, Value] = {}
    for name, (ptype, required) in PARAMS[(kind, op)].items():
        v = raw_args.get(name)
        if v is None:
            if required:
                expect = _param_list(GROUPS[(kind, op)][0].params)
                raise bad(f"{op}: missing argument {name!r} (arguments: {expect})")
            args[name] = None
            continue
        try:
            args[name] = normalize(ptype, v)
        except ValueError as e:
            raise bad(f"{op}: argument {name!r}: expected {e}") from None
    ret = obj.get("ret")
    if ret is not None and (isinstance(ret, bool) or not isinstance(ret, (int, str))
                            or isinstance(ret, int) and not fits_64(ret)):
        raise bad(f'{op}: "ret" must be a handle string, a number, or a negative errno')
    return Event(line, op, kind, tid, pid, ctx, args, ret)


def select(event: Event, prof: Profile) -> tuple[Action | None, bool]:
    """The variant of the event's op that runs under ``prof``.

    Returns ``(action, available)``: ``available`` is false when the op does
    not exist in the profile's kernel at all.
    """
    admitted = [a for a in GROUPS[(event.kind, event.op)] if prof.admits_action(a)]
    if not admitted:
        return None, False
    from checker.engines.interpreter import evaluate_selector  # local: interpreter imports this module

    for a in admitted:
        if a.when is None or evaluate_selector(a.when, event):
            return a, True
    return None, True


def event_ret(event: Event, action: Action, file: str) -> Value:
    try:
        return normalize_ret(action.returns, event.ret)
    except ValueError as e:
        raise InputError(file, event.line, f"{event.op}: expected {e}") from None


def iter_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """Numbered lines, without their newline, blank ones skipped."""
    for n, raw in enumerate(stream, 1):
        raw = raw.rstrip(b"\r\n")
        if raw.strip():
            yield n, raw
