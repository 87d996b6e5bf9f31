"""The deterministic board's scheduler: every pCPU in lock step on one host thread.

`xenpy boot --deterministic` replaces the pCPU threads and the ticker with one executor. Each round,
pCPU 0, 1, ... in turn runs the vCPU it picks (the same cpupools, schedulers and affinity rules
as the threaded scheduler) for one quantum of guest code, counted by the vCPU's block hook; the
quanta of one round are simultaneous in virtual time, which then advances by the quantum. A quantum is cut
short at the next guest timer deadline, so timer interrupts land at exact instruction counts; when
every vCPU waits, time jumps to the next deadline.

Dom0 acts between rounds only: the executor holds the board lock while guests run, and privcmd
requests, xenstored and xenconsoled take it. Before each round the executor waits until dom0's
in-board services have handled every event the guests sent them, so a backend answers in zero
virtual time.

Idle time passes only while dom0 waits for the guests (a console read, an event-channel read):
when every vCPU waits and nobody in dom0 does, the board stands still. So a dom0 command finds
waiting guests where the previous one left them, and a scenario driven by commands (create,
console, a driver's request and its answer) runs the same way every time, whatever the host.
Nothing the guests see depends on host time. What a dom0 command sees of a guest that is still
running does: a scenario that reads the log compares it once the guests have finished or wait.
"""
from __future__ import annotations

import random
import threading
from typing import TYPE_CHECKING

from xenpy.arch.arm.clock import BYTES_PER_NS, InstructionClock
from xenpy.arch.arm.domain import sample_timers
from xenpy.arch.arm.p2m import current_vcpu
from xenpy.arch.arm.vcpu import Exit
from xenpy.common.schedule import Scheduler, runstate_change
from xenpy.public.vcpu import RUNSTATE_running

if TYPE_CHECKING:
    from xenpy.common.domain import Vcpu
    from xenpy.common.hypervisor import Hypervisor

QUANTUM_NS = 100_000        # 100 us of guest code (~100,000 instructions) per pCPU per round
SERVICE_TIMEOUT_S = 10.0    # how long a round waits for dom0's services before it says so


class DeterministicScheduler(Scheduler):
    def __init__(self, hv: "Hypervisor", nr_pcpus: int, slice_ms: float = 10.0,
                 seed: int | None = None) -> None:
        super().__init__(hv, nr_pcpus, slice_ms)
        assert isinstance(hv.clock, InstructionClock)
        self.clock: InstructionClock = hv.clock
        # A seed varies the quanta (reproducibly): other interleavings of the same guests.
        self._rng = random.Random(seed) if seed is not None else None
        self._seq = 0
        self.rounds = 0
        self._this_round: set[int] = set()      # ids of the vCPUs that ran in this round
        self._threads = [threading.Thread(target=self._executor, daemon=True, name="pcpus")]

    def _eligible(self, v: "Vcpu", cpu: int) -> bool:
        # A round's quanta are simultaneous in virtual time: a vCPU runs in at most one of them.
        return id(v) not in self._this_round and super()._eligible(v, cpu)

    def _quantum(self) -> int:
        if self._rng is None:
            return QUANTUM_NS
        return self._rng.randrange(QUANTUM_NS // 4, QUANTUM_NS * 2)

    def _next_deadline(self) -> int | None:
        deadlines = [v.timer_deadline for d in self.hv.domains.values() for v in d.vcpus
                     if v.timer_deadline is not None]
        return min(deadlines) if deadlines else None

    def _executor(self) -> None:
        hv, clock = self.hv, self.clock
        while not self._stopping:
            hv.wait_for_services(SERVICE_TIMEOUT_S)
            with hv.big_lock.round():
                now = clock.base_ns
                deadline = self._next_deadline()
                q = None                            # drawn once something runs (the seed's
                ran = False                         # sequence must not depend on idle loops)
                used = 0                            # the longest quantum actually run
                self._this_round.clear()
                for cpu in range(self.nr_pcpus):
                    with self.cond:
                        v = self._pick(cpu)
                        if v is None:
                            continue
                        v.running_on = v.processor = cpu
                        v.wake_pending = False
                        runstate_change(v, RUNSTATE_running)
                        self.current[cpu] = v
                        self._this_round.add(id(v))
                    if q is None:
                        q = self._quantum()
                        if deadline is not None and deadline > now:
                            q = min(q, deadline - now)
                    ran = True
                    used = max(used, self._run_quantum(cpu, v, q))
                idle = not ran and deadline is not None and hv.dom0_waiting > 0
                if ran:
                    # The pCPUs ran side by side: time moves on by the longest of them (a
                    # quantum ends at a block boundary, so it may overshoot q a little).
                    clock.advance_to(now + max(used, 1))
                    self.rounds += 1
                elif idle:
                    clock.advance_to(deadline)      # everyone waits: skip the idle time
                for d in list(hv.domains.values()):
                    for v in d.vcpus:
                        if v.arch is not None and d.vgic is not None:
                            sample_timers(v)        # raises due PPIs; the vGIC wakes sleepers
            if not ran and not idle:
                with self.cond:                     # nothing to run until dom0 does something
                    if not self._stopping and not any(
                            self._pick(c) for c in range(self.nr_pcpus)):
                        self.cond.wait(0.05)

    def _run_quantum(self, cpu: int, v: "Vcpu", q_ns: int) -> int:
        """Run v on pCPU `cpu` for up to q_ns of guest code; the virtual ns it used."""
        a = v.arch
        why = Exit.DOWN
        start = 0
        if a is not None:
            if v.domain.p2m is not None:
                v.domain.p2m.restore_state(v)
            if v.domain.vgic is not None:
                sample_timers(v)
            ctl = a.exitctl
            start = ctl.executed
            ctl.meter(q_ns * BYTES_PER_NS)
            self.clock.enter(lambda: ctl.executed - start)
            current_vcpu.v = v
            try:
                why = a.run()
            except Exception as e:  # noqa: BLE001 - a guest must not take the board down
                self.hv.log(f"{v}: vCPU stopped by an internal error: {e!r}")
                v.domain.shutdown(3)
            finally:
                current_vcpu.v = None
                self.clock.leave()
                ctl.meter(None)
            if v.domain.vgic is not None:
                sample_timers(v)
        with self.cond:
            ran_ns = (a.exitctl.executed - start) // BYTES_PER_NS if a is not None else 0
            self._seq += 1
            self._put_back(v, cpu, why, ran_ns, self._seq)
        return ran_ns

    def _tickle(self, v: "Vcpu") -> list[int]:
        return []                # a round's quanta are short; a wake-up waits for the next one

    def timers_changed(self, deadline_ns: int | None) -> None:
        pass                     # the executor looks at every deadline each round


