"""The null scheduler (Xen's common/sched/null.c): each vCPU owns one pCPU of its pool.

An online vCPU is assigned a pCPU of its pool within its hard affinity that nobody owns (the
one it last ran on if it can, else the lowest: pick_res) and runs only there, with no time
slice: nothing else ever runs on that pCPU, so an RTOS alone on it is never preempted by
another guest. A vCPU that finds every allowed pCPU owned waits in the pool's waitqueue, in
arrival order, until one is freed (its owner went offline or left the pool, or a pCPU joined
the pool). Domain-0's vCPUs own pCPUs too, as on Xen.

The core's one rule above any scheduler still holds: one vCPU of a domain runs at a time, so
an owner whose sibling vCPU waits for its own pCPU gives way at the end of a slice.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy.common.sched_private import Scheduler
from xenpy.public import sysctl as S

if TYPE_CHECKING:
    from xenpy.common.domain import Domain, Vcpu


class Null(Scheduler):
    name = "null Scheduler"
    opt_name = "null"
    sched_id = S.XEN_SCHEDULER_NULL

    def __init__(self) -> None:
        super().__init__()
        self.owner: dict[int, "Vcpu"] = {}      # pCPU -> the vCPU assigned to it
        self.waitq: list["Vcpu"] = []
        self.domains: list["Domain"] = []

    def _cpus(self) -> set[int]:
        return set(self.pool.cpu_valid) if self.pool is not None else set()

    def _allowed(self, v: "Vcpu") -> list[int]:
        cpus = self._cpus()
        if v.hard_affinity is not None:
            cpus &= v.hard_affinity
        return sorted(cpus)

    def _assign(self, v: "Vcpu") -> bool:
        free = [c for c in self._allowed(v) if c not in self.owner]
        if not free:
            return False
        cpu = v.processor if v.processor in free else free[0]
        self.owner[cpu] = v
        v.processor = cpu
        return True

    def _deassign(self, v: "Vcpu") -> None:
        for cpu, o in list(self.owner.items()):
            if o is v:
                del self.owner[cpu]
        if v in self.waitq:
            self.waitq.remove(v)

    def insert_domain(self, d: "Domain") -> None:
        d.sched_priv = None
        for v in d.vcpus:
            v.sched_priv = None
        self.domains.append(d)
        self.refresh()

    def remove_domain(self, d: "Domain") -> None:
        for v in d.vcpus:
            self._deassign(v)
        if d in self.domains:
            self.domains.remove(d)
        self.refresh()

    def add_cpu(self, cpu: int) -> None:
        self.refresh()

    def remove_cpu(self, cpu: int) -> None:
        v = self.owner.pop(cpu, None)
        if v is not None:
            self.waitq.insert(0, v)             # first in line for another pCPU
        self.refresh()

    def refresh(self) -> None:
        """Free what offline vCPUs (or ones whose affinity moved away) own; give free pCPUs to
        the waitqueue in order, then to vCPUs that came online."""
        for cpu, v in list(self.owner.items()):
            if not v.online or cpu not in self._allowed(v) or v.domain not in self.domains:
                del self.owner[cpu]
        self.waitq = [v for v in self.waitq if v.online and v.domain in self.domains]
        for v in list(self.waitq):
            if self._assign(v):
                self.waitq.remove(v)
        owned = set(map(id, self.owner.values()))
        for d in self.domains:
            for v in d.vcpus:
                if v.online and id(v) not in owned and v not in self.waitq:
                    if not self._assign(v):
                        self.waitq.append(v)

    def pick(self, cpu: int, eligible: list["Vcpu"]) -> "Vcpu | None":
        self.refresh()
        v = self.owner.get(cpu)
        if v is None or v not in eligible:
            return None
        # One vCPU of a domain at a time: a sibling that owns a pCPU and waited longer goes
        # first (it is picked on its own pCPU), so siblings alternate instead of one starving.
        for o in v.domain.vcpus:
            if (o is not v and o.runnable and o.running_on is None and o.last_ran < v.last_ran
                    and self.owner.get(o.processor) is o):
                return None
        return v

    def may_run(self, v: "Vcpu", cpu: int) -> bool:
        return self.owner.get(cpu) is v

    def slices(self) -> bool:
        return False

    def assignment(self, v: "Vcpu") -> int | None:
        for cpu, o in self.owner.items():
            if o is v:
                return cpu
        return None
