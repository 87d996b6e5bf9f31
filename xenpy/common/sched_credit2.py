"""The credit2 scheduler (Xen's common/sched/credit2.c, reduced to what a user can observe).

Each vCPU has credit, in ns. Running burns it at the rate max_weight / weight of the pool's
heaviest domain, so a domain of weight 512 burns at half the rate of one of 256 and, among busy
vCPUs sharing a pCPU, gets twice the time. A pCPU picks, among the eligible vCPUs that have
credit left, the one that waited longest; when none has any, every vCPU of the pool gets enough
CREDIT_INIT more to put each candidate in the black, clipped at CREDIT_INIT (reset_credit), so
the pCPU never idles while one could run and no debt outlives a reset. Xen's credit2 picks the
vCPU with the most credit instead and biases against one that yields (CSCHED2_YIELD_BIAS); here
a guest spinning in WFE for a lock, which burns next to no credit, would then starve the lock's
holder, so credit only decides who may run, and the order among them stays the round robin the
one-vCPU-of-a-domain rule relies on.

A cap (percent of one pCPU, 0 = none) is a budget: every BDGT_REPL_PERIOD the domain gets
period * cap / 100 ns to spend across its vCPUs; a vCPU whose domain spent it is parked until
the next replenishment, even if its pCPU would idle (replenish_domain_budget, park_unit).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenpy.common.sched_private import Reply, Scheduler, einval
from xenpy.public import domctl as D
from xenpy.public import errno
from xenpy.public import sysctl as S

if TYPE_CHECKING:
    from xenpy.common.domain import Domain, Vcpu

DEFAULT_WEIGHT = 256                 # CSCHED2_DEFAULT_WEIGHT
CREDIT_INIT = 10_000_000             # CSCHED2_CREDIT_INIT: 10 ms of credit
BDGT_REPL_PERIOD = 10_000_000        # CSCHED2_BDGT_REPL_PERIOD: caps are enforced per 10 ms
DEFAULT_RATELIMIT_US = 1000          # SCHED_DEFAULT_RATELIMIT_US
MIGRATE_RESIST = 500_000             # CSCHED2_MIGRATE_RESIST: opt_migrate_resist, 500 us


class Credit2Dom:
    __slots__ = ("weight", "cap", "budget", "next_repl")

    def __init__(self) -> None:
        self.weight = DEFAULT_WEIGHT
        self.cap = 0
        self.budget = 0               # ns left in this period, when capped
        self.next_repl = 0


class Credit2Unit:
    __slots__ = ("credit",)

    def __init__(self) -> None:
        self.credit = CREDIT_INIT


class Credit2(Scheduler):
    name = "SMP Credit Scheduler rev2"
    opt_name = "credit2"
    sched_id = S.XEN_SCHEDULER_CREDIT2

    def __init__(self) -> None:
        super().__init__()
        self.ratelimit_us = DEFAULT_RATELIMIT_US
        self.domains: list["Domain"] = []

    def insert_domain(self, d: "Domain") -> None:
        d.sched_priv = Credit2Dom()
        for v in d.vcpus:
            v.sched_priv = Credit2Unit()
        self.domains.append(d)

    def remove_domain(self, d: "Domain") -> None:
        if d in self.domains:
            self.domains.remove(d)

    def _max_weight(self) -> int:
        return max((d.sched_priv.weight for d in self.domains if not d.privileged),
                   default=DEFAULT_WEIGHT)

    # -- caps -------------------------------------------------------------------------------------

    @staticmethod
    def _replenish(sd: Credit2Dom, now_ns: int) -> bool:
        """Give a capped domain its budget for the periods that began; True if it had none."""
        if now_ns < sd.next_repl:
            return False
        was_out = sd.budget <= 0
        tot = BDGT_REPL_PERIOD * sd.cap // 100
        sd.budget = min(sd.budget + tot, tot)
        sd.next_repl += BDGT_REPL_PERIOD
        if sd.next_repl <= now_ns:              # far behind (nothing ran for a while)
            sd.next_repl = now_ns + BDGT_REPL_PERIOD
        return was_out

    def _parked(self, v: "Vcpu", now_ns: int) -> bool:
        sd = v.domain.sched_priv
        if not sd.cap:
            return False
        self._replenish(sd, now_ns)
        return sd.budget <= 0

    # -- scheduling -------------------------------------------------------------------------------

    def pick(self, cpu: int, eligible: list["Vcpu"]) -> "Vcpu | None":
        now = self.pool.hv.clock.now_ns() if self.pool is not None else 0
        cands = [v for v in eligible if not self._parked(v, now)]
        if not cands:
            return None
        funded = [v for v in cands if v.sched_priv.credit > 0]
        if not funded:
            self._reset_credit(min(v.sched_priv.credit for v in cands))
            funded = cands
        return min(funded, key=lambda v: (v.soft_affinity is not None
                                          and cpu not in v.soft_affinity, v.last_ran))

    def tickle(self, v: "Vcpu", running: list[tuple[int, "Vcpu", int]]) -> int | None:
        """runq_tickle and tickle_score: preempt the running vCPU whose credit the waking one
        exceeds most (by CSCHED2_MIGRATE_RESIST more on a pCPU it did not last run on), never
        one that has run less than the rate limit."""
        best: tuple[int, int] | None = None
        maxw = self._max_weight()
        for cpu, cur, ran_ns in running:
            if ran_ns < self.ratelimit_us * 1000 or cur.domain.cpupool is not self.pool:
                continue
            cur_credit = cur.sched_priv.credit - ran_ns * maxw // cur.domain.sched_priv.weight
            score = v.sched_priv.credit - cur_credit
            if v.processor != cpu:
                score -= MIGRATE_RESIST
            if score > 0 and v.soft_affinity is not None and cpu in v.soft_affinity:
                score += CREDIT_INIT
            if score > 0 and (best is None or score > best[0]):
                best = (score, cpu)
        return None if best is None else best[1]

    def _reset_credit(self, lowest: int) -> None:
        """reset_credit: everyone gets m * CREDIT_INIT, clipped at CREDIT_INIT, with m large
        enough that the candidate deepest in debt is in the black again. A vCPU that ran alone
        for seconds (nobody waited, so nothing made it stop) owes seconds: lifted by one
        CREDIT_INIT a reset, it waited behind every funded sibling for about that long (Linux's
        boot CPU, after the whole boot alone, held up its second CPU's bring-up for 14 s)."""
        m = 1 + max(0, -lowest) // CREDIT_INIT
        for d in self.domains:
            for v in d.vcpus:
                u = v.sched_priv
                u.credit = min(u.credit + m * CREDIT_INIT, CREDIT_INIT)

    def may_run(self, v: "Vcpu", cpu: int) -> bool:
        return not self._parked(v, self.pool.hv.clock.now_ns())

    def ran(self, v: "Vcpu", ran_ns: int, now_ns: int) -> None:
        sd = v.domain.sched_priv
        v.sched_priv.credit -= ran_ns * self._max_weight() // sd.weight
        if sd.cap:
            sd.budget -= ran_ns

    def must_stop(self, v: "Vcpu", running_ns: int, now_ns: int) -> bool:
        sd = v.domain.sched_priv
        if not sd.cap:
            return False
        self._replenish(sd, now_ns)
        return sd.budget - running_ns <= 0

    def timer(self, now_ns: int) -> tuple[bool, int | None]:
        woke, nxt = False, None
        for d in self.domains:
            sd = d.sched_priv
            if not sd.cap:
                continue
            woke |= self._replenish(sd, now_ns)
            nxt = sd.next_repl if nxt is None else min(nxt, sd.next_repl)
            for v in d.vcpus:                  # when a running vCPU will have spent the budget
                if v.running_on is not None and sd.budget > 0:
                    nxt = min(nxt, now_ns + sd.budget)
        return woke, nxt

    # -- parameters -------------------------------------------------------------------------------

    def dom_cntl(self, d: "Domain", cmd: int, u: dict[str, Any]) -> Reply:
        sd = d.sched_priv
        if cmd == D.XEN_DOMCTL_SCHEDOP_getinfo:
            return 0, {"credit2": {"weight": sd.weight, "cap": sd.cap}}
        if cmd != D.XEN_DOMCTL_SCHEDOP_putinfo:
            return einval()
        c2 = u.get("credit2") or {}
        if not isinstance(c2, dict):
            return einval()
        weight, cap = int(c2.get("weight", 0)), int(c2.get("cap", 0))
        if not (0 <= weight <= 0xFFFF and 0 <= cap <= 0xFFFF):
            return einval()                     # uint16_t fields
        if cap and cap > 100 * len(d.vcpus):
            return -errno.EINVAL, {}            # at most 100% of each of its vCPUs
        if weight:
            sd.weight = weight
        if cap:
            if not sd.cap:                      # the first period starts now, with its budget
                sd.budget = 0
                sd.next_repl = self.pool.hv.clock.now_ns() if self.pool is not None else 0
            sd.cap = cap
        else:
            sd.cap = 0                          # putinfo with cap 0 lifts the cap
        return 0, {"credit2": {"weight": sd.weight, "cap": sd.cap}}

    def sys_cntl(self, cmd: int, u: dict[str, Any]) -> Reply:
        if cmd == S.XEN_SYSCTL_SCHEDOP_putinfo:
            c2 = u.get("sched_credit2") or {}
            if not isinstance(c2, dict):
                return einval()
            r = int(c2.get("ratelimit_us", 0))
            if r and not S.XEN_SYSCTL_SCHED_RATELIMIT_MIN <= r <= S.XEN_SYSCTL_SCHED_RATELIMIT_MAX:
                return einval()
            self.ratelimit_us = r
        return 0, {"sched_credit2": {"ratelimit_us": self.ratelimit_us}}
