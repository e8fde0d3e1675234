"""The formal specification of the Linux dma-buf API, as data.

``SPEC`` holds the object tables, the rules, every operation with its
guards and effects, the end-of-trace obligations and the kernel profiles.
Engines in ``checker`` consume it; nothing here imports from ``checker``.

>>> from spec import SPEC
>>> SPEC.rule("MAP-DOUBLE-UNMAP").message
'an sg_table is unmapped twice'
"""

from __future__ import annotations

from spec.actions import ACTIONS, AT_END
from spec.lang import Spec
from spec.lint import lint
from spec.model import PROCEDURES, TABLES
from spec.profiles import PROFILES, profile
from spec.rules import RULES

SPEC = Spec(tables=TABLES, rules=RULES, actions=tuple(ACTIONS), procedures=PROCEDURES, at_end=AT_END,
            profiles=PROFILES)

_problems = lint(SPEC)
if _problems:  # pragma: no cover - a broken spec must not load
    raise ImportError("the dma-buf spec is inconsistent:\n  " + "\n  ".join(_problems))

__all__ = ["SPEC", "profile"]
