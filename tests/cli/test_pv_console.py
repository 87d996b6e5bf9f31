"""The PV console: a guest writes its console ring and notifies; xenconsoled in dom0 moves the bytes
to the console `xl console` shows. The domain's console nodes are in XenStore."""
from __future__ import annotations

import struct

from tests.daemon import run, wait_for, xl
from tests.guest.a32 import HVC, load32, mov, zimage

RING = 0x80000000 + (16 << 20)          # 4.4 layout: the console page follows 16 MiB of RAM
PARAM, SEND = 0x80100000, 0x80100020


def program() -> list[int]:
    text = b"pv console\n"
    prog = [mov(0, 1), *load32(1, PARAM), mov(12, 34), HVC,          # hvm_op(get_param)
            *load32(1, PARAM), 0xE5913008, *load32(2, SEND), 0xE5823000,   # send.port = value
            *load32(4, RING + 1024)]
    for i, ch in enumerate(text):
        prog += [mov(5, ch), 0xE5C45000 | i]                          # strb r5, [r4, #i]
    prog += [*load32(4, RING + 3084), mov(5, len(text)), 0xE5845000,  # out_prod = len
             mov(0, 4), *load32(1, SEND), mov(12, 32), HVC,           # EVTCHNOP_send
             mov(0, 2), *load32(1, SEND + 8), mov(12, 29), HVC, 0xEAFFFFFE]   # poweroff
    return prog


def test_guest_output_on_the_pv_console_reaches_xl_console(board, tmp_path):
    # The image extends to PARAM, where it carries the xen_hvm_param block the guest passes
    # (DOMID_SELF, HVM_PARAM_CONSOLE_EVTCHN), then the send struct and the shutdown reason.
    img = zimage(program())
    img += b"\0" * (PARAM - 0x80008000 - len(img))
    img += struct.pack("<HHIQ", 0x7FF0, 0, 18, 0) + b"\0" * 16 + struct.pack("<I", 0)
    end = 0x80008000 + len(img)
    kernel = tmp_path / "pvcons.zImage"
    kernel.write_bytes(img[:0x2C] + struct.pack("<I", end) + img[0x30:])     # fix the end field
    cfg = tmp_path / "pvcons.cfg"
    cfg.write_text(f'name = "pvcons"\nkernel = "{kernel}"\nmemory = 16\non_poweroff = "preserve"\n')
    assert xl("create", str(cfg), env=board).returncode == 0
    assert wait_for(lambda: "pv console" in xl("console", "pvcons", env=board).stdout)
    domid = [l.split()[1] for l in xl("list", env=board).stdout.splitlines() if l.startswith("pvcons")][0]
    r = run("toolstack.xenstore_cli", "ls", f"/local/domain/{domid}/console", env=board)
    assert 'type = "xenconsoled"' in r.stdout and "ring-ref" in r.stdout and "port" in r.stdout
    xl("destroy", "pvcons", env=board)


def test_toolstack_nodes_as_libxl_create_leaves_them(board, tmp_path):
    from pathlib import Path

    from toolstack.xs import XsClient
    kernel = tmp_path / "spin.zImage"
    kernel.write_bytes(zimage([0xEAFFFFFE]))
    cfg = tmp_path / "nodes.cfg"
    cfg.write_text(f'name = "nodes"\nkernel = "{kernel}"\nmemory = 16\n')
    assert xl("create", str(cfg), env=board).returncode == 0
    try:
        domid = [l.split()[1] for l in xl("list", env=board).stdout.splitlines()
                 if l.startswith("nodes")][0]
        dom = f"/local/domain/{domid}"
        with XsClient(Path(board["XENPY_RUNDIR"]) / "xenstored" / "socket") as xs:
            # device/ and control/ are read-only to the guest, the suspend event channel and
            # control/shutdown are its own (libxl__domain_make's roperm and rwperm).
            assert xs.get_perms(f"{dom}/device") == ["n0", f"r{domid}"]
            assert xs.read(f"{dom}/device/suspend/event-channel") == b""
            assert xs.get_perms(f"{dom}/device/suspend/event-channel") == [f"n{domid}"]
            assert xs.get_perms(f"{dom}/control") == ["n0", f"r{domid}"]
            assert xs.get_perms(f"{dom}/control/shutdown") == [f"n{domid}"]
            assert xs.read(f"{dom}/control/platform-feature-xs_reset_watches") == b"1"
            assert xs.get_perms(f"/libxl/{domid}/device") == ["n0"]
    finally:
        xl("destroy", "nodes", env=board)
