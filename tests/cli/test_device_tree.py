"""The device tree `xl create` gives a domU: a `device_tree=` partial tree's /passthrough and
/aliases merged in, /hypervisor's extended regions, and clear one-line refusals of bad files."""
from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from tests.daemon import rows, xl
from tests.guest.a32 import B_SELF, zimage
from toolstack.libxl_arm import parse_dtb_summary
from toolstack.xc import SocketTransport, Xc

PARTIAL = """/dts-v1/; / { #address-cells = <2>; #size-cells = <2>;
  passthrough { compatible = "simple-bus"; ranges; #address-cells = <2>; #size-cells = <2>;
    gpio@1c20800 { compatible = "allwinner,sun7i-a20-pinctrl"; reg = <0 0x1c20800 0 0x400>; }; };
  aliases { gpio0 = "/passthrough/gpio@1c20800"; };
  unrelated { keep-out; }; };"""


def config(tmp_path: Path, device_tree: str) -> str:
    img = bytearray(zimage([B_SELF]))
    struct.pack_into("<I", img, 0x28, 0)                 # position independent: current layout
    (tmp_path / "spin.zImage").write_bytes(bytes(img))
    cfg = tmp_path / "dt.cfg"
    cfg.write_text(f'name = "dt"\nkernel = "{tmp_path / "spin.zImage"}"\nmemory = 64\n'
                   f'guest_layout = "current"\ndevice_tree = "{device_tree}"\n')
    return str(cfg)


def guest_dtb(board, domid: int) -> dict:
    xc = Xc(SocketTransport(Path(board["XENPY_RUNDIR"]) / "privcmd"))
    try:
        ram, _base = xc.map_foreign_ram(domid)
        try:
            at = ram.rfind(b"\xd0\x0d\xfe\xed")            # libxl puts it high in RAM
            size = int.from_bytes(ram[at + 4:at + 8], "big")
            return parse_dtb_summary(bytes(ram[at:at + size]))
        finally:
            ram.close()
    finally:
        xc.close()


def test_partial_device_tree_is_merged_into_the_guest_tree(board, tmp_path):
    dtb = tmp_path / "partial.dtb"
    dtb.write_bytes(subprocess.run(["dtc", "-I", "dts", "-O", "dtb"], input=PARTIAL.encode(),
                                   capture_output=True, check=True).stdout)
    r = xl("create", config(tmp_path, str(dtb)), env=board)
    assert r.returncode == 0, r.stderr
    try:
        tree = guest_dtb(board, int(rows(xl("list", env=board).stdout)["dt"][0]))
    finally:
        xl("destroy", "dt", env=board)
    assert tree["/passthrough/gpio@1c20800"]["reg"] == [0, 0x1C20800, 0, 0x400]
    assert tree["/aliases"]["gpio0"] == ["/passthrough/gpio@1c20800"]
    assert "/unrelated" not in tree
    # Region 0 the grant table, then the extended regions above the 64 MiB of RAM (40 bits).
    assert tree["/hypervisor"]["reg"] == [0, 0x38000000, 0, 0x1000000, 0, 0x44000000, 0, 0xBC000000,
                                          2, 0, 0xFE, 0]


@pytest.mark.parametrize("kind", ["fifo", "zero", "no-passthrough", "garbage"])
def test_bad_device_tree_files_are_one_clear_line(board, tmp_path, kind):
    path = tmp_path / "bad.dtb"
    if kind == "fifo":
        os.mkfifo(path)
        expect = f"{path}: device tree is a FIFO, not a regular file"
    elif kind == "zero":
        path = Path("/dev/zero")
        expect = "/dev/zero: device tree is a character device, not a regular file"
    elif kind == "no-passthrough":
        path.write_bytes(subprocess.run(["dtc", "-I", "dts", "-O", "dtb"],
                                        input=b"/dts-v1/; / { aliases { }; };",
                                        capture_output=True, check=True).stdout)
        expect = f"{path}: Can't copy the node \"/passthrough\" from the partial FDT"
    else:
        path.write_bytes(b"\x00" * 64)
        expect = f"{path}: Partial FDT is not a valid Flat Device Tree"
    r = xl("create", config(tmp_path, str(path)), env=board)
    errors = [line for line in r.stderr.splitlines() if not line.startswith("Parsing config")]
    assert r.returncode == 1 and len(errors) == 1 and expect in errors[0], r.stderr
    assert "dt" not in rows(xl("list", env=board).stdout)
