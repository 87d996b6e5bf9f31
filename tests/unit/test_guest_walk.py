"""Stage-1 walks of hand-built guest page tables, checked against the ARM ARM.

Guest RAM is a sparse model at 0x80000000 (64 MiB): reads outside it return None,
as the domain's memory accessor does for addresses it does not back.
"""
from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings, strategies as st

from xenpy.arch.arm.guest_walk import (
    GuestFault, Stage1Regs, WalkCache, gva_to_ipa, translate_range,
    SCTLR_AFE, SCTLR_EE, SCTLR_M, SCTLR_WXN, TTBCR_EAE, TTBCR_EPD1, TTBCR_PD1,
)

RAM_BASE = 0x80000000
RAM_SIZE = 64 << 20


class Ram:
    def __init__(self, base: int = RAM_BASE, size: int = RAM_SIZE) -> None:
        self.base, self.size = base, size
        self.pages: dict[int, bytearray] = {}
        self.reads = 0

    def _page(self, pa: int) -> bytearray:
        return self.pages.setdefault(pa >> 12, bytearray(4096))

    def write(self, pa: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self._page(pa + i)[(pa + i) & 0xFFF] = b

    def w32(self, pa: int, value: int, big: bool = False) -> None:
        self.write(pa, value.to_bytes(4, "big" if big else "little"))

    def w64(self, pa: int, value: int) -> None:
        self.write(pa, value.to_bytes(8, "little"))

    def read(self, pa: int, size: int) -> bytes | None:
        self.reads += 1
        if pa < self.base or pa + size > self.base + self.size:
            return None
        return bytes(self.pages.get((pa + i) >> 12, bytes(4096))[(pa + i) & 0xFFF]
                     for i in range(size))


# ---- short-descriptor builders (ARM ARM B3.5.1) ----

def section(pa: int, *, ap: int = 0b011, domain: int = 0, xn: bool = False,
            pxn: bool = False) -> int:
    return ((pa & 0xFFF00000) | ((ap >> 2) << 15) | ((ap & 3) << 10) | (domain << 5)
            | (int(xn) << 4) | 0b10 | int(pxn))


def supersection(pa: int, *, ap: int = 0b011, xn: bool = False) -> int:
    return ((pa & 0xFF000000) | (((pa >> 32) & 0xF) << 20) | (((pa >> 36) & 0xF) << 5)
            | (1 << 18) | ((ap >> 2) << 15) | ((ap & 3) << 10) | (int(xn) << 4) | 0b10)


def page_table(l2_pa: int, *, domain: int = 0, pxn: bool = False) -> int:
    return (l2_pa & 0xFFFFFC00) | (domain << 5) | (int(pxn) << 2) | 0b01


def small_page(pa: int, *, ap: int = 0b011, xn: bool = False) -> int:
    return (pa & 0xFFFFF000) | ((ap >> 2) << 9) | ((ap & 3) << 4) | 0b10 | int(xn)


def large_page(pa: int, *, ap: int = 0b011, xn: bool = False) -> int:
    return (pa & 0xFFFF0000) | (int(xn) << 15) | ((ap >> 2) << 9) | ((ap & 3) << 4) | 0b01


L1 = 0x80004000          # 16 KB aligned
L2 = 0x80008000          # 1 KB aligned
DACR_CLIENT_ALL = 0x55555555


def short_regs(*, sctlr: int = SCTLR_M, ttbcr: int = 0, ttbr0: int = L1, ttbr1: int = 0,
               dacr: int = DACR_CLIENT_ALL) -> Stage1Regs:
    return Stage1Regs(sctlr=sctlr, ttbcr=ttbcr, ttbr0=ttbr0, ttbr1=ttbr1, dacr=dacr)


def set_l1(ram: Ram, va: int, desc: int, table: int = L1, n: int = 0) -> None:
    ram.w32(table + (((va & (0xFFFFFFFF >> n)) >> 20) << 2), desc)


def set_l2(ram: Ram, va: int, desc: int, table: int = L2) -> None:
    ram.w32(table + (((va >> 12) & 0xFF) << 2), desc)


@pytest.fixture
def ram() -> Ram:
    r = Ram()
    # Identity-map the first MB of RAM and alias it at 0x40000000, as the hello guest does.
    set_l1(r, RAM_BASE, section(RAM_BASE))
    set_l1(r, 0x40000000, section(RAM_BASE))
    return r


def walk(ram: Ram, regs: Stage1Regs, va: int, **kw) -> int:
    kw.setdefault("write", False)
    return gva_to_ipa(regs, va, read_phys=ram.read, **kw)


def fault(ram: Ram, regs: Stage1Regs, va: int, **kw) -> GuestFault:
    with pytest.raises(GuestFault) as exc:
        walk(ram, regs, va, **kw)
    return exc.value


# ---- MMU off ----

def test_mmu_off_is_flat(ram):
    regs = short_regs(sctlr=0, ttbr0=0)       # tables are not even looked at
    assert walk(ram, regs, 0x12345678) == 0x12345678
    assert ram.reads == 0
    assert translate_range(regs, 0x80000FF0, 0x20, write=True, read_phys=ram.read) == \
        [(0x80000FF0, 0x20)]


# ---- short-descriptor: sections, supersections, pages ----

def test_identity_and_alias_sections(ram):
    regs = short_regs()
    assert walk(ram, regs, RAM_BASE) == RAM_BASE
    assert walk(ram, regs, RAM_BASE + 0x12345) == RAM_BASE + 0x12345
    assert walk(ram, regs, 0x40000000) == RAM_BASE
    assert walk(ram, regs, 0x400ABCDE, write=True) == 0x800ABCDE


def test_supersection_40_bit_output(ram):
    pa = 0xAB_41000000
    for i in range(16):                       # supersections are replicated 16 times
        set_l1(ram, 0x90000000 + (i << 20), supersection(pa))
    regs = short_regs()
    assert walk(ram, regs, 0x90123456) == 0xAB_41123456
    assert walk(ram, regs, 0x90F00010) == 0xAB_41F00010


def test_supersection_is_domain_0(ram):
    # Bits [8:5] hold PA[39:36], not a domain: with domain 0 client and domain
    # 10 no-access, the supersection must still be reachable.
    set_l1(ram, 0x91000000, supersection(0xA0_81000000))
    regs = short_regs(dacr=0x00000001)
    assert walk(ram, regs, 0x91000004) == 0xA0_81000004


def test_small_and_large_pages(ram):
    set_l1(ram, 0x10000000, page_table(L2, domain=2))
    set_l2(ram, 0x10001000, small_page(0x80200000))
    for i in range(16):                       # a large page fills 16 consecutive entries
        set_l2(ram, 0x10010000 + (i << 12), large_page(0x80310000))
    regs = short_regs()
    assert walk(ram, regs, 0x10001ABC) == 0x80200ABC
    assert walk(ram, regs, 0x10010000) == 0x80310000
    assert walk(ram, regs, 0x1001F123) == 0x8031F123


def test_ttbcr_n_split_between_ttbr0_and_ttbr1():
    ram = Ram()
    t0, t1 = 0x80010000, 0x80014000         # N=2: TTBR0 table is 4 KB, TTBR1 16 KB
    set_l1(ram, 0x00100000, section(0x80100000), table=t0, n=2)
    set_l1(ram, 0xC0000000, section(0x80000000), table=t1)
    set_l1(ram, 0x40000000, section(0x80400000), table=t1)
    set_l1(ram, 0x00100000, section(0x80F00000), table=t1)   # must not be used
    regs = short_regs(ttbcr=2, ttbr0=t0 | 0x59, ttbr1=t1 | 0x59)   # attribute bits ignored
    assert walk(ram, regs, 0x00100008) == 0x80100008
    assert walk(ram, regs, 0xC0000010) == 0x80000010
    assert walk(ram, regs, 0x40000000) == 0x80400000   # first VA past TTBR0's 1 GB
    f = fault(ram, regs, 0x3FF00000)                    # TTBR0 region, empty entry
    assert (f.kind, f.level, f.fsr) == ("translation", 1, 0x005)


def test_ttbcr_pd1_disables_ttbr1_walks():
    ram = Ram()
    t0, t1 = 0x80010000, 0x80014000
    set_l1(ram, 0xC0000000, section(0x80000000), table=t1)
    regs = short_regs(ttbcr=2 | TTBCR_PD1, ttbr0=t0, ttbr1=t1)
    f = fault(ram, regs, 0xC0000000)
    assert (f.kind, f.fsr) == ("translation", 0x005)


# ---- short-descriptor faults with their ARM ARM FSR encodings ----

def test_section_translation_fault(ram):
    regs = short_regs()
    f = fault(ram, regs, 0x20000000)
    assert (f.kind, f.level, f.fsr, f.va, f.write) == ("translation", 1, 0x005, 0x20000000, False)
    f = fault(ram, regs, 0x20000004, write=True)
    assert f.fsr == 0x805                     # WnR, bit 11
    assert f.write


def test_page_translation_fault_reports_domain(ram):
    set_l1(ram, 0x10000000, page_table(L2, domain=7))
    f = fault(ram, short_regs(), 0x10005000)
    assert (f.kind, f.level, f.fsr) == ("translation", 2, 0x077)


def test_section_permission_fault(ram):
    set_l1(ram, 0x30000000, section(0x80300000, ap=0b111, domain=3))   # read-only
    regs = short_regs()
    assert walk(ram, regs, 0x30000000) == 0x80300000
    f = fault(ram, regs, 0x30000100, write=True)
    assert (f.kind, f.level, f.fsr) == ("permission", 1, 0x83D)


def test_page_permission_fault(ram):
    set_l1(ram, 0x10000000, page_table(L2, domain=4))
    set_l2(ram, 0x10002000, small_page(0x80202000, ap=0b101))           # PL1 read-only
    regs = short_regs()
    assert walk(ram, regs, 0x10002000) == 0x80202000
    f = fault(ram, regs, 0x10002FFC, write=True)
    assert (f.kind, f.level, f.fsr) == ("permission", 2, 0x84F)


def test_pl0_access_to_pl1_only_section(ram):
    set_l1(ram, 0x30000000, section(0x80300000, ap=0b001))
    regs = short_regs()
    assert walk(ram, regs, 0x30000000, write=True) == 0x80300000
    f = fault(ram, regs, 0x30000000, privileged=False)
    assert (f.kind, f.fsr) == ("permission", 0x00D)
    set_l1(ram, 0x30100000, section(0x80300000, ap=0b010))   # PL0 read-only
    assert walk(ram, regs, 0x30100000, privileged=False) == 0x80300000
    assert fault(ram, regs, 0x30100000, privileged=False, write=True).fsr == 0x80D


def test_ap_000_and_reserved_100_deny_everything(ram):
    regs = short_regs()
    for ap in (0b000, 0b100):
        set_l1(ram, 0x30000000, section(0x80300000, ap=ap))
        assert fault(ram, regs, 0x30000000).kind == "permission"


def test_domain_faults(ram):
    set_l1(ram, 0x30000000, section(0x80300000, domain=5))
    set_l1(ram, 0x10000000, page_table(L2, domain=5))
    set_l2(ram, 0x10000000, small_page(0x80200000))
    regs = short_regs(dacr=DACR_CLIENT_ALL & ~(3 << 10))     # domain 5: no access
    f = fault(ram, regs, 0x30000000)
    assert (f.kind, f.level, f.fsr) == ("domain", 1, 0x059)
    f = fault(ram, regs, 0x10000000, write=True)
    assert (f.kind, f.level, f.fsr) == ("domain", 2, 0x85B)
    # A page's translation fault outranks its domain fault: the domain is
    # only checked once a valid second-level descriptor is found.
    assert fault(ram, regs, 0x10001000).kind == "translation"
    reserved = (DACR_CLIENT_ALL & ~(3 << 10)) | (0b10 << 10)
    assert fault(ram, short_regs(dacr=reserved), 0x30000000).kind == "domain"


def test_manager_domain_skips_permission_and_xn(ram):
    set_l1(ram, 0x30000000, section(0x80300000, ap=0b000, domain=6, xn=True))
    regs = short_regs(dacr=DACR_CLIENT_ALL | (3 << 12))       # domain 6: manager
    assert walk(ram, regs, 0x30000000, write=True) == 0x80300000
    assert walk(ram, regs, 0x30000000, exec_=True) == 0x80300000


def test_execute_never_and_pxn(ram):
    set_l1(ram, 0x30000000, section(0x80300000, domain=2, xn=True))
    set_l1(ram, 0x30100000, section(0x80300000, domain=2, pxn=True))
    set_l1(ram, 0x10000000, page_table(L2, pxn=True))
    set_l2(ram, 0x10000000, small_page(0x80200000))
    regs = short_regs()
    assert walk(ram, regs, 0x30000000) == 0x80300000           # data reads still fine
    f = fault(ram, regs, 0x30000000, exec_=True, write=True)
    # IFSR format: no WnR and no domain field.
    assert (f.kind, f.fsr, f.write) == ("permission", 0x00D, False)
    assert fault(ram, regs, 0x30100000, exec_=True).kind == "permission"
    assert walk(ram, regs, 0x30100000, exec_=True, privileged=False) == 0x80300000
    assert fault(ram, regs, 0x10000000, exec_=True).fsr == 0x00F
    assert walk(ram, regs, 0x10000000, exec_=True, privileged=False) == 0x80200000


def test_wxn_makes_writable_memory_execute_never(ram):
    regs = short_regs(sctlr=SCTLR_M | SCTLR_WXN)
    assert fault(ram, regs, RAM_BASE, exec_=True).kind == "permission"
    set_l1(ram, 0x30000000, section(0x80300000, ap=0b111))
    assert walk(ram, regs, 0x30000000, exec_=True) == 0x80300000


def test_access_flag_model(ram):
    regs = short_regs(sctlr=SCTLR_M | SCTLR_AFE)
    # AP[0] is now the Access flag; AP[2:1] = 0b00 means PL1 read/write.
    set_l1(ram, 0x30000000, section(0x80300000, ap=0b000, domain=1))
    set_l1(ram, 0x30100000, section(0x80300000, ap=0b001, domain=1))
    set_l1(ram, 0x30200000, section(0x80300000, ap=0b101, domain=1))   # PL1 read-only
    set_l1(ram, 0x10000000, page_table(L2, domain=1))
    set_l2(ram, 0x10000000, small_page(0x80200000, ap=0b010))
    f = fault(ram, regs, 0x30000000)
    assert (f.kind, f.level, f.fsr) == ("access", 1, 0x013)
    assert walk(ram, regs, 0x30100000, write=True) == 0x80300000
    assert fault(ram, regs, 0x30200000, write=True).fsr == 0x81D
    f = fault(ram, regs, 0x10000000)
    assert (f.kind, f.level, f.fsr) == ("access", 2, 0x016)


def test_table_outside_ram_is_external_abort(ram):
    set_l1(ram, 0x10000000, page_table(0x00001000, domain=9))   # L2 table not in RAM
    f = fault(ram, short_regs(), 0x10000000)
    assert (f.kind, f.level, f.fsr) == ("external", 2, 0x09E)
    f = fault(ram, short_regs(ttbr0=0x00004000), 0x10000000, write=True)
    assert (f.kind, f.level, f.fsr) == ("external", 1, 0x80C)


def test_big_endian_table_walk():
    ram = Ram()
    ram.w32(L1 + ((0x40000000 >> 20) << 2), section(RAM_BASE), big=True)
    assert walk(ram, short_regs(sctlr=SCTLR_M | SCTLR_EE), 0x40000010) == RAM_BASE + 0x10


# ---- translate_range ----

def test_translate_range_splits_non_contiguous_pages(ram):
    set_l1(ram, 0x10000000, page_table(L2))
    set_l2(ram, 0x10001000, small_page(0x80200000))
    set_l2(ram, 0x10002000, small_page(0x80500000))
    set_l2(ram, 0x10003000, small_page(0x80501000))
    regs = short_regs()
    got = translate_range(regs, 0x10001FF0, 0x20, write=True, read_phys=ram.read)
    assert got == [(0x80200FF0, 0x10), (0x80500000, 0x10)]
    # Contiguous IPAs are merged; sections are taken in one step.
    got = translate_range(regs, 0x10002800, 0x1000, write=False, read_phys=ram.read)
    assert got == [(0x80500800, 0x1000)]
    assert translate_range(regs, 0x40000010, 0x80000, write=True, read_phys=ram.read) == \
        [(RAM_BASE + 0x10, 0x80000)]
    assert translate_range(regs, 0x40000010, 0, write=True, read_phys=ram.read) == []


def test_translate_range_faults_on_the_unmapped_page(ram):
    set_l1(ram, 0x10000000, page_table(L2))
    set_l2(ram, 0x10001000, small_page(0x80200000))
    with pytest.raises(GuestFault) as exc:
        translate_range(short_regs(), 0x10001F00, 0x200, write=True, read_phys=ram.read)
    assert exc.value.va == 0x10002000 and exc.value.fsr == 0x807


def test_translate_range_checks_write_permission(ram):
    set_l1(ram, 0x30000000, section(0x80300000, ap=0b111))
    regs = short_regs()
    assert translate_range(regs, 0x30000000, 8, write=False, read_phys=ram.read) == \
        [(0x80300000, 8)]
    with pytest.raises(GuestFault):
        translate_range(regs, 0x30000000, 8, write=True, read_phys=ram.read)


# ---- LPAE (long-descriptor) ----

LPAE_L1 = 0x80020000     # 4 entries x 8 bytes; only 32-byte alignment is needed
LPAE_L2 = 0x80021000
LPAE_L3 = 0x80022000
AF = 1 << 10


def lpae_block(pa: int, *, ap: int = 0b00, xn: bool = False, pxn: bool = False,
               af: bool = True) -> int:
    return (pa | (int(xn) << 54) | (int(pxn) << 53) | (AF if af else 0) | (ap << 6)
            | 0b01)


def lpae_page(pa: int, **kw) -> int:
    return lpae_block(pa, **kw) | 0b10


def lpae_table(pa: int, *, ap_table: int = 0, xn_table: bool = False) -> int:
    return pa | (ap_table << 61) | (int(xn_table) << 60) | 0b11


def lpae_regs(*, ttbcr: int = TTBCR_EAE, ttbr0: int = LPAE_L1, ttbr1: int = 0,
              sctlr: int = SCTLR_M) -> Stage1Regs:
    return Stage1Regs(sctlr=sctlr, ttbcr=ttbcr, ttbr0=ttbr0, ttbr1=ttbr1, dacr=0)


@pytest.fixture
def lram() -> Ram:
    r = Ram()
    r.w64(LPAE_L1 + 1 * 8, lpae_block(0x80000000))          # VA 1G..2G -> RAM, 1 GB block
    r.w64(LPAE_L1 + 2 * 8, lpae_table(LPAE_L2))
    r.w64(LPAE_L2 + 0 * 8, lpae_block(0x80200000))          # 2 MB block
    r.w64(LPAE_L2 + 1 * 8, lpae_table(LPAE_L3))
    r.w64(LPAE_L2 + 2 * 8, lpae_table(LPAE_L3, ap_table=0b10, xn_table=True))
    r.w64(LPAE_L3 + 3 * 8, lpae_page(0x80403000))
    r.w64(LPAE_L3 + 4 * 8, lpae_page(0x80404000, af=False))
    r.w64(LPAE_L3 + 5 * 8, lpae_page(0x80405000, ap=0b10))  # PL1 read-only
    r.w64(LPAE_L3 + 6 * 8, lpae_page(0x80406000, xn=True))
    r.w64(LPAE_L3 + 7 * 8, lpae_block(0x80407000))          # 0b01 at level 3: reserved
    r.w64(LPAE_L3 + 8 * 8, lpae_page(0xAB_80408000))        # 40-bit output
    r.w64(LPAE_L3 + 9 * 8, lpae_page(0xFF_00_80409000))     # bits [47:40] are ignored
    return r


def test_lpae_levels(lram):
    regs = lpae_regs()
    assert walk(lram, regs, 0x40001234) == 0x80001234               # level 1 block
    assert walk(lram, regs, 0x80012345) == 0x80212345               # level 2 block
    assert walk(lram, regs, 0x80203010, write=True) == 0x80403010   # level 3 page
    assert walk(lram, regs, 0x80208004) == 0xAB_80408004
    assert walk(lram, regs, 0x80209004) == 0x00_80409004


def test_lpae_translation_faults(lram):
    regs = lpae_regs()
    f = fault(lram, regs, 0x00001000)
    assert (f.kind, f.level, f.fsr) == ("translation", 1, 0x205)
    f = fault(lram, regs, 0x80600000, write=True)                   # L2 entry 3 empty
    assert (f.kind, f.level, f.fsr) == ("translation", 2, 0xA06)
    f = fault(lram, regs, 0x80200000)                               # L3 entry 0 empty
    assert (f.kind, f.level, f.fsr) == ("translation", 3, 0x207)
    assert fault(lram, regs, 0x80207000).fsr == 0x207              # reserved 0b01 at L3


def test_lpae_access_flag_fault(lram):
    f = fault(lram, lpae_regs(), 0x80204000)
    assert (f.kind, f.level, f.fsr) == ("access", 3, 0x20B)


def test_lpae_permission_faults(lram):
    regs = lpae_regs()
    assert walk(lram, regs, 0x80205000) == 0x80405000
    f = fault(lram, regs, 0x80205000, write=True)
    assert (f.kind, f.level, f.fsr) == ("permission", 3, 0xA0F)
    f = fault(lram, regs, 0x80206000, exec_=True)
    assert (f.kind, f.fsr, f.write) == ("permission", 0x20F, False)
    f = fault(lram, regs, 0x40000000, privileged=False)             # AP=00: PL1 only
    assert (f.kind, f.level, f.fsr) == ("permission", 1, 0x20D)


def test_lpae_table_attributes_are_inherited(lram):
    regs = lpae_regs()
    # L2 entry 2 points at the same L3 table with APTable[1] (read-only) and XNTable.
    assert walk(lram, regs, 0x80403010) == 0x80403010
    assert fault(lram, regs, 0x80403010, write=True).kind == "permission"
    assert fault(lram, regs, 0x80403010, exec_=True).kind == "permission"


def test_lpae_external_abort(lram):
    lram.w64(LPAE_L2 + 4 * 8, lpae_table(0x00005000))               # outside RAM
    f = fault(lram, lpae_regs(), 0x80800000)
    assert (f.kind, f.level, f.fsr) == ("external", 3, 0x217)
    f = fault(lram, lpae_regs(ttbr0=0x1000), 0x40000000)
    assert (f.kind, f.level, f.fsr) == ("external", 1, 0x215)


def test_lpae_t0sz_t1sz_regions():
    ram = Ram()
    t0, t1 = 0x80030000, 0x80031000
    # T0SZ=1: TTBR0 covers 2 GB with a 2-entry first-level table.
    ram.w64(t0 + 1 * 8, lpae_block(0x80000000))
    # T1SZ=2: TTBR1 covers the top 1 GB and starts at level 2 (512 x 2 MB).
    ram.w64(t1 + 5 * 8, lpae_block(0x80A00000))
    regs = lpae_regs(ttbcr=TTBCR_EAE | 1 | (2 << 16), ttbr0=t0, ttbr1=t1 | (0x42 << 48))
    assert walk(ram, regs, 0x40000040) == 0x80000040
    assert walk(ram, regs, 0xC0A00040) == 0x80A00040
    f = fault(ram, regs, 0x80000000)           # between the two regions
    assert (f.kind, f.level, f.fsr) == ("translation", 1, 0x205)
    f = fault(ram, regs, 0xC0000000)           # TTBR1 region, level-2 entry 0 empty
    assert (f.kind, f.level) == ("translation", 2)
    # T0SZ=0, T1SZ=2: TTBR0 covers everything below TTBR1's top 1 GB.
    ram.w64(t0 + 2 * 8, lpae_block(0x80000000))
    regs0 = lpae_regs(ttbcr=TTBCR_EAE | (2 << 16), ttbr0=t0, ttbr1=t1)
    assert walk(ram, regs0, 0x80000004) == 0x80000004
    assert walk(ram, regs0, 0xC0A00004) == 0x80A00004
    f = fault(ram, lpae_regs(ttbcr=TTBCR_EAE | (2 << 16) | TTBCR_EPD1, ttbr0=t0, ttbr1=t1),
              0xC0A00004)
    assert (f.kind, f.fsr) == ("translation", 0x205)


def test_lpae_translate_range(lram):
    lram.w64(LPAE_L3 + 2 * 8, lpae_page(0x80402000))
    lram.w64(LPAE_L3 + 10 * 8, lpae_page(0x80500000))
    lram.w64(LPAE_L3 + 11 * 8, lpae_page(0x80300000))
    regs = lpae_regs()
    got = translate_range(regs, 0x80202FF8, 0x10, write=False, read_phys=lram.read)
    assert got == [(0x80402FF8, 0x10)]
    got = translate_range(regs, 0x8020AFF8, 0x10, write=True, read_phys=lram.read)
    assert got == [(0x80500FF8, 0x8), (0x80300000, 0x8)]
    with pytest.raises(GuestFault) as exc:
        translate_range(regs, 0x80203FF8, 0x10, write=False, read_phys=lram.read)
    assert (exc.value.kind, exc.value.va) == ("access", 0x80204000)


# ---- the remembered walks (WalkCache) ----

def test_walk_cache_follows_tables_rewritten_without_tlb_maintenance(ram):
    set_l1(ram, 0x10000000, page_table(L2))
    set_l2(ram, 0x10001000, small_page(0x80200000))
    regs, cache = short_regs(), WalkCache()
    got = lambda va, **kw: translate_range(regs, va, 8, write=kw.get("write", False),
                                           read_phys=ram.read, cache=cache)
    assert got(0x10001010) == [(0x80200010, 8)]
    assert got(0x10001ff0) == [(0x80200ff0, 8)]          # a hit, at another offset
    set_l2(ram, 0x10001000, small_page(0x80500000))       # the guest remaps the page
    assert got(0x10001010) == [(0x80500010, 8)]
    set_l2(ram, 0x10001000, small_page(0x80500000, ap=0b111))   # ... makes it read-only
    assert got(0x10001010) == [(0x80500010, 8)]
    with pytest.raises(GuestFault):
        got(0x10001010, write=True)
    set_l1(ram, 0x10000000, 0)                            # ... and unmaps it
    with pytest.raises(GuestFault) as exc:
        got(0x10001010)
    assert exc.value.kind == "translation"
    # Other controls are another walk: a domain set to no access faults at once.
    regs = short_regs(dacr=0)
    with pytest.raises(GuestFault):
        got(RAM_BASE)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), lpae=st.booleans(),
       steps=st.lists(st.tuples(st.booleans(), st.integers(0, 2**32 - 1),
                                st.integers(0, 2**32 - 1)), min_size=1, max_size=40))
def test_walk_cache_answers_what_a_fresh_walk_does(seed, lpae, steps):
    """Random tables, rewritten between walks of a few addresses: a remembered walk gives the
    same IPA or the same fault as walking again."""
    ram = _random_ram(seed, lpae)
    ram.data = bytearray(ram.data)
    ttbcr = TTBCR_EAE if lpae else 0
    regs = Stage1Regs(sctlr=SCTLR_M, ttbcr=ttbcr, ttbr0=RAM_BASE + (seed % SMALL_RAM & ~0x3FFF),
                      ttbr1=RAM_BASE, dacr=0x55555555)
    rnd = random.Random(seed)
    vas = [rnd.getrandbits(32) for _ in range(300)]
    mapped = []
    for va in vas:
        try:
            translate_range(regs, va, 4, write=False, read_phys=ram.read)
            mapped.append(va)
        except GuestFault:
            pass
    vas = (mapped[:4] or vas[:1]) + [vas[-1]]
    cache = WalkCache()
    for rewrite, a, b in steps:
        if rewrite:         # the guest changes a word: mostly a descriptor a walk read
            read = [pa for _, _, reads in cache._walks.values() for pa, _ in reads]
            off = (read[a % len(read)] - RAM_BASE if read and a & 3 else a % SMALL_RAM) & ~3
            ram.data[off:off + 4] = struct.pack("<I", b if b & 1 else b & ~0xFFF | 0x3)
            continue
        va, write = vas[a % len(vas)], bool(b & 1)

        def outcome(c):
            try:
                return translate_range(regs, va, 4, write=write, read_phys=ram.read, cache=c)
            except GuestFault as f:
                return (f.kind, f.fsr)
        assert outcome(cache) == outcome(None)


# ---- properties: untrusted tables never crash the walker ----

FAULT_KINDS = {"translation", "permission", "access", "domain", "external"}
SMALL_RAM = 0x8000


class FlatRam(Ram):
    """A small RAM held as one buffer, for the randomised tables."""

    def __init__(self, data: bytes) -> None:
        super().__init__(RAM_BASE, len(data))
        self.data = data

    def read(self, pa: int, size: int) -> bytes | None:
        if pa < self.base or pa + size > self.base + self.size:
            return None
        return self.data[pa - self.base:pa - self.base + size]


def _random_ram(seed: int, lpae: bool) -> FlatRam:
    """64 KB of RAM whose words mostly look like descriptors pointing back into it."""
    rnd = random.Random(seed)
    words = []
    for i in range(SMALL_RAM // 4):
        if lpae and i % 2:
            # Upper halves of long descriptors: mostly clear, sometimes attributes
            # or out-of-range address bits.
            words.append(rnd.choice((0, 0, 0, rnd.getrandbits(32), rnd.getrandbits(9))))
            continue
        pick = rnd.random()
        if pick < 0.3:
            words.append(rnd.getrandbits(32))
        elif pick < 0.6:       # section/block/page-like, output inside RAM, random attributes
            words.append((RAM_BASE + rnd.randrange(SMALL_RAM)) & ~0xFFF | rnd.getrandbits(12))
        else:                  # table pointers into RAM
            words.append((RAM_BASE + rnd.randrange(SMALL_RAM)) & ~0x3FF | rnd.getrandbits(10)
                         | (0b11 if lpae else 0b01))
    return FlatRam(struct.pack(f"<{len(words)}I", *words))


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), va=st.integers(0, 2**32 - 1),
       ttbcr=st.integers(0, 7) | st.integers(0, 0x3F), ttbr_off=st.integers(0, SMALL_RAM - 1),
       ttbr1_off=st.integers(0, SMALL_RAM - 1), dacr=st.integers(0, 2**32 - 1),
       afe=st.booleans(), wxn=st.booleans(), write=st.booleans(), exec_=st.booleans(),
       privileged=st.booleans())
def test_short_descriptor_walk_returns_ipa_or_guest_fault(
        seed, va, ttbcr, ttbr_off, ttbr1_off, dacr, afe, wxn, write, exec_, privileged):
    ram = _random_ram(seed, lpae=False)
    sctlr = SCTLR_M | (SCTLR_AFE if afe else 0) | (SCTLR_WXN if wxn else 0)
    regs = Stage1Regs(sctlr=sctlr, ttbcr=ttbcr, ttbr0=RAM_BASE + ttbr_off,
                      ttbr1=RAM_BASE + ttbr1_off, dacr=dacr)
    _check_outcome(ram, regs, va, write, exec_, privileged, lpae=False)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), va=st.integers(0, 2**32 - 1),
       t0sz=st.integers(0, 7), t1sz=st.integers(0, 7), epd=st.sampled_from((0, 0, 0, 1, 2, 3)),
       ttbr_off=st.integers(0, SMALL_RAM - 1), ttbr1_off=st.integers(0, SMALL_RAM - 1),
       write=st.booleans(), exec_=st.booleans(), privileged=st.booleans())
def test_lpae_walk_returns_ipa_or_guest_fault(
        seed, va, t0sz, t1sz, epd, ttbr_off, ttbr1_off, write, exec_, privileged):
    ram = _random_ram(seed, lpae=True)
    ttbcr = TTBCR_EAE | t0sz | (t1sz << 16) | ((epd & 1) << 7) | ((epd >> 1) << 23)
    regs = Stage1Regs(sctlr=SCTLR_M, ttbcr=ttbcr, ttbr0=RAM_BASE + ttbr_off,
                      ttbr1=RAM_BASE + ttbr1_off, dacr=0)
    _check_outcome(ram, regs, va, write, exec_, privileged, lpae=True)


def _check_outcome(ram, regs, va, write, exec_, privileged, lpae):
    try:
        ipa = gva_to_ipa(regs, va, write=write, exec_=exec_, privileged=privileged,
                         read_phys=ram.read)
    except GuestFault as f:
        assert f.kind in FAULT_KINDS and f.va == va
        assert bool(f.fsr & (1 << 9)) == lpae
        assert bool(f.fsr & (1 << 11)) == (write and not exec_)
        if not lpae:
            assert f.level in (1, 2)
    else:
        assert 0 <= ipa < 1 << 40
        # The page offset always passes through untouched.
        assert ipa & 0xFFF == va & 0xFFF
