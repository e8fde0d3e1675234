"""Boot a lab kernel under qemu and collect what its init sends back.

The VM has two serial ports: the first (``ttyS0``) is the console, which
carries the kernel's messages, the init's ``dmaspec-lab:`` status lines and
the program's own output; the second (``ttyS1``) carries the trace alone,
framed by a begin line and an end line that counts the trace's lines, so a
trace cut short is recognised.  qemu runs with software emulation (TCG) unless
``/dev/kvm`` is usable, and is bounded by a timeout.

>>> parse_console("x\\ndmaspec-lab: program start\\nhello\\ndmaspec-lab: program end\\ndmaspec-lab: exit 3\\n").status
3
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from checker.lab.initramfs import STATUS_PREFIX, TRACE_BEGIN, TRACE_END
from checker.lab.kernels import Kernel, LabError

QEMU = "qemu-system-x86_64"


@dataclass
class Console:
    """What the console said: the program's output, its exit status, the init's status lines."""

    output: list[str] = field(default_factory=list)
    status: int | None = None
    notes: list[str] = field(default_factory=list)
    kernel: str = ""


def parse_console(text: str) -> Console:
    """Split the console log into the program's output and the init's status lines."""
    c = Console()
    inside = False
    for line in text.replace("\r", "").splitlines():
        if line.startswith(STATUS_PREFIX):
            what = line[len(STATUS_PREFIX):].strip()
            if what == "program start":
                inside = True
            elif what == "program end":
                inside = False
            elif m := re.fullmatch(r"exit (\d+)", what):
                c.status = int(m.group(1))
            elif what.startswith("kernel "):
                c.kernel = what[len("kernel "):]
            else:
                c.notes.append(what)
        elif inside:
            c.output.append(line)
    return c


def extract_trace(raw: bytes) -> tuple[str, str]:
    """The trace between the framing lines, and "" or why it is not whole."""
    text = raw.decode(errors="replace").replace("\r", "")
    begin = text.find(TRACE_BEGIN + "\n")
    if begin < 0:
        return "", "the VM sent no trace"
    body = text[begin + len(TRACE_BEGIN) + 1:]
    m = re.search(rf"^{TRACE_END} (\d+)\n?", body, re.M)
    if not m:
        return body, "the trace was cut short (no end line)"
    trace = body[: m.start()]
    lines = trace.count("\n")
    if lines != int(m.group(1)):
        return trace, f"the trace has {lines} lines, the VM sent {m.group(1)}"
    return trace, ""


@dataclass
class Boot:
    """One VM run: the console, the trace, how long it took, and why it failed if it did."""

    console_log: str
    console: Console
    trace: str
    elapsed: float
    failure: str = ""


def accelerator() -> list[str]:
    """TCG software emulation with the emulated CPU that has every feature, unless ``DMASPEC_LAB_ACCEL=kvm``.

    KVM is opt-in: on machines where ``/dev/kvm`` exists but the host CPU is
    itself virtualised, qemu can abort at start-up under KVM (seen: an MSR
    it cannot set), and a lab run must not depend on that.
    """
    if os.environ.get("DMASPEC_LAB_ACCEL") == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg", "-cpu", "max"]


def boot(k: Kernel, initrd: bytes, workdir: Path, timeout: float = 300.0, memory_mb: int = 1024,
         cpus: int = 2) -> Boot:
    """Boot ``k`` with ``initrd`` in ``workdir``; always returns, with ``failure`` set if the run failed."""
    qemu = shutil.which(QEMU)
    if not qemu:
        raise LabError(f"{QEMU} is not installed", hint="install it: apt-get install qemu-system-x86")
    workdir.mkdir(parents=True, exist_ok=True)
    initrd_path = workdir / "initrd.gz"
    initrd_path.write_bytes(initrd)
    console_path, trace_path = workdir / "console.log", workdir / "trace.serial"
    for p in (console_path, trace_path):
        p.unlink(missing_ok=True)
    argv = [qemu, "-M", "q35", *accelerator(), "-m", str(memory_mb), "-smp", str(cpus),
            "-kernel", str(k.vmlinuz), "-initrd", str(initrd_path),
            "-append", "console=ttyS0 loglevel=3 panic=-1 oops=panic rdinit=/init",
            "-display", "none", "-monitor", "none", "-no-reboot", "-nodefaults",
            "-serial", f"file:{console_path}", "-serial", f"file:{trace_path}"]
    start = time.monotonic()
    failure = ""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            failure = f"qemu exited with status {proc.returncode}: {proc.stderr.strip()[-2000:]}"
    except subprocess.TimeoutExpired:
        failure = f"the VM did not finish within {timeout:.0f} s (raise it with --timeout)"
    elapsed = time.monotonic() - start
    console_log = console_path.read_text(errors="replace") if console_path.exists() else ""
    console = parse_console(console_log)
    trace, problem = extract_trace(trace_path.read_bytes() if trace_path.exists() else b"")
    if not failure and console.status is None:
        failure = "the program's exit status never came back (the VM stopped early; see the console log)"
    if not failure and problem:
        failure = problem
    if not failure and "recorder failed" in console.notes:
        failure = "the recorder (ftrace-setup.sh start) failed in the VM"
    return Boot(console_log=console_log, console=console, trace=trace, elapsed=elapsed, failure=failure)
