"""Per-domain arch state (Xen's arch/arm/domain.c): the vGIC, its MMIO windows, the vtimers.

The vGIC's distributor and CPU interface are MMIO regions in every vCPU's address map at the
domain's layout addresses; accesses reach the register model with the accessing vCPU's id (for
the banked registers). A vCPU's interrupt line into the arch layer is `has_deliverable`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from xenpy import trace
from xenpy.arch.arm.traps import watch_aborts
from xenpy.arch.arm.vcpreg import Cp15Traps
from xenpy.arch.arm.vgic import VgicAccessError
from xenpy.arch.arm.vgic_v2 import GICC_EOIR, GICC_IAR, GICD_SGIR, GICD_SIZE, GICC_SIZE, VGicV2
from xenpy.arch.arm.vtimer import VTimer
from xenpy.public.arch_arm import GUEST_EVTCHN_PPI, GUEST_TIMER_PHYS_NS_PPI, GUEST_TIMER_VIRT_PPI

TIMER_PPIS = (GUEST_TIMER_VIRT_PPI, GUEST_TIMER_PHYS_NS_PPI)

if TYPE_CHECKING:
    from xenpy.common.domain import Domain, Vcpu

PAGE = 0x1000
MPIDR_SMP = 1 << 31


def arch_domain_init(d: "Domain") -> None:
    """After the domain's RAM exists: its vGIC, GIC MMIO in each vCPU, and its timers."""
    assert d.layout is not None
    hv = d.hv
    d.vgic = vgic = VGicV2(len(d.vcpus), nr_spis=32, kick=lambda n: hv.vgic_kick(d, n),
                           log=hv.log, strict=hv.config.vgic_strict)
    cntvoff = hv.clock.count()
    gicc_size = max(PAGE, (d.layout.gicc_size + PAGE - 1) & ~(PAGE - 1))
    gicc_size = min(gicc_size, GICC_SIZE)
    for v in d.vcpus:
        a = v.arch
        assert a is not None
        n = v.vcpu_id
        # vcpu_initialise(): the MPIDR the guest reads is MPIDR_SMP | the vCPU's affinity
        # (Aff0 = id % 16, Aff1 = id / 16), the value the DT's cpu@ reg and PSCI CPU_ON name.
        # Unicorn's own MPIDR is 0x80000000 on every vCPU: Linux then sees its CPUs as one.
        a.set_cp15("VMPIDR", MPIDR_SMP | (n & 0xF) | (n >> 4) << 8)
        a.wire_irq(vgic.line(n))
        a.map_mmio(d.layout.gicd_base, GICD_SIZE,
                   lambda off, size, v=v: _gicd_read(v, off, size),
                   lambda off, size, val, v=v: _gicd_write(v, off, size, val))
        a.map_mmio(d.layout.gicc_base, gicc_size,
                   lambda off, size, v=v: _gicc_read(v, off, size),
                   lambda off, size, val, v=v: _gicc_write(v, off, size, val))
        traps = Cp15Traps(a)
        v.vtimer = VTimer(a, traps, cntvoff, on_write=lambda v=v: hv.timer_written(v),
                          clock=hv.clock)
        if len(d.vcpus) > 1 and d.p2m is not None:    # what the others' maintenance publishes
            traps.add(d.p2m.decode_cache_op, lambda dec, addr, v=v: d.p2m.cache_op(v, dec, addr))
        a.on_timer = lambda v=v: sample_timers(v)
        a.wfi_wakes = lambda v=v: hv.has_pending_interrupt(v)
        watch_aborts(v, hv.log)


def _gicd_read(v: "Vcpu", off: int, size: int) -> int:
    v.stats.mmio += 1
    return v.domain.vgic.dist_read(v.vcpu_id, off, size)


def _gicd_write(v: "Vcpu", off: int, size: int, val: int) -> None:
    v.stats.mmio += 1
    if off == GICD_SGIR:
        v.stats.vsgi += 1
    v.domain.vgic.dist_write(v.vcpu_id, off, size, val)


def _gicc_read(v: "Vcpu", off: int, size: int) -> int:
    v.stats.mmio += 1
    if off == GICC_IAR:
        sample_timers(v, due_only=True)     # a deadline may have passed since the last look
        irq = v.domain.vgic.cpu_read(v.vcpu_id, off, size)
        if irq & 0x3FF < 1020:
            v.stats.virq += 1  # an interrupt taken (1020-1023 are special: nothing pending)
            if trace.ENABLED:
                _trace_irq(v, irq & 0x3FF)
        return irq
    return v.domain.vgic.cpu_read(v.vcpu_id, off, size)


def _trace_irq(v: "Vcpu", irq: int) -> None:
    if irq == GUEST_EVTCHN_PPI:
        trace.emit("upcall", v, irq=irq, flows=trace.upcall_enter(v.domain.domid, v.vcpu_id))
    else:
        trace.emit("irq", v, irq=irq)


def _gicc_write(v: "Vcpu", off: int, size: int, val: int) -> None:
    v.stats.mmio += 1
    if trace.ENABLED and off == GICC_EOIR:
        if val & 0x3FF == GUEST_EVTCHN_PPI:
            trace.upcall_exit(v.domain.domid, v.vcpu_id)
        trace.emit("eoi", v, irq=val & 0x3FF)
    v.domain.vgic.cpu_write(v.vcpu_id, off, size, val)
    if off == GICC_EOIR and val & 0x3FF in TIMER_PPIS:
        sample_timers(v, due_only=True)     # (a still-expired timer's line is still high)


def sample_timers(v: "Vcpu", due_only: bool = False) -> int | None:
    """Update the timer PPIs' levels; return the vCPU's next timer deadline (host ns) or None.

    due_only: only if that deadline has passed. A line rises only as time passes and drops only
    when the guest writes its timer, which samples at once.
    """
    vt = getattr(v, "vtimer", None)
    if vt is None:
        return None
    if due_only and (v.timer_deadline is None or vt.clock.now_ns() < v.timer_deadline):
        return v.timer_deadline
    lines, deadline = vt.sample()
    vgic = v.domain.vgic
    for ppi, level in lines.items():
        vgic.set_level(v.vcpu_id, ppi, level)
    v.timer_deadline = deadline
    return deadline


__all__ = ["arch_domain_init", "sample_timers", "VgicAccessError"]
