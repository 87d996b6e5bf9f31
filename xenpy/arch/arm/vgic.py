"""Common virtual GIC state of one domain (after xen/arch/arm/vgic.c).

This module owns the interrupt state and the delivery decision; it knows no register
layout (that is vgic_v2.py) and no CPU emulator (the arch layer maps the registers as
MMIO and performs the IRQ exception entry when `has_deliverable` says so).

Model, and where it follows Xen rather than a physical GIC:
- SGIs and PPIs (INTIDs 0-31) are banked per vCPU; SPIs (32 up) are shared and each
  targets exactly one vCPU. Xen routes an SPI to the first vCPU of the ITARGETSR list
  (the 1-N model is not implemented), and so do we.
- Priorities are stored as the 8 bits the guest writes (as Xen's vGIC stores them),
  but only the top 5 bits take part in decisions: Xen hands guest interrupts to the
  hardware virtual CPU interface (GICH_LR priority is 5 bits), whose PMR and BPR are
  5-bit too (minimum binary point 2).
- Pending state is a latch (set by an edge, a hypervisor injection or GICD_ISPENDR,
  cleared by acknowledge or GICD_ICPENDR) OR'ed with the input line of a
  level-sensitive interrupt, which stays pending while asserted. SGIs keep one latch
  per source vCPU, so SGI n from vCPU 0 and from vCPU 1 are acknowledged separately.
- An interrupt that is active (including active-and-pending) is never signalled again
  until it is deactivated (GICv2: a CPU interface never signals an active interrupt).
- Every interrupt is Group 0: Xen's GICD_IGROUPR is RAZ/WI and it fills the list
  registers as Group 0, so GICC_CTLR.EnableGrp0 is the CPU interface's enable.
  Group 0 is always signalled as IRQ here, whatever GICC_CTLR.FIQEn says.
- Running priority: each acknowledge pushes the interrupt's group priority (priority
  masked by the binary point) on a per-vCPU stack, which plays GICH_APR; a priority
  drop pops the top. An interrupt is signalled when it is enabled, pending, not
  active, its priority is below GICC_PMR and its group priority is below the running
  priority.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

NR_SGIS = 16
NR_LOCAL_IRQS = 32                 # SGIs + PPIs, banked per vCPU
MAX_SPIS = 1020 - NR_LOCAL_IRQS    # INTIDs 1020-1023 are special
MAX_VCPUS = 8                      # GICv2 CPU targets are an 8-bit mask
SPURIOUS_IRQ = 1023
IDLE_PRIORITY = 0xFF
PRIORITY_BITS = 5
PRIORITY_MASK = (0xFF << (8 - PRIORITY_BITS)) & 0xFF   # 0xF8
MIN_BPR = 7 - PRIORITY_BITS                            # 2: group priority = all 5 bits
MIN_ABPR = MIN_BPR + 1

# GICC_CTLR bits of the virtual CPU interface (GICV_CTLR).
CTLR_ENABLE_GRP0 = 1 << 0
CTLR_ENABLE_GRP1 = 1 << 1
CTLR_ACKCTL = 1 << 2
CTLR_FIQEN = 1 << 3
CTLR_CBPR = 1 << 4
CTLR_EOIMODE = 1 << 9
CTLR_MASK = (CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1 | CTLR_ACKCTL | CTLR_FIQEN
             | CTLR_CBPR | CTLR_EOIMODE)

GICD_CTLR_ENABLE = 1 << 0


class VgicAccessError(Exception):
    """A guest register access that Xen answers with a data abort (strict mode only)."""

    def __init__(self, message: str, *, base: str, offset: int, size: int,
                 write: bool) -> None:
        super().__init__(message)
        self.base = base
        self.offset = offset
        self.size = size
        self.write = write


@dataclass(slots=True)
class IrqState:
    """State of one interrupt (one per vCPU for INTIDs 0-31, one per domain above)."""
    enabled: bool = False
    latch: bool = False       # pending latch of a PPI/SPI
    sources: int = 0          # SGIs: bit n = pending from source vCPU n
    line: bool = False        # input level driven by set_level()
    active: bool = False
    priority: int = 0         # as written by the guest (8 bits)
    cfg: int = 0              # the 2-bit GICD_ICFGR field; bit 1 set = edge-triggered
    target: int = 0           # SPIs: the vCPU it is routed to

    @property
    def edge(self) -> bool:
        return bool(self.cfg & 2)

    @property
    def pending(self) -> bool:
        return self.latch or self.sources != 0 or (self.line and not self.edge)


@dataclass(slots=True)
class CpuInterface:
    """Per-vCPU state: the CPU interface registers and the banked SGIs/PPIs."""
    local: list[IrqState]
    ctlr: int = 0
    pmr: int = 0              # reset value masks everything
    bpr: int = MIN_BPR
    abpr: int = MIN_ABPR
    active_prios: list[int] = field(default_factory=list)   # GICH_APR as a stack
    pending: set[int] = field(default_factory=set)          # local INTIDs with pending state

    @property
    def running_priority(self) -> int:
        return self.active_prios[-1] if self.active_prios else IDLE_PRIORITY

    def group_priority(self, priority: int) -> int:
        # Group 0 with binary point b: bits [7:b+1] are the group priority.
        return priority & PRIORITY_MASK & (0xFF << (self.bpr + 1)) & 0xFF


class _Update:
    """VGic._update(): a context manager without a generator's cost (one per MMIO access)."""
    __slots__ = ("vgic",)

    def __init__(self, vgic: "VGic") -> None:
        self.vgic = vgic

    def __enter__(self) -> None:
        self.vgic._lock.acquire()

    def __exit__(self, exc_type: object, *_: object) -> None:
        g = self.vgic
        try:
            kicks = g._refresh() if exc_type is None else []
        finally:
            g._lock.release()
        for v in kicks:
            g._kick(v)


class VGic:
    """Interrupt state of one domain's virtual GIC, and the hypervisor's injection API.

    `kick(vcpu)` is called, without the lock held, each time an interrupt becomes
    deliverable to a vCPU that had none (so a blocked vCPU wakes and a running one
    stops to take it). It may name the vCPU whose own register access caused it.
    `log(message)` receives one line per noteworthy guest mistake, once per register.
    """

    def __init__(self, nr_vcpus: int, nr_spis: int = 32, *,
                 kick: Callable[[int], None] = lambda v: None,
                 log: Callable[[str], None] = print,
                 strict: bool = False) -> None:
        if not 1 <= nr_vcpus <= MAX_VCPUS:
            raise ValueError(f"a GICv2 serves 1..{MAX_VCPUS} vCPUs, not {nr_vcpus}")
        # Xen keeps SPIs in ranks of 32.
        nr_spis = -(-nr_spis // 32) * 32
        if not 0 <= nr_spis <= MAX_SPIS:
            raise ValueError(f"nr_spis must be 0..{MAX_SPIS}")
        self.nr_vcpus = nr_vcpus
        self.nr_spis = nr_spis
        self.nr_irqs = NR_LOCAL_IRQS + nr_spis
        self.strict = strict
        self._kick = kick
        self._log = log
        self._lock = threading.Lock()
        self._updating = _Update(self)
        self._log_lock = threading.Lock()
        self._logged: set[tuple[object, ...]] = set()
        self._dist_ctlr = 0
        self._cpus = [CpuInterface(local=[IrqState() for _ in range(NR_LOCAL_IRQS)])
                      for _ in range(nr_vcpus)]
        for cpu in self._cpus:
            for sgi in range(NR_SGIS):
                cpu.local[sgi].cfg = 0b10   # SGIs are always edge-triggered
        self._spis = [IrqState() for _ in range(nr_spis)]
        self._spi_pending: set[int] = set()
        # Cached result of the delivery decision, read without the lock: each vCPU's IRQ line,
        # which its block hook reads too (line()).
        self._deliverable = (ctypes.c_uint32 * nr_vcpus)()
        self._dirty: set[int] = set()

    # ---- hypervisor API -------------------------------------------------------------

    def raise_irq(self, vcpu: int, irq: int, *, source: int | None = None) -> None:
        """Edge event on `irq`: make it pending (whatever its configured trigger).

        SPIs go where GICD_ITARGETSR routes them (`vcpu` is then ignored); SGIs and
        PPIs go to `vcpu`. An SGI records `source` (default: `vcpu` itself) as sender.
        This is how Xen injects the event-channel PPI on evtchn_upcall_pending 0->1.
        """
        self._check_irq(irq)
        if irq < NR_LOCAL_IRQS:
            self._check_vcpu(vcpu)
        src = vcpu if source is None else source
        if irq < NR_SGIS:
            self._check_vcpu(src)
        with self._update():
            st = self._state(vcpu, irq)
            if irq < NR_SGIS:
                st.sources |= 1 << src
            else:
                st.latch = True
            self._track(vcpu, irq, st)

    def set_level(self, vcpu: int, irq: int, level: bool) -> None:
        """Drive the input line of a PPI (of `vcpu`) or an SPI (`vcpu` ignored).

        A level-sensitive interrupt is pending while the line is high; an
        edge-triggered one latches pending on the rising edge.
        """
        self._check_irq(irq)
        if irq < NR_SGIS:
            raise ValueError(f"SGI {irq} has no input line")
        if irq < NR_LOCAL_IRQS:
            self._check_vcpu(vcpu)
        if self._state(vcpu, irq).line == level:
            return          # no change, no edge: the timer is sampled at every trap
        with self._update():
            st = self._state(vcpu, irq)
            if level and not st.line and st.edge:
                st.latch = True
            st.line = level
            self._track(vcpu, irq, st)

    def highest_pending(self, vcpu: int) -> int | None:
        """The value GICC_IAR would return now (INTID, SGI source in bits [12:10]),
        without acknowledging it; None when nothing would be signalled."""
        self._check_vcpu(vcpu)
        with self._lock:
            best = self._best(vcpu, signal=True)
        return None if best is None else self._iar_value(vcpu, best)

    def has_deliverable(self, vcpu: int) -> bool:
        """Whether the vCPU's IRQ line is asserted. Lock-free: it reads a flag kept
        up to date by every state change, so it is cheap enough for every exit."""
        return bool(self._deliverable[vcpu])

    def line(self, vcpu: int) -> ctypes.c_uint32:
        """The vCPU's IRQ line as a 32-bit cell (non-zero: asserted), for the vCPU's block hook
        to read as the guest runs; it drops as soon as an acknowledge or a disable lowers it."""
        self._check_vcpu(vcpu)
        return ctypes.c_uint32.from_buffer(self._deliverable, 4 * vcpu)

    def is_pending(self, vcpu: int, irq: int) -> bool:
        self._check_irq(irq)
        with self._lock:
            return self._state(vcpu, irq).pending

    def is_active(self, vcpu: int, irq: int) -> bool:
        self._check_irq(irq)
        with self._lock:
            return self._state(vcpu, irq).active

    def is_enabled(self, vcpu: int, irq: int) -> bool:
        self._check_irq(irq)
        with self._lock:
            return self._state(vcpu, irq).enabled

    # ---- bookkeeping (callers hold the lock unless stated) ----------------------------

    def _update(self) -> "_Update":
        """Hold the lock for a state change, then kick whoever it made deliverable."""
        return self._updating

    def _refresh(self) -> list[int]:
        kicks = []
        for v in self._dirty:
            now = self._best(v, signal=True) is not None
            if now and not self._deliverable[v]:
                kicks.append(v)
            self._deliverable[v] = 1 if now else 0
        self._dirty.clear()
        return sorted(kicks)

    def _log_once(self, key: tuple[object, ...], message: str) -> None:
        """Log `message` the first time `key` is seen. Safe with or without the lock."""
        with self._log_lock:
            if key in self._logged:
                return
            self._logged.add(key)
        self._log(message)

    def _check_vcpu(self, vcpu: int) -> None:
        if not 0 <= vcpu < self.nr_vcpus:
            raise ValueError(f"no vCPU {vcpu} (domain has {self.nr_vcpus})")

    def _check_irq(self, irq: int) -> None:
        if not 0 <= irq < self.nr_irqs:
            raise ValueError(f"no interrupt {irq} (vGIC has {self.nr_irqs})")

    def _state(self, vcpu: int, irq: int) -> IrqState:
        if irq < NR_LOCAL_IRQS:
            return self._cpus[vcpu].local[irq]
        return self._spis[irq - NR_LOCAL_IRQS]

    def _owner(self, vcpu: int, irq: int) -> int:
        """The vCPU that an interrupt is delivered to."""
        return vcpu if irq < NR_LOCAL_IRQS else self._spis[irq - NR_LOCAL_IRQS].target

    def _track(self, vcpu: int, irq: int, st: IrqState) -> None:
        """Record a change of `irq` (pending, enable, active, priority or config)."""
        pend = self._cpus[vcpu].pending if irq < NR_LOCAL_IRQS else self._spi_pending
        if st.pending:
            pend.add(irq)
        else:
            pend.discard(irq)
        self._dirty.add(self._owner(vcpu, irq))

    def _touch_all(self) -> None:
        self._dirty.update(range(self.nr_vcpus))

    def _best(self, vcpu: int, *, signal: bool) -> tuple[int, int] | None:
        """Highest-priority pending, enabled, inactive interrupt of `vcpu` as
        (INTID, priority). Ties go to the lowest INTID, as GIC implementations do.
        With `signal`, also apply GICC_PMR and the running priority (GICC_IAR's view);
        without, it is GICC_HPPIR's view."""
        cpu = self._cpus[vcpu]
        if not (self._dist_ctlr & GICD_CTLR_ENABLE and cpu.ctlr & CTLR_ENABLE_GRP0):
            return None
        best: tuple[int, int] | None = None
        for irq in cpu.pending:
            st = cpu.local[irq]
            if st.enabled and not st.active:
                key = (st.priority & PRIORITY_MASK, irq)
                if best is None or key < best:
                    best = key
        for irq in self._spi_pending:
            st = self._spis[irq - NR_LOCAL_IRQS]
            if st.target == vcpu and st.enabled and not st.active:
                key = (st.priority & PRIORITY_MASK, irq)
                if best is None or key < best:
                    best = key
        if best is None:
            return None
        prio, irq = best
        if signal and (prio >= cpu.pmr
                       or cpu.group_priority(prio) >= cpu.running_priority):
            return None
        return irq, prio

    def _iar_value(self, vcpu: int, best: tuple[int, int]) -> int:
        irq = best[0]
        if irq >= NR_SGIS:
            return irq
        sources = self._cpus[vcpu].local[irq].sources
        return irq | (((sources & -sources).bit_length() - 1) << 10)

    # ---- CPU interface operations, for the register maps ------------------------------

    def _acknowledge(self, vcpu: int) -> int:
        """GICC_IAR read: pending -> active for the interrupt that is signalled."""
        best = self._best(vcpu, signal=True)
        if best is None:
            return SPURIOUS_IRQ
        value = self._iar_value(vcpu, best)
        irq, prio = best
        cpu = self._cpus[vcpu]
        st = self._state(vcpu, irq)
        if irq < NR_SGIS:
            st.sources &= ~(1 << (value >> 10))
        else:
            st.latch = False   # a level line still asserted keeps it pending
        st.active = True
        cpu.active_prios.append(cpu.group_priority(prio))
        self._track(vcpu, irq, st)
        return value

    def _priority_drop(self, vcpu: int) -> None:
        cpu = self._cpus[vcpu]
        if cpu.active_prios:
            cpu.active_prios.pop()
            self._dirty.add(vcpu)

    def _deactivate(self, vcpu: int, irq: int) -> None:
        if irq < self.nr_irqs:
            st = self._state(vcpu, irq)
            if st.active:
                st.active = False
                self._track(vcpu, irq, st)

    def _end_of_interrupt(self, vcpu: int, value: int) -> None:
        """GICC_EOIR write: priority drop, and deactivation unless EOImode is set.

        Like the hardware, the drop pops the highest active priority whatever the
        INTID written; EOI of a spurious INTID does nothing."""
        irq = value & 0x3FF
        if irq >= 1020:
            return
        self._priority_drop(vcpu)
        if not self._cpus[vcpu].ctlr & CTLR_EOIMODE:
            self._deactivate(vcpu, irq)

    # ---- distributor operations, for the register maps --------------------------------

    def _set_dist_ctlr(self, value: int) -> None:
        self._dist_ctlr = value & GICD_CTLR_ENABLE
        self._touch_all()

    def _set_enabled(self, vcpu: int, irq: int, on: bool) -> None:
        st = self._state(vcpu, irq)
        if st.enabled != on:
            st.enabled = on
            self._track(vcpu, irq, st)

    def _set_pending(self, vcpu: int, irq: int, on: bool) -> None:
        """GICD_ISPENDR/ICPENDR: set or clear the latch of a PPI/SPI. A level line
        that is still asserted keeps the interrupt pending, as the spec says."""
        st = self._state(vcpu, irq)
        st.latch = on
        self._track(vcpu, irq, st)

    def _set_active(self, vcpu: int, irq: int, on: bool) -> None:
        st = self._state(vcpu, irq)
        if st.active != on:
            st.active = on
            self._track(vcpu, irq, st)

    def _set_priority(self, vcpu: int, irq: int, priority: int) -> None:
        st = self._state(vcpu, irq)
        st.priority = priority & 0xFF
        self._track(vcpu, irq, st)

    def _set_cfg(self, irq: int, cfg: int) -> None:
        st = self._spis[irq - NR_LOCAL_IRQS]
        st.cfg = cfg & 3
        self._track(0, irq, st)

    def _set_target(self, irq: int, mask: int) -> bool:
        """Route an SPI to the first vCPU in `mask` (Xen's choice). Returns False,
        changing nothing, when the mask names no existing vCPU."""
        mask &= 0xFF
        if not mask:
            return False
        new = (mask & -mask).bit_length() - 1
        if new >= self.nr_vcpus:
            return False
        st = self._spis[irq - NR_LOCAL_IRQS]
        if st.target != new:
            self._dirty.add(st.target)
            st.target = new
            self._dirty.add(new)
        return True

    def _send_sgi(self, vcpu: int, sgi: int, targets: list[int]) -> None:
        for t in targets:
            st = self._cpus[t].local[sgi]
            st.sources |= 1 << vcpu
            self._track(t, sgi, st)

    def _set_sgi_sources(self, vcpu: int, sgi: int, mask: int, on: bool) -> None:
        """GICD_SPENDSGIR/CPENDSGIR: set or clear pending per source vCPU."""
        st = self._cpus[vcpu].local[sgi]
        mask &= (1 << self.nr_vcpus) - 1
        st.sources = (st.sources | mask) if on else (st.sources & ~mask)
        self._track(vcpu, sgi, st)
