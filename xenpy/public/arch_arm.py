"""xen/include/public/arch-arm.h: the ARM guest ABI and the guest physical memory map.

Two memory maps are modelled: Xen 4.4's (RAM at 2 GiB, vGIC at 0x2C00xxxx, magic pages right
after RAM; the layout the Cubieboard2 ERIKA port was written for) and the one every Xen since 4.5
uses (RAM at 1 GiB in two banks, magic pages in their own region). A few numbers from
device_tree_defs.h and hvm/params.h that only matter on ARM live here too.
"""
from __future__ import annotations

from dataclasses import dataclass

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

# The HVC immediate that marks a Xen hypercall (the ISS of the trap); hvc #0 is SMCCC/PSCI.
XEN_HYPERCALL_TAG = 0xEA1
# `hvc #0xEA1` encoded (A32: imm16[15:4] in bits 19:8, imm16[3:0] in bits 3:0).
HVC_XEN_A32 = 0xE140EA71
HVC_XEN_T32 = (0xF7E0, 0x8EA1)  # Thumb-2: first halfword, second halfword
HVC_XEN_A64 = 0xD401D422


def hvc_a32(imm16: int) -> int:
    """A32 encoding of `hvc #imm16` (condition AL)."""
    return 0xE1400070 | ((imm16 >> 4) & 0xFFF) << 8 | (imm16 & 0xF)


def hvc_t32(imm16: int) -> tuple[int, int]:
    """Thumb-2 encoding of `hvc #imm16` as its two halfwords."""
    return 0xF7E0 | (imm16 >> 12) & 0xF, 0x8000 | (imm16 & 0xFFF)


def hvc_a64(imm16: int) -> int:
    """A64 encoding of `hvc #imm16`."""
    return 0xD4000002 | (imm16 & 0xFFFF) << 5


# PSR bits and the initial vCPU state the toolstack sets (vcpu_arm32 / vcpu_arm64).
PSR_THUMB = 1 << 5
PSR_FIQ_MASK = 1 << 6
PSR_IRQ_MASK = 1 << 7
PSR_ABT_MASK = 1 << 8
PSR_DBG_MASK = 1 << 9  # arm64
PSR_Z = 1 << 30
PSR_MODE_SVC = 0x13
PSR_MODE_EL1h = 0x05
# Z is set since 4.17 so old Linux NOP encodings behave; Xen 4.4 started guests without it.
PSR_GUEST32_INIT = PSR_Z | PSR_ABT_MASK | PSR_FIQ_MASK | PSR_IRQ_MASK | PSR_MODE_SVC
PSR_GUEST32_INIT_4_4 = PSR_ABT_MASK | PSR_FIQ_MASK | PSR_IRQ_MASK | PSR_MODE_SVC
PSR_GUEST64_INIT = PSR_DBG_MASK | PSR_ABT_MASK | PSR_FIQ_MASK | PSR_IRQ_MASK | PSR_MODE_EL1h
SCTLR_GUEST_INIT = 0x00C50078

# Interrupts (INTIDs), the same in every version.
GUEST_TIMER_VIRT_PPI = 27
GUEST_TIMER_PHYS_S_PPI = 29
GUEST_TIMER_PHYS_NS_PPI = 30
GUEST_EVTCHN_PPI = 31
GUEST_VPL011_SPI = 32
GUEST_VIRTIO_MMIO_SPI_FIRST = 33
GUEST_VIRTIO_MMIO_SPI_LAST = 43

# PSCI 0.1 function numbers, which the guest DT advertises as cpu_off / cpu_on.
PSCI_cpu_suspend = 0
PSCI_cpu_off = 1
PSCI_cpu_on = 2
PSCI_migrate = 3

# device_tree_defs.h (since 4.6; libxl 4.4 and 4.5 used phandle 1 for the GIC).
GUEST_PHANDLE_GIC = 65000
GUEST_PHANDLE_GIC_4_4 = 1
GUEST_ROOT_ADDRESS_CELLS = 2
GUEST_ROOT_SIZE_CELLS = 2
DT_IRQ_TYPE_EDGE_RISING = 1
DT_IRQ_TYPE_EDGE_FALLING = 2
DT_IRQ_TYPE_LEVEL_HIGH = 4
DT_IRQ_TYPE_LEVEL_LOW = 8

# hvm/params.h, ARM flavour of HVM_PARAM_CALLBACK_IRQ.
HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT = 56
HVM_PARAM_CALLBACK_TYPE_PPI = 2
HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_MASK = 0xFF00
HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_EDGE = 1  # bit 8 once shifted into the flag byte
HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_LOW_LEVEL = 2  # bit 9


def callback_irq_ppi(ppi: int = GUEST_EVTCHN_PPI, *, edge: bool = False,
                     active_low: bool = True) -> int:
    """HVM_PARAM_CALLBACK_IRQ value for event-channel upcalls on `ppi`.

    The default is what libxl and Xen's dom0 builder set: PPI 31, level, active low
    (0x020000000000021F).
    """
    if not 16 <= ppi < 32:
        raise ValueError(f"callback PPI must be 16..31, not {ppi}")
    flags = (HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_EDGE if edge else 0) | \
            (HVM_PARAM_CALLBACK_TYPE_PPI_FLAG_LOW_LEVEL if active_low else 0)
    return HVM_PARAM_CALLBACK_TYPE_PPI << HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT | flags << 8 | ppi


# The current map's regions that are not part of GuestLayout (only one layout has them).
GUEST_VIRTIO_MMIO_BASE = 0x02000000
GUEST_VIRTIO_MMIO_SIZE = 0x00100000
GUEST_GICV3_GICD_BASE = 0x03001000
GUEST_GICV3_GICD_SIZE = 0x00010000
GUEST_GICV3_GICR0_BASE = 0x03020000  # one redistributor region for vCPUs 0..127
GUEST_GICV3_GICR0_SIZE = 0x01000000
GUEST_ACPI_BASE = 0x20000000
GUEST_ACPI_SIZE = 0x02000000
GUEST_PL011_BASE = 0x22000000
GUEST_PL011_SIZE = 0x00001000
GUEST_GNTTAB_BASE = 0x38000000
GUEST_GNTTAB_SIZE = 0x01000000
GUEST_MAGIC_BASE = 0x39000000
GUEST_MAGIC_SIZE = 0x01000000
GUEST_RAM0_BASE = 0x40000000
GUEST_RAM0_SIZE = 0xC0000000
GUEST_RAM1_BASE = 0x0200000000
GUEST_RAM1_SIZE = 0xFE00000000
GUEST_MAX_VCPUS = 128
GUEST_MAX_VCPUS_GICV2 = 8  # a GICv2 CPU interface addresses at most 8 CPUs

# Offsets of the magic pages (xg_dom_arm.c; 4.4 had only the first two).
CONSOLE_PFN_OFFSET = 0
XENSTORE_PFN_OFFSET = 1
MEMACCESS_PFN_OFFSET = 2
VUART_PFN_OFFSET = 3


@dataclass(frozen=True)
class GuestLayout:
    """One version's guest physical memory map (the GUEST_* macros of arch-arm.h)."""

    name: str
    ram_base: int
    ram_max: int  # size of RAM bank 0, the most RAM it can hold
    ram1_base: int  # second bank; 0 when the version has none
    ram1_size: int
    gicd_base: int
    gicd_size: int
    gicc_base: int
    gicc_size: int
    gnttab_base: int
    gnttab_size: int
    magic_base: int | None  # None: the magic pages follow the end of guest RAM (4.4)
    nr_magic_pages: int
    gic_phandle: int = GUEST_PHANDLE_GIC
    psr_guest32_init: int = PSR_GUEST32_INIT

    @property
    def max_mem_bytes(self) -> int:
        """Most RAM a guest may have: both banks, less the magic pages when they follow RAM."""
        if self.magic_base is None:
            return self.ram_max - self.nr_magic_pages * PAGE_SIZE
        return self.ram_max + self.ram1_size

    def ram_banks(self, mem_bytes: int) -> list[tuple[int, int]]:
        """(base, size) of each populated bank: bank 0 fills first, as libxenguest does."""
        self.check_mem(mem_bytes)
        bank0 = min(mem_bytes, self.ram_max)
        banks = [(self.ram_base, bank0)]
        if mem_bytes > bank0:
            banks.append((self.ram1_base, mem_bytes - bank0))
        return banks

    def check_mem(self, mem_bytes: int) -> None:
        """Raise ValueError unless `mem_bytes` is a RAM size this layout can hold."""
        if mem_bytes <= 0 or mem_bytes % PAGE_SIZE:
            raise ValueError(f"guest memory must be a positive multiple of 4 KiB, not {mem_bytes}")
        if mem_bytes > self.max_mem_bytes:
            raise ValueError(f"guest memory ({mem_bytes >> 10} KiB) exceeds the {self.name} "
                             f"layout's maximum ({self.max_mem_bytes >> 10} KiB)")

    def _magic_pfn(self, mem_bytes: int, offset: int) -> int:
        if self.magic_base is None:
            self.check_mem(mem_bytes)
            # xc_dom_arm.c (4.4): rambase_pfn + total_pages + offset.
            return (self.ram_base + mem_bytes >> PAGE_SHIFT) + offset
        return (self.magic_base >> PAGE_SHIFT) + offset

    def console_pfn(self, mem_bytes: int) -> int:
        """GFN of the console ring (HVM_PARAM_CONSOLE_PFN) for a guest of `mem_bytes` RAM."""
        return self._magic_pfn(mem_bytes, CONSOLE_PFN_OFFSET)

    def store_pfn(self, mem_bytes: int) -> int:
        """GFN of the xenstore ring (HVM_PARAM_STORE_PFN) for a guest of `mem_bytes` RAM."""
        return self._magic_pfn(mem_bytes, XENSTORE_PFN_OFFSET)

    def vuart_pfn(self, mem_bytes: int) -> int | None:
        """GFN of the vPL011's ring (xg_dom_arm.c's vuart_gfn); None where there is none (4.4)."""
        return None if self.nr_magic_pages <= VUART_PFN_OFFSET else \
            self._magic_pfn(mem_bytes, VUART_PFN_OFFSET)

    def magic_pfns(self, mem_bytes: int) -> list[int]:
        """GFNs of every magic page the toolstack populates."""
        return [self._magic_pfn(mem_bytes, i) for i in range(self.nr_magic_pages)]

    def ram_end(self, mem_bytes: int) -> int:
        """First address past bank 0's RAM."""
        return self.ram_base + self.ram_banks(mem_bytes)[0][1]


# RELEASE-4.4.0 arch-arm.h. It names no RAM size; RAM is capped where the grant-table window
# starts (0xB0000000) so that RAM, the magic pages after it and the grant table never overlap.
LAYOUT_4_4 = GuestLayout(
    name="4.4",
    ram_base=0x80000000, ram_max=0x30000000, ram1_base=0, ram1_size=0,
    gicd_base=0x2C001000, gicd_size=0x1000, gicc_base=0x2C002000, gicc_size=0x100,
    gnttab_base=0xB0000000, gnttab_size=0x00020000,
    magic_base=None, nr_magic_pages=2,
    gic_phandle=GUEST_PHANDLE_GIC_4_4, psr_guest32_init=PSR_GUEST32_INIT_4_4,
)

LAYOUT_CURRENT = GuestLayout(
    name="current",
    ram_base=GUEST_RAM0_BASE, ram_max=GUEST_RAM0_SIZE,
    ram1_base=GUEST_RAM1_BASE, ram1_size=GUEST_RAM1_SIZE,
    gicd_base=0x03001000, gicd_size=0x1000, gicc_base=0x03002000, gicc_size=0x2000,
    gnttab_base=GUEST_GNTTAB_BASE, gnttab_size=GUEST_GNTTAB_SIZE,
    magic_base=GUEST_MAGIC_BASE, nr_magic_pages=4,
)

LAYOUTS: dict[str, GuestLayout] = {"4.4": LAYOUT_4_4, "current": LAYOUT_CURRENT}
