"""The dom0 side of the gntcmd guest's command protocol, and its round-trip time.

On a board of its own (a temporary run directory, shut down at the end) the script creates the
guest from examples/gntcmd/gntcmd.cfg with quiet=1 (no console line per command); with --domain
it uses that guest on the board of XENPY_RUNDIR instead. Dom0 reads the guest's port from XenStore, binds it, maps grant 2 with gntdev, and times N
commands (write the command into the page, notify, wait for the notification back, read the
answer), as the ERIKA port's dom0 tool does. Then it stops the guest.

    python bench/gntcmd.py [--domain NAME] [-n 500] [--json bench/results/gntcmd.json]

Absolute figures are this machine's; for scale the script also times a null round trip of the
board (an evtchn "pending" call that returns at once) and a XenStore read over the socket.
"""
from __future__ import annotations

import argparse
import json
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import machine, own_board, write_result  # noqa: E402
from toolstack.xc import SocketTransport  # noqa: E402
from toolstack.xenevtchn import Xenevtchn  # noqa: E402
from toolstack.xengnttab import Xengnttab  # noqa: E402
from toolstack.xs import XsClient  # noqa: E402

CMD_REF, RO_REF = 2, 3
CMD_PING, CMD_ADD, CMD_UPPER, CMD_STATS, CMD_STOP = 1, 2, 3, 4, 5
HDR = struct.Struct("<IIIIIiI")         # seq cmd arg0 arg1 done status result
TEXT = 32


class CmdTimeout(Exception):
    pass


class GntCmd:
    """Dom0's end of one guest's command page: map, bind, call, close."""

    def __init__(self, domid: int, port_path: str | None = None, timeout: float = 10.0) -> None:
        self.domid, self.timeout, self.seq = domid, timeout, 0
        with XsClient() as xs:
            path = port_path or f"/local/domain/{domid}/data/cmd-port"
            self.remote_port = int(xs.read(path))
        self.evt = Xenevtchn(SocketTransport())
        self.gnt = Xengnttab(SocketTransport())
        self.port = self.evt.bind_interdomain(domid, self.remote_port)
        # Xen raises the binder's end once at bind time: that event is no answer.
        if self.evt.pending(timeout=5) is not None:
            self.evt.unmask(self.port)
        self.page, self.handle = self.gnt.map_grant_ref(domid, CMD_REF, writable=True)
        self.seq = struct.unpack_from("<I", self.page, 16)[0]     # resume after a previous client

    def call(self, cmd: int, a: int = 0, b: int = 0, text: bytes | None = None
             ) -> tuple[int, int, bytes]:
        """One command: (status, result, text) as the guest answered."""
        self.seq += 1
        if text is not None:
            self.page[TEXT:TEXT + len(text) + 1] = text + b"\0"
        struct.pack_into("<III", self.page, 4, cmd, a, b)
        struct.pack_into("<I", self.page, 0, self.seq)             # the command exists from here on
        self.evt.notify(self.port)
        deadline = time.monotonic() + self.timeout
        while True:
            fired = self.evt.pending(timeout=max(0.0, deadline - time.monotonic()))
            if fired is None:
                raise CmdTimeout(f"domain {self.domid} did not answer command #{self.seq}")
            self.evt.unmask(fired)
            seq, _, _, _, done, status, result = HDR.unpack_from(self.page, 0)
            if fired == self.port and done == self.seq:
                end = bytes(self.page[TEXT:]).index(b"\0") + TEXT
                return status, result, bytes(self.page[TEXT:end])

    def stop(self) -> tuple[int, int, bytes]:
        """CMD_STOP, then unmap and tell the guest it may revoke its grants."""
        answer = self.call(CMD_STOP)
        self.unmap()
        self.evt.notify(self.port)
        return answer

    def unmap(self) -> None:
        if self.handle is not None:
            self.page = None            # no view of the page may outlive the unmap
            self.gnt.unmap(self.handle)
            self.handle = None

    def close(self) -> None:
        self.unmap()
        self.gnt.close()
        self.evt.close()


def domid_of(name: str) -> int:
    for line in subprocess.run([sys.executable, "-m", "toolstack.xl", "list"], cwd=ROOT,
                               capture_output=True, text=True).stdout.splitlines()[1:]:
        cols = line.split()
        if cols and cols[0] == name:
            return int(cols[1])
    raise SystemExit(f"no domain {name!r}: xl create examples/gntcmd/gntcmd.cfg first")


def wait_port(domid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with XsClient() as xs:
        while time.monotonic() < deadline:
            try:
                xs.read(f"/local/domain/{domid}/data/cmd-port")
                return
            except Exception:
                time.sleep(0.05)
    raise SystemExit(f"domain {domid} never published data/cmd-port")


def measure(domid: int, n: int) -> dict:
    c = GntCmd(domid)
    try:
        for _ in range(10):                                   # warm up both sides
            c.call(CMD_PING)
        times = []
        for i in range(n):
            t = time.perf_counter()
            status, result, _ = c.call(CMD_ADD, i, 1)
            times.append(time.perf_counter() - t)
            assert (status, result) == (0, i + 1)
        # For scale: a privcmd request that does nothing, and a XenStore read over the socket.
        t = time.perf_counter()
        for _ in range(n):
            c.evt.pending(timeout=0)
        privcmd_us = (time.perf_counter() - t) / n * 1e6
        with XsClient() as xs:
            t = time.perf_counter()
            for _ in range(n):
                xs.read(f"/local/domain/{domid}/data/cmd-port")
            xs_us = (time.perf_counter() - t) / n * 1e6
        c.stop()
    finally:
        c.close()
    us = sorted(x * 1e6 for x in times)
    return {
        "commands": n,
        "round_trip_us": {"mean": round(statistics.fmean(us), 1), "median": round(us[n // 2], 1),
                          "p90": round(us[int(n * 0.9)], 1), "min": round(us[0], 1),
                          "max": round(us[-1], 1)},
        "commands_per_s": round(n / sum(times), 1),
        "privcmd_null_request_us": round(privcmd_us, 1),
        "xenstore_socket_read_us": round(xs_us, 1),
    }


def _run(name: str, n: int) -> dict:
    domid = domid_of(name)
    wait_port(domid)
    return {"domid": domid, **measure(domid, n)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", help="an existing gntcmd guest (default: create one)")
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--json", type=Path, default=ROOT / "bench/results/gntcmd.json")
    args = ap.parse_args()
    if args.domain is not None:          # the user's guest, on the user's board
        result = {**machine(), **_run(args.domain, args.n)}
    else:
        with own_board():
            subprocess.run([sys.executable, "-m", "toolstack.xl", "create",
                            str(ROOT / "examples/gntcmd/gntcmd.cfg"), 'name="gntcmd-bench"',
                            'extra="quiet=1"'], cwd=ROOT, check=True)
            result = {**machine(), **_run("gntcmd-bench", args.n)}
    print(json.dumps(result, indent=2))
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
