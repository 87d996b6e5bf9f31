"""HYPERVISOR_sysctl (Xen's common/sysctl.c): host-wide information for the toolstack."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from xenpy import trace
from xenpy.common import event_channel
from xenpy.common.domctl import Reply, domaininfo
from xenpy.public.event_channel import VIRQ_DEBUG
from xenpy.public import errno
from xenpy.public import sysctl as S

if TYPE_CHECKING:
    from xenpy.common.domain import Domain
    from xenpy.common.hypervisor import Hypervisor


def do_sysctl(hv: "Hypervisor", caller: "Domain", req: dict[str, Any]) -> Reply:
    if not caller.privileged:
        return -errno.EPERM, {}
    if req.get("interface_version") != S.XEN_SYSCTL_INTERFACE_VERSION:
        return -errno.EACCES, {}
    cmd, u = req.get("cmd"), req.get("u") or {}
    if cmd == S.XEN_SYSCTL_physinfo:
        return 0, {"threads_per_core": 1, "cores_per_socket": hv.nr_pcpus, "nr_cpus": hv.nr_pcpus,
                   "max_cpu_id": hv.nr_pcpus - 1, "nr_nodes": 1, "max_node_id": 0,
                   "cpu_khz": 1000000, "capabilities": ["hvm", "hap", "gnttab-v1"],
                   "total_pages": hv.total_pages, "free_pages": hv.free_pages(),
                   "scrub_pages": 0, "outstanding_pages": 0, "hw_cap": [0] * 8}
    if cmd == S.XEN_SYSCTL_getdomaininfolist:
        first, count = int(u.get("first_domain", 0)), int(u.get("max_domains", 1024))
        infos = [domaininfo(hv, hv.domains[i]) for i in sorted(hv.domains) if i >= first][:count]
        return len(infos), {"domains": infos}
    if cmd == S.XEN_SYSCTL_readconsole:
        lines = list(hv.dmesg)
        if u.get("clear"):
            hv.dmesg.clear()
        return 0, {"lines": lines}
    if cmd == S.XEN_SYSCTL_debug_keys:
        return debug_keys(hv, str(u.get("keys", ""))), {}
    if cmd == S.XEN_SYSCTL_sched_id:
        return 0, {"sched_id": hv.cpupools.cpupool0.sched.sched_id}
    if cmd in (S.XEN_SYSCTL_cpupool_op, S.XEN_SYSCTL_scheduler_op):
        from xenpy.common.cpupool import cpupool_do_sysctl
        from xenpy.common.schedule import sched_adjust_global
        try:
            return (cpupool_do_sysctl(hv, caller, u) if cmd == S.XEN_SYSCTL_cpupool_op
                    else sched_adjust_global(hv, u))
        except (TypeError, ValueError, AttributeError):
            return -errno.EINVAL, {}
    if cmd == S.XEN_SYSCTL_tbuf_op:
        return tbuf_op(int(u.get("cmd", -1)), u)
    if cmd == S.XEN_SYSCTL_getcpuinfo:
        return 0, {"idletime": list(hv.scheduler.idle_ns)}
    return -errno.ENOSYS, {}


MAX_TBUF_EVENTS = 1 << 22


def tbuf_op(cmd: int, u: dict[str, Any]) -> Reply:
    """XEN_SYSCTL_tbuf_op: the trace buffer's size is in events here (Xen's is in pages per
    pCPU); the CPU and event masks are not modelled (everything is traced)."""
    if cmd == S.XEN_SYSCTL_TBUFOP_get_info:
        return 0, trace.info()
    if cmd == S.XEN_SYSCTL_TBUFOP_set_size:
        size = int(u.get("size", 0))
        if not 0 < size <= MAX_TBUF_EVENTS:
            return -errno.EINVAL, {}
        if trace.ENABLED:
            return -errno.EBUSY, {}         # as Xen: the size is fixed while tracing
        trace.enable(size)
        trace.disable()
        return 0, trace.info()
    if cmd == S.XEN_SYSCTL_TBUFOP_enable:
        if u.get("clear", True):
            trace.clear()
        trace.enable()
        return 0, trace.info()
    if cmd == S.XEN_SYSCTL_TBUFOP_disable:
        trace.disable()
        return 0, trace.info()
    return -errno.EINVAL, {}


def debug_keys(hv: "Hypervisor", keys: str) -> int:
    """Xen's debug keys, as `xl debug-keys` sends them. 'q' dumps the domains and their vCPUs to
    the console and raises VIRQ_DEBUG on every vCPU, as Xen's dump_domains does; 'h' lists keys."""
    for key in keys:
        if key == "h":
            hv.log("'h' pressed -> showing installed handlers")
            hv.log(" key 'h' (ascii '68') => show this message")
            hv.log(" key 'q' (ascii '71') => dump domain (and guest debug) info")
        elif key == "q":
            hv.log("'q' pressed -> dumping domain info (now = %d)" % time.monotonic_ns())
            for d in list(hv.domains.values()):
                hv.log(f"General information for domain {d.domid}:")
                hv.log(f"    refcnt=1 dying={int(d.is_dying)} pause_count={d.pause_count}")
                h = d.handle.hex()
                hv.log(f"    nr_pages={d.tot_pages} xenheap_pages=0 dirty_cpus={{}} "
                       f"max_pages={d.max_pages}")
                hv.log(f"    handle={h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]} "
                       f"vm_assist={d.vm_assist:08x}")
                for v in d.vcpus:
                    hv.log(f"    VCPU{v.vcpu_id}: CPU{v.processor} [has={'T' if v.running_on is not None else 'F'}] "
                           f"poll=0 upcall_pend={int(event_channel.vcpu_upcall_pending(v)) if d.vgic else 0} "
                           f"online={int(v.online)} blocked={int(v.blocked)}")
                    event_channel.send_guest_virq(v, VIRQ_DEBUG)
        else:
            return -errno.EINVAL
    return 0
