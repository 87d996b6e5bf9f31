"""The scheduler core (Xen's common/sched/core.c) and SCHEDOP_*.

pCPUs are host threads. A pCPU belongs to at most one cpupool (cpupool.py); it runs vCPUs of that
pool's domains whose hard affinity includes it, one vCPU of a domain at a time, and the pool's
scheduler (sched_credit2.py, sched_null.py) picks which. A pCPU in no pool runs nothing. The
chosen vCPU runs until it traps, and the time is accounted to it and to its scheduler. A ticker
preempts a vCPU whose slice is over when another vCPU waits for that pCPU (if its scheduler time
slices) or when its scheduler says so (a cap spent), through the vCPU's exit control (it stops at
the next translation block start), so guest code runs with no per-instruction hook and no
instruction is ever re-run or skipped by a preemption.
"""
from __future__ import annotations

import ctypes
import struct
import threading
import time
from typing import TYPE_CHECKING, Any, Iterable

from xenpy import trace
from xenpy.arch.arm.domain import sample_timers
from xenpy.arch.arm.p2m import current_vcpu
from xenpy.arch.arm.tbhook import idle_poll
from xenpy.arch.arm.guestcopy import GuestFault, copy_from_guest, copy_to_guest
from xenpy.arch.arm.vcpu import Exit
from xenpy.common.hypercall import hypercall
from xenpy.public import errno
from xenpy.public.domctl import (XEN_DOMCTL_SCHEDOP_getinfo, XEN_DOMCTL_SCHEDOP_getvcpuinfo,
                                 XEN_DOMCTL_SCHEDOP_putinfo, XEN_DOMCTL_SCHEDOP_putvcpuinfo)
from xenpy.public.sysctl import XEN_SYSCTL_SCHEDOP_getinfo, XEN_SYSCTL_SCHEDOP_putinfo
from xenpy.public.sched import (SCHEDOP_block, SCHEDOP_remote_shutdown, SCHEDOP_shutdown,
                                SCHEDOP_shutdown_code, SCHEDOP_yield, SHUTDOWN_MAX)
from xenpy.public.vcpu import (RUNSTATE_blocked, RUNSTATE_offline, RUNSTATE_runnable,
                               RUNSTATE_running)
from xenpy.public.xen import HYPERVISOR_sched_op

if TYPE_CHECKING:
    from xenpy.common.domain import Domain, Vcpu
    from xenpy.common.hypervisor import Hypervisor

# A host timed wait overshoots by its timer slack (150-200 us measured here): for a guest timer
# deadline the ticker wakes this much early and yields until the deadline instead.
TIMER_EARLY_NS = 250_000
# An idle pCPU waits for the timers of the blocked vCPUs it last ran (Xen's vtimer is a timer on
# v->processor). The kernel's timed wake-up is 70-130 us late on a host whose idle cores halt, so
# the pCPU sleeps until this long before the deadline and polls the clock for the rest, without
# the interpreter lock: at most this much of a core per deadline (KVM's halt polling).
IDLE_POLL_NS = 100_000
PR_SET_TIMERSLACK = 29
# Idle pCPUs and the ticker are woken when they have something to do; this is only how long they
# sleep at most without being told (a safety net, cheap with hundreds of idle domains).
IDLE_WAIT_S = 1.0
# The slice of a vCPU whose sibling waits for the domain's turn (one vCPU of a domain runs at a
# time): an SMP guest spinning on its other CPU (Linux's csd_lock_wait, a boot handshake) would
# otherwise stall a whole slice at each such wait.
SIBLING_SLICE_S = 0.001


def _precise_timed_waits() -> None:
    """This thread's timed waits end when asked, not up to the kernel's default timer slack
    (50 us) later."""
    try:
        ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass                             # not Linux: its own timer precision


class Scheduler:
    def __init__(self, hv: "Hypervisor", nr_pcpus: int, slice_ms: float = 10.0) -> None:
        self.hv = hv
        self.nr_pcpus = nr_pcpus
        self.slice_s = slice_ms / 1000
        lock = threading.RLock()
        self.cond = threading.Condition(lock)
        # Each pCPU idles on its own condition (sharing the lock), so a wake-up rouses only the
        # pCPUs that may run the vCPU, as Xen raises SCHEDULE_SOFTIRQ on one pCPU: a pCPU woken
        # for nothing costs a GIL hand-off to the pCPU that is running guest code.
        self._idle = [threading.Condition(lock) for _ in range(nr_pcpus)]
        self._kick = [ctypes.c_uint32(0) for _ in range(nr_pcpus)]    # ends an idle poll
        self.current: list["Vcpu | None"] = [None] * nr_pcpus
        self.slice_start = [0.0] * nr_pcpus
        self.idle_ns = [0] * nr_pcpus
        self._stopping = False
        self._tick_event = threading.Event()
        self._tick_at_ns = 1 << 63    # when the ticker looks next (this while it is looking)
        self._threads = [threading.Thread(target=self._pcpu_loop, args=(c,), daemon=True,
                                          name=f"pcpu{c}") for c in range(nr_pcpus)]
        self._threads.append(threading.Thread(target=self._ticker, daemon=True, name="ticker"))

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        with self.cond:
            self._stopping = True
            self._tick_event.set()
            for v in self.current:
                if v is not None and v.arch is not None:
                    v.arch.stop()
            self.notify()
        for t in self._threads:
            t.join(timeout=5)

    # -- state changes from other threads ------------------------------------------------------

    def wake(self, v: "Vcpu") -> None:
        """An event for v: unblock it, or make its next WFI fall through if it is running (its
        block hook reads the vGIC's line and takes the interrupt at the first block start with
        CPSR.I clear). A vCPU that is runnable already is left as it is, as Xen's vcpu_wake
        leaves one on its runqueue."""
        with self.cond:
            was_blocked, v.blocked = v.blocked, False
            if v.running_on is not None:
                v.wake_pending = True
                return          # no pCPU has anything new to pick
            if not was_blocked:
                return
            self.notify(v)
            self._watch_slices(self._tickle(v))

    def _tickle(self, v: "Vcpu") -> list[int]:
        """With the lock held: v became runnable. If every pCPU it may use is busy, its pool's
        scheduler may preempt one of their vCPUs for it (credit2's runq_tickle) rather than
        have it wait for a slice to end. The pCPUs whose slice ends v waits for."""
        pool = v.domain.cpupool
        if pool is None or not v.runnable:
            return []
        sibling = [o.running_on for o in v.domain.vcpus if o.running_on is not None]
        if sibling:
            return sibling                      # its domain's turn comes at a slice end
        cpus = [c for c in sorted(pool.cpu_valid)
                if v.hard_affinity is None or c in v.hard_affinity]
        if not cpus or any(self.current[c] is None for c in cpus):
            return []                           # an idle pCPU picks it up
        perf = time.perf_counter_ns()
        running = [(c, cur, perf - cur.run_since_ns) for c in cpus
                   if (cur := self.current[c]) is not None and cur.run_since_ns is not None
                   and cur.arch is not None]
        c = pool.sched.tickle(v, running)
        if c is not None:
            cur = self.current[c]
            assert cur is not None and cur.arch is not None
            cur.arch.stop()
        return cpus

    def _watch_slices(self, cpus: list[int]) -> None:
        """Someone waits for these pCPUs: the ticker must look by the end of their slices. It
        is woken only if it would not (a wake is a thread hand-off; once a slice is enough)."""
        ends = [int(self._slice_end(c) * 1e9) for c in cpus if self.current[c] is not None]
        if ends and min(ends) < self._tick_at_ns:
            self._tick_event.set()

    def try_hold(self, v: "Vcpu") -> bool:
        """Keep a vCPU that is not on a pCPU off them until release(); False if it is running."""
        with self.cond:
            if v.running_on is not None:
                return False
            v.held += 1
            return True

    def release(self, vcpus: Iterable["Vcpu"]) -> None:
        with self.cond:
            for v in vcpus:
                v.held -= 1
            self.notify()
            self._tick_event.set()

    def kick(self) -> None:
        """Something became runnable (unpause, CPU_ON, affinity change): let idle pCPUs look,
        after the schedulers saw the change (null assigns pCPUs to vCPUs that came online)."""
        with self.cond:
            for pool in list(self.hv.cpupools.pools.values()):
                pool.sched.refresh()
            self.notify()
            self._tick_event.set()

    def notify(self, v: "Vcpu | None" = None) -> None:
        """With the lock held: the idle pCPUs that may run v (any vCPU: all of them) look again,
        and whoever waits on `cond` for a vCPU to leave its pCPU rechecks."""
        cpus = (range(self.nr_pcpus) if v is None or v.hard_affinity is None
                else v.hard_affinity)
        for c in cpus:
            if 0 <= c < self.nr_pcpus:
                self._kick[c].value = 1
                self._idle[c].notify()
        self.cond.notify_all()

    def deschedule(self, vcpus: Iterable["Vcpu"], timeout: float = 5.0) -> bool:
        """Stop the given vCPUs and wait until none of them is running (pause, destroy)."""
        vcpus = list(vcpus)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                running = [v for v in vcpus if v.running_on is not None]
                if not running:
                    return True
                for v in running:
                    if v.arch is not None:
                        v.arch.stop()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.01))

    # -- the pCPU loop -------------------------------------------------------------------------

    def _eligible(self, v: "Vcpu", cpu: int) -> bool:
        # One vCPU of a domain at a time: Unicorn 2.1 builds every instance single-threaded
        # (QEMU's curr_cflags() is 0, never CF_PARALLEL), so STREX is a plain load, compare
        # and store; two vCPUs of one domain on two host threads could both succeed and lose
        # an increment. Domains still run side by side.
        return (v.running_on is None and v.runnable
                and (v.hard_affinity is None or cpu in v.hard_affinity)
                and not any(o.running_on is not None for o in v.domain.vcpus))

    def _pick(self, cpu: int) -> "Vcpu | None":
        """do_schedule: the pool's scheduler chooses among the vCPUs allowed on `cpu`."""
        pool = self.hv.cpupools.pool_of_cpu(cpu)
        if pool is None:
            return None                          # a free pCPU runs nothing
        eligible = [v for d in pool.domains if not d.privileged for v in d.vcpus
                    if self._eligible(v, cpu)]
        return pool.sched.pick(cpu, eligible)

    def _watches(self, cpu: int, v: "Vcpu") -> bool:
        """Is `cpu` the pCPU that waits for v's timer while idle: the one v last ran on, if v
        is not running and may run there again?"""
        return (v.processor == cpu and v.running_on is None
                and (v.hard_affinity is None or cpu in v.hard_affinity)
                and self.hv.cpupools.pool_of_cpu(cpu) is v.domain.cpupool)

    def _watched(self, cpu: int) -> list["Vcpu"]:
        pool = self.hv.cpupools.pool_of_cpu(cpu)
        if pool is None:
            return []
        return [v for d in pool.domains if not d.privileged for v in d.vcpus
                if v.timer_deadline is not None and self._watches(cpu, v)]

    def _idle_wait(self, cpu: int) -> None:
        """With the lock held and nothing to run: sleep until told, or until the next timer
        deadline of a vCPU this pCPU watches. A deadline that passed raises that vCPU's PPI,
        whose kick wakes it."""
        watched = self._watched(cpu)
        now = time.monotonic_ns()
        due = [v for v in watched if v.timer_deadline <= now]
        for v in due:
            sample_timers(v)
        if due:
            return
        if not watched:
            self._idle[cpu].wait(IDLE_WAIT_S)
            return
        until = min(v.timer_deadline for v in watched)
        left = until - now
        if left > IDLE_POLL_NS:
            self._idle[cpu].wait(min(IDLE_WAIT_S, (left - IDLE_POLL_NS) / 1e9))
            return
        kick = self._kick[cpu]
        kick.value = 0                   # a notify() from now on ends the poll
        self.cond.release()
        try:
            idle_poll(until, kick)
        finally:
            self.cond.acquire()

    def _pcpu_loop(self, cpu: int) -> None:
        _precise_timed_waits()
        while True:
            with self.cond:
                v = None
                idle_from = time.perf_counter_ns()
                while not self._stopping and (v := self._pick(cpu)) is None:
                    self._idle_wait(cpu)
                self.idle_ns[cpu] += time.perf_counter_ns() - idle_from
                if self._stopping:
                    return
                v.running_on = v.processor = cpu
                watched = self._watched(cpu)
                if watched:                      # busy now: the ticker watches their timers
                    self.timers_changed(min(w.timer_deadline for w in watched))
                v.wake_pending = False
                runstate_change(v, RUNSTATE_running)
                self.current[cpu] = v
                self.slice_start[cpu] = time.monotonic()
                if self._waiting_for(cpu, v):
                    self._watch_slices([cpu])    # someone waits behind this slice
            if v.domain.p2m is not None:
                v.domain.p2m.restore_state(v)    # what changed while it was off
            if v.domain.vgic is not None:
                sample_timers(v, due_only=True)  # a deadline may have passed while it waited
            t0 = v.run_since_ns = time.perf_counter_ns()
            if trace.ENABLED:
                trace.emit("sched_in", v)
            current_vcpu.v = v
            try:
                why = v.arch.run() if v.arch is not None else Exit.DOWN
            except Exception as e:  # noqa: BLE001 - a guest must not take a pCPU down
                self.hv.log(f"{v}: vCPU stopped by an internal error: {e!r}")
                v.domain.shutdown(3)
                why = Exit.DOWN
            finally:
                current_vcpu.v = None
            if v.arch is not None and v.domain.vgic is not None:
                sample_timers(v, due_only=True)
            if trace.ENABLED:
                trace.emit("sched_out", v, pcpu=cpu, why=why.value)
            with self.cond:
                ran, v.run_since_ns = time.perf_counter_ns() - t0, None
                self._put_back(v, cpu, why, ran, time.monotonic())

    def _put_back(self, v: "Vcpu", cpu: int, why: Exit, ran_ns: int, last_ran: float) -> None:
        """v is off pCPU `cpu` after running ran_ns for `why`; with the cond held. A WFI blocks
        unless an event came meanwhile or an interrupt is pending (masked or not)."""
        v.cpu_time_ns += ran_ns
        v.last_ran = last_ran
        if v.domain.cpupool is not None:
            v.domain.cpupool.sched.ran(v, ran_ns, self.hv.clock.now_ns())
        v.running_on = None
        self.current[cpu] = None
        if why is Exit.WFI:
            v.stats.wfi += 1
            if v.wake_pending or self.hv.has_pending_interrupt(v):
                v.wake_pending = False
            else:
                v.blocked = True
        runstate_change(v, RUNSTATE_blocked if v.blocked else
                        RUNSTATE_runnable if v.online else RUNSTATE_offline)
        # Who may want a pCPU now: v itself if still runnable (preempted), and the other vCPUs
        # of its domain, which wait while one of theirs runs (see _eligible).
        for o in v.domain.vcpus:
            if o.runnable:
                self.notify(o)
        self.cond.notify_all()

    def timers_changed(self, deadline_ns: int | None) -> None:
        """A vCPU's timer deadline moved: the ticker recomputes when to wake if the new one is
        before its next look. A later deadline, or a disarmed timer, need not wake it: each wake
        is a thread hand-off, and a guest reprograms its timer on every tick. (_tick_at_ns is
        the deadline the ticker wakes early for, not its early wake.)"""
        if deadline_ns is not None and deadline_ns < self._tick_at_ns:
            self._tick_event.set()

    def _ticker(self) -> None:
        """Slice ends and timer deadlines: preempt, or wake a vCPU whose timer fired."""
        _precise_timed_waits()
        while not self._stopping:
            self._tick_at_ns = 1 << 63           # any deadline set during this pass wakes it
            now_ns = time.monotonic_ns()
            next_ns = now_ns + int(IDLE_WAIT_S * 1e9)
            now = time.monotonic()
            due: list["Vcpu"] = []
            timer_ns = None                      # the earliest guest timer deadline ahead
            with self.cond:
                perf = time.perf_counter_ns()
                for cpu, v in enumerate(self.current):
                    if v is None or v.arch is None:
                        continue
                    pool = v.domain.cpupool
                    since = v.run_since_ns
                    if (pool is not None and since is not None
                            and pool.sched.must_stop(v, perf - since, now_ns)):
                        v.arch.stop()            # its cap is spent, whoever waits
                    elif self._waiting_for(cpu, v):
                        end = self._slice_end(cpu)
                        if now >= end:
                            v.arch.stop()        # its slice is over and someone waits
                        else:
                            next_ns = min(next_ns, now_ns + int((end - now) * 1e9))
                for pool in list(self.hv.cpupools.pools.values()):
                    woke, when = pool.sched.timer(now_ns)
                    if woke:
                        self.notify()            # a parked vCPU has budget again
                    if when is not None:
                        next_ns = max(now_ns + 100_000, min(next_ns, when))
                for d in list(self.hv.domains.values()):
                    for v in d.vcpus:
                        # Never cleared here: the vCPU may have set its next deadline since.
                        t = v.timer_deadline
                        if t is None or v.running_on is not None:
                            continue             # a running vCPU stops at it by itself
                        p = v.processor
                        if (p is not None and 0 <= p < self.nr_pcpus
                                and self.current[p] is None and self._watches(p, v)):
                            continue             # its idle pCPU waits for it
                        if t > now_ns:
                            timer_ns = t if timer_ns is None else min(timer_ns, t)
                        elif t != v.timer_fired:
                            v.timer_fired = t
                            due.append(v)
                for v in due:
                    sample_timers(v)             # raises the PPI; the vGIC's kick wakes it
            self._sleep_until(next_ns, timer_ns)

    def _sleep_until(self, next_ns: int, timer_ns: int | None) -> None:
        """Until next_ns (roughly) or a guest timer deadline (closely), or a timers_changed()."""
        self._tick_at_ns = min(next_ns, timer_ns) if timer_ns is not None else next_ns
        if timer_ns is not None and timer_ns - TIMER_EARLY_NS < next_ns:
            delay = (timer_ns - TIMER_EARLY_NS - time.monotonic_ns()) / 1e9
            if delay <= 0 or not self._tick_event.wait(delay):
                while time.monotonic_ns() < timer_ns and not self._tick_event.is_set():
                    time.sleep(0)                # yields the GIL; the pCPUs run meanwhile
        else:
            delay = (next_ns - time.monotonic_ns()) / 1e9
            if delay > 0:
                self._tick_event.wait(delay)
        self._tick_event.clear()

    def _slice_end(self, cpu: int) -> float:
        """When the slice of the vCPU on `cpu` ends (time.monotonic): shorter if a vCPU of its
        own domain waits for it."""
        v = self.current[cpu]
        sibling = v is not None and any(o is not v and o.running_on is None and o.runnable
                                        for o in v.domain.vcpus)
        return self.slice_start[cpu] + (min(SIBLING_SLICE_S, self.slice_s) if sibling
                                        else self.slice_s)

    def _waiting_for(self, cpu: int, current: "Vcpu") -> bool:
        """Does another vCPU wait for its domain's turn (see _eligible), or want this pCPU and
        the pool's scheduler time slices (null does not)?"""
        for v in current.domain.vcpus:
            if v is not current and v.running_on is None and v.runnable:
                return True
        pool = self.hv.cpupools.pool_of_cpu(cpu)
        if pool is None or pool is not current.domain.cpupool:
            return True                          # the pCPU left the domain's pool
        if not pool.sched.slices():
            return False
        for d in pool.domains:
            for v in d.vcpus:
                if v is current or v.running_on is not None or not v.runnable:
                    continue
                if self._eligible(v, cpu) and pool.sched.may_run(v, cpu):
                    return True
        return False


# -- XEN_DOMCTL_scheduler_op, XEN_SYSCTL_scheduler_op -------------------------------------------

def sched_adjust(hv: "Hypervisor", d: "Domain", u: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A domain's parameters in its pool's scheduler (credit2: weight, cap)."""
    pool = d.cpupool
    if pool is None or int(u.get("sched_id", -1)) != pool.sched.sched_id:
        return -errno.EINVAL, {}
    cmd = int(u.get("cmd", -1))
    if cmd not in (XEN_DOMCTL_SCHEDOP_putinfo, XEN_DOMCTL_SCHEDOP_getinfo,
                   XEN_DOMCTL_SCHEDOP_putvcpuinfo, XEN_DOMCTL_SCHEDOP_getvcpuinfo):
        return -errno.EINVAL, {}
    with hv.scheduler.cond:
        ret, out = pool.sched.dom_cntl(d, cmd, u)
        hv.scheduler.notify()
    return ret, {"sched_id": pool.sched.sched_id, "cmd": cmd, **out}


def sched_adjust_global(hv: "Hypervisor", u: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A pool's scheduler-wide parameters (credit2: ratelimit_us)."""
    cmd = int(u.get("cmd", -1))
    if cmd not in (XEN_SYSCTL_SCHEDOP_putinfo, XEN_SYSCTL_SCHEDOP_getinfo):
        return -errno.EINVAL, {}
    pool = hv.cpupools.pools.get(int(u.get("cpupool_id", 0)))
    if pool is None:
        return -errno.ESRCH, {}
    if int(u.get("sched_id", -1)) != pool.sched.sched_id:
        return -errno.EINVAL, {}
    with hv.scheduler.cond:
        ret, out = pool.sched.sys_cntl(cmd, u.get("u") or {})
    return ret, {"cpupool_id": pool.cpupool_id, "sched_id": pool.sched.sched_id, "cmd": cmd,
                 "u": out}


# -- runstate (VCPUOP_register_runstate_memory_area) ------------------------------------------------

def runstate_change(v: "Vcpu", state: int) -> None:
    """Account the time spent in the old state; publish the area when the vCPU is scheduled in,
    as Xen does on a context switch."""
    now = v.domain.hv.clock.now_ns()
    v.runstate_time[v.runstate] += now - v.runstate_entry
    v.runstate, v.runstate_entry = state, now
    if state == RUNSTATE_running and v.runstate_va is not None and v.arch is not None:
        info = struct.pack("<iI5Q", state, 0, now, *v.runstate_time)
        try:
            copy_to_guest(v.arch, v.runstate_va, info)
        except GuestFault:
            v.runstate_va = None      # Xen stops updating an area it cannot reach


# -- SCHEDOP_* ------------------------------------------------------------------------------------

def _read_u32(v: "Vcpu", va: int) -> int:
    assert v.arch is not None
    return int.from_bytes(copy_from_guest(v.arch, va, 4), "little")


@hypercall(HYPERVISOR_sched_op)
def do_sched_op(v: "Vcpu", args: tuple[int, ...]) -> int:
    cmd, arg = args[0], args[1]
    assert v.arch is not None
    if cmd == SCHEDOP_yield:
        v.arch.stop()
        return 0
    if cmd == SCHEDOP_block:
        v.arch.stop(Exit.WFI)
        return 0
    if cmd in (SCHEDOP_shutdown, SCHEDOP_shutdown_code):
        reason = _read_u32(v, arg)
        if reason > SHUTDOWN_MAX:
            return -errno.EINVAL
        if cmd == SCHEDOP_shutdown_code:
            v.domain.shutdown_code = reason   # recorded for a later shutdown
            return 0
        v.domain.shutdown(reason)
        return 0
    if cmd == SCHEDOP_remote_shutdown:
        if not v.domain.privileged:
            return -errno.EPERM
        raw = copy_from_guest(v.arch, arg, 8)
        target = v.domain.hv.domains.get(int.from_bytes(raw[0:2], "little"))
        if target is None:
            return -errno.ESRCH
        target.shutdown(int.from_bytes(raw[4:8], "little"))
        return 0
    return -errno.ENOSYS
