"""Kernels for the lab: fetched once from Debian, or the user's own, kept in a cache.

A lab kernel is a directory in the cache holding what booting it needs: the
kernel image (``vmlinuz``), its build configuration (``config``), its module
tree (``lib/modules/<release>/``, compressed modules left as the package ships
them: the initramfs builder decompresses only the ones a run loads) and
``kernel.json``, which says where it came from.

``fetch("debian-13")`` downloads ``linux-image-amd64`` of that Debian release
with ``apt-get download``, through a private apt configuration under the cache
(its own sources list, lists, status and archive directories), so the
machine's own apt sources and state are never touched.  ``add_local`` takes a
kernel image and module tree the user already has.

The cache is ``$DMASPEC_LAB_CACHE``, else ``$XDG_CACHE_HOME/dmaspec/lab``,
else ``~/.cache/dmaspec/lab``.

>>> RELEASES["debian-13"].suite
'trixie'
>>> kernel_profile_name("6.12.107+deb13-amd64")
'6.12'
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from spec import profile as find_profile


class LabError(Exception):
    """The lab cannot do what was asked: what went wrong and what to do about it."""

    def __init__(self, message: str, hint: str = "", log: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.log = log


@dataclass(frozen=True)
class Release:
    """A Debian release whose stock kernel the lab can fetch."""

    name: str
    suite: str
    keyring: str  # the archive key the private apt configuration trusts
    note: str


RELEASES: dict[str, Release] = {
    r.name: r
    for r in (
        Release("debian-13", "trixie", "/usr/share/keyrings/debian-archive-keyring.gpg",
                "Linux 6.12; udmabuf and the system dma-heap built in, vgem and vivid as modules"),
        Release("debian-12", "bookworm", "/usr/share/keyrings/debian-archive-keyring.gpg",
                "Linux 6.1; no udmabuf and no dma-heaps, vgem and vivid as modules"),
    )
}
DEFAULT_RELEASE = "debian-13"
MIRROR = "http://deb.debian.org/debian"
META_PACKAGE = "linux-image-amd64"


@dataclass(frozen=True)
class Kernel:
    """A kernel in the lab's cache."""

    name: str  # the cache entry: the release ("debian-13") or the user's --name
    release: str  # what uname -r says, e.g. "6.12.107+deb13-amd64"
    directory: Path
    source: str  # the package and version it came from, or "local: PATH"

    @property
    def vmlinuz(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def modules(self) -> Path:
        return self.directory / "lib" / "modules" / self.release

    @property
    def config(self) -> Path:
        return self.directory / "config"

    @property
    def profile(self) -> str:
        """The spec profile that this kernel's version selects."""
        return kernel_profile_name(self.release)

    def builtin(self, option: str) -> bool | None:
        """Whether ``CONFIG_<option>`` is built in (True), a module (False), or absent (None)."""
        if not self.config.exists():
            return None
        pattern = re.compile(rf"^CONFIG_{re.escape(option)}=([ym])$")
        for line in self.config.read_text(errors="replace").splitlines():
            m = pattern.match(line)
            if m:
                return m.group(1) == "y"
        return None


def kernel_profile_name(release: str) -> str:
    """The spec profile for a kernel release string such as ``6.12.107+deb13-amd64``."""
    m = re.match(r"(\d+)\.(\d+)", release)
    if not m:
        raise LabError(f"cannot read a kernel version from {release!r}")
    return find_profile(f"{m.group(1)}.{m.group(2)}").name


def cache_root() -> Path:
    """Where the lab keeps kernels, apt state and run directories."""
    explicit = os.environ.get("DMASPEC_LAB_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dmaspec" / "lab"


def cached_kernels(root: Path | None = None) -> Iterator[Kernel]:
    """The kernels in the cache, by name."""
    base = (root or cache_root()) / "kernels"
    if not base.is_dir():
        return
    for entry in sorted(base.iterdir()):
        meta = entry / "kernel.json"
        if meta.is_file():
            yield _load(entry)


def kernel(name: str | None = None, root: Path | None = None) -> Kernel:
    """One cached kernel by name (default: the Debian 13 one), with a message saying how to get it."""
    wanted = name or DEFAULT_RELEASE
    entry = (root or cache_root()) / "kernels" / wanted
    if not (entry / "kernel.json").is_file():
        have = ", ".join(k.name for k in cached_kernels(root)) or "none"
        how = f"dmaspec lab fetch {wanted}" if wanted in RELEASES else \
            f"dmaspec lab fetch --kernel VMLINUZ --modules DIR --name {wanted}"
        raise LabError(f"no kernel {wanted!r} in the lab cache ({have} cached)", hint=f"run: {how}")
    return _load(entry)


def _load(entry: Path) -> Kernel:
    meta = json.loads((entry / "kernel.json").read_text())
    return Kernel(name=meta["name"], release=meta["release"], directory=entry, source=meta["source"])


def _save(k: Kernel) -> None:
    meta = asdict(k)
    meta["directory"] = str(k.directory)
    (k.directory / "kernel.json").write_text(json.dumps(meta, indent=2) + "\n")


def _need(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise LabError(f"{tool} is not installed", hint=f"install it (Debian/Ubuntu: apt-get install {package}), "
                       "or give a kernel you have: dmaspec lab fetch --kernel VMLINUZ --modules DIR --name NAME")
    return found


def _run(argv: list[str], what: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"{what} failed (exit {proc.returncode})", log=(proc.stdout + proc.stderr)[-4000:],
                       hint="check the network and the Debian mirror; the log above has apt's own words")
    return proc.stdout


class _Apt:
    """apt-get and apt-cache over a private configuration: one release's lists, nothing of the host's."""

    def __init__(self, root: Path, release: Release) -> None:
        self.dir = root / "apt" / release.suite
        for sub in ("lists/partial", "archives/partial", "etc/preferences.d"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        if not Path(release.keyring).is_file():
            raise LabError(f"the Debian archive key {release.keyring} is missing",
                           hint="install it: apt-get install debian-archive-keyring")
        sources = self.dir / "etc" / "sources.list"
        sources.write_text(f"deb [signed-by={release.keyring}] {MIRROR} {release.suite} main\n")
        (self.dir / "status").touch()
        self.options = [
            "-o", f"Dir::Etc::SourceList={sources}",
            "-o", "Dir::Etc::SourceParts=/nonexistent",
            "-o", f"Dir::Etc::Preferences={self.dir / 'etc' / 'preferences'}",
            "-o", f"Dir::Etc::PreferencesParts={self.dir / 'etc' / 'preferences.d'}",
            "-o", f"Dir::State::Lists={self.dir / 'lists'}",
            "-o", f"Dir::State::Status={self.dir / 'status'}",
            "-o", f"Dir::Cache={self.dir}",
            "-o", f"Dir::Cache::Archives={self.dir / 'archives'}",
            "-o", "Debug::NoLocking=1",
            "-o", "APT::Architecture=amd64",
        ]
        if os.geteuid() == 0:  # downloads into the cache, which apt's _apt user may not be able to write
            self.options += ["-o", "APT::Sandbox::User=root"]
        self.apt_get = _need("apt-get", "apt")
        self.apt_cache = _need("apt-cache", "apt")

    def update(self) -> None:
        _run([self.apt_get, *self.options, "-q", "update"], "apt-get update (private lists)")

    def image_package(self) -> tuple[str, str]:
        """The versioned kernel image package that linux-image-amd64 depends on, and its version."""
        out = _run([self.apt_cache, *self.options, "depends", META_PACKAGE], f"apt-cache depends {META_PACKAGE}")
        for line in out.splitlines():
            m = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
            if m:
                pkg = m.group(1)
                policy = _run([self.apt_cache, *self.options, "policy", pkg], f"apt-cache policy {pkg}")
                v = re.search(r"Candidate:\s*(\S+)", policy)
                return pkg, v.group(1) if v else "?"
        raise LabError(f"{META_PACKAGE} names no kernel image package", log=out)

    def download(self, package: str, into: Path) -> Path:
        into.mkdir(parents=True, exist_ok=True)
        before = set(into.glob("*.deb"))
        proc = subprocess.run([self.apt_get, *self.options, "-q", "download", package], cwd=into,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"apt-get download {package} failed (exit {proc.returncode})",
                           log=(proc.stdout + proc.stderr)[-4000:])
        new = sorted(set(into.glob(f"{package}_*.deb")) - before) or sorted(into.glob(f"{package}_*.deb"))
        if not new:
            raise LabError(f"apt-get download {package} wrote no package file in {into}")
        return new[-1]


def fetch(release_name: str = DEFAULT_RELEASE, root: Path | None = None, refresh: bool = False,
          log: list[str] | None = None) -> Kernel:
    """Download a Debian release's stock kernel into the cache (once; ``refresh`` to do it again)."""
    if release_name not in RELEASES:
        raise LabError(f"unknown release {release_name!r}", hint="one of: " + ", ".join(RELEASES))
    base = root or cache_root()
    entry = base / "kernels" / release_name
    if (entry / "kernel.json").is_file() and not refresh:
        return _load(entry)
    release = RELEASES[release_name]
    dpkg_deb = _need("dpkg-deb", "dpkg")
    apt = _Apt(base, release)
    say = log.append if log is not None else (lambda _s: None)
    say(f"apt-get update ({release.suite}, private lists under {apt.dir})")
    apt.update()
    package, version = apt.image_package()
    say(f"apt-get download {package} ({version})")
    deb = apt.download(package, base / "debs")
    with tempfile.TemporaryDirectory(dir=base) as tmp:
        unpacked = Path(tmp) / "root"
        _run([dpkg_deb, "-x", str(deb), str(unpacked)], f"dpkg-deb -x {deb.name}")
        images = sorted((unpacked / "boot").glob("vmlinuz-*"))
        if not images:
            raise LabError(f"{deb.name} holds no /boot/vmlinuz-*")
        kernel_release = images[0].name[len("vmlinuz-"):]
        tree = _module_tree(unpacked, kernel_release)
        staged = Path(tmp) / "kernel"
        (staged / "lib" / "modules").mkdir(parents=True)
        shutil.move(str(images[0]), staged / "vmlinuz")
        config = unpacked / "boot" / f"config-{kernel_release}"
        if config.exists():
            shutil.move(str(config), staged / "config")
        shutil.move(str(tree), staged / "lib" / "modules" / kernel_release)
        if entry.exists():
            shutil.rmtree(entry)
        entry.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staged), entry)
    k = Kernel(name=release_name, release=kernel_release, directory=entry, source=f"{package} {version}")
    _save(k)
    deb.unlink()
    say(f"cached {k.release} in {entry}")
    return k


def _module_tree(unpacked: Path, kernel_release: str) -> Path:
    for prefix in ("usr/lib/modules", "lib/modules"):
        tree = unpacked / prefix / kernel_release
        if tree.is_dir():
            return tree
    raise LabError(f"the package holds no module tree for {kernel_release}")


def add_local(name: str, vmlinuz: Path, modules: Path, root: Path | None = None,
              config: Path | None = None) -> Kernel:
    """Put a kernel the user already has in the cache: the image and a ``lib/modules/<release>`` tree."""
    if not re.fullmatch(r"[A-Za-z0-9._+-]+", name):
        raise LabError(f"kernel name {name!r}: use letters, digits and . _ + -")
    if not vmlinuz.is_file():
        raise LabError(f"{vmlinuz}: no such kernel image")
    if not (modules / "kernel").is_dir() and not any(modules.glob("modules.*")):
        raise LabError(f"{modules}: not a module tree (expected lib/modules/<release>/ with kernel/ inside)")
    entry = (root or cache_root()) / "kernels" / name
    if entry.exists():
        shutil.rmtree(entry)
    (entry / "lib" / "modules").mkdir(parents=True)
    kernel_release = modules.resolve().name
    shutil.copy2(vmlinuz, entry / "vmlinuz")
    shutil.copytree(modules, entry / "lib" / "modules" / kernel_release, symlinks=True)
    found_config = config or next(iter(sorted(vmlinuz.parent.glob(f"config-{kernel_release}"))), None)
    if found_config and found_config.is_file():
        shutil.copy2(found_config, entry / "config")
    k = Kernel(name=name, release=kernel_release, directory=entry, source=f"local: {vmlinuz}")
    _save(k)
    return k
