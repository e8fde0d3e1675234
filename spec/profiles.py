"""Named kernel profiles: which rules and operations are in force.

A profile is a kernel version plus design features; rules and actions carry
the versions they hold in.  Any ``X.Y`` (or ``X.Y.Z``) version string is a
profile too, so a trace recorded on 6.1 can be checked with ``--profile 6.1``.
"""

from __future__ import annotations

import re

from spec.lang import Profile

LATEST_VERSION = (6, 18)

PROFILES: tuple[Profile, ...] = (
    Profile("rfc-2012", (3, 4), frozenset({"rfc2012"}),
            "Rob Clark's 2012 RFC (seed 003): userspace mmap bracketed by the PREPARE_ACCESS and FINISH_ACCESS "
            "ioctls, never merged; kernel CPU access with kmap as in 3.4"),
    Profile("rfc-2012-kds", (3, 4), frozenset({"rfc2012", "kds"}),
            "the 2012 RFC with PREPARE_ACCESS also used for synchronisation, as ARM's KDS proposed in the thread "
            "(seed 003): it sleeps while another process has the buffer prepared"),
    Profile("3.5", (3, 5), frozenset(),
            "kmap and kmap_atomic (3.4), vmap and the coherent userspace mmap of Vetter's design (seed 000)"),
    Profile("4.6", (4, 6), frozenset(), "DMA_BUF_IOCTL_SYNC brackets userspace CPU access; kmap_atomic still there"),
    Profile("5.7", (5, 7), frozenset(), "dynamic importers: pin/unpin and move_notify; kmap gone since 5.6"),
    Profile("6.2", (6, 2), frozenset(), "the dynamic locking convention: the reservation lock for map, unmap, "
            "pin, unpin, vmap and vunmap; _unlocked variants"),
    Profile("latest", LATEST_VERSION, frozenset(), f"Linux {LATEST_VERSION[0]}.{LATEST_VERSION[1]}: no sg_table "
            "caching (6.15), everything above"),
)

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.\d+)?(?:[-+~].*)?$")


def profile(name: str) -> Profile:
    """The profile called ``name``, or the one for kernel version ``name``.

    >>> profile("6.1.0-28-amd64").version
    (6, 1)
    """
    for p in PROFILES:
        if p.name == name:
            return p
    m = _VERSION.match(name)
    if m:
        version = (int(m.group(1)), int(m.group(2)))
        if version < (3, 3):
            raise ValueError(f"dma-buf appeared in Linux 3.3; there is no profile for {name}")
        return Profile(f"{version[0]}.{version[1]}", version, frozenset(), f"Linux {version[0]}.{version[1]}")
    names = ", ".join(p.name for p in PROFILES)
    raise ValueError(f"unknown profile {name!r}: use one of {names}, or a kernel version such as 6.1")
