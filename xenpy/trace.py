"""The hypervisor's trace buffer (Xen's common/trace.c, read by xentrace).

A leaf module (it imports nothing of ours) so that call sites in every layer reach it, as Xen's
xen/trace.h is included everywhere.

A ring of events: host ns, pCPU, domain, vCPU, what, and the event's fields. Call sites test the
module flag `ENABLED` before building anything (`if trace.ENABLED: trace.emit(...)`), so tracing
costs one global lookup when off and no hook is ever added. Controlled by XEN_SYSCTL_tbuf_op
(enable, disable, set_size, get_info) and read by dom0 through privcmd's "trace_read".

Event kinds: hypercall (with its duration), evtchn_send, evtchn_set_pending, upcall, irq, eoi,
sched_in, sched_out, grant_map, grant_unmap, grant_copy, xs_request, dom_create, dom_destroy,
dom_shutdown, dom_pause, dom_unpause, console. Flow ids tie a send to the upcall it caused: the
set_pending of a port records one for the notified vCPU, the vCPU's next upcall ends them (or
the upcall handler it is running, `running = True`).
"""
from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xenpy.common.domain import Vcpu

ENABLED = False
DEFAULT_SIZE = 1 << 16            # events kept; the oldest are overwritten

_ring: deque[tuple] = deque(maxlen=DEFAULT_SIZE)
_seq = itertools.count()          # events ever written: how a reader sees it lost some
_flows = itertools.count(1)
_pending_flows: dict[tuple[int, int], list[int]] = {}
_in_upcall: set[tuple[int, int]] = set()   # vCPUs between the upcall's acknowledge and its EOI
_lock = threading.Lock()
now = time.perf_counter_ns


def enable(size: int | None = None) -> None:
    global ENABLED, _ring
    with _lock:
        if size is not None and size != _ring.maxlen:
            _ring = deque(_ring, maxlen=size)
        ENABLED = True


def disable() -> None:
    global ENABLED
    ENABLED = False


def clear() -> None:
    with _lock:
        _ring.clear()
        _pending_flows.clear()
        _in_upcall.clear()


def info() -> dict[str, Any]:
    return {"enabled": ENABLED, "size": _ring.maxlen, "used": len(_ring)}


def emit(kind: str, v: "Vcpu | None" = None, *, domid: int | None = None, t0: int | None = None,
         pcpu: int | None = None, **fields: Any) -> None:
    """One event. With a vCPU: its domain, its number and the pCPU it runs on. t0: when a timed
    event (a hypercall) began; its end is now."""
    t = now()
    if v is not None:
        domid = v.domain.domid
        vcpu: int | None = v.vcpu_id
        if pcpu is None:
            pcpu = v.running_on if v.running_on is not None else v.processor
    else:
        vcpu = None
    start = t if t0 is None else t0
    _ring.append((next(_seq), start, t - start, pcpu, domid, vcpu, kind, fields))


def flow_start(domid: int, vcpu: int) -> tuple[int, bool]:
    """A notification for (domid, vcpu) is pending: a new flow id, and whether the vCPU is in its
    upcall handler now (which takes the event without another interrupt: the flow ends there).
    Otherwise the vCPU's next upcall ends it."""
    fid = next(_flows)
    with _lock:
        if (domid, vcpu) in _in_upcall:
            return fid, True
        _pending_flows.setdefault((domid, vcpu), []).append(fid)
    return fid, False


def upcall_enter(domid: int, vcpu: int) -> list[int]:
    """The vCPU acknowledged the upcall interrupt: the flows it ends."""
    with _lock:
        _in_upcall.add((domid, vcpu))
        return _pending_flows.pop((domid, vcpu), [])


def upcall_exit(domid: int, vcpu: int) -> None:
    with _lock:
        _in_upcall.discard((domid, vcpu))


def read(since: int = 0, limit: int = 1 << 20) -> tuple[list[dict[str, Any]], int]:
    """Events with a sequence number >= since (oldest first), and the next sequence number."""
    with _lock:
        events = [e for e in list(_ring) if e[0] >= since][:limit]
    out = [{"seq": s, "ns": ns, "dur": dur, "pcpu": pcpu, "domid": domid, "vcpu": vcpu,
            "kind": kind, **fields} for s, ns, dur, pcpu, domid, vcpu, kind, fields in events]
    return out, (events[-1][0] + 1 if events else since)
