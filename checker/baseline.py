"""Baselines: the findings a project already knows about, by fingerprint.

``dmaspec check --write-baseline FILE`` records the fingerprints of every
finding; ``--baseline FILE`` then reports only findings not in it, so CI
fails on new bugs while old ones are being fixed.  Fingerprints
(``checker.core.fingerprints``) do not depend on pointers, pids or times,
so the same bug in two runs matches.
"""

from __future__ import annotations

from typing import Any

import orjson

from checker.core import InputError, Result, fingerprints

FORMAT = "dmaspec-baseline"
VERSION = 1


def write(path: str, results: list[Result]) -> int:
    """Record every finding of ``results``; returns how many."""
    entries = [{"fingerprint": fp, "rule": f.rule, "file": r.file, "line": f.line}
               for r in results for f, fp in zip(r.findings, fingerprints(r), strict=True)]
    doc = {"format": FORMAT, "version": VERSION, "findings": entries}
    with open(path, "wb") as out:
        out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    return len(entries)


def load(path: str) -> frozenset[str]:
    """The fingerprints a baseline file records, or ``InputError`` saying what is wrong."""
    try:
        with open(path, "rb") as f:
            doc: Any = orjson.loads(f.read())
    except OSError as e:
        raise InputError(path, 0, f"cannot read the baseline: {e.strerror}") from None
    except orjson.JSONDecodeError:
        raise InputError(path, 0, "not a baseline: expected the JSON that --write-baseline writes") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("findings"), list):
        raise InputError(path, 0, "not a baseline: expected the JSON that --write-baseline writes")
    if doc.get("version", 0) > VERSION:
        raise InputError(path, 0, f"baseline version {doc.get('version')} is newer than this dmaspec reads")
    return frozenset(e["fingerprint"] for e in doc["findings"] if isinstance(e, dict) and "fingerprint" in e)


def apply(results: list[Result], known: frozenset[str]) -> None:
    """Drop the findings ``known`` lists from ``results``, counting them as suppressed."""
    for r in results:
        keep = [f for f, fp in zip(r.findings, fingerprints(r), strict=True) if fp not in known]
        r.suppressed += len(r.findings) - len(keep)
        r.findings = keep
