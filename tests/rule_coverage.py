"""Which rules a set of traces exercises: a Require of the rule was evaluated and held.

Used to show that every rule has a passing trace, not just a failing one.
"""

from __future__ import annotations

from checker.api import check_stream
from checker.engines import interpreter as interp
from spec.lint import walk_stmts
from spec.rules import PROFILE_OP


def rules_exercised(paths: list[str]) -> set[str]:
    seen: set[str] = set()
    original = interp.Interpreter._exec

    def spy(self: interp.Interpreter, s: object, env: object, end: bool) -> None:
        if isinstance(s, interp.Require) and s.rule in self.active:
            seen.add(s.rule)
        if isinstance(s, interp.ForEach) and self.tables[s.table]:
            # an obligation is exercised when there were objects to hold it to
            seen.update(r.rule for r in walk_stmts(s.body) if isinstance(r, interp.Require) and r.rule in self.active)
        original(self, s, env, end)  # type: ignore[arg-type]

    interp.Interpreter._exec = spy  # type: ignore[method-assign]
    try:
        for p in paths:
            with open(p, "rb") as f:
                if check_stream(f, p, engine="interpreter").events:
                    seen.add(PROFILE_OP)  # every event's op is checked against the profile
    finally:
        interp.Interpreter._exec = original  # type: ignore[method-assign]
    return seen
