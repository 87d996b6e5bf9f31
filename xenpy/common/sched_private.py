"""What a scheduler implements (Xen's common/sched/private.h, struct scheduler's ops).

The core (schedule.py) owns the pCPU threads, the ticker and the rules every scheduler keeps (a
vCPU runs only on a pCPU of its domain's cpupool and its hard affinity; one vCPU of a domain at
a time). Each cpupool has one instance of a scheduler (cpupool.py), which decides which of the
vCPUs the core found eligible for a pCPU runs there, and whether the one running should give
way. Every method runs with the core's condition held.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xenpy.public import errno

if TYPE_CHECKING:
    from xenpy.common.cpupool import Cpupool
    from xenpy.common.domain import Domain, Vcpu

Reply = tuple[int, dict[str, Any]]


class Scheduler:
    name = ""          # struct scheduler's .name
    opt_name = ""      # .opt_name: what sched= and xl's cfg files call it
    sched_id = 0       # XEN_SCHEDULER_*

    def __init__(self) -> None:
        self.pool: "Cpupool | None" = None

    # -- membership (insert_unit / remove_unit, init_pdata / deinit_pdata) ----------------------

    def insert_domain(self, d: "Domain") -> None:
        """d joined the pool (created in it, or moved in)."""

    def remove_domain(self, d: "Domain") -> None:
        """d left the pool (destroyed, or moved out)."""

    def add_cpu(self, cpu: int) -> None:
        pass

    def remove_cpu(self, cpu: int) -> None:
        pass

    def refresh(self) -> None:
        """Vcpus came online or went offline, or an affinity changed (the core calls this
        before it picks)."""

    # -- scheduling (do_schedule) ---------------------------------------------------------------

    def pick(self, cpu: int, eligible: list["Vcpu"]) -> "Vcpu | None":
        """Which of `eligible` (runnable, allowed on cpu, their domain not running elsewhere)
        runs on cpu now."""
        raise NotImplementedError

    def may_run(self, v: "Vcpu", cpu: int) -> bool:
        """Could pick() choose v on cpu (the ticker asks: does anybody wait for this pCPU?)."""
        return True

    def slices(self) -> bool:
        """Does a vCPU that waits for a pCPU preempt the running one when its slice is over?"""
        return True

    def tickle(self, v: "Vcpu", running: list[tuple[int, "Vcpu", int]]) -> int | None:
        """v woke and no pCPU it may use is idle: which of `running` ((pCPU, its vCPU, ns it
        has run) on those pCPUs) should give way to it now (runq_tickle), or None."""
        return None

    def ran(self, v: "Vcpu", ran_ns: int, now_ns: int) -> None:
        """v left its pCPU after running ran_ns (burn_credits)."""

    def must_stop(self, v: "Vcpu", running_ns: int, now_ns: int) -> bool:
        """Should v, running for running_ns now, leave its pCPU whoever waits (a cap)?"""
        return False

    def timer(self, now_ns: int) -> tuple[bool, int | None]:
        """The ticker's turn: (something became runnable, the next ns this scheduler needs the
        ticker at, if sooner than its usual beat)."""
        return False, None

    # -- parameters (adjust, adjust_global) -----------------------------------------------------

    def dom_cntl(self, d: "Domain", cmd: int, u: dict[str, Any]) -> Reply:
        return 0, {}

    def sys_cntl(self, cmd: int, u: dict[str, Any]) -> Reply:
        return 0, {}

    def assignment(self, v: "Vcpu") -> int | None:
        """The pCPU a vCPU owns, for schedulers that assign them (null)."""
        return None


def einval() -> Reply:
    return -errno.EINVAL, {}
