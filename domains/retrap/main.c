/*
 * retrap: code rewritten where a trapped coprocessor instruction was.
 *
 * The hypervisor traps the generic timer's writes (and, on the deterministic
 * board, the counter's reads) with a hook on the address where its scan of a
 * translated block found them.  The code at that address changes later in
 * real guests: Linux frees its init text and patches its own, and another
 * process runs other code at the same virtual address.  One function's first
 * instruction is rewritten, cleaned to the point of unification, invalidated
 * from the instruction cache, and the function called, in turn as:
 *
 *   1. mcr CNTV_CTL, r0        called with 0: the timer is off
 *   2. add r0, r0, #1          called with 1: returns 2, and CNTV_CTL stays
 *                              0 (the old trap acting here would write 1)
 *   3. mcr CNTV_CTL, r0        called with IMASK: trapped again, CTL = IMASK
 *   4. mcr CNTV_TVAL, r0       called with a second of ticks: CVAL moves
 *                              ahead, and CTL keeps IMASK (decoded as the
 *                              CTL write before, it would be cleared)
 *   5. mrrc CNTVCT, r0, r1     the counter (trapped on the deterministic board)
 *   6. add r0, r0, #1          called with 41: returns 42
 */
#include "guest.h"

#define MCR_CNTV_CTL    0xEE0E0F33U     /* mcr p15, 0, r0, c14, c3, 1 */
#define MCR_CNTV_TVAL   0xEE0E0F13U     /* mcr p15, 0, r0, c14, c3, 0 */
#define MRRC_CNTVCT     0xEC510F1EU     /* mrrc p15, 1, r0, r1, c14 */
#define ADD_R0_1        0xE2800001U     /* add r0, r0, #1 */
#define BX_LR           0xE12FFF1EU

static uint32_t fn[16] __attribute__((aligned(64))) = {ADD_R0_1, BX_LR};

static uint32_t rewrite_and_call(uint32_t insn, uint32_t arg)
{
    uint32_t (*call)(uint32_t) = (uint32_t (*)(uint32_t))(uintptr_t)fn;

    fn[0] = insn;
    WRITE_CP32(fn, 0, c7, c11, 1);              /* DCCMVAU */
    dsb();
    WRITE_CP32(fn, 0, c7, c5, 1);               /* ICIMVAU */
    WRITE_CP32(0, 0, c7, c5, 6);                /* BPIALL */
    dsb();
    isb();
    return call(arg);
}

int main(void)
{
    uint32_t ret, ctl, freq;
    uint64_t before, cval;

    platform_init();
    freq = timer_freq();

    rewrite_and_call(MCR_CNTV_CTL, 0);
    if ((ctl = timer_get_ctl() & 3) != 0)
        test_failure("1: mcr CNTV_CTL with 0 left CTL %u", ctl);

    ret = rewrite_and_call(ADD_R0_1, 1);
    ctl = timer_get_ctl() & 3;
    printk("retrap: add where the CTL write was: %u, CTL %u\n", ret, ctl);
    if (ret != 2 || ctl != 0)
        test_failure("2: the rewritten instruction ran as the trapped one (returned %u, CTL %u)",
                     ret, ctl);

    rewrite_and_call(MCR_CNTV_CTL, CNT_CTL_IMASK);
    if ((ctl = timer_get_ctl() & 3) != CNT_CTL_IMASK)
        test_failure("3: mcr CNTV_CTL back at its address left CTL %u, not %u", ctl,
                     CNT_CTL_IMASK);

    before = timer_count();
    rewrite_and_call(MCR_CNTV_TVAL, freq);
    cval = timer_get_cval();
    ctl = timer_get_ctl() & 3;
    printk("retrap: TVAL where the CTL write was: CVAL %s the counter, CTL %u\n",
           cval >= before + freq ? "a second past" : "NOT past", ctl);
    if (cval < before + freq || ctl != CNT_CTL_IMASK)
        test_failure("4: mcr CNTV_TVAL at the CTL write's address was not a TVAL write");

    before = timer_count();
    ret = rewrite_and_call(MRRC_CNTVCT, 0);
    if (ret < (uint32_t)before && (uint32_t)before - ret < 0x80000000U)
        test_failure("5: mrrc CNTVCT read %08x, before it %08x", ret, (uint32_t)before);

    ret = rewrite_and_call(ADD_R0_1, 41);
    printk("retrap: add where the counter read was: %u\n", ret);
    if (ret != 42)
        test_failure("6: the rewritten instruction ran as the counter read (returned %u)", ret);
    test_success();
}
