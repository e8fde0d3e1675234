"""Exports of the spec to other tools' languages, each derived from the spec's data.

- ``checker.export.promela``: a bounded configuration as a Promela model for
  the SPIN model checker (``promela(config)``).
- ``checker.export.rvdot``: the automaton of one object kind in the ``.dot``
  shape the Linux kernel's runtime-verification generator reads
  (``automaton_dot("attachment", profile)``).

What this package does not do: run the tools (the tests and a benchmark do).
"""

from checker.export.promela import ExportError, promela, rule_indices
from checker.export.rvdot import KINDS, automaton_dot

__all__ = ["KINDS", "ExportError", "automaton_dot", "promela", "rule_indices"]
