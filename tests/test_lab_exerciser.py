"""The lab exerciser, traces/record/lab/exerciser.c: the program `dmaspec lab` runs inside the VM.

Nothing here needs dma-buf devices. The program is compiled the way the lab compiles it (static, warnings as
errors), its ioctl numbers are compared with the system's uapi headers where those exist, its marker formats are
checked against the documented grammar (in the source, and in what a run writes), and it is run here, where it
finds no udmabuf, heap, vgem or vivid and must say SKIP for each section and exit 0. On a machine that has some
of them (as root), those sections really run and must pass.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from spec import SPEC
from tests.conftest import ROOT

LAB = Path(ROOT, "traces", "record", "lab")
SOURCE = LAB / "exerciser.c"
SECTIONS = ["udmabuf", "heap", "vgem", "vivid", "fork", "exit"]
MISUSES = {"sync-start-no-end": "SYNC-LEAK", "sync-start-twice": "SYNC-START-TWICE",
           "read-bracket-write": "SYNC-ACCESS-DIRECTION", "mmap-no-sync": "MMAP-ACCESS-WITHOUT-SYNC",
           "fd-no-cloexec-exec": "FD-NO-CLOEXEC"}
CFLAGS = ["-static", "-O2", "-Wall", "-Wextra", "-Werror"]
CC = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")

# The marker grammar documented at the top of exerciser.c.
FIELD = r"[a-z_]+=[^ ()]+"
OUTCOME = r"(?:ok|E[A-Z0-9]+)(?:\|(?:ok|E[A-Z0-9]+))*"
STEP = re.compile(rf"^dmabuf-exercise: (?P<section>[a-z0-9-]+): (?P<text>[^=()]*?)(?P<fields>(?: {FIELD})*)"
                  rf" \(expect (?P<expect>{OUTCOME})\)$")
STATUS = re.compile(rf"^dmabuf-exercise: [a-z0-9-]+: (?:BEGIN|PASS|FAIL|SKIP .+|NOTE .+|MISMATCH(?: {FIELD})+)$")
BEGIN_END = re.compile(rf"^dmabuf-exercise: (?:begin|end)(?: {FIELD})+$")


def marker_ok(line: str) -> bool:
    m = STEP.match(line)
    if m:
        return m["text"].strip() != "" and not m["text"].endswith(" ")
    return bool(STATUS.match(line) or BEGIN_END.match(line))


@pytest.fixture(scope="module")
def exerciser(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if CC is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH: the exerciser cannot be built")
    out = tmp_path_factory.mktemp("lab") / "exerciser"
    build = subprocess.run([CC, *CFLAGS, "-o", str(out), str(SOURCE)], capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr
    assert build.stderr == "", build.stderr  # no warnings at all
    return out


def run(exe: Path, *args: str, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, check=False)


def test_builds_statically(exerciser: Path) -> None:
    """No program interpreter: it runs from a busybox initramfs without a C library."""
    data = exerciser.read_bytes()
    assert data[:4] == b"\x7fELF"
    is64 = data[4] == 2
    little = "<" if data[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack_from(little + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(little + "HH", data, 0x36)
    else:
        phoff, = struct.unpack_from(little + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(little + "HH", data, 0x2A)
    types = [struct.unpack_from(little + "I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    assert 3 not in types, "PT_INTERP present: the exerciser is dynamically linked"
    assert 2 not in types, "PT_DYNAMIC present: the exerciser is dynamically linked"


def test_list_names_sections_and_misuse_rules(exerciser: Path) -> None:
    r = run(exerciser, "--list")
    assert r.returncode == 0, r.stderr
    sections, misuses = [], {}
    for line in r.stdout.splitlines():
        kind, rest = line.split(" ", 1)
        if kind == "section":
            sections.append(rest.split(":", 1)[0])
        else:
            assert kind == "misuse", line
            name, rule = rest.split(":", 1)[0].split()
            misuses[name] = rule
    assert sections == SECTIONS
    assert misuses == MISUSES
    rule_ids = {r.id for r in SPEC.rules}
    assert set(misuses.values()) <= rule_ids


def test_runs_without_devices(exerciser: Path, tmp_path: Path) -> None:
    """Every section either passes or says SKIP with a reason; the summary counts them; markers parse."""
    markers = tmp_path / "markers.txt"
    r = run(exerciser, "--marker-file", str(markers))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("exerciser: kernel ")
    results = {}
    for line in lines[1:-1]:
        m = re.match(r"^(PASS|SKIP|FAIL|NOTE) ([a-z0-9-]+)(:.*)?$", line)
        assert m, line
        assert m[1] != "FAIL", r.stdout
        if m[1] != "NOTE":
            assert m[2] not in results, line
            results[m[2]] = m[1]
            if m[1] == "SKIP":
                assert m[3] and len(m[3]) > 3, line  # a reason
    assert list(results) == SECTIONS
    passed = sum(v == "PASS" for v in results.values())
    skipped = sum(v == "SKIP" for v in results.values())
    assert lines[-1] == f"exerciser: {passed} passed, 0 failed, {skipped} skipped"
    written = markers.read_text().splitlines()
    assert written[0].startswith("dmabuf-exercise: begin pid=")
    assert "mode=exercise" in written[0] and f"sections={','.join(SECTIONS)}" in written[0]
    assert written[-1] == f"dmabuf-exercise: end passed={passed} failed=0 skipped={skipped}"
    bad = [line for line in written if not marker_ok(line)]
    assert not bad, bad
    for section in SECTIONS:
        assert f"dmabuf-exercise: {section}: BEGIN" in written


def test_sections_option_selects_and_orders(exerciser: Path) -> None:
    r = run(exerciser, "--sections", "fork,udmabuf")
    assert r.returncode == 0, r.stdout + r.stderr
    names = [line.split()[1].rstrip(":") for line in r.stdout.splitlines() if line.split()[0] in ("PASS", "SKIP")]
    assert names == ["udmabuf", "fork"]
    assert r.stdout.splitlines()[0].endswith("sections udmabuf,fork")


@pytest.mark.parametrize("name", sorted(MISUSES))
def test_misuse_modes_run(exerciser: Path, tmp_path: Path, name: str) -> None:
    markers = tmp_path / "markers.txt"
    r = run(exerciser, "--misuse", name, "--marker-file", str(markers))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"misuse {name} (expect {MISUSES[name]})" in r.stdout.splitlines()[0]
    assert re.search(rf"^(PASS|SKIP) {name}\b", r.stdout, re.M), r.stdout
    written = markers.read_text().splitlines()
    assert written[0].startswith("dmabuf-exercise: begin ")
    assert f"misuse={name} rule={MISUSES[name]}" in written[0]
    assert all(marker_ok(line) for line in written), written


@pytest.mark.parametrize("args", [["--sections", "nosuch"], ["--misuse", "nosuch"], ["--bogus"],
                                  ["--misuse", "mmap-no-sync", "--sections", "heap"], ["--timeout", "0"]])
def test_bad_usage_exits_2(exerciser: Path, args: list[str]) -> None:
    r = run(exerciser, *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr


def test_marker_grammar_examples() -> None:
    """The regexes above accept what the grammar allows and nothing else."""
    good = ["dmabuf-exercise: heap: DMA_BUF_IOCTL_SYNC START|WRITE fd=5 flags=0x2 (expect ok)",
            "dmabuf-exercise: udmabuf: UDMABUF_CREATE size zero size=0 (expect EINVAL)",
            "dmabuf-exercise: vgem: DRM_IOCTL_VGEM_FENCE_SIGNAL fence=1 (expect ok|ETIMEDOUT)",
            "dmabuf-exercise: mmap-no-sync: mmap_access access=write addr=0x7f00 len=4096 (expect ok)",
            "dmabuf-exercise: heap: MISMATCH expected=EINVAL got=ok",
            "dmabuf-exercise: vivid: SKIP no vivid node", "dmabuf-exercise: end passed=1 failed=0 skipped=5"]
    bad = ["dmabuf-exercise: heap: mmap (whole) fd=5 (expect ok)",
           "dmabuf-exercise: heap: mmap fd=5 whole (expect ok)",
           "dmabuf-exercise: heap: mmap fd=5 (expect maybe)", "dmabuf-exercise: Heap: BEGIN"]
    assert all(marker_ok(line) for line in good)
    assert not any(marker_ok(line) for line in bad)


def _call_args(src: str, start: int) -> list[str]:
    """The top-level arguments of the call whose '(' is at src[start]."""
    args, depth, i, cur = [], 0, start, ""
    while True:
        c = src[i]
        if c == '"':
            j = i + 1
            while src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            cur += src[i:j + 1]
            i = j + 1
            continue
        if c == "(":
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif c == ")":
            depth -= 1
            if depth == 0:
                args.append(cur.strip())
                return args
        elif c == "," and depth == 1:
            args.append(cur.strip())
            cur = ""
            i += 1
            continue
        cur += c
        i += 1


def test_marker_formats_in_the_source_follow_the_grammar() -> None:
    """Every step(...) and TRY(...) format, with its conversions filled in, is words then key=value fields.

    The program also checks each step's text at run time (a bad one is a FAIL), which covers the strings that
    reach a format through %s; this catches the formats themselves without devices.
    """
    src = SOURCE.read_text()
    found = 0
    for m in re.finditer(r"\b(TRY|step)\(", src):
        if src[m.start() - 1] in "_" or src[m.start():m.start() + 20].startswith("step(const"):
            continue
        args = _call_args(src, m.end() - 1)
        if m[1] == "TRY" and args[0] == "(expect)":
            continue  # the macro's own definition
        expect, fmt_arg = args[0], args[2] if m[1] == "TRY" else args[1]
        if not fmt_arg.startswith('"'):
            continue  # a computed format (none today)
        fmt = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', fmt_arg))
        text = re.sub(r"%[-0-9.]*(?:ll|l|z)?[sduxp]", "X", fmt).replace("%%", "%")
        line = f"dmabuf-exercise: sec: {text} (expect ok)"
        assert marker_ok(line), f"format breaks the marker grammar: {fmt!r}"
        if expect.startswith('"'):
            assert re.fullmatch(OUTCOME, expect.strip('"')), expect
        found += 1
    assert found > 100, found


def test_ioctl_numbers_match_the_system_headers(exerciser: Path, tmp_path: Path) -> None:
    """dmabuf-uapi.h spells the kernel's numbers; compare with every uapi header this machine has."""
    mine = dict(line.split() for line in run(exerciser, "--print-ioctls").stdout.splitlines())
    assert len(mine) == 15
    probe = tmp_path / "probe.c"
    probe.write_text(r"""
#include <stdio.h>
#include <fcntl.h>
#define P(x) printf("%s 0x%lx\n", #x, (unsigned long)(x))
#if __has_include(<linux/dma-buf.h>)
#include <linux/dma-buf.h>
#endif
#if __has_include(<linux/udmabuf.h>)
#include <linux/udmabuf.h>
#endif
#if __has_include(<linux/dma-heap.h>)
#include <linux/dma-heap.h>
#endif
#if __has_include(<drm/drm.h>)
#include <drm/drm.h>
#elif __has_include(<libdrm/drm.h>)
#include <libdrm/drm.h>
#endif
#if __has_include(<drm/vgem_drm.h>)
#include <drm/vgem_drm.h>
#elif __has_include(<libdrm/vgem_drm.h>)
#include <libdrm/vgem_drm.h>
#endif
int main(void) {
#ifdef DMA_BUF_IOCTL_SYNC
    P(DMA_BUF_IOCTL_SYNC);
#endif
#ifdef DMA_BUF_SET_NAME_A
    P(DMA_BUF_SET_NAME_A); P(DMA_BUF_SET_NAME_B);
#endif
#ifdef DMA_BUF_IOCTL_EXPORT_SYNC_FILE
    P(DMA_BUF_IOCTL_EXPORT_SYNC_FILE); P(DMA_BUF_IOCTL_IMPORT_SYNC_FILE);
#endif
#ifdef UDMABUF_CREATE
    P(UDMABUF_CREATE); P(UDMABUF_CREATE_LIST);
#endif
#ifdef DMA_HEAP_IOCTL_ALLOC
    P(DMA_HEAP_IOCTL_ALLOC);
#endif
#ifdef DRM_IOCTL_VERSION
    P(DRM_IOCTL_VERSION); P(DRM_IOCTL_GEM_CLOSE); P(DRM_IOCTL_PRIME_HANDLE_TO_FD); P(DRM_IOCTL_PRIME_FD_TO_HANDLE);
    P(DRM_IOCTL_MODE_CREATE_DUMB);
#endif
#ifdef DRM_IOCTL_VGEM_FENCE_ATTACH
    P(DRM_IOCTL_VGEM_FENCE_ATTACH); P(DRM_IOCTL_VGEM_FENCE_SIGNAL);
#endif
    return 0;
}
""")
    exe = tmp_path / "probe"
    build = subprocess.run([str(CC), "-o", str(exe), str(probe)], capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stderr
    system = dict(line.split() for line in run(exe).stdout.splitlines())
    if not system:
        pytest.skip("no dma-buf, udmabuf, dma-heap or DRM uapi headers installed to compare with")
    assert {k: mine[k] for k in system} == system
