"""The initramfs examples/linux/fetch.py builds: a cpio newc archive the kernel can unpack, read
back here with a reader written from the format (the kernel's init/initramfs.c rules)."""
from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "linux"))
import fetch  # noqa: E402


def read_newc(blob: bytes) -> dict[str, tuple[int, bytes, tuple[int, int]]]:
    """name -> (mode, data, (rdevmajor, rdevminor)); checks magic, padding and the trailer."""
    out, off = {}, 0
    while True:
        assert blob[off:off + 6] == b"070701", f"bad magic at {off}"
        f = [int(blob[off + 6 + 8 * i:off + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name_at = off + 110
        name = blob[name_at:name_at + namesize - 1].decode()
        assert blob[name_at + namesize - 1] == 0
        data_at = name_at + namesize + (-(110 + namesize) % 4)
        data = blob[data_at:data_at + size]
        off = data_at + size + (-size % 4)
        if name == "TRAILER!!!":
            assert not any(blob[off:]) and len(blob) % 512 == 0
            return out
        out[name] = (mode, data, (rmaj, rmin))


def test_archive_holds_busybox_init_and_a_console():
    entries = read_newc(fetch.make_initramfs(b"\x7fELF busybox"))
    mode, data, _ = entries["init"]
    assert stat.S_ISREG(mode) and mode & 0o111 and data.startswith(b"#!/bin/sh\n")
    assert fetch.MARKER.encode() in data and b"exec /bin/busybox init" in data
    for fs in (b"mount -t proc", b"mount -t sysfs", b"mount -t devtmpfs"):
        assert fs in data
    assert entries["bin/busybox"][1] == b"\x7fELF busybox" and entries["bin/busybox"][0] & 0o111
    mode, target, _ = entries["bin/sh"]
    assert stat.S_ISLNK(mode) and target == b"busybox"
    mode, _, rdev = entries["dev/console"]
    assert stat.S_ISCHR(mode) and rdev == (5, 1)
    assert b"hvc0::respawn:-/bin/sh" in entries["etc/inittab"][1]
    for d in ("proc", "sys", "dev", "bin", "sbin", "usr/bin", "usr/sbin"):
        assert stat.S_ISDIR(entries[d][0])
    # Parents come before what they hold, as the kernel creates them in archive order.
    names = list(entries)
    assert names.index("dev") < names.index("dev/console")


@pytest.mark.parametrize("env, expect", [
    ({"XENPY_LINUX_CACHE": "/x/y"}, "/x/y"),
    ({"XDG_CACHE_HOME": "/c"}, "/c/xenpy/debian"),
])
def test_cache_directory(monkeypatch, env, expect):
    monkeypatch.delenv("XENPY_LINUX_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert str(fetch.cache_dir()) == expect
