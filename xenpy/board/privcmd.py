"""The privcmd endpoint: dom0 userspace's only way into the hypervisor (/dev/xen/privcmd).

A request is a marshalled hypercall from domain 0: {"op": "domctl" | "sysctl" | "memory_op" |
"sched_op" | "xen_version" | "mmap_foreign" | "console_read" | "console_write", ...}. The reply is
{"ret": int, "out": {...}}; mmap_foreign also passes the domain's RAM file descriptor (as privcmd's
mmap of foreign frames does), so the toolstack writes a guest's memory directly.

"gdbserver" starts (cmd "start"), reports on ("status") or ends ("stop") the GDB remote stub of a
domain: a TCP listener in the board (xenpy/board/gdbstub.py), as Xen's gdbsx is a dom0 service.

"trace_read" returns the trace buffer's events (xentrace maps Xen's trace pages instead).
"evtchn_inject" (set a port pending) and "gnttab_dump" (a domain's grant entries and who maps
them) are dom0's introspection aids, as QEMU's xen-event-inject and GNTTABOP_dump_table.

One request is not a hypercall: "devmem" reads a register of a board device at its machine
address, as dom0's /dev/mem does (dom0 keeps the board's devices mapped 1:1, including those it
passes through; Xen's own console UART excepted).

Framing on the Unix socket: a 4-byte little-endian length, then JSON. The in-process transport
(tests, the board's own dom0 services) goes through the same encode/decode.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from xenpy import trace
from xenpy.arch.arm import hvm
from xenpy.board import gdbstub, gntdev
from xenpy.board.evtchn_dev import EvtchnDevice
from xenpy.common import event_channel, grant_table
from xenpy.common.domctl import do_domctl
from xenpy.common.sysctl import do_sysctl
from xenpy.public import errno
from xenpy.public.event_channel import (EVTCHNOP_alloc_unbound, EVTCHNOP_status,
                                        EVTCHNSTAT_closed, VIRQ_CONSOLE)
from xenpy.public.grant_table import GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE
from xenpy.public.memory import XENMEM_populate_physmap
from xenpy.public.privcmd import MAX_MSG, send_msg
from xenpy.public.sched import SCHEDOP_remote_shutdown, SCHEDOP_shutdown

if TYPE_CHECKING:
    from xenpy.common.hypervisor import Hypervisor

Reply = tuple[dict[str, Any], int | None]

_HWDOM_SHUTDOWN = {  # common/shutdown.c's messages, by SHUTDOWN_* reason
    0: "Hardware Dom0 halted: halting machine",
    1: "Hardware Dom0 shutdown: rebooting machine",
    3: "Hardware Dom0 crashed: rebooting machine in 5 seconds.",
    4: "Hardware Dom0 shutdown: watchdog rebooting machine",
    5: "Hardware domain 0 did unsupported soft reset, rebooting.",
}


def _waits(req: Any) -> bool:
    return isinstance(req, dict) and (req.get("op") == "console_read" or (
        req.get("op") == "evtchn" and req.get("cmd") == "pending"))


class Privcmd:
    def __init__(self, hv: "Hypervisor", on_host_shutdown: Callable[[int], None] | None = None,
                 on_console_input: Callable[[int], None] | None = None):
        self.hv = hv
        self.on_host_shutdown = on_host_shutdown
        self.on_console_input = on_console_input     # xenconsoled: input queued for a domain
        self._server: socket.socket | None = None
        self._stop = threading.Event()
        self._reported: set[tuple[str, str, str]] = set()

    # -- the requests ---------------------------------------------------------------------------

    def call(self, req: dict[str, Any], session: dict[str, Any] | None = None) -> Reply:
        """One request. `session` is per connection: what an open file of the device would hold.

        On a deterministic board a request runs between two guest rounds (under the board
        lock), except the two that wait for the guests: an evtchn read and a console read."""
        if _waits(req):
            with self.hv.dom0_waits():
                return self._call(req, session)
        with self.hv.big_lock:
            return self._call(req, session)

    def _call(self, req: dict[str, Any], session: dict[str, Any] | None) -> Reply:
        hv, dom0 = self.hv, self.hv.domains[0]
        if not isinstance(req, dict) or not isinstance(req.get("op"), str):
            return {"ret": -errno.EINVAL, "out": {}}, None     # not a request at all
        op = req["op"]
        session = {} if session is None else session
        try:
            if op == "gntdev":
                return gntdev.handle(self.hv, req, session)
            if op == "evtchn":
                return self._evtchn(req, session), None
            if op == "gnttab_seed":
                return self._gnttab_seed(req), None
            if op == "event_channel_op":
                return self._event_channel_op(req), None
            if op == "devmem":
                return self._devmem(req), None
            if op == "gdbserver":
                return self._gdbserver(req), None
            if op == "evtchn_inject":
                return self._evtchn_inject(req), None
            if op == "gnttab_dump":
                return self._gnttab_dump(req), None
            if op == "trace_read":
                events, nxt = trace.read(int(req.get("since", 0)),
                                         min(int(req.get("limit", 2000)), 2000))
                return {"ret": 0, "out": {"events": events, "next": nxt}}, None
            if op == "hvm_op":
                rc, value = hvm.hvm_param_op(dom0, int(req["cmd"]), int(req["domid"]),
                                             int(req["index"]), int(req.get("value", 0)))
                return {"ret": rc, "out": {"value": value}}, None
            if op == "domctl":
                ret, out = do_domctl(hv, dom0, req)
            elif op == "sysctl":
                ret, out = do_sysctl(hv, dom0, req)
            elif op == "memory_op":
                ret, out = self._memory_op(req)
            elif op == "sched_op":
                ret, out = self._sched_op(req)
            elif op == "xen_version":
                ret, out = 0, {"major": hv.version[0], "minor": hv.version[1],
                               "extra": hv.extraversion, "capabilities": hv.capabilities,
                               "changeset": hv.changeset, "commandline": hv.cmdline,
                               **hv.compile_info}
            elif op == "mmap_foreign":
                d = hv.domains.get(int(req["domid"]))
                if d is None or d.ram is None or d.privileged:
                    return {"ret": -errno.ESRCH, "out": {}}, None
                assert d.layout is not None
                return {"ret": 0, "out": {"ram_base": d.layout.ram_base,
                                          "size": d.mem_bytes}}, d.ram_fd
            elif op == "console_read":
                ret, out = self._console_read(req)
            elif op == "console_write":
                d = hv.domains.get(int(req["domid"]))
                if d is None:
                    ret, out = -errno.ESRCH, {}
                elif req.get("type", "pv") == "vuart":
                    with d.vuart_console.cond:
                        d.vuart_input += req["data"].encode("latin-1")
                    ret, out = 0, {}
                else:
                    with d.console.cond:
                        d.console_input += req["data"].encode("latin-1")
                    if d.privileged:       # input on the hypervisor console is dom0's
                        event_channel.send_global_virq(hv, VIRQ_CONSOLE)
                    ret, out = 0, {}
                if ret == 0 and self.on_console_input is not None and not d.privileged:
                    self.on_console_input(d.domid)
            else:
                ret, out = -errno.EINVAL, {}       # an unknown request, like an unknown ioctl
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError,
                RecursionError):
            ret, out = -errno.EINVAL, {}           # a field missing or of the wrong type
        except Exception as e:  # noqa: BLE001 - a bug in a handler: say so, keep serving
            self._report_raise(op, e)
            ret, out = -errno.EINVAL, {}
        return {"ret": ret, "out": out}, None

    def _report_raise(self, op: str, e: Exception) -> None:
        """A handler raised what no request should make it raise: log where, once per place."""
        import traceback
        tb = traceback.extract_tb(e.__traceback__)
        where = f"{tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno} in {tb[-1].name}" if tb else "?"
        key = (op, type(e).__name__, where)
        if key in self._reported:
            return
        self._reported.add(key)
        self.hv.log(f"privcmd: request {op!r} raised {type(e).__name__}: {e} (at {where}); "
                    f"answered EINVAL, the board carries on")

    def _evtchn(self, req: dict[str, Any], session: dict[str, Any]) -> dict[str, Any]:
        """/dev/xen/evtchn: a device per connection, so its ports close with the connection."""
        dev = session.get("evtchn")
        if dev is None:
            dev = session["evtchn"] = EvtchnDevice(self.hv)
        cmd = req["cmd"]
        try:
            if cmd == "bind_unbound":
                return {"ret": 0, "out": {"port": dev.bind_unbound(int(req["remote_domid"]))}}
            if cmd == "bind_interdomain":
                return {"ret": 0, "out": {"port": dev.bind_interdomain(int(req["remote_domid"]),
                                                                      int(req["remote_port"]))}}
            if cmd == "bind_virq":
                return {"ret": 0, "out": {"port": dev.bind_virq(int(req["virq"]))}}
            if cmd == "pending":
                port = dev.pending(_timeout(req))
                return {"ret": 0, "out": {"port": port}}
            if cmd in ("notify", "unbind", "unmask"):
                getattr(dev, cmd)(int(req["port"]))
                return {"ret": 0, "out": {}}
        except OSError as e:
            return {"ret": -(e.errno or errno.EINVAL), "out": {}}
        return {"ret": -errno.ENOSYS, "out": {}}

    def _event_channel_op(self, req: dict[str, Any]) -> dict[str, Any]:
        """EVTCHNOP_alloc_unbound issued by dom0 for another domain (the store and console ports),
        and EVTCHNOP_status of any domain's port (beyond Xen's fields, `pending` and `masked`
        from the domain's shared_info, for `xenpy evtchn list`)."""
        if req["cmd"] == EVTCHNOP_status:
            return self._evtchn_status(int(req["dom"]), int(req["port"]))
        if req["cmd"] != EVTCHNOP_alloc_unbound:
            return {"ret": -errno.ENOSYS, "out": {}}
        port = event_channel.alloc_unbound(self.hv.domains[0], int(req["dom"]), int(req["remote_dom"]))
        return {"ret": min(port, 0), "out": {"port": port}}

    def _evtchn_status(self, domid: int, port: int) -> dict[str, Any]:
        st = event_channel.status(self.hv.domains[0], domid, port)
        if isinstance(st, int):
            return {"ret": st, "out": {}}
        d = self.hv.domains[domid]
        return {"ret": 0, "out": {"status": st.status, "vcpu": st.vcpu, "dom": st.dom,
                                  "port": st.port, "virq": st.virq,
                                  "pending": event_channel.is_pending(d, port),
                                  "masked": event_channel.is_masked(d, port)}}

    def _evtchn_inject(self, req: dict[str, Any]) -> dict[str, Any]:
        """Set a bound port of a domain pending, as if its remote end had sent (QEMU's
        xen-event-inject); not a hypercall: dom0's debugging aid, like devmem."""
        domid, port = int(req["domid"]), int(req["port"])
        st = event_channel.status(self.hv.domains[0], domid, port)
        if isinstance(st, int):
            return {"ret": st, "out": {}}
        if st.status == EVTCHNSTAT_closed:
            return {"ret": -errno.EINVAL, "out": {}}
        event_channel.evtchn_set_pending(self.hv.domains[domid], port)
        return {"ret": 0, "out": {}}

    def _gnttab_dump(self, req: dict[str, Any]) -> dict[str, Any]:
        """GNTTABOP_dump_table's entries as data (it prints them to the console on Xen)."""
        d = self.hv.domains.get(int(req["domid"]))
        if d is None:
            return {"ret": -errno.ESRCH, "out": {}}
        return {"ret": 0, "out": {"entries": grant_table.table_entries(d)}}

    def _devmem(self, req: dict[str, Any]) -> dict[str, Any]:
        addr, size = int(req["addr"]), int(req.get("size", 4))
        if size not in (1, 2, 4) or addr % size:
            return {"ret": -errno.EINVAL, "out": {}}
        for dev in self.hv.config.devices:
            if dev.base <= addr < dev.base + dev.size:
                if dev.xen_owned:
                    return {"ret": -errno.EPERM, "out": {}}
                return {"ret": 0, "out": {"value": dev.read(0, addr - dev.base, size)}}
        return {"ret": -errno.ENXIO, "out": {}}

    def _gdbserver(self, req: dict[str, Any]) -> dict[str, Any]:
        domid, cmd = int(req["domid"]), req["cmd"]
        if cmd == "start":
            ret, out = gdbstub.start(self.hv, domid, str(req.get("host", "127.0.0.1")),
                                     int(req.get("port", 0)))
        elif cmd == "status":
            ret, out = gdbstub.status(domid)
        elif cmd == "stop":
            ret, out = gdbstub.stop(domid)
        else:
            ret, out = -errno.EINVAL, {}
        return {"ret": ret, "out": out}

    def _gnttab_seed(self, req: dict[str, Any]) -> dict[str, Any]:
        """The domain builder's grant-table seeding (xc_dom_gnttab_seed): the reserved console
        and xenstore entries of a new domain grant its ring pages to the backend domain. Xen's
        toolstack does it through a foreign mapping of grant frame 0; this is that write."""
        d = self.hv.domains.get(int(req["domid"]))
        ref = int(req["ref"])
        if d is None or d.privileged or d.ram is None:
            return {"ret": -errno.ESRCH, "out": {}}
        if ref not in (GNTTAB_RESERVED_CONSOLE, GNTTAB_RESERVED_XENSTORE):
            return {"ret": -errno.EINVAL, "out": {}}
        grant_table.seed_entry(d, ref, int(req["backend"]), int(req["gfn"]))
        return {"ret": 0, "out": {}}

    def _memory_op(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """XENMEM_populate_physmap: the RAM bank (one extent list from the RAM base), or the
        layout's magic pages (a list of their frames)."""
        if req["cmd"] != XENMEM_populate_physmap:
            return -errno.ENOSYS, {}
        d = self.hv.domains.get(int(req["domid"]))
        if d is None or d.privileged:
            return -errno.ESRCH, {}
        assert d.layout is not None
        if int(req.get("extent_order", 0)):
            return -errno.EINVAL, {}
        if "gpfns" in req:
            ret = self.hv.domain_populate_magic(d, [int(g) for g in req["gpfns"]])
            return (len(req["gpfns"]) if ret == 0 else ret), {}
        if int(req["extent_start"]) != d.layout.ram_base >> 12:
            return -errno.EINVAL, {}   # one contiguous bank from the layout's RAM base
        ret = self.hv.domain_populate(d, int(req["nr_extents"]))
        return (int(req["nr_extents"]) if ret == 0 else ret), {}

    def _sched_op(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        cmd, reason = req["cmd"], int(req.get("reason", 0))
        if cmd == SCHEDOP_shutdown:           # dom0 shuts down: the whole machine goes
            self._hwdom_shutdown(reason)
            return 0, {}
        if cmd == SCHEDOP_remote_shutdown:
            d = self.hv.domains.get(int(req["domain_id"]))
            if d is None:
                return -errno.ESRCH, {}
            if d.privileged:                  # Xen: the hardware domain takes the machine
                self._hwdom_shutdown(reason)
                return 0, {}
            if not 0 <= reason <= 0xFF:       # Xen keeps the reason in a u8
                return -errno.EINVAL, {}
            d.shutdown(reason)
            return 0, {}
        return -errno.ENOSYS, {}

    def _hwdom_shutdown(self, reason: int) -> None:
        """Xen's hwdom_shutdown(): the hardware domain's shutdown halts or reboots the machine,
        with its reason on the console. Here the board stops either way."""
        self.hv.log(_HWDOM_SHUTDOWN.get(reason, f"Hardware Dom0 shutdown (unknown reason "
                                                f"{reason}): rebooting machine in 5 seconds."))
        if self.on_host_shutdown:
            self.on_host_shutdown(reason)

    def _console_read(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Console output of a domain from `offset`, waiting up to `timeout` s for more. A
        recently destroyed domain's console is still readable (it reports dying)."""
        domid = int(req["domid"])
        d = self.hv.domains.get(domid)
        if req.get("type", "pv") == "vuart":       # the vPL011's ring (xl console -t vuart)
            if d is None or d.vpl011 is None:
                return -errno.ENOENT, {}
            log = d.vuart_console
        else:
            log = d.console if d is not None else self.hv.dead_consoles.get(domid)
        if log is None:
            return -errno.ESRCH, {}
        offset, timeout = int(req.get("offset", 0)), _timeout(req)
        if offset < 0:
            raise ValueError("negative offset")
        gone = lambda: d is None or d.is_dying   # noqa: E731
        deadline = time.monotonic() + timeout
        with log.cond:
            while log.end <= offset and not gone():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                log.cond.wait(left)
            offset, data = log.read(offset, 65536)
        return 0, {"data": data.decode("latin-1"), "offset": offset + len(data),
                   "shutdown": d is not None and d.is_shutdown, "dying": gone()}

    # -- the socket -------------------------------------------------------------------------------

    def serve(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(path))
        os.chmod(path, 0o600)       # dom0 root only, like /dev/xen/privcmd
        srv.listen(16)
        self._server = srv
        threading.Thread(target=self._accept, daemon=True, name="privcmd").start()

    def _accept(self) -> None:
        assert self._server is not None
        from xenpy.xenstore.server import Acceptor
        acceptor = Acceptor(self._server, "privcmd", self.hv.log)
        while not self._stop.is_set():
            try:
                conn = acceptor.accept()
            except OSError:
                acceptor.close()
                return                       # the socket was closed: the board is stopping
            if conn is None:
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True,
                             name="privcmd-client").start()

    def _client(self, conn: socket.socket) -> None:
        session: dict[str, Any] = {}
        with conn:
            try:
                while True:
                    body = _read_frame(conn)
                    if body is None:
                        return
                    try:
                        req = json.loads(body)
                    except (ValueError, RecursionError):    # not JSON, or nested too deep
                        reply, fd = {"ret": -errno.EINVAL, "out": {}}, None
                    else:
                        reply, fd = self.call(req, session)
                    send_msg(conn, reply, fd)
            except (OSError, ValueError):
                return   # a broken client loses its connection; the board carries on
            finally:
                for device in ("evtchn", "gntdev"):
                    if device in session:
                        session[device].close()

    def close(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.close()


FRAME_TIMEOUT = 10.0    # seconds a client may take to send the rest of a frame it started


def _timeout(req: dict[str, Any]) -> float:
    """A request's wait in seconds: finite, not negative, at most 5 s (no request may hold a
    server thread for long)."""
    t = req.get("timeout", 0)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < float("inf"):
        raise ValueError(f"bad timeout {t!r}")
    return min(float(t), 5.0)


def _recv(conn: socket.socket, n: int) -> bytes:
    """Up to n bytes; descriptors passed with them are closed at once: no privcmd request
    takes one, and a descriptor left open would be a leak the client controls."""
    data, fds, _flags, _addr = socket.recv_fds(conn, n, 16)
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    return data


def _read_frame(conn: socket.socket) -> bytes | None:
    """One request's body; None at end of stream. A frame too large for privcmd is read and
    answered as an empty (invalid) body, so the stream stays in step."""
    conn.settimeout(None)                # waiting for the next request: as long as it takes
    head = _recv(conn, 4)
    if not head:
        return None
    conn.settimeout(FRAME_TIMEOUT)       # a started frame must be finished (else: dropped)
    while len(head) < 4:
        more = _recv(conn, 4 - len(head))
        if not more:
            return None
        head += more
    (n,) = struct.unpack("<I", head)
    body = bytearray()
    while n:
        chunk = _recv(conn, min(n, 1 << 16))
        if not chunk:
            return None
        n -= len(chunk)
        if len(body) <= MAX_MSG:         # beyond: drained, only to keep the stream in step
            body += chunk
    return bytes(body) if len(body) <= MAX_MSG else b""
