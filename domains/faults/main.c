/*
 * faults: aborts taken from User mode on LPAE pages, checked against the
 * ARMv7-A Architecture Reference Manual (B3.12, B4.1.52, B4.1.96).
 *
 * The kernel half maps RAM with PL1-only 2 MiB blocks and a few user pages
 * with 4 KiB level-3 descriptors the way Linux maps a process: code
 * read-only and privileged-execute-never, data execute-never.  It then
 * drops to User mode in user.S, which makes an allowed read and six
 * accesses that abort (the last a 32-bit Thumb instruction whose second
 * halfword is on an execute-never page); each abort handler checks the faulting instruction,
 * the mode it came from and DFAR/DFSR (or IFAR/IFSR), prints them, and
 * resumes.  Last, an unprivileged load (LDRT) from SVC mode must be refused
 * where an ordinary load is not.
 */
#include "guest.h"
#include "faults.h"

extern char user_code[], user_str[], user_resume_fetch[], user_vst1[], user_ldm[];
extern char user_kread[], user_straddle[], user_resume_straddle[];
extern char fault_vectors[], ldrt_insn[];
__noreturn void enter_user(uint32_t pc);
void vfp_enable(void);
uint32_t ldrt_probe(uint32_t va);

/* Long-descriptor format (B3.6.1): table, block and page descriptors. */
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

/* Expected DFSR/IFSR values, long-descriptor format: LPAE bit, STATUS = fault type
 * and level, WnR for writes (table B4-32). */
#define FSR_LPAE        (1U << 9)
#define FSR_WNR         (1U << 11)
#define ST_TRANSLATION(l)   (0x04U | (l))
#define ST_PERMISSION(l)    (0x0cU | (l))

#define MAGIC           0x600df00dU

static uint64_t l1[4] __attribute__((aligned(32)));
static uint64_t l2_low[512] __attribute__((aligned(4096)));
static uint64_t l2_ram[512] __attribute__((aligned(4096)));
static uint64_t l3_user[512] __attribute__((aligned(4096)));
static uint32_t user_data[1024] __attribute__((aligned(4096)));
static uint32_t user_ro[1024] __attribute__((aligned(4096)));
static uint32_t user_xn[1024] __attribute__((aligned(4096)));

enum { DABT, PABT };

struct expect {
    const char *what;
    int kind;
    uint32_t pc;            /* faulting instruction */
    uint32_t mode;          /* the mode it ran in */
    uint32_t far, fsr;
};

static struct expect steps[7];
static unsigned int nr_steps, step;

static uint32_t user_va(const char *label)
{
    return USER_CODE_VA + (uint32_t)(label - user_code);
}

static void expect(const char *what, int kind, uint32_t pc, uint32_t mode, uint32_t far,
                   uint32_t fsr)
{
    steps[nr_steps++] = (struct expect){ what, kind, pc, mode, far, fsr };
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
    if (e->far != far || e->fsr != fsr)
        test_failure("%s: %s=%08x %s=%08x, expected %08x %08x", e->what, reg, far, sr, fsr,
                     e->far, e->fsr);
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

__noreturn void on_svc(uint32_t r0, uint32_t spsr)
{
    uint32_t v;

    if ((spsr & 0x1f) != PSR_MODE_USR)
        test_failure("svc from mode %02x", spsr & 0x1f);
    if (step != 6)
        test_failure("user code ended after %u of 6 aborts", step);
    if (r0 != MAGIC)
        test_failure("the allowed user read returned %08x, not %08x", r0, MAGIC);
    printk("user read of a user page: %08x, ok\n", r0);

    /* Back in SVC mode: LDRT checks PL0 permissions; an ordinary load does not. */
    v = *(volatile uint32_t *)KERNEL_PROBE_VA;
    ldrt_probe(KERNEL_PROBE_VA);
    if (step != 7)
        test_failure("ldrt from SVC mode of a PL1-only page did not abort");
    printk("ldr of the same page from SVC mode: %08x, ok\n", v);
    test_success();
}

static void map(void)
{
    uint32_t lo, hi;

    l1[0] = (uint64_t)(uintptr_t)l2_low | D_TABLE;
    l1[2] = (uint64_t)(uintptr_t)l2_ram | D_TABLE;
    for (unsigned int i = 0; i < 64; i++)           /* 128 MiB of RAM, PL1 only */
        l2_ram[i] = LEAF(0x80000000U + (i << 21), AP_PL1_RW) | D_BLOCK;
    l2_low[0] = (uint64_t)(uintptr_t)l3_user | D_TABLE;
    l3_user[USER_CODE_VA >> 12] = LEAF(user_code, AP_RO) | D_PXN | D_PAGE;
    l3_user[USER_DATA_VA >> 12] = LEAF(user_data, AP_RW) | D_XN | D_PXN | D_PAGE;
    l3_user[USER_RO_VA >> 12] = LEAF(user_ro, AP_RO) | D_XN | D_PXN | D_PAGE;
    l3_user[USER_XN_VA >> 12] = LEAF(user_xn, AP_RW) | D_XN | D_PXN | D_PAGE;

    dsb();
    WRITE_CP32(MAIR0_VALUE, 0, c10, c2, 0);
    WRITE_CP32(TTBCR_EAE | TTBCR_WALK0, 0, c2, c0, 2);
    lo = (uint32_t)(uintptr_t)l1;
    hi = 0;
    __asm__ volatile("mcrr p15, 0, %0, %1, c2" :: "r"(lo), "r"(hi) : "memory");   /* TTBR0 */
    isb();
    WRITE_CP32(0, 0, c8, c7, 0);                    /* TLBIALL */
    dsb();
    isb();
    WRITE_CP32(read_sctlr() | 1U | (1U << 2) | (1U << 12), 0, c1, c0, 0);   /* M, C, I */
    isb();
}

int main(void)
{
    if (user_straddle - user_code != 4094)
        test_failure("user_straddle is at +%d, not the last halfword of the page",
                     (int)(user_straddle - user_code));
    printk("faults: LPAE user pages with PXN, aborts from User mode\n");
    user_data[0] = MAGIC;
    user_xn[0] = 0xe12fff1e;                        /* bx lr: never run */
    map();
    vfp_enable();
    WRITE_CP32((uint32_t)(uintptr_t)fault_vectors, 0, c12, c0, 0);     /* VBAR */
    isb();

    expect("str to a read-only page", DABT, user_va(user_str), PSR_MODE_USR,
           USER_RO_VA, FSR_LPAE | FSR_WNR | ST_PERMISSION(3));
    expect("fetch from an execute-never page", PABT, USER_XN_VA, PSR_MODE_USR,
           USER_XN_VA, FSR_LPAE | ST_PERMISSION(3));
    expect("vst1 to an unmapped page", DABT, user_va(user_vst1), PSR_MODE_USR,
           USER_GAP_VA + 0x40, FSR_LPAE | FSR_WNR | ST_TRANSLATION(3));
    expect("ldm across into an unmapped page", DABT, user_va(user_ldm), PSR_MODE_USR,
           USER_GAP_VA, FSR_LPAE | ST_TRANSLATION(3));
    expect("user read of a PL1-only block", DABT, user_va(user_kread), PSR_MODE_USR,
           KERNEL_PROBE_VA, FSR_LPAE | ST_PERMISSION(2));
    expect("T32 instruction straddling into an execute-never page", PABT,
           user_va(user_straddle), PSR_MODE_USR, USER_DATA_VA, FSR_LPAE | ST_PERMISSION(3));
    expect("ldrt from SVC mode of a PL1-only block", DABT, (uint32_t)(uintptr_t)ldrt_insn,
           PSR_MODE_SVC, KERNEL_PROBE_VA, FSR_LPAE | ST_PERMISSION(2));

    enter_user(USER_CODE_VA);
}
