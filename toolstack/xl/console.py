"""xl console (xl_console.c): attach to a domain's console.

xenpy's domains have one console: what the guest writes with HYPERVISOR_console_io and its PV
console ring (xenconsoled joins them), so `-t pv` and `-t serial` both name it, console 0.
`-t vuart` is the emulated SBSA UART, which a xenpy domain has only with vuart = "sbsa_uart".
"""
from __future__ import annotations

import os
import select
import sys
import termios
import tty

from toolstack.xc import Xc, XcError
from toolstack.xl.utils import XTL_ERROR, ctx, err, find_domain, getopts, log

ESCAPE = 0x1D   # Ctrl-]
CONSOLE_NAMES = "pv, serial, vuart"


def main_console(argv: list[str]) -> int:
    opts, args = getopts(argv[1:], "n:t:e:", [], "console", 1)
    ctype, num, escape = None, 0, ESCAPE
    for o, a in opts:
        if o == "-t":
            if a not in ("pv", "serial", "vuart"):
                err(f"console type supported are: {CONSOLE_NAMES}")
                return 1
            ctype = a
        elif o == "-n":
            import re
            m = re.match(r"\s*([+-]?\d+)", a)       # atoi
            num = int(m.group(1)) if m else 0
        elif o == "-e":
            escape = _escape_char(a)
    domid = find_domain(args[0])
    lx = ctx()
    if lx.xc.domain_getinfo(domid) is None:
        log(XTL_ERROR, "libxl_console.c", "libxl__console_tty_path",
            "Failed to get tty path", domid)
        err("Unable to attach console")
        return 1
    has_vuart = True
    if ctype == "vuart":
        try:
            lx.xs.read(f"/local/domain/{domid}/vuart/0/port")
        except Exception:  # noqa: BLE001 - no such node: the domain has no vuart
            has_vuart = False
    if ctype is not None and (num != 0 or not has_vuart):
        # libxl_console_get_tty: no such console -> ERROR_INVAL, then xl's message
        log(XTL_ERROR, "libxl_console.c", "libxl_console_get_tty",
            f"Unable to find console {ctype} {num}" if ctype != "vuart" else
            "Unable to find console vuart 0: the domain has no emulated UART", domid)
        err("Unable to attach console")
        return 1
    return console_loop(lx.xc, domid, escape, "vuart" if ctype == "vuart" else "pv")


def _escape_char(text: str) -> int:
    """xl's -e: "^X" is a control character, else the first character."""
    if len(text) == 2 and text[0] == "^":
        return ord(text[1].upper()) & 0x1F
    return ord(text[0]) if text else ESCAPE


def console_loop(xc: Xc, domid: int, escape: int = ESCAPE, kind: str = "pv") -> int:
    """Show a domain's console from its first byte; the escape character (Ctrl-]) detaches.
    Ends when the domain stops."""
    interactive = sys.stdin.isatty()
    saved = None
    if interactive:
        saved = termios.tcgetattr(sys.stdin.fileno())
        tty.setraw(sys.stdin.fileno())
    out = sys.stdout.buffer
    offset = 0
    try:
        while True:
            try:
                r = xc.console_read(domid, offset, 0.1 if interactive else 0.5, kind)
            except XcError:
                return 0      # the domain is gone
            data = r["data"].encode("latin-1")
            if data:
                out.write(data.replace(b"\n", b"\r\n") if interactive else data)
                out.flush()
            offset = r["offset"]
            if (r["dying"] or r["shutdown"]) and not data:
                return 0
            if interactive and select.select([sys.stdin], [], [], 0)[0]:
                typed = os.read(sys.stdin.fileno(), 1024)
                if escape in typed:
                    return 0
                xc.console_write(domid, typed, kind)
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
