"""System calls on dma-buf fds as canonical events: the one model of fd tables that every reader shares.

A reader that sees userspace's system calls (strace; ftrace's ``syscalls:*``
tracepoints) keeps, per process, which fds hold which dma-buf and with which
close-on-exec flag, and which mapping addresses map one: the view the checker
will build from the events.  The functions here take that table and one call
(its fd arguments and its result) and give the canonical events it becomes,
changing the table as the kernel changed the process, or the reason it is not
about dma-buf (which the reader counts).

>>> t = Table()
>>> t.put_fd(5, "buf", cloexec=True)
>>> dup_to(t, "dup2", 5, 20, None, 20)
[('dup2', {'fd': 5, 'newfd': 20}, 20)]
>>> fcntl(t, 20, 2, 1, 0)  # F_SETFD FD_CLOEXEC
[('fcntl', {'fd': 20, 'cmd': 'F_SETFD', 'arg': 1}, 0)]
>>> close(t, 7, 0)
'fd not known to be a dma-buf'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spec import kernel as K

#: What a call becomes: (op, args, ret), every one of kind ``syscall``.
Out = tuple[str, dict[str, Any], int | str | None]

# Why a call is not converted (the readers count these).
NOT_DMABUF_FD = "fd not known to be a dma-buf"
NOT_ABOUT = "syscall not about dma-buf"
NO_RESULT = "result not shown (= ?)"
NOT_A_MAPPING = "address not a known dma-buf mapping"
VFS_IOCTL = "ioctl the VFS answers itself (never reaches the dma-buf)"

FCNTL_CMDS = {"F_DUPFD": 0, "F_GETFD": 1, "F_SETFD": 2, "F_GETFL": 3, "F_SETFL": 4, "F_DUPFD_CLOEXEC": 1030}
FCNTL_NAMES = {v: k for k, v in FCNTL_CMDS.items()}

# clone flags that decide what the child shares (include/uapi/linux/sched.h)
CLONE_VM, CLONE_FILES, CLONE_VFORK, CLONE_THREAD = 0x100, 0x400, 0x4000, 0x10000

# ioctls fs/ioctl.c (do_vfs_ioctl) answers for every file before its own ioctl: the dma-buf core never sees them.
# FIOCLEX and FIONCLEX set and clear close-on-exec, as fcntl(F_SETFD) does.
FIONBIO, FIONCLEX, FIOCLEX, FIOASYNC, FIOQSIZE = 0x5421, 0x5450, 0x5451, 0x5452, 0x5460
VFS_IOCTLS: dict[str, int] = {"FIONBIO": FIONBIO, "FIONCLEX": FIONCLEX, "FIOCLEX": FIOCLEX, "FIOASYNC": FIOASYNC,
                              "FIOQSIZE": FIOQSIZE}
VFS_IOCTL_NUMBERS = frozenset(VFS_IOCTLS.values())


@dataclass
class Table:
    """One process's dma-buf fds (fd -> buffer handle, close-on-exec) and mappings (address -> buffer handle).

    The calls below change it through ``put_fd``, ``drop_fd``, ``put_map`` and ``drop_map``, so a reader that
    indexes the tables by buffer can override those four.
    """

    fds: dict[int, tuple[str, bool]] = field(default_factory=dict)
    maps: dict[str, str] = field(default_factory=dict)

    def put_fd(self, fd: int, buffer: str, cloexec: bool) -> None:
        self.fds[fd] = (buffer, cloexec)

    def drop_fd(self, fd: int) -> None:
        del self.fds[fd]

    def put_map(self, addr: str, buffer: str) -> None:
        self.maps[addr] = buffer

    def drop_map(self, addr: str) -> None:
        del self.maps[addr]

    def exec(self) -> None:
        """A successful execve: fds with close-on-exec are closed, every mapping goes."""
        for fd in [fd for fd, (_, cloexec) in self.fds.items() if cloexec]:
            self.drop_fd(fd)
        for addr in list(self.maps):
            self.drop_map(addr)

    def clear(self) -> None:
        """The process exited: the kernel closed every fd and mapping."""
        for fd in list(self.fds):
            self.drop_fd(fd)
        for addr in list(self.maps):
            self.drop_map(addr)


def address(value: int) -> str:
    """A userspace address as the canonical handle of a mapping: 0x-prefixed lowercase hex, 64 bits."""
    return f"0x{value & ((1 << 64) - 1):x}"


def close(t: Table, fd: int, ret: int | None, every: bool = False) -> list[Out] | str:
    """``close(fd)``: closing a dma-buf fd drops its reference, unless it failed with ``-EBADF``.

    ``every`` (here and below): the call becomes its event on any fd, not only on one the table knows holds a
    dma-buf (what ``checker.join`` asks of the strace reader: the kernel trace may know the fd is one).
    """
    if fd not in t.fds and not every:
        return NOT_DMABUF_FD
    if ret != -K.EBADF and fd in t.fds:
        t.drop_fd(fd)
    return [("close", {"fd": fd}, ret)]


def dup(t: Table, fd: int, ret: int | None, every: bool = False) -> list[Out] | str:
    """``dup(fd)``: a new fd (``ret``) for the same buffer, without close-on-exec."""
    if fd not in t.fds and not every:
        return NOT_DMABUF_FD
    if ret is None:
        return NO_RESULT
    if ret >= 0 and fd in t.fds:
        t.put_fd(ret, t.fds[fd][0], False)
    return [("dup", {"fd": fd}, ret)]


def dup_to(t: Table, name: str, fd: int, newfd: int, flags: int | None, ret: int | None,
           every: bool = False) -> list[Out] | str:
    """``dup2(fd, newfd)`` and ``dup3(fd, newfd, flags)``: what was open at ``newfd`` is closed first.

    >>> dup_to(Table(), "dup2", 3, 9, None, 9, every=True)
    [('dup2', {'fd': 3, 'newfd': 9}, 9)]
    """
    ok = ret is not None and ret >= 0
    args: dict[str, Any] = {"fd": fd, "newfd": newfd}
    if name == "dup3":
        args["flags"] = flags or 0
    if fd not in t.fds:
        out: list[Out] = []
        if newfd in t.fds and ok and fd != newfd:
            t.drop_fd(newfd)  # duplicating another file onto a dma-buf fd closes it
            out.append(("close", {"fd": newfd}, 0))
        if every:
            out.append((name, args, ret))
        return out or NOT_DMABUF_FD
    if ok and fd != newfd:
        t.put_fd(newfd, t.fds[fd][0], bool((flags or 0) & K.O_CLOEXEC))
    return [(name, args, ret)]


def fcntl(t: Table, fd: int, cmd: int | str, arg: int | None, ret: int | None,
          every: bool = False) -> list[Out] | str:
    """``fcntl``: ``F_DUPFD`` and ``F_DUPFD_CLOEXEC`` duplicate, ``F_SETFD`` sets close-on-exec; nothing else."""
    name = FCNTL_NAMES.get(cmd, str(cmd)) if isinstance(cmd, int) else cmd
    if name not in ("F_DUPFD", "F_DUPFD_CLOEXEC", "F_SETFD"):
        return NOT_ABOUT
    if fd not in t.fds and not every:
        return NOT_DMABUF_FD
    buffer = t.fds[fd][0] if fd in t.fds else None
    if name == "F_SETFD":
        arg = arg or 0
        if (ret is None or ret >= 0) and buffer is not None:
            t.put_fd(fd, buffer, bool(arg & K.FD_CLOEXEC))
        return [("fcntl", {"fd": fd, "cmd": name, "arg": arg}, ret)]
    if ret is None:
        return NO_RESULT
    if ret >= 0 and buffer is not None:
        t.put_fd(ret, buffer, name == "F_DUPFD_CLOEXEC")
    return [("fcntl", {"fd": fd, "cmd": name, "arg": arg or 0}, ret)]


def vfs_ioctl(t: Table, fd: int, cmd: int, ret: int | None, every: bool = False) -> list[Out] | str | None:
    """An ioctl the VFS answers before the file's own: ``FIOCLEX``/``FIONCLEX`` are ``fcntl(F_SETFD)``.

    None when ``cmd`` is not one of them (the dma-buf core sees it).
    """
    if cmd not in VFS_IOCTL_NUMBERS:
        return None
    if fd not in t.fds and not every:
        return NOT_DMABUF_FD
    if cmd in (FIOCLEX, FIONCLEX):
        return fcntl(t, fd, "F_SETFD", K.FD_CLOEXEC if cmd == FIOCLEX else 0, ret, every)
    return VFS_IOCTL


def mapped(t: Table, fd: int, addr: str) -> None:
    """``mmap`` of fd ``fd`` succeeded at ``addr``: if ``fd`` holds a dma-buf, the mapping holds the buffer."""
    if fd in t.fds:
        t.put_map(addr, t.fds[fd][0])


def munmap(t: Table, addr: str, length: int | None, ret: int | None, every: bool = False) -> list[Out] | str:
    """``munmap(addr, length)`` of a dma-buf mapping, by the address its ``mmap`` returned."""
    if addr not in t.maps and not every:
        return NOT_A_MAPPING
    if (ret is None or ret >= 0) and addr in t.maps:
        t.drop_map(addr)
    args: dict[str, Any] = {"addr": addr}
    if length is not None:
        args["length"] = length
    return [("munmap", args, ret)]


def clone_shares(flags: int) -> str:
    """What a ``clone`` child shares with its parent: ``"thread"``, ``"files"`` (the fd table only) or nothing.

    >>> clone_shares(0x1200011), clone_shares(0x3d0f00), clone_shares(CLONE_VM | CLONE_FILES)
    ('', 'thread', 'files')
    """
    if flags & CLONE_THREAD:
        return "thread"
    if flags & CLONE_FILES:
        return "files"
    return ""
