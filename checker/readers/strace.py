"""strace output (``strace -f -tt -y`` and plainer): the system calls userspace makes on dma-buf fds.

Not yet written: this module is a placeholder that recognises nothing.
"""

from __future__ import annotations

from typing import IO

from checker.core import InputError
from checker.readers import Conversion, Reader


def sniff(head: bytes) -> bool:
    return False


def read(stream: IO[bytes], file: str, head: bytes) -> Conversion:
    raise InputError(file, 0, "strace output is not supported yet")


READER = Reader("strace", "strace -f output", sniff, read)
