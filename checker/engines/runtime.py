"""The compiled executor: runs generated handlers over a stream of JSON Lines.

The input is read in 32 KiB blocks, cut at the last newline, and each block is
decoded by msgspec into typed event structs in one call; the generated
handler of each event's op then updates the state.  Memory stays flat: one
block of events at a time, plus the model's live objects and a bounded number
of tombstones.  Whenever a block does not decode cleanly (bad input, blank
lines), it is redone line by line, and bad lines get the same message the
interpreter gives (``checker.trace.validate``).

Example
-------
>>> import io
>>> from checker.engines.runtime import CompiledExecutor
>>> from spec import profile
>>> data = (b'{"op":"dma_buf_export","tid":1,"args":{},"ret":"b1"}\\n'
...         b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\\n'
...         b'{"op":"dma_buf_put","tid":1,"args":{"dmabuf":"b1"}}\\n')
>>> ex = CompiledExecutor(profile("latest"), "example")
>>> ex.run(io.BytesIO(data))
>>> [(f.rule, f.line) for f in ex.finish().findings]
[('REF-USE-AFTER-RELEASE', 3)]
"""

from __future__ import annotations

import gc
import importlib
import sys
import types
from collections import deque
from collections.abc import Callable
from typing import IO, Any

import msgspec
import orjson

from checker.core import TOMBSTONES_PER_TABLE, InputError, ObjectState, Result, new_result
from checker.trace import PARAMS, event_ret, load_line, select, validate
from spec import SPEC
from spec import kernel as K
from spec.kernel import is_err_ptr
from spec.lang import ParamType, Profile, Value
from spec.profiles import PROFILES
from spec.values import ERR_PTR_MIN, handle, normalize

__all__ = ["ACCESS", "BAD", "DIRS", "ERR_PTR_MIN", "ERRPTR_PREFIXES", "IOCTLS", "WHENCES", "Bad", "CompiledExecutor",
           "errno_of", "events_module", "handle", "is_err_ptr", "norm_fcntl", "norm_ioctl"]

DIRS: dict[Any, int] = {**K.DIRECTIONS, **{v: v for v in K.DIRECTIONS.values()}}
WHENCES: dict[Any, int] = dict(K.WHENCES)
ACCESS: dict[Any, int] = {**K.ACCESS_NAMES, **{v: v for v in K.ACCESS_NAMES.values()}}
# known ioctl commands, by name and by number, to the name (anything else goes through norm_ioctl)
IOCTLS: dict[Any, str] = {**{n: n for n in K.IOCTLS}, **K.IOCTL_NAMES,
                          **{a: K.IOCTL_ALIASES[a] for a in K.IOCTL_ALIASES}}
ERRPTR_PREFIXES = frozenset({"0xfffffffffffff", "0xFFFFFFFFFFFFF"})
BAD = object()
# Decode a block at a time: small enough that its events are still in the CPU cache when the handlers read
# them (1 MiB blocks measured 30% slower), large enough that the per-block cost does not show.
BLOCK = 1 << 15


def errno_of(err_ptr: str) -> int:
    """The negative errno an ERR_PTR handle string stands for."""
    return int(err_ptr, 0) - (1 << 64) if err_ptr.startswith(("0x", "0X")) else int(err_ptr)


class Bad(Exception):
    """A value the fast path cannot take; the line is re-validated for the message."""


def norm_ioctl(value: int | str) -> str:
    """An ioctl command the ``IOCTLS`` table does not know, normalised as the spec says, or ``Bad``."""
    try:
        return str(normalize(ParamType.IOCTL, value))
    except ValueError:
        raise Bad from None


def norm_fcntl(value: int | str) -> str:
    try:
        return str(normalize(ParamType.FCNTL, value))
    except ValueError:
        raise Bad from None


_MODULES: dict[tuple[str, tuple[int, int], frozenset[str]], types.ModuleType] = {}
_EVENTS: list[types.ModuleType] = []


def _exec_module(name: str, source: str) -> types.ModuleType:
    mod = types.ModuleType(name)
    sys.modules[name] = mod  # msgspec resolves the structs' annotations through it
    exec(compile(source, f"<{name}>", "exec"), mod.__dict__)  # noqa: S102
    return mod


def events_module() -> types.ModuleType:
    """The event structs and decoder: checked in, or generated now if the spec changed since."""
    if not _EVENTS:
        from checker.engines import compiler

        mod: types.ModuleType | None
        try:
            mod = importlib.import_module("checker.engines.generated.events")
        except ImportError:
            mod = None
        if mod is None or getattr(mod, "DIGEST", None) != compiler.spec_digest():
            mod = _exec_module(f"dmaspec_events_{compiler.spec_digest()}", compiler.generate_events())
        _EVENTS.append(mod)
    return _EVENTS[0]


def load_module(profile: Profile) -> types.ModuleType:
    """The generated module for ``profile``: checked in for named profiles, else generated now."""
    key = (profile.name, profile.version, profile.features)
    if key in _MODULES:
        return _MODULES[key]
    from checker.engines import compiler

    mod: types.ModuleType | None = None
    if any(p == profile for p in PROFILES):
        name = "checker.engines.generated.p_" + compiler._ident(profile.name)
        try:
            mod = importlib.import_module(name)
        except ImportError:
            mod = None
        if mod is not None and getattr(mod, "DIGEST", None) != compiler.spec_digest():
            mod = None  # stale: the spec changed since it was generated
    if mod is None:
        version = compiler._ident(".".join(map(str, profile.version)))
        mod = _exec_module(f"dmaspec_compiled_{compiler._ident(profile.name)}_{version}", compiler.generate(profile))
    _MODULES[key] = mod
    return mod


class CompiledExecutor:
    """Replays a canonical trace with the generated handlers for one profile."""

    def __init__(self, profile: Profile, file: str, *, unobserved: frozenset[str] = frozenset(),
                 check_leaks: bool = True, tombstones: int = TOMBSTONES_PER_TABLE) -> None:
        self.profile = profile
        self.tombstones = tombstones
        self.file = file
        self.module = load_module(profile)
        self.tables: dict[str, dict[Value, list[Any]]] = {t.name: {} for t in SPEC.tables}
        # a row: its fields, then the gap epoch it was born in, born line, last line, and whether it is queued
        self.defaults: dict[str, list[Any]] = {t.name: [f.default for f in t.fields] + [0, 0, 0, False]
                                               for t in SPEC.tables}
        self.field_names = {t.name: t.field_names() for t in SPEC.tables}
        self.retired: dict[str, deque[Value]] = {t.name: deque() for t in SPEC.tables}
        self.index: dict[str, dict[Value, dict[Value, None]]] = {t.name: {} for t in SPEC.tables if t.index is not None}
        self.result = new_result(file, profile, unobserved, check_leaks)
        self.check_leaks = check_leaks
        self.handlers, self._at_end, self._epoch = self.module.bind(self)
        self.last_line = 0  # the line of the last event checked: end-of-trace findings are put after it

    # -- callbacks of the generated code -------------------------------------------------------

    def fail(self, rule: str, line: int, op: str, tid: int | None, objs: tuple[tuple[str, Value], ...]) -> None:
        epoch = self._epoch()
        self.result.judge(rule, line, op, tid, tuple(self._state(t, k, epoch) for t, k in objs))

    def object_state(self, table: str, key: Value) -> ObjectState:
        """The object at ``key`` of ``table`` as a finding would show it."""
        return self._state(table, key, self._epoch())

    def _state(self, table: str, key: Value, epoch: int) -> ObjectState:
        row = self.tables[table].get(key)
        names = self.field_names[table]
        if row is None:
            defaults = tuple(zip(names, self.defaults[table], strict=False))
            return ObjectState(table, key, False, defaults, 0, 0, epoch > 0)
        n = len(names)
        fields = tuple(zip(names, row[:n], strict=True))
        return ObjectState(table, key, True, fields, row[n + 1], row[n + 2], row[n] < epoch)

    def ignored(self, reason: str) -> None:
        self.result.ignored[reason] += 1

    def reused(self) -> None:
        self.result.reused += 1

    def gap(self, line: int) -> None:
        self.result.gaps.append(line)

    # -- the stream ---------------------------------------------------------------------------

    def run(self, stream: IO[bytes], *, first_line: int = 0, keep_going: bool = False, prefix: bytes = b"",
            progress: Callable[[int, int], None] | None = None) -> None:
        """Check every event of ``stream``; ``first_line`` lines were consumed before it."""
        decode = self.module.DECODER.decode_lines
        handlers = self.handlers
        line = first_line
        rest = prefix
        gc_was = gc.isenabled()
        gc.disable()  # the events of a block are acyclic; collecting them is wasted work
        try:
            while True:
                block = stream.read(BLOCK)
                if not block:
                    if rest:
                        line = self._slow(rest if rest.endswith(b"\n") else rest + b"\n", line, keep_going)
                    break
                buf = rest + block if rest else block
                cut = buf.rfind(b"\n")
                if cut < 0:
                    rest = buf
                    continue
                chunk, rest = buf[:cut + 1], buf[cut + 1:]
                try:
                    events = decode(chunk)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    line = self._slow(chunk, line, keep_going)
                    continue
                if len(events) != chunk.count(b"\n"):
                    line = self._slow(chunk, line, keep_going)
                    continue
                base = line
                last = self.last_line
                for ev in events:
                    line += 1
                    try:
                        handlers[ev.__class__](ev, line)
                    except Bad:
                        self._bad(chunk, line - base, line, keep_going)
                    else:
                        last = line
                self.last_line = last
                self.result.events += len(events)
                if progress is not None:
                    progress(line, len(self.result.findings))
        finally:
            if gc_was:
                gc.enable()

    def _slow(self, chunk: bytes, line: int, keep_going: bool) -> int:
        decode = self.module.DECODER.decode
        for raw in chunk.split(b"\n")[:-1]:
            line += 1
            if not raw.strip():
                continue
            try:
                ev = decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):
                self._error(raw, line, keep_going)
                continue
            try:
                self.handlers[ev.__class__](ev, line)
            except Bad:
                self._error(raw, line, keep_going)
            else:
                self.result.events += 1
                self.last_line = line
        return line

    def _bad(self, chunk: bytes, index: int, line: int, keep_going: bool) -> None:
        self.result.events -= 1
        raw = chunk.split(b"\n")[index - 1]
        self._error(raw, line, keep_going)

    def _error(self, raw: bytes, line: int, keep_going: bool) -> None:
        """A line the fast path refused: report why, or check it after all if the spec accepts it."""
        raw = raw.rstrip(b"\r")  # the message is about the line, as the interpreter reads it
        try:
            obj = load_line(raw, self.file, line)
            event = validate(obj, self.file, line)
            action, _ = select(event, self.profile)
            if action is not None:
                event_ret(event, action, self.file)
        except InputError as e:
            if not keep_going:
                raise
            self.result.errors.append(e)
            return
        # Valid: the decoder's struct for an op with several kinds also typed the other kinds' arguments, which
        # this event does not have and the spec ignores.  Check it with only its own kind's arguments.
        declared = PARAMS[(event.kind, event.op)]
        args = obj.get("args")
        obj["args"] = {k: v for k, v in args.items() if k in declared} if isinstance(args, dict) else {}
        ev = self.module.DECODER.decode(orjson.dumps(obj))
        self.handlers[ev.__class__](ev, line)
        self.result.events += 1
        self.last_line = line

    def finish(self) -> Result:
        if self.check_leaks:
            self._at_end(self.last_line + 1)
        return self.result
