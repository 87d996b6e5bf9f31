"""libxenctrl for xenpy: typed calls that become privcmd hypercall messages.

This module is the toolstack's whole view of the hypervisor. It speaks to a board through its
privcmd socket, or to an in-process board object with the same messages (tests).
"""
from __future__ import annotations

import json
import mmap
import os
import socket
from pathlib import Path
from typing import Any, Protocol

from xenpy.public import domctl as D
from xenpy.public import sysctl as S
from xenpy.public.errno import NAMES as ERRNO_NAMES
from xenpy.public.memory import XENMEM_populate_physmap
from xenpy.public.privcmd import recv_msg, send_msg
from xenpy.rundir import board_died_message, privcmd_path


DPCI_ADD_MAPPING, DPCI_REMOVE_MAPPING = 1, 0     # domctl.h: xen_domctl_memory_mapping.add_mapping
E2BIG = 7


class XcError(Exception):
    def __init__(self, what: str, ret: int) -> None:
        self.errno = -ret
        name = ERRNO_NAMES.get(-ret, str(-ret))
        super().__init__(f"{what} failed: {os.strerror(-ret)} ({name})")


class BoardNotRunning(Exception):
    def __init__(self, message: str, died: bool = False) -> None:
        super().__init__(message)
        self.died = died        # it was running and died (kill -9, a crash), not shut down


class Transport(Protocol):
    def call(self, req: dict[str, Any]) -> tuple[dict[str, Any], int | None]: ...


class SocketTransport:
    def __init__(self, path: Path | None = None) -> None:
        self._send, self._recv = send_msg, recv_msg
        self.path = path or privcmd_path()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(str(self.path))
        except OSError as e:
            self.sock.close()
            died = board_died_message()
            raise BoardNotRunning(died or f"no board at {self.path} ({e.strerror})",
                                  died=died is not None) from None

    def call(self, req: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
        self._send(self.sock, req)
        try:
            reply, fd = self._recv(self.sock)
        except OSError:
            reply, fd = None, None
        if reply is None:
            died = board_died_message()
            raise BoardNotRunning(died or "the board closed the privcmd connection",
                                  died=died is not None)
        return reply, fd

    def close(self) -> None:
        self.sock.close()


class LocalTransport:
    """An in-process board: the same JSON messages, without the socket."""

    def __init__(self, privcmd: Any) -> None:
        self.privcmd = privcmd
        self.session: dict[str, Any] = {}      # what the socket connection would hold

    def call(self, req: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
        reply, fd = self.privcmd.call(json.loads(json.dumps(req)), self.session)
        return json.loads(json.dumps(reply)), (os.dup(fd) if fd is not None else None)

    def close(self) -> None:
        for device in ("evtchn", "gntdev"):        # what closing the device files would do
            if device in self.session:
                self.session.pop(device).close()


class Xc:
    def __init__(self, transport: Transport | None = None) -> None:
        self.t = transport or SocketTransport()

    def close(self) -> None:
        self.t.close()  # type: ignore[attr-defined]

    def _call(self, what: str, req: dict[str, Any]) -> tuple[int, dict[str, Any], int | None]:
        reply, fd = self.t.call(req)
        ret = int(reply["ret"])
        if ret < 0:
            if fd is not None:
                os.close(fd)
            raise XcError(what, ret)
        return ret, reply.get("out", {}), fd

    def domctl(self, cmd: int, domid: int, u: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call(D.NAMES.get(cmd, str(cmd)), {
            "op": "domctl", "cmd": cmd, "interface_version": D.XEN_DOMCTL_INTERFACE_VERSION,
            "domain": domid, "u": u or {}})[1]

    def sysctl(self, cmd: int, u: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        ret, out, _ = self._call(f"sysctl {cmd}", {
            "op": "sysctl", "cmd": cmd, "interface_version": S.XEN_SYSCTL_INTERFACE_VERSION,
            "u": u or {}})
        return ret, out

    # -- domains ----------------------------------------------------------------------------------

    def domain_create(self, *, max_vcpus: int, handle: bytes, layout: str | None,
                      domid: int = 0, max_evtchn_port: int = 1023, max_grant_frames: int = -1,
                      max_maptrack_frames: int = -1, cpupool_id: int = 0) -> int:
        """-1 for the grant limits means the hypervisor's defaults, as in Xen's createdomain."""
        out = self.domctl(D.XEN_DOMCTL_createdomain, domid, {
            "ssidref": 0, "handle": handle.hex(), "flags": D.XEN_DOMCTL_CDF_hvm | D.XEN_DOMCTL_CDF_hap,
            "max_vcpus": max_vcpus, "max_evtchn_port": max_evtchn_port,
            "max_grant_frames": max_grant_frames, "max_maptrack_frames": max_maptrack_frames,
            "cpupool_id": cpupool_id, "arch": {"gic_version": 1, "xenpy_layout": layout}})
        return int(out["domain"])

    def domain_setmaxmem(self, domid: int, max_memkb: int) -> None:
        self.domctl(D.XEN_DOMCTL_max_mem, domid, {"max_memkb": max_memkb})

    def populate_physmap(self, domid: int, base_pfn: int, nr_pages: int) -> None:
        self._call("populate_physmap", {"op": "memory_op", "cmd": XENMEM_populate_physmap,
                                        "domid": domid, "nr_extents": nr_pages,
                                        "extent_order": 0, "extent_start": base_pfn})

    def populate_magic(self, domid: int, gfns: list[int]) -> None:
        self._call("populate_physmap", {"op": "memory_op", "cmd": XENMEM_populate_physmap,
                                        "domid": domid, "gpfns": gfns, "extent_order": 0})

    def evtchn_alloc_unbound(self, dom: int, remote_dom: int) -> int:
        """EVTCHNOP_alloc_unbound for another domain: a port of `dom` for `remote_dom`."""
        from xenpy.public.event_channel import EVTCHNOP_alloc_unbound
        return int(self._call("alloc_unbound", {"op": "event_channel_op", "cmd": EVTCHNOP_alloc_unbound,
                                                "dom": dom, "remote_dom": remote_dom})[1]["port"])

    def gnttab_seed(self, domid: int, ref: int, gfn: int, backend: int = 0) -> None:
        """Fill a reserved grant entry of a new domain (console or xenstore ring page)."""
        self._call("gnttab_seed", {"op": "gnttab_seed", "domid": domid, "ref": ref, "gfn": gfn,
                                   "backend": backend})

    def map_foreign_ram(self, domid: int) -> tuple[mmap.mmap, int]:
        """All of a domU's RAM, writable (privcmd mmap of foreign frames). Returns (map, base)."""
        _, out, fd = self._call("mmap_foreign", {"op": "mmap_foreign", "domid": domid})
        assert fd is not None
        try:
            return mmap.mmap(fd, int(out["size"])), int(out["ram_base"])
        finally:
            os.close(fd)

    # -- passthrough I/O memory (xc_domain_iomem_permission, xc_domain_memory_mapping) -----------

    def domain_iomem_permission(self, domid: int, first_mfn: int, nr_mfns: int,
                                allow: bool) -> None:
        self.domctl(D.XEN_DOMCTL_iomem_permission, domid,
                    {"first_mfn": first_mfn, "nr_mfns": nr_mfns, "allow_access": int(allow)})

    def domain_memory_mapping(self, domid: int, first_gfn: int, first_mfn: int, nr_mfns: int,
                              add: bool) -> None:
        """As libxenctrl: in batches, halving the batch on -E2BIG; a failed add is undone."""
        if nr_mfns <= 0:
            return
        done, batch, first_error = 0, nr_mfns, None
        while done < nr_mfns:
            nr = min(nr_mfns - done, batch)
            try:
                self.domctl(D.XEN_DOMCTL_memory_mapping, domid, {
                    "first_gfn": first_gfn + done, "first_mfn": first_mfn + done,
                    "nr_mfns": nr, "add_mapping": DPCI_ADD_MAPPING if add else
                    DPCI_REMOVE_MAPPING, "padding": 0})
            except XcError as e:
                if e.errno == E2BIG and batch > 1:
                    batch >>= 1
                    continue
                first_error = first_error or e
                if add:
                    break
            done += nr
        if first_error is not None:
            if add:
                try:
                    self.domain_memory_mapping(domid, first_gfn, first_mfn, nr_mfns, False)
                except XcError:
                    pass
            raise first_error

    def vcpu_setcontext(self, domid: int, vcpu: int, **ctxt: int) -> None:
        self.domctl(D.XEN_DOMCTL_setvcpucontext, domid, {"vcpu": vcpu, "ctxt": ctxt})

    def vcpu_setaffinity(self, domid: int, vcpu: int, hard: list[int] | None,
                         soft: list[int] | None) -> None:
        flags = (D.XEN_VCPUAFFINITY_HARD if hard is not None else 0) | (
            D.XEN_VCPUAFFINITY_SOFT if soft is not None else 0)
        self.domctl(D.XEN_DOMCTL_setvcpuaffinity, domid,
                    {"vcpu": vcpu, "flags": flags, "cpumap_hard": hard, "cpumap_soft": soft})

    def vcpu_getaffinity(self, domid: int, vcpu: int) -> dict[str, list[int]]:
        return self.domctl(D.XEN_DOMCTL_getvcpuaffinity, domid, {"vcpu": vcpu})

    def vcpu_getinfo(self, domid: int, vcpu: int) -> dict[str, Any]:
        return self.domctl(D.XEN_DOMCTL_getvcpuinfo, domid, {"vcpu": vcpu})

    def domain_send_trigger(self, domid: int, trigger: int, vcpu: int) -> None:
        self.domctl(D.XEN_DOMCTL_sendtrigger, domid, {"trigger": trigger, "vcpu": vcpu})

    def vcpu_getcontext(self, domid: int, vcpu: int) -> dict[str, Any]:
        return self.domctl(D.XEN_DOMCTL_getvcpucontext, domid, {"vcpu": vcpu})

    def domain_pause(self, domid: int) -> None:
        self.domctl(D.XEN_DOMCTL_pausedomain, domid)

    def domain_unpause(self, domid: int) -> None:
        self.domctl(D.XEN_DOMCTL_unpausedomain, domid)

    def domain_destroy(self, domid: int) -> None:
        for _ in range(100):       # -EAGAIN is Xen's "still tearing down, call again"
            try:
                self.domctl(D.XEN_DOMCTL_destroydomain, domid)
                return
            except XcError as e:
                if e.errno != 11:
                    raise
        raise XcError("destroydomain", -11)

    def domain_getinfo(self, domid: int) -> dict[str, Any] | None:
        """Info of exactly `domid`, or None if it does not exist."""
        try:
            info = self.domctl(D.XEN_DOMCTL_getdomaininfo, domid)
        except XcError as e:
            if e.errno == 3:
                return None
            raise
        return info if info["domain"] == domid else None

    def domain_getinfolist(self) -> list[dict[str, Any]]:
        return self.sysctl(S.XEN_SYSCTL_getdomaininfolist, {"first_domain": 0,
                                                           "max_domains": 1024})[1]["domains"]

    def domain_shutdown(self, domid: int, reason: int) -> None:
        from xenpy.public.sched import SCHEDOP_remote_shutdown
        self._call("remote_shutdown", {"op": "sched_op", "cmd": SCHEDOP_remote_shutdown,
                                       "domain_id": domid, "reason": reason})

    # -- host ----------------------------------------------------------------------------------

    def physinfo(self) -> dict[str, Any]:
        return self.sysctl(S.XEN_SYSCTL_physinfo)[1]

    def readconsole(self, clear: bool = False) -> list[str]:
        return self.sysctl(S.XEN_SYSCTL_readconsole, {"clear": clear})[1]["lines"]

    def debug_keys(self, keys: str) -> None:
        self.sysctl(S.XEN_SYSCTL_debug_keys, {"keys": keys})

    def version(self) -> dict[str, Any]:
        return self._call("xen_version", {"op": "xen_version"})[1]

    def console_read(self, domid: int, offset: int, timeout: float,
                     kind: str = "pv") -> dict[str, Any]:
        """The console log xenconsoled keeps: "pv" (the PV ring) or "vuart" (the vPL011's)."""
        return self._call("console_read", {"op": "console_read", "domid": domid,
                                           "offset": offset, "timeout": timeout,
                                           "type": kind})[1]

    def console_write(self, domid: int, data: bytes, kind: str = "pv") -> None:
        self._call("console_write", {"op": "console_write", "domid": domid,
                                     "data": data.decode("latin-1"), "type": kind})

    def vuart_init(self, domid: int, gfn: int, console_domid: int = 0) -> int:
        """xc_dom_vuart_init: a vPL011 backed by `console_domid`; returns its event channel."""
        return int(self.domctl(D.XEN_DOMCTL_vuart_op, domid, {
            "cmd": D.XEN_DOMCTL_VUART_OP_INIT, "type": D.XEN_DOMCTL_VUART_TYPE_VPL011,
            "console_domid": console_domid, "gfn": gfn})["evtchn"])

    # -- cpupools (xc_cpupool.c) and scheduler parameters (xc_csched2.c) ---------------------------

    def _cpupool_op(self, op: int, **u: Any) -> dict[str, Any]:
        return self.sysctl(S.XEN_SYSCTL_cpupool_op, {"op": op, **u})[1]

    def cpupool_create(self, poolid: int, sched_id: int) -> int:
        """poolid XEN_SYSCTL_CPUPOOL_PAR_ANY: the hypervisor picks it. Returns the pool's id."""
        return int(self._cpupool_op(S.XEN_SYSCTL_CPUPOOL_OP_CREATE, cpupool_id=poolid,
                                    sched_id=sched_id)["cpupool_id"])

    def cpupool_destroy(self, poolid: int) -> None:
        self._cpupool_op(S.XEN_SYSCTL_CPUPOOL_OP_DESTROY, cpupool_id=poolid)

    def cpupool_getinfo(self, poolid: int) -> dict[str, Any] | None:
        """The first pool whose id is >= poolid (as xc_cpupool_getinfo); None when none is."""
        try:
            return self._cpupool_op(S.XEN_SYSCTL_CPUPOOL_OP_INFO, cpupool_id=poolid)
        except XcError as e:
            if e.errno == 2:                 # ENOENT
                return None
            raise

    def cpupool_addcpu(self, poolid: int, cpu: int) -> None:
        self._cpupool_op(S.XEN_SYSCTL_CPUPOOL_OP_ADDCPU, cpupool_id=poolid, cpu=cpu)

    def cpupool_removecpu(self, poolid: int, cpu: int) -> None:
        self._cpupool_op(S.XEN_SYSCTL_CPUPOOL_OP_RMCPU, cpupool_id=poolid, cpu=cpu)

    def cpupool_movedomain(self, poolid: int, domid: int) -> None:
        self._cpupool_op(S.XEN_SYSCTL_CPUPOOL_OP_MOVEDOMAIN, cpupool_id=poolid, domid=domid)

    def cpupool_freeinfo(self) -> list[int]:
        return list(self._cpupool_op(S.XEN_SYSCTL_CPUPOOL_OP_FREEINFO)["cpumap"])

    def sched_id(self) -> int:
        return int(self.sysctl(S.XEN_SYSCTL_sched_id)[1]["sched_id"])

    def sched_credit2_domain_get(self, domid: int) -> dict[str, int]:
        return self.domctl(D.XEN_DOMCTL_scheduler_op, domid, {
            "sched_id": S.XEN_SCHEDULER_CREDIT2, "cmd": D.XEN_DOMCTL_SCHEDOP_getinfo})["credit2"]

    def sched_credit2_domain_set(self, domid: int, weight: int, cap: int) -> None:
        self.domctl(D.XEN_DOMCTL_scheduler_op, domid, {
            "sched_id": S.XEN_SCHEDULER_CREDIT2, "cmd": D.XEN_DOMCTL_SCHEDOP_putinfo,
            "credit2": {"weight": weight, "cap": cap}})

    def sched_credit2_params_get(self, poolid: int) -> dict[str, int]:
        return self.sysctl(S.XEN_SYSCTL_scheduler_op, {
            "cpupool_id": poolid, "sched_id": S.XEN_SCHEDULER_CREDIT2,
            "cmd": S.XEN_SYSCTL_SCHEDOP_getinfo})[1]["u"]["sched_credit2"]

    def sched_credit2_params_set(self, poolid: int, ratelimit_us: int) -> None:
        self.sysctl(S.XEN_SYSCTL_scheduler_op, {
            "cpupool_id": poolid, "sched_id": S.XEN_SCHEDULER_CREDIT2,
            "cmd": S.XEN_SYSCTL_SCHEDOP_putinfo,
            "u": {"sched_credit2": {"ratelimit_us": ratelimit_us}}})

    # -- HVM params (xc_hvm_param_set / get) ------------------------------------------------------

    def hvm_param_set(self, domid: int, index: int, value: int) -> None:
        self._call("hvm_set_param", {"op": "hvm_op", "cmd": 0, "domid": domid, "index": index,
                                     "value": value})

    def hvm_param_get(self, domid: int, index: int) -> int:
        return int(self._call("hvm_get_param", {"op": "hvm_op", "cmd": 1, "domid": domid,
                                                "index": index})[1]["value"])

    # -- introspection (xenpy evtchn / gnttab / vcpu) --------------------------------------------

    def evtchn_status(self, domid: int, port: int) -> dict[str, Any]:
        from xenpy.public.event_channel import EVTCHNOP_status
        return self._call("EVTCHNOP_status", {"op": "event_channel_op", "cmd": EVTCHNOP_status,
                                              "dom": domid, "port": port})[1]

    def evtchn_inject(self, domid: int, port: int) -> None:
        self._call("evtchn inject", {"op": "evtchn_inject", "domid": domid, "port": port})

    def gnttab_dump(self, domid: int) -> list[dict[str, Any]]:
        return self._call("gnttab dump", {"op": "gnttab_dump", "domid": domid})[1]["entries"]

    def vcpu_getcontext(self, domid: int, vcpu: int) -> dict[str, Any]:
        return self.domctl(D.XEN_DOMCTL_getvcpucontext, domid, {"vcpu": vcpu})

    # -- the trace buffer (xc_tbuf_*) --------------------------------------------------------------

    def tbuf_op(self, cmd: int, **u: Any) -> dict[str, Any]:
        return self.sysctl(S.XEN_SYSCTL_tbuf_op, {"cmd": cmd, **u})[1]

    def trace_read(self, since: int = 0) -> list[dict[str, Any]]:
        """Every event in the buffer from sequence number `since`, read in pieces (a privcmd
        message is bounded)."""
        events: list[dict[str, Any]] = []
        while True:
            out = self._call("trace read", {"op": "trace_read", "since": since})[1]
            if not out["events"]:
                return events
            events += out["events"]
            since = out["next"]

    # -- the board's GDB stub (xenpy/board/gdbstub.py) -------------------------------------------

    def gdbserver(self, domid: int, cmd: str, host: str = "127.0.0.1", port: int = 0) -> dict[str, Any]:
        return self._call(f"gdbserver {cmd}", {"op": "gdbserver", "cmd": cmd, "domid": domid,
                                                "host": host, "port": port})[1]

    def host_shutdown(self, reason: int = 0) -> None:
        from xenpy.public.sched import SCHEDOP_shutdown
        self._call("shutdown", {"op": "sched_op", "cmd": SCHEDOP_shutdown, "reason": reason})
