"""Cpupools (Xen's common/sched/cpupool.c) and XEN_SYSCTL_cpupool_op.

A cpupool is a set of pCPUs with a scheduler of its own. Pool 0 holds every pCPU at boot, with
the scheduler of the command line's sched=; a pCPU taken out of a pool is free and runs nothing
until it is added to one. A domain belongs to one pool (pool 0 unless XEN_DOMCTL_createdomain
named another) and its vCPUs run only on that pool's pCPUs, within their hard affinity. Pool
names live in XenStore (/local/pool/N/name), written by the toolstack as on Xen.

Changes run with the scheduler core's condition held, so a pCPU never picks from a pool that
is half changed.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenpy.common.sched_credit2 import Credit2
from xenpy.common.sched_null import Null
from xenpy.common.sched_private import Reply, Scheduler
from xenpy.public import errno
from xenpy.public import sysctl as S

if TYPE_CHECKING:
    from xenpy.common.domain import Domain
    from xenpy.common.hypervisor import Hypervisor

SCHEDULERS: tuple[type[Scheduler], ...] = (Credit2, Null)
DEFAULT_SCHEDULER = "credit2"          # CONFIG_SCHED_DEFAULT
CPUPOOLID_NONE = 0xFFFFFFFF


def scheduler_by_name(opt_name: str) -> type[Scheduler] | None:
    return next((s for s in SCHEDULERS if s.opt_name == opt_name), None)


def scheduler_by_id(sched_id: int) -> type[Scheduler] | None:
    return next((s for s in SCHEDULERS if s.sched_id == sched_id), None)


class Cpupool:
    def __init__(self, hv: "Hypervisor", cpupool_id: int, sched: Scheduler) -> None:
        self.hv = hv
        self.cpupool_id = cpupool_id
        self.sched = sched
        sched.pool = self
        self.cpu_valid: set[int] = set()
        self.domains: list["Domain"] = []

    @property
    def n_dom(self) -> int:
        return len(self.domains)

    def __repr__(self) -> str:
        return f"cpupool{self.cpupool_id}({self.sched.opt_name}, cpus {sorted(self.cpu_valid)})"


class Cpupools:
    """Every pool of a hypervisor, and the free pCPUs (cpupool_free_cpus)."""

    def __init__(self, hv: "Hypervisor", nr_cpus: int, sched0: type[Scheduler]) -> None:
        self.hv = hv
        self.nr_cpus = nr_cpus
        self.pools: dict[int, Cpupool] = {}
        self._cpu_pool: list[Cpupool | None] = [None] * nr_cpus
        self.cpupool0 = Cpupool(hv, 0, sched0())
        self.pools[0] = self.cpupool0
        for cpu in range(nr_cpus):
            self._assign_cpu(self.cpupool0, cpu)

    @property
    def cond(self):
        return self.hv.scheduler.cond

    def pool_of_cpu(self, cpu: int) -> Cpupool | None:
        return self._cpu_pool[cpu]

    @property
    def free_cpus(self) -> set[int]:
        return {c for c in range(self.nr_cpus) if self._cpu_pool[c] is None}

    def _assign_cpu(self, c: Cpupool, cpu: int) -> None:
        c.cpu_valid.add(cpu)
        self._cpu_pool[cpu] = c
        c.sched.add_cpu(cpu)

    # -- domains (cpupool_add_domain, cpupool_rm_domain, cpupool_move_domain) -------------------

    def add_domain(self, d: "Domain", poolid: int) -> int:
        with self.cond:
            c = self.pools.get(poolid)
            if c is None:
                return -errno.ESRCH
            if not c.cpu_valid:
                return -errno.ENODEV          # a pool with no pCPU takes no new domain
            self._insert(d, c)
            return 0

    def _insert(self, d: "Domain", c: Cpupool) -> None:
        for v in d.vcpus:                     # vcpu-list's CPU column names a pCPU of the pool
            if c.cpu_valid and v.processor not in c.cpu_valid and not d.privileged:
                v.processor = min(c.cpu_valid)
        d.cpupool = c
        c.domains.append(d)
        c.sched.insert_domain(d)

    def rm_domain(self, d: "Domain") -> None:
        with self.cond:
            c = d.cpupool
            if c is not None and d in c.domains:
                c.domains.remove(d)
                c.sched.remove_domain(d)
            self.hv.scheduler.notify()

    def move_domain(self, d: "Domain", c: Cpupool) -> int:
        """sched_move_domain: the vCPUs are off their pCPUs (the caller descheduled them); their
        affinities are reset to all, as Xen does."""
        if d.cpupool is c:
            return 0
        with self.cond:
            old = d.cpupool
            if old is not None:
                old.domains.remove(d)
                old.sched.remove_domain(d)
            for v in d.vcpus:
                v.hard_affinity = v.soft_affinity = None
            self._insert(d, c)
            self.hv.scheduler.notify()
        return 0

    # -- pools (cpupool_create, cpupool_destroy, cpupool_assign_cpu, cpupool_unassign_cpu) --------

    def create(self, poolid: int, sched_id: int) -> Cpupool | int:
        with self.cond:
            if len(self.pools) >= 2 * self.nr_cpus:
                return -errno.ENOSPC
            if poolid == CPUPOOLID_NONE:
                poolid = max(self.pools) + 1
            elif poolid in self.pools:
                return -errno.EEXIST
            sched = scheduler_by_id(sched_id)
            if sched is None:
                return -errno.ENOENT          # scheduler_alloc: no such scheduler built in
            c = Cpupool(self.hv, poolid, sched())
            self.pools[poolid] = c
            return c

    def destroy(self, c: Cpupool) -> int:
        with self.cond:
            if c.n_dom or c.cpu_valid:
                return -errno.EBUSY
            del self.pools[c.cpupool_id]
            return 0

    def add_cpu(self, c: Cpupool, cpu: int) -> int:
        with self.cond:
            if cpu == S.XEN_SYSCTL_CPUPOOL_PAR_ANY:
                free = sorted(self.free_cpus)
                if not free:
                    return -errno.ENODEV
                cpu = free[0]
            if not 0 <= cpu < self.nr_cpus:
                return -errno.EINVAL
            if self._cpu_pool[cpu] is not None:
                return -errno.ENODEV
            self._assign_cpu(c, cpu)
            self.hv.scheduler.notify()
            return 0

    def rm_cpu(self, c: Cpupool, cpu: int) -> int:
        if cpu == S.XEN_SYSCTL_CPUPOOL_PAR_ANY:
            cpu = max(c.cpu_valid) if c.cpu_valid else self.nr_cpus
        if not 0 <= cpu < self.nr_cpus:
            return -errno.EINVAL
        if c.cpupool_id == 0 and cpu == 0:
            return -errno.EINVAL              # CPU 0 stays in pool 0
        sched = self.hv.scheduler
        with self.cond:
            if cpu not in c.cpu_valid:
                return -errno.EADDRNOTAVAIL
            live = [d for d in c.domains if not d.is_dying]
            if live and len(c.cpu_valid) == 1:
                return -errno.EBUSY
            for d in [d for d in c.domains if d.is_dying]:
                self.move_domain(d, self.cpupool0)
            c.cpu_valid.discard(cpu)
            self._cpu_pool[cpu] = None
            c.sched.remove_cpu(cpu)
            running = sched.current[cpu]
        # Whatever runs there leaves at its next block start; the pCPU then finds no pool.
        if running is not None and not sched.deschedule([running]):
            return -errno.EAGAIN
        return 0


# -- XEN_SYSCTL_cpupool_op --------------------------------------------------------------------

def _cpumap(cpus: set[int]) -> list[int]:
    return sorted(cpus)


def cpupool_do_sysctl(hv: "Hypervisor", caller: "Domain", u: dict[str, Any]) -> Reply:
    pools = hv.cpupools
    try:
        op = int(u.get("op", 0))
        poolid = int(u.get("cpupool_id", 0))
    except (TypeError, ValueError):
        return -errno.EINVAL, {}
    if not 0 <= poolid <= 0xFFFFFFFF:
        return -errno.EINVAL, {}              # a uint32_t field
    if op == S.XEN_SYSCTL_CPUPOOL_OP_CREATE:
        c = pools.create(poolid, int(u.get("sched_id", 0)))
        if isinstance(c, int):
            return c, {}
        return 0, {"cpupool_id": c.cpupool_id}
    if op == S.XEN_SYSCTL_CPUPOOL_OP_INFO:
        # cpupool_get_next_by_id: the first pool whose id is >= the one asked for
        ids = sorted(i for i in pools.pools if i >= poolid)
        if not ids:
            return -errno.ENOENT, {}
        c = pools.pools[ids[0]]
        return 0, {"cpupool_id": c.cpupool_id, "sched_id": c.sched.sched_id, "n_dom": c.n_dom,
                   "cpumap": _cpumap(c.cpu_valid)}
    if op == S.XEN_SYSCTL_CPUPOOL_OP_FREEINFO:
        return 0, {"cpumap": _cpumap(pools.free_cpus)}
    if op == S.XEN_SYSCTL_CPUPOOL_OP_MOVEDOMAIN:
        d = hv.domains.get(int(u.get("domid", -1)))
        if d is None:
            return -errno.ESRCH, {}
        if d is caller:
            return -errno.EPERM, {}           # rcu_lock_remote_domain_by_id
        if d.cpupool is None or d.is_dying:
            return -errno.EINVAL, {}
        if d.cpupool.cpupool_id == poolid:
            return 0, {}
        c = pools.pools.get(poolid)
        if c is None or not c.cpu_valid:
            return -errno.ENOENT, {}
        return hv.domain_move_cpupool(d, c), {}
    c = pools.pools.get(poolid)
    if op == S.XEN_SYSCTL_CPUPOOL_OP_DESTROY:
        return (pools.destroy(c) if c is not None else -errno.ENOENT), {}
    if op == S.XEN_SYSCTL_CPUPOOL_OP_ADDCPU:
        return (pools.add_cpu(c, int(u.get("cpu", 0))) if c is not None else -errno.ENOENT), {}
    if op == S.XEN_SYSCTL_CPUPOOL_OP_RMCPU:
        return (pools.rm_cpu(c, int(u.get("cpu", 0))) if c is not None else -errno.ENOENT), {}
    return -errno.ENOSYS, {}

