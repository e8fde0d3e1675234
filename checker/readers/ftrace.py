"""ftrace text: placeholder.

Not yet written: this module is a placeholder that recognises nothing.
"""

from __future__ import annotations

from typing import IO

from checker.core import InputError
from checker.readers import Conversion, Reader


def sniff(head: bytes) -> bool:
    return False


def read(stream: IO[bytes], file: str, head: bytes) -> Conversion:
    raise InputError(file, 0, "ftrace text is not supported yet")


READER = Reader("ftrace", "ftrace text", sniff, read)
