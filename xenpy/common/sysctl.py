"""HYPERVISOR_sysctl (Xen's common/sysctl.c): host-wide information for the toolstack."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenpy.common.domctl import Reply, domaininfo
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
    if cmd == S.XEN_SYSCTL_sched_id:
        return 0, {"sched_id": S.XEN_SCHEDULER_CREDIT}
    if cmd == S.XEN_SYSCTL_getcpuinfo:
        return 0, {"idletime": list(hv.scheduler.idle_ns)}
    return -errno.ENOSYS, {}
