"""Constants of the kernel's dma-buf interfaces, and how trace values map to them.

The numbers come from ``include/uapi/linux/dma-buf.h``,
``include/linux/dma-direction.h`` and the generic ``_IOC`` encoding; the RFC
ioctls from Rob Clark's 2012 patch (seed 003).  This module only names values;
rules live in the other ``spec`` modules.
"""

from __future__ import annotations

# enum dma_data_direction (include/linux/dma-direction.h)
DMA_BIDIRECTIONAL = 0
DMA_TO_DEVICE = 1
DMA_FROM_DEVICE = 2
DMA_NONE = 3
DIRECTIONS: dict[str, int] = {
    "DMA_BIDIRECTIONAL": DMA_BIDIRECTIONAL,
    "DMA_TO_DEVICE": DMA_TO_DEVICE,
    "DMA_FROM_DEVICE": DMA_FROM_DEVICE,
    "DMA_NONE": DMA_NONE,
}
DIRECTION_NAMES: dict[int, str] = {v: k for k, v in DIRECTIONS.items()}

# struct dma_buf_sync flags (include/uapi/linux/dma-buf.h)
SYNC_READ = 1
SYNC_WRITE = 2
SYNC_RW = SYNC_READ | SYNC_WRITE
SYNC_START = 0
SYNC_END = 4
SYNC_VALID_FLAGS_MASK = SYNC_RW | SYNC_END
SYNC_FLAG_NAMES: dict[str, int] = {
    "DMA_BUF_SYNC_READ": SYNC_READ,
    "DMA_BUF_SYNC_WRITE": SYNC_WRITE,
    "DMA_BUF_SYNC_RW": SYNC_RW,
    "DMA_BUF_SYNC_START": SYNC_START,
    "DMA_BUF_SYNC_END": SYNC_END,
}

# Access modes of the annotation events, as sets of "read"/"write" bits.
ACCESS_READ = 1
ACCESS_WRITE = 2
ACCESS_NAMES: dict[str, int] = {"read": ACCESS_READ, "write": ACCESS_WRITE, "rw": ACCESS_READ | ACCESS_WRITE}


def _ioc(direction: int, type_: str, nr: int, size: int) -> int:
    """The generic ``_IOC`` encoding used by x86-64 and arm64."""
    return (direction << 30) | (size << 16) | (ord(type_) << 8) | nr


_IOC_NONE, _IOC_WRITE, _IOC_READ = 0, 1, 2

# ioctl commands on a dma-buf fd, by the names userspace uses
IOCTLS: dict[str, int] = {
    "DMA_BUF_IOCTL_SYNC": _ioc(_IOC_WRITE, "b", 0, 8),
    "DMA_BUF_SET_NAME_A": _ioc(_IOC_WRITE, "b", 1, 4),
    "DMA_BUF_SET_NAME_B": _ioc(_IOC_WRITE, "b", 1, 8),
    "DMA_BUF_IOCTL_EXPORT_SYNC_FILE": _ioc(_IOC_READ | _IOC_WRITE, "b", 2, 8),
    "DMA_BUF_IOCTL_IMPORT_SYNC_FILE": _ioc(_IOC_WRITE, "b", 3, 8),
    # Rob Clark's 2012 RFC (seed 003), never merged: _IO('Z', 0) and _IO('Z', 1)
    "DMA_BUF_IOCTL_PREPARE_ACCESS": _ioc(_IOC_NONE, "Z", 0, 0),
    "DMA_BUF_IOCTL_FINISH_ACCESS": _ioc(_IOC_NONE, "Z", 1, 0),
}
IOCTL_NAMES: dict[int, str] = {v: k for k, v in IOCTLS.items()}
# DMA_BUF_SET_NAME is _IOW('b', 1, const char *): the same number as _A or _B
# depending on the pointer size; on 64-bit kernels it equals _B.
IOCTL_ALIASES: dict[str, str] = {"DMA_BUF_SET_NAME": "DMA_BUF_SET_NAME_B"}

SET_NAME_IOCTLS = frozenset({"DMA_BUF_SET_NAME_A", "DMA_BUF_SET_NAME_B"})
SYNC_FILE_IOCTLS = frozenset({"DMA_BUF_IOCTL_EXPORT_SYNC_FILE", "DMA_BUF_IOCTL_IMPORT_SYNC_FILE"})
RFC_IOCTLS = frozenset({"DMA_BUF_IOCTL_PREPARE_ACCESS", "DMA_BUF_IOCTL_FINISH_ACCESS"})

# lseek whence
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2
WHENCES: dict[str, int] = {
    "SEEK_SET": SEEK_SET, "SEEK_CUR": SEEK_CUR, "SEEK_END": SEEK_END, "SEEK_DATA": 3, "SEEK_HOLE": 4,
}

# open flags
O_CLOEXEC = 0o2000000
FD_CLOEXEC = 1

PAGE_SIZE = 4096

# errno values a trace may show (negated in return values)
EPERM, ENOENT, EINTR, EBADF, EAGAIN, ENOMEM, EFAULT, EBUSY, EINVAL = 1, 2, 4, 9, 11, 12, 14, 16, 22
ENOTTY, ESPIPE, EDEADLK, EALREADY, ENODEV, EOVERFLOW = 25, 29, 35, 114, 19, 75
ERESTARTSYS = 512
ERRNO_NAMES: dict[int, str] = {
    EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EBADF: "EBADF", EAGAIN: "EAGAIN",
    ENOMEM: "ENOMEM", EFAULT: "EFAULT", EBUSY: "EBUSY", EINVAL: "EINVAL", ENOTTY: "ENOTTY",
    ESPIPE: "ESPIPE", EDEADLK: "EDEADLK", EALREADY: "EALREADY", ENODEV: "ENODEV",
    EOVERFLOW: "EOVERFLOW", ERESTARTSYS: "ERESTARTSYS",
}

# An ERR_PTR() is a pointer in the last page of the address space: -4095..-1.
MAX_ERRNO = 4095

# Execution contexts of the canonical format's `ctx` field; the last three
# may not sleep.
CONTEXTS = ("task", "softirq", "hardirq", "atomic")
ATOMIC_CONTEXTS = frozenset({"softirq", "hardirq", "atomic"})

# The calls that signal a fence, and those that wait for one (dma_fence_wait is an inline over
# dma_fence_wait_timeout): the spec's actions, and what the analyses and readers look for.
FENCE_SIGNALS = ("dma_fence_signal", "dma_fence_signal_locked", "dma_fence_signal_timestamp",
                 "dma_fence_signal_timestamp_locked")
FENCE_WAITS = ("dma_fence_wait", "dma_fence_wait_timeout")


def is_err_ptr(handle: str) -> bool:
    """Whether a handle string spells an ``ERR_PTR()`` (e.g. ``0xfffffffffffffff0``).

    >>> is_err_ptr("0xffffffffffffffea"), is_err_ptr("0xffff888004a1c000"), is_err_ptr("buf1")
    (True, False, False)
    """
    if not handle.startswith(("0x", "-")):
        return False
    try:
        value = int(handle, 0)
    except ValueError:
        return False
    if value < 0:
        return value >= -MAX_ERRNO
    return value >= (1 << 64) - MAX_ERRNO and value < (1 << 64)
