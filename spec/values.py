"""How raw trace values become the model's values, per parameter type.

``normalize`` is the one place both engines (and every reader) turn what a
trace wrote into what the spec compares: direction names into numbers, ioctl
numbers into names, integer pointers into hex handle strings.  It raises
``ValueError`` with what was expected.
"""

from __future__ import annotations

from difflib import get_close_matches

from spec import kernel as K
from spec.lang import ParamType, Returns, Value

ERR_PTR_MIN = (1 << 64) - K.MAX_ERRNO
FCNTL_NAMES: dict[int, str] = {0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL",
                               1030: "F_DUPFD_CLOEXEC"}
_FCNTL_BY_NAME = {v: k for k, v in FCNTL_NAMES.items()}
EXPECTED: dict[ParamType, str] = {
    ParamType.HANDLE: "a handle (a string such as \"0xffff888004a1c000\", or an integer)",
    ParamType.INT: "an integer",
    ParamType.STR: "a string",
    ParamType.DIRECTION: "a dma_data_direction (DMA_BIDIRECTIONAL, DMA_TO_DEVICE, DMA_FROM_DEVICE, DMA_NONE, or 0-3)",
    ParamType.IOCTL: "an ioctl command (a name such as DMA_BUF_IOCTL_SYNC, or its number)",
    ParamType.WHENCE: "a whence (SEEK_SET, SEEK_CUR, SEEK_END, or a number)",
    ParamType.ACCESS: "an access mode: \"read\", \"write\" or \"rw\"",
    ParamType.FCNTL: "an fcntl command (F_DUPFD, F_DUPFD_CLOEXEC, F_SETFD, ... or its number)",
}


def handle(value: int | str) -> str:
    """A handle from a pointer value: strings as they are, integers as lowercase hex.

    >>> handle(0xFFFF888004A1C000), handle("buf1"), handle(-22)
    ('0xffff888004a1c000', 'buf1', '0xffffffffffffffea')
    """
    if isinstance(value, str):
        return value
    return hex(value & ((1 << 64) - 1)) if value < 0 else hex(value)


def _named(value: Value, names: dict[str, int], what: ParamType) -> int:
    if isinstance(value, bool):
        raise ValueError(EXPECTED[what])
    if isinstance(value, int):
        if what in (ParamType.DIRECTION, ParamType.ACCESS) and value not in names.values():
            raise ValueError(f"{EXPECTED[what]}, not {value}")
        return value
    if isinstance(value, str):
        if value in names:
            return names[value]
        close = get_close_matches(value, list(names), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"{EXPECTED[what]}, not {value!r}{hint}")
    raise ValueError(EXPECTED[what])


def normalize(type_: ParamType, value: Value) -> Value:
    """The model's value of an argument, or ``ValueError`` saying what was expected.

    >>> normalize(ParamType.DIRECTION, "DMA_TO_DEVICE"), normalize(ParamType.IOCTL, 0x40086200)
    (1, 'DMA_BUF_IOCTL_SYNC')
    """
    if type_ is ParamType.HANDLE:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(EXPECTED[type_])
        return handle(value)
    if isinstance(value, int) and not -(1 << 63) <= value < (1 << 64):
        raise ValueError(f"{EXPECTED[type_]} that fits in 64 bits")
    if type_ is ParamType.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(EXPECTED[type_])
        return value
    if type_ is ParamType.STR:
        if not isinstance(value, str):
            raise ValueError(EXPECTED[type_])
        return value
    if type_ is ParamType.DIRECTION:
        return _named(value, K.DIRECTIONS, type_)
    if type_ is ParamType.WHENCE:
        return _named(value, K.WHENCES, type_)
    if type_ is ParamType.ACCESS:
        return _named(value, K.ACCESS_NAMES, type_)
    if type_ is ParamType.IOCTL:
        if isinstance(value, str):
            if value.startswith("0x"):
                try:
                    value = int(value, 16)
                except ValueError:
                    raise ValueError(EXPECTED[type_]) from None
            else:
                return K.IOCTL_ALIASES.get(value, value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(EXPECTED[type_])
        return K.IOCTL_NAMES.get(value, hex(value))
    if type_ is ParamType.FCNTL:
        if isinstance(value, str):
            if value in _FCNTL_BY_NAME:
                return value
            raise ValueError(f"{EXPECTED[type_]}, not {value!r}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(EXPECTED[type_])
        return FCNTL_NAMES.get(value, f"F_{value}")
    raise AssertionError(type_)


def normalize_ret(returns: Returns, value: Value) -> Value:
    """The model's return value: handles as strings, failures as negative ints."""
    if returns is Returns.NOTHING:
        return value
    if value is None:
        if returns is Returns.INT:
            return None
        raise ValueError("a return value (\"ret\"): this call's result names an object")
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("ret: a handle string, a number, or a negative errno")
    if returns is Returns.HANDLE:
        if isinstance(value, int):
            if value >= ERR_PTR_MIN:  # an unsigned ERR_PTR(): a failure
                return value - (1 << 64)
            return value if value < 0 else handle(value)
        if K.is_err_ptr(value):  # a failed call's ERR_PTR(), as a recorder printed it
            return int(value, 0) - (1 << 64) if value.startswith("0x") else int(value)
        return value
    if isinstance(value, str):
        raise ValueError("ret: a number or a negative errno")
    return value
