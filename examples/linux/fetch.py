#!/usr/bin/env python3
"""Fetch Debian's armhf LPAE kernel and busybox, and build the initramfs the Linux domU boots.

    python examples/linux/fetch.py [--cache DIR] [--refresh]

Everything goes into a cache directory outside the repository: $XENPY_LINUX_CACHE if set, else
$XDG_CACHE_HOME/xenpy/debian, else ~/.cache/xenpy/debian. The packages come from Debian's archive
with apt (`apt-get download`, which needs armhf as a foreign architecture: the script adds it and
runs `apt-get update` when it is missing, which needs root). They are unpacked with `dpkg-deb -x`.
The result, ready for examples/linux/linux.cfg:

    DIR/vmlinuz        the kernel's zImage (linux-image-*-armmp-lpae, CONFIG_XEN, HVC_XEN)
    DIR/initrd.cpio    a cpio (newc) archive: busybox-static and an /init script
    DIR/manifest.json  which packages these came from

The last line printed is DIR. Run again, it reuses what it fetched unless --refresh is given.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

KERNEL_META = "linux-image-armmp-lpae"  # Debian's meta-package: depends on the current kernel
BUSYBOX = "busybox-static"
ARCH = "armhf"
MARKER = "XENPY-LINUX-INIT: userspace up"  # /init prints this once the filesystems are mounted

# /init: mount the kernel's filesystems, say so, and let busybox's init run a shell on hvc0 (its
# `poweroff` then powers the domain off: a bare shell as PID 1 would ignore the request).
INIT = f"""#!/bin/sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "{MARKER}"
exec /bin/busybox init
"""

INITTAB = """::sysinit:/bin/hostname xenpy
hvc0::respawn:-/bin/sh
::shutdown:/bin/echo "XENPY-LINUX-INIT: shutting down"
"""

PROFILE = """export PS1='\\h:\\w\\$ '
"""


class FetchError(Exception):
    """One line for the user."""


def cache_dir(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("XENPY_LINUX_CACHE"):
        return Path(os.environ["XENPY_LINUX_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xenpy" / "debian"


def _run(*cmd: str, cwd: Path | None = None) -> str:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise FetchError(f"{cmd[0]} not found: this needs Debian's apt and dpkg") from None
    if r.returncode:
        # apt says why on its last error line; the warnings before it are noise.
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("E:")] or \
            r.stderr.strip().splitlines()[-1:] or [f"exit status {r.returncode}"]
        raise FetchError(f"{' '.join(cmd)}: {lines[-1]}")
    return r.stdout


def ensure_armhf() -> None:
    """apt can fetch armhf packages only once armhf is a foreign architecture."""
    if ARCH in _run("dpkg", "--print-foreign-architectures").split():
        return
    if os.geteuid() != 0:
        raise FetchError(f"apt does not know the {ARCH} architecture yet; run as root, or first: "
                         f"dpkg --add-architecture {ARCH} && apt-get update")
    print(f"adding the {ARCH} architecture to dpkg and updating apt's lists", file=sys.stderr)
    _run("dpkg", "--add-architecture", ARCH)
    _run("apt-get", "update", "-qq")


def kernel_package() -> str:
    """The versioned image package the meta-package currently depends on."""
    out = _run("apt-cache", "depends", f"{KERNEL_META}:{ARCH}")
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split()[1].split(":")[0]
    raise FetchError(f"apt-cache depends {KERNEL_META}:{ARCH}: no linux-image dependency "
                     f"(is the {ARCH} package list there? apt-get update)")


def download(pkg: str, debs: Path) -> Path:
    debs.mkdir(parents=True, exist_ok=True)
    before = set(debs.glob("*.deb"))
    _run("apt-get", "download", f"{pkg}:{ARCH}", cwd=debs)
    new = sorted(set(debs.glob("*.deb")) - before) or sorted(debs.glob(f"{pkg}_*_{ARCH}.deb"))
    if not new:
        raise FetchError(f"apt-get download {pkg}:{ARCH} left no .deb in {debs}")
    return new[-1]


def unpack(deb: Path, dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    _run("dpkg-deb", "-x", str(deb), str(dest))


# -- cpio (newc), the format the kernel unpacks into its initramfs -----------------------------

S_IFDIR, S_IFREG, S_IFLNK, S_IFCHR = 0o040000, 0o100000, 0o120000, 0o020000


def _cpio_entry(ino: int, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
                ) -> bytes:
    fields = [ino, mode, 0, 0, 2 if mode & S_IFDIR else 1, 0, len(data), 0, 0, rdev[0], rdev[1],
              len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def make_initramfs(busybox: bytes) -> bytes:
    """The archive: busybox, /init, busybox init's inittab and /dev/console (the kernel opens it
    for /init's output before anything is mounted)."""
    entries: list[tuple[str, int, bytes, tuple[int, int]]] = []
    for d in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "etc", "proc", "sys", "root",
              "tmp"):
        entries.append((d, S_IFDIR | 0o755, b"", (0, 0)))
    entries += [
        ("dev/console", S_IFCHR | 0o600, b"", (5, 1)),
        ("bin/busybox", S_IFREG | 0o755, busybox, (0, 0)),
        ("bin/sh", S_IFLNK | 0o777, b"busybox", (0, 0)),
        ("init", S_IFREG | 0o755, INIT.encode(), (0, 0)),
        ("etc/inittab", S_IFREG | 0o644, INITTAB.encode(), (0, 0)),
        ("etc/profile", S_IFREG | 0o644, PROFILE.encode(), (0, 0)),
    ]
    out = b"".join(_cpio_entry(i + 1, name, mode, data, rdev)
                   for i, (name, mode, data, rdev) in enumerate(entries))
    out += _cpio_entry(0, "TRAILER!!!", 0)
    return out + b"\0" * (-len(out) % 512)


def fetch(cache: Path, refresh: bool = False) -> Path:
    manifest = cache / "manifest.json"
    if not refresh and manifest.exists() and (cache / "vmlinuz").exists() \
            and (cache / "initrd.cpio").exists():
        return cache
    ensure_armhf()
    cache.mkdir(parents=True, exist_ok=True)
    debs = cache / "debs"
    try:
        kdeb, bdeb = download(kernel_package(), debs), download(BUSYBOX, debs)
    except FetchError:
        if os.geteuid() != 0:
            raise
        # Stale lists name versions the archive no longer has (security updates replace
        # kernels): update once and try again.
        print("updating apt's lists and trying again", file=sys.stderr)
        _run("apt-get", "update", "-qq")
        kdeb, bdeb = download(kernel_package(), debs), download(BUSYBOX, debs)
    unpack(kdeb, cache / "kernel")
    unpack(bdeb, cache / "busybox")
    images = sorted((cache / "kernel" / "boot").glob("vmlinuz-*"))
    if not images:
        raise FetchError(f"{kdeb.name} has no /boot/vmlinuz-*")
    shutil.copyfile(images[-1], cache / "vmlinuz")
    busybox = (cache / "busybox" / "bin" / "busybox").read_bytes()
    (cache / "initrd.cpio").write_bytes(make_initramfs(busybox))
    manifest.write_text(json.dumps({"kernel": kdeb.name, "busybox": bdeb.name,
                                    "image": images[-1].name, "marker": MARKER}, indent=2) + "\n")
    return cache


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", help="where to put everything (default: see above)")
    ap.add_argument("--refresh", action="store_true", help="download and build again")
    ns = ap.parse_args(argv)
    try:
        d = fetch(cache_dir(ns.cache), ns.refresh)
    except (FetchError, OSError) as e:
        print(f"fetch.py: {e}", file=sys.stderr)
        return 1
    m = json.loads((d / "manifest.json").read_text())
    print(f"kernel:    {d / 'vmlinuz'} ({m['kernel']})", file=sys.stderr)
    print(f"initramfs: {d / 'initrd.cpio'} ({m['busybox']})", file=sys.stderr)
    print(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
