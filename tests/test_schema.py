"""The canonical trace format: its JSON Schema and its reference, held to the spec and the reader.

``traces/schema/dmaspec-trace-v1.schema.json`` is generated from ``spec.SPEC``
by ``build_schema`` below, and the operation table of ``traces/README.md`` is
checked against ``op_table``.  After changing the spec, regenerate both:

    python -m tests.test_schema --write   # rewrites the schema file
    python -m tests.test_schema --table   # prints the table (descriptions kept from the README)

Besides the corpus, hand-made lines are given to both the schema and the
reader (``checker.trace``): they must agree, except where the schema is
documented to be stricter (a direction or access number out of range).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from checker.core import InputError
from checker.trace import (
    FORMAT,
    FORMAT_VERSION,
    GROUPS,
    OPS_BY_NAME,
    PARAMS,
    TRACE_SUFFIXES,
    event_ret,
    is_header,
    parse_header,
    select,
    validate,
)
from spec import SPEC
from spec import kernel as K
from spec.lang import Action, Arg, Cmp, CmpOp, Const, EventKind, ParamType, Profile, Returns, Value, describe_when
from spec.profiles import PROFILES
from spec.profiles import profile as find_profile
from spec.values import EXPECTED, FCNTL_NAMES
from tests.conftest import ROOT, TRACES

SCHEMA_PATH = os.path.join(TRACES, "schema", "dmaspec-trace-v1.schema.json")
README_PATH = os.path.join(TRACES, "README.md")
Json = dict[str, Any]

# --------------------------------------------------------------------------------------
# The schema, built from the spec
# --------------------------------------------------------------------------------------

# A profile given as a kernel version: what spec.profiles accepts, 3.3 or later.
VERSION_PATTERN = (r"^0*(?:3\.0*(?:[3-9]|[1-9][0-9]+)|(?:[4-9]|[1-9][0-9]+)\.[0-9]+)"
                   r"(?:\.[0-9]+)?(?:[-+~].*)?$")

# What a return value may be, by the op's Returns: (required, JSON types).
RET: dict[Returns, tuple[bool, tuple[str, ...]]] = {
    Returns.NOTHING: (False, ("integer", "string", "null")),
    Returns.INT: (False, ("integer", "null")),
    Returns.NUMBER: (True, ("integer",)),
    Returns.HANDLE: (True, ("integer", "string")),
}
JSON_TYPES = ("integer", "string", "null")


def type_schema(t: ParamType) -> Json:
    """The raw values ``spec.values.normalize`` accepts for a parameter type."""
    doc = {"description": EXPECTED[t]}
    if t is ParamType.HANDLE:
        return {**doc, "type": ["string", "integer"]}
    if t is ParamType.INT:
        return {**doc, "type": "integer"}
    if t is ParamType.STR:
        return {**doc, "type": "string"}
    if t is ParamType.DIRECTION:
        return {**doc, "enum": [*K.DIRECTIONS, *sorted(K.DIRECTIONS.values())]}
    if t is ParamType.ACCESS:
        return {**doc, "enum": [*K.ACCESS_NAMES, *sorted(set(K.ACCESS_NAMES.values()))]}
    if t is ParamType.WHENCE:
        return {**doc, "anyOf": [{"enum": list(K.WHENCES)}, {"type": "integer"}]}
    if t is ParamType.FCNTL:
        return {**doc, "anyOf": [{"enum": list(FCNTL_NAMES.values())}, {"type": "integer"}]}
    if t is ParamType.IOCTL:
        return {**doc, "anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^0x[0-9a-fA-F]+$"},
                                 {"type": "string", "not": {"pattern": "^0x"}}],
                "examples": [*K.IOCTLS, *K.IOCTL_ALIASES]}
    raise AssertionError(t)


def spellings(t: ParamType, value: Value) -> list[Value]:
    """Every raw value a trace may write for the normalised ``value`` of a ``when`` selector."""
    named: dict[str, int] | None = {ParamType.DIRECTION: K.DIRECTIONS, ParamType.WHENCE: K.WHENCES,
                                    ParamType.ACCESS: K.ACCESS_NAMES}.get(t)
    if named is not None:
        return [*(n for n, v in named.items() if v == value), value]
    if t is ParamType.FCNTL:
        return [value, *(n for n, v in FCNTL_NAMES.items() if v == value)]
    if t in (ParamType.INT, ParamType.STR):
        return [value]
    raise NotImplementedError(f"no spellings for a {t.value} selector: extend tests/test_schema.py")


def _ret_schema(required: bool, types: tuple[str, ...]) -> Json:
    return {"properties": {"ret": {"type": [x for x in JSON_TYPES if x in types]}},
            **({"required": ["ret"]} if required else {})}


def _ret_union(returns: list[Returns]) -> tuple[bool, tuple[str, ...]]:
    return all(RET[r][0] for r in returns), tuple(x for x in JSON_TYPES if any(x in RET[r][1] for r in returns))


def op_schema(kind: EventKind, op: str, group: tuple[Action, ...]) -> Json:
    """What an event of ``op`` needs besides the common fields: its arguments and its ret."""
    props: Json = {}
    required: list[str] = []
    for name, (t, req) in PARAMS[(kind, op)].items():
        ref = {"$ref": f"#/$defs/{t.value}"}
        props[name] = ref if req else {"anyOf": [ref, {"type": "null"}]}
        if req:
            required.append(name)
    args: Json = {"type": "object", "properties": props, **({"required": required} if required else {})}
    ret_required, ret_types = _ret_union([a.returns for a in group])
    out: Json = {"title": f"{kind.value} {op}"}
    docs = [(f"{describe_when(a.when)}: " if a.when else "") + a.doc for a in group if a.doc]
    if docs:
        out["description"] = " ".join(dict.fromkeys(docs))
    out["properties"] = {"args": args, **_ret_schema(ret_required, ret_types)["properties"]}
    top = (["args"] if required else []) + (["ret"] if ret_required else [])
    if top:
        out["required"] = top
    stricter: list[Json] = []
    for a in group:
        if RET[a.returns] == (ret_required, ret_types):
            continue
        w = a.when
        if not (isinstance(w, Cmp) and w.op is CmpOp.EQ and isinstance(w.left, Arg) and isinstance(w.right, Const)):
            raise NotImplementedError(f"{a.name}: a return type that depends on {w!r}")
        name = w.left.name
        selected = {"enum": spellings(PARAMS[(kind, op)][name][0], w.right.value)}
        stricter.append({"if": {"properties": {"args": {"properties": {name: selected}, "required": [name]}},
                                "required": ["args"]},
                         "then": _ret_schema(*RET[a.returns])})
    if stricter:
        out["allOf"] = stricter
    return out


def _is_op(kind: EventKind, op: str) -> Json:
    cond: Json = {"properties": {"op": {"const": op}, "kind": {"const": kind.value}}, "required": ["op"]}
    if kind is not EventKind.CALL:  # an event without "kind" is a call
        cond["required"] = ["op", "kind"]
    return cond


def _is_kind(kind: EventKind) -> Json:
    cond: Json = {"properties": {"kind": {"const": kind.value}}}
    if kind is not EventKind.CALL:
        cond["required"] = ["kind"]
    return cond


def build_schema() -> Json:
    """The JSON Schema of one line of a canonical trace, from the spec."""
    header: Json = {
        "type": "object",
        "description": "The optional first line of a trace.",
        "required": ["format", "version"],
        "properties": {
            "format": {"const": FORMAT},
            "version": {"const": FORMAT_VERSION, "description": "The format version; readers reject newer ones."},
            "profile": {
                "description": "The kernel the trace was recorded on: a named profile or a version such as "
                               "6.1.0-28-amd64 (3.3 or later). The command line's --profile overrides it.",
                "anyOf": [{"enum": [p.name for p in PROFILES]}, {"type": "string", "pattern": VERSION_PATTERN},
                          {"type": "null"}]},
            "unobserved": {"description": "Ops the recorder cannot see: rules that depend on them are narrowed.",
                           "type": "array", "items": {"enum": sorted(OPS_BY_NAME)}},
            "partial": {"description": "The trace stops before the end of the run: end-of-trace obligations "
                                       "are not checked.", "type": "boolean"},
            "source": {"description": "Free-form provenance (recorder, kernel release, command); not interpreted.",
                       "type": "object"},
        },
    }
    kinds = [k.value for k in EventKind]
    event: Json = {
        "type": "object",
        "description": "One operation, recorded when it returned.",
        "required": ["op", "tid"],
        "properties": {
            "op": {"enum": sorted(OPS_BY_NAME)},
            "kind": {"enum": kinds, "default": EventKind.CALL.value},
            "tid": {"type": "integer", "description": "The thread that made the call (the kernel's pid)."},
            "pid": {"type": "integer", "description": "Its process (the kernel's tgid); defaults to tid."},
            "args": {"type": "object"},
            "ret": {"type": list(JSON_TYPES)},
            "ts": {"type": ["number", "null"]},
            "comm": {"type": ["string", "null"]},
            "cpu": {"type": ["integer", "null"]},
            "ctx": {"enum": [*K.CONTEXTS, None]},
        },
        "allOf": [
            *({"if": _is_kind(k), "then": {"properties": {"op": {"enum": [op for (kk, op) in GROUPS if kk is k]}}}}
              for k in EventKind),
            *({"if": _is_op(k, op), "then": {"$ref": f"#/$defs/op/{k.value}.{op}"}} for (k, op) in GROUPS),
        ],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "dmaspec canonical trace, version 1: one line",
        "description": "A line of a canonical dma-buf trace (JSON Lines): the header, which may only be the first "
                       "line, or an event. Generated from spec.SPEC by tests/test_schema.py; see traces/README.md.",
        "type": "object",
        "if": {"properties": {"format": {"const": FORMAT}}, "required": ["format"]},
        "then": {"$ref": "#/$defs/header"},
        "else": {"$ref": "#/$defs/event"},
        "$defs": {
            "header": header,
            "event": event,
            **{t.value: type_schema(t) for t in ParamType},
            "op": {f"{k.value}.{op}": op_schema(k, op, g) for (k, op), g in GROUPS.items()},
        },
    }


def schema_text() -> str:
    return json.dumps(build_schema(), indent=2) + "\n"


# --------------------------------------------------------------------------------------
# The README's operation table, built from the spec
# --------------------------------------------------------------------------------------

def _v(v: tuple[int, int]) -> str:
    return f"{v[0]}.{v[1]}"


def kernels_cell(group: tuple[Action, ...]) -> str:
    """The kernels an op exists in: ``3.4+``, ``3.4–5.5`` (until is exclusive), and feature-only profiles."""
    plain = sorted((a for a in group if not a.features), key=lambda a: a.since)
    parts: list[str] = []
    since: tuple[int, int] | None = None
    until: tuple[int, int] | None = None
    if plain:
        since, until = plain[0].since, plain[0].until
        for a in plain[1:]:
            assert until is None or a.since <= until, f"{a.name}: a gap in its kernel versions"
            until = None if until is None or a.until is None else max(until, a.until)
        assert until is None or until[1] > 0
        parts.append(f"{_v(since)}+" if until is None else f"{_v(since)}–{until[0]}.{until[1] - 1}")

    def in_range(v: tuple[int, int]) -> bool:
        return since is not None and since <= v and (until is None or v < until)

    parts += [p.name for p in PROFILES
              if p.features and any(p.admits_action(a) for a in group) and not in_range(p.version)]
    return "; ".join(parts)


def returns_cell(group: tuple[Action, ...]) -> str:
    base = {a.returns for a in group if a.when is None}
    assert len(base) == 1, f"{group[0].op}: fallback variants disagree on their return"
    [fallback] = base
    special: dict[Returns, list[str]] = {}
    for a in group:
        if a.when is not None and a.returns is not fallback:
            special.setdefault(a.returns, []).append(describe_when(a.when))
    name = {Returns.NOTHING: "—"}
    if not special:
        return name.get(fallback, fallback.value)
    parts = [f"{name.get(r, r.value)} if {' or '.join(ws)}" for r, ws in special.items()]
    return ", ".join(parts) + f", else {name.get(fallback, fallback.value)}"


def args_cell(kind: EventKind, op: str) -> str:
    params = PARAMS[(kind, op)]
    return ", ".join(f"`{n}{'' if req else '?'}: {t.value}`" for n, (t, req) in params.items()) or "—"


def op_table() -> list[tuple[str, str, str, str, str]]:
    """(op, kind, arguments, returns, kernels) for every op, in spec order."""
    return [(f"`{op}`", k.value, args_cell(k, op), returns_cell(g), kernels_cell(g)) for (k, op), g in GROUPS.items()]


TABLE_HEAD = "| Op | Kind | Arguments | Returns | Kernels | Description |"


def readme_table(text: str) -> list[list[str]]:
    """The rows of the README's operation table, as cells."""
    lines = text.splitlines()
    start = lines.index(TABLE_HEAD) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def render_table(docs: dict[str, str]) -> str:
    out = [TABLE_HEAD, "|---|---|---|---|---|---|"]
    for (op, kind, args, ret, kern), ((_k, _op), g) in zip(op_table(), GROUPS.items(), strict=True):
        doc = docs.get(f"{op} {kind}") or next((a.doc for a in g if a.doc), "")
        out.append(f"| {op} | {kind} | {args} | {ret} | {kern} | {doc} |")
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Reading the corpus, and asking the reader
# --------------------------------------------------------------------------------------



def _load_schema() -> Json:
    if not os.path.exists(SCHEMA_PATH):
        return {}
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        schema: Json = json.load(f)
    return schema


SCHEMA = _load_schema()
VALIDATOR = Draft202012Validator(SCHEMA)


# The canonical corpora: the per-event rules' (ok, bad) and the whole-trace analyses' ({ok,bad} below each).
CORPORA = ("ok", "bad", "lockorder", "races", "predict", "fencewait")


CANONICAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".ndjson")


def corpus_files(canonical: bool = True) -> list[str]:
    """The corpora's traces in the canonical format, or (``canonical=False``) its recordings in another one (ftrace
    text, strace), which the checker reads through their conversion."""
    out: list[str] = []
    for sub in CORPORA:
        for root, _dirs, files in os.walk(os.path.join(TRACES, sub)):
            out += [os.path.join(root, f) for f in files
                    if f.endswith(TRACE_SUFFIXES) and f.endswith(CANONICAL_SUFFIXES) == canonical]
    return sorted(out)


def trace_files() -> list[str]:
    return corpus_files()


def trace_lines(path: str) -> list[tuple[int, bytes]]:
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [(n, raw) for n, raw in enumerate(data.split(b"\n"), 1) if raw.strip()]


def _profiles_for(kind: EventKind, op: str) -> list[Profile]:
    """A profile in which each variant of the op exists."""
    return [Profile(f"t{i}", a.since, a.features, "") for i, a in enumerate(GROUPS[(kind, op)])]


def reader_accepts(obj: Json) -> bool:
    """Whether checker.trace accepts the line (its ret checked under every kernel the op exists in)."""
    try:
        if is_header(obj):
            parse_header(obj, "t")
            return True
        ev = validate(obj, "t", 1)
        for prof in _profiles_for(ev.kind, ev.op):
            action, _ = select(ev, prof)
            if action is not None:
                event_ret(ev, action, "t")
    except InputError:
        return False
    return True


def schema_errors(obj: object) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<line>'}: {e.message}" for e in VALIDATOR.iter_errors(obj)]


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------

def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_file_is_generated_from_the_spec() -> None:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        text = f.read()
    assert text == schema_text(), "stale schema: run `python -m tests.test_schema --write`"


def test_schema_names_every_op() -> None:
    assert set(SCHEMA["$defs"]["event"]["properties"]["op"]["enum"]) == {a.op for a in SPEC.actions}
    assert set(SCHEMA["$defs"]["header"]["properties"]["unobserved"]["items"]["enum"]) == set(OPS_BY_NAME)
    assert set(SCHEMA["$defs"]["op"]) == {f"{a.kind.value}.{a.op}" for a in SPEC.actions}


def test_every_corpus_line_validates() -> None:
    """Every line of every trace of the canonical corpora (CORPORA; blank lines are not lines of a trace)."""
    problems: list[str] = []
    files = trace_files()
    for path in files:
        rel = os.path.relpath(path, ROOT)
        for i, (n, raw) in enumerate(trace_lines(path)):
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                problems.append(f"{rel}:{n}: not JSON: {e}")
                continue
            if is_header(obj) and i > 0:
                problems.append(f"{rel}:{n}: a header is only allowed as the first line")
            problems += [f"{rel}:{n}: {msg}" for msg in schema_errors(obj)]
    assert not problems, f"{len(problems)} problem(s) in {len(files)} traces:\n" + "\n".join(problems[:50])


def test_every_recording_in_the_corpora_converts_to_lines_that_validate() -> None:
    """The corpora's ftrace and strace recordings: their conversion, header and events, as ``dmaspec convert``
    writes it."""
    from checker.readers import convert, header_line

    files = corpus_files(canonical=False)
    assert files  # traces/fencewait holds ftrace text
    problems: list[str] = []
    for path in files:
        rel = os.path.relpath(path, ROOT)
        with open(path, "rb") as f:
            conversion = convert(f, path)  # type: ignore[arg-type]
            problems += [f"{rel}: header: {msg}" for msg in
                         schema_errors(orjson.loads(header_line(conversion.header, conversion.format, path)))]
            events = list(conversion.events)
        assert events, rel
        problems += [f"{rel}:{n}: {msg}" for n, obj in events for msg in schema_errors(obj)]
    assert not problems, "\n".join(problems[:50])


SAMPLE: dict[ParamType, Value] = {
    ParamType.HANDLE: "0xffff888004a1c000", ParamType.INT: 1, ParamType.STR: "x",
    ParamType.DIRECTION: "DMA_BIDIRECTIONAL", ParamType.IOCTL: "DMA_BUF_IOCTL_SYNC", ParamType.WHENCE: "SEEK_SET",
    ParamType.ACCESS: "rw", ParamType.FCNTL: "F_GETFD",
}
OTHER_SPELLINGS: dict[ParamType, list[Any]] = {
    ParamType.HANDLE: [0xFFFF888004A1C000, "b1", -22], ParamType.INT: [-1, 0],
    ParamType.STR: [""], ParamType.DIRECTION: [0, 3, "DMA_NONE"],
    ParamType.IOCTL: [0x40086200, "0x40086200", "DMA_BUF_SET_NAME", "SOME_DRIVER_IOCTL", 0xC0086202],
    ParamType.WHENCE: [2, "SEEK_END", 4], ParamType.ACCESS: ["read", "write", 1, 3],
    ParamType.FCNTL: [1030, "F_SETFD"],
}
WRONG: dict[ParamType, list[Any]] = {
    ParamType.HANDLE: [True, 1.5, [], {}], ParamType.INT: ["1", 1.5, True, [1]], ParamType.STR: [1, True, []],
    ParamType.DIRECTION: ["DMA_SIDEWAYS", "dma_to_device", True, 1.5], ParamType.IOCTL: ["0xZZ", True, 1.5, []],
    ParamType.WHENCE: ["SEEK_FOO", True, 1.5], ParamType.ACCESS: ["readwrite", True, 1.5, ""],
    ParamType.FCNTL: ["F_NOPE", True, 1.5],
}
# Accepted by the reader, rejected by the schema on purpose (traces/README.md says why).
OUT_OF_RANGE: dict[ParamType, list[Any]] = {ParamType.DIRECTION: [4, -1], ParamType.ACCESS: [0, 4]}
SAMPLE_RET: dict[Returns, Value] = {Returns.HANDLE: "0xffff888004a1d000", Returns.NUMBER: 3, Returns.INT: 0}


def _minimal(a: Action, *, optional: bool = False) -> Json:
    params = PARAMS[(a.kind, a.op)]
    args: Json = {n: SAMPLE[t] for n, (t, req) in params.items() if req or optional}
    w = a.when
    if isinstance(w, Cmp) and isinstance(w.left, Arg) and isinstance(w.right, Const):
        args[w.left.name] = w.right.value
    ev: Json = {"op": a.op, "tid": 1, "args": args}
    if a.kind is not EventKind.CALL:
        ev["kind"] = a.kind.value
    if a.returns in SAMPLE_RET:
        ev["ret"] = SAMPLE_RET[a.returns]
    return ev


def _agree(obj: Json, expect: bool) -> None:
    errors = schema_errors(obj)
    assert (not errors) == expect, f"schema {'rejects' if errors else 'accepts'} {obj}: {errors}"
    assert reader_accepts(obj) == expect, f"reader {'accepts' if not expect else 'rejects'} {obj}"


@pytest.mark.parametrize("action", SPEC.actions, ids=lambda a: a.name)
def test_schema_and_reader_agree_on_each_op(action: Action) -> None:
    params = PARAMS[(action.kind, action.op)]
    good = _minimal(action)
    _agree(good, True)
    full = _minimal(action, optional=True)
    _agree(full, True)
    _agree({**full, "args": {**full["args"], "x_recorder_note": [1, 2]}}, True)  # undeclared args are ignored
    _agree({**full, "args": {**full["args"], **{n: None for n, (_t, req) in params.items() if not req}}}, True)
    if action.kind is EventKind.CALL:
        _agree({**good, "kind": "call"}, True)
    for name, (t, req) in params.items():
        if action.when is not None and isinstance(action.when, Cmp) and action.when.left == Arg(name):
            continue
        for v in OTHER_SPELLINGS[t]:
            _agree({**full, "args": {**full["args"], name: v}}, True)
        for v in WRONG[t]:
            _agree({**full, "args": {**full["args"], name: v}}, False)
        for v in OUT_OF_RANGE.get(t, []):
            _agree({**full, "args": {**full["args"], name: v}}, False)
        if req:
            _agree({**good, "args": {k: v for k, v in good["args"].items() if k != name}}, False)
            _agree({**good, "args": {**good["args"], name: None}}, False)
    if RET[action.returns][0]:
        _agree({k: v for k, v in good.items() if k != "ret"}, False)
        _agree({**good, "ret": None}, False)
        _agree({**good, "ret": -22}, True)
    if action.returns is Returns.NUMBER:
        _agree({**good, "ret": "0x3"}, False)
    if action.returns is Returns.INT:
        _agree({**good, "ret": "0"}, False)


COMMON_BAD: list[tuple[str, Json]] = [
    ("missing tid", {"op": "dma_buf_put", "args": {"dmabuf": "b1"}}),
    ("tid a string", {"op": "dma_buf_put", "tid": "1", "args": {"dmabuf": "b1"}}),
    ("tid a boolean", {"op": "dma_buf_put", "tid": True, "args": {"dmabuf": "b1"}}),
    ("pid null", {"op": "dma_buf_put", "tid": 1, "pid": None, "args": {"dmabuf": "b1"}}),
    ("missing op", {"tid": 1, "args": {"dmabuf": "b1"}}),
    ("unknown op", {"op": "dma_buf_frobnicate", "tid": 1, "args": {}}),
    ("op of another kind", {"op": "close", "tid": 1, "args": {"fd": 3}}),
    ("callback as a call", {"op": "map_dma_buf", "tid": 1, "args": {}}),
    ("unknown kind", {"op": "dma_buf_put", "kind": "upcall", "tid": 1, "args": {"dmabuf": "b1"}}),
    ("kind null", {"op": "dma_buf_put", "kind": None, "tid": 1, "args": {"dmabuf": "b1"}}),
    ("args a list", {"op": "dma_buf_put", "tid": 1, "args": ["b1"]}),
    ("args missing", {"op": "dma_buf_put", "tid": 1}),
    ("handle arg a boolean", {"op": "dma_buf_put", "tid": 1, "args": {"dmabuf": True}}),
    ("int arg a string", {"op": "dma_buf_get", "tid": 1, "args": {"fd": "5"}, "ret": "b1"}),
    ("direction misspelt", {"op": "dma_buf_map_attachment", "tid": 1,
                            "args": {"attach": "a1", "direction": "DMA_TO_DEV"}, "ret": "s1"}),
    ("ctx unknown", {"op": "dma_buf_put", "tid": 1, "ctx": "nmi", "args": {"dmabuf": "b1"}}),
    ("ts a string", {"op": "dma_buf_put", "tid": 1, "ts": "12:00", "args": {"dmabuf": "b1"}}),
    ("cpu a float", {"op": "dma_buf_put", "tid": 1, "cpu": 1.5, "args": {"dmabuf": "b1"}}),
    ("comm a number", {"op": "dma_buf_put", "tid": 1, "comm": 7, "args": {"dmabuf": "b1"}}),
    ("ret a float", {"op": "dma_buf_put", "tid": 1, "args": {"dmabuf": "b1"}, "ret": 0.5}),
    ("ret a boolean", {"op": "dma_buf_put", "tid": 1, "args": {"dmabuf": "b1"}, "ret": False}),
    ("ret missing from export", {"op": "dma_buf_export", "tid": 1, "args": {}}),
    ("fcntl F_DUPFD without ret", {"op": "fcntl", "kind": "syscall", "tid": 1, "args": {"fd": 3, "cmd": 0}}),
    ("header version 2", {"format": FORMAT, "version": 2}),
    ("header version a string", {"format": FORMAT, "version": "1"}),
    ("header without version", {"format": FORMAT}),
    ("header profile too old", {"format": FORMAT, "version": 1, "profile": "2.6.32"}),
    ("header profile unknown", {"format": FORMAT, "version": 1, "profile": "linux"}),
    ("header unobserved unknown op", {"format": FORMAT, "version": 1, "unobserved": ["dma_buf_frob"]}),
    ("header unobserved a string", {"format": FORMAT, "version": 1, "unobserved": "get_dma_buf"}),
    ("header partial a string", {"format": FORMAT, "version": 1, "partial": "yes"}),
]
COMMON_GOOD: list[tuple[str, Json]] = [
    ("kind defaults to call", {"op": "dma_buf_put", "tid": 1, "args": {"dmabuf": "b1"}}),
    ("all event fields", {"op": "dma_buf_put", "kind": "call", "tid": 12, "pid": 10, "args": {"dmabuf": 4096},
                          "ret": None, "ts": 1.5e9, "comm": "kworker/0:1", "cpu": 3, "ctx": "softirq"}),
    ("null informational fields", {"op": "dma_buf_put", "tid": 1, "args": {"dmabuf": "b1"}, "ts": None,
                                   "comm": None, "cpu": None, "ctx": None}),
    ("unknown event field", {"op": "dma_buf_put", "tid": 1, "args": {"dmabuf": "b1"}, "x_stack": ["a", "b"]}),
    ("the same name, two kinds", {"op": "mmap", "kind": "callback", "tid": 1, "args": {}}),
    ("fcntl F_GETFD without ret", {"op": "fcntl", "kind": "syscall", "tid": 1, "args": {"fd": 3, "cmd": 1}}),
    ("minimal header", {"format": FORMAT, "version": 1}),
    ("full header", {"format": FORMAT, "version": 1, "profile": "6.1.0-28-amd64",
                     "unobserved": ["get_dma_buf", "mmap"], "partial": True, "source": {"recorder": "bpftrace"}}),
    ("named profile", {"format": FORMAT, "version": 1, "profile": "rfc-2012"}),
    ("null profile", {"format": FORMAT, "version": 1, "profile": None}),
    ("unknown header field", {"format": FORMAT, "version": 1, "x_host": "build-7"}),
]


@pytest.mark.parametrize(("what", "line"), COMMON_BAD, ids=[w for w, _ in COMMON_BAD])
def test_bad_line_is_rejected_by_schema_and_reader(what: str, line: Json) -> None:
    _agree(line, False)


@pytest.mark.parametrize(("what", "line"), COMMON_GOOD, ids=[w for w, _ in COMMON_GOOD])
def test_good_line_is_accepted_by_schema_and_reader(what: str, line: Json) -> None:
    _agree(line, True)


@pytest.mark.parametrize("version", ["3.3", "3.10", "03.3", "3.03", "4.0", "10.0", "6.1.0-28-amd64", "6.8+git",
                                     "6.1~rc1", "3.2", "3.0", "3.00", "2.6.32", "6", "6.x", "v6.1", "6.1.2.3",
                                     "6.1-", "latest", "rfc-2012", "4.6"])
def test_profile_pattern_matches_the_reader(version: str) -> None:
    try:
        find_profile(version)
        accepted = True
    except ValueError:
        accepted = False
    assert (not schema_errors({"format": FORMAT, "version": 1, "profile": version})) == accepted


def test_readme_table_lists_every_op() -> None:
    with open(README_PATH, encoding="utf-8") as f:
        rows = readme_table(f.read())
    listed = {(r[0].strip("`"), r[1]) for r in rows}
    assert listed == {(op, k.value) for (k, op) in GROUPS}, "README table and spec disagree on the ops"
    assert {op for op, _ in listed} == {a.op for a in SPEC.actions}
    for got, want in zip(rows, op_table(), strict=True):
        assert tuple(got[:5]) == want, f"stale README row for {want[0]}: run `python -m tests.test_schema --table`"
        assert got[5], f"{want[0]} has no description"


def test_readme_documents_every_field() -> None:
    with open(README_PATH, encoding="utf-8") as f:
        text = f.read()
    fields = ["format", "version", "profile", "unobserved", "partial", "source",
              "op", "kind", "tid", "pid", "args", "ret", "ts", "comm", "cpu", "ctx"]
    missing = [f for f in fields if f"| `{f}` |" not in text]
    assert not missing, f"README has no row for {missing}"
    for k in EventKind:
        assert f"`{k.value}`" in text


def _readme_example() -> list[bytes]:
    with open(README_PATH, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"## Example\n.*?```json\n(.*?)```", text, re.S)
    assert m, "README has no example trace"
    return [line.encode() for line in m.group(1).splitlines() if line.strip()]


def test_readme_example_validates_and_checks_clean() -> None:
    import io

    from checker.api import check_stream

    lines = _readme_example()
    assert is_header(orjson.loads(lines[0]))
    for raw in lines:
        assert not schema_errors(orjson.loads(raw)), raw
    for engine in ("compiled", "interpreter"):
        result = check_stream(io.BytesIO(b"\n".join(lines) + b"\n"), "README.md", engine=engine)
        assert result.findings == [] and not result.inconclusive and not result.ignored, result


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        os.makedirs(os.path.dirname(SCHEMA_PATH), exist_ok=True)
        with open(SCHEMA_PATH, "w", encoding="utf-8") as f:
            f.write(schema_text())
        print(f"wrote {os.path.relpath(SCHEMA_PATH)}")
        return 0
    if argv == ["--table"]:
        docs: dict[str, str] = {}
        if os.path.exists(README_PATH):
            with open(README_PATH, encoding="utf-8") as f:
                try:
                    docs = {f"{r[0]} {r[1]}": r[5] for r in readme_table(f.read())}
                except ValueError:
                    docs = {}
        print(render_table(docs))
        return 0
    print("usage: python -m tests.test_schema --write | --table", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
