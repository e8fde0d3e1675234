"""``python -m checker`` is the ``dmaspec`` command."""

from checker.cli import entry

entry()
