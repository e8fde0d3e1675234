"""The lab: the kernel cache, the initramfs, the VM's serial protocol, the CLI; and one real boot (marked lab)."""

from __future__ import annotations

import gzip
import json
import lzma
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from checker import lab
from checker.lab import initramfs, kernels, vm

ROOT = Path(__file__).resolve().parents[1]


def _cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    """Read a newc archive back: name -> (mode, data), written independently of the builder."""
    out: dict[str, tuple[int, bytes]] = {}
    pos = 0
    while True:
        assert data[pos:pos + 6] == b"070701", f"bad magic at {pos}"
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_start = pos + 110
        name = data[name_start:name_start + namesize - 1].decode()
        body = name_start + namesize
        body += -body % 4
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, data[body:body + size])
        pos = body + size
        pos += -pos % 4


def _module(tmp: Path, name: str, depends: str, compress: bool = False) -> Path:
    """A relocatable ELF object with a .modinfo section, as a kernel module has."""
    src = tmp / f"{name}.c"
    src.write_text('__attribute__((section(".modinfo"), used)) static const char info[] = '
                   f'"license=GPL\\0depends={depends}\\0name={name}";\n')
    obj = tmp / f"{name}.ko"
    subprocess.run(["cc", "-c", "-o", str(obj), str(src)], check=True)
    if compress:
        xz = obj.with_name(obj.name + ".xz")
        xz.write_bytes(lzma.compress(obj.read_bytes()))
        obj.unlink()
        return xz
    return obj


@pytest.fixture
def fake_kernel(tmp_path: Path) -> kernels.Kernel:
    """A cached kernel whose module tree has vivid -> (videodev -> mc, v4l2_tpg), mc built in elsewhere."""
    release = "6.12.0-test"
    tree = tmp_path / "src" / "lib" / "modules" / release
    media = tree / "kernel" / "drivers" / "media"
    media.mkdir(parents=True)
    build = tmp_path / "build"
    build.mkdir()
    for name, deps, xz in (("vivid", "videodev,v4l2-tpg", True), ("videodev", "mc", True),
                           ("v4l2-tpg", "", False), ("vgem", "", True)):
        shutil.move(str(_module(build, name, deps, xz)), media)
    (tree / "modules.builtin").write_text("kernel/drivers/media/mc/mc.ko\n")
    image = tmp_path / "src" / "vmlinuz"
    image.write_bytes(b"not really a kernel")
    return kernels.add_local("test-kernel", image, tree, root=tmp_path / "cache")


# -- the kernel cache -----------------------------------------------------------------------------

def test_a_local_kernel_is_cached_with_its_release_and_profile(fake_kernel: kernels.Kernel, tmp_path: Path) -> None:
    k = kernels.kernel("test-kernel", root=tmp_path / "cache")
    assert (k.release, k.profile, k.vmlinuz.read_bytes()) == ("6.12.0-test", "6.12", b"not really a kernel")
    assert [c.name for c in kernels.cached_kernels(tmp_path / "cache")] == ["test-kernel"]
    assert json.loads((k.directory / "kernel.json").read_text())["source"].startswith("local: ")


def test_a_missing_kernel_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(kernels.LabError) as e:
        kernels.kernel("debian-12", root=tmp_path)
    assert "no kernel 'debian-12' in the lab cache" in e.value.message
    assert e.value.hint == "run: dmaspec lab fetch debian-12"
    with pytest.raises(kernels.LabError) as e:
        kernels.kernel("mine", root=tmp_path)
    assert "--kernel VMLINUZ --modules DIR --name mine" in e.value.hint


def test_release_strings_select_profiles() -> None:
    assert kernels.kernel_profile_name("6.1.0-31-amd64") == "6.1"
    assert kernels.kernel_profile_name("6.12.107+deb13-amd64") == "6.12"
    with pytest.raises(kernels.LabError):
        kernels.kernel_profile_name("unknown")


def test_the_fetch_uses_its_own_apt_configuration_and_never_the_hosts(tmp_path: Path) -> None:
    if shutil.which("apt-get") is None:
        pytest.skip("no apt-get on this machine: the fetch is for Debian-like hosts (a --kernel is taken instead)")
    apt = kernels._Apt(tmp_path, kernels.RELEASES["debian-13"])
    joined = " ".join(apt.options[1::2])
    assert f"Dir::Etc::SourceList={tmp_path}/apt/trixie/etc/sources.list" in joined
    assert "Dir::Etc::SourceParts=/nonexistent" in joined
    assert f"Dir::State::Status={tmp_path}/apt/trixie/status" in joined
    sources = (tmp_path / "apt" / "trixie" / "etc" / "sources.list").read_text()
    assert sources == "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] " \
        "http://deb.debian.org/debian trixie main\n"


# -- the initramfs --------------------------------------------------------------------------------

def test_modules_come_with_their_dependencies_first_decompressed(fake_kernel: kernels.Kernel) -> None:
    chosen = initramfs.resolve_modules(fake_kernel, [("vivid", "n_devs=1"), ("vgem", "")])
    assert chosen.order == ["videodev", "v4l2_tpg", "vivid", "vgem"]
    assert chosen.builtin == ["mc"]
    assert chosen.params == {"vivid": "n_devs=1"}
    assert all(elf[:4] == b"\x7fELF" for elf in chosen.elf.values())
    assert initramfs.modinfo(chosen.elf["vivid"])["depends"] == "videodev,v4l2-tpg"


def test_a_module_the_kernel_lacks_is_named_with_who_needs_it(fake_kernel: kernels.Kernel) -> None:
    (fake_kernel.modules / "kernel" / "drivers" / "media" / "v4l2-tpg.ko").unlink()
    with pytest.raises(kernels.LabError, match="has no module v4l2_tpg \\(needed by vivid\\)"):
        initramfs.resolve_modules(fake_kernel, [("vivid", "")])


def test_the_initramfs_holds_busybox_init_recorder_modules_and_the_program(fake_kernel: kernels.Kernel,
                                                                            tmp_path: Path) -> None:
    if initramfs._busybox_or_none() is None:
        pytest.skip("no static busybox here (apt-get install busybox-static): .ci/run installs it")
    program = tmp_path / "prog"
    program.write_text("#!/bin/sh\necho hi\n")
    program.chmod(0o755)
    data = initramfs.build(fake_kernel, program, ["a b", "it's"], [("vivid", "n_devs=1")])
    files = _cpio(gzip.decompress(data))
    assert stat.S_ISREG(files["bin/busybox"][0]) and files["bin/busybox"][1][:4] == b"\x7fELF"
    assert files["lab/ftrace-setup.sh"][1] == initramfs.RECORDER.read_bytes()
    assert files["lab/bin/prog"] == (stat.S_IFREG | 0o755, program.read_bytes())
    assert [n for n in files if n.startswith("lab/modules/")] == [
        "lab/modules/videodev.ko", "lab/modules/v4l2_tpg.ko", "lab/modules/vivid.ko"]
    init = files["init"][1].decode()
    assert stat.S_ISDIR(files["lab"][0])
    assert "/lab/bin/prog 'a b' 'it'\"'\"'s' </dev/null" in init
    assert init.index("load videodev ''") < init.index("load vivid n_devs=1") < init.index("ftrace-setup.sh start")
    assert "--syscalls" in init and "--function" in init
    assert init.rstrip().endswith("finish")


def test_a_dynamic_program_brings_its_interpreter_and_libraries(fake_kernel: kernels.Kernel, tmp_path: Path) -> None:
    if initramfs._busybox_or_none() is None:
        pytest.skip("no static busybox here (apt-get install busybox-static): .ci/run installs it")
    src = tmp_path / "p.c"
    src.write_text("#include <stdio.h>\nint main(void){puts(\"x\");return 0;}\n")
    subprocess.run(["cc", "-o", str(tmp_path / "p"), str(src)], check=True)
    interp = initramfs.elf_interpreter((tmp_path / "p").read_bytes())
    assert interp is not None and interp.startswith("/lib")
    files = _cpio(gzip.decompress(initramfs.build(fake_kernel, tmp_path / "p", [], [])))
    assert interp.lstrip("/") in files
    assert any(name.endswith("libc.so.6") for name in files)


def test_a_static_program_has_no_interpreter(tmp_path: Path) -> None:
    src = tmp_path / "s.c"
    src.write_text("int main(void){return 0;}\n")
    built = subprocess.run(["cc", "-static", "-o", str(tmp_path / "s"), str(src)], capture_output=True, check=False)
    if built.returncode != 0:
        pytest.skip("no static C library here (apt-get install libc6-dev)")
    assert initramfs.elf_interpreter((tmp_path / "s").read_bytes()) is None


# -- what the VM sends back -----------------------------------------------------------------------

def test_the_console_separates_the_programs_output_from_the_inits() -> None:
    log = ("[    1.0] kernel says\r\ndmaspec-lab: kernel 6.12.1\r\ndmaspec-lab: module vgem loaded\r\n"
           "dmaspec-lab: program start\r\nPASS udmabuf\r\n[   2.0] a kernel line inside\r\n"
           "dmaspec-lab: program end\r\ndmaspec-lab: exit 1\r\n")
    c = vm.parse_console(log)
    assert (c.kernel, c.status, c.notes) == ("6.12.1", 1, ["module vgem loaded"])
    assert c.output == ["PASS udmabuf", "[   2.0] a kernel line inside"]


def test_a_trace_is_whole_only_with_both_frames_and_its_line_count() -> None:
    body = "# tracer: nop\nline one\n"
    whole = f"junk\r\ndmaspec-lab-trace-begin\r\n{body}dmaspec-lab-trace-end 2\n".encode()
    assert vm.extract_trace(whole) == (body, "")
    assert vm.extract_trace(b"nothing")[1] == "the VM sent no trace"
    cut = f"dmaspec-lab-trace-begin\n{body}".encode()
    assert vm.extract_trace(cut) == (body, "the trace was cut short (no end line)")
    short = f"dmaspec-lab-trace-begin\n{body}dmaspec-lab-trace-end 3\n".encode()
    assert vm.extract_trace(short)[1] == "the trace has 2 lines, the VM sent 3"


# -- the command line -----------------------------------------------------------------------------

def _dmaspec(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DMASPEC_LAB_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "checker", *args], capture_output=True, text=True, cwd=ROOT,
                          check=False, env=env)


def test_lab_run_without_a_kernel_fails_with_exit_4_and_the_fetch_command(tmp_path: Path) -> None:
    out = _dmaspec("lab", "run", "--kernel", "debian-12", "/bin/true", cache=tmp_path)
    assert out.returncode == 4
    assert "no kernel 'debian-12' in the lab cache" in out.stderr
    assert "run: dmaspec lab fetch debian-12" in out.stderr
    assert "Traceback" not in out.stderr


def test_lab_run_needs_a_program_or_the_exerciser(tmp_path: Path) -> None:
    out = _dmaspec("lab", "run", cache=tmp_path)
    assert out.returncode == 2 and "give a PROGRAM or --exerciser" in out.stderr


def test_lab_run_of_a_missing_program_is_bad_input(tmp_path: Path) -> None:
    out = _dmaspec("lab", "run", str(tmp_path / "nothing-here"), cache=tmp_path)
    assert out.returncode == 2 and "nothing-here: no such program" in out.stderr


def test_lab_list_of_an_empty_cache_says_how_to_fill_it(tmp_path: Path) -> None:
    out = _dmaspec("lab", "list", cache=tmp_path)
    assert out.returncode == 0 and "get one with: dmaspec lab fetch" in out.stderr


def test_a_local_kernel_needs_all_three_options(tmp_path: Path) -> None:
    out = _dmaspec("lab", "fetch", "--kernel", "/boot/vmlinuz", cache=tmp_path)
    assert out.returncode == 2 and "needs --kernel, --modules and --name" in out.stderr


# -- a real boot ----------------------------------------------------------------------------------

@pytest.mark.lab
def test_a_program_runs_in_the_vm_and_its_trace_checks(tmp_path: Path) -> None:
    """Boots Debian's 6.12 kernel under qemu: about 20 s of emulation.  Skip with --skip-lab."""
    k = lab.fetch("debian-13")
    src = tmp_path / "hello.c"
    src.write_text('#include <stdio.h>\nint main(int c, char **v){printf("%d %s\\n", c, v[1]);return 3;}\n')
    subprocess.run(["cc", "-static", "-o", str(tmp_path / "hello"), str(src)], check=True)
    result = lab.run(tmp_path / "hello", ["two words"], k, modules=[], workdir=tmp_path / "run", timeout=240)
    assert result.failure == "", result.console_path.read_text()[-3000:]
    assert (result.output, result.status) == (["2 two words"], 3)
    trace = result.trace_path.read_text()
    assert f"dmaspec: kernel={k.release}" in trace
    assert "hello-" in trace  # the program's own events are in it


@pytest.mark.lab
def test_the_exerciser_checks_clean_on_debian_13_and_the_kernel_agrees_with_the_spec(tmp_path: Path) -> None:
    """The issue's acceptance run: every section passes, the trace checks clean, full conformance."""
    from checker.analysis import conformance
    from checker.api import check_file

    k = lab.fetch("debian-13")
    program = lab.build_exerciser(tmp_path / "build")
    result = lab.run(program, [], k, workdir=tmp_path / "run", timeout=300)
    assert result.failure == "", result.console_path.read_text()[-3000:]
    assert result.status == 0 and result.output[-1] == "exerciser: 6 passed, 0 failed, 0 skipped", result.output
    checked = check_file(str(result.trace_path), fmt="ftrace")
    assert checked.profile == "6.12"
    assert checked.findings == [] and not checked.withheld and not checked.errors
    c = conformance.analyze(str(result.trace_path), fmt="ftrace")
    assert c.result.findings == [] and c.disagreed == 0
    met = {(r.action.split("[")[0].replace("llseek", "lseek"), r.rule) for r in c.rows}
    assert {("syscall:ioctl", "CORE-SYNC-FLAGS"), ("syscall:ioctl", "CORE-SYNC-FILE-FLAGS"),
            ("syscall:ioctl", "CORE-IOCTL-UNKNOWN"), ("syscall:lseek", "CORE-LLSEEK"),
            ("syscall:mmap", "CORE-MMAP-TOO-LARGE")} <= met
    assert c.agreed >= 50
    # the vgem section's SYNC START sleeps on the pending write fence its child signals: the kernel's
    # dma_fence_wait_start/_end become the parent's wait, after the child's signal
    from checker.analysis.common import read_events
    from checker.trace import Event

    fence_ops = [(e.op, e.tid, e.args.get("fence")) for e in read_events(str(result.trace_path), "ftrace")
                 if isinstance(e, Event) and e.op in ("dma_fence_signal", "dma_fence_wait_timeout")]
    [(_, parent, fence)] = [op for op in fence_ops if op[0] == "dma_fence_wait_timeout"]
    [signaller] = [tid for op, tid, f in fence_ops if op == "dma_fence_signal" and f == fence]
    assert signaller != parent
    assert fence_ops.index(("dma_fence_signal", signaller, fence)) < fence_ops.index(
        ("dma_fence_wait_timeout", parent, fence))


MISUSES = {"sync-start-no-end": "SYNC-LEAK", "sync-start-twice": "SYNC-START-TWICE",
           "read-bracket-write": "SYNC-ACCESS-DIRECTION", "mmap-no-sync": "MMAP-ACCESS-WITHOUT-SYNC",
           "fd-no-cloexec-exec": "FD-NO-CLOEXEC"}


@pytest.mark.lab
def test_seeded_misuse_is_reported_with_its_rule_from_the_real_kernels_trace(tmp_path: Path) -> None:
    """Each misuse mode runs as its own process in one boot; each process gets exactly its rule."""
    import re

    from checker.api import check_file

    k = lab.fetch("debian-13")
    program = lab.build_exerciser(tmp_path / "build")
    script = tmp_path / "misuse.sh"
    script.write_text("#!/bin/sh\nfor m in " + " ".join(MISUSES) + "; do\n"
                      "\t/lab/work/dmabuf-exerciser --misuse \"$m\" || exit 1\ndone\n")
    script.chmod(0o755)
    result = lab.run(script, [], k, modules=[], workdir=tmp_path / "run", timeout=300,
                     extra_files=[(program, "/lab/work/dmabuf-exerciser")])
    assert result.failure == "" and result.status == 0, (result.failure, result.output)
    trace = result.trace_path.read_text()
    pids = {m["misuse"]: int(m["pid"]) for m in re.finditer(
        r"dmabuf-exercise: begin pid=(?P<pid>\d+) \S+ mode=misuse misuse=(?P<misuse>[\w-]+)", trace)}
    assert sorted(pids) == sorted(MISUSES)
    checked = check_file(str(result.trace_path), fmt="ftrace")
    by_pid: dict[int, list[str]] = {}
    tid_pid = {int(t): int(p) for t, p in re.findall(r"-(\d+)\s+\(\s*(\d+)\)", trace)}
    for f in checked.findings:
        assert f.tid is not None
        by_pid.setdefault(tid_pid.get(f.tid, f.tid), []).append(f.rule)
    for mode, rule in MISUSES.items():
        got = by_pid.get(pids[mode], [])
        if mode == "fd-no-cloexec-exec":  # reported in the exec'd child, which holds the fd
            got += [r for pid, rules in by_pid.items() if pid not in pids.values() for r in rules]
        assert got == [rule], (mode, by_pid)
