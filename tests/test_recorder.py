"""The recorders in traces/record: dmaspec.bt, bpftrace-merge.sh and ftrace-setup.sh.

Nothing here attaches to a kernel. The bpftrace script is compiled (``bpftrace --emit-elf``, a dry run)
when bpftrace is installed; its printf formats are checked to print valid canonical lines whatever the
values; the sample shows what it prints and must check clean; the shell scripts are checked by ``sh -n``,
shellcheck, and run against a fake tracefs.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from tests.conftest import ROOT

RECORD = Path(ROOT, "traces", "record")
SCRIPT = RECORD / "dmaspec.bt"
MERGE = RECORD / "bpftrace-merge.sh"
SETUP = RECORD / "ftrace-setup.sh"
SAMPLE = RECORD / "samples" / "bpftrace-sample.jsonl"
SCHEMA = json.loads(Path(ROOT, "traces", "schema", "dmaspec-trace-v1.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)
OPS = set(SCHEMA["$defs"]["event"]["properties"]["op"]["enum"])


def check(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "checker", "check", *args, str(path)], capture_output=True,
                          text=True, cwd=ROOT, check=False)


def schema_errors(line: str) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(json.loads(line))]


# -- dmaspec.bt, read as text ------------------------------------------------------------------------------------


def strip_comments(src: str) -> str:
    """The script without comments, string literals kept (they hold // and braces)."""
    return re.sub(r'"(?:[^"\\]|\\.)*"|/\*.*?\*/|//[^\n]*',
                  lambda m: m[0] if m[0].startswith('"') else " " * len(m[0]), src, flags=re.S)


def blocks(src: str) -> list[tuple[list[str], str]]:
    """(attach points, body) of every probe block, braces inside strings ignored."""
    code = strip_comments(re.sub(r"\A#![^\n]*", "", src))
    out, depth, start, head = [], 0, 0, 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"|[{}]', code):
        if m[0] == "{":
            if depth == 0:
                start = m.end()
                header = code[head:m.start()].split("/")[0]  # drop a /predicate/
                points = [p for p in re.split(r"[\s,]+", header) if p]
            depth += 1
        elif m[0] == "}":
            depth -= 1
            if depth == 0:
                out.append((points, code[start:m.start()]))
                head = m.end()
    assert depth == 0
    return out


def printfs(body: str) -> list[str]:
    """The format strings of the printf calls in a block, unescaped."""
    return [json.loads(f'"{m[1]}"') for m in re.finditer(r'printf\(\s*"((?:[^"\\]|\\.)*)"', body)]


BLOCKS = blocks(SCRIPT.read_text())
FORMATS = [(points, fmt) for points, body in BLOCKS for fmt in printfs(body)]
CONVERSION = re.compile(r"%(llu|lld|llx|lu|ld|lx|d|u|x|s)")


def functions(points: list[str]) -> list[str]:
    return [p.split(":")[-1] for p in points if p.startswith(("kprobe:", "kretprobe:"))]


def fill(fmt: str, points: list[str], numbers: dict[str, str]) -> list[str]:
    """The lines a format prints, one per function of its block where it prints the function's name."""
    names = functions(points) or ["x"]
    lines = []
    for name in names:
        def value(m: re.Match[str], name: str = name) -> str:
            before = fmt[:m.start()]
            if m[1] != "s":
                return "2" if before.endswith('"direction":') else numbers[m[1]]  # an enum: 0-3
            if before.endswith('"op":"'):
                return name
            if before.endswith('"profile":"') or before.endswith('"kernel":"'):
                return "6.12.57+deb13-amd64"
            if before.endswith('"usage":"'):
                return "DMA_RESV_USAGE_READ"
            return "camera-demo"
        lines.append(CONVERSION.sub(value, fmt).rstrip("\n"))
    return lines


def test_the_script_has_printfs_for_every_kind_of_event() -> None:
    ops: set[str] = set()
    for points, fmt in FORMATS:
        m = re.search(r'"op":"([a-z_0-9]+|%s)"', fmt)
        if m:
            ops.update(functions(points) if m[1] == "%s" else [m[1]])
    assert {"dma_buf_export", "dma_buf_fd", "dma_buf_get", "dma_buf_put", "dma_buf_attach", "dma_buf_dynamic_attach",
            "dma_buf_detach", "dma_buf_map_attachment", "dma_buf_map_attachment_unlocked",
            "dma_buf_unmap_attachment", "dma_buf_unmap_attachment_unlocked", "dma_buf_begin_cpu_access",
            "dma_buf_end_cpu_access", "dma_buf_vmap", "dma_buf_vmap_unlocked", "dma_buf_vunmap",
            "dma_buf_vunmap_unlocked", "dma_buf_mmap", "dma_buf_pin", "dma_buf_unpin", "dma_buf_move_notify",
            "dma_resv_lock", "dma_resv_lock_interruptible", "dma_resv_trylock", "dma_resv_unlock",
            "dma_resv_reserve_fences", "dma_resv_add_fence", "dma_fence_init", "dma_fence_signal",
            "dma_fence_signal_locked", "dma_fence_signal_timestamp", "dma_fence_signal_timestamp_locked",
            "dma_fence_wait_timeout", "dma_fence_release", "close", "dup", "dup2", "dup3", "fcntl", "mmap",
            "munmap", "ioctl", "lseek", "execve", "exit_group", "fork", "clone"} <= ops
    # dma_fence_init64 is printed as dma_fence_init: every other probed function is an op of its own name
    assert ops - {"dma_fence_init64"} <= OPS


@pytest.mark.parametrize("numbers", [
    {"llu": "4096", "lld": "-22", "llx": "ffff888012340000", "lu": "7", "ld": "-4", "lx": "1f", "d": "1",
     "u": "2", "x": "40086200"},
    {"llu": "0", "lld": "0", "llx": "0", "lu": "0", "ld": "0", "lx": "0", "d": "-22", "u": "0",
     "x": "40086203"},
], ids=["typical", "zeros-and-errors"])
def test_every_printf_prints_a_valid_canonical_line(numbers: dict[str, str]) -> None:
    assert len(FORMATS) == SCRIPT.read_text().count('printf("')
    for points, fmt in FORMATS:
        assert fmt.endswith("\n") and fmt.count("\n") == 1, fmt
        for line in fill(fmt, points, numbers):
            obj = json.loads(line)
            assert schema_errors(line) == [], (points, line)
            if "op" in obj:
                assert obj["op"] in OPS and isinstance(obj["ts"], int) and "tid" in obj and "pid" in obj, line
                assert line.startswith('{"ts":'), "bpftrace-merge.sh sorts by a leading ts"
            else:
                assert obj["format"] == "dmaspec-trace" and obj["source"]["recorder"] == "dmaspec.bt"


def test_the_header_lists_only_known_ops_as_unobserved() -> None:
    (header,) = [fmt for points, fmt in FORMATS if points == ["BEGIN"]]
    unobserved = json.loads(fill(header, ["BEGIN"], {})[0])["unobserved"]
    assert len(unobserved) == len(set(unobserved)) and set(unobserved) <= OPS
    assert {"get_dma_buf", "mmap_access", "cpu_access", "fd_received"} <= set(unobserved)
    printed = {m[1] for _, fmt in FORMATS for m in re.finditer(r'"op":"([a-z_0-9]+)"', fmt)}
    assert not printed & set(unobserved), "an op the script prints is not unobserved"
    assert "mmap" not in unobserved, "would also withhold the mmap system call"


def test_every_map_is_cleared_at_exit() -> None:
    """bpftrace prints the maps left at exit, which would not be JSON."""
    (end,) = [body for points, body in BLOCKS if points == ["END"]]
    used = set(re.findall(r"@\w+", strip_comments(SCRIPT.read_text())))
    assert used == set(re.findall(r"clear\((@\w+)\)", end))


def pattern(fmt: str) -> re.Pattern[str]:
    out, pos = "", 0
    kinds = {"llu": r"\d+", "lu": r"\d+", "u": r"\d+", "lld": r"-?\d+", "ld": r"-?\d+", "d": r"-?\d+",
             "llx": "[0-9a-f]+", "lx": "[0-9a-f]+", "x": "[0-9a-f]+", "s": r'[^"\\]*'}
    for m in CONVERSION.finditer(fmt):
        out += re.escape(fmt[pos:m.start()]) + kinds[m[1]]
        pos = m.end()
    return re.compile(out + re.escape(fmt[pos:].rstrip("\n")))


# -- the sample ---------------------------------------------------------------------------------------------------


def test_the_sample_is_what_the_script_prints() -> None:
    patterns = [pattern(fmt) for _, fmt in FORMATS]
    lines = SAMPLE.read_text().splitlines()
    for n, line in enumerate(lines, 1):
        assert any(p.fullmatch(line) for p in patterns), f"{SAMPLE.name}:{n} matches no printf of dmaspec.bt"
        assert schema_errors(line) == [], f"{SAMPLE.name}:{n}"
    ops = [json.loads(line).get("op") for line in lines[1:]]
    for op in ("dma_buf_export", "dma_buf_fd", "mmap", "ioctl", "dma_buf_get", "dma_buf_attach",
               "dma_buf_map_attachment_unlocked", "dma_buf_unmap_attachment_unlocked", "dma_buf_detach",
               "dma_buf_put", "munmap", "close"):
        assert op in ops
    ts = [json.loads(line)["ts"] for line in lines[1:]]
    assert ts == sorted(ts)


def test_the_sample_checks_clean() -> None:
    r = check(SAMPLE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no finding" in r.stdout


# -- bpftrace-merge.sh --------------------------------------------------------------------------------------------


def merge(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    raw = tmp_path / "raw.jsonl"
    raw.write_text(text)
    return subprocess.run(["sh", str(MERGE), str(raw)], capture_output=True, text=True, check=False)


def test_merge_orders_by_time_and_keeps_the_header_first(tmp_path: Path) -> None:
    header, *events = SAMPLE.read_text().splitlines()
    shuffled = events[:]
    random.Random(5).shuffle(shuffled)  # per-CPU buffers drained one after another
    r = merge(tmp_path, "\n".join(["Attaching 83 probes...", *shuffled[:9], header, *shuffled[9:]]) + "\n")
    assert r.returncode == 0
    assert r.stdout.splitlines() == [header, *events]
    assert "dropped: Attaching 83 probes..." in r.stderr
    (tmp_path / "trace.jsonl").write_text(r.stdout)
    assert check(tmp_path / "trace.jsonl").returncode == 0


def test_merge_turns_lost_events_into_an_annotation(tmp_path: Path) -> None:
    header, *events = SAMPLE.read_text().splitlines()
    r = merge(tmp_path, "\n".join([header, *events[:5], "Lost 12 events", *events[5:]]) + "\n")
    lines = r.stdout.splitlines()
    (lost,) = [json.loads(line) for line in lines if '"lost_events"' in line]
    assert lost["args"] == {"count": 12} and lost["ts"] == json.loads(events[4])["ts"]
    assert lines.index(json.dumps(lost, separators=(",", ":"))) == 6  # after the event read before it
    assert all(schema_errors(line) == [] for line in lines)
    assert "lost 12 events" in r.stderr


# -- bpftrace: compile the script, attach nothing -----------------------------------------------------------------


def test_bpftrace_compiles_the_script(tmp_path: Path) -> None:
    bpftrace = shutil.which("bpftrace")
    if bpftrace is None:
        pytest.skip("bpftrace is not installed: apt-get install -y bpftrace (Debian 12: 0.17)")
    if os.geteuid() != 0:
        pytest.skip("bpftrace runs only as root, even to compile: run the tests as root")
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("no kernel BTF (/sys/kernel/btf/vmlinux): bpftrace cannot resolve the script's struct types")
    if not any(os.path.isdir(f"{t}/events") for t in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")):
        pytest.skip("tracefs is not mounted (bpftrace reads tracepoint formats from it): "
                    "mount -t tracefs nodev /sys/kernel/tracing")
    usage = subprocess.run([bpftrace, "--help"], capture_output=True, text=True, check=False)
    # --emit-elf compiles to an ELF file and stops: nothing is loaded or attached.
    emit = "--emit-elf" in usage.stdout + usage.stderr
    dry = ["--emit-elf", str(tmp_path / "dmaspec.elf")] if emit else ["--dry-run"]
    r = subprocess.run([bpftrace, *dry, str(SCRIPT)], capture_output=True, text=True, check=False, timeout=300)
    errors = [line for line in r.stderr.splitlines() if "ERROR" in line and "RLIMIT_MEMLOCK" not in line]
    assert r.returncode == 0 and not errors, "\n".join(errors) or r.stderr[-2000:]


# -- shell scripts ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", [SETUP, MERGE], ids=lambda p: p.name)
def test_shell_syntax(script: Path) -> None:
    r = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("script", [SETUP, MERGE], ids=lambda p: p.name)
def test_shellcheck(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed: apt-get install -y shellcheck")
    r = subprocess.run([shellcheck, "-s", "sh", str(script)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout


OFFSETS = """\
dma_buf_export_info.exp_name 0
dma_buf_export_info.ops 16
dma_buf_export_info.size 24
dma_buf_export_info.flags 32
dma_buf_export_info.resv 40
dma_buf_export_info.priv 48
dma_buf.size 0
dma_buf.file 8
dma_buf.vmapping_counter 40
dma_buf.exp_name 64
dma_buf.resv 120
device.kobj 0
kobject.name 0
sg_table.nents 8
sg_table.orig_nents 12
iosys_map.vaddr 0
vm_area_struct.vm_start 0
vm_area_struct.vm_end 8
vm_area_struct.vm_pgoff 80
"""


def setup_sh(*args: str, tracefs: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PAHOLE="false")  # offsets from --offsets, not from this machine's kernel
    if tracefs is not None:
        env["TRACEFS"] = str(tracefs)
    return subprocess.run(["sh", str(SETUP), *args], capture_output=True, text=True, check=False, env=env)


DEFINITION = re.compile(r"(?P<type>[pr]):dmaspec/(?P<event>\w+) (?P<func>\w+)(?P<fields>( [a-z_0-9]+=\S+)*)")
FETCH = re.compile(r"""
    (?P<name>[a-z_][a-z_0-9]*)=
    (?P<arg>\$retval|\$arg[1-6]|%[a-z0-9]+|[a-z_]+(->[a-z_]+|\.[a-z_]+)*|\$retval(->[a-z_]+)+|[+-]u?\d+\(.*\))
    (:(?P<type>[su](8|16|32|64)|x(8|16|32|64)|string))?$""", re.X)


def definitions(mode: str, arch: str, tmp_path: Path, *extra: str) -> list[re.Match[str]]:
    offsets = tmp_path / "offsets"
    offsets.write_text(OFFSETS)
    r = setup_sh("print-kprobes", mode, "--arch", arch, "--offsets", str(offsets), *extra)
    assert r.returncode == 0, r.stderr
    out = []
    for line in r.stdout.splitlines():
        m = DEFINITION.fullmatch(line)
        assert m, line
        assert m["event"] == (m["func"] if m["type"] == "p" else m["func"] + "_ret"), line
        names = []
        for field in m["fields"].split():
            f = FETCH.fullmatch(field)
            assert f and f["arg"].count("(") == f["arg"].count(")"), field
            names.append(f["name"])
        assert len(names) == len(set(names)), line
        if m["type"] == "r":
            assert names[0] == "ret" and m["fields"].split()[0].startswith("ret=$retval"), line
        out.append(m)
    return out


def by_event(defs: list[re.Match[str]]) -> dict[str, str]:
    return {m["event"]: m["fields"] for m in defs}


@pytest.mark.parametrize("mode", ["--btf", "--argn", "--regs"])
@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_print_kprobes_writes_well_formed_definitions(mode: str, arch: str, tmp_path: Path) -> None:
    defs = by_event(definitions(mode, arch, tmp_path))
    for event in ("dma_buf_export", "dma_buf_export_ret", "dma_buf_fd", "dma_buf_fd_ret", "dma_buf_get",
                  "dma_buf_put", "dma_buf_attach", "dma_buf_detach", "dma_buf_map_attachment",
                  "dma_buf_unmap_attachment", "dma_buf_begin_cpu_access", "dma_buf_end_cpu_access",
                  "dma_buf_vmap", "dma_buf_vunmap", "dma_buf_mmap_internal", "dma_buf_ioctl", "dma_buf_llseek",
                  "dma_buf_file_release", "dma_buf_release"):
        assert event in defs
    assert " size=" in defs["dma_buf_export"] and " file=" in defs["dma_buf_export_ret"]
    assert " resv=" in defs["dma_buf_export_ret"]
    reg3 = {"--regs": {"x86_64": "%dx", "arm64": "%x2"}[arch]}.get(mode, "$arg3")
    assert f" flags=+u0({reg3}):u64" in defs["dma_buf_ioctl"]
    if mode == "--btf":
        assert " dmabuf=dmabuf:x64" in defs["dma_buf_put"] and " file=$retval->file:x64" in defs["dma_buf_export_ret"]
    else:
        assert " file=+8($retval):x64" in defs["dma_buf_export_ret"]
        assert " exp_name=+0(+0($arg1)):string size=+24($arg1):u64".replace("$arg1", {
            "--regs": {"x86_64": "%di", "arm64": "%x0"}[arch]}.get(mode, "$arg1")) in defs["dma_buf_export"]
    if mode == "--regs":
        assert not any("$arg" in fields for fields in defs.values())
        assert not any(re.search(r"%(di|si|dx|cx|r8|r9|x[0-7])\b", defs[e]) for e in defs if e.endswith("_ret"))


def test_argn_is_the_same_on_both_architectures(tmp_path: Path) -> None:
    x86 = [m[0] for m in definitions("--argn", "x86_64", tmp_path)]
    assert x86 == [m[0] for m in definitions("--argn", "arm64", tmp_path)]
    regs = [[m[0] for m in definitions("--regs", arch, tmp_path)] for arch in ("x86_64", "arm64")]
    assert regs[0] != regs[1]


def test_unknown_offsets_leave_fields_out_and_say_so(tmp_path: Path) -> None:
    r = setup_sh("print-kprobes", "--argn", "--arch", "x86_64")
    assert r.returncode == 0
    assert "offsets unknown, fields left out: " in r.stderr and "dma_buf.file" in r.stderr
    export_ret = next(line for line in r.stdout.splitlines() if line.startswith("r:dmaspec/dma_buf_export_ret "))
    assert export_ret == "r:dmaspec/dma_buf_export_ret dma_buf_export ret=$retval:x64"
    assumed = setup_sh("print-kprobes", "--argn", "--arch", "x86_64", "--assume-offsets")
    assert " file=+8($retval):x64" in assumed.stdout and " exp_name=" not in assumed.stdout.split("\n")[1]


def fake_tracefs(root: Path) -> Path:
    t = root / "tracing"
    for name in ("trace", "kprobe_events", "tracing_on", "current_tracer", "trace_marker", "set_ftrace_filter",
                 "set_event_pid", "set_ftrace_pid", "buffer_size_kb", "error_log", "options/record-tgid",
                 "options/event-fork", "options/function-fork", "events/dmaspec/enable", "events/dma_fence/enable",
                 "events/syscalls/sys_enter_close/enable", "events/syscalls/sys_exit_close/enable",
                 "events/sched/sched_process_fork/enable"):
        (t / name).parent.mkdir(parents=True, exist_ok=True)
        (t / name).write_text("")
    return t


def test_start_stop_clean_on_a_fake_tracefs(tmp_path: Path) -> None:
    t = fake_tracefs(tmp_path)
    offsets = tmp_path / "offsets"
    offsets.write_text(OFFSETS)
    r = setup_sh("start", "--argn", "--syscalls", "--function", "--offsets", str(offsets), tracefs=t)
    assert r.returncode == 0, r.stderr
    defs = (t / "kprobe_events").read_text().splitlines()
    ioctl = "p:dmaspec/dma_buf_ioctl dma_buf_ioctl file=$arg1:x64 cmd=$arg2:x32 arg=$arg3:x64 flags=+u0($arg3):u64"
    assert ioctl in defs
    kernel, events = (t / "trace_marker").read_text().splitlines()  # the kernel first, before any event
    assert kernel == f"dmaspec: kernel={os.uname().release}"
    n = sum(1 for d in (t / "kprobe_events").read_text().splitlines() if d.startswith(("p:", "r:")))
    # the probes defined, and the syscalls whose enter and exit events both exist here (only close's do)
    assert events == f"dmaspec: kprobes={n} syscalls=close sched=sched_process_fork sync_flags=1"
    assert (t / "options/record-tgid").read_text() == "1\n" and (t / "tracing_on").read_text() == "1\n"
    assert (t / "events/dmaspec/enable").read_text() == "1\n" == (t / "events/dma_fence/enable").read_text()
    assert (t / "events/syscalls/sys_enter_close/enable").read_text() == "1\n"
    assert (t / "current_tracer").read_text() == "function\n"
    assert "dma_buf_*\n" in (t / "set_ftrace_filter").read_text()

    (t / "trace").write_text("# tracer: nop\nCPU:1 [LOST 3 EVENTS]\n app-7 [001] ..... 1.0: tracing_mark_write: x\n"
                             "CPU:0 [LOST 2 EVENTS]\n")
    out = tmp_path / "trace.txt"
    r = setup_sh("stop", "-o", str(out), tracefs=t)
    assert r.returncode == 0, r.stderr
    assert out.read_text() == (t / "trace").read_text()
    assert "lost 5 events" in r.stderr
    assert (t / "tracing_on").read_text() == "0\n" and (t / "events/dmaspec/enable").read_text() == "0\n"
    assert Path(f"{out}.kprobes").read_text().splitlines() == [d for d in defs if d.startswith(("p:", "r:"))]

    r = setup_sh("clean", tracefs=t)
    assert r.returncode == 0, r.stderr
    removed = [line for line in (t / "kprobe_events").read_text().splitlines() if line.startswith("-:dmaspec/")]
    assert "-:dmaspec/dma_buf_export_ret" in removed and (t / "current_tracer").read_text() == "nop\n"


def test_the_readme_names_every_recorder_file() -> None:
    readme = (RECORD / "README.md").read_text()
    for path in (SCRIPT, MERGE, SETUP, SAMPLE):
        assert f"]({path.relative_to(RECORD)})" in readme


# Lines as the kernel prints the events ftrace-setup.sh defines (BTF form): a heap buffer mmapped and
# bracketed with SYNC, its file released at close.
B, F = "0xff196cf641961800", "0xff196cf6419f8000"
FTRACE = "".join(f" camera-demo-2231 (2231) [001] ..... {line}\n" for line in [
    "100.000001: tracing_mark_write: dmaspec: kernel=6.12.57+deb13-amd64",
    '100.000200: dma_buf_export: (dma_buf_export+0x4/0x2c0) exp_name="system" size=65536 flags=0x80002 '
    "ops=0xffffffff82935120 priv=0xff196cf64232d880",
    f"100.000300: dma_buf_export_ret: (system_heap_allocate+0x1f0/0x400 <- dma_buf_export) ret={B} size=65536 "
    f'exp_name="system" file={F} resv=0xff196cf6419618e8',
    f'100.000400: dma_buf_fd: (dma_buf_fd+0x4/0x50) dmabuf={B} size=65536 exp_name="system" flags=0x80002',
    "100.000500: dma_buf_fd_ret: (dma_heap_ioctl+0x1c5/0x2b0 <- dma_buf_fd) ret=4",
    f"100.000600: dma_buf_mmap_internal: (dma_buf_mmap_internal+0x4/0x50) file={F} vm_start=0x7f954edd0000 "
    "vm_end=0x7f954ede0000 vm_pgoff=0",
    "100.000700: dma_buf_mmap_internal_ret: (__mmap_region+0x697/0xb10 <- dma_buf_mmap_internal) ret=0",
    f"100.000800: dma_buf_ioctl: (dma_buf_ioctl+0x4/0x410) file={F} cmd=0x40086200 arg=0x7ffc1345e320 flags=2",
    f"100.000810: dma_buf_begin_cpu_access: (dma_buf_begin_cpu_access+0x4/0xf0) dmabuf={B} direction=1",
    "100.000820: dma_buf_begin_cpu_access_ret: (dma_buf_ioctl+0x348/0x410 <- dma_buf_begin_cpu_access) ret=0",
    "100.000900: dma_buf_ioctl_ret: (__x64_sys_ioctl+0x97/0xc0 <- dma_buf_ioctl) ret=0",
    f"100.001000: dma_buf_ioctl: (dma_buf_ioctl+0x4/0x410) file={F} cmd=0x40086200 arg=0x7ffc1345e320 flags=6",
    "100.001100: dma_buf_ioctl_ret: (__x64_sys_ioctl+0x97/0xc0 <- dma_buf_ioctl) ret=0",
    f"100.002000: dma_buf_file_release: (dma_buf_file_release+0x4/0x80) inode=0xff196cf641498000 file={F}",
    "100.002100: dma_buf_release: (dma_buf_release+0x4/0x90) dentry=0xff196cf641462840",
])


def test_the_ftrace_reader_reads_what_the_definitions_record(tmp_path: Path) -> None:
    defs = definitions("--btf", "x86_64", tmp_path)
    fields = {m["event"]: {f.split("=")[0] for f in m["fields"].split()} for m in defs}
    for line in FTRACE.splitlines():
        m = re.search(r": (\w+): \([^)]*\)(.*)", line)
        if m and m[1] != "tracing_mark_write":
            assert set(re.findall(r"(\w+)=", m[2])) <= fields[m[1]], line
    trace = tmp_path / "trace.txt"
    trace.write_text("# tracer: nop\n#\n" + FTRACE)
    r = check(trace)
    assert r.returncode == 0, r.stdout + r.stderr
    converted = subprocess.run([sys.executable, "-m", "checker", "convert", str(trace)], capture_output=True, text=True,
                               cwd=ROOT, check=False)
    header, *events = (json.loads(line) for line in converted.stdout.splitlines())
    assert header["profile"] == "6.12" and "ioctl" not in header["unobserved"]  # the marker; the SYNC flags
    assert [e["args"].get("flags") for e in events if e["op"] == "ioctl"] == [2, 6]


def test_start_changes_nothing_when_the_kernel_rejects_every_probe(tmp_path: Path) -> None:
    t = fake_tracefs(tmp_path)
    (t / "kprobe_events").unlink()
    (t / "kprobe_events").mkdir()  # every write fails, as for a kernel without these functions
    r = setup_sh("start", "--argn", "--assume-offsets", tracefs=t)
    assert r.returncode == 1 and "no probe could be defined" in r.stderr
    assert "not defined (function missing, inlined or not probeable here): dma_buf_export " in r.stderr
    assert "cannot create" not in r.stderr
    assert (t / "tracing_on").read_text() == "" and (t / "current_tracer").read_text() == ""
