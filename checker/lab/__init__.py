"""The lab: run a program against a real Linux kernel under qemu, record its dma-buf trace, check it.

A lab run boots a stock kernel (fetched once from Debian, or the user's own)
with a busybox initramfs that loads the modules of real exporters and
importers (vgem, vivid; udmabuf and the system dma-heap are built into
Debian's 6.12), starts the project's own recorder
(``traces/record/ftrace-setup.sh``: kprobes on the dma-buf core, the
``dma_fence`` events, the system calls that move file descriptors, and the
function tracer filtered to the dma-buf core), runs the program, and sends
the trace back over a second serial port.  ``dmaspec lab run`` then checks it
like any recording.

The public surface: :func:`fetch`, :func:`add_local`, :func:`kernel`,
:func:`kernels` (``checker.lab.kernels``), :func:`run` and :class:`LabRun`
(below), :class:`LabError`.

Example (not run here: it boots a VM)::

    from checker.lab import kernel, run
    lab = run(Path("./my-test"), [], kernel("debian-13"))
    print(lab.trace_path, lab.status)
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from checker.lab import initramfs, vm
from checker.lab.kernels import RELEASES, Kernel, LabError, add_local, cache_root, cached_kernels, fetch, kernel

# Modules a run loads unless told otherwise, with their parameters, when the kernel has them as modules.
# vivid: one instance with a single-planar video capture node only, so a program finds it quickly.
DEFAULT_MODULES: tuple[tuple[str, str], ...] = (
    ("vgem", ""),
    ("vivid", "n_devs=1 node_types=0x1 multiplanar=1"),
)
# How the VM's init starts the recorder (traces/record/ftrace-setup.sh start ...): kprobes, fence events, the
# system calls that move fds and the function tracer; offsets for kernels without BTF-named kprobe arguments.
RECORDER_OPTIONS: tuple[str, ...] = initramfs.RunPlan("", ()).recorder_options
EXERCISER_SOURCE = Path(__file__).resolve().parents[2] / "traces" / "record" / "lab" / "exerciser.c"


@dataclass
class LabRun:
    """What a lab run gives: the trace, the program's output and exit status, and the VM's log."""

    kernel: Kernel
    workdir: Path
    trace_path: Path
    console_path: Path
    output: list[str]
    status: int | None
    elapsed: float
    notes: list[str]
    failure: str  # "" when the VM booted, ran the program and sent a whole trace back


def available_modules(k: Kernel, wanted: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[str]]:
    """The wanted modules the kernel has as modules, and notes on those it has built in or lacks."""
    present = {initramfs._module_stem(p) for p in k.modules.rglob("*.ko*")}
    keep: list[tuple[str, str]] = []
    notes: list[str] = []
    for name, params in wanted:
        if name.replace("-", "_") in present:
            keep.append((name, params))
        else:
            notes.append(f"module {name}: not in kernel {k.release} (built in, or not built)")
    return keep, notes


def run(program: Path, args: Sequence[str], k: Kernel, *, modules: Sequence[tuple[str, str]] | None = None,
        workdir: Path | None = None, timeout: float = 300.0, extra_files: Sequence[tuple[Path, str]] = (),
        recorder_options: Sequence[str] | None = None) -> LabRun:
    """Boot ``k``, run ``program args`` in it with tracing on, and bring the trace back.

    ``modules`` defaults to :data:`DEFAULT_MODULES` (those the kernel has).
    Raises :class:`LabError` when the run cannot even start (no qemu, no
    busybox, a module the kernel lacks); a VM that starts but fails is
    reported in ``LabRun.failure`` with its console log kept.
    """
    notes: list[str] = []
    if modules is None:
        chosen, notes = available_modules(k, DEFAULT_MODULES)
    else:
        chosen = list(modules)
    wd = workdir or cache_root() / "runs" / _slug(program.name)
    wd.mkdir(parents=True, exist_ok=True)
    initrd = initramfs.build(k, program, args, chosen, extra_files=extra_files, recorder_options=recorder_options)
    boot = vm.boot(k, initrd, wd, timeout=timeout)
    trace_path = wd / "trace.txt"
    trace_path.write_text(boot.trace)
    (wd / "initrd.gz").unlink(missing_ok=True)
    return LabRun(kernel=k, workdir=wd, trace_path=trace_path, console_path=wd / "console.log",
                  output=boot.console.output, status=boot.console.status, elapsed=boot.elapsed,
                  notes=notes + boot.console.notes, failure=boot.failure)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name) or "program"


def build_exerciser(out_dir: Path) -> Path:
    """Compile the bundled exerciser, statically, into ``out_dir`` (again only when its sources changed)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise LabError("no C compiler to build the exerciser", hint="install gcc (apt-get install gcc libc6-dev)")
    if not EXERCISER_SOURCE.is_file():
        raise LabError(f"the exerciser's source is missing: {EXERCISER_SOURCE}")
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / "dmabuf-exerciser"
    sources = [p for p in EXERCISER_SOURCE.parent.iterdir() if p.suffix in (".c", ".h")]
    if binary.exists() and binary.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return binary
    proc = subprocess.run([cc, "-static", "-O2", "-Wall", "-Wextra", "-o", str(binary), str(EXERCISER_SOURCE)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"building the exerciser failed (exit {proc.returncode})", log=proc.stderr[-4000:],
                       hint="a static build needs the C library's static archive: apt-get install libc6-dev")
    return binary


__all__ = ["DEFAULT_MODULES", "RECORDER_OPTIONS", "RELEASES", "Kernel", "LabError", "LabRun", "add_local",
           "available_modules", "build_exerciser", "cache_root", "cached_kernels", "fetch", "kernel", "run"]
