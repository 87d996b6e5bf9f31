"""Real guest code under the schedulers: credit2's weight and cap as shares of a pCPU on the
deterministic board (virtual time: exact whatever the host's load), and a null pool whose pCPU
runs its domain and nothing else on the threaded board."""
from __future__ import annotations

import time

from tests.guest.a32 import B_SELF, boot
from xenpy.common.hypervisor import Hypervisor, HypervisorConfig
from xenpy.public import sysctl as S

TIMEOUT = 120


def spinners(hv: Hypervisor, n: int, cpus: frozenset[int]) -> list:
    out = []
    for _ in range(n):
        d = boot(hv, [B_SELF])
        d.vcpus[0].hard_affinity = cpus
        out.append(d)
    return out


def until_rounds(hv: Hypervisor, rounds: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while hv.scheduler.rounds < rounds:
        assert time.monotonic() < deadline, f"only {hv.scheduler.rounds} rounds in {TIMEOUT} s"
        time.sleep(0.02)


def cpu_times(hv: Hypervisor, doms) -> list[int]:
    with hv.big_lock:                   # between two rounds: nobody is running
        return [d.vcpus[0].cpu_time_ns for d in doms]


def test_credit2_weight_shares_a_pcpu_between_busy_guests():
    hv = Hypervisor(HypervisorConfig(nr_pcpus=2, deterministic=True))
    hv.start()
    try:
        heavy, light = spinners(hv, 2, frozenset({0}))        # both on pCPU 0
        heavy.sched_priv.weight = 512
        until_rounds(hv, 2000)
        a, b = cpu_times(hv, (heavy, light))
        assert 1.9 < a / b < 2.1, (a, b)
    finally:
        hv.shutdown()


def test_credit2_cap_limits_a_guest_with_the_pcpu_to_itself():
    hv = Hypervisor(HypervisorConfig(nr_pcpus=2, deterministic=True))
    hv.start()
    try:
        capped, free = spinners(hv, 2, frozenset({0}))
        free.vcpus[0].hard_affinity = frozenset({1})          # alone on pCPU 1
        with hv.big_lock:
            rc, _ = hv.cpupools.cpupool0.sched.dom_cntl(capped, 0, {"credit2": {"cap": 30}})
        assert rc == 0
        until_rounds(hv, 3000)
        a, b = cpu_times(hv, (capped, free))
        # pCPU 0 idles while the capped guest waits for its next period's budget
        assert 0.25 < a / b < 0.36, (a, b)
    finally:
        hv.shutdown()


def test_a_null_pool_runs_its_domain_on_its_pcpu_only():
    hv = Hypervisor(HypervisorConfig(nr_pcpus=2, dom0_max_vcpus=1, dom0_vcpus_pin=True))
    hv.start()
    dom0 = hv.domains[0]
    from xenpy.common.cpupool import cpupool_do_sysctl
    try:
        assert cpupool_do_sysctl(hv, dom0, {"op": S.XEN_SYSCTL_CPUPOOL_OP_RMCPU,
                                            "cpupool_id": 0, "cpu": 1})[0] == 0
        rc, out = cpupool_do_sysctl(hv, dom0, {"op": S.XEN_SYSCTL_CPUPOOL_OP_CREATE,
                                               "cpupool_id": S.XEN_SYSCTL_CPUPOOL_PAR_ANY,
                                               "sched_id": S.XEN_SCHEDULER_NULL})
        assert rc == 0
        rt = out["cpupool_id"]
        assert cpupool_do_sysctl(hv, dom0, {"op": S.XEN_SYSCTL_CPUPOOL_OP_ADDCPU,
                                            "cpupool_id": rt, "cpu": 1})[0] == 0
        others = spinners(hv, 2, None)              # busy guests in Pool-0: pCPU 0 only
        rtos = boot(hv, [B_SELF])
        assert cpupool_do_sysctl(hv, dom0, {"op": S.XEN_SYSCTL_CPUPOOL_OP_MOVEDOMAIN,
                                            "cpupool_id": rt, "domid": rtos.domid})[0] == 0
        deadline = time.monotonic() + TIMEOUT
        while rtos.vcpus[0].running_on is None:        # its pCPU thread picks it up
            assert time.monotonic() < deadline, "the RTOS never ran in its pool"
            time.sleep(0.001)
        seen: dict[str, set] = {"rtos": set(), "others": set()}
        deadline = time.monotonic() + 1.0
        t0 = rtos.vcpus[0].cpu_time_now_ns()
        while time.monotonic() < deadline:
            seen["rtos"].add(rtos.vcpus[0].running_on)
            for d in others:
                seen["others"].add(d.vcpus[0].running_on)
            time.sleep(0.001)
        ran = rtos.vcpus[0].cpu_time_now_ns() - t0
        assert seen["rtos"] <= {1, None} and 1 in seen["rtos"], seen
        assert seen["others"] <= {0, None}, seen
        assert rtos.vcpus[0].processor == 1
        assert hv.cpupools.pools[rt].sched.assignment(rtos.vcpus[0]) == 1
        # no time slicing on its pCPU: it held it the whole second (bar the sampling's own
        # thread switches, nothing took it off)
        assert ran > 0.9e9, ran
    finally:
        hv.shutdown()
