"""The virtual GICv2 register model: distributor, CPU interface, injection API."""

from __future__ import annotations

import threading

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from xenpy.arch.arm.vgic import VgicAccessError
from xenpy.arch.arm.vgic_v2 import (
    GICC_ABPR, GICC_AEOIR, GICC_AHPPIR, GICC_AIAR, GICC_APR0, GICC_BPR, GICC_CTLR,
    GICC_DIR, GICC_EOIR, GICC_HPPIR, GICC_IAR, GICC_IIDR, GICC_PMR, GICC_RPR,
    GICD_CPENDSGIR, GICD_CTLR, GICD_ICACTIVER, GICD_ICENABLER, GICD_ICFGR,
    GICD_ICPENDR, GICD_IGROUPR, GICD_IIDR, GICD_IPRIORITYR, GICD_ISACTIVER,
    GICD_ISENABLER, GICD_ISPENDR, GICD_ITARGETSR, GICD_NSACR, GICD_SGIR,
    GICD_SPENDSGIR, GICD_TYPER, VGicV2,
)

SPURIOUS = 1023


class Gic:
    """A VGicV2 with recorded kicks and log lines, and register shorthands."""

    def __init__(self, nr_vcpus: int = 2, nr_spis: int = 32, strict: bool = False,
                 kick=None) -> None:
        self.kicks: list[int] = []
        self.logs: list[str] = []
        self.g = VGicV2(nr_vcpus, nr_spis, kick=kick or self.kicks.append,
                        log=self.logs.append, strict=strict)

    def dr(self, v: int, off: int, size: int = 4) -> int:
        return self.g.dist_read(v, off, size)

    def dw(self, v: int, off: int, value: int, size: int = 4) -> None:
        self.g.dist_write(v, off, size, value)

    def cr(self, v: int, off: int) -> int:
        return self.g.cpu_read(v, off, 4)

    def cw(self, v: int, off: int, value: int) -> None:
        self.g.cpu_write(v, off, 4, value)

    def up(self, pmr: int = 0xF8) -> "Gic":
        """Both interfaces on, nothing masked by PMR except the lowest priority."""
        self.dw(0, GICD_CTLR, 1)
        for v in range(self.g.nr_vcpus):
            self.cw(v, GICC_CTLR, 1)
            self.cw(v, GICC_PMR, pmr)
        return self

    def enable(self, v: int, irq: int) -> None:
        self.dw(v, GICD_ISENABLER + 4 * (irq // 32), 1 << (irq % 32))

    def prio(self, v: int, irq: int, p: int) -> None:
        self.dw(v, GICD_IPRIORITYR + irq, p, size=1)

    def iar(self, v: int) -> int:
        return self.cr(v, GICC_IAR)

    def eoi(self, v: int, value: int) -> None:
        self.cw(v, GICC_EOIR, value)


@pytest.fixture
def gic() -> Gic:
    return Gic().up()


# ---- construction and identification ------------------------------------------------

def test_construction_limits() -> None:
    with pytest.raises(ValueError):
        VGicV2(0)
    with pytest.raises(ValueError):
        VGicV2(9)
    with pytest.raises(ValueError):
        VGicV2(1, 989)
    assert VGicV2(1, 40).nr_spis == 64          # Xen rounds SPIs up to ranks of 32


def test_typer_iidr_ctlr() -> None:
    t = Gic(nr_vcpus=4, nr_spis=64)
    assert t.dr(0, GICD_TYPER) == (3 << 5) | 2
    assert Gic(1, 0).dr(0, GICD_TYPER) == 0
    assert t.dr(0, GICD_IIDR) == 0x43B
    t.dw(0, GICD_TYPER, 0xFFFF)
    t.dw(0, GICD_IIDR, 0xFFFF)
    assert t.dr(0, GICD_TYPER) == (3 << 5) | 2 and t.dr(0, GICD_IIDR) == 0x43B
    assert t.dr(0, GICD_CTLR) == 0
    t.dw(0, GICD_CTLR, 0xFF)                    # only the enable bit exists
    assert t.dr(1, GICD_CTLR) == 1
    assert t.logs == []


def test_igroupr_nsacr_raz_wi(gic: Gic) -> None:
    gic.dw(0, GICD_IGROUPR, 0xFFFFFFFF)
    gic.dw(0, GICD_NSACR + 8, 0xFFFFFFFF)
    assert gic.dr(0, GICD_IGROUPR) == 0 and gic.dr(0, GICD_NSACR + 8) == 0
    assert gic.logs == []


# ---- enable / pending / active ------------------------------------------------------

def test_enable_registers_and_banking(gic: Gic) -> None:
    gic.dw(0, GICD_ISENABLER, (1 << 27) | (1 << 3))
    assert gic.dr(0, GICD_ISENABLER) == (1 << 27) | (1 << 3)
    assert gic.dr(0, GICD_ICENABLER) == (1 << 27) | (1 << 3)
    assert gic.dr(1, GICD_ISENABLER) == 0       # SGIs/PPIs are banked
    gic.dw(1, GICD_ISENABLER + 4, 0x5)          # SPIs 32 and 34 are shared
    assert gic.dr(0, GICD_ISENABLER + 4) == 0x5
    gic.dw(0, GICD_ICENABLER + 4, 0x1)
    gic.dw(0, GICD_ICENABLER, 1 << 3)
    assert gic.dr(1, GICD_ISENABLER + 4) == 0x4
    assert gic.dr(0, GICD_ISENABLER) == 1 << 27
    assert gic.g.is_enabled(0, 27) and not gic.g.is_enabled(1, 27)


def test_registers_past_nr_spis_are_raz_wi(gic: Gic) -> None:
    gic.dw(0, GICD_ISENABLER + 8, 0xFFFFFFFF)   # INTIDs 64..95 do not exist
    gic.dw(0, GICD_IPRIORITYR + 64, 0xFFFFFFFF)
    gic.dw(0, GICD_ITARGETSR + 64, 0x02020202)
    assert gic.dr(0, GICD_ISENABLER + 8) == 0
    assert gic.dr(0, GICD_IPRIORITYR + 64) == 0
    assert gic.dr(0, GICD_ITARGETSR + 64) == 0
    assert gic.dr(0, GICD_ICFGR + 16) == 0
    assert gic.logs == []


def test_pending_registers(gic: Gic) -> None:
    gic.dw(0, GICD_ISPENDR + 4, 0x3)            # SPIs 32, 33
    gic.dw(0, GICD_ISPENDR, (1 << 1) | (1 << 20))   # SGI bits are read-only
    assert gic.dr(1, GICD_ISPENDR + 4) == 0x3
    assert gic.dr(0, GICD_ICPENDR) == 1 << 20
    assert gic.dr(1, GICD_ISPENDR) == 0
    gic.dw(0, GICD_ICPENDR + 4, 0x1)
    assert gic.dr(0, GICD_ISPENDR + 4) == 0x2
    # SGIs pend through SGIR and read back in ISPENDR0; ICPENDR0 cannot clear them.
    gic.dw(1, GICD_SGIR, (2 << 24) | 5)
    gic.dw(1, GICD_ICPENDR, 1 << 5)
    assert gic.dr(1, GICD_ISPENDR) == 1 << 5


def test_icpendr_cannot_clear_an_asserted_level_line(gic: Gic) -> None:
    gic.g.set_level(0, 40, True)                # SPIs reset level-sensitive
    gic.dw(0, GICD_ICPENDR + 4, 1 << 8)
    assert gic.g.is_pending(0, 40)
    gic.g.set_level(0, 40, False)
    assert not gic.g.is_pending(0, 40)


def test_active_registers(gic: Gic) -> None:
    gic.dw(0, GICD_ISACTIVER, 1 << 27)
    gic.dw(0, GICD_ISACTIVER + 4, 1 << 1)
    assert gic.dr(0, GICD_ISACTIVER) == 1 << 27
    assert gic.dr(1, GICD_ICACTIVER) == 0
    assert gic.dr(1, GICD_ISACTIVER + 4) == 2
    assert gic.g.is_active(0, 27) and gic.g.is_active(1, 33)
    gic.dw(1, GICD_ICACTIVER + 4, 1 << 1)
    gic.dw(0, GICD_ICACTIVER, 1 << 27)
    assert gic.dr(0, GICD_ISACTIVER) == 0 and gic.dr(0, GICD_ISACTIVER + 4) == 0


def test_active_interrupt_not_signalled(gic: Gic) -> None:
    gic.enable(0, 33)
    gic.dw(0, GICD_ISACTIVER + 4, 1 << 1)
    gic.g.raise_irq(0, 33)
    assert gic.iar(0) == SPURIOUS
    gic.dw(0, GICD_ICACTIVER + 4, 1 << 1)
    assert gic.iar(0) == 33


# ---- priority, targets, configuration -----------------------------------------------

def test_ipriorityr_byte_and_word(gic: Gic) -> None:
    gic.dw(0, GICD_IPRIORITYR + 32, 0x44332211)
    assert gic.dr(1, GICD_IPRIORITYR + 33, size=1) == 0x22
    gic.dw(1, GICD_IPRIORITYR + 34, 0xFF, size=1)
    assert gic.dr(0, GICD_IPRIORITYR + 32) == 0x44FF2211   # all 8 bits read back, as Xen
    gic.dw(0, GICD_IPRIORITYR + 24, 0xA0A0A0A0)            # PPIs 24..27 are banked
    assert gic.dr(0, GICD_IPRIORITYR + 27, size=1) == 0xA0
    assert gic.dr(1, GICD_IPRIORITYR + 24) == 0


def test_priority_uses_top_five_bits(gic: Gic) -> None:
    for irq, p in ((33, 0x0F), (32, 0x08), (34, 0x10)):
        gic.enable(0, irq)
        gic.prio(0, irq, p)
        gic.g.raise_irq(0, irq)
    # 0x0F and 0x08 are the same 5-bit priority: the lower INTID wins the tie.
    assert [gic.iar(0) for _ in range(1)] == [32]
    gic.eoi(0, 32)
    assert gic.iar(0) == 33


def test_itargetsr(gic: Gic) -> None:
    assert gic.dr(0, GICD_ITARGETSR) == 0x01010101
    assert gic.dr(1, GICD_ITARGETSR + 28) == 0x02020202
    assert gic.dr(1, GICD_ITARGETSR + 31, size=1) == 0x02
    gic.dw(0, GICD_ITARGETSR + 28, 0x02020202)             # SGI/PPI targets are RO
    gic.dw(0, GICD_ITARGETSR + 3, 0x02, size=1)
    assert gic.dr(0, GICD_ITARGETSR) == 0x01010101
    assert gic.dr(0, GICD_ITARGETSR + 32) == 0x01010101     # SPIs reset to vCPU 0
    gic.dw(0, GICD_ITARGETSR + 32, 0x03020101)              # first target of a list wins
    assert gic.dr(1, GICD_ITARGETSR + 32) == 0x01020101
    gic.dw(0, GICD_ITARGETSR + 33, 0x04, size=1)            # vCPU 2 does not exist
    gic.dw(0, GICD_ITARGETSR + 33, 0x00, size=1)
    assert gic.dr(0, GICD_ITARGETSR + 33, size=1) == 0x01
    assert len(gic.logs) == 1 and "names no vCPU" in gic.logs[0]
    gic.dw(0, GICD_ITARGETSR + 32, 0x02, size=1)
    assert gic.dr(0, GICD_ITARGETSR + 32) == 0x01020102


def test_spi_routing_follows_itargetsr(gic: Gic) -> None:
    gic.enable(0, 40)
    gic.g.raise_irq(0, 40)                      # the vcpu argument is ignored for SPIs
    assert gic.g.has_deliverable(0) and not gic.g.has_deliverable(1)
    gic.kicks.clear()
    gic.dw(0, GICD_ITARGETSR + 40, 0x02, size=1)
    assert not gic.g.has_deliverable(0) and gic.g.has_deliverable(1)
    assert gic.kicks == [1]
    assert gic.iar(0) == SPURIOUS and gic.iar(1) == 40


def test_icfgr(gic: Gic) -> None:
    assert gic.dr(0, GICD_ICFGR) == 0xAAAAAAAA  # SGIs: edge, read-only
    assert gic.dr(0, GICD_ICFGR + 4) == 0       # PPIs: level, read-only (as Xen)
    gic.dw(0, GICD_ICFGR, 0)
    gic.dw(0, GICD_ICFGR + 4, 0xFFFFFFFF)
    assert gic.dr(0, GICD_ICFGR) == 0xAAAAAAAA and gic.dr(1, GICD_ICFGR + 4) == 0
    gic.dw(0, GICD_ICFGR + 8, 0x80000002)       # SPIs 32 and 47 edge
    assert gic.dr(1, GICD_ICFGR + 8) == 0x80000002
    gic.g.set_level(0, 32, True)
    gic.g.set_level(0, 32, False)
    assert gic.g.is_pending(0, 32)              # an edge latches


# ---- SGIs ---------------------------------------------------------------------------

def sgir(filt: int, targets: int, sgi: int) -> int:
    return (filt << 24) | (targets << 16) | sgi


def test_sgir_filters_and_source_in_iar() -> None:
    t = Gic(nr_vcpus=4).up()
    for v in range(4):
        t.dw(v, GICD_ISENABLER, 0xFFFF)
    t.dw(2, GICD_SGIR, sgir(0, 0b1010, 3))      # list: vCPUs 1 and 3
    assert [t.g.has_deliverable(v) for v in range(4)] == [False, True, False, True]
    assert t.iar(1) == 3 | (2 << 10) and t.iar(3) == 3 | (2 << 10)
    t.eoi(1, 3 | (2 << 10))
    t.eoi(3, 3 | (2 << 10))
    t.dw(1, GICD_SGIR, sgir(1, 0xFF, 4))        # all but self; the list is ignored
    assert [t.g.has_deliverable(v) for v in range(4)] == [True, False, True, True]
    t.dw(3, GICD_SGIR, sgir(2, 0, 5))           # self only
    assert t.dr(3, GICD_ISPENDR) == (1 << 4) | (1 << 5)
    assert t.iar(3) == 4 | (1 << 10)
    assert t.iar(3) == SPURIOUS                 # running priority 0 blocks SGI 5
    t.eoi(3, 4 | (1 << 10))
    assert t.iar(3) == 5 | (3 << 10)
    assert t.dr(0, GICD_SGIR) == 0              # write-only


def test_sgi_pending_per_source() -> None:
    t = Gic(nr_vcpus=3).up()
    t.dw(2, GICD_ISENABLER, 1 << 7)
    t.dw(1, GICD_SGIR, sgir(0, 0b100, 7))
    t.dw(0, GICD_SGIR, sgir(0, 0b100, 7))
    assert t.dr(2, GICD_SPENDSGIR + 4) == 0b011 << 24
    assert t.iar(2) == 7 | (0 << 10)            # lowest source first
    assert t.iar(2) == SPURIOUS                 # active and still pending from vCPU 1
    assert t.dr(2, GICD_ISPENDR) == 1 << 7 and t.dr(2, GICD_ISACTIVER) == 1 << 7
    t.eoi(2, 7)
    assert t.iar(2) == 7 | (1 << 10)
    t.eoi(2, 7 | (1 << 10))
    assert t.iar(2) == SPURIOUS and not t.g.is_pending(2, 7)


def test_sgir_bad_targets_and_reserved_filter() -> None:
    t = Gic(nr_vcpus=2).up()
    t.dw(0, GICD_SGIR, sgir(0, 0b110, 1))       # vCPU 2 does not exist
    assert t.dr(1, GICD_ISPENDR) == 1 << 1
    assert len(t.logs) == 1 and "absent" in t.logs[0]
    t.dw(0, GICD_SGIR, sgir(3, 0, 1))
    t.dw(0, GICD_SGIR, sgir(3, 0, 2))
    assert t.logs[1:] == ["vgic: unhandled write to GICD+0xf00 (reserved SGIR filter 3)"]
    s = Gic(strict=True)
    with pytest.raises(VgicAccessError):
        s.dw(0, GICD_SGIR, sgir(3, 0, 1))


def test_cpendsgir_spendsgir() -> None:
    t = Gic(nr_vcpus=4).up()
    t.dw(1, GICD_SPENDSGIR, 0b1001 << 16, size=4)       # SGI 2 from vCPUs 0 and 3
    t.dw(1, GICD_SPENDSGIR + 15, 0xF4, size=1)          # SGI 15 from vCPU 2 (bits > 3 ignored)
    assert t.dr(1, GICD_SPENDSGIR) == 0b1001 << 16
    assert t.dr(1, GICD_CPENDSGIR + 15, size=1) == 0b0100
    assert t.dr(0, GICD_SPENDSGIR) == 0                  # banked per target
    t.dw(1, GICD_ISENABLER, 1 << 2)
    assert t.iar(1) == 2
    t.dw(1, GICD_CPENDSGIR + 2, 0b1000, size=1)
    t.eoi(1, 2)
    assert t.iar(1) == SPURIOUS and t.dr(1, GICD_SPENDSGIR + 12) == 0b0100 << 24


# ---- CPU interface -------------------------------------------------------------------

def test_cpu_interface_registers() -> None:
    t = Gic()
    t.cw(0, GICC_CTLR, 0xFFFFFFFF)
    assert t.cr(0, GICC_CTLR) == 0x21F and t.cr(1, GICC_CTLR) == 0
    t.cw(0, GICC_PMR, 0xFF)
    assert t.cr(0, GICC_PMR) == 0xF8            # 5 priority bits: low bits RAZ
    assert t.cr(0, GICC_BPR) == 2
    t.cw(0, GICC_BPR, 0)
    assert t.cr(0, GICC_BPR) == 2               # below the minimum reads the minimum
    t.cw(0, GICC_BPR, 5)
    assert t.cr(0, GICC_BPR) == 5
    t.cw(0, GICC_ABPR, 1)
    assert t.cr(0, GICC_ABPR) == 3
    assert t.cr(0, GICC_IIDR) == 0x0202143B
    assert t.cr(0, GICC_RPR) == 0xFF
    assert t.cr(0, GICC_AIAR) == SPURIOUS and t.cr(0, GICC_AHPPIR) == SPURIOUS
    t.cw(0, GICC_AEOIR, 5)
    t.cw(0, GICC_IAR, 5)                        # read-only: ignored
    assert t.cr(0, GICC_EOIR) == 0 and t.cr(0, GICC_DIR) == 0
    assert t.logs == []


def test_spurious_when_nothing_or_disabled() -> None:
    t = Gic()
    t.enable(0, 31)
    t.g.raise_irq(0, 31)
    assert t.iar(0) == SPURIOUS and t.g.highest_pending(0) is None   # all off
    t.dw(0, GICD_CTLR, 1)
    t.cw(0, GICC_PMR, 0xF8)
    assert t.iar(0) == SPURIOUS and not t.g.has_deliverable(0)       # GICC off
    t.cw(0, GICC_CTLR, 1)
    assert t.g.highest_pending(0) == 31 and t.g.has_deliverable(0)
    t.dw(0, GICD_CTLR, 0)
    assert t.g.highest_pending(0) is None and not t.g.has_deliverable(0)
    assert t.cr(0, GICC_HPPIR) == SPURIOUS
    t.dw(0, GICD_CTLR, 1)
    t.dw(0, GICD_ICENABLER, 1 << 31)
    assert t.iar(0) == SPURIOUS                 # pending but disabled
    t.enable(0, 31)
    assert t.iar(0) == 31 and t.iar(0) == SPURIOUS


def test_pmr_masking(gic: Gic) -> None:
    gic.enable(0, 27)
    gic.prio(0, 27, 0xA0)
    gic.cw(0, GICC_PMR, 0xA0)
    gic.g.raise_irq(0, 27)
    assert gic.iar(0) == SPURIOUS and not gic.g.has_deliverable(0)
    assert gic.cr(0, GICC_HPPIR) == 27          # HPPIR ignores the mask
    gic.kicks.clear()
    gic.cw(0, GICC_PMR, 0xA8)
    assert gic.kicks == [0]
    assert gic.g.highest_pending(0) == 27 and gic.iar(0) == 27


def test_lowest_priority_never_signalled(gic: Gic) -> None:
    gic.enable(0, 27)
    gic.prio(0, 27, 0xFF)                       # 0xF8 after masking == max PMR
    gic.g.raise_irq(0, 27)
    assert gic.iar(0) == SPURIOUS


def test_running_priority_and_preemption(gic: Gic) -> None:
    for irq, p in ((32, 0x80), (33, 0x80), (34, 0x78), (35, 0x40)):
        gic.enable(0, irq)
        gic.prio(0, irq, p)
    gic.g.raise_irq(0, 32)
    assert gic.iar(0) == 32 and gic.cr(0, GICC_RPR) == 0x80
    gic.g.raise_irq(0, 33)                      # same priority: no preemption
    assert gic.iar(0) == SPURIOUS and gic.cr(0, GICC_HPPIR) == 33
    gic.g.raise_irq(0, 34)                      # higher: preempts
    assert gic.iar(0) == 34 and gic.cr(0, GICC_RPR) == 0x78
    assert gic.cr(0, GICC_APR0) == (1 << (0x80 >> 3)) | (1 << (0x78 >> 3))
    gic.eoi(0, 34)
    assert gic.cr(0, GICC_RPR) == 0x80
    gic.eoi(0, 32)
    assert gic.cr(0, GICC_RPR) == 0xFF and gic.iar(0) == 33


def test_binary_point_groups_priorities(gic: Gic) -> None:
    gic.cw(0, GICC_BPR, 4)                      # group priority = bits [7:5]
    for irq, p in ((32, 0xA8), (33, 0x90), (34, 0xB8), (35, 0x70)):
        gic.enable(0, irq)
        gic.prio(0, irq, p)
    gic.g.raise_irq(0, 32)
    assert gic.iar(0) == 32
    assert gic.cr(0, GICC_RPR) == 0xA0          # the group priority is running
    gic.g.raise_irq(0, 34)                      # same group 0xA0: masked
    assert gic.iar(0) == SPURIOUS
    gic.g.raise_irq(0, 33)                      # group 0x80 preempts 0xA0
    assert gic.iar(0) == 33
    gic.g.raise_irq(0, 35)
    assert gic.iar(0) == 35
    for irq in (35, 33, 32):
        gic.eoi(0, irq)
    assert gic.iar(0) == 34


def test_eoimode_split_priority_drop_and_deactivate(gic: Gic) -> None:
    gic.cw(0, GICC_CTLR, 1 | (1 << 9))
    gic.enable(0, 27)
    gic.enable(0, 31)
    gic.prio(0, 31, 0x80)
    gic.g.raise_irq(0, 27)
    assert gic.iar(0) == 27
    gic.eoi(0, 27)
    assert gic.cr(0, GICC_RPR) == 0xFF and gic.g.is_active(0, 27)
    gic.g.raise_irq(0, 27)
    gic.g.raise_irq(0, 31)
    assert gic.iar(0) == 31                     # 27 is still active: not signalled
    gic.eoi(0, 31)
    gic.cw(0, GICC_DIR, 27)
    assert not gic.g.is_active(0, 27) and gic.iar(0) == 27
    gic.cw(0, GICC_CTLR, 1)                     # EOImode 0: DIR does nothing
    gic.cw(0, GICC_DIR, 27)
    assert gic.g.is_active(0, 27)
    gic.eoi(0, 27)
    assert not gic.g.is_active(0, 27)


def test_eoi_of_spurious_and_without_active_is_harmless(gic: Gic) -> None:
    gic.eoi(0, SPURIOUS)
    gic.eoi(0, 40)
    assert gic.cr(0, GICC_RPR) == 0xFF
    gic.enable(0, 40)
    gic.g.raise_irq(0, 40)
    assert gic.iar(0) == 40
    gic.eoi(0, SPURIOUS)                        # no priority drop for 1023
    assert gic.cr(0, GICC_RPR) == 0


def test_apr_restore(gic: Gic) -> None:
    gic.cw(0, GICC_APR0, (1 << 16) | (1 << 4))
    assert gic.cr(0, GICC_RPR) == 0x20
    gic.eoi(0, 5)
    assert gic.cr(0, GICC_RPR) == 0x80
    gic.cw(0, GICC_APR0, 0)
    assert gic.cr(0, GICC_RPR) == 0xFF


# ---- edge and level ---------------------------------------------------------------------

def test_level_interrupt_stays_pending_while_asserted(gic: Gic) -> None:
    gic.enable(0, 40)
    gic.g.set_level(0, 40, True)
    assert gic.iar(0) == 40
    assert gic.g.is_pending(0, 40) and gic.g.is_active(0, 40)
    assert gic.iar(0) == SPURIOUS               # active-and-pending is not signalled
    gic.kicks.clear()
    gic.eoi(0, 40)
    assert gic.kicks == [0]                     # still asserted: signalled again
    assert gic.iar(0) == 40
    gic.g.set_level(0, 40, False)               # the handler quiets the device
    gic.eoi(0, 40)
    assert not gic.g.is_pending(0, 40) and gic.iar(0) == SPURIOUS


def test_edge_interrupt(gic: Gic) -> None:
    gic.dw(0, GICD_ICFGR + 8, 2 << 16)          # SPI 40 edge-triggered
    gic.enable(0, 40)
    gic.g.set_level(0, 40, True)
    gic.g.set_level(0, 40, False)
    gic.g.set_level(0, 40, True)                # two edges, one pending state
    assert gic.iar(0) == 40
    assert not gic.g.is_pending(0, 40) and gic.g.is_active(0, 40)
    gic.g.set_level(0, 40, True)                # no new edge while high
    gic.eoi(0, 40)
    assert gic.iar(0) == SPURIOUS


def test_event_channel_ppi_injected_as_edge(gic: Gic) -> None:
    assert gic.dr(0, GICD_ICFGR + 4) == 0       # configured level, as Xen reports
    gic.enable(1, 31)
    gic.g.raise_irq(1, 31)
    assert not gic.g.has_deliverable(0) and gic.g.has_deliverable(1)
    assert gic.iar(1) == 31
    assert not gic.g.is_pending(1, 31)          # the injection latch is consumed
    gic.g.raise_irq(1, 31)                      # a new upcall while handling
    assert gic.iar(1) == SPURIOUS
    gic.eoi(1, 31)
    assert gic.iar(1) == 31


def test_set_level_rejects_sgi_and_bad_ids(gic: Gic) -> None:
    with pytest.raises(ValueError):
        gic.g.set_level(0, 3, True)
    with pytest.raises(ValueError):
        gic.g.raise_irq(0, 64)
    with pytest.raises(ValueError):
        gic.g.raise_irq(2, 27)


# ---- kicks --------------------------------------------------------------------------------

def test_kick_on_becoming_deliverable_only(gic: Gic) -> None:
    gic.g.raise_irq(0, 33)                      # disabled: no kick
    assert gic.kicks == []
    gic.enable(1, 33)                           # enabled from vCPU 1, targets vCPU 0
    assert gic.kicks == [0]
    gic.g.raise_irq(0, 34)
    gic.enable(0, 34)
    assert gic.kicks == [0]                     # already deliverable: no new kick
    gic.dw(0, GICD_SGIR, sgir(0, 0b10, 0))      # SGI to vCPU 1, disabled
    gic.dw(1, GICD_ISENABLER, 1)
    assert gic.kicks == [0, 1]


def test_kick_is_called_outside_the_lock() -> None:
    seen: list[int | None] = []
    box: list[VGicV2] = []
    t = Gic(kick=lambda v: seen.append(box[0].highest_pending(v)))
    box.append(t.g)
    t.up()
    t.enable(0, 27)
    t.g.raise_irq(0, 27)                        # would deadlock if called under the lock
    assert seen == [27]


def test_concurrent_injection_and_acknowledge() -> None:
    t = Gic(nr_vcpus=2).up()
    t.dw(0, GICD_ISENABLER + 4, 0xFFFFFFFF)
    t.dw(0, GICD_ITARGETSR + 48, 0x02020202)    # SPIs 48..51 to vCPU 1
    got: dict[int, list[int]] = {0: [], 1: []}

    def cpu(v: int) -> None:
        for _ in range(400):
            irq = t.iar(v)
            if irq != SPURIOUS:
                got[v].append(irq)
                t.eoi(v, irq)

    def device() -> None:
        for i in range(200):
            t.g.raise_irq(0, 32 + (i % 4))
            t.g.raise_irq(0, 48 + (i % 4))

    threads = [threading.Thread(target=f, args=a) for f, a in
               ((cpu, (0,)), (cpu, (1,)), (device, ()))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for v in (0, 1):
        while (irq := t.iar(v)) != SPURIOUS:
            got[v].append(irq)
            t.eoi(v, irq)
    assert set(got[0]) <= {32, 33, 34, 35} and set(got[1]) <= {48, 49, 50, 51}
    assert len(got[0]) >= 4 and len(got[1]) >= 4
    assert t.cr(0, GICC_RPR) == 0xFF and t.cr(1, GICC_RPR) == 0xFF


# ---- unhandled and bad accesses -------------------------------------------------------------

def test_unhandled_logged_once() -> None:
    t = Gic()
    assert t.dr(0, 0xFE8) == 0                  # ICPIDR2: Xen faults it
    assert t.dr(1, 0xFE8) == 0
    t.cw(0, 0x40, 1)
    t.cw(0, 0x40, 2)
    assert t.cr(0, 0x40) == 0
    assert t.logs == [
        "vgic: unhandled read of GICD+0xfe8",
        "vgic: unhandled write to GICC+0x040",
        "vgic: unhandled read of GICC+0x040",
    ]


def test_bad_widths() -> None:
    t = Gic()
    assert t.dr(0, GICD_ISENABLER, size=1) == 0     # word-only register
    t.dw(0, GICD_CTLR, 1, size=2)
    t.dw(0, GICD_IPRIORITYR + 2, 0xFFFF, size=2)    # byte or word, never halfword
    t.dw(0, GICD_IPRIORITYR + 2, 0xFFFF, size=2)    # logged once per offset
    t.dw(0, GICD_IPRIORITYR + 6, 0xFFFFFFFF)        # misaligned word
    assert t.dr(0, GICD_CTLR) == 0 and t.dr(0, GICD_IPRIORITYR) == 0
    assert t.cr(0, GICC_PMR) == 0
    t.g.cpu_write(0, GICC_PMR, 1, 0xFF)
    assert t.cr(0, GICC_PMR) == 0
    assert t.logs == [
        "vgic: unhandled read of GICD+0x100 (bad size 1)",
        "vgic: unhandled write to GICD+0x000 (bad size 2)",
        "vgic: unhandled write to GICD+0x402 (bad size 2)",
        "vgic: unhandled write to GICD+0x406 (bad size 4)",
        "vgic: unhandled write to GICC+0x004 (bad size 1)",
    ]


def test_reserved_ranges_raz_wi_never_fault() -> None:
    t = Gic(strict=True)
    assert t.dr(0, 0x00C) == 0 and t.dr(0, 0xD00) == 0 and t.dr(0, 0xFD0) == 0
    t.dw(0, 0x7FC, 1)
    t.dw(0, 0x7FC, 1)
    assert len(t.logs) == 4 and "reserved GICD+0x7fc" in t.logs[-1]


def test_strict_mode_raises() -> None:
    t = Gic(strict=True)
    with pytest.raises(VgicAccessError) as e:
        t.dr(0, 0xFE8)
    assert (e.value.base, e.value.offset, e.value.size, e.value.write) == ("gicd", 0xFE8, 4, False)
    with pytest.raises(VgicAccessError):
        t.dw(0, GICD_ISENABLER, 1, size=1)
    with pytest.raises(VgicAccessError) as e:
        t.cw(1, 0x800, 0)
    assert e.value.base == "gicc" and e.value.write
    assert t.logs == []


def test_offsets_outside_the_regions_are_caller_errors(gic: Gic) -> None:
    with pytest.raises(ValueError):
        gic.dr(0, 0x1000)
    with pytest.raises(ValueError):
        gic.cr(0, 0x2000)
    with pytest.raises(ValueError):
        gic.dr(5, 0)


# ---- property: random operation sequences ------------------------------------------------------

IRQS = [0, 1, 27, 31, 32, 33, 40]
VCPUS = 2


class VGicMachine(RuleBasedStateMachine):
    """Random raise/ack/eoi/enable/disable/pmr/priority/target sequences.

    After every step the cached deliverability flag matches the full computation; every
    IAR result was pending, enabled, inactive, unmasked, above the running priority and
    the best such candidate; and IAR returns 1023 only when no candidate exists."""

    def __init__(self) -> None:
        super().__init__()
        self.t = Gic(nr_vcpus=VCPUS, nr_spis=32).up()   # rules turn things off again
        for v in range(VCPUS):
            for k, irq in enumerate(IRQS):
                self.t.enable(v, irq)
                self.t.prio(v, irq, 0xB0 - 0x18 * k)   # distinct, so acks can nest
        self.acked: list[list[int]] = [[] for _ in range(VCPUS)]
        self.was_deliverable = [False] * VCPUS
        self.dropped: list[list[int]] = [[] for _ in range(VCPUS)]   # EOImode: await DIR

    def candidates(self, v: int) -> list[tuple[int, int, int]]:
        """(priority, INTID, source) of everything GICC_IAR may return, from registers."""
        t = self.t
        if not (t.dr(v, GICD_CTLR) & 1 and t.cr(v, GICC_CTLR) & 1):
            return []
        pmr, rpr, bpr = t.cr(v, GICC_PMR), t.cr(v, GICC_RPR), t.cr(v, GICC_BPR)
        out = []
        for word in (0, 4):
            ready = (t.dr(v, GICD_ISENABLER + word) & t.dr(v, GICD_ISPENDR + word)
                     & ~t.dr(v, GICD_ISACTIVER + word))
            for irq in (8 * word + i for i in range(32) if ready >> i & 1):
                if not t.dr(v, GICD_ITARGETSR + irq, size=1) & (1 << v):
                    continue
                p = t.dr(v, GICD_IPRIORITYR + irq, size=1) & 0xF8
                if p < pmr and (p & (0xFF << (bpr + 1)) & 0xFF) < rpr:
                    srcs = t.dr(v, GICD_SPENDSGIR + irq, size=1) if irq < 16 else 1
                    out.append((p, irq, (srcs & -srcs).bit_length() - 1 if irq < 16 else 0))
        return out

    @rule(v=st.integers(0, VCPUS - 1), irq=st.sampled_from(IRQS),
          src=st.integers(0, VCPUS - 1))
    def raise_irq(self, v: int, irq: int, src: int) -> None:
        self.t.g.raise_irq(v, irq, source=src)

    @rule(v=st.integers(0, VCPUS - 1), irq=st.sampled_from([27, 31, 32, 40]),
          level=st.booleans())
    def set_level(self, v: int, irq: int, level: bool) -> None:
        self.t.g.set_level(v, irq, level)

    @rule(v=st.integers(0, VCPUS - 1), irq=st.sampled_from(IRQS), on=st.booleans())
    def enable(self, v: int, irq: int, on: bool) -> None:
        reg = GICD_ISENABLER if on else GICD_ICENABLER
        self.t.dw(v, reg + 4 * (irq // 32), 1 << (irq % 32))

    @rule(v=st.integers(0, VCPUS - 1), pmr=st.integers(0, 255))
    def pmr(self, v: int, pmr: int) -> None:
        self.t.cw(v, GICC_PMR, pmr)

    @rule(v=st.integers(0, VCPUS - 1), bpr=st.integers(0, 7))
    def bpr(self, v: int, bpr: int) -> None:
        self.t.cw(v, GICC_BPR, bpr)

    @rule(v=st.integers(0, VCPUS - 1), ctlr=st.sampled_from([0, 1, 1, 1, 0x201]))
    def cpu_ctlr(self, v: int, ctlr: int) -> None:
        self.t.cw(v, GICC_CTLR, ctlr)

    @rule(on=st.sampled_from([0, 1, 1, 1]))
    def dist_ctlr(self, on: int) -> None:
        self.t.dw(0, GICD_CTLR, on)

    @rule(v=st.integers(0, VCPUS - 1), irq=st.sampled_from(IRQS), p=st.integers(0, 255))
    def priority(self, v: int, irq: int, p: int) -> None:
        self.t.prio(v, irq, p)

    @rule(irq=st.sampled_from([32, 33, 40]), dest=st.integers(0, 3))
    def route(self, irq: int, dest: int) -> None:
        self.t.dw(0, GICD_ITARGETSR + irq, 1 << dest, size=1)

    @rule(v=st.integers(0, VCPUS - 1), tlist=st.integers(0, 3), filt=st.integers(0, 2),
          sgi=st.sampled_from([0, 1]))
    def send_sgi(self, v: int, tlist: int, filt: int, sgi: int) -> None:
        self.t.dw(v, GICD_SGIR, sgir(filt, tlist, sgi))

    @rule(v=st.integers(0, VCPUS - 1))
    def ack(self, v: int) -> None:
        cands = self.candidates(v)
        predicted = self.t.g.highest_pending(v)
        value = self.t.iar(v)
        assert value == (SPURIOUS if predicted is None else predicted)
        if not cands:
            assert value == SPURIOUS
            return
        p, irq, src = min(cands)
        assert value == irq | (src << 10)
        assert self.t.g.is_active(v, irq)
        self.acked[v].append(value)

    @precondition(lambda self: any(self.acked))
    @rule(v=st.integers(0, VCPUS - 1))
    def eoi(self, v: int) -> None:
        if self.acked[v]:
            value = self.acked[v].pop()
            self.t.eoi(v, value)
            if self.t.cr(v, GICC_CTLR) & (1 << 9):
                self.dropped[v].append(value)

    @precondition(lambda self: any(self.dropped))
    @rule(v=st.integers(0, VCPUS - 1))
    def deactivate(self, v: int) -> None:
        if self.dropped[v]:
            self.t.cw(v, GICC_DIR, self.dropped[v].pop(0))

    @rule(v=st.integers(0, VCPUS - 1), irq=st.sampled_from(IRQS), on=st.booleans())
    def active(self, v: int, irq: int, on: bool) -> None:
        reg = GICD_ISACTIVER if on else GICD_ICACTIVER
        self.t.dw(v, reg + 4 * (irq // 32), 1 << (irq % 32))

    @invariant()
    def cache_matches(self) -> None:
        for v in range(VCPUS):
            assert self.t.g.has_deliverable(v) == (self.t.g.highest_pending(v) is not None)
            assert self.t.g.has_deliverable(v) == bool(self.candidates(v))

    @invariant()
    def kicked_on_becoming_deliverable(self) -> None:
        for v in range(VCPUS):
            now = self.t.g.has_deliverable(v)
            if now and not self.was_deliverable[v]:
                assert v in self.t.kicks
            self.was_deliverable[v] = now
        self.t.kicks.clear()

    @invariant()
    def quiet(self) -> None:
        assert all("unhandled" not in line for line in self.t.logs)


TestVGicMachine = VGicMachine.TestCase
TestVGicMachine.settings = settings(max_examples=40, stateful_step_count=40, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])
