"""HYPERVISOR_domctl (Xen's common/domctl.c), as the toolstack issues it through privcmd.

An op is {cmd, interface_version, domain, u}: u carries the fields of the op's union member by
their Xen names. The reply is (ret, out), out holding the OUT fields. Only a privileged domain may
issue a domctl; a version mismatch is -EACCES as on Xen.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from xenpy.arch.arm.vcpu import CpuContext
from xenpy.public import domctl as D
from xenpy.public import errno

if TYPE_CHECKING:
    from xenpy.common.domain import Domain
    from xenpy.common.hypervisor import Hypervisor

Reply = tuple[int, dict[str, Any]]
OPS: dict[int, Callable[["Hypervisor", "Domain", dict[str, Any]], Reply]] = {}


def op(cmd: int):
    def register(fn):
        OPS[cmd] = fn
        return fn
    return register


def do_domctl(hv: "Hypervisor", caller: "Domain", req: dict[str, Any]) -> Reply:
    if not caller.privileged:
        return -errno.EPERM, {}
    if req.get("interface_version") != D.XEN_DOMCTL_INTERFACE_VERSION:
        return -errno.EACCES, {}
    cmd = req.get("cmd")
    u = req.get("u") or {}
    domid = int(req.get("domain", 0))
    if cmd == D.XEN_DOMCTL_createdomain:
        return createdomain(hv, domid, u)
    if cmd == D.XEN_DOMCTL_getdomaininfo:
        return getdomaininfo(hv, domid)
    handler = OPS.get(cmd)
    if handler is None:
        return -errno.ENOSYS, {}
    d = hv.domains.get(domid)
    if d is None:
        return -errno.ESRCH, {}
    try:
        return handler(hv, d, u)
    except (KeyError, TypeError, ValueError):
        return -errno.EINVAL, {}


def createdomain(hv: "Hypervisor", domid: int, u: dict[str, Any]) -> Reply:
    try:
        handle = bytes.fromhex(u["handle"]) if u.get("handle") else None
        max_vcpus = int(u.get("max_vcpus", 1))
        layout = (u.get("arch") or {}).get("xenpy_layout")
    except (TypeError, ValueError):
        return -errno.EINVAL, {}
    if handle is not None and len(handle) != 16:
        return -errno.EINVAL, {}
    max_port = int(u.get("max_evtchn_port", 1023))
    cpupool_id = int(u.get("cpupool_id", 0))
    frames = int(u.get("max_grant_frames", -1))
    maptrack = int(u.get("max_maptrack_frames", -1))
    ret = hv.domain_create(domid, max_vcpus, handle, layout, max_port,
                           max_grant_frames=64 if frames < 0 else frames,
                           max_maptrack_frames=1024 if maptrack < 0 else maptrack,
                           cpupool_id=cpupool_id)
    if ret < 0:
        return ret, {}
    return 0, {"domain": ret}


def domaininfo(hv: "Hypervisor", d: "Domain") -> dict[str, Any]:
    flags = D.DOMINF_hvm_guest | D.DOMINF_hap
    letters = d.state_letters()
    if d.is_dying:
        flags |= D.DOMINF_dying
    if d.is_shutdown:
        flags |= D.DOMINF_shutdown | (d.shutdown_code & D.DOMINF_shutdownmask) << D.DOMINF_shutdownshift
    if d.pause_count:
        flags |= D.DOMINF_paused
    if letters[1] == "b":
        flags |= D.DOMINF_blocked
    if letters[0] == "r":
        flags |= D.DOMINF_running
    if d.privileged:
        flags |= D.DOMINF_xs_domain
    return {"domain": d.domid, "flags": flags, "tot_pages": d.tot_pages, "max_pages": d.max_pages,
            "outstanding_pages": 0, "shr_pages": 0, "paged_pages": 0, "shared_info_frame": 0,
            "cpu_time": d.cpu_time_ns() if not d.privileged else hv.dom0_cpu_time_ns(),
            "nr_online_vcpus": sum(v.online for v in d.vcpus), "max_vcpu_id": len(d.vcpus) - 1,
            "ssidref": 0, "handle": d.handle.hex(),
            "cpupool": d.cpupool.cpupool_id if d.cpupool is not None else 0xFFFFFFFF,
            "shutdown_reason": d.shutdown_code if d.is_shutdown else -1,
            "gpaddr_bits": D.GPADDR_BITS,
            "arch_config": {"xenpy_layout": d.layout.name if d.layout else None,
                            # arch_domain_create: the host DT's timer clock-frequency, if any
                            "clock_frequency": hv.config.timer_clock_frequency}}


def getdomaininfo(hv: "Hypervisor", domid: int) -> Reply:
    # As on Xen: the first domain whose id is >= the one asked for.
    ids = sorted(i for i in hv.domains if i >= domid)
    if not ids:
        return -errno.ESRCH, {}
    return 0, domaininfo(hv, hv.domains[ids[0]])


@op(D.XEN_DOMCTL_destroydomain)
def destroydomain(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    return hv.domain_destroy(d), {}


@op(D.XEN_DOMCTL_pausedomain)
def pausedomain(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    if d.privileged or d.is_dying:
        return -errno.EINVAL, {}
    hv.domain_pause(d)
    return 0, {}


@op(D.XEN_DOMCTL_unpausedomain)
def unpausedomain(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    if d.privileged or d.is_dying:
        return -errno.EINVAL, {}
    return hv.domain_unpause(d), {}


@op(D.XEN_DOMCTL_max_mem)
def max_mem(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    d.max_pages = int(u["max_memkb"]) >> 2
    return 0, {}


@op(D.XEN_DOMCTL_max_vcpus)
def max_vcpus(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    # Since 4.12 the count is fixed at createdomain; asking for it again is a no-op check.
    return (0 if int(u["max"]) == len(d.vcpus) else -errno.EINVAL), {}


@op(D.XEN_DOMCTL_setvcpucontext)
def setvcpucontext(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    if not d.pause_count:
        return -errno.EINVAL, {}          # Xen requires the domain paused
    c = u["ctxt"]
    ctx = CpuContext(pc=int(c["pc"]), r0=int(c.get("r0", 0)), r1=int(c.get("r1", 0)),
                     r2=int(c.get("r2", 0)), cpsr=int(c.get("cpsr", 0x400001D3)),
                     sctlr=int(c.get("sctlr", 0x00C50078)))
    rc = d.set_vcpu_context(int(u["vcpu"]), ctx)
    hv.scheduler.kick()                   # online now: null gives it a pCPU of its pool
    return rc, {}


@op(D.XEN_DOMCTL_getvcpucontext)
def getvcpucontext(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    """The vCPU's registers (vcpu_guest_context: user_regs with every mode's banks, sctlr,
    ttbcr, ttbr0/1), read while it is held off its pCPU, as Xen pauses it. Beyond Xen's fields:
    `xenpy` has the mode name and the CP15 registers the model knows (a register dump)."""
    from xenpy.arch.arm import debug
    n = int(u["vcpu"])
    if not 0 <= n < len(d.vcpus):
        return -errno.ESRCH, {}
    v = d.vcpus[n]
    if v.arch is None:
        return -errno.EINVAL, {}          # no CPU state: no memory yet, or host-backed dom0
    sched = hv.scheduler
    deadline = time.monotonic() + 5.0
    while not sched.try_hold(v):
        if v.arch is not None:
            v.arch.stop()
        if time.monotonic() > deadline:
            return -errno.EBUSY, {}
        time.sleep(0.001)
    try:
        if v.arch is None:
            return -errno.EINVAL, {}
        ctx = debug.vcpu_context(v.arch)
        cp15 = debug.cp15_state(v.arch)
    finally:
        sched.release([v])
    user_regs = {k: ctx.pop(k) for k in list(ctx) if k not in ("sctlr", "ttbcr", "ttbr0", "ttbr1")}
    return 0, {"vcpu": n, "ctxt": {"user_regs": user_regs, **ctx,
                                   "flags": 1 if v.online else 0},      # VGCF_online
               "xenpy": {"mode": debug.mode_name(user_regs["cpsr"]), "cp15": cp15,
                         "online": v.online, "blocked": v.blocked}}


@op(D.XEN_DOMCTL_getvcpuinfo)
def getvcpuinfo(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    n = int(u["vcpu"])
    if not 0 <= n < len(d.vcpus):
        return -errno.ESRCH, {}
    v = d.vcpus[n]
    running = v.running_on is not None or (d.privileged and n == 0)
    cpu_time = hv.dom0_cpu_time_ns() if d.privileged and n == 0 else v.cpu_time_now_ns()
    stats = v.stats.as_dict()
    stats["hypercalls"] = v.arch.hypercalls if v.arch is not None else 0
    return 0, {"vcpu": n, "online": int(v.online), "blocked": int(v.online and not running),
               "running": int(running), "cpu_time": cpu_time, "cpu": v.processor,
               "xenpy_stats": stats,     # beyond Xen's fields: the counters behind xl top
               # and the pCPU the null scheduler gave it (None: waiting, or not null)
               "xenpy_assigned": d.cpupool.sched.assignment(v) if d.cpupool else None}


def _cpumap(cpus: list[int] | None, nr: int) -> frozenset[int] | None:
    if cpus is None:
        return None
    s = frozenset(int(c) for c in cpus)
    return None if s >= frozenset(range(nr)) else s


@op(D.XEN_DOMCTL_setvcpuaffinity)
def setvcpuaffinity(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    n = int(u["vcpu"])
    if not 0 <= n < len(d.vcpus):
        return -errno.EINVAL, {}
    v, flags = d.vcpus[n], int(u["flags"])
    if flags & D.XEN_VCPUAFFINITY_HARD:
        hard = _cpumap(u.get("cpumap_hard"), hv.nr_pcpus)
        pool_cpus = frozenset(d.cpupool.cpu_valid) if d.cpupool is not None else frozenset()
        if not (hard if hard is not None else frozenset(range(hv.nr_pcpus))) & pool_cpus:
            return -errno.EINVAL, {}      # no pCPU of the domain's cpupool left in the mask
        v.hard_affinity = hard
        if hard is not None and v.running_on is None and v.processor not in hard:
            v.processor = min(hard & pool_cpus)       # moved while not running
    if flags & D.XEN_VCPUAFFINITY_SOFT:
        v.soft_affinity = _cpumap(u.get("cpumap_soft"), hv.nr_pcpus)
    hv.scheduler.kick()
    return 0, _affinity(hv, v)


@op(D.XEN_DOMCTL_scheduler_op)
def scheduler_op(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    from xenpy.common.schedule import sched_adjust
    return sched_adjust(hv, d, u)


@op(D.XEN_DOMCTL_getvcpuaffinity)
def getvcpuaffinity(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    n = int(u["vcpu"])
    if not 0 <= n < len(d.vcpus):
        return -errno.EINVAL, {}
    return 0, _affinity(hv, d.vcpus[n])


def _affinity(hv: "Hypervisor", v: Any) -> dict[str, Any]:
    every = list(range(hv.nr_pcpus))
    return {"cpumap_hard": sorted(v.hard_affinity) if v.hard_affinity is not None else every,
            "cpumap_soft": sorted(v.soft_affinity) if v.soft_affinity is not None else every}


@op(D.XEN_DOMCTL_setdomainhandle)
def setdomainhandle(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    h = bytes.fromhex(u["handle"])
    if len(h) != 16:
        return -errno.EINVAL, {}
    d.handle = h
    return 0, {}


# -- passthrough I/O memory: iomem_permission (20) and memory_mapping (39) -----------------------
# A domain's I/O capability is a set of machine frames (Xen's iomem_caps rangeset). Dom0 has the
# board's device windows except what Xen keeps for itself (its console UART); a domU gets what dom0
# grants it. A mapping puts the device window into every vCPU of the domU at the guest frame; any
# other frame stays unmapped, so a stray access is a stage-2 fault: the guest takes a data abort.

DPCI_ADD_MAPPING, DPCI_REMOVE_MAPPING = 1, 0
MEMORY_MAPPING_BATCH = 64           # Xen on ARM: "Must break hypercall up as this could take a while"
PADDR_BITS = 40                     # arm32 with LPAE


@dataclass
class IomemState:
    caps: set[int] = field(default_factory=set)        # machine frames the domain may have
    mapped: dict[int, int] = field(default_factory=dict)   # gfn -> mfn


# Keyed by the Domain object itself, so a reused domid never inherits a dead domain's rights.
_IOMEM: "weakref.WeakKeyDictionary[Domain, IomemState]" = weakref.WeakKeyDictionary()


def iomem_state(d: "Domain") -> IomemState:
    st = _IOMEM.get(d)
    if st is None:
        st = _IOMEM[d] = IomemState()
    return st


def _dom0_caps(hv: "Hypervisor") -> set[int]:
    return {p for dev in hv.config.devices if not dev.xen_owned for p in dev.pfns}


def iomem_access_permitted(hv: "Hypervisor", d: "Domain", first: int, last: int) -> bool:
    caps = _dom0_caps(hv) if d.privileged else iomem_state(d).caps
    return last - first + 1 <= len(caps) and all(p in caps for p in range(first, last + 1))


def _device_at(hv: "Hypervisor", mfn: int):
    return next((dev for dev in hv.config.devices if mfn in dev.pfns), None)


def _describe_devices(hv: "Hypervisor") -> str:
    parts = []
    for dev in hv.config.devices:
        first, last = dev.pfns[0], dev.pfns[-1]
        span = f"{first:x}" if first == last else f"{first:x}-{last:x}"
        parts.append(f"{dev.name} {span}" + (" (kept by Xen)" if dev.xen_owned else ""))
    return ", ".join(parts) or "none"


@op(D.XEN_DOMCTL_iomem_permission)
def iomem_permission(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    mfn, nr, allow = int(u["first_mfn"]), int(u["nr_mfns"]), bool(u["allow_access"])
    last = mfn + nr - 1
    if mfn < 0 or nr < 1 or last >= 1 << 64:            # Xen: (mfn + nr - 1) < mfn, a wrap
        return -errno.EINVAL, {}
    if not iomem_access_permitted(hv, hv.domains[0], mfn, last):
        hv.log(f"d0: iomem_permission for d{d.domid} mfn {mfn:x}-{last:x} refused: not "
               f"device pages dom0 may pass through (the board's: {_describe_devices(hv)})")
        return -errno.EPERM, {}
    if d.privileged:
        return 0, {}
    caps = iomem_state(d).caps
    if allow:
        caps.update(range(mfn, last + 1))
    else:
        caps.difference_update(range(mfn, last + 1))
    return 0, {}


@op(D.XEN_DOMCTL_memory_mapping)
def memory_mapping(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    gfn, mfn, nr = int(u["first_gfn"]), int(u["first_mfn"]), int(u["nr_mfns"])
    add = int(u["add_mapping"]) != DPCI_REMOVE_MAPPING
    mfn_end = mfn + nr - 1
    if (min(gfn, mfn) < 0 or nr < 1 or (mfn | mfn_end) >> (PADDR_BITS - 12)
            or gfn + nr - 1 >= 1 << 52):
        return -errno.EINVAL, {}
    if nr > MEMORY_MAPPING_BATCH:
        return -errno.E2BIG, {}
    if d.privileged or not iomem_access_permitted(hv, hv.domains[0], mfn, mfn_end):
        return -errno.EPERM, {}
    st = iomem_state(d)
    if not add:
        return _unmap_mmio_regions(hv, d, st, gfn, nr), {}
    if not iomem_access_permitted(hv, d, mfn, mfn_end):
        hv.log(f"memory_map:fail: d{d.domid} gfn={gfn:x} mfn={mfn:x} nr={nr:x}: the domain "
               f"has no permission for these frames (iomem_permission first)")
        return -errno.EPERM, {}
    return _map_mmio_regions(hv, d, st, gfn, mfn, nr), {}


def _with_vcpus_stopped(hv: "Hypervisor", d: "Domain", change: Callable[[], int]) -> int:
    """Change every vCPU's Unicorn instance while none of them runs: pause, change, unpause."""
    hv.domain_pause(d)
    try:
        if any(v.running_on is not None for v in d.vcpus):
            return -errno.EBUSY
        return change()
    finally:
        hv.domain_unpause(d)


def _map_mmio_regions(hv: "Hypervisor", d: "Domain", st: IomemState, gfn: int, mfn: int,
                      nr: int) -> int:
    if d.ram is None or any(v.arch is None for v in d.vcpus):
        hv.log(f"memory_map:fail: d{d.domid}: the domain has no memory yet")
        return -errno.EINVAL
    domid = d.domid
    pages = []
    for i in range(nr):
        dev = _device_at(hv, mfn + i)
        assert dev is not None          # dom0's caps only hold device frames
        pages.append((gfn + i, mfn + i, dev, ((mfn + i) << 12) - dev.base))

    def change() -> int:
        # Unicorn cannot map over a mapped range (Xen's p2m would replace the entry): refuse.
        regions = list(d.vcpus[0].arch.uc.mem_regions())     # type: ignore[union-attr]
        for g, _m, _dev, _off in pages:
            lo, hi = g << 12, (g << 12) + 0xFFF
            if g in st.mapped or any(b <= hi and lo <= e for b, e, _p in regions):
                hv.log(f"memory_map:fail: d{domid} gfn={g:x} is already in use (RAM, the GIC, "
                       f"a magic page or another mapping)")
                return -errno.EBUSY
        for v in d.vcpus:
            for g, _m, dev, off in pages:
                v.arch.map_mmio(g << 12, 0x1000,   # type: ignore[union-attr]
                                lambda o, sz, dev=dev, off=off: dev.read(domid, off + o, sz),
                                lambda o, sz, val, dev=dev, off=off: dev.write(domid, off + o,
                                                                               sz, val))
        for g, m, _dev, _off in pages:
            st.mapped[g] = m
        return 0

    rc = _with_vcpus_stopped(hv, d, change)
    if rc == 0:
        hv.log(f"memory_map:add: d{domid} gfn={gfn:x} mfn={mfn:x} nr={nr:x} "
               f"({', '.join(sorted({p[2].name for p in pages}))})")
    return rc


def _unmap_mmio_regions(hv: "Hypervisor", d: "Domain", st: IomemState, gfn: int, nr: int) -> int:
    gone = [g for g in range(gfn, gfn + nr) if g in st.mapped]

    def change() -> int:
        for v in d.vcpus:
            if v.arch is not None:
                for g in gone:
                    v.arch.uc.mem_unmap(g << 12, 0x1000)
        for g in gone:
            del st.mapped[g]
        return 0

    if not gone:
        return 0
    rc = _with_vcpus_stopped(hv, d, change)
    if rc == 0:
        hv.log(f"memory_map:remove: d{d.domid} gfn={gfn:x} nr={nr:x}")
    return rc


@op(D.XEN_DOMCTL_vuart_op)
def vuart_op(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> Reply:
    """INIT a vPL011 whose backend is `console_domid`, ring at `gfn`; OUT: the event channel."""
    from xenpy.arch.arm.vpl011 import domain_vpl011_init
    if int(u.get("cmd", -1)) != D.XEN_DOMCTL_VUART_OP_INIT or \
            int(u.get("type", -1)) != D.XEN_DOMCTL_VUART_TYPE_VPL011:
        return -errno.EINVAL, {}
    console_domid = int(u["console_domid"])
    if console_domid not in hv.domains:
        return -errno.ESRCH, {}
    rc = domain_vpl011_init(d, int(u["gfn"]), console_domid)
    return (rc, {}) if rc < 0 else (0, {"evtchn": rc})
