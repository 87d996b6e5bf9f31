"""GICv2 register maps of the virtual GIC (after xen/arch/arm/vgic-v2.c).

The distributor (GICD, 4 KiB) is emulated as Xen emulates it. The CPU interface
(GICC, 8 KiB) is, on Xen, the hardware virtual CPU interface (GICV) mapped into the
guest; it is modelled here after GICV: 5 priority bits, Group 0 only.

Access rules:
- Every register takes aligned 32-bit accesses; IPRIORITYR, ITARGETSR, CPENDSGIR and
  SPENDSGIR also take byte accesses. Any other size or alignment is a bad access.
- Registers of interrupts beyond nr_spis read as zero and ignore writes, silently.
- Reserved and IMPLEMENTATION DEFINED ranges read as zero and ignore writes, logged
  once (Xen does not fault them).
- Unhandled accesses (unknown register, bad size, a reserved SGIR filter, the ID
  register ICPIDR2 that Xen faults) are logged once per register and then read as
  zero / ignored, or raise VgicAccessError in strict mode so the caller injects a data
  abort, as Xen does.

Where Xen leaves a GICv2 register unemulated but the spec defines it, the spec is
followed: ISPENDR/ICPENDR/ISACTIVER/ICACTIVER read and change the real state, and
CPENDSGIR/SPENDSGIR work per source vCPU (Xen reads them as zero and faults writes).
"""

from __future__ import annotations

from bisect import bisect_right

from .vgic import (
    CTLR_EOIMODE,
    CTLR_MASK,
    MIN_ABPR,
    MIN_BPR,
    NR_LOCAL_IRQS,
    NR_SGIS,
    PRIORITY_BITS,
    PRIORITY_MASK,
    SPURIOUS_IRQ,
    VGic,
    VgicAccessError,
)

GICD_SIZE = 0x1000
GICC_SIZE = 0x2000

# Distributor register offsets (GICv2 spec, table 4-1).
GICD_CTLR = 0x000
GICD_TYPER = 0x004
GICD_IIDR = 0x008
GICD_IGROUPR = 0x080
GICD_ISENABLER = 0x100
GICD_ICENABLER = 0x180
GICD_ISPENDR = 0x200
GICD_ICPENDR = 0x280
GICD_ISACTIVER = 0x300
GICD_ICACTIVER = 0x380
GICD_IPRIORITYR = 0x400
GICD_ITARGETSR = 0x800
GICD_ICFGR = 0xC00
GICD_NSACR = 0xE00
GICD_SGIR = 0xF00
GICD_CPENDSGIR = 0xF10
GICD_SPENDSGIR = 0xF20
GICD_ICPIDR2 = 0xFE8

# CPU interface register offsets (GICv2 spec, table 4-2).
GICC_CTLR = 0x00
GICC_PMR = 0x04
GICC_BPR = 0x08
GICC_IAR = 0x0C
GICC_EOIR = 0x10
GICC_RPR = 0x14
GICC_HPPIR = 0x18
GICC_ABPR = 0x1C
GICC_AIAR = 0x20
GICC_AEOIR = 0x24
GICC_AHPPIR = 0x28
GICC_APR0 = 0xD0
GICC_NSAPR0 = 0xE0
GICC_IIDR = 0xFC
GICC_DIR = 0x1000

GICD_IIDR_VALUE = 0x0000043B   # what Xen reports (ARM as implementer)
GICC_IIDR_VALUE = 0x0202143B   # GIC-400's CPU interface, whose GICV Xen maps

SGIR_FILTER_LIST, SGIR_FILTER_OTHERS, SGIR_FILTER_SELF = 0, 1, 2

# Distributor ranges: (start, end, kind, byte-accessible). Gaps are unhandled.
_GICD_RANGES: list[tuple[int, int, str, bool]] = [
    (0x000, 0x004, "ctlr", False),
    (0x004, 0x008, "typer", False),
    (0x008, 0x00C, "iidr", False),
    (0x00C, 0x020, "reserved", True),
    (0x020, 0x040, "impdef", True),
    (0x040, 0x080, "reserved", True),
    (0x080, 0x100, "raz32", False),        # IGROUPR: no security extensions
    (0x100, 0x180, "isenabler", False),
    (0x180, 0x200, "icenabler", False),
    (0x200, 0x280, "ispendr", False),
    (0x280, 0x300, "icpendr", False),
    (0x300, 0x380, "isactiver", False),
    (0x380, 0x400, "icactiver", False),
    (0x400, 0x7FC, "ipriorityr", True),
    (0x7FC, 0x800, "reserved", True),
    (0x800, 0xBFC, "itargetsr", True),
    (0xBFC, 0xC00, "reserved", True),
    (0xC00, 0xD00, "icfgr", False),
    (0xD00, 0xE00, "impdef", True),
    (0xE00, 0xF00, "raz32", False),        # NSACR: no security extensions
    (0xF00, 0xF04, "sgir", False),
    (0xF04, 0xF10, "reserved", True),
    (0xF10, 0xF20, "cpendsgir", True),
    (0xF20, 0xF30, "spendsgir", True),
    (0xF30, 0xFD0, "reserved", True),
    (0xFD0, 0xFE8, "impdef", True),
    (0xFE8, 0xFEC, "unhandled", False),    # ICPIDR2: Xen faults reads of it
    (0xFEC, 0x1000, "impdef", True),
]
_GICD_STARTS = [r[0] for r in _GICD_RANGES]

# Bit-per-interrupt distributor registers.
_BIT_REGS = {
    "isenabler": GICD_ISENABLER, "icenabler": GICD_ICENABLER,
    "ispendr": GICD_ISPENDR, "icpendr": GICD_ICPENDR,
    "isactiver": GICD_ISACTIVER, "icactiver": GICD_ICACTIVER,
}


# Registers with one byte per interrupt, where byte accesses are allowed.
_BYTE_REGS = ("ipriorityr", "itargetsr", "cpendsgir", "spendsgir")


def _bits(value: int) -> list[int]:
    out = []
    while value:
        low = value & -value
        out.append(low.bit_length() - 1)
        value ^= low
    return out


class VGicV2(VGic):
    """A domain's vGIC with its GICv2 register maps.

    The arch layer maps GICD_SIZE bytes at the distributor base and GICC_SIZE at the
    CPU interface base, and forwards each guest access with the accessing vCPU's id.
    Reads return the value zero-extended to `size` bytes; writes take the low `size`
    bytes of `value`.
    """

    # ---- distributor ------------------------------------------------------------------

    def dist_read(self, vcpu: int, offset: int, size: int) -> int:
        self._check_vcpu(vcpu)
        kind = self._dist_kind(offset, size, write=False)
        if kind is None:
            return 0
        with self._lock:
            if kind in _BYTE_REGS:
                return sum(self._dist_read_byte(vcpu, kind, offset + i) << (8 * i)
                           for i in range(size))
            return self._dist_read_word(vcpu, kind, offset)

    def dist_write(self, vcpu: int, offset: int, size: int, value: int) -> None:
        self._check_vcpu(vcpu)
        kind = self._dist_kind(offset, size, write=True)
        if kind is None:
            return
        value &= (1 << (8 * size)) - 1
        if kind == "sgir":
            self._write_sgir(vcpu, offset, value)
            return
        with self._update():
            if kind in _BYTE_REGS:
                for i in range(size):
                    self._dist_write_byte(vcpu, kind, offset + i, (value >> (8 * i)) & 0xFF)
            else:
                self._dist_write_word(vcpu, kind, offset, value)

    def _dist_kind(self, offset: int, size: int, *, write: bool) -> str | None:
        """Classify an access; None when it is already dealt with (RAZ/WI, logged)."""
        if not 0 <= offset < GICD_SIZE:
            raise ValueError(f"GICD offset {offset:#x} outside the distributor")
        _, _, kind, byte_ok = _GICD_RANGES[bisect_right(_GICD_STARTS, offset) - 1]
        if kind in ("reserved", "impdef"):
            what = "reserved" if kind == "reserved" else "IMPLEMENTATION DEFINED"
            action = "ignored write to" if write else "RAZ read of"
            self._log_once(("GICD-ro", write, offset & ~3),
                           f"vgic: {action} {what} GICD+{offset & ~3:#05x}")
            return None
        if kind == "unhandled":
            self._unhandled("GICD", offset, size, write)
            return None
        if not _size_ok(offset, size, byte_ok):
            self._unhandled("GICD", offset, size, write, bad_size=True)
            return None
        return kind

    def _unhandled(self, base: str, offset: int, size: int, write: bool, *,
                   bad_size: bool = False, why: str = "") -> None:
        rw = "write" if write else "read"
        prep = "to" if write else "of"
        detail = f" (bad size {size})" if bad_size else why
        message = f"vgic: unhandled {rw} {prep} {base}+{offset:#05x}{detail}"
        if self.strict:
            raise VgicAccessError(message, base=base.lower(), offset=offset, size=size,
                                  write=write)
        self._log_once((base, write, offset, bad_size), message)

    def _first_irq(self, kind: str, reg: int) -> int | None:
        """First INTID covered by the word register at `reg`, None past nr_irqs."""
        if kind == "icfgr":
            irq = (reg - GICD_ICFGR) * 4            # 2 bits per interrupt
        else:
            irq = (reg - _BIT_REGS[kind]) * 8       # 1 bit per interrupt
        return irq if irq < self.nr_irqs else None

    def _dist_read_word(self, vcpu: int, kind: str, reg: int) -> int:
        if kind == "ctlr":
            return self._dist_ctlr
        if kind == "typer":
            # CPUNumber [7:5] = vCPUs - 1, ITLinesNumber [4:0] = SPI ranks of 32.
            return ((self.nr_vcpus - 1) << 5) | (self.nr_spis // 32)
        if kind == "iidr":
            return GICD_IIDR_VALUE
        if kind in ("raz32", "sgir"):
            return 0        # SGIR is write-only: its reads are UNKNOWN
        if kind == "icfgr":
            first = self._first_irq(kind, reg)
            if first is None:
                return 0
            value = 0
            for i in range(16):
                value |= self._state(vcpu, first + i).cfg << (2 * i)
            return value
        first = self._first_irq(kind, reg)
        if first is None:
            return 0
        value = 0
        for i in range(32):
            st = self._state(vcpu, first + i)
            if kind in ("isenabler", "icenabler"):
                bit = st.enabled
            elif kind in ("ispendr", "icpendr"):
                bit = st.pending
            else:
                bit = st.active
            value |= int(bit) << i
        return value

    def _dist_write_word(self, vcpu: int, kind: str, reg: int, value: int) -> None:
        if kind == "ctlr":
            self._set_dist_ctlr(value)
        elif kind in ("typer", "iidr", "raz32"):
            pass                                    # read-only or RAZ/WI
        elif kind == "icfgr":
            # ICFGR0 (SGIs, always edge) and ICFGR1 (PPIs) are read-only, as in Xen.
            first = self._first_irq(kind, reg)
            if first is None or first < NR_LOCAL_IRQS:
                return
            for i in range(16):
                self._set_cfg(first + i, (value >> (2 * i)) & 3)
        else:
            first = self._first_irq(kind, reg)
            if first is None:
                return
            for i in _bits(value):
                irq = first + i
                if kind == "isenabler":
                    self._set_enabled(vcpu, irq, True)
                elif kind == "icenabler":
                    self._set_enabled(vcpu, irq, False)
                elif kind == "ispendr":
                    if irq >= NR_SGIS:              # SGI bits are read-only
                        self._set_pending(vcpu, irq, True)
                elif kind == "icpendr":
                    if irq >= NR_SGIS:
                        self._set_pending(vcpu, irq, False)
                elif kind == "isactiver":
                    self._set_active(vcpu, irq, True)
                elif kind == "icactiver":
                    self._set_active(vcpu, irq, False)

    def _dist_read_byte(self, vcpu: int, kind: str, offset: int) -> int:
        if kind == "ipriorityr":
            irq = offset - GICD_IPRIORITYR
            return self._state(vcpu, irq).priority if irq < self.nr_irqs else 0
        if kind == "itargetsr":
            irq = offset - GICD_ITARGETSR
            if irq >= self.nr_irqs:
                return 0
            return 1 << (vcpu if irq < NR_LOCAL_IRQS else self._spis[irq - NR_LOCAL_IRQS].target)
        base = GICD_CPENDSGIR if kind == "cpendsgir" else GICD_SPENDSGIR
        return self._cpus[vcpu].local[offset - base].sources

    def _dist_write_byte(self, vcpu: int, kind: str, offset: int, value: int) -> None:
        if kind == "ipriorityr":
            irq = offset - GICD_IPRIORITYR
            if irq < self.nr_irqs:
                self._set_priority(vcpu, irq, value)
        elif kind == "itargetsr":
            irq = offset - GICD_ITARGETSR
            # SGI/PPI targets are read-only: they always name the accessing vCPU.
            if NR_LOCAL_IRQS <= irq < self.nr_irqs and not self._set_target(irq, value):
                self._log_once(("itargetsr", irq),
                               f"vgic: ITARGETSR write {value:#04x} names no vCPU for "
                               f"IRQ {irq}; ignored")
        else:
            sgi = offset - (GICD_CPENDSGIR if kind == "cpendsgir" else GICD_SPENDSGIR)
            self._set_sgi_sources(vcpu, sgi, value, on=(kind == "spendsgir"))

    def _write_sgir(self, vcpu: int, offset: int, value: int) -> None:
        sgi = value & 0xF
        filt = (value >> 24) & 3
        if filt == SGIR_FILTER_LIST:
            mask = (value >> 16) & 0xFF
            targets = [t for t in _bits(mask) if t < self.nr_vcpus]
            if len(targets) != len(_bits(mask)):
                self._log_once(("sgir-target", mask),
                               f"vgic: SGIR target list {mask:#04x} names absent vCPUs")
        elif filt == SGIR_FILTER_OTHERS:
            targets = [t for t in range(self.nr_vcpus) if t != vcpu]
        elif filt == SGIR_FILTER_SELF:
            targets = [vcpu]
        else:
            self._unhandled("GICD", offset, 4, True, why=" (reserved SGIR filter 3)")
            return
        with self._update():
            self._send_sgi(vcpu, sgi, targets)

    # ---- CPU interface ----------------------------------------------------------------

    def cpu_read(self, vcpu: int, offset: int, size: int) -> int:
        self._check_vcpu(vcpu)
        if not self._cpu_access_ok(offset, size, write=False):
            return 0
        with self._update():        # an IAR read changes state
            cpu = self._cpus[vcpu]
            if offset == GICC_CTLR:
                return cpu.ctlr
            if offset == GICC_PMR:
                return cpu.pmr
            if offset == GICC_BPR:
                return cpu.bpr
            if offset == GICC_ABPR:
                return cpu.abpr
            if offset == GICC_IAR:
                return self._acknowledge(vcpu)
            if offset == GICC_RPR:
                return cpu.running_priority
            if offset == GICC_HPPIR:
                best = self._best(vcpu, signal=False)
                return SPURIOUS_IRQ if best is None else self._iar_value(vcpu, best)
            if offset in (GICC_AIAR, GICC_AHPPIR):
                return SPURIOUS_IRQ     # no Group 1 interrupts exist
            if offset == GICC_APR0:
                value = 0
                for prio in cpu.active_prios:
                    value |= 1 << (prio >> (8 - PRIORITY_BITS))
                return value
            if offset == GICC_IIDR:
                return GICC_IIDR_VALUE
            return 0    # EOIR, AEOIR, DIR are write-only; APR1-3, NSAPRn RAZ

    def cpu_write(self, vcpu: int, offset: int, size: int, value: int) -> None:
        self._check_vcpu(vcpu)
        if not self._cpu_access_ok(offset, size, write=True):
            return
        value &= 0xFFFFFFFF
        with self._update():
            cpu = self._cpus[vcpu]
            if offset == GICC_CTLR:
                cpu.ctlr = value & CTLR_MASK
            elif offset == GICC_PMR:
                cpu.pmr = value & PRIORITY_MASK
            elif offset == GICC_BPR:
                cpu.bpr = max(value & 7, MIN_BPR)   # below the minimum reads as it
            elif offset == GICC_ABPR:
                cpu.abpr = max(value & 7, MIN_ABPR)
            elif offset == GICC_EOIR:
                self._end_of_interrupt(vcpu, value)
            elif offset == GICC_DIR:
                # With EOImode clear, DIR is UNPREDICTABLE: we ignore it.
                if cpu.ctlr & CTLR_EOIMODE:
                    self._deactivate(vcpu, value & 0x3FF)
            elif offset == GICC_APR0:
                # Save/restore of the active priorities: rebuild the stack.
                cpu.active_prios = sorted(
                    (b << (8 - PRIORITY_BITS) for b in _bits(value)), reverse=True)
            # RO registers, AEOIR (no Group 1), APR1-3 and NSAPRn: writes ignored.
            self._dirty.add(vcpu)

    def _cpu_access_ok(self, offset: int, size: int, *, write: bool) -> bool:
        if not 0 <= offset < GICC_SIZE:
            raise ValueError(f"GICC offset {offset:#x} outside the CPU interface")
        reg = offset & ~3
        if not (reg <= GICC_AHPPIR or GICC_APR0 <= reg <= GICC_NSAPR0 + 0xC
                or reg in (GICC_IIDR, GICC_DIR)):
            self._unhandled("GICC", offset, size, write)
            return False
        if not _size_ok(offset, size, byte_ok=False):
            self._unhandled("GICC", offset, size, write, bad_size=True)
            return False
        return True


def _size_ok(offset: int, size: int, byte_ok: bool) -> bool:
    if size == 4:
        return offset % 4 == 0
    return size == 1 and byte_ok
