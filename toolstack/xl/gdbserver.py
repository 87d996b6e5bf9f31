"""`xl gdbserver DOMAIN`: debug a running domain with gdb (the board's GDB remote stub).

The stub is a service of the board (xenpy/board/gdbstub.py, started through privcmd), so gdb
talks TCP straight to the board; this command starts it, says where to connect and waits, as
gdbserver does, until the session ends (gdb detaches, kills the domain, or the domain ends).
Ctrl-C here closes the stub and leaves the domain running.
"""
from __future__ import annotations

import argparse
import sys
import time

NAME = "gdbserver"
USAGE = "[--port N | --listen HOST:PORT] <Domain>"
HELP = "Serve the GDB remote protocol for a domain."
POLL_S = 0.2

EPILOG = """\
Each vCPU is a gdb thread. A stop (a breakpoint, a watchpoint, a step, Ctrl-C in gdb) pauses the
whole domain (xl list shows it paused); other domains keep running. To debug from the first
instruction, create the domain paused (xl create -p): gdb's first `continue` starts it.

  xl create -p examples/gntcmd/gntcmd.cfg
  xl gdbserver gntcmd --port 1234 &
  gdb-multiarch gntcmd.elf -ex 'target remote 127.0.0.1:1234'

monitor evtchn, monitor grants and monitor vgic show the domain's event channels, grant entries
and virtual GIC.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    where = p.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, metavar="N",
                       help="TCP port on 127.0.0.1 (default: a free port, printed)")
    where.add_argument("--listen", metavar="HOST:PORT", help="address to listen on")
    p.add_argument("domain", help="domain name or ID")


def _address(ns: argparse.Namespace) -> tuple[str, int]:
    if ns.listen:
        host, sep, port = ns.listen.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"xl gdbserver: --listen {ns.listen!r} is not HOST:PORT")
        return host, int(port)
    port = 0 if ns.port is None else ns.port
    if not 0 <= port <= 65535:
        raise ValueError(f"xl gdbserver: --port {port} is not a TCP port")
    return "127.0.0.1", port


def run(ns: argparse.Namespace, libxl) -> int:
    from toolstack.xc import XcError
    from xenpy.public import errno
    try:
        host, port = _address(ns)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1
    lx = libxl()
    try:
        domid = lx.lookup(ns.domain)
    except LookupError as e:
        print(e, file=sys.stderr)
        return 1
    try:
        out = lx.xc.gdbserver(domid, "start", host, port)
    except XcError as e:
        why = {errno.EBUSY: "a gdb stub already serves it",
               errno.EINVAL: "it runs no guest code (Domain-0, or no memory yet)",
               errno.EADDRINUSE: f"{host}:{port} is in use",
               errno.EADDRNOTAVAIL: f"cannot listen on {host}:{port}",
               errno.EACCES: f"no permission to listen on {host}:{port}"}.get(e.errno, str(e))
        print(f"xl gdbserver: domain {domid}: {why}", file=sys.stderr)
        return 1
    print(f"Listening on {out['host']}:{out['port']} for gdb (domain {domid}): "
          f"target remote {out['host']}:{out['port']}", flush=True)
    try:
        connected = False
        while True:
            try:
                st = lx.xc.gdbserver(domid, "status")
            except XcError:
                break
            if st["connected"] and not connected:
                connected = True
                print(f"Remote debugging from host {st['peer']}", flush=True)
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        try:
            lx.xc.gdbserver(domid, "stop")
        except XcError:
            pass
        return 130
    print("gdb session ended", flush=True)
    return 0


def main(argv: list[str]) -> int:
    """The command table's entry: xl's argv (argv[0] the command) parsed by argparse."""
    from toolstack.xl.utils import ctx
    p = argparse.ArgumentParser(prog=f"xl {NAME}", description=HELP)
    add_arguments(p)
    return run(p.parse_args(argv[1:]), ctx)
