"""Guest aborts as the hypervisor's log sees them (the diagnostic half of Xen's traps.c).

A guest whose abort vector cannot itself be fetched (VBAR, or the high vectors, unmapped or not
executable) takes the abort again at the vector, forever: on hardware the core spins. Here that
loop is noticed at its first turn and logged once, with what a developer needs to fix the guest:
the vCPU, the vector that faulted, and the abort that led there (its PC, address and status).
An abort handler that returns to the faulting instruction without curing it (the same abort
again and again) is logged once too; that guest still runs its handler, so it is left to run.
The vCPU is then parked as if in WFI: it cannot make progress, so it should not burn a pCPU other
domains need; an interrupt resumes it, and it parks again at once if nothing changed.
A fetch from an address the domain has no mapping for (a stage-2 prefetch abort) is logged once
per vCPU too, as Xen logs the HSR, PC and GVA of an abort it reflects.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from xenpy.arch.arm.vcpu import Exit, Vector

if TYPE_CHECKING:
    from xenpy.common.domain import Vcpu

SCTLR_V = 1 << 13
FSR_STAGE2 = (0x2, (1 << 9) | 0x22)     # the status a stage-2 fault is reflected with
VECTOR_TABLE_SIZE = 0x20
REPEATS = 1000      # the same abort this many times in a row: the handler never fixes it


class AbortWatch:
    """Wraps one vCPU's inject_abort (the arch layer's abort entry): same arguments, and a
    look at each abort before it is taken."""

    def __init__(self, v: "Vcpu", inject_abort: Callable[..., None],
                 log: Callable[[str], None]) -> None:
        self.v, self._inject, self._log = v, inject_abort, log
        self.first: tuple[bool, int, int, int] | None = None   # the abort that led to a loop
        self.logged = False
        self.same = 0                     # how many times in a row `first` was taken
        self.repeat_logged = False
        self.stage2_logged = False

    def __call__(self, address: int, *, prefetch: bool, fsr: int, write: bool = False,
                 at: int | None = None, **kw: Any) -> None:
        arch = self.v.arch
        assert arch is not None
        pc = arch.pc if at is None else at
        base = 0xFFFF0000 if arch.cp15("SCTLR") & SCTLR_V else arch.cp15("VBAR")
        at_vector = base <= (address if prefetch else pc) < base + VECTOR_TABLE_SIZE
        if prefetch and fsr in FSR_STAGE2 and not self.stage2_logged:
            self.stage2_logged = True
            self._log(f"d{self.v.domain.domid}v{self.v.vcpu_id}: stage-2 prefetch abort: pc "
                      f"{pc:#x} fault address {address & 0xFFFFFFFF:#x} (no mapping in the domain)")
        if not at_vector:
            abort = (prefetch, pc, address & 0xFFFFFFFF, fsr)
            self.same = self.same + 1 if abort == self.first else 1
            self.first = abort
            if self.same == REPEATS and not self.repeat_logged:
                self.repeat_logged = True
                self._log(f"d{self.v.domain.domid}v{self.v.vcpu_id}: the same "
                          f"{'prefetch' if prefetch else 'data'} abort {REPEATS} times in a row: "
                          f"PC {pc:#010x}, address {address & 0xFFFFFFFF:#010x}, "
                          f"{'IFSR' if prefetch else 'DFSR'} {fsr:#x}: a fault in its abort handler, "
                          f"or a handler that returns without curing it (logged once)")
        self._inject(address, prefetch=prefetch, fsr=fsr, write=write, at=at, **kw)
        if at_vector:
            self._stuck(address if prefetch else pc, address, prefetch, fsr, base)

    def _stuck(self, vector_pc: int, address: int, prefetch: bool, fsr: int, base: int) -> None:
        v = self.v
        if not self.logged:
            self.logged = True
            kind = "prefetch" if prefetch else "data"
            offset = vector_pc - base
            name = {int(x): x.name for x in Vector}.get(offset & ~3, f"+{offset:#x}")
            what = (f"its {name} vector at {vector_pc:#010x} cannot be fetched" if prefetch
                    else f"its {name} vector at {vector_pc:#010x} aborts on {address:#010x}")
            first = ""
            if self.first is not None:
                p, fpc, faddr, ffsr = self.first
                first = (f"; it started with a {'prefetch' if p else 'data'} abort at PC "
                         f"{fpc:#010x}, address {faddr:#010x}, {'IFSR' if p else 'DFSR'} "
                         f"{ffsr:#x}")
            self._log(f"d{v.domain.domid}v{v.vcpu_id}: stuck in an abort loop: {what} "
                      f"({kind} abort, {'IFSR' if prefetch else 'DFSR'} {fsr:#x}, vectors at "
                      f"{base:#010x}){first}; the vCPU waits for an interrupt (logged once)")
        assert v.arch is not None
        v.arch.stop(Exit.WFI)


def watch_aborts(v: "Vcpu", log: Callable[[str], None]) -> None:
    arch = v.arch
    assert arch is not None
    arch.inject_abort = AbortWatch(v, arch.inject_abort, log)   # type: ignore[method-assign]
