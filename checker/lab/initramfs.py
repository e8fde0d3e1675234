"""The lab's initramfs: busybox, the modules a run needs, the recorder and the user's program.

The archive is written here, in the kernel's ``newc`` cpio format
(Documentation/driver-api/early-userspace/buffer-format.rst), gzip-compressed;
no ``cpio`` tool is needed.  What goes in:

* ``/bin/busybox`` (a static build: ``busybox-static`` on Debian), whose
  applets ``/init`` installs as symlinks at boot;
* ``/init``, a shell script written by :func:`init_script`;
* ``/lab/modules/*.ko``: the modules the run asked for and everything they
  depend on, decompressed, in load order (``/lab/modules.list``).  The order
  comes from each module's own ``depends=`` entry in its ``.modinfo`` section,
  which is what ``depmod`` turns into ``modules.dep``; modules the kernel has
  built in (``modules.builtin``) are skipped;
* ``/lab/ftrace-setup.sh``: the project's own recorder (``traces/record/``),
  so a lab run records exactly the way a user on a board would;
* the program, under ``/lab/bin/``, with its shared libraries and ELF
  interpreter at their own paths when it is dynamically linked (found with
  ``ldd``), and any extra files.

>>> a = Archive()
>>> a.directory("lab")
>>> a.file("lab/hello", b"hi\\n", 0o644)
>>> data = a.finish()
>>> data[:6], data.count(b"TRAILER!!!")
(b'070701', 1)
"""

from __future__ import annotations

import dataclasses
import gzip
import lzma
import shlex
import shutil
import stat
import struct
import subprocess
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from checker.lab.kernels import Kernel, LabError

RECORDER = Path(__file__).resolve().parents[2] / "traces" / "record" / "ftrace-setup.sh"

# Where the init writes the program's exit status and the trace; the host reads these back.
STATUS_PREFIX = "dmaspec-lab:"
TRACE_BEGIN = "dmaspec-lab-trace-begin"
TRACE_END = "dmaspec-lab-trace-end"


class Archive:
    """A newc cpio archive built in memory, entry by entry."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._ino = 1
        self._names: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1) -> None:
        name = name.strip("/")
        if name in self._names:
            return
        self._names.add(name)
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        header = b"070701" + b"".join(b"%08x" % f for f in fields)
        self._ino += 1
        self._parts.append(header + encoded + b"\0" * (-(len(header) + len(encoded)) % 4))
        self._parts.append(data + b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self._entry("/".join(parts[:i]), stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name: str, data: bytes, perm: int = 0o755) -> None:
        parent = name.strip("/").rpartition("/")[0]
        if parent:
            self.directory(parent)
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        parent = name.strip("/").rpartition("/")[0]
        if parent:
            self.directory(parent)
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def finish(self) -> bytes:
        """The archive's bytes, trailer included (uncompressed)."""
        trailer = Archive()
        trailer._ino = 0
        trailer._entry("TRAILER!!!", 0)
        return b"".join(self._parts + trailer._parts)


# --- modules -------------------------------------------------------------------------------------

def _normal(name: str) -> str:
    return name.replace("-", "_")


def _module_stem(path: Path) -> str:
    name = path.name
    for suffix in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if name.endswith(suffix):
            return _normal(name[: -len(suffix)])
    return _normal(path.stem)


def read_module(path: Path) -> bytes:
    """A module's ELF bytes, decompressed from .xz, .zst or .gz as Debian ships them."""
    raw = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".gz"):
        return zlib.decompress(raw, 16 + zlib.MAX_WBITS)
    if path.name.endswith(".zst"):
        zstd = shutil.which("zstd")
        if not zstd:
            raise LabError(f"{path.name} is zstd-compressed and zstd is not installed", hint="apt-get install zstd")
        return subprocess.run([zstd, "-dc", str(path)], capture_output=True, check=True).stdout
    return raw


def modinfo(elf: bytes) -> dict[str, str]:
    """The key=value entries of an ELF module's ``.modinfo`` section (the last value wins)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise LabError("not a 64-bit ELF kernel module")
    endian = "<" if elf[5] == 1 else ">"
    shoff, = struct.unpack_from(endian + "Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", elf, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(endian + "IIQQQQ", elf, shoff + i * shentsize)
        return name, offset, size

    _, str_off, _ = section(shstrndx)
    info: dict[str, str] = {}
    for i in range(shnum):
        name_off, offset, size = section(i)
        end = elf.index(b"\0", str_off + name_off)
        if elf[str_off + name_off:end] == b".modinfo":
            for entry in elf[offset:offset + size].split(b"\0"):
                key, sep, value = entry.decode(errors="replace").partition("=")
                if sep:
                    info[key] = value
    return info


@dataclass
class ModuleSet:
    """The modules to load, dependencies first, each with its decompressed bytes and parameters."""

    order: list[str] = field(default_factory=list)
    elf: dict[str, bytes] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    builtin: list[str] = field(default_factory=list)


def resolve_modules(k: Kernel, wanted: Sequence[tuple[str, str]]) -> ModuleSet:
    """The load order for ``wanted`` (name, parameters) on kernel ``k``, dependencies first."""
    index = {_module_stem(p): p for p in k.modules.rglob("*.ko*")}
    builtin = set()
    listing = k.modules / "modules.builtin"
    if listing.exists():
        builtin = {_module_stem(Path(line.strip())) for line in listing.read_text().splitlines() if line.strip()}
    result = ModuleSet()
    visiting: set[str] = set()

    def visit(name: str, needed_by: str) -> None:
        name = _normal(name)
        if name in result.elf or name in result.builtin:
            return
        if name in builtin:
            result.builtin.append(name)
            return
        if name not in index:
            who = f" (needed by {needed_by})" if needed_by else ""
            raise LabError(f"kernel {k.release} has no module {name}{who}",
                           hint=f"look under {k.modules}/kernel for the module's file name")
        if name in visiting:
            return
        visiting.add(name)
        elf = read_module(index[name])
        for dep in filter(None, modinfo(elf).get("depends", "").split(",")):
            visit(dep, name)
        result.elf[name] = elf
        result.order.append(name)

    for name, params in wanted:
        visit(name, "")
        if params:
            result.params[_normal(name)] = params
    return result


# --- the program ---------------------------------------------------------------------------------

def elf_interpreter(data: bytes) -> str | None:
    """The ELF program interpreter (PT_INTERP) of an executable, or None when it is static."""
    if data[:4] != b"\x7fELF":
        return None
    endian = "<" if data[5] == 1 else ">"
    if data[4] == 2:
        phoff, = struct.unpack_from(endian + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
        for i in range(phnum):
            ptype, _flags, offset, _vaddr, _paddr, filesz = struct.unpack_from(endian + "IIQQQQ", data,
                                                                                phoff + i * phentsize)
            if ptype == 3:  # PT_INTERP
                return data[offset:offset + filesz].rstrip(b"\0").decode()
    return None


def shared_libraries(program: Path) -> list[Path]:
    """The shared objects a dynamic program loads (``ldd``), interpreter included."""
    ldd = shutil.which("ldd")
    if not ldd:
        raise LabError(f"{program} is dynamically linked and ldd is not installed",
                       hint="link it statically (cc -static) or install libc-bin")
    proc = subprocess.run([ldd, str(program)], capture_output=True, text=True, check=False)
    libs: list[Path] = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            i = parts.index("=>")
            if i + 1 < len(parts) and parts[i + 1].startswith("/"):
                libs.append(Path(parts[i + 1]))
            elif "not" in parts[i + 1:]:
                raise LabError(f"{program}: shared library {parts[0]} not found (ldd)")
        elif parts and parts[0].startswith("/"):
            libs.append(Path(parts[0]))
    return libs


# --- the init ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunPlan:
    """What the VM's init does: the program and its arguments, the recorder's options, the modules."""

    program: str  # the path inside the initramfs
    args: tuple[str, ...]
    recorder_options: tuple[str, ...] = ("--function", "--syscalls", "--assume-offsets", "--buffer-kb", "16384")
    modules: tuple[tuple[str, str], ...] = ()
    settle: float = 0.5  # seconds after loading modules, for their device nodes


def init_script(plan: RunPlan) -> str:
    """The VM's /init: mount, load modules, record, run the program, send the trace, power off."""
    loads = "\n".join(f"load {shlex.quote(name)} {shlex.quote(params)}" for name, params in plan.modules)
    argv = " ".join(shlex.quote(a) for a in (plan.program, *plan.args))
    recorder = " ".join(shlex.quote(o) for o in plan.recorder_options)
    return f"""#!/bin/busybox sh
# Written by dmaspec lab (checker/lab/initramfs.py).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin HOME=/root
mkdir -p /proc /sys /dev /tmp /run /root /lab/work
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
say() {{ echo "{STATUS_PREFIX} $*"; }}
finish() {{ sync; poweroff -f; sleep 5; echo o >/proc/sysrq-trigger; }}
load() {{
	if insmod "/lab/modules/$1.ko" $2; then say "module $1 loaded"; else say "module $1 failed to load"; fi
}}
say "kernel $(uname -r)"
{loads}
sleep {plan.settle}
stty -F /dev/ttyS1 raw -echo 2>/dev/null
if ! sh /lab/ftrace-setup.sh start {recorder} 2>/tmp/recorder.log; then
	cat /tmp/recorder.log
	say "recorder failed"
	finish
fi
cat /tmp/recorder.log
cd /lab/work
say "program start"
{argv} </dev/null
rc=$?
say "program end"
sh /lab/ftrace-setup.sh stop -o /tmp/trace.txt 2>>/tmp/recorder.log
tail -n 2 /tmp/recorder.log
{{ echo "{TRACE_BEGIN}"; cat /tmp/trace.txt; echo "{TRACE_END} $(wc -l </tmp/trace.txt)"; }} >/dev/ttyS1
say "exit $rc"
finish
"""


def _busybox_or_none() -> Path | None:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.is_file() and elf_interpreter(path.read_bytes()) is None:
            return path
    return None


def _busybox() -> Path:
    found = _busybox_or_none()
    if found is None:
        raise LabError("no static busybox found", hint="install it: apt-get install busybox-static")
    return found


def build(k: Kernel, program: Path, args: Sequence[str], modules: Sequence[tuple[str, str]],
          extra_files: Iterable[tuple[Path, str]] = (), recorder_options: Sequence[str] | None = None) -> bytes:
    """The gzip-compressed initramfs for one lab run of ``program args`` on kernel ``k``."""
    if not program.is_file():
        raise LabError(f"{program}: no such program")
    a = Archive()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "root", "lab/work", "lab/modules"):
        a.directory(d)
    a.file("bin/busybox", _busybox().read_bytes())
    a.file("lab/ftrace-setup.sh", RECORDER.read_bytes())
    chosen = resolve_modules(k, modules)
    for name in chosen.order:
        a.file(f"lab/modules/{name}.ko", chosen.elf[name], 0o644)
    data = program.read_bytes()
    inside = f"/lab/bin/{program.name}"
    a.file(inside.lstrip("/"), data)
    if elf_interpreter(data) is not None:
        for lib in shared_libraries(program):
            real = lib.resolve()
            a.file(str(lib).lstrip("/"), real.read_bytes())
    for src, dest in extra_files:
        a.file(dest.lstrip("/"), src.read_bytes(), 0o755 if src.stat().st_mode & 0o111 else 0o644)
    plan = RunPlan(program=inside, args=tuple(args), modules=tuple((n, chosen.params.get(n, "")) for n in chosen.order))
    if recorder_options is not None:
        plan = dataclasses.replace(plan, recorder_options=tuple(recorder_options))
    a.file("init", init_script(plan).encode())
    return gzip.compress(a.finish(), compresslevel=6)
