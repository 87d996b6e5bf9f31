/*
 * Stage-1 translation for the guests: one ARMv7 short-descriptor level-1
 * table of 1 MiB sections, shared by every vCPU.
 *
 * Under Xen every pointer a guest passes in a hypercall is a virtual
 * address, translated through these tables once the MMU is on; turning it
 * on (and mapping aliases) is what makes the hypervisor do that walk.
 */
#include "guest.h"

#define L1_ENTRIES      4096

/* Section descriptor bits (ARM ARM B3.5.1), with SCTLR.TRE = 0 and
 * SCTLR.AFE = 0, so TEX/C/B give the memory type and AP[2:0] = 011 is
 * read/write at PL1 and PL0. */
#define SECT_TYPE       0x2U
#define SECT_B          (1U << 2)
#define SECT_C          (1U << 3)
#define SECT_XN         (1U << 4)
#define SECT_DOMAIN(d)  ((uint32_t)(d) << 5)
#define SECT_AP_RW      (3U << 10)
#define SECT_TEX(t)     ((uint32_t)(t) << 12)
#define SECT_S          (1U << 16)
#define SECT_SUPER      (1U << 18)
#define SECT_BASE_MASK  0xFFF00000U

/* Normal memory, inner and outer write-back write-allocate (TEX=001 C B),
 * shareable so the vCPUs see each other's writes coherently. */
#define SECT_NORMAL     (SECT_TYPE | SECT_TEX(1) | SECT_C | SECT_B | SECT_S | \
                         SECT_AP_RW | SECT_DOMAIN(0))
/* Shareable device (TEX=000 C=0 B=1), never executable. */
#define SECT_DEVICE     (SECT_TYPE | SECT_B | SECT_XN | SECT_AP_RW | SECT_DOMAIN(0))

/* TTBR0 walk attributes as Linux sets them on SMP: inner WBWA (IRGN split
 * over bits 6 and 0), outer WBWA, inner shareable.  A hypervisor walking
 * these tables must mask them off: the table base is TTBR0[31:14]. */
#define TTBR_IRGN_WBWA  (1U << 6)
#define TTBR_RGN_WBWA   (1U << 3)
#define TTBR_S          (1U << 1)
#define TTBR_NOS        (1U << 5)
#define TTBR_FLAGS      (TTBR_IRGN_WBWA | TTBR_RGN_WBWA | TTBR_S | TTBR_NOS)

#define SCTLR_M         (1U << 0)
#define SCTLR_C         (1U << 2)
#define SCTLR_I         (1U << 12)

#define DACR_ALL_CLIENT 0x55555555U     /* every domain checks AP bits */

/* 16 KiB aligned, as TTBR0 with TTBCR.N = 0 requires; in .bss, so it
 * starts with every entry a translation fault. */
static uint32_t l1_table[L1_ENTRIES] __attribute__((aligned(16384)));

static void tlb_flush_all(void)
{
    dsb();
    WRITE_CP32(0, 0, c8, c3, 0);        /* TLBIALLIS: every vCPU's TLB */
    WRITE_CP32(0, 0, c7, c1, 6);        /* BPIALLIS */
    dsb();
    isb();
}

static void set_sections(uint32_t va, uint32_t pa, uint32_t size, uint32_t attrs,
                         bool unmap)
{
    uint32_t first = va >> SECTION_SHIFT;
    uint32_t last;

    if (!size)
        return;
    /* Every section [va, va + size) touches; a range running off the top
     * of the address space stops at the last section. */
    last = ((uint64_t)va + size + SECTION_SIZE - 1) >> SECTION_SHIFT;
    if (last > L1_ENTRIES)
        last = L1_ENTRIES;
    pa &= SECT_BASE_MASK;
    for (uint32_t i = first; i < last; i++, pa += SECTION_SIZE)
        l1_table[i] = unmap ? 0 : pa | attrs;
    /* Table walks are coherent with the data cache (TTBR0 says cacheable
     * walks), so a barrier and a TLB flush make the change visible. */
    tlb_flush_all();
}

void mmu_map(uint32_t va, uint32_t pa, uint32_t size, enum mmu_type type)
{
    set_sections(va, pa, size, type == MMU_DEVICE ? SECT_DEVICE : SECT_NORMAL, false);
}

void mmu_unmap(uint32_t va, uint32_t size)
{
    set_sections(va, 0, size, 0, true);
}

bool mmu_enabled(void)
{
    return read_sctlr() & SCTLR_M;
}

void mmu_enable(void)
{
    dsb();                              /* table writes land before any walk */
    WRITE_CP32(0, 0, c2, c0, 2);        /* TTBCR: short descriptors, TTBR0 only */
    WRITE_CP32(DACR_ALL_CLIENT, 0, c3, c0, 0);
    WRITE_CP32((uint32_t)(uintptr_t)l1_table | TTBR_FLAGS, 0, c2, c0, 0);
    isb();
    WRITE_CP32(0, 0, c8, c7, 0);        /* TLBIALL */
    WRITE_CP32(0, 0, c7, c5, 0);        /* ICIALLU */
    WRITE_CP32(0, 0, c7, c5, 6);        /* BPIALL */
    dsb();
    isb();
    WRITE_CP32(read_sctlr() | SCTLR_M | SCTLR_C | SCTLR_I, 0, c1, c0, 0);
    isb();
}

bool mmu_translate(uint32_t va, uint32_t *pa)
{
    uint32_t e = l1_table[va >> SECTION_SHIFT];

    if ((e & 3U) != SECT_TYPE || (e & SECT_SUPER))
        return false;
    *pa = (e & SECT_BASE_MASK) | (va & (SECTION_SIZE - 1));
    return true;
}

void dcache_clean_range(const void *p, size_t size)
{
    /* CTR.DminLine: log2 of the smallest data cache line, in words. */
    uint32_t line = 4U << ((READ_CP32(0, c0, c0, 1) >> 16) & 0xf);
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(line - 1);
    uintptr_t end = (uintptr_t)p + size;

    dsb();
    for (; a < end; a += line)
        WRITE_CP32(a, 0, c7, c10, 1);   /* DCCMVAC: clean to the PoC */
    dsb();
}
