/*
 * faults: aborts taken from User mode, checked against the ARMv7-A
 * Architecture Reference Manual (B3.12, and the DFSR, IFSR, DFAR and IFAR
 * descriptions in B4.1).
 *
 * The kernel half maps RAM PL1-only and a few user pages the way Linux maps
 * a process: code read-only and privileged-execute-never, data
 * execute-never.  It then drops to User mode in user.S, which makes an
 * allowed read and seven accesses that abort (the last a 32-bit Thumb
 * instruction whose second halfword is on an execute-never page); each
 * abort handler checks the faulting instruction, the mode it came from and
 * DFAR/DFSR (or IFAR/IFSR), prints them, and resumes.  Back in SVC mode an
 * unprivileged load (LDRT) must be refused where an ordinary load is not.
 *
 * This runs twice: with LPAE tables (2 MiB blocks, 4 KiB level-3 pages),
 * then with short descriptors (sections, small pages, domains).
 */
#include "guest.h"
#include "faults.h"

extern char user_code[], user_str[], user_resume_fetch[], user_vst1[], user_ldm[];
extern char user_kread[], user_ldrex[], user_straddle[], user_resume_straddle[];
extern char fault_vectors[], ldrt_insn[];
__noreturn void enter_user(uint32_t pc);
void vfp_enable(void);
uint32_t ldrt_probe(uint32_t va);

#define SCTLR_M         (1U << 0)
#define SCTLR_C         (1U << 2)
#define SCTLR_I         (1U << 12)
#define SCTLR_TRE       (1U << 28)
#define SCTLR_AFE       (1U << 29)

#define MAGIC           0x600df00dU
#define RAM_MIB         128

/* ---- LPAE: the long-descriptor format (B3.6) ---- */

#define D_TABLE         3ULL
#define D_BLOCK         1ULL
#define D_PAGE          3ULL
#define D_NORMAL        (0ULL << 2)             /* AttrIndx 0: MAIR0 byte 0 */
#define D_AP(ap21)      ((uint64_t)(ap21) << 6) /* AP[2:1] */
#define D_SH_INNER      (3ULL << 8)
#define D_AF            (1ULL << 10)
#define D_PXN           (1ULL << 53)
#define D_XN            (1ULL << 54)
#define AP_PL1_RW       0
#define AP_RW           1
#define AP_RO           3
#define LEAF(pa, ap)    ((uint64_t)(uintptr_t)(pa) | D_NORMAL | D_SH_INNER | D_AF | D_AP(ap))

#define TTBCR_EAE       (1U << 31)
#define TTBCR_WALK0     ((3U << 12) | (1U << 10) | (1U << 8))  /* inner shareable, WBWA */
#define MAIR0_VALUE     0x000004ffU     /* 0: normal write-back, 1: device */

/* Long-descriptor DFSR/IFSR: the LPAE bit, STATUS = fault type and level. */
#define FSR_LPAE        (1U << 9)
#define ST_TRANSLATION(l)   (0x04U | (l))
#define ST_PERMISSION(l)    (0x0cU | (l))
#define ST_ALIGNMENT        0x21U

static uint64_t l1[4] __attribute__((aligned(32)));
static uint64_t l2_low[512] __attribute__((aligned(4096)));
static uint64_t l2_ram[512] __attribute__((aligned(4096)));
static uint64_t l3_user[512] __attribute__((aligned(4096)));

/* ---- short descriptors (B3.5), SCTLR.AFE = 0: the full AP[2:0] model ---- */

#define S_SECTION       0x2U
#define S_PAGE_TABLE    0x1U
#define S_PT_PXN        (1U << 2)
#define S_SMALL_PAGE    0x2U
#define S_SMALL_XN      (1U << 0)
#define S_DOMAIN(d)     ((uint32_t)(d) << 5)
#define S_SECT_AP(ap)   ((((ap) >> 2) << 15) | (((ap) & 3U) << 10))
#define S_SECT_NORMAL   ((1U << 12) | (1U << 3) | (1U << 2) | (1U << 16))  /* TEX=001 C B, S */
#define S_PAGE_AP(ap)   ((((ap) >> 2) << 9) | (((ap) & 3U) << 4))
#define S_PAGE_NORMAL   ((1U << 6) | (1U << 3) | (1U << 2) | (1U << 10))   /* TEX=001 C B, S */
#define S_AP_PL1_RW     0x1U            /* AP[2:0] = 001 */
#define S_AP_RW         0x3U            /* 011 */
#define S_AP_RO         0x7U            /* 111: read-only at PL1 and PL0 */
#define USER_DOMAIN     1
#define DACR_CLIENT_0_1 0x5U

/* Short-descriptor FS[4:0] (table B3-23) in FSR bits [10, 3:0], and the Domain field. */
#define FS_ALIGNMENT            0x01U
#define FS_TRANSLATION_PAGE     0x07U
#define FS_PERMISSION_SECTION   0x0dU
#define FS_PERMISSION_PAGE      0x0fU
#define FSR_DOMAIN(d)           ((uint32_t)(d) << 4)
#define FSR_DOMAIN_MASK         0xf0U

#define FSR_WNR         (1U << 11)

static uint32_t s_l1[4096] __attribute__((aligned(16384)));
static uint32_t s_l2[256] __attribute__((aligned(1024)));

static uint32_t user_data[1024] __attribute__((aligned(4096)));
static uint32_t user_ro[1024] __attribute__((aligned(4096)));
static uint32_t user_xn[1024] __attribute__((aligned(4096)));

/* ---- the steps each round expects ---- */

enum { DABT, PABT };

struct expect {
    const char *what;
    int kind;
    uint32_t pc;            /* faulting instruction */
    uint32_t mode;          /* the mode it ran in */
    uint32_t far, fsr;
    uint32_t unknown;       /* FSR bits the architecture leaves UNKNOWN for this fault */
};

static struct expect steps[8];
static unsigned int nr_steps, step;
static bool lpae = true;

static uint32_t user_va(const char *label)
{
    return USER_CODE_VA + (uint32_t)(label - user_code);
}

static void expect(const char *what, int kind, uint32_t pc, uint32_t mode, uint32_t far,
                   uint32_t fsr, uint32_t unknown)
{
    steps[nr_steps++] = (struct expect){ what, kind, pc, mode, far, fsr, unknown };
}

static void check(int kind, uint32_t pc, uint32_t spsr, uint32_t far, uint32_t fsr)
{
    const char *reg = kind == DABT ? "DFAR" : "IFAR";
    const char *sr = kind == DABT ? "DFSR" : "IFSR";
    const struct expect *e;

    printk("%s abort at %08x (mode %02x): %s=%08x %s=%08x\n", kind == DABT ? "data" : "prefetch",
           pc, spsr & 0x1f, reg, far, sr, fsr);
    if (step >= nr_steps)
        test_failure("unexpected abort at %08x", pc);
    e = &steps[step++];
    if (e->kind != kind || e->pc != pc || e->mode != (spsr & 0x1f))
        test_failure("%s: expected a %s abort at %08x from mode %02x", e->what,
                     e->kind == DABT ? "data" : "prefetch", e->pc, e->mode);
    if (e->far != far || (e->fsr & ~e->unknown) != (fsr & ~e->unknown))
        test_failure("%s: %s=%08x %s=%08x, expected %08x %08x (mask %08x)", e->what, reg, far,
                     sr, fsr, e->far, e->fsr, ~e->unknown);
    printk("  ok: %s\n", e->what);
}

uint32_t on_dabt(uint32_t pc, uint32_t spsr)
{
    check(DABT, pc, spsr, read_dfar(), read_dfsr());
    return pc + 4;
}

/* Returns where to resume, bit 0 set for Thumb state. */
uint32_t on_pabt(uint32_t pc, uint32_t spsr)
{
    check(PABT, pc, spsr, read_ifar(), read_ifsr());
    if (pc == user_va(user_straddle))
        return user_va(user_resume_straddle);
    return user_va(user_resume_fetch);
}

/* ---- the two sets of tables ---- */

static void tlb_flush(void)
{
    dsb();
    WRITE_CP32(0, 0, c8, c7, 0);                    /* TLBIALL */
    WRITE_CP32(0, 0, c7, c5, 0);                    /* ICIALLU */
    dsb();
    isb();
}

static void mmu_off(void)
{
    WRITE_CP32(read_sctlr() & ~(SCTLR_M | SCTLR_C), 0, c1, c0, 0);
    isb();
    tlb_flush();
}

static void mmu_on(void)
{
    tlb_flush();
    WRITE_CP32((read_sctlr() & ~(SCTLR_TRE | SCTLR_AFE)) | SCTLR_M | SCTLR_C | SCTLR_I,
               0, c1, c0, 0);
    isb();
}

static void map_lpae(void)
{
    uint32_t lo = (uint32_t)(uintptr_t)l1, hi = 0;

    l1[0] = (uint64_t)(uintptr_t)l2_low | D_TABLE;
    l1[2] = (uint64_t)(uintptr_t)l2_ram | D_TABLE;
    for (unsigned int i = 0; i < RAM_MIB / 2; i++)  /* RAM in 2 MiB blocks, PL1 only */
        l2_ram[i] = LEAF(0x80000000U + (i << 21), AP_PL1_RW) | D_BLOCK;
    l2_low[0] = (uint64_t)(uintptr_t)l3_user | D_TABLE;
    l3_user[USER_CODE_VA >> 12] = LEAF(user_code, AP_RO) | D_PXN | D_PAGE;
    l3_user[USER_DATA_VA >> 12] = LEAF(user_data, AP_RW) | D_XN | D_PXN | D_PAGE;
    l3_user[USER_RO_VA >> 12] = LEAF(user_ro, AP_RO) | D_XN | D_PXN | D_PAGE;
    l3_user[USER_XN_VA >> 12] = LEAF(user_xn, AP_RW) | D_XN | D_PXN | D_PAGE;

    dsb();
    WRITE_CP32(MAIR0_VALUE, 0, c10, c2, 0);
    WRITE_CP32(TTBCR_EAE | TTBCR_WALK0, 0, c2, c0, 2);
    __asm__ volatile("mcrr p15, 0, %0, %1, c2" :: "r"(lo), "r"(hi) : "memory");   /* TTBR0 */
    isb();
    mmu_on();
}

static uint32_t s_page(const void *pa, uint32_t ap)
{
    return (uint32_t)(uintptr_t)pa | S_PAGE_AP(ap) | S_PAGE_NORMAL | S_SMALL_PAGE;
}

static void map_short(void)
{
    for (unsigned int i = 0; i < RAM_MIB; i++)      /* RAM in sections, PL1 only, domain 0 */
        s_l1[(0x80000000U >> 20) + i] = (0x80000000U + (i << 20)) | S_SECT_AP(S_AP_PL1_RW)
                                        | S_SECT_NORMAL | S_DOMAIN(0) | S_SECTION;
    /* The user MiB: a page table in the user domain, privileged-execute-never. */
    s_l1[0] = (uint32_t)(uintptr_t)s_l2 | S_DOMAIN(USER_DOMAIN) | S_PT_PXN | S_PAGE_TABLE;
    s_l2[(USER_CODE_VA >> 12) & 0xff] = s_page(user_code, S_AP_RO);
    s_l2[(USER_DATA_VA >> 12) & 0xff] = s_page(user_data, S_AP_RW) | S_SMALL_XN;
    s_l2[(USER_RO_VA >> 12) & 0xff] = s_page(user_ro, S_AP_RO) | S_SMALL_XN;
    s_l2[(USER_XN_VA >> 12) & 0xff] = s_page(user_xn, S_AP_RW) | S_SMALL_XN;

    dsb();
    WRITE_CP32(0, 0, c2, c0, 2);                    /* TTBCR: short descriptors, TTBR0 only */
    WRITE_CP32(DACR_CLIENT_0_1, 0, c3, c0, 0);
    WRITE_CP32((uint32_t)(uintptr_t)s_l1, 0, c2, c0, 0);
    isb();
    mmu_on();
}

static void expect_round(void)
{
    uint32_t perm_page, perm_block, trans_page, alignment, unknown_perm;

    nr_steps = step = 0;
    if (lpae) {
        perm_page = FSR_LPAE | ST_PERMISSION(3);
        perm_block = FSR_LPAE | ST_PERMISSION(2);
        trans_page = FSR_LPAE | ST_TRANSLATION(3);
        alignment = FSR_LPAE | ST_ALIGNMENT;
        unknown_perm = 0;
    } else {
        /* A page's domain comes from its level-1 entry.  With LPAE implemented the DFSR
         * Domain field is UNKNOWN for a permission fault. */
        perm_page = FS_PERMISSION_PAGE;
        perm_block = FS_PERMISSION_SECTION;
        trans_page = FS_TRANSLATION_PAGE | FSR_DOMAIN(USER_DOMAIN);
        alignment = FS_ALIGNMENT;
        unknown_perm = FSR_DOMAIN_MASK;
    }
    expect("str to a read-only page", DABT, user_va(user_str), PSR_MODE_USR,
           USER_RO_VA, perm_page | FSR_WNR, unknown_perm);
    expect("fetch from an execute-never page", PABT, USER_XN_VA, PSR_MODE_USR,
           USER_XN_VA, perm_page, 0);
    expect("vst1 to an unmapped page", DABT, user_va(user_vst1), PSR_MODE_USR,
           USER_GAP_VA + 0x40, trans_page | FSR_WNR, 0);
    expect("ldm across into an unmapped page", DABT, user_va(user_ldm), PSR_MODE_USR,
           USER_GAP_VA, trans_page, 0);
    expect("user read of PL1-only memory", DABT, user_va(user_kread), PSR_MODE_USR,
           KERNEL_PROBE_VA, perm_block, unknown_perm);
    /* Alignment comes before the MMU's checks, and its Domain field is UNKNOWN. */
    expect("ldrex at an address that is not word aligned", DABT, user_va(user_ldrex),
           PSR_MODE_USR, USER_DATA_VA + 2, alignment, lpae ? 0 : FSR_DOMAIN_MASK);
    expect("T32 instruction straddling into an execute-never page", PABT,
           user_va(user_straddle), PSR_MODE_USR, USER_DATA_VA, perm_page, 0);
    expect("ldrt from SVC mode of PL1-only memory", DABT, (uint32_t)(uintptr_t)ldrt_insn,
           PSR_MODE_SVC, KERNEL_PROBE_VA, perm_block, unknown_perm);
}

static __noreturn void run_round(void)
{
    printk("faults: %s, aborts from User mode\n",
           lpae ? "LPAE user pages with PXN" : "short-descriptor user pages with PXN");
    expect_round();
    enter_user(USER_CODE_VA);
}

__noreturn void on_svc(uint32_t r0, uint32_t spsr)
{
    uint32_t v;

    if ((spsr & 0x1f) != PSR_MODE_USR)
        test_failure("svc from mode %02x", spsr & 0x1f);
    if (step != 7)
        test_failure("user code ended after %u of 7 aborts", step);
    if (r0 != MAGIC)
        test_failure("the allowed user read returned %08x, not %08x", r0, MAGIC);
    printk("user read of a user page: %08x, ok\n", r0);

    /* Back in SVC mode: LDRT checks PL0 permissions; an ordinary load does not. */
    v = *(volatile uint32_t *)KERNEL_PROBE_VA;
    ldrt_probe(KERNEL_PROBE_VA);
    if (step != 8)
        test_failure("ldrt from SVC mode of PL1-only memory did not abort");
    printk("ldr of the same address from SVC mode: %08x, ok\n", v);

    if (!lpae)
        test_success();
    /* The same again with short descriptors; RAM is identity mapped, so the MMU can go
     * off and on under this code. */
    lpae = false;
    mmu_off();
    map_short();
    run_round();
}

int main(void)
{
    if (user_straddle - user_code != 4094)
        test_failure("user_straddle is at +%d, not the last halfword of the page",
                     (int)(user_straddle - user_code));
    user_data[0] = MAGIC;
    user_xn[0] = 0xe12fff1e;                        /* bx lr: never run */
    vfp_enable();
    WRITE_CP32((uint32_t)(uintptr_t)fault_vectors, 0, c12, c0, 0);     /* VBAR */
    isb();
    map_lpae();
    run_round();
}
