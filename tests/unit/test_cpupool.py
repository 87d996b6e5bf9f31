"""Cpupools and the schedulers as Xen's cpupool.c, credit2.c and null.c define them, through the
hypercalls the toolstack uses (XEN_SYSCTL_cpupool_op, XEN_SYSCTL/DOMCTL_scheduler_op), on an
in-process hypervisor whose pCPU threads are not started: every decision here is the
schedulers' own, none depends on host timing."""
from __future__ import annotations

import pytest

from xenpy.common.domctl import do_domctl
from xenpy.common.hypervisor import Hypervisor, HypervisorConfig
from xenpy.common.sysctl import do_sysctl
from xenpy.public import domctl as D
from xenpy.public import errno
from xenpy.public import sysctl as S

ANY = S.XEN_SYSCTL_CPUPOOL_PAR_ANY
CREDIT2, NULL = S.XEN_SCHEDULER_CREDIT2, S.XEN_SCHEDULER_NULL


class _Arch:
    """What the scheduler asks of a vCPU's arch half here: that it exists (and can close)."""

    def close(self) -> None:
        pass

    def stop(self, *_: object) -> None:
        pass


def make(cmdline: str = "", pcpus: int = 2, deterministic: bool = False) -> Hypervisor:
    return Hypervisor(HypervisorConfig(nr_pcpus=pcpus, cmdline=cmdline,
                                       deterministic=deterministic))


def pool_op(hv: Hypervisor, op: int, **u) -> tuple[int, dict]:
    return do_sysctl(hv, hv.domains[0], {"cmd": S.XEN_SYSCTL_cpupool_op,
                                         "interface_version": S.XEN_SYSCTL_INTERFACE_VERSION,
                                         "u": {"op": op, **u}})


def sched_dom(hv: Hypervisor, domid: int, cmd: int, sched_id: int = CREDIT2, **credit2):
    return do_domctl(hv, hv.domains[0], {
        "cmd": D.XEN_DOMCTL_scheduler_op, "interface_version": D.XEN_DOMCTL_INTERFACE_VERSION,
        "domain": domid, "u": {"sched_id": sched_id, "cmd": cmd, "credit2": credit2}})


def online_domain(hv: Hypervisor, vcpus: int = 1, pool: int = 0) -> object:
    """A domain whose vCPUs are online (no RAM: the schedulers are asked directly)."""
    domid = hv.domain_create(0, vcpus, None, None, cpupool_id=pool)
    assert domid > 0, domid
    d = hv.domains[domid]
    for v in d.vcpus:
        v.online = True
    hv.scheduler.kick()
    return d


def split(hv: Hypervisor, sched_id: int = NULL) -> int:
    """Take pCPU 1 from Pool-0 into a new pool of `sched_id`; its id."""
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_RMCPU, cpupool_id=0, cpu=1)[0] == 0
    rc, out = pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_CREATE, cpupool_id=ANY, sched_id=sched_id)
    assert rc == 0
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_ADDCPU, cpupool_id=out["cpupool_id"], cpu=1)[0] == 0
    return out["cpupool_id"]


# -- boot: sched= picks Pool-0's scheduler ----------------------------------------------------

@pytest.mark.parametrize("cmdline, name, sched_id", [
    ("", "SMP Credit Scheduler rev2 (credit2)", CREDIT2),
    ("dom0_mem=128M sched=null", "null Scheduler (null)", NULL),
    ("sched=null sched=credit2", "SMP Credit Scheduler rev2 (credit2)", CREDIT2),
])
def test_sched_on_the_command_line_picks_pool0s_scheduler(cmdline, name, sched_id):
    hv = make(cmdline)
    # core.c's scheduler_init: printk("Using scheduler: %s (%s)\n", ops->name, ops->opt_name)
    assert f"(XEN) Using scheduler: {name}" in hv.dmesg
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_INFO, cpupool_id=0) == (
        0, {"cpupool_id": 0, "sched_id": sched_id, "n_dom": 1, "cpumap": [0, 1]})
    assert do_sysctl(hv, hv.domains[0], {"cmd": S.XEN_SYSCTL_sched_id, "interface_version":
                                         S.XEN_SYSCTL_INTERFACE_VERSION})[1]["sched_id"] == sched_id


def test_an_unknown_scheduler_falls_back_as_xen_says():
    hv = make("sched=rtds")
    lines = list(hv.dmesg)
    # printk("Could not find scheduler: %s\n", opt_sched); printk("Using '%s' (%s)\n", ...)
    i = lines.index("(XEN) Could not find scheduler: rtds")
    assert lines[i + 1] == "(XEN) Using 'SMP Credit Scheduler rev2' (credit2)"
    assert lines[i + 2] == "(XEN) Using scheduler: SMP Credit Scheduler rev2 (credit2)"


# -- XEN_SYSCTL_cpupool_op: semantics and error codes ----------------------------------------

def test_pool_ops_and_their_error_codes():
    hv = make()
    op = lambda o, **u: pool_op(hv, o, **u)[0]  # noqa: E731
    C, Dy, A, R = (S.XEN_SYSCTL_CPUPOOL_OP_CREATE, S.XEN_SYSCTL_CPUPOOL_OP_DESTROY,
                   S.XEN_SYSCTL_CPUPOOL_OP_ADDCPU, S.XEN_SYSCTL_CPUPOOL_OP_RMCPU)
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_FREEINFO) == (0, {"cpumap": []})
    assert op(R, cpupool_id=0, cpu=0) == -errno.EINVAL         # CPU 0 stays in Pool-0
    assert op(R, cpupool_id=0, cpu=7) == -errno.EINVAL         # no such CPU
    assert op(R, cpupool_id=5, cpu=1) == -errno.ENOENT         # no such pool
    assert op(R, cpupool_id=0, cpu=1) == 0
    assert op(R, cpupool_id=0, cpu=1) == -errno.EADDRNOTAVAIL  # not (any more) in the pool
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_FREEINFO) == (0, {"cpumap": [1]})
    assert op(C, cpupool_id=ANY, sched_id=4) == -errno.ENOENT   # SEDF is gone
    assert pool_op(hv, C, cpupool_id=ANY, sched_id=NULL) == (0, {"cpupool_id": 1})
    assert op(C, cpupool_id=1, sched_id=NULL) == -errno.EEXIST
    assert op(A, cpupool_id=1, cpu=0) == -errno.ENODEV          # not free
    assert op(A, cpupool_id=1, cpu=9) == -errno.EINVAL
    assert op(A, cpupool_id=1, cpu=ANY) == 0                    # the first free one
    assert op(A, cpupool_id=1, cpu=ANY) == -errno.ENODEV        # none left
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_INFO, cpupool_id=1) == (
        0, {"cpupool_id": 1, "sched_id": NULL, "n_dom": 0, "cpumap": [1]})
    # INFO is "the next pool from this id": what libxl_list_cpupool walks; ENOENT past the end
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_INFO, cpupool_id=2) == (-errno.ENOENT, {})
    assert op(Dy, cpupool_id=1) == -errno.EBUSY                # it still has a CPU
    assert op(R, cpupool_id=1, cpu=1) == 0
    assert op(Dy, cpupool_id=1) == 0
    assert op(Dy, cpupool_id=1) == -errno.ENOENT
    assert op(99) == -errno.ENOSYS


def test_domains_join_leave_and_move_between_pools():
    hv = make()
    rt = split(hv)
    d = online_domain(hv)
    assert d.cpupool.cpupool_id == 0
    # createdomain in a pool without CPUs, or a pool that does not exist
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_CREATE, cpupool_id=7, sched_id=CREDIT2)[0] == 0
    assert hv.domain_create(0, 1, None, None, cpupool_id=7) == -errno.ENODEV
    assert hv.domain_create(0, 1, None, None, cpupool_id=8) == -errno.ESRCH
    move = lambda domid, pool: pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_MOVEDOMAIN,  # noqa: E731
                                        cpupool_id=pool, domid=domid)[0]
    assert move(0, rt) == -errno.EPERM              # not the caller itself
    assert move(42, rt) == -errno.ESRCH
    assert move(d.domid, 7) == -errno.ENOENT        # a pool with no CPU takes no domain
    d.vcpus[0].hard_affinity = frozenset({0})
    assert move(d.domid, rt) == 0
    assert d.cpupool.cpupool_id == rt and d.vcpus[0].hard_affinity is None  # reset, as Xen
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_INFO, cpupool_id=rt)[1]["n_dom"] == 1
    # the last CPU of a pool with a live domain stays; destroy needs it empty
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_RMCPU, cpupool_id=rt, cpu=1)[0] == -errno.EBUSY
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_DESTROY, cpupool_id=rt)[0] == -errno.EBUSY
    hv.domain_destroy(d)
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_INFO, cpupool_id=rt)[1]["n_dom"] == 0
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_RMCPU, cpupool_id=rt, cpu=1)[0] == 0


def test_hard_affinity_must_meet_the_pool():
    hv = make()
    split(hv)
    d = online_domain(hv)
    req = {"cmd": D.XEN_DOMCTL_setvcpuaffinity, "interface_version":
           D.XEN_DOMCTL_INTERFACE_VERSION, "domain": d.domid,
           "u": {"vcpu": 0, "flags": D.XEN_VCPUAFFINITY_HARD, "cpumap_hard": [1]}}
    assert do_domctl(hv, hv.domains[0], req)[0] == -errno.EINVAL   # pCPU 1 is not Pool-0's
    req["u"]["cpumap_hard"] = [0, 1]
    assert do_domctl(hv, hv.domains[0], req)[0] == 0


def test_a_free_pcpu_runs_nothing_and_a_pool_runs_only_its_domains():
    hv = make()
    assert pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_RMCPU, cpupool_id=0, cpu=1)[0] == 0
    d = online_domain(hv)
    d.vcpus[0].arch = _Arch()          # runnable as far as the scheduler is concerned
    d.pause_count = 0
    assert hv.scheduler._pick(1) is None        # free
    assert hv.scheduler._pick(0) is d.vcpus[0]
    rt = pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_CREATE, cpupool_id=ANY, sched_id=CREDIT2)[1]
    pool_op(hv, S.XEN_SYSCTL_CPUPOOL_OP_ADDCPU, cpupool_id=rt["cpupool_id"], cpu=1)
    assert hv.scheduler._pick(1) is None        # another pool's domain


# -- null: one pCPU per vCPU, a waitqueue ------------------------------------------------------

def test_null_assigns_each_vcpu_a_pcpu_and_queues_the_rest():
    hv = make("sched=null", pcpus=3)
    # Domain-0's vCPUs (one per pCPU by default) own every pCPU, as on Xen: nothing else runs
    assert sorted(repr(v) for v in hv.cpupools.cpupool0.sched.owner.values()) == [
        "d0v0", "d0v1", "d0v2"]
    hv2 = Hypervisor(HypervisorConfig(nr_pcpus=3, cmdline="sched=null", dom0_max_vcpus=1,
                                      dom0_vcpus_pin=True))
    null = hv2.cpupools.cpupool0.sched
    assert null.owner == {0: hv2.domains[0].vcpus[0]}
    a = online_domain(hv2, vcpus=2)
    b = online_domain(hv2, vcpus=1)
    assert {c: repr(v) for c, v in null.owner.items()} == {0: "d0v0", 1: f"d{a.domid}v0",
                                                           2: f"d{a.domid}v1"}
    assert null.waitq == [b.vcpus[0]]
    assert null.assignment(b.vcpus[0]) is None
    # a vCPU that goes offline frees its pCPU: the first in the queue takes it (null_unit_sleep)
    a.vcpus[1].online = False
    hv2.scheduler.kick()
    assert null.owner[2] is b.vcpus[0] and null.waitq == []
    assert b.vcpus[0].processor == 2        # xl vcpu-list's CPU column
    # a vCPU owns only the pCPU it was given: pCPU 1 picks a.v0 and nothing else
    for v in (*a.vcpus, *b.vcpus):
        v.arch = _Arch()
    a.pause_count = b.pause_count = 0
    assert hv2.scheduler._pick(1) is a.vcpus[0]
    assert hv2.scheduler._pick(2) is b.vcpus[0]
    assert hv2.scheduler._pick(0) is None    # dom0's: its vCPU is this host, never scheduled
    hv2.domain_destroy(b)
    assert 2 not in null.owner


def test_null_does_not_time_slice_but_siblings_take_turns():
    hv = Hypervisor(HypervisorConfig(nr_pcpus=3, cmdline="sched=null", dom0_max_vcpus=1,
                                     dom0_vcpus_pin=True))
    other = online_domain(hv)
    d = online_domain(hv, vcpus=1)
    for v in (*other.vcpus, *d.vcpus):
        v.arch = _Arch()
    other.pause_count = d.pause_count = 0
    v = d.vcpus[0]
    cpu = hv.cpupools.cpupool0.sched.assignment(v)
    v.running_on = cpu
    assert not hv.scheduler._waiting_for(cpu, v)      # nobody else may have its pCPU


# -- credit2: weight, cap -------------------------------------------------------------------------

def share(hv: Hypervisor, doms, rounds: int = 600, quantum: int = 1_000_000) -> list[int]:
    """Run the credit2 of Pool-0 on pCPU 0 for `rounds` quanta of busy vCPUs; ns each got."""
    sched = hv.cpupools.cpupool0.sched
    got = [0] * len(doms)
    for i in range(rounds):
        hv.clock.advance_to(hv.clock.base_ns + quantum)
        v = sched.pick(0, [d.vcpus[0] for d in doms])
        if v is None:
            continue
        k = [d.vcpus[0] for d in doms].index(v)
        got[k] += quantum
        v.last_ran = i
        sched.ran(v, quantum, hv.clock.now_ns())
    return got


def test_credit2_weight_is_a_proportional_share():
    hv = make(deterministic=True)
    a, b, c = online_domain(hv), online_domain(hv), online_domain(hv)
    assert sched_dom(hv, a.domid, D.XEN_DOMCTL_SCHEDOP_getinfo)[1]["credit2"] == {
        "weight": 256, "cap": 0}                       # CSCHED2_DEFAULT_WEIGHT
    assert sched_dom(hv, a.domid, D.XEN_DOMCTL_SCHEDOP_putinfo, weight=512)[0] == 0
    assert sched_dom(hv, c.domid, D.XEN_DOMCTL_SCHEDOP_putinfo, weight=128)[0] == 0
    got = share(hv, [a, b, c])
    assert 1.8 < got[0] / got[1] < 2.2 and 1.8 < got[1] / got[2] < 2.2, got


def test_credit2_cap_is_a_budget_per_period():
    hv = make(deterministic=True)
    a, b = online_domain(hv), online_domain(hv)
    assert sched_dom(hv, a.domid, D.XEN_DOMCTL_SCHEDOP_putinfo, cap=25)[0] == 0
    got = share(hv, [a], rounds=400, quantum=500_000)         # alone: it would get it all
    assert 0.2 < got[0] / (400 * 500_000) < 0.3, got
    got = share(hv, [a, b], rounds=400, quantum=500_000)      # b takes what a may not
    assert 0.2 < got[0] / sum(got) < 0.3, got
    assert sched_dom(hv, a.domid, D.XEN_DOMCTL_SCHEDOP_putinfo, cap=0)[0] == 0   # lifted
    got = share(hv, [a], rounds=100)
    assert got[0] == 100 * 1_000_000


def test_credit2_a_long_lone_run_leaves_no_debt_behind_a_new_sibling():
    """reset_credit lifts everyone until the candidate deepest in debt is in the black: a vCPU
    that ran alone for 10 s (Linux's boot CPU, bringing up its second CPU) waits behind its
    funded sibling for that sibling's credit (10 ms), not for the 10 s it owes."""
    hv = make(deterministic=True)
    d = online_domain(hv, vcpus=2)
    sched = hv.cpupools.cpupool0.sched
    boot, second = d.vcpus
    sched.ran(boot, 10_000_000_000, hv.clock.now_ns())        # 10 s alone: nobody waited
    ms, waited = 1_000_000, 0
    for i in range(1, 1000):
        v = sched.pick(0, [boot, second])
        v.last_ran = i
        sched.ran(v, ms, hv.clock.now_ns())
        if v is boot:
            break
        waited += ms
    assert v is boot and waited <= 11 * ms, f"the boot vCPU waited {waited / ms:.0f} ms"


def test_credit2_a_waking_vcpu_preempts_the_poorest_runner_past_the_rate_limit():
    """runq_tickle / tickle_score: the waking vCPU's credit against each runner's, less
    CSCHED2_MIGRATE_RESIST off its last pCPU; a runner inside the 1 ms rate limit is left."""
    hv = make()
    rtos, spin0, spin1 = online_domain(hv), online_domain(hv), online_domain(hv)
    sched = hv.cpupools.cpupool0.sched
    waker, r0, r1 = rtos.vcpus[0], spin0.vcpus[0], spin1.vcpus[0]
    waker.processor = 1
    r0.sched_priv.credit, r1.sched_priv.credit = 6_000_000, 2_000_000
    ms = 1_000_000
    assert sched.tickle(waker, [(0, r0, 2 * ms), (1, r1, 2 * ms)]) == 1        # the poorer one
    assert sched.tickle(waker, [(0, r0, 2 * ms), (1, r1, ms // 2)]) == 0       # r1 rate-limited
    r0.sched_priv.credit = r1.sched_priv.credit = waker.sched_priv.credit - 1_500_000
    # 1.5 ms of credit ahead, after 2 ms of burning: 3.5 ms ahead on pCPU 1, 3.0 on pCPU 0
    assert sched.tickle(waker, [(0, r0, 2 * ms), (1, r1, 2 * ms)]) == 1
    r0.sched_priv.credit = r1.sched_priv.credit = waker.sched_priv.credit + 5 * ms
    assert sched.tickle(waker, [(0, r0, 2 * ms), (1, r1, 2 * ms)]) is None   # richer runners


def test_scheduler_op_checks_as_xen():
    hv = make()
    a = online_domain(hv, vcpus=2)
    # the domain's pool runs credit2, not null: sched_adjust's -EINVAL
    assert sched_dom(hv, a.domid, D.XEN_DOMCTL_SCHEDOP_getinfo, sched_id=NULL)[0] == -errno.EINVAL
    assert sched_dom(hv, a.domid, 9)[0] == -errno.EINVAL
    # "Cap is only valid if it's below 100 * nr_of_units"
    assert sched_dom(hv, a.domid, D.XEN_DOMCTL_SCHEDOP_putinfo, cap=201)[0] == -errno.EINVAL
    assert sched_dom(hv, a.domid, D.XEN_DOMCTL_SCHEDOP_putinfo, cap=200, weight=1000)[1][
        "credit2"] == {"weight": 1000, "cap": 200}
    # weight 0 leaves the weight as it is
    assert sched_dom(hv, a.domid, D.XEN_DOMCTL_SCHEDOP_putinfo, cap=200, weight=0)[1][
        "credit2"]["weight"] == 1000

    def glob(cmd, pool=0, sched_id=CREDIT2, **u):
        return do_sysctl(hv, hv.domains[0], {
            "cmd": S.XEN_SYSCTL_scheduler_op, "interface_version": S.XEN_SYSCTL_INTERFACE_VERSION,
            "u": {"cpupool_id": pool, "sched_id": sched_id, "cmd": cmd,
                  "u": {"sched_credit2": u}}})
    assert glob(S.XEN_SYSCTL_SCHEDOP_getinfo)[1]["u"] == {"sched_credit2": {"ratelimit_us": 1000}}
    assert glob(S.XEN_SYSCTL_SCHEDOP_putinfo, ratelimit_us=50)[0] == -errno.EINVAL
    assert glob(S.XEN_SYSCTL_SCHEDOP_putinfo, ratelimit_us=500)[0] == 0
    assert glob(S.XEN_SYSCTL_SCHEDOP_getinfo)[1]["u"]["sched_credit2"]["ratelimit_us"] == 500
    assert glob(S.XEN_SYSCTL_SCHEDOP_getinfo, pool=3)[0] == -errno.ESRCH
    assert glob(S.XEN_SYSCTL_SCHEDOP_getinfo, sched_id=NULL)[0] == -errno.EINVAL
    assert glob(7)[0] == -errno.EINVAL


def test_hostile_cpupool_requests_get_einval():
    hv = make()
    for u in ({"op": "x"}, {"op": S.XEN_SYSCTL_CPUPOOL_OP_ADDCPU, "cpupool_id": 0, "cpu": [1]},
              {"op": S.XEN_SYSCTL_CPUPOOL_OP_MOVEDOMAIN, "domid": {}},
              {"op": S.XEN_SYSCTL_CPUPOOL_OP_CREATE, "cpupool_id": -5, "sched_id": NULL},
              {"op": S.XEN_SYSCTL_CPUPOOL_OP_RMCPU, "cpupool_id": 0, "cpu": 1 << 70}):
        assert do_sysctl(hv, hv.domains[0], {"cmd": S.XEN_SYSCTL_cpupool_op, "interface_version":
                                             S.XEN_SYSCTL_INTERFACE_VERSION, "u": u})[0] < 0
    assert sorted(hv.cpupools.pools) == [0] and hv.cpupools.free_cpus == set()
    d = online_domain(hv)
    for credit2 in (5, {"weight": "heavy"}, {"cap": 1 << 40}):
        assert do_domctl(hv, hv.domains[0], {
            "cmd": D.XEN_DOMCTL_scheduler_op, "interface_version": D.XEN_DOMCTL_INTERFACE_VERSION,
            "domain": d.domid, "u": {"sched_id": CREDIT2, "cmd": D.XEN_DOMCTL_SCHEDOP_putinfo,
                                     "credit2": credit2}})[0] == -errno.EINVAL
    assert (d.sched_priv.weight, d.sched_priv.cap) == (256, 0)
