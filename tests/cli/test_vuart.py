"""vuart = "sbsa_uart": the vPL011 a domU writes to reaches `xl console -t vuart` through its
ring and xenconsoled, and what dom0 types there comes back through the UART's receive side."""
from __future__ import annotations

import struct
from pathlib import Path

from tests.daemon import rows, run, wait_for, xl
from tests.guest.a32 import HVC, load32, mov, zimage
from toolstack.xc import SocketTransport, Xc

UART = 0x22000000


def program(text: bytes, reason_at: int) -> list[int]:
    prog = [*load32(4, UART)]
    for ch in text:
        prog += [mov(5, ch), 0xE5845000]                      # str r5, [r4] (DR)
    # Echo until a newline: wait while FR.RXFE (bit 4), read DR, write it back.
    prog += [0xE5946018, 0xE3160010, 0x1AFFFFFC,              # ldr r6, [r4, #0x18]; tst; bne
             0xE5945000, 0xE5845000, 0xE355000A, 0x1AFFFFF8,  # ldr r5; str r5; cmp r5, #10; bne
             mov(0, 2), *load32(1, reason_at), mov(12, 29), HVC, 0xEAFFFFFE]   # poweroff
    return prog


def guest(tmp_path: Path, vuart: bool = True) -> str:
    n = len(program(b"vuart ok\n", 0))
    reason_at = 0x40008000 + 0x30 + 4 * n                  # the data after the program
    img = bytearray(zimage(program(b"vuart ok\n", reason_at), struct.pack("<I", 0)))
    struct.pack_into("<I", img, 0x28, 0)                      # position independent
    kernel = tmp_path / "uart.zImage"
    kernel.write_bytes(bytes(img))
    cfg = tmp_path / "uart.cfg"
    cfg.write_text(f'name = "uart"\nkernel = "{kernel}"\nmemory = 16\nguest_layout = "current"\n'
                   'on_poweroff = "preserve"\n' + ('vuart = "sbsa_uart"\n' if vuart else ""))
    return str(cfg)


def test_vuart_output_and_input_through_xenconsoled(board, tmp_path):
    r = xl("create", guest(tmp_path), env=board)
    assert r.returncode == 0, r.stderr
    try:
        domid = int(rows(xl("list", env=board).stdout)["uart"][0])
        xc = Xc(SocketTransport(Path(board["XENPY_RUNDIR"]) / "privcmd"))
        try:
            assert wait_for(lambda: "vuart ok" in xc.console_read(domid, 0, 0.2, "vuart")["data"])
            xc.console_write(domid, b"ping\n", "vuart")      # what `xl console -t vuart` sends
        finally:
            xc.close()
        # The guest echoes the line, then powers off, which ends `xl console`.
        r = xl("console", "-t", "vuart", "uart", env=board)
        assert r.returncode == 0 and r.stdout == "vuart ok\nping\n", r
        # The PV console is another device: nothing of this reaches it.
        assert "vuart ok" not in xl("console", "uart", env=board).stdout
        ls = run("toolstack.xenstore_cli", "ls", f"/local/domain/{domid}/vuart/0", env=board).stdout
        assert 'type = "xenconsoled"' in ls and "ring-ref" in ls and "port" in ls
    finally:
        xl("destroy", "uart", env=board)


def test_console_t_vuart_of_a_domain_without_one(board, tmp_path):
    assert xl("create", guest(tmp_path, vuart=False), env=board).returncode == 0
    try:
        r = xl("console", "-t", "vuart", "uart", env=board)
        # libxl_console_get_tty finds no such console, then xl's own line
        assert r.returncode == 1 and r.stderr.endswith("Unable to attach console\n")
        assert "Unable to find console vuart 0" in r.stderr and "Traceback" not in r.stderr
        r = xl("console", "-t", "bogus", "uart", env=board)
        assert r.returncode == 1 and "console type supported are: pv, serial, vuart" in r.stderr
    finally:
        xl("destroy", "uart", env=board)
