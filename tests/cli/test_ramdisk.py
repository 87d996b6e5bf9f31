"""`ramdisk =`: xl loads the file into the new domain's RAM where libxenguest puts it on ARM and
names it in the guest's device tree (/chosen linux,initrd-start / linux,initrd-end)."""
from __future__ import annotations

import json
import os
import struct

import pytest

from tests.daemon import run, xl
from toolstack.libxl_arm import parse_dtb_summary
from toolstack.xc import SocketTransport, Xc

FDT_MAGIC = 0xD00DFEED
PAGE = 4096
MB = 1 << 20


def guest_tree(env, domid: int) -> tuple[dict, int, int, bytes]:
    """The paused domain's device tree (page aligned, found by its magic): its nodes, guest
    address and size, and the whole RAM."""
    xc = Xc(SocketTransport(os.path.join(env["XENPY_RUNDIR"], "privcmd")))
    try:
        ram, base = xc.map_foreign_ram(domid)
        data = bytes(ram)
        ram.close()
    finally:
        xc.close()
    for off in range(0, len(data), PAGE):
        if struct.unpack_from(">I", data, off)[0] == FDT_MAGIC:
            size = struct.unpack_from(">I", data, off + 4)[0]
            return parse_dtb_summary(data[off:off + size]), base + off, size, data
    raise AssertionError("no device tree in the guest's RAM")


def idle_zimage() -> bytes:
    """A position-independent zImage that spins (the domain stays paused anyway)."""
    code = struct.pack("<I", 0xEAFFFFFE) * 9            # b .
    return code + struct.pack("<III", 0x016F2818, 0, len(code) + 12)


def write_cfg(tmp_path, name: str, memory: int, layout: str, ramdisk) -> str:
    (tmp_path / "k.zImage").write_bytes(idle_zimage())
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(f'name = "{name}"\nkernel = "{tmp_path / "k.zImage"}"\nmemory = {memory}\n'
                   f'guest_layout = "{layout}"\nramdisk = "{ramdisk}"\n')
    return str(cfg)


def cells64(cells: list[int]) -> int:
    assert len(cells) == 2, cells          # libxl writes 64-bit values: two cells
    return cells[0] << 32 | cells[1]


@pytest.mark.parametrize("memory, at_128m", [(32, False), (256, True)])
def test_ramdisk_bytes_are_where_the_tree_says(board, tmp_path, memory, at_128m):
    blob = os.urandom(3 * PAGE + 123)            # not a whole number of pages
    (tmp_path / "rd.img").write_bytes(blob)
    name = f"rd{memory}"
    r = xl("create", "-p", write_cfg(tmp_path, name, memory, "current", tmp_path / "rd.img"),
           env=board)
    assert r.returncode == 0, r.stderr
    domid = int(next(ln.split()[1] for ln in xl("list", env=board).stdout.splitlines()
                     if ln.startswith(name)))
    try:
        tree, dtb_addr, dtb_size, ram = guest_tree(board, domid)
        chosen = tree["/chosen"]
        start = cells64(chosen["linux,initrd-start"])
        end = cells64(chosen["linux,initrd-end"])
        base = 0x40000000                        # GUEST_RAM0_BASE
        assert end - start == len(blob)          # the file's size, not rounded to pages
        assert ram[start - base:end - base] == blob
        # xg_dom_arm.c: boot modules at RAM + 128 MiB when RAM reaches past them, else at the
        # top of RAM; the ramdisk first, the tree on the next page boundary after it.
        rd_pages = -(-len(blob) // PAGE) * PAGE
        dtb_pages = -(-dtb_size // PAGE) * PAGE
        top = base + memory * MB - rd_pages - dtb_pages
        assert start == (base + 128 * MB if at_128m else top)
        assert dtb_addr == start + rd_pages
    finally:
        xl("destroy", name, env=board)


def test_4_4_layout_loads_a_ramdisk_without_describing_it(board, tmp_path):
    """libxl 4.4 wrote no initrd properties; libxc put the ramdisk right after the kernel."""
    blob = os.urandom(2 * PAGE)
    (tmp_path / "rd.img").write_bytes(blob)
    r = xl("create", "-p", write_cfg(tmp_path, "rd44", 32, "4.4", tmp_path / "rd.img"),
           env=board)
    assert r.returncode == 0, r.stderr
    domid = int(next(ln.split()[1] for ln in xl("list", env=board).stdout.splitlines()
                     if ln.startswith("rd44")))
    try:
        tree, _, _, ram = guest_tree(board, domid)
        assert "linux,initrd-start" not in tree["/chosen"]
        assert blob in ram
    finally:
        xl("destroy", "rd44", env=board)


def test_missing_ramdisk_is_one_line(board, tmp_path):
    r = xl("create", "-p", write_cfg(tmp_path, "rdmissing", 32, "current", tmp_path / "nope.img"),
           env=board)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert "nope.img" in r.stderr.strip().splitlines()[-1]
    assert "rdmissing" not in xl("list", env=board).stdout



def test_list_long_shows_the_generated_uuid(board, tmp_path):
    """A cfg without uuid= gets one at create; `xl list -l` shows that one, the one in XenStore's
    /vm path (which a guest reads as /sys/hypervisor/uuid), not the cfg's zeros."""
    (tmp_path / "rd.img").write_bytes(b"x")
    r = xl("create", "-p", write_cfg(tmp_path, "rduuid", 32, "current", tmp_path / "rd.img"),
           env=board)
    assert r.returncode == 0, r.stderr
    try:
        entry = json.loads(xl("list", "-l", "rduuid", env=board).stdout)[0]
        uuid = entry["config"]["c_info"]["uuid"]
        assert uuid != "00000000-0000-0000-0000-000000000000"
        r = run("toolstack.xenstore_cli", "read", f"/local/domain/{entry['domid']}/vm", env=board)
        assert r.stdout.strip() == f"/vm/{uuid}", r.stdout + r.stderr
    finally:
        xl("destroy", "rduuid", env=board)
