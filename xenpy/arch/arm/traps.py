"""What Xen's arch/arm/traps.c reports about guest aborts in its log (`xl dmesg`).

A guest that fetches from an address its domain has no mapping for (a stage-2 prefetch abort),
or whose abort is raised inside its own exception vectors (its vector table is unmapped or
broken, so taking the abort faults again, forever), is usually dead without a word. Each is
logged once per vCPU with the vCPU, the PC and the fault address, like Xen's gprintk of the
HSR, PC and GVA, so a port in trouble can be told from one that is busy.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xenpy.arch.arm.vcpu import ArmVcpu

FSR_DEBUG = (0x2, (1 << 9) | 0x22)     # the status xenpy (like Xen) gives a stage-2 fault
_SCTLR_V = 1 << 13
_VECTOR_TABLE_SIZE = 0x20

_logged: "weakref.WeakKeyDictionary[ArmVcpu, set[str]]" = weakref.WeakKeyDictionary()


def log_guest_abort(arch: "ArmVcpu", address: int, pc: int, at: int | None, *, prefetch: bool,
                    fsr: int) -> None:
    """Call as an abort is injected (ArmVcpu.inject_abort's arguments): `address` the fault
    address (IFAR/DFAR), `pc` the current PC, `at` the faulting instruction if not that (a
    prefetch abort without `at` faults at `address` itself), `fsr` the status the guest gets."""
    if at is not None:
        pc = at
    elif prefetch:
        pc = address
    kind = "prefetch" if prefetch else "data"
    base = 0xFFFF0000 if arch.cp15("SCTLR") & _SCTLR_V else arch.cp15("VBAR")
    in_vectors = base <= (pc & 0xFFFFFFFF) < base + _VECTOR_TABLE_SIZE
    if in_vectors:
        what = (f"stuck in its own abort vector: {kind} abort at pc {pc:#010x} "
                f"(fault address {address & 0xFFFFFFFF:#010x}, vectors at {base:#010x})")
        key = "vector"
    elif prefetch and fsr in FSR_DEBUG:
        what = (f"stage-2 prefetch abort: pc {pc:#010x} fault address "
                f"{address & 0xFFFFFFFF:#010x} (no mapping in the domain)")
        key = "stage2-prefetch"
    else:
        return
    seen = _logged.setdefault(arch, set())
    if key in seen:
        return
    seen.add(key)
    who = getattr(arch, "log_name", None) or f"vcpu{arch.vcpu_id}"
    arch._log(f"{who}: {what}")
